"""What an explanation costs next to a prediction: per-image time of the SavedModel's
`explain` signature (Grad-CAM of every feature layer and saliency, one backward pass)
against `serving_default` and `feature_maps`, at batch 1 and 64, called in-process as
the service's TensorFlow runtime calls them. Prints a markdown table.

python scripts/bench_explain.py [version folders...]   (default: saved_models/cifar10/6 and 4)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from scripts/: this checkout's packages, not an installed copy
BATCHES = (1, 64)


def _median_seconds(calls: dict[str, tuple[Any, dict[str, Any]]], repeats: int) -> dict[str, float]:
    """Median seconds of each call, the calls taking turns, so that load from other
    processes on a shared box falls on all of them alike."""
    for fn, inputs in calls.values():
        fn(**inputs)  # the first call of a shape pays for setting up its kernels
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, inputs) in calls.items():
            started = time.perf_counter()
            fn(**inputs)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per cell (median reported)")
    args = parser.parse_args()
    versions = args.versions or [ROOT / "saved_models/cifar10/6", ROOT / "saved_models/cifar10/4"]

    import tensorflow as tf

    from model import contract

    rng = np.random.default_rng(0)
    print("| model | batch | predict ms/image | feature_maps ms/image | explain ms/image | explain / predict |")
    print("|---|---:|---:|---:|---:|---:|")
    for version in versions:
        loaded = tf.saved_model.load(str(version))
        sigs = loaded.signatures
        for batch in BATCHES:
            images = tf.constant(rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8))
            top = tf.fill([batch], contract.TOP_CLASS)
            repeats = args.repeats if batch > 1 else args.repeats * 5
            seconds = _median_seconds(
                {
                    "predict": (sigs[contract.SERVING_SIGNATURE], {"image": images}),
                    "features": (sigs[contract.FEATURE_MAPS_SIGNATURE], {"image": images}),
                    "explain": (sigs[contract.EXPLAIN_SIGNATURE], {"image": images, "target_class": top}),
                },
                repeats,
            )
            predict, features, explain = (seconds[k] / batch for k in ("predict", "features", "explain"))
            name = version.relative_to(ROOT) if ROOT in version.resolve().parents else version
            print(
                f"| `{name}` | {batch} | {predict * 1e3:.2f} | {features * 1e3:.2f} | {explain * 1e3:.2f} | "
                f"{explain / predict:.1f}x |"
            )
    cpu = platform.processor() or platform.machine()
    print(
        f"\nmachine: {os.cpu_count()} CPUs ({cpu}), TensorFlow {tf.__version__}, "
        f"median of {args.repeats} calls each (x5 at batch 1), taking turns"
    )


if __name__ == "__main__":
    main()
