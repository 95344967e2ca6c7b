"""SGD with PyTorch's semantics as a Keras 3 optimizer, with parameter groups.

Keras's SGD keeps the learning rate inside the velocity and decays weights apart from
the gradient; PyTorch's `torch.optim.SGD`, which airbench is tuned for, does neither:

    g = grad + weight_decay * p          (L2 through the gradient, so through momentum)
    b = momentum * b + g                 (b starts at zero, so b = g at the first step)
    g = g + momentum * b                 (Nesterov) or g = b
    p = p - lr * g

The recipes' numbers only mean the same thing under the same rule. Parameter groups
(first match of a regular expression on the variable's path wins) carry their own
learning-rate multiplier and weight decay, as PyTorch's param_groups do. Each group's
multiplier is an optimizer variable, so a training loop can change it (0 freezes the
group, as airbench freezes the whitening bias after 3 epochs) without retracing.
Written with `keras.ops` only: it runs on the JAX, TensorFlow and PyTorch backends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops


@dataclass(frozen=True)
class ParamGroup:
    name: str  # names the group's multiplier variable: "<name>_lr_scale"
    pattern: str  # regular expression searched in the variable's path, e.g. "_bn\\d*/beta$"
    lr_scale: float = 1.0  # learning rate of this group / the optimizer's learning rate
    weight_decay: float | None = None  # L2 coefficient on the gradient; None: the optimizer's


class TorchSGD(keras.optimizers.Optimizer):
    """`torch.optim.SGD(momentum, nesterov, weight_decay)` with parameter groups."""

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        groups: Sequence[ParamGroup | dict[str, Any]] = (),
        name: str = "torch_sgd",
        **kwargs: Any,
    ) -> None:
        # The base class's own weight_decay is Keras's decoupled one: left off on purpose.
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        parsed = tuple(g if isinstance(g, ParamGroup) else ParamGroup(**g) for g in groups)
        names = [g.name for g in parsed]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter group names must be unique, got {names}")
        self.momentum = momentum
        self.nesterov = nesterov
        self.l2 = weight_decay
        self.groups = parsed

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        self.group_scales = {
            g.name: self.add_variable(
                shape=(), initializer=keras.initializers.Constant(g.lr_scale), name=f"{g.name}_lr_scale"
            )
            for g in self.groups
        }
        self._group_of: dict[int, ParamGroup | None] = {}
        for variable in variables:
            self._group_of[self._var_key(variable)] = next(
                (g for g in self.groups if re.search(g.pattern, variable.path)), None
            )

    def group_of(self, variable: Any) -> ParamGroup | None:
        """The group `variable` belongs to (None: the defaults); after `build`."""
        return self._group_of[self._var_key(variable)]

    def scale_variable(self, group: str) -> Any:
        """The variable holding `group`'s learning-rate multiplier."""
        return self.group_scales[group]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        group = self._group_of[self._var_key(variable)]
        decay = self.l2 if group is None or group.weight_decay is None else group.weight_decay
        if group is not None:
            lr = lr * ops.cast(self.group_scales[group.name], dtype)
        if decay:
            g = g + ops.cast(decay, dtype) * variable
        if self.momentum:
            b = self.momentums[self._get_variable_index(variable)]
            momentum = ops.cast(self.momentum, dtype)
            b_new = momentum * b + g
            self.assign(b, b_new)
            g = g + momentum * b_new if self.nesterov else b_new
        self.assign_sub(variable, lr * g)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.l2,
            "groups": [g.__dict__ for g in self.groups],
        }
