"""`python -m training evaluate --record`: per-class accuracy added to a model card
that lacks it (the GPU-trained versions), its other metrics kept as they were."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model import contract
from tests.training.test_cli import assert_one_line_error, cli
from tests.training.test_pipeline import _tree


def test_record_adds_per_class_accuracy_and_keeps_the_rest(tiny_model: Path, tmp_path: Path) -> None:
    from training.data import DataError
    from training.evaluate import evaluate, record_per_class

    version = tmp_path / "cifar10" / "1"
    shutil.copytree(contract.latest_version_dir(tiny_model), version)
    card_path = version / contract.MODEL_CARD_FILE
    card = json.loads(card_path.read_text())
    card["metrics"]["per_class_accuracy"] = None
    card_path.write_text(json.dumps(card))
    report = evaluate(version.parent, str(_tree(tmp_path / "tree", per_class=10)), "val")
    record_per_class(version.parent, report)
    metrics = json.loads(card_path.read_text())["metrics"]
    assert metrics["per_class_accuracy"] == report["per_class_accuracy"]
    assert metrics["val_accuracy"] == card["metrics"]["val_accuracy"]
    assert metrics["per_class_accuracy_source"]["images"] == 50
    with pytest.raises(DataError, match="already records"):
        record_per_class(version.parent, report)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(("saved_models/cifar10/4", "--record"), ("already records",), id="card-has-it"),
        pytest.param(("saved_models/cifar10/6", "--record", "--split", "test"), ("--record",), id="not-val"),
        pytest.param(("saved_models/cifar10/6", "--record", "--tta"), ("--record",), id="tta"),
    ],
)
def test_record_mistakes_are_one_line(tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]) -> None:
    assert_one_line_error(cli(tmp_path, "evaluate", *args), *words)
