"""Model status and metadata, as TensorFlow Serving's REST API answers them:
GET /v1/models/{name}[/versions/{v}|/labels/{label}][/metadata], and GET /v1/models
(not TF Serving's: every model with its versions, for the page)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.protocols.tf_serving import metadata, statuses, version_statuses
from app.serving.registry import Model
from app.web.dependencies import ModelName, RegistryDep, path_target
from app.web.routes.common import ERRORS, TF_ERRORS, add_model_routes

router = APIRouter(tags=["tensorflow-serving"])
RESPONSES: dict[int | str, dict[str, Any]] = {404: TF_ERRORS[404], 503: ERRORS[503]}


def _skipped(model: Model) -> list[dict[str, str]]:
    """Folders of the base path that look like versions but are not served, and why
    (not TF Serving's: an addition beside its status)."""
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
                "model_version_status": statuses(m),
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
    shown = next(iter(model.available()), None) if version is None and label is None else model.find(version, label)
    info = shown.host.info.info() if shown is not None and shown.host is not None else {}
    listed = version_statuses(registry, name, version, label)
    return {**info, "model_version_status": listed, "skipped_folders": _skipped(model)}


async def model_metadata(model_name: ModelName, request: Request, registry: RegistryDep) -> dict[str, Any]:
    """TF Serving's metadata: the version's signature definitions (404 unless AVAILABLE)."""
    return metadata(registry, *path_target(request))


add_model_routes(router, "", model_status, "GET", responses=RESPONSES)
add_model_routes(router, "/metadata", model_metadata, "GET", responses=RESPONSES)
