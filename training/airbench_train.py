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
from training.config import TrainConfig
from training.data import Dataset, load_dataset
from training.device import device_name
from training.device_loop import DeviceLoop, LoopResult, lr_table, prepare_train_set, run_loop
from training.recipes import recipe_for
from training.run_data import RunData
from training.run_writer import RunWriter, run_record, write_json

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
    recipe = recipe_for(cfg)
    recipe.check(cfg)
    out.mkdir(parents=True, exist_ok=True)
    split = RunData.split(cfg, data or load_dataset(cfg.data))
    x_val, y_val = jnp.asarray(split.x_val), jnp.asarray(split.y_val)

    keras.mixed_precision.set_global_policy("float32")
    eval_model = build_model(cfg.arch, **cfg.model_options())
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model(cfg.arch, **cfg.model_options())
    keras.mixed_precision.set_global_policy("float32")
    # The optimizer's learning rate is a variable the loop sets at every step, from the
    # recipe's schedule tabled once.
    loop = DeviceLoop(model, eval_model, recipe.optimizer(cfg), cfg.label_smoothing, recipe.loss_reduction)
    whitening = _Whitening(eval_model, jnp.asarray(split.whitening_images()))
    steps = recipe.steps(cfg, len(split.x_train), max_steps)
    options: dict[str, Any] = {
        "epochs": steps.total / steps.per_epoch,
        "batch": cfg.batch_size,
        "lrs": lr_table(recipe.schedule(cfg, steps.total), steps.total),
        "freezes": recipe.freezes(cfg),
        "lookahead": cfg.lookahead,
        "tta_level": cfg.tta_level,
        "cutout": cfg.cutout,
        "fit_whitening": whitening,
    }
    y_train_dev = jnp.asarray(split.y_train)

    compile_run_seconds = None
    if compile_run:
        # airbench's warm-up, called the compile run here (the service's warm-up is
        # another thing): a whole run on random labels, in which every function is
        # compiled, so that nothing the timed runs do is done for the first time.
        random_labels = jax.random.randint(jax.random.key(1), y_train_dev.shape, 0, 10).astype(y_train_dev.dtype)
        padded = prepare_train_set(jax.random.key(1), split.x_train, cfg.translate, cfg.flip)
        started = time.perf_counter()
        run_loop(loop, _fresh_weights(cfg, 1), jax.random.key(1), padded, random_labels, x_val, y_val, **options)
        compile_run_seconds = time.perf_counter() - started
        print(f"compile run (compilation included) {compile_run_seconds:.1f} s", flush=True)

    rows, run_metrics = [], []
    for seed in seeds:
        init = _fresh_weights(cfg, seed)
        padded = prepare_train_set(jax.random.key(seed), split.x_train, cfg.translate, cfg.flip)
        result = run_loop(loop, init, jax.random.key(seed + 1_000_003), padded, y_train_dev, x_val, y_val, **options)
        acc, acc_tta = _evaluate(loop, result, x_val, y_val, cfg.tta_level)
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
            _write_run(RunWriter(out / f"seed-{seed}"), cfg.replace(seed=seed), loop, eval_model, result, row, split)
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
        RunWriter(out / f"seed-{row['seed']}").metrics(metrics)
    write_json(out / SUMMARY_FILE, summary)
    return summary


def _evaluate(loop: DeviceLoop, result: LoopResult, x_val: Any, y_val: Any, tta_level: int) -> tuple[float, float]:
    """Accuracy of the float32 network (what export ships), without and with TTA."""
    tv, ntv = result.trainable, result.non_trainable
    acc = float(loop.accuracy(tv, ntv, x_val, y_val, level=0, full_precision=True))
    acc_tta = float(loop.accuracy(tv, ntv, x_val, y_val, level=tta_level, full_precision=True))
    return acc, acc_tta


def _write_run(
    writer: RunWriter,
    cfg: TrainConfig,
    loop: DeviceLoop,
    model: keras.Model,
    result: LoopResult,
    row: dict[str, Any],
    split: RunData,
) -> dict[str, Any]:
    """Write a run folder but its metrics.json, and return those metrics."""
    writer.config(cfg)
    for variable, value in zip(
        model.trainable_variables + model.non_trainable_variables, result.trainable + result.non_trainable, strict=True
    ):
        variable.assign(np.asarray(value))
    writer.weights(model)
    tv, ntv = result.trainable, result.non_trainable
    writer.parity(
        split.parity_images(),
        lambda images, level: loop.logits(tv, ntv, jnp.asarray(images), level=level, full_precision=True),
        cfg.tta_level,
    )
    writer.history(result.history)
    record = run_record(cfg, model, split)
    return {
        **record,
        **row,
        "precision": "bfloat16 compute, float32 batch norm and weights" if cfg.mixed_precision else "float32",
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
