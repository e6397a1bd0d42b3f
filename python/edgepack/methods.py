"""Calibration-aware compression of one weight: GPTQ, SparseGPT, HQQ, the output error and
SmoothQuant scales (the Rust core in ``src/calib/``; this module only coerces and lays out).

Conventions:

* ``w`` is a 2-D float weight. ``layout="out_in"`` (PyTorch ``nn.Linear``, ONNX Gemm with
  ``transB=1``) or ``"in_out"`` (Keras ``Dense``, ONNX MatMul's ``B``): the input dimension is
  axis 1 or axis 0. Results (codes, masks, scales) come back in the layout of ``w``; ``axis``,
  ``block_size`` and ``block_shape`` are in the frame of ``w`` as given.
* ``h`` is the layer's input second moment ``X^T X / tokens`` (``(in, in)`` float64), e.g.
  ``CalibrationStats.hessian(name)``; the output error also accepts its diagonal ``(in,)``.
* The quantization grid is :func:`edgepack.quantize`'s for the same scheme (``bits``,
  ``symmetric``, ``axis``, ``block_size``): scale and zero point per tensor, channel or block,
  fixed before the solver runs ("static groups"). The default scheme (``axis="auto"``,
  ``block_size="auto"``): 8 bits -> one scale per output channel; 4 bits -> blocks of 32 along
  the input dimension. ``axis=None`` means per tensor, as in :func:`edgepack.quantize`.
* Codes are rounded exactly as the file decodes: ``q = clip(rint(w / s) + zp, qmin, qmax)``
  (division in float32), ``w' = (q - zp) * s``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np

from edgepack import _core
from edgepack._coerce import as_f32
from edgepack._errors import ArgumentError, DtypeError, NonFiniteError
from edgepack.quantize import QuantizedTensor, quantize

__all__ = ["gptq", "sparsegpt", "hqq", "awq", "awq_scales", "output_error", "smoothquant_scales"]

_LAYOUTS = ("out_in", "in_out")
_STRUCTURES = ("unstructured", "nm", "block")
_GRIDS = ("rtn", "hqq")
_AWQ_SOLVERS = ("rtn", "gptq", "hqq")
Auto = Literal["auto"]


# ----------------------------------------------------------------------------------------------
# Coercion.


def _layout(layout: Any) -> str:
    if layout not in _LAYOUTS:
        raise ArgumentError(f"`layout` must be one of {_LAYOUTS}, found {layout!r}")
    return str(layout)


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` if it holds no NaN / infinity, else NonFiniteError naming ``name`` and the first
    flat index (checked here, before edgepack.quantize derives the grid from it)."""
    ok = np.isfinite(a)
    if not ok.all():
        i = int(np.argmin(ok.reshape(-1)))
        v = float(a.reshape(-1)[i])
        kind = "NaN" if v != v else ("+Inf" if v > 0 else "-Inf")
        raise NonFiniteError(f"`{name}` contains {kind} at index {i}")
    return a


def _weight(w: Any, name: str = "w") -> np.ndarray:
    a = as_f32(w, name)
    if a.ndim != 2:
        raise ArgumentError(f"`{name}` must be 2-D (out, in) or (in, out), found shape {a.shape}")
    return _finite(a, name)


def _out_in(a: np.ndarray, layout: str) -> np.ndarray:
    return a if layout == "out_in" else np.ascontiguousarray(a.T)


