"""Numpy oracles: the independent definition of every result edgepack computes.

Each function states the formula in plain numpy, written from the specs (ONNX operators,
TFLite and PyTorch conventions), never from edgepack's own code. Tests compare edgepack
against these, or against a peer library when it is installed.
"""

from __future__ import annotations

import numpy as np


# ---- quantize / dequantize (issue 2) ----

QRANGE = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "uint4": (0, 15)}


def broadcast_params(shape, p, axis=None, block_size=None):
    """Expand per-tensor / per-axis / blocked parameters to the full shape (ONNX layouts)."""
    p = np.asarray(p)
    if axis is None or p.size == 1 and not block_size:
        return np.broadcast_to(p.reshape(()), shape)
    axis = axis % len(shape)
    if block_size:
        return np.repeat(p, block_size, axis=axis).take(range(shape[axis]), axis=axis)
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    return np.broadcast_to(p.reshape(bshape), shape)


def _saturate(r, lo, hi):
    # r holds integers (or +-inf) in float; NaN -> lo (what the SIMD clamp gives).
    r = np.where(np.isnan(r), lo, r)
    return np.clip(r, lo, hi).astype(np.int64)


def quantize_onnx(x, scale, zp, lo, hi):
    """ONNX QuantizeLinear: clip(rint(float32(x / scale)) + zp, lo, hi); NaN -> lo."""
    v = np.asarray(x, np.float32) / np.asarray(scale, np.float32)
    return _saturate(np.rint(v).astype(np.float64) + zp, lo, hi)


def quantize_torch(x, scale, zp, lo, hi):
    """torch: clip(rint(x * float32(1 / scale)) + zp, lo, hi), 1/scale in float32."""
    inv = np.float32(1) / np.asarray(scale, np.float32)
    v = np.asarray(x, np.float32) * inv
    return _saturate(np.rint(v).astype(np.float64) + zp, lo, hi)


def round_half_away(v):
    v = np.asarray(v, np.float64)  # exact for float32 inputs
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_tflite(x, absmax, qmax):
    """TFLite symmetric weights: clip(round_half_away(x * float32(qmax / absmax)), -qmax, qmax)."""
    m = np.float32(qmax) / np.asarray(absmax, np.float32)
    v = np.asarray(x, np.float32) * m
    return _saturate(round_half_away(v), -qmax, qmax)


def dequantize_linear(q, scale, zp):
    """ONNX DequantizeLinear: float32(q - zp) * scale."""
    d = (np.asarray(q).astype(np.int64) - np.asarray(zp).astype(np.int64)).astype(np.float32)
    return d * np.asarray(scale, np.float32)


def qrange(bits, symmetric, reduce_range):
    """ONNX Runtime's get_qmin_qmax_for_qType for the types quantize() produces."""
    if bits == 8:
        if reduce_range:
            return (-64, 64) if symmetric else (0, 127)
        return (-127, 127) if symmetric else (0, 255)
    return (-7, 7) if symmetric else (0, 15)


def compute_scale_zp(rmin, rmax, qmin, qmax, symmetric):
    """ONNX Runtime quantization tool's compute_scale_zp (float64 math, float32 scale)."""
    rmin = np.minimum(np.float32(rmin), np.float32(0))
    rmax = np.maximum(np.float32(rmax), np.float32(0))
    if symmetric:
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        rmin, rmax = -absmax, absmax
    dr = np.float64(rmax) - np.float64(rmin)  # promoted before subtracting
    scale = dr / (np.float64(qmax) - np.float64(qmin))
    if scale < np.finfo(np.float32).tiny:
        return np.float32(1.0), 0
    if symmetric:
        zp = int(np.round((qmin + qmax) / 2.0))
    else:
        zp = int(np.round(qmin - np.float64(rmin) / scale))
    return np.float32(scale), zp


def pack4(q):
    """ONNX 4-bit layout: two per byte, first element in the low nibble, flat C order."""
    q = (np.asarray(q).reshape(-1).astype(np.int64) & 15).astype(np.uint8)
    if q.size % 2:
        q = np.append(q, np.uint8(0))
    return (q[0::2] | (q[1::2] << 4)).astype(np.uint8)


