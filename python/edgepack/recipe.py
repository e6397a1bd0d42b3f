"""What :func:`edgepack.compress` does to each tensor: :class:`Recipe` and :class:`Rule`.

A recipe is an ordered list of rules, each with a glob pattern (``fnmatch``, case-sensitive)
over tensor names; the first rule whose pattern matches a tensor decides what happens to it.
Tensors no rule matches follow the recipe's ``default``:

* ``"auto"`` (the default, in the spirit of TFLite's dynamic-range rule): a float tensor with
  at least 2 dimensions and at least 1024 elements becomes int8, symmetric, one scale per
  output channel (axis 0, PyTorch's ``(out, in)`` layout); everything else (biases, norms,
  small tensors, integer buffers) is kept as is.
* ``"keep"``: every unmatched tensor is kept as is.

A recipe loads from a dict (:meth:`Recipe.from_dict`), a JSON string or file
(:meth:`Recipe.from_json`), a TOML file (:meth:`Recipe.from_toml`; Python 3.11+ reads TOML with
the standard ``tomllib``; on 3.10 edgepack uses ``tomli`` when it is installed and otherwise says
to install it), and round-trips: ``Recipe.from_dict(r.to_dict()) == r``.

Example (TOML)::

    default = "auto"
    [[rules]]
    pattern = "*.embed*"
    action = "keep"
    [[rules]]
    pattern = "*.mlp.*weight"
    bits = 4                 # block-wise along the input dim (axis 1), block 32
    [[rules]]
    pattern = "*attn*weight"
    sparsity = 0.5
    sparsity_method = "nm"   # 2:4
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgepack._errors import ArgumentError

__all__ = ["Recipe", "Rule", "Plan"]

_ACTIONS = ("quantize", "keep", "float16")
_GRANULARITIES = ("tensor", "channel", "block")
_CALIBRATIONS = ("minmax", "percentile", "mse")
_SPARSITY_METHODS = ("magnitude", "nm", "block", "sparsegpt", "wanda")
_IMPORTANCE = ("magnitude", "provided")
_DEFAULTS = ("auto", "keep")
#: How quantized values are chosen: plain rounding, or a calibration-aware method.
_METHODS = ("rtn", "gptq", "hqq", "awq")
_SCALE_DTYPES = ("float32", "float16")
#: Which methods need calibration statistics (``compress(..., calibration=stats)``).
CALIBRATED_METHODS = ("gptq", "awq")
CALIBRATED_SPARSITY = ("sparsegpt", "wanda")
_STRUCTURES = ("unstructured", "nm", "block")
_LAYOUTS = ("out_in", "in_out")


@dataclass(frozen=True)
class Rule:
    """One rule. Only ``pattern`` is required; ``None`` means "the default for these bits".

    * ``action``: ``"quantize"`` (int8 / int4), ``"keep"`` (stored unchanged) or
      ``"float16"``.
    * ``bits``: 8 or 4 (quantize only).
    * ``granularity``: ``"tensor"``, ``"channel"`` (one scale per index along ``axis``,
      default axis 0) or ``"block"`` (blocks of ``block_size`` along ``axis``, default axis 1 =
      the input dim, block 32). Default: ``"channel"`` for 8 bits, ``"block"`` for 4 bits.
    * ``symmetric``: zero point 0 (int8 / int4) or affine (uint8 / uint4 with a zero point).
    * ``calibration`` / ``percentile``: how the range is chosen (``"minmax"`` by default).
    * ``sparsity``: fraction of weights pruned to zero before encoding (0 = none), with
      ``sparsity_method`` ``"magnitude"`` (unstructured), ``"nm"`` (``n`` of every ``m``
      kept; ``sparsity`` must equal ``1 - n/m``) or ``"block"`` (whole ``block_shape`` blocks),
      ranked by ``importance``: ``"magnitude"`` (``|w|``) or ``"provided"`` (``|w|`` times a
      score per input feature, i.e. per index of the last dimension, passed to
      :func:`edgepack.compress` as ``importance={name: 1-D array}``, e.g. activation norms).
      A pruned tensor with ``action="keep"`` is stored in the sparse format; with
      ``"quantize"`` / ``"float16"`` its zeros are entropy-coded.

    Calibration-aware settings (they need ``compress(..., calibration=stats)``, see
    :class:`edgepack.CalibrationStats`, except ``"hqq"``):

    * ``method``: how the quantized values are chosen: ``"rtn"`` (round to nearest, the
      default), ``"gptq"`` (Frantar et al. 2022: column by column, the rounding error of each
      column is compensated on the columns not yet quantized, weighted by ``H = X^T X``; with
      ``damp`` (fraction of the mean diagonal added to ``H``, default 0.01) and ``act_order``
      (columns in descending ``diag(H)`` order, default True)), ``"hqq"`` (Badri & Shaji
      2023, data-free: scales and zero points refined by half-quadratic optimisation) or
      ``"awq"`` (Lin et al. 2023: round to nearest after AWQ's per-input-channel scaling,
      the same as ``method="rtn", awq=True``). ``None`` (default) takes the recipe's ``method``.
    * ``awq``: scale the weight's input channels by AWQ's searched ``s = mean|x| ** alpha``
      (20 alphas, the smallest calibrated output error) before the method quantizes it
      (``"gptq"`` then runs on ``W * s`` with ``H / (s s^T)``); the file stores ``s`` as the
      tensor's ``in_scale`` (FORMAT.md version 2) and decoding divides by it. Needs the
      calibration statistics of the tensor (its ``X^T X`` or only the per-channel vectors).
    * ``awq_clip``: AWQ's weight clipping search too (per group, the range shrunk by up to
      half where that lowers the group's output error); per output channel or blocks along
      the input dimension only.
    * ``awq_search``: ``"rtn"`` (default; the paper: alpha chosen by round to nearest, then the
      method runs once) or ``"solver"`` (alpha chosen by the method's own result, 20 runs of
      it; with ``"gptq"`` never worse than plain GPTQ on the calibration data).
    * ``sparsity_method = "sparsegpt"`` (Frantar & Alistarh 2023: the mask and the kept
      weights chosen together from ``H``; jointly with quantization) or ``"wanda"`` (Sun et al.
      2023: ``|W_ij| * ||x_j||``, compared within each output row), with ``structure``
      ``"unstructured"`` (default), ``"nm"`` (``n`` of every ``m`` along the input dim) or
      ``"block"`` (``block_shape``).
    * ``scale_dtype``: ``"float32"`` or ``"float16"`` (half the bytes per scale: 4-bit blocks
      of 32 cost 4.5 bits per weight instead of 5, 5.25 -> 4.75 affine; each scale is rounded
      up to a float16, see :func:`edgepack.quantize`). ``None`` (default) takes the recipe's.
    * ``layout``: ``"out_in"`` (PyTorch, the default) or ``"in_out"`` (Keras, ONNX ``MatMul``
      weights). It decides which dimension the activations multiply (calibration), and the
      default quantization axes: per output channel is axis 0 for ``out_in`` and axis 1 for
      ``in_out``; blocks run along the input dim. ``None`` (default): the layout the
      calibration statistics recorded for the tensor (``collect_onnx`` records ``in_out`` for
      MatMul weights), else ``out_in``.
    """

    pattern: str
    action: str = "quantize"
    bits: int = 8
    granularity: str | None = None
    axis: int | None = None
    block_size: int | None = None
    symmetric: bool = True
    calibration: str = "minmax"
    percentile: float | None = None
    sparsity: float = 0.0
    sparsity_method: str = "magnitude"
    n: int = 2
    m: int = 4
    block_shape: tuple[int, ...] = (1, 4)
    importance: str = "magnitude"
    method: str | None = None
    damp: float = 0.01
    act_order: bool = True
    structure: str = "unstructured"
    layout: str | None = None
    awq: bool = False
    awq_clip: bool = False
    awq_search: str = "rtn"
    scale_dtype: str | None = None

    def __post_init__(self) -> None:
        def bad(msg: str) -> ArgumentError:
            return ArgumentError(f"rule {self.pattern!r}: {msg}")

        if not isinstance(self.pattern, str) or not self.pattern:
            raise ArgumentError(f"a rule's pattern must be a non-empty string, found {self.pattern!r}")
        if self.action not in _ACTIONS:
            raise bad(f"action must be one of {_ACTIONS}, found {self.action!r}")
        if self.bits not in (8, 4) or isinstance(self.bits, bool):
            raise bad(f"bits must be 8 or 4, found {self.bits!r}")
        if self.granularity is not None and self.granularity not in _GRANULARITIES:
            raise bad(f"granularity must be one of {_GRANULARITIES}, found {self.granularity!r}")
        if self.calibration not in _CALIBRATIONS:
            raise bad(f"calibration must be one of {_CALIBRATIONS}, found {self.calibration!r}")
        if self.sparsity_method not in _SPARSITY_METHODS:
            raise bad(
                f"sparsity_method must be one of {_SPARSITY_METHODS}, found {self.sparsity_method!r}"
            )
        if self.importance not in _IMPORTANCE:
            raise bad(f"importance must be one of {_IMPORTANCE}, found {self.importance!r}")
        if not (isinstance(self.sparsity, (int, float)) and 0.0 <= self.sparsity < 1.0):
            raise bad(f"sparsity must be in [0, 1), found {self.sparsity!r}")
        if self.method is not None and self.method not in _METHODS:
            raise bad(f"method must be one of {_METHODS}, found {self.method!r}")
        if self.structure not in _STRUCTURES:
            raise bad(f"structure must be one of {_STRUCTURES}, found {self.structure!r}")
        if self.layout is not None and self.layout not in _LAYOUTS:
            raise bad(f"layout must be one of {_LAYOUTS}, found {self.layout!r}")
        if self.scale_dtype is not None and self.scale_dtype not in _SCALE_DTYPES:
            raise bad(f"scale_dtype must be one of {_SCALE_DTYPES}, found {self.scale_dtype!r}")
        if isinstance(self.damp, bool) or not (
            isinstance(self.damp, (int, float)) and 0.0 < self.damp <= 1.0
        ):
            raise bad(f"damp must be a number in (0, 1], found {self.damp!r}")
        if not isinstance(self.act_order, bool):
            raise bad(f"act_order must be true or false, found {self.act_order!r}")
        if not isinstance(self.awq, bool):
            raise bad(f"awq must be true or false, found {self.awq!r}")
        if not isinstance(self.awq_clip, bool):
            raise bad(f"awq_clip must be true or false, found {self.awq_clip!r}")
        if self.awq_clip and not (self.awq or self.method == "awq"):
            raise bad("awq_clip goes with awq=True or method 'awq'")
        if self.awq_search not in ("rtn", "solver"):
            raise bad(f"awq_search must be 'rtn' or 'solver', found {self.awq_search!r}")
        if self.awq_search != "rtn" and not self.awq:
            raise bad("awq_search goes with awq=True (and method 'gptq' or 'hqq')")
        if self.awq_clip and self.method == "hqq":
            raise bad("awq_clip goes with method 'awq' or 'gptq' (hqq refines its own grid)")
        if (self.awq or self.method == "awq") and self.sparsity and self.sparsity_method == "sparsegpt":
            raise bad(
                "awq with sparsity_method 'sparsegpt' is not supported (SparseGPT prunes and "
                "quantizes jointly on the unscaled weight); use sparsity_method 'wanda'"
            )
        if self.sparsity and self.sparsity_method == "wanda" and self.method == "gptq":
            raise bad(
                "method 'gptq' with sparsity_method 'wanda' would refill the pruned weights; use "
                "sparsity_method 'sparsegpt' (prunes and quantizes jointly)"
            )
        if self.structure != "unstructured" and self.sparsity_method not in CALIBRATED_SPARSITY:
            raise bad(
                f"structure {self.structure!r} goes with sparsity_method 'sparsegpt' or 'wanda' "
                f"(found {self.sparsity_method!r}; 'nm' and 'block' are their own methods)"
            )
        object.__setattr__(self, "block_shape", tuple(int(b) for b in self.block_shape))
        # Contradictions inside one rule.
        quant_only = {
            "bits": self.bits != 8,
            "granularity": self.granularity is not None,
            "axis": self.axis is not None,
            "block_size": self.block_size is not None,
            "symmetric": self.symmetric is not True,
            "calibration": self.calibration != "minmax",
            "percentile": self.percentile is not None,
            "method": self.method is not None,
            "awq": self.awq,
            "awq_clip": self.awq_clip,
            "awq_search": self.awq_search != "rtn",
            "scale_dtype": self.scale_dtype is not None,
        }
        if self.action != "quantize":
            set_ = [k for k, v in quant_only.items() if v]
            if set_:
                raise bad(f"action {self.action!r} conflicts with quantization settings {set_}")
        if self.block_size is not None:
            if self.granularity not in (None, "block"):
                raise bad(f"block_size={self.block_size} conflicts with granularity {self.granularity!r}")
            if int(self.block_size) < 1:
                raise bad(f"block_size must be >= 1, found {self.block_size}")
        if self.granularity == "tensor" and self.axis is not None:
            raise bad("granularity 'tensor' conflicts with an axis")
        if (self.calibration == "percentile") != (self.percentile is not None):
            raise bad("calibration 'percentile' and a percentile value go together")
        if (self.method in ("gptq", "hqq") or (self.awq and self.method is not None and self.method != "rtn")) and self.calibration != "minmax":
            raise bad(
                f"method {self.method!r} chooses its own grid; calibration "
                f"{self.calibration!r} applies to method 'rtn' only"
            )
        nm = self.sparsity_method == "nm" or (
            self.sparsity_method in CALIBRATED_SPARSITY and self.structure == "nm"
        )
        if nm and self.sparsity:
            if not (1 <= self.n < self.m) or not math.isclose(self.sparsity, 1 - self.n / self.m):
                raise bad(
                    f"N:M pruning {self.n}:{self.m} gives sparsity {1 - self.n / self.m:g}, "
                    f"found sparsity={self.sparsity}"
                )

    # -- resolved settings -------------------------------------------------------------------
    def resolved_granularity(self) -> str:
        """The granularity this rule uses: its own; else block when it has a block size or 4 bits; else channel."""
        if self.granularity is not None:
            return self.granularity
        if self.block_size is not None:
            return "block"
        return "block" if self.bits == 4 else "channel"

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults (plus ``pattern``)."""
        out: dict[str, Any] = {"pattern": self.pattern}
        for f in dataclasses.fields(self):
            if f.name == "pattern":
                continue
            v = getattr(self, f.name)
            if v != f.default:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rule:
        """The rule described by ``d`` (the form :meth:`to_dict` writes); unknown keys are errors."""
        if not isinstance(d, Mapping):
            raise ArgumentError(f"a rule must be a mapping, found {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ArgumentError(
                f"rule {_short(repr(d.get('pattern')))} has unknown keys {_few(unknown)}; "
                f"known: {sorted(names)}"
            )
        kw = dict(d)
        if "block_shape" in kw:
            kw["block_shape"] = tuple(kw["block_shape"])
        return cls(**kw)


