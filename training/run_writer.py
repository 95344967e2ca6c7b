"""Writes a run folder (training.run_folder names its files) for both training loops, so
that a run of Keras's fit and a seed of the JAX device loop leave the same files with
the same keys: config.json, history.csv, model.weights.h5, parity.npz, metrics.json,
and the plots where the loop measured what they show."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from model.classes import CLASS_NAMES
from training.config import TrainConfig
from training.device import device_name
from training.predict import softmax
from training.run_data import RunData
from training.run_folder import (
    CONFIG_FILE,
    CONFUSION_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    PARITY_FILE,
    WEIGHTS_FILE,
)

# (uint8 images, TTA level) -> float32 logits of the float32 network that export rebuilds.
LogitsFn = Callable[[np.ndarray, int], Any]


def write_json(path: Path, value: Any) -> None:
    """Indented JSON with a final newline, as every file of a run is written."""
    path.write_text(json.dumps(value, indent=2) + "\n")


def write_history(path: Path, rows: Sequence[dict[str, float]]) -> None:
    """One CSV row per epoch, the columns those of the first row."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_record(cfg: TrainConfig, model: keras.Model, data: RunData) -> dict[str, Any]:
    """The metrics.json keys every run has: what trained, where, on which data."""
    return {
        "arch": cfg.arch,
        "params": int(model.count_params()),
        "epochs": cfg.epochs,
        "backend": keras.backend.backend(),
        "device": device_name(),
        "data_source": data.source,
        "data_sha256": data.sha256,
        "train_images": len(data.x_train),
        "val_images": len(data.x_val),
    }


class RunWriter:
    """The files of one run folder `out`, each written when the loop has it."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def config(self, cfg: TrainConfig) -> None:
        """The resolved config, first: a folder with only this reads as unfinished."""
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / CONFIG_FILE, cfg.to_json())

    def history(self, rows: Sequence[dict[str, float]]) -> None:
        """Rewritten after each epoch by the Keras loop, once by the device loop."""
        write_history(self.out / HISTORY_FILE, rows)

    def weights(self, model: keras.Model) -> None:
        model.save_weights(self.out / WEIGHTS_FILE)

    def parity(self, images: np.ndarray, logits: LogitsFn, tta_level: int) -> None:
        """The trained model's probabilities on a fixed batch, which the export must
        match: through `serving_default` (no TTA) and `serving_tta` (the run's level)."""
        np.savez(
            self.out / PARITY_FILE,
            images=np.asarray(images),
            probabilities=softmax(np.asarray(logits(images, 0))),
            probabilities_tta=softmax(np.asarray(logits(images, tta_level))),
        )

    def metrics(self, metrics: dict[str, Any]) -> None:
        """Last: `export` refuses a run folder without it."""
        write_json(self.out / METRICS_FILE, metrics)

    def plots(self, history: Sequence[dict[str, float]], confusion: Any = None) -> None:
        """The learning curves and, given one, the confusion matrix (optional: they need
        the training extra's matplotlib)."""
        try:
            from training.plots import plot_confusion, plot_history
        except ImportError:
            print("matplotlib missing: skipped the plots", file=sys.stderr)
            return
        print(f"plotting {CURVES_FILE} and {CONFUSION_FILE}", flush=True)
        plot_history(history, self.out / CURVES_FILE)
        if confusion is not None:
            plot_confusion(np.asarray(confusion), CLASS_NAMES, self.out / CONFUSION_FILE)
