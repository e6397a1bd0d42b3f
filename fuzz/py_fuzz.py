"""Python-level fuzz targets over the public API: ``edgepack.load`` (+ decompress / verify /
report of every tensor) and ``edgepack.sparse.SparseTensor.from_bytes`` (+ to_dense).

The only exception a hostile input may raise is ``edgepack.FormatError``; anything else (a
KeyError, TypeError, a crash) is a finding.

Two drivers:

* atheris (coverage-guided on the Python layer; libFuzzer options pass through):
      python fuzz/py_fuzz.py load   fuzz/corpus/epk_reader        -runs=100000
      python fuzz/py_fuzz.py sparse fuzz/corpus/sparse_from_bytes -max_total_time=600
* a seeded mutation loop without extra packages (what CI runs, tests/test_fuzz_smoke.py):
      python fuzz/py_fuzz.py mutate load 5000
"""

from __future__ import annotations

import copy
import json
import os
import struct
import sys
import tempfile
from collections.abc import Callable

import numpy as np

MAGIC = b"\x89EPK\r\n\x1a\n"
_DIR = tempfile.mkdtemp(prefix="edgepack-pyfuzz-")
_PATH = os.path.join(_DIR, "input.epk")
_ST_PATH = os.path.join(_DIR, "input.safetensors")


def target_load(data: bytes) -> None:
    """edgepack.load on a file holding `data`, then read everything it offers."""
    import edgepack

    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        m = edgepack.load(_PATH)
        m.report()
        m.metadata, m.recipe
        for name in m.names:
            m.info(name)
            m[name]
            m.decompress(name)
        m.verify()
    except edgepack.FormatError:
        pass


def target_sparse(data: bytes) -> None:
    """SparseTensor.from_bytes, then decode and re-encode what it accepts."""
    import edgepack
    from edgepack import sparse

    try:
        st = sparse.SparseTensor.from_bytes(data)
    except edgepack.FormatError:
        return
    if st.size * st.dtype.itemsize > 64 << 20:  # a valid but huge tensor: don't densify
        return
    d = st.to_dense()
    assert d.shape == st.shape
    again = sparse.SparseTensor.from_bytes(st.to_bytes(level=0))
    assert again.to_dense().tobytes() == d.tobytes()


def target_safetensors(data: bytes) -> None:
    """A safetensors file read by edgepack.load (the edgepack form), CalibrationStats.load and
    compress(path): only edgepack's own errors may escape (FormatError for the readers; compress
    may also refuse values, e.g. NonFiniteError for a NaN it must quantize)."""
    import warnings

    import edgepack

    with open(_ST_PATH, "wb") as f:
        f.write(data)
    try:
        m = edgepack.load(_ST_PATH)
        for name in m.names:
            m.decompress(name)
    except edgepack.FormatError:
        pass
    try:
        edgepack.CalibrationStats.load(_ST_PATH)
    except edgepack.FormatError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            edgepack.compress(_ST_PATH, {"default": "keep", "zstd_level": 1})
    except edgepack.EdgepackError:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "load": target_load,
    "sparse": target_sparse,
    "safetensors": target_safetensors,
}


# -- structure-aware and byte mutations (for the loop driver) ------------------------------------

_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF]
_BIG = [0, 1, 2**31, 2**32 - 1, 2**48, 2**53 - 1, 2**53, 2**63, 2**64 - 1]


def _mutate_bytes(b: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(b)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 6))
        if not b:
            b = bytearray(rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes())
            continue
        i = int(rng.integers(0, len(b)))
        if op == 0:
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            b[i] = _INTERESTING[int(rng.integers(0, len(_INTERESTING)))]
        elif op == 2:
            del b[i:]
        elif op == 3 and i + 8 <= len(b):
            b[i : i + 8] = struct.pack("<Q", _BIG[int(rng.integers(0, len(_BIG)))])
        elif op == 4:
            j = int(rng.integers(i, min(len(b), i + 64) + 1))
            b[i:i] = b[i:j]
        else:
            del b[i : i + int(rng.integers(1, 16))]
    return bytes(b)


