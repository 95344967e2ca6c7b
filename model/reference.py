"""The tutorial's layer math in NumPy, written independently of TensorFlow: zero padding,
convolution and pooling forward and backward, ReLU and sigmoid.

Arrays are NHWC like TensorFlow's; kernels are [kh, kw, in, out]. `padding` is
"VALID", "SAME" (TensorFlow's rule: the extra row/column goes to the bottom/right) or
an explicit (top, bottom, left, right). Everything is vectorised over the batch and
the output positions; the only Python loops run over kernel offsets.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Padding = str | tuple[int, int, int, int]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) so that the output has ceil(size / stride) positions."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    shape: tuple[int, ...], kernel: tuple[int, int], stride: int, padding: Padding
) -> tuple[int, int, int, int]:
    if isinstance(padding, tuple):
        return padding
    if padding == "VALID":
        return (0, 0, 0, 0)
    if padding == "SAME":
        return (*same_padding(shape[1], kernel[0], stride), *same_padding(shape[2], kernel[1], stride))
    raise ValueError(f"padding must be 'SAME', 'VALID' or a 4-tuple, got {padding!r}")


def zero_pad(x: np.ndarray, pad: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of an NHWC array with `value` (zeros by default)."""
    top, bottom, left, right = pad
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows(xp: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """View of every window: [N, Ho, Wo, C, kh, kw], no copy."""
    return sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: int = 1, padding: Padding = "SAME"
) -> np.ndarray:
    """Cross-correlation, as deep-learning "convolution" means: out = sum(x * w) + b."""
    kh, kw = w.shape[:2]
    xp = zero_pad(x, resolve_padding(x.shape, (kh, kw), stride, padding))
    out = np.einsum("nhwckl,klcf->nhwf", _windows(xp, kh, kw, stride), w, optimize=True)
    result: np.ndarray = out + b if b is not None else out  # NumPy's stubs type this as Any
    return result


def conv2d_backward(
    dout: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int = 1, padding: Padding = "SAME"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx, dw, db) of conv2d_forward given dL/dout."""
    kh, kw = w.shape[:2]
    pad = resolve_padding(x.shape, (kh, kw), stride, padding)
    xp = zero_pad(x, pad)
    dw = np.einsum("nhwckl,nhwf->klcf", _windows(xp, kh, kw, stride), dout, optimize=True)
    db = dout.sum(axis=(0, 1, 2))
    dxp = np.zeros_like(xp, dtype=np.result_type(dout, w))
    ho, wo = dout.shape[1:3]
    # Each kernel offset (i, j) sends every output's gradient back to one input pixel;
    # within one offset those pixels are distinct, so a strided += is exact.
    for i in range(kh):
        for j in range(kw):
            dxp[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :] += dout @ w[i, j].T
    top, _, left, _ = pad
    return dxp[:, top : top + x.shape[1], left : left + x.shape[2], :], dw, db


def max_pool_forward(x: np.ndarray, size: int = 2, stride: int = 2, padding: Padding = "VALID") -> np.ndarray:
    """Max over each window; padded positions never win (they are -inf)."""
    xp = zero_pad(x, resolve_padding(x.shape, (size, size), stride, padding), value=-np.inf)
    result: np.ndarray = _windows(xp, size, size, stride).max(axis=(4, 5))  # NumPy's stubs type this as Any
    return result


def max_pool_backward(
    dout: np.ndarray, x: np.ndarray, size: int = 2, stride: int = 2, padding: Padding = "VALID"
) -> np.ndarray:
    """Route each output's gradient to the first maximum of its window (TensorFlow's
    tie rule); overlapping windows add up."""
    pad = resolve_padding(x.shape, (size, size), stride, padding)
    xp = zero_pad(x, pad, value=-np.inf)
    win = _windows(xp, size, size, stride)
    n, ho, wo, c = win.shape[:4]
    arg = win.reshape(n, ho, wo, c, size * size).argmax(axis=-1)
    dxp = np.zeros(xp.shape, dtype=dout.dtype)
    for i in range(size):
        for j in range(size):
            dxp[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :] += dout * (arg == i * size + j)
    top, _, left, _ = pad
    return dxp[:, top : top + x.shape[1], left : left + x.shape[2], :]


def _valid_counts(x_shape: tuple[int, ...], size: int, stride: int, pad: tuple[int, int, int, int]) -> np.ndarray:
    """How many real (unpadded) pixels each window covers: [1, Ho, Wo, 1]."""
    ones = zero_pad(np.ones((1, x_shape[1], x_shape[2], 1)), pad)
    result: np.ndarray = _windows(ones, size, size, stride).sum(axis=(4, 5))  # NumPy's stubs type this as Any
    return result


def avg_pool_forward(x: np.ndarray, size: int = 2, stride: int = 2, padding: Padding = "VALID") -> np.ndarray:
    """Mean over each window's real pixels (TensorFlow's SAME rule: padding not counted)."""
    pad = resolve_padding(x.shape, (size, size), stride, padding)
    sums = _windows(zero_pad(x, pad), size, size, stride).sum(axis=(4, 5))
    result: np.ndarray = sums / _valid_counts(x.shape, size, stride, pad)  # NumPy's stubs type this as Any
    return result


def avg_pool_backward(
    dout: np.ndarray, x: np.ndarray, size: int = 2, stride: int = 2, padding: Padding = "VALID"
) -> np.ndarray:
    """Spread each output's gradient evenly over its window's real pixels."""
    pad = resolve_padding(x.shape, (size, size), stride, padding)
    share = dout / _valid_counts(x.shape, size, stride, pad)
    xp_shape = (x.shape[0], x.shape[1] + pad[0] + pad[1], x.shape[2] + pad[2] + pad[3], x.shape[3])
    dxp = np.zeros(xp_shape, dtype=share.dtype)
    ho, wo = dout.shape[1:3]
    for i in range(size):
        for j in range(size):
            dxp[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :] += share
    top, _, left, _ = pad
    return dxp[:, top : top + x.shape[1], left : left + x.shape[2], :]


def relu(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.maximum(x, 0)  # NumPy's stubs type this as Any
    return result


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ReLU passes the gradient where its input was positive (0 at exactly 0, as TF)."""
    return dout * (x > 0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so neither branch overflows exp().
    out = np.empty_like(x, dtype=np.result_type(x, np.float32))
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def sigmoid_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    s = sigmoid(x)
    result: np.ndarray = dout * s * (1.0 - s)  # NumPy's stubs type this as Any
    return result