def _method(method: str, awq: bool) -> tuple[str, bool]:
    """A plan's ``(method, awq)``: method ``"awq"`` is round to nearest after AWQ scaling."""
    if method == "awq":
        return "rtn", True
    return method, bool(awq)


@dataclass(frozen=True)
class Plan:
    """What happens to one tensor (a resolved rule)."""

    encoding: str  # "raw", "float16", "quant", "sparse"
    rule: Rule | None
    bits: int = 8
    axis: int | None = None
    block_size: int | None = None
    symmetric: bool = True
    calibration: str = "minmax"
    percentile: float | None = None
    sparsity: float = 0.0
    method: str = "rtn"
    layout: str = "out_in"
    sparsity_method: str = "magnitude"
    structure: str = "unstructured"
    awq: bool = False
    awq_clip: bool = False
    awq_search: str = "rtn"
    scale_dtype: str = "float32"

    def needs_hessian(self) -> bool:
        """Whether encoding this tensor needs the full ``X^T X`` of its input."""
        return (self.encoding == "quant" and self.method == "gptq") or (
            bool(self.sparsity) and self.sparsity_method == "sparsegpt"
        )

    def needs_stats(self) -> bool:
        """Whether encoding this tensor needs calibration statistics at all."""
        return (
            self.needs_hessian()
            or (bool(self.sparsity) and self.sparsity_method == "wanda")
            or (self.encoding == "quant" and self.awq)
        )


