"""A BERT sentence encoder (ONNX, as exported by sentence-transformers) for
``benches/eval_calibration.py``: onnxruntime runs with replaced initializers, activation capture
at every MatMul whose weight is an initializer, and a numpy forward with a pluggable linear.

Not a test module. Everything is read from the graph (no names hard-coded): each MatMul whose
``B`` is an initializer is a linear layer with weight ``(in, out)`` (ONNX MatMul layout) and
the bias of the ``Add`` that consumes it; its "module" name comes from the bias initializer
(``...encoder.layer.0.attention.self.query``). Embedding tables are the initializers read by
``Gather`` nodes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Linear = Callable[[str, np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


@dataclass
class LinearLayer:
    weight: str  # initializer name of MatMul's B, shape (in, out)
    bias: str | None  # initializer added to the MatMul output
    input: str  # graph value that feeds the MatMul (activations)
    module: str  # e.g. "model.0.auto_model.encoder.layer.0.attention.self.query"
    order: int  # topological position


@dataclass
class Graph:
    """What the harness needs to know about the model."""

    proto: object  # onnx.ModelProto
    inits: dict[str, np.ndarray]
    linears: list[LinearLayer]
    embeddings: list[str]  # Gather data initializers (embedding tables)
    pooled_output: str | None  # graph output of shape (batch, hidden), if the graph pools
    token_output: str | None  # graph output of shape (batch, seq, hidden)
    ln_eps: float = 1e-12
    heads: int = 12
    gelu: str = "erf"
    stages: list[list[LinearLayer]] = field(default_factory=list)

    def linear_by_weight(self) -> dict[str, LinearLayer]:
        return {lin.weight: lin for lin in self.linears}


def load(path: str) -> Graph:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    g = proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    linears: list[LinearLayer] = []
    embeddings: list[str] = []
    ops = set()
    ln_eps = 1e-12
    for k, n in enumerate(g.node):
        ops.add(n.op_type)
        if n.op_type == "MatMul" and n.input[1] in inits and inits[n.input[1]].ndim == 2:
            bias = None
            for c in consumers.get(n.output[0], []):
                if c.op_type == "Add":
                    other = [i for i in c.input if i != n.output[0]]
                    if other and other[0] in inits:
                        bias = other[0]
            module = re.sub(r"\.bias$", "", bias) if bias else n.input[1]
            linears.append(LinearLayer(n.input[1], bias, n.input[0], module, k))
        elif n.op_type == "Gather" and n.input[0] in inits and inits[n.input[0]].ndim == 2:
            embeddings.append(n.input[0])
        elif n.op_type == "LayerNormalization":
            for a in n.attribute:
                if a.name == "epsilon":
                    ln_eps = float(a.f)
    gelu = "erf" if "Erf" in ops else "tanh"
    pooled = token = None
    for o in g.output:
        dims = o.type.tensor_type.shape.dim
        if len(dims) == 3:
            token = o.name
        elif len(dims) == 2 and o.type.tensor_type.elem_type == 1:
            pooled = o.name
    hidden = inits[linears[0].weight].shape[0]
    heads = _heads_from_graph(proto, hidden)
    # Stages: layers fed the same activations, in topological order.
    stages: dict[str, list[LinearLayer]] = {}
    for lin in linears:
        stages.setdefault(lin.input, []).append(lin)
    graph = Graph(proto, inits, linears, embeddings, pooled, token, ln_eps, heads, gelu)
    graph.stages = sorted(stages.values(), key=lambda s: s[0].order)
    return graph


def _heads_from_graph(proto: object, hidden: int) -> int:
    """The head count from the attention Reshape constants ([b, s, heads, head_dim])."""
    from onnx import numpy_helper

    for n in proto.graph.node:  # type: ignore[attr-defined]
        if n.op_type == "Constant" and "attention/self/Constant_2" in n.output[0]:
            v = numpy_helper.to_array(n.attribute[0].t).reshape(-1)
            if v.size == 1 and hidden % int(v[0]) == 0:
                return int(v[0])
    return 12


# -- inputs ------------------------------------------------------------------------------------
def batch(ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """Pad a list of token id sequences: ``input_ids`` and ``attention_mask`` (int64)."""
    n, L = len(ids), max(len(s) for s in ids)
    x = np.zeros((n, L), dtype=np.int64)
    m = np.zeros((n, L), dtype=np.int64)
    for i, s in enumerate(ids):
        x[i, : len(s)] = s
        m[i, : len(s)] = 1
    return {"input_ids": x, "attention_mask": m}


def mean_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)[..., None]
    return (tokens * m).sum(1) / np.clip(m.sum(1), 1e-9, None)


# -- onnxruntime -------------------------------------------------------------------------------
class OrtModel:
    """onnxruntime sessions over one model whose initializers can be replaced per session
    (``SessionOptions.add_initializer``: the graph bytes are parsed once per session, never
    re-serialized), with optional extra outputs (MatMul inputs) for activation capture."""

    def __init__(self, graph: Graph, threads: int = 2) -> None:
        import onnx

        self.graph = graph
        self.threads = threads
        self._bytes = graph.proto.SerializeToString()  # type: ignore[attr-defined]
        capture = onnx.ModelProto()
        capture.CopyFrom(graph.proto)  # type: ignore[arg-type]
        have = {o.name for o in capture.graph.output}
        for name in dict.fromkeys(lin.input for lin in graph.linears):
            if name not in have:
                capture.graph.output.append(
                    onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                )
        self._capture_bytes = capture.SerializeToString()

    def session(self, weights: Mapping[str, np.ndarray] | None = None, capture: bool = False):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        keep = []
        for name, w in (weights or {}).items():
            ref = self.graph.inits[name]
            a = np.ascontiguousarray(w, dtype=ref.dtype).reshape(ref.shape)
            v = ort.OrtValue.ortvalue_from_numpy(a)
            keep.append((a, v))
            so.add_initializer(name, v)
        sess = ort.InferenceSession(
            self._capture_bytes if capture else self._bytes, so, providers=["CPUExecutionProvider"]
        )
        sess._edgepack_keep = keep  # the OrtValues must outlive the session
        return sess

    def pooled(self, weights: Mapping[str, np.ndarray] | None, ids: Sequence[Sequence[int]]):
        """Mean-pooled sentence embeddings (n, hidden), float64, one batch."""
        sess = self.session(weights)
        feeds = batch(ids)
        tok_name = self.graph.token_output
        outs = sess.run([tok_name], feeds)
        return mean_pool(outs[0], feeds["attention_mask"]).astype(np.float64)

    def capture(
        self, weights: Mapping[str, np.ndarray] | None, ids: Iterable[Sequence[int]],
        inputs: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Activations entering each MatMul (graph value name -> (tokens, in) float32), one
        sentence per run (no padding tokens enter the statistics)."""
        sess = self.session(weights, capture=True)
        names = list(inputs) if inputs is not None else list(
            dict.fromkeys(lin.input for lin in self.graph.linears)
        )
        acc: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for s in ids:
            outs = sess.run(names, batch([s]))
            for n, o in zip(names, outs, strict=True):
                acc[n].append(o.reshape(-1, o.shape[-1]))
        return {n: np.concatenate(v, 0) for n, v in acc.items()}


