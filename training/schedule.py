"""Learning-rate schedule: linear warm-up to the peak, then linear decay."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """0 -> peak over `warmup_steps`, then peak -> peak * final_fraction at `total_steps`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int, final_fraction: float = 0.0) -> None:
        self.peak = peak
        self.total_steps = max(total_steps, 1)
        self.warmup_steps = warmup_steps
        self.final_fraction = final_fraction

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        warm = (step + 1.0) / max(self.warmup_steps, 1)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
        decay = 1.0 - (1.0 - self.final_fraction) * progress
        factor = ops.where(step < self.warmup_steps, warm, decay)
        return self.peak * factor

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_fraction": self.final_fraction,
        }
