"""``QuantizedLinear``: a float32-in, float32-out linear layer that runs on the int8 kernels.

Weights are quantized once to int8 (per output channel by default) and packed; activations are
quantized on the fly, multiplied in int8 and turned back into float32 by a fused epilogue
(activation scale x weight scale per output, plus bias) with no intermediate float matrix.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from edgepack import _core
from edgepack._errors import ArgumentError, DtypeError
from edgepack.kernels import PackedMatrix, pack_matrix

__all__ = ["QuantizedLinear"]

Activations = Literal["dynamic", "dynamic-per-row", "static"]
_MODES = ("dynamic", "dynamic-per-row", "static")


def _quantize_weight(
    weight: Any, per_channel: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(q (out, in) int8/uint8, scale (out,) float32, zero_point (out,) or None).

    Float weights go through :func:`edgepack.quantize` (symmetric int8, ONNX convention:
    ``scale = max|w| / 127`` per output channel when ``per_channel``, else per tensor).
    """
    if hasattr(weight, "data") and hasattr(weight, "scale") and not isinstance(weight, np.ndarray):
        return _from_quantized_tensor(weight)
    w = np.asarray(weight)
    if not np.issubdtype(w.dtype, np.floating):
        raise DtypeError(f"`weight` must be a float array or a QuantizedTensor, found {w.dtype}")
    if w.ndim != 2:
        raise ArgumentError(
            f"`weight` must have shape (out_features, in_features), found {w.shape}"
        )
    from edgepack.quantize import quantize

    return _from_quantized_tensor(
        quantize(w, bits=8, symmetric=True, axis=0 if per_channel else None)
    )


def _in_scale(qt: Any) -> np.ndarray | None:
    """An AWQ QuantizedTensor's ``in_scale`` (along the input axis 1 of ``(out, in)``)."""
    ins = getattr(qt, "in_scale", None)
    if ins is None:
        return None
    if getattr(qt, "in_axis", None) != 1:
        raise ArgumentError(
            "QuantizedTensor weight has its in_scale along axis "
            f"{getattr(qt, 'in_axis', None)}; QuantizedLinear takes (out_features, in_features) "
            "weights, whose input axis is 1"
        )
    return np.ascontiguousarray(ins, dtype=np.float32)