# -- numpy forward -----------------------------------------------------------------------------
def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(eps)) * g + b


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return (x * (erf(x / np.float32(math.sqrt(2.0))) + 1) * np.float32(0.5)).astype(np.float32)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    c = np.float32(math.sqrt(2.0 / math.pi))
    return np.float32(0.5) * x * (1 + np.tanh(c * (x + np.float32(0.044715) * x**3)))


def float_linear(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = x @ w
    return y if b is None else y + b


class NumpyBert:
    """The encoder in numpy (float32): embeddings (word + token type 0 + position) and
    LayerNorm; per layer self-attention (scaled dot product, additive mask), output dense +
    residual + LayerNorm, intermediate dense + GELU, output dense + residual + LayerNorm;
    mean pooling over the attention mask. Each ``x @ W + b`` goes through ``linear(weight_name,
    x (tokens, in) float32, W (in, out), b)``, so a quantized layer can replace it."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph
        p = graph.inits
        names = list(p)

        def find(suffix: str) -> str:
            hits = [n for n in names if n.endswith(suffix)]
            if len(hits) != 1:
                raise KeyError(f"expected one initializer ending in {suffix!r}, found {hits}")
            return hits[0]

        self.word = find("word_embeddings.weight")
        self.pos = find("position_embeddings.weight")
        self.type = find("token_type_embeddings.weight")
        self.emb_ln = (find("embeddings.LayerNorm.weight"), find("embeddings.LayerNorm.bias"))
        by_module = {lin.module: lin for lin in graph.linears}
        self.layers = []
        i = 0
        while True:
            pre = [m for m in by_module if f".layer.{i}." in m]
            if not pre:
                break
            base = pre[0].split(f".layer.{i}.")[0] + f".layer.{i}."

            def lin(rest: str, base: str = base) -> LinearLayer:
                return by_module[base + rest]

            self.layers.append(
                {
                    "q": lin("attention.self.query"),
                    "k": lin("attention.self.key"),
                    "v": lin("attention.self.value"),
                    "o": lin("attention.output.dense"),
                    "ln1": (base + "attention.output.LayerNorm.weight",
                            base + "attention.output.LayerNorm.bias"),
                    "i": lin("intermediate.dense"),
                    "out": lin("output.dense"),
                    "ln2": (base + "output.LayerNorm.weight", base + "output.LayerNorm.bias"),
                }
            )
            i += 1
        if len(self.layers) * 6 != len(graph.linears):
            raise ValueError("the graph's linear layers do not form BERT layers")

    def pooled(
        self,
        weights: Mapping[str, np.ndarray],
        ids: Sequence[int],
        linear: Linear = float_linear,
    ) -> np.ndarray:
        """Pooled embedding (hidden,) of ONE sentence (no padding), float64."""
        p = weights
        g = self.g
        f32 = np.float32
        ids_a = np.asarray(ids, dtype=np.int64)
        L = ids_a.size
        x = (p[self.word][ids_a] + p[self.type][0] + p[self.pos][:L]).astype(f32)
        x = _layer_norm(x, p[self.emb_ln[0]], p[self.emb_ln[1]], g.ln_eps)
        h = g.heads
        hd = x.shape[1] // h
        gelu = _gelu_erf if g.gelu == "erf" else _gelu_tanh

        def lin(layer: LinearLayer, a: np.ndarray) -> np.ndarray:
            b = p[layer.bias] if layer.bias is not None else None
            return np.asarray(linear(layer.weight, a, p[layer.weight], b), dtype=f32)

        for lay in self.layers:
            q = lin(lay["q"], x).reshape(L, h, hd).transpose(1, 0, 2)
            k = lin(lay["k"], x).reshape(L, h, hd).transpose(1, 0, 2)
            v = lin(lay["v"], x).reshape(L, h, hd).transpose(1, 0, 2)
            s = (q @ k.transpose(0, 2, 1)) / f32(math.sqrt(hd))
            s = s - s.max(-1, keepdims=True)
            e = np.exp(s)
            a = e / e.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(L, h * hd)
            x = _layer_norm(lin(lay["o"], ctx) + x, p[lay["ln1"][0]], p[lay["ln1"][1]], g.ln_eps)
            inter = gelu(lin(lay["i"], x))
            x = _layer_norm(lin(lay["out"], inter) + x, p[lay["ln2"][0]], p[lay["ln2"][1]],
                            g.ln_eps)
        return x.mean(0).astype(np.float64)


def cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (float64)."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    num = (ref * got).sum(1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    return num / np.maximum(den, 1e-30)
