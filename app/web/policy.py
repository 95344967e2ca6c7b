"""Each route's policy, derived from the route table rather than listed by hand: a
route is an inference route (admission control, the batch queue, the deadline) when it
depends on one of the inference dependencies (app.web.dependencies), and the query
parameters a route takes are those it and its dependencies declare."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from app.errors import InvalidRequest
from app.metrics import Protocol

# Path prefix -> the protocol its routes speak; anything else is the service's own API.
PROTOCOL_PREFIXES = (("/v2", Protocol.V2_REST), ("/v1/models", Protocol.TFSERVING_REST))


def protocol_of(path: str) -> Protocol:
    """The protocol a request path speaks (the metrics' label, the error body's shape)."""
    for prefix, protocol in PROTOCOL_PREFIXES:
        if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + ":"):
            return protocol
    return Protocol.HTTP


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def inference_routes(routes: Iterable[BaseRoute], markers: tuple[Callable[..., Any], ...]) -> list[APIRoute]:
    """The routes that depend on one of `markers` (the inference dependencies)."""
    return [
        route
        for route in routes
        if isinstance(route, APIRoute) and any(d.call in markers for d in _dependants(route.dependant))
    ]


def query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters `route` declares, its dependencies' included (a walk of a
    few nodes: microseconds, so not cached; routes are not hashable anyway)."""
    return frozenset(param.alias for d in _dependants(route.dependant) for param in d.query_params)


def reject_unknown_query(request: Request) -> None:
    """422 for query parameters the route does not take, as the schema says: a typo
    such as `topk=5` would otherwise be ignored in silence; and for a parameter given
    more than once, which FastAPI would resolve by silently taking the last."""
    allowed = query_names(request.scope["route"])
    params = request.query_params
    unknown = params.keys() - allowed
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter(s) {', '.join(sorted(map(repr, unknown)))[:200]}; "
            f"this route takes {', '.join(sorted(allowed))}"
        )
    if len(params) < len(params.multi_items()):
        repeated = sorted(key for key in params if len(params.getlist(key)) > 1)
        raise InvalidRequest(
            f"query parameter(s) given more than once: {', '.join(map(repr, repeated))}; give each once"
        )
