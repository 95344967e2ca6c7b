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

from app.serving.operations import Operation
from app.serving.runtimes import ModelLoadError
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

    import model.layers  # noqa: F401  registers the custom layers the archive names

    return keras


class JaxRuntime:
    """Probabilities, feature maps and explanations of a `model.keras` archive, jitted
    per batch size."""

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

        explain, explain_params = _explainer(keras, jax, model, names)
        self._fns: dict[str, tuple[Any, Any]] = {
            "predict": (jax.jit(predict), params(model)),
            "feature_maps": (jax.jit(feature_maps), params(features)),
            "explain": (jax.jit(explain), explain_params),
        }
        self.unavailable: dict[Operation, str] = {}
        self._compiled: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def _compile(self, kind: str, size: int) -> Any:
        fn, params = self._fns[kind]
        specs = [self._jax.ShapeDtypeStruct((size, *IMAGE_SHAPE), np.uint8)]  # type: ignore[no-untyped-call]
        if kind == "explain":
            specs.append(self._jax.ShapeDtypeStruct((size,), np.int32))  # type: ignore[no-untyped-call]
        return fn.lower(params, *specs).compile()

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
        outputs = self._executable("explain", len(batch))(self._fns["explain"][1], batch, targets.astype(np.int32))
        return {k: np.asarray(v) for k, v in outputs.items()}

    def prepare(self, sizes: Sequence[int]) -> None:
        """Compile predict, feature maps and explain for every size, on several threads: XLA
        compiles outside the GIL, and a GPU host has the cores for it."""
        jobs = [(kind, size) for kind in self._fns for size in sizes if (kind, size) not in self._compiled]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for job, exe in zip(jobs, pool.map(lambda j: self._compile(*j), jobs), strict=True):
                self._compiled[job] = exe


# The layer whose float output is the first a gradient can reach; the pixel gradient is
# its gradient divided by the channel's standard deviation (model.layers.Standardise).
STANDARDISE_LAYER = "standardise"


def _explainer(keras: Any, jax: Any, model: Any, names: list[str]) -> tuple[Any, Any]:
    """The contract's explain outputs as a jittable function of (params, images, targets),
    and its params. JAX differentiates functions, not tensors inside one: each feature
    layer's gradient comes from a sub-model that starts at that layer (the network is a
    chain of them: every later layer depends on it alone), run on its activations."""
    import jax.numpy as jnp

    starts = [STANDARDISE_LAYER, *names]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in starts] + [model.output])
    tails = [keras.Model(model.get_layer(n).output, model.output) for n in starts]

    def params(m: Any) -> tuple[list[Any], list[Any]]:
        return [v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables]

    def unit(maps: Any) -> Any:  # each map divided by its maximum; all-zero maps stay zero
        peak = maps.max(axis=(1, 2), keepdims=True)
        return jnp.where(peak > 0, maps / jnp.where(peak > 0, peak, 1.0), 0.0)

    def explain(all_params: Any, images: Any, targets: Any) -> dict[str, Any]:
        probe_params, tail_params = all_params
        (*activations, logits), _ = probe.stateless_call(*probe_params, images, training=False)
        logits = logits.astype(jnp.float32)
        target = jnp.where(targets < 0, jnp.argmax(logits, axis=1).astype(jnp.int32), targets)

        def gradient(tail: Any, tail_param: Any, activation: Any) -> Any:
            def score(a: Any) -> Any:
                out, _ = tail.stateless_call(*tail_param, a, training=False)
                return jnp.take_along_axis(out.astype(jnp.float32), target[:, None], axis=1).sum()

            return jax.grad(score)(activation.astype(jnp.float32))

        grads = [gradient(t, p, a) for t, p, a in zip(tails, tail_params, activations, strict=True)]
        std = jnp.asarray(contract.CHANNEL_STD, jnp.float32)
        result = {
            contract.PROBABILITIES: jax.nn.softmax(logits, axis=-1),
            contract.TARGET_CLASS: target,
            contract.SALIENCY: unit(jnp.abs(grads[0] / std).max(axis=-1)),
        }
        for name, activation, grad in zip(names, activations[1:], grads[1:], strict=True):
            weights = grad.mean(axis=(1, 2), keepdims=True)
            cam = jax.nn.relu((weights * activation.astype(jnp.float32)).sum(axis=-1))
            upsampled = jax.image.resize(cam, (cam.shape[0], *IMAGE_SHAPE[:2]), method="linear")
            result[contract.GRADCAM_PREFIX + name] = unit(upsampled)
        return result

    return explain, (params(probe), [params(t) for t in tails])
