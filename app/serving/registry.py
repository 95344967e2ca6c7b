"""The versions of every served model, in TensorFlow Serving's states, and the one
place they change: a new version is loaded and warmed while the old one serves,
published in one step, and only then is the old one drained and unloaded.

Requests hold a lease on the version they picked (`acquire`/`release`) for their whole
duration; a version being unloaded is no longer handed out, and it stops only when its
last lease is released. So a request never meets a closed batcher because of a swap:
everything here runs on the event loop, and picking a version and leasing it is one
step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from app.errors import NotFound
from app.metrics import Metrics
from app.serving.host import Host, running
from app.serving.memory import free_memory
from app.serving.model_config import ModelSpec
from app.serving.operations import Operation
from model import contract

log = logging.getLogger("cifar10.registry")


class State(StrEnum):
    """TF Serving's servable states (`ModelVersionStatus.State`)."""

    START = "START"  # found on disk, about to load
    LOADING = "LOADING"  # loading, checking the contract, warming
    AVAILABLE = "AVAILABLE"  # serving
    UNLOADING = "UNLOADING"  # no new requests; finishing the accepted ones, then freed
    END = "END"  # unloaded, or refused (then with an error)


# Loads, checks and warms one version folder of a model; raises on a broken one.
HostLoader = Callable[[ModelSpec, Path], Awaitable[Host]]
Fingerprint = tuple[tuple[str, int, int], ...]  # (relative path, size, mtime) of every file


@dataclass(eq=False)
class Version:
    number: int
    path: Path
    state: State = State.START
    error: str = ""
    host: Host | None = None
    fingerprint: Fingerprint = ()  # the folder's files when its load was tried
    leases: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def status(self) -> dict[str, Any]:
        """TF Serving's `ModelVersionStatus` JSON."""
        code = "UNKNOWN" if self.error else "OK"
        return {
            "version": str(self.number),
            "state": self.state.value,
            "status": {"error_code": code, "error_message": self.error},
        }


@dataclass(eq=False)
class Model:
    spec: ModelSpec
    versions: dict[int, Version] = field(default_factory=dict)
    # Folders of the base path that look like versions but are not served, with why
    # (model.contract.scan_versions), as of the last scan.
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def available(self) -> list[Version]:
        """AVAILABLE versions, newest first."""
        return sorted((v for v in self.versions.values() if v.state is State.AVAILABLE), key=lambda v: -v.number)

    def refused(self, number: int, fingerprint: Fingerprint) -> bool:
        """The version failed to load, and its folder has not changed since."""
        v = self.versions.get(number)
        return v is not None and v.state is State.END and bool(v.error) and v.fingerprint == fingerprint

    def serves(self, number: int) -> bool:
        v = self.versions.get(number)
        return v is not None and v.state is State.AVAILABLE

    def find(self, version: int | None = None, label: str | None = None) -> Version:
        """The version a request names (none: the newest available); NotFound if unknown."""
        if label is not None:
            if label not in self.spec.version_labels:
                raise NotFound(f"model {self.name!r} has no version label {label!r}")
            version = self.spec.version_labels[label]
        if version is None:
            latest = self.available()
            if not latest:
                raise NotFound(f"model {self.name!r} has no available version")
            return latest[0]
        found = self.versions.get(version)
        if found is None:
            # Often a version that is on disk but outside the version policy (TF Serving's
            # default serves only the newest): say what is served and where that is set.
            served = ", ".join(str(v.number) for v in self.available()) or "none"
            raise NotFound(
                f"model {self.name!r} does not serve version {version} (serving: {served}); "
                "older versions are served by a model config file's version policy (docs/model-management.md)"
            )
        return found


