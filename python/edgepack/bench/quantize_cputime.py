"""The quantize / dequantize cases timed by the calling thread's CPU time.

``python -m edgepack.bench.quantize_cputime`` runs the cases of :mod:`edgepack.bench.quantize`
(one thread) like :func:`edgepack.bench.run`, but with ``time.thread_time`` in place of
``time.perf_counter``: preemption by other processes does not count (page faults do). On a
shared, loaded machine this gives steadier ratios; edgepack (one thread), onnxruntime (one
intra-op thread) and numpy all run on the calling thread.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import edgepack as ep
from edgepack.bench import Case
from edgepack.bench import quantize as bq


def best_cpu_time(
    fn: Callable[[], object], *, min_time: float = 1.0, max_repeat: int = 60
) -> float:
    """Best thread CPU time of ``fn()`` (at least 3 calls) after one warm-up call."""
    fn()
    best, spent, n = float("inf"), 0.0, 0
    gc.disable()
    try:
        while n < 3 or (spent < min_time and n < max_repeat):
            t = time.thread_time()
            fn()
            dt = time.thread_time() - t
            best, spent, n = min(best, dt), spent + dt, n + 1
    finally:
        gc.enable()
    return best


def main() -> None:  # pragma: no cover - manual timing entry point
    ep.set_num_threads(1)
    print(
        "| case | edgepack ms | edgepack GB/s | onnxruntime GB/s | numpy GB/s | np.copyto GB/s "
        "| vs onnxruntime | vs numpy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in bq.cases(False):
        ours = best_cpu_time(c.ours)
        base = {k: best_cpu_time(f) for k, f in c.baselines.items()}

        def gbs(t: float, c: Case = c) -> str:
            return f"{c.work / t / 1e9:.1f}"

        def cell(k: str, base: dict[str, float] = base) -> str:
            return gbs(base[k]) if k in base else "-"

        def ratio(k: str, base: dict[str, float] = base, ours: float = ours) -> str:
            return f"{base[k] / ours:.2f}x" if k in base else "-"

        print(
            f"| {c.name} | {ours * 1e3:.2f} | {gbs(ours)} | {cell('onnxruntime')} | "
            f"{cell('numpy')} | {cell('np.copyto')} | {ratio('onnxruntime')} | {ratio('numpy')} |",
            flush=True,
        )


if __name__ == "__main__":  # pragma: no cover
    main()
