"""Admission control: at most `limit` inference requests in progress, whatever protocol
they came by; beyond it a request is refused at once (429), before its body is read.

The batch queue's own limit only bounds images that reached it; requests still reading
their body or waiting for the decode pool queued on the event loop without bound
(client p99 of 8 s at 10x overload). Counting requests as they arrive refuses the
excess for the cost of one small response. Event-loop only: no lock needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import Overloaded

REFUSAL = "the server is at capacity; retry after the Retry-After delay"


class Admission:
    """A counter of inference requests in progress with a limit."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_progress = 0

    def try_enter(self) -> bool:
        """Count one more request in progress, or return False at the limit."""
        if self.in_progress >= self.limit:
            return False
        self.in_progress += 1
        return True

    def leave(self) -> None:
        self.in_progress -= 1

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold a place for a block; Overloaded (429) at the limit."""
        if not self.try_enter():
            raise Overloaded(REFUSAL, headers={"Retry-After": str(self.retry_after_s)})
        try:
            yield
        finally:
            self.leave()
