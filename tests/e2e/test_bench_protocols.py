"""The protocol benchmark end to end, briefly: every protocol's request is answered as
/predict answers it (the script checks that before any load), and the table holds each
protocol at 1 and 64 images with answers and no errors, and the model's own rate."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
PROTOCOLS = {
    "multipart `/predict` (JPEG files)",
    "TF Serving REST (`b64` JPEG files)",
    "TF Serving gRPC (uint8 tensor)",
    "v2 REST, binary tensor data (uint8)",
    "v2 REST, JSON (uint8)",
}


def test_every_protocol_answers_under_load() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "scripts/bench_protocols.py",
            "--duration",
            "3",
            "--batch-duration",
            "3",
            "--concurrency",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    header, *rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]  # not "|---|"
    columns = [c.strip() for c in header.strip("|").split("|")]
    cells = [dict(zip(columns, (c.strip() for c in row.strip("|").split("|")), strict=True)) for row in rows]
    (model,) = [c for c in cells if c["protocol"].startswith("the SavedModel alone")]
    assert float(model["images/s"]) > 0
    cells.remove(model)
    assert {(c["protocol"], c["images per request"]) for c in cells} == {(p, n) for p in PROTOCOLS for n in ("1", "64")}
    for cell in cells:
        assert cell["errors"] == "0" and float(cell["images/s"]) > 0, cell
        assert float(cell["p50 ms"]) <= float(cell["p99 ms"])
    assert "v2 binary / v2 JSON" in done.stdout
