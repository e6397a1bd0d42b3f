"""Sparse storage benchmarks: encode / decode of a magnitude-pruned int8 tensor,
ours (``sparse.encode(q).to_bytes()`` / ``SparseTensor.from_bytes(b).to_dense()``) next to
the numpy path (``np.packbits`` + kept values + zstd-3 via the ``zstandard`` package), one
thread. ``work`` = bytes of the dense int8 tensor, so throughput is dense MB/s.

``python -m edgepack.bench.sparse`` prints the size table (bits per weight: ours, the
order-0 bound, numpy+zstd-3 and gzip-9 of the dense int8 bytes) at 50 / 75 / 90% sparsity.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from functools import partial

import numpy as np

from edgepack import prune, sparse
from edgepack.bench import Case

__all__ = ["cases", "pruned_int8", "bound_bits", "size_table"]


def pruned_int8(shape: tuple[int, int], sparsity: float, seed: int = 20261129) -> np.ndarray:
    """Heavy-tailed weights (Student-t body, outliers), magnitude-pruned, then quantized to
    symmetric int8 with a 99.9th-percentile scale (clipped): what a pruned model file stores."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(2.5, size=shape) * 0.02).astype(np.float32)
    flat = w.reshape(-1)
    k = max(1, flat.size // 5000)
    idx = rng.choice(flat.size, size=k, replace=False)
    flat[idx] = np.float32(3.0) * rng.choice([-1.0, 1.0], size=k).astype(np.float32)
    keep = prune.magnitude_mask(w, sparsity)
    scale = np.quantile(np.abs(w), 0.999) / 127
    q: np.ndarray = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    q[~keep] = 0
    return q


def bound_bits(q: np.ndarray) -> float:
    """n * H(density) + nnz * H(kept values), order 0, in bits."""
    nz = q != 0
    n, nnz = q.size, int(nz.sum())
    d = nnz / n
    hm = 0.0 if d in (0.0, 1.0) else -(d * np.log2(d) + (1 - d) * np.log2(1 - d))
    c = np.bincount(q[nz].view(np.uint8), minlength=256)
    p = c[c > 0] / max(nnz, 1)
    return float(n * hm + nnz * -(p * np.log2(p)).sum())


#: The numpy + zstd baseline: encode(q) -> (mask blob, values blob); decode(blobs, shape) -> q.
_Encode = Callable[[np.ndarray], tuple[bytes, bytes]]
_Decode = Callable[[tuple[bytes, bytes], tuple[int, ...]], np.ndarray]


def _numpy_zstd(level: int = 3) -> tuple[_Encode, _Decode]:
    import zstandard

    comp = zstandard.ZstdCompressor(level=level)
    dec = zstandard.ZstdDecompressor()

    def encode(q: np.ndarray) -> tuple[bytes, bytes]:
        nz = q != 0
        return (
            comp.compress(np.packbits(nz.ravel(), bitorder="little").tobytes()),
            comp.compress(q[nz].tobytes()),
        )

    def decode(blobs: tuple[bytes, bytes], shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        m = np.frombuffer(dec.decompress(blobs[0]), np.uint8)
        v = np.frombuffer(dec.decompress(blobs[1]), np.int8)
        nz = np.unpackbits(m, count=n, bitorder="little").view(bool)
        out = np.zeros(n, np.int8)
        out[nz] = v
        return out.reshape(shape)

    return encode, decode


def _encode_to_bytes(q: np.ndarray) -> bytes:
    return sparse.encode(q).to_bytes()


def _from_bytes_to_dense(blob: bytes, out: np.ndarray | None = None) -> np.ndarray:
    return sparse.SparseTensor.from_bytes(blob).to_dense(out=out)


def cases(quick: bool) -> list[Case]:
    shape = (256, 256) if quick else (4096, 4096)
    out: list[Case] = []
    np_enc: _Encode | None
    np_dec: _Decode | None
    try:
        np_enc, np_dec = _numpy_zstd()
    except ImportError:  # zstandard missing: ours only
        np_enc = np_dec = None
    for sparsity in (0.5, 0.9):
        q = pruned_int8(shape, sparsity)
        blob = sparse.encode(q).to_bytes()
        pct = int(sparsity * 100)
        enc_base: dict[str, Callable[[], object]] = {}
        dec_base: dict[str, Callable[[], object]] = {}
        if np_enc is not None and np_dec is not None:
            enc_base["numpy+zstd3"] = partial(np_enc, q)
            dec_base["numpy+zstd3"] = partial(np_dec, np_enc(q), shape)
        name = f"int8 {shape[0]}x{shape[1]} {pct}% sparse"
        out.append(Case("sparse", f"encode+to_bytes {name}", partial(_encode_to_bytes, q),
                        enc_base, work=q.nbytes, unit="GB/s", threads=1))
        out.append(Case("sparse", f"from_bytes+to_dense {name}",
                        partial(_from_bytes_to_dense, blob),
                        dec_base, work=q.nbytes, unit="GB/s", threads=1))
        dense = np.empty_like(q)
        out.append(Case("sparse", f"from_bytes+to_dense(out=) {name}",
                        partial(_from_bytes_to_dense, blob, dense),
                        dec_base, work=q.nbytes, unit="GB/s", threads=1))
    return out


def size_table(shape: tuple[int, int] = (4096, 4096)) -> str:
    """Markdown table of bits per weight at 50 / 75 / 90% sparsity."""
    enc, _ = _numpy_zstd()
    lines = [
        "| sparsity | edgepack to_bytes | bound n·H(d)+nnz·H(v) | edgepack / bound | numpy+zstd-3 | gzip-9 dense int8 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in (0.5, 0.75, 0.9):
        q = pruned_int8(shape, s)
        n = q.size
        ours = len(sparse.encode(q).to_bytes()) * 8 / n
        bound = bound_bits(q) / n
        npz = sum(len(b) for b in enc(q)) * 8 / n
        gz = len(gzip.compress(q.tobytes(), compresslevel=9)) * 8 / n
        lines.append(
            f"| {int(s * 100)}% | {ours:.4f} | {bound:.4f} | {ours / bound:.4f} | {npz:.4f} | {gz:.4f} |"
        )
    return "\n".join(lines)


def cpu_time_table(areas: tuple[str, ...] = ("sparse", "prune"), repeat: int = 7) -> str:
    """Like ``edgepack.bench.run`` but timing process CPU time (best of ``repeat`` calls
    after a warm-up): steadier than wall time on a machine shared with other jobs. Each case
    runs on its own thread count (1 here), so CPU time = the work of that one thread."""
    import time

    import edgepack
    from edgepack.bench import collect

    def best(fn: Callable[[], object]) -> float:
        fn()
        b = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            fn()
            b = min(b, time.process_time() - t0)
        return b

    lines = ["| case | impl | CPU ms | edgepack speed-up |", "|---|---|---:|---:|"]
    before = edgepack.get_num_threads()
    for case in collect(areas):
        edgepack.set_num_threads(case.threads or before)
        try:
            ours = best(case.ours)
            base = {k: best(f) for k, f in case.baselines.items()}
        finally:
            edgepack.set_num_threads(before)
        sp = ", ".join(f"{t / ours:.2f}x vs {k}" for k, t in base.items())
        lines.append(f"| {case.name} | edgepack | {ours * 1e3:.2f} | {sp} |")
        lines += [f"| {case.name} | {k} | {t * 1e3:.2f} | |" for k, t in base.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(cpu_time_table() if "--cpu" in sys.argv else size_table())
