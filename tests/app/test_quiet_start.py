"""The service starts quietly (issue 27): TensorFlow's start-up INFO lines, which
TensorFlow 2.21 prints even under TF_CPP_MIN_LOG_LEVEL, are filtered from standard
error during its import, and nothing else is (app/serving/runtimes/quiet.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796163525.898232   25625 port.cc:153] oneDNN custom operations are on.",
    b"I1201 22:12:09.242000   25625 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
    b"W0000 00:00:1796163525.898232   25625 dso_loader.cc:1] a real warning",
    b"E0000 00:00:1796163525.898232   25625 loader.cc:2] a real error",
    b"F0000 00:00:1796163525.898232   25625 check.cc:3] Check failed: a fatal one",
    b"2026-12-01 22:12:09,242 INFO cifar10.registry: loading version 6",
    b"INFO:     Started server process [21318]",
    b"Traceback (most recent call last):",
    b"I am a plain line",
]
SCRIPT = """
import os, sys
from app.serving.runtimes.quiet import filtered_stderr
with filtered_stderr():
    os.write(2, sys.stdin.buffer.read())
os.write(2, b"after\\n")
"""


def test_only_absl_info_lines_and_preamble_are_dropped_in_order() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], input=b"\n".join(LINES) + b"\n", cwd=ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [*LINES[3:], b"after"]


def test_importing_tensorflow_prints_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = "from app.serving.runtimes.quiet import import_tensorflow; print(import_tensorflow().__version__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert done.stdout.strip()
