"""The Keras training loop for the seed and fast networks, in named steps: split,
build, fit (augmenting per epoch), then validate, record parity and plot, writing a
self-describing run folder (training.run_folder)."""

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
from model.classes import CLASS_NAMES, NUM_CLASSES
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
from training.schedule import WarmupLinearDecay

PARITY_BATCH = 64
WHITENING_IMAGES = 5000  # training images whose 2x2 patches fix the whitening stem (as airbench)


def training_data_format(requested: str) -> str:
    """Keras's PyTorch backend transposes channels-last tensors around every conv and
    pool; training channels-first there saves that. TensorFlow's CPU kernels need NHWC."""
    if requested != "auto":
        return requested
    return "channels_first" if keras.backend.backend() == "torch" else "channels_last"


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = steps_per_epoch * int(cfg.epochs)
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


def predict_logits(model: keras.Model, images: np.ndarray, tta: bool, batch_size: int = 500) -> np.ndarray:
    """Logits in float32, averaged with the mirror image's when `tta`."""
    logits = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)
    if tta:
        mirrored = np.asarray(model.predict(images[:, :, ::-1], batch_size=batch_size, verbose=0), dtype=np.float32)
        logits = (logits + mirrored) / 2.0
    return logits


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


@dataclass
class _Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def train(cfg: TrainConfig, out: Path, data: Dataset | None = None, max_steps: int | None = None) -> dict[str, Any]:
    """Train per `cfg`, write the run folder `out`, and return the metrics.

    `max_steps` cuts each epoch short (for smoke tests); metrics then say so.
    """
    epochs = _whole_epochs(cfg)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    data = data or load_dataset(cfg.data)
    split = _split(cfg, data)
    (out / CONFIG_FILE).write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
    steps = int(np.ceil(len(split.x_train) / cfg.batch_size))
    if max_steps is not None:
        steps = min(steps, max_steps)
    model, options = _build(cfg, split.x_train, steps)
    history, train_seconds = _fit(cfg, model, split, epochs, steps, out)
    model.save_weights(out / WEIGHTS_FILE)
    metrics: dict[str, Any] = {
        "arch": cfg.arch,
        "params": int(model.count_params()),
        "epochs": epochs,
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
    _after_training(model, split, metrics, history, out)
    return metrics


def _whole_epochs(cfg: TrainConfig) -> int:
    if cfg.arch == "airbench":
        raise ValueError("the airbench recipe trains with training.airbench_train (JAX), not this loop")
    if cfg.epochs != int(cfg.epochs):
        raise ValueError(f"{cfg.arch} trains whole epochs; got {cfg.epochs}")
    return int(cfg.epochs)


def _split(cfg: TrainConfig, data: Dataset) -> _Split:
    train_idx, val_idx = stratified_split(data.labels, cfg.val_size, cfg.split_seed)
    return _Split(data.images[train_idx], data.labels[train_idx], data.images[val_idx], data.labels[val_idx])


def _build(cfg: TrainConfig, x_train: np.ndarray, steps: int) -> tuple[keras.Model, dict[str, Any]]:
    """The compiled network, and the options it was built with."""
    options = cfg.model_options()
    if cfg.arch == "fast":
        options["data_format"] = training_data_format(cfg.data_format)
    model = build_model(cfg.arch, **options)
    adapt_model(cfg.arch, model, whitening_sample(x_train, WHITENING_IMAGES, cfg.split_seed))
    model.compile(
        optimizer=make_optimizer(cfg, steps),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    return model, options


def _fit(
    cfg: TrainConfig, model: keras.Model, split: _Split, epochs: int, steps: int, out: Path
) -> tuple[list[dict[str, float]], float]:
    """The epochs, each on freshly augmented data; the history is rewritten after each."""
    rng = np.random.default_rng(cfg.seed)
    flip_mask = rng.random(len(split.x_train)) < 0.5
    y_train_onehot = keras.utils.to_categorical(split.y_train, NUM_CLASSES)
    y_val_onehot = keras.utils.to_categorical(split.y_val, NUM_CLASSES)
    history: list[dict[str, float]] = []
    verbose = 1 if sys.stdout.isatty() else 2
    callbacks = [Lookahead(steps * epochs)] if cfg.lookahead else []
    train_seconds = 0.0
    for epoch in range(epochs):
        started = time.perf_counter()
        order = rng.permutation(len(split.x_train))[: steps * cfg.batch_size]
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
            model.evaluate(split.x_val, y_val_onehot, batch_size=500, verbose=0) if has_val else (float("nan"),) * 2
        )
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(fit.history["loss"][-1]),
                "accuracy": float(fit.history["accuracy"][-1]),
                "val_loss": float(val_loss),
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
    model: keras.Model, split: _Split, metrics: dict[str, Any], history: list[dict[str, float]], out: Path
) -> None:
    """Validation metrics, the parity batch, metrics.json and the plots."""
    if len(split.x_val):
        print(f"validating on {len(split.x_val)} held-out images, with and without mirror TTA", flush=True)
        metrics.update(validation_metrics(model, split.x_val, split.y_val))
    print(f"recording the parity batch ({PARITY_FILE}) that export will check", flush=True)
    images = split.x_val[:PARITY_BATCH] if len(split.x_val) else split.x_train[:PARITY_BATCH]
    write_parity(model, images, out / PARITY_FILE)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    try:
        from training.plots import plot_confusion, plot_history

        print(f"plotting {CURVES_FILE} and {CONFUSION_FILE}", flush=True)
        plot_history(history, out / CURVES_FILE)
        if "confusion_matrix" in metrics:
            plot_confusion(np.asarray(metrics["confusion_matrix"]), CLASS_NAMES, out / CONFUSION_FILE)
    except ImportError:  # matplotlib is part of the training extra; plots are optional
        print("matplotlib missing: skipped the plots", file=sys.stderr)


def validation_metrics(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """Accuracy as `serving_default` computes it, and with mirror TTA (`serving_tta`)."""
    report = classification_report(y_val, predict_logits(model, x_val, tta=False).argmax(1))
    tta = predict_logits(model, x_val, tta=True).argmax(1)
    return {
        "val_accuracy": report["accuracy"],
        "val_accuracy_tta": float(np.mean(tta == y_val)),
        "per_class_accuracy": report["per_class_accuracy"],
        "confusion_matrix": report["confusion_matrix"],
    }


def write_parity(model: keras.Model, images: np.ndarray, path: Path) -> None:
    """The trained model's probabilities on a fixed batch, which the export must match."""
    np.savez(
        path,
        images=images,
        probabilities=softmax(predict_logits(model, images, tta=False)),
        probabilities_tta=softmax(predict_logits(model, images, tta=True)),
    )


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
