"""Thread scaling of matmul_integer (uint8 x packed int8 B) with edgepack alone in the process
(peer libraries keep spinning threads that steal the second core from a 2-thread run, so
the peer comparison in `python -m edgepack.bench.matmul` cannot show scaling on 2 cores).
Run: `python benches/matmul_scaling.py`."""

import time, numpy as np, edgepack as ep
from edgepack import kernels as K
from edgepack.bench.matmul import SHAPES

rng = np.random.default_rng(0)
print("| M,K,N | 1 thread GOP/s | 2 threads GOP/s | speed-up |\n|---|---:|---:|---:|")
for m, k, n in SHAPES:
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    pb = K.pack_matrix(rng.integers(-128, 128, (k, n), dtype=np.int8))
    res = {}
    for t in (1, 2, 1, 2):
        ep.set_num_threads(t)
        for _ in range(3):
            K.matmul_integer(a, pb)
        best = 1e9
        spent = 0
        i = 0
        while i < 5 or (spent < 0.5 and i < 300):
            t0 = time.perf_counter()
            K.matmul_integer(a, pb)
            dt = time.perf_counter() - t0
            best = min(best, dt)
            spent += dt
            i += 1
        res[t] = min(res.get(t, 1e9), best)
    g = lambda t: 2 * m * k * n / res[t] / 1e9
    print(f"| {m},{k},{n} | {g(1):.0f} | {g(2):.0f} | {res[1] / res[2]:.2f}x |")
