"""Whole-model compression: :func:`compress`, :class:`CompressedModel`, :func:`load`.

``compress(weights, recipe)`` reads the weights one tensor at a time, encodes each as its
recipe rule says (in parallel: the kernels release the GIL), and streams the results into an
``.epk`` file (FORMAT.md); the returned :class:`CompressedModel` reads that file lazily.
Memory stays near the largest tensor times a small factor, whatever the model's size.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import functools
import json
import math
import os
import stat
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack import _core
from edgepack._errors import ArgumentError, DtypeError, FormatError
from edgepack.io import (
    FLOAT_NAMES,
    check_json,
    clip,
    dtype_name,
    numpy_dtype,
    open_source,
    read_safetensors_header,
    scratch,
    write_safetensors,
)
from edgepack._calibrate import (
    Calibration,
    TensorCalibration,
    what_needs,
    allocate_bits,
    allocate_sparsity,
    check_tensor,
    coerce_calibration,
    output_error_stats,
    prune_tensor,
    quantize_tensor,
)
from edgepack.recipe import CALIBRATED_SPARSITY, Plan, Recipe
from edgepack.report import ErrorAccumulator, Report, ReportRow, tensor_stats

__all__ = ["compress", "load", "CompressedModel", "TensorInfo"]

_MAGIC = b"\x89EPK\r\n\x1a\n"
#: Largest recipe (canonical JSON bytes) ``CompressedModel.recipe`` parses (SECURITY.md).
_MAX_RECIPE_JSON = 16 << 20
_SPARSE_FORMAT = "edgepack-sparse"

ProgressFn = Callable[[int, int, str], None]


def _add_note(e: BaseException, note: str) -> None:
    """``e.add_note(note)`` (PEP 678); on Python 3.10 the same ``__notes__`` list by hand."""
    if hasattr(e, "add_note"):
        e.add_note(note)
    else:  # pragma: no cover - Python 3.10
        notes = getattr(e, "__notes__", None)
        if not isinstance(notes, list):
            notes = []
            try:
                e.__notes__ = notes  # type: ignore[attr-defined]
            except AttributeError:
                return
        notes.append(note)


# ----------------------------------------------------------------------------------------------
# Quantized / sparse objects (from the quantize and sparse modules).


def _quantized_from_parts(
    data: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    params: dict[str, Any],
    shape: tuple[int, ...],
    in_scale: np.ndarray | None = None,
) -> Any:
    from edgepack.quantize import QuantizedTensor

    axis = params["axis"]
    if axis is None:
        scale = scale.reshape(())
    if zero_point is None:  # symmetric: signed values, zero point 0
        zero_point = np.zeros(scale.shape, dtype=np.int8)
    else:
        zero_point = zero_point.reshape(scale.shape)
    return QuantizedTensor(
        data=data,
        scale=scale,
        zero_point=zero_point,
        axis=axis,
        block_size=params["block_size"],
        bits=int(params["bits"]),
        shape=shape,
        in_scale=in_scale,
        in_axis=None if in_scale is None else int(params["in_axis"]),
    )


# ----------------------------------------------------------------------------------------------
# Encoding one tensor.


@dataclass(frozen=True)
class TensorInfo:
    """What the file says about one tensor."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    encoding: str
    params: dict[str, Any]
    stored_bytes: int
    stats: dict[str, Any] | None


def _u8(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _json(d: Any) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _clean_stats(s: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if v is not None and math.isfinite(v) else None) for k, v in s.items()}


def _prune_mask(x: np.ndarray, plan: Plan, importance: np.ndarray | None, name: str) -> np.ndarray:
    from edgepack import prune

    r = plan.rule
    assert r is not None
    # Scores per input feature (last dim) weight |w| (as prune.magnitude_mask does).
    score = x if importance is None else np.abs(x) * importance
    if r.importance == "provided" and importance is None:
        raise ArgumentError(
            f"tensor {name!r}: rule {r.pattern!r} wants provided importance, but `importance` "
            "has no entry for it"
        )
    if r.sparsity_method == "magnitude":
        return prune.magnitude_mask(x, plan.sparsity, importance=importance)
    if r.sparsity_method == "nm":
        return prune.nm_mask(score, r.n, r.m)
    return prune.block_mask(score, plan.sparsity, block=r.block_shape)


