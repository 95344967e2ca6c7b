"""An environment for subprocesses in which importing TensorFlow fails, as on the GPU
hosts: a `sitecustomize` that refuses the module, found first on PYTHONPATH."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ROOT

SITECUSTOMIZE = """import sys


class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is not installed here (tests/no_tensorflow.py)")
        return None


sys.meta_path.insert(0, _NoTensorFlow())
"""


def env_without_tensorflow(folder: Path, **extra: str) -> dict[str, str]:
    """os.environ plus a PYTHONPATH whose sitecustomize blocks TensorFlow."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    return {**env, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}", "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
