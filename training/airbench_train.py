"""Train the airbench recipe over several seeds on one JAX device, as airbench times it,
and write one ordinary run folder per seed plus a summary.

Order of work, as in airbench (which calls it a warm-up): one compile run on random
labels, in which every function compiles, timed but not reported as a result; then the seeds, each timed
from the whitening fit to the last update, and its evaluation timed apart. All seeds
share one validation split (`split_seed`), so their spread is the training's alone.
The run folders are what `python -m training export` reads; the median seed by TTA
accuracy (not the best) is the one to ship.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from model.builders import build_model
from model.layers import whitening_kernel
from training.airbench_recipe import make_optimizer, peak_lr, steps_for
from training.config import TrainConfig
from training.data import Dataset, load_dataset, stratified_split, whitening_sample
from training.device_loop import DeviceLoop, LoopResult, lr_table, prepare_train_set, run_loop
from training.run_folder import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, PARITY_FILE, WEIGHTS_FILE
from training.schedule import WarmupWarmdown
from training.train import PARITY_BATCH, WHITENING_IMAGES, device_name, softmax, write_history

SUMMARY_FILE = "summary.json"


def _fresh_weights(cfg: TrainConfig, seed: int) -> tuple[list[Any], list[Any]]:
    keras.utils.set_random_seed(seed)
    model = build_model(cfg.arch, **cfg.model_options())
    return [jnp.asarray(v.value) for v in model.trainable_variables], [
        jnp.asarray(v.value) for v in model.non_trainable_variables
    ]


class _Whitening:
    """Fits the whitening kernel on the device from the first training images."""

    def __init__(self, model: keras.Model, images: Any) -> None:
        self.index = next(i for i, v in enumerate(model.non_trainable_variables) if v.path == "stem_whiten/kernel")
        standardise = model.get_layer("standardise")
        self.images = images
        self.fit = jax.jit(lambda x: whitening_kernel(standardise(x), centre=False, xp=jnp))

    def __call__(self, trainable: list[Any], non_trainable: list[Any]) -> tuple[list[Any], list[Any]]:
        with jax.default_matmul_precision("highest"):
            kernel = self.fit(self.images)
        non_trainable = list(non_trainable)
        non_trainable[self.index] = kernel.astype(non_trainable[self.index].dtype)
        return trainable, non_trainable


def train_seeds(
    cfg: TrainConfig,
    seeds: list[int],
    out: Path,
    data: Dataset | None = None,
    max_steps: int | None = None,
    compile_run: bool = True,
) -> dict[str, Any]:
    """Train `cfg` once per seed into `out/seed-<n>`; write and return the summary."""
    if keras.backend.backend() != "jax":
        raise RuntimeError("the airbench trainer runs on Keras's JAX backend: set KERAS_BACKEND=jax")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    data = data or load_dataset(cfg.data)
    train_idx, val_idx = stratified_split(data.labels, cfg.val_size, cfg.split_seed)
    x_train, y_train = data.images[train_idx], data.labels[train_idx]
    x_val, y_val = jnp.asarray(data.images[val_idx]), jnp.asarray(data.labels[val_idx])

    keras.mixed_precision.set_global_policy("float32")
    eval_model = build_model(cfg.arch, **cfg.model_options())
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model(cfg.arch, **cfg.model_options())
    keras.mixed_precision.set_global_policy("float32")
    optimizer = make_optimizer(cfg)
    loop = DeviceLoop(model, eval_model, optimizer, cfg.label_smoothing)
    whitening = _Whitening(eval_model, jnp.asarray(whitening_sample(x_train, WHITENING_IMAGES, cfg.split_seed)))
    per_epoch, total = steps_for(cfg, len(x_train), max_steps)
    lrs = lr_table(
        WarmupWarmdown(peak_lr(cfg), total, cfg.lr_warmup, cfg.initial_lr_fraction, cfg.final_lr_fraction), total
    )
    options: dict[str, Any] = {
        "epochs": total / per_epoch,
        "batch": cfg.batch_size,
        "lrs": lrs,
        "whiten_bias_epochs": cfg.whiten_bias_epochs,
        "lookahead": cfg.lookahead,
        "tta_level": cfg.tta_level,
        "fit_whitening": whitening,
    }
    y_train_dev = jnp.asarray(y_train)

    compile_run_seconds = None
    if compile_run:
        # airbench's warm-up, called the compile run here (the service's warm-up is
        # another thing): a whole run on random labels, in which every function is
        # compiled, so that nothing the timed runs do is done for the first time.
        random_labels = jax.random.randint(jax.random.key(1), y_train_dev.shape, 0, 10).astype(y_train_dev.dtype)
        padded = prepare_train_set(jax.random.key(1), x_train, cfg.translate, cfg.flip)
        started = time.perf_counter()
        run_loop(loop, _fresh_weights(cfg, 1), jax.random.key(1), padded, random_labels, x_val, y_val, **options)
        compile_run_seconds = time.perf_counter() - started
        print(f"compile run (compilation included) {compile_run_seconds:.1f} s", flush=True)

    rows, run_metrics = [], []
    for seed in seeds:
        init = _fresh_weights(cfg, seed)
        padded = prepare_train_set(jax.random.key(seed), x_train, cfg.translate, cfg.flip)
        result = run_loop(loop, init, jax.random.key(seed + 1_000_003), padded, y_train_dev, x_val, y_val, **options)
        acc, acc_tta, parity = _evaluate(loop, result, x_val, y_val, cfg.tta_level)
        row = {
            "seed": seed,
            "val_accuracy": acc,
            "val_accuracy_tta": acc_tta,
            "val_accuracy_train_precision": result.val_accuracy_train_precision,
            "val_accuracy_tta_train_precision": result.val_accuracy_tta_train_precision,
            "train_seconds": round(result.train_seconds, 3),
            "eval_seconds": round(result.eval_seconds, 3),
            "steps": result.steps,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        run_metrics.append(
            _write_run(
                out / f"seed-{seed}",
                cfg.replace(seed=seed),
                eval_model,
                result,
                row,
                data,
                len(train_idx),
                len(val_idx),
                parity,
            )
        )

    summary = _summary(cfg, rows, compile_run_seconds)
    # metrics.json last, once the seeds' statistics exist: every run's card carries those
    # of the seeds it was one of, and a run folder without it reads as unfinished.
    for row, metrics in zip(rows, run_metrics, strict=True):
        metrics.update(
            compile_seconds=summary["compile_seconds"],
            compile_run_seconds=summary["compile_run_seconds"],
            seed_statistics=summary["statistics"],
        )
        (out / f"seed-{row['seed']}" / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _evaluate(
    loop: DeviceLoop, result: LoopResult, x_val: Any, y_val: Any, tta_level: int
) -> tuple[float, float, dict[str, Any]]:
    """Accuracy of the float32 network (what export ships), and its parity batch."""
    tv, ntv = result.trainable, result.non_trainable
    acc = float(loop.accuracy(tv, ntv, x_val, y_val, level=0, full_precision=True))
    acc_tta = float(loop.accuracy(tv, ntv, x_val, y_val, level=tta_level, full_precision=True))
    batch = x_val[:PARITY_BATCH]
    parity = {
        "images": np.asarray(batch),
        "probabilities": softmax(np.asarray(loop.logits(tv, ntv, batch, level=0, full_precision=True))),
        "probabilities_tta": softmax(np.asarray(loop.logits(tv, ntv, batch, level=tta_level, full_precision=True))),
    }
    return acc, acc_tta, parity


def _write_run(
    out: Path,
    cfg: TrainConfig,
    model: keras.Model,
    result: LoopResult,
    row: dict[str, Any],
    data: Dataset,
    n_train: int,
    n_val: int,
    parity: dict[str, Any],
) -> dict[str, Any]:
    """Write a run folder but its metrics.json, and return those metrics."""
    out.mkdir(parents=True)
    (out / CONFIG_FILE).write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
    for variable, value in zip(
        model.trainable_variables + model.non_trainable_variables, result.trainable + result.non_trainable, strict=True
    ):
        variable.assign(np.asarray(value))
    model.save_weights(out / WEIGHTS_FILE)
    np.savez(out / PARITY_FILE, **parity)
    write_history(out / HISTORY_FILE, result.history)
    return {
        "arch": cfg.arch,
        "params": int(model.count_params()),
        "epochs": cfg.epochs,
        **row,
        "backend": keras.backend.backend(),
        "device": device_name(),
        "precision": "bfloat16 compute, float32 batch norm and weights" if cfg.mixed_precision else "float32",
        "data_source": data.source,
        "data_sha256": data.sha256,
        "train_images": n_train,
        "val_images": n_val,
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def _summary(cfg: TrainConfig, rows: list[dict[str, Any]], compile_run_seconds: float | None) -> dict[str, Any]:
    # Compilation: what the compile run took beyond a timed run (its functions compiled
    # on first call; everything else it did the timed runs do too).
    timed = statistics.fmean(r["train_seconds"] + r["eval_seconds"] for r in rows)
    compile_seconds = None if compile_run_seconds is None else round(compile_run_seconds - timed, 2)
    ranked = sorted(rows, key=lambda r: (r["val_accuracy_tta"], r["seed"]))
    median = ranked[(len(ranked) - 1) // 2]
    keys = (
        "val_accuracy",
        "val_accuracy_tta",
        "val_accuracy_train_precision",
        "val_accuracy_tta_train_precision",
        "train_seconds",
        "eval_seconds",
    )
    return {
        "preset": cfg.preset,
        "config": cfg.to_json(),
        "device": device_name(),
        "backend": keras.backend.backend(),
        "jax": jax.__version__,
        "keras": keras.__version__,
        "host_cpus": os.cpu_count(),
        "compile_seconds": compile_seconds,
        "compile_run_seconds": None if compile_run_seconds is None else round(compile_run_seconds, 2),
        "runs": rows,
        "statistics": {k: _stats([float(r[k]) for r in rows]) for k in keys},
        "median_seed": median["seed"],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A markdown table of the seeds and their statistics, as the docs quote it."""
    lines = [
        f"device: {summary['device']}; Keras {summary['keras']} on {summary['backend']} (jax {summary['jax']}); "
        f"compilation {summary['compile_seconds']} s (compile run {summary['compile_run_seconds']} s)",
        "",
        "| seed | val acc | val acc TTA | val acc (train precision) | TTA (train precision) | train s | eval s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary["runs"]:
        lines.append(
            f"| {r['seed']} | {r['val_accuracy']:.4f} | {r['val_accuracy_tta']:.4f} | {r['val_accuracy_train_precision']:.4f} "
            f"| {r['val_accuracy_tta_train_precision']:.4f} | {r['train_seconds']:.2f} | {r['eval_seconds']:.2f} |"
        )
    st = summary["statistics"]

    def cell(key: str, digits: int) -> str:
        return f"{st[key]['mean']:.{digits}f} ± {st[key]['std']:.{digits}f}"

    lines.append(
        f"| mean ± std | {cell('val_accuracy', 4)} | {cell('val_accuracy_tta', 4)} | {cell('val_accuracy_train_precision', 4)} "
        f"| {cell('val_accuracy_tta_train_precision', 4)} | {cell('train_seconds', 2)} | {cell('eval_seconds', 2)} |"
    )
    lines.append(f"\nmedian seed by TTA accuracy (the one to ship): {summary['median_seed']}")
    return "\n".join(lines)
