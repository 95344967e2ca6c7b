"""Print the service's runtime requirements from pyproject.toml for an image variant:
what `make lock` resolves into requirements/serve-<variant>.lock, which the Dockerfile
installs.

    python docker/requirements.py [--variant cpu|gpu|gpu-jax] [--pyproject PATH]

`cpu` adds OpenVINO (pyproject's `openvino` extra): the CPU image serves the int8 IR
(docs/serving.md's CPU table chose it). `gpu` swaps the TensorFlow requirement for `tensorflow[and-cuda]`, which brings the
CUDA and cuDNN libraries as wheels, so the GPU image needs no CUDA base image.
`gpu-jax` drops TensorFlow for `jax[cuda12]` (CUDA as wheels too): an image for
CIFAR10_RUNTIME=jax only, which serves the Keras archive beside each SavedModel; it
drops tensorflow-serving-api too, whose stubs import TensorFlow's protos (so no TF
Serving gRPC there, docs/protocols.md).
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
JAX_CUDA = "jax[cuda12]>=0.6"


def requirements(variant: str, pyproject: Path = PYPROJECT) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    deps: list[str] = project["dependencies"]
    if variant == "cpu":
        # The CPU image serves the int8 OpenVINO IR (CIFAR10_RUNTIME=openvino); TensorFlow
        # stays for /explain (the SavedModel's explain signature) and the gRPC API.
        return deps + project["optional-dependencies"]["openvino"]
    tf = [d for d in deps if re.match(r"tensorflow(-cpu)?\b(?!-)", d)]
    if variant == "gpu-jax":
        return [d for d in deps if d not in tf and not d.startswith("tensorflow-serving-api")] + [JAX_CUDA]
    version = re.search(r"==\s*([\w.*]+)", tf[0]).group(1) if tf else "2.21.*"  # type: ignore[union-attr]
    return [d for d in deps if d not in tf] + [f"tensorflow[and-cuda]=={version}"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", choices=["cpu", "gpu", "gpu-jax"], default="cpu")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args()
    print("\n".join(requirements(args.variant, args.pyproject)))
