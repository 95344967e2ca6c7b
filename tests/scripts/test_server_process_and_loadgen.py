"""The benchmark plumbing every serving figure depends on: the one server-process
helper (scripts/server_process.py) and the load generator's bound on a stalled cell
(scripts/loadgen.py). The fake runtime stands in for a model where one is needed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import loadgen, server_process
from tests.app.fake_model import write_fake_model
from tests.conftest import ROOT

FAKE_APP = """
from app.main import create_app
from tests.app.fake_model import fake_loader


def create():
    return create_app(runtime_loader=fake_loader)
"""


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            s.settimeout(0.1)
            while not stop.is_set():
                try:
                    accepted.append(s.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield s.getsockname()[1]
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()


def test_free_port_can_be_bound() -> None:
    port = server_process.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_a_server_that_exits_during_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    started = time.monotonic()
    with pytest.raises(server_process.ServerError, match="exited with") as caught:
        server_process.start({"CIFAR10_MODEL_DIR": str(tmp_path / "missing")}, log=log, ready_timeout_s=120)
    assert "does not exist" in str(caught.value)  # the log's tail: the model folder is missing
    assert time.monotonic() - started < 120


def test_running_serves_then_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "fake_app.py").write_text(FAKE_APP)
    env = {"CIFAR10_MODEL_DIR": str(write_fake_model(tmp_path / "cifar10")), "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    with server_process.running(env, cli=False, factory="fake_app:create", log=tmp_path / "log") as server:
        assert server_process.status(f"{server.url}/readyz") == 200
        assert server.start_seconds > 0
        proc = server.proc
    assert proc.returncode is not None
    assert server_process.status(f"{server.url}/healthz") == 0


def _stall(job: object) -> object:
    time.sleep(600)
    return [], {}


def test_a_stalled_cell_is_cut_off_and_counted(silent_listener: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Past the per-connection grace: the whole cell's processes hang (as one did on the
    # GPU at c=1024); the cell must end at its bound, counted as errors, not hold the run.
    monkeypatch.setattr(loadgen, "_process", _stall)
    monkeypatch.setattr(loadgen, "CELL_SLACK_S", 1.0)
    started = time.monotonic()
    result = loadgen.run_load("127.0.0.1", silent_listener, b"GET / HTTP/1.1\r\n\r\n", 4, 0.2, 0.0, 2, grace_s=0.5)
    assert time.monotonic() - started < 30
    assert result["timed_out"] is True and result["errors"] == 4 and result["statuses"] == {-3: 4}


def test_connections_a_server_never_answers_are_errors(silent_listener: int) -> None:
    result = loadgen.run_load("127.0.0.1", silent_listener, b"GET / HTTP/1.1\r\n\r\n", 3, 0.2, 0.0, 1, grace_s=0.5)
    assert result["timed_out"] is False and result["ok"] == 0 and result["statuses"] == {-2: 3}
