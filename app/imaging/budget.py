"""What decoding one upload may cost in time, beside the pixel limit's bound on memory.

Files whose structure is cheap to write but slow to parse held the decode thread for
seconds each (issue 27): 10 MB of empty JPEG markers, PNG chunks or GIF extensions
(4.5, 2.4 and 0.9 s: Pillow parses headers in Python, one read or more per structure),
and a 150 KB progressive JPEG whose scan is repeated 1,000 times (8.5 s: libjpeg walks
every block of the image once per scan, in C; docs/reliability.md has the table).
Three bounds, all checked before or while parsing, none after:

- JPEG scans: at most MAX_JPEG_SCANS start-of-scan markers in the file, counted in C
  before any decoder sees it (libjpeg-turbo's djpeg has `-maxscans` against this attack).
- Reads: Pillow reads the file through `BudgetedFile`, which refuses the read after
  HEADER_READS while the headers are parsed (markers, chunks, tags and extensions
  before the image data), and after one per READ_BYTES of the file (plus HEADER_READS)
  while the image data is decoded (a PNG's one-byte IDAT chunks).
- The clock: past the request's deadline the next read raises, so a request that has
  had its 504 stops occupying the decode thread at its next read. The web edge runs
  every decode-pool job through `run_until` with its request's deadline, so each
  decode in it (an upload, a TF Serving body's b64 images) knows it without being told.

A C call between two reads cannot be interrupted; what bounds it is the pixel limit
and the scan count (docs/reliability.md has the figures).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

from app.errors import InvalidImage, Timeout

T = TypeVar("T")

MAX_JPEG_SCANS = 32  # encoders write 1 (baseline), 10 (libjpeg progressive), about 12 (mozjpeg)
HEADER_READS = 4096  # a real file's headers take tens to a few hundred reads
READ_BYTES = 256  # image data: PNG encoders write IDAT chunks of 8-64 KB (3 reads each)
JPEG_SOS = b"\xff\xda"
# The deadline (time.monotonic()) of the decode-pool job running in this thread.
_deadline: ContextVar[float | None] = ContextVar("decode_deadline", default=None)


def run_until(until: float, call: Callable[[], T]) -> T:
    """Run `call` (a decode-pool job) with `until` as the deadline of every decode in it."""
    token = _deadline.set(until)
    try:
        return call()
    finally:
        _deadline.reset(token)


def check_jpeg_scans(data: bytes, name: str) -> None:
    """Refuse a JPEG with more scans than MAX_JPEG_SCANS (any of its start-of-scan
    markers, an EXIF thumbnail's included: an upper bound, counted without parsing)."""
    scans = data.count(JPEG_SOS)
    if scans > MAX_JPEG_SCANS:
        raise InvalidImage(
            f"{name}: the JPEG has {scans} scans, more than {MAX_JPEG_SCANS}: refused as too slow to decode"
        )


class BudgetedFile(io.BytesIO):
    """The upload as Pillow reads it, with a budget of reads and a deadline (see above).
    `until`: time.monotonic() after which reading gives up; None: the job's (`run_until`),
    if any."""

    def __init__(self, data: bytes, name: str, until: float | None = None) -> None:
        super().__init__(data)
        self.size = len(data)
        self.name_for_errors = name
        self.until = until if until is not None else _deadline.get()
        self.reads = 0
        self.max_reads = HEADER_READS
        self.phase = "headers"

    def start_image_data(self) -> None:
        """The headers are parsed: from here the budget grows with the file's size."""
        self.max_reads = self.reads + HEADER_READS + self.size // READ_BYTES
        self.phase = "image data"

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        if self.reads > self.max_reads:
            raise InvalidImage(
                f"{self.name_for_errors}: the file's structure is too fragmented to decode in time "
                f"(over {self.max_reads} reads for its {self.phase}: too many markers, chunks or blocks)"
            )
        if self.until is not None and time.monotonic() > self.until:
            raise Timeout(f"{self.name_for_errors}: decoding stopped at the request's deadline")
        return super().read(size)
