"""The Keras training loop, in named steps: split, build, fit (augmenting per epoch),
then validate, record parity and plot, writing a self-describing run folder
(training.run_folder).

It trains every network on every backend. The airbench recipe has a faster loop for a
GPU (training.airbench_train, JAX only); on a CPU this one, on PyTorch's backend, runs
it about four times faster per step than that loop on JAX's CPU (docs/gpu-training.md).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from model.builders import adapt_model, build_model
from model.builders.airbench import tta_logits
from model.classes import CLASS_NAMES, NUM_CLASSES
from training import airbench_recipe
from training.augment import alternating_flip, translate
from training.config import TrainConfig
from training.data import Dataset, load_dataset, stratified_split, whitening_sample
from training.lookahead import Lookahead
from training.metrics import classification_report
from training.run_folder import (
    CONFIG_FILE,
    CONFUSION_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    PARITY_FILE,
    WEIGHTS_FILE,
)
from training.schedule import WarmupLinearDecay, WarmupWarmdown

PARITY_BATCH = 64
EVAL_BATCH = 500  # validation images per batch
WHITENING_IMAGES = 5000  # training images whose 2x2 patches fix the whitening stem (as airbench)


def training_data_format(requested: str) -> str:
    """Keras's PyTorch backend transposes channels-last tensors around every conv and
    pool; training channels-first there saves that. TensorFlow's CPU kernels need NHWC."""
    if requested != "auto":
        return requested
    return "channels_first" if keras.backend.backend() == "torch" else "channels_last"


def make_optimizer(cfg: TrainConfig, total: int) -> keras.optimizers.Optimizer:
    """The optimizer over `total` steps: airbench's PyTorch SGD and schedule for the
    airbench network, Keras's SGD or Adam(W) with a warm-up for the others."""
    if cfg.arch == "airbench":
        airbench_schedule = WarmupWarmdown(
            airbench_recipe.peak_lr(cfg), total, cfg.lr_warmup, cfg.initial_lr_fraction, cfg.final_lr_fraction
        )
        return airbench_recipe.make_optimizer(cfg, airbench_schedule)
    schedule = WarmupLinearDecay(cfg.lr, total, int(cfg.lr_warmup * total), cfg.final_lr_fraction)
    decay = cfg.weight_decay or None
    opt: keras.optimizers.Optimizer
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=cfg.momentum, nesterov=True, weight_decay=decay)
    elif cfg.optimizer == "adam":
        opt = (
            keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay)
            if decay
            else keras.optimizers.Adam(schedule)
        )
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adam")
    if decay:
        # Decay shrinks kernels only: decaying batch-norm parameters and biases hurts.
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


