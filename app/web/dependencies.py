"""FastAPI dependencies: settings, the service's parts, the inference context of a
request, and API-key auth.

An inference route declares its whole policy by taking `InferenceDep` (model and
version from the query) or `PathInferenceDep` (TF Serving's path): from that one
declaration come its admission control (app.web.policy derives the admitted routes
from the route table), its query parameters (declared here, checked for strangers), the
lease on the version it names, and its deadline.

All of them are `async def` on purpose: they never block, and FastAPI runs a plain
`def` dependency in a worker thread, which cost five thread hand-offs per request
(15% of the event loop's time under load, measured with py-spy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request
from pydantic import BeforeValidator

from app.errors import APIError, InvalidRequest, NotFound, NotReady
from app.serving.api_keys import check_api_key
from app.serving.operations import Operation
from app.serving.registry import Registry
from app.serving.service import Service
from app.serving.work import Work, leased
from app.settings import Settings
from app.web.policy import reject_unknown_query
from model import contract

T = TypeVar("T")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]


async def get_registry(service: ServiceDep) -> Registry:
    if not service.ready or service.registry is None:
        raise NotReady("the models are not loaded yet")
    return service.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def version_number(text: str | None, error: type[APIError], what: str) -> int | None:
    """A version number as a path or query gives it, parsed as version folders are
    (model.contract.parse_version), so a version has one spelling everywhere."""
    if text is None:
        return None
    number = contract.parse_version(text)
    if number is None:
        raise error(f"{what} must be a version number ({contract.VERSION_SYNTAX}), got {text[:40]!r}")
    return number


def _query_version(value: Any) -> Any:
    if isinstance(value, str):
        return version_number(value, InvalidRequest, "the query's version")
    return value


ModelQuery = Annotated[str | None, Query(description="a served model's name; default the default model")]
VersionQuery = Annotated[
    int | None,
    BeforeValidator(_query_version),
    Query(ge=0, le=contract.MAX_VERSION, description="a version of that model; default its newest available"),
]
ModelName = Annotated[str, Path(description="the served model's name", examples=["cifar10"])]


def path_target(request: Request) -> tuple[str, int | None, str | None]:
    """(model, version, label) of TF Serving's path:
    `/v1/models/{model_name}[/versions/{version}|/labels/{label}]`."""
    path = request.path_params
    return path["model_name"], version_number(path.get("version"), NotFound, "the path's version"), path.get("label")


@dataclass(frozen=True)
class Inference(Work):
    """What an inference route needs, resolved by one dependency: the leased version,
    the decode pool, the deadline (app.serving.work.Work) and the settings. FastAPI
    solves each dependency node per request (12% of the event loop's time under load,
    py-spy), so it is one node."""

    settings: Settings

    async def run(self, operation: Operation, items: Sequence[Any], request: Request) -> list[Any]:
        """`items` through the version's batcher of `operation`, within the deadline;
        dropped if the client goes away first."""
        self.require(operation)
        receive = request.receive

        async def departed() -> None:
            # Only called once the body has been read: the next message can only be a disconnect.
            while (await receive())["type"] != "http.disconnect":
                pass

        return await self.submit(operation, items, departed)


@contextmanager
def _leased(request: Request, name: str | None, version: int | None, label: str | None) -> Iterator[Inference]:
    """The version the request names, held for the request's whole duration."""
    service: Service = request.app.state.service
    settings: Settings = request.app.state.settings
    with leased(service, name, version, label, settings.request_timeout_s, settings.retry_after_s) as work:
        yield Inference(work.host, work.decoder, work.deadline, work.guard, settings)


async def get_inference(
    request: Request, model: ModelQuery = None, version: VersionQuery = None
) -> AsyncIterator[Inference]:
    """The inference context of a route that names its model and version in the query."""
    reject_unknown_query(request)
    with _leased(request, model, version, None) as inference:
        yield inference


async def get_path_inference(request: Request, model_name: ModelName) -> AsyncIterator[Inference]:
    """The inference context of a TF Serving route, which names them in the path."""
    with _leased(request, *path_target(request)) as inference:
        yield inference


InferenceDep = Annotated[Inference, Depends(get_inference)]
PathInferenceDep = Annotated[Inference, Depends(get_path_inference)]
# What makes a route an inference route (app.web.policy.inference_routes).
INFERENCE_DEPENDENCIES = (get_inference, get_path_inference)


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """With keys configured, accept `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    check_api_key(settings.api_keys, request.headers.get("authorization", ""), request.headers.get("x-api-key", ""))
