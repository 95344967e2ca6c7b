"""Several models and live versions (issue 16) on the fake runtime: the config file,
TF Serving's status, metadata and classify routes, the poll that swaps versions in
and out, refused versions, and requests in flight across a swap.

The real SavedModel under load, through a real server: tests/reliability/test_model_versions.py."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.serving.classifier import ModelLoadError
from app.serving.model_config import ModelConfigError, read_config_file
from model import contract
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import FakeRuntime, fake_loader, write_fake_model
from tests.helpers import png_bytes

pytestmark = pytest.mark.anyio
IMAGE = png_bytes(np.full((32, 32, 3), 90, dtype=np.uint8))
POLL_S = 0.05


async def eventually(check: Callable[[], object], timeout_s: float = 15.0) -> None:
    """Wait until `check()` is truthy (a poll happens in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def states(client: httpx.AsyncClient, name: str = "cifar10") -> dict[str, str]:
    r = await client.get(f"/v1/models/{name}")
    assert r.status_code == 200, r.text
    return {s["version"]: s["state"] for s in r.json()["model_version_status"]}


@pytest.fixture
def two_models(tmp_path: Path) -> Path:
    """A YAML config serving cifar10 (versions 1, 2; labels) and cifar10-tutorial (version 1)."""
    write_fake_model(tmp_path / "models" / "cifar10", 1)
    write_fake_model(tmp_path / "models" / "cifar10", 2)
    write_fake_model(tmp_path / "models" / "cifar10-tutorial", 1)
    config = tmp_path / "models.yaml"
    config.write_text(
        "model_config_list:\n"
        "  - name: cifar10\n"
        "    base_path: models/cifar10\n"
        "    model_version_policy: {all: {}}\n"
        "    version_labels: {stable: 1, canary: 2}\n"
        "  - name: cifar10-tutorial\n"
        "    base_path: models/cifar10-tutorial\n"
    )
    return config


async def test_config_file_serves_several_models(two_models: Path) -> None:
    async with serving(make_settings(two_models.parent / "unused", model_config_file=two_models), fake_loader) as c:
        listing = (await c.get("/v1/models")).json()
        assert listing["default"] == "cifar10"
        assert [m["name"] for m in listing["models"]] == ["cifar10", "cifar10-tutorial"]
        assert await states(c) == {"2": "AVAILABLE", "1": "AVAILABLE"}
        status = await c.get("/v1/models/cifar10/labels/stable")
        assert status.status_code == 200
        assert status.json()["model_version_status"] == [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
        assert status.json()["version"] == "1"
        for query, served in [
            ("", ("cifar10", "2")),
            ("?version=1", ("cifar10", "1")),
            ("?model=cifar10-tutorial", ("cifar10-tutorial", "1")),
        ]:
            r = await c.post(f"/predict{query}", files={"file": ("a.png", IMAGE, "image/png")})
            assert r.status_code == 200, r.text
            assert (r.json()["model"]["name"], r.json()["model"]["version"]) == served
        r = await c.post("/feature-maps?model=cifar10&version=1&layers=stem", files={"file": ("a.png", IMAGE)})
        assert r.status_code == 200
        assert r.json()["model"] == {"name": "cifar10", "version": "1"}
        body = {"instances": [np.zeros((32, 32, 3), int).tolist()]}
        for path in (
            "/v1/models/cifar10-tutorial",
            "/v1/models/cifar10/versions/1",
            "/v1/models/cifar10/labels/canary",
        ):
            r = await c.post(f"{path}:predict", json=body)
            assert r.status_code == 200, (path, r.text)
            assert len(r.json()["predictions"][0]) == 10


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/v1/models/mnist", 404, "not_found", id="unknown-model"),
        pytest.param("GET", "/v1/models/cifar10/versions/7", 404, "not_found", id="unknown-version"),
        pytest.param("GET", "/v1/models/cifar10/versions/x", 404, "not_found", id="non-numeric-version"),
        pytest.param("GET", "/v1/models/cifar10/labels/beta", 404, "not_found", id="unknown-label"),
        pytest.param("GET", "/v1/models/cifar10/versions/7/metadata", 404, "not_found", id="metadata-unknown"),
        pytest.param("POST", "/v1/models/cifar10/versions/7:predict", 404, "not_found", id="predict-unknown"),
        pytest.param("POST", "/v1/models/cifar10/labels/beta:classify", 404, "not_found", id="classify-label"),
        pytest.param("POST", "/predict?model=mnist", 404, "not_found", id="query-model"),
        pytest.param("POST", "/predict?version=9", 404, "not_found", id="query-version"),
        pytest.param("POST", "/predict?version=latest", 422, "invalid_request", id="query-version-text"),
        pytest.param("POST", "/feature-maps?version=-1", 422, "invalid_request", id="query-version-negative"),
    ],
)
async def test_unknown_models_versions_and_labels(
    two_models: Path, method: str, path: str, status: int, code: str
) -> None:
    async with serving(make_settings(two_models, model_config_file=two_models), fake_loader) as c:
        if method == "GET":
            r = await c.get(path)
        elif ":" in path:
            r = await c.post(path, json={"instances": [np.zeros((32, 32, 3), int).tolist()]})
        else:
            r = await c.post(path, files={"file": ("a.png", IMAGE, "image/png")})
        assert_error(r, status, code)
        assert (await c.get("/readyz")).status_code == 200  # and it keeps serving


