"""Issue 27's edge cases against real servers: Unicode digits, odd and linked version
folders, a float image, the HTTP parser's own errors, a redirect built from the Host
header, and the `--workers N` supervisor killed by SIGKILL. The probes are
scripts/probe_edges.py's (its table before and after: docs/reliability.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.reliability.conftest import FIGURES, Server

sys.path.insert(0, str(ROOT / "scripts"))
from probe_edges import FOLDERS, folder_cases, orphans, request_cases

pytestmark = pytest.mark.reliability


def test_request_edge_cases(server: Server) -> None:
    outcomes = request_cases(server.url)
    FIGURES["edge requests"] = outcomes
    assert outcomes == {
        "/explain?class=² (then /healthz on the same connection)": "422, then 200",
        "/explain?class=٣ (Arabic-Indic three)": "422 invalid_request",
        "/predict?version=٣": "422",
        "GET /v1/models/cifar10/versions/٣": "404",
        "float TIFF (mode F)": "200",
        "GET /v1/models/ with Host: evil.example": "404 location=None",
        "malformed request line": "400 application/json",
        "invalid header name": "400 application/json",
        "bad chunk size": "400 application/json",
    }


def test_odd_version_folders_are_skipped_and_reported(tmp_path: Path) -> None:
    outcomes = folder_cases(ROOT, tmp_path)
    FIGURES["version folders"] = outcomes
    assert outcomes == {
        name: f"status lists ['2'], /predict says '2', skipped [{extra!r}]" for name, (extra,) in FOLDERS.items()
    }


def test_children_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL to `python -m app --workers 2`: the model process and the fronts must go
    and free the port (before issue 27 all four were still there after 60 s)."""
    result = orphans(ROOT, tmp_path)
    FIGURES["--workers 2, supervisor SIGKILLed"] = result
    assert result["children"] >= 3  # the model process and two fronts (and spawn's helper)
    assert (result["left"], result["port free"]) == (0, True), result
