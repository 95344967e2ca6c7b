"""The image policy: formats, modes, orientation, crop/resize and every bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.errors import ImageTooLarge, InvalidImage, UnsupportedImage
from app.imaging import decode as images
from app.imaging.decode import decode_image

LIMIT = 40_000_000


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_32x32_rgb_is_used_exactly() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = decode_image(encode(Image.fromarray(pixels), "PNG"), LIMIT)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        pytest.param("RGB", "JPEG", id="jpeg"),
        pytest.param("RGB", "WEBP", id="webp"),
        pytest.param("RGB", "BMP", id="bmp"),
        pytest.param("P", "GIF", id="gif-palette"),
        pytest.param("L", "PNG", id="grey"),
        pytest.param("RGBA", "PNG", id="rgba"),
        pytest.param("CMYK", "JPEG", id="cmyk"),
        pytest.param("I;16", "PNG", id="16-bit"),
        pytest.param("LA", "PNG", id="grey-alpha"),
    ],
)
def test_formats_and_modes_become_32x32_rgb(mode: str, fmt: str) -> None:
    img = Image.new("RGB", (100, 60), (200, 30, 30)).convert(mode)
    out = decode_image(encode(img, fmt), LIMIT)
    assert out.shape == (32, 32, 3)
    assert out.dtype == np.uint8


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    arr = np.full((40, 40), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    out = decode_image(encode(Image.fromarray(arr), "PNG"), LIMIT)
    assert 120 <= int(out.mean()) <= 135


def test_transparency_is_composited_on_white() -> None:
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    out = decode_image(encode(img, "PNG"), LIMIT)
    assert (out == 255).all()


def test_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue(), LIMIT)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


def test_centre_crop_keeps_the_middle() -> None:
    # A wide image: red left third, green middle, blue right; the square crop is green.
    arr = np.zeros((90, 270, 3), dtype=np.uint8)
    arr[:, :90, 0] = 255
    arr[:, 90:180, 1] = 255
    arr[:, 180:, 2] = 255
    out = decode_image(encode(Image.fromarray(arr), "PNG"), LIMIT)
    assert out[..., 1].mean() > 240 and out[..., 0].mean() < 10 and out[..., 2].mean() < 10


def test_exif_orientation_is_applied() -> None:
    # Left half black, right half white, stored with "rotate 90" orientation (6):
    # upright, the black half is on top.
    arr = np.zeros((64, 64, 3), dtype=np.uint8)
    arr[:, 32:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_image(encode(Image.fromarray(arr), "JPEG", exif=exif, quality=95), LIMIT)
    top, bottom = out[:12].mean(), out[20:].mean()
    assert top < 40 and bottom > 215


def test_large_jpeg_is_resized_with_antialiasing() -> None:
    # A fine checkerboard averages to grey when antialiased; naive sampling gives 0 or 255.
    board = (np.indices((1024, 1024)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = decode_image(encode(Image.fromarray(board).convert("RGB"), "PNG"), LIMIT)
    assert 100 < out.mean() < 155 and out.std() < 30


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        pytest.param(b"", InvalidImage, "empty", id="empty"),
        pytest.param(b"hello, world", UnsupportedImage, "not an image", id="text"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, UnsupportedImage, "", id="broken-png-header"),
    ],
)
def test_bad_bytes(data: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        decode_image(data, LIMIT, "upload.bin")
    assert fragment in str(info.value)


def test_truncated_jpeg_is_invalid() -> None:
    data = encode(Image.new("RGB", (200, 200), (10, 200, 10)), "JPEG")
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2], LIMIT, "half.jpg")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # A 20000x20000 PNG compresses to a few hundred KB but would need 1.2 GB decoded.
    data = encode(Image.new("L", (20000, 20000)), "PNG")
    assert len(data) < 2_000_000
    with pytest.raises(ImageTooLarge, match="exceeds the limit"):
        decode_image(data, LIMIT, "bomb.png")


def test_pixel_limit_is_the_setting() -> None:
    data = encode(Image.new("RGB", (300, 300)), "PNG")
    with pytest.raises(ImageTooLarge, match="300x300"):
        decode_image(data, 50_000, "big.png")


def _pil_path(data: bytes, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(images, "_plain_jpeg", lambda data, max_pixels: None)
        return decode_image(data, LIMIT)


def test_plain_jpegs_take_the_fast_path_with_the_same_pixels(real_samples, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    uploads = [data for _, _, data in real_samples]  # CIFAR-10's own 32x32 JPEGs
    uploads += [
        encode(Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L"), "JPEG"),  # grey
        encode(Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)), "JPEG", quality=90),  # crop + resize
        encode(Image.fromarray(rng.integers(0, 256, (128, 96, 3), dtype=np.uint8)), "JPEG", subsampling=0),
    ]
    for data in uploads:
        assert images._plain_jpeg(data, LIMIT) is not None
        np.testing.assert_array_equal(decode_image(data, LIMIT), _pil_path(data, monkeypatch))


def test_unusual_jpegs_go_through_pil(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = Image.new("RGB", (40, 40), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    cases = {
        "exif": encode(rgb, "JPEG", exif=exif.tobytes()),
        "cmyk": encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"),
        "big photo": encode(Image.new("RGB", (640, 480)), "JPEG"),
        "truncated": encode(Image.new("RGB", (32, 32), (9, 9, 9)), "JPEG")[:300],
    }
    for name, data in cases.items():
        assert images._plain_jpeg(data, LIMIT) is None, name
    assert images._plain_jpeg(encode(rgb, "JPEG"), max_pixels=1000) is None  # over the limit: PIL names it
    with pytest.raises(InvalidImage, match="cut.jpg"):  # 422, in PIL's words
        decode_image(cases["truncated"], LIMIT, "cut.jpg")
    with pytest.raises(ImageTooLarge, match="40x40"):
        decode_image(encode(rgb, "JPEG"), 1000, "big.jpg")


# A TIFF whose tag 0x011a (XResolution) was mutated: Pillow raised TypeError on it,
# which escaped as a 500.
MALFORMED_TIFF = bytes.fromhex(
    "49492a00080000000a0000010400010000000800000001010400010000000800000002010300030000008600000003010300010000000100"
    "000006010300010000000200000011010c00010000008c0000001501030001000000030000001601040001000000080000001701040001"
    "000000c00000001c0103000100000001000000000000000800080008000102030102030102030102030102030102030102030102030102"
    "030102030102030102030102030102030102030102030102030102030102034502030102030102030102030102030102030102030102030"
    "102030102030102030102030102030102030102030102030102030102030102030102030102030102030102030102030102030102030102"
    "030102030102030102030102036a0203010203010203010203010203010203010203010203010203010203010203010203010203"
)


def test_malformed_tiff_tag_is_invalid_not_a_crash() -> None:
    with pytest.raises(InvalidImage, match="bad.tif"):
        decode_image(MALFORMED_TIFF, LIMIT, "bad.tif")


def test_sixteen_bit_image_makes_no_full_size_float_copy() -> None:
    # 2000x2000 16-bit grey: 8 MB decoded; a float64 copy of it was 32 MB more.
    # tracemalloc sees NumPy's buffers (not Pillow's), which is where such copies live.
    import tracemalloc

    data = encode(Image.fromarray(np.full((2000, 2000), 40000, dtype=np.uint16)), "PNG")
    tracemalloc.start()
    try:
        out = decode_image(data, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 150 <= int(out.mean()) <= 160  # 40000 / 65535 * 255 = 155.7: scaled, not clipped
    assert peak < 8_000_000, f"{peak / 1e6:.1f} MB of NumPy buffers while decoding"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "I;16"])
def test_big_images_reduced_in_strips_match_the_full_size_path(mode: str) -> None:
    # 1500x1100: reduced by 8 in strips; the same picture converted and fitted at full
    # size (the old path) must give nearly the same 32x32 pixels (a strip pasted in the
    # wrong place would differ by tens of levels on average).
    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 256, (11, 15, 3), dtype=np.uint8)).resize(
        (1500, 1100), Image.Resampling.BICUBIC
    )
    if mode == "RGBA":
        alpha = Image.fromarray(np.tile(np.linspace(0, 255, 1500, dtype=np.uint8), (1100, 1)))
        img = base.copy()
        img.putalpha(alpha)
    elif mode == "P":
        img = base.quantize(64)
    elif mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    else:
        img = base.convert(mode)
    data = encode(img, "PNG")
    reference = images._fit(images._to_rgb(Image.open(io.BytesIO(data)), 65535.0 if mode == "I;16" else 255.0))
    out = decode_image(data, LIMIT)
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 32
    assert np.abs(out.astype(int) - reference.astype(int)).mean() < 3


def _uniform(mode: str, value: object) -> Image.Image:
    if mode in ("P", "PA"):
        rgb = Image.new("RGB", (40, 40), (200, 30, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
        return rgb if mode == "P" else rgb.convert("PA")
    return Image.new(mode, (40, 40), value)  # type: ignore[arg-type]


WHITE, RED = (255, 255, 255), (200, 30, 30)


@pytest.mark.parametrize(
    ("mode", "fmt", "value", "expected"),
    [
        pytest.param("1", "PNG", 1, WHITE, id="1-png"),
        pytest.param("1", "TIFF", 0, (0, 0, 0), id="1-tiff"),
        pytest.param("1", "BMP", 1, WHITE, id="1-bmp"),
        pytest.param("L", "JPEG", 77, (77, 77, 77), id="L-jpeg"),
        pytest.param("LA", "PNG", (77, 255), (77, 77, 77), id="LA-png-opaque"),
        pytest.param("LA", "TIFF", (77, 0), WHITE, id="LA-tiff-transparent"),
        pytest.param("P", "PNG", None, RED, id="P-png"),
        pytest.param("PA", "TIFF", None, RED, id="PA-tiff"),
        pytest.param("RGBA", "PNG", (10, 20, 30, 0), WHITE, id="RGBA-png-transparent"),
        pytest.param("CMYK", "JPEG", (0, 0, 0, 0), WHITE, id="CMYK-jpeg"),
        pytest.param("CMYK", "TIFF", (0, 255, 255, 0), (255, 0, 0), id="CMYK-tiff"),
        pytest.param("YCbCr", "TIFF", (128, 128, 128), (128, 128, 128), id="YCbCr-tiff"),
        pytest.param("I", "TIFF", 30000, (117, 117, 117), id="I-tiff-16-bit-range"),
        pytest.param("I", "TIFF", 200, (200, 200, 200), id="I-tiff-8-bit-range"),
        pytest.param("I;16", "PNG", 32768, (128, 128, 128), id="I16-png"),
        pytest.param("I;16", "TIFF", 1000, (4, 4, 4), id="I16-tiff"),
        pytest.param("I;16B", "TIFF", 65535, WHITE, id="I16B-tiff"),
        pytest.param("F", "TIFF", 0.5, (128, 128, 128), id="F-tiff-0-1"),
        pytest.param("F", "TIFF", 200.0, (200, 200, 200), id="F-tiff-0-255"),
        pytest.param("F", "TIFF", 30000.0, (117, 117, 117), id="F-tiff-0-65535"),
        pytest.param("F", "TIFF", -5.0, (0, 0, 0), id="F-tiff-negative"),
        pytest.param("F", "TIFF", float("nan"), (0, 0, 0), id="F-tiff-nan"),
        pytest.param("F", "TIFF", float("inf"), WHITE, id="F-tiff-inf"),
    ],
)
def test_every_mode_pillow_reads_from_files_follows_the_policy(
    mode: str, fmt: str, value: object, expected: tuple[int, int, int]
) -> None:
    """Issue 27: mode F always got 422 ('output array is read-only'). Each mode that
    Pillow produces from the accepted formats, as Pillow reads it back."""
    data = encode(_uniform(mode, value), fmt)
    assert Image.open(io.BytesIO(data)).mode == mode
    out = decode_image(data, LIMIT)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out.reshape(-1, 3), np.tile(expected, (32 * 32, 1)), atol=2)


def test_lab_tiff_decodes() -> None:
    data = encode(Image.new("LAB", (40, 40), (128, 128, 128)), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "LAB"
    assert decode_image(data, LIMIT).shape == (32, 32, 3)


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "ICO", "PCX", "SGI", "EPS", "SPIDER", "DDS", "QOI"])
def test_formats_outside_the_policy_are_unsupported(fmt: str) -> None:
    """Pillow reads some forty formats; the policy (and the 415's message) names six."""
    with pytest.raises(UnsupportedImage):
        decode_image(encode(Image.new("RGB", (40, 40), (1, 2, 3)), fmt), LIMIT)
