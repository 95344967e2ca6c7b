"""The CLI starts quietly: TensorFlow's C++ start-up notices do not reach the terminal,
everything else does.

TensorFlow 2.21 logs its oneDNN notice through absl while it is imported, twice (two of
its libraries), each with absl's line about logging before InitializeLog, and
TF_CPP_MIN_LOG_LEVEL does not reach those lines. So the framework is imported with the
process's stderr (file descriptor 2, where C++ writes) caught in a temporary file, and
on the way out every caught line that is not one of those notices is written to stderr:
an error printed during the import still shows, only later. TF_CPP_MIN_LOG_LEVEL=2
keeps TensorFlow's other INFO and WARNING logs off (the CPU-instructions notice among
them); its errors still print.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# Lines of the start-up notices; nothing else is dropped.
NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. "),
)


def is_noise(line: str) -> bool:
    """Whether `line` (without its newline) is one of TensorFlow's start-up notices."""
    return any(pattern.search(line) for pattern in NOISE)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Catch what is written to file descriptor 2 inside the block; replay it, less the
    start-up notices, when the block ends (also when it raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines() if not is_noise(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_keras() -> None:
    """Import Keras, and with it the backend KERAS_BACKEND (or keras.json) names,
    without its start-up notices."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr():
        import keras  # noqa: F401  (imported for its side effect: the backend loads here)
