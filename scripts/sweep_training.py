"""Hyper-parameter sweep: many `python -m training train` runs in parallel, in stages,
with a results table at the end.

Its use: a lent GPU trains the CPU preset (`cpu88`) in about a minute, eight at a time, so a
sweep there says which settings are worth a 45-minute run on the 2-core CPU. Each run
is an ordinary training run (same code, same data split), only on another device, so
the table ranks settings; the CPU run that follows is what a model card reports.

    KERAS_BACKEND=jax python scripts/sweep_training.py --out runs/sweep --workers 8 --budget 420

Every run starts from `--preset` as it is at the time: docs/sweeps says which preset
values the recorded rounds started from. Stages, each built from the results of the
ones before:
  1. learning rate x weight decay around the preset, plus single changes (training aids,
     label smoothing, wider blocks for fewer epochs, a larger batch);
  2. the best stage-1 learning rate and decay combined with each aid and all of them;
  3. the best configurations again with other seeds, to see the seed-to-seed spread.
`--configs` runs a given list instead (a later round around the best of these).
No run starts after `--budget` seconds; runs in flight finish (or hit `--run-timeout`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from scripts/: make the packages importable

from training.cli import DEFAULT_DATA  # noqa: E402  (needs the path above)
from training.data import load_dataset  # noqa: E402

Overrides = dict[str, Any]


def cli_args(overrides: Overrides) -> list[str]:
    """{"lr": 0.4, "dirac": True} -> ["--lr", "0.4", "--dirac"] for the training CLI."""
    args: list[str] = []
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


def run_name(overrides: Overrides) -> str:
    if not overrides:
        return "base"
    parts = []
    for key, value in overrides.items():
        if isinstance(value, bool):
            parts.append(key if value else f"no-{key}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{key}{'-'.join(str(v) for v in value)}")
        else:
            parts.append(f"{key}{value}")
    return "_".join(parts).replace("_", "-")


class Sweep:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.deadline = time.monotonic() + args.budget
        self.results: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.out.mkdir(parents=True, exist_ok=True)
        self.results_file = self.out / "results.jsonl"

    def run(self, overrides: Overrides) -> dict[str, Any] | None:
        if time.monotonic() > self.deadline:
            return None
        name = run_name(overrides)
        folder = self.out / "runs" / name
        cmd = [
            sys.executable,
            "-m",
            "training",
            "train",
            "--preset",
            self.args.preset,
            "--data",
            self.args.data,
            *cli_args(overrides),
            "--out",
            str(folder),
        ]
        cmd += self.args.extra.split()
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with (folder / "train.log").open("w") as log:
            try:
                proc = subprocess.run(
                    cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=self.args.run_timeout
                )
                status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            except subprocess.TimeoutExpired:
                status = "timeout"
        row: dict[str, Any] = {
            "name": name,
            "overrides": overrides,
            "status": status,
            "wall_seconds": round(time.monotonic() - started, 1),
        }
        metrics_file = folder / "metrics.json"
        if status == "ok" and metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            row.update(
                {
                    k: metrics.get(k)
                    for k in ("val_accuracy", "val_accuracy_tta", "train_seconds", "params", "device", "backend")
                }
            )
        with self.lock:
            self.results.append(row)
            with self.results_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
        acc = row.get("val_accuracy")
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {status}, val {acc}, {row['wall_seconds']} s", flush=True)
        return row

    def stage(self, configs: list[Overrides]) -> list[dict[str, Any]]:
        unique = {run_name(c): c for c in configs if run_name(c) not in {r["name"] for r in self.results}}
        with ThreadPoolExecutor(self.args.workers) as pool:
            rows = list(pool.map(self.run, unique.values()))
        return [r for r in rows if r]

    def best(self, k: int, key: str = "val_accuracy") -> list[dict[str, Any]]:
        ok = [r for r in self.results if r.get(key) is not None and "seed" not in r["overrides"]]
        return sorted(ok, key=lambda r: r[key], reverse=True)[:k]


LRS = (0.1, 0.2, 0.4)
DECAYS = (5e-4, 4e-3, 1.6e-2)
AIDS: list[Overrides] = [{"bias_lr_scale": 16.0}, {"bias_lr_scale": 64.0}, {"dirac": True}, {"lookahead": True}]


def stage1() -> list[Overrides]:
    grid: list[Overrides] = [{"lr": lr, "weight_decay": wd} for lr in LRS for wd in DECAYS]
    singles: list[Overrides] = [
        *AIDS,
        {"label_smoothing": 0.1},
        {"widths": (64, 256, 256), "epochs": 7},
        {"batch_size": 512, "lr": 0.4},
    ]
    return grid + singles


def stage2(best: Overrides) -> list[Overrides]:
    base = {k: best[k] for k in ("lr", "weight_decay") if k in best}
    combos: list[Overrides] = [{**base, **aid} for aid in AIDS]
    combos.append({**base, "bias_lr_scale": 16.0, "dirac": True, "lookahead": True})
    combos.append({**base, "lookahead": True, "dirac": True})
    return combos


def table(results: list[dict[str, Any]]) -> str:
    rows = sorted(results, key=lambda r: r.get("val_accuracy") or 0.0, reverse=True)
    lines = ["| run | val acc | val acc (mirror TTA) | train s | status |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        acc = f"{100 * r['val_accuracy']:.2f}" if r.get("val_accuracy") is not None else "-"
        tta = f"{100 * r['val_accuracy_tta']:.2f}" if r.get("val_accuracy_tta") is not None else "-"
        lines.append(f"| {r['name']} | {acc} | {tta} | {r.get('train_seconds', '-')} | {r['status']} |")
    return "\n".join(lines)


def seed_summary(results: list[dict[str, Any]]) -> str:
    groups: dict[str, list[float]] = {}
    for r in results:
        if r.get("val_accuracy") is None:
            continue
        base = {k: v for k, v in r["overrides"].items() if k != "seed"}
        groups.setdefault(run_name(base), []).append(100 * r["val_accuracy"])
    lines = ["| configuration | seeds | mean | std | min |", "| --- | --- | --- | --- | --- |"]
    for name, accs in sorted(groups.items(), key=lambda kv: -statistics.mean(kv[1])):
        if len(accs) > 1:
            lines.append(
                f"| {name} | {len(accs)} | {statistics.mean(accs):.2f} | {statistics.stdev(accs):.2f} | {min(accs):.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and the results")
    parser.add_argument("--preset", default="cpu88", help="the preset every run starts from")
    parser.add_argument("--data", default=str(ROOT / DEFAULT_DATA), help="as the training CLI's --data")
    parser.add_argument("--workers", type=int, default=4, help="runs at a time")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which no run starts")
    parser.add_argument("--run-timeout", type=float, default=300.0, help="seconds before a run is killed")
    parser.add_argument("--seeds", type=int, default=2, help="extra seeds for each of the top configurations")
    parser.add_argument("--top", type=int, default=2, help="configurations re-run with other seeds")
    parser.add_argument(
        "--extra",
        default="",
        help="training CLI flags added to every run, e.g. to test the script: "
        "--extra='--epochs 1 --max-steps 2 --val-size 500'",
    )
    parser.add_argument("--stages", default="1,2,3", help="which stages to run")
    parser.add_argument(
        "--configs",
        type=Path,
        help="a JSON list of overrides to run instead of the stages, e.g. scripts/sweeps/cpu88-round2.json",
    )
    args = parser.parse_args()
    # The runs start in the repository root: make the caller's relative paths absolute.
    args.out = args.out.resolve()
    if args.data != "keras":
        args.data = str(Path(args.data).resolve())
    if args.configs:
        args.configs = args.configs.resolve()

    load_dataset(args.data)  # decoded once here, so the parallel runs all find the cache
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # several runs share one GPU
    sweep = Sweep(args)
    if args.configs:
        sweep.stage(json.loads(args.configs.read_text()))
    stages = set() if args.configs else {int(s) for s in args.stages.split(",")}
    if 1 in stages:
        sweep.stage(stage1())
    if 2 in stages and sweep.best(1):
        sweep.stage(stage2(sweep.best(1)[0]["overrides"]))
    if 3 in stages:
        tops = [r["overrides"] for r in sweep.best(args.top)]
        sweep.stage([{**o, "seed": s} for o in tops for s in range(1, args.seeds + 1)])
    report = f"{table(sweep.results)}\n\nSeed spread (seed 0 and the extra seeds):\n\n{seed_summary(sweep.results)}\n"
    (args.out / "sweep.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
