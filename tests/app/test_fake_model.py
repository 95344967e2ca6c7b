"""The API tests on the fake runtime need neither TensorFlow nor the training package:
run them where importing either fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.no_tensorflow import SITECUSTOMIZE, env_without_tensorflow

NO_TRAINING_OR_KERAS = SITECUSTOMIZE.replace(
    'if name == "tensorflow" or name.startswith("tensorflow."):',
    'if name.split(".")[0] in ("tensorflow", "keras", "jax") or (name.startswith("training.") and name != "training.config"):',
)


def test_api_tests_run_without_tensorflow_keras_or_training(tmp_path: Path) -> None:
    # (tests/conftest.py reads the data path from training.config, a plain dataclass module.)
    assert NO_TRAINING_OR_KERAS != SITECUSTOMIZE
    env = env_without_tensorflow(tmp_path / "blocked")
    (tmp_path / "blocked" / "sitecustomize.py").write_text(NO_TRAINING_OR_KERAS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "tests/app/test_api.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout.splitlines()[-1]
