"""``CalibrationStats.update`` (float64 ``X^T X`` + per-channel sums of a float32 batch) next
to numpy's ``x.T @ x`` in float64 and float32 (OpenBLAS ``syrk``: numpy detects ``a.T @ a``),
on heavy-tailed activations of real layer widths (MiniLM 384 / 1536, a 7B model's 4096).

Smoke run (small shapes, once each): ``pytest benches/bench_calibration_stats.py
--benchmark-disable``. Timed: ``pytest benches/bench_calibration_stats.py
--benchmark-enable``, or the table with ratios (the figures in the report)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benches/bench_calibration_stats.py

(OpenBLAS reads those variables when it loads; with them set on this machine it picks a
kernel about half as fast, which would flatter edgepack. Unset them only for this command.)
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import edgepack
from edgepack.calibration import CalibrationStats

#: (tokens, in_features)
SHAPES = [(2048, 384), (2048, 1536), (4096, 4096)]
SMOKE = {(2048, 384): (64, 48), (2048, 1536): (64, 96), (4096, 4096): (32, 160)}
IMPLS = ("edgepack", "numpy-f64", "numpy-f32")


def activations(shape, seed=0):
    """Student-t activations with a few outlier channels (x30); never zeros."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(4, size=shape)
    cols = rng.choice(shape[1], size=max(1, shape[1] // 200), replace=False)
    x[:, cols] *= 30.0
    return x.astype(np.float32)


def make(impl, x):
    if impl == "edgepack":
        s = CalibrationStats()
        return lambda: s.update("layer.weight", x)
    if impl == "numpy-f64":
        x64 = x.astype(np.float64)
        return lambda: x64.T @ x64
    return lambda: x.T @ x


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{t}x{n}" for t, n in SHAPES])
def test_update(benchmark, shape, impl):
    if benchmark.disabled:
        shape = SMOKE[shape]
    x = activations(shape)
    fn = make(impl, x)
    benchmark.group = f"calibration stats update {shape[0]}x{shape[1]}"
    benchmark.extra_info["gflops"] = shape[0] * shape[1] ** 2 / 1e9  # lower triangle, FMA=2
    benchmark(fn)


def test_smoke_result_matches_numpy():
    x = activations((50, 40))
    s = CalibrationStats()
    s.update("l", x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(s.hessian("l"), x64.T @ x64 / 50, rtol=1e-12, atol=1e-12)


def _best(fn, budget=2.0, at_least=3):
    fn()  # warm-up (allocation, thread start)
    ts = []
    t_end = time.perf_counter() + budget
    while len(ts) < at_least or time.perf_counter() < t_end:
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    import os

    print(f"edgepack threads: {edgepack.get_num_threads()}")
    print(
        "OPENBLAS_CORETYPE/L2_SIZE set: "
        f"{bool(os.environ.get('OPENBLAS_CORETYPE') or os.environ.get('OPENBLAS_L2_SIZE'))}"
    )
    print(
        "| tokens x in | edgepack update ms | numpy f64 x.T@x ms | numpy f32 x.T@x ms "
        "| edgepack GFLOP/s | speed vs f64 | speed vs f32 |"
    )
    print("|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        x = activations(shape)
        t = {impl: _best(make(impl, x)) for impl in IMPLS}
        flops = shape[0] * shape[1] ** 2  # the lower triangle of X^T X, 2 flops per FMA
        print(
            f"| {shape[0]} x {shape[1]} | {t['edgepack'] * 1e3:.2f} | {t['numpy-f64'] * 1e3:.2f} "
            f"| {t['numpy-f32'] * 1e3:.2f} | {flops / t['edgepack'] / 1e9:.0f} "
            f"| {t['numpy-f64'] / t['edgepack']:.2f} | {t['numpy-f32'] / t['edgepack']:.2f} |"
        )


if __name__ == "__main__":
    main()
