"""The standard protocols' own clients against `python -m app` on the shipped model, as
their users would call it: TF Serving's Python client exactly as TF Serving's docs show it
(tf.make_tensor_proto, a PredictionServiceStub, a deadline) and tritonclient.http in
binary and JSON modes. Each answer matches /predict within 1e-6; each bad input gets
the protocol's error, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
import tritonclient.http as httpclient
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.utils import InferenceServerException

from scripts.server_process import ServerProcess, free_port, running
from tests.helpers import png_bytes

pytestmark = pytest.mark.slow
IMAGES = np.random.default_rng(11).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    grpc_port = free_port()
    env = {"CIFAR10_GRPC_PORT": str(grpc_port), "CIFAR10_MAX_IMAGES_PER_REQUEST": "16"}
    with running(env, log=tmp_path_factory.mktemp("logs") / "server.log") as started:
        yield started, grpc_port


@pytest.fixture(scope="module")
def expected(server) -> np.ndarray:
    """/predict's probabilities for IMAGES (PNG uploads decode to the same pixels)."""
    files = [("files", (f"{i}.png", png_bytes(image), "image/png")) for i, image in enumerate(IMAGES)]
    r = httpx.post(f"{server[0].url}/predict", files=files, timeout=60)
    assert r.status_code == 200
    return np.asarray([list(p["probabilities"].values()) for p in r.json()["predictions"]], dtype=np.float32)


def test_tf_serving_client_as_its_docs_show_it(server, expected) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server[1]}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "cifar10"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(IMAGES))
    result = stub.Predict(request, 10.0)  # 10 secs timeout
    np.testing.assert_allclose(tf.make_ndarray(result.outputs["probabilities"]), expected, atol=1e-6)

    request.model_spec.signature_name = "explain"
    request.inputs["target_class"].CopyFrom(tf.make_tensor_proto(np.full(len(IMAGES), -1, np.int32)))
    explained = stub.Predict(request, 30.0)
    np.testing.assert_allclose(tf.make_ndarray(explained.outputs["probabilities"]), expected, atol=1e-6)
    assert tf.make_ndarray(explained.outputs["saliency"]).shape == (4, 32, 32)

    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "cifar10"}), 10.0
    )
    assert [v.state for v in status.model_version_status] == [get_model_status_pb2.ModelVersionStatus.AVAILABLE]

    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = "cifar10"
    bad.inputs["image"].CopyFrom(tf.make_tensor_proto(IMAGES.astype(np.float32)))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(bad, 10.0)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "DT_FLOAT" in caught.value.details()
    bad.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(bad, 10.0)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


@pytest.mark.parametrize("binary", [pytest.param(True, id="binary"), pytest.param(False, id="json")])
def test_tritonclient_http(server, expected, binary: bool) -> None:
    client = httpclient.InferenceServerClient(url=server[0].url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cifar10")
    metadata = client.get_model_metadata("cifar10")
    assert metadata["inputs"][0] == {"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}

    pixels = httpclient.InferInput("image", list(IMAGES.shape), "UINT8")
    pixels.set_data_from_numpy(IMAGES, binary_data=binary)
    wanted = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("cifar10", [pixels], outputs=wanted)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)

    if binary:  # BYTES in JSON are UTF-8 strings: image files travel as binary data only
        files = httpclient.InferInput("image", [len(IMAGES)], "BYTES")
        files.set_data_from_numpy(np.array([png_bytes(i) for i in IMAGES], dtype=np.object_), binary_data=True)
        result = client.infer("cifar10", [files], model_version="6")
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)

    maps = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("saliency", "target_class")]
    result = client.infer("cifar10", [pixels], outputs=maps)
    assert result.as_numpy("saliency").shape == (4, 32, 32)
    assert list(result.as_numpy("target_class")) == list(expected.argmax(axis=1))


def _infer_error(client, inputs, outputs=None) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("cifar10", inputs, outputs=outputs)
    return caught.value


def test_tritonclient_errors_and_the_server_keeps_serving(server, expected) -> None:
    client = httpclient.InferenceServerClient(url=server[0].url.removeprefix("http://"))
    floats = httpclient.InferInput("image", list(IMAGES.shape), "FP32")
    floats.set_data_from_numpy(IMAGES.astype(np.float32))
    assert "got FP32" in _infer_error(client, [floats]).message()
    flat = httpclient.InferInput("image", [4, 3072], "UINT8")
    flat.set_data_from_numpy(IMAGES.reshape(4, 3072))
    assert "[N, 32, 32, 3]" in _infer_error(client, [flat]).message()
    empty = httpclient.InferInput("image", [0, 32, 32, 3], "UINT8")
    empty.set_data_from_numpy(IMAGES[:0])
    assert "no elements" in _infer_error(client, [empty]).message()
    pixels = httpclient.InferInput("image", list(IMAGES.shape), "UINT8")
    pixels.set_data_from_numpy(IMAGES)
    error = _infer_error(client, [pixels], [httpclient.InferRequestedOutput("logits")])
    assert error.status() == "400" and "unknown output(s) 'logits'" in error.message()
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("nope")
    assert caught.value.status() == "404"
    # A truncated binary part and a huge declared shape, as raw requests.
    head = (
        b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[4,32,32,3],"parameters":{"binary_data_size":12288}}]}'
    )
    for body, declared in (
        (head + IMAGES.tobytes()[:-7], "truncated"),
        (head.replace(b"[4,", b"[99999999999,"), "at most 16"),
    ):
        r = httpx.post(
            f"{server[0].url}/v2/models/cifar10/infer",
            content=body,
            headers={"Inference-Header-Content-Length": str(len(head) if declared == "truncated" else len(body))},
        )
        assert r.status_code in (400, 413) and declared in r.json()["error"]
    result = client.infer("cifar10", [pixels])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)
