"""The app's packages and the direction of their imports (docs/architecture.md): the
serving core and the imaging code import no web framework, the web edge never reaches
into the multi-process design, and the top-level modules import none of the packages.
Checked statically over every module, and at run time for the serving core."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

APP = ROOT / "app"
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "httptools", "multipart")
PACKAGES = ("app.serving", "app.web", "app.imaging", "app.multiprocess")
# Package (or top-level module) -> what its modules must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "app.serving": (*WEB_FRAMEWORKS, "app.web", "app.imaging", "app.multiprocess", "tensorflow", "jax", "keras"),
    "app.imaging": (*WEB_FRAMEWORKS, "app.web", "app.serving", "app.multiprocess"),
    "app.multiprocess": ("fastapi", "starlette", "app.web"),
    "app.web": ("app.multiprocess", "tensorflow", "jax", "keras"),
    "app.errors": (*WEB_FRAMEWORKS, *PACKAGES),
    "app.settings": (*WEB_FRAMEWORKS, *PACKAGES),
    "app.metrics": (*WEB_FRAMEWORKS, *PACKAGES),
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def top_level_imports(path: Path) -> set[str]:
    """Every absolute import of the module, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def rules_for(module: str) -> tuple[str, ...]:
    return next((rule for owner, rule in FORBIDDEN.items() if module == owner or module.startswith(owner + ".")), ())


# A runtime loads its framework when it loads a model, by design (app/serving/runtimes).
# (quiet.py: the tensorflow runtime's import, with its start-up INFO lines filtered.)
FRAMEWORK_LOADERS = {
    "app.serving.runtimes.tf_savedmodel",
    "app.serving.runtimes.jax_keras",
    "app.serving.runtimes.quiet",
}


@pytest.mark.parametrize("path", [pytest.param(p, id=module_name(p)) for p in sorted(APP.rglob("*.py"))])
def test_imports_go_one_way(path: Path) -> None:
    module = module_name(path)
    forbidden = rules_for(module)
    if module in FRAMEWORK_LOADERS:
        forbidden = tuple(f for f in forbidden if f not in ("tensorflow", "jax", "keras"))
    bad = sorted(m for m in top_level_imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not bad, f"{module} imports {bad}"


def test_every_module_sits_in_a_package_or_is_a_named_top_level_one() -> None:
    top = {p.stem for p in APP.glob("*.py")}
    assert top == {"__init__", "__main__", "main", "settings", "errors", "metrics", "healthcheck"}
    assert {p.name for p in APP.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {
        name.split(".")[1] for name in PACKAGES
    }


def test_the_serving_core_runs_without_a_web_framework() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import app.serving\n"
        "for info in pkgutil.walk_packages(app.serving.__path__, 'app.serving.'):\n"
        "    importlib.import_module(info.name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {list(WEB_FRAMEWORKS)!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
