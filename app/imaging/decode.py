"""Turn uploaded image bytes into the model's input: uint8 [32, 32, 3] RGB.

Policy, in order (docs/api.md, "Image policy"):
1. Refuse anything that is not one of ACCEPTED_FORMATS (415), whose declared size
   exceeds the pixel limit (413, checked before decoding, so a decompression bomb costs
   nothing), whose structure would be slow to parse (422, app.imaging.budget), or
   that fails to decode fully (422, e.g. truncated files).
2. Animated formats: the first frame.
3. Apply the EXIF orientation, so phone photos are upright.
4. Convert to RGB: 16-bit, 32-bit and float greys are scaled to 8 bits; CMYK and
   palettes are converted; transparency is composited on a white background.
5. Centre-crop to a square, then resize to 32x32 with an antialiasing (Lanczos)
   filter. A 32x32 input is used exactly as it is.

Memory: JPEGs decode at reduced scale (libjpeg's DCT scaling); other formats decode
at full size (at most 4 bytes a pixel in Pillow), then are box-reduced strip by strip,
so one image costs about 4 bytes per declared pixel plus a few MB, and no full-size
converted or float copy is made. This runs in the decode pool, never on the event loop.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import APIError, ImageTooLarge, InvalidImage, UnsupportedImage
from app.imaging.budget import BudgetedFile, check_jpeg_scans

SIZE = 32
# What docs/api.md names (JPEG's plugin also opens cameras' MPO files). Pillow knows some
# forty more formats, each parsed by a plugin of its own (EPS even runs Ghostscript):
# every one is more code that a hostile file can make slow.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
BACKGROUND = (255, 255, 255)  # what transparent pixels become
JPEG_SOI = b"\xff\xd8\xff"
EXIF_HEADER = b"Exif\x00\x00"  # starts the APP1 segment that may hold an orientation


def decode_image(data: bytes, max_pixels: int, name: str = "image", until: float | None = None) -> np.ndarray:
    """Decode one image file per the policy above; raise an APIError on bad input.
    `until`: the deadline on time.monotonic()'s clock (default: the decode-pool job's,
    app.imaging.budget.run_until); decoding stops at the first read after it."""
    if not data:
        raise InvalidImage(f"{name}: the file is empty")
    if data.startswith(JPEG_SOI):
        check_jpeg_scans(data, name)
    pixels = _plain_jpeg(data, max_pixels)
    if pixels is not None:
        return pixels if pixels.shape[:2] == (SIZE, SIZE) else _fit(Image.fromarray(pixels))
    file = BudgetedFile(data, name, until)
    try:
        img = Image.open(file, formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedImage(
            f"{name}: not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"{name}: the declared size exceeds the limit of {max_pixels} pixels") from None
    except APIError:
        raise  # the read budget or the deadline (app.imaging.budget)
    except Exception as exc:  # Pillow's plugins raise many types on hostile headers (TypeError in TIFF tags, ...)
        raise InvalidImage(f"{name}: cannot read the image ({type(exc).__name__}: {exc})") from None
    file.start_image_data()
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLarge(f"{name}: the declared size {width}x{height} exceeds the limit of {max_pixels} pixels")
        if width < 1 or height < 1:
            raise InvalidImage(f"{name}: the image has no pixels")
        try:
            if img.format == "JPEG" and min(width, height) > 4 * SIZE:
                # Let libjpeg decode at a reduced scale: big photos decode far faster.
                img.draft("RGB", (2 * SIZE, 2 * SIZE))
            img.load()
            rgb = _transpose(_reduce_to_rgb(img), img)
        except Image.DecompressionBombError:
            raise ImageTooLarge(f"{name}: the declared size exceeds the limit of {max_pixels} pixels") from None
        except APIError:
            raise
        except Exception as exc:  # any decoder failure on untrusted bytes is the file's fault: 422
            raise InvalidImage(f"{name}: the image is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    return _fit(rgb)


def quiet_pillow() -> None:
    """Silence Pillow's warnings process-wide (the decode pool calls it once).

    Hostile files make Pillow warn per request (corrupt EXIF, oversized tags), which
    would flood the log; its bomb warning is replaced by our own pixel limit.
    `warnings.catch_warnings` per call is not thread-safe, and decoding runs in threads.
    """
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


def _plain_jpeg(data: bytes, max_pixels: int) -> np.ndarray | None:
    """RGB pixels of a small colour or grey JPEG without EXIF, else None (use PIL).

    The common upload, decoded by libjpeg-turbo through simplejpeg without PIL's
    Python-level file parsing: 22 against 205 us for a 32x32 CIFAR JPEG (timeit), on
    the event loop that bounds throughput. Same library and settings (accurate DCT,
    fancy upsampling), so the same pixels; tests/app/test_images.py compares both
    paths. Anything unusual (EXIF, CMYK, big photos that PIL decodes at reduced scale,
    size over the limit, any decoder complaint) goes to PIL, which applies the full
    policy and names the problem.
    """
    # find() with bounds looks at the first 64 KiB (where APP1 sits) without copying them.
    if not data.startswith(JPEG_SOI) or data.find(EXIF_HEADER, 0, 65536) >= 0:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in ("YCbCr", "Gray") or width * height > max_pixels or min(width, height) > 4 * SIZE:
            return None
        pixels: np.ndarray = simplejpeg.decode_jpeg(
            data, colorspace="RGB", fastdct=False, fastupsample=False, strict=True
        )
        return pixels
    except ValueError:
        return None


# Box-reduce big images to about 4x the target side (Pillow's `reducing_gap`
# reasoning: the Lanczos fit that follows then looks the same) before converting, in
# strips of rows, so no full-size converted copy is ever made.
REDUCE_TO = 4 * SIZE
STRIP_PIXELS = 1 << 18  # source pixels per strip: about 1 MB per temporary copy
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ORIENTATION = {  # EXIF orientation -> the transpose that makes the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _reduce_to_rgb(img: Image.Image) -> Image.Image:
    """RGB of the decoded `img`; images with a side over 2 * REDUCE_TO or over
    STRIP_PIXELS pixels become their centre square box-reduced to at least REDUCE_TO
    pixels a side, converted strip by strip. Peak memory beyond the decoded image
    (at most 4 bytes a pixel in Pillow) is a few strips, whatever the size."""
    width, height = img.size
    top = _high_bit_top(img)
    side = min(width, height)
    factor = max(1, side // REDUCE_TO)
    if factor == 1 and width * height <= STRIP_PIXELS:
        return _to_rgb(img, top)
    left, upper = (width - side) // 2, (height - side) // 2
    out = Image.new("RGB", (-(-side // factor), -(-side // factor)))
    rows = factor * max(1, STRIP_PIXELS // (side * factor))  # whole reduce boxes per strip
    for y in range(0, side, rows):
        strip = img.crop((left, upper + y, left + side, upper + min(side, y + rows)))
        rgb = _to_rgb(strip, top)
        out.paste(rgb.reduce(factor) if factor > 1 else rgb, (0, y // factor))
    return out


def _high_bit_top(img: Image.Image) -> float:
    """The value that maps to 255 for 16-bit, 32-bit and float greys (scaled, not
    clipped): 65535 for 16-bit; for 32-bit and float, 65535 when a value exceeds 255,
    else 255, and for float also 1.0 when every value lies within 0-1."""
    if img.mode not in HIGH_BIT_MODES:
        return 255.0
    if img.mode.startswith("I;16"):
        return 65535.0
    extrema: Any = img.getextrema()  # (low, high) for one band, in C, without a copy
    low, high = float(extrema[0]), float(extrema[1])  # NaN compares false: 255 then
    if img.mode == "F" and low >= 0.0 and high <= 1.0:
        return 1.0
    return 65535.0 if high > 255 else 255.0


def _to_rgb(img: Image.Image, top: float = 255.0) -> Image.Image:
    if img.mode in HIGH_BIT_MODES:
        # Called on strips: a float32 copy of a strip, never of the whole image. A copy
        # (np.array): for mode F, np.asarray is a read-only view of Pillow's buffer.
        arr = np.array(img, dtype=np.float32)
        np.nan_to_num(arr, copy=False, nan=0.0, posinf=top, neginf=0.0)
        arr *= np.float32(255.0 / top)
        arr += np.float32(0.5)
        img = Image.fromarray(np.clip(arr, 0, 255, out=arr).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _transpose(rgb: Image.Image, original: Image.Image) -> Image.Image:
    """Apply the original's EXIF orientation to the (small) converted image."""
    method = _ORIENTATION.get(original.getexif().get(0x0112, 1))
    return rgb.transpose(method) if method is not None else rgb


def _fit(img: Image.Image) -> np.ndarray:
    if img.size != (SIZE, SIZE):
        img = ImageOps.fit(img, (SIZE, SIZE), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return np.asarray(img, dtype=np.uint8).copy()
