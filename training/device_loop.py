"""airbench's training loop on one JAX device: the data, the augmentation, the steps and
the lookahead all stay on the device, and the host only enqueues work.

The host reads nothing back until a run ends (one sync for the training time, one for
the final evaluation), so the GPU never waits on Python. Each step is one call of a
compiled function; its learning rate arrives as an argument, so runs of any length
share one compilation. Everything here is traced from Keras models through
`stateless_call` and `TorchSGD.stateless_apply`: the network and the optimizer are
the same objects that export and the other backends use.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from model.builders.airbench import tta_logits
from model.classes import IMAGE_SHAPE, NUM_CLASSES
from training.augment import MEAN_PIXEL, cutout_masks
from training.lookahead import decay_after
from training.optimizer import TorchSGD

EVAL_BATCH = 1000


@dataclass
class LoopResult:
    trainable: list[Any]  # final values, in model.trainable_variables order
    non_trainable: list[Any]
    train_seconds: float  # whitening fit + every step, to the last update on the device
    eval_seconds: float  # the timed evaluation (training precision, TTA at the configured level)
    steps: int
    val_accuracy_train_precision: float
    val_accuracy_tta_train_precision: float
    history: list[dict[str, float]] = field(default_factory=list)


class DeviceLoop:
    """Compiled step, lookahead and evaluation for one network and optimizer.

    `model` computes in the training precision (bf16 under mixed precision),
    `eval_model` is the same network in float32; both only lend their structure:
    the weights travel as arrays.
    """

    def __init__(
        self,
        model: keras.Model,
        eval_model: keras.Model,
        optimizer: TorchSGD,
        label_smoothing: float,
        loss_reduction: str = "sum",
    ) -> None:
        if loss_reduction not in ("sum", "sum_over_batch_size"):
            raise ValueError(f"unknown loss reduction {loss_reduction!r}")
        self.model = model
        self.eval_model = eval_model
        self.optimizer = optimizer
        optimizer.build(model.trainable_variables)
        self._lr_index = next(i for i, v in enumerate(optimizer.variables) if v.path.endswith("/learning_rate"))
        self.initial_optimizer_state = [jnp.asarray(v.value) for v in optimizer.variables]
        self.label_smoothing = label_smoothing
        self.summed = loss_reduction == "sum"
        self.step = jax.jit(self._step, donate_argnums=(0,))
        self.lookahead = jax.jit(self._lookahead, donate_argnums=(0, 1))
        self.logits = jax.jit(self._logits, static_argnames=("level", "full_precision"))

    def _step(
        self, state: tuple[list[Any], list[Any], list[Any]], xs: Any, ys: Any, i: Any, lr: Any
    ) -> tuple[Any, Any]:
        trainable, non_trainable, opt = state
        x, y = xs[i], ys[i]
        target = jax.nn.one_hot(y, NUM_CLASSES) * (1.0 - self.label_smoothing) + self.label_smoothing / NUM_CLASSES

        def loss_fn(tv: list[Any]) -> tuple[Any, list[Any]]:
            logits, ntv = self.model.stateless_call(tv, non_trainable, x, training=True)
            logp = jax.nn.log_softmax(logits.astype(jnp.float32))
            loss = -jnp.sum(target * logp)  # summed over the batch (airbench's), or its mean
            return (loss if self.summed else loss / x.shape[0]), ntv

        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        opt = list(opt)
        opt[self._lr_index] = lr.astype(opt[self._lr_index].dtype)
        trainable, opt = self.optimizer.stateless_apply(opt, grads, trainable)
        return (trainable, non_trainable, opt), loss / x.shape[0] if self.summed else loss

    @staticmethod
    def _lookahead(average: list[Any], weights: list[Any], decay: Any) -> tuple[list[Any], list[Any]]:
        average = [a * decay + w * (1.0 - decay) for a, w in zip(average, weights, strict=True)]
        return average, [jnp.array(a) for a in average]

    def _logits(self, trainable: list[Any], non_trainable: list[Any], x: Any, level: int, full_precision: bool) -> Any:
        net = self.eval_model if full_precision else self.model

        def forward(images: Any) -> Any:
            return net.stateless_call(trainable, non_trainable, images, training=False)[0].astype(jnp.float32)

        # float32 convolutions on a GPU may run as TF32 unless asked for full precision;
        # the exported float32 model is judged by what full precision gives.
        with jax.default_matmul_precision("highest") if full_precision else contextlib.nullcontext():
            return tta_logits(forward, x, level)

    def accuracy(
        self, trainable: list[Any], non_trainable: list[Any], x: Any, y: Any, level: int, full_precision: bool
    ) -> Any:
        """Accuracy on the device (not read back), in batches of EVAL_BATCH."""
        n = x.shape[0]
        pad = -n % EVAL_BATCH
        xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        preds = jnp.concatenate(
            [
                self.logits(
                    trainable, non_trainable, xp[i : i + EVAL_BATCH], level=level, full_precision=full_precision
                ).argmax(1)
                for i in range(0, xp.shape[0], EVAL_BATCH)
            ]
        )[:n]
        return jnp.mean(preds == y)


def epoch_batches(
    key: Any, padded: Any, labels: Any, mirror: Any, steps: int, batch: int, cutout: int = 0
) -> tuple[Any, Any]:
    """One epoch of airbench's augmentation: a random crop of every (pre-flipped,
    reflect-padded) image, the whole set mirrored on odd epochs, a `cutout`-pixel square
    of each set to the mean colour (airbench96's; 0: none), shuffled, cut into `steps`
    batches (the partial last batch dropped)."""
    crop_key, perm_key = jax.random.split(key)
    size = IMAGE_SHAPE[0]
    r = (padded.shape[1] - size) // 2
    shifts = jax.random.randint(crop_key, (padded.shape[0], 2), 0, 2 * r + 1)
    crops = jax.vmap(lambda im, s: jax.lax.dynamic_slice(im, (s[0], s[1], 0), (size, size, im.shape[-1])))(
        padded, shifts
    )
    crops = jnp.where(mirror, crops[:, :, ::-1], crops)
    if cutout:
        # A key of its own, so that the recipes without cutout draw exactly as before.
        corners = jax.random.randint(jax.random.fold_in(key, 1), (padded.shape[0], 2), 0, size - cutout + 1)
        masks = cutout_masks(corners, cutout, size, xp=jnp)
        crops = jnp.where(masks[..., None], jnp.asarray(MEAN_PIXEL, crops.dtype), crops)
    order = jax.random.permutation(perm_key, padded.shape[0])[: steps * batch]
    return crops[order].reshape(steps, batch, *crops.shape[1:]), labels[order].reshape(steps, batch)


epoch_batches_jit = jax.jit(epoch_batches, static_argnames=("steps", "batch", "cutout"))


def prepare_train_set(key: Any, images: np.ndarray, translate: int, flip: bool) -> Any:
    """Images on the device, each mirrored with p = 0.5 once (the alternating flip's
    base) and reflect-padded by `translate` pixels once, as airbench's loader does."""
    x = jnp.asarray(images)
    if flip:
        mask = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(mask, x[:, :, ::-1], x)
    if translate:
        x = jnp.pad(x, ((0, 0), (translate, translate), (translate, translate), (0, 0)), mode="reflect")
    return x


def lr_table(schedule: Any, total_steps: int) -> np.ndarray:
    """The schedule's learning rate at every step, computed once on the host."""
    return np.asarray(keras.ops.convert_to_numpy(schedule(np.arange(total_steps))), dtype=np.float32)


def run_loop(
    loop: DeviceLoop,
    init: tuple[list[Any], list[Any]],
    key: Any,
    padded: Any,
    labels: Any,
    x_val: Any,
    y_val: Any,
    *,
    epochs: float,
    batch: int,
    lrs: np.ndarray,
    freezes: Mapping[int, Sequence[str]],
    lookahead: bool,
    tta_level: int,
    cutout: int = 0,
    fit_whitening: Any = None,
) -> LoopResult:
    """Train from `init` (fresh weights) and evaluate; `fit_whitening(trainable,
    non_trainable)` runs inside the timed part, as airbench times its whitening fit.
    `freezes` (the recipe's) maps an epoch to the parameter groups frozen from then on."""
    steps_per_epoch = padded.shape[0] // batch
    total = len(lrs)
    started = time.perf_counter()
    trainable, non_trainable = init
    if fit_whitening is not None:
        trainable, non_trainable = fit_whitening(trainable, non_trainable)
    opt = [jnp.array(v) for v in loop.initial_optimizer_state]
    state = (trainable, non_trainable, opt)
    average = [jnp.array(w) for w in trainable + non_trainable] if lookahead else None
    losses, val_accs = [], []
    step = 0
    for epoch in range(math.ceil(epochs)):
        for group in freezes.get(epoch, ()):
            opt = list(state[2])
            index = _scale_index(loop.optimizer, group)
            opt[index] = jnp.zeros_like(opt[index])  # frozen from here on, without a retrace
            state = (state[0], state[1], opt)
        key, epoch_key = jax.random.split(key)
        xs, ys = epoch_batches_jit(
            epoch_key, padded, labels, jnp.asarray(epoch % 2 == 1), steps=steps_per_epoch, batch=batch, cutout=cutout
        )
        epoch_loss = []
        for i in range(steps_per_epoch):
            state, loss = loop.step(state, xs, ys, np.int32(i), lrs[step])
            epoch_loss.append(loss)
            step += 1
            decay = decay_after(step, total) if average is not None else None
            if decay is not None:
                n = len(state[0])
                average, weights = loop.lookahead(average, state[0] + state[1], np.float32(decay))
                state = (weights[:n], weights[n:], state[2])
            if step == total:
                break
        losses.append(jnp.mean(jnp.stack(epoch_loss)))
        val_accs.append(loop.accuracy(state[0], state[1], x_val, y_val, level=0, full_precision=False))
        if step == total:
            break
    jax.block_until_ready(state[0])
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    tta = loop.accuracy(state[0], state[1], x_val, y_val, level=tta_level, full_precision=False)
    tta = float(tta)
    eval_seconds = time.perf_counter() - started
    history = [
        {"epoch": i + 1, "loss": float(loss), "val_accuracy": float(acc)}
        for i, (loss, acc) in enumerate(zip(losses, val_accs, strict=True))
    ]
    return LoopResult(state[0], state[1], train_seconds, eval_seconds, step, history[-1]["val_accuracy"], tta, history)


def _scale_index(optimizer: TorchSGD, group: str) -> int:
    target = optimizer.scale_variable(group)
    return next(i for i, v in enumerate(optimizer.variables) if v is target)
