"""Two-thread matmul comparisons with each library alone in its own process.

In one process, onnxruntime's and torch's worker threads keep spinning after their calls (more
than a second for onnxruntime's pool), so whichever library is timed next on a 2-core machine
runs with one core taken. Here every (implementation, shape) is timed in a fresh child process
that imports only the library it times; rounds alternate between implementations, and each
one's best is kept. Same inputs as `python -m edgepack.bench.matmul` (int8 B packed once or
pre-packed by the peer, uint8 activations; QuantizedLinear with float32 x and bias).

Run: `python benches/matmul_isolated.py [--threads 2] [--rounds 2] [--shape M,K,N ...]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from edgepack.bench.matmul import SHAPES

IMPLS = {
    "matmul_integer": ["edgepack", "ort MatMulInteger", "torch _int_mm"],
    "QuantizedLinear": ["edgepack", "ort DynamicQuantizeMatMul", "torch dynamic Linear"],
}


def inputs(m: int, k: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    a_u8 = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    b = np.clip(np.rint(rng.standard_t(3, size=(k, n)) * 20), -127, 127).astype(np.int8)
    w = (rng.standard_t(3, size=(n, k)) * 0.02).astype(np.float32)
    bias = rng.normal(0, 0.1, n).astype(np.float32)
    x = rng.normal(0, 1, (m, k)).astype(np.float32)
    return {"a_u8": a_u8, "b": b, "w": w, "bias": bias, "x": x}


def callable_for(op: str, impl: str, shape: tuple[int, int, int], threads: int):
    """Only the library being timed is imported."""
    d = inputs(*shape)
    if impl == "edgepack":
        import edgepack as ep

        ep.set_num_threads(threads)
        if op == "matmul_integer":
            packed = ep.pack_matrix(d["b"])
            return lambda: ep.matmul_integer(d["a_u8"], packed)
        layer = ep.QuantizedLinear.from_float(d["w"], d["bias"])
        return lambda: layer(d["x"])
    if impl.startswith("ort"):
        from edgepack.bench.matmul import _ort_session

        if op == "matmul_integer":
            return _ort_session("MatMulInteger", {"a": d["a_u8"]}, {"b": d["b"]}, np.int32, threads)
        w = d["w"]
        q_w = np.clip(np.rint(w / (np.abs(w).max(axis=1, keepdims=True) / 127)), -127, 127)
        s_w = (np.abs(w).max(axis=1) / 127).astype(np.float32)
        return _ort_session(
            "DynamicQuantizeMatMul",
            {"A": d["x"]},
            {
                "B": np.ascontiguousarray(q_w.astype(np.int8).T),
                "b_scale": s_w,
                "b_zero_point": None,
                "bias": d["bias"],
            },
            np.float32,
            threads,
            domain="com.microsoft",
        )
    import torch  # type: ignore[import-not-found]

    torch.set_num_threads(threads)
    m, k, n = shape
    if op == "matmul_integer":
        if not (m > 16 and k % 8 == 0 and n % 8 == 0):
            return None  # torch._int_mm needs M > 16
        ta = torch.from_numpy((d["a_u8"] ^ 0x80).view(np.int8).copy())
        tb = torch.from_numpy(d["b"].copy())
        return lambda: torch._int_mm(ta, tb)
    lin = torch.nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(d["w"]))
        lin.bias.copy_(torch.from_numpy(d["bias"]))
    qlin = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
    )
    tx = torch.from_numpy(d["x"])

    def run():
        with torch.inference_mode():
            return qlin(tx)

    return run


def child(op: str, impl: str, shape: tuple[int, int, int], threads: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    from edgepack.bench import best_time

    try:
        f = callable_for(op, impl, shape, threads)
    except ImportError:
        f = None
    print(json.dumps(None if f is None else best_time(f, min_time=0.5, max_repeat=200)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shape", action="append", default=None, help="M,K,N (repeatable)")
    ap.add_argument("--child", nargs=3, metavar=("OP", "IMPL", "SHAPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        op, impl, s = args.child
        m, k, n = (int(v) for v in s.split(","))
        child(op, impl, (m, k, n), args.threads)
        return
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape] if args.shape else SHAPES
    print(f"| case | {args.threads} threads, each library alone | ms | GOP/s | edgepack speed-up |")
    print("|---|---|---:|---:|---|")
    for shape in shapes:
        m, k, n = shape
        for op, impls in IMPLS.items():
            best: dict[str, float] = {}
            for _ in range(args.rounds):
                for impl in impls:
                    cmd = [sys.executable, __file__, "--threads", str(args.threads)]
                    cmd += ["--child", op, impl, f"{m},{k},{n}"]
                    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    t = json.loads(run.stdout.strip().splitlines()[-1])
                    if t is not None:
                        best[impl] = min(best.get(impl, float("inf")), t)
            for impl, t in best.items():
                ratio = (
                    ", ".join(f"{best[p] / t:.2f}x vs {p}" for p in best if p != "edgepack")
                    if impl == "edgepack"
                    else ""
                )
                gops = 2 * m * k * n / t / 1e9
                print(f"| {op} ({m},{k},{n}) | {impl} | {t * 1e3:.3f} | {gops:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