async def test_metadata_and_classify(fake_model: Path) -> None:
    async with serving(make_settings(fake_model), fake_loader) as c:
        r = await c.get("/v1/models/cifar10/versions/1/metadata")
        assert r.status_code == 200
        meta = r.json()
        assert meta["model_spec"] == {"name": "cifar10", "signature_name": "", "version": "1"}
        signature = meta["metadata"]["signature_def"]["signature_def"][contract.SERVING_SIGNATURE]
        image = signature["inputs"][contract.INPUT_NAME]
        assert image["dtype"] == "DT_UINT8"
        assert [d["size"] for d in image["tensor_shape"]["dim"]] == ["-1", "32", "32", "3"]
        assert signature["method_name"] == "tensorflow/serving/predict"

        pixels = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).tolist()
        predicted = (await c.post("/v1/models/cifar10:predict", json={"instances": pixels})).json()["predictions"]
        r = await c.post("/v1/models/cifar10:classify", json={"examples": [{"image": p} for p in pixels]})
        assert r.status_code == 200, r.text
        for pairs, probabilities in zip(r.json()["result"], predicted, strict=True):
            assert len(pairs) == 10
            scores = [s for _, s in pairs]
            assert scores == sorted(scores, reverse=True)
            assert dict(pairs)[pairs[0][0]] == pytest.approx(max(probabilities))
        assert_error(await c.post("/v1/models/cifar10:classify", json={"instances": pixels}), 400, "invalid_json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("model_config_list: []", "at least 1", id="empty"),
        pytest.param("model_config_list: [{name: a}]", "base_path", id="no-base-path"),
        pytest.param("model_config_list: [{name: 'a b', base_path: x}]", "pattern", id="bad-name"),
        pytest.param(
            "model_config_list: [{name: a, base_path: x}, {name: a, base_path: y}]", "unique", id="duplicate-names"
        ),
        pytest.param(
            "model_config_list: [{name: a, base_path: x, model_version_policy: {all: {}, latest: {}}}]",
            "choose one",
            id="two-policies",
        ),
        pytest.param(
            "model_config_list: [{name: a, base_path: x, model_version_policy: {specific: {versions: [1]}},"
            " version_labels: {stable: 2}}]",
            "labels point at versions",
            id="label-outside-policy",
        ),
        pytest.param("model_config_list: [{name: a, base_path: x, colour: red}]", "Extra inputs", id="unknown-key"),
        pytest.param("model_config_list: [", "not valid YAML", id="not-yaml"),
    ],
)
def test_bad_config_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ModelConfigError, match=message):
        read_config_file(path)


async def test_config_file_json_and_startup_errors(tmp_path: Path) -> None:
    write_fake_model(tmp_path / "m", 3)
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"model_config_list": [{"name": "m", "base_path": "m"}]}))
    (spec,) = read_config_file(path)
    assert spec.base_path == (tmp_path / "m").absolute()
    assert spec.model_version_policy.select({1, 3, 2}) == {3}
    path.write_text(json.dumps({"model_config_list": [{"name": "m", "base_path": "elsewhere"}]}))
    with pytest.raises(ModelLoadError, match="does not exist"):
        async with LifespanManager(create_app(make_settings(tmp_path, model_config_file=path), fake_loader)):
            pass


def copy_version(model_dir: Path, source: int, target: int) -> None:
    shutil.copytree(model_dir / str(source), model_dir / str(target))


async def test_poll_swaps_in_new_versions_and_refuses_broken_ones(tmp_path: Path) -> None:
    model_dir = write_fake_model(tmp_path / "cifar10", 1)
    async with serving(make_settings(model_dir, model_poll_s=POLL_S), fake_loader) as c:
        assert await states(c) == {"1": "AVAILABLE"}
        copy_version(model_dir, 1, 2)
        await eventually(lambda: (model_dir / "2").exists())
        await eventually_states(c, {"2": "AVAILABLE", "1": "END"})
        r = await c.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        assert r.json()["model"]["version"] == "2"

        # A version that breaks the contract (5 classes) is refused; 2 keeps serving.
        copy_version(model_dir, 1, 3)
        (model_dir / "3" / "assets" / contract.LABELS_FILE).write_text("a\nb\nc\nd\ne\n")
        await eventually_states(c, {"3": "END", "2": "AVAILABLE", "1": "END"})
        (status,) = (await c.get("/v1/models/cifar10/versions/3")).json()["model_version_status"]
        assert status["status"]["error_code"] == "UNKNOWN"
        assert "lists 5 classes" in status["status"]["error_message"]
        metrics = (await c.get("/metrics")).text
        assert 'cifar10_model_load_failures_total{model="cifar10"} 1.0' in metrics
        assert 'cifar10_model_versions{model="cifar10",state="AVAILABLE"} 1.0' in metrics
        r = await c.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        assert r.json()["model"]["version"] == "2"
        assert_error(await c.post("/predict?version=3", files={"file": ("a.png", IMAGE)}), 404, "not_found")

        # Fixed in place: its files changed, so it is tried again, and served.
        shutil.copy(model_dir / "1" / "assets" / contract.LABELS_FILE, model_dir / "3" / "assets")
        await eventually_states(c, {"3": "AVAILABLE", "2": "END", "1": "END"})

        # Rolled back by removing it: 2 is loaded again, then 3 unloaded.
        shutil.rmtree(model_dir / "3")
        await eventually_states(c, {"3": "END", "2": "AVAILABLE", "1": "END"})
        r = await c.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        assert r.json()["model"]["version"] == "2"


