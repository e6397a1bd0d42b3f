"""Numpy oracles: the independent definition of every result edgepack computes.

Each function states the formula in plain numpy, written from the specs (ONNX operators,
TFLite and PyTorch conventions), never from edgepack's own code. Tests compare edgepack
against these, or against a peer library when it is installed.
"""

from __future__ import annotations

import numpy as np


# ---- quantize / dequantize ----

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


def f16_ceil(v):
    """The smallest float16 >= v (v >= 0), as float64 (inf above float16's largest value)."""
    h = np.float16(v)  # nearest, ties to even
    if np.float64(h) < v:
        h = np.nextafter(h, np.float16(np.inf))
    return np.float64(h)


def compute_scale_zp(rmin, rmax, qmin, qmax, symmetric, f16=False):
    """ONNX Runtime quantization tool's compute_scale_zp (float64 math, float32 scale).
    ``f16``: the scale is rounded up to a float16 before the zero point is derived."""
    rmin = np.minimum(np.float32(rmin), np.float32(0))
    rmax = np.maximum(np.float32(rmax), np.float32(0))
    if symmetric:
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        rmin, rmax = -absmax, absmax
    dr = np.float64(rmax) - np.float64(rmin)  # promoted before subtracting
    scale = dr / (np.float64(qmax) - np.float64(qmin))
    if scale < np.finfo(np.float32).tiny:
        return np.float32(1.0), 0
    if f16:
        scale = f16_ceil(scale)
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
# Pruning and sparse storage. Ranking convention of every pruning oracle: candidates
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


# --- whole-model compression and the .epk file ---------------------------------------------------
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
# int8 matrix multiplication and QuantizedLinear
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


# =============================================================================================
# Calibration-aware compression: GPTQ, SparseGPT, Wanda, SmoothQuant, the calibrated
# objective. Written from the papers (Frantar et al. 2022, "GPTQ", Algorithm 1; Frantar &
# Alistarh 2023, "SparseGPT", Algorithm 1; Sun et al. 2023, "Wanda"; Xiao et al. 2022,
# "SmoothQuant") and /work/notes/contract.md, in float64, never from edgepack's code.
# Grid convention: element (r, c) of W (out, in) uses scale[r // row_block, c // col_block];
# q = clip(rint(float32(w) / scale) + zp, qmin, qmax) (float32 division),
# w' = float32(q - zp) * scale.
# =============================================================================================


