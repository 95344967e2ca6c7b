"""Load, warm and batch the model: what a process that holds the model starts and
stops, whether it also serves HTTP (one process) or only its fronts (app.engine)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.batcher import Batcher
from app.classifier import Classifier, ExplainItem, ModelLoadError
from app.metrics import Metrics
from app.runtimes import RuntimeLoader, load_runtime
from app.settings import Settings

log = logging.getLogger("cifar10")


@dataclass
class ModelHost:
    """The classifier, its one inference thread and its batchers, all running."""

    classifier: Classifier
    executor: ThreadPoolExecutor
    predict_batcher: Batcher[np.ndarray, np.ndarray]
    feature_batcher: Batcher[np.ndarray, dict[str, np.ndarray]]
    load_seconds: dict[str, float] = field(default_factory=dict)
    # Items are (image, target class); None only where a test builds a host without it.
    explain_batcher: Batcher[ExplainItem, dict[str, np.ndarray]] | None = None

    def batchers(self) -> list[Batcher[Any, Any]]:
        return [b for b in (self.predict_batcher, self.feature_batcher, self.explain_batcher) if b is not None]

    async def stop(self) -> None:
        """Refuse new items, finish the accepted ones, then stop the thread."""
        await asyncio.gather(*(b.stop() for b in self.batchers()))
        self.executor.shutdown(wait=True)


async def start_model(settings: Settings, metrics: Metrics, loader: RuntimeLoader = load_runtime) -> ModelHost:
    """Load the model, warm it at every batch size, and start its batchers. `loader`
    loads the runtime (tests pass a fake one)."""
    started = time.monotonic()
    try:
        classifier = await asyncio.to_thread(
            Classifier, settings.model_dir, settings.max_batch_size, settings.runtime, settings.model_name, loader
        )
    except ModelLoadError as exc:
        log.error("cannot start: %s (set CIFAR10_MODEL_DIR to a versioned SavedModel folder)", exc)
        raise
    seconds = {"load": time.monotonic() - started}
    # One thread runs every model call: the framework parallelises inside an op, and
    # two concurrent calls would only fight over the same cores (or the one GPU).
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
    if settings.warmup:
        warm_started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(executor, classifier.warm)
        seconds["warmup"] = time.monotonic() - warm_started
    options: dict[str, Any] = {
        "max_batch_size": settings.max_batch_size,
        "max_wait_s": settings.max_wait_s,
        "max_queue": settings.max_queue,
    }
    explain_batcher: Batcher[ExplainItem, dict[str, np.ndarray]] = Batcher(
        classifier.explain, executor, observer=metrics.observer("explain"), **options
    )
    host = ModelHost(
        classifier,
        executor,
        Batcher(classifier.predict, executor, observer=metrics.observer("predict"), **options),
        Batcher(classifier.feature_maps, executor, observer=metrics.observer("feature_maps"), **options),
        seconds,
        explain_batcher,
    )
    metrics.track_queue_depth("predict", lambda: host.predict_batcher.queue_depth)
    metrics.track_queue_depth("feature_maps", lambda: host.feature_batcher.queue_depth)
    metrics.track_queue_depth("explain", lambda: explain_batcher.queue_depth)
    # Loading TensorFlow leaves ~435k long-lived objects that every full garbage
    # collection would walk again (274 ms each on the idle 2-core box), stalling all
    # requests; frozen, the collector skips them and only sees objects made per request.
    gc.collect()
    gc.freeze()
    for batcher in host.batchers():
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
