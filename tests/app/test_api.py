"""API tests through httpx on `create_app(test_settings)`, with the fake runtime of
tests/app/fake_model.py: the service's code as in production, no TensorFlow. The
real SavedModel is served in tests/app/test_model_name.py, test_front.py and e2e/."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from app.web.schemas import FeatureMapsResponse, PredictResponse, TFServingResponse
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import fake_loader
from tests.helpers import assert_error, png_bytes

pytestmark = pytest.mark.anyio

RNG = np.random.default_rng(42)
PIXELS = [RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]


@pytest.fixture(scope="module")
async def client(fake_model):
    settings = make_settings(fake_model, max_upload_bytes=256 * 1024, max_images_per_request=4)
    async with serving(settings, fake_loader) as c:
        yield c


async def test_health_and_readiness(client) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"


async def test_predict_one_file(client) -> None:
    r = await client.post("/predict", files={"file": ("a.png", png_bytes(PIXELS[0]), "image/png")}, params={"top_k": 5})
    assert r.status_code == 200
    body = r.json()
    # The routes build plain dicts for speed: the documented schema must still hold.
    assert PredictResponse.model_validate(body).model_dump(mode="json") == body
    assert body["model"] == {"name": "cifar10", "version": "1"}
    (pred,) = body["predictions"]
    assert pred["filename"] == "a.png"
    assert abs(sum(pred["probabilities"].values()) - 1.0) < 1e-4
    assert len(pred["top_k"]) == 5
    probs = [t["probability"] for t in pred["top_k"]]
    assert probs == sorted(probs, reverse=True)
    assert pred["top_k"][0]["label"] == pred["label"]
    assert list(pred["probabilities"])[pred["class_id"]] == pred["label"]


async def test_predict_many_files_keeps_upload_order(client) -> None:
    files = [("files", (f"{i}.png", png_bytes(p), "image/png")) for i, p in enumerate(PIXELS)]
    r = await client.post("/predict", files=files)
    assert r.status_code == 200
    many = r.json()["predictions"]
    assert [p["filename"] for p in many] == ["0.png", "1.png", "2.png", "3.png"]
    for i, pixels in enumerate(PIXELS):
        single = (await client.post("/predict", files={"file": ("x.png", png_bytes(pixels), "image/png")})).json()
        for name, p in single["predictions"][0]["probabilities"].items():
            assert abs(p - many[i]["probabilities"][name]) < 1e-5


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        pytest.param({"file": ("e.png", b"", "image/png")}, 422, "invalid_image", id="empty-file"),
        pytest.param({"file": ("t.txt", b"just text", "text/plain")}, 415, "unsupported_image", id="not-an-image"),
        pytest.param({"other": ("a.png", png_bytes(PIXELS[0]), "image/png")}, 422, "invalid_request", id="wrong-field"),
        pytest.param(
            [("files", (f"{i}.png", png_bytes(PIXELS[0]), "image/png")) for i in range(5)],
            413,
            "payload_too_large",
            id="too-many-files",
        ),
    ],
)
async def test_predict_bad_uploads(client, files, status: int, code: str) -> None:
    r = await client.post("/predict", files=files)
    assert_error(r, status, code)
    # ...and the service keeps serving.
    ok = await client.post("/predict", files={"file": ("a.png", png_bytes(PIXELS[0]), "image/png")})
    assert ok.status_code == 200


async def test_truncated_image(client) -> None:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(buf, format="JPEG")
    r = await client.post("/predict", files={"file": ("cut.jpg", buf.getvalue()[:3000], "image/jpeg")})
    assert_error(r, 422, "invalid_image")


async def test_decompression_bomb(client) -> None:
    buf = io.BytesIO()
    Image.new("L", (10000, 10000)).save(buf, format="PNG")
    r = await client.post("/predict", files={"file": ("bomb.png", buf.getvalue(), "image/png")})
    assert_error(r, 413, "image_too_large")


async def test_body_over_limit_by_content_length(client) -> None:
    r = await client.post("/predict", files={"file": ("big.bin", b"\0" * (300 * 1024), "image/png")})
    assert_error(r, 413, "payload_too_large")


async def test_body_over_limit_while_streaming(client) -> None:
    boundary = "xyz"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\nContent-Type: image/png\r\n\r\n'.encode()

    async def body():
        yield head
        for _ in range(40):
            yield b"\0" * 16384
        yield f"\r\n--{boundary}--\r\n".encode()

    r = await client.post(
        "/predict", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_error(r, 413, "payload_too_large")


async def test_not_multipart(client) -> None:
    r = await client.post("/predict", content=b"{}", headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_request")


@pytest.mark.parametrize("top_k", ["0", "11", "abc"])
async def test_bad_top_k(client, top_k: str) -> None:
    r = await client.post(
        "/predict", params={"top_k": top_k}, files={"file": ("a.png", png_bytes(PIXELS[0]), "image/png")}
    )
    error = assert_error(r, 422, "invalid_request")
    assert "top_k" in error["message"]


async def test_feature_maps_json_all_layers(client) -> None:
    r = await client.post("/feature-maps", files={"file": ("a.png", png_bytes(PIXELS[1]), "image/png")})
    assert r.status_code == 200
    body = r.json()
    FeatureMapsResponse.model_validate(body)
    info = (await client.get("/v1/models/cifar10")).json()
    assert [(layer["name"], layer["shape"]) for layer in body["layers"]] == [
        (layer["name"], layer["shape"]) for layer in info["layers"]
    ]
    for layer in body["layers"]:
        assert np.asarray(layer["values"]).shape == tuple(layer["shape"])
    model_input = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["input_png_base64"]))))
    np.testing.assert_array_equal(model_input, PIXELS[1])
    predicted = (await client.post("/predict", files={"file": ("a.png", png_bytes(PIXELS[1]), "image/png")})).json()
    assert body["prediction"]["label"] == predicted["predictions"][0]["label"]


async def test_feature_maps_selected_layers(client) -> None:
    r = await client.post(
        "/feature-maps", params={"layers": "block2,stem"}, files={"file": ("a.png", png_bytes(PIXELS[1]), "image/png")}
    )
    assert r.status_code == 200
    assert [layer["name"] for layer in r.json()["layers"]] == ["block2", "stem"]


async def test_feature_maps_unknown_layer_lists_valid_ones(client) -> None:
    r = await client.post(
        "/feature-maps", params={"layers": "conv9"}, files={"file": ("a.png", png_bytes(PIXELS[1]), "image/png")}
    )
    error = assert_error(r, 422, "invalid_request")
    assert "conv9" in error["message"] and "stem, block1, block2, block3" in error["message"]


async def test_feature_maps_png(client) -> None:
    r = await client.post(
        "/feature-maps",
        params={"format": "png", "layer": "block1"},
        files={"file": ("a.png", png_bytes(PIXELS[1]), "image/png")},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.mode == "L" and r.headers["x-layer"] == "block1"
    # 8 channels of 16x16 zoomed to 32x32 cells in a 3x3 grid with 1-pixel gaps.
    assert img.size == (3 * 32 + 2, 3 * 32 + 2)


async def test_feature_maps_takes_one_file(client) -> None:
    files = [("file", (f"{i}.png", png_bytes(p), "image/png")) for i, p in enumerate(PIXELS[:2])]
    r = await client.post("/feature-maps", files=files)
    assert_error(r, 413, "payload_too_large")
    # ...in the field 'file' only, as the OpenAPI schema says.
    r = await client.post("/feature-maps", files=[("files", ("a.png", png_bytes(PIXELS[0]), "image/png"))])
    assert_error(r, 422, "invalid_request")


async def test_tf_serving_formats_agree_with_predict(client) -> None:
    direct = (await client.post("/predict", files={"file": ("a.png", png_bytes(PIXELS[2]), "image/png")})).json()
    expected = list(direct["predictions"][0]["probabilities"].values())
    bodies = [
        {"instances": [PIXELS[2].tolist()]},
        {"instances": [{"image": PIXELS[2].tolist()}]},
        {"instances": [{"b64": base64.b64encode(png_bytes(PIXELS[2])).decode()}]},
        {"inputs": {"image": [PIXELS[2].tolist()]}},
        {"signature_name": "serving_default", "inputs": [PIXELS[2].tolist()]},
    ]
    for body in bodies:
        r = await client.post("/v1/models/cifar10:predict", json=body)
        assert r.status_code == 200, r.text
        TFServingResponse.model_validate(r.json())
        (row,) = r.json()["predictions"]
        np.testing.assert_allclose(row, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b"{not json", 400, "invalid_json", id="malformed"),
        pytest.param(b"[1, 2]", 400, "invalid_json", id="not-an-object"),
        pytest.param(b'{"instances": []}', 400, "invalid_json", id="empty-instances"),
        pytest.param(b'{"instances": [[1, 2, 3]]}', 422, "invalid_request", id="wrong-shape"),
        pytest.param(
            json.dumps({"instances": [np.full((32, 32, 3), 300).tolist()]}).encode(),
            422,
            "invalid_request",
            id="out-of-range",
        ),
        pytest.param(
            json.dumps({"instances": [np.full((32, 32, 3), 0.5).tolist()]}).encode(),
            422,
            "invalid_request",
            id="fractional",
        ),
        pytest.param(b'{"instances": [{"b64": "***"}]}', 422, "invalid_request", id="bad-base64"),
        pytest.param(b'{"instances": [{"b64": "aGVsbG8="}]}', 415, "unsupported_image", id="b64-not-image"),
        pytest.param(b'{"instances": [{"x": 1}]}', 422, "invalid_request", id="unknown-key"),
        pytest.param(b'{"instances": [[1]], "signature_name": "other"}', 422, "invalid_request", id="bad-signature"),
        pytest.param(
            json.dumps({"instances": [np.zeros((32, 32, 3), int).tolist()] * 5}).encode(),
            413,
            "payload_too_large",
            id="too-many",
        ),
    ],
)
async def test_tf_serving_bad_bodies(client, body: bytes, status: int, code: str) -> None:
    r = await client.post("/v1/models/cifar10:predict", content=body, headers={"content-type": "application/json"})
    assert_error(r, status, code)


async def test_tf_serving_unknown_model(client) -> None:
    r = await client.post("/v1/models/mnist:predict", json={"instances": [PIXELS[0].tolist()]})
    assert_error(r, 404, "not_found")


async def test_model_info(client) -> None:
    r = await client.get("/v1/models/cifar10")
    assert r.status_code == 200
    info = r.json()
    assert info["version"] == "1"
    assert info["classes"][3] == "cat"
    assert info["input"] == {"name": "image", "dtype": "uint8", "shape": [32, 32, 3]}
    assert [layer["name"] for layer in info["layers"]] == ["stem", "block1", "block2", "block3"]
    assert "val_accuracy" in info["metrics"]
    assert info["model_version_status"][0]["state"] == "AVAILABLE"


async def test_request_id_is_echoed_or_generated(client) -> None:
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.status_code == 200
    assert len(r.headers["x-request-id"]) == 32


async def test_unknown_route_and_method_use_the_error_shape(client) -> None:
    assert_error(await client.get("/nope"), 404, "not_found")
    assert_error(await client.get("/predict"), 405, "method_not_allowed")


async def test_metrics(client) -> None:
    await client.post("/predict", files={"file": ("a.png", png_bytes(PIXELS[0]), "image/png")})
    r = await client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'cifar10_requests_total{endpoint="/predict",method="POST",protocol="http",status="200"}' in text
    for name in (
        "cifar10_request_latency_seconds_bucket",
        "cifar10_batch_size_bucket",
        "cifar10_queue_wait_seconds_bucket",
        "cifar10_model_seconds_bucket",
        'cifar10_queue_depth{batcher="predict"}',
    ):
        assert name in text


async def test_openapi_documents_the_endpoints(client) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/predict", "/feature-maps", "/v1/models/{model_name}:predict", "/healthz", "/readyz"):
        assert path in paths
    assert "multipart/form-data" in paths["/predict"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_api_docs_load_only_local_assets(client, page: str) -> None:
    # Swagger UI and ReDoc must work on an air-gapped host: no CDN, no Google Fonts.
    r = await client.get(page)
    assert r.status_code == 200
    assert "://" not in r.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert assets
    for url in assets:
        assert url.startswith("/docs-assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url


async def test_openapi_matches_behaviour(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]

    def body_schema(path: str, media: str) -> dict:
        return paths[path]["post"]["requestBody"]["content"][media]["schema"]

    predict = body_schema("/predict", "multipart/form-data")
    assert predict["anyOf"] == [{"required": ["file"]}, {"required": ["files"]}]
    assert predict["additionalProperties"] is False
    feature = body_schema("/feature-maps", "multipart/form-data")
    assert set(feature["properties"]) == {"file"} and feature["required"] == ["file"]
    tf = paths["/v1/models/{model_name}:predict"]["post"]
    assert {"400", "404", "413", "415", "422", "429", "503", "504"} <= set(tf["responses"])
    assert "404" in paths["/v1/models/{model_name}"]["get"]["responses"]
    # The documented example is a body the route accepts.
    example = tf["requestBody"]["content"]["application/json"]["example"]
    r = await client.post("/v1/models/cifar10:predict", json=example)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == len(example["instances"])


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        pytest.param("/predict", {"params": {"topk": "5"}}, id="unknown-query"),
        pytest.param("/predict", {"data": {"note": "x"}}, id="unknown-form-field"),
        pytest.param("/feature-maps", {"params": {"layerz": "stem"}}, id="feature-maps-unknown-query"),
    ],
)
async def test_undocumented_inputs_are_refused(client, path: str, kwargs: dict) -> None:
    r = await client.post(path, files={"file": ("a.png", png_bytes(PIXELS[0]), "image/png")}, **kwargs)
    assert_error(r, 422, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"instances": [np.ones((32, 32, 3), bool).tolist()]}, id="booleans"),
        pytest.param({"instances": [PIXELS[0].tolist()], "inputs": [PIXELS[0].tolist()]}, id="instances-and-inputs"),
        pytest.param({"instances": [PIXELS[0].tolist()], "extra": 1}, id="unknown-key"),
    ],
)
async def test_tf_serving_refuses_what_the_schema_forbids(client, body: dict) -> None:
    r = await client.post("/v1/models/cifar10:predict", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert set(r.json()["error"]) == {"code", "message"}
