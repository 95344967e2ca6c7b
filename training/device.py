"""Which backend and device a run trains on: the name a run records, and the tensor
layout that backend trains fastest in."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import keras


def training_data_format(requested: str) -> str:
    """Keras's PyTorch backend transposes channels-last tensors around every conv and
    pool; training channels-first there saves that. TensorFlow's CPU kernels need NHWC."""
    if requested != "auto":
        return requested
    return "channels_first" if keras.backend.backend() == "torch" else "channels_last"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def device_name() -> str:
    """The device Keras's backend computes on, as metrics.json records it
    (e.g. "gpu:NVIDIA H200", "cpu:AMD EPYC ..., 2 cores")."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        dev = jax.devices()[0]
        return f"{dev.platform}:{getattr(dev, 'device_kind', dev)}"
    if backend == "torch":
        import torch

        return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"cpu:{_cpu_name()}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu:{gpus[0].name}" if gpus else f"cpu:{_cpu_name()}"
    return backend
