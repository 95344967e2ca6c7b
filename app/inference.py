"""From request bodies to results: decoding in the decode pool and batched inference,
both inside the request's deadline, with the service's overload policy, and the
shaping of probabilities into predictions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from starlette.types import Receive

from app.batcher import BatcherClosed, QueueFull
from app.deps import Inference
from app.errors import ClientClosed, NotReady, Overloaded, Timeout

T = TypeVar("T")
R = TypeVar("R")


def _timeout(inference: Inference[Any]) -> Timeout:
    return Timeout(f"the request did not finish within {inference.settings.request_timeout_s:g} s")


async def off_loop(inference: Inference[Any], calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run `calls` in the decode pool and return their results in order.

    On the deadline (504) or the first error, the calls that have not started are
    cancelled; a running one finishes in its thread, which the pool's size bounds.
    """
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(inference.decoder, call) for call in calls]
    try:
        return list(await asyncio.wait_for(asyncio.gather(*futures), inference.deadline - loop.time()))
    except TimeoutError:
        raise _timeout(inference) from None
    finally:
        for future in futures:
            future.cancel()


async def _disconnected(receive: Receive) -> None:
    """Return when the client goes away. Only called once the body has been read, so
    the next ASGI message can only be `http.disconnect`."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_batched(inference: Inference[R], images: Sequence[Any], receive: Receive) -> list[R]:
    """Submit `images` (or the batcher's other items); map a full queue to 429, the deadline to 504, shutdown to 503.

    If the client disconnects first, the submission is cancelled, so its images that
    have not reached the model are dropped (the batcher skips cancelled items).
    """
    loop = asyncio.get_running_loop()
    submit = asyncio.ensure_future(inference.batcher.submit(list(images)))
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait(
            (submit, watch), timeout=inference.deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watch.cancel()
    if submit not in done:
        submit.cancel()
        if watch in done:
            raise ClientClosed("the client went away before inference")
        raise _timeout(inference)
    try:
        return submit.result()
    except QueueFull:
        raise Overloaded(
            "the server is at capacity; retry after the Retry-After delay",
            headers={"Retry-After": str(inference.settings.retry_after_s)},
        ) from None
    except BatcherClosed:
        raise NotReady("the service is shutting down") from None


def to_prediction(probs: np.ndarray, classes: Sequence[str], filename: str | None, top_k: int) -> dict[str, Any]:
    """One image's entry of a response, shaped as `schemas.Prediction`.

    A plain dict, not the pydantic model: the routes return it in a JSONResponse, which
    skips FastAPI's re-validation and re-serialisation of the response (with it, a
    /predict response cost about twice as much to build, by timeit). tests/app check
    the bodies against the schemas.
    """
    order = np.argsort(-probs, kind="stable")
    values = probs.tolist()
    best = int(order[0])
    return {
        "filename": filename,
        "label": classes[best],
        "class_id": best,
        "probabilities": dict(zip(classes, values, strict=True)),
        "top_k": [{"label": classes[i], "probability": values[i]} for i in order[:top_k]],
    }
