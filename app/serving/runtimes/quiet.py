"""Importing TensorFlow without its start-up INFO lines in the service's log.

`python -m app` printed six lines of TensorFlow's before serving (issue 27): "oneDNN
custom operations are on" (twice), "This TensorFlow binary is optimized to use ...",
and absl's "All log messages before absl::InitializeLog() ...". TF_CPP_MIN_LOG_LEVEL=1
hides the C++ INFO lines that honour it; TensorFlow 2.21 prints the others regardless
(tensorflow/tensorflow#100442). So, during the import only, standard error runs through
a filter that drops exactly those: absl's INFO lines (`I0000 00:00:...] `) and its
preamble. Warnings, errors and anything else pass, in order.

The filter is a child process, not a thread: if the import kills this process
(an abort in TensorFlow's C++), the child still forwards what was written before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

# The child: copy stdin to stdout line by line, without absl's INFO lines and preamble.
FILTER = r"""
import re, sys
noise = re.compile(rb"^(I\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\))")
for line in sys.stdin.buffer:
    if not noise.match(line):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Standard error (the file descriptor, so C++ writes too) through FILTER."""
    sys.stderr.flush()
    saved = os.dup(2)
    child = subprocess.Popen([sys.executable, "-c", FILTER], stdin=subprocess.PIPE, stdout=saved)
    assert child.stdin is not None
    try:
        os.dup2(child.stdin.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        child.stdin.close()
        child.wait(timeout=30)  # it has forwarded everything once it exits


def import_tensorflow() -> ModuleType:
    """`import tensorflow`, quietly (see above). TF_CPP_MIN_LOG_LEVEL, when not set,
    becomes 1: INFO off, TensorFlow's warnings and errors still printed."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        with filtered_stderr():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]
