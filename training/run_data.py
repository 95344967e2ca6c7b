"""The images one run trains and validates on, split once for whichever loop trains it:
the config's stratified hold-out, the sample that fits the whitening stem, and the
fixed batch whose probabilities export must reproduce."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.config import TrainConfig
from training.data import Dataset, stratified_split, whitening_sample

WHITENING_IMAGES = 5000  # training images whose 2x2 patches fix the whitening stem (as airbench)
PARITY_BATCH = 64  # images in the run's parity batch (parity.npz)


@dataclass(frozen=True)
class RunData:
    """A dataset split per a config: uint8 images [N, 32, 32, 3] and int labels [N]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source: str  # the dataset's source, for the record
    sha256: str  # the source's digest, for the record
    split_seed: int  # seeded the split; seeds the whitening sample too

    @classmethod
    def split(cls, cfg: TrainConfig, data: Dataset) -> RunData:
        """`cfg.val_size` images held out, stratified, by `cfg.split_seed`."""
        train_idx, val_idx = stratified_split(data.labels, cfg.val_size, cfg.split_seed)
        return cls(
            data.images[train_idx],
            data.labels[train_idx],
            data.images[val_idx],
            data.labels[val_idx],
            data.source,
            data.sha256,
            cfg.split_seed,
        )

    def whitening_images(self) -> np.ndarray:
        """The training images a whitening stem is fitted on (a random draw, as airbench's)."""
        return whitening_sample(self.x_train, WHITENING_IMAGES, self.split_seed)

    def parity_images(self) -> np.ndarray:
        """The parity batch: the first validation images (training images without any)."""
        return self.x_val[:PARITY_BATCH] if len(self.x_val) else self.x_train[:PARITY_BATCH]
