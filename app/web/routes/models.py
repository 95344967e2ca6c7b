"""Model status and metadata, as TensorFlow Serving's REST API answers them:
GET /v1/models/{name}[/versions/{v}|/labels/{label}][/metadata], and GET /v1/models
(not TF Serving's: every model with its versions, for the page)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.errors import NotFound
from app.serving.model_info import ModelInfo
from app.serving.operations import Operation
from app.serving.registry import Model, Registry
from app.web.dependencies import ModelName, RegistryDep, path_target
from app.web.routes.common import ERRORS, TF_ERRORS, add_model_routes
from model import contract
from model.classes import IMAGE_SHAPE

router = APIRouter(tags=["tensorflow-serving"])
RESPONSES: dict[int | str, dict[str, Any]] = {404: TF_ERRORS[404], 503: ERRORS[503]}


def _statuses(model: Model) -> list[dict[str, Any]]:
    return [v.status() for v in sorted(model.versions.values(), key=lambda v: -v.number)]


def _skipped(model: Model) -> list[dict[str, str]]:
    """Folders of the base path that look like versions but are not served, and why."""
    return [{"folder": name, "reason": why} for name, why in sorted(model.skipped.items())]


@router.get("/v1/models", responses={503: ERRORS[503]})
async def list_models(registry: RegistryDep) -> dict[str, Any]:
    """Every served model, its versions' states, its labels and the folders of its base
    path skipped as not versions (`skipped_folders`: `008`, `²`, a link out of the base
    path); `default` is the model that /predict and /feature-maps use without `?model=`."""
    return {
        "default": registry.default,
        "models": [
            {
                "name": m.name,
                "model_version_status": _statuses(m),
                "version_labels": dict(m.spec.version_labels),
                "skipped_folders": _skipped(m),
            }
            for m in registry.models.values()
        ],
    }


async def model_status(model_name: ModelName, request: Request, registry: RegistryDep) -> dict[str, Any]:
    """TF Serving's `model_version_status`: every version's state, or the named one's.
    Also, beside it, the name, version, classes, input, feature layers and model card
    metrics of the newest available version (or of the named one, if available), and the
    folders of the base path skipped as not versions."""
    name, version, label = path_target(request)
    model = registry.model(name)
    if version is None and label is None:
        shown = next(iter(model.available()), None)
        statuses = _statuses(model)
    else:
        shown = model.find(version, label)
        statuses = [shown.status()]
    info = shown.host.info.info() if shown is not None and shown.host is not None else {}
    return {**info, "model_version_status": statuses, "skipped_folders": _skipped(model)}


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
            "method_name": "tensorflow/serving/predict",
        }
    }
    if Operation.EXPLAIN not in info.unavailable:
        side = IMAGE_SHAPE[0]
        maps = [contract.GRADCAM_PREFIX + name for name in info.layer_names()] + [contract.SALIENCY]
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
                **{name: _tensor(f"StatefulPartitionedCall:{i + 2}", [-1, side, side]) for i, name in enumerate(maps)},
            },
            "method_name": "tensorflow/serving/predict",
        }
    return defs


def _leased_info(registry: Registry, name: str, version: int | None, label: str | None) -> tuple[ModelInfo, int]:
    leased = registry.acquire(name, version, label)
    try:
        if leased.host is None:  # acquire hands out loaded versions only
            raise NotFound(f"version {leased.number} of model {name!r} is not loaded")
        return leased.host.info, leased.number
    finally:
        registry.release(leased)


async def model_metadata(model_name: ModelName, request: Request, registry: RegistryDep) -> dict[str, Any]:
    """TF Serving's metadata: the version's signature definitions (404 unless AVAILABLE)."""
    info, number = _leased_info(registry, *path_target(request))
    return {
        "model_spec": {"name": info.name, "signature_name": "", "version": str(number)},
        "metadata": {"signature_def": {"signature_def": signature_defs(info)}},
    }


add_model_routes(router, "", model_status, "GET", responses=RESPONSES)
add_model_routes(router, "/metadata", model_metadata, "GET", responses=RESPONSES)
