"""Pruning masks and the TensorFlow Model Optimization pruning schedules.

Every mask function returns a boolean array of ``x``'s shape where ``True`` means *keep*
(like ``torch.nn.utils.prune``); apply it with ``x * mask`` or ``np.where(mask, x, 0)``, then
store the result compactly with :func:`edgepack.sparse.encode`.

Conventions shared by all of them:

* **Counts.** A fraction ``sparsity`` in ``[0, 1)`` of ``n`` candidates prunes exactly
  ``k = round_half_even(sparsity * n)`` (the product in float64, as torch's
  ``round(amount * n)``).
* **Ties.** Candidates are ranked by ``(score, flat index)`` and the ``k`` first are pruned:
  among equal scores the *lower* index is pruned first. numpy:
  ``np.argsort(score, kind="stable")[:k]``.
* **Scores** are computed in float32 (inputs of other real dtypes are converted); a NaN score
  raises :class:`edgepack.NonFiniteError` naming the index; ``inf`` is a valid (largest) score.
* Selection is linear time (radix select over the float bit patterns; no sort).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack import _core
from edgepack._errors import ArgumentError, DtypeError, NonFiniteError

__all__ = [
    "magnitude_mask",
    "nm_mask",
    "block_mask",
    "channel_mask",
    "global_masks",
    "PolynomialDecay",
    "ConstantSparsity",
]


def _as_f32(x: Any, name: str = "x") -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub" and a.dtype.name != "bfloat16":
        raise DtypeError(f"`{name}` must hold real numbers, found dtype {a.dtype}")
    return np.asarray(a, dtype=np.float32, order="C")


def _norm_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ArgumentError(f"`{name}` must be an int, found {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ArgumentError(f"`{name}` {axis} is out of range for {ndim} dimensions")
    return int(axis) % ndim


def _sparsity(s: Any) -> float:
    try:
        v = float(s)
    except (TypeError, ValueError):
        raise ArgumentError(f"`sparsity` must be a number in [0, 1), found {s!r}") from None
    if not 0.0 <= v < 1.0:  # also rejects NaN
        raise ArgumentError(f"`sparsity` must be in [0, 1), found {v}")
    return v


def magnitude_mask(
    x: Any,
    sparsity: float,
    *,
    importance: Any = None,
    axis: int | None = None,
) -> np.ndarray:
    """Unstructured magnitude pruning: prune the ``k`` entries with the smallest score.

    Score ``|x|``, or ``|x| * importance`` when ``importance`` (non-negative, length
    ``x.shape[-1]``, e.g. input activation norms from a calibration set: the Wanda criterion)
    is given; it broadcasts over the rows. With ``axis=None`` the whole tensor competes and
    ``k = round_half_even(sparsity * x.size)``; with ``axis=a`` every slice ``x.take(i, a)``
    (for a ``(out, in)`` weight, ``axis=0`` = every output row) is pruned on its own with
    ``k = round_half_even(sparsity * slice_size)``.

    numpy (``axis=None``)::

        s = np.abs(x.ravel()) * np.resize(importance, x.size)   # or np.abs(x.ravel())
        keep = np.ones(x.size, bool); keep[np.argsort(s, kind="stable")[:k]] = False
    """
    xf = _as_f32(x)
    sp = _sparsity(sparsity)
    imp = None
    if importance is not None:
        imp = _as_f32(importance, "importance")
        if xf.ndim == 0 or imp.ndim != 1 or imp.shape[0] != xf.shape[-1]:
            want = xf.shape[-1] if xf.ndim else "x.shape[-1]"
            raise ArgumentError(
                f"`importance` must be 1-D of length {want} (x.shape[-1]), "
                f"found shape {imp.shape}"
            )
    if axis is None:
        keep = _core.prune_magnitude_mask(xf.reshape(-1), 1, sp, imp)
        return keep.reshape(xf.shape)
    if xf.ndim == 0:
        raise ArgumentError("`axis` needs an array with at least one dimension")
    ax = _norm_axis(axis, xf.ndim)
    moved = np.ascontiguousarray(np.moveaxis(xf, ax, 0))
    if imp is not None and ax == xf.ndim - 1 and xf.ndim > 1:
        # the importance axis moves to the front: broadcast it in full
        imp = np.ascontiguousarray(np.moveaxis(np.broadcast_to(imp, xf.shape), ax, 0))
    groups = xf.shape[ax]
    if groups == 0:
        return np.ones(xf.shape, dtype=bool)
    keep = _core.prune_magnitude_mask(moved.reshape(-1), groups, sp, imp)
    return np.ascontiguousarray(np.moveaxis(keep.reshape(moved.shape), 0, ax))


def nm_mask(x: Any, n: int = 2, m: int = 4, *, axis: int = -1) -> np.ndarray:
    """N:M structured sparsity: in every group of ``m`` consecutive entries along ``axis``
    keep the ``n`` largest ``|x|`` (2:4, 4:8, ...). Ties: the lower index is pruned first.
    A partial last group of ``r < m`` entries keeps ``ceil(n * r / m)``.

    numpy (``axis=-1``, length divisible by ``m``)::

        g = np.abs(x).reshape(-1, m); order = np.argsort(g, axis=1, kind="stable")
        keep = np.ones_like(g, bool); np.put_along_axis(keep, order[:, : m - n], False, 1)
    """
    xf = _as_f32(x)
    if xf.ndim == 0:
        raise ArgumentError("`x` must have at least one dimension")
    for name, v in (("n", n), ("m", m)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ArgumentError(f"`{name}` must be an int, found {type(v).__name__}")
    if not 1 <= m <= 256:
        raise ArgumentError(f"`m` must be in 1..=256, found {m}")
    if not 1 <= n <= m:
        raise ArgumentError(f"`n` must be in 1..={m} (n <= m), found {n}")
    ax = _norm_axis(axis, xf.ndim)
    keep = _core.prune_nm_mask(xf, int(n), int(m), ax)
    return keep.reshape(xf.shape)


def block_mask(x: Any, sparsity: float, *, block: tuple[int, ...] = (1, 4)) -> np.ndarray:
    """Prune whole blocks: ``x`` is tiled in blocks of shape ``block`` (applied to the last
    ``len(block)`` dimensions; edge blocks may be partial), blocks are ranked by their L2
    norm and ``round_half_even(sparsity * n_blocks)`` are pruned (ties: lower block index in C
    order first). numpy: ``np.add.reduceat``-style sums of ``x.astype(float64)**2`` per block.
    """
    xf = _as_f32(x)
    sp = _sparsity(sparsity)
    b = tuple(int(v) for v in block)
    if len(b) == 0 or len(b) > xf.ndim:
        raise ArgumentError(
            f"`block` must have 1..={xf.ndim} dimensions for x of shape {xf.shape}, found {b}"
        )
    full = (1,) * (xf.ndim - len(b)) + b
    keep = _core.prune_block_mask(xf, list(full), sp)
    return keep.reshape(xf.shape)


def channel_mask(x: Any, sparsity: float, *, axis: int = 0, norm: float | str = 2) -> np.ndarray:
    """Structured pruning of whole channels (rows / filters = slices ``x.take(i, axis)``):
    channels are ranked by their ``norm`` (1, 2 or ``inf``, computed in float64) and
    ``round_half_even(sparsity * x.shape[axis])`` are pruned (ties: lower channel first).
    Returns the mask broadcast to ``x.shape`` (like ``torch.nn.utils.prune.ln_structured``).
    """
    xf = _as_f32(x)
    sp = _sparsity(sparsity)
    if xf.ndim == 0:
        raise ArgumentError("`x` must have at least one dimension")
    ax = _norm_axis(axis, xf.ndim)
    if norm in (1, "1"):
        nm = "1"
    elif norm in (2, "2", "fro"):
        nm = "2"
    elif norm in (np.inf, float("inf"), "inf"):
        nm = "inf"
    else:
        raise ArgumentError(f"`norm` must be 1, 2 or inf, found {norm!r}")
    moved = np.ascontiguousarray(np.moveaxis(xf, ax, 0))
    flags = _core.prune_channel_mask(moved.reshape(-1), xf.shape[ax], nm, sp)
    shape = [1] * xf.ndim
    shape[ax] = xf.shape[ax]
    return np.ascontiguousarray(np.broadcast_to(flags.reshape(shape), xf.shape))


def global_masks(
    weights: Mapping[str, Any],
    sparsity: float,
    *,
    include: Collection[str] | Callable[[str], bool] | None = None,
) -> dict[str, np.ndarray]:
    """One magnitude threshold across several tensors (as
    ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``): the selected tensors
    compete together and ``round_half_even(sparsity * total)`` entries with the smallest
    ``|x|`` are pruned. Ties by position in the concatenation of the selected tensors in the
    mapping's order. ``include``: names (or a predicate); default all. Returns a mask for each
    selected tensor, in the mapping's order.
    """
    sp = _sparsity(sparsity)
    if not isinstance(weights, Mapping):
        raise DtypeError(f"`weights` must be a mapping of name -> array, found {type(weights)}")
    if include is None:
        names = list(weights)
    elif callable(include):
        names = [k for k in weights if include(k)]
    else:
        wanted = set(include)
        missing = sorted(wanted - set(weights))
        if missing:
            raise ArgumentError(f"`include` names tensors that are not in `weights`: {missing}")
        names = [k for k in weights if k in wanted]
    arrays = {k: _as_f32(weights[k], f"weights[{k!r}]") for k in names}
    for k, a in arrays.items():
        nan = np.flatnonzero(np.isnan(a))
        if nan.size:
            raise NonFiniteError(f"tensor {k!r} contains NaN at index {int(nan[0])}")
    if not arrays:
        return {}
    flat = np.concatenate([a.reshape(-1) for a in arrays.values()])
    keep = _core.prune_magnitude_mask(flat, 1, sp, None)
    out: dict[str, np.ndarray] = {}
    start = 0
    for k, a in arrays.items():
        out[k] = keep[start : start + a.size].reshape(a.shape)
        start += a.size
    return out


# ---------------------------------------------------------------------------------------------
# TensorFlow Model Optimization schedules (tfmot.sparsity.keras.PolynomialDecay /
# ConstantSparsity): the same formula, float32 arithmetic and step rules.


def _check_steps(begin_step: int, end_step: int, frequency: int, allow_negative_1: bool) -> None:
    if begin_step < 0:
        raise ArgumentError("`begin_step` must be >= 0")
    if not allow_negative_1 and end_step == -1:
        raise ArgumentError("`end_step` cannot be -1")
    if end_step != -1:
        if end_step < 0:
            raise ArgumentError("`end_step` must be -1 or >= 0")
        if end_step < begin_step:
            raise ArgumentError("`begin_step` must be <= `end_step` when `end_step` != -1")
    if frequency <= 0:
        raise ArgumentError("`frequency` must be > 0")


def _check_schedule_sparsity(v: float, name: str) -> None:
    if not 0.0 <= v < 1.0:
        raise ArgumentError(f"`{name}` must be in [0, 1), found {v}")


def _should_prune(step: int, begin_step: int, end_step: int, frequency: int) -> bool:
    in_range = step >= begin_step and (step <= end_step or end_step < 0)
    return bool(in_range and (step - begin_step) % frequency == 0)  # % is floormod


@dataclass(frozen=True)
class PolynomialDecay:
    """Sparsity rising from ``initial_sparsity`` to ``final_sparsity`` between ``begin_step``
    and ``end_step``, as TFMOT's ``PolynomialDecay``::

        p = min(1, max(0, (step - begin_step) / (end_step - begin_step)))      # float32
        sparsity = (initial - final) * (1 - p) ** power + final                 # float32

    ``schedule(step) -> (should_prune, sparsity)``: prune on steps in
    ``[begin_step, end_step]`` where ``(step - begin_step) % frequency == 0``.
    Unlike TFMOT (which divides by zero), ``end_step == begin_step`` is rejected.
    """

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    power: float = 3
    frequency: int = 100

    def __post_init__(self) -> None:
        _check_steps(self.begin_step, self.end_step, self.frequency, False)
        if self.end_step == self.begin_step:
            raise ArgumentError("`end_step` must be > `begin_step` for PolynomialDecay")
        _check_schedule_sparsity(self.initial_sparsity, "initial_sparsity")
        _check_schedule_sparsity(self.final_sparsity, "final_sparsity")

    def __call__(self, step: int) -> tuple[bool, float]:
        """``(should_prune, sparsity)`` at training step ``step`` (TFMOT's rule)."""
        step = int(step)
        f32 = np.float32
        p = f32(step - self.begin_step) / f32(self.end_step - self.begin_step)
        p = np.minimum(f32(1.0), np.maximum(f32(0.0), p))
        diff = f32(self.initial_sparsity - self.final_sparsity)
        s = diff * np.power(f32(1.0) - p, f32(self.power)) + f32(self.final_sparsity)
        return (
            _should_prune(step, self.begin_step, self.end_step, self.frequency),
            float(f32(s)),
        )


@dataclass(frozen=True)
class ConstantSparsity:
    """Constant ``target_sparsity`` on the steps in ``[begin_step, end_step]`` (``end_step=-1``:
    forever) where ``(step - begin_step) % frequency == 0``, as TFMOT's ``ConstantSparsity``.
    ``schedule(step) -> (should_prune, sparsity)``; the sparsity is rounded to float32."""

    target_sparsity: float
    begin_step: int
    end_step: int = -1
    frequency: int = 100

    def __post_init__(self) -> None:
        _check_steps(self.begin_step, self.end_step, self.frequency, True)
        _check_schedule_sparsity(self.target_sparsity, "target_sparsity")

    def __call__(self, step: int) -> tuple[bool, float]:
        """``(should_prune, sparsity)`` at training step ``step`` (TFMOT's rule)."""
        step = int(step)
        return (
            _should_prune(step, self.begin_step, self.end_step, self.frequency),
            float(np.float32(self.target_sparsity)),
        )
