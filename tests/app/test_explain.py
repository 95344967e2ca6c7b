"""POST /explain and the TF Serving route's explain signature, on the fake runtime
(tests/app/fake_model.py): validation, both formats, batching, and a model without
the signature. The real signature is checked in tests/training/test_explain.py."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from app.imaging.overlay import COLORMAP, colorize, overlay
from app.web.schemas import ExplainResponse
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import LAYERS, fake_loader, fake_loader_without_explain
from tests.helpers import png_bytes

pytestmark = pytest.mark.anyio

PIXELS = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
MAPS = [f"gradcam_{name}" for name in LAYERS] + ["saliency"]


@pytest.fixture(scope="module")
async def client(fake_model):
    async with serving(make_settings(fake_model), fake_loader) as c:
        yield c


def upload(pixels: np.ndarray = PIXELS) -> dict:
    return {"file": ("x.png", png_bytes(pixels), "image/png")}


def assert_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return str(body["error"]["message"])


async def test_json_has_every_map_with_an_overlay_for_the_top_class(client) -> None:
    r = await client.post("/explain", files=upload())
    assert r.status_code == 200, r.text
    body = r.json()
    assert ExplainResponse.model_validate(body).model_dump(mode="json") == body
    assert [m["name"] for m in body["maps"]] == MAPS
    assert body["maps"][-2]["layer"] == "block3" and body["maps"][-1]["method"] == "saliency"
    target = body["target"]
    assert target["requested"] is False
    assert target["class_id"] == body["prediction"]["class_id"] and target["label"] == body["prediction"]["label"]
    for m in body["maps"]:
        values = np.array(m["values"])
        assert values.shape == (32, 32) and values.min() >= 0 and values.max() <= 1
        png = Image.open(io.BytesIO(base64.b64decode(m["overlay_png_base64"])))
        assert png.size == (256, 256) and png.mode == "RGB"


@pytest.mark.parametrize("value, class_id", [pytest.param("cat", 3, id="name"), pytest.param("9", 9, id="id")])
async def test_a_chosen_class_changes_the_maps(client, value: str, class_id: int) -> None:
    top = (await client.post("/explain", files=upload())).json()
    r = await client.post("/explain", files=upload(), params={"class": value, "map": "saliency"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["target"] == {
        "class_id": class_id,
        "label": body["target"]["label"],
        "probability": body["prediction"]["probabilities"][body["target"]["label"]],
        "requested": True,
    }
    assert [m["name"] for m in body["maps"]] == ["saliency"]
    if class_id != top["target"]["class_id"]:
        assert body["maps"][0]["values"] != top["maps"][-1]["values"]


async def test_png_is_the_chosen_overlay_scaled_up(client) -> None:
    r = await client.post("/explain", files=upload(), params={"format": "png", "class": "ship", "scale": 4})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-map"] == "gradcam_block3" and r.headers["x-target-label"] == "ship"
    assert r.headers["x-target-class"] == "8"
    assert Image.open(io.BytesIO(r.content)).size == (128, 128)
    r = await client.post("/explain", files=upload(), params={"format": "png", "map": "gradcam_stem"})
    assert r.status_code == 200 and r.headers["x-map"] == "gradcam_stem"


@pytest.mark.parametrize(
    "params, needle",
    [
        pytest.param({"class": "unicorn"}, "unknown class", id="unknown-class-name"),
        pytest.param({"class": "10"}, "unknown class", id="class-id-too-large"),
        pytest.param({"class": "-1"}, "unknown class", id="negative-class-id"),
        pytest.param({"map": "gradcam_conv9"}, "unknown map", id="unknown-map"),
        pytest.param({"format": "gif"}, "format", id="bad-format"),
        pytest.param({"scale": "0"}, "scale", id="bad-scale"),
        pytest.param({"klass": "cat"}, "unknown query parameter", id="unknown-parameter"),
    ],
)
async def test_bad_parameters_are_422(client, params: dict, needle: str) -> None:
    message = assert_error(await client.post("/explain", files=upload(), params=params), 422, "invalid_request")
    assert needle in message


async def test_concurrent_requests_share_batches(client) -> None:
    import asyncio

    images = [np.full((32, 32, 3), v, np.uint8) for v in (10, 120, 240)]
    bodies = await asyncio.gather(*(client.post("/explain", files=upload(p)) for p in images))
    values = [np.array(r.json()["maps"][0]["values"]) for r in bodies]
    # Each image gets its own maps (the fake's maps follow brightness), whatever the batch.
    assert values[0].mean() < values[1].mean() < values[2].mean()


async def test_tf_serving_route_answers_the_explain_signature(client) -> None:
    body = {
        "signature_name": "explain",
        "instances": [
            {"b64": base64.b64encode(png_bytes(PIXELS)).decode()},
            {"image": PIXELS.tolist(), "target_class": 4},
        ],
    }
    r = await client.post("/v1/models/cifar10:predict", content=json.dumps(body))
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert set(first) == {"probabilities", "target_class", *MAPS}
    assert second["target_class"] == 4 and first["target_class"] == int(np.argmax(first["probabilities"]))
    assert np.array(first["gradcam_block3"]).shape == (32, 32)
    columnar = {"signature_name": "explain", "inputs": {"image": [PIXELS.tolist()], "target_class": [4]}}
    r = await client.post("/v1/models/cifar10:predict", content=json.dumps(columnar))
    assert r.status_code == 200 and r.json()["predictions"][0]["saliency"] == second["saliency"]


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param({"image": PIXELS.tolist(), "target_class": 10}, id="class-too-large"),
        pytest.param({"image": PIXELS.tolist(), "target_class": "cat"}, id="class-not-an-int"),
        pytest.param({"image": PIXELS.tolist(), "target_class": True}, id="class-a-bool"),
    ],
)
async def test_tf_serving_explain_rejects_bad_targets(client, instance: dict) -> None:
    body = {"signature_name": "explain", "instances": [instance]}
    r = await client.post("/v1/models/cifar10:predict", content=json.dumps(body))
    assert "target_class" in assert_error(r, 422, "invalid_request")


async def test_target_class_is_only_for_explain(client) -> None:
    body = {"instances": [{"image": PIXELS.tolist(), "target_class": 1}]}
    r = await client.post("/v1/models/cifar10:predict", content=json.dumps(body))
    assert_error(r, 422, "invalid_request")


async def test_a_model_without_the_signature_says_so(fake_model) -> None:
    async with serving(make_settings(fake_model), fake_loader_without_explain) as client:
        assert (await client.post("/predict", files=upload())).status_code == 200
        message = assert_error(await client.post("/explain", files=upload()), 400, "explain_unavailable")
        assert "'explain' signature" in message
        body = {"signature_name": "explain", "instances": [PIXELS.tolist()]}
        r = await client.post("/v1/models/cifar10:predict", content=json.dumps(body))
        assert_error(r, 400, "explain_unavailable")


def test_overlay_colours_the_map_over_the_image() -> None:
    heat = np.zeros((32, 32), np.float32)
    heat[:, 16:] = 1.0
    out = overlay(np.zeros((32, 32, 3), np.uint8), heat, scale=2)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # Hot pixels are mostly the map's top colour; cold ones only tinted.
    assert np.abs(out[0, 63].astype(int) - COLORMAP[255] * 0.7).max() <= 1
    assert out[0, 0].sum() < out[0, 63].sum()
    assert colorize(np.array([[-1.0, 2.0]])).tolist() == [[COLORMAP[0].tolist(), COLORMAP[255].tolist()]]


async def test_openapi_documents_the_route(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    route = spec["paths"]["/explain"]["post"]
    assert {p["name"] for p in route["parameters"]} == {"class", "format", "map", "scale", "top_k", "model", "version"}
    body = route["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["additionalProperties"] is False
    assert {"400", "422", "429", "503"} <= set(route["responses"])
    assert "image/png" in route["responses"]["200"]["content"]
    tf = spec["paths"]["/v1/models/{model_name}:predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "explain" in tf["schema"]["properties"]["signature_name"]["enum"]
