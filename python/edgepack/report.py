"""The per-layer report of a compressed model: :class:`Report` and :class:`ReportRow`.

Error columns compare the decompressed tensor ``y`` with the original ``x`` (both as float,
accumulated in float64 over chunks):

* ``snr_db = 10 * log10(sum(x**2) / sum((x - y)**2))`` (``inf`` when exact, shown as ``None``
  in JSON),
* ``rel_error = ||x - y|| / ||x||``,
* ``cosine = x.y / (||x|| ||y||)``,
* ``max_abs_error = max |x - y|``,
* ``sparsity`` = fraction of exact zeros in ``y``,
* ``bits_per_weight = 8 * bytes_after / parameters``, where ``bytes_after`` is the stored
  payload bytes (after entropy coding, without the file's header and padding).

With calibration statistics (``compress(..., calibration=stats)``), 2-D weights whose input
was recorded also get the error of the layer's *output* on the calibration data, with
``H = X^T X / tokens`` and ``E = W' - W`` in ``(out, in)`` layout:

* ``output_snr_db = 10 * log10(tr(W H W^T) / tr(E H E^T))``,
* ``output_rel_error = sqrt(tr(E H E^T) / tr(W H W^T))``.

That is what calibration-aware methods minimise, so it shows what calibration bought: a GPTQ
layer often has a lower weight SNR than plain rounding and a higher output SNR.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Report", "ReportRow", "tensor_stats", "ErrorAccumulator"]


class ErrorAccumulator:
    """Error sums over chunks of ``(x, y)`` pairs (one pass each in the core, float64 sums),
    so a tensor's statistics never need its whole decoded copy at once."""

    def __init__(self) -> None:
        self.sxx = self.syy = self.sxy = self.sdd = self.max_abs = 0.0
        self.zeros = 0
        self.n = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        from edgepack import _core

        xf = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        yf = np.ascontiguousarray(y, dtype=np.float32).reshape(-1)
        sxx, syy, sxy, sdd, mx, zeros = _core.error_sums(xf, yf)
        self.sxx += sxx
        self.syy += syy
        self.sxy += sxy
        self.sdd += sdd
        self.max_abs = mx if math.isnan(mx) else max(self.max_abs, mx)
        self.zeros += zeros
        self.n += xf.size

    def result(self) -> dict[str, float | None]:
        sxx, syy, sxy, sdd = self.sxx, self.syy, self.sxy, self.sdd
        if sdd == 0.0:
            snr = math.inf
        else:
            snr = 10.0 * math.log10(sxx / sdd) if sxx > 0 else -math.inf
        rel = math.sqrt(sdd / sxx) if sxx > 0 else (0.0 if sdd == 0 else math.inf)
        cos = sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else (1.0 if sdd == 0 else 0.0)
        return {
            "sparsity": self.zeros / self.n if self.n else 0.0,
            "snr_db": snr,
            "rel_error": rel,
            "cosine": cos,
            "max_abs_error": self.max_abs,
        }


