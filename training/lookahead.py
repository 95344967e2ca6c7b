"""airbench's lookahead: every few steps, pull a running average of the weights toward
the current weights and restart training from that average.

The pull weakens as training ends (decay rises as (step / total)**3), so early steps
run free and the last ones average out the noise of a large learning rate. Batch-norm
statistics are averaged with the weights, as airbench does.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

EVERY = 5  # steps between averages
MAX_DECAY = 0.95**EVERY  # weight of the old average at the last step


def decay_at(step: int, total_steps: int) -> float:
    return MAX_DECAY * min(step / max(total_steps, 1), 1.0) ** 3


def decay_after(step: int, total_steps: int, every: int = EVERY) -> float | None:
    """The decay to average with after `step` (1-based) updates, or None for no average.

    Every `every` steps, decay_at. After the last step, if that is not such a step,
    decay 1: airbench's network then takes the average as it stands, and the few
    updates since the last average are dropped.
    """
    if step % every == 0:
        return decay_at(step, total_steps)
    return 1.0 if step == total_steps else None


class Lookahead(keras.callbacks.Callback):
    """Keras callback; survives `fit` being called once per epoch (it counts the
    optimiser's steps, not the callback's)."""

    def __init__(self, total_steps: int, every: int = EVERY) -> None:
        super().__init__()
        self.total_steps = total_steps
        self.every = every
        self.average: list[np.ndarray] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.average is None:
            self.average = [w.copy() for w in self.model.get_weights()]

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        decay = decay_after(step, self.total_steps, self.every)
        if decay is None:
            return
        assert self.average is not None
        current = self.model.get_weights()
        self.average = [
            a * decay + w * (1.0 - decay) if np.issubdtype(w.dtype, np.floating) else w
            for a, w in zip(self.average, current, strict=True)
        ]
        self.model.set_weights(self.average)
