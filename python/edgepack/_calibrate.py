"""How :func:`edgepack.compress` uses calibration statistics (internal).

* :class:`Calibration` wraps a :class:`edgepack.CalibrationStats` for one compress call: which
  tensors it covers, their ``H = X^T X / tokens`` (or only its diagonal), their layout, and the
  checks made before any work (every tensor a rule wants calibrated has statistics of the
  right width).
* :func:`quantize_tensor` / :func:`prune_tensor` run the calibration-aware methods of
  :mod:`edgepack.methods` for one tensor as its :class:`~edgepack.recipe.Plan` says.
* :func:`allocate_bits` / :func:`allocate_sparsity` choose per-tensor schemes or sparsities
  under a recipe's ``budget_bits`` / ``budget_sparsity`` (a greedy walk along each tensor's
  lower convex hull of (cost, error) points, the standard solution of this knapsack).

Every error is relative, so tensors of any size and scale compare: the calibrated output
error ``tr(E H E^T) / tr(W H W^T)`` where statistics exist, the weight error
``||E||^2 / ||W||^2`` (``H = I``) where they do not.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack._errors import ArgumentError, DtypeError
from edgepack.recipe import Plan

__all__ = [
    "Calibration",
    "TensorCalibration",
    "quantize_tensor",
    "prune_tensor",
    "output_error_stats",
    "allocate_bits",
    "allocate_sparsity",
]


@dataclass(frozen=True)
class TensorCalibration:
    """What the statistics say about one tensor's input."""

    name: str
    in_features: int
    layout: str
    full: bool
    tokens: int
    _stats: Any

    def hessian(self) -> np.ndarray:
        """``X^T X / tokens``, float64 ``(in, in)``."""
        return np.asarray(self._stats.hessian(self.name), dtype=np.float64)

    def diag(self) -> np.ndarray:
        """``mean(x_j^2)`` per input channel (the diagonal of ``H``), float64 ``(in,)``."""
        return np.asarray(self._stats.channel_stats(self.name)["mean_sq"], dtype=np.float64)

    def mean_abs(self) -> np.ndarray:
        """``mean(|x_j|)`` per input channel, float64 ``(in,)`` (AWQ's activation scale)."""
        return np.asarray(self._stats.channel_stats(self.name)["mean_abs"], dtype=np.float64)

    def h(self) -> np.ndarray:
        """The full ``H`` when recorded, else its diagonal (the objective accepts both)."""
        return self.hessian() if self.full else self.diag()


class Calibration:
    """A :class:`edgepack.CalibrationStats` (or the path of a saved one) for one compress."""

    def __init__(self, stats: Any):
        from edgepack.calibration import CalibrationStats

        if isinstance(stats, (str, os.PathLike)):
            stats = CalibrationStats.load(stats)
        if not isinstance(stats, CalibrationStats):
            raise DtypeError(
                "`calibration` must be an edgepack.CalibrationStats or the path of a saved one, "
                f"found {type(stats).__name__}"
            )
        self.stats = stats

    def get(self, name: str) -> TensorCalibration | None:
        if name not in self.stats:
            return None
        return TensorCalibration(
            name=name,
            in_features=int(self.stats.in_features(name)),
            layout=str(self.stats.layout(name)),
            full=bool(self.stats.full),
            tokens=int(self.stats.count(name)),
            _stats=self.stats,
        )

    def layout(self, name: str) -> str | None:
        return str(self.stats.layout(name)) if name in self.stats else None


def _in_axis(plan: Plan) -> int:
    return 1 if plan.layout == "out_in" else 0


