"""The openvino runtimes on the tiny model's IR (`python -m training quantize`, a
session fixture): float32 against the SavedModel at every batch size, int8 as its file
computes it, explanations through TensorFlow or refused without it, and IR that is
missing or corrupt refused at load, also under live reload."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.serving.classifier import Classifier, ModelLoadError
from app.serving.operations import Operation
from model import contract
from tests.app.conftest import make_settings, serving
from tests.app.test_model_versions import eventually_states, states
from tests.conftest import ROOT
from tests.helpers import png_bytes
from tests.no_tensorflow import env_without_tensorflow

ATOL = 1e-4
MAX_BATCH = 16
IMAGE = png_bytes(np.full((32, 32, 3), 90, dtype=np.uint8))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (MAX_BATCH - 1, 32, 32, 3), dtype=np.uint8)


def test_float32_matches_the_savedmodel(tiny_openvino: Path, images: np.ndarray) -> None:
    served = Classifier(tiny_openvino, MAX_BATCH, "openvino-float32")
    served.warm()
    expected = Classifier(tiny_openvino, MAX_BATCH, "tensorflow")
    assert served.info.layers == expected.info.layers
    for n in (1, 3, len(images)):
        np.testing.assert_allclose(
            np.stack(served.predict(list(images[:n]))), np.stack(expected.predict(list(images[:n]))), atol=ATOL, rtol=0
        )
    got, want = served.feature_maps(list(images[:5]))[4], expected.feature_maps(list(images[:5]))[4]
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=ATOL * max(1.0, float(np.abs(value).max())), rtol=0)
    # Explanations come from the SavedModel's explain signature, in this process.
    assert Operation.EXPLAIN not in served.info.unavailable
    items = list(zip(images[:3], [-1, 4, -1], strict=True))
    for a, b in zip(served.explain(items), expected.explain(items), strict=True):
        for name in b:
            np.testing.assert_allclose(a[name], b[name], atol=1e-6, rtol=0)


def test_int8_serves_the_quantized_file(tiny_openvino: Path, images: np.ndarray) -> None:
    from training import openvino_ir

    served = Classifier(tiny_openvino, MAX_BATCH, "openvino")
    version = contract.latest_version_dir(tiny_openvino)
    model = openvino_ir.ov.Core().read_model(version / contract.OPENVINO_DIR / "int8.xml")
    int8 = openvino_ir.compile_model(openvino_ir.outputs(model, [contract.PROBABILITIES]))
    expected = openvino_ir.run(int8, images, len(images))[contract.PROBABILITIES]
    np.testing.assert_allclose(np.stack(served.predict(list(images))), expected, atol=ATOL, rtol=0)
    float32 = np.stack(Classifier(tiny_openvino, MAX_BATCH, "openvino-float32").predict(list(images)))
    assert np.abs(expected - float32).max() > ATOL  # a different graph from float32's, not a copy


def broken_copy(tiny_openvino: Path, target: Path, damage: str) -> Path:
    version = target / "1"
    shutil.copytree(contract.latest_version_dir(tiny_openvino), version)
    ir = version / contract.OPENVINO_DIR
    if damage == "missing-folder":
        shutil.rmtree(ir)
    elif damage == "truncated-bin":
        data = (ir / "int8.bin").read_bytes()
        (ir / "int8.bin").write_bytes(data[: len(data) // 2])
    elif damage == "flipped-byte":
        data = bytearray((ir / "int8.bin").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (ir / "int8.bin").write_bytes(bytes(data))
    elif damage == "no-record":
        card = json.loads((version / contract.MODEL_CARD_FILE).read_text())
        del card["openvino"]
        (version / contract.MODEL_CARD_FILE).write_text(json.dumps(card))
    return target


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param("missing-folder", "int8.xml is missing", id="missing-folder"),
        pytest.param("truncated-bin", "not the file the model card records", id="truncated-bin"),
        pytest.param("flipped-byte", "not the file the model card records", id="flipped-byte"),
        pytest.param("no-record", "python -m training quantize", id="no-record-in-the-card"),
    ],
)
def test_missing_or_corrupt_ir_is_refused_at_load(
    tiny_openvino: Path, tmp_path: Path, damage: str, message: str
) -> None:
    model_dir = broken_copy(tiny_openvino, tmp_path / "cifar10", damage)
    with pytest.raises(ModelLoadError, match=message):
        Classifier(model_dir, MAX_BATCH, "openvino")


@pytest.mark.anyio
async def test_live_reload_keeps_the_old_version_when_the_new_ir_is_corrupt(
    tiny_openvino: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "cifar10"
    shutil.copytree(contract.latest_version_dir(tiny_openvino), model_dir / "1")
    settings = make_settings(model_dir, runtime="openvino", model_poll_s=0.05)
    async with serving(settings) as client:
        assert await states(client) == {"1": "AVAILABLE"}
        broken = broken_copy(tiny_openvino, tmp_path / "staging", "flipped-byte") / "1"
        broken.rename(model_dir / "2")
        await eventually_states(client, {"2": "END", "1": "AVAILABLE"})
        (status,) = (await client.get("/v1/models/cifar10/versions/2")).json()["model_version_status"]
        assert "not the file the model card records" in status["status"]["error_message"]
        r = await client.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["model"]["version"] == "1"


NO_TENSORFLOW = """
import asyncio, json, sys
from pathlib import Path
import httpx
from asgi_lifespan import LifespanManager
from app.main import create_app
from app.settings import Settings

