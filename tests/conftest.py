"""Shared fixtures. Data is seeded and never all zeros; tests write only under tmp_path."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261129)


def heavy_tailed(rng: np.random.Generator, shape, *, df: float = 2.5, outlier_ratio: float = 150.0):
    """Weights like real ones: Student-t body with a few outliers far beyond 100 std."""
    x = rng.standard_t(df, size=shape).astype(np.float32) * np.float32(0.02)
    if x.size:
        flat = x.reshape(-1)
        k = max(1, flat.size // 5000)
        idx = rng.choice(flat.size, size=k, replace=False)
        flat[idx] = np.float32(outlier_ratio * 0.02) * rng.choice([-1.0, 1.0], size=k).astype(np.float32)
    return x


# ---- quantize / dequantize ----
# `from conftest import heavy_tailed` is ambiguous once benches/conftest.py is collected too;
# tests take the generator through this fixture instead.
@pytest.fixture
def heavy():
    return heavy_tailed
