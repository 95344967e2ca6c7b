"""A recipe is how a family of networks is optimised: the loss reduction, the step count,
the learning-rate schedule, the optimizer and the parameter groups frozen on the way.
Both training loops (Keras's fit in training.train, the JAX device loop in
training.airbench_train) ask the recipe of a config instead of testing its architecture.

Two families: airbench's (PyTorch SGD values for a summed loss, whole batches, its
warm-up/warm-down, the whitening bias frozen after a few epochs; training.airbench_recipe
holds its numbers) and the Keras one of the other networks (Keras's SGD or Adam(W) on
a mean loss, every image every epoch, a linear warm-up and decay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np

from training import airbench_recipe
from training.config import TrainConfig
from training.schedule import WarmupLinearDecay, WarmupWarmdown


@dataclass(frozen=True)
class Steps:
    """How many optimizer steps a run takes, and how they fall into epochs."""

    per_epoch: int  # optimizer steps in a whole pass
    total: int  # optimizer steps in the run

    @property
    def epochs(self) -> int:
        """Passes started; the last one may be cut short."""
        return -(-self.total // self.per_epoch)

    def in_epoch(self, epoch: int) -> int:
        """Steps of pass `epoch` (0-based)."""
        return min(self.per_epoch, self.total - epoch * self.per_epoch)


class Recipe(Protocol):
    """What a training loop asks of a family of networks."""

    @property
    def loss_reduction(self) -> str:
        """Keras's name for how a batch's per-image losses combine ("sum" or
        "sum_over_batch_size"): the learning rates are tuned for one or the other."""

    def check(self, cfg: TrainConfig) -> None:
        """Raise ValueError for a config this recipe cannot train."""

    def steps(self, cfg: TrainConfig, train_images: int, max_steps: int | None) -> Steps:
        """The run's steps; `max_steps` shortens it for smoke tests."""

    def schedule(self, cfg: TrainConfig, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
        """The learning rate at each step."""

    def optimizer(self, cfg: TrainConfig, learning_rate: Any = None) -> keras.optimizers.Optimizer:
        """The optimizer, at `learning_rate` (a schedule, or None: a constant that a
        loop overwrites per step)."""

    def freezes(self, cfg: TrainConfig) -> Mapping[int, tuple[str, ...]]:
        """Epoch (0-based) -> parameter groups whose learning rate is zero from then on."""


@dataclass(frozen=True)
class AirbenchRecipe:
    """airbench's optimisation, as in legacy/airbench94.py (and 95, 96)."""

    loss_reduction: str = "sum"  # airbench sums the loss over the batch

    def check(self, cfg: TrainConfig) -> None:
        pass  # fractional epochs are airbench's own (9.9: the tenth pass cut short)

    def steps(self, cfg: TrainConfig, train_images: int, max_steps: int | None) -> Steps:
        # Whole batches only, and a fractional last epoch.
        return Steps(*airbench_recipe.steps_for(cfg, train_images, max_steps))

    def schedule(self, cfg: TrainConfig, total_steps: int) -> WarmupWarmdown:
        return WarmupWarmdown(
            airbench_recipe.peak_lr(cfg), total_steps, cfg.lr_warmup, cfg.initial_lr_fraction, cfg.final_lr_fraction
        )

    def optimizer(self, cfg: TrainConfig, learning_rate: Any = None) -> keras.optimizers.Optimizer:
        return airbench_recipe.make_optimizer(cfg, learning_rate)

    def freezes(self, cfg: TrainConfig) -> Mapping[int, tuple[str, ...]]:
        # airbench stops training the whitening bias after whiten_bias_epochs.
        return {} if cfg.whiten_bias_epochs is None else {cfg.whiten_bias_epochs: ("whiten_bias",)}


@dataclass(frozen=True)
class KerasRecipe:
    """Keras's SGD (Nesterov) or Adam(W) on a mean loss: the fast and tutorial networks."""

    loss_reduction: str = "sum_over_batch_size"

    def check(self, cfg: TrainConfig) -> None:
        if cfg.epochs != int(cfg.epochs):
            raise ValueError(f"{cfg.arch} trains whole epochs; got {cfg.epochs}")
        if cfg.whiten_bias_epochs is not None:
            raise ValueError(f"whiten_bias_epochs is airbench's; {cfg.arch} has no parameter groups to freeze")

    def steps(self, cfg: TrainConfig, train_images: int, max_steps: int | None) -> Steps:
        per_epoch = int(np.ceil(train_images / cfg.batch_size))  # the last, partial batch trains too
        if max_steps is not None:
            per_epoch = min(per_epoch, max_steps)  # each epoch cut short
        return Steps(per_epoch, per_epoch * int(cfg.epochs))

    def schedule(self, cfg: TrainConfig, total_steps: int) -> WarmupLinearDecay:
        return WarmupLinearDecay(cfg.lr, total_steps, int(cfg.lr_warmup * total_steps), cfg.final_lr_fraction)

    def optimizer(self, cfg: TrainConfig, learning_rate: Any = None) -> keras.optimizers.Optimizer:
        lr = cfg.lr if learning_rate is None else learning_rate
        decay = cfg.weight_decay or None
        opt: keras.optimizers.Optimizer
        if cfg.optimizer == "sgd":
            opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, weight_decay=decay)
        elif cfg.optimizer == "adam":
            opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay) if decay else keras.optimizers.Adam(lr)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adam")
        if decay:
            # Decay shrinks kernels only: decaying batch-norm parameters and biases hurts.
            opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return opt

    def freezes(self, cfg: TrainConfig) -> Mapping[int, tuple[str, ...]]:
        return {}


AIRBENCH = AirbenchRecipe()
KERAS = KerasRecipe()
# Each architecture's family: the one place that maps a network to its optimisation.
RECIPES: dict[str, Recipe] = {"airbench": AIRBENCH, "fast": KERAS, "tutorial": KERAS}


def recipe_for(cfg: TrainConfig) -> Recipe:
    """The recipe that trains `cfg.arch`."""
    try:
        return RECIPES[cfg.arch]
    except KeyError:
        raise ValueError(f"unknown architecture {cfg.arch!r}; choose one of {', '.join(RECIPES)}") from None
