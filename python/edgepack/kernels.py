"""Typed drop-in kernel calls: numpy arrays in, numpy arrays out, ONNX operator semantics.

Each section below belongs to one area; the formulas are given in numpy terms.
"""

from __future__ import annotations

import numpy as np

from edgepack import _core
from edgepack._errors import ArgumentError, DtypeError

# ---------------------------------------------------------------------------------------------
# int8 matrix multiplication (issue 3): matmul_integer, pack_matrix, PackedMatrix, qlinear_matmul
# ---------------------------------------------------------------------------------------------

#: ``B`` packed once for the int8 kernels (layout, column sums, zero-point terms); immutable,
#: reusable across calls and threads. ``.shape`` is (K, N), ``.nbytes`` the memory it holds,
#: ``.dtype`` "int8" or "uint8", ``.zero_point`` the zero point given to :func:`pack_matrix`.
PackedMatrix = _core.PackedMatrix

_INT8 = (np.dtype(np.int8), np.dtype(np.uint8))


def _int8_array(x: object, name: str, min_ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype not in _INT8:
        raise DtypeError(f"`{name}` must be int8 or uint8, found {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ArgumentError(f"`{name}` must have at least {min_ndim} dimension(s), found shape {arr.shape}")
    return arr


def _zero_point(zp: object, name: str, length: int, what: str) -> np.ndarray:
    """None -> empty; a scalar or 1-element array -> [v]; a 1-D array of `length` -> as is."""
    if zp is None:
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(zp)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise DtypeError(f"`{name}` must be an integer scalar or array, found {arr.dtype}")
    if arr.size == 1:
        return arr.reshape(1).astype(np.int64)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ArgumentError(
            f"`{name}` must be a scalar or have shape ({length},) (one per {what}), found shape {arr.shape}"
        )
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > 2**62:
        raise ArgumentError(f"`{name}` value {int(arr.max())} is out of range")
    return np.ascontiguousarray(arr, dtype=np.int64)


def pack_matrix(b: np.ndarray, b_zero_point: object = None) -> PackedMatrix:
    """Pack a constant (K, N) int8/uint8 matrix once for :func:`matmul_integer`.

    ``b_zero_point`` is a scalar or one value per column (N); it is stored with the packed
    matrix. The result is immutable and may be shared between threads.
    """
    arr = _int8_array(b, "b", 2)
    if arr.ndim != 2:
        raise ArgumentError(f"`b` must be a (K, N) matrix, found shape {arr.shape}")
    zp = _zero_point(b_zero_point, "b_zero_point", arr.shape[1], "column of `b`")
    data = np.ascontiguousarray(arr).view(np.uint8)
    return _core._pack_matrix(data, arr.dtype == np.int8, zp)


def _packed(b: object, b_zero_point: object) -> PackedMatrix:
    if isinstance(b, PackedMatrix):
        if b_zero_point is not None:
            raise ArgumentError(
                "`b_zero_point` must be None when `b` is a PackedMatrix (its zero point was given to pack_matrix)"
            )
        return b
    return pack_matrix(b, b_zero_point)  # type: ignore[arg-type]


def _lhs(a: object, a_zero_point: object) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], bool, bool]:
    arr = _int8_array(a, "a", 1)
    vector = arr.ndim == 1
    if vector:
        arr = arr.reshape(1, -1)
    lead = arr.shape[:-2]
    m, k = arr.shape[-2], arr.shape[-1]
    batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
    zp = _zero_point(a_zero_point, "a_zero_point", m, "row of `a`")
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
    a2, zp, lead, signed, vector = _lhs(a, a_zero_point)
    packed = _packed(b, b_zero_point)
    n = packed.shape[1]
    shape = (n,) if vector else lead + (n,)
    if out is not None:
        if not isinstance(out, np.ndarray) or out.dtype != np.int32:
            raise DtypeError(f"`out` must be an int32 numpy array, found {getattr(out, 'dtype', type(out).__name__)}")
        if out.shape != shape or not out.flags.c_contiguous or not out.flags.writeable:
            raise ArgumentError(
                f"`out` must be a writeable C-contiguous array of shape {shape}, found shape {out.shape}"
            )
        _core._matmul_integer(a2, signed, zp, packed, out.reshape(a2.shape[0], n))
        return out
    return _core._matmul_integer(a2, signed, zp, packed).reshape(shape)


def _scale(x: object, name: str) -> np.ndarray:
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
    a2, zp, lead, signed, vector = _lhs(a, a_zero_point)
    packed = _packed(b, b_zero_point)
    sa, sy = _scale(a_scale, "a_scale"), _scale(y_scale, "y_scale")
    for nm, s in (("a_scale", sa), ("y_scale", sy)):
        if s.size != 1:
            raise ArgumentError(f"`{nm}` must be a scalar, found {s.size} values")
    sb = _scale(b_scale, "b_scale")
    yz = np.asarray(y_zero_point)
    if yz.size != 1 or not np.issubdtype(yz.dtype, np.integer):
        raise ArgumentError(f"`y_zero_point` must be an integer scalar, found {yz.dtype} of shape {yz.shape}")
    y_signed = bool(yz.dtype == np.int8) if yz.dtype in _INT8 else signed
    out = _core._qlinear_matmul(
        a2, signed, float(sa[0]), zp, packed, sb, float(sy[0]), int(yz.reshape(-1)[0]), y_signed
    )
    out = out.view(np.int8) if y_signed else out
    n = packed.shape[1]
    return out.reshape((n,) if vector else lead + (n,))


# --------------------------------------- end of issue 3 ----------------------------------------
