"""The jax runtime: the Keras archive beside the SavedModel, run under Keras's JAX
backend as XLA executables compiled ahead of time, one per batch size.

For machines with JAX and no TensorFlow (the GPU hosts): nothing here or in what it
imports touches TensorFlow. Keras picks its backend once, when first imported, so
this module sets KERAS_BACKEND=jax before importing it, and refuses to load in a
process that already imported Keras with another backend.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from app.runtimes import ModelLoadError
from model import contract
from model.classes import IMAGE_SHAPE


def _import_keras_jax() -> Any:
    imported = sys.modules.get("keras")
    if imported is not None and imported.backend.backend() != "jax":
        raise ModelLoadError(
            f"Keras was already imported with the {imported.backend.backend()} backend; the jax runtime needs a "
            "process where nothing imported Keras before the model loads (or KERAS_BACKEND=jax at start)"
        )
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    import model.architectures  # noqa: F401  registers the custom layers the archive names

    return keras


class JaxRuntime:
    """Probabilities and feature maps of a `model.keras` archive, jitted per batch size."""

    def __init__(self, path: Path, layer_order: Sequence[str]) -> None:
        archive = path / contract.KERAS_ARCHIVE_FILE
        if not archive.is_file():
            raise ModelLoadError(
                f"{archive} is missing: the jax runtime loads the Keras archive "
                "(add one with `python -m training archive <version folder>`)"
            )
        if not layer_order:
            raise ModelLoadError(
                f"{path}: the jax runtime takes the feature layers from the model card, which lists none"
            )
        keras = _import_keras_jax()
        import jax
        import jax.numpy as jnp

        self._jax = jax
        try:
            model = keras.saving.load_model(archive, compile=False)
            features = keras.Model(model.input, [model.get_layer(n).output for n in layer_order] + [model.output])
        except Exception as exc:  # zip, h5 and deserialisation errors alike
            raise ModelLoadError(f"cannot load the Keras archive {archive}: {exc}") from exc
        self.layer_shapes = {n: tuple(int(d) for d in model.get_layer(n).output.shape[1:]) for n in layer_order}
        names = list(layer_order)

        def probabilities(logits: Any) -> Any:
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        def predict(params: Any, images: Any) -> Any:
            logits, _ = model.stateless_call(*params, images, training=False)
            return probabilities(logits)

        def feature_maps(params: Any, images: Any) -> Any:
            (*maps, logits), _ = features.stateless_call(*params, images, training=False)
            result = {n: m.astype(jnp.float32) for n, m in zip(names, maps, strict=True)}
            result[contract.PROBABILITIES] = probabilities(logits)
            return result

        def params(m: Any) -> tuple[list[Any], list[Any]]:
            return [v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables]

        self._fns: dict[str, tuple[Any, Any]] = {
            "predict": (jax.jit(predict), params(model)),
            "feature_maps": (jax.jit(feature_maps), params(features)),
        }
        # Grad-CAM needs the gradient at every feature layer of one forward pass; Keras
        # under JAX exposes no intermediate tensors to differentiate, and rebuilding the
        # network per layer would duplicate the exported graph. The SavedModel has it.
        self.explain_unavailable: str | None = (
            "the jax runtime does not compute explanations; serve with CIFAR10_RUNTIME=tensorflow, "
            f"whose SavedModel has the {contract.EXPLAIN_SIGNATURE!r} signature"
        )
        self._compiled: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def _compile(self, kind: str, size: int) -> Any:
        fn, params = self._fns[kind]
        spec = self._jax.ShapeDtypeStruct((size, *IMAGE_SHAPE), np.uint8)  # type: ignore[no-untyped-call]
        return fn.lower(params, spec).compile()

    def _executable(self, kind: str, size: int) -> Any:
        exe = self._compiled.get((kind, size))
        if exe is None:  # a size that warm-up did not cover (CIFAR10_WARMUP=false)
            with self._lock:
                exe = self._compiled.get((kind, size))
                if exe is None:
                    exe = self._compiled[(kind, size)] = self._compile(kind, size)
        return exe

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._executable("predict", len(batch))(self._fns["predict"][1], batch))

    def feature_maps(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._executable("feature_maps", len(batch))(self._fns["feature_maps"][1], batch)
        return {k: np.asarray(v) for k, v in outputs.items()}

    def explain(self, batch: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError(self.explain_unavailable)

    def prepare(self, sizes: Sequence[int]) -> None:
        """Compile predict and feature maps for every size, on several threads: XLA
        compiles outside the GIL, and a GPU host has the cores for it."""
        jobs = [(kind, size) for kind in self._fns for size in sizes if (kind, size) not in self._compiled]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for job, exe in zip(jobs, pool.map(lambda j: self._compile(*j), jobs), strict=True):
                self._compiled[job] = exe
