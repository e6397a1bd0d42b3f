"""Derive quantization parameters from the data and quantize, in one call.

Parameters follow ONNX Runtime's quantization tool: the range always includes 0; symmetric
quantization is signed (int8 in [-127, 127], int4 in [-7, 7]) with zero point 0 and
``scale = absmax / qmax`` (computed in float64, stored as float32: the TFLite int8 weight
rule; ``scale_dtype="float16"`` rounds each scale up to the nearest float16 instead); affine quantization is unsigned over the full range (uint8 [0, 255], uint4 [0, 15])
with ``zp = round(qmin - rmin / scale)``; ``reduce_range`` gives [-64, 64] / [0, 127]; an
all-zero tensor / channel / block gets scale 1.0 and zero point 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack import _core
from edgepack._coerce import as_f32, axis_int
from edgepack._errors import ArgumentError, DtypeError

__all__ = ["QuantizedTensor", "quantize", "dequantize"]

_CONVENTIONS = ("onnx", "torch", "tflite")
_CALIBRATIONS = ("minmax", "percentile", "mse")


@dataclass(frozen=True, repr=False, eq=False)
class QuantizedTensor:
    """A quantized array and its parameters (frozen; the arrays are read-only).

    * ``data``: int8 / uint8 array of ``shape`` (8 bits), or the 4-bit values packed two per
      byte in a flat uint8 array of ``ceil(size / 2)`` bytes, first element in the low nibble
      (ONNX layout);
    * ``scale``: float32 (or float16), shape ``()`` per tensor, ``(shape[axis],)`` per channel, or ``shape``
      with ``ceil(shape[axis] / block_size)`` along ``axis`` per block;
    * ``zero_point``: int8 (signed types) or uint8 (unsigned), the shape of ``scale``;
    * ``axis`` (non-negative, or None per tensor), ``block_size`` (or None), ``bits`` (8 or 4),
      ``shape`` (of the original array);
    * ``in_scale`` / ``in_axis`` (AWQ, :func:`edgepack.methods.awq`; both None otherwise): a
      float32 scale per index along ``in_axis`` (the weight's input dimension) that the
      values were multiplied by before rounding, so decoding divides by it.

    ``x ~= (q - zero_point) * scale`` (``((q - zero_point) * scale) / in_scale`` with an
    ``in_scale``): see :meth:`dequantize`.
    """

    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    block_size: int | None
    bits: int
    shape: tuple[int, ...]
    in_scale: np.ndarray | None = None
    in_axis: int | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(d) for d in self.shape)
        object.__setattr__(self, "shape", shape)
        if self.bits not in (8, 4):
            raise ArgumentError(f"`bits` must be 8 or 4, found {self.bits}")
        zp = np.asarray(self.zero_point)
        if zp.dtype not in (np.int8, np.uint8):
            raise DtypeError(f"`zero_point` must be int8 or uint8; found dtype {zp.dtype}")
        scale = np.asarray(self.scale)
        if scale.dtype not in (np.float32, np.float16):
            raise DtypeError(f"`scale` must be float32 or float16; found dtype {scale.dtype}")
        if zp.shape != scale.shape:
            raise ArgumentError(
                f"`zero_point` has shape {zp.shape}, expected {scale.shape} (the shape of `scale`)"
            )
        data = np.asarray(self.data)
        size = math.prod(shape)
        if self.bits == 8:
            if data.dtype != zp.dtype or data.shape != shape:
                raise ArgumentError(
                    f"`data` has dtype {data.dtype} and shape {data.shape}, expected "
                    f"{zp.dtype} and {shape}"
                )
        elif data.dtype != np.uint8 or data.shape != ((size + 1) // 2,):
            raise ArgumentError(
                f"4-bit `data` has dtype {data.dtype} and shape {data.shape}, expected uint8 "
                f"and ({(size + 1) // 2},) (packed two per byte)"
            )
        if self.block_size is not None and self.axis is None:
            raise ArgumentError("`block_size` needs an `axis`")
        arrays = [("data", data), ("scale", scale), ("zero_point", zp)]
        if (self.in_scale is None) != (self.in_axis is None):
            raise ArgumentError("`in_scale` and `in_axis` go together (both or neither)")
        if self.in_scale is not None:
            ax = self.in_axis
            if isinstance(ax, bool) or not isinstance(ax, (int, np.integer)) or not (
                0 <= int(ax) < len(shape)
            ):
                raise ArgumentError(f"`in_axis` must be an axis of shape {shape}, found {ax!r}")
            object.__setattr__(self, "in_axis", int(ax))
            ins = np.asarray(self.in_scale)
            if ins.dtype != np.float32:
                raise DtypeError(f"`in_scale` must be float32; found dtype {ins.dtype}")
            if ins.shape != (shape[int(ax)],):
                raise ArgumentError(
                    f"`in_scale` has shape {ins.shape}, expected ({shape[int(ax)]},) (dimension "
                    f"{ax} of {shape})"
                )
            if not (np.isfinite(ins).all() and (ins >= np.finfo(np.float32).tiny).all()):
                raise ArgumentError("`in_scale` must be finite, positive and not subnormal")
            arrays.append(("in_scale", ins))
        for name, a in arrays:
            v = a.view()
            v.flags.writeable = False
            object.__setattr__(self, name, v)

    @property
    def signed(self) -> bool:
        """Whether the values are int8 / int4 (else uint8 / uint4)."""
        return self.zero_point.dtype == np.int8

    @property
    def dtype(self) -> str:
        """``"int8"``, ``"uint8"``, ``"int4"`` or ``"uint4"``."""
        return ("int" if self.signed else "uint") + str(self.bits)

    @property
    def scale_dtype(self) -> str:
        """``"float32"`` or ``"float16"``: how the scales are stored."""
        return str(self.scale.dtype)

    @property
    def size(self) -> int:
        """Number of quantized elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes held: data + scales + zero points (+ the AWQ input scales)."""
        extra = 0 if self.in_scale is None else self.in_scale.nbytes
        return int(self.data.nbytes + self.scale.nbytes + self.zero_point.nbytes + extra)

    def dequantize(self, *, out: np.ndarray | None = None) -> np.ndarray:
        """``float32(q - zero_point) * float32(scale)``, as ONNX DequantizeLinear, shape
        ``self.shape``; with an ``in_scale``, then divided by it along ``in_axis`` (in float32:
        ``(float32(q - zero_point) * scale) / in_scale``, FORMAT.md section 5)."""
        dt = self.dtype
        q = np.ascontiguousarray(self.data).view(np.uint8).reshape(-1)
        z = np.ascontiguousarray(self.zero_point, dtype=np.int32)
        axis = 0 if self.axis is None else self.axis
        bs = 0 if self.block_size is None else self.block_size
        s = np.ascontiguousarray(self.scale, dtype=np.float32)
        extra: tuple[Any, ...] = ()
        if self.in_scale is not None:
            extra = (np.ascontiguousarray(self.in_scale), self.in_axis)
        if out is not None:
            if (
                not isinstance(out, np.ndarray)
                or out.dtype != np.float32
                or out.shape != self.shape
                or not out.flags.c_contiguous
                or not out.flags.writeable
            ):
                raise ArgumentError(
                    f"`out` must be a writeable C-contiguous float32 array of shape {self.shape}"
                )
            _core.dequantize_linear(q, dt, list(self.shape), s, z, axis, bs, out, *extra)
            return out
        return _core.dequantize_linear(q, dt, list(self.shape), s, z, axis, bs, None, *extra)

    def __repr__(self) -> str:
        if self.axis is None:
            gran = "per tensor"
        elif self.block_size is None:
            gran = f"per channel along axis {self.axis}"
        else:
            gran = f"blocks of {self.block_size} along axis {self.axis}"
        if self.scale.size == 1:
            s0, z0 = float(self.scale.reshape(-1)[0]), int(self.zero_point.reshape(-1)[0])
            params = f"scale={s0:.6g}, zero_point={z0}"
        else:
            params = (
                f"{self.scale.size} scales in [{float(self.scale.min()):.6g}, "
                f"{float(self.scale.max()):.6g}]"
            )
        awq = "" if self.in_axis is None else f", in_scale along axis {self.in_axis}"
        return (
            f"QuantizedTensor({self.dtype}, shape={self.shape}, {gran}, {params}{awq}, "
            f"nbytes={self.nbytes})"
        )


def quantize(
    x: Any,
    *,
    bits: int = 8,
    symmetric: bool = True,
    axis: int | None = None,
    block_size: int | None = None,
    convention: str = "onnx",
    reduce_range: bool = False,
    calibration: str = "minmax",
    percentile: float | None = None,
    scale_dtype: str = "float32",
) -> QuantizedTensor:
    """Derive scale and zero point from ``x`` and quantize it.

    ``axis=None``: one scale for the tensor; ``axis=k``: one per index along ``k`` (per
    channel); ``block_size=b`` with an axis: one per block of ``b`` elements along ``k``.
    ``convention``: ``"onnx"`` (``x / scale``, ties to even; ONNX QuantizeLinear),
    ``"torch"`` (``x * float32(1 / scale)``, ties to even, zero point added after rounding;
    torch.quantize_per_tensor / per_channel), ``"tflite"`` (round half away from zero of
    ``x * (qmax / absmax)``, symmetric only). ``calibration``: ``"minmax"``, ``"percentile"``
    (exact percentile of ``|x|``, symmetric, or of both tails, affine; default 99.999) or
    ``"mse"`` (the clipping threshold ``f * range``, ``f`` in 1.00, 0.99, .., 0.20, that
    minimises the squared reconstruction error, per unit). ``scale_dtype``: ``"float32"`` or
    ``"float16"`` (half the bytes per scale, as llama.cpp's blocks: 4-bit blocks of 32 cost 4.5
    bits per weight instead of 5; each scale is rounded *up* to the nearest float16, so the
    range it covers only grows, then the zero point and the codes are derived from it; not with
    ``convention="tflite"``, whose rule multiplies by ``qmax / absmax``).

    NaN or infinity in ``x`` raises :class:`edgepack.NonFiniteError` naming the first index.
    """
    xf = as_f32(x, "x")
    if isinstance(bits, bool) or bits not in (8, 4):
        raise ArgumentError(f"`bits` must be 8 or 4, found {bits!r}")
    for name, v in (("symmetric", symmetric), ("reduce_range", reduce_range)):
        if not isinstance(v, (bool, np.bool_)):
            raise DtypeError(f"`{name}` must be a bool, found {type(v).__name__}")
    ax = None if axis is None else axis_int(axis)
    bs = None if block_size is None else axis_int(block_size, "block_size")
    if convention not in _CONVENTIONS:
        raise ArgumentError(
            f"`convention` = {convention!r} is not known; expected one of {_CONVENTIONS}"
        )
    if calibration not in _CALIBRATIONS:
        raise ArgumentError(
            f"`calibration` = {calibration!r} is not known; expected one of {_CALIBRATIONS}"
        )
    pct = None
    if percentile is not None:
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.number)):
            raise DtypeError(f"`percentile` must be a number, found {type(percentile).__name__}")
        pct = float(percentile)
    # The core allocates: large results come from its recycled buffers (no page faults).
    data: np.ndarray  # raw uint8 codes from the core; int8 or uint8 codes after the view below
    data, scale, zp = _core.quantize(
        xf,
        int(bits),
        bool(symmetric),
        ax,
        bs,
        convention,
        bool(reduce_range),
        calibration,
        pct,
        scale_dtype=scale_dtype,
    )
    if scale_dtype == "float16":
        scale = scale.astype(np.float16)  # exact: the core rounded every scale to a float16
    zdt = np.int8 if symmetric else np.uint8
    if bits == 8:
        data = data.view(zdt).reshape(xf.shape)
    nax = None if ax is None else ax % xf.ndim
    return QuantizedTensor(
        data=data,
        scale=scale,
        zero_point=zp.astype(zdt),
        axis=nax,
        block_size=bs,
        bits=int(bits),
        shape=tuple(xf.shape),
    )


def dequantize(qt: QuantizedTensor, *, out: np.ndarray | None = None) -> np.ndarray:
    """``qt.dequantize()``: ``float32(q - zero_point) * scale`` with ``qt``'s granularity."""
    if not isinstance(qt, QuantizedTensor):
        raise DtypeError(f"`qt` must be a QuantizedTensor, found {type(qt).__name__}")
    return qt.dequantize(out=out)
