"""Input coercion shared by the quantization modules (no element loops here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepack._errors import ArgumentError, DtypeError

#: Float dtypes accepted as data and converted to float32.
FLOAT_NAMES = frozenset({"float32", "float64", "float16", "bfloat16"})

#: ONNX TensorProto element types of the quantized outputs.
ONNX_TYPES = {3: "int8", 2: "uint8", 22: "int4", 21: "uint4"}
QTYPES = ("int8", "uint8", "int4", "uint4")
_NAMES = {np.int8: "int8", np.uint8: "uint8"}


_NAME_CACHE: dict[np.dtype, str] = {}


def dtype_name(dt: np.dtype) -> str:
    """``dt.name``, cached (numpy computes it in Python, several microseconds a call)."""
    n = _NAME_CACHE.get(dt)
    if n is None:
        n = _NAME_CACHE[dt] = dt.name
    return n


_F32 = np.dtype(np.float32)
_I32 = np.dtype(np.int32)


def as_f32(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 array (float16 / float64 / bfloat16 converted)."""
    if type(x) is np.ndarray and x.dtype == _F32 and x.flags.c_contiguous:
        return x  # the hot path: no copy, no checks beyond these
    a = x if isinstance(x, np.ndarray) else np.asarray(x)
    if dtype_name(a.dtype) not in FLOAT_NAMES:
        if a.dtype.kind in "biuc" or a.dtype.kind == "O":
            raise DtypeError(
                f"`{name}` must be a float array (float32, float64, float16 or bfloat16); "
                f"found dtype {a.dtype}"
            )
        raise DtypeError(
            f"`{name}` has dtype {a.dtype}; expected float32, float64, float16 or bfloat16"
        )
    return np.asarray(a, dtype=np.float32, order="C")


def as_scale(s: Any, name: str) -> np.ndarray:
    """A scale array as C-contiguous float32 (ints are accepted, as plain numbers)."""
    if type(s) is np.float32:
        return np.array(s)
    if type(s) is np.ndarray and s.dtype == _F32 and s.flags.c_contiguous:
        return s
    a = s if isinstance(s, np.ndarray) else np.asarray(s)
    if dtype_name(a.dtype) not in FLOAT_NAMES and a.dtype.kind not in "iu":
        raise DtypeError(f"`{name}` must be a float array; found dtype {a.dtype}")
    return np.asarray(a, dtype=np.float32, order="C")


def qtype_name(dt: Any, name: str) -> str | None:
    """Normalise an output type: numpy / ml_dtypes dtype, name, or ONNX TensorProto number."""
    if dt is None:
        return None
    if isinstance(dt, (int, np.integer)) and not isinstance(dt, bool):
        if int(dt) in ONNX_TYPES:
            return ONNX_TYPES[int(dt)]
        raise DtypeError(
            f"`{name}` = {int(dt)} is not a supported ONNX type; expected one of "
            f"{sorted(ONNX_TYPES)} ({', '.join(ONNX_TYPES.values())})"
        )
    if isinstance(dt, str) and dt.lower() in QTYPES:
        return dt.lower()
    n: str
    try:
        n = np.dtype(dt).name
    except TypeError:
        n = str(dt)
    if n in QTYPES:
        return n
    raise DtypeError(f"`{name}` = {dt!r} is not supported; expected int8, uint8, int4 or uint4")


def zero_point(zp: Any, name: str) -> tuple[np.ndarray | None, str | None]:
    """``(int32 values, the quantized type its dtype names or None)``."""
    if zp is None:
        return None, None
    t = type(zp)
    if t is np.int8 or t is np.uint8:  # the hot path: a scalar zero point
        return np.array(zp, dtype=_I32), _NAMES[t]
    z = zp if isinstance(zp, np.ndarray) else np.asarray(zp)
    zn = dtype_name(z.dtype)
    typed = zn if zn in QTYPES else None
    if typed is None and z.dtype.kind not in "iu":
        raise DtypeError(f"`{name}` must be an integer array; found dtype {z.dtype}")
    if typed is None and z.size and (int(z.min()) < -(2**31) or int(z.max()) >= 2**31):
        bad = int(z.min()) if int(z.min()) < -(2**31) else int(z.max())
        raise ArgumentError(f"`{name}` value {bad} is outside every quantized type's range")
    return np.asarray(z, dtype=np.int32, order="C"), typed


def axis_int(axis: Any, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise DtypeError(f"`{name}` must be an int; found {type(axis).__name__}")
    return int(axis)
