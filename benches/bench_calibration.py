"""GPTQ and SparseGPT (``edgepack.methods``) next to a plain numpy implementation of the same
algorithms (below: lazy batches of 128 columns, the trailing update as one matrix product,
float64, as the papers' reference code does it in PyTorch), on heavy-tailed weights and a full
``H = X^T X / tokens`` of correlated activations with outlier channels. edgepack runs in its
default ``precision="float32"`` (the table also shows ``"float64"``; the ratio is float32's).

Smoke run (small shapes, once each; also checks that both give the same result):
``pytest benches/bench_calibration.py --benchmark-disable``. Timed: ``pytest
benches/bench_calibration.py --benchmark-enable``, or the table with ratios::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE EDGEPACK_NUM_THREADS=2 \\
        OPENBLAS_NUM_THREADS=2 python benches/bench_calibration.py

(OpenBLAS reads those variables when it loads; with them set on this machine it picks a
kernel about half as fast, which would flatter edgepack. Unset them only for this command.)
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from edgepack import methods
from edgepack.quantize import quantize

#: (out, in) of real layers: BERT-base attention, a 7B model's attention projection.
SHAPES = [(768, 768), (4096, 4096)]
SMOKE = {(768, 768): (48, 40), (4096, 4096): (37, 45)}
IMPLS = ("edgepack", "numpy")
ALGOS = ("gptq", "sparsegpt")


def layer(out, inp, tokens=None, seed=0):
    """Student-t(3) weights with a few 100x outliers; ``H`` of correlated activations with
    outlier channels (x20), from ``tokens`` (default ``2 * in``) tokens. Never zeros."""
    rng = np.random.default_rng(seed)
    w = rng.standard_t(3, (out, inp)) * 0.02
    idx = rng.choice(w.size, size=max(2, w.size // 200), replace=False)
    w.reshape(-1)[idx] *= 100.0
    tokens = tokens or 2 * inp
    k = 64
    x = rng.standard_normal((tokens, k)) @ rng.standard_normal((k, inp))
    x += rng.standard_normal((tokens, inp))
    x[:, :: max(1, inp // 40)] *= 20.0
    h = x.T @ x / tokens
    h = (h + h.T) / 2
    return w.astype(np.float32), h


# ----------------------------------------------------------------------------------------------
# The numpy reference implementations.


def _grid_elements(qt, out, inp):
    """Per-element scale and zero point of an (out, in) QuantizedTensor."""
    s = np.asarray(qt.scale, np.float32)
    z = np.asarray(qt.zero_point, np.int64)
    if qt.axis is None:
        return np.full((out, inp), s.reshape(()), np.float32), np.full((out, inp), int(z))
    if qt.block_size is None:
        shape = (out, 1) if qt.axis == 0 else (1, inp)
        return (np.broadcast_to(s.reshape(shape), (out, inp)),
                np.broadcast_to(z.reshape(shape), (out, inp)))
    b = qt.block_size
    ax = qt.axis
    S = np.repeat(s, b, axis=ax)[:out, :inp]
    Z = np.repeat(z, b, axis=ax)[:out, :inp]
    return S, Z


def _inverse_factor(h, perm, damp):
    """Upper Cholesky factor of ``(H[perm][:, perm] + damp * mean(diag H) I)^-1``, dead
    channels isolated."""
    n = h.shape[0]
    H = h.copy()
    dead = np.diag(H) == 0
    H[dead, :] = 0
    H[:, dead] = 0
    H[dead, dead] = 1
    H = H[perm][:, perm]
    mean = np.mean(np.diag(h)) or 1.0
    H[np.diag_indices(n)] += damp * mean
    linv = np.linalg.inv(np.linalg.cholesky(H))
    return np.linalg.cholesky(linv.T @ linv).T


def numpy_gptq(w, h, S, Z, qmin, qmax, damp=0.01, act_order=True, block=128):
    """GPTQ codes (int64, (out, in)) of ``w`` on the per-element grid ``S``, ``Z``."""
    n = h.shape[0]
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(n)
    U = _inverse_factor(h, perm, damp)
    W = w.astype(np.float64)[:, perm]
    S, Z = S[:, perm], Z[:, perm]
    Q = np.zeros(W.shape, np.int64)
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            c = i1 + i
            x = W1[:, i].astype(np.float32)
            q = np.clip(np.rint(x / S[:, c]), qmin - Z[:, c], qmax - Z[:, c])
            deq = q.astype(np.float32) * S[:, c]
            Q[:, c] = q + Z[:, c]
            e = (W1[:, i] - deq) / U[c, c]
            W1[:, i:] -= np.outer(e, U[c, i1 + i : i2])
            E1[:, i] = e
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    codes = np.empty_like(Q)
    codes[:, perm] = Q
    return codes


def numpy_sparsegpt(w, h, sparsity, damp=0.01, block=128):
    """Unstructured SparseGPT: the pruned and updated weight (float32) and the keep mask;
    ``round_half_even(sparsity * size)`` pruned in all, spread over the batches as edgepack
    does (cumulative rounding)."""
    out, n = w.shape
    U = _inverse_factor(h, np.arange(n), damp)
    W = w.astype(np.float64)
    keep = np.ones(W.shape, bool)
    done = 0
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        d = np.diag(U)[i1:i2]
        score = (W1 / d) ** 2
        k = round(sparsity * (done + score.size)) - round(sparsity * done)
        done += score.size
        prune = np.zeros(score.size, bool)
        prune[np.argsort(score.reshape(-1), kind="stable")[:k]] = True
        prune = prune.reshape(score.shape)
        for i in range(i2 - i1):
            c = i1 + i
            q = np.where(prune[:, i], 0.0, W1[:, i])
            e = (W1[:, i] - q) / U[c, c]
            W1[:, i:] -= np.outer(e, U[c, c:i2])
            E1[:, i] = e
            W1[:, i] = q
        W[:, i1:i2] = W1
        keep[:, i1:i2] = ~prune
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return W.astype(np.float32), keep


# ----------------------------------------------------------------------------------------------
# Cases.


def make(algo, impl, w, h):
    if algo == "gptq":
        if impl == "edgepack":
            return lambda: methods.gptq(w, h, bits=4)
        if impl == "edgepack-f64":
            return lambda: methods.gptq(w, h, bits=4, precision="float64")
        qt = quantize(w, bits=4, axis=1, block_size=32)
        S, Z = _grid_elements(qt, *w.shape)
        return lambda: numpy_gptq(w, h, S, Z, -7, 7)
    if impl == "edgepack":
        return lambda: methods.sparsegpt(w, h, 0.5)
    if impl == "edgepack-f64":
        return lambda: methods.sparsegpt(w, h, 0.5, precision="float64")
    return lambda: numpy_sparsegpt(w, h, 0.5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{o}x{i}" for o, i in SHAPES])
def test_solver(benchmark, shape, algo, impl):
    if benchmark.disabled:
        shape = SMOKE[shape]
    w, h = layer(*shape)
    fn = make(algo, impl, w, h)
    benchmark.group = f"{algo} {shape[0]}x{shape[1]}"
    benchmark(fn)


def test_smoke_gptq_matches_numpy():
    w, h = layer(37, 45, tokens=200, seed=1)
    qt = quantize(w, bits=4, axis=1, block_size=16, symmetric=False)
    S, Z = _grid_elements(qt, 37, 45)
    want = numpy_gptq(w, h, S, Z, 0, 15)
    got = methods.gptq(w, h, bits=4, axis=1, block_size=16, symmetric=False)
    codes = got.dequantize() / S + Z  # exact: (q - z) * s / s
    assert np.mean(np.rint(codes) == want) > 0.99


def test_smoke_sparsegpt_matches_numpy():
    w, h = layer(37, 45, tokens=200, seed=2)
    want_w, want_keep = numpy_sparsegpt(w, h, 0.5, block=16)
    got_w, got_keep = methods.sparsegpt(w, h, 0.5, block=16)
    assert got_keep.sum() == want_keep.sum() == w.size - round(0.5 * w.size)
    assert np.mean(got_keep == want_keep) > 0.99
    e_got = methods.output_error(w, got_w, h)
    e_want = methods.output_error(w, want_w, h)
    assert abs(e_got - e_want) <= 0.02 * e_want


def _best(fn, budget=3.0, at_least=2):
    fn()  # warm-up
    ts = []
    t_end = time.perf_counter() + budget
    while len(ts) < at_least or time.perf_counter() < t_end:
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    import edgepack

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if "model name" in ln), "?"
    )
    print(f"# {cpu}, edgepack threads {edgepack.get_num_threads()}")
    print(f"{'case':<24}{'edgepack s':>12}{'f64 mode s':>12}{'numpy s':>12}{'ratio':>8}")
    shapes = [tuple(int(v) for v in a.split("x")) for a in sys.argv[1:]] or SHAPES
    for shape in shapes:
        w, h = layer(*shape)
        for algo in ALGOS:
            t = {impl: _best(make(algo, impl, w, h)) for impl in IMPLS + ("edgepack-f64",)}
            name = f"{algo} {shape[0]}x{shape[1]}"
            print(f"{name:<24}{t['edgepack']:>12.3f}{t['edgepack-f64']:>12.3f}{t['numpy']:>12.3f}"
                  f"{t['numpy'] / t['edgepack']:>8.1f}")


if __name__ == "__main__":
    main()
