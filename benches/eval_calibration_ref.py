"""Textbook numpy versions of the calibrated methods, for ``benches/eval_calibration.py``'s
"numpy textbook" column (not a test module; the oracles of the test suite are in
``tests/reference.py``). Written from the papers, float64, no edgepack code:

* GPTQ (Frantar et al. 2022, Algorithm 1): damped ``H = X^T X / n``, act order, upper Cholesky
  factor of ``H^-1``, lazy block updates of 128 columns, static grid (scales fixed from the
  float weight before the solve, so the stored layout is RTN's).
* SparseGPT (Frantar & Alistarh 2023, Algorithm 1): the same machinery, mask chosen per block
  of 128 columns by ``w^2 / [H^-1]_jj^2`` (unstructured) or per group of ``m`` (N:M), pruned
  and (optionally) quantized columns' errors compensated on the remaining columns.
* Wanda (Sun et al. 2023): score ``|W_ij| * ||x_j||``, pruned per output row.
* SmoothQuant (Xiao et al. 2022): ``s_j = max|x_j|^a / max_i |W_ij|^(1-a)``.

Weights are ``(out, in)`` here; the harness transposes ONNX ``(in, out)`` weights.
"""

from __future__ import annotations

import numpy as np


# -- grids (static: from the float weight) ------------------------------------------------------
def grid(w: np.ndarray, bits: int, block: int | None, symmetric: bool):
    """(scale, zero_point, qmin, qmax) per element, float64 arrays of w's shape."""
    out_f, in_f = w.shape
    g = in_f if block is None else block
    b = w.astype(np.float64).reshape(out_f, in_f // g, g)
    if symmetric:
        qmax = 127 if bits == 8 else 7
        qmin = -qmax
        s = np.abs(b).max(2, keepdims=True) / qmax
        s = np.where(s == 0, 1.0, s)
        z = np.zeros_like(s)
    else:
        qmin, qmax = 0, 255 if bits == 8 else 15
        lo = np.minimum(b.min(2, keepdims=True), 0)
        hi = np.maximum(b.max(2, keepdims=True), 0)
        s = (hi - lo) / (qmax - qmin)
        s = np.where(s == 0, 1.0, s)
        z = np.clip(np.rint(-lo / s), qmin, qmax)
    s = np.broadcast_to(s, b.shape).reshape(out_f, in_f).astype(np.float32).astype(np.float64)
    z = np.broadcast_to(z, b.shape).reshape(out_f, in_f)
    return s, z, qmin, qmax


def quant(w: np.ndarray, s: np.ndarray, z: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    return (np.clip(np.rint(w / s) + z, qmin, qmax) - z) * s


def rtn(w: np.ndarray, bits: int = 8, block: int | None = None, symmetric: bool = True):
    s, z, lo, hi = grid(w, bits, block, symmetric)
    return quant(w.astype(np.float64), s, z, lo, hi).astype(np.float32)


def _prep(h: np.ndarray, damp: float, act_order: bool):
    h = np.array(h, dtype=np.float64)
    d = np.diag(h).copy()
    dead = d <= 0
    h[dead, dead] = 1.0
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(h.shape[0])
    h = h[perm][:, perm]
    lam = damp * float(np.mean(np.diag(h)))
    for _ in range(8):
        try:
            hd = h + lam * np.eye(h.shape[0])
            hinv = np.linalg.inv(np.linalg.cholesky(hd))  # L^-1
            hinv = hinv.T @ hinv  # H^-1
            u = np.linalg.cholesky(hinv).T  # upper
            return perm, u
        except np.linalg.LinAlgError:
            lam *= 10
    raise np.linalg.LinAlgError("H is not positive definite after damping")


def gptq(w: np.ndarray, h: np.ndarray, *, bits: int = 8, block: int | None = None,
         symmetric: bool = True, damp: float = 0.01, act_order: bool = True,
         lazy: int = 128) -> np.ndarray:
    """Quantized-then-dequantized (out, in) weight (float32) on the RTN grid."""
    s, z, qmin, qmax = grid(w, bits, block, symmetric)
    perm, u = _prep(h, damp, act_order)
    W = w.astype(np.float64)[:, perm].copy()
    s, z = s[:, perm], z[:, perm]
    Q = np.zeros_like(W)
    n = W.shape[1]
    for i1 in range(0, n, lazy):
        i2 = min(i1 + lazy, n)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        U1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            q = quant(W1[:, i], s[:, c], z[:, c], qmin, qmax)
            Q[:, c] = q
            e = (W1[:, i] - q) / U1[i, i]
            W1[:, i:] -= np.outer(e, U1[i, i:])
            E1[:, i] = e
        W[:, i2:] -= E1 @ u[i1:i2, i2:]
    out = np.empty_like(Q)
    out[:, perm] = Q
    return out.astype(np.float32)


def sparsegpt(w: np.ndarray, h: np.ndarray, sparsity: float, *, nm: tuple[int, int] | None = None,
              bits: int | None = 8, block: int | None = None, symmetric: bool = True,
              damp: float = 0.01, lazy: int = 128) -> np.ndarray:
    """Pruned (and quantized when ``bits``) (out, in) weight, float32. No act order (the
    paper's; N:M groups must stay in the input order)."""
    if bits:
        s, z, qmin, qmax = grid(w, bits, block, symmetric)
    perm, u = _prep(h, damp, False)
    W = w.astype(np.float64).copy()
    out_f, n = W.shape
    Q = np.zeros_like(W)
    for i1 in range(0, n, lazy):
        i2 = min(i1 + lazy, n)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        U1 = u[i1:i2, i1:i2]
        dg = np.diag(U1)
        mask = np.zeros_like(W1, dtype=bool)  # True = pruned
        if nm is None:
            score = W1**2 / dg[None, :] ** 2
            k = int(round(score.size * sparsity))
            if k:
                idx = np.argsort(score.reshape(-1), kind="stable")[:k]
                mask.reshape(-1)[idx] = True
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                nn, m = nm
                sc = W1[:, i:i + m] ** 2 / dg[None, i:i + m] ** 2
                order = np.argsort(sc, axis=1, kind="stable")[:, : m - nn]
                np.put_along_axis(mask[:, i:i + m], order, True, 1)
            wcol = W1[:, i]
            q = np.where(mask[:, i], 0.0, wcol)
            if bits:
                c = i1 + i
                q = np.where(mask[:, i], 0.0, quant(q, s[:, c], z[:, c], qmin, qmax))
            Q[:, i1 + i] = q
            e = (wcol - q) / U1[i, i]
            W1[:, i:] -= np.outer(e, U1[i, i:])
            E1[:, i] = e
        W[:, i2:] -= E1 @ u[i1:i2, i2:]
    return Q.astype(np.float32)


def wanda(w: np.ndarray, act_norm: np.ndarray, sparsity: float, *,
          nm: tuple[int, int] | None = None, bits: int | None = 8) -> np.ndarray:
    """|W| * ||x_j|| pruned per output row (or per N:M group), then RTN int8."""
    score = np.abs(w.astype(np.float64)) * act_norm[None, :]
    out_f, in_f = w.shape
    if nm is None:
        k = int(round(in_f * sparsity))
        order = np.argsort(score, axis=1, kind="stable")[:, :k]
        keep = np.ones_like(w, dtype=bool)
        np.put_along_axis(keep, order, False, 1)
    else:
        n, m = nm
        g = score.reshape(out_f, in_f // m, m)
        order = np.argsort(g, axis=2, kind="stable")[:, :, : m - n]
        keep = np.ones_like(g, dtype=bool)
        np.put_along_axis(keep, order, False, 2)
        keep = keep.reshape(out_f, in_f)
    p = np.where(keep, w, 0).astype(np.float32)
    return rtn(p, bits) if bits else p


def smooth_scales(act_max: np.ndarray, w: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(in,) scales: activations divided by s, weight columns multiplied by s."""
    wm = np.abs(w.astype(np.float64)).max(0)
    a = np.asarray(act_max, dtype=np.float64)
    s = np.where((a > 0) & (wm > 0), a**alpha / np.maximum(wm, 1e-30) ** (1 - alpha), 1.0)
    return np.clip(s, 1e-5, 1e5)
