"""The default runtime: the SavedModel's signatures under TensorFlow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.serving.operations import Operation
from app.serving.runtimes import ModelLoadError
from app.serving.runtimes.quiet import import_tensorflow
from model import contract
from model.classes import IMAGE_SHAPE


class SavedModelRuntime:
    """`serving_default`, `feature_maps` and, where the export has it, `explain` of a
    SavedModel, checked against the contract."""

    def __init__(self, path: Path) -> None:
        tf = import_tensorflow()  # imported here, quietly: nothing else in the app needs it

        self._tf = tf
        self.path = path
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TF raises many types for corrupt protos and variables
            raise ModelLoadError(f"cannot load the SavedModel at {path}: {exc}") from exc
        self._loaded = loaded  # keeps the variables alive
        try:
            self._serve = loaded.signatures[contract.SERVING_SIGNATURE]
            self._features = loaded.signatures[contract.FEATURE_MAPS_SIGNATURE]
        except KeyError as exc:
            raise ModelLoadError(f"{path} lacks the signature {exc}; found {sorted(loaded.signatures)}") from exc
        self._check_signature(self._serve)
        self._check_signature(self._features)
        # Versions exported before the explain signature existed still serve the rest.
        self._explain = loaded.signatures.get(contract.EXPLAIN_SIGNATURE)
        self.unavailable: dict[Operation, str] = {}
        if self._explain is None:
            self.unavailable[Operation.EXPLAIN] = (
                f"model version {path.name} was exported without the {contract.EXPLAIN_SIGNATURE!r} signature; "
                "re-export it with `python -m training reexport <version folder>` or serve a version that has it"
            )
        else:
            self._check_signature(self._explain)
        self.layer_shapes = {
            name: tuple(int(d) for d in spec.shape[1:])
            for name, spec in self._features.structured_outputs.items()
            if name != contract.PROBABILITIES
        }

    def _check_signature(self, fn: Any) -> None:
        _, kwargs = fn.structured_input_signature
        spec = kwargs.get(contract.INPUT_NAME)
        if spec is None or spec.dtype != self._tf.uint8 or tuple(spec.shape[1:]) != IMAGE_SHAPE:
            raise ModelLoadError(
                f"{self.path}: signature input must be {contract.INPUT_NAME!r} uint8 [N, 32, 32, 3], got {kwargs}"
            )
        if contract.PROBABILITIES not in fn.structured_outputs:
            raise ModelLoadError(f"{self.path}: signature lacks the {contract.PROBABILITIES!r} output")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        result: np.ndarray = self._serve(image=self._tf.constant(batch))[contract.PROBABILITIES].numpy()
        return result

    def feature_maps(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._features(image=self._tf.constant(batch)).items()}

    def explain(self, batch: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        assert self._explain is not None, "explain called on a version without the signature"
        outputs = self._explain(image=self._tf.constant(batch), target_class=self._tf.constant(targets, self._tf.int32))
        return {k: v.numpy() for k, v in outputs.items()}

    def prepare(self, sizes: Sequence[int]) -> None:
        """Nothing ahead: TensorFlow traces each new shape on its first call (warm-up)."""