class Registry:
    """Every served model's versions. `apply` is the only writer (the poller calls it);
    `acquire`/`release` are what requests use."""

    def __init__(self, specs: list[ModelSpec], load: HostLoader | None, metrics: Metrics) -> None:
        self.models = {spec.name: Model(spec) for spec in specs}
        self.default = specs[0].name
        self._load = load
        self._metrics = metrics
        self._unloads: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one apply at a time: a version is loaded once

    @classmethod
    def single(cls, host: Host, metrics: Metrics) -> Registry:
        """One fixed, already loaded version (a front process's view of the model process)."""
        info = host.info
        registry = cls([ModelSpec(name=info.name, base_path=Path())], None, metrics)
        number = contract.parse_version(info.version)
        assert number is not None, f"the model process serves version {info.version!r}"
        registry.models[info.name].versions[number] = Version(number, Path(), State.AVAILABLE, host=host)
        registry._publish(registry.models[info.name])
        return registry

    def model(self, name: str | None) -> Model:
        found = self.models.get(self.default if name is None else name)
        if found is None:
            raise NotFound(f"model {name!r} is not served here; served: {', '.join(self.models)}")
        return found

    def acquire(self, name: str | None = None, version: int | None = None, label: str | None = None) -> Version:
        """The AVAILABLE version a request names, leased until `release`. NotFound for an
        unknown model, version or label, or a version that is not AVAILABLE."""
        model = self.model(name)
        found = model.find(version, label)
        if found.state is not State.AVAILABLE or found.host is None:
            raise NotFound(f"version {found.number} of model {model.name!r} is {found.state.value}, not AVAILABLE")
        found.leases += 1
        found.idle.clear()
        return found

    def release(self, version: Version) -> None:
        version.leases -= 1
        if version.leases == 0:
            version.idle.set()

    @property
    def ready(self) -> bool:
        """Every model has an available version whose batchers run."""
        return all(
            any(v.host is not None and running(v.host) for v in model.available()) for model in self.models.values()
        )

    def queue_depth(self, operation: Operation) -> int:
        """Items waiting in every loaded version's batcher of that operation."""
        return sum(
            v.host.batchers[operation].queue_depth
            for model in self.models.values()
            for v in model.versions.values()
            if v.host is not None
        )

    async def apply(
        self,
        name: str,
        ready: dict[int, tuple[Path, Fingerprint]],
        arriving: frozenset[int] = frozenset(),
        skipped: Mapping[str, str] | None = None,
    ) -> None:
        """Serve what the model's policy picks among the `ready` version folders: load
        and warm the new ones (newest first), publish each when warm, then unload the
        versions no longer picked. A refused version is left out of the policy's pick
        until its folder changes, so the version it was meant to replace keeps serving.
        `arriving`: folders seen but not settled yet (still being copied), shown as START.
        `skipped`: folders that are not versions, with why, for the status."""
        async with self._lock:
            model = self.models[name]
            model.skipped = dict(skipped or {})
            for n, v in list(model.versions.items()):
                if v.state is State.START and n not in arriving:
                    del model.versions[n]  # gone before it settled
            for n in arriving:
                model.versions.setdefault(n, Version(n, Path(), State.START))
            candidates = {n: where for n, where in ready.items() if not model.refused(n, where[1])}
            while True:
                wanted = model.spec.model_version_policy.select(set(candidates))
                todo = [n for n in wanted if not model.serves(n)]
                if not todo:
                    break
                number = max(todo)
                if not await self._load_version(model, number, *candidates[number]):
                    del candidates[number]
            for v in model.available():
                if v.number not in wanted:
                    self._unload(model, v)

    async def _load_version(self, model: Model, number: int, path: Path, fingerprint: Fingerprint) -> bool:
        assert self._load is not None, "a fixed registry loads nothing"
        version = Version(number, path, State.LOADING, fingerprint=fingerprint)
        model.versions[number] = version
        self._publish(model)
        log.info("loading version %d of model %r from %s", number, model.name, path)
        try:
            host = await self._load(model.spec, path)
        except Exception as exc:  # the loader's errors are many (TensorFlow's own among them)
            version.state, version.error = State.END, f"{type(exc).__name__}: {exc}"[:2000]
            self._metrics.load_failures.labels(model.name).inc()
            self._publish(model)
            log.error("refused version %d of model %r: %s", number, model.name, version.error)
            return False
        version.host, version.state = host, State.AVAILABLE  # published: new requests get it
        self._publish(model)
        log.info("version %d of model %r is AVAILABLE", number, model.name)
        return True

    def _unload(self, model: Model, version: Version) -> None:
        version.state = State.UNLOADING  # from here no request can lease it
        self._publish(model)
        task = asyncio.create_task(self._drain(model, version), name=f"unload {model.name}/{version.number}")
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    async def _drain(self, model: Model, version: Version) -> None:
        await version.idle.wait()  # requests that leased it finish on it
        host, version.host = version.host, None
        if host is not None:
            await host.stop()  # its batchers finish what they accepted; its thread ends
            del host
            free_memory()
        version.state = State.END
        self._publish(model)
        log.info("unloaded version %d of model %r", version.number, model.name)

    def _publish(self, model: Model) -> None:
        counts = dict.fromkeys(State, 0)
        for v in model.versions.values():
            counts[v.state] += 1
        for state, count in counts.items():
            self._metrics.model_versions.labels(model.name, state.value).set(count)

    async def stop(self) -> None:
        """Drain and stop every version (shutdown)."""
        for model in self.models.values():
            for v in model.available():
                self._unload(model, v)
        while self._unloads:
            await asyncio.gather(*list(self._unloads), return_exceptions=True)
