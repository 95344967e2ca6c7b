"""How much of an unloaded model version's memory comes back, with and without what
app.serving.registry.free_memory does: load, warm and drop a shipped version 21 times in
one process (alternating cifar10/4 and cifar10/5, frozen after each load as
app.model_host.start_model does), and print VmRSS after the first and the last.

    .venv/bin/python scripts/unload_memory.py          (about 6 minutes on 2 CPUs)

Each mode runs in a process of its own: none (drop the references only), gc (unfreeze,
collect, freeze), gc+trim (then glibc's malloc_trim(0), which the service does).
"""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("none", "gc", "gc+trim")
LOADS = 21


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run(mode: str) -> None:
    sys.path.insert(0, str(ROOT))
    from app.serving.classifier import Classifier

    trim = ctypes.CDLL("libc.so.6").malloc_trim
    after = []
    for i in range(LOADS):
        classifier = Classifier(ROOT / "saved_models" / "cifar10" / str(4 + i % 2), 16)
        classifier.warm()
        gc.collect()
        gc.freeze()
        del classifier
        if mode != "none":
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        if mode == "gc+trim":
            trim(0)
        after.append(rss_mb())
    growth = after[-1] / after[0] - 1
    print(f"| {mode} | {after[0]:.0f} | {after[-1]:.0f} | {max(after):.0f} | {growth:+.1%} |", flush=True)


def main() -> None:
    if len(sys.argv) == 2:
        run(sys.argv[1])
        return
    print(f"| after each unload | VmRSS after load 1 (MB) | after load {LOADS} (MB) | max (MB) | growth |")
    print("|---|---:|---:|---:|---:|", flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for mode in MODES:
        subprocess.run([sys.executable, __file__, mode], check=True, env=env, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
