"""Command line: `train`, `export`, `archive`, `reexport`, `quantize` and `evaluate`.

Keras reads its backend once, at import, so this module imports nothing from Keras at
the top: `export` and `evaluate` pin TensorFlow first, whatever KERAS_BACKEND says. The
user's mistakes (a wrong preset, a missing data source, an existing output, a missing
run or model) are checked before that import, and reported in one line with exit code
2. The import itself keeps TensorFlow's start-up notices off stderr (training.quiet).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from model import contract
from model.contract import ModelDirError, latest_version_dir, parse_number
from training.config import DEFAULT_DATA, PRESET_SUMMARIES, PRESETS
from training.flags import add_config_flags, config_overrides
from training.run_folder import RunFolderError, check_finished, prepare


class UsageError(Exception):
    """A user's mistake: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's errors without the usage block: one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _presets_epilog() -> str:
    width = max(map(len, PRESETS))
    lines = [f"  {name:<{width}}  {PRESET_SUMMARIES[name]}" for name in PRESETS]
    return "presets (--preset NAME; flags override their fields):\n" + "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m training",
        description=__doc__,
        epilog=_presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a model into a run folder",
        epilog=_presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument(
        "--preset", choices=list(PRESETS), metavar="NAME", help="start from a named configuration (listed below)"
    )
    add_config_flags(t)
    t.add_argument(
        "--seeds", help="airbench only: train once per seed, e.g. 0-7 or 0,3,5; --out then holds seed-<n> folders"
    )
    t.add_argument(
        "--no-compile-run",
        action="store_true",
        help="airbench only: skip the run on random labels that compiles everything before the timed runs",
    )
    # Its name until the learning rate's warm-up became --lr-warmup, for old job scripts.
    t.add_argument("--no-warmup-run", dest="no_compile_run", action="store_true", help=argparse.SUPPRESS)
    t.add_argument(
        "--max-steps", type=int, help="smoke tests: cut each epoch (airbench: the whole run) to this many steps"
    )
    t.add_argument("--out", required=True, type=Path, help="run folder to write (must be new or empty)")
    t.add_argument("--force", action="store_true", help="replace the run folder --out if it holds a run")

    e = sub.add_parser("export", help="export a run's weights as a SavedModel (TensorFlow backend)")
    e.add_argument("run", type=Path, help="run folder written by `train`")
    e.add_argument("--out", required=True, type=Path, help="e.g. saved_models/cifar10/1 (must not exist)")

    a = sub.add_parser("archive", help="add the Keras archive (model.keras) to versions exported without one")
    a.add_argument("versions", type=Path, nargs="+", help="SavedModel version folders, e.g. saved_models/cifar10/4")

    r = sub.add_parser(
        "reexport",
        help="re-export versions in place with the explain signature, from their model.keras, parity-checked",
    )
    r.add_argument("versions", type=Path, nargs="+", help="SavedModel version folders, e.g. saved_models/cifar10/6")
    r.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 source of the validation images to compare on")

    q = sub.add_parser(
        "quantize",
        help="add OpenVINO IR (float32 and int8, NNCF post-training quantization) beside versions, checked",
    )
    q.add_argument("versions", type=Path, nargs="+", help="SavedModel version folders, e.g. saved_models/cifar10/6")
    q.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 source of the calibration and validation images")
    q.add_argument(
        "--calibration-images", type=int, default=300, help="images drawn from the split's training part (default 300)"
    )
    q.add_argument("--calibration-seed", type=int, default=0, help="seed of that draw (default 0)")
    q.add_argument(
        "--min-agreement-tta",
        type=float,
        default=0.99,
        help="fraction of validation images whose int8 TTA top class must be float32's (default 0.99; "
        "the card records the limit used)",
    )
    q.add_argument("--force", action="store_true", help="replace a version's openvino/ folder if it has one")

    v = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a SavedModel")
    v.add_argument("saved_model", type=Path, help="a SavedModel folder or a versioned model folder")
    v.add_argument("--data", default=DEFAULT_DATA)
    v.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="val",
        help="train/val: the training source split as the model card records; test: the source's test split",
    )
    v.add_argument("--tta", action="store_true", help="use the serving_tta signature (mirror test-time augmentation)")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.add_argument(
        "--record",
        action="store_true",
        help="write the per-class accuracy into the model card of a version whose card lacks it (val split only)",
    )
    return parser


