"""Quantize / dequantize benchmarks (issue 2) under pytest-benchmark.

Plain `pytest` runs them as smoke tests (quick sizes, --benchmark-disable); time them with
`python -m edgepack.bench.quantize` (the table in BENCHMARKS.md) or
`python -m pytest benches/bench_quantize.py --benchmark-enable`.
"""

from __future__ import annotations

import edgepack as ep
import pytest
from edgepack.bench import quantize as bq

CASES = bq.cases(quick=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_edgepack(benchmark, case):
    before = ep.get_num_threads()
    ep.set_num_threads(case.threads or before)
    try:
        benchmark(case.ours)
    finally:
        ep.set_num_threads(before)


@pytest.mark.parametrize(
    "case,impl",
    [(c, k) for c in CASES for k in c.baselines],
    ids=[f"{c.name}-{k}" for c in CASES for k in c.baselines],
)
def test_baseline(benchmark, case, impl):
    benchmark(case.baselines[impl])
