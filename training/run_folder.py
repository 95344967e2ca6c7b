"""The run folder that `train` writes and `export` reads: its file names, and the checks
that keep a run from being overwritten or exported unfinished. No Keras here, so the
CLI can check a user's paths before TensorFlow loads.

    config.json        the resolved TrainConfig
    history.csv        one row per epoch (loss, accuracy, validation, seconds)
    metrics.json       validation metrics, timing, device, data digest
    model.weights.h5   the trained weights
    parity.npz         a fixed batch and the trained model's probabilities on it
    curves.png, confusion.png   plots (with the training extra's matplotlib)
"""

from __future__ import annotations

import shutil
from pathlib import Path

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.weights.h5"
PARITY_FILE = "parity.npz"
CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"
# What `export` needs; a run that stopped early lacks some of them.
FINISHED = (CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, PARITY_FILE)


class RunFolderError(Exception):
    """A run folder that cannot be written or read as asked."""


def prepare(out: Path, force: bool = False) -> None:
    """Make `out` ready for a new run: refuse one that holds files, unless `force`
    (which deletes them: a half-overwritten run would mix two configs)."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise RunFolderError(f"{out} already holds a run; choose another --out, or add --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def check_finished(run: Path) -> None:
    """Raise unless `run` holds everything `export` reads."""
    if not run.is_dir():
        raise RunFolderError(f"run folder {run} does not exist")
    missing = [name for name in FINISHED if not (run / name).is_file()]
    if missing:
        raise RunFolderError(f"{run} is not a finished run: {', '.join(missing)} missing")