async def eventually_states(client: httpx.AsyncClient, expected: dict[str, str]) -> None:
    deadline = asyncio.get_running_loop().time() + 15
    while (found := await states(client)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"states {found}, expected {expected}"
        await asyncio.sleep(0.02)


class GatedRuntime(FakeRuntime):
    """Blocks every predict until `gate` is set, so a request can be held in flight."""

    def __init__(self, gate: threading.Event, entered: threading.Event) -> None:
        super().__init__()
        self.gate, self.entered = gate, entered

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(timeout=30)
        return super().predict(batch)


async def test_requests_in_flight_finish_on_their_version(tmp_path: Path) -> None:
    model_dir = write_fake_model(tmp_path / "cifar10", 1)
    gate, entered = threading.Event(), threading.Event()
    gate.set()  # open for start-up checks and warm-up

    def loader(name: str, path: Path, layer_order: Sequence[str]) -> FakeRuntime:
        return GatedRuntime(gate, entered) if path.name == "1" else FakeRuntime()

    async with serving(make_settings(model_dir, model_poll_s=POLL_S), loader) as c:
        gate.clear()
        entered.clear()
        held = asyncio.ensure_future(c.post("/predict", files={"file": ("a.png", IMAGE, "image/png")}))
        await eventually(entered.is_set)  # it runs on version 1, held at the gate
        copy_version(model_dir, 1, 2)
        await eventually_states(c, {"2": "AVAILABLE", "1": "UNLOADING"})  # 1 waits for its request
        r = await c.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        assert r.json()["model"]["version"] == "2"  # new requests go to 2 at once
        gate.set()
        old = await held
        assert old.status_code == 200
        assert old.json()["model"]["version"] == "1"
        await eventually_states(c, {"2": "AVAILABLE", "1": "END"})


@pytest.mark.parametrize(
    "overrides",
    [pytest.param({"model_poll_s": 2.0}, id="poll"), pytest.param({"model_config_file": "m.yaml"}, id="config")],
)
def test_multi_process_mode_refuses_model_management(tmp_path: Path, overrides: dict[str, object]) -> None:
    from app.multiprocess.supervisor import refuse_model_management

    refuse_model_management(make_settings(tmp_path))  # one model, no poll: fine
    with pytest.raises(SystemExit, match="--workers 1"):
        refuse_model_management(make_settings(tmp_path, **overrides))


def explain_from_version_2(name: str, path: Path, layer_order: Sequence[str]) -> FakeRuntime:
    """Version 1 exported before the explain signature, version 2 after."""
    return FakeRuntime(explain=path.name != "1")


async def test_explain_and_its_signature_def_follow_the_version_named(two_models: Path) -> None:
    settings = make_settings(two_models.parent / "unused", model_config_file=two_models)
    image = png_bytes(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    pixels = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3)).tolist()
    async with serving(settings, explain_from_version_2) as c:
        for path, explains in (("versions/1", False), ("labels/canary", True), ("versions/2", True)):
            r = await c.get(f"/v1/models/cifar10/{path}/metadata")
            assert r.status_code == 200
            assert (contract.EXPLAIN_SIGNATURE in r.json()["metadata"]["signature_def"]["signature_def"]) is explains
            r = await c.post(
                f"/v1/models/cifar10/{path}:predict",
                json={"signature_name": contract.EXPLAIN_SIGNATURE, "instances": pixels},
            )
            if explains:
                assert r.status_code == 200, r.text
                assert contract.SALIENCY in r.json()["predictions"][0]
            else:
                assert_error(r, 400, "explain_unavailable")
        r = await c.post("/explain?version=1", files={"file": ("a.png", image, "image/png")})
        assert_error(r, 400, "explain_unavailable")
        r = await c.post("/explain?model=cifar10&version=2", files={"file": ("a.png", image, "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["model"] == {"name": "cifar10", "version": "2"}
        r = await c.post("/explain?version=9", files={"file": ("a.png", image, "image/png")})
        assert_error(r, 404, "not_found")
        assert "does not serve version 9 (serving: 2, 1)" in r.json()["error"]["message"]
