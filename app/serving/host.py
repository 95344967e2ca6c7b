"""A loaded version: its classifier, its one inference thread and one batcher per
operation, all running. What a process that holds the model starts and stops, whether
it also serves HTTP (one process) or only its fronts (app.multiprocess.model_process).

`Host` is what the registry and the handlers need of one: this module's `ModelHost`, or
a front process's proxy for the model process's (app.multiprocess.front).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.metrics import Metrics
from app.serving.batcher import Batcher, BatchQueue
from app.serving.classifier import Classifier
from app.serving.model_info import ModelInfo
from app.serving.operations import Operation
from app.serving.runtimes import ModelLoadError, RuntimeLoader, load_runtime
from app.settings import Settings
from model.classes import IMAGE_SHAPE

log = logging.getLogger("cifar10")


class Host(Protocol):
    """A loaded version as requests use it."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def batchers(self) -> Mapping[Operation, BatchQueue[Any, Any]]: ...

    async def stop(self) -> None: ...


def running(host: Host) -> bool:
    """Every batcher of the version takes work."""
    return all(b.running for b in host.batchers.values())


@dataclass
class ModelHost:
    """The classifier, its one inference thread and its batchers, all running."""

    classifier: Classifier
    executor: ThreadPoolExecutor
    batchers: dict[Operation, Batcher[Any, Any]]
    load_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def info(self) -> ModelInfo:
        return self.classifier.info

    async def stop(self) -> None:
        """Refuse new items, finish the accepted ones, then stop the thread."""
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))
        self.executor.shutdown(wait=True)


async def start_model(
    settings: Settings,
    metrics: Metrics,
    loader: RuntimeLoader = load_runtime,
    *,
    model_dir: Path | None = None,
    name: str | None = None,
) -> ModelHost:
    """Load the model, check it, warm it at every batch size, and start its batchers.
    `model_dir` and `name`: a model folder or one version folder, and its served name
    (default the settings'). `loader` loads the runtime (tests pass a fake one)."""
    started = time.monotonic()
    try:
        classifier = await asyncio.to_thread(
            Classifier,
            model_dir or settings.model_dir,
            settings.max_batch_size,
            settings.runtime,
            name or settings.model_name,
            loader,
        )
    except ModelLoadError as exc:
        log.error("cannot load: %s (set CIFAR10_MODEL_DIR to a versioned SavedModel folder)", exc)
        raise
    seconds = {"load": time.monotonic() - started}
    # One thread runs every model call: the framework parallelises inside an op, and
    # two concurrent calls would only fight over the same cores (or the one GPU).
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
    try:
        warm_started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(executor, _check, classifier, settings.warmup)
        seconds["warmup"] = time.monotonic() - warm_started
    except BaseException:
        executor.shutdown(wait=False)
        raise
    batchers: dict[Operation, Batcher[Any, Any]] = {
        operation: Batcher(
            classifier.method(operation),
            executor,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_s,
            max_queue=settings.max_queue,
            observer=metrics.observer(operation),
        )
        for operation in Operation
    }
    host = ModelHost(classifier, executor, batchers, seconds)
    # Loading TensorFlow leaves ~435k long-lived objects that every full garbage
    # collection would walk again (274 ms each on the idle 2-core box), stalling all
    # requests; frozen, the collector skips them and only sees objects made per request.
    gc.collect()
    gc.freeze()
    for batcher in batchers.values():
        batcher.start()
    log.info(
        "serving %s version %s from %s with %s (load %.1fs, warm-up %.1fs, batch sizes %s)",
        classifier.name,
        classifier.version,
        classifier.path,
        settings.runtime,
        seconds["load"],
        seconds.get("warmup", 0.0),
        classifier.buckets,
    )
    return host


def _check(classifier: Classifier, warm: bool) -> None:
    """Run the model once (a version that loads but cannot answer is refused before it
    serves), then at every batch size if `warm`."""
    (probabilities,) = classifier.predict([np.zeros(IMAGE_SHAPE, dtype=np.uint8)])
    if probabilities.shape != (len(classifier.info.classes),) or not np.all(np.isfinite(probabilities)):
        raise ModelLoadError(
            f"{classifier.path}: predict returned {probabilities.shape}, not {len(classifier.info.classes)} probabilities"
        )
    if warm:
        classifier.warm()
