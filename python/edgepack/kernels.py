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
from edgepack._coerce import as_f32, as_scale, axis_int, dtype_name, qtype_name, zero_point
from edgepack._errors import ArgumentError, DtypeError, LimitError

__all__ = [
    "quantize_linear",
    "dequantize_linear",
    "dynamic_quantize_linear",
    # int8 matmul
    "PackedMatrix",
    "matmul_integer",
    "pack_matrix",
    "qlinear_matmul",
]

# ---- quantize / dequantize ----

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
    # The core allocates: large results come from its recycled buffers (no page faults).
    r = _core.quantize_linear(xf, s, z, otype, ax, bs)
    return r.view(_NP[otype]) if otype in ("int8", "uint8") else r


def dequantize_linear(
    q: Any,
    x_scale: Any,
    x_zero_point: Any = None,
    *,
    axis: int = 1,
    block_size: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """ONNX DequantizeLinear: ``y = float32(q - x_zero_point) * x_scale``.

    ``q`` (ONNX's input ``x``) is int8 / uint8, or ``ml_dtypes`` int4 / uint4 (one value per
    element); the result is float32 with the shape of ``q``. Granularity as in
    :func:`quantize_linear`. For packed 4-bit data use :class:`edgepack.QuantizedTensor`.
    ``out`` (float32, same shape) avoids allocating. A non-positive, subnormal or non-finite
    ``x_scale`` is an error (ONNX Runtime would compute with it).
    """
    q = q if isinstance(q, np.ndarray) else np.asarray(q)
    name = dtype_name(q.dtype)
    if name not in ("int8", "uint8", "int4", "uint4"):
        raise DtypeError(
            f"`q` must be int8, uint8, int4 or uint4 (ml_dtypes); found dtype {q.dtype}"
        )
    z, ztype = zero_point(x_zero_point, "x_zero_point")
    if ztype is not None and ztype != name:
        raise ArgumentError(f"`x_zero_point` has dtype {ztype} but `q` has dtype {name}")
    signed = name in ("int8", "int4")
    if name in ("int8", "uint8") and q.flags.c_contiguous:
        q8 = q.view(np.uint8)
    else:
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
    return _core.dequantize_linear(q8, dt, shape, s, z, ax, bs)


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
    y, s, z = _core.dynamic_quantize_linear(xf)
    return y, np.float32(s), np.uint8(z)


# ---------------------------------------------------------------------------------------------
# int8 matrix multiplication: matmul_integer, pack_matrix, PackedMatrix, qlinear_matmul
# ---------------------------------------------------------------------------------------------

#: ``B`` packed once for the int8 kernels (layout, column sums, zero-point terms); immutable,
#: reusable across calls and threads. ``.shape`` is (K, N), ``.nbytes`` the memory it holds,
#: ``.dtype`` "int8" or "uint8", ``.zero_point`` the zero point given to :func:`pack_matrix`.
PackedMatrix = _core.PackedMatrix

_INT8 = (np.dtype(np.int8), np.dtype(np.uint8))
_NO_ZP = np.zeros(0, dtype=np.int64)


#: No int8 x int8 product sum over more than 131071 terms is guaranteed to fit in int32 with
#: any dtypes or zero points ((a - za) spans 256 values, so max |a - za| >= 128): larger K is
#: rejected before the operands are copied or packed (the exact per-call limit is checked in
#: the core).
_K_MAX = 131071
#: Largest operand / result element count (as in FORMAT.md): checked before copying.
_MAX_ELEMENTS = 1 << 48


def _mm_int8_array(x: object, name: str, min_ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype not in _INT8:
        raise DtypeError(f"`{name}` must be int8 or uint8, found {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ArgumentError(
            f"`{name}` must have at least {min_ndim} dimension(s), found shape {arr.shape}"
        )
    if arr.size > _MAX_ELEMENTS:
        raise LimitError(
            f"`{name}` of shape {arr.shape} has {arr.size} elements, above the limit of 2^48"
        )
    return arr


def _check_k(k: int, name: str) -> None:
    if k > _K_MAX:
        raise LimitError(
            f"`{name}` has K={k}, above {_K_MAX}, the largest K for which any int8 product sum "
            "fits in int32 exactly; split K and sum in int64"
        )


def _mm_zero_point(zp: object, name: str, length: int, what: str) -> np.ndarray:
    """None -> empty; a scalar or 1-element array -> [v]; a 1-D array of `length` -> as is."""
    if zp is None:
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(zp)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise DtypeError(f"`{name}` must be an integer scalar or array, found {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > 2**62:
        raise ArgumentError(f"`{name}` value {int(arr.max())} is out of range")
    if arr.size == 1:
        return arr.reshape(1).astype(np.int64)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ArgumentError(
            f"`{name}` must be a scalar or have shape ({length},) (one per {what}), "
            f"found shape {arr.shape}"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def pack_matrix(b: np.ndarray, b_zero_point: object = None) -> PackedMatrix:
    """Pack a constant (K, N) int8/uint8 matrix once for :func:`matmul_integer`.

    ``b_zero_point`` is a scalar or one value per column (N); it is stored with the packed
    matrix. The result is immutable and may be shared between threads.
    """
    arr = _mm_int8_array(b, "b", 2)
    if arr.ndim != 2:
        raise ArgumentError(f"`b` must be a (K, N) matrix, found shape {arr.shape}")
    _check_k(arr.shape[0], "b")
    zp = _mm_zero_point(b_zero_point, "b_zero_point", arr.shape[1], "column of `b`")
    data = np.ascontiguousarray(arr).view(np.uint8)
    return _core._pack_matrix(data, arr.dtype == np.int8, zp)


def _mm_packed(b: object, b_zero_point: object) -> PackedMatrix:
    if isinstance(b, PackedMatrix):
        if b_zero_point is not None:
            raise ArgumentError(
                "`b_zero_point` must be None when `b` is a PackedMatrix "
                "(its zero point was given to pack_matrix)"
            )
        return b
    return pack_matrix(b, b_zero_point)  # type: ignore[arg-type]


def _mm_lhs(
    a: object, a_zero_point: object
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], bool, bool]:
    arr = _mm_int8_array(a, "a", 1)
    vector = arr.ndim == 1
    if vector:
        arr = arr.reshape(1, -1)
    lead = arr.shape[:-2]
    m, k = arr.shape[-2], arr.shape[-1]
    _check_k(k, "a")
    batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
    zp = _mm_zero_point(a_zero_point, "a_zero_point", m, "row of `a`")
    if zp.size > 1 and batch != 1:
        zp = np.tile(zp, batch)
    a2 = np.ascontiguousarray(arr).reshape(batch * m, k).view(np.uint8)
    return a2, zp, lead + (m,), arr.dtype == np.int8, vector


def matmul_integer(
    a: np.ndarray,
    b: np.ndarray | PackedMatrix,
    a_zero_point: object = None,
    b_zero_point: object = None,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """ONNX ``MatMulInteger``: ``(A - a_zero_point) @ (B - b_zero_point)`` as int32.

    ``a`` is int8/uint8 of shape (..., M, K) (leading dimensions are a batch), ``b`` int8/uint8
    (K, N) or a :class:`PackedMatrix`; ``a_zero_point`` a scalar or one per row (M),
    ``b_zero_point`` a scalar or one per column (N). numpy equivalent:
    ``((a.astype(np.int64) - a_zp[..., None]) @ (b.astype(np.int64) - b_zp)).astype(np.int32)``.
    Exact: raises :class:`edgepack.LimitError` when K is too large for an int32 result to be
    guaranteed with these dtypes and zero points. ``out``: a C-contiguous int32 array of the
    result's shape to write into (saves allocating fresh pages on hot calls); it is returned.
    """
    if (
        out is None
        and a_zero_point is None
        and b_zero_point is None
        and type(a) is np.ndarray
        and a.ndim == 2
        and a.dtype in _INT8
        and a.flags.c_contiguous
        and isinstance(b, PackedMatrix)
    ):
        # Fast path for the common call (short decode-time products): no coercion needed.
        return _core._matmul_integer(a.view(np.uint8), a.dtype == np.int8, _NO_ZP, b)
    a2, zp, lead, signed, vector = _mm_lhs(a, a_zero_point)
    if not isinstance(b, PackedMatrix):
        # Multiplied from B's bytes (up to 8-16 rows) or packed for this call only, into storage
        # the core recycles.
        b_arr = _mm_int8_array(b, "b", 2)
        if b_arr.ndim != 2:
            raise ArgumentError(f"`b` must be a (K, N) matrix, found shape {b_arr.shape}")
        n = b_arr.shape[1]
        shape = (n,) if vector else lead + (n,)
        bzp = _mm_zero_point(b_zero_point, "b_zero_point", n, "column of `b`")
        b_bytes = np.ascontiguousarray(b_arr).view(np.uint8)
        o2 = None if out is None else _mm_out(out, shape).reshape(a2.shape[0], n)
        res = _core._matmul_integer_b(a2, signed, zp, b_bytes, b_arr.dtype == np.int8, bzp, o2)
        return res.reshape(shape) if out is None else out
    packed = _mm_packed(b, b_zero_point)
    n = packed.shape[1]
    shape = (n,) if vector else lead + (n,)
    if out is not None:
        _core._matmul_integer(a2, signed, zp, packed, _mm_out(out, shape).reshape(a2.shape[0], n))
        return out
    return _core._matmul_integer(a2, signed, zp, packed).reshape(shape)


def _mm_out(out: object, shape: tuple[int, ...]) -> np.ndarray:
    """``out=`` of :func:`matmul_integer`: a writeable C-contiguous int32 array of ``shape``."""
    if not isinstance(out, np.ndarray) or out.dtype != np.int32:
        raise DtypeError(
            "`out` must be an int32 numpy array, found "
            f"{getattr(out, 'dtype', type(out).__name__)}"
        )
    if out.shape != shape or not out.flags.c_contiguous or not out.flags.writeable:
        raise ArgumentError(
            f"`out` must be a writeable C-contiguous array of shape {shape}, "
            f"found shape {out.shape}"
        )
    return out


def _mm_scale(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DtypeError(f"`{name}` must be a float scalar or array, found {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32).reshape(-1)


def qlinear_matmul(
    a: np.ndarray,
    a_scale: object,
    a_zero_point: object,
    b: np.ndarray | PackedMatrix,
    b_scale: object,
    b_zero_point: object,
    y_scale: object,
    y_zero_point: object,
) -> np.ndarray:
    """ONNX ``QLinearMatMul``, bit-exact with onnxruntime.

    ``y = saturate(rint(float32(C) * (a_scale * b_scale / y_scale)) + y_zero_point)`` with
    ``C = matmul_integer(a, b, a_zero_point, b_zero_point)``, computed in float32 with ties to
    even. ``a_scale`` and ``y_scale`` are scalars, ``b_scale`` a scalar or one per column.
    The output dtype is that of ``y_zero_point`` when it is a numpy int8/uint8 value, else
    the dtype of ``a``. Pass ``b_zero_point=None`` when ``b`` is a :class:`PackedMatrix`.
    """
    a2, zp, lead, signed, vector = _mm_lhs(a, a_zero_point)
    packed = _mm_packed(b, b_zero_point)
    sa, sy = _mm_scale(a_scale, "a_scale"), _mm_scale(y_scale, "y_scale")
    for nm, s in (("a_scale", sa), ("y_scale", sy)):
        if s.size != 1:
            raise ArgumentError(f"`{nm}` must be a scalar, found {s.size} values")
    sb = _mm_scale(b_scale, "b_scale")
    yz = np.asarray(y_zero_point)
    if yz.size != 1 or not np.issubdtype(yz.dtype, np.integer):
        raise ArgumentError(
            f"`y_zero_point` must be an integer scalar, found {yz.dtype} of shape {yz.shape}"
        )
    y_signed = bool(yz.dtype == np.int8) if yz.dtype in _INT8 else signed
    out = _core._qlinear_matmul(
        a2, signed, float(sa[0]), zp, packed, sb, float(sy[0]), int(yz.reshape(-1)[0]), y_signed
    )
    out = out.view(np.int8) if y_signed else out
    n = packed.shape[1]
    return out.reshape((n,) if vector else lead + (n,))


# ------------------------------------ end of int8 matmul ---------------------------------------
