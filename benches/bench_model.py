"""Whole-model compression (issue 5): compress+save and load+decompress of a synthetic
transformer-like checkpoint, next to plain safetensors read+write of the same bytes.

Smoke run (quick sizes): `python -m pytest benches/bench_model.py`.
Full figures (1 GiB): `python -m edgepack.bench.model --memory-gib 4` (see BENCHMARKS.md).
"""

from __future__ import annotations

import pytest

from edgepack.bench import model as bm

CASES = bm.cases(quick=True)
PAIRS = [(c, "edgepack", c.ours) for c in CASES] + [(c, k, f) for c in CASES for k, f in c.baselines.items()]


@pytest.mark.skipif(not CASES, reason="needs edgepack.quantize (issue 2)")
@pytest.mark.parametrize("case, impl, fn", PAIRS or [(None, None, None)],
                         ids=[f"{c.name}-{k}" for c, k, _ in PAIRS] or ["none"])
def test_model(benchmark, case, impl, fn):
    benchmark.group = case.name
    benchmark(fn)
