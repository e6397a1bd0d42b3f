"""Concurrency: 8 Python threads call every kernel, and load / decompress on shared
objects, at once; every result equals the single-threaded one bit for bit. And the GIL is
released while a kernel runs: a Python thread keeps making progress during a long call.

Expected values here are the single-threaded results of the same call (the kernels' own
correctness against numpy is tested in each area's suite); what is tested is that running
them at once changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import edgepack
from edgepack import kernels, prune, sparse

THREADS = 8
ROUNDS = 4


def _same(a: Any, b: Any) -> bool:
    """Bit-exact equality of results (arrays, tuples, dicts, QuantizedTensor, scalars)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if hasattr(a, "__dataclass_fields__"):
        return all(_same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if isinstance(a, sparse.SparseTensor):
        return _same((a.shape, a.mask, a.values, a.to_dense()), (b.shape, b.mask, b.values, b.to_dense()))
    if isinstance(a, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b


def _hammer(fn: Callable[[int], Any], expected: list[Any]) -> None:
    """Run fn(i) for every input i from THREADS threads at once (all released together by a
    barrier, ROUNDS times each, inputs rotated per thread) and compare with `expected`."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    mismatches: list[tuple[int, int]] = []

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for r in range(ROUNDS):
                for j in range(len(expected)):
                    i = (j + t + r) % len(expected)
                    if not _same(fn(i), expected[i]):
                        mismatches.append((t, i))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    assert not mismatches, f"results differ from single-threaded calls: {mismatches[:5]}"


def _inputs(rng: np.random.Generator, n: int = 4) -> list[np.ndarray]:
    from conftest import heavy_tailed

    shapes = [(257, 129), (64, 1000), (3, 7, 33), (4099,)]
    return [heavy_tailed(rng, shapes[i % len(shapes)]) for i in range(n)]


# Each case: a name and a factory (rng -> (fn(i), number of inputs)).
def _case_quantize_linear(rng):
    xs = _inputs(rng)
    scales = [np.float32(np.abs(x).max() / 127) for x in xs]
    return lambda i: kernels.quantize_linear(xs[i], scales[i], np.int8(0)), len(xs)


def _case_quantize_linear_axis(rng):
    xs = [x for x in _inputs(rng) if x.ndim == 2]
    sc = [(np.abs(x).max(axis=0) / 255 + 1e-6).astype(np.float32) for x in xs]
    zp = [np.full(x.shape[1], 128, np.uint8) for x in xs]
    return lambda i: kernels.quantize_linear(xs[i], sc[i], zp[i], axis=1), len(xs)


def _case_dequantize_linear(rng):
    qs = [rng.integers(-128, 128, size=s, dtype=np.int8) for s in [(300, 77), (5000,), (2, 3, 4)]]
    return lambda i: kernels.dequantize_linear(qs[i], np.float32(0.0123), np.int8(3)), len(qs)


def _case_dynamic_quantize_linear(rng):
    xs = _inputs(rng)
    return lambda i: kernels.dynamic_quantize_linear(xs[i]), len(xs)


def _case_quantize_api(rng):
    xs = [x for x in _inputs(rng) if x.ndim >= 2]
    kws = [dict(bits=8, axis=0), dict(bits=4, axis=1, block_size=32), dict(bits=8, symmetric=False)]
    return lambda i: edgepack.quantize(xs[i % len(xs)], **kws[i % len(kws)]), len(kws)


def _case_dequantize_api(rng):
    xs = [x for x in _inputs(rng) if x.ndim >= 2]
    qts = [edgepack.quantize(x, bits=4, axis=1, block_size=16) for x in xs]
    return lambda i: edgepack.dequantize(qts[i]), len(qts)


def _case_prune_masks(rng):
    x = _inputs(rng)[0]
    calls = [
        lambda: prune.magnitude_mask(x, 0.7),
        lambda: prune.magnitude_mask(x, 0.5, axis=0),
        lambda: prune.nm_mask(x, 2, 4),
        lambda: prune.block_mask(x, 0.5, block=(1, 4)),
        lambda: prune.channel_mask(x, 0.25, axis=0),
    ]
    return lambda i: calls[i](), len(calls)


def _case_sparse_encode_decode(rng):
    xs = _inputs(rng)
    dense = [np.where(np.abs(x) < 0.02, np.float32(0), x) for x in xs]
    blobs = [sparse.encode(d).to_bytes(level=1) for d in dense]

    def fn(i):
        if i < len(dense):
            return sparse.encode(dense[i]).to_bytes(level=1 + i % 3)
        st = sparse.SparseTensor.from_bytes(blobs[i - len(dense)])
        return st.to_dense(), st.mask
    return fn, 2 * len(dense)


def _case_matmul_shared_packed(rng):
    k, n = 300, 130
    b = rng.integers(-128, 128, size=(k, n), dtype=np.int8)
    packed = kernels.pack_matrix(b)
    packed_zp = kernels.pack_matrix(b.view(np.uint8), 128)
    a = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(1, k), (17, k), (64, k), (3, 5, k)]]

    def fn(i):
        p = packed if i % 2 == 0 else packed_zp
        return kernels.matmul_integer(a[i], p, np.uint8(7) if i % 2 else None)
    return fn, len(a)


def _case_quantized_linear(rng):
    from edgepack import QuantizedLinear

    w = rng.standard_normal((96, 200)).astype(np.float32)
    layer = QuantizedLinear.from_float(w, rng.standard_normal(96).astype(np.float32))
    xs = [rng.standard_normal(s).astype(np.float32) for s in [(200,), (9, 200), (2, 33, 200)]]
    return lambda i: layer(xs[i]), len(xs)


CASES = {
    "quantize_linear": _case_quantize_linear,
    "quantize_linear_per_axis": _case_quantize_linear_axis,
    "dequantize_linear": _case_dequantize_linear,
    "dynamic_quantize_linear": _case_dynamic_quantize_linear,
    "quantize": _case_quantize_api,
    "dequantize": _case_dequantize_api,
    "prune_masks": _case_prune_masks,
    "sparse_encode_decode": _case_sparse_encode_decode,
    "matmul_integer_shared_packed": _case_matmul_shared_packed,
    "quantized_linear_shared_layer": _case_quantized_linear,
}


@pytest.mark.parametrize("kernel_threads", [1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_eight_threads_get_single_threaded_results(rng, case, kernel_threads):
    old = edgepack.get_num_threads()
    edgepack.set_num_threads(kernel_threads)
    try:
        fn, n = CASES[case](rng)
        expected = [fn(i) for i in range(n)]  # single-threaded, one call at a time
        _hammer(fn, expected)
    finally:
        edgepack.set_num_threads(old)


def _model(tmp_path, rng) -> edgepack.CompressedModel:
    from conftest import heavy_tailed

    w = {
        "a.weight": heavy_tailed(rng, (128, 96)),
        "a.bias": heavy_tailed(rng, (128,)),
        "b.weight": heavy_tailed(rng, (64, 128)),
        "c.weight": heavy_tailed(rng, (64, 64)),
        "d.weight": heavy_tailed(rng, (32, 64)),
        "steps": np.array(3, dtype=np.int64),
    }
    recipe = {
        "rules": [
            {"pattern": "b.*", "bits": 4, "block_size": 32},
            {"pattern": "c.*", "action": "keep", "sparsity": 0.6},
            {"pattern": "d.*", "action": "float16"},
        ],
        "zstd_level": 3,
    }
    return edgepack.compress(w, recipe, out=tmp_path / "m.epk")


def test_shared_compressed_model_decompress_from_eight_threads(tmp_path, rng):
    m = _model(tmp_path, rng)
    names = m.names
    expected = [m.decompress(n) for n in names]
    assert {m.info(n).encoding for n in names} == {"raw", "quant", "sparse", "float16"}
    _hammer(lambda i: m.decompress(names[i]), expected)
    stored = [m[n] for n in names]
    _hammer(lambda i: m[names[i]], stored)


def test_load_from_eight_threads(tmp_path, rng):
    m = _model(tmp_path, rng)
    path = m.path
    expected = [m.decompress()]

    def fn(_):
        mm = edgepack.load(path)
        mm.verify()
        return mm.decompress()

    _hammer(fn, expected)


def test_compress_from_eight_threads_gives_identical_bytes(tmp_path, rng):
    w = {f"l{i}.weight": rng.standard_normal((64, 64)).astype(np.float32) for i in range(4)}
    ref = edgepack.compress(w, {"zstd_level": 3}, out=tmp_path / "ref.epk")
    expected = [open(ref.path, "rb").read()]
    counter = iter(range(10**6))
    lock = threading.Lock()

    def fn(_):
        with lock:
            k = next(counter)
        p = tmp_path / f"c{k}.epk"
        edgepack.compress(w, {"zstd_level": 3}, out=p)
        return p.read_bytes()

    _hammer(fn, expected)


# -- the GIL is released during kernels ---------------------------------------------------------


def _gil_case(name: str, scale: int, rng) -> Callable[[], Any]:
    n = 1 << 20
    if name == "quantize_linear":
        x = rng.standard_normal(n * scale).astype(np.float32)
        return lambda: kernels.quantize_linear(x, np.float32(0.01), np.int8(0))
    if name == "matmul_integer":
        k = 1024
        a = rng.integers(0, 256, size=(64 * scale, k), dtype=np.uint8)
        p = kernels.pack_matrix(rng.integers(-128, 128, size=(k, 1024), dtype=np.int8))
        return lambda: kernels.matmul_integer(a, p)
    if name == "sparse_decode":
        x = np.where(rng.random(n * scale) < 0.7, 0, rng.standard_normal(n * scale)).astype(np.float32)
        blob = sparse.encode(x).to_bytes(level=1)
        return lambda: sparse.SparseTensor.from_bytes(blob).to_dense()
    if name == "magnitude_mask":
        x = rng.standard_normal(n * scale).astype(np.float32)
        return lambda: prune.magnitude_mask(x, 0.5)
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["quantize_linear", "matmul_integer", "sparse_decode", "magnitude_mask"])
def test_gil_is_released_during_kernels(rng, name):
    """While one long kernel call runs in a worker thread, the main thread keeps running Python.

    The main thread records the time of each step of a pure-Python loop; if the kernel held the
    GIL, the loop would stall for the whole call (the longest pause >= the call's duration).
    Criterion (generous, not a timing assert on speed): the longest pause during a call of at
    least 0.2 s is under half of that call.
    """
    old = edgepack.get_num_threads()
    edgepack.set_num_threads(1)
    try:
        scale = 1
        while True:  # grow the input until one call takes >= 0.2 s (bounded)
            call = _gil_case(name, scale, rng)
            t0 = time.perf_counter()
            call()
            dt = time.perf_counter() - t0
            if dt >= 0.2 or scale >= 256:
                break
            scale *= 2 if dt > 0.05 else 4
        if dt < 0.2:
            pytest.skip(f"{name} too fast to observe here ({dt:.3f} s)")
        state = {"start": None, "end": None}

        def worker():
            state["start"] = time.perf_counter()
            call()
            state["end"] = time.perf_counter()

        th = threading.Thread(target=worker)
        stamps = []
        th.start()
        while th.is_alive():
            stamps.append(time.perf_counter())
            sum(range(50))  # a little Python work per step
        th.join()
        s, e = state["start"], state["end"]
        inside = [t for t in stamps if s <= t <= e]
        points = [s] + inside + [e]
        longest = max(b - a for a, b in zip(points, points[1:]))
        assert len(inside) > 10, f"no Python progress during a {e - s:.3f} s {name} call"
        assert longest < 0.5 * (e - s), (
            f"the Python thread stalled {longest:.3f} s during a {e - s:.3f} s {name} call "
            "(the GIL is held)"
        )
    finally:
        edgepack.set_num_threads(old)


_FORK_CHILD = """
import os, numpy as np, edgepack
from edgepack import kernels, prune
edgepack.set_num_threads(2)
rng = np.random.default_rng(0)
a = rng.integers(0, 256, (256, 1024), dtype=np.uint8)
b = rng.integers(-128, 128, (1024, 1024), dtype=np.int8)
w = (rng.standard_t(3, (2048, 2048)) * 0.02).astype(np.float32)
kernels.matmul_integer(a, b)  # the parent's pool and helpers are busy or polling at fork time
pid = os.fork()
if pid == 0:
    want = a.astype(np.int64) @ b.astype(np.int64)
    print("matmul", np.array_equal(kernels.matmul_integer(a, b), want), flush=True)
    q = edgepack.quantize(w)
    err = np.abs(q.dequantize() - w)
    print("quantize", bool(np.all(err <= q.scale.max() / 2 * 1.0001)), flush=True)
    mask = prune.magnitude_mask(w, 0.5)
    print("prune", int(mask.sum()) == w.size // 2, flush=True)
    os._exit(0)
import time, signal
deadline = time.monotonic() + 60
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child exit", status)
        break
    if time.monotonic() > deadline:
        os.kill(pid, signal.SIGKILL)
        print("child hung")
        break
    time.sleep(0.05)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_forked_child_runs_multithreaded_kernels():
    # multiprocessing's default on Linux: a child forked after kernels ran. The pool's threads
    # stay in the parent; the child must start its own instead of waiting for them forever.
    r = subprocess.run(
        [sys.executable, "-c", _FORK_CHILD], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == [
        "matmul True",
        "quantize True",
        "prune True",
        "child exit 0",
    ], r.stdout + r.stderr
