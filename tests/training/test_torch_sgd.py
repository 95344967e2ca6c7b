"""TorchSGD follows torch.optim.SGD's update rule, parameter groups included, and a
group's multiplier set to 0 freezes it (airbench's whitening bias after 3 epochs)."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.conftest import ROOT
from training.optimizer import ParamGroup, TorchSGD


def torch_sgd_reference(
    p: np.ndarray, grads: list[np.ndarray], lr: float, momentum: float, wd: float, nesterov: bool
) -> np.ndarray:
    """torch.optim.SGD.step, transcribed from its documentation (dampening 0)."""
    buf = None
    for g in grads:
        g = g + wd * p
        buf = g.copy() if buf is None else momentum * buf + g
        step = g + momentum * buf if nesterov else buf
        p = p - lr * step
    return p


def _apply(opt: TorchSGD, variables: list[keras.Variable], grads: list[list[np.ndarray]]) -> None:
    for step_grads in grads:
        opt.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)


@pytest.mark.parametrize("nesterov", [pytest.param(True, id="nesterov"), pytest.param(False, id="heavy-ball")])
def test_matches_pytorch_update_rule(nesterov: bool) -> None:
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(3, 4)).astype("float32")
    grads = [rng.normal(size=(3, 4)).astype("float32") for _ in range(5)]
    w = keras.Variable(p0, name="kernel")
    opt = TorchSGD(learning_rate=0.05, momentum=0.85, nesterov=nesterov, weight_decay=0.3)
    _apply(opt, [w], [[g] for g in grads])
    expected = torch_sgd_reference(p0, grads, 0.05, 0.85, 0.3, nesterov)
    np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-5, atol=1e-6)


def test_groups_carry_their_own_rate_and_decay() -> None:
    rng = np.random.default_rng(1)
    k0, b0 = rng.normal(size=(4,)).astype("float32"), rng.normal(size=(4,)).astype("float32")
    grads = [[rng.normal(size=(4,)).astype("float32"), rng.normal(size=(4,)).astype("float32")] for _ in range(4)]
    kernel = keras.Variable(k0, name="kernel")
    bias = keras.Variable(b0, name="beta")
    assert bias.path == "beta"
    opt = TorchSGD(
        0.01,
        momentum=0.9,
        weight_decay=0.5,
        groups=[ParamGroup("bn_bias", r"beta$", lr_scale=64.0, weight_decay=0.002)],
    )
    _apply(opt, [kernel, bias], grads)
    np.testing.assert_allclose(
        np.asarray(kernel), torch_sgd_reference(k0, [g[0] for g in grads], 0.01, 0.9, 0.5, True), rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(bias), torch_sgd_reference(b0, [g[1] for g in grads], 0.64, 0.9, 0.002, True), rtol=1e-5
    )
    assert opt.group_of(kernel) is None and opt.group_of(bias).name == "bn_bias"


def test_zero_multiplier_freezes_a_group_without_rebuilding() -> None:
    w = keras.Variable(np.ones(3, "float32"), name="bias")
    opt = TorchSGD(0.1, momentum=0.5, weight_decay=1.0, groups=[ParamGroup("frozen", "bias$")])
    _apply(opt, [w], [[np.ones(3, "float32")]])
    moved = np.asarray(w).copy()
    assert not np.allclose(moved, 1.0)
    opt.scale_variable("frozen").assign(0.0)
    _apply(opt, [w], [[np.ones(3, "float32")]] * 3)
    np.testing.assert_array_equal(np.asarray(w), moved)


def test_duplicate_group_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        TorchSGD(groups=[ParamGroup("a", "x"), ParamGroup("a", "y")])


@pytest.mark.slow
def test_same_update_under_jax() -> None:
    """The rule is written in keras.ops: the JAX backend, which trains the recipe,
    gives the same numbers as the reference (this process runs TensorFlow)."""
    pytest.importorskip("jax")
    code = (
        "import numpy as np, keras\n"
        "from tests.training.test_torch_sgd import torch_sgd_reference\n"
        "from training.optimizer import TorchSGD\n"
        "rng = np.random.default_rng(0); p0 = rng.normal(size=(5,)).astype('float32')\n"
        "grads = [rng.normal(size=(5,)).astype('float32') for _ in range(4)]\n"
        "w = keras.Variable(p0); opt = TorchSGD(0.05, momentum=0.85, weight_decay=0.3)\n"
        "[opt.apply([keras.ops.convert_to_tensor(g)], [w]) for g in grads]\n"
        "np.testing.assert_allclose(np.asarray(w), torch_sgd_reference(p0, grads, 0.05, 0.85, 0.3, True), rtol=1e-5)\n"
        "print(keras.backend.backend())\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("jax")
