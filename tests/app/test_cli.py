"""`cifar10-serve`'s own choices before it hands over to uvicorn or the supervisor: the
gRPC address follows --host unless CIFAR10_GRPC_HOST is given, and --workers above 1
refuses a gRPC port."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import uvicorn

from app import __main__ as cli
from app.settings import Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What uvicorn.run was called with, instead of serving."""
    calls: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    for name in ("CIFAR10_HOST", "CIFAR10_GRPC_HOST", "CIFAR10_GRPC_PORT", "CIFAR10_WORKERS"):
        # Recorded first, so that what main() sets is undone after the test too.
        monkeypatch.setenv(name, "recorded")
        monkeypatch.delenv(name)
    return calls


@pytest.mark.parametrize(
    ("argv", "environment", "http_host", "grpc_host"),
    [
        pytest.param(["--host", "0.0.0.0"], {}, "0.0.0.0", "0.0.0.0", id="follows-the-host-flag"),
        pytest.param([], {"CIFAR10_HOST": "0.0.0.0"}, "0.0.0.0", "0.0.0.0", id="follows-cifar10-host"),
        pytest.param([], {}, "127.0.0.1", "127.0.0.1", id="loopback-by-default"),
        pytest.param(
            ["--host", "0.0.0.0"], {"CIFAR10_GRPC_HOST": "127.0.0.1"}, "0.0.0.0", "127.0.0.1", id="given-wins"
        ),
        pytest.param(["--host", "0.0.0.0"], {"CIFAR10_GRPC_HOST": ""}, "0.0.0.0", "0.0.0.0", id="empty-is-unset"),
    ],
)
def test_grpc_listens_where_http_does_unless_told(
    started: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    environment: dict[str, str],
    http_host: str,
    grpc_host: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["cifar10-serve", *argv])
    cli.main()
    assert started["app"] == "app.main:create_app" and started["factory"] is True
    assert started["host"] == http_host
    # The app factory reads its Settings from the environment, as this does.
    assert Settings(_env_file=None).grpc_host == grpc_host


def test_workers_refuse_a_grpc_port(started: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIFAR10_GRPC_PORT", "8500")
    monkeypatch.setattr(sys, "argv", ["cifar10-serve", "--workers", "2"])
    with pytest.raises(SystemExit, match="unset CIFAR10_GRPC_PORT"):
        cli.main()
    assert started == {}