@dataclass(frozen=True)
class Recipe:
    """An ordered tuple of :class:`Rule` (first match wins) and a ``default`` for the rest.

    * ``method``: the quantization method of tensors whose rule leaves it unset, and of those
      the ``"auto"`` default quantizes (``"rtn"``, ``"gptq"`` or ``"hqq"``; see :class:`Rule`).
    * ``budget_bits``: an average bits-per-weight budget over the 2-D quantized tensors whose
      scheme it decides, counting the scales and zero points (int8 per channel is about 8.1
      bits, int4 in blocks of 32 about 5, of 128 about 4.25). edgepack chooses each one's
      scheme among int8 per channel and int4 in blocks of 16, 32, 64 and 128 (symmetric or
      affine as its rule says) to minimise the summed relative output error (with calibration
      statistics; the relative weight error for tensors without them) within the budget.
      Tensors whose rule sets ``bits``, ``granularity`` or ``block_size`` keep their scheme and
      are outside the budget.
    * ``scale_dtype``: how quantized tensors store their scales (``"float32"`` or
      ``"float16"``) unless their rule says; ``budget_bits`` counts 16 or 32 bits per scale.
    * ``budget_sparsity``: the fraction of the prunable weights (every 2-D float tensor the
      calibration statistics cover, plus those whose rule asks for sparsity) that the model as
      a whole drops; each tensor's sparsity is chosen within 0.1 of the budget (in steps of
      0.025) to minimise the summed relative output error of its pruning (Wanda's objective
      on the calibration data).
      Pruning follows each tensor's rule's method (``"sparsegpt"`` when the statistics hold
      ``X^T X``, else ``"wanda"``, for tensors without a pruning rule).
    * ``awq``: AWQ scaling (see :class:`Rule`) for every quantized tensor the calibration
      statistics cover, before its method (``method="gptq", awq=True``: AWQ then GPTQ).
    """

    rules: tuple[Rule, ...] = ()
    default: str = "auto"
    zstd_level: int = 1
    min_elements: int = 1024
    method: str = "rtn"
    budget_bits: float | None = None
    budget_sparsity: float | None = None
    awq: bool = False
    scale_dtype: str = "float32"

    def __post_init__(self) -> None:
        if not isinstance(self.awq, bool):
            raise ArgumentError(f"recipe awq must be true or false, found {self.awq!r}")
        rules = tuple(r if isinstance(r, Rule) else Rule.from_dict(r) for r in self.rules)
        object.__setattr__(self, "rules", rules)
        if self.default not in _DEFAULTS:
            raise ArgumentError(f"recipe default must be one of {_DEFAULTS}, found {self.default!r}")
        if self.method not in _METHODS:
            raise ArgumentError(f"recipe method must be one of {_METHODS}, found {self.method!r}")
        if self.scale_dtype not in _SCALE_DTYPES:
            raise ArgumentError(
                f"recipe scale_dtype must be one of {_SCALE_DTYPES}, found {self.scale_dtype!r}"
            )
        b = self.budget_bits
        if b is not None and (
            isinstance(b, bool) or not isinstance(b, (int, float)) or not 2.0 <= b <= 16.0
        ):
            raise ArgumentError(f"budget_bits must be a number in [2, 16], found {b!r}")
        sp = self.budget_sparsity
        if sp is not None and (
            isinstance(sp, bool) or not isinstance(sp, (int, float)) or not 0.0 <= sp <= 0.9
        ):
            raise ArgumentError(f"budget_sparsity must be a number in [0, 0.9], found {sp!r}")
        if not (isinstance(self.zstd_level, int) and -7 <= self.zstd_level <= 22):
            raise ArgumentError(f"zstd_level must be an int in -7..=22, found {self.zstd_level!r}")
        seen: dict[str, Rule] = {}
        for r in rules:
            if r.pattern in seen:
                if seen[r.pattern] != r:
                    raise ArgumentError(
                        f"conflicting rules for pattern {r.pattern!r}: {seen[r.pattern].to_dict()} "
                        f"and {r.to_dict()} (the first always wins; remove one)"
                    )
                raise ArgumentError(f"rule {r.pattern!r} is listed twice")
            seen[r.pattern] = r
        # Matching index: a pattern without glob characters matches only the name it spells,
        # so those rules are found by a dict lookup; only the glob rules are tried in order
        # (a CLI recipe with one rule per tensor is linear, not quadratic, in the tensors).
        exact: dict[str, int] = {}
        globs: list[tuple[int, Rule]] = []
        for i, r in enumerate(rules):
            if any(c in r.pattern for c in "*?["):
                globs.append((i, r))
            else:
                exact.setdefault(r.pattern, i)
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_globs", tuple(globs))

    # -- matching ------------------------------------------------------------------------------
    def match(self, name: str) -> Rule | None:
        """The first rule whose pattern matches ``name``, or None."""
        first: int | None = self._exact.get(name)  # type: ignore[attr-defined]
        globs: tuple[tuple[int, Rule], ...] = self._globs  # type: ignore[attr-defined]
        for i, r in globs:
            if first is not None and i > first:
                break
            if fnmatch.fnmatchcase(name, r.pattern):
                return r
        return self.rules[first] if first is not None else None

    def plan(
        self, name: str, shape: tuple[int, ...], is_float: bool, layout: str | None = None
    ) -> Plan:
        """What happens to a tensor of this name and shape.

        ``layout``: the layout hint of the tensor's calibration statistics, if any (a rule's
        own ``layout`` wins over it).
        """
        r = self.match(name)
        size = math.prod(shape)
        lay = (r.layout if r is not None else None) or layout or "out_in"
        out_axis, in_axis = (0, 1) if lay == "out_in" else (1, 0)
        if r is None:
            if self.default == "auto" and is_float and len(shape) >= 2 and size >= self.min_elements:
                default_axis = out_axis if len(shape) == 2 else 0
                m, awq = _method(self.method, self.awq)
                return Plan(
                    "quant", None, bits=8, axis=default_axis, method=m, layout=lay, awq=awq,
                    scale_dtype=self.scale_dtype,
                )
            return Plan("raw", None, layout=lay)
        if not is_float and (r.action != "keep" or r.sparsity):
            raise ArgumentError(
                f"tensor {name!r}: rule {r.pattern!r} asks to {r.action} a non-float tensor; "
                "only float tensors can be quantized, converted or pruned (use action='keep')"
            )
        prune_kw: dict[str, Any] = {
            "sparsity": r.sparsity,
            "layout": lay,
            "sparsity_method": r.sparsity_method,
            "structure": r.structure,
        }
        if r.action == "keep":
            return Plan("sparse" if r.sparsity else "raw", r, **prune_kw)
        if r.action == "float16":
            return Plan("float16", r, **prune_kw)
        g = r.resolved_granularity()
        rank = len(shape)
        axis: int | None
        block: int | None = None
        two_d = rank == 2
        if g == "tensor" or rank == 0:
            axis = None
        elif g == "channel":
            axis = (out_axis if two_d else 0) if r.axis is None else r.axis
        else:
            axis = ((in_axis if two_d else 1) if rank >= 2 else 0) if r.axis is None else r.axis
            block = 32 if r.block_size is None else int(r.block_size)
        if axis is not None:
            if not -rank <= axis < rank:
                raise ArgumentError(
                    f"tensor {name!r}: rule {r.pattern!r} has axis {axis}, out of range for "
                    f"shape {shape}"
                )
            axis %= rank
        method, awq = _method(r.method or self.method, r.awq or self.awq)
        return Plan(
            "quant",
            r,
            bits=r.bits,
            axis=axis,
            block_size=block,
            symmetric=r.symmetric,
            calibration=r.calibration,
            percentile=r.percentile,
            sparsity=r.sparsity,
            method=method,
            layout=lay,
            sparsity_method=r.sparsity_method,
            structure=r.structure,
            awq=awq,
            awq_clip=r.awq_clip and awq,
            awq_search=r.awq_search,
            scale_dtype=r.scale_dtype or self.scale_dtype,
        )

    def unused_patterns(self, names: list[str]) -> list[str]:
        """Patterns that decide no tensor among ``names`` (no match, or always shadowed)."""
        used = {id(r) for n in names if (r := self.match(n)) is not None}
        return [r.pattern for r in self.rules if id(r) not in used]

    # -- (de)serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back (defaults left out)."""
        d: dict[str, Any] = {
            "default": self.default,
            "min_elements": self.min_elements,
            "rules": [r.to_dict() for r in self.rules],
            "zstd_level": self.zstd_level,
        }
        if self.method != "rtn":
            d["method"] = self.method
        if self.budget_bits is not None:
            d["budget_bits"] = self.budget_bits
        if self.budget_sparsity is not None:
            d["budget_sparsity"] = self.budget_sparsity
        if self.awq:
            d["awq"] = True
        if self.scale_dtype != "float32":
            d["scale_dtype"] = self.scale_dtype
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipe:
        """The recipe described by ``d`` (the form :meth:`to_dict` writes)."""
        if not isinstance(d, Mapping):
            raise ArgumentError(f"a recipe must be a mapping, found {type(d).__name__}")
        known = {
            "default",
            "rules",
            "zstd_level",
            "min_elements",
            "method",
            "budget_bits",
            "budget_sparsity",
            "awq",
            "scale_dtype",
        }
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArgumentError(f"recipe has unknown keys {_few(unknown)}; known: {sorted(known)}")
        rules = d.get("rules", [])
        if not isinstance(rules, (list, tuple)):
            raise ArgumentError(f"recipe rules must be a list, found {type(rules).__name__}")
        return cls(
            rules=tuple(Rule.from_dict(r) for r in rules),
            default=d.get("default", "auto"),
            zstd_level=d.get("zstd_level", 1),
            min_elements=d.get("min_elements", 1024),
            method=d.get("method", "rtn"),
            budget_bits=d.get("budget_bits"),
            budget_sparsity=d.get("budget_sparsity"),
            awq=d.get("awq", False),
            scale_dtype=d.get("scale_dtype", "float32"),
        )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the form stored in .epk files."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike[str]) -> Recipe:
        """From a JSON string, or the path of a ``.json`` file."""
        s = os.fspath(text_or_path)
        if not s.lstrip().startswith("{"):
            with open(s, encoding="utf-8") as f:
                s = f.read()
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ArgumentError(f"recipe is not valid JSON: {e}") from e
        return cls.from_dict(d)

    def to_toml(self) -> str:
        """TOML text that :meth:`from_toml` reads back (``None`` fields are omitted)."""

        def val(v: Any) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, (int, float)):
                return repr(v)
            if isinstance(v, str):
                return json.dumps(v)
            if isinstance(v, (list, tuple)):
                return "[" + ", ".join(val(x) for x in v) + "]"
            raise TypeError(v)

        d = self.to_dict()
        top = ("default", "min_elements", "zstd_level", "method", "budget_bits", "budget_sparsity")
        lines = [f"{k} = {val(d[k])}" for k in top if k in d]
        for r in d["rules"]:
            lines.append("")
            lines.append("[[rules]]")
            lines.extend(f"{k} = {val(v)}" for k, v in r.items() if v is not None)
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text_or_path: str | os.PathLike[str]) -> Recipe:
        """From a TOML file path (or TOML text containing a newline)."""
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - 3.10 only
            try:
                import tomli as tomllib
            except ModuleNotFoundError as e:
                raise ModuleNotFoundError(
                    "reading a TOML recipe on Python 3.10 needs the 'tomli' package "
                    "(pip install tomli); Python 3.11+ has tomllib built in. "
                    "JSON recipes (Recipe.from_json) work everywhere."
                ) from e
        s = os.fspath(text_or_path)
        if "\n" not in s:
            with open(s, "rb") as f:
                s = f.read().decode("utf-8")
        try:
            d = tomllib.loads(s)
        except tomllib.TOMLDecodeError as e:
            raise ArgumentError(f"recipe is not valid TOML: {e}") from e
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recipe:
        """From a ``.json`` or ``.toml`` file (by extension)."""
        p = os.fspath(path)
        if p.endswith(".toml"):
            return cls.from_toml(p)
        return cls.from_json(p)

    @classmethod
    def coerce(cls, recipe: Recipe | Mapping[str, Any] | str | os.PathLike[str] | None) -> Recipe:
        """A Recipe from a Recipe, a dict, a JSON / TOML file path, or None (the defaults)."""
        if recipe is None:
            return cls()
        if isinstance(recipe, Recipe):
            return recipe
        if isinstance(recipe, Mapping):
            return cls.from_dict(recipe)
        if isinstance(recipe, (str, os.PathLike)):
            s = os.fspath(recipe)
            if s.lstrip().startswith("{"):
                return cls.from_json(s)
            return cls.load(s)
        raise ArgumentError(
            f"`recipe` must be a Recipe, a dict, a JSON string or a .json/.toml path, "
            f"found {type(recipe).__name__}"
        )


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _few(keys: list[str], n: int = 5) -> str:
    """At most ``n`` keys for an error message (a recipe read from a file may hold millions)."""
    shown = ", ".join(_short(repr(k), 80) for k in keys[:n])
    return f"[{shown}{f', ... ({len(keys)} in all)' if len(keys) > n else ''}]"
