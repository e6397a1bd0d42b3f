#!/usr/bin/env python3
"""GPTQ / SparseGPT in ``precision="float32"`` (the default) vs ``"float64"``: the relative output
error ``tr((W - W') H (W - W')^T) / tr(W H W^T)`` of both, on every linear layer of a real
sentence encoder with its real calibration activations, and on a synthetic heavy-tailed layer.

Run (a script, not collected by pytest; nothing is downloaded, the model path is an argument)::

    python benches/eval_precision.py --model paraphrase-MiniLM-L3-v2.onnx [--big]

Columns: ``rel f64`` (float64's relative error), ``f32/f64-1`` (float32's error relative to
float64's), ``noise`` (the same for float64 on W perturbed by one float32 ulp per weight: how
much a solver's result moves for an input change far below any real one), ``agree`` (codes or
mask entries equal to float64's) and ``agreeN`` (the same for the perturbed run).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import eval_calibration_bert as bert  # noqa: E402
import eval_calibration_text as text  # noqa: E402
from bench_calibration import layer  # noqa: E402

from edgepack import _core  # noqa: E402
from edgepack.quantize import quantize  # noqa: E402


def layers(model: str, big: bool):
    import onnx
    from onnx import numpy_helper

    from edgepack.calibration import collect_onnx

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(model).graph.initializer}
    stats = collect_onnx(model, [bert.batch([s]) for s in text.CALIB_IDS], full=True)
    for name in stats.names():
        if name in inits and inits[name].ndim == 2:
            w = inits[name].astype(np.float32)
            w = np.ascontiguousarray(w.T) if stats.layout(name) == "in_out" else w
            yield name, w, stats.hessian(name)
    yield ("synthetic 1024x1024", *layer(1024, 1024))
    if big:
        yield ("synthetic 4096x4096", *layer(4096, 4096))


def run(kind: str, w: np.ndarray, h: np.ndarray, prec: str, w_in: np.ndarray):
    """(W', decisions) of one solver on ``w_in`` with the grid of ``w``."""
    out, inp = w.shape
    if kind in ("gptq4", "gptq8"):
        bits = 4 if kind == "gptq4" else 8
        qt = quantize(w, bits=bits, axis=1, block_size=32) if bits == 4 else quantize(w, bits=8, axis=0)
        s = np.asarray(qt.scale, np.float32).reshape(out, -1)
        cb = 32 if bits == 4 else inp
        q = 7 if bits == 4 else 127
        codes, _ = _core.gptq(w_in, h, s, None, 1, cb, -q, q, 0.01, True, 128, precision=prec)
        return codes.astype(np.float32) * np.repeat(s, cb, axis=1)[:, :inp], codes
    nm = dict(structure="nm", n=2, m=4) if kind == "nm24" else {}
    w_out, keep, _, _ = _core.sparsegpt(w_in, h, 0.5, precision=prec, **nm)
    return w_out, keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--big", action="store_true", help="also a 4096 x 4096 synthetic layer")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'layer':<24}{'kind':<7}{'rel f64':>11}{'f32/f64-1':>11}{'noise':>11}"
          f"{'agree':>9}{'agreeN':>9}")
    for name, w, h in layers(args.model, args.big):
        w64 = w.astype(np.float64)
        total = float(np.einsum("ij,jk,ik->", w64, h, w64))
        ulp = np.float32(2**-23) * rng.choice([-1, 1], w.shape).astype(np.float32)
        wp = (w * (1 + ulp)).astype(np.float32)
        for kind in ("gptq4", "gptq8", "sp50", "nm24"):
            a, da = run(kind, w, h, "float64", w)
            b, db = run(kind, w, h, "float32", w)
            c, dc = run(kind, w, h, "float64", wp)
            e = [_core.calib_objective(w, x, h) / total for x in (a, b, c)]
            print(f"{name[-24:]:<24}{kind:<7}{e[0]:>11.4e}{e[1] / e[0] - 1:>11.2e}"
                  f"{e[2] / e[0] - 1:>11.2e}{np.mean(db == da):>9.5f}{np.mean(dc == da):>9.5f}",
                  flush=True)


if __name__ == "__main__":
    main()
