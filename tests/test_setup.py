"""The set-up that `make test` runs before the tests: the system packages check."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "system-packages.sh"


def run(path: str, *pairs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(SCRIPT), *pairs], env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=60
    )


def test_present_commands_install_nothing() -> None:
    done = run(os.environ["PATH"], "bash:bash")
    assert done.returncode == 0
    assert done.stdout == done.stderr == ""


def test_missing_package_without_apt_get_is_named_in_one_line(tmp_path: Path) -> None:
    # A PATH with `id` but no apt-get: as a non-root user, or a machine that is not Debian.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    id_path = shutil.which("id")
    assert id_path is not None
    (bin_dir / "id").symlink_to(id_path)
    done = run(str(bin_dir), "no-such-command-here:no-such-package")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "missing system packages: no-such-package; install them with: sudo apt-get install no-such-package"
    ]


def test_make_test_checks_the_browser_packages_first() -> None:
    plan = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    lines = plan.splitlines()
    check = next(i for i, line in enumerate(lines) if "system-packages.sh" in line)
    assert "chromium:chromium" in lines[check] and "chromedriver:chromium-driver" in lines[check]
    assert check < next(i for i, line in enumerate(lines) if "-m pytest" in line)
