"""Declining OpenVINO's usage telemetry, for the service's openvino runtimes and for
`python -m training quantize` alike.

OpenVINO sends usage events to Google Analytics unless the user has run
`opt_in_out --opt_out`: `import openvino` sends one (and writes a client id under
~/intel), each conversion and NNCF's quantization more, each from a forked process
(133 forks in one quantize run). A model server or a training run should not call out
on its own, and forking a process that holds JAX's, TensorFlow's or gRPC's threads risks
a deadlock (JAX warns so; the warning failed a CI run). OpenVINO and NNCF both create
their telemetry with `disable_in_ci`, which declines when `CI=true`, and NNCF also
honours `NNCF_CI`; the consent is fixed when the telemetry starts (the first import of
openvino, of nncf, and each conversion), so those switches are set only around that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

SWITCHES = {"CI": "true", "NNCF_CI": "1"}


@contextmanager
def telemetry_declined() -> Iterator[None]:
    """Within the block, OpenVINO's and NNCF's telemetry start declined; the
    environment is restored after it."""
    saved = {name: os.environ.get(name) for name in SWITCHES}
    os.environ.update(SWITCHES)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
