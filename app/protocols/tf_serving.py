"""TensorFlow Serving's model status and metadata, as its JSON mapping of the protos
(`GetModelStatusResponse`, `SignatureDefMap`): the REST routes return these dicts, and
the gRPC servicers parse them into the messages, so both transports say the same."""

from __future__ import annotations

from typing import Any

from app.errors import NotFound
from app.serving.model_info import ModelInfo
from app.serving.operations import Operation
from app.serving.registry import Model, Registry
from model import contract
from model.classes import IMAGE_SHAPE

PREDICT_METHOD = "tensorflow/serving/predict"


def statuses(model: Model) -> list[dict[str, Any]]:
    """Every version's `ModelVersionStatus`, newest first."""
    return [v.status() for v in sorted(model.versions.values(), key=lambda v: -v.number)]


def version_statuses(registry: Registry, name: str, version: int | None, label: str | None) -> list[dict[str, Any]]:
    """TF Serving's `model_version_status`: every version's, or the named one's (NotFound
    for an unknown model, version or label)."""
    model = registry.model(name)
    if version is None and label is None:
        return statuses(model)
    return [model.find(version, label).status()]


def _tensor(name: str, shape: list[int], dtype: str = "DT_FLOAT") -> dict[str, Any]:
    dims = [{"size": str(d), "name": ""} for d in shape]
    return {"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": name}


def signature_defs(info: ModelInfo) -> dict[str, Any]:
    """The served signatures in TF Serving's `SignatureDefMap` JSON (from the contract,
    so the jax runtime answers the same). `explain` only where the version has it."""
    image = _tensor(f"{contract.SERVING_SIGNATURE}_{contract.INPUT_NAME}:0", [-1, *IMAGE_SHAPE], "DT_UINT8")
    probabilities = _tensor("StatefulPartitionedCall:0", [-1, len(info.classes)])
    defs = {
        contract.SERVING_SIGNATURE: {
            "inputs": {contract.INPUT_NAME: image},
            "outputs": {contract.PROBABILITIES: probabilities},
            "method_name": PREDICT_METHOD,
        }
    }
    if Operation.EXPLAIN not in info.unavailable:
        side = IMAGE_SHAPE[0]
        defs[contract.EXPLAIN_SIGNATURE] = {
            "inputs": {
                contract.INPUT_NAME: _tensor(
                    f"{contract.EXPLAIN_SIGNATURE}_{contract.INPUT_NAME}:0", [-1, *IMAGE_SHAPE], "DT_UINT8"
                ),
                contract.TARGET_CLASS: _tensor(
                    f"{contract.EXPLAIN_SIGNATURE}_{contract.TARGET_CLASS}:0", [-1], "DT_INT32"
                ),
            },
            "outputs": {
                contract.PROBABILITIES: probabilities,
                contract.TARGET_CLASS: _tensor("StatefulPartitionedCall:1", [-1], "DT_INT32"),
                **{
                    name: _tensor(f"StatefulPartitionedCall:{i + 2}", [-1, side, side])
                    for i, name in enumerate(info.explain_maps())
                },
            },
            "method_name": PREDICT_METHOD,
        }
    return defs


def leased_info(registry: Registry, name: str | None, version: int | None, label: str | None) -> tuple[ModelInfo, int]:
    """The info and number of the AVAILABLE version a request names (NotFound otherwise)."""
    leased = registry.acquire(name, version, label)
    try:
        if leased.host is None:  # acquire hands out loaded versions only
            raise NotFound(f"version {leased.number} of model {name!r} is not loaded")
        return leased.host.info, leased.number
    finally:
        registry.release(leased)


def metadata(registry: Registry, name: str, version: int | None, label: str | None) -> dict[str, Any]:
    """TF Serving's `GetModelMetadataResponse` JSON: the version's signature definitions."""
    info, number = leased_info(registry, name, version, label)
    return {
        "model_spec": {"name": info.name, "signature_name": "", "version": str(number)},
        "metadata": {"signature_def": {"signature_def": signature_defs(info)}},
    }
