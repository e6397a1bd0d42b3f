"""Numpy oracles: the independent definition of every result edgepack computes.

Each function states the formula in plain numpy, written from the specs (ONNX operators,
TFLite and PyTorch conventions), never from edgepack's own code. Tests compare edgepack
against these, or against a peer library when it is installed.
"""

from __future__ import annotations

import numpy as np


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