def _from_quantized_tensor(qt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    data = np.asarray(qt.data)
    bits = getattr(qt, "bits", 8)
    if data.dtype not in (np.dtype(np.int8), np.dtype(np.uint8)) or data.ndim != 2:
        raise DtypeError(
            "QuantizedTensor weight must hold a 2-D int8/uint8 array, "
            f"found {data.dtype} of shape {data.shape} "
            f"(bits={bits})"
        )
    out_f = data.shape[0]
    axis = getattr(qt, "axis", None)
    scale = np.asarray(qt.scale, dtype=np.float32).reshape(-1)
    zp = None if qt.zero_point is None else np.asarray(qt.zero_point).reshape(-1).astype(np.int64)
    if scale.size != 1 and (axis not in (0, -2) or scale.size != out_f):
        raise ArgumentError(
            "QuantizedTensor weight must be per tensor or per output channel "
            f"(axis=0 with {out_f} scales), "
            f"found axis={axis} with {scale.size} scales"
        )
    scale = np.broadcast_to(scale, (out_f,)).astype(np.float32)
    if zp is not None:
        zp = np.broadcast_to(zp, (out_f,)).copy() if zp.size == 1 else zp
        if not zp.any():
            zp = None
    return data, scale, zp


def _is_stats(obj: Any) -> bool:
    from edgepack.calibration import CalibrationStats

    return isinstance(obj, CalibrationStats)


def _entry(stats: Any, name: str | None) -> str:
    """The statistics entry of the layer: ``name``, or the only one."""
    if name is None:
        names = list(stats.names())
        if len(names) != 1:
            raise ArgumentError(
                f"`calibration` holds {len(names)} layers; say which with `name=` "
                f"(found {names[:5]}{'...' if len(names) > 5 else ''})"
            )
        return str(names[0])
    if name not in stats:
        raise ArgumentError(f"`calibration` has no statistics for layer {name!r}")
    return name


def _smoothquant(
    weight: Any, stats: Any, name: str | None, alpha: float | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(W * s, s)`` (SmoothQuant) or ``(W, None)`` with ``alpha=None``."""
    entry = _entry(stats, name)
    if alpha is None:
        return weight, None
    if hasattr(weight, "scale") and not isinstance(weight, np.ndarray):
        raise ArgumentError(
            "SmoothQuant (`calibration` statistics) needs the float weight, found a "
            "QuantizedTensor; pass alpha=None to use the quantized weight as it is"
        )
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ArgumentError(f"`alpha` must be a number in [0, 1], found {alpha!r}")
    w = np.asarray(weight)
    if not np.issubdtype(w.dtype, np.floating) or w.ndim != 2:
        raise ArgumentError(
            f"`weight` must be a float array of shape (out_features, in_features), found "
            f"{w.dtype} {w.shape}"
        )
    w32 = np.ascontiguousarray(w, dtype=np.float32)
    width = int(stats.in_features(entry))
    if width != w32.shape[1]:
        raise ArgumentError(
            f"`weight` has {w32.shape[1]} input features, but the statistics of {entry!r} have "
            f"{width}"
        )
    from edgepack import methods

    act_max = np.asarray(stats.channel_stats(entry)["max_abs"], dtype=np.float64)
    s = np.asarray(methods.smoothquant_scales(act_max, w32, alpha), dtype=np.float32)
    return w32 * s[None, :], s


def _awq_weight(weight: Any, stats: Any, name: str | None, per_channel: bool) -> Any:
    """The AWQ int8 QuantizedTensor of a float ``(out, in)`` weight from the layer's stats."""
    if hasattr(weight, "scale") and not isinstance(weight, np.ndarray):
        raise ArgumentError("`awq=True` needs the float weight, found a QuantizedTensor")
    entry = _entry(stats, name)
    w = np.asarray(weight)
    if not np.issubdtype(w.dtype, np.floating) or w.ndim != 2:
        raise ArgumentError(
            f"`weight` must be a float array of shape (out_features, in_features), found "
            f"{w.dtype} {w.shape}"
        )
    width = int(stats.in_features(entry))
    if width != w.shape[1]:
        raise ArgumentError(
            f"`weight` has {w.shape[1]} input features, but the statistics of {entry!r} have "
            f"{width}"
        )
    from edgepack import methods

    h = stats.hessian(entry) if stats.full else stats.channel_stats(entry)["mean_sq"]
    return methods.awq(
        w,
        stats.channel_stats(entry)["mean_abs"],
        h,
        bits=8,
        symmetric=True,
        axis=0 if per_channel else None,
        block_size=None,
    )


class QuantizedLinear:
    """``y = x @ W.T + bias`` through int8.

    Build with :meth:`from_float`. ``layer(x)`` takes float32 ``(..., in_features)`` and returns
    float32 ``(..., out_features)`` (or int8/uint8 for the static path with an output scale).

    activations:
      * ``"dynamic"``: per-tensor uint8 like ONNX ``DynamicQuantizeLinear`` (range widened to
        include 0, ``scale = (max - min) / 255``, ``zp = rint(-min / scale)``, ties to even);
        the same arithmetic as onnxruntime's ``DynamicQuantizeMatMul``.
      * ``"dynamic-per-row"``: symmetric int8 per row, ``scale = max|x_row| / 127``.
      * ``"static"``: a given input scale / zero point (TFLite full-integer): the bias is
        quantized to int32 with scale ``input_scale * weight_scale[n]``; the output is float32,
        or int8/uint8 requantized to ``output_scale`` / ``output_zero_point`` when given.
    Output float32: ``float32(acc (+ bias_q)) * (act_scale * w_scale[n]) (+ bias[n])``.
    """

    def __init__(
        self,
        packed: PackedMatrix,
        weight_scale: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        activations: Activations = "dynamic",
        input_scale: float | None = None,
        input_zero_point: int | None = None,
        output_scale: float | None = None,
        output_zero_point: int | None = None,
        output_dtype: Any = None,
    ) -> None:
        if activations not in _MODES:
            raise ArgumentError(f"`activations` must be one of {_MODES}, found {activations!r}")
        k, n = packed.shape
        ws = np.ascontiguousarray(weight_scale, dtype=np.float32).reshape(-1)
        if ws.size == 1:
            ws = np.full(n, ws[0], dtype=np.float32)
        if ws.shape != (n,):
            raise ArgumentError(
                f"`weight_scale` must have {n} values (out_features), found {ws.size}"
            )
        if not (np.isfinite(ws).all() and (ws > 0).all()):
            raise ArgumentError("`weight_scale` must be finite and > 0")
        b = None
        if bias is not None:
            b = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
            if b.shape != (n,):
                raise ArgumentError(
                    f"`bias` must have shape ({n},) (out_features), found {np.shape(bias)}"
                )
        if activations == "static":
            if input_scale is None:
                raise ArgumentError(
                    "activations='static' needs `input_scale` (or `calibration` data in from_float)"
                )
            if not (np.isfinite(input_scale) and input_scale > 0):
                raise ArgumentError(f"`input_scale` must be finite and > 0, found {input_scale}")
            input_zero_point = 0 if input_zero_point is None else int(input_zero_point)
            if not 0 <= input_zero_point <= 255:
                raise ArgumentError(
                    f"`input_zero_point` must be in 0..=255 (uint8), found {input_zero_point}"
                )
        elif output_scale is not None:
            raise ArgumentError("`output_scale` (int8 output) needs activations='static'")
        if output_scale is not None:
            if not (np.isfinite(output_scale) and output_scale > 0):
                raise ArgumentError(f"`output_scale` must be finite and > 0, found {output_scale}")
            od = np.dtype(output_dtype if output_dtype is not None else np.int8)
            if od not in (np.dtype(np.int8), np.dtype(np.uint8)):
                raise DtypeError(f"`output_dtype` must be int8 or uint8, found {od}")
            self.output_dtype: np.dtype | None = od
        else:
            self.output_dtype = None
        self.packed = packed
        self.weight_scale = ws
        self.bias = b
        self.activations = activations
        self.input_scale = None if input_scale is None else float(np.float32(input_scale))
        self.input_zero_point = input_zero_point
        self.output_scale = None if output_scale is None else float(np.float32(output_scale))
        self.output_zero_point = 0 if output_zero_point is None else int(output_zero_point)
        #: SmoothQuant: the input is divided by these scales ``s`` (float32 ``(in_features,)``)
        #: before it is quantized (the weight was quantized as ``W * s``); None without it.
        self.input_smoothing: np.ndarray | None = None
        # Arguments of the float32 fast path (decode-time calls are short: keep Python thin).
        self._k = int(k)
        self._in_scale = float(self.input_scale or 0.0)
        self._in_zp = int(self.input_zero_point or 0)

    @classmethod
    def from_float(
        cls,
        weight: Any,
        bias: np.ndarray | None = None,
        *,
        per_channel: bool = True,
        activations: Activations = "dynamic",
        input_scale: float | None = None,
        input_zero_point: int | None = None,
        calibration: Any = None,
        name: str | None = None,
        alpha: float | None = 0.5,
        output_scale: float | None = None,
        output_zero_point: int | None = None,
        output_dtype: Any = None,
        awq: bool = False,
    ) -> QuantizedLinear:
        """Quantize a float ``(out_features, in_features)`` weight (as PyTorch stores it) to int8,
        symmetric per output channel (``per_channel=True``) or per tensor, or take a
        QuantizedTensor (``.data .scale .zero_point .axis .bits``) as it is.

        ``calibration``:

        * an :class:`edgepack.CalibrationStats` holding this layer's input statistics (under
          ``name``; may be omitted when the statistics hold one layer): SmoothQuant (Xiao et al.
          2022) with migration strength ``alpha`` (0.5 by default; ``alpha=None`` turns it
          off): per input channel ``s_j = max|x_j|^alpha / max_i |W_ij|^(1 - alpha)``, the
          weight is quantized as ``W * s`` and the layer divides its input by ``s`` before
          quantizing it, so ``y = (x / s) @ (W * s).T + bias`` moves activation outliers into
          the weights, where per-channel scales absorb them. For ``activations="static"`` the
          input range comes from the statistics too (``max |x_j| / s_j``, symmetric).
          Measure ``alpha`` on your model: on a 3-layer BERT (BENCHMARKS.md), with per-tensor
          ``"dynamic"`` activations alpha 0.5 did slightly worse than no smoothing and 0.75
          better; with ``"dynamic-per-row"`` both helped.
        * an array of example inputs ``(..., in_features)``, for ``activations="static"``:
          ``input_scale`` / ``input_zero_point`` are derived from its range like
          ``DynamicQuantizeLinear``.

        ``awq=True`` (with ``calibration`` statistics, instead of SmoothQuant): the weight is
        quantized by :func:`edgepack.methods.awq` (int8 symmetric, per output channel or per
        tensor, the AWQ scale ``s`` searched on the statistics' output error), and the layer
        divides its input by ``s``: ``y = (x / s) @ Q.T``, i.e. ``x @ dequant(W).T``. A
        QuantizedTensor with an ``in_scale`` (AWQ) is run the same way.

        For ``activations="static"`` give ``input_scale`` / ``input_zero_point``, or
        ``calibration``.
        """
        smooth = None
        if awq:
            if calibration is None or not _is_stats(calibration):
                raise ArgumentError("`awq=True` needs `calibration` statistics (CalibrationStats)")
            weight = _awq_weight(weight, calibration, name, per_channel)
            alpha = None
        smooth = _in_scale(weight) if hasattr(weight, "scale") else None
        if calibration is not None and _is_stats(calibration):
            weight, sq = _smoothquant(weight, calibration, name, alpha)
            smooth = sq if sq is not None else smooth
            if activations == "static" and input_scale is None:
                mx = np.asarray(calibration.channel_stats(_entry(calibration, name))["max_abs"])
                if smooth is not None:
                    mx = mx / smooth
                hi = float(np.max(mx, initial=0.0))
                calibration = np.array([-hi, hi], dtype=np.float32)
            else:
                calibration = None
        q, scale, zp = _quantize_weight(weight, per_channel)
        if activations == "static" and input_scale is None and calibration is not None:
            c = np.asarray(calibration, dtype=np.float32)
            lo, hi = min(float(c.min(initial=0.0)), 0.0), max(float(c.max(initial=0.0)), 0.0)
            s = (
                np.float32(1.0)
                if hi == lo
                else np.float32((np.float32(hi) - np.float32(lo)) / np.float32(255))
            )
            input_scale = float(s)
            input_zero_point = int(np.rint(np.clip(np.float32(0) - np.float32(lo) / s, 0, 255)))
        packed = pack_matrix(np.ascontiguousarray(q.T), zp)
        layer = cls(
            packed,
            scale,
            bias,
            activations=activations,
            input_scale=input_scale,
            input_zero_point=input_zero_point,
            output_scale=output_scale,
            output_zero_point=output_zero_point,
            output_dtype=output_dtype,
        )
        layer.input_smoothing = smooth
        return layer

    @classmethod
    def from_quantized(cls, q: Any, bias: np.ndarray | None = None, **kwargs: Any) -> QuantizedLinear:
        """The layer of a QuantizedTensor ``q`` (int8 / uint8, ``(out_features, in_features)``,
        per tensor or per output channel) as it is: ``from_float(q, bias, **kwargs)``. An AWQ
        tensor (``q.in_scale`` along axis 1) divides the input by its ``in_scale`` first, so
        the layer computes ``x @ q.dequantize().T + bias`` (up to the activation rounding)."""
        if not hasattr(q, "scale") or isinstance(q, np.ndarray):
            raise DtypeError(f"`q` must be a QuantizedTensor, found {type(q).__name__}")
        return cls.from_float(q, bias, **kwargs)

    @property
    def in_features(self) -> int:
        """K: the length of the last axis of the input."""
        return int(self.packed.shape[0])

    @property
    def out_features(self) -> int:
        """N: the length of the last axis of the output."""
        return int(self.packed.shape[1])

    def __repr__(self) -> str:
        return (
            f"QuantizedLinear(in_features={self.in_features}, out_features={self.out_features}, "
            f"activations={self.activations!r}, bias={self.bias is not None})"
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x @ W.T + bias`` for float32 ``x`` of shape (..., in_features), computed in int8."""
        if self.input_smoothing is not None:
            arr = np.asarray(x)
            if np.issubdtype(arr.dtype, np.floating) and arr.ndim >= 1:
                if arr.shape[-1] != self.in_features:
                    raise ArgumentError(
                        f"`x` must have shape (..., {self.in_features}) (in_features), "
                        f"found {arr.shape}"
                    )
                x = np.divide(arr, self.input_smoothing, dtype=np.float32)
        if (
            type(x) is np.ndarray
            and x.dtype == np.float32
            and x.ndim == 2
            and x.shape[1] == self._k
            and x.flags.c_contiguous
            and self.output_dtype is None
        ):
            return _core._linear_forward(
                x,
                self.packed,
                self.weight_scale,
                self.bias,
                self.activations,
                self._in_scale,
                self._in_zp,
            )
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.floating):
            raise DtypeError(f"`x` must be a float array, found {arr.dtype}")
        if arr.ndim < 1 or arr.shape[-1] != self.in_features:
            raise ArgumentError(
                f"`x` must have shape (..., {self.in_features}) (in_features), found {arr.shape}"
            )
        lead = arr.shape[:-1]
        rows = int(np.prod(lead, dtype=np.int64)) if lead else 1
        x2 = np.ascontiguousarray(arr, dtype=np.float32).reshape(rows, self.in_features)
        if self.output_dtype is not None:
            assert self.input_scale is not None and self.output_scale is not None
            out = _core._linear_forward_q8(
                x2,
                self.packed,
                self.weight_scale,
                self.bias,
                self.input_scale,
                int(self.input_zero_point or 0),
                self.output_scale,
                self.output_zero_point,
                self.output_dtype == np.int8,
            )
            res: np.ndarray = out.view(self.output_dtype)
        else:
            res = _core._linear_forward(
                x2,
                self.packed,
                self.weight_scale,
                self.bias,
                self.activations,
                self._in_scale,
                self._in_zp,
            )
        return res.reshape(lead + (self.out_features,))
