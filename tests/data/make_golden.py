"""Generate tests/data/golden_v1.epk: a small .epk version-1 file from fixed inputs.

Run `python tests/data/make_golden.py` to regenerate; tests/test_format.py checks that this
script reproduces the committed bytes and that the file decodes to the numpy values below.
The payloads are computed here with plain numpy (FORMAT.md section 5), not by edgepack's
quantizer, so the file pins the format, not the kernels.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def inputs() -> dict[str, np.ndarray]:
    i = np.arange(24, dtype=np.float64)
    return {
        "fc.weight": (np.sin(i * 0.7) * 0.5).astype(np.float32).reshape(4, 6),
        "fc.bias": np.array([0.25, -1.5, 3.0, 0.0], dtype=np.float32),
        "emb": (np.cos(np.arange(15) * 0.3) * 2.0).astype(np.float32).reshape(3, 5),
        "q4": (np.sin(np.arange(10) * 1.3) * 0.1 + 0.05).astype(np.float32).reshape(2, 5),
        "steps": np.array(12345, dtype=np.int64),
        "z.embed": (np.sin(np.arange(32 * 64) * 0.05) * 0.01).astype(np.float32).reshape(32, 64),
    }


def quant8_axis0(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = (np.max(np.abs(w), axis=1) / np.float32(127)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -128, 127).astype(np.int8)
    return q, scale


def quant4_affine_block(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint4, blocks of `block` along axis 1."""
    rows, cols = w.shape
    nb = -(-cols // block)
    scale = np.empty((rows, nb), np.float32)
    zp = np.empty((rows, nb), np.uint8)
    q = np.empty_like(w, dtype=np.int32)
    for r in range(rows):
        for b in range(nb):
            seg = w[r, b * block : (b + 1) * block]
            lo, hi = min(float(seg.min()), 0.0), max(float(seg.max()), 0.0)
            s = np.float32((hi - lo) / 15)
            z = int(np.clip(np.rint(-lo / s), 0, 15))
            scale[r, b], zp[r, b] = s, z
            q[r, b * block : (b + 1) * block] = np.clip(np.rint(seg / s) + z, 0, 15)
    flat = q.reshape(-1).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
    return packed, scale, zp


def u8(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def build(path: str) -> None:
    from edgepack import _core

    x = inputs()
    w = _core.EpkWriter(path)
    q, s = quant8_axis0(x["fc.weight"])
    qp = {"bits": 8, "symmetric": True, "axis": 0, "block_size": None, "convention": "onnx", "sparsity": 0.0}
    w.add("fc.weight", "float32", [4, 6], "quant", json.dumps(qp), None,
          [("data", "int8", [4, 6], u8(q)), ("scale", "float32", [4], u8(s))], 3)
    w.add("fc.bias", "float32", [4], "raw", "{}", None, [("data", "float32", [4], u8(x["fc.bias"]))], None)
    w.add("emb", "float32", [3, 5], "float16", "{}", '{"snr_db":60.5}',
          [("data", "float16", [3, 5], u8(x["emb"].astype(np.float16)))], None)
    p4, s4, z4 = quant4_affine_block(x["q4"], 4)
    qp4 = {"bits": 4, "symmetric": False, "axis": 1, "block_size": 4, "convention": "onnx", "sparsity": 0.0}
    w.add("q4", "float32", [2, 5], "quant", json.dumps(qp4), None,
          [("data", "uint8", [5], u8(p4)), ("scale", "float32", [2, 2], u8(s4)),
           ("zero_point", "uint8", [2, 2], u8(z4))], None)
    w.add("steps", "int64", [], "raw", "{}", None, [("data", "int64", [], u8(x["steps"]))], None)
    # A payload large and regular enough for zstd (level 3) to be kept.
    qz, sz = quant8_axis0(x["z.embed"])
    w.add("z.embed", "float32", [32, 64], "quant", json.dumps(qp), None,
          [("data", "int8", [32, 64], u8(qz)), ("scale", "float32", [32], u8(sz))], 3)
    w.finish({"created_by": "tests/data/make_golden.py"}, '{"default":"auto","rules":[]}')


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_v1.epk")
    build(out)
    print(out, os.path.getsize(out), "bytes", file=sys.stderr)