def _encode(
    name: str,
    x: np.ndarray,
    plan: Plan,
    importance: np.ndarray | None,
    level: int,
    tc: TensorCalibration | None = None,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Encode one tensor: the arguments of ``EpkWriter.add`` and the stats.

    ``tc``: the tensor's calibration statistics, when the compress call has them: used by the
    calibrated methods, and for the output-error columns of the report."""
    dt = dtype_name(x.dtype, f"tensor {name!r}")
    shape = tuple(int(d) for d in x.shape)
    payloads: list[tuple[str, str, list[int], np.ndarray]] = []
    params: dict[str, Any] = {}
    zstd: int | None = None
    if plan.encoding == "raw":
        payloads.append(("data", dt, list(shape), _u8(x)))
        zero = int(x.size - np.count_nonzero(x)) if x.size else 0
        stats: dict[str, Any] = {
            "sparsity": zero / x.size if x.size else 0.0,
            "snr_db": None,
            "rel_error": 0.0,
            "cosine": 1.0,
            "max_abs_error": 0.0,
        }
        return (name, dt, list(shape), "raw", "{}", _json(stats), payloads, None), stats
    with np.errstate(over="ignore"):
        xf = np.asarray(x, dtype=np.float32)
    if x.dtype == np.float64 and xf.size:
        over = np.isinf(xf) & np.isfinite(x)
        if over.any():
            i = int(np.flatnonzero(over.reshape(-1))[0])
            raise ArgumentError(
                f"tensor {name!r} value {float(x.reshape(-1)[i])!r} at index {i} overflows float32 "
                f"(its rule asks for {plan.encoding}, computed in float32); keep it with "
                "action='keep'"
            )
    if plan.encoding == "quant" and not plan.sparsity and _too_tiny(xf):
        # Its scales would fall below float32's smallest normal: the kernels use scale 1
        # there, which would turn every value into 0. Kept as it is (lossless, and tiny).
        return _encode(name, x, dataclasses.replace(plan, encoding="raw"), importance, level, tc)
    qt_joint = None  # SparseGPT's jointly pruned and quantized tensor
    if plan.sparsity and plan.sparsity_method in CALIBRATED_SPARSITY:
        xp, mask, qt_joint = prune_tensor(xf, plan, tc)
        zstd = level
    elif plan.sparsity:
        imp = None
        if importance is not None and plan.rule is not None and plan.rule.importance == "provided":
            imp = np.asarray(importance, dtype=np.float32)
            want = (x.shape[-1],) if x.ndim else (1,)
            if imp.shape != want:
                raise ArgumentError(
                    f"importance of tensor {name!r} has shape {imp.shape}, expected {want} "
                    "(one score per input feature, the last dimension)"
                )
        mask = np.asarray(_prune_mask(xf, plan, imp, name), dtype=bool)
        xp = np.where(mask, xf, np.float32(0))
        zstd = level
    else:
        mask = None
        xp = xf
    if plan.encoding == "float16":
        with np.errstate(over="ignore"):
            y16 = xp.astype(np.float16)
        bad = np.isinf(y16) & np.isfinite(xp)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise ArgumentError(
                f"tensor {name!r} value {float(xp.reshape(-1)[i])!r} at index {i} overflows float16"
            )
        payloads.append(("data", "float16", list(shape), _u8(y16)))
        decoded = y16
        enc = "float16"
    elif plan.encoding == "sparse":
        from edgepack import sparse

        st = sparse.encode(xp, mask=mask)
        blob = np.frombuffer(st.to_bytes(level=level), dtype=np.uint8)
        payloads.append(("data", "uint8", [int(blob.size)], blob))
        params = {"format": _SPARSE_FORMAT, "nnz": int(st.nnz)}
        decoded = st.to_dense()
        enc = "sparse"
        zstd = None
    else:
        qt = qt_joint if qt_joint is not None else quantize_tensor(xp, plan, tc)
        data = np.asarray(qt.data)
        scale_shape = _scale_shape(shape, plan.axis, plan.block_size)
        data_shape = list(data.shape) if plan.bits == 8 else [int(data.size)]
        payloads.append(("data", data.dtype.name, data_shape, _u8(data)))
        in_scale = getattr(qt, "in_scale", None)
        if in_scale is not None:  # AWQ (FORMAT.md version 2); roles stay sorted
            ins = np.ascontiguousarray(in_scale, dtype=np.float32)
            payloads.append(("in_scale", "float32", [int(ins.size)], _u8(ins)))
        scale = np.asarray(qt.scale)  # float32, or float16 (scale_dtype="float16")
        payloads.append(("scale", scale.dtype.name, scale_shape, _u8(scale)))
        if not plan.symmetric:
            zp = np.asarray(qt.zero_point).astype(np.uint8)
            payloads.append(("zero_point", "uint8", scale_shape, _u8(zp)))
        params = {
            "bits": plan.bits,
            "symmetric": plan.symmetric,
            "axis": plan.axis,
            "block_size": plan.block_size,
            "convention": "onnx",
            "sparsity": float(plan.sparsity),
        }
        if in_scale is not None:
            params["in_axis"] = int(qt.in_axis)
        enc = "quant"
        zstd = level
        stats = _quant_stats(xf, qt, plan)
        if tc is not None and xf.ndim == 2:
            stats.update(output_error_stats(xf, qt.dequantize(), plan, tc))
        return (name, dt, list(shape), enc, _json(params), _json(_clean_stats(stats)), payloads, zstd), stats
    stats = tensor_stats(xf, np.asarray(decoded))
    if tc is not None and xf.ndim == 2:
        stats.update(output_error_stats(xf, np.asarray(decoded, dtype=np.float32), plan, tc))
    clean = _clean_stats(stats)
    return (name, dt, list(shape), enc, _json(params), _json(clean), payloads, zstd), stats


#: Below this max |x| a float tensor is kept as it is instead of quantized (see _too_tiny).
_TINY_ABSMAX = 2.0**-100


def _too_tiny(xf: np.ndarray) -> bool:
    """Whether a non-zero tensor is too small to quantize: a unit (tensor, channel, block)
    whose max |x| is below ~qmax x 2^-126 gets a scale below float32's smallest normal, which
    the kernels replace by 1, so its values become 0. Below max |x| = 2^-100 that could be the
    whole tensor; above it, a unit that collapses holds values below 1e-7 of the tensor's
    largest, far under the quantization noise, so only tensors below the threshold are kept."""
    if not xf.size:
        return False
    m = float(np.max(np.abs(xf)))
    return 0.0 < m < _TINY_ABSMAX


#: Elements dequantized at a time for the report's statistics.
_STATS_CHUNK = 1 << 22


def _quant_stats(xf: np.ndarray, qt: Any, plan: Plan) -> dict[str, float | None]:
    """Error statistics of a QuantizedTensor against ``xf``, dequantizing slices of rows
    (along axis 0) into this thread's scratch buffer: never a whole decoded copy."""
    from edgepack.quantize import QuantizedTensor

    shape = tuple(xf.shape)
    rows = shape[0] if shape else 1
    inner = int(np.prod(shape[1:], dtype=np.int64)) if shape else 1
    step = max(1, _STATS_CHUNK // max(inner, 1))
    b = plan.block_size
    if plan.axis == 0 and b is not None:
        step = max(b, step // b * b)  # whole blocks along axis 0
    if plan.bits == 4 and inner % 2:
        step += step % 2  # packed: every slice starts on a byte
    acc = ErrorAccumulator()
    if not shape or step >= rows:
        out = scratch("dequantize", 4 * xf.size).view(np.float32).reshape(shape)
        acc.add(xf, qt.dequantize(out=out))
        return acc.result()
    buf = scratch("dequantize", 4 * step * inner).view(np.float32)
    data = np.asarray(qt.data)
    scale = np.asarray(qt.scale)
    zp = np.asarray(qt.zero_point)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        sub_shape = (r1 - r0, *shape[1:])
        if plan.bits == 8:
            d = data[r0:r1]
        else:
            d = data[r0 * inner // 2 : (r1 * inner + 1) // 2]
        if plan.axis is None or (plan.axis != 0 and b is None):
            s, z = scale, zp
        elif plan.axis == 0 and b is not None:
            s, z = scale[r0 // b : -(-r1 // b)], zp[r0 // b : -(-r1 // b)]
        else:  # per channel along axis 0, or blocks along a later axis: rows of the scales
            s, z = scale[r0:r1], zp[r0:r1]
        ins = qt.in_scale
        if ins is not None and qt.in_axis == 0:
            ins = ins[r0:r1]
        sub = QuantizedTensor(
            data=d, scale=s, zero_point=z, axis=plan.axis, block_size=b, bits=plan.bits,
            shape=sub_shape, in_scale=ins, in_axis=qt.in_axis,
        )
        y = sub.dequantize(out=buf[: (r1 - r0) * inner].reshape(sub_shape))
        acc.add(xf[r0:r1], y)
    return acc.result()


def _scale_shape(shape: tuple[int, ...], axis: int | None, block: int | None) -> list[int]:
    if axis is None:
        return []
    if block is None:
        return [shape[axis]]
    s = list(shape)
    s[axis] = -(-s[axis] // block)
    return s


# ----------------------------------------------------------------------------------------------
# compress


def _plan(rec: Recipe, cal: Calibration | None, name: str, x: np.ndarray) -> Plan:
    """The tensor's plan. The recipe-level ``method="gptq"`` is a default: with calibration
    statistics that do not cover a tensor (an embedding table, the output head), that tensor
    is rounded to nearest; a rule that names ``method="gptq"`` itself still needs them."""
    layout = cal.layout(name) if cal is not None else None
    plan = rec.plan(name, tuple(x.shape), x.dtype.name in FLOAT_NAMES, layout=layout)
    defaulted = plan.rule is None or (plan.rule.method is None and not plan.rule.awq)
    # A recipe-level method / awq is a default: tensors the statistics miss are rounded.
    if (plan.method == "gptq" or plan.awq) and defaulted and cal is not None and cal.get(name) is None:
        plan = dataclasses.replace(plan, method="rtn", awq=False)
    return plan


def _needs_prepass(rec: Recipe, cal: Calibration | None) -> bool:
    """Whether compress must look at every tensor before encoding any: to check calibrated
    rules against the statistics, or to allocate a budget."""
    if cal is not None or rec.budget_bits is not None or rec.budget_sparsity is not None:
        return True
    if rec.method in ("gptq", "awq") or rec.awq:
        return True
    return any(
        r.method in ("gptq", "awq")
        or r.awq
        or (r.sparsity and r.sparsity_method in CALIBRATED_SPARSITY)
        for r in rec.rules
    )


def _relative_error(x: np.ndarray, plan: Plan, tc: TensorCalibration | None) -> float:
    """Relative error energy of quantizing ``x`` by ``plan``: on the calibration data where
    ``tc`` is given, else in weight space."""
    qt = quantize_tensor(np.asarray(x, dtype=np.float32), plan, tc)
    y = qt.dequantize()
    if tc is not None:
        rel = output_error_stats(np.asarray(x, dtype=np.float32), y, plan, tc)["output_rel_error"]
        return 0.0 if rel is None else float(rel) ** 2
    st = tensor_stats(x, y)
    rel = st["rel_error"]
    return 0.0 if rel is None or not math.isfinite(rel) else float(rel) ** 2


def _calibration_plans(source: Any, rec: Recipe, cal: Calibration | None) -> dict[str, Plan]:
    """Checks made before any work, and the plans that budgets choose (name -> plan; the
    other tensors follow the recipe)."""
    if not _needs_prepass(rec, cal):
        return {}
    plans: dict[str, Plan] = {}
    few: list[str] = []
    uncovered: list[str] = []
    for name in source.names:
        x = source.load(name, reuse=True)
        plan = _plan(rec, cal, name, x)
        tc = cal.get(name) if cal is not None else None
        if plan.needs_stats() and cal is None:
            raise ArgumentError(
                f"tensor {name!r}: {what_needs(plan)} needs calibration statistics "
                f"({'X^T X' if plan.needs_hessian() else 'activation norms'}); pass "
                "compress(..., calibration=CalibrationStats) (see edgepack.calibration)"
            )
        check_tensor(name, tuple(x.shape), plan, tc)
        defaulted = plan.rule is None or plan.rule.method is None
        if plan.encoding == "quant" and defaulted and (rec.method in ("gptq", "awq") or rec.awq) and tc is None:
            uncovered.append(name)
        if tc is not None and plan.needs_hessian() and tc.tokens < tc.in_features:
            few.append(f"{name!r} ({tc.tokens} tokens, {tc.in_features} inputs)")
        plans[name] = plan
    if uncovered:
        warnings.warn(
            f"recipe method {rec.method!r}: {len(uncovered)} quantized tensor(s) have no calibration "
            f"statistics and are rounded to nearest: {', '.join(map(repr, uncovered[:3]))}"
            f"{', ...' if len(uncovered) > 3 else ''} (embedding tables and other tensors that "
            "are not a MatMul's weight have none)",
            UserWarning,
            stacklevel=3,
        )
    if few:
        warnings.warn(
            f"{len(few)} layer(s) were calibrated on fewer tokens than input features: "
            f"{', '.join(few[:3])}{', ...' if len(few) > 3 else ''}. Their X^T X is "
            "rank-deficient, so GPTQ / SparseGPT fit the calibration data closely and may do "
            "worse on other inputs: record more tokens (several times the input width), or "
            "raise the rule's damp (on a 3-layer BERT with 669 calibration tokens, damp 0.1 "
            "beat 0.01 on held-out sentences; see BENCHMARKS.md)",
            UserWarning,
            stacklevel=3,
        )
    out: dict[str, Plan] = {}
    if rec.budget_sparsity is not None:
        out.update(_sparsity_budget(source, rec, cal, plans))
    if rec.budget_bits is not None:
        current = {n: out.get(n, p) for n, p in plans.items()}
        entries = (
            (n, source.load(n), p, cal.get(n) if cal is not None else None)
            for n, p in current.items()
            if p.encoding == "quant"
        )
        chosen = allocate_bits(entries, float(rec.budget_bits), _relative_error)
        for n, p in chosen.items():
            out[n] = p
    return out


def _sparsity_budget(
    source: Any, rec: Recipe, cal: Calibration | None, plans: Mapping[str, Plan]
) -> dict[str, Plan]:
    """Per-tensor sparsities for ``recipe.budget_sparsity``: over the float 2-D tensors the
    statistics cover (kept ones are then stored sparse) and those whose rule asks for
    unstructured or block sparsity; N:M rules keep their sparsity and count toward the budget."""
    budget = float(rec.budget_sparsity or 0.0)
    free: list[str] = []
    fixed_pruned = 0.0
    total = 0
    sizes: dict[str, int] = {}
    for name, p in plans.items():
        x = source.load(name, reuse=True)
        if x.ndim != 2 or x.dtype.name not in FLOAT_NAMES:
            continue
        covered = cal is not None and cal.get(name) is not None
        ruled = bool(p.sparsity)
        if not (covered or ruled):
            continue
        sizes[name] = int(x.size)
        total += int(x.size)
        nm = p.sparsity_method == "nm" or (
            p.sparsity_method in CALIBRATED_SPARSITY and p.structure == "nm"
        )
        if nm:
            fixed_pruned += p.sparsity * x.size
        else:
            free.append(name)
    if not free:
        return {}
    free_total = sum(sizes[n] for n in free)
    target = (budget * total - fixed_pruned) / free_total
    if not 0.0 <= target <= 0.9:
        raise ArgumentError(
            f"budget_sparsity={budget} cannot be met: the N:M rules fix {fixed_pruned / total:.3f} "
            f"of the prunable weights, leaving {target:.3f} for the others (0 to 0.9)"
        )
    entries = (
        (n, source.load(n), plans[n], cal.get(n) if cal is not None else None) for n in free
    )
    chosen = allocate_sparsity(entries, target)
    out = {}
    for name, sp in chosen.items():
        p = plans[name]
        tc = cal.get(name) if cal is not None else None
        method = p.sparsity_method
        if not p.sparsity:  # no pruning rule: the calibrated default
            method = "sparsegpt" if tc is not None and tc.full else "wanda"
            if tc is None:
                method = "magnitude"
        if method == "wanda" and p.method == "gptq":
            method = "sparsegpt"
        if p.encoding == "raw" and sp > 0:
            enc = "sparse"
        else:
            enc = p.encoding
        out[name] = dataclasses.replace(p, encoding=enc, sparsity=float(sp), sparsity_method=method)
    return out


def _check_metadata(md: Mapping[str, str] | None) -> dict[str, str]:
    if md is None:
        return {}
    if not isinstance(md, Mapping):
        raise DtypeError(f"`metadata` must be a dict of str -> str, found {type(md).__name__}")
    out = {}
    for k, v in md.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise DtypeError(f"`metadata` must map str -> str, found {k!r}: {type(v).__name__}")
        out[k] = v
    return out


def compress(
    weights: Mapping[str, Any] | str | os.PathLike[str],
    recipe: Recipe | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    progress: ProgressFn | None = None,
    importance: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
    out: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    calibration: Any = None,
) -> CompressedModel:
    """Compress a model's weights into an ``.epk`` file.

    ``weights``: a mapping name -> array (float32 / float16 / bfloat16 / float64 of any rank;
    integer and bool tensors are kept as is), or the path of a ``.safetensors``, ``.npz`` or
    PyTorch (``.pt`` / ``.pth`` / ``.bin``, needs torch) file. Nothing passed in is modified.
    ``recipe``: a :class:`Recipe`, a dict, JSON text, or a ``.json`` / ``.toml`` path
    (default: ``Recipe()``). ``progress(done, total, name)`` is called after each tensor.
    ``importance``: scores for rules with ``importance="provided"``. ``metadata``: str -> str
    kept in the file; a safetensors source's own ``__metadata__`` (e.g. ``{"format": "pt"}``)
    is kept too (``metadata`` wins on a shared key) and written back by
    :meth:`CompressedModel.to_safetensors`. ``out``: write the file there directly (atomically) instead of a
    temporary file (in ``TMPDIR``) that :meth:`CompressedModel.save` copies; for models larger
    than memory on a machine whose ``/tmp`` is a RAM disk (tmpfs), pass ``out=`` or point
    ``TMPDIR`` at a disk folder.
    ``workers``: tensors encoded at once (default: ``edgepack.get_num_threads()``).
    ``calibration``: an :class:`edgepack.CalibrationStats` (or the path of a saved one) with
    the activations entering the model's layers, for the calibration-aware methods (rules
    with ``method="gptq"``, ``sparsity_method="sparsegpt"`` / ``"wanda"``, the recipe's
    ``budget_bits`` / ``budget_sparsity``); with it, the report also gives each covered
    tensor's output error on the calibration data. Every tensor that needs statistics is
    checked (present, of the right width) before any work.

    Errors name the tensor (as a note on the exception when it comes from a kernel).
    """
    rec = Recipe.coerce(recipe)
    md = _check_metadata(metadata)
    cal = coerce_calibration(calibration)
    source = open_source(weights)
    md = {**source.metadata, **md}
    tmpdir = None
    try:
        names = source.names
        for pat in rec.unused_patterns(names):
            warnings.warn(
                f"recipe rule {pat!r} decides no tensor (it matches no name, or earlier rules "
                "take every tensor it matches)",
                UserWarning,
                stacklevel=2,
            )
        if importance is not None and not isinstance(importance, Mapping):
            raise DtypeError("`importance` must be a mapping of tensor name -> array")
        if out is None:
            tmpdir = tempfile.mkdtemp(prefix="edgepack-")
            path = os.path.join(tmpdir, "model.epk")
        else:
            path = os.fspath(out)
        overrides = _calibration_plans(source, rec, cal)
        writer = _core.EpkWriter(path)
        import edgepack

        nw = max(1, int(workers) if workers is not None else edgepack.get_num_threads())

        def work(name: str) -> None:
            try:
                x = source.load(name, reuse=True)
                plan = overrides.get(name) or _plan(rec, cal, name, x)
                imp = None if importance is None else importance.get(name)
                tc = cal.get(name) if cal is not None else None
                args, _ = _encode(name, x, plan, imp, rec.zstd_level, tc)
                writer.add(*args)
            except Exception as e:
                _add_note(e, f"while compressing tensor {name!r}")
                raise

        try:
            with ThreadPoolExecutor(max_workers=nw, thread_name_prefix="edgepack-compress") as ex:
                pending: set[Future[None]] = set()
                done_count = 0
                it = iter(names)
                futmap: dict[Future[None], str] = {}

                def reap(block: bool) -> None:
                    nonlocal done_count, pending
                    if not pending:
                        return
                    done, pending = wait(pending, return_when=FIRST_COMPLETED) if block else (
                        {f for f in pending if f.done()},
                        {f for f in pending if not f.done()},
                    )
                    for f in sorted(done, key=lambda f: futmap[f]):
                        f.result()  # re-raise the first error
                        done_count += 1
                        if progress is not None:
                            progress(done_count, len(names), futmap.pop(f))

                for name in it:
                    while len(pending) >= nw + 1:  # bounded: at most nw + 1 tensors in flight
                        reap(True)
                    fut = ex.submit(work, name)
                    futmap[fut] = name
                    pending.add(fut)
                while pending:
                    reap(True)
            writer.finish(md, rec.to_json())
        except BaseException:
            writer.abort()
            raise
    except BaseException:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    finally:
        source.close()
    return CompressedModel(path, _tmpdir=tmpdir)


# ----------------------------------------------------------------------------------------------
# CompressedModel


class CompressedModel(Mapping[str, Any]):
    """A compressed model, read lazily from its ``.epk`` file (memory-mapped; a tensor is
    verified and decoded each time it is accessed, nothing is cached).

    ``model[name]`` is the stored object: an ndarray (kept / float16; a read-only view of the
    memory-mapped file when the payload is stored uncompressed), a QuantizedTensor or a
    SparseTensor. ``decompress(name)`` gives a fresh float32 array.
    """

    def __init__(self, path: str | os.PathLike[str], *, _tmpdir: str | None = None):
        self._reader = _core.EpkReader(path)
        # The recipe is parsed only when asked for (.recipe, to_safetensors): the header's
        # free-form part is never held as a Python tree next to the tensors' records.
        h = json.loads(self._reader.header_json(recipe=False))
        self._header = h
        self._records: dict[str, dict[str, Any]] = {t["name"]: t for t in h["tensors"]}
        self._names = [t["name"] for t in h["tensors"]]
        if _tmpdir is not None:
            weakref.finalize(self, shutil.rmtree, _tmpdir, True)

    # Mapping protocol
    def __getitem__(self, name: str) -> Any:
        return self._decode(name, float32=False)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __repr__(self) -> str:
        return f"CompressedModel({len(self)} tensors, {self.nbytes} bytes, path={self.path!r})"

    @property
    def path(self) -> str:
        """The file this model reads from."""
        return os.fspath(self._reader.path)

    @property
    def names(self) -> list[str]:
        """Tensor names, sorted (the order they are stored in)."""
        return list(self._names)

    @property
    def nbytes(self) -> int:
        """Size of the ``.epk`` file in bytes."""
        return int(self._reader.nbytes)

    @property
    def metadata(self) -> dict[str, str]:
        """User metadata (str -> str) kept in the file."""
        return dict(self._header["metadata"])

    @property
    def recipe(self) -> Recipe | None:
        """The recipe the model was compressed with (None if the file holds none)."""
        r = self._recipe_dict()
        if r is None:
            return None
        try:
            return Recipe.from_dict(r)
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as e:
            raise FormatError(f"{self.path}: the file's recipe is invalid: {clip(str(e))}") from e

    def _recipe_dict(self) -> dict[str, Any] | None:
        text = self._reader.recipe_json()
        if len(text) > _MAX_RECIPE_JSON:
            # A real recipe (one rule per tensor for 100k tensors) is a few MiB; a larger one
            # is refused before Python builds it (it would cost ~150 bytes per JSON value).
            raise FormatError(
                f"{self.path}: the file's recipe is {len(text)} bytes of JSON, above the "
                f"limit of {_MAX_RECIPE_JSON} bytes this reader interprets"
            )
        r: dict[str, Any] | None = json.loads(text)
        return r

    def info(self, name: str) -> TensorInfo:
        """What the header says of tensor ``name``: shape, dtype, encoding, sizes, checksums."""
        t = self._record(name)
        return TensorInfo(
            name=name,
            dtype=t["dtype"],
            shape=tuple(t["shape"]),
            encoding=t["encoding"],
            params=dict(t["params"]),
            stored_bytes=sum(p["length"] for p in t["payloads"]),
            stats=t.get("stats"),
        )

    def _record(self, name: str) -> dict[str, Any]:
        try:
            return self._records[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in this model") from None

    def _payload(self, name: str, t: dict[str, Any], role: str) -> np.ndarray:
        """The decoded payload. Uncompressed payloads are read-only views of the reader's memory
        map of the file it verified (no copy; the checksum is verified first; the path is never
        re-opened); compressed ones are decoded."""
        p = next(p for p in t["payloads"] if p["role"] == role)
        dt = numpy_dtype(p["dtype"])
        shape: tuple[int, ...] = tuple(p["shape"])
        raw: np.ndarray = self._reader.payload(name, role)
        return raw.view(dt).reshape(shape)

    def _decode(self, name: str, *, float32: bool) -> Any:
        t = self._record(name)
        shape = tuple(t["shape"])
        enc = t["encoding"]
        try:
            if enc == "raw":
                a = self._payload(name, t, "data")
                if a.dtype == np.bool_ and a.size and a.view(np.uint8).max() > 1:
                    i = int(np.argmax(a.reshape(-1).view(np.uint8) > 1))
                    v = int(a.reshape(-1).view(np.uint8)[i])
                    raise FormatError(
                        f"tensor {name!r}: bool byte {v} at index {i} (bool bytes are 0 or 1)"
                    )
                if float32:
                    return a.astype(np.float32) if t["dtype"] in FLOAT_NAMES else a.copy()
                return a
            if enc == "float16":
                a = self._payload(name, t, "data")
                return a.astype(np.float32) if float32 else a
            if enc == "sparse":
                from edgepack.sparse import SparseTensor

                blob = self._payload(name, t, "data")
                st = SparseTensor.from_bytes(blob.tobytes())
                if tuple(st.shape) != shape or int(st.nnz) != int(t["params"]["nnz"]):
                    raise FormatError(
                        f"tensor {name!r}: sparse payload has shape {tuple(st.shape)} and "
                        f"{int(st.nnz)} non-zeros, the header says {shape} and {t['params']['nnz']}"
                    )
                return np.asarray(st.to_dense(), dtype=np.float32) if float32 else st
            if enc == "quant":
                data = self._payload(name, t, "data")
                scale = self._payload(name, t, "scale")
                zp = self._payload(name, t, "zero_point") if not t["params"]["symmetric"] else None
                if not np.all(np.isfinite(scale) & (scale > 0)):
                    raise FormatError(f"tensor {name!r}: scale holds a value that is not finite and > 0")
                ins = None
                if "in_axis" in t["params"]:
                    ins = self._payload(name, t, "in_scale")
                    _check_in_scale(name, ins)
                qt = _quantized_from_parts(data, scale, zp, t["params"], shape, ins)
                if float32:
                    import edgepack

                    return edgepack.dequantize(qt)
                return qt
        except Exception as e:
            _add_note(e, f"while decoding tensor {name!r} from {self.path}")
            raise
        raise FormatError(f"tensor {name!r} has unknown encoding {enc!r}")  # pragma: no cover

    def decompress(self, name: str | None = None) -> Any:
        """Float32 array of one tensor, or a dict of all of them (integer / bool tensors
        kept as stored come back in their own dtype)."""
        if name is not None:
            return self._decode(name, float32=True)
        return {n: self._decode(n, float32=True) for n in self._names}

    def verify(self) -> None:
        """Check every payload's checksum and decoding (reads the whole file)."""
        self._reader.verify()

    def report(self) -> Report:
        """Per-tensor sizes and errors (errors measured when the file was written)."""
        rows = []
        for t in self._header["tensors"]:
            n = math.prod(t["shape"])
            before = n * numpy_dtype(t["dtype"]).itemsize if t["dtype"] != "bfloat16" else 2 * n
            after = sum(p["length"] for p in t["payloads"])
            s = t.get("stats") or {}
            lossless = t["encoding"] == "raw"
            snr = s.get("snr_db")
            if snr is None and (lossless or s.get("rel_error") == 0.0):
                snr = math.inf
            rows.append(
                ReportRow(
                    name=t["name"],
                    shape=tuple(t["shape"]),
                    parameters=n,
                    encoding=_describe(t),
                    sparsity=s.get("sparsity"),
                    bits_per_weight=8 * after / n if n else 0.0,
                    bytes_before=before,
                    bytes_after=after,
                    ratio=before / after if after else math.inf,
                    snr_db=snr,
                    rel_error=s.get("rel_error"),
                    cosine=s.get("cosine"),
                    max_abs_error=s.get("max_abs_error"),
                    output_snr_db=s.get("output_snr_db"),
                    output_rel_error=s.get("output_rel_error"),
                )
            )
        return Report(tuple(rows), model=self)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to ``path`` atomically (a temporary file next to it, fsync, rename):
        an interrupted save never destroys a file already at ``path``."""
        # The bytes of the memory map verified at load, whatever is at self.path now.
        self._reader.save(os.fspath(path))

    def to_safetensors(self, path: str | os.PathLike[str], *, dequantize: bool = False) -> None:
        """Write a plain safetensors file (FORMAT.md section 10), tensor by tensor.

        For a quantized tensor ``w``: ``w`` holds the integer data (int8 / uint8; 4-bit: two
        values per byte, low nibble first, flat), ``w.scale`` the scales (float32, or float16) and
        ``w.zero_point`` the zero points when affine. Kept and float16 tensors are stored as
        is, sparse tensors dense (float32). With ``dequantize=True`` every float tensor is
        written as float32 and nothing else (for any tool), with the file's metadata as the
        ``__metadata__`` (that of a compressed safetensors source included, so ``{"format":
        "pt"}`` survives compress -> decompress).
        """
        items: list[tuple[str, str, tuple[int, ...]]] = []
        getters: dict[str, Callable[[], np.ndarray]] = {}
        meta_t: dict[str, Any] = {}
        for name in self._names:
            t = self._records[name]
            shape = tuple(t["shape"])
            if dequantize:
                dt = "float32" if t["dtype"] in FLOAT_NAMES else t["dtype"]
                items.append((name, dt, shape))
                getters[name] = functools.partial(self.decompress, name)
                continue
            meta_t[name] = {k: t[k] for k in ("dtype", "shape", "encoding", "params")}
            if "stats" in t:
                meta_t[name]["stats"] = t["stats"]
            if t["encoding"] == "quant":
                for p in t["payloads"]:
                    key = name if p["role"] == "data" else f"{name}.{p['role']}"
                    items.append((key, p["dtype"], tuple(p["shape"])))
                    getters[key] = functools.partial(self._payload, name, t, p["role"])
            elif t["encoding"] == "sparse":
                items.append((name, "float32", shape))
                getters[name] = functools.partial(self.decompress, name)
            else:
                p = t["payloads"][0]
                items.append((name, p["dtype"], shape))
                getters[name] = functools.partial(self._payload, name, t, "data")
        counts = collections.Counter(i[0] for i in items)
        if len(counts) != len(items):
            dup = sorted(n for n, c in counts.items() if c > 1)
            raise ArgumentError(
                f"tensor names {dup} collide with the '.scale' / '.zero_point' / '.in_scale' names"
            )
        md = dict(self._header["metadata"]) or None  # the plain file keeps the user's metadata
        if not dequantize:
            v2 = any(_needs_v2(self._records[n]) for n in meta_t)
            md = {
                "format": "edgepack",
                "edgepack.format_version": "2" if v2 else "1",
                "edgepack.tensors": _json(meta_t),
                "edgepack.recipe": json.dumps(self._recipe_dict(), sort_keys=True),
                "edgepack.metadata": _json(self._header["metadata"]),
            }
        write_safetensors(os.fspath(path), items, lambda k: getters[k](), md)


def _needs_v2(t: Mapping[str, Any]) -> bool:
    """Whether a tensor record uses a version-2 feature (FORMAT.md 8): an AWQ ``in_scale``
    or float16 scales."""
    if t.get("encoding") != "quant":
        return False
    return "in_axis" in t.get("params", {}) or any(
        p["role"] == "scale" and p["dtype"] == "float16" for p in t.get("payloads", ())
    )


def _check_in_scale(name: str, ins: np.ndarray) -> None:
    """FORMAT.md 5 (version 2): every ``in_scale`` value finite, positive and normal."""
    bad = ~(np.isfinite(ins) & (ins >= np.finfo(np.float32).tiny))
    if bad.any():
        i = int(np.argmax(bad.reshape(-1)))
        raise FormatError(
            f"tensor {name!r}: in_scale holds {float(ins.reshape(-1)[i])!r} at index {i}, "
            "expected a finite, positive, normal float32"
        )


def _describe(t: dict[str, Any]) -> str:
    e: str = t["encoding"]
    if e != "quant":
        return e
    p = t["params"]
    kind = "int" if p["symmetric"] else "uint"
    if p["axis"] is None:
        g = "tensor"
    elif p["block_size"] is None:
        g = f"axis {p['axis']}"
    else:
        g = f"block {p['block_size']} axis {p['axis']}"
    awq = " awq" if "in_axis" in p else ""
    return f"{kind}{p['bits']} {g}{awq}"


# ----------------------------------------------------------------------------------------------
# load


def load(path: str | os.PathLike[str]) -> CompressedModel:
    """Open an ``.epk`` file lazily (memory-mapped; tensors decoded on access), or read back
    the safetensors form written by :meth:`CompressedModel.to_safetensors`.

    A missing or unreadable path raises the OS error (``FileNotFoundError``,
    ``PermissionError``) with the path; a corrupt file raises :class:`edgepack.FormatError`.
    """
    p = os.fspath(path)
    st = os.stat(p)  # FileNotFoundError / PermissionError with the path
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        # Opening a FIFO blocks until a writer appears; a device has no length to check.
        raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", p)
    with open(p, "rb") as f:
        magic = f.read(8)
    if magic != _MAGIC and p.lower().endswith(".safetensors"):
        return _from_safetensors(p)
    return CompressedModel(p)  # the reader says what is wrong with anything else


def _from_safetensors(path: str) -> CompressedModel:
    header, data_start, _ = read_safetensors_header(path)
    md = header.get("__metadata__") or {}
    if md.get("format") != "edgepack" or "edgepack.tensors" not in md:
        raise FormatError(
            f"{path}: a safetensors file without edgepack metadata; compress it with "
            "edgepack.compress(path) instead"
        )
    version = md.get("edgepack.format_version")
    if version not in ("1", "2"):
        raise FormatError(
            f"{path}: unsupported edgepack safetensors version "
            f"{clip(repr(md.get('edgepack.format_version')), 80)}"
        )
    tensors = check_json(md["edgepack.tensors"], f"{path}: edgepack.tensors")
    recipe = check_json(md.get("edgepack.recipe", "null"), f"{path}: edgepack.recipe")
    usermd = check_json(md.get("edgepack.metadata", "{}"), f"{path}: edgepack.metadata")
    if not (isinstance(tensors, dict) and all(isinstance(t, dict) for t in tensors.values())):
        raise FormatError(f"{path}: edgepack.tensors must map tensor names to objects")
    if not isinstance(usermd, dict) or not all(isinstance(v, str) for v in usermd.values()):
        raise FormatError(f"{path}: edgepack.metadata must be a JSON object of strings")
    if not (recipe is None or isinstance(recipe, dict)):
        raise FormatError(f"{path}: edgepack.recipe must be null or an object, found {type(recipe).__name__}")
    for name, t in tensors.items():
        _check_st_record(path, name, t)
    level = (recipe or {}).get("zstd_level", 1)
    if not (type(level) is int and -7 <= level <= 22):
        raise FormatError(
            f"{path}: edgepack.recipe \"zstd_level\" must be an int in -7..=22, found {clip(repr(level), 80)}"
        )
    src = open_source(path)
    have = set(src.names)
    missing = sorted(
        k
        for n, t in tensors.items()
        for k in (
            [n]
            if t.get("encoding") != "quant"
            else [n, f"{n}.scale"] + ([f"{n}.in_scale"] if "in_axis" in (t.get("params") or {}) else [])
        )
        if k not in have
    )
    if missing:
        src.close()
        raise FormatError(
            f"{path}: edgepack metadata names tensor {clip(repr(missing[0]), 200)} that the file lacks"
        )
    tmpdir = tempfile.mkdtemp(prefix="edgepack-")
    epk = os.path.join(tmpdir, "model.epk")
    try:
        w = _core.EpkWriter(epk)
        try:
            for name in sorted(tensors):
                t = tensors[name]
                enc = t["encoding"]
                payloads = []
                if enc == "quant":
                    if "in_axis" in t["params"] and version != "2":
                        raise FormatError(
                            f"{path}: tensor {name!r} has an in_scale (param in_axis), which needs "
                            f"edgepack.format_version 2, found {version!r}"
                        )
                    roles = (
                        ["data"]
                        + (["in_scale"] if "in_axis" in t["params"] else [])
                        + ["scale"]
                        + ([] if t["params"]["symmetric"] else ["zero_point"])
                    )
                    for role in roles:
                        key = name if role == "data" else f"{name}.{role}"
                        a = src.load(key)
                        if role == "scale" and a.dtype == np.float16 and version != "2":
                            raise FormatError(
                                f"{path}: tensor {name!r} has float16 scales, which need "
                                f"edgepack.format_version 2, found {version!r}"
                            )
                        payloads.append((role, a.dtype.name, list(a.shape), _u8(a)))
                    zlevel: int | None = level
                elif enc == "sparse":
                    a = src.load(name)
                    payloads.append(("data", "float32", list(a.shape), _u8(a)))
                    enc, t = "raw", {**t, "dtype": "float32", "params": {}}
                    zlevel = None
                else:
                    a = src.load(name)
                    payloads.append(("data", dtype_name(a.dtype, name), list(a.shape), _u8(a)))
                    zlevel = None
                stats = t.get("stats")
                w.add(
                    name,
                    t["dtype"],
                    list(t["shape"]),
                    enc,
                    _json(t["params"]),
                    None if stats is None else _json(stats),
                    payloads,
                    zlevel,
                )
            w.finish({str(k): str(v) for k, v in usermd.items()}, None if recipe is None else _json(recipe))
        except BaseException:
            w.abort()
            raise
    except FormatError:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    except (KeyError, TypeError, AttributeError, OverflowError, ValueError) as e:
        # Hostile or inconsistent metadata: whatever the writer rejects is a format error here.
        shutil.rmtree(tmpdir, ignore_errors=True)
        what = f"lacks the key {e}" if isinstance(e, KeyError) else str(e)
        raise FormatError(f"{path}: invalid edgepack metadata: {clip(what)}") from e
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return CompressedModel(epk, _tmpdir=tmpdir)



_MAX_JSON_INT = (1 << 53) - 1


def _check_st_record(path: str, name: str, t: dict[str, Any]) -> None:
    """The types of one record of ``edgepack.tensors`` (the writer checks the values): a
    ``FormatError`` naming the tensor and the field, never a TypeError / OverflowError."""
    what = f"{path}: edgepack.tensors[{clip(repr(name), 200)}]"
    for k in ("dtype", "shape", "encoding", "params"):
        if k not in t:
            raise FormatError(f"{what} lacks the key {k!r}")
    for k in ("dtype", "encoding"):
        if not isinstance(t[k], str):
            raise FormatError(f"{what}: {k!r} must be a string, found {type(t[k]).__name__}")
    shape = t["shape"]
    if not isinstance(shape, list):
        raise FormatError(f"{what}: 'shape' must be a list, found {type(shape).__name__}")
    for i, d in enumerate(shape):
        if type(d) is not int or not 0 <= d <= _MAX_JSON_INT:
            raise FormatError(
                f"{what}: shape[{i}] must be an integer in 0..=2^53-1, found {clip(repr(d), 80)}"
            )
    if not isinstance(t["params"], dict):
        raise FormatError(f"{what}: params must be a JSON object, found {type(t['params']).__name__}")
    stats = t.get("stats")
    if stats is not None and not isinstance(stats, dict):
        raise FormatError(f"{what}: 'stats' must be an object or null, found {type(stats).__name__}")
