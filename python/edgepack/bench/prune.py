"""Pruning benchmarks: magnitude masks and 2:4 masks on a 4096 x 4096 float32
weight, one thread, next to numpy (``np.partition`` threshold and ``np.argpartition`` for magnitude, ``np.argsort`` per
group for 2:4) and torch's ``l1_unstructured`` when torch is installed.
``work`` = bytes of the float32 input."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np

from edgepack import prune
from edgepack.bench import Case

__all__ = ["cases"]


def _weights(shape: tuple[int, int], seed: int = 20261129) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(2.5, size=shape) * 0.02).astype(np.float32)
    flat = w.reshape(-1)
    k = max(1, flat.size // 5000)
    flat[rng.choice(flat.size, size=k, replace=False)] = np.float32(3.0)
    return w


def numpy_magnitude(w: np.ndarray, sparsity: float) -> np.ndarray:
    """The usual numpy recipe: threshold from np.partition (counts are exact without ties)."""
    a = np.abs(w)
    k = int(round(sparsity * w.size))
    thr = np.partition(a.ravel(), k)[k]
    keep: np.ndarray = a >= thr
    return keep


def numpy_magnitude_exact(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Exact count whatever the ties: np.argpartition."""
    k = int(round(sparsity * w.size))
    keep = np.ones(w.size, bool)
    keep[np.argpartition(np.abs(w).ravel(), k)[:k]] = False
    return keep.reshape(w.shape)


def numpy_nm(w: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    g = np.abs(w).reshape(-1, m)
    keep = np.ones(g.shape, bool)
    np.put_along_axis(keep, np.argsort(g, axis=1)[:, : m - n], False, axis=1)
    return keep.reshape(w.shape)


def cases(quick: bool) -> list[Case]:
    shape = (256, 256) if quick else (4096, 4096)
    w = _weights(shape)
    mag_base: dict[str, Callable[[], object]] = {
        "numpy partition": lambda: numpy_magnitude(w, 0.5),
        "numpy argpartition": lambda: numpy_magnitude_exact(w, 0.5),
    }
    if importlib.util.find_spec("torch") is not None:
        import torch
        import torch.nn.utils.prune as tp

        t = torch.from_numpy(w.copy())

        def torch_l1() -> object:
            torch.set_num_threads(1)
            return tp.L1Unstructured(amount=0.5).compute_mask(t, torch.ones_like(t))

        mag_base["torch l1_unstructured"] = torch_l1
    name = f"{shape[0]}x{shape[1]} float32"
    return [
        Case("prune", f"magnitude_mask 50% {name}", lambda: prune.magnitude_mask(w, 0.5),
             mag_base, work=w.nbytes, unit="GB/s", threads=1),
        Case("prune", f"nm_mask 2:4 {name}", lambda: prune.nm_mask(w, 2, 4),
             {"numpy argsort": lambda: numpy_nm(w)}, work=w.nbytes, unit="GB/s", threads=1),
    ]