async def main():
    settings = Settings(model_dir=Path(sys.argv[1]), runtime="openvino", max_batch_size=4, log_level="warning")
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=120) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            image = Path(sys.argv[2]).read_bytes()
            files = {"file": ("a.png", image, "image/png")}
            out = {
                "predict": (await c.post("/predict", files=files)).status_code,
                "explain": (await c.post("/explain", files=files)).json(),
                "status": (await c.get("/v1/models/cifar10")).json(),
                "signatures": sorted((await c.get("/v1/models/cifar10/metadata")).json()["metadata"]["signature_def"]["signature_def"]),
                "tensorflow": [m for m in sys.modules if m.split(".")[0] == "tensorflow"],
            }
    print(json.dumps(out))

asyncio.run(main())
"""


def test_without_tensorflow_explain_is_refused_and_said(tiny_openvino: Path, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(IMAGE)
    done = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, str(tiny_openvino), str(tmp_path / "a.png")],
        cwd=ROOT,
        env=env_without_tensorflow(tmp_path / "site"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["predict"] == 200 and out["tensorflow"] == []
    assert out["explain"]["error"]["code"] == "explain_unavailable"
    assert "TensorFlow" in out["explain"]["error"]["message"]
    assert "TensorFlow" in out["status"]["unavailable"]["explain"]
    assert out["signatures"] == [contract.SERVING_SIGNATURE]


@pytest.mark.slow
def test_shipped_default_ir_serves_as_recorded(real_samples: list[tuple[str, str, bytes]]) -> None:
    """The committed IR of the default model: float32 as the SavedModel, and int8 with
    the top class of float32 on real images, as its card records on the validation split."""
    from app.imaging.decode import decode_image
    from tests.conftest import SHIPPED

    images = [decode_image(data, 10**8) for _, _, data in real_samples]
    float32 = np.stack(Classifier(SHIPPED, MAX_BATCH, "openvino-float32").predict(images))
    expected = np.stack(Classifier(SHIPPED, MAX_BATCH, "tensorflow").predict(images))
    np.testing.assert_allclose(float32, expected, atol=ATOL, rtol=0)
    int8 = np.stack(Classifier(SHIPPED, MAX_BATCH, "openvino").predict(images))
    assert np.sum(int8.argmax(1) != float32.argmax(1)) <= 1  # the card: 99.2% of 5,000 agree