def predict_logits(model: keras.Model, images: np.ndarray, tta_level: int = 0, batch_size: int = 500) -> np.ndarray:
    """Logits in float32, averaged over the views of a test-time augmentation level
    (0: none, 1: the mirror, 2: airbench's six views), as `serving_tta` computes them."""

    def forward(views: Any) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(views), batch_size=batch_size, verbose=0), dtype=np.float32)

    return np.asarray(tta_logits(forward, images, tta_level), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def device_name() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        dev = jax.devices()[0]
        return f"{dev.platform}:{getattr(dev, 'device_kind', dev)}"
    if backend == "torch":
        import torch

        return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"cpu:{_cpu_name()}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu:{gpus[0].name}" if gpus else f"cpu:{_cpu_name()}"
    return backend


@dataclass(frozen=True)
class _Steps:
    per_epoch: int  # optimizer steps in a whole pass
    total: int  # optimizer steps in the run

    @property
    def epochs(self) -> int:
        """Passes started; the last one may be cut short."""
        return -(-self.total // self.per_epoch)

    def in_epoch(self, epoch: int) -> int:
        return min(self.per_epoch, self.total - epoch * self.per_epoch)


@dataclass
class _Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def train(cfg: TrainConfig, out: Path, data: Dataset | None = None, max_steps: int | None = None) -> dict[str, Any]:
    """Train per `cfg`, write the run folder `out`, and return the metrics.

    `max_steps` cuts each epoch short (airbench: the whole run; for smoke tests);
    metrics then say so.
    """
    if cfg.arch != "airbench" and cfg.epochs != int(cfg.epochs):
        raise ValueError(f"{cfg.arch} trains whole epochs; got {cfg.epochs}")
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    data = data or load_dataset(cfg.data)
    split = _split(cfg, data)
    (out / CONFIG_FILE).write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
    steps = _steps(cfg, len(split.x_train), max_steps)
    model, options = _build(cfg, split.x_train, steps.total)
    history, train_seconds = _fit(cfg, model, split, steps, out)
    model.save_weights(out / WEIGHTS_FILE)
    metrics: dict[str, Any] = {
        "arch": cfg.arch,
        "params": int(model.count_params()),
        "epochs": cfg.epochs,
        "steps": steps.total,
        "train_seconds": round(train_seconds, 1),
        "backend": keras.backend.backend(),
        "data_format": options.get("data_format", "channels_last"),
        "device": device_name(),
        "data_source": data.source,
        "data_sha256": data.sha256,
        "train_images": len(split.x_train),
        "val_images": len(split.x_val),
        "truncated_epochs_to_steps": max_steps,
    }
    if cfg.mixed_precision:
        # Measure, and record parity for, the float32 network that export will rebuild.
        model = _float32_copy(cfg, model, options)
    _after_training(model, split, metrics, history, out, cfg.tta_level)
    return metrics


def _steps(cfg: TrainConfig, train_images: int, max_steps: int | None) -> _Steps:
    if cfg.arch == "airbench":
        # airbench's count: whole batches only, and 9.9 epochs cut the tenth short.
        return _Steps(*airbench_recipe.steps_for(cfg, train_images, max_steps))
    per_epoch = int(np.ceil(train_images / cfg.batch_size))  # the last, partial batch trains too
    if max_steps is not None:
        per_epoch = min(per_epoch, max_steps)
    return _Steps(per_epoch, per_epoch * int(cfg.epochs))


def _split(cfg: TrainConfig, data: Dataset) -> _Split:
    train_idx, val_idx = stratified_split(data.labels, cfg.val_size, cfg.split_seed)
    return _Split(data.images[train_idx], data.labels[train_idx], data.images[val_idx], data.labels[val_idx])


def _build(cfg: TrainConfig, x_train: np.ndarray, total_steps: int) -> tuple[keras.Model, dict[str, Any]]:
    """The compiled network, and the options it was built with."""
    options = cfg.model_options()
    if cfg.arch in ("fast", "airbench"):
        options["data_format"] = training_data_format(cfg.data_format)
    model = build_model(cfg.arch, **options)
    adapt_model(cfg.arch, model, whitening_sample(x_train, WHITENING_IMAGES, cfg.split_seed))
    optimizer = make_optimizer(cfg, total_steps)
    # airbench sums the loss over the batch: its learning rates are tuned for that.
    reduction = "sum" if cfg.arch == "airbench" else "sum_over_batch_size"
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=cfg.label_smoothing, reduction=reduction
        ),
        metrics=["accuracy"],
    )
    # Built now, not at the first step, so that a parameter group can be frozen before it.
    optimizer.build(model.trainable_variables)
    return model, options


