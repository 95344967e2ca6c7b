"""Issue 27, against the suite's real server: no small request may cost a large one's
time or memory, and files that are slow to parse may not hold the decode pool. The
probes are scripts/bench_cost.py's (its tables, before and after, are in
docs/reliability.md); here their outcomes are asserted and their timings recorded.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.reliability.conftest import FIGURES, Server

sys.path.insert(0, str(ROOT / "scripts"))
from bench_cost import MIX_FILES, amplifiers, amplify, mix, post_file
from bench_serving import WRK_SCRIPT, multipart_bodies, sample_images
from hostile_files import SLOW_FILES

pytestmark = pytest.mark.reliability
# The status each probe must get: the repeated parameters are refused, the rest served.
AMPLIFIER_STATUS = {
    "/feature-maps, JSON, all layers (reference)": 200,
    "/feature-maps?layers=stem,stem,... (1.4 KB URL)": 422,
    "/feature-maps?layers=stem&layers=stem&... (1.4 KB URL)": 422,
    "/explain?map=saliency&map=saliency&... (1.4 KB URL)": 422,
    "/explain?scale=16, JSON, every map": 200,
    ":predict, signature explain, 64 b64 JPEGs": 200,
    "/v2 infer, JSON, output stem named 90 times (3 KB body)": 400,  # the protocol's 422
}
# Peak RSS growth one of these requests may cause: the largest answer (about 8 MB for
# 64 explained rows) about twice over, with the decoded inputs and the model's outputs.
RSS_BOUND_MB = 100


def test_no_request_costs_far_more_than_its_size(server: Server) -> None:
    jpeg = sample_images(1)[0]
    probes = amplifiers(jpeg)
    assert set(probes) == set(AMPLIFIER_STATUS)
    figures = {}
    for name, (path, kwargs) in probes.items():
        a = amplify(server.url, server.proc.pid, path, kwargs)
        figures[name] = {k: round(v, 2) if isinstance(v, float) else v for k, v in a.items()}
    FIGURES["cost of one request (status, bytes, seconds, slowest /healthz ms, peak RSS growth MB)"] = figures
    assert {name: f["status"] for name, f in figures.items()} == AMPLIFIER_STATUS
    assert max(f["rss_mb"] for f in figures.values()) < RSS_BOUND_MB, figures


def test_slow_structures_are_refused_early(server: Server) -> None:
    figures = {}
    for name, make in SLOW_FILES.items():
        answers: list[tuple[int, float]] = []
        post_file(server.url, make(), answers)
        figures[name] = {"status": answers[0][0], "seconds": round(answers[0][1], 2)}
    FIGURES["slow-structure files"] = figures
    assert {name: f["status"] for name, f in figures.items()} == {
        name: 200 if "the most accepted" in name else 422 for name in SLOW_FILES
    }, figures


def test_normal_requests_keep_being_served_while_slow_files_arrive(server: Server, tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("the mix needs wrk (apt-get install wrk; .ci/run installs it)")
    script = tmp_path / "predict.lua"
    script.write_text(WRK_SCRIPT)
    bodies = multipart_bodies(sample_images(16), tmp_path)
    result = mix(server.url, bodies, script, 8.0, [make() for make in MIX_FILES])
    wrk = result["wrk"]
    assert isinstance(wrk, dict) and isinstance(result["statuses"], dict) and isinstance(result["slow"], list)
    FIGURES["mix: /predict at c=8 for 8 s, 3 slow files at 2 s"] = {
        "requests": wrk["requests"],
        "p50 ms": round(wrk["p50"]),
        "p99 ms": round(wrk["p99"]),
        "server statuses": result["statuses"],
        "slow files": result["slow"],
    }
    assert [status for status, _ in result["slow"]] == [422] * len(MIX_FILES)
    # No 504 among the normal requests; 499: those in flight when wrk closed its connections.
    assert "200" in result["statuses"] and set(result["statuses"]) <= {"200", "422", "499"}, result["statuses"]
    assert wrk["errors"] == 0
