"""Whole-model compression benchmarks.

A synthetic float32 safetensors checkpoint of transformer-like layers (heavy-tailed weights:
a Student-t-like body with rare outliers far beyond 100 std; attention, MLP, norms, biases):
1 GiB, or a few MiB in quick mode. Timed in the same run:

* ``compress+save``: ``edgepack.compress(path)`` (default recipe) then ``.save(out)``;
* ``load+decompress``: ``edgepack.load(out)`` and every tensor decompressed to float32;
* baselines: the same bytes read (``safetensors.numpy.load_file``) and written
  (``save_file``) with the safetensors package.

``python -m edgepack.bench.model [--quick] [--gib N] [--memory]`` prints the table, the
output size, and (``--memory``) the peak memory of compress in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import weakref
from collections.abc import Callable

import numpy as np

from edgepack.bench import Case, format_table, run

__all__ = ["cases", "make_checkpoint", "peak_memory"]


def _layers(hidden: int, n_layers: int, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = [("embed.weight", (vocab, hidden))]
    for i in range(n_layers):
        p = f"layers.{i}."
        out += [
            (p + "attn.qkv.weight", (3 * hidden, hidden)),
            (p + "attn.qkv.bias", (3 * hidden,)),
            (p + "attn.out.weight", (hidden, hidden)),
            (p + "attn.out.bias", (hidden,)),
            (p + "mlp.up.weight", (4 * hidden, hidden)),
            (p + "mlp.up.bias", (4 * hidden,)),
            (p + "mlp.down.weight", (hidden, 4 * hidden)),
            (p + "mlp.down.bias", (hidden,)),
            (p + "norm1.weight", (hidden,)),
            (p + "norm2.weight", (hidden,)),
        ]
    out.append(("norm.weight", (hidden,)))
    return out


def _heavy(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    x = rng.standard_normal(n, dtype=np.float32)
    # Heavier tails than a normal: scale by a log-normal factor, then rare outliers at 150 std.
    x *= np.exp(rng.standard_normal(n, dtype=np.float32) * np.float32(0.5))
    x *= np.float32(0.02)
    k = max(1, n // 5000)
    idx = rng.integers(0, n, size=k)
    x[idx] = np.float32(3.0) * rng.choice(np.array([-1.0, 1.0], np.float32), size=k)
    return x.reshape(shape)


def make_checkpoint(path: str, *, gib: float = 1.0, quick: bool = False, seed: int = 0) -> int:
    """Write the synthetic checkpoint tensor by tensor; returns its float32 bytes."""
    from edgepack.io import write_safetensors

    if quick:
        hidden, n_layers, vocab = 128, 2, 1000
    else:
        hidden = 2048
        per_layer = 12 * hidden * hidden + 10 * hidden
        n_layers = max(1, round(gib * 2**30 / 4 / per_layer) - 1)
        vocab = max(1000, int((gib * 2**30 / 4 - n_layers * per_layer) // hidden))
    layers = _layers(hidden, n_layers, vocab)
    rng = np.random.default_rng(seed)

    def get(name: str) -> np.ndarray:
        shape = dict(layers)[name]
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
            return (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        return _heavy(rng, shape)

    write_safetensors(path, [(n, "float32", s) for n, s in layers], get, None)
    return sum(int(np.prod(s)) * 4 for _, s in layers)


_MEM = textwrap.dedent(
    """
    import sys, time, edgepack
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    before = hwm()
    t = time.perf_counter()
    m = edgepack.compress(sys.argv[1], out=sys.argv[2])
    dt = time.perf_counter() - t
    print(before, hwm(), m.nbytes, dt)
    """
)


def peak_memory(src: str, out: str) -> dict[str, float]:
    """Compress ``src`` in a fresh process; its peak resident memory (Linux VmHWM)."""
    r = subprocess.run([sys.executable, "-c", _MEM, src, out], capture_output=True, text=True, check=True)
    before, peak, nbytes, secs = r.stdout.split()
    return {"before": int(before), "peak": int(peak), "out_bytes": int(nbytes), "seconds": float(secs)}


def cases(quick: bool) -> list[Case]:
    import edgepack

    try:
        import safetensors.numpy as st
    except ModuleNotFoundError:  # pragma: no cover
        st = None  # type: ignore[assignment]
    if not hasattr(edgepack, "quantize"):  # pragma: no cover - a build without quantize
        return []
    d = tempfile.mkdtemp(prefix="edgepack-bench-model-")
    src = os.path.join(d, "model.safetensors")
    nbytes = make_checkpoint(src, quick=quick)
    out = os.path.join(d, "model.epk")
    plain = os.path.join(d, "plain.safetensors")

    def compress_save() -> None:
        edgepack.compress(src).save(out)

    compress_save()

    def load_decompress() -> None:
        m = edgepack.load(out)
        for n in m.names:
            m.decompress(n)

    base: dict[str, Callable[[], object]] = {}
    if st is not None:

        def read_write() -> None:
            st.save_file(st.load_file(src), plain)

        def read() -> None:
            st.load_file(src)

        base = {"safetensors read+write": read_write, "safetensors read": read}
    label = "quick" if quick else f"{nbytes / 2**30:.2f} GiB"
    out_cases = [
        Case("model", f"compress+save {label}", compress_save, base, work=float(nbytes)),
        Case("model", f"load+decompress {label}", load_decompress, base, work=float(nbytes)),
    ]
    weakref.finalize(out_cases[0], shutil.rmtree, d, True)
    _FILES.append((d, src, out, nbytes))
    return out_cases


_FILES: list[tuple[str, str, str, int]] = []


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memory-gib", type=float, default=0.0, help="also measure peak memory on a file this big")
    args = ap.parse_args(argv)
    cs = cases(args.quick)
    res = run(cs, min_time=0.0)
    print(format_table(res))
    print("\n| case | impl | seconds | GB/s (float32 bytes) | vs safetensors read+write |")
    print("|---|---|---:|---:|---:|")
    for r in res:
        vs = r.ratio_vs.get("safetensors read+write")
        print(
            f"| {r.name} | {r.impl} | {r.seconds:.3f} | {r.throughput:.3f} | "
            f"{'' if vs is None else f'{vs:.2f}x'} |"
        )
    for d, src, out, nbytes in _FILES:
        size = os.path.getsize(out)
        print(f"\noutput: {size} bytes = {100 * size / nbytes:.2f}% of the {nbytes} float32 bytes")
    if args.memory_gib:
        d = tempfile.mkdtemp(prefix="edgepack-bench-mem-")
        try:
            src = os.path.join(d, "big.safetensors")
            n = make_checkpoint(src, gib=args.memory_gib)
            m = peak_memory(src, os.path.join(d, "big.epk"))
            print(
                f"\npeak memory compressing {n / 2**30:.2f} GiB: {m['peak'] / 2**20:.0f} MiB "
                f"(after imports {m['before'] / 2**20:.0f} MiB), {m['seconds']:.1f} s, "
                f"output {100 * m['out_bytes'] / n:.2f}%"
            )
        finally:
            shutil.rmtree(d, ignore_errors=True)
    for d, *_ in _FILES:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
