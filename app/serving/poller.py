"""Watching each model's base path for versions that appear, change or go away, and
handing the settled ones to the registry, once at start-up and then every
`CIFAR10_MODEL_POLL_S` seconds.

A version folder being copied in can be seen half-written (TensorFlow Serving has
the same race). A folder counts as settled only when its files (names, sizes,
modification times) are the same on two polls in a row; at start-up every folder
counts as settled, as nothing is being rolled out then. A version that failed to
load is tried again once its files change, so a copy that was caught half-way
anyway heals on a later poll. Copying to a non-numeric name and renaming it into
place avoids the wait and the race altogether.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from app.serving.registry import Fingerprint, Registry
from model import contract

log = logging.getLogger("cifar10.poller")


def fingerprint(folder: Path) -> Fingerprint:
    """Every file under `folder`: relative path, size and modification time."""
    entries = []
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            with contextlib.suppress(OSError):  # deleted while we walk: the next poll sees it
                stat = path.stat()
                entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


class Poller:
    """Scans every model's base path and applies what it finds to the registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._seen: dict[str, dict[int, Fingerprint]] = {}
        self._warned: dict[str, set[str]] = {}

    async def scan(self, *, initial: bool = False) -> None:
        """One pass over every model. `initial`: take every folder as settled."""
        for name, model in self.registry.models.items():
            try:
                found = await asyncio.to_thread(contract.scan_versions, model.spec.base_path)
                folders = found.versions
                prints = {n: await asyncio.to_thread(fingerprint, p) for n, p in folders.items()}
            except (OSError, contract.ModelDirError) as exc:
                if initial:
                    raise
                log.warning("cannot scan model %r: %s; keeping what it serves", name, exc)
                continue
            before = self._seen.get(name, {})
            settled = {n: (folders[n], fp) for n, fp in prints.items() if fp and (initial or before.get(n) == fp)}
            self._seen[name] = prints
            self._warn_skipped(name, found.skipped)
            await self.registry.apply(name, settled, frozenset(prints) - set(settled), found.skipped)

    def _warn_skipped(self, name: str, skipped: dict[str, str]) -> None:
        # Once per folder, not on every poll: the status (GET /v1/models) keeps listing it.
        warned = self._warned.setdefault(name, set())
        for folder in sorted(skipped.keys() - warned):
            log.warning("model %r: skipping folder %r of its base path: %s", name, folder, skipped[folder])
        warned.intersection_update(skipped)
        warned.update(skipped)

    async def run(self, interval_s: float) -> None:
        """Scan every `interval_s` seconds until cancelled; a failed scan is logged."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.scan()
            except Exception:
                log.exception("model poll failed; trying again in %g s", interval_s)
