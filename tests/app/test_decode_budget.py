"""What one decode may cost in time (issue 27, app/imaging/budget.py): the JPEG scan
cap, the read budget for headers and image data, and the deadline checked at each read.
Small files here; the 10 MB ones against a real server: tests/reliability/test_cost.py."""

from __future__ import annotations

import sys
import time

import pytest

from app.errors import InvalidImage, Timeout
from app.imaging import budget
from app.imaging.decode import decode_image
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from hostile_files import gif_many_extensions, jpeg_empty_markers, jpeg_many_scans, png_many_chunks, png_tiny_idats

LIMIT = 1 << 24


def test_a_jpeg_at_the_scan_cap_decodes_and_one_more_is_refused() -> None:
    at_cap = jpeg_many_scans(budget.MAX_JPEG_SCANS - 10, side=256)  # the encoder writes 10
    assert at_cap.count(budget.JPEG_SOS) == budget.MAX_JPEG_SCANS
    assert decode_image(at_cap, LIMIT).shape == (32, 32, 3)
    with pytest.raises(InvalidImage, match="scans"):
        decode_image(jpeg_many_scans(budget.MAX_JPEG_SCANS - 9, side=256), LIMIT)


@pytest.mark.parametrize(
    ("make", "phase"),
    [
        pytest.param(lambda: jpeg_empty_markers(4 * (budget.HEADER_READS + 100)), "headers", id="jpeg-markers"),
        pytest.param(lambda: png_many_chunks(12 * (budget.HEADER_READS + 100)), "headers", id="png-chunks"),
        pytest.param(lambda: gif_many_extensions(3 * (budget.HEADER_READS + 100)), "headers", id="gif-extensions"),
        pytest.param(lambda: png_tiny_idats(256), "image data", id="png-one-byte-idats"),
    ],
)
def test_fragmented_structures_are_refused_within_the_read_budget(make: object, phase: str) -> None:
    data = make()  # type: ignore[operator]
    with pytest.raises(InvalidImage, match=f"reads for its {phase}"):
        decode_image(data, LIMIT)


def test_the_same_structures_under_the_budget_decode() -> None:
    for data in (jpeg_empty_markers(400), png_many_chunks(1200), gif_many_extensions(300)):
        assert decode_image(data, LIMIT).shape == (32, 32, 3)


def test_a_decode_past_its_deadline_stops_at_the_next_read() -> None:
    data = png_many_chunks(12 * 1000)  # a PNG (not the simplejpeg path), a few hundred reads
    with pytest.raises(Timeout, match="deadline"):
        decode_image(data, LIMIT, until=time.monotonic() - 1)
    with pytest.raises(Timeout):
        budget.run_until(time.monotonic() - 1, lambda: decode_image(data, LIMIT))
    assert budget.run_until(time.monotonic() + 60, lambda: decode_image(data, LIMIT)).shape == (32, 32, 3)


@pytest.mark.anyio
async def test_every_edge_decodes_under_the_deadline(fake_model) -> None:
    """The guard is the service's (run_until, wired by the app factory), and Work.decode,
    which HTTP and gRPC share, runs every job under it with the request's deadline."""
    from concurrent.futures import ThreadPoolExecutor

    from app.main import create_app
    from app.serving.work import Deadline, Work
    from tests.app.conftest import make_settings

    assert create_app(make_settings(fake_model)).state.service.decode_guard is budget.run_until
    seen: list[float] = []

    def spy(until: float, job: object) -> object:
        seen.append(until)
        return job()  # type: ignore[operator]

    with ThreadPoolExecutor(1) as pool:
        work = Work(None, pool, Deadline.start(30, 1), spy)  # type: ignore[arg-type]
        assert await work.decode([lambda: 1, lambda: 2]) == [1, 2]
    assert len(seen) == 2 and all(abs(until - (time.monotonic() + 30)) < 5 for until in seen)
