"""The app's packages and the direction of their imports (docs/architecture.md): the
serving core, the imaging code and the protocols' data import no web framework and no
gRPC, the two edges (web: HTTP, rpc: gRPC) never import each other nor reach into the
multi-process design, and the top-level modules import none of the packages. Checked
statically over every module, and at run time for the serving core."""

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
RPC = ("grpc", "grpc_health", "tensorflow_serving")  # gRPC and the protos its edge speaks
FRAMEWORKS = ("tensorflow", "jax", "keras", "openvino")
PACKAGES = ("app.serving", "app.web", "app.rpc", "app.protocols", "app.imaging", "app.multiprocess")
# Package (or top-level module) -> what its modules must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "app.serving": (
        *WEB_FRAMEWORKS,
        *RPC,
        *FRAMEWORKS,
        "app.web",
        "app.rpc",
        "app.protocols",
        "app.imaging",
        "app.multiprocess",
    ),
    "app.imaging": (*WEB_FRAMEWORKS, *RPC, "app.web", "app.rpc", "app.protocols", "app.serving", "app.multiprocess"),
    "app.protocols": (*WEB_FRAMEWORKS, *RPC, *FRAMEWORKS, "app.web", "app.rpc", "app.multiprocess"),
    "app.multiprocess": ("fastapi", "starlette", *RPC, "app.web", "app.rpc"),
    "app.web": (*RPC, *FRAMEWORKS, "app.multiprocess", "app.rpc"),
    # TF Serving's protos import from tensorflow.core (which loads TensorFlow: the TF runtime
    # has it loaded anyway); nothing else of a framework.
    "app.rpc": (
        *WEB_FRAMEWORKS,
        "tensorflow.python",
        "tensorflow.compat",
        "jax",
        "keras",
        "openvino",
        "app.web",
        "app.multiprocess",
    ),
    "app.errors": (*WEB_FRAMEWORKS, *RPC, *PACKAGES),
    "app.settings": (*WEB_FRAMEWORKS, *RPC, *PACKAGES),
    "app.metrics": (*WEB_FRAMEWORKS, *RPC, *PACKAGES),
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
    "app.serving.runtimes.openvino_ir",
    "app.serving.runtimes.quiet",
}


@pytest.mark.parametrize("path", [pytest.param(p, id=module_name(p)) for p in sorted(APP.rglob("*.py"))])
def test_imports_go_one_way(path: Path) -> None:
    module = module_name(path)
    forbidden = rules_for(module)
    if module in FRAMEWORK_LOADERS:
        forbidden = tuple(f for f in forbidden if f not in FRAMEWORKS)
    bad = sorted(m for m in top_level_imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not bad, f"{module} imports {bad}"


def test_every_module_sits_in_a_package_or_is_a_named_top_level_one() -> None:
    top = {p.stem for p in APP.glob("*.py")}
    assert top == {"__init__", "__main__", "main", "settings", "errors", "metrics", "healthcheck"}
    assert {p.name for p in APP.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {
        name.split(".")[1] for name in PACKAGES
    }


def test_the_serving_core_runs_without_a_web_framework_or_grpc() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import app.serving, app.protocols\n"
        "for package in (app.serving, app.protocols):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {[*WEB_FRAMEWORKS, *RPC]!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
