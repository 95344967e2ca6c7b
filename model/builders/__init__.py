"""The Keras builders of the architectures, for training and export; the service never
imports them (it loads exported models). One table from an architecture's name to its
builder, its feature layers and what a fresh model fits to data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from model.builders import airbench, fast, tutorial


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., keras.Model]  # keyword options -> an uncompiled model, uint8 images in, logits out
    feature_layers: tuple[str, ...]  # the layers whose outputs `feature_maps` returns, in order
    adapt: Callable[[keras.Model, np.ndarray], None] | None  # fits data-derived parts (a whitening stem)
    data_format: bool  # the builder takes data_format (channels_first trains faster under PyTorch)


_TABLE = {
    "tutorial": Architecture(tutorial.build_tutorial, tutorial.FEATURE_LAYERS, None, data_format=False),
    "fast": Architecture(fast.build_fast, fast.FEATURE_LAYERS, fast.adapt, data_format=True),
    "airbench": Architecture(airbench.build_airbench, airbench.FEATURE_LAYERS, fast.adapt, data_format=True),
}
ARCHITECTURES = tuple(_TABLE)


def architecture(arch: str) -> Architecture:
    """The table's entry for `arch` (one of ARCHITECTURES)."""
    try:
        return _TABLE[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def build_model(arch: str, **options: Any) -> keras.Model:
    """Build `arch` (one of ARCHITECTURES); options are the builder's keyword arguments."""
    return architecture(arch).build(**options)


def adapt_model(arch: str, model: keras.Model, images: np.ndarray) -> None:
    """Fit a fresh model's data-derived parts (the whitening stem of fast and airbench)
    to uint8 training images, before training; the tutorial's network has none."""
    adapt = architecture(arch).adapt
    if adapt is not None:
        adapt(model, images)


def feature_layers(arch: str) -> tuple[str, ...]:
    """The stable layer names whose outputs the `feature_maps` endpoint returns."""
    return architecture(arch).feature_layers


def takes_data_format(arch: str) -> bool:
    """Whether `arch`'s builder takes `data_format` (training may pick channels_first)."""
    return architecture(arch).data_format
