"""int8 matmul and QuantizedLinear benchmarks.

For each shape (M, K, N) and thread count: ``matmul_integer`` with uint8 and int8 activations
on a packed int8 B, next to numpy float32 matmul, onnxruntime ``MatMulInteger`` (uint8 x int8,
B a constant initializer) and torch ``_int_mm`` when installed; and ``QuantizedLinear`` next to
numpy float32 ``x @ W.T + b``, onnxruntime ``DynamicQuantizeMatMul`` and torch's dynamic
quantized Linear when installed. GOP/s = 2 M K N / time. Time the numpy baseline with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from edgepack.bench import Case, Result

SHAPES = [
    (1, 4096, 4096),
    (8, 4096, 4096),
    (64, 4096, 4096),
    (128, 768, 3072),
    (512, 1024, 1024),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
]
QUICK_SHAPES = [(1, 256, 192), (64, 256, 320)]
#: Pause before each timing of a multi-threaded case (see :func:`run_interleaved`).
IDLE_SECONDS = 0.3


def _numpy_threads(threads: int) -> Callable[[Callable[[], object]], Callable[[], object]]:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return lambda f: f
    ctl = ThreadpoolController()

    def wrap(f: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with ctl.limit(limits=threads, user_api="blas"):
                return f()

        return run

    return wrap


def _ort_session(
    op: str,
    feeds: dict[str, np.ndarray],
    inits: dict[str, np.ndarray | None],
    out_dtype: npt.DTypeLike,
    threads: int,
    domain: str = "",
) -> Callable[[], object] | None:
    try:
        import onnxruntime as ort
        from onnx import helper, numpy_helper
    except ImportError:
        return None
    graph_inputs = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for k, v in feeds.items()
    ]
    inits_pb = [numpy_helper.from_array(v, k) for k, v in inits.items() if v is not None]
    names = [*feeds, *inits]
    node_inputs = [k if (k in feeds or inits.get(k) is not None) else "" for k in names]
    node = helper.make_node(op, node_inputs, ["y"], domain=domain)
    out = helper.make_tensor_value_info(
        "y", helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype)), None
    )
    graph = helper.make_graph([node], "g", graph_inputs, [out], initializer=inits_pb)
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, feeds)


def _affine(x: np.ndarray, w_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
    y: np.ndarray = x @ w_t + bias
    return y


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def cases(quick: bool) -> list[Case]:
    import edgepack as ep

    rng = np.random.default_rng(3)
    torch = _torch()
    out: list[Case] = []
    for m, k, n in QUICK_SHAPES if quick else SHAPES:
        work = 2.0 * m * k * n
        a_u8 = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
        a_s8 = (a_u8 ^ 0x80).view(np.int8)
        b = np.clip(np.rint(rng.standard_t(3, size=(k, n)) * 20), -127, 127).astype(np.int8)
        packed = ep.pack_matrix(b)
        a_f = a_u8.astype(np.float32)
        b_f = b.astype(np.float32)
        w = (rng.standard_t(3, size=(n, k)) * 0.02).astype(np.float32)
        bias = rng.normal(0, 0.1, n).astype(np.float32)
        x = rng.normal(0, 1, (m, k)).astype(np.float32)
        w_t = np.ascontiguousarray(w.T)
        layer = ep.QuantizedLinear.from_float(w, bias)
        q_w = np.clip(np.rint(w / (np.abs(w).max(axis=1, keepdims=True) / 127)), -127, 127).astype(
            np.int8
        )
        s_w = (np.abs(w).max(axis=1) / 127).astype(np.float32)
        for threads in (1, 2):
            np_wrap = _numpy_threads(threads)
            shape = f"({m},{k},{n}) t{threads}"
            base: dict[str, Callable[[], object]] = {
                "numpy f32": np_wrap(partial(np.matmul, a_f, b_f))
            }
            ort_mm = _ort_session("MatMulInteger", {"a": a_u8}, {"b": b}, np.int32, threads)
            if ort_mm is not None:
                base["ort MatMulInteger"] = ort_mm
            if torch is not None:
                ta = torch.from_numpy(a_s8.copy())
                tb = torch.from_numpy(b.copy())
                if m > 16 and k % 8 == 0 and n % 8 == 0:

                    def int_mm(ta: Any = ta, tb: Any = tb, threads: int = threads) -> Any:
                        torch.set_num_threads(threads)
                        return torch._int_mm(ta, tb)

                    base["torch _int_mm"] = int_mm
            out.append(
                Case(
                    "matmul",
                    f"matmul_integer u8 {shape}",
                    partial(ep.matmul_integer, a_u8, packed),
                    dict(base),
                    work,
                    "GOP/s",
                    threads,
                )
            )
            # Variants, each next to onnxruntime only (the other peers are timed above).
            peer = {k: v for k, v in base.items() if k.startswith("ort")}
            out.append(
                Case(
                    "matmul",
                    f"matmul_integer s8 {shape}",
                    partial(ep.matmul_integer, a_s8, packed),
                    dict(peer),
                    work,
                    "GOP/s",
                    threads,
                )
            )
            c_out = np.empty((m, n), np.int32)
            out.append(
                Case(
                    "matmul",
                    f"matmul_integer u8 out= {shape}",
                    partial(ep.matmul_integer, a_u8, packed, out=c_out),
                    dict(peer),
                    work,
                    "GOP/s",
                    threads,
                )
            )
            # B given as a plain array on every call: the fair peers see it as a run-time input
            # too (onnxruntime cannot pre-pack it; torch `_int_mm` never pre-packs).
            unpacked_base = {k: v for k, v in base.items() if k == "torch _int_mm"}
            ort_mm_b = _ort_session("MatMulInteger", {"a": a_u8, "b": b}, {}, np.int32, threads)
            if ort_mm_b is not None:
                unpacked_base["ort MatMulInteger B input"] = ort_mm_b
            out.append(
                Case(
                    "matmul",
                    f"matmul_integer u8 unpacked B {shape}",
                    partial(ep.matmul_integer, a_u8, b),
                    unpacked_base,
                    work,
                    "GOP/s",
                    threads,
                )
            )
            lin_base: dict[str, Callable[[], object]] = {
                "numpy f32": np_wrap(partial(_affine, x, w_t, bias))
            }
            ort_dq = _ort_session(
                "DynamicQuantizeMatMul",
                {"A": x},
                {
                    "B": np.ascontiguousarray(q_w.T),
                    "b_scale": s_w,
                    "b_zero_point": None,
                    "bias": bias,
                },
                np.float32,
                threads,
                domain="com.microsoft",
            )
            if ort_dq is not None:
                lin_base["ort DynamicQuantizeMatMul"] = ort_dq
            if torch is not None:
                try:
                    lin = torch.nn.Linear(k, n)
                    with torch.no_grad():
                        lin.weight.copy_(torch.from_numpy(w))
                        lin.bias.copy_(torch.from_numpy(bias))
                    qlin = torch.ao.quantization.quantize_dynamic(
                        torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
                    )
                    tx = torch.from_numpy(x)

                    def torch_dyn(qlin: Any = qlin, tx: Any = tx, threads: int = threads) -> Any:
                        torch.set_num_threads(threads)
                        with torch.inference_mode():
                            return qlin(tx)

                    lin_base["torch dynamic Linear"] = torch_dyn
                except Exception:  # pragma: no cover - quantized engines missing
                    pass
            out.append(
                Case(
                    "matmul",
                    f"QuantizedLinear {shape}",
                    partial(layer, x),
                    lin_base,
                    work,
                    "GOP/s",
                    threads,
                )
            )
    return out


def run_interleaved(
    cases_: list[Case], *, rounds: int = 5, min_time: float = 0.1
) -> list[Result]:
    """Like :func:`edgepack.bench.run`, but ours and each baseline are timed in turn,
    ``rounds`` times, keeping each one's best: on a shared, loaded machine this compares them
    under the same conditions instead of at different moments. Multi-threaded cases pause
    :data:`IDLE_SECONDS` before each timing, so that no library's spinning workers are still
    holding a core when the next one starts."""
    import time

    import edgepack
    from edgepack.bench import best_time

    results = []
    for case in cases_:
        before = edgepack.get_num_threads()
        if case.threads is not None:
            edgepack.set_num_threads(case.threads)
        fns = {"edgepack": case.ours, **case.baselines}
        best = {k: float("inf") for k in fns}
        try:
            for _ in range(rounds):
                for k, f in fns.items():
                    if (case.threads or 1) > 1:
                        # Let the previous library's idle workers stop spinning first (OpenBLAS
                        # spins for ~0.1 s after a call, OpenMP and onnxruntime pools too): on a
                        # 2-core machine they would take the second core from whoever runs next.
                        time.sleep(IDLE_SECONDS)
                    best[k] = min(best[k], best_time(f, min_time=min_time, max_repeat=20))
        finally:
            edgepack.set_num_threads(before)
        ours = best.pop("edgepack")
        ratios = {k: t / ours for k, t in best.items()}
        results.append(
            Result(
                case.area, case.name, "edgepack", ours, case.work / ours / 1e9, case.unit, ratios
            )
        )
        for k, t in best.items():
            results.append(Result(case.area, case.name, k, t, case.work / t / 1e9, case.unit, {}))
    return results


def cpu_scaling(shapes: list[tuple[int, int, int]] | None = None) -> str:
    """Process CPU time of ``matmul_integer`` with 1 and 2 threads (markdown table).

    On a machine whose cores are busy with other work, wall time says little about scaling;
    CPU time does say whether 2 threads add work (imbalance spinning, duplicated packing): a
    ratio near 1.0 means the second thread's share is pure speed-up once it gets a core.
    """
    import time

    import edgepack as ep

    rng = np.random.default_rng(5)
    lines = [
        "| M,K,N | CPU ms, 1 thread | CPU ms, 2 threads | ratio "
        "| wall ms, 1 thread | wall ms, 2 threads |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    before = ep.get_num_threads()
    try:
        for m, k, n in shapes or [s for s in SHAPES if s[0] >= 64]:
            a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
            packed = ep.pack_matrix(rng.integers(-127, 128, size=(k, n), dtype=np.int8))
            res = []
            for threads in (1, 2):
                ep.set_num_threads(threads)
                ep.matmul_integer(a, packed)
                reps = max(3, int(2e10 / (2 * m * k * n)))
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(reps):
                    ep.matmul_integer(a, packed)
                res.append(((time.process_time() - c0) / reps, (time.perf_counter() - w0) / reps))
            (c1, w1), (c2, w2) = res
            lines.append(
                f"| {m},{k},{n} | {c1 * 1e3:.2f} | {c2 * 1e3:.2f} | {c2 / c1:.2f} | "
                f"{w1 * 1e3:.2f} | {w2 * 1e3:.2f} |"
            )
    finally:
        ep.set_num_threads(before)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m edgepack.bench.matmul [--quick] [--rounds N] [--threads T]``."""
    import argparse

    from edgepack.bench import format_table

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, choices=(1, 2), default=None)
    ap.add_argument("--shape", action="append", default=None, help="M,K,N (repeatable)")
    ap.add_argument("--cpu-scaling", action="store_true", help="CPU time, 1 vs 2 threads")
    args = ap.parse_args(argv)
    if args.cpu_scaling:
        print(cpu_scaling())
        return
    selected = cases(args.quick)
    if args.threads is not None:
        selected = [c for c in selected if c.threads == args.threads]
    if args.shape:
        wanted = {f"({s.replace(' ', '')})" for s in args.shape}
        selected = [c for c in selected if any(w in c.name for w in wanted)]
    print(format_table(run_interleaved(selected, rounds=args.rounds)))


if __name__ == "__main__":
    main()
