"""Every benchmark case of ``edgepack.bench`` under pytest-benchmark.

Plain ``pytest`` runs each case once at quick sizes (``--benchmark-disable`` in pyproject), as a
smoke test of edgepack and of every baseline that is installed. Time them with
``python -m pytest benches --benchmark-enable``; for the full-size tables with edgepack's ratio
to each baseline (the figures in BENCHMARKS.md) run ``edgepack bench`` or
``python -m edgepack.bench.<area>``.
"""

from __future__ import annotations

import pytest

import edgepack
from edgepack.bench import AREAS, collect, run

CASES = collect(AREAS, quick=True)
RUNS = [(c, "edgepack", c.ours) for c in CASES] + [
    (c, impl, fn) for c in CASES for impl, fn in c.baselines.items()
]


@pytest.mark.parametrize(
    "case,impl,fn", RUNS, ids=[f"{c.area}:{c.name}:{impl}" for c, impl, _ in RUNS]
)
def test_case(benchmark, case, impl, fn):
    benchmark.group = f"{case.area}: {case.name}"
    before = edgepack.get_num_threads()
    edgepack.set_num_threads(case.threads or before)
    try:
        benchmark(fn)
    finally:
        edgepack.set_num_threads(before)


def test_every_area_has_cases():
    assert {c.area for c in CASES} == set(AREAS)


def test_harness_reports_ratios():
    case = next(c for c in CASES if c.baselines)
    results = run([case], min_time=0.0)
    ours = results[0]
    assert ours.impl == "edgepack" and ours.throughput > 0
    assert set(ours.ratio_vs) == set(case.baselines)