def check_tensor(
    name: str, shape: tuple[int, ...], plan: Plan, tc: TensorCalibration | None
) -> None:
    """The checks made before any work: statistics exist where the plan needs them, have the
    width of the tensor's input dim, and hold ``X^T X`` where the method needs it."""
    if not (plan.needs_stats() or (tc is not None and plan.encoding != "raw")):
        return
    what = what_needs(plan)
    if len(shape) != 2:
        if plan.needs_stats():
            raise ArgumentError(
                f"tensor {name!r}: {what} needs a 2-D weight (out, in) or (in, out), found shape "
                f"{shape}"
            )
        return
    if tc is None:
        if plan.needs_stats():
            raise ArgumentError(
                f"tensor {name!r}: {what} needs calibration statistics for it, and the "
                "calibration has none (record the activations entering this layer with "
                "CalibrationStats.update / collect_onnx / collect_torch under this name)"
            )
        return
    width = shape[_in_axis(plan)]
    if width != tc.in_features:
        raise ArgumentError(
            f"tensor {name!r} has {width} input features (shape {shape}, layout {plan.layout!r}), "
            f"but its calibration statistics have {tc.in_features}: statistics from another "
            "model, or the wrong layout (set the rule's layout)"
        )
    if plan.needs_hessian() and not tc.full:
        raise ArgumentError(
            f"tensor {name!r}: {what} needs X^T X, but the calibration statistics were "
            "recorded with full=False (only per-channel vectors)"
        )


def what_needs(plan: Plan) -> str:
    if plan.encoding == "quant" and plan.method == "gptq":
        return "method 'gptq'" + (" with awq" if plan.awq else "")
    if plan.encoding == "quant" and plan.awq:
        return "awq" if plan.method == "rtn" else f"method {plan.method!r} with awq"
    if plan.sparsity and plan.sparsity_method in ("sparsegpt", "wanda"):
        return f"sparsity_method {plan.sparsity_method!r}"
    return "calibrated compression"


# ----------------------------------------------------------------------------------------------
# One tensor.


def _scheme(plan: Plan) -> dict[str, Any]:
    return {
        "bits": plan.bits,
        "axis": plan.axis,
        "block_size": plan.block_size,
        "symmetric": plan.symmetric,
        "scale_dtype": plan.scale_dtype,
    }


def quantize_tensor(x: np.ndarray, plan: Plan, tc: TensorCalibration | None) -> Any:
    """The :class:`~edgepack.QuantizedTensor` of ``x`` by the plan's method (no pruning)."""
    from edgepack.quantize import quantize

    rule = plan.rule
    if plan.method in ("gptq", "hqq") or plan.awq:
        from edgepack import methods
    if plan.awq and tc is not None and x.ndim == 2:
        kw_awq: dict[str, Any] = {}
        if plan.method == "rtn":
            kw_awq = {"calibration": plan.calibration, "percentile": plan.percentile}
        return methods.awq(
            x,
            tc.mean_abs(),
            tc.h(),
            solver=plan.method,
            damp=rule.damp if rule is not None else 0.01,
            act_order=rule.act_order if rule is not None else True,
            layout=plan.layout,
            clip=plan.awq_clip,
            search=plan.awq_search,
            **kw_awq,
            **_scheme(plan),
        )
    if plan.method == "gptq":
        assert tc is not None
        return methods.gptq(
            x,
            tc.hessian(),
            damp=rule.damp if rule is not None else 0.01,
            act_order=rule.act_order if rule is not None else True,
            layout=plan.layout,
            **_scheme(plan),
        )
    if plan.method == "hqq":
        return methods.hqq(x, **_scheme(plan))
    kw: dict[str, Any] = dict(_scheme(plan), calibration=plan.calibration)
    if plan.percentile is not None:
        kw["percentile"] = plan.percentile
    return quantize(x, **kw)


