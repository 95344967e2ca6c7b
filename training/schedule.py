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


class WarmupWarmdown(keras.optimizers.schedules.LearningRateSchedule):
    """airbench's schedule: peak * (start -> 1) linearly over the first `warmup` fraction
    of the steps, then peak * (1 -> end) linearly until the last step.

    Step k (0-based, the optimizer's `iterations` before its k-th update) gets the factor
    PyTorch's LambdaLR gives it when `scheduler.step()` follows each `optimizer.step()`.
    """

    def __init__(
        self, peak: float, total_steps: int, warmup: float = 0.23, start: float = 0.2, end: float = 0.07
    ) -> None:
        self.peak = peak
        self.total_steps = max(total_steps, 1)
        self.warmup_steps = int(self.total_steps * warmup)
        self.warmup = warmup
        self.start = start
        self.end = end

    def factor(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        rise = step / max(self.warmup_steps, 1)
        fall = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        warm = self.start * (1.0 - rise) + rise
        down = (1.0 - fall) + self.end * fall
        return ops.where(step < self.warmup_steps, warm, down)

    def __call__(self, step: Any) -> Any:
        return self.peak * self.factor(step)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup": self.warmup,
            "start": self.start,
            "end": self.end,
        }
