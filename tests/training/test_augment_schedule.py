"""Augmentation and the learning-rate schedule."""

from __future__ import annotations

import numpy as np

from training.augment import alternating_flip, translate
from training.schedule import WarmupLinearDecay


def test_translate_shifts_within_reflection_padding() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    out = translate(images, 2, np.random.default_rng(1))
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    for i in range(len(images)):
        # Every output is one of the 25 crops of its own padded image.
        assert any(np.array_equal(out[i], padded[i, dy : dy + 8, dx : dx + 8]) for dy in range(5) for dx in range(5))
    assert translate(images, 0, rng) is images


def test_alternating_flip_mirrors_complementary_sets() -> None:
    images = np.arange(4 * 2 * 3 * 1, dtype=np.uint8).reshape(4, 2, 3, 1)
    mask = np.array([True, False, True, False])
    even, odd = alternating_flip(images, mask, 0), alternating_flip(images, mask, 1)
    for i in range(4):
        flipped_even = np.array_equal(even[i], images[i, :, ::-1])
        flipped_odd = np.array_equal(odd[i], images[i, :, ::-1])
        assert flipped_even == bool(mask[i]) and flipped_odd != flipped_even


def test_warmup_then_linear_decay() -> None:
    schedule = WarmupLinearDecay(peak=1.0, total_steps=100, warmup_steps=20, final_fraction=0.1)
    values = [float(schedule(step)) for step in (0, 9, 19, 20, 60, 100)]
    np.testing.assert_allclose(values, [0.05, 0.5, 1.0, 1.0, 0.55, 0.1], atol=1e-6)