def prune_tensor(
    x: np.ndarray, plan: Plan, tc: TensorCalibration | None
) -> tuple[np.ndarray, np.ndarray, Any | None]:
    """Prune ``x`` by a calibrated sparsity method: ``(pruned float32, keep mask,
    QuantizedTensor or None)``.

    ``"sparsegpt"`` updates the kept weights and, for a quantized plan, quantizes jointly (the
    QuantizedTensor is then the result). ``"wanda"`` only chooses the mask; a quantized plan
    then quantizes the pruned weights by its method (``"rtn"`` or ``"hqq"``).
    """
    from edgepack import methods, prune

    assert tc is not None
    r = plan.rule
    n, m = (r.n, r.m) if r is not None else (2, 4)
    block_shape = r.block_shape if r is not None else (1, 4)
    damp = r.damp if r is not None else 0.01
    quant = plan.encoding == "quant"
    if plan.sparsity_method == "sparsegpt":
        kw: dict[str, Any] = {}
        if quant:
            kw = _scheme(plan)
        else:
            kw["bits"] = None
        res, keep = methods.sparsegpt(
            x,
            tc.hessian(),
            plan.sparsity,
            structure=plan.structure,
            n=n,
            m=m,
            block_shape=block_shape,
            damp=damp,
            layout=plan.layout,
            **kw,
        )
        keep = np.asarray(keep, dtype=bool)
        if quant:
            return np.asarray(res.dequantize(), dtype=np.float32), keep, res
        return np.asarray(res, dtype=np.float32), keep, None
    # Wanda: |W_ij| * ||x_j||, compared within each output row.
    norm = np.sqrt(tc.diag()).astype(np.float32)
    in_axis = _in_axis(plan)
    out_axis = 1 - in_axis
    score = np.abs(x) * (norm[None, :] if in_axis == 1 else norm[:, None])
    if plan.structure == "unstructured":
        keep = prune.magnitude_mask(score, plan.sparsity, axis=out_axis)
    elif plan.structure == "nm":
        keep = prune.nm_mask(score, n, m, axis=in_axis)
    else:
        keep = prune.block_mask(score, plan.sparsity, block=block_shape)
    keep = np.asarray(keep, dtype=bool)
    xp = np.where(keep, x, np.float32(0)).astype(np.float32)
    if not quant:
        return xp, keep, None
    if plan.method == "gptq":
        raise ArgumentError(
            "method 'gptq' with sparsity_method 'wanda' would refill the pruned weights; use "
            "sparsity_method 'sparsegpt' (prunes and quantizes jointly)"
        )
    return xp, keep, quantize_tensor(xp, plan, tc if plan.awq else None)


def output_error_stats(
    x: np.ndarray, y: np.ndarray, plan: Plan, tc: TensorCalibration
) -> dict[str, float | None]:
    """``output_snr_db`` and ``output_rel_error`` of ``y`` against ``x`` on the calibration
    data: ``tr(E H E^T)`` against ``tr(W H W^T)`` (the diagonal of ``H`` with full=False)."""
    from edgepack import methods

    w, wh = x, y
    if plan.layout == "in_out":
        w, wh = x.T, y.T
    w = np.ascontiguousarray(w, dtype=np.float32)
    wh = np.ascontiguousarray(wh, dtype=np.float32)
    h = tc.h()
    err = float(methods.output_error(w, wh, h))
    ref = float(methods.output_error(w, np.zeros_like(w), h))
    if ref <= 0.0:
        return {"output_snr_db": None, "output_rel_error": None}
    snr = math.inf if err == 0.0 else 10.0 * math.log10(ref / err)
    return {"output_snr_db": snr, "output_rel_error": math.sqrt(err / ref)}


# ----------------------------------------------------------------------------------------------
# Budgets.

#: The schemes ``budget_bits`` chooses from: (bits, block size along the input dim or None for
#: one scale per output channel).
BIT_CANDIDATES: tuple[tuple[int, int | None], ...] = (
    (8, None),
    (4, 16),
    (4, 32),
    (4, 64),
    (4, 128),
)


def scheme_bits(
    bits: int,
    block: int | None,
    symmetric: bool,
    shape: tuple[int, ...],
    axis: int | None,
    scale_bits: int = 32,
) -> float:
    """Stored bits per weight of a scheme: the values plus a float32 (``scale_bits=16``:
    float16) scale (and a uint8 zero point when affine) per group."""
    n = math.prod(shape)
    if n == 0:
        return float(bits)
    if axis is None:
        groups = 1
    elif block is None:
        groups = shape[axis]
    else:
        groups = n // shape[axis] * -(-shape[axis] // block)
    per_group = scale_bits + (0 if symmetric else 8)
    return bits + per_group * groups / n


@dataclass
class _Item:
    name: str
    size: int
    options: list[tuple[float, float, Any]]  # (cost in bits, relative error, payload)


