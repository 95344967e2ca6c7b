"""airbench's hyperparameters as PyTorch SGD values, for whichever loop trains the recipe.

Backend-neutral on purpose: the JAX device loop (training.airbench_train, for a GPU) and
Keras's fit (training.train, fastest on a CPU) build the same optimizer and count the
same steps from these functions, through training.recipes.AirbenchRecipe.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.config import TrainConfig
from training.optimizer import ParamGroup, TorchSGD


def peak_lr(cfg: TrainConfig) -> float:
    """airbench's learning rate (per 1,024 examples, decoupled from momentum) as
    PyTorch's for a loss summed over the batch."""
    return cfg.lr / _kilostep(cfg)


def _kilostep(cfg: TrainConfig) -> float:
    return 1024 * (1 + 1 / (1 - cfg.momentum))  # Nesterov's step gain, times 1,024 examples


def make_optimizer(cfg: TrainConfig, learning_rate: Any = None) -> TorchSGD:
    """airbench's hyperparameters as PyTorch SGD values and parameter groups.

    `learning_rate` defaults to the peak as a constant (the device loop feeds the
    schedule's value per step); Keras's fit passes the schedule itself.
    """
    lr = peak_lr(cfg)
    decay = cfg.weight_decay * cfg.batch_size / _kilostep(cfg)  # decay per step at the peak rate: lr * wd
    bias_lr = lr * cfg.bias_lr_scale
    groups = [
        # Batch-norm biases: bias_lr_scale times the rate, the same decay per step.
        ParamGroup("bn_bias", r"_bn\d*/beta$", lr_scale=cfg.bias_lr_scale, weight_decay=decay / bias_lr),
        ParamGroup("whiten_bias", r"stem_whiten/bias$", lr_scale=1.0, weight_decay=decay / lr),
    ]
    return TorchSGD(
        learning_rate=lr if learning_rate is None else learning_rate,
        momentum=cfg.momentum,
        nesterov=True,
        weight_decay=decay / lr,
        groups=groups,
    )


def steps_for(cfg: TrainConfig, train_images: int, max_steps: int | None) -> tuple[int, int]:
    """(steps per epoch, steps in all): whole batches only, as airbench drops the last
    partial one, and a fractional last epoch (9.9 epochs: the tenth is cut short)."""
    per_epoch = train_images // cfg.batch_size
    if per_epoch < 1:
        raise ValueError(f"{train_images} training images make no batch of {cfg.batch_size}")
    total = int(np.ceil(per_epoch * cfg.epochs))
    return per_epoch, min(total, max_steps) if max_steps else total
