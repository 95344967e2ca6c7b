"""The airbench96 preset against legacy/airbench96.py: its hyperparameters, its
schedule (a 10% warm-up from 0.2, then down to zero), its step count, and its cutout
in both loops (NumPy for Keras's fit, JAX for the device loop)."""

from __future__ import annotations

import numpy as np
import pytest

from training.augment import MEAN_PIXEL, cutout
from training.config import PRESETS
from training.recipes import AIRBENCH

AIRBENCH96 = PRESETS["airbench96"]


def airbench96_get_lr(step: int, total: int) -> float:
    """legacy/airbench96.py's get_lr, transcribed."""
    warmup_steps = int(total * 0.1)
    warmdown_steps = total - warmup_steps
    if step < warmup_steps:
        frac = step / warmup_steps
        return 0.2 * (1 - frac) + 1.0 * frac
    frac = (total - step) / warmdown_steps
    return frac


def test_hyperparameters_are_the_published_ones() -> None:
    cfg = AIRBENCH96
    published = {
        "epochs": 37.0,
        "batch_size": 1024,
        "lr": 9.0,
        "momentum": 0.85,
        "weight_decay": 0.012,
        "bias_lr_scale": 64.0,
        "label_smoothing": 0.2,
        "whiten_bias_epochs": 3,
        "flip": True,
        "translate": 4,
        "cutout": 12,
        "widths": (128, 384, 512),
        "tta_level": 2,
        "block_convs": 3,
        "bn_momentum": 0.9,  # nn.BatchNorm2d's default momentum 0.1, in Keras's sense
        "lookahead": True,
    }
    assert {k: getattr(cfg, k) for k in published} == published
    assert AIRBENCH.steps(cfg, 45_000, None).total == 43 * 37  # 48 * 37 = 1,776 on airbench's 50,000


def test_schedule_is_airbench96s() -> None:
    from training.device_loop import lr_table

    total = 43 * 37
    table = lr_table(AIRBENCH.schedule(AIRBENCH96, total), total)
    peak = 9.0 / (1024 * (1 + 1 / (1 - 0.85)))
    np.testing.assert_allclose(table, [peak * airbench96_get_lr(k, total) for k in range(total)], rtol=1e-5, atol=1e-9)


def _check_squares(out: np.ndarray, images: np.ndarray, size: int) -> None:
    changed = np.any(out != images, axis=-1)  # the images are all black: any change is the cutout
    assert changed.sum(axis=(1, 2)).tolist() == [size * size] * len(images)
    for mask in changed:  # one square, wholly inside the image
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert len(rows) == len(cols) == size and rows[-1] - rows[0] == cols[-1] - cols[0] == size - 1
    assert np.all(out[changed] == MEAN_PIXEL)


def test_cutout_on_the_host() -> None:
    images = np.zeros((64, 32, 32, 3), np.uint8)
    out = cutout(images, 12, np.random.default_rng(0))
    _check_squares(out, images, 12)
    assert cutout(images, 0, np.random.default_rng(0)) is images


def test_cutout_on_the_device_and_its_placement_is_uniform() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from training.device_loop import epoch_batches

    images = jnp.zeros((2048, 32, 32, 3), jnp.uint8)
    labels = jnp.arange(2048) % 10
    xs, _ = epoch_batches(jax.random.key(0), images, labels, jnp.asarray(False), steps=2, batch=1024, cutout=12)
    out = np.asarray(xs).reshape(-1, 32, 32, 3)
    _check_squares(out, np.zeros_like(out), 12)
    # Top-left corners uniform over the 21 x 21 places a square fits.
    corners = np.array([np.argwhere(np.any(o != 0, axis=-1))[0] for o in out])
    assert corners.min() == 0 and corners.max() == 32 - 12
    assert np.abs(np.bincount(corners[:, 0], minlength=21) / len(out) - 1 / 21).max() < 0.03
    # Without cutout the draw is the one the other recipes had.
    plain, _ = epoch_batches(jax.random.key(0), images + 7, labels, jnp.asarray(False), steps=2, batch=1024)
    assert np.all(np.asarray(plain) == 7)
