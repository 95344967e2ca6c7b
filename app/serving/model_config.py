"""Which models a process serves, and which of their versions: the model config file
(`CIFAR10_MODEL_CONFIG_FILE`, YAML or JSON, shaped like TensorFlow Serving's
`model_config_list`), or one model from `CIFAR10_MODEL_DIR` when there is none.

    model_config_list:
      - name: cifar10
        base_path: saved_models/cifar10          # relative paths: to the config file's folder
        model_version_policy: {latest: {num_versions: 1}}   # or {all: {}}, {specific: {versions: [4, 6]}}
        version_labels: {stable: 4, canary: 6}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.settings import Settings
from model import contract

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ModelConfigError(Exception):
    """The model config file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latest(_Strict):
    num_versions: int = Field(1, ge=1, le=100)


class All(_Strict):
    pass


class Specific(_Strict):
    versions: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class VersionPolicy(_Strict):
    """TF Serving's `model_version_policy`: exactly one of latest, all, specific."""

    latest: Latest | None = None
    all: All | None = None
    specific: Specific | None = None

    @model_validator(mode="after")
    def _one(self) -> VersionPolicy:
        chosen = [k for k in ("latest", "all", "specific") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"choose one of latest, all, specific; got {', '.join(chosen)}")
        return self

    def select(self, versions: set[int]) -> set[int]:
        """The versions to serve among those available on disk."""
        if self.all is not None:
            return set(versions)
        if self.specific is not None:
            return versions & set(self.specific.versions)
        keep = self.latest.num_versions if self.latest is not None else 1
        return set(sorted(versions)[-keep:]) if versions else set()


class ModelSpec(_Strict):
    """One model: its served name, the folder of its numbered versions, which of them
    to serve, and labels that name versions."""

    name: str = Field(pattern=NAME_PATTERN)
    base_path: Path
    model_version_policy: VersionPolicy = VersionPolicy()
    version_labels: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Annotated[int, Field(ge=0)]] = {}
    model_platform: str = "tensorflow"  # accepted for TF Serving configs; the runtime is CIFAR10_RUNTIME

    @model_validator(mode="after")
    def _labels_in_policy(self) -> ModelSpec:
        specific = self.model_version_policy.specific
        if specific is not None:
            stray = {k: v for k, v in self.version_labels.items() if v not in specific.versions}
            if stray:
                raise ValueError(f"labels point at versions the policy does not serve: {stray}")
        return self


class ModelConfigList(_Strict):
    model_config_list: Annotated[list[ModelSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> ModelConfigList:
        names = [m.name for m in self.model_config_list]
        if len(names) != len(set(names)):
            raise ValueError(f"model names must be unique: {names}")
        return self


def read_config_file(path: Path) -> list[ModelSpec]:
    """Parse and check the file; relative base paths are resolved against its folder."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelConfigError(f"cannot read the model config file {path}: {exc}") from exc
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ModelConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
    try:
        config = ModelConfigList.model_validate(data)
    except ValidationError as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc
    return [
        spec.model_copy(update={"base_path": (path.parent / spec.base_path).absolute()})
        for spec in config.model_config_list
    ]


def model_specs(settings: Settings) -> list[ModelSpec]:
    """The served models; the first is the default one (of /predict and /feature-maps)."""
    if settings.model_config_file is not None:
        return read_config_file(settings.model_config_file)
    name = settings.model_name or contract.served_name(settings.model_dir)
    return [ModelSpec(name=name, base_path=settings.model_dir)]
