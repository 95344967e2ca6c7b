"""The Open Inference Protocol over REST (/v2) on the fake runtime: metadata, health,
inference with JSON and binary tensor data against /predict, the outputs by name, and
every bad input answered with the protocol's error shape while the service keeps
serving. The real client (tritonclient) against a real server: tests/e2e/test_protocol_clients.py."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from tests.app.conftest import make_settings, serving
from tests.app.fake_model import fake_loader, fake_loader_without_explain
from tests.helpers import png_bytes

pytestmark = pytest.mark.anyio
IMAGES = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
INFER = "/v2/models/cifar10/infer"


@pytest.fixture(scope="module")
async def client(fake_model):
    async with serving(make_settings(fake_model, max_images_per_request=8), fake_loader) as c:
        yield c


def uint8_input(images: np.ndarray, binary: bool) -> tuple[dict, bytes]:
    spec = {"name": "image", "datatype": "UINT8", "shape": list(images.shape)}
    if binary:
        return {**spec, "parameters": {"binary_data_size": images.size}}, images.tobytes()
    return {**spec, "data": images.reshape(-1).tolist()}, b""


def binary_body(inputs: list[dict], parts: bytes, outputs: list[dict] | None = None) -> tuple[bytes, dict]:
    head = json.dumps({"inputs": inputs, **({"outputs": outputs} if outputs else {})}).encode()
    return head + parts, {"Inference-Header-Content-Length": str(len(head))}


def outputs_of(response) -> dict[str, np.ndarray]:
    """Every output of a v2 response, JSON or binary, as arrays."""
    length = response.headers.get("inference-header-content-length")
    head = json.loads(response.content[: int(length)] if length else response.content)
    rest, arrays = response.content[int(length) :] if length else b"", {}
    for out in head["outputs"]:
        dtype = {"FP32": "<f4", "INT32": "<i4"}[out["datatype"]]
        if "data" in out:
            arrays[out["name"]] = np.asarray(out["data"], dtype=dtype).reshape(out["shape"])
        else:
            size = out["parameters"]["binary_data_size"]
            arrays[out["name"]] = np.frombuffer(rest[:size], dtype=dtype).reshape(out["shape"])
            rest = rest[size:]
    assert rest == b""
    return arrays


async def predicted(client, images: np.ndarray) -> np.ndarray:
    files = [("files", (f"{i}.png", png_bytes(image), "image/png")) for i, image in enumerate(images)]
    r = await client.post("/predict", files=files)
    assert r.status_code == 200
    classes = [p for p in r.json()["predictions"]]
    return np.asarray([[p["probabilities"][c] for c in p["probabilities"]] for p in classes], dtype=np.float32)


async def test_server_metadata_health_and_model_metadata(client) -> None:
    r = await client.get("/v2")
    assert r.status_code == 200
    assert r.json()["extensions"] == ["binary_tensor_data"]
    assert (await client.get("/v2/health/live")).status_code == 200
    assert (await client.get("/v2/health/ready")).status_code == 200
    for path in ("/v2/models/cifar10", "/v2/models/cifar10/versions/1"):
        r = await client.get(path)
        assert r.status_code == 200
        meta = r.json()
        assert meta["versions"] == ["1"]
        assert meta["inputs"][0] == {"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}
        names = [o["name"] for o in meta["outputs"]]
        assert names[0] == "probabilities" and "saliency" in names and "target_class" in names
        assert (await client.get(path + "/ready")).status_code == 200


@pytest.mark.parametrize("binary", [pytest.param(False, id="json"), pytest.param(True, id="binary")])
async def test_inference_matches_predict(client, binary: bool) -> None:
    spec, parts = uint8_input(IMAGES, binary)
    outputs = [{"name": "probabilities", "parameters": {"binary_data": binary}}]
    body, headers = binary_body([spec], parts, outputs) if binary else (None, {})
    r = await (
        client.post(INFER, content=body, headers=headers)
        if binary
        else client.post(INFER, json={"id": "a1", "inputs": [spec], "outputs": outputs})
    )
    assert r.status_code == 200
    assert ("inference-header-content-length" in r.headers) is binary
    got = outputs_of(r)["probabilities"]
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, await predicted(client, IMAGES), atol=1e-6)
    if not binary:
        assert r.json()["id"] == "a1" and r.json()["model_version"] == "1"


@pytest.mark.parametrize("binary", [pytest.param(False, id="json-base64"), pytest.param(True, id="binary")])
async def test_image_files_as_bytes_are_decoded_like_uploads(client, binary: bool) -> None:
    files = [png_bytes(image) for image in IMAGES]
    if binary:
        serialized = b"".join(struct.pack("<I", len(f)) + f for f in files)
        spec = {"name": "image", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": len(serialized)}}
        body, headers = binary_body([spec], serialized)
        r = await client.post(INFER, content=body, headers=headers)
    else:
        data = [base64.b64encode(f).decode() for f in files]
        r = await client.post(
            INFER, json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3, 1], "data": data}]}
        )
    assert r.status_code == 200
    np.testing.assert_allclose(outputs_of(r)["probabilities"], await predicted(client, IMAGES), atol=1e-6)


async def test_feature_maps_and_explanations_by_name(client) -> None:
    spec, parts = uint8_input(IMAGES[:2], binary=True)
    target = {"name": "target_class", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": 8}}
    outputs = [
        {"name": n, "parameters": {"binary_data": True}} for n in ("stem", "saliency", "target_class", "probabilities")
    ]
    body, headers = binary_body([spec, target], parts + np.asarray([3, -1], "<i4").tobytes(), outputs)
    r = await client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200
    got = outputs_of(r)
    assert list(got) == ["stem", "saliency", "target_class", "probabilities"]
    assert got["stem"].shape[0] == 2 and got["saliency"].shape == (2, 32, 32)
    assert got["target_class"][0] == 3
    assert got["target_class"][1] == int(np.argmax(got["probabilities"][1]))
    explained = await client.post(
        "/v1/models/cifar10:predict",
        json={"signature_name": "explain", "instances": [{"image": IMAGES[0].tolist(), "target_class": 3}]},
    )
    assert explained.status_code == 200
    np.testing.assert_allclose(got["saliency"][0], explained.json()["predictions"][0]["saliency"], atol=1e-6)


def _json(inputs: list[dict], **extra) -> dict:
    return {"json": {"inputs": inputs, **extra}}


GOOD = {"name": "image", "datatype": "UINT8", "shape": [1, 32, 32, 3], "data": [0] * 3072}
BAD = [
    pytest.param(_json([{**GOOD, "datatype": "FP32"}]), 400, "got FP32", id="wrong-dtype"),
    pytest.param(_json([{**GOOD, "shape": [1, 32, 32]}]), 400, "[N, 32, 32, 3]", id="wrong-shape"),
    pytest.param(_json([{**GOOD, "shape": [0, 32, 32, 3], "data": []}]), 400, "no elements", id="zero-length"),
    pytest.param(_json([{**GOOD, "shape": [10**15, 32, 32, 3]}]), 413, "at most 8", id="huge-declared-shape"),
    pytest.param(_json([{**GOOD, "data": [0] * 3071}]), 400, "3072 whole numbers", id="too-few-values"),
    pytest.param(_json([{**GOOD, "data": [256] * 3072}]), 400, "0..255", id="out-of-range"),
    pytest.param(_json([GOOD], outputs=[{"name": "logits"}]), 400, "unknown output(s) 'logits'", id="unknown-output"),
    pytest.param(_json([{**GOOD, "name": "pixels"}]), 400, "unknown input 'pixels'", id="unknown-input"),
    pytest.param(_json([]), 400, "non-empty 'inputs'", id="no-inputs"),
    pytest.param({"content": b"{not json"}, 400, "not valid JSON", id="not-json"),
    pytest.param(
        {
            "content": b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 32, 32, 3], '
            b'"parameters": {"binary_data_size": 3072}}]}' + bytes(100),
            "headers": {"Inference-Header-Content-Length": "110"},
        },
        400,
        "",
        id="header-length-inside-json",
    ),
    pytest.param(
        {
            "content": (
                h := b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 32, 32, 3], '
                b'"parameters": {"binary_data_size": 3072}}]}'
            )
            + bytes(1000),
            "headers": {"Inference-Header-Content-Length": str(len(h))},
        },
        400,
        "truncated",
        id="truncated-binary-part",
    ),
    pytest.param(
        {"content": b"{}", "headers": {"Inference-Header-Content-Length": "99"}},
        400,
        "holds 2 bytes",
        id="header-longer-than-body",
    ),
]


@pytest.mark.parametrize(("request_kwargs", "status", "says"), BAD)
async def test_bad_inputs_get_the_protocols_error_and_the_service_keeps_serving(
    client, request_kwargs, status, says
) -> None:
    r = await client.post(INFER, **request_kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert says in body["error"]
    ok = await client.post(INFER, json={"inputs": [GOOD]})
    assert ok.status_code == 200


async def test_not_found_uses_the_protocols_shape_and_other_routes_keep_theirs(client) -> None:
    r = await client.get("/v2/models/nope")
    assert r.status_code == 404
    assert r.json() == {"error": "model 'nope' is not served here; served: cifar10"}
    r = await client.post("/v2/models/cifar10/versions/7/infer", json={"inputs": [GOOD]})
    assert r.status_code == 404 and "does not serve version 7" in r.json()["error"]
    r = await client.post("/v1/models/nope:predict", json={"instances": [IMAGES[0].tolist()]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_explanations_of_a_version_without_them_say_why(fake_model) -> None:
    async with serving(make_settings(fake_model), fake_loader_without_explain) as c:
        r = await c.post(INFER, json={"inputs": [GOOD], "outputs": [{"name": "saliency"}]})
        assert r.status_code == 400
        assert "without the 'explain' signature" in r.json()["error"]
        meta = (await c.get("/v2/models/cifar10")).json()
        assert "saliency" not in [o["name"] for o in meta["outputs"]]


async def test_api_keys_and_metrics_on_v2(fake_model) -> None:
    async with serving(make_settings(fake_model, api_keys="k1"), fake_loader) as c:
        r = await c.post(INFER, json={"inputs": [GOOD]})
        assert r.status_code == 401 and "API key" in r.json()["error"]
        assert (await c.get("/v2/health/ready")).status_code == 200  # probes need no key
        r = await c.post(INFER, json={"inputs": [GOOD]}, headers={"Authorization": "Bearer k1"})
        assert r.status_code == 200
        metrics = (await c.get("/metrics", headers={"X-API-Key": "k1"})).text
    assert 'endpoint="/v2/models/{model_name}/infer",method="POST",protocol="v2-rest",status="401"' in metrics
