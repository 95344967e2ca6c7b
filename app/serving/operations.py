"""The operations a served version answers, in one table. The classifier, the loaded
version's batchers, the registry, the multi-process wire, the HTTP dependencies and the
metrics all read it, so adding an operation is one entry here (and its method on the
Classifier).

Each operation's items and results cross the process boundary (app.multiprocess) as
named numpy arrays; the codecs here are the only place that knows their layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from model import contract
from model.classes import IMAGE_SHAPE


class Operation(StrEnum):
    """What a request asks of a model version. The value names the batcher in metrics
    (`cifar10_batch_size{batcher="predict"}`) and the operation on the wire."""

    PREDICT = "predict"  # image -> probabilities, float32 [10]
    FEATURE_MAPS = "feature_maps"  # image -> every feature layer's [H, W, C] and `probabilities`
    EXPLAIN = "explain"  # (image, target class) -> Grad-CAM maps, saliency, probabilities, target_class


# What the explain batcher queues: a uint8 [32, 32, 3] image and the class to explain
# (contract.TOP_CLASS for its top class).
ExplainItem = tuple[np.ndarray, int]
Arrays = dict[str, np.ndarray]


def split_rows(arrays: Arrays, n: int) -> list[Arrays]:
    """The first `n` rows of a batch's named outputs, one dict per image (padding dropped)."""
    return [{k: v[i] for k, v in arrays.items()} for i in range(n)]


def _stack_rows(rows: Sequence[Arrays]) -> Arrays:
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _images(items: Sequence[np.ndarray]) -> Arrays:
    return {"images": np.stack(items)}


def _pairs(items: Sequence[ExplainItem]) -> Arrays:
    return {
        "images": np.stack([image for image, _ in items]),
        "targets": np.asarray([target for _, target in items], dtype=np.int32),
    }


@dataclass(frozen=True)
class OperationSpec:
    """One operation: the classifier method that runs it, an item to warm it with, and
    how its items and results travel as named arrays."""

    method: str  # the Classifier method: list of items -> one result per item
    blank: Callable[[], Any]  # an item of the right shape, for warm-up and the load check
    items_to_arrays: Callable[[Sequence[Any]], Arrays]
    arrays_to_items: Callable[[Arrays], list[Any]]
    results_to_arrays: Callable[[Sequence[Any]], Arrays]
    arrays_to_results: Callable[[Arrays, int], list[Any]]


def _blank_image() -> np.ndarray:
    return np.zeros(IMAGE_SHAPE, dtype=np.uint8)


OPERATIONS: dict[Operation, OperationSpec] = {
    Operation.PREDICT: OperationSpec(
        method="predict",
        blank=_blank_image,
        items_to_arrays=_images,
        arrays_to_items=lambda arrays: list(arrays["images"]),
        results_to_arrays=lambda results: {contract.PROBABILITIES: np.stack(results)},
        arrays_to_results=lambda arrays, n: list(arrays[contract.PROBABILITIES][:n]),
    ),
    Operation.FEATURE_MAPS: OperationSpec(
        method="feature_maps",
        blank=_blank_image,
        items_to_arrays=_images,
        arrays_to_items=lambda arrays: list(arrays["images"]),
        results_to_arrays=_stack_rows,
        arrays_to_results=split_rows,
    ),
    Operation.EXPLAIN: OperationSpec(
        method="explain",
        blank=lambda: (_blank_image(), contract.TOP_CLASS),
        items_to_arrays=_pairs,
        arrays_to_items=lambda arrays: list(zip(arrays["images"], arrays["targets"].tolist(), strict=True)),
        results_to_arrays=_stack_rows,
        arrays_to_results=split_rows,
    ),
}
