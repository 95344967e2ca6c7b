"""No request may cost far more than its size (issue 27): a 1.4 KB query that named one
layer 280 times built its answer 280 times. Repeated parameters are refused, every
large answer's size is estimated (an upper bound) and capped before any work, and the
answer is rendered in pieces off the event loop. On the fake runtime; the stall and
memory figures against a real server: tests/reliability/test_cost.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from app.protocols.json_writer import render
from app.web import answers
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import LAYERS, fake_loader
from tests.helpers import assert_error, png_bytes

pytestmark = pytest.mark.anyio
NOISE = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def upload() -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("a.png", png_bytes(NOISE), "image/png")}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("/feature-maps?layers=stem,stem", "named more than once", id="feature-maps-layer-twice"),
        pytest.param("/feature-maps?layers=" + ",".join(["stem"] * 280), "named more than once", id="layer-280-times"),
        pytest.param("/feature-maps?layers=stem&layers=block1", "more than once", id="feature-maps-key-twice"),
        pytest.param("/explain?map=saliency&map=saliency", "more than once", id="explain-map-key-twice"),
        pytest.param("/predict?top_k=3&top_k=3", "more than once", id="predict-key-twice"),
    ],
)
async def test_repeated_parameters_are_refused(fake_model: Path, path: str, message: str) -> None:
    async with serving(make_settings(fake_model), fake_loader) as client:
        r = await client.post(path, files=upload())
        assert_error(r, 422, "invalid_request")
        assert message in r.json()["error"]["message"]


async def test_answers_over_the_cap_are_refused_before_any_work(fake_model: Path) -> None:
    cap = 1 << 20  # the setting's lowest value
    async with serving(make_settings(fake_model, max_answer_bytes=cap), fake_loader) as client:
        r = await client.post("/explain?scale=16", files=upload())  # 5 maps with 512x512 overlays
        assert_error(r, 422, "answer_too_large")
        assert "CIFAR10_MAX_ANSWER_BYTES" in r.json()["error"]["message"]
        r = await client.post("/explain?scale=8&map=saliency", files=upload())
        assert r.status_code == 200, r.text
        rows = {"signature_name": "explain", "instances": [NOISE.tolist()] * 64}
        assert_error(await client.post("/v1/models/cifar10:predict", json=rows), 422, "answer_too_large")
        rows["instances"] = rows["instances"][:4]
        assert (await client.post("/v1/models/cifar10:predict", json=rows)).status_code == 200


@pytest.mark.parametrize(
    ("path", "estimate", "slack"),
    [
        pytest.param(
            "/feature-maps",
            sum(int(np.prod(s)) for s in LAYERS.values()) * answers.VALUE_BYTES + answers.png_bytes_bound(32) + 4096,
            3,
            id="feature-maps-all-layers",
        ),
        pytest.param(
            "/explain?scale=16",
            5 * (1024 * answers.VALUE_BYTES + answers.png_bytes_bound(512)) + 2 * answers.png_bytes_bound(32),
            50,  # the overlays' PNG bound is a worst case; square pixels compress far better
            id="explain-every-map",
        ),
    ],
)
async def test_the_estimates_bound_the_answers(fake_model: Path, path: str, estimate: int, slack: int) -> None:
    """The cap is only as good as the estimate: it must never be below the real size
    (noise pixels: the PNGs compress least)."""
    async with serving(make_settings(fake_model), fake_loader) as client:
        r = await client.post(path, files=upload())
        assert r.status_code == 200, r.text
        assert len(r.content) <= estimate
        assert len(r.content) > estimate // slack  # and not so loose that the cap means nothing


async def test_tf_explain_rows_within_their_estimate(fake_model: Path) -> None:
    async with serving(make_settings(fake_model), fake_loader) as client:
        body = {"signature_name": "explain", "instances": [{"b64": base64.b64encode(png_bytes(NOISE)).decode()}] * 8}
        r = await client.post("/v1/models/cifar10:predict", json=body)
        assert r.status_code == 200, r.text
        per_row = (len(LAYERS) + 1) * 1024 + 10 + 1
        assert len(r.content) <= 8 * per_row * answers.VALUE_BYTES
        row = r.json()["predictions"][0]
        assert set(row) == {"probabilities", "target_class", "saliency", *(f"gradcam_{n}" for n in LAYERS)}
        assert isinstance(row["target_class"], int) and np.array(row["saliency"]).shape == (32, 32)


def test_render_writes_what_json_writes() -> None:
    rng = np.random.default_rng(0)
    content = {
        "a": rng.random((3, 5, 7), dtype=np.float32),
        "b": [np.float32(0.25), np.int32(7), np.arange(5000, dtype=np.float32), np.zeros((0,), np.float32)],
        "c": {"name": "ünïcode \udcff", "none": None, "flag": True, "n": 3},
        "d": np.array(4, dtype=np.int32),
    }
    plain = {
        "a": content["a"].tolist(),
        "b": [0.25, 7, content["b"][2].tolist(), []],  # type: ignore[index]
        "c": content["c"],
        "d": 4,
    }
    assert render(content) == json.dumps(plain, separators=(",", ":")).encode()


def test_render_refuses_nan_as_json_does() -> None:
    with pytest.raises(ValueError):
        render({"x": np.array([np.nan], dtype=np.float32)})


def _v2(outputs: list[dict[str, object]], images: int = 1) -> dict[str, object]:
    b64 = base64.b64encode(png_bytes(NOISE)).decode()
    return {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [images], "data": [b64] * images}],
        "outputs": outputs,
    }


async def test_v2_outputs_named_twice_are_refused(fake_model: Path) -> None:
    """The Open Inference Protocol's route had the same hole: `outputs` naming `stem`
    90 times (a 3 KB body) asked for 90 copies of the layer."""
    async with serving(make_settings(fake_model), fake_loader) as client:
        r = await client.post("/v2/models/cifar10/infer", json=_v2([{"name": "stem"}] * 90))
        assert r.status_code == 400, r.text
        assert "more than once" in r.json()["error"]


async def test_v2_answers_over_the_cap_are_refused_and_binary_ones_counted_as_such(fake_model: Path) -> None:
    # stem is 32x32x8 = 8,192 values an image: 64 images in JSON are ~12.6 MB, in binary ~2 MB.
    async with serving(make_settings(fake_model, max_answer_bytes=4 << 20), fake_loader) as client:
        r = await client.post("/v2/models/cifar10/infer", json=_v2([{"name": "stem"}], images=64))
        assert r.status_code == 400, r.text
        assert "CIFAR10_MAX_ANSWER_BYTES" in r.json()["error"]
        binary = [{"name": "stem", "parameters": {"binary_data": True}}]
        r = await client.post("/v2/models/cifar10/infer", json=_v2(binary, images=64))
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("length", ["٣".encode(), b"03", b"9" * 5000, b"-1"])
async def test_v2_header_length_is_a_strict_number(fake_model: Path, length: bytes) -> None:
    """The header was checked with isdigit() and read with int(): 5,000 nines passed the
    check and made int() raise (over Python's 4,300 digits), a 500."""
    async with serving(make_settings(fake_model), fake_loader) as client:
        body = json.dumps(_v2([{"name": "probabilities"}])).encode()
        r = await client.post(
            "/v2/models/cifar10/infer",
            content=body,
            headers={"Inference-Header-Content-Length": length, "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 400, r.text
        assert "Inference-Header-Content-Length" in r.json()["error"]
