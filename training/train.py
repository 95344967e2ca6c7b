"""The Keras training loop, in named steps: split, build, fit (augmenting per epoch),
then validate, record parity and plot, writing a self-describing run folder
(training.run_writer).

It trains every network on every backend; the config's recipe (training.recipes)
supplies the loss reduction, optimizer, schedule and step count. The airbench recipe
has a faster loop for a GPU (training.airbench_train, JAX only); on a CPU this one, on
PyTorch's backend, runs it about four times faster per step than that loop on JAX's
CPU (docs/gpu-training.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from model.builders import adapt_model, build_model, takes_data_format
from model.classes import NUM_CLASSES
from training.augment import alternating_flip, cutout, translate
from training.config import TrainConfig
from training.data import Dataset, load_dataset
from training.device import training_data_format
from training.lookahead import Lookahead
from training.predict import predict_logits, validation_metrics
from training.recipes import Recipe, Steps, recipe_for
from training.run_data import RunData
from training.run_folder import PARITY_FILE
from training.run_writer import RunWriter, run_record

EVAL_BATCH = 500  # validation images per batch


def train(cfg: TrainConfig, out: Path, data: Dataset | None = None, max_steps: int | None = None) -> dict[str, Any]:
    """Train per `cfg`, write the run folder `out`, and return the metrics.

    `max_steps` cuts each epoch short (airbench: the whole run; for smoke tests);
    metrics then say so.
    """
    recipe = recipe_for(cfg)
    recipe.check(cfg)
    writer = RunWriter(out)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    split = RunData.split(cfg, data or load_dataset(cfg.data))
    writer.config(cfg)
    steps = recipe.steps(cfg, len(split.x_train), max_steps)
    model, options = _build(cfg, split, steps.total)
    history, train_seconds = _fit(cfg, recipe, model, split, steps, writer)
    writer.weights(model)
    metrics: dict[str, Any] = {
        **run_record(cfg, model, split),
        "steps": steps.total,
        "train_seconds": round(train_seconds, 1),
        "data_format": options.get("data_format", "channels_last"),
        "truncated_epochs_to_steps": max_steps,
    }
    if cfg.mixed_precision:
        # Measure, and record parity for, the float32 network that export will rebuild.
        model = _float32_copy(cfg, model, options)
    _after_training(model, split, metrics, history, writer, cfg.tta_level)
    return metrics


def _build(cfg: TrainConfig, split: RunData, total_steps: int) -> tuple[keras.Model, dict[str, Any]]:
    """The compiled network, and the options it was built with."""
    recipe = recipe_for(cfg)
    options = cfg.model_options()
    if takes_data_format(cfg.arch):
        options["data_format"] = training_data_format(cfg.data_format)
    model = build_model(cfg.arch, **options)
    adapt_model(cfg.arch, model, split.whitening_images())
    optimizer = recipe.optimizer(cfg, recipe.schedule(cfg, total_steps))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=cfg.label_smoothing, reduction=recipe.loss_reduction
        ),
        metrics=["accuracy"],
    )
    # Built now, not at the first step, so that a parameter group can be frozen before it.
    optimizer.build(model.trainable_variables)
    return model, options


def _fit(
    cfg: TrainConfig, recipe: Recipe, model: keras.Model, split: RunData, steps: Steps, writer: RunWriter
) -> tuple[list[dict[str, float]], float]:
    """The epochs, each on freshly augmented data; the history is rewritten after each."""
    rng = np.random.default_rng(cfg.seed)
    flip_mask = rng.random(len(split.x_train)) < 0.5
    y_train_onehot = keras.utils.to_categorical(split.y_train, NUM_CLASSES)
    y_val_onehot = keras.utils.to_categorical(split.y_val, NUM_CLASSES)
    history: list[dict[str, float]] = []
    verbose = 1 if sys.stdout.isatty() else 2
    callbacks = [Lookahead(steps.total)] if cfg.lookahead else []
    freezes = recipe.freezes(cfg)
    train_seconds = 0.0
    # A loss summed over a batch (airbench's) is recorded per image in the history (for
    # validation, exactly so when every batch is full, as with 5,000 images).
    summed = model.loss.reduction == "sum"
    epochs = steps.epochs
    for epoch in range(epochs):
        started = time.perf_counter()
        for group in freezes.get(epoch, ()):
            # A zero learning-rate multiplier freezes the group without retracing the
            # train step, as a change of `trainable` would.
            model.optimizer.scale_variable(group).assign(0.0)
        order = rng.permutation(len(split.x_train))[: steps.in_epoch(epoch) * cfg.batch_size]
        x = split.x_train[order]
        if cfg.flip:
            x = alternating_flip(x, flip_mask[order], epoch)
        x = translate(x, cfg.translate, rng)
        x = cutout(x, cfg.cutout, rng)
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
        writer.history(history)
    return history, train_seconds


def _float32_copy(cfg: TrainConfig, model: keras.Model, options: dict[str, Any]) -> keras.Model:
    keras.mixed_precision.set_global_policy("float32")
    float32 = build_model(cfg.arch, **options)
    float32.set_weights(model.get_weights())
    return float32


def _after_training(
    model: keras.Model,
    split: RunData,
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    writer: RunWriter,
    tta_level: int,
) -> None:
    """Validation metrics, the parity batch, metrics.json and the plots."""
    if len(split.x_val):
        print(f"validating on {len(split.x_val)} held-out images, with and without TTA", flush=True)
        metrics.update(validation_metrics(model, split.x_val, split.y_val, tta_level))
    print(f"recording the parity batch ({PARITY_FILE}) that export will check", flush=True)
    writer.parity(split.parity_images(), lambda images, level: predict_logits(model, images, level), tta_level)
    writer.metrics(metrics)
    writer.plots(history, metrics.get("confusion_matrix"))
