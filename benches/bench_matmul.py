"""int8 matmul / QuantizedLinear benchmarks (issue 3) under pytest-benchmark.

Smoke run (CI): ``pytest benches/bench_matmul.py`` (small shapes, --benchmark-disable).
Figures: see BENCHMARKS.md for the full-size command (``edgepack.bench.run``).
"""

from __future__ import annotations

import pytest
from edgepack.bench import matmul, run

CASES = matmul.cases(quick=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matmul_case(benchmark, case):
    benchmark(case.ours)
    for baseline in case.baselines.values():
        baseline()


def test_matmul_harness_reports_ratios():
    results = run(CASES[:1], min_time=0.0)
    assert results[0].impl == "edgepack" and results[0].throughput > 0
    assert "numpy f32" in results[0].ratio_vs
