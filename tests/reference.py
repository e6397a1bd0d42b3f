"""Numpy oracles: the independent definition of every result edgepack computes.

Each function states the formula in plain numpy, written from the specs (ONNX operators,
TFLite and PyTorch conventions), never from edgepack's own code. Tests compare edgepack
against these, or against a peer library when it is installed.
"""

from __future__ import annotations

import numpy as np


# --- whole-model compression and the .epk file (issue 5) ---------------------------------------
# Written from FORMAT.md section 5 and the report's definitions (python/edgepack/report.py).


def unpack4(packed: np.ndarray, n: int, signed: bool) -> np.ndarray:
    """FORMAT.md 5: two values per byte, first in the low nibble; int4 sign-extended."""
    p = np.asarray(packed, dtype=np.uint8).reshape(-1)
    v = np.empty(2 * p.size, dtype=np.int16)
    v[0::2] = p & 15
    v[1::2] = p >> 4
    v = v[:n]
    if signed:
        v = np.where(v >= 8, v - 16, v)
    return v


def pack4(q: np.ndarray) -> np.ndarray:
    """Inverse of unpack4 (values taken mod 16)."""
    v = (np.asarray(q).reshape(-1).astype(np.int16) & 15).astype(np.uint8)
    if v.size % 2:
        v = np.append(v, np.uint8(0))
    return (v[0::2] | (v[1::2] << 4)).astype(np.uint8)


def expand_params(p: np.ndarray, shape, axis, block_size) -> np.ndarray:
    """Broadcast per-tensor / per-axis / per-block parameters to the tensor's shape."""
    p = np.asarray(p)
    if axis is None:
        return np.broadcast_to(p.reshape(()), shape)
    if block_size is None:
        bshape = [1] * len(shape)
        bshape[axis] = shape[axis]
        return np.broadcast_to(p.reshape(bshape), shape)
    rep = np.repeat(p, block_size, axis=axis)
    idx = [slice(None)] * len(shape)
    idx[axis] = slice(0, shape[axis])
    return rep[tuple(idx)]


def epk_dequantize(data, scale, zero_point, *, bits, axis, block_size, shape, symmetric):
    """ONNX DequantizeLinear: float32(q - zero_point) * scale (FORMAT.md 5)."""
    n = int(np.prod(shape))
    if bits == 4:
        q = unpack4(data, n, signed=symmetric).reshape(shape).astype(np.int32)
    else:
        q = np.asarray(data).reshape(shape).astype(np.int32)
    z = 0 if zero_point is None else expand_params(zero_point, shape, axis, block_size).astype(np.int32)
    s = expand_params(np.asarray(scale, dtype=np.float32), shape, axis, block_size)
    return ((q - z).astype(np.float32) * s).astype(np.float32)


def error_stats(x: np.ndarray, y: np.ndarray) -> dict:
    """The report's error columns, in float64."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    d = x - y
    sdd = float(d @ d)
    sxx = float(x @ x)
    return {
        "snr_db": np.inf if sdd == 0 else 10 * np.log10(sxx / sdd),
        "rel_error": np.sqrt(sdd / sxx),
        "cosine": float(x @ y) / np.sqrt(sxx * float(y @ y)),
        "max_abs_error": float(np.max(np.abs(d))) if d.size else 0.0,
        "sparsity": float(np.mean(y == 0)),
    }


def mlp_forward(weights: dict, x: np.ndarray, n_layers: int) -> np.ndarray:
    """scikit-learn MLPClassifier forward pass (ReLU hidden layers), class scores."""
    h = np.asarray(x, dtype=np.float64)
    for i in range(n_layers):
        w = np.asarray(weights[f"layers.{i}.weight"], dtype=np.float64)  # (out, in)
        b = np.asarray(weights[f"layers.{i}.bias"], dtype=np.float64)
        h = h @ w.T + b
        if i < n_layers - 1:
            h = np.maximum(h, 0)
    return h
