"""Giving an unloaded model version's memory back to the operating system
(docs/model-management.md#memory-across-swaps has the measurements)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_TRIM = _malloc_trim()


def free_memory() -> None:
    """Give an unloaded version's memory back. start_model freezes the heap after each
    load (so full collections skip TensorFlow's objects); that froze the old version's
    graph too, so unfreeze, collect, and freeze what is left (without this, 21 loads
    grew VmRSS by 49%). glibc keeps freed memory in its arenas; malloc_trim returns it
    to the OS (without it, by 5%; with both, 2%: scripts/unload_memory.py)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    if _TRIM is not None:
        _TRIM(0)
