"""The recipes (training.recipes): each family's loss reduction, step count, schedule,
optimizer and frozen groups, which both training loops take from them."""

from __future__ import annotations

import keras
import pytest

from model.builders import ARCHITECTURES
from training.airbench_recipe import peak_lr
from training.config import PRESETS, TrainConfig
from training.optimizer import TorchSGD
from training.recipes import AIRBENCH, KERAS, RECIPES, Steps, recipe_for
from training.schedule import WarmupLinearDecay, WarmupWarmdown


def test_every_architecture_has_a_recipe() -> None:
    assert set(RECIPES) == set(ARCHITECTURES)
    assert recipe_for(PRESETS["airbench94"]) is AIRBENCH
    assert recipe_for(PRESETS["cpu88"]) is KERAS and recipe_for(PRESETS["tutorial"]) is KERAS
    with pytest.raises(ValueError, match="unknown architecture"):
        recipe_for(TrainConfig(arch="resnet"))


@pytest.mark.parametrize(
    ("preset", "reduction"),
    [
        pytest.param("airbench94", "sum", id="airbench-sums"),
        pytest.param("cpu88", "sum_over_batch_size", id="fast-averages"),
        pytest.param("tutorial-modern", "sum_over_batch_size", id="tutorial-averages"),
    ],
)
def test_loss_reduction(preset: str, reduction: str) -> None:
    assert recipe_for(PRESETS[preset]).loss_reduction == reduction


def test_steps_count_passes_and_the_cut_last_one() -> None:
    steps = Steps(per_epoch=43, total=426)
    assert steps.epochs == 10 and steps.in_epoch(0) == 43 and steps.in_epoch(9) == 39
    # The Keras family keeps the partial batch, and --max-steps cuts every epoch.
    assert KERAS.steps(PRESETS["cpu88"], 1000, None) == Steps(4, 40)
    assert KERAS.steps(PRESETS["cpu88"], 1000, 3) == Steps(3, 30)
    # airbench drops it, and --max-steps cuts the whole run.
    assert AIRBENCH.steps(PRESETS["airbench94"], 45_000, 5) == Steps(43, 5)


def test_airbench_schedule_and_optimizer() -> None:
    cfg = PRESETS["airbench94"]
    schedule = AIRBENCH.schedule(cfg, 426)
    assert isinstance(schedule, WarmupWarmdown)
    assert schedule.peak == pytest.approx(peak_lr(cfg)) and schedule.warmup_steps == int(426 * 0.23)
    assert float(keras.ops.convert_to_numpy(schedule(0))) == pytest.approx(0.2 * peak_lr(cfg))
    optimizer = AIRBENCH.optimizer(cfg, schedule)
    assert isinstance(optimizer, TorchSGD) and optimizer.learning_rate is not None
    assert isinstance(AIRBENCH.optimizer(cfg), TorchSGD)  # a constant the device loop overwrites


def test_airbench_freezes_the_whitening_bias_at_its_epoch() -> None:
    assert AIRBENCH.freezes(PRESETS["airbench94"]) == {3: ("whiten_bias",)}
    assert AIRBENCH.freezes(PRESETS["airbench94"].replace(whiten_bias_epochs=None)) == {}
    assert KERAS.freezes(PRESETS["cpu88"]) == {}


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        pytest.param({"optimizer": "sgd"}, keras.optimizers.SGD, id="sgd"),
        pytest.param({"optimizer": "adam", "weight_decay": 0.0}, keras.optimizers.Adam, id="adam"),
        pytest.param({"optimizer": "adam", "weight_decay": 1e-4}, keras.optimizers.AdamW, id="adamw"),
    ],
)
def test_keras_optimizers(changes: dict[str, object], kind: type) -> None:
    cfg = PRESETS["cpu88"].replace(**changes)
    schedule = KERAS.schedule(cfg, 100)
    assert isinstance(schedule, WarmupLinearDecay) and schedule.warmup_steps == int(cfg.lr_warmup * 100)
    assert type(KERAS.optimizer(cfg, schedule)) is kind


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"epochs": 2.5}, "whole epochs", id="fractional-epochs"),
        pytest.param({"whiten_bias_epochs": 3}, "whiten_bias_epochs", id="no-groups-to-freeze"),
    ],
)
def test_keras_recipe_refuses_what_only_airbench_does(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KERAS.check(PRESETS["cpu88"].replace(**changes))
    AIRBENCH.check(PRESETS["airbench94"].replace(**changes))  # airbench's own


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="sgd or adam"):
        KERAS.optimizer(PRESETS["cpu88"].replace(optimizer="lamb"))
