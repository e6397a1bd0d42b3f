"""Old build against this one, both loaded in ONE process, calls interleaved in short
alternating batches, results checked equal; per case the min of each and the median of the
per-pair ratios new/old. With one kernel thread it times the thread's CPU time, so that
other processes on a shared machine are not counted (memory-bound shapes such as M = 1 on a
4096 x 4096 B still see their bandwidth).

The old build is an installed or built `edgepack` package folder (holding its
`_core.abi3.so`), e.g. one built from main; it is copied to a temporary folder as
`edgepack_old` (imports rewritten) so that both load side by side.

Run: `EDGEPACK_ISA=avx2 python benches/matmul_ab.py OLD_PACKAGE_DIR` (every level:
scalar, avx2, avxvnni, avx512 where the CPU has it). Optional: KAB_FILTER="packed|plain",
KAB_PAIRS (15), KAB_BATCH seconds (0.02), KAB_THREADS (1), KAB_LIN="1x4096x64,16x4096x64"
(QuantizedLinear shapes).
"""

import importlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgepack as new


def load_old(pkg: Path):
    root = Path(tempfile.mkdtemp(prefix="edgepack_ab_"))
    dst = root / "edgepack_old"
    shutil.copytree(pkg, dst, ignore=shutil.ignore_patterns("__pycache__"))
    for f in dst.rglob("*.py"):
        f.write_text(re.sub(r"\bedgepack\b", "edgepack_old", f.read_text()))
    sys.path.insert(0, str(root))
    return importlib.import_module("edgepack_old")


old = load_old(Path(sys.argv[1]))
isa = os.environ.get("EDGEPACK_ISA", "")
scalar = isa == "scalar"
flt = [f for f in os.environ.get("KAB_FILTER", "").split("|") if f]
pairs = int(os.environ.get("KAB_PAIRS", "15"))
batch_s = float(os.environ.get("KAB_BATCH", "0.02"))
for m in (new, old):
    m.set_num_threads(int(os.environ.get("KAB_THREADS", "1")))
rng = np.random.default_rng(7)

def t8(shape, dtype):
    if dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return np.clip(np.rint(rng.standard_t(3, size=shape) * 20), -128, 127).astype(np.int8)

def cases():
    if scalar:
        packed = [(1, 1024, 1024), (16, 512, 512), (64, 256, 512)]
        plain = [(4, 512, 512), (40, 256, 256)]
        lin = [(16, 512, 512)]
    else:
        packed = [(1, 4096, 4096), (8, 4096, 4096), (64, 4096, 4096), (128, 768, 3072),
                  (512, 1024, 1024), (1024, 1024, 1024), (2048, 2048, 2048)]
        plain = [(1, 4096, 4096), (8, 4096, 4096), (16, 1024, 1024), (64, 1024, 1024)]
        lin = [(1, 4096, 4096), (64, 1024, 4096), (256, 1024, 1024)]
    if os.environ.get("KAB_LIN"):
        lin = [tuple(int(v) for v in s.split("x")) for s in os.environ["KAB_LIN"].split(",")]
    for (m, k, n) in packed:
        b = t8((k, n), np.int8)
        a = t8((m, k), np.uint8)
        pn, po = new.pack_matrix(b), old.pack_matrix(b)
        yield f"packed u8xi8 {m}x{k}x{n}", (lambda: new.matmul_integer(a, pn)), (lambda: old.matmul_integer(a, po))
        if m >= 64:
            ai = t8((m, k), np.int8)
            yield f"packed i8xi8 {m}x{k}x{n}", (lambda: new.matmul_integer(ai, pn)), (lambda: old.matmul_integer(ai, po))
            bu = t8((k, n), np.uint8)
            pzn, pzo = new.pack_matrix(bu, np.uint8(3)), old.pack_matrix(bu, np.uint8(3))
            yield f"packed u8xu8 zp {m}x{k}x{n}", (lambda: new.matmul_integer(a, pzn, np.uint8(5))), (lambda: old.matmul_integer(a, pzo, np.uint8(5)))
    for (m, k, n) in plain:
        b = t8((k, n), np.int8)
        a, ai = t8((m, k), np.uint8), t8((m, k), np.int8)
        yield f"plain u8xi8 {m}x{k}x{n}", (lambda: new.matmul_integer(a, b)), (lambda: old.matmul_integer(a, b))
        yield f"plain i8xi8 {m}x{k}x{n}", (lambda: new.matmul_integer(ai, b)), (lambda: old.matmul_integer(ai, b))
    for (m, k, n) in lin:
        w = (rng.standard_t(3, size=(n, k)) * 0.02).astype(np.float32)
        bias = rng.normal(0, 0.1, n).astype(np.float32)
        x = rng.normal(0, 1, (m, k)).astype(np.float32)
        for mode in ("dynamic", "dynamic-per-row"):
            ln = new.QuantizedLinear.from_float(w, bias, activations=mode)
            lo = old.QuantizedLinear.from_float(w, bias, activations=mode)
            yield f"QuantizedLinear {mode} {m}x{k}x{n}", (lambda: ln(x)), (lambda: lo(x))
    (m, k, n) = (64, 1024, 1024) if not scalar else (16, 256, 256)
    a = t8((m, k), np.uint8)
    b = t8((k, n), np.int8)
    pn, po = new.pack_matrix(b), old.pack_matrix(b)
    args = (np.float32(0.02), np.uint8(120))
    rest = (np.float32(0.01), None, np.float32(0.5), np.uint8(128))
    yield f"qlinear_matmul {m}x{k}x{n}", (lambda: new.qlinear_matmul(a, *args, pn, *rest)), (lambda: old.qlinear_matmul(a, *args, po, *rest))

# One kernel thread: time this thread's CPU time, so that time-slicing by other processes
# on this loaded 2-core machine (load average ~10) is not counted.
clock = time.thread_time if os.environ.get("KAB_THREADS", "1") == "1" else time.perf_counter

def best_of_batch(f):
    best = float("inf"); end = time.perf_counter() + batch_s; n = 0
    while n < 2 or time.perf_counter() < end:
        t0 = clock(); f(); best = min(best, clock() - t0); n += 1
    return best

print(f"isa={isa or 'best'} pairs={pairs}")
print(f"{'case':40} {'old ms':>8} {'new ms':>8} {'min ratio':>9} {'median pair':>11}")
for name, fn, fo in cases():
    if flt and not any(x in name for x in flt):
        continue
    rn, ro = fn(), fo()
    assert np.array_equal(rn, ro), name
    tn, to, rat = [], [], []
    for i in range(pairs):
        if i % 2:
            a_, b_ = best_of_batch(fo), best_of_batch(fn)
        else:
            b_, a_ = best_of_batch(fn), best_of_batch(fo)
        tn.append(b_); to.append(a_); rat.append(b_ / a_)
    print(f"{name:40} {min(to)*1e3:8.3f} {min(tn)*1e3:8.3f} {min(tn)/min(to):9.3f} {statistics.median(rat):11.3f}", flush=True)