def _fit(
    cfg: TrainConfig, model: keras.Model, split: _Split, steps: _Steps, out: Path
) -> tuple[list[dict[str, float]], float]:
    """The epochs, each on freshly augmented data; the history is rewritten after each."""
    rng = np.random.default_rng(cfg.seed)
    flip_mask = rng.random(len(split.x_train)) < 0.5
    y_train_onehot = keras.utils.to_categorical(split.y_train, NUM_CLASSES)
    y_val_onehot = keras.utils.to_categorical(split.y_val, NUM_CLASSES)
    history: list[dict[str, float]] = []
    verbose = 1 if sys.stdout.isatty() else 2
    callbacks = [Lookahead(steps.total)] if cfg.lookahead else []
    train_seconds = 0.0
    # A loss summed over a batch (airbench's) is recorded per image in the history (for
    # validation, exactly so when every batch is full, as with 5,000 images).
    summed = model.loss.reduction == "sum"
    epochs = steps.epochs
    for epoch in range(epochs):
        started = time.perf_counter()
        if cfg.whiten_bias_epochs is not None and epoch == cfg.whiten_bias_epochs:
            # airbench stops training the whitening bias here. A zero learning-rate
            # multiplier does it without retracing the train step, as a change of
            # `trainable` would.
            model.optimizer.scale_variable("whiten_bias").assign(0.0)
        order = rng.permutation(len(split.x_train))[: steps.in_epoch(epoch) * cfg.batch_size]
        x = split.x_train[order]
        if cfg.flip:
            x = alternating_flip(x, flip_mask[order], epoch)
        x = translate(x, cfg.translate, rng)
        print(f"epoch {epoch + 1}/{epochs}", flush=True)
        fit = model.fit(
            x,
            y_train_onehot[order],
            batch_size=cfg.batch_size,
            epochs=1,
            shuffle=False,
            verbose=verbose,
            callbacks=callbacks,
        )
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        has_val = len(split.x_val) > 0
        val_loss, val_acc = (
            model.evaluate(split.x_val, y_val_onehot, batch_size=EVAL_BATCH, verbose=0)
            if has_val
            else (float("nan"),) * 2
        )
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(fit.history["loss"][-1]) / (cfg.batch_size if summed else 1),
                "accuracy": float(fit.history["accuracy"][-1]),
                "val_loss": float(val_loss) / (EVAL_BATCH if summed else 1),
                "val_accuracy": float(val_acc),
                "seconds": round(epoch_seconds, 2),
            }
        )
        print(f"  val_accuracy {val_acc:.4f}  ({epoch_seconds:.0f} s)", flush=True)
        write_history(out / HISTORY_FILE, history)
    return history, train_seconds


def _float32_copy(cfg: TrainConfig, model: keras.Model, options: dict[str, Any]) -> keras.Model:
    keras.mixed_precision.set_global_policy("float32")
    float32 = build_model(cfg.arch, **options)
    float32.set_weights(model.get_weights())
    return float32


def _after_training(
    model: keras.Model,
    split: _Split,
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    out: Path,
    tta_level: int,
) -> None:
    """Validation metrics, the parity batch, metrics.json and the plots."""
    if len(split.x_val):
        print(f"validating on {len(split.x_val)} held-out images, with and without TTA", flush=True)
        metrics.update(validation_metrics(model, split.x_val, split.y_val, tta_level))
    print(f"recording the parity batch ({PARITY_FILE}) that export will check", flush=True)
    images = split.x_val[:PARITY_BATCH] if len(split.x_val) else split.x_train[:PARITY_BATCH]
    write_parity(model, images, out / PARITY_FILE, tta_level)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    try:
        from training.plots import plot_confusion, plot_history

        print(f"plotting {CURVES_FILE} and {CONFUSION_FILE}", flush=True)
        plot_history(history, out / CURVES_FILE)
        if "confusion_matrix" in metrics:
            plot_confusion(np.asarray(metrics["confusion_matrix"]), CLASS_NAMES, out / CONFUSION_FILE)
    except ImportError:  # matplotlib is part of the training extra; plots are optional
        print("matplotlib missing: skipped the plots", file=sys.stderr)


def validation_metrics(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray, tta_level: int = 1) -> dict[str, Any]:
    """Accuracy as `serving_default` computes it, and as `serving_tta` does."""
    report = classification_report(y_val, predict_logits(model, x_val).argmax(1))
    tta = predict_logits(model, x_val, tta_level).argmax(1)
    return {
        "val_accuracy": report["accuracy"],
        "val_accuracy_tta": float(np.mean(tta == y_val)),
        "per_class_accuracy": report["per_class_accuracy"],
        "confusion_matrix": report["confusion_matrix"],
    }


def write_parity(model: keras.Model, images: np.ndarray, path: Path, tta_level: int = 1) -> None:
    """The trained model's probabilities on a fixed batch, which the export must match."""
    np.savez(
        path,
        images=images,
        probabilities=softmax(predict_logits(model, images)),
        probabilities_tta=softmax(predict_logits(model, images, tta_level)),
    )


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
