"""What every gRPC call goes through, as every HTTP request goes through the middleware
and dependencies: a request id and the access log line, the request metrics (labelled
with the protocol), the API key from the call's metadata, admission for inference
calls, the leased version with the call's deadline, and domain errors mapped to gRPC
statuses (app/rpc/errors.py). A client that cancels (or whose deadline passes) cancels
the call's task; app.serving.work then cancels its submission, so its images that have
not reached the model are dropped."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from app.errors import APIError, InvalidRequest
from app.metrics import Protocol
from app.rpc.errors import abort, status_of, trailers_of
from app.serving.api_keys import check_api_key
from app.serving.service import Service
from app.serving.work import Work, leased
from app.settings import Settings

R = TypeVar("R")
log = logging.getLogger("cifar10.rpc")
access_log = logging.getLogger("cifar10.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def target(spec: Any) -> tuple[str, int | None, str | None]:
    """(model, version, label) of TF Serving's ModelSpec."""
    if not spec.name:
        raise InvalidRequest("model_spec.name is missing: name the served model (e.g. 'cifar10')")
    version = int(spec.version.value) if spec.HasField("version") else None
    return spec.name, version, spec.version_label or None


class Edge:
    """The service's state as the servicers use it."""

    def __init__(self, service: Service, settings: Settings, protocol: Protocol) -> None:
        self.service, self.settings, self.protocol = service, settings, protocol

    @contextmanager
    def work(self, context: Any, spec: Any) -> Iterator[Work]:
        """The version `spec` names, leased for the call, with the sooner of the service's
        request deadline and the client's."""
        remaining = context.time_remaining()
        timeout_s = self.settings.request_timeout_s
        if remaining is not None:
            timeout_s = max(0.0, min(timeout_s, remaining))
        with leased(self.service, *target(spec), timeout_s, self.settings.retry_after_s) as work:
            yield work

    async def call(
        self,
        method: str,
        context: Any,
        handler: Callable[[], Awaitable[R]],
        inference: bool = False,
    ) -> R:
        """Run `handler` for the call `method` (its full path) under the service's policies."""
        started = time.perf_counter()
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        offered = metadata.get("x-request-id", "")
        request_id = offered if _VALID_ID.match(offered) else uuid.uuid4().hex
        code = grpc.StatusCode.OK
        context.set_trailing_metadata((("x-request-id", request_id),))
        try:
            check_api_key(self.settings.api_keys, metadata.get("authorization", ""), metadata.get("x-api-key", ""))
            if not inference:
                return await handler()
            with self.service.admission.admitted():
                return await handler()
        except APIError as exc:
            code = status_of(exc)
            context.set_trailing_metadata((("x-request-id", request_id), *trailers_of(exc)))
            await abort(context, code, exc.message)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client went away, or its deadline passed
            raise
        except Exception:
            log.exception("unhandled error in %s", method)
            code = grpc.StatusCode.INTERNAL
            await abort(context, code, "internal server error")
        finally:
            elapsed = time.perf_counter() - started
            self.service.metrics.request_done(method, "POST", code.name, self.protocol, elapsed)
            access_log.info(
                '%s "POST %s" %s %.1fms request_id=%s protocol=%s',
                context.peer(),
                method,
                code.name,
                elapsed * 1000,
                request_id,
                self.protocol.value,
            )
