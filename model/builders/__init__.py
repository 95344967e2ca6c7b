"""The Keras builders of the architectures, for training and export; the service never
imports them (it loads exported models). One entry point from an architecture name and
its options to a Keras model."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from model.builders import airbench, fast, tutorial

ARCHITECTURES = ("tutorial", "fast", "airbench")


def build_model(arch: str, **options: Any) -> keras.Model:
    """Build `arch` (one of ARCHITECTURES); options are the builder's keyword arguments."""
    if arch == "tutorial":
        return tutorial.build_tutorial(**options)
    if arch == "fast":
        return fast.build_fast(**options)
    if arch == "airbench":
        return airbench.build_airbench(**options)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def adapt_model(arch: str, model: keras.Model, images: np.ndarray) -> None:
    """Fit a fresh model's data-derived parts (the whitening stem of fast and airbench)
    to uint8 training images, before training; the tutorial's network has none."""
    if arch in ("fast", "airbench"):
        fast.adapt(model, images)


def feature_layers(arch: str) -> tuple[str, ...]:
    """The stable layer names whose outputs the `feature_maps` endpoint returns."""
    if arch == "tutorial":
        return tutorial.FEATURE_LAYERS
    if arch == "fast":
        return fast.FEATURE_LAYERS
    if arch == "airbench":
        return airbench.FEATURE_LAYERS
    raise ValueError(f"unknown architecture {arch!r}")
