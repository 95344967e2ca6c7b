"""The benchmark matrix end to end at its tiny plan: servers start and stop, the load
generator's counts add up, and table.md and results.json hold every cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.no_tensorflow import env_without_tensorflow

pytestmark = pytest.mark.slow


def test_tiny_plan_writes_every_cell(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "scripts/bench_matrix.py", "--plan", "tiny", "--duration", "1", "--out", str(out)],
        cwd=ROOT,
        env=env_without_tensorflow(tmp_path / "site"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    cells = {(c["label"], c["images"], c["concurrency"]) for c in results["cells"]}
    assert cells == {
        ("one process, batching on", 1, 1),
        ("one process, batching on", 1, 4),
        ("one process, batching on", 8, 2),
        ("one process, batching off", 1, 4),
        ("2 fronts + model process, batching on", 1, 4),
    }
    for cell in results["cells"]:
        assert cell["ok"] > 0 and cell["errors"] == 0, cell
        assert cell["p50_ms"] <= cell["p99_ms"]
        assert cell["images_per_s"] == pytest.approx(cell["requests_per_s"] * cell["images"])
    off = next(c for c in results["cells"] if "off" in c["label"])
    assert off["mean_batch"] == "1.0"
    (raw,) = results["raw"]
    assert raw["runtime"] == "jax" and raw["batch"] == 8 and raw["images_per_s"] > 0
    table = (out / "table.md").read_text()
    assert table.count("\n| ") == 1 + len(cells) + 1  # header, cells, the raw model
    assert "batching on / off" in table and "multi-process / one process" in table
    assert sorted(p.name for p in (out / "logs").iterdir()) == sorted(
        {"one_process_batching_on.log", "one_process_batching_off.log", "2_fronts__model_process_batching_on.log"}
    )
