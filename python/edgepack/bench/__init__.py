"""The benchmark suite, shipped in the package so anyone can check our figures on their CPU.

Each area has a module here (``quantize``, ``matmul``, ``sparse``, ``prune``, ``model``) with a
function ``cases(quick: bool) -> list[Case]``. A :class:`Case` is one workload timed for
edgepack and for its baselines (numpy always; onnxruntime and torch when installed) in the same
run; :func:`run` times them and reports throughput and the ratio of edgepack to each baseline.

Used by ``edgepack bench`` and by ``benches/`` (pytest-benchmark). Inputs are random,
heavy-tailed data (never zeros); sizes come from real models.
"""

from __future__ import annotations

import gc
import importlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Case", "Result", "AREAS", "best_time", "run", "format_table", "collect"]

#: Benchmark areas, in the order ``edgepack bench`` runs them.
AREAS: tuple[str, ...] = ("quantize", "matmul", "sparse", "prune", "model")


@dataclass(frozen=True)
class Case:
    """One workload: ``ours`` and each baseline compute the same result.

    ``work`` is the amount of work in ``unit`` (bytes of float32 input for "GB/s",
    operations for "GOP/s"); throughput = work / seconds / 1e9.
    """

    area: str
    name: str
    ours: Callable[[], object]
    baselines: Mapping[str, Callable[[], object]] = field(default_factory=dict)
    work: float = 0.0
    unit: str = "GB/s"
    threads: int | None = None


@dataclass(frozen=True)
class Result:
    area: str
    name: str
    impl: str
    seconds: float
    throughput: float
    unit: str
    ratio_vs: dict[str, float]


def best_time(fn: Callable[[], object], *, min_time: float = 0.2, max_repeat: int = 50) -> float:
    """Best wall time of ``fn()`` over repeated calls (at least 3, at most ``max_repeat``,
    stopping once ``min_time`` seconds have been spent), after one warm-up call."""
    fn()
    best = float("inf")
    spent = 0.0
    n = 0
    gc.disable()
    try:
        while n < 3 or (spent < min_time and n < max_repeat):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            best = min(best, dt)
            spent += dt
            n += 1
    finally:
        gc.enable()
    return best


def collect(areas: Iterable[str] = AREAS, *, quick: bool = False) -> list[Case]:
    """The cases of the given areas (modules that are missing are skipped)."""
    out: list[Case] = []
    for area in areas:
        try:
            mod = importlib.import_module(f"edgepack.bench.{area}")
        except ModuleNotFoundError as e:
            if e.name == f"edgepack.bench.{area}":
                continue
            raise
        out.extend(mod.cases(quick))
    return out


def run(cases: Iterable[Case], *, min_time: float = 0.2) -> list[Result]:
    """Time every case: ours, then each baseline, in the same run."""
    import edgepack

    results: list[Result] = []
    for case in cases:
        before = edgepack.get_num_threads()
        if case.threads is not None:
            edgepack.set_num_threads(case.threads)
        try:
            ours = best_time(case.ours, min_time=min_time)
            base = {k: best_time(f, min_time=min_time) for k, f in case.baselines.items()}
        finally:
            edgepack.set_num_threads(before)
        ratios = {k: t / ours for k, t in base.items()}
        results.append(
            Result(case.area, case.name, "edgepack", ours, case.work / ours / 1e9, case.unit, ratios)
        )
        for k, t in base.items():
            results.append(Result(case.area, case.name, k, t, case.work / t / 1e9, case.unit, {}))
    return results


def format_table(results: Iterable[Result]) -> str:
    """A markdown table: one row per case and implementation, with edgepack's speed-up."""
    lines = [
        "| area | case | impl | time (ms) | throughput | edgepack speed-up |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in results:
        speedup = ", ".join(f"{v:.2f}x vs {k}" for k, v in r.ratio_vs.items())
        lines.append(
            f"| {r.area} | {r.name} | {r.impl} | {r.seconds * 1e3:.3f} | "
            f"{r.throughput:.1f} {r.unit} | {speedup} |"
        )
    return "\n".join(lines)
