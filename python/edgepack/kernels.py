"""Drop-in kernels mirroring the ONNX operators (opset 21), bit-exact with ONNX Runtime.

Same argument conventions as ``QuantizeLinear`` / ``DequantizeLinear`` /
``DynamicQuantizeLinear``, so code written against ONNX Runtime ports by changing one import.
Granularity follows the scale: a scalar (or one-element) scale is per tensor, a 1-D scale is per
axis (``axis``, default 1), a scale of the same rank as ``x`` with ``block_size > 0`` is blocked
along ``axis`` (the last block may be partial). 4-bit values are packed two per byte, the first
element in the low nibble (ONNX layout), in a flat ``uint8`` array.

Inputs of dtype float64, float16 and bfloat16 (``ml_dtypes``) are converted to float32;
non-contiguous and Fortran-ordered arrays are copied to C order first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepack import _core
from edgepack._coerce import as_f32, as_scale, axis_int, qtype_name, zero_point
from edgepack._errors import ArgumentError, DtypeError

__all__ = ["quantize_linear", "dequantize_linear", "dynamic_quantize_linear"]

# ---- quantize / dequantize (issue 2) ----

_NP = {"int8": np.int8, "uint8": np.uint8, "int4": np.uint8, "uint4": np.uint8}


def _check_out(out: np.ndarray, dtype: Any, shape: tuple[int, ...], size: int) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise DtypeError(f"`out` must be a numpy array; found {type(out).__name__}")
    if out.dtype != np.dtype(dtype):
        raise DtypeError(f"`out` has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if shape and out.shape != shape or out.size != size:
        raise ArgumentError(f"`out` has shape {out.shape}, expected {shape or (size,)}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ArgumentError("`out` must be C-contiguous and writeable")
    return out


def quantize_linear(
    x: Any,
    y_scale: Any,
    y_zero_point: Any = None,
    *,
    axis: int = 1,
    block_size: int = 0,
    output_dtype: Any = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """ONNX QuantizeLinear: ``q = saturate(rint(x / y_scale) + y_zero_point)``.

    numpy: ``np.clip(np.rint(x / scale) + zp, qmin, qmax)`` with the division in float32,
    ties to even, rounding before the zero point is added. The output type is the
    ``y_zero_point``'s dtype (int8, uint8, or ``ml_dtypes`` int4 / uint4), else
    ``output_dtype`` (a dtype, a name, or an ONNX ``TensorProto`` number), else uint8 with zero
    point 0, as in ONNX. 8-bit results have the shape of ``x``; 4-bit results are packed into a
    flat uint8 array of ``ceil(x.size / 2)`` bytes.

    Infinities saturate; NaN gives ``qmin`` (what ONNX Runtime's SIMD path gives; ONNX leaves it
    undefined). ``out`` (same dtype and shape as the result, C-contiguous) avoids allocating.
    """
    xf = as_f32(x, "x")
    s = as_scale(y_scale, "y_scale")
    z, ztype = zero_point(y_zero_point, "y_zero_point")
    otype = qtype_name(output_dtype, "output_dtype")
    if ztype is not None:
        if otype is not None and otype != ztype and not (
            otype[-1] == "4" and ztype in ("int8", "uint8") and ztype.startswith(otype[:-1])
        ):
            raise ArgumentError(
                f"`output_dtype` is {otype} but `y_zero_point` has dtype {ztype}; they must agree"
            )
        otype = otype or ztype
    otype = otype or "uint8"
    ax = axis_int(axis)
    bs = axis_int(block_size, "block_size")
    if out is not None:
        if otype in ("int8", "uint8"):
            o = _check_out(out, _NP[otype], xf.shape, xf.size).view(np.uint8)
        else:
            o = _check_out(out, np.uint8, (), (xf.size + 1) // 2).reshape(-1)
        _core.quantize_linear(xf, s, z, otype, ax, bs, o)
        return out
    r = _core.quantize_linear(xf, s, z, otype, ax, bs, None)
    return r.view(np.int8) if otype == "int8" else r


def dequantize_linear(
    x: Any,
    x_scale: Any,
    x_zero_point: Any = None,
    *,
    axis: int = 1,
    block_size: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """ONNX DequantizeLinear: ``y = float32(x - x_zero_point) * x_scale``.

    ``x`` is int8 / uint8, or ``ml_dtypes`` int4 / uint4 (one value per element); the result is
    float32 with the shape of ``x``. Granularity as in :func:`quantize_linear`. For packed
    4-bit data use :class:`edgepack.QuantizedTensor`. ``out`` (float32, same shape) avoids
    allocating.
    """
    q = x if isinstance(x, np.ndarray) else np.asarray(x)
    name = q.dtype.name
    if name not in ("int8", "uint8", "int4", "uint4"):
        raise DtypeError(
            f"`x` must be int8, uint8, int4 or uint4 (ml_dtypes); found dtype {q.dtype}"
        )
    z, ztype = zero_point(x_zero_point, "x_zero_point")
    if ztype is not None and ztype != name:
        raise ArgumentError(f"`x_zero_point` has dtype {ztype} but `x` has dtype {name}")
    signed = name in ("int8", "int4")
    q8 = np.asarray(q, dtype=np.int8 if signed else np.uint8, order="C").view(np.uint8)
    s = as_scale(x_scale, "x_scale")
    ax = axis_int(axis)
    bs = axis_int(block_size, "block_size")
    dt = "int8" if signed else "uint8"
    shape = list(q.shape)
    if out is not None:
        _check_out(out, np.float32, q.shape, q.size)
        _core.dequantize_linear(q8, dt, shape, s, z, ax, bs, out)
        return out
    return _core.dequantize_linear(q8, dt, shape, s, z, ax, bs, None)


def dynamic_quantize_linear(
    x: Any, *, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.float32, np.uint8]:
    """ONNX DynamicQuantizeLinear: ``(y, y_scale, y_zero_point)``, uint8.

    ``rmin = min(0, x.min())``, ``rmax = max(0, x.max())``, ``y_scale = (rmax - rmin) / 255``,
    ``y_zero_point = rint(clip(-rmin / y_scale, 0, 255))``, ``y = saturate(rint(x / y_scale) +
    y_zero_point)``, all in float32. An all-zero (or empty) input gives scale 1.0 and zero point
    0: that is ONNX Runtime's behaviour (the ONNX formula would divide by zero). NaN or infinity
    in ``x`` raises :class:`edgepack.NonFiniteError` naming the first index.
    """
    xf = as_f32(x, "x")
    if out is not None:
        o = _check_out(out, np.uint8, xf.shape, xf.size)
        _, s, z = _core.dynamic_quantize_linear(xf, o)
        return out, np.float32(s), np.uint8(z)
    y, s, z = _core.dynamic_quantize_linear(xf, None)
    return y, np.float32(s), np.uint8(z)
