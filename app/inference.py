"""From decoded images to results through a batcher, with the service's overload and
deadline policy, and the shaping of probabilities into predictions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from app.batcher import BatcherClosed, BatchQueue, QueueFull
from app.errors import NotReady, Overloaded, Timeout
from app.settings import Settings

R = TypeVar("R")


async def run_batched(batcher: BatchQueue[np.ndarray, R], images: Sequence[np.ndarray], settings: Settings) -> list[R]:
    """Submit `images`; map a full queue to 429, a passed deadline to 504, shutdown to 503."""
    try:
        return await asyncio.wait_for(batcher.submit(list(images)), settings.request_timeout_s)
    except QueueFull:
        raise Overloaded(
            "the server is at capacity; retry after the Retry-After delay",
            headers={"Retry-After": str(settings.retry_after_s)},
        ) from None
    except TimeoutError:
        raise Timeout(f"inference did not finish within {settings.request_timeout_s:g} s") from None
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
