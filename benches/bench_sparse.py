"""sparse benchmarks (issue 4) under pytest-benchmark: smoke tests with quick sizes by default
(`--benchmark-disable`); `python -m pytest benches/bench_sparse.py --benchmark-enable` times them,
`edgepack bench` / `edgepack.bench.run` gives the ratios at full size."""

from __future__ import annotations

import pytest

import edgepack
from edgepack.bench import sparse as area

CASES = area.cases(quick=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_ours(benchmark, case):
    before = edgepack.get_num_threads()
    edgepack.set_num_threads(case.threads or before)
    try:
        benchmark(case.ours)
    finally:
        edgepack.set_num_threads(before)


@pytest.mark.parametrize(
    "case,impl",
    [(c, k) for c in CASES for k in c.baselines],
    ids=[f"{c.name}-{k}" for c in CASES for k in c.baselines],
)
def test_baseline(benchmark, case, impl):
    benchmark(case.baselines[impl])
