"""Small inputs that cost far more than their size (issue 27), made on the fly so
nothing hostile is committed: images whose structure is cheap to write but slow to
parse, and the URLs of requests that repeat a parameter. Used by
scripts/bench_cost.py and tests/reliability/test_cost.py.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

TEN_MB = 10_000_000


def _encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _noise(side: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))


def _png_chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_parts(png: bytes) -> tuple[bytes, bytes]:
    """(IHDR chunk, the concatenated IDAT data) of a PNG."""
    pos, ihdr, idat = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            ihdr = _png_chunk(kind, data)
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    return ihdr, idat


def jpeg_empty_markers(size: int = TEN_MB) -> bytes:
    """A 256x256 JPEG (too big for the simplejpeg path) after `size` bytes of empty APP0 segments."""
    jpeg = _encode(_noise(256), "JPEG")
    return jpeg[:2] + b"\xff\xe0\x00\x02" * (size // 4) + jpeg[2:]


def jpeg_many_scans(extra_scans: int = 1000, side: int = 4000) -> bytes:
    """A progressive JPEG (about 150 KB) whose last scan, with its Huffman table, is
    repeated: each scan makes libjpeg walk every block of the image again, in C."""
    img = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    jpeg = _encode(img, "JPEG", progressive=True, quality=50)
    end = jpeg.rfind(b"\xff\xd9")
    last_sos = jpeg.rfind(b"\xff\xda", 0, end)
    table = jpeg.rfind(b"\xff\xc4", 0, last_sos)
    start = table if table > jpeg.rfind(b"\xff\xda", 0, last_sos) else last_sos
    return jpeg[:end] + jpeg[start:end] * extra_scans + jpeg[end:]


def png_many_chunks(size: int = TEN_MB) -> bytes:
    """A 256x256 PNG with `size` bytes of empty private chunks before its image data."""
    ihdr, idat = _png_parts(_encode(_noise(256), "PNG"))
    chunks = _png_chunk(b"zzZz") * (size // 12)
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunks + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND")


def png_tiny_idats(side: int = 512) -> bytes:
    """A noise PNG whose image data is split into one-byte IDAT chunks (13 bytes each)."""
    ihdr, idat = _png_parts(_encode(_noise(side), "PNG"))
    chunks = b"".join(_png_chunk(b"IDAT", idat[i : i + 1]) for i in range(len(idat)))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunks + _png_chunk(b"IEND")


def gif_many_extensions(size: int = TEN_MB) -> bytes:
    """A 256x256 GIF with `size` bytes of empty comment extensions before its first frame."""
    gif = _encode(_noise(256).convert("P"), "GIF")
    flags = gif[10]
    head = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    return gif[:head] + b"\x21\xfe\x00" * (size // 3) + gif[head:]


SLOW_FILES = {
    "JPEG, 10 MB of empty markers": jpeg_empty_markers,
    "JPEG, 1,000 repeated scans (4000x4000)": jpeg_many_scans,
    "JPEG, 32 scans (4000x4000): the most accepted": lambda: jpeg_many_scans(32 - 10),
    "PNG, 10 MB of empty chunks": png_many_chunks,
    "PNG, one-byte IDAT chunks (512x512)": png_tiny_idats,
    "GIF, 10 MB of empty extensions": gif_many_extensions,
}


def repeated_layers_url(layer: str = "stem", url_bytes: int = 1400) -> str:
    """/feature-maps naming one layer over and over, about `url_bytes` long."""
    return "/feature-maps?layers=" + ",".join([layer] * (url_bytes // (len(layer) + 1)))


def repeated_key_url(path: str, key: str, value: str, url_bytes: int = 1400) -> str:
    """`path` with `key=value` repeated, about `url_bytes` long."""
    return path + "?" + "&".join([f"{key}={value}"] * (url_bytes // (len(key) + len(value) + 2)))