def grid_full(a, row_block, col_block, shape):
    """Expand a (rg, cg) grid array to (out, in): (r, c) -> a[r // row_block, c // col_block]."""
    a = np.asarray(a)
    rows, cols = shape
    return a[np.arange(rows)[:, None] // row_block, np.arange(cols)[None, :] // col_block]


def quant_grid_ref(w, scale, zp, row_block, col_block, qmin, qmax):
    """Round W on a fixed grid exactly as the file decodes: returns (codes int64, w' float32)."""
    w = np.asarray(w, dtype=np.float32)
    s = grid_full(np.asarray(scale, np.float32), row_block, col_block, w.shape)
    z = (
        np.zeros(w.shape, np.int64)
        if zp is None
        else grid_full(np.asarray(zp, np.int64), row_block, col_block, w.shape)
    )
    q = np.clip(np.rint(w / s).astype(np.float64) + z, qmin, qmax).astype(np.int64)
    return q, ((q - z).astype(np.float32) * s).astype(np.float32)


def _round_col(v, s, z, qmin, qmax):
    """One column of running (float64) weights on its grid column: (codes, dequantized f64)."""
    q = np.clip(np.rint(v.astype(np.float32) / s).astype(np.float64) + z, qmin, qmax).astype(
        np.int64
    )
    return q, ((q - z).astype(np.float32) * s).astype(np.float64)


def _tie_excess(v, s, z, q, qmin, qmax):
    """How far (in code units) q is from being a nearest-level rounding of v: 0 when it is."""
    t = v / s.astype(np.float64) + z
    d = np.abs(t - q) - 0.5
    d = np.where((q == qmax) & (t >= qmax), 0.0, d)
    d = np.where((q == qmin) & (t <= qmin), 0.0, d)
    return np.maximum(d, 0.0)


def damped_hinv_chol(h, damp, order=None, max_tries=8):
    """The contract's preparation of H: dead channels (diag 0) get H_jj = 1 (their column of W is
    kept, not zeroed); lam = damp * mean(diag H) (mean taken after the dead fix, as the GPTQ
    reference code does) added to the diagonal, x10 on `damp` until Cholesky succeeds; returns
    (U upper with U^T U = (H + lam I)^-1 in `order`, the relative damp used)."""
    h = np.array(h, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    if order is not None:
        h = h[np.ix_(order, order)]
    mean = np.mean(np.diag(h))
    d = float(damp)
    for _ in range(max_tries):
        try:
            L = np.linalg.cholesky(h + d * mean * np.eye(h.shape[0]))
            hinv = np.linalg.inv(L).T @ np.linalg.inv(L)
            hinv = (hinv + hinv.T) / 2
            return np.linalg.cholesky(hinv).T, d
        except np.linalg.LinAlgError:
            d *= 10
    raise np.linalg.LinAlgError("h is not positive definite after damping")


def gptq_ref(
    w,
    h,
    scale,
    zp,
    row_block,
    col_block,
    qmin,
    qmax,
    damp=0.01,
    act_order=True,
    block=128,
    follow=None,
):
    """GPTQ (Frantar et al. 2022, Algorithm 1) with lazy batches of `block` columns and static
    groups (the grid is fixed before). Returns (codes int64 (out, in), damp_used).

    follow: codes (out, in) of another implementation: the algorithm is replayed taking those
    codes instead of its own rounding; returns (codes, damp_used, excess) where excess (out, in)
    says, in code units, how far each followed code is from a nearest rounding of the running
    weight (0 everywhere for a valid GPTQ trajectory; > 0 only at near-ties for a faithful one)."""
    W = np.array(w, dtype=np.float64)
    rows, cols = W.shape
    S = grid_full(np.asarray(scale, np.float32), row_block, col_block, W.shape)
    Z = (
        np.zeros(W.shape, np.int64)
        if zp is None
        else grid_full(np.asarray(zp, np.int64), row_block, col_block, W.shape)
    )
    hh = np.array(h, dtype=np.float64)
    dd = np.diag(hh).copy()
    dd[dd == 0] = 1.0
    perm = np.argsort(-dd, kind="stable") if act_order else np.arange(cols)
    U, damp_used = damped_hinv_chol(hh, damp, perm)
    W, S, Z = W[:, perm], S[:, perm], Z[:, perm]
    F = None if follow is None else np.asarray(follow, np.int64)[:, perm]
    Q = np.zeros((rows, cols), np.int64)
    excess = np.zeros((rows, cols))
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            c = i1 + i
            v = W1[:, i]
            q, wq = _round_col(v, S[:, c], Z[:, c], qmin, qmax)
            if F is not None:
                excess[:, c] = _tie_excess(v, S[:, c], Z[:, c], F[:, c], qmin, qmax)
                q = F[:, c]
                wq = ((q - Z[:, c]).astype(np.float32) * S[:, c]).astype(np.float64)
            Q[:, c] = q
            err = (v - wq) / U[c, c]
            W1[:, i:] -= np.outer(err, U[c, c:i2])
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    inv = np.argsort(perm)
    if F is not None:
        return Q[:, inv], damp_used, excess[:, inv]
    return Q[:, inv], damp_used


def _nm_kept(r, n, m):
    """edgepack.prune's N:M: a full group keeps n, a partial group of r keeps ceil(n*r/m)."""
    return n if r == m else -(-n * r // m)


def sparsegpt_ref(
    w,
    h,
    sparsity,
    structure="unstructured",
    n=2,
    m=4,
    scale=None,
    zp=None,
    row_block=1,
    col_block=1,
    qmin=0,
    qmax=0,
    damp=0.01,
    block=128,
    follow=None,
):
    """SparseGPT (Frantar & Alistarh 2023, Algorithm 1): columns in natural order, OBS updates with
    the upper Cholesky factor U of (H + lam I)^-1, adaptive mask selection per block of `block`
    columns by the score w^2 / U_cc^2 (weights as they are at the start of the block), N:M
    (n KEPT of every m along the input dim) chosen at the start of each group from the running
    weights; joint quantization on a fixed grid when `scale` is given (the pruned weight is 0,
    then rounded: it decodes to exactly 0 when zp lies in [qmin, qmax]).

    Unstructured counts: block b of columns [c1, c2) prunes round(s*out*c2) - round(s*out*c1)
    weights (Python round), so the total is exactly round(s*out*in); ties by (score, row-major
    index in the block) ascending.
    Returns (w_out float32, keep bool, codes int64 | None, damp_used),
    and with `follow` (another implementation's codes, as in gptq_ref) also the excess (out, in)."""
    W = np.array(w, dtype=np.float64)
    rows, cols = W.shape
    quant = scale is not None
    if quant:
        S = grid_full(np.asarray(scale, np.float32), row_block, col_block, W.shape)
        Z = (
            np.zeros(W.shape, np.int64)
            if zp is None
            else grid_full(np.asarray(zp, np.int64), row_block, col_block, W.shape)
        )
    U, damp_used = damped_hinv_chol(h, damp)
    keep = np.ones((rows, cols), bool)
    Q = np.zeros((rows, cols), np.int64)
    out = np.zeros((rows, cols))
    excess = np.zeros((rows, cols))
    dU = np.diag(U)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        if structure == "unstructured":
            score = (W1**2 / dU[None, i1:i2] ** 2).ravel()
            k = int(round(sparsity * rows * i2)) - int(round(sparsity * rows * i1))
            order = np.argsort(score, kind="stable")
            kb = np.ones(score.size, bool)
            kb[order[:k]] = False
            keep[:, i1:i2] = kb.reshape(rows, i2 - i1)
        for i in range(i2 - i1):
            c = i1 + i
            if structure == "nm" and c % m == 0:
                r = min(m, cols - c)
                sc = W1[:, i : i + r] ** 2 / dU[None, c : c + r] ** 2
                order = np.argsort(sc, axis=1, kind="stable")
                sub = np.ones(sc.shape, bool)
                np.put_along_axis(sub, order[:, : r - _nm_kept(r, n, m)], False, axis=1)
                keep[:, c : c + r] = sub
            v = W1[:, i]
            t = np.where(keep[:, c], v, 0.0)
            if quant:
                t0 = t
                q, t = _round_col(t0, S[:, c], Z[:, c], qmin, qmax)
                if follow is not None:
                    q = np.asarray(follow, np.int64)[:, c]
                    excess[:, c] = _tie_excess(t0, S[:, c], Z[:, c], q, qmin, qmax)
                    t = ((q - Z[:, c]).astype(np.float32) * S[:, c]).astype(np.float64)
                Q[:, c] = q
            out[:, c] = t
            err = (v - t) / U[c, c]
            W1[:, i:] -= np.outer(err, U[c, c:i2])
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    if follow is not None:
        return out.astype(np.float32), keep, (Q if quant else None), damp_used, excess
    return out.astype(np.float32), keep, (Q if quant else None), damp_used


def output_error_ref(w, w_hat, h) -> float:
    """tr((W - W') H (W - W')^T) in float64 = mean over tokens of ||(W - W') x||^2; with a
    1-D h (diag only): sum_j h_j ||W[:, j] - W'[:, j]||^2."""
    d = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)
    h = np.asarray(h, np.float64)
    if h.ndim == 1:
        return float(((d * d) * h[None, :]).sum())
    return float(np.einsum("ij,jk,ik->", d, h, d))


def wanda_mask_ref(w, act_norm, sparsity) -> np.ndarray:
    """Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2 (float64), pruned per output row (each
    row of W (out, in) loses round(s * in) weights), ties by lower index first. Keep mask."""
    s = np.abs(np.asarray(w, np.float64)) * np.asarray(act_norm, np.float64)[None, :]
    k = prune_count(sparsity, s.shape[1])
    return np.stack([_keep_smallest_pruned(r, k) for r in s]) if s.size else s > 0


def smoothquant_scales_ref(act_max, w, alpha=0.5) -> np.ndarray:
    """SmoothQuant (Xiao et al. 2022): s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha) for W
    (out, in); s_j = 1 where either max is 0; clamped to [1e-5, 1e5]; float32."""
    a = np.asarray(act_max, np.float64)
    wm = np.abs(np.asarray(w, np.float64)).max(axis=0)
    ok = (a > 0) & (wm > 0)
    s = np.ones_like(a)
    s[ok] = a[ok] ** alpha / wm[ok] ** (1 - alpha)
    return np.clip(s, 1e-5, 1e5).astype(np.float32)


# ---- calibration statistics ----


def calib_stats_ref(x):
    """Activation statistics of the rows of ``x`` (..., in) in float64: ``X = x.reshape(-1, in)``,
    ``xtx = X.T @ X``, ``count = len(X)``, per channel ``sum = X.sum(0)``,
    ``sum_abs = |X|.sum(0)``, ``sum_sq = (X**2).sum(0)``, ``max_abs = |X|.max(0)``; and the
    means the public API returns: ``hessian = xtx / count``, ``mean``, ``mean_abs``,
    ``mean_sq`` (each sum / count)."""
    a = np.asarray(x)
    X = a.astype(np.float64).reshape(-1, a.shape[-1])
    n = X.shape[0]
    xtx = X.T @ X
    sums = {
        "sum": X.sum(axis=0),
        "sum_abs": np.abs(X).sum(axis=0),
        "sum_sq": (X * X).sum(axis=0),
        "max_abs": np.abs(X).max(axis=0),
    }
    return {
        "count": n,
        "xtx": xtx,
        **sums,
        "hessian": xtx / n,
        "mean": sums["sum"] / n,
        "mean_abs": sums["sum_abs"] / n,
        "mean_sq": sums["sum_sq"] / n,
    }


def calib_stats_ref_batches(batches):
    """:func:`calib_stats_ref` of several batches of one layer, as if concatenated."""
    w = np.asarray(batches[0]).shape[-1]
    rows = [np.asarray(b, np.float64).reshape(-1, w) for b in batches]
    return calib_stats_ref(np.concatenate(rows))


def onnx_matmul_ref(x, w):
    """``x @ w`` in float64 (numpy reference of an ONNX MatMul / Gemm activation path)."""
    return np.asarray(x, np.float64) @ np.asarray(w, np.float64)


def rtn_ref(w, bits, symmetric, axis=None, block_size=None):
    """Round to nearest on the min-max grid of ONNX Runtime's quantization tool (the scheme of
    edgepack.quantize): ``(codes int64, scale f32 (param shape), zp int64, dequantized f32)``."""
    w = np.asarray(w, np.float32)
    qmin, qmax = qrange(bits, symmetric, False)
    mins, maxs = unit_ranges(w, axis, block_size)
    mins, maxs = np.atleast_1d(mins), np.atleast_1d(maxs)
    pairs = [compute_scale_zp(a, b, qmin, qmax, symmetric) for a, b in zip(mins.reshape(-1), maxs.reshape(-1))]
    scale = np.array([p[0] for p in pairs], np.float32).reshape(mins.shape)
    zp = np.array([p[1] for p in pairs], np.int64).reshape(mins.shape)
    if axis is None:
        scale, zp = scale.reshape(()), zp.reshape(())
    s = broadcast_params(w.shape, scale, axis, block_size)
    z = broadcast_params(w.shape, zp, axis, block_size)
    q = quantize_onnx(w, s, z, qmin, qmax)
    return q, scale, zp, dequantize_linear(q, s, z)


def awq_scales_ref(mean_abs, alpha):
    """AWQ (Lin et al. 2023, reference auto_scale.py): ``s = x_mean_abs ** alpha`` clamped to
    >= 1e-4, divided by ``sqrt(max(s) * min(s))``; edgepack's guards: channels with mean |x| = 0
    get 1 and are left out of the max / min, the result is clipped to [1e-4, 1e4]."""
    m = np.asarray(mean_abs, np.float64)
    live = m > 0
    s = np.ones(m.shape, np.float32)
    if live.any():
        p = np.maximum(m[live] ** alpha, 1e-4)
        s[live] = np.clip(p / np.sqrt(p.max() * p.min()), 1e-4, 1e4).astype(np.float32)
    return s


def awq_dequantize_ref(deq, in_scale, in_axis):
    """FORMAT.md 5, version 2: ``(float32(q - zp) * scale) / in_scale`` along ``in_axis``."""
    shape = [1] * deq.ndim
    shape[in_axis] = -1
    return (np.asarray(deq, np.float32) / np.asarray(in_scale, np.float32).reshape(shape)).astype(np.float32)


def awq_ref(w, mean_abs, h, *, bits, symmetric, axis, block_size, n_grid=20):
    """AWQ's grid search on a PyTorch ``(out, in)`` weight: for ``alpha = g / n_grid`` scale
    the input channels by ``s``, round to nearest on the grid of ``W * s``, divide back, and keep
    the ``s`` with the smallest output error ``tr(E H E^T)`` (first one on ties).
    Returns dict(scale, alpha, error, errors, codes)."""
    w = np.asarray(w, np.float32)
    best = None
    errors = []
    for g in range(n_grid):
        alpha = g / n_grid
        s = awq_scales_ref(mean_abs, alpha)
        ws = (w * s[None, :]).astype(np.float32)
        q, _, _, deq = rtn_ref(ws, bits, symmetric, axis, block_size)
        w_hat = awq_dequantize_ref(deq, s, 1)
        err = output_error_ref(w, w_hat, h)
        errors.append(err)
        if best is None or err < best["error"]:
            best = dict(scale=s, alpha=alpha, error=err, codes=q, w_hat=w_hat)
    best["errors"] = np.array(errors)
    return best


def awq_clip_ref(w, h, *, bits, symmetric, block_size=None, n_grid=20, max_shrink=0.5):
    """AWQ's weight clipping search (reference auto_clip) on an ``(out, in)`` weight, groups
    of ``block_size`` input channels per output row (the whole row when None): the group's
    range [min, max] times ``f = 1 - max_shrink * k / n_grid`` (k = 0 unclipped), the min-max
    scale / zero point of that range, and the ``f`` with the smallest ``e^T H_gg e`` (``e``:
    the group's rounding error; a 1-D ``h`` is a diagonal). Returns (scale, zp) (out, groups)."""
    w = np.asarray(w, np.float32)
    h = np.asarray(h, np.float64)
    out, inp = w.shape
    b = inp if block_size is None else block_size
    qmin, qmax = qrange(bits, symmetric, False)
    ng = -(-inp // b)
    scale = np.zeros((out, ng), np.float32)
    zp = np.zeros((out, ng), np.int64)
    for r in range(out):
        for g in range(ng):
            c0, c1 = g * b, min(inp, (g + 1) * b)
            seg = w[r, c0:c1]
            hg = np.diag(h[c0:c1]) if h.ndim == 1 else h[c0:c1, c0:c1]
            lo, hi = seg.min(), seg.max()
            best = None
            for k in range(n_grid):
                f = 1.0 - max_shrink * k / n_grid
                a, bb = (lo, hi) if k == 0 else (np.float32(np.float64(lo) * f), np.float32(np.float64(hi) * f))
                s, z = compute_scale_zp(a, bb, qmin, qmax, symmetric)
                q = quantize_onnx(seg, s, z, qmin, qmax)
                e = seg.astype(np.float64) - dequantize_linear(q, s, z).astype(np.float64)
                err = float(e @ hg @ e)
                if best is None or err < best[0]:
                    best = (err, s, z)
            scale[r, g], zp[r, g] = best[1], best[2]
    return scale, zp