def _hessian(h: Any, n: int, *, diag_ok: bool = False) -> np.ndarray:
    a = h if isinstance(h, np.ndarray) else np.asarray(h)
    if a.dtype.kind != "f":
        raise DtypeError(f"`h` must be a float array (float64 preferred), found dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.shape == (n, n) or (diag_ok and a.shape == (n,)):
        return a
    want = f"({n}, {n})" + (f" or ({n},)" if diag_ok else "")
    hint = "" if diag_ok or a.ndim != 1 else " (GPTQ / SparseGPT need the full X^T X)"
    raise ArgumentError(f"`h` has shape {a.shape}, expected {want}{hint}")


def _bits(bits: Any) -> int:
    if isinstance(bits, bool) or bits not in (8, 4):
        raise ArgumentError(f"`bits` must be 8 or 4, found {bits!r}")
    return int(bits)


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise DtypeError(f"`{name}` must be an int, found {type(v).__name__}")
    return int(v)


def _scheme(
    ndim: int, in_axis: int, bits: int, axis: Any, block_size: Any
) -> tuple[int | None, int | None]:
    """Resolve ``"auto"``: 8 bits per output channel, 4 bits in blocks of 32 along the input
    dimension (``in_axis``); an explicit ``axis`` with ``block_size="auto"`` gets blocks of 32
    for 4 bits along the input dimension, none otherwise."""
    out_axis = 1 - in_axis if ndim == 2 else 0
    if axis == "auto" and block_size == "auto":
        return (out_axis, None) if bits == 8 else (in_axis, 32)
    if axis == "auto":
        bs = None if block_size is None else _int(block_size, "block_size")
        return (in_axis if bs is not None else out_axis), bs
    ax = None if axis is None else _int(axis, "axis")
    if block_size == "auto":
        norm = None if ax is None else ax % max(ndim, 1)
        return ax, (32 if bits == 4 and norm == in_axis else None)
    return ax, (None if block_size is None else _int(block_size, "block_size"))


_SCALE_DTYPES = ("float32", "float16")


def _scale_dtype(v: Any) -> str:
    if v not in _SCALE_DTYPES:
        raise ArgumentError(f"`scale_dtype` must be one of {_SCALE_DTYPES}, found {v!r}")
    return str(v)


def _stored_scale(scale: np.ndarray, scale_dtype: str) -> np.ndarray:
    """A refined (continuous) float32 scale as it will be stored: float16 scales are rounded
    to the nearest float16 (never to 0: at least float16's smallest subnormal); the codes are
    then chosen on exactly these values."""
    if scale_dtype == "float32":
        return scale
    with np.errstate(over="ignore"):
        h = np.asarray(scale, dtype=np.float32).astype(np.float16)
    if not np.isfinite(h).all():
        raise ArgumentError(
            "a refined scale exceeds float16's largest value 65504; use scale_dtype='float32'"
        )
    out: np.ndarray = np.maximum(h, np.float16(2.0**-24)).astype(np.float32)
    return out


def _qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    if symmetric:
        return (-127, 127) if bits == 8 else (-7, 7)
    return (0, 255) if bits == 8 else (0, 15)


class _Grid:
    """A QuantizedTensor's parameters as the core's ``(rg, cg)`` grid over the ``(out, in)``
    weight, and back."""

    def __init__(self, qt: QuantizedTensor, layout: str) -> None:
        rows, cols = qt.shape
        out, inp = (rows, cols) if layout == "out_in" else (cols, rows)
        self.layout, self.axis, self.block = layout, qt.axis, qt.block_size
        self.pshape = qt.scale.shape
        s = np.asarray(qt.scale, dtype=np.float32)
        z = None if qt.signed else np.asarray(qt.zero_point, dtype=np.int32)
        s2: np.ndarray  # scale and zero point on the (out, in) grid of the weight
        z2: np.ndarray | None
        if qt.axis is None:
            self.rb, self.cb = max(out, 1), max(inp, 1)
            s2 = s.reshape(1, 1)
            z2 = None if z is None else z.reshape(1, 1)
        else:
            a = qt.axis if layout == "out_in" else 1 - qt.axis  # the axis in the (out, in) frame
            if qt.block_size is None:
                shape = (out, 1) if a == 0 else (1, inp)
                self.rb, self.cb = (1, max(inp, 1)) if a == 0 else (max(out, 1), 1)
                s2 = s.reshape(shape)
                z2 = None if z is None else z.reshape(shape)
            else:
                b = qt.block_size
                self.rb, self.cb = (b, 1) if a == 0 else (1, b)
                s2 = s if layout == "out_in" else s.T
                z2 = None if z is None else (z if layout == "out_in" else z.T)
        self.scale = np.ascontiguousarray(s2, dtype=np.float32)
        self.zero_point = None if z2 is None else np.ascontiguousarray(z2, dtype=np.int32)
        self.qmin, self.qmax = _qrange(qt.bits, qt.signed)

    def params(self, scale: np.ndarray, zp: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """A grid back in the QuantizedTensor's parameter shape and dtypes."""
        if self.axis is not None and self.block is not None and self.layout == "in_out":
            scale = scale.T
            zp = None if zp is None else zp.T
        s = np.ascontiguousarray(scale, dtype=np.float32).reshape(self.pshape)
        signed = zp is None
        zdt = np.int8 if signed else np.uint8
        z = np.zeros(self.pshape, zdt) if zp is None else zp.reshape(self.pshape).astype(zdt)
        return s, np.array(z, order="C")  # ascontiguousarray would make 0-d arrays 1-d


def _pack(codes: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Codes (int32, any shape) as QuantizedTensor data: 8 bits in the array's shape, 4 bits
    packed two per byte, first element in the low nibble."""
    if bits == 8:
        return codes.astype(np.int8 if signed else np.uint8)
    flat = (codes.reshape(-1) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    return np.ascontiguousarray(flat[0::2] | (flat[1::2] << 4))


def _expand(p: np.ndarray, qt: QuantizedTensor) -> np.ndarray:
    """Per-tensor / per-channel / per-block parameters broadcastable to ``qt.shape``."""
    if qt.axis is None:
        return p.reshape(())
    if qt.block_size is None:
        sh = [1] * len(qt.shape)
        sh[qt.axis] = qt.shape[qt.axis]
        return p.reshape(sh)
    rep = np.repeat(p, qt.block_size, axis=qt.axis)
    return np.take(rep, np.arange(qt.shape[qt.axis]), axis=qt.axis)


def _encode(wf: np.ndarray, scale: np.ndarray, zp: np.ndarray, qt: QuantizedTensor) -> np.ndarray:
    """Codes of ``wf`` on a grid, as the file decodes: ``clip(rint(w / s), qmin - z, qmax - z)
    + z`` with the division in float32 (``qmin, qmax`` of the scheme, e.g. [-7, 7] for
    symmetric int4, not the type's [-8, 7])."""
    qmin, qmax = _qrange(qt.bits, qt.signed)
    s = _expand(np.asarray(scale, np.float32), qt)
    z = _expand(np.asarray(zp, np.int64), qt)
    q = np.clip(np.rint(wf / s), qmin - z, qmax - z).astype(np.int64) + z
    return np.ascontiguousarray(q)


def _tensor(
    codes_oi: np.ndarray, grid: _Grid, qt: QuantizedTensor, scale: np.ndarray, zp: np.ndarray
) -> QuantizedTensor:
    codes = codes_oi if grid.layout == "out_in" else codes_oi.T
    return QuantizedTensor(
        data=_pack(np.ascontiguousarray(codes), qt.bits, qt.signed),
        scale=scale,
        zero_point=zp,
        axis=qt.axis,
        block_size=qt.block_size,
        bits=qt.bits,
        shape=qt.shape,
    )


def _refine(
    w_oi: np.ndarray, grid: _Grid, iters: int, p: float, col_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    return _core.hqq(
        w_oi,
        grid.scale,
        grid.zero_point,
        grid.rb,
        grid.cb,
        grid.qmin,
        grid.qmax,
        int(iters),
        float(p),
        col_weight,
    )


# ----------------------------------------------------------------------------------------------
# Public API.


_PRECISIONS = ("float32", "float64")


def _precision(precision: Any) -> str:
    if precision not in _PRECISIONS:
        raise ArgumentError(f"`precision` must be one of {_PRECISIONS}, found {precision!r}")
    return str(precision)


def gptq(
    w: Any,
    h: Any,
    *,
    bits: int = 8,
    axis: int | None | Auto = "auto",
    block_size: int | None | Auto = "auto",
    symmetric: bool = True,
    damp: float = 0.01,
    act_order: bool = True,
    grid: str = "rtn",
    layout: str = "out_in",
    block: int = 128,
    precision: str = "float32",
    return_info: bool = False,
    scale_dtype: str = "float32",
) -> Any:
    """GPTQ (Frantar et al. 2022): quantize ``w`` column by column, each column's rounding
    error compensated on the columns not yet quantized through the inverse Hessian, so that
    the layer's output error ``tr((W - W') H (W - W')^T)`` is small.

    The grid is :func:`edgepack.quantize`'s for the scheme (``grid="hqq"`` refines it first with
    :func:`hqq`, weighting columns by ``diag(h)``) and stays fixed ("static groups", indexed by
    the original column). ``act_order``: columns by descending ``diag(h)``. ``damp``: ``h``
    gets ``damp * mean(diag h)`` on its diagonal; if the Cholesky factorisation still fails the
    damping is multiplied by 10 (at most 6 times, then an error). Input channels never active
    in calibration (``h_jj = 0``) are rounded to nearest (not zeroed). ``block``: columns per
    lazy update. ``precision``: ``"float32"`` (default) carries the weight updates, the
    errors and the inverse Hessian factor in float32, as the papers' PyTorch code does
    (``h`` is damped, checked and factorised in float64); ``"float64"`` does every step in
    float64 (slower, the same output error within noise). The rounding is float32 either way.
    ``scale_dtype``: as :func:`edgepack.quantize` (an HQQ-refined float16 scale is
    rounded to the nearest float16 before the codes are chosen). Returns a
    :class:`~edgepack.QuantizedTensor` of ``w``'s shape, or
    ``(QuantizedTensor, {"damp_used": float})`` with ``return_info=True``.
    """
    lay = _layout(layout)
    wf = _weight(w)
    b = _bits(bits)
    if grid not in _GRIDS:
        raise ArgumentError(f"`grid` must be one of {_GRIDS}, found {grid!r}")
    prec = _precision(precision)
    w_oi = _out_in(wf, lay)
    hh = _hessian(h, w_oi.shape[1])
    sdt = _scale_dtype(scale_dtype)
    ax, bs = _scheme(2, 1 if lay == "out_in" else 0, b, axis, block_size)
    qt = quantize(
        wf, bits=b, symmetric=bool(symmetric), axis=ax, block_size=bs, scale_dtype=sdt
    )
    if wf.size == 0:  # nothing to solve
        return (qt, {"damp_used": float(damp)}) if return_info else qt
    g = _Grid(qt, lay)
    scale, zp = g.scale, g.zero_point
    if grid == "hqq":
        scale, zp = _refine(w_oi, g, 20, 0.7, np.ascontiguousarray(np.diag(hh)))
        scale = np.ascontiguousarray(_stored_scale(scale, sdt))
    codes, damp_used = _core.gptq(
        w_oi, hh, scale, zp, g.rb, g.cb, g.qmin, g.qmax, float(damp), bool(act_order), int(block),
        precision=prec,
    )
    ps, pz = g.params(scale, zp) if grid == "hqq" else (qt.scale, qt.zero_point)
    ps = ps.astype(sdt)
    res = _tensor(codes, g, qt, ps, pz)
    return (res, {"damp_used": float(damp_used)}) if return_info else res


def sparsegpt(
    w: Any,
    h: Any,
    sparsity: float,
    *,
    structure: str = "unstructured",
    n: int = 2,
    m: int = 4,
    block_shape: tuple[int, ...] = (1, 4),
    bits: int | None = None,
    axis: int | None | Auto = "auto",
    block_size: int | None | Auto = "auto",
    symmetric: bool = True,
    scale_dtype: str = "float32",
    damp: float = 0.01,
    layout: str = "out_in",
    block: int = 128,
    precision: str = "float32",
    return_info: bool = False,
) -> Any:
    """SparseGPT (Frantar & Alistarh 2023): prune ``w`` and update the kept weights so that the
    layer's output error on the calibration data stays small; with ``bits`` the kept weights
    are quantized jointly (on :func:`edgepack.quantize`'s grid of the dense weight; pruned
    weights are exactly 0, code = zero point).

    ``structure``: ``"unstructured"`` (exactly ``round_half_even(sparsity * w.size)`` weights
    pruned, as :func:`edgepack.prune.magnitude_mask`), ``"nm"`` (keep ``n`` of every ``m``
    consecutive input channels in each output row, as :func:`edgepack.prune.nm_mask` along the
    input dimension; ``sparsity`` must be ``1 - n / m``) or ``"block"`` (whole tiles of
    ``block_shape`` in the frame of ``w``, ``round_half_even(sparsity * tiles)`` of them, as
    :func:`edgepack.prune.block_mask`). The mask is chosen adaptively per lazy batch of
    ``block`` columns from the OBS score ``w^2 / [H^-1]_jj``. ``precision``: as in
    :func:`gptq`.

    Returns ``(float32 array, keep mask)``, or ``(QuantizedTensor, keep mask)`` with ``bits``
    (plus ``{"damp_used": float}`` with ``return_info=True``).
    """
    lay = _layout(layout)
    wf = _weight(w)
    if structure not in _STRUCTURES:
        raise ArgumentError(f"`structure` must be one of {_STRUCTURES}, found {structure!r}")
    prec = _precision(precision)
    try:
        sp = float(sparsity)
    except (TypeError, ValueError):
        raise ArgumentError(f"`sparsity` must be a number in [0, 1), found {sparsity!r}") from None
    n_, m_ = _int(n, "n"), _int(m, "m")
    if structure == "nm":
        if not 1 <= m_ <= 256:
            raise ArgumentError(f"`m` must be in 1..=256, found {m_}")
        if not 1 <= n_ <= m_:
            raise ArgumentError(f"`n` must be in 1..=m ({m_}), found {n_}")
        if not math.isclose(sp, 1 - n_ / m_, abs_tol=1e-9):
            raise ArgumentError(
                f"`sparsity` must be 1 - n/m = {1 - n_ / m_:g} for N:M pruning {n_}:{m_}, "
                f"found {sp:g}"
            )
    bsh = tuple(_int(v, "block_shape") for v in block_shape)
    if len(bsh) != 2:
        raise ArgumentError(f"`block_shape` must have 2 sizes, found {bsh}")
    bsh_oi = bsh if lay == "out_in" else (bsh[1], bsh[0])
    w_oi = _out_in(wf, lay)
    hh = _hessian(h, w_oi.shape[1])
    g: _Grid | None = None
    qt = None
    if bits is not None:
        b = _bits(bits)
        ax, bs = _scheme(2, 1 if lay == "out_in" else 0, b, axis, block_size)
        qt = quantize(
            wf, bits=b, symmetric=bool(symmetric), axis=ax, block_size=bs,
            scale_dtype=_scale_dtype(scale_dtype),
        )
    if wf.size == 0:  # nothing to prune
        res0: Any = wf.copy() if qt is None else qt
        keep0 = np.ones(wf.shape, bool)
        return (res0, keep0, {"damp_used": float(damp)}) if return_info else (res0, keep0)
    if qt is not None:
        g = _Grid(qt, lay)
    w_out, keep, codes, damp_used = _core.sparsegpt(
        w_oi,
        hh,
        sp,
        structure,
        n_,
        m_,
        bsh_oi,
        None if g is None else g.scale,
        None if g is None else g.zero_point,
        0 if g is None else g.rb,
        0 if g is None else g.cb,
        0 if g is None else g.qmin,
        0 if g is None else g.qmax,
        float(damp),
        int(block),
        precision=prec,
    )
    if lay == "in_out":
        w_out, keep = np.ascontiguousarray(w_out.T), np.ascontiguousarray(keep.T)
    res: Any = w_out
    if g is not None and qt is not None and codes is not None:
        res = _tensor(codes, g, qt, qt.scale, qt.zero_point)
    if return_info:
        return res, keep, {"damp_used": float(damp_used)}
    return res, keep


def hqq(
    w: Any,
    *,
    bits: int = 4,
    axis: int | None | Auto = "auto",
    block_size: int | None | Auto = "auto",
    symmetric: bool = False,
    iters: int = 20,
    p: float = 0.7,
    col_weight: Any = None,
    layout: str = "out_in",
    scale_dtype: str = "float32",
) -> QuantizedTensor:
    """Half-Quadratic Quantization (Badri & Shaji 2023), data-free: refine the scales and
    (integer) zero points of :func:`edgepack.quantize`'s grid by alternating the codes, an
    ``l_p`` shrinkage of the error (``p`` < 1) and a weighted least-squares fit of (scale, zero
    point) per group, the zero point rounded to an integer and the scale refit for it. Per
    group the iterate with the smallest weighted squared error ``sum_j c_j (w - w')^2`` is
    kept (``c`` = ``col_weight`` per input channel of a 2-D weight, e.g. ``diag(H)``; 1 by
    default), the input grid included: never worse than round-to-nearest on that error.

    ``w`` may have any rank for the per-tensor / per-channel / per-block schemes of
    :func:`edgepack.quantize` (``col_weight`` needs a 2-D weight). ``scale_dtype="float16"``:
    the refined scales are rounded to the nearest float16 before the codes are chosen.
    """
    lay = _layout(layout)
    wf = _finite(as_f32(w, "w"), "w")
    b = _bits(bits)
    it = _int(iters, "iters")
    if not 0 <= it <= 10_000:
        raise ArgumentError(f"`iters` must be in 0..=10000, found {it}")
    try:
        pf = float(p)
    except (TypeError, ValueError):
        raise ArgumentError(f"`p` must be a number in (0, 1], found {p!r}") from None
    if wf.ndim == 0:
        raise ArgumentError("`w` must have at least one dimension")
    in_axis = (1 if lay == "out_in" else 0) if wf.ndim == 2 else (1 if wf.ndim >= 2 else 0)
    sdt = _scale_dtype(scale_dtype)
    ax, bs = _scheme(wf.ndim, in_axis, b, axis, block_size)
    qt = quantize(
        wf, bits=b, symmetric=bool(symmetric), axis=ax, block_size=bs, scale_dtype=sdt
    )
    if wf.size == 0:  # nothing to refine
        return qt
    cw = None
    if col_weight is not None:
        if wf.ndim != 2:
            raise ArgumentError(f"`col_weight` needs a 2-D `w`, found shape {wf.shape}")
        cw = np.ascontiguousarray(col_weight, dtype=np.float64)
    if wf.ndim == 2:
        g = _Grid(qt, lay)
        scale, zp = _refine(_out_in(wf, lay), g, it, pf, cw)
        ps, pz = g.params(scale, zp)
    else:
        ps, pz = _refine_nd(wf, qt, it, pf)
    ps = _stored_scale(ps, sdt)
    return QuantizedTensor(
        data=_pack(_encode(wf, ps, pz, qt), b, qt.signed),
        scale=ps.astype(sdt),
        zero_point=pz,
        axis=qt.axis,
        block_size=qt.block_size,
        bits=b,
        shape=qt.shape,
    )


def _refine_nd(
    wf: np.ndarray, qt: QuantizedTensor, iters: int, p: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hqq` for a weight of rank != 2: the groups laid out as rows of a 2-D view."""
    s = np.asarray(qt.scale, dtype=np.float32)
    z = None if qt.signed else np.asarray(qt.zero_point, dtype=np.int32)
    qmin, qmax = _qrange(qt.bits, qt.signed)
    if qt.axis is None:
        w2 = wf.reshape(1, -1)
        s2, z2 = s.reshape(1, 1), None if z is None else z.reshape(1, 1)
        rb, cb = 1, max(w2.shape[1], 1)
    elif qt.block_size is None:
        w2 = np.ascontiguousarray(np.moveaxis(wf, qt.axis, 0)).reshape(wf.shape[qt.axis], -1)
        s2, z2 = s.reshape(-1, 1), None if z is None else z.reshape(-1, 1)
        rb, cb = 1, max(w2.shape[1], 1)
    else:
        k = wf.shape[qt.axis]
        w2 = np.ascontiguousarray(np.moveaxis(wf, qt.axis, -1)).reshape(-1, k)
        nb = s.shape[qt.axis]
        s2 = np.ascontiguousarray(np.moveaxis(s, qt.axis, -1)).reshape(-1, nb)
        z2 = None if z is None else np.ascontiguousarray(np.moveaxis(z, qt.axis, -1)).reshape(-1, nb)
        rb, cb = 1, qt.block_size
    rs, rz = _core.hqq(
        np.ascontiguousarray(w2),
        np.ascontiguousarray(s2),
        None if z2 is None else np.ascontiguousarray(z2),
        rb,
        cb,
        qmin,
        qmax,
        int(iters),
        float(p),
        None,
    )
    if qt.axis is not None and qt.block_size is not None:
        moved: list[int] = list(np.moveaxis(np.empty(s.shape, np.uint8), qt.axis, -1).shape)
        rs = np.moveaxis(rs.reshape(moved), -1, qt.axis)
        rz = None if rz is None else np.moveaxis(rz.reshape(moved), -1, qt.axis)
    ps = np.ascontiguousarray(rs, dtype=np.float32).reshape(s.shape)
    zdt = np.int8 if qt.signed else np.uint8
    pz = np.zeros(s.shape, zdt) if rz is None else np.ascontiguousarray(rz).reshape(s.shape)
    return ps, np.array(pz, dtype=zdt, order="C")


def _mean_abs(mean_abs: Any, n: int) -> np.ndarray:
    a = np.asarray(mean_abs)
    if a.dtype.kind not in "fiu":
        raise DtypeError(f"`mean_abs` must be a real array, found dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.shape != (n,):
        raise ArgumentError(f"`mean_abs` has shape {a.shape}, expected ({n},) (one per input channel)")
    return a


def awq_scales(mean_abs: Any, alpha: float) -> np.ndarray:
    """AWQ's candidate scales for one ``alpha`` (float32 ``(in,)``): for the channels with
    ``mean_abs > 0``, ``p = max(mean_abs ** alpha, 1e-4)`` and ``s = clip(p / sqrt(max(p) *
    min(p)), 1e-4, 1e4)``; ``s = 1`` for channels never active (``mean_abs = 0``)."""
    a = np.asarray(mean_abs)
    return _core.awq_scales(_mean_abs(a, a.shape[0] if a.ndim == 1 else -1), float(alpha))


def awq(
    w: Any,
    mean_abs: Any,
    h: Any,
    *,
    bits: int = 4,
    axis: int | None | Auto = "auto",
    block_size: int | None | Auto = "auto",
    symmetric: bool = True,
    n_grid: int = 20,
    solver: str = "rtn",
    damp: float = 0.01,
    act_order: bool = True,
    calibration: str = "minmax",
    percentile: float | None = None,
    layout: str = "out_in",
    clip: bool = False,
    max_shrink: float = 0.5,
    search: str = "rtn",
    return_info: bool = False,
    scale_dtype: str = "float32",
) -> Any:
    """AWQ (Lin et al. 2023): scale each input channel ``j`` of ``w`` by
    ``s_j = mean_abs_j ** alpha`` (normalised, see :func:`awq_scales`) before quantizing, so
    that the channels carrying large activations lose less to rounding, and divide by ``s``
    when decoding. ``alpha`` is searched over ``g / n_grid`` (``g = 0 .. n_grid - 1``; 0 is
    plain round to nearest) for the smallest calibrated output error
    ``tr((W - W') H (W - W')^T)`` (``h``: the full ``X^T X / tokens`` or its diagonal), with
    the grid of :func:`edgepack.quantize` derived from ``W * s`` for each candidate: never
    worse than round to nearest on that objective.

    ``solver``: how the scaled weight ``W * s`` is then quantized: ``"rtn"`` (the searched
    result itself), ``"gptq"`` (GPTQ on ``W * s`` with ``H' = diag(1/s) H diag(1/s)``, the
    second moment of the scaled-down activations ``x / s``; needs the full ``h``) or
    ``"hqq"`` (the grid of ``W * s`` refined by :func:`hqq`, columns weighted by ``diag(H')``).

    ``clip``: AWQ's weight clipping search after the scale search: per group (one output row
    of a block along the input dimension, or the whole row per output channel) the range is
    shrunk by ``f = 1 - max_shrink * k / 20``, ``k = 0 .. 19``, and the ``f`` with the smallest
    error of the group's own output contribution ``e^T H'_gg e`` is kept (``f = 1`` unless
    clipping helps); the grid is then fixed for the solver (``"rtn"`` or ``"gptq"``).

    ``search``: what ``alpha`` minimises: ``"rtn"`` (the paper: round to nearest of each
    candidate, searched in Rust, then the solver runs once) or ``"solver"`` (the solver's own
    result for every candidate, 20 solver runs: with ``"gptq"`` never worse than plain GPTQ
    on the calibration objective, since ``alpha = 0`` is plain GPTQ).

    ``scale_dtype``: as :func:`edgepack.quantize` (the search itself compares candidates on
    float32 grids; the stored result is quantized on the float16 one).

    Returns a :class:`~edgepack.QuantizedTensor` whose ``in_scale`` holds ``s`` (``in_axis``:
    the input dimension of ``w``); its :meth:`~edgepack.QuantizedTensor.dequantize` gives
    ``((q - zp) * scale) / in_scale``. With ``return_info=True``: ``(QuantizedTensor,
    {"alpha", "error", "rtn_error", "errors", "damp_used"})`` (``error``: the searched
    objective, of round to nearest or of the solver; ``errors``: every candidate's;
    ``rtn_error``: ``errors[0]``, no scaling).
    """
    lay = _layout(layout)
    wf = _weight(w)
    b = _bits(bits)
    if solver not in _AWQ_SOLVERS:
        raise ArgumentError(f"`solver` must be one of {_AWQ_SOLVERS}, found {solver!r}")
    if search not in ("rtn", "solver"):
        raise ArgumentError(f"`search` must be 'rtn' or 'solver', found {search!r}")
    in_axis = 1 if lay == "out_in" else 0
    n_in = wf.shape[in_axis]
    hh = _hessian(h, n_in, diag_ok=solver != "gptq")
    ma = _mean_abs(mean_abs, n_in)
    ng = _int(n_grid, "n_grid")
    sdt = _scale_dtype(scale_dtype)
    ax, bs = _scheme(2, in_axis, b, axis, block_size)
    kw: dict[str, Any] = {"calibration": calibration, "scale_dtype": sdt}
    if percentile is not None:
        kw["percentile"] = percentile
    if solver != "rtn" and (calibration != "minmax" or percentile is not None):
        raise ArgumentError(f"solver {solver!r} takes the min-max grid; found calibration {calibration!r}")
    if wf.size == 0:
        qt0 = quantize(wf, bits=b, symmetric=bool(symmetric), axis=ax, block_size=bs, **kw)
        info0 = {"alpha": 0.0, "error": 0.0, "rtn_error": 0.0, "errors": np.zeros(ng)}
        return (qt0, info0) if return_info else qt0
    by_solver = search == "solver" and solver != "rtn"
    if not by_solver:
        s, alpha, err, errors = _core.awq_search(
            wf, in_axis, hh, ma, b, bool(symmetric), ax, bs, calibration, percentile, ng
        )

    def solve(s: np.ndarray) -> tuple[QuantizedTensor, float | None]:
        """The QuantizedTensor of ``W * s`` by the solver (and the clipping search)."""
        ws = wf * (s[None, :] if in_axis == 1 else s[:, None])
        damp_used = None
        s64 = s.astype(np.float64)
        if hh.ndim == 2:
            hs = hh / np.outer(s64, s64)
        else:
            hs = hh / (s64 * s64)
        if clip:
            if solver == "hqq":
                raise ArgumentError("`clip` goes with solver 'rtn' or 'gptq' (hqq refines its own grid)")
            qt0 = quantize(
                ws, bits=b, symmetric=bool(symmetric), axis=ax, block_size=bs, scale_dtype=sdt
            )
            g = _Grid(qt0, lay)
            if g.rb != 1:
                raise ArgumentError(
                    "`clip` needs groups within one output row (per output channel, or blocks along "
                    f"the input dimension), found axis={ax} block_size={bs}"
                )
            ws_oi = _out_in(ws, lay)
            cs, cz = _core.awq_clip(
                ws_oi, hs, g.scale, g.zero_point, g.rb, g.cb, g.qmin, g.qmax, 20, float(max_shrink)
            )
            cs = np.ascontiguousarray(_stored_scale(cs, sdt))
            ps, pz = g.params(cs, cz)
            ps = ps.astype(sdt)
            if solver == "rtn":
                qt = QuantizedTensor(
                    data=_pack(_encode(ws, ps, pz, qt0), b, qt0.signed),
                    scale=ps,
                    zero_point=pz,
                    axis=qt0.axis,
                    block_size=qt0.block_size,
                    bits=b,
                    shape=qt0.shape,
                )
            else:
                codes, damp_used = _core.gptq(
                    ws_oi, hs, cs, cz, g.rb, g.cb, g.qmin, g.qmax, float(damp), bool(act_order), 128
                )
                qt = _tensor(codes, g, qt0, ps, pz)
        elif solver == "rtn":
            qt = quantize(ws, bits=b, symmetric=bool(symmetric), axis=ax, block_size=bs, **kw)
        else:
            if solver == "gptq":
                qt, ginfo = gptq(
                    ws, hs, bits=b, axis=ax, block_size=bs, symmetric=bool(symmetric), damp=damp,
                    act_order=act_order, layout=lay, return_info=True, scale_dtype=sdt,
                )
                damp_used = ginfo["damp_used"]
            else:
                d = np.diag(hh) if hh.ndim == 2 else hh
                qt = hqq(
                    ws, bits=b, axis=ax, block_size=bs, symmetric=bool(symmetric),
                    col_weight=np.ascontiguousarray(d / (s64 * s64)), layout=lay,
                    scale_dtype=sdt,
                )
        return qt, damp_used

    if by_solver:
        # alpha chosen by the solver's own result (alpha = 0 first: plain solver on ties)
        best: tuple[float, float, np.ndarray, QuantizedTensor, float | None] | None = None
        errs = []
        w_oi = _out_in(wf, lay)
        for g_ in range(ng):
            a_ = g_ / ng
            s_ = _core.awq_scales(ma, a_)
            q_, d_ = solve(s_)
            y_ = _out_in(dataclasses.replace(q_, in_scale=s_, in_axis=in_axis).dequantize(), lay)
            e_ = float(_core.calib_objective(w_oi, y_, hh))
            errs.append(e_)
            if best is None or e_ < best[0]:
                best = (e_, a_, s_, q_, d_)
        assert best is not None
        err, alpha, s, qt, damp_used = best
        errors = np.asarray(errs)
    else:
        qt, damp_used = solve(s)
    res = dataclasses.replace(qt, in_scale=s, in_axis=in_axis)
    if return_info:
        info = {
            "alpha": float(alpha),
            "error": float(err),
            "rtn_error": float(errors[0]),
            "errors": errors,
            "damp_used": damp_used,
        }
        return res, info
    return res


def output_error(w: Any, w_hat: Any, h: Any, *, layout: str = "out_in") -> float:
    """The calibrated output error ``tr((W - W') H (W - W')^T)``, the mean over calibration
    tokens of ``||(W - W') x||^2``, in float64; with ``h`` of shape ``(in,)`` (the diagonal,
    e.g. ``channel_stats(name)["mean_sq"]``): ``sum_j h_j ||W[:, j] - W'[:, j]||^2``.

    numpy: ``E = (w - w_hat).astype(np.float64); np.sum((E @ h) * E)``.
    """
    lay = _layout(layout)
    a = _out_in(_weight(w), lay)
    b = _out_in(_weight(w_hat, "w_hat"), lay)
    if a.shape != b.shape:
        raise ArgumentError(f"`w_hat` has shape {b.shape}, expected {a.shape} (the shape of `w`)")
    return float(_core.calib_objective(a, b, _hessian(h, a.shape[1], diag_ok=True)))


def smoothquant_scales(
    act_max: Any, w: Any, alpha: float = 0.5, *, layout: str = "out_in"
) -> np.ndarray:
    """SmoothQuant (Xiao et al. 2022) migration scales per input channel:
    ``s_j = act_max_j ** alpha / max_i |W_ij| ** (1 - alpha)`` (1 where either maximum is 0),
    clipped to ``[1e-5, 1e5]``, float32 ``(in,)``. Divide the activations by ``s`` and multiply
    the weight's input channels by it: ``X W^T = (X / s) (W * s)^T``.
    """
    lay = _layout(layout)
    a = _out_in(_weight(w), lay)
    am = np.asarray(act_max)
    if am.dtype.kind not in "fiu":
        raise DtypeError(f"`act_max` must be a real array, found dtype {am.dtype}")
    am = np.ascontiguousarray(am, dtype=np.float64)
    if am.shape != (a.shape[1],):
        raise ArgumentError(f"`act_max` has shape {am.shape}, expected ({a.shape[1]},)")
    try:
        al = float(alpha)
    except (TypeError, ValueError):
        raise ArgumentError(f"`alpha` must be a number in [0, 1], found {alpha!r}") from None
    return _core.smoothquant_scales(am, a, al)
