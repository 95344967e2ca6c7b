"""From decoded images to results through a batcher, with the service's overload and
deadline policy, and the shaping of probabilities into predictions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from app.batcher import Batcher, BatcherClosed, QueueFull
from app.errors import NotReady, Overloaded, Timeout
from app.schemas import Prediction, TopK
from app.settings import Settings

R = TypeVar("R")


async def run_batched(batcher: Batcher[np.ndarray, R], images: Sequence[np.ndarray], settings: Settings) -> list[R]:
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


def to_prediction(probs: np.ndarray, classes: Sequence[str], filename: str | None, top_k: int) -> Prediction:
    order = np.argsort(-probs, kind="stable")
    best = int(order[0])
    return Prediction(
        filename=filename,
        label=classes[best],
        class_id=best,
        probabilities={name: float(p) for name, p in zip(classes, probs, strict=True)},
        top_k=[TopK(label=classes[i], probability=float(probs[i])) for i in order[:top_k]],
    )
