"""End to end: a real uvicorn process on the shipped model, real CIFAR-10 images from
../shared/data posted with httpx, and a SIGTERM while requests are in flight."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from scripts.server_process import running
from tests.conftest import ROOT, SHIPPED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"CIFAR10_MODEL_DIR": str(SHIPPED)}
    with running(env, cli=False, log=tmp_path_factory.mktemp("logs") / "server.log") as started:
        yield started.url


def test_labels_real_training_images(server: str, real_samples) -> None:
    files = [("files", (f"{cls}/{name}", data, "image/jpeg")) for cls, name, data in real_samples]
    r = httpx.post(f"{server}/predict", files=files, timeout=60)
    assert r.status_code == 200
    predictions = r.json()["predictions"]
    assert [p["filename"] for p in predictions] == [f"{c}/{n}" for c, n, _ in real_samples]
    correct = sum(p["label"] == cls for p, (cls, _, _) in zip(predictions, real_samples, strict=True))
    assert correct >= 45, f"only {correct}/50 correct"


def test_readme_tour_gets_the_answers_it_shows(server: str) -> None:
    # The README's /predict examples name samples by class: the shipped model must agree.
    commands = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("curl") and "/predict" in line and "samples/" in line
    ]
    assert len(commands) >= 2
    for command in commands:
        samples = re.findall(r"-F (files?)=@(app/static/samples/(\w+)\.png)", command)
        assert samples, command
        files = [(field, (Path(path).name, (ROOT / path).read_bytes(), "image/png")) for field, path, _ in samples]
        r = httpx.post(f"{server}/predict", files=files, timeout=60)
        assert r.status_code == 200
        assert [p["label"] for p in r.json()["predictions"]] == [label for _, _, label in samples], command


def test_result_does_not_depend_on_the_batch(server: str, real_samples) -> None:
    target = ("files", ("target.jpg", real_samples[17][2], "image/jpeg"))
    others = [("files", (f"o{i}.jpg", real_samples[i % 50][2], "image/jpeg")) for i in range(63)]
    alone = httpx.post(f"{server}/predict", files=[target], timeout=60).json()["predictions"][0]["probabilities"]
    in_batch = httpx.post(f"{server}/predict", files=[*others[:40], target, *others[40:]], timeout=60)
    assert in_batch.status_code == 200
    crowded = in_batch.json()["predictions"][40]["probabilities"]
    np.testing.assert_allclose(list(alone.values()), list(crowded.values()), atol=1e-5)


def test_concurrent_requests_are_batched(server: str, real_samples) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/predict", files={"file": (n, d, "image/jpeg")}) for _, n, d in real_samples)
            )

    before = _batch_counts(server)
    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 50
    correct = sum(
        r.json()["predictions"][0]["label"] == cls for r, (cls, _, _) in zip(responses, real_samples, strict=True)
    )
    assert correct >= 45
    after = _batch_counts(server)
    images, batches = after[0] - before[0], after[1] - before[1]
    assert images == 50
    assert batches < 50, "50 concurrent requests ran one by one"


def _batch_counts(server: str) -> tuple[float, float]:
    text = httpx.get(f"{server}/metrics").text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith('cifar10_batch_size_sum{batcher="predict"}'):
            total = float(line.split()[-1])
        if line.startswith('cifar10_batch_size_count{batcher="predict"}'):
            count = float(line.split()[-1])
    return total, count


def test_feature_maps_and_tf_serving_on_real_image(server: str, real_samples) -> None:
    cls, name, data = real_samples[3]
    r = httpx.post(f"{server}/feature-maps", files={"file": (name, data, "image/jpeg")}, timeout=60)
    assert r.status_code == 200
    body = r.json()
    assert [layer["name"] for layer in body["layers"]] == ["stem", "block1", "block2", "block3"]
    import base64

    r = httpx.post(
        f"{server}/v1/models/cifar10:predict",
        json={"instances": [{"b64": base64.b64encode(data).decode()}]},
        timeout=60,
    )
    assert r.status_code == 200
    probs = r.json()["predictions"][0]
    assert abs(probs[body["prediction"]["class_id"]] - max(probs)) < 1e-9


def test_explain_on_the_shipped_model_as_the_readme_shows(server: str) -> None:
    horse = (ROOT / "app/static/samples/horse.png").read_bytes()
    r = httpx.post(f"{server}/explain", files={"file": ("horse.png", horse, "image/png")}, timeout=60)
    assert r.status_code == 200
    body = r.json()
    assert body["target"]["label"] == "horse" and body["target"]["requested"] is False
    assert [m["name"] for m in body["maps"]] == [
        "gradcam_stem",
        "gradcam_block1",
        "gradcam_block2",
        "gradcam_block3",
        "saliency",
    ]
    r = httpx.post(
        f"{server}/explain",
        files={"file": ("horse.png", horse, "image/png")},
        params={"class": "deer", "format": "png"},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-target-label"] == "deer" and r.headers["x-map"] == "gradcam_block3"
    # The TF Serving route's explain signature gives the same maps.
    import base64

    r2 = httpx.post(
        f"{server}/v1/models/cifar10:predict",
        json={"signature_name": "explain", "instances": [{"b64": base64.b64encode(horse).decode()}]},
        timeout=60,
    )
    assert r2.status_code == 200
    (row,) = r2.json()["predictions"]
    np.testing.assert_allclose(row["gradcam_block3"], body["maps"][3]["values"], atol=1e-4)


def test_sigterm_drains_accepted_requests(tmp_path: Path, real_samples) -> None:
    log = tmp_path / "drain.log"
    # A long batch window keeps the accepted requests queued when SIGTERM arrives.
    env = {"CIFAR10_MODEL_DIR": str(SHIPPED), "CIFAR10_MAX_WAIT_MS": "1000", "CIFAR10_MAX_BATCH_SIZE": "64"}
    with running(env, cli=False, log=log) as started:
        url, proc = started.url, started.proc

        async def scenario() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                tasks = [
                    asyncio.create_task(client.post("/predict", files={"file": (n, d, "image/jpeg")}))
                    for _, n, d in real_samples[:12]
                ]
                deadline = time.monotonic() + 30
                while _queue_depth(url) < 12:
                    assert time.monotonic() < deadline, "requests never reached the queue"
                    await asyncio.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                return [r.status_code for r in await asyncio.gather(*tasks)]

        statuses = asyncio.run(scenario())
        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert statuses == [200] * 12
    assert "stopped after draining the queues" in log.read_text()


def _queue_depth(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith('cifar10_queue_depth{batcher="predict"}'))
    return float(line.split()[-1])