def _hull_upgrades(item: _Item) -> list[tuple[float, int, int]]:
    """Successive (error drop per extra bit, from, to) steps along the lower convex hull of the
    item's options sorted by cost, starting at the cheapest."""
    opts = sorted(range(len(item.options)), key=lambda i: (item.options[i][0], item.options[i][1]))
    hull: list[int] = []
    for i in opts:
        c, e, _ = item.options[i]
        if hull and e >= item.options[hull[-1]][1]:
            continue  # costs more and is no better
        while len(hull) >= 2:
            c1, e1, _ = item.options[hull[-2]]
            c2, e2, _ = item.options[hull[-1]]
            # drop hull[-1] if it lies above the segment hull[-2] -> i
            if (e2 - e1) * (c - c1) >= (e - e1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append(i)
    steps = []
    for a, b in zip(hull, hull[1:], strict=False):  # consecutive pairs
        ca, ea, _ = item.options[a]
        cb, eb, _ = item.options[b]
        steps.append(((ea - eb) / ((cb - ca) * item.size), a, b))
    return [(s, a, b) for s, a, b in steps] if hull else []


def _greedy(items: Sequence[_Item], budget: float) -> dict[str, int]:
    """Cheapest option everywhere, then the steps with the largest error drop per bit first
    while the total stays within ``budget`` (total bits). Returns the option index per item."""
    choice: dict[str, int] = {}
    total = 0.0
    steps: list[tuple[float, str, int, int]] = []
    for it in items:
        hull_steps = _hull_upgrades(it)
        start = (
            hull_steps[0][1]
            if hull_steps
            else min(range(len(it.options)), key=lambda i: (it.options[i][0], it.options[i][1]))
        )
        choice[it.name] = start
        total += it.options[start][0] * it.size
        steps.extend((s, it.name, a, b) for s, a, b in hull_steps)
    if total > budget * (1 + 1e-12):
        raise ArgumentError("budget below the cheapest choice")  # reworded by callers
    by_name = {it.name: it for it in items}
    steps.sort(key=lambda t: -t[0])
    for _s, name, a, b in steps:
        if choice[name] != a:
            continue  # an earlier step of this tensor did not fit
        it = by_name[name]
        extra = (it.options[b][0] - it.options[a][0]) * it.size
        if total + extra <= budget * (1 + 1e-12):
            choice[name] = b
            total += extra
    return choice


def allocate_bits(
    entries: Iterable[tuple[str, np.ndarray, Plan, TensorCalibration | None]],
    budget_bits: float,
    error: Callable[[np.ndarray, Plan, TensorCalibration | None], float],
) -> dict[str, Plan]:
    """Per-tensor plans for ``budget_bits``: ``entries`` are the quantized tensors (name,
    array, plan, calibration). The budget is the average over the tensors it decides: those
    whose rule fixes ``bits``, ``granularity`` or ``block_size`` (and tensors that are not
    2-D) keep their plan and are outside it. ``error(x, plan, tc)`` is the relative error of
    a plan."""
    items: list[_Item] = []
    total_size = 0
    for name, x, plan, tc in entries:
        shape = tuple(int(d) for d in x.shape)
        size = int(x.size)
        r = plan.rule
        if len(shape) != 2 or (
            r is not None and (r.bits != 8 or r.block_size is not None or r.granularity is not None)
        ):
            continue
        total_size += size
        in_axis = _in_axis(plan)
        out_axis = 1 - in_axis
        options = []
        for bits, block in BIT_CANDIDATES:
            axis = out_axis if block is None else in_axis
            p = dataclasses.replace(plan, bits=bits, axis=axis, block_size=block)
            scale_bits = 16 if plan.scale_dtype == "float16" else 32
            cost = scheme_bits(bits, block, plan.symmetric, shape, axis, scale_bits)
            options.append((cost, error(x, p, tc), p))
        items.append(_Item(name, size, options))
    if not total_size:
        return {}
    budget = budget_bits * total_size
    cheapest = sum(min(o[0] for o in it.options) * it.size for it in items)
    if cheapest > budget * (1 + 1e-12):
        floor = cheapest / total_size
        raise ArgumentError(
            f"budget_bits={budget_bits} is below the cheapest choice for these tensors "
            f"({floor:.3f} bits per weight with every tensor at 4 bits in blocks of 128)"
        )
    choice = _greedy(items, budget)
    return {it.name: it.options[choice[it.name]][2] for it in items}


#: How far a tensor's sparsity may move from the budget under ``budget_sparsity`` (OWL, Yin
#: et al. 2023, bound the per-layer spread the same way, with 0.08 on LLaMA). Unbounded, the
#: walk pruned a layer whose inputs are mostly near zero to 90% on a real encoder, and the
#: model did worse than with uniform sparsity: a small relative error of one layer on the
#: calibration data does not make the model insensitive to it.
SPARSITY_SPREAD = 0.1
#: Steps of the per-tensor sparsities within the band (the last step is made exact).
SPARSITY_STEP = 0.025


def sparsity_steps(budget: float) -> tuple[float, ...]:
    """The sparsities a tensor may get under ``budget``: ``budget`` +- ``SPARSITY_SPREAD`` in
    steps of ``SPARSITY_STEP``, within [0, 0.9], ascending."""
    k = round(SPARSITY_SPREAD / SPARSITY_STEP)
    vals = {round(min(0.9, max(0.0, budget + i * SPARSITY_STEP)), 6) for i in range(-k, k + 1)}
    return tuple(sorted(vals))


def sparsity_errors(
    x: np.ndarray, plan: Plan, tc: TensorCalibration | None, steps: Sequence[float]
) -> np.ndarray:
    """Relative error of pruning ``x`` at every sparsity in ``steps``, one mask
    per output row ranked by ``|W_ij| * ||x_j||`` (Wanda; ``|W_ij|`` without statistics):
    ``sum_pruned W_ij^2 d_j / sum W_ij^2 d_j`` with ``d = diag(H)`` (1 without statistics)."""
    in_axis = _in_axis(plan)
    w = np.asarray(x, dtype=np.float64)
    if in_axis == 0:
        w = w.T
    d = tc.diag() if tc is not None else np.ones(w.shape[1])
    s2 = np.sort(w * w * d[None, :], axis=1)
    total = float(s2.sum())
    if total <= 0.0:
        return np.zeros(len(steps))
    csum = np.concatenate([np.zeros((s2.shape[0], 1)), np.cumsum(s2, axis=1)], axis=1)
    cols = w.shape[1]
    ks = [int(round(s * cols)) for s in steps]
    return np.array([float(csum[:, k].sum()) / total for k in ks])


def allocate_sparsity(
    entries: Iterable[tuple[str, np.ndarray, Plan, TensorCalibration | None]],
    budget: float,
) -> dict[str, float]:
    """Per-tensor sparsities whose size-weighted mean is ``budget`` (to within one weight per
    tensor), each within :func:`sparsity_steps` of it, minimising the summed relative pruning
    error (see :func:`sparsity_errors`)."""
    items = []
    total = 0
    steps = sparsity_steps(budget)
    for name, x, plan, tc in entries:
        errs = sparsity_errors(x, plan, tc, steps)
        # cost = kept fraction (so "upgrades" keep more weights, as in allocate_bits)
        opts = [(1.0 - s, float(e), s) for s, e in zip(steps, errs, strict=True)]
        items.append(_Item(name, int(x.size), opts))
        total += int(x.size)
    if not total:
        return {}
    kept_budget = (1.0 - budget) * total
    choice = _greedy(items, kept_budget)
    out = {it.name: float(it.options[choice[it.name]][2]) for it in items}
    # The greedy walk stops at most one step short of the budget: give the remaining kept
    # weights back to the tensor with the steepest next step, as an exact fraction.
    kept = sum((1.0 - out[it.name]) * it.size for it in items)
    slack = kept_budget - kept
    if slack > 0.5:
        best = None
        for it in items:
            s = out[it.name]
            i = steps.index(s) if s in steps else None
            if i is None or i == 0:
                continue
            room = (steps[i] - steps[i - 1]) * it.size
            gain = (it.options[i][1] - it.options[i - 1][1]) / room
            if room >= slack and (best is None or gain > best[0]):
                best = (gain, it)
        if best is not None:
            it = best[1]
            out[it.name] = max(0.0, out[it.name] - slack / it.size)
    return out


def coerce_calibration(calibration: Any) -> Calibration | None:
    if calibration is None:
        return None
    if isinstance(calibration, Calibration):
        return calibration
    return Calibration(calibration)


def plans_need_calibration(plans: Mapping[str, Plan]) -> list[str]:
    return sorted(n for n, p in plans.items() if p.needs_stats())
