"""Write the seed corpora of the fuzz targets (valid inputs of every kind the decoders accept).

    python fuzz/gen_seeds.py            # -> fuzz/corpus/sparse_from_bytes/, fuzz/corpus/epk_reader/

Needs the built package (``maturin develop``). Seeds are small (a few hundred bytes to a few
KiB: libFuzzer mutates small inputs best); they cover every sparse dtype, the mask and N:M
layouts, stored / rANS / zstd sections, and every .epk encoding (raw, float16, int8 / int4 per
tensor / channel / block, affine, sparse) with and without zstd payloads. The Python smoke
fuzzer (tests/test_fuzz_smoke.py) uses the same functions.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sys
import tempfile
import warnings

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def sparse_seeds() -> list[bytes]:
    from edgepack import sparse

    rng = np.random.default_rng(0)
    out: list[bytes] = []
    for dtype in (np.float32, np.float16, np.int8, np.uint8):
        for shape in ((), (0,), (1,), (7,), (3, 5), (2, 3, 4), (16, 16)):
            x = rng.standard_normal(shape) * 10
            x = np.where(rng.random(shape) < 0.6, 0, x).astype(dtype)
            st = sparse.encode(x)
            for level in (0, 1, 3):
                out.append(st.to_bytes(level=level))
    x = np.where(rng.random((4, 8)) < 0.5, 0, rng.standard_normal((4, 8))).astype(np.float32)
    out.append(sparse.encode(x, mask=rng.random((4, 8)) < 0.3).to_bytes(level=1))
    try:  # bfloat16 when ml_dtypes is installed
        import ml_dtypes

        out.append(sparse.encode(x.astype(ml_dtypes.bfloat16)).to_bytes(level=1))
    except ImportError:
        pass
    from edgepack import prune

    for shape in ((0, 5), (3, 0, 2)):  # empty tensors (zero dimensions) in both layouts
        out.append(sparse.encode(np.zeros(shape, np.float32)).to_bytes(level=0))
        out.append(sparse.encode_nm(np.zeros(shape, np.float32), 1, 4, axis=-1).to_bytes(level=0))
    for n, m, shape, axis in ((2, 4, (4, 8), -1), (1, 4, (6, 5), 0), (3, 8, (2, 3, 16), 2), (1, 2, (9,), 0)):
        w = rng.standard_normal(shape).astype(np.float32)
        mask = prune.nm_mask(w, n, m, axis=axis)
        st = sparse.encode_nm(np.where(mask, w, 0).astype(np.float32), n, m, axis=axis)
        for level in (0, 1, 5):
            out.append(st.to_bytes(level=level))
    return out


def epk_seeds(tmp: str) -> list[bytes]:
    import edgepack

    rng = np.random.default_rng(1)
    out: list[bytes] = []
    golden = HERE.parent / "tests" / "data" / "golden_v1.epk"
    if golden.exists():
        out.append(golden.read_bytes())
    w = {
        "a.weight": rng.standard_normal((8, 32)).astype(np.float32),
        "a.bias": rng.standard_normal(8).astype(np.float32),
        "b/kernel:0": rng.standard_normal((4, 6, 2)).astype(np.float16),
        "steps": np.array(7, dtype=np.int64),
        "flags": np.array([True, False, True]),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    recipes = [
        {"default": "keep"},
        {"default": "keep", "zstd_level": 3},
        {"rules": [{"pattern": "a.*", "action": "float16"}, {"pattern": "b/*", "action": "float16"}], "default": "keep"},
        {"rules": [{"pattern": "a.weight", "granularity": "tensor"}], "min_elements": 1},
        {"rules": [{"pattern": "a.weight", "symmetric": False}], "min_elements": 1},
        {"rules": [{"pattern": "a.weight", "bits": 4, "block_size": 8}], "min_elements": 1},
        {"rules": [{"pattern": "a.weight", "bits": 4, "granularity": "channel", "symmetric": False}]},
        {"rules": [{"pattern": "a.weight", "action": "keep", "sparsity": 0.5}]},
        {"rules": [{"pattern": "a.weight", "action": "keep", "sparsity": 0.5, "sparsity_method": "nm"}]},
        {"rules": [{"pattern": "a.weight", "sparsity": 0.5}], "min_elements": 1},
    ]
    for i, r in enumerate(recipes):
        p = os.path.join(tmp, f"s{i}.epk")
        ws = dict(w)
        with warnings.catch_warnings():  # a rule may decide no tensor of this small model
            warnings.simplefilter("ignore", UserWarning)
            edgepack.compress(ws, r, out=p, metadata={"seed": str(i)})
        out.append(pathlib.Path(p).read_bytes())
    # Tiny files: one tensor each, and no tensors.
    for i, arr in enumerate((np.arange(3, dtype=np.uint8), np.array(1.5, np.float32), np.zeros(200, np.float32))):
        p = os.path.join(tmp, f"t{i}.epk")
        edgepack.compress({"x": arr}, {"default": "keep", "zstd_level": 1}, out=p)
        out.append(pathlib.Path(p).read_bytes())
    return out


def safetensors_seeds(tmp: str) -> list[bytes]:
    """safetensors files: the edgepack form of .epk seeds (quantized, float16, kept), the
    dequantized form, and calibration statistics (full and not)."""
    import edgepack

    rng = np.random.default_rng(2)
    out: list[bytes] = []
    for i, epk in enumerate(epk_seeds(tmp)[1:6]):
        src = os.path.join(tmp, f"st{i}.epk")
        pathlib.Path(src).write_bytes(epk)
        m = edgepack.load(src)
        for deq in (False, True):
            p = os.path.join(tmp, f"st{i}{deq}.safetensors")
            m.to_safetensors(p, dequantize=deq)
            out.append(pathlib.Path(p).read_bytes())
    for full in (False, True):
        st = edgepack.CalibrationStats(full=full)
        st.update(["l1", "l2"], rng.standard_normal((5, 6)).astype(np.float32))
        p = os.path.join(tmp, f"cal{full}.safetensors")
        st.save(p)
        out.append(pathlib.Path(p).read_bytes())
    return out


def write(dir_: pathlib.Path, seeds: list[bytes]) -> int:
    dir_.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (dir_ / hashlib.sha1(s).hexdigest()).write_bytes(s)
    return len(seeds)


def main(argv: list[str]) -> int:
    root = pathlib.Path(argv[1]) if len(argv) > 1 else HERE / "corpus"
    n1 = write(root / "sparse_from_bytes", sparse_seeds())
    with tempfile.TemporaryDirectory() as tmp:
        n2 = write(root / "epk_reader", epk_seeds(tmp))
        n3 = write(root / "safetensors_header", safetensors_seeds(tmp))
    print(f"{n1} sparse seeds, {n2} .epk seeds, {n3} safetensors seeds under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
