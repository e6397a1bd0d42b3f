"""Tiny ONNX graphs (opset 21) run on onnxruntime with one thread: the peer the quantization
kernels must equal bit for bit. Skips the calling test when onnxruntime / onnx are absent."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

TYPES = {"int8": T.INT8, "uint8": T.UINT8, "int4": T.INT4, "uint4": T.UINT4}


def _session(nodes, inputs, outputs, inits):
    g = h.make_graph(nodes, "g", inputs, outputs, inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _zp_tensor(name, z, qtype):
    z = np.asarray(z)
    return h.make_tensor(name, TYPES[qtype], z.shape, z.reshape(-1).astype(np.int64).tolist())


def _wide(qtype):
    # ORT cannot hand 4-bit tensors to numpy: cast them to 8 bits inside the graph.
    return T.INT8 if qtype in ("int8", "int4") else T.UINT8


def quantize_linear(x, scale, zp, qtype, axis=1, block_size=0):
    """ORT QuantizeLinear; returns the unpacked values (int8 / uint8 ndarray)."""
    x = np.asarray(x, np.float32)
    nodes = [
        h.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], axis=axis, block_size=block_size)
    ]
    out = "q"
    if qtype in ("int4", "uint4"):
        nodes.append(h.make_node("Cast", ["q"], ["y"], to=_wide(qtype)))
        out = "y"
    sess = _session(
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, x.shape)],
        [h.make_tensor_value_info(out, _wide(qtype), None)],
        [nh.from_array(np.asarray(scale, np.float32), "s"), _zp_tensor("zp", zp, qtype)],
    )
    return sess.run(None, {"x": x})[0]


def dequantize_linear(q, scale, zp, qtype, axis=1, block_size=0):
    """ORT DequantizeLinear of unpacked values ``q`` (cast to 4 bits inside the graph)."""
    q = np.asarray(q)
    nodes = []
    src = "q"
    if qtype in ("int4", "uint4"):
        nodes.append(h.make_node("Cast", ["q"], ["q4"], to=TYPES[qtype]))
        src = "q4"
    nodes.append(
        h.make_node("DequantizeLinear", [src, "s", "zp"], ["y"], axis=axis, block_size=block_size)
    )
    sess = _session(
        nodes,
        [h.make_tensor_value_info("q", _wide(qtype), q.shape)],
        [h.make_tensor_value_info("y", T.FLOAT, None)],
        [nh.from_array(np.asarray(scale, np.float32), "s"), _zp_tensor("zp", zp, qtype)],
    )
    return sess.run(None, {"q": q.astype(np.int8 if _wide(qtype) == T.INT8 else np.uint8)})[0]


def dynamic_quantize_linear(x):
    x = np.asarray(x, np.float32)
    sess = _session(
        [h.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])],
        [h.make_tensor_value_info("x", T.FLOAT, x.shape)],
        [
            h.make_tensor_value_info("y", T.UINT8, None),
            h.make_tensor_value_info("s", T.FLOAT, None),
            h.make_tensor_value_info("z", T.UINT8, None),
        ],
        [],
    )
    return sess.run(None, {"x": x})
