"""What the lifespan creates and the handlers use, held on `app.state.service`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.batcher import BatchQueue
from app.classifier import ExplainItem, ModelInfo
from app.metrics import Metrics


@dataclass
class Service:
    metrics: Metrics
    model: ModelInfo | None = None
    decoder: ThreadPoolExecutor | None = None  # image decoding and JSON parsing, off the event loop
    predict_batcher: BatchQueue[np.ndarray, np.ndarray] | None = None
    feature_batcher: BatchQueue[np.ndarray, dict[str, np.ndarray]] | None = None
    explain_batcher: BatchQueue[ExplainItem, dict[str, np.ndarray]] | None = None
    ready: bool = False
    load_seconds: dict[str, float] = field(default_factory=dict)
