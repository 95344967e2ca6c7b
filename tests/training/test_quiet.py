"""The training CLI starts quietly (issue 27, item 11): TensorFlow's and Keras's
start-up notices stay off stderr, while real errors and the CLI's own progress show."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.classes import CLASS_NAMES
from tests.conftest import ROOT
from training.quiet import filtered_stderr, is_noise

NOTICE = "I0000 00:00:1796162335.330418    2957 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results."
ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# What a framework prints at start-up: absl/glog C++ lines, TF's notices, Python warnings.
FRAMEWORK_LINE = re.compile(
    r"^[IWEF]\d{4} |absl|oneDNN|cpu_feature_guard|tensorflow|keras|Warning:|This TensorFlow binary", re.IGNORECASE
)


def test_only_the_start_up_notices_are_dropped(capfd: pytest.CaptureFixture[str]) -> None:
    assert is_noise(NOTICE) and is_noise(ABSL)
    assert not is_noise("E0000 00:00:1796162335.330418    2957 port.cc:153] oneDNN failed to load")
    with filtered_stderr():
        os.write(2, f"{ABSL}\n{NOTICE}\nsomething went wrong\n".encode())
        print("a Python-level error", file=sys.stderr)
    # (pytest's capture takes sys.stderr apart from descriptor 2: the order is not the CLI's)
    assert sorted(capfd.readouterr().err.splitlines()) == ["a Python-level error", "something went wrong"]


def test_the_caught_lines_come_back_when_the_import_fails(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ImportError), filtered_stderr():
        os.write(2, b"libfoo.so: cannot open shared object file\n")
        raise ImportError("no module")
    assert "libfoo.so" in capfd.readouterr().err


def _tree(root: Path, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for cls in CLASS_NAMES:
        (root / "test" / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "test" / cls / f"{i}.png")
    return root


@pytest.mark.slow
def test_cli_commands_that_load_tensorflow_print_no_framework_lines(tiny_model: Path, tmp_path: Path) -> None:
    # No TF_CPP_MIN_LOG_LEVEL from the test run: the CLI must set what it needs itself.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    data = _tree(tmp_path / "tree")
    done = subprocess.run(
        [sys.executable, "-m", "training", "evaluate", str(tiny_model), "--data", str(data), "--split", "test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("accuracy: ")
    lines = done.stderr.splitlines()
    assert [line for line in lines if FRAMEWORK_LINE.search(line)] == [], done.stderr
    # What remains is the CLI's own progress: decoding the data, once.
    assert lines and all(line.startswith(("decoding", "  ", "decoded")) for line in lines), done.stderr
