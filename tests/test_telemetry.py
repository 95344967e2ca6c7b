"""OpenVINO's usage telemetry stays off in the service's openvino runtime and in the
quantize command's conversion and NNCF import (model.telemetry): no process forked to
send an event, no client id written under the home folder, and the environment as it
was. Run in a fresh interpreter with a home of its own and CI unset, as on a user's
machine, since the telemetry's consent is fixed for a process when it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from model import contract
from tests.conftest import ROOT

SCRIPT = """
import json, os, sys, time
from pathlib import Path
forks = []
os.register_at_fork(before=lambda: forks.append(1))
from app.serving.runtimes.openvino_ir import OpenVinoRuntime
from model import contract
version = Path(sys.argv[1])
card = json.loads((version / contract.MODEL_CARD_FILE).read_text())
layers = list(card["feature_layers"])
runtime = OpenVinoRuntime(version, "int8", layers)
import numpy as np
runtime.predict(np.zeros((1, 32, 32, 3), np.uint8))
from training import openvino_ir, quantize
openvino_ir.convert(version, layers)
# as the quantize command imports nncf:
with quantize.telemetry_declined():
    import nncf
time.sleep(1)  # telemetry sends from a thread pool: give one a chance to fork
print(json.dumps({"forks": len(forks), "ci": os.environ.get("CI"), "nncf_ci": os.environ.get("NNCF_CI")}))
"""


def test_openvino_telemetry_is_declined(tiny_openvino: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    version = contract.latest_version_dir(tiny_openvino)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(version)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"forks": 0, "ci": None, "nncf_ci": None}
    assert not (tmp_path / "intel").exists()  # where the client id and the consent go
