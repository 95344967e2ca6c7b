"""One entry point from an architecture name and its options to a Keras model."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from model import fast, seed

ARCHITECTURES = ("seed", "fast")


def build_model(arch: str, **options: Any) -> keras.Model:
    """Build `arch` ("seed" or "fast"); options are the builder's keyword arguments."""
    if arch == "seed":
        return seed.build_seed(**options)
    if arch == "fast":
        return fast.build_fast(**options)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def adapt_model(arch: str, model: keras.Model, images: np.ndarray) -> None:
    """Fit a fresh model's data-derived parts (the fast net's whitening stem) to uint8
    training images, before training; the seed network has none."""
    if arch == "fast":
        fast.adapt(model, images)


def feature_layers(arch: str) -> tuple[str, ...]:
    """The stable layer names whose outputs the `feature_maps` endpoint returns."""
    if arch == "seed":
        return seed.FEATURE_LAYERS
    if arch == "fast":
        return fast.FEATURE_LAYERS
    raise ValueError(f"unknown architecture {arch!r}")