def _mutate_json(v, rng: np.random.Generator):
    """Change one random leaf of a JSON value (numbers, strings, lists, nulls)."""
    if isinstance(v, dict) and v:
        k = list(v)[int(rng.integers(0, len(v)))]
        r = rng.random()
        if r < 0.1:
            del v[k]
        elif r < 0.15:
            v[k + "_"] = v[k]
        else:
            v[k] = _mutate_json(v[k], rng)
        return v
    if isinstance(v, list) and v:
        i = int(rng.integers(0, len(v)))
        r = rng.random()
        if r < 0.1:
            del v[i]
        elif r < 0.2:
            v.insert(i, copy.deepcopy(v[i]))
        else:
            v[i] = _mutate_json(v[i], rng)
        return v
    choices = [0, 1, -1, 2**31, 2**40, 2**48, 2**53 - 1, 2**64, 0.5, -0.0, None, True, "", "a/../b",
               "x\u0000", "int4", "zstd", "none", "quant", "sparse", "float16", "bool", [], {}]
    if isinstance(v, int) and not isinstance(v, bool) and rng.random() < 0.5:
        return v + int(rng.integers(-70, 70))
    return copy.deepcopy(choices[int(rng.integers(0, len(choices)))])


def _mutate_epk(b: bytes, rng: np.random.Generator) -> bytes:
    """Edit the header of a valid .epk (keeping its framing valid) or its bytes."""
    if len(b) < 24 or b[:8] != MAGIC or rng.random() < 0.3:
        return _mutate_bytes(b, rng)
    (n,) = struct.unpack("<Q", b[16:24])
    try:
        header = json.loads(b[24 : 24 + n])
    except (ValueError, UnicodeDecodeError):
        return _mutate_bytes(b, rng)
    start = -(-(24 + n) // 64) * 64
    data = b[start:]
    for _ in range(int(rng.integers(1, 3))):
        header = _mutate_json(header, rng)
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    out = MAGIC + struct.pack("<IIQ", 1, 0, len(hb)) + hb
    out += b"\0" * (-len(out) % 64)
    return out + data


def _mutate_st(b: bytes, rng: np.random.Generator) -> bytes:
    """Edit the JSON header of a valid safetensors file (keeping the length prefix right) or
    its bytes."""
    if len(b) < 8 or rng.random() < 0.3:
        return _mutate_bytes(b, rng)
    (n,) = struct.unpack("<Q", b[:8])
    try:
        header = json.loads(b[8 : 8 + n])
    except (ValueError, UnicodeDecodeError):
        return _mutate_bytes(b, rng)
    for _ in range(int(rng.integers(1, 3))):
        header = _mutate_json(header, rng)
    hb = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(hb)) + hb + b[8 + n :]


def mutation_loop(target: str, seeds: list[bytes], runs: int, seed: int = 0) -> int:
    """Run `runs` mutated inputs through a target; returns the number run. Raises on a finding
    (with the input attached as a note)."""
    fn = TARGETS[target]
    rng = np.random.default_rng(seed)
    mutate = {"load": _mutate_epk, "safetensors": _mutate_st}.get(target, _mutate_bytes)
    for i in range(runs):
        base = seeds[int(rng.integers(0, len(seeds)))]
        if i % 50 == 0:
            data = base  # keep the seeds themselves in the mix
        elif rng.random() < 0.05 and len(seeds) > 1:  # splice two seeds
            other = seeds[int(rng.integers(0, len(seeds)))]
            cut = int(rng.integers(0, len(base) + 1))
            data = base[:cut] + other[min(cut, len(other)) :]
        else:
            data = mutate(base, rng)
        try:
            fn(data)
        except Exception as e:
            e.add_note(f"fuzz input ({len(data)} bytes): {data[:4096]!r}")
            raise
    return runs


def _atheris(target: str, argv: list[str]) -> None:
    import atheris

    fn = TARGETS[target]
    with atheris.instrument_imports():
        import edgepack  # noqa: F401
        import edgepack.model  # noqa: F401
        import edgepack.sparse  # noqa: F401
    atheris.Setup([sys.argv[0], *argv], fn)
    atheris.Fuzz()


def main(argv: list[str]) -> int:
    if argv and argv[0] == "mutate":
        target, runs = argv[1], int(argv[2])
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, here)
        import gen_seeds

        with tempfile.TemporaryDirectory() as tmp:
            seeds = {
                "load": gen_seeds.epk_seeds,
                "safetensors": gen_seeds.safetensors_seeds,
            }.get(target, lambda _t: gen_seeds.sparse_seeds())(tmp)
        n = mutation_loop(target, seeds, runs)
        print(f"{n} executions of {target}, no findings")
        return 0
    _atheris(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
