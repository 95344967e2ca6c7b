"""The batch sizes the classifier pads to."""

from __future__ import annotations

from app.serving.classifier import bucket_sizes


def test_bucket_sizes_bound_the_padding() -> None:
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(8) == [1, 2, 4, 8]
    assert bucket_sizes(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert bucket_sizes(20) == [1, 2, 4, 8, 16, 20]
    for n in range(1, 65):  # every batch pads by fewer than 8 images
        assert 0 <= min(b for b in bucket_sizes(64) if b >= n) - n < 8
