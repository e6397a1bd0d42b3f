"""Numpy oracles: the independent definition of every result edgepack computes.

Each function states the formula in plain numpy, written from the specs (ONNX operators,
TFLite and PyTorch conventions), never from edgepack's own code. Tests compare edgepack
against these, or against a peer library when it is installed.
"""

from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------------------------------------
# int8 matrix multiplication and QuantizedLinear (issue 3)
# ---------------------------------------------------------------------------------------------


def _zp_rows(zp, ndim_a: int):
    """A zero point as int64, per row when 1-D (broadcast over the K axis)."""
    if zp is None:
        return np.int64(0)
    z = np.asarray(zp).astype(np.int64)
    return z[:, None] if z.ndim == 1 and z.size > 1 else z.reshape(())


def matmul_integer(a, b, a_zero_point=None, b_zero_point=None) -> np.ndarray:
    """ONNX MatMulInteger: ``(A - a_zp) @ (B - b_zp)`` in int64, wrapped to int32."""
    A = np.asarray(a).astype(np.int64) - _zp_rows(a_zero_point, np.ndim(a))
    bz = np.int64(0) if b_zero_point is None else np.asarray(b_zero_point).astype(np.int64).reshape(-1)
    if np.ndim(bz) == 1 and bz.size == 1:
        bz = bz[0]
    B = np.asarray(b).astype(np.int64) - bz
    return np.matmul(A, B).astype(np.int32)


def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point, y_dtype):
    """ONNX QLinearMatMul as onnxruntime computes it, in float32:
    ``saturate(rint(float32(C) * (a_scale * b_scale / y_scale)) + y_zp)``, ties to even."""
    c = matmul_integer(a, b, a_zero_point, b_zero_point).astype(np.float32)
    mult = np.float32(a_scale) * np.asarray(b_scale, dtype=np.float32) / np.float32(y_scale)
    info = np.iinfo(y_dtype)
    y = np.rint(c * mult.astype(np.float32)) + np.float32(y_zero_point)
    return np.clip(y, info.min, info.max).astype(y_dtype)


def dynamic_quantize_linear(x):
    """ONNX DynamicQuantizeLinear (uint8), float32 arithmetic: range widened to include 0,
    ``scale = (max - min) / 255`` (1 if max == min), ``zp = rint(clip(-min / scale, 0, 255))``,
    ``q = clip(rint(x / scale) + zp, 0, 255)``."""
    x = np.asarray(x, dtype=np.float32)
    lo = np.float32(min(float(x.min(initial=0.0)), 0.0))
    hi = np.float32(max(float(x.max(initial=0.0)), 0.0))
    scale = np.float32(1.0) if hi == lo else np.float32((hi - lo) / np.float32(255.0))
    zp = np.float32(np.rint(np.clip(np.float32(0.0) - lo / scale, 0, 255)))
    q = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
    return q, scale, np.uint8(zp)


def symmetric_int8_weight(w, per_channel=True):
    """Symmetric int8 weights: ``scale = max|w_row| / 127`` (1 for a zero row),
    ``q = clip(rint(w / scale), -127, 127)``; w is (out_features, in_features)."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=1) if per_channel else np.full(w.shape[0], np.abs(w).max())
    scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def quantized_linear_dynamic(x, q_w, w_scale, bias=None):
    """Per-tensor dynamic uint8 activations, int8 weights (out, in):
    ``float32(acc) * (x_scale * w_scale[n]) + bias[n]``."""
    x2 = np.asarray(x, dtype=np.float32).reshape(-1, q_w.shape[1])
    q, s, zp = dynamic_quantize_linear(x2)
    acc = matmul_integer(q, q_w.T, zp)
    y = acc.astype(np.float32) * (np.float32(s) * np.asarray(w_scale, dtype=np.float32))
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float32)
    return y.reshape(np.shape(x)[:-1] + (q_w.shape[0],))


def quantized_linear_per_row(x, q_w, w_scale, bias=None):
    """Per-row symmetric int8 activations: ``s = max|x_row| / 127`` (1 for a zero row),
    ``q = clip(rint(x / s), -127, 127)``, ``float32(acc) * (s[m] * w_scale[n]) + bias[n]``."""
    x2 = np.asarray(x, dtype=np.float32).reshape(-1, q_w.shape[1])
    amax = np.abs(x2).max(axis=1)
    s = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(x2 / s[:, None]), -127, 127).astype(np.int8)
    acc = matmul_integer(q, q_w.T)
    y = acc.astype(np.float32) * (s[:, None] * np.asarray(w_scale, dtype=np.float32)[None, :])
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float32)
    return y.reshape(np.shape(x)[:-1] + (q_w.shape[0],))


def quantized_linear_static(x, q_w, w_scale, bias, in_scale, in_zp, out_scale=None, out_zp=0, out_dtype=np.int8):
    """TFLite full-integer: ``q = clip(rint(x / s_in) + zp_in, 0, 255)``,
    ``bias_q = rint(bias / (s_in * w_scale))`` int32, ``acc = (q - zp_in) @ q_w.T + bias_q``;
    float32 output ``float32(acc) * (s_in * w_scale[n])``, or requantized
    ``clip(rint(float32(acc) * (s_in * w_scale[n] / s_out)) + zp_out)``."""
    x2 = np.asarray(x, dtype=np.float32).reshape(-1, q_w.shape[1])
    s_in = np.float32(in_scale)
    ws = np.asarray(w_scale, dtype=np.float32)
    q = np.clip(np.rint(x2 / s_in) + np.float32(in_zp), 0, 255).astype(np.uint8)
    acc = matmul_integer(q, q_w.T, in_zp).astype(np.int64)
    if bias is not None:
        acc = acc + np.rint(np.asarray(bias, dtype=np.float32) / (s_in * ws)).astype(np.int64)
    acc = acc.astype(np.int32)
    if out_scale is None:
        y = acc.astype(np.float32) * (s_in * ws)
    else:
        info = np.iinfo(out_dtype)
        mult = s_in * ws / np.float32(out_scale)
        y = np.clip(np.rint(acc.astype(np.float32) * mult) + np.float32(out_zp), info.min, info.max).astype(out_dtype)
    return y.reshape(np.shape(x)[:-1] + (q_w.shape[0],))
