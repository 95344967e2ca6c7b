"""The airbench recipe through Keras's fit (training.train), its CPU path: airbench's
step count, optimizer, summed loss, frozen whitening bias and level-2 TTA, end to end
through export's parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.config import PRESETS, TrainConfig
from training.data import Dataset
from training.run_folder import WEIGHTS_FILE


def _data(n: int = 200) -> Dataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Dataset(images, np.arange(n) % 10, "synthetic", "0" * 64)


def _tiny(**changes: object) -> TrainConfig:
    # 150 training images, batch 32: 4 whole batches a pass (the partial one dropped),
    # 1.5 passes: 6 steps, the second pass cut short.
    return PRESETS["airbench-cpu"].replace(
        widths=(8, 8, 8), batch_size=32, epochs=1.5, val_size=50, data="synthetic", **changes
    )


def test_steps_are_airbenchs_whole_batches_and_fractional_epochs() -> None:
    from training.recipes import recipe_for

    def _steps(cfg: TrainConfig, train_images: int, max_steps: int | None):  # the loop's count, from the recipe
        return recipe_for(cfg).steps(cfg, train_images, max_steps)

    steps = _steps(PRESETS["airbench94"], 45_000, None)
    assert (steps.per_epoch, steps.total, steps.epochs) == (43, 426, 10)
    assert steps.in_epoch(9) == 426 - 9 * 43
    cpu88 = _steps(PRESETS["cpu88"], 45_000, None)  # the other networks keep the partial batch
    assert (cpu88.per_epoch, cpu88.total) == (176, 1760)


def test_airbench_compiles_airbenchs_optimizer_and_a_summed_loss() -> None:
    from training.optimizer import TorchSGD
    from training.run_data import RunData
    from training.train import _build

    cfg = _tiny()
    model, _ = _build(cfg, RunData.split(cfg, _data()), total_steps=6)
    assert isinstance(model.optimizer, TorchSGD)
    assert model.loss.reduction == "sum"
    assert {g.name for g in model.optimizer.groups} == {"bn_bias", "whiten_bias"}


def _whitening_bias(run: Path, cfg: TrainConfig) -> np.ndarray:
    from model.builders import build_model

    model = build_model(cfg.arch, **cfg.model_options())
    model.load_weights(run / WEIGHTS_FILE)
    return np.asarray(model.get_layer("stem_whiten").bias)


@pytest.mark.parametrize("whiten_bias_epochs", [0, None])
def test_whitening_bias_trains_only_until_its_epoch(tmp_path: Path, whiten_bias_epochs: int | None) -> None:
    from training.train import train

    cfg = _tiny(whiten_bias_epochs=whiten_bias_epochs, lookahead=False)
    metrics = train(cfg, tmp_path / "run", data=_data())
    assert metrics["steps"] == 6
    bias = _whitening_bias(tmp_path / "run", cfg)
    if whiten_bias_epochs == 0:
        np.testing.assert_array_equal(bias, 0.0)  # frozen from the start: never left its init
    else:
        assert np.abs(bias).max() > 0


def test_airbench_run_exports_with_level_two_tta(tmp_path: Path) -> None:
    import json

    from training.export import export_run
    from training.train import train

    cfg = _tiny()
    train(cfg, tmp_path / "run", data=_data())
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2  # a header and two passes, the second cut short
    # Parity covers serving_tta: the run recorded airbench's six-view TTA, and the
    # exported signature must reproduce it.
    export_run(tmp_path / "run", tmp_path / "models" / "1")
    card = json.loads((tmp_path / "models" / "1" / "model_card.json").read_text())
    assert "shifts" in card["test_time_augmentation"]
