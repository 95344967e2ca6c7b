"""The airbench recipe's parts that are not the optimizer: its schedule, its test-time
augmentation, the split seed, the CLI's seed lists, and the network's shapes and init."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.builders.airbench import tta_logits
from training.config import PRESETS, TrainConfig


def airbench_get_lr(step: int, total: int) -> float:
    """legacy/airbench94.py's get_lr, transcribed."""
    warmup_steps = int(total * 0.23)
    warmdown_steps = total - warmup_steps
    if step < warmup_steps:
        frac = step / warmup_steps
        return 0.2 * (1 - frac) + 1.0 * frac
    frac = (step - warmup_steps) / warmdown_steps
    return 1.0 * (1 - frac) + 0.07 * frac


def test_schedule_is_airbenchs_factor_times_the_peak() -> None:
    from training.device_loop import lr_table
    from training.schedule import WarmupWarmdown

    total = 426
    table = lr_table(WarmupWarmdown(2.0, total, 0.23, 0.2, 0.07), total)
    expected = [2.0 * airbench_get_lr(k, total) for k in range(total)]
    np.testing.assert_allclose(table, expected, rtol=1e-5)


def test_optimizer_values_follow_airbench() -> None:
    from training.airbench_recipe import make_optimizer, peak_lr

    cfg = PRESETS["airbench94"]
    kilostep = 1024 * (1 + 1 / (1 - 0.85))
    assert peak_lr(cfg) == pytest.approx(11.5 / kilostep)  # 1.465e-3 for the summed loss
    opt = make_optimizer(cfg)
    wd = 0.0153 * 1024 / kilostep
    assert opt.l2 == pytest.approx(wd / peak_lr(cfg))  # 1.362 on conv and linear weights
    groups = {g.name: g for g in opt.groups}
    assert groups["bn_bias"].lr_scale == 64.0
    # The same decay per step as the weights: lr_b * wd_b == lr * wd.
    assert 64.0 * peak_lr(cfg) * groups["bn_bias"].weight_decay == pytest.approx(wd)
    assert groups["whiten_bias"].weight_decay == pytest.approx(wd / peak_lr(cfg))


def _linear_model(x: np.ndarray) -> np.ndarray:
    """A stand-in network whose logits depend on position, so shifts and flips matter."""
    w = np.arange(32 * 32 * 3 * 10, dtype=np.float64).reshape(32 * 32 * 3, 10) % 7 - 3
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1) @ w


@pytest.mark.parametrize("level", [0, 1, 2])
def test_tta_levels_average_the_published_views(level: int) -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    got = np.asarray(tta_logits(_linear_model, images, level))
    flip = images[:, :, ::-1]
    if level == 0:
        expected = _linear_model(images)
    else:
        mirror = 0.5 * _linear_model(images) + 0.5 * _linear_model(flip)
        if level == 1:
            expected = mirror
        else:
            padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
            views = [padded[:, 0:32, 0:32], padded[:, 2:34, 2:34]]
            shifted = [0.5 * _linear_model(v) + 0.5 * _linear_model(v[:, :, ::-1]) for v in views]
            expected = 0.5 * mirror + 0.25 * shifted[0] + 0.25 * shifted[1]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_tta_level_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="tta level"):
        tta_logits(_linear_model, np.zeros((1, 32, 32, 3), np.uint8), 3)


def test_split_seed_is_its_own_and_old_runs_keep_theirs() -> None:
    cfg = TrainConfig(seed=5)
    assert cfg.split_seed == 0
    old = TrainConfig.from_json({"arch": "fast", "seed": 3})  # a config.json from before split_seed
    assert old.split_seed == 3
    assert TrainConfig.from_json({"seed": 3, "split_seed": 0}).split_seed == 0


def test_cli_seed_lists() -> None:
    from training.cli import UsageError, parse_seeds

    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,3,5") == [0, 3, 5]
    assert parse_seeds("7") == [7]
    for bad in ("1,1", "²", "0-²", "５", "5-3", "-1", "01", "", "1-", str(2**31)):
        with pytest.raises(UsageError):
            parse_seeds(bad)


def test_network_shapes_parameters_and_identity_init() -> None:
    from model.builders import build_model

    model = build_model("airbench")
    # airbench's 1.97 M trained parameters: the whitening bias, six 3x3 convs, one
    # batch-norm bias per channel of each of the six batch norms, the linear layer.
    convs = 9 * (24 * 64 + 64 * 64 + 64 * 256 + 3 * 256 * 256)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert trainable == 24 + convs + 2 * (64 + 256 + 256) + 256 * 10 == 1_971_352
    assert model.get_layer("stem").output.shape[1:] == (31, 31, 24)
    assert model.get_layer("block3").output.shape[1:] == (3, 3, 256)
    kernel = np.asarray(model.get_layer("block2_conv2").kernel)
    centre = kernel[1, 1]
    np.testing.assert_array_equal(centre, np.eye(256, dtype=np.float32))  # 256 -> 256: all identity
    k1 = np.asarray(model.get_layer("block1_conv1").kernel)  # 24 -> 64: first 24 filters identity
    np.testing.assert_array_equal(k1[1, 1, :, :24], np.eye(24, dtype=np.float32))
    assert np.abs(k1[..., 24:]).max() <= 1 / math.sqrt(24 * 9) + 1e-7  # PyTorch's U(+-1/sqrt(fan_in))
