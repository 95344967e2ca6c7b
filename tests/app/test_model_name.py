"""The served name comes from the model folder, as TensorFlow Serving's base path names
a model, or from CIFAR10_MODEL_NAME; never from the architecture."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from model.contract import served_name
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import fake_loader

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        pytest.param("saved_models/cifar10", "cifar10", id="base-folder"),
        pytest.param("saved_models/cifar10-tutorial", "cifar10-tutorial", id="tutorial-folder"),
        pytest.param("models/tiny", "tiny", id="test-model"),
        pytest.param("saved_models/cifar10/6", "cifar10", id="version-folder"),
        pytest.param("/tmp/export/", "export", id="bare-savedmodel"),
    ],
)
def test_served_name_is_the_folder_name(folder: str, name: str) -> None:
    assert served_name(Path(folder)) == name


@pytest.mark.parametrize(
    ("setting", "served"),
    [
        pytest.param(None, "tiny", id="from-folder"),
        pytest.param("edge", "edge", id="from-setting"),
    ],
)
async def test_tf_serving_path_uses_the_served_name(
    fake_model: Path, tmp_path: Path, setting: str | None, served: str
) -> None:
    # fake_model's folder is named cifar10; the folder served decides.
    folder = tmp_path / "tiny"
    folder.symlink_to(fake_model, target_is_directory=True)
    async with serving(make_settings(folder, model_name=setting), fake_loader) as client:
        info = await client.get(f"/v1/models/{served}")
        assert info.status_code == 200
        assert info.json()["name"] == served
        ready = await client.get("/readyz")
        assert ready.json()["model"]["name"] == served
        other = await client.get("/v1/models/cifar10")
        assert other.status_code == 404


@pytest.mark.parametrize("bad", ["", "a/b", "-x", "x" * 65])
def test_model_name_setting_is_checked(tmp_path: Path, bad: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        make_settings(tmp_path, model_name=bad)
