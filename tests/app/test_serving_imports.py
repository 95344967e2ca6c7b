"""The service needs only the serving half of model/: the serving image ships
model/__init__.py, contract.py, classes.py, layers.py and telemetry.py (the Dockerfile's
COPY), not the builders, the NumPy reference or training. An import of those from app/
would first fail inside the image; these tests fail here instead. (The jax runtime imports
model.layers when it loads an archive: tests/app/test_jax_runtime.py checks that.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.conftest import ROOT

# What a process that serves must not import.
NOT_SERVING = ("model.builders", "model.reference", "training")

# Every module of the app package, imported in a fresh interpreter.
SCRIPT = """
import importlib, json, pkgutil, sys
import app
for info in pkgutil.walk_packages(app.__path__, "app."):
    importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("model", "training"))))
"""


def image_model_modules() -> set[str]:
    """The model modules the Dockerfile copies into the serving image."""
    text = (ROOT / "Dockerfile").read_text()
    (line,) = [line for line in text.splitlines() if re.match(r"COPY model/\S+\.py", line)]
    files = line.split()[1:-1]
    return {f.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for f in files}


def test_the_image_copies_the_serving_half_of_model() -> None:
    assert image_model_modules() == {"model", "model.contract", "model.classes", "model.layers", "model.telemetry"}


def test_importing_the_app_imports_only_what_the_image_ships() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not [m for m in imported if m.startswith(NOT_SERVING)], imported
    assert imported <= image_model_modules(), imported - image_model_modules()
