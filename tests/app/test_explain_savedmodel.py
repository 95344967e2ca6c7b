"""The explain route on real SavedModels under the TensorFlow runtime: one exported
with the signature (the tests' tiny model) and a shipped version exported before it
(saved_models/cifar10/5), which keeps serving and says it cannot explain."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import make_settings, serving
from tests.conftest import SHIPPED
from tests.helpers import assert_error, png_bytes

pytestmark = pytest.mark.anyio
PIXELS = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
UPLOAD = {"file": ("a.png", png_bytes(PIXELS), "image/png")}


async def test_a_model_exported_with_the_signature_explains(tiny_model: Path) -> None:
    async with serving(make_settings(tiny_model)) as client:
        r = await client.post("/explain", files=UPLOAD)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [m["name"] for m in body["maps"]] == [
            "gradcam_stem",
            "gradcam_block1",
            "gradcam_block2",
            "gradcam_block3",
            "saliency",
        ]
        saliency = np.array(body["maps"][-1]["values"])
        assert saliency.shape == (32, 32) and saliency.max() == pytest.approx(1.0, abs=1e-4)
        predicted = (await client.post("/predict", files=UPLOAD)).json()["predictions"][0]
        assert body["target"]["class_id"] == predicted["class_id"]


async def test_a_version_exported_before_the_signature_serves_and_says_so(tmp_path: Path) -> None:
    old = SHIPPED / "5"
    folder = tmp_path / "cifar10"
    shutil.copytree(old, folder / "5")  # a copy: a version folder linked from outside the base path is skipped
    async with serving(make_settings(folder, max_batch_size=4)) as client:
        assert (await client.post("/predict", files=UPLOAD)).status_code == 200
        message = assert_error(await client.post("/explain", files=UPLOAD), 400, "explain_unavailable")["message"]
        assert "version 5" in message and "python -m training reexport" in message
        body = {"signature_name": "explain", "instances": [PIXELS.tolist()]}
        r = await client.post("/v1/models/cifar10:predict", json=body)
        assert_error(r, 400, "explain_unavailable")