def tensor_stats(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Error statistics of ``y`` (decoded) against ``x`` (original): one pass in the core with
    float64 sums (``src/model/stats.rs``), no temporary arrays for float32 inputs."""
    acc = ErrorAccumulator()
    acc.add(x, y)
    return acc.result()


@dataclass(frozen=True)
class ReportRow:
    name: str
    shape: tuple[int, ...]
    parameters: int
    encoding: str
    sparsity: float | None
    bits_per_weight: float
    bytes_before: int
    bytes_after: int
    ratio: float
    snr_db: float | None
    rel_error: float | None
    cosine: float | None
    max_abs_error: float | None
    output_snr_db: float | None = None
    output_rel_error: float | None = None


def _num(v: float | None) -> float | None:
    """JSON-safe: inf / nan -> None."""
    if v is None or not math.isfinite(v):
        return None
    return v


@dataclass(frozen=True)
class Report:
    """One row per tensor (sorted by name) and the totals."""

    rows: tuple[ReportRow, ...]
    #: The model the report describes (for :meth:`plot` histograms); not compared or shown.
    model: Any = field(default=None, compare=False, repr=False)

    @property
    def totals(self) -> dict[str, Any]:
        """Whole-model figures: tensors, parameters, bytes before / after, ratio, bits per weight."""
        params = sum(r.parameters for r in self.rows)
        before = sum(r.bytes_before for r in self.rows)
        after = sum(r.bytes_after for r in self.rows)
        return {
            "tensors": len(self.rows),
            "parameters": params,
            "bytes_before": before,
            "bytes_after": after,
            "ratio": before / after if after else math.inf,
            "bits_per_weight": 8 * after / params if params else 0.0,
        }

    @functools.cached_property
    def _index(self) -> dict[str, ReportRow]:
        return {r.name: r for r in self.rows}

    def __getitem__(self, name: str) -> ReportRow:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(name) from None

    def __len__(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """Rows and totals as plain Python data (what :meth:`to_json` serialises)."""
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["shape"] = list(r.shape)
            for k in (
                "snr_db",
                "rel_error",
                "cosine",
                "max_abs_error",
                "sparsity",
                "ratio",
                "output_snr_db",
                "output_rel_error",
            ):
                d[k] = _num(d[k])
            rows.append(d)
        t = dict(self.totals)
        t["ratio"] = _num(t["ratio"])
        return {"rows": rows, "totals": t}

    def to_json(self, **kw: Any) -> str:
        """The report as JSON (``inf`` / ``nan`` become ``null``)."""
        kw.setdefault("indent", 1)
        return json.dumps(self.to_dict(), **kw)

    def to_markdown(self) -> str:
        """A markdown table: one row per tensor, then the totals."""
        def f(v: float | None, fmt: str) -> str:
            if v is None:
                return "-"
            if math.isinf(v):
                return "inf"
            return format(v, fmt)

        lines = [
            "| tensor | shape | params | encoding | sparsity | bits/w | bytes before | bytes after "
            "| ratio | SNR dB | rel err | cosine | max abs err | output SNR dB |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.name} | {'x'.join(map(str, r.shape)) or 'scalar'} | {r.parameters} | "
                f"{r.encoding} | {f(r.sparsity, '.3f')} | {r.bits_per_weight:.2f} | "
                f"{r.bytes_before} | {r.bytes_after} | {f(r.ratio, '.2f')} | "
                f"{f(r.snr_db, '.1f')} | {f(r.rel_error, '.2e')} | {f(r.cosine, '.6f')} | "
                f"{f(r.max_abs_error, '.3g')} | {f(r.output_snr_db, '.1f')} |"
            )
        t = self.totals
        lines.append(
            f"| **total** ({t['tensors']} tensors) | | {t['parameters']} | | | "
            f"{t['bits_per_weight']:.2f} | {t['bytes_before']} | {t['bytes_after']} | "
            f"{f(t['ratio'], '.2f')} | | | | | |"
        )
        return "\n".join(lines)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame, one row per tensor (needs pandas)."""
        try:
            import pandas as pd
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError("Report.to_dataframe needs pandas (pip install pandas)") from e
        return pd.DataFrame([asdict(r) for r in self.rows])

    def plot(self, path: Any, *, histograms: Any = None, model: Any = None) -> None:
        """Save a figure: per-layer SNR and size bars; with ``histograms`` (tensor names), a
        histogram of each decompressed tensor (log counts) with its quantization grid (the grid of
        its median scale, drawn when at most 80 levels fall in the data's range). ``model`` defaults to the model the report came from. Needs
        matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError("Report.plot needs matplotlib (pip install matplotlib)") from e
        names = list(histograms or [])
        model = self.model if model is None else model
        nplots = 2 + len(names)
        fig, axes = plt.subplots(nplots, 1, figsize=(max(6, 0.3 * len(self.rows) + 4), 3 * nplots))
        labels = [r.name for r in self.rows]
        snr = [(_num(r.snr_db) or 0.0) for r in self.rows]
        axes[0].bar(range(len(labels)), snr)
        axes[0].set_ylabel("SNR (dB)")
        axes[1].bar(range(len(labels)), [r.bytes_before for r in self.rows], label="before")
        axes[1].bar(range(len(labels)), [r.bytes_after for r in self.rows], label="after")
        axes[1].set_ylabel("bytes")
        axes[1].legend()
        for ax in axes[:2]:
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        for ax, name in zip(axes[2:], names):
            if model is None:
                raise ValueError("histograms need `model=` (the CompressedModel)")
            w = np.asarray(model.decompress(name), dtype=np.float32).reshape(-1)
            lo, hi = (float(w.min()), float(w.max())) if w.size else (-1.0, 1.0)
            pad = 0.02 * (hi - lo or 1.0)
            ax.hist(w, bins=200, range=(lo - pad, hi + pad))
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_yscale("log")  # pruned zeros and the tails on one axis
            title = f"{name}: decompressed values"
            scale = getattr(model[name], "scale", None)
            if scale is not None and np.asarray(scale).size:
                # The grid of the median scale (per-channel tensors have one grid per channel);
                # drawn only where it can be seen.
                step = float(np.median(np.asarray(scale, dtype=np.float64)))
                levels = np.arange(np.ceil((lo - pad) / step), np.floor((hi + pad) / step) + 1)
                if 0 < levels.size <= 80:
                    for k in levels:
                        ax.axvline(k * step, lw=0.3, color="k", alpha=0.5)
                title += f" (quantization step {step:.3g}, median over {np.asarray(scale).size} scales)"
            ax.set_title(title, fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