def unpack4(p, n, signed):
    p = np.asarray(p, np.uint8)
    v = np.stack([p & 15, p >> 4], axis=1).reshape(-1)[:n].astype(np.int64)
    return np.where(v > 7, v - 16, v) if signed else v


def dynamic_quantize_linear(x):
    """ONNX DynamicQuantizeLinear as ONNX Runtime computes it (float32; max == min -> scale 1)."""
    x = np.asarray(x, np.float32)
    mn = np.minimum(np.float32(0), x.min()) if x.size else np.float32(0)
    mx = np.maximum(np.float32(0), x.max()) if x.size else np.float32(0)
    scale = np.float32(1) if mx == mn else np.float32((mx - mn) / np.float32(255))
    zp = int(np.rint(np.clip(np.float32(0) - mn / scale, 0, 255)))
    return quantize_onnx(x, scale, zp, 0, 255).astype(np.uint8), scale, zp


def unit_ranges(x, axis=None, block_size=None):
    """min / max per tensor, per index along axis, or per block along axis (param shape)."""
    x = np.asarray(x, np.float32)
    if axis is None:
        return x.min(initial=np.inf), x.max(initial=-np.inf)
    axis = axis % x.ndim
    if block_size is None:
        other = tuple(i for i in range(x.ndim) if i != axis)
        return x.min(axis=other, initial=np.inf), x.max(axis=other, initial=-np.inf)
    n = x.shape[axis]
    nb = -(-n // block_size)
    mins, maxs = [], []
    for b in range(nb):
        blk = x.take(range(b * block_size, min(n, (b + 1) * block_size)), axis=axis)
        mins.append(blk.min(axis=axis, keepdims=True))
        maxs.append(blk.max(axis=axis, keepdims=True))
    return np.concatenate(mins, axis=axis), np.concatenate(maxs, axis=axis)


def percentile_exact(v, p):
    """Exact percentile (numpy 'linear'), computed in float64, returned as float32."""
    return np.float32(np.percentile(np.asarray(v, np.float64), p))
# =============================================================================================
# Pruning and sparse storage (issue 4). Ranking convention of every pruning oracle: candidates
# ordered by (score, flat index) ascending, the first k pruned; k = round_half_even(s * n).
# =============================================================================================


def prune_count(sparsity: float, n: int) -> int:
    """k = round_half_even(sparsity * n) (Python's round, as torch.nn.utils.prune)."""
    return int(round(float(sparsity) * n))


def _keep_smallest_pruned(scores: np.ndarray, k: int) -> np.ndarray:
    """1-D keep mask: prune the k smallest scores, ties by lower index first."""
    order = np.argsort(scores, kind="stable")
    keep = np.ones(scores.shape[0], dtype=bool)
    keep[order[:k]] = False
    return keep


def magnitude_keep(x, sparsity, importance=None, axis=None) -> np.ndarray:
    """Keep mask of magnitude (or Wanda |x|*importance) pruning, whole tensor or per slice."""
    x = np.asarray(x, dtype=np.float32)
    s = np.abs(x)
    if importance is not None:
        s = s * np.asarray(importance, dtype=np.float32)  # broadcasts over rows
    if axis is None:
        return _keep_smallest_pruned(s.ravel(), prune_count(sparsity, x.size)).reshape(x.shape)
    moved = np.moveaxis(s, axis, 0).reshape(x.shape[axis], -1)
    k = prune_count(sparsity, moved.shape[1])
    keep = np.stack([_keep_smallest_pruned(r, k) for r in moved]) if moved.size else moved > 0
    return np.moveaxis(keep.reshape(np.moveaxis(s, axis, 0).shape), 0, axis)


def nm_keep(x, n, m, axis=-1) -> np.ndarray:
    """Keep mask of N:M pruning along axis; a partial last group of r keeps ceil(n*r/m)."""
    x = np.asarray(x, dtype=np.float32)
    moved = np.moveaxis(np.abs(x), axis, -1)
    lanes = moved.reshape(-1, moved.shape[-1])
    keep = np.zeros(lanes.shape, dtype=bool)
    L = lanes.shape[1]
    for g0 in range(0, L, m):
        r = min(m, L - g0)
        kept = n if r == m else -(-n * r // m)
        grp = lanes[:, g0 : g0 + r]
        order = np.argsort(grp, axis=1, kind="stable")  # ascending, ties lower index first
        sub = np.ones(grp.shape, dtype=bool)
        np.put_along_axis(sub, order[:, : r - kept], False, axis=1)
        keep[:, g0 : g0 + r] = sub
    return np.moveaxis(keep.reshape(moved.shape), -1, axis)


def block_keep(x, sparsity, block) -> np.ndarray:
    """Keep mask of 2-D block pruning by L2 norm (float64 sums, edge blocks partial)."""
    x = np.asarray(x, dtype=np.float32)
    R, C = x.shape
    br, bc = block
    gr, gc = -(-R // br), -(-C // bc)
    pad = np.zeros((gr * br, gc * bc), dtype=np.float64)
    pad[:R, :C] = x.astype(np.float64) ** 2
    sums = pad.reshape(gr, br, gc, bc).sum(axis=(1, 3)).ravel()
    kb = _keep_smallest_pruned(sums, prune_count(sparsity, sums.size)).reshape(gr, gc)
    return np.repeat(np.repeat(kb, br, axis=0), bc, axis=1)[:R, :C]


def channel_keep(x, sparsity, axis=0, norm=2) -> np.ndarray:
    """Keep mask of structured pruning of whole slices along axis, by their L1/L2/Linf norm."""
    x = np.asarray(x, dtype=np.float32)
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).astype(np.float64)
    score = np.linalg.norm(rows, ord=norm, axis=1) if rows.shape[1] else np.zeros(rows.shape[0])
    flags = _keep_smallest_pruned(score, prune_count(sparsity, rows.shape[0]))
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return np.broadcast_to(flags.reshape(shape), x.shape)


def packed_mask(mask) -> np.ndarray:
    """The sparse mask layout: one bit per element, C order, LSB first."""
    return np.packbits(np.asarray(mask, dtype=bool).ravel(), bitorder="little")


def sparse_bound_bits(y) -> float:
    """Information bound of a sparse tensor: n*H(density) + nnz*H(values) (order-0, bits)."""
    y = np.asarray(y)
    nz = y != 0
    n, nnz = y.size, int(nz.sum())

    def h(p):
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    d = nnz / n
    hm = h(np.array([d, 1 - d]))
    v = y[nz].view(np.uint8 if y.itemsize == 1 else y.dtype)
    _, counts = np.unique(v, return_counts=True)
    return n * hm + nnz * h(counts / max(nnz, 1))


def tfmot_polynomial_decay(step, initial, final, begin, end, power=3, frequency=100):
    """TFMOT PolynomialDecay.__call__ in float32: (should_prune, sparsity)."""
    f32 = np.float32
    p = min(f32(1), max(f32(0), f32(step - begin) / f32(end - begin)))
    s = f32(initial - final) * f32(f32(1) - p) ** f32(power) + f32(final)
    should = begin <= step <= end and (step - begin) % frequency == 0
    return should, float(f32(s))


# --- whole-model compression and the .epk file (issue 5) ---------------------------------------
# Written from FORMAT.md section 5 and the report's definitions (python/edgepack/report.py).


def epk_dequantize(data, scale, zero_point, *, bits, axis, block_size, shape, symmetric):
    """ONNX DequantizeLinear: float32(q - zero_point) * scale (FORMAT.md 5)."""
    n = int(np.prod(shape))
    if bits == 4:
        q = unpack4(data, n, signed=symmetric).reshape(shape).astype(np.int32)
    else:
        q = np.asarray(data).reshape(shape).astype(np.int32)
    z = 0 if zero_point is None else broadcast_params(shape, zero_point, axis, block_size).astype(np.int32)
    s = broadcast_params(shape, np.asarray(scale, dtype=np.float32), axis, block_size)
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