def _is_airbench(args: argparse.Namespace) -> bool:
    preset = PRESETS.get(args.preset) if args.preset else None
    return (args.arch or (preset.arch if preset else None)) == "airbench"


def _on_device_loop(args: argparse.Namespace) -> bool:
    """airbench trains in the JAX device loop (training.airbench_train), its GPU path,
    unless KERAS_BACKEND names another backend: then in Keras's fit (training.train),
    which with KERAS_BACKEND=torch is the fast path on a CPU (docs/gpu-training.md)."""
    return _is_airbench(args) and os.environ.get("KERAS_BACKEND", "jax") == "jax"


def _train_config(args: argparse.Namespace) -> Any:
    from training.config import TrainConfig

    cfg = PRESETS[args.preset].replace(preset=args.preset) if args.preset else TrainConfig()
    return cfg.replace(**config_overrides(args))


MAX_SEED = 2**31 - 1  # seeds become JAX PRNG keys and NumPy seeds: 32 bits


def parse_seeds(text: str) -> list[int]:
    """ "0-7" -> [0, ..., 7]; "0,3,5" -> [0, 3, 5]."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        # contract.parse_number: ASCII digits only ("²".isdigit() is true, int("²") fails).
        low, high = parse_number(first, MAX_SEED), parse_number(last, MAX_SEED) if dash else None
        if low is None or (dash and (high is None or high < low)):
            raise UsageError(f"--seeds {text!r}: give distinct seeds, e.g. 0-7 or 0,3,5")
        seeds += range(low, (high if high is not None else low) + 1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: give distinct seeds, e.g. 0-7 or 0,3,5")
    return seeds


def _train_airbench(args: argparse.Namespace) -> dict[str, Any]:
    from training.airbench_train import format_summary, train_seeds

    cfg = _train_config(args)
    seeds = parse_seeds(args.seeds) if args.seeds else [cfg.seed]
    summary = train_seeds(cfg, seeds, args.out, max_steps=args.max_steps, compile_run=not args.no_compile_run)
    print(format_summary(summary))
    return summary["statistics"]


def _check_data(source: str) -> None:
    # The readers (training.data) say more about a source that exists; a missing one is
    # worth telling before a framework loads and before a run folder is made.
    if source != "keras" and not Path(source).exists():
        raise UsageError(f"data source {source} does not exist (--data: a folder, .tar.gz, .zip or 'keras')")


def _check(args: argparse.Namespace) -> None:
    """The checks that need no framework: run before TensorFlow or JAX loads."""
    if args.command in ("evaluate", "reexport"):
        _check_data(args.data)
    if args.command == "train":
        _check_data(_train_config(args).data)
        if args.seeds:
            parse_seeds(args.seeds)
        if not _on_device_loop(args) and (args.seeds or args.no_compile_run):
            where = f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')}" if _is_airbench(args) else "other networks"
            raise UsageError(f"--seeds and --no-compile-run apply to the airbench recipe on JAX only, not with {where}")
        prepare(args.out, force=args.force)
    elif args.command == "export":
        if args.out.exists():
            raise UsageError(f"{args.out} already exists; exports are immutable, choose a new version folder")
        check_finished(args.run)
    elif args.command == "evaluate":
        path = latest_version_dir(args.saved_model)
        if args.record:
            if args.split != "val" or args.tta:
                raise UsageError("--record writes the validation split's per-class accuracy: drop --split and --tta")
            card = path / "model_card.json"
            if not card.is_file():
                raise UsageError(f"{path} has no model_card.json to record into")
            if json.loads(card.read_text()).get("metrics", {}).get("per_class_accuracy"):
                raise UsageError(f"{card} already records per_class_accuracy")
    elif args.command == "archive":
        for version in args.versions:
            if not (version / "saved_model.pb").is_file():
                raise UsageError(f"{version} is not a SavedModel version folder (no saved_model.pb)")
    elif args.command == "quantize":
        if args.calibration_images < 1 or args.calibration_seed < 0 or not 0 < args.min_agreement_tta <= 1:
            raise UsageError(
                "--calibration-images must be at least 1, --calibration-seed at least 0, "
                "--min-agreement-tta a fraction in (0, 1]"
            )
        _check_data(args.data)
        for version in args.versions:
            for name in ("saved_model.pb", "model_card.json"):
                if not (version / name).is_file():
                    raise UsageError(f"{version} has no {name}; quantize needs an exported version folder")
            if (version / contract.OPENVINO_DIR).exists() and not args.force:
                raise UsageError(f"{version / contract.OPENVINO_DIR} already exists; pass --force to write it again")
    elif args.command == "reexport":
        for version in args.versions:
            for name in ("saved_model.pb", "model.keras", "model_card.json"):
                if not (version / name).is_file():
                    raise UsageError(f"{version} has no {name}; re-export needs a version folder with all three")
            if "explain" in json.loads((version / "model_card.json").read_text()).get("signatures", []):
                raise UsageError(f"{version} already has the 'explain' signature")


def _run(args: argparse.Namespace) -> None:
    if args.command == "train" and _on_device_loop(args):
        _train_airbench(args)
    elif args.command == "train":
        from training.train import train

        metrics = train(_train_config(args), args.out, max_steps=args.max_steps)
        summary = {k: metrics[k] for k in ("val_accuracy", "val_accuracy_tta", "train_seconds") if k in metrics}
        print(json.dumps(summary))
    elif args.command == "export":
        from training.export import ExportError, export_run

        try:
            export_run(args.run, args.out)
        except ExportError as exc:
            raise UsageError(str(exc)) from exc
        print(f"wrote {args.out}")
    elif args.command == "archive":
        from training.archive import ArchiveError, add_archive

        for version in args.versions:
            try:
                card = add_archive(version)
            except ArchiveError as exc:
                raise UsageError(str(exc)) from exc
            print(
                f"wrote {version / 'model.keras'} (max |Δ| {card['export']['keras_archive']['parity_max_abs_diff']:.1e})"
            )
    elif args.command == "reexport":
        from training.reexport import ReexportError, reexport

        for version in args.versions:
            try:
                card = reexport(version, args.data)
            except ReexportError as exc:
                raise UsageError(str(exc)) from exc
            record = card["export"]["reexport"]
            print(
                f"re-exported {version}: max |Δ| {record['max_abs_diff']:.1e} ({record['worst_output']}), "
                f"{record['top_class_changes']} top classes changed; explain vs recomputation {record['explain_parity_max_abs_diff']:.1e}"
            )
    elif args.command == "quantize":
        from training.quantize import QuantizeConfig, QuantizeError, format_summary, quantize

        cfg = QuantizeConfig(
            calibration_images=args.calibration_images,
            calibration_seed=args.calibration_seed,
            min_agreement_tta=args.min_agreement_tta,
        )
        for version in args.versions:
            try:
                card = quantize(version, args.data, cfg, force=args.force)
            except QuantizeError as exc:
                raise UsageError(str(exc)) from exc
            print(format_summary(version, card))
    else:
        from training.evaluate import evaluate, format_report

        report = evaluate(args.saved_model, args.data, args.split, tta=args.tta)
        if args.record:
            from training.evaluate import record_per_class

            record_per_class(args.saved_model, report)
        print(json.dumps(report, indent=2) if args.json else format_report(report))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("export", "archive", "reexport", "quantize", "evaluate"):
        # The SavedModel is a TensorFlow artefact, whatever backend trained the weights.
        os.environ["KERAS_BACKEND"] = "tensorflow"
    from training.data import DataError

    try:
        _check(args)
        if args.command == "train" and _on_device_loop(args):
            # Its trainer is written for JAX; Keras reads the backend once, at import.
            os.environ.setdefault("KERAS_BACKEND", "jax")
        from training.quiet import import_keras

        import_keras()
        _run(args)
    except (UsageError, RunFolderError, ModelDirError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
