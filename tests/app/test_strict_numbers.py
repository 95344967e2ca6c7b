"""One strict parser for every number in a folder name, URL path or query (issue 27):
`str.isdigit()` took '²', '①', '٣' and fullwidth digits (a 500, a silently accepted
class id, a start-up stopped by a folder name), and `008` had two spellings. On the
fake runtime; the real server: tests/reliability/test_strictness.py."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from model import contract
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import fake_loader, write_fake_model
from tests.helpers import png_bytes

IMAGE = png_bytes(np.full((32, 32, 3), 90, dtype=np.uint8))
TWENTY_DIGITS = "12345678901234567890"
ODD_NAMES = ["008", "²", "①", "٣", "３", "½", TWENTY_DIGITS]


@pytest.mark.parametrize(
    ("text", "maximum", "expected"),
    [
        pytest.param("0", 9, 0, id="zero"),
        pytest.param("7", 9, 7, id="digit"),
        pytest.param("999999999999999999", contract.MAX_VERSION, contract.MAX_VERSION, id="18-digits"),
        pytest.param("1000000000000000000", contract.MAX_VERSION, None, id="over-the-maximum"),
        pytest.param(TWENTY_DIGITS, contract.MAX_VERSION, None, id="20-digits"),
        pytest.param("10", 9, None, id="over-a-small-maximum"),
        pytest.param("08", 9, None, id="leading-zero"),
        pytest.param("00", 9, None, id="double-zero"),
        pytest.param("", 9, None, id="empty"),
        pytest.param("+1", 9, None, id="sign"),
        pytest.param("-1", 9, None, id="negative"),
        pytest.param(" 1", 9, None, id="space"),
        pytest.param("1_0", 99, None, id="underscore"),
        pytest.param("²", 9, None, id="superscript-two"),
        pytest.param("①", 9, None, id="circled-one"),
        pytest.param("٣", 9, None, id="arabic-indic-three"),
        pytest.param("３", 9, None, id="fullwidth-three"),
        pytest.param("𝟑", 9, None, id="mathematical-bold-three"),
    ],
)
def test_parse_number_takes_canonical_ascii_only(text: str, maximum: int, expected: int | None) -> None:
    assert contract.parse_number(text, maximum) == expected


def _base_path(root: Path) -> Path:
    """Versions 1 and 2, every odd name as a folder, a non-version folder, and a link
    (named 9) to a version folder outside the base path."""
    base = write_fake_model(write_fake_model(root / "cifar10", 1), 2)
    for name in ODD_NAMES:
        shutil.copytree(base / "1", base / name)  # a loadable model: only its name is wrong
    (base / "incoming").mkdir()
    outside = write_fake_model(root / "elsewhere", 9) / "9"
    os.symlink(outside, base / "9")
    return base


def test_scan_versions_skips_odd_folders_and_links_out(tmp_path: Path) -> None:
    base = _base_path(tmp_path)
    found = contract.scan_versions(base)
    assert found.versions == {1: base / "1", 2: base / "2"}
    assert set(found.skipped) == {*ODD_NAMES, "9"}
    assert "outside" in found.skipped["9"]
    assert contract.latest_version_dir(base) == base / "2"


def test_a_link_inside_the_base_path_is_a_version(tmp_path: Path) -> None:
    base = write_fake_model(tmp_path / "cifar10", 1)
    os.symlink(base / "1", base / "3")
    assert contract.scan_versions(base).versions == {1: base / "1", 3: base / "3"}


def test_a_name_that_is_not_utf8_is_shown_escaped(tmp_path: Path) -> None:
    base = write_fake_model(tmp_path / "cifar10", 1)
    os.mkdir(os.fsencode(base) + b"/\xff4")  # not a number to anyone: not listed at all
    os.mkdir(os.fsencode(base) + b"/0\xb2")  # ASCII and a stray byte: not numeric either
    found = contract.scan_versions(base)
    assert found.versions == {1: base / "1"} and found.skipped == {}
    assert contract.display_name(os.fsdecode(b"\xff4")) == "\\xff4"


def test_served_name_of_a_version_folder_needs_a_canonical_number() -> None:
    assert contract.served_name(Path("models/cifar10/6")) == "cifar10"
    assert contract.served_name(Path("models/cifar10/²")) == "²"


@pytest.mark.anyio
async def test_odd_folders_are_skipped_with_a_status_entry(tmp_path: Path) -> None:
    base = _base_path(tmp_path)
    async with serving(make_settings(base), fake_loader) as client:
        listing = (await client.get("/v1/models")).json()["models"][0]
        assert [s["version"] for s in listing["model_version_status"]] == ["2"]
        skipped = {entry["folder"]: entry["reason"] for entry in listing["skipped_folders"]}
        assert set(skipped) == {*ODD_NAMES, "9"}
        status = await client.get("/v1/models/cifar10")
        assert status.status_code == 200
        assert status.json()["skipped_folders"] == listing["skipped_folders"]
        r = await client.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        assert r.status_code == 200
        assert r.json()["model"]["version"] == status.json()["version"] == "2"


@pytest.mark.anyio
async def test_a_version_has_one_spelling_on_every_route(tmp_path: Path) -> None:
    base = write_fake_model(tmp_path / "cifar10", 8)
    (base / "8").rename(base / "008")
    write_fake_model(base, 7)
    async with serving(make_settings(base), fake_loader) as client:
        status = (await client.get("/v1/models/cifar10")).json()
        assert [s["version"] for s in status["model_version_status"]] == ["7"]
        assert status["version"] == "7"
        metadata = (await client.get("/v1/models/cifar10/metadata")).json()
        assert metadata["model_spec"]["version"] == "7"
        r = await client.post("/predict?version=7", files={"file": ("a.png", IMAGE, "image/png")})
        assert r.status_code == 200
        assert r.json()["model"]["version"] == "7"


@pytest.mark.anyio
@pytest.mark.parametrize("text", ["²", "٣", "３", "07", "+7", TWENTY_DIGITS])
async def test_odd_version_numbers_in_a_url_are_refused(fake_model: Path, text: str) -> None:
    async with serving(make_settings(fake_model), fake_loader) as client:
        r = await client.post("/predict", params={"version": text}, files={"file": ("a.png", IMAGE, "image/png")})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_request"
        r = await client.get(f"/v1/models/cifar10/versions/{text}")
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "status", "target"),
    [
        pytest.param("3", 200, 3, id="ascii-id"),
        pytest.param("cat", 200, 3, id="name"),
        pytest.param("²", 422, None, id="superscript-two-was-500"),
        pytest.param("٣", 422, None, id="arabic-indic-three-was-accepted"),
        pytest.param("３", 422, None, id="fullwidth-three"),
        pytest.param("03", 422, None, id="leading-zero"),
        pytest.param(" 3", 422, None, id="space"),
    ],
)
async def test_explain_class_ids_are_ascii(fake_model: Path, value: str, status: int, target: int | None) -> None:
    async with serving(make_settings(fake_model), fake_loader) as client:
        r = await client.post(
            "/explain", params={"class": value, "map": "saliency"}, files={"file": ("a.png", IMAGE, "image/png")}
        )
        assert r.status_code == status, r.text
        if target is None:
            assert r.json()["error"]["code"] == "invalid_request"
        else:
            assert r.json()["target"]["class_id"] == target


@pytest.mark.anyio
async def test_an_odd_folder_appearing_later_blocks_no_poll(tmp_path: Path) -> None:
    base = write_fake_model(tmp_path / "cifar10", 1)
    async with serving(make_settings(base, model_poll_s=0.05), fake_loader) as client:
        (base / "²").mkdir()
        write_fake_model(base, 2)
        for _ in range(500):  # the poll needs two scans to call version 2 settled
            status = (await client.get("/v1/models/cifar10")).json()
            if status.get("version") == "2":
                break
            await asyncio.sleep(0.02)
        assert status["version"] == "2"
        assert [entry["folder"] for entry in status["skipped_folders"]] == ["²"]
