"""What the service does with a CIFAR10_* variable unset, for the tests that keep the
deployment files from copying a default: Settings' defaults (app/settings.py), and
cifar10-serve's own CIFAR10_HOST and CIFAR10_PORT (app/__main__.py); and what the
image sets in their place."""

from __future__ import annotations

import ast
import re

from app.settings import Settings
from tests.conftest import ROOT
from tests.deploy.conftest import dockerfile_instructions, expand_args

PREFIX = Settings.model_config["env_prefix"]
# Set by the supervisor for its own front processes, never by a user.
INTERNAL = {f"{PREFIX}MODEL_PROCESS_SOCKET", f"{PREFIX}SUPERVISOR_PID"}


def settings_fields() -> dict[str, str]:
    """CIFAR10_* variable -> Settings field name."""
    return {f"{PREFIX}{name}".upper(): name for name in Settings.model_fields}


def main_defaults() -> dict[str, str]:
    """The CIFAR10_* variables app/__main__.py reads itself, with their defaults:
    `os.environ.get("CIFAR10_HOST", "127.0.0.1")` and the like."""
    tree = ast.parse((ROOT / "app" / "__main__.py").read_text())
    found = {}
    for call in ast.walk(tree):
        if (
            isinstance(call, ast.Call)
            and getattr(call.func, "attr", None) == "get"
            and len(call.args) == 2
            and all(isinstance(a, ast.Constant) for a in call.args)
        ):
            name, default = (a.value for a in call.args)  # type: ignore[attr-defined]
            if str(name).startswith(PREFIX):
                found[name] = str(default)
    return found


def known(variable: str) -> bool:
    return variable in settings_fields() or variable in main_defaults()


def is_default(variable: str, value: str) -> bool:
    """Whether `value`, as the environment would give it, is what the service does anyway."""
    if variable in main_defaults():
        return value == main_defaults()[variable]
    name = settings_fields()[variable]
    if value == "":  # env_ignore_empty: an empty variable is the default
        return True
    # Through Settings itself, so that "5" and 5.0, "true" and True, "" and frozenset() compare.
    return bool(getattr(Settings(_env_file=None, **{name: value}), name) == Settings.model_fields[name].default)


def image_env() -> dict[str, str]:
    """The CIFAR10_* variables the image's final stage sets, build arguments at their
    defaults; an empty one is not set (Settings ignores it)."""
    env: dict[str, str] = {}
    for word, rest in expand_args(dockerfile_instructions((ROOT / "Dockerfile").read_text())):
        if word == "ENV":
            for name, value in re.findall(r"(\w+)=(\S*)", rest):
                if name.startswith(PREFIX) and value.strip('"'):
                    env[name] = value.strip('"')
    return env
