"""The docs agree with the code: the settings table against app/settings.py (the
deployment files are checked by tests/test_deployment_config.py and tests/deploy), and
every relative link in the README and docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.settings import Settings
from tests.conftest import ROOT

PREFIX = Settings.model_config["env_prefix"]
# Set by the supervisor for its own front processes, never by a user.
INTERNAL = {"model_process_socket", "supervisor_pid"}
# What a table cell or a compose default says for a setting without a value.
NO_VALUE = {"empty", "the folder's name"}


def settings_table() -> dict[str, str]:
    """Variable -> the default column of docs/configuration.md's settings table."""
    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `CIFAR10_") and len(cells) >= 2:
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def same(documented: str, default: object) -> bool:
    if documented in NO_VALUE or documented == "":
        return default in (None, frozenset(), "")
    if isinstance(default, bool):
        return documented == str(default).lower()
    if isinstance(default, int | float):
        return float(documented) == float(default)
    return documented == str(default)


def test_settings_table_lists_every_setting_with_its_default() -> None:
    table = settings_table()
    fields = {f"{PREFIX}{name}".upper(): field for name, field in Settings.model_fields.items() if name not in INTERNAL}
    assert sorted(table) == sorted(fields)
    for variable, field in fields.items():
        assert same(table[variable], field.default), (
            f"{variable}: docs say {table[variable]!r}, settings.py {field.default!r}"
        )


DOCS = [ROOT / "README.md", ROOT / "DEVELOPERS.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_relative_links_point_at_files(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"


def test_readme_is_a_front_door() -> None:
    # The depth lives in docs/; the README stays about a page or two.
    assert len((ROOT / "README.md").read_text().splitlines()) <= 170
