"""Activation statistics for calibration-aware compression, and collectors that record them.

:class:`CalibrationStats` accumulates, per layer, over every calibration token ``x`` (a row of
the activations ``X`` (tokens, in_features) entering the layer)::

    H        = X^T X / count          (float64, (in, in); only with full=True)
    mean     = sum x / count          per input channel
    mean_abs = sum |x| / count
    mean_sq  = sum x^2 / count        (= diag H)
    max_abs  = max |x|

which is what GPTQ / SparseGPT (``H``), Wanda / AWQ-style scaling (``mean_abs``, ``mean_sq``)
and SmoothQuant (``max_abs``) need. ``X^T X`` is accumulated in float64 by the Rust core
(faer's GEMM on the lower triangle, on the kernel threads, GIL released).

:func:`collect_onnx` (needs ``onnx`` and ``onnxruntime``) and :func:`collect_torch` (needs
``torch``) run a model on calibration batches and record the input of every linear layer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgepack import _core
from edgepack._errors import ArgumentError, DtypeError, FormatError
from edgepack.io import as_array, read_safetensors_header, write_safetensors

__all__ = ["CalibrationStats", "collect_onnx", "collect_torch"]

#: ``__metadata__["format"]`` of a calibration statistics file (FORMAT.md).
FILE_FORMAT = "edgepack.calibration"
#: The one version this reader accepts.
FILE_VERSION = "1"
_LAYOUTS = ("out_in", "in_out")
_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_VECTORS = ("sum", "sum_abs", "sum_sq", "max_abs")
#: Widest layer whose X^T X is kept (src/calib/stats.rs MAX_IN_FEATURES_FULL).
_MAX_FULL = 65_536


def _as_rows(x: Any, what: str) -> np.ndarray:
    """``x`` (..., in) as a C-contiguous 2-D float32 / float64 array (tokens, in)."""
    a = as_array(x, what) if not isinstance(x, np.ndarray) else x
    if a.dtype.name not in _FLOATS:
        raise DtypeError(
            f"{what} must be float16, bfloat16, float32 or float64 activations, "
            f"found dtype {a.dtype}"
        )
    if a.ndim == 0:
        raise ArgumentError(f"{what} must have shape (..., in_features), found a scalar")
    if a.dtype.name not in ("float32", "float64"):
        a = a.astype(np.float32)  # exact for float16 / bfloat16
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a.reshape(-1, a.shape[-1]) if a.shape[-1] else a.reshape(0, 0))


def _names(name: str | Sequence[str]) -> list[str]:
    if isinstance(name, str):
        return [name]
    if isinstance(name, (bytes, Mapping)) or not isinstance(name, Iterable):
        raise DtypeError(f"`name` must be a layer name or a list of names, found {name!r}")
    out = list(name)
    for n in out:
        if not isinstance(n, str):
            raise DtypeError(f"`name` must hold strings, found {n!r}")
    return out


class CalibrationStats:
    """Per-layer activation statistics (see the module docstring for what is kept).

    ``full=False`` keeps only the per-channel vectors (no ``X^T X``: ``in`` float64 values
    per layer instead of ``in^2``), enough for diagonal objectives, Wanda and SmoothQuant.

    Thread-safe: updates of different layers from several Python threads run in parallel
    (the GIL is released), updates of one layer are serialised by a lock of its own; the
    result equals a serial run's up to the order in which concurrent batches of one layer are
    added (floating-point addition is not associative).
    """

    def __init__(self, full: bool = True):
        self._core = _core.CalibrationStatsCore(bool(full))

    @property
    def full(self) -> bool:
        """Whether ``X^T X`` is kept."""
        return bool(self._core.full)

    def update(
        self,
        name: str | Sequence[str],
        x: Any,
        *,
        layout: str | Sequence[str] | None = None,
    ) -> None:
        """Record activations ``x`` (float16 / bfloat16 / float32 / float64 of shape
        ``(..., in_features)``; every leading dimension counts as tokens) entering layer
        ``name``.

        A list of names records layers fed the same input (e.g. the q, k and v projections)
        once, in one shared entry; later updates of any of them must name the same group.
        ``layout`` (``"out_in"``, the default for new names, or ``"in_out"`` for Keras / ONNX
        MatMul weights; one value or one per name) is a hint stored per name for
        :func:`edgepack.compress`; it must match what was recorded before.

        Raises ``NonFiniteError`` (naming the layer and the flat index) for NaN / Inf,
        ``ArgumentError`` for a width other than the layer's or names recorded in another
        group; then nothing is recorded.
        """
        names = _names(name)
        layouts: list[str] | None
        if layout is None:
            layouts = None
        elif isinstance(layout, str):
            layouts = [layout] * len(names)
        else:
            layouts = [str(v) for v in layout]
        label = names[0] if len(names) == 1 else names
        rows = _as_rows(x, f"`x` for layer {label!r}")
        self._core.update(names, rows, layouts)

    def names(self) -> list[str]:
        """Every recorded layer name, sorted."""
        return list(self._core.names())

    def __len__(self) -> int:
        return int(len(self._core))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._core

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def in_features(self, name: str) -> int:
        """Width of ``name``'s input."""
        return int(self._core.in_features(name))

    def count(self, name: str) -> int:
        """Tokens recorded for ``name``."""
        return int(self._core.count(name))

    def layout(self, name: str) -> str:
        """The layout hint of ``name`` (``"out_in"`` or ``"in_out"``)."""
        return str(self._core.layout(name))

    def group(self, name: str) -> list[str]:
        """The names sharing ``name``'s entry (sorted, ``name`` included)."""
        return list(self._core.group(name))

    def groups(self) -> list[list[str]]:
        """Every entry's names, each sorted, ordered by first name."""
        return [list(g) for g in self._core.groups()]

    def hessian(self, name: str) -> np.ndarray:
        """``H = X^T X / count``, (in, in) float64, symmetric (a fresh array).
        ``ArgumentError`` when recorded with ``full=False``."""
        return self._core.hessian(name)

    def channel_stats(self, name: str) -> dict[str, np.ndarray]:
        """Per input channel (float64 arrays of shape (in,)): ``mean``, ``mean_abs``,
        ``mean_sq`` (= diag H) and ``max_abs``."""
        return dict(self._core.channel_stats(name))

    def summary(self) -> list[dict[str, Any]]:
        """One row per entry: ``names``, ``layouts``, ``in_features``, ``tokens``,
        ``mean_abs_max`` (largest per-channel mean |x|), ``max_abs`` (largest |x|),
        ``outlier_ratio`` (``max_abs`` over the median per-channel RMS ``sqrt(mean_sq)``: large
        values flag outlier channels, as in LLM.int8 / SmoothQuant) and ``dead_channels``
        (channels that were always 0)."""
        rows = []
        for g in self.groups():
            c = self.channel_stats(g[0])
            rms = float(np.median(np.sqrt(c["mean_sq"])))
            mx = float(c["max_abs"].max())
            ratio = mx / rms if rms > 0 else (float("inf") if mx > 0 else 0.0)
            rows.append(
                {
                    "names": g,
                    "layouts": [self.layout(n) for n in g],
                    "in_features": self.in_features(g[0]),
                    "tokens": self.count(g[0]),
                    "mean_abs_max": float(c["mean_abs"].max()),
                    "max_abs": mx,
                    "outlier_ratio": ratio,
                    "dead_channels": int((c["max_abs"] == 0).sum()),
                }
            )
        return rows

    def merge(self, other: CalibrationStats) -> None:
        """Add ``other``'s statistics (e.g. collected in another process): new groups are
        copied, groups recorded in both are summed (same names, width, layouts and ``full``);
        on error nothing changes."""
        if not isinstance(other, CalibrationStats):
            raise DtypeError(f"`other` must be a CalibrationStats, found {type(other).__name__}")
        self._core.merge(other._core)

    def __repr__(self) -> str:
        return (
            f"CalibrationStats(full={self.full}, layers={len(self)}, "
            f"groups={len(self._core.groups())})"
        )

    # ---- files -----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the statistics to a safetensors file (layout in FORMAT.md, "Calibration
        statistics files"): deterministic bytes, written atomically (a temporary file in the
        destination's folder, fsync, rename), so an interrupted save never destroys a file
        already there."""
        path = os.fspath(path)
        entries = []
        arrays: dict[str, np.ndarray] = {}
        items: list[tuple[str, str, tuple[int, ...]]] = []
        for k, g in enumerate(self.groups()):
            names, layouts, count, s, sa, sq, mx, xtx = self._core.parts(g[0])
            entries.append({"names": list(names), "layouts": list(layouts)})
            fields: list[tuple[str, np.ndarray]] = [
                ("count", np.array([count], dtype=np.int64)),
                ("sum", s),
                ("sum_abs", sa),
                ("sum_sq", sq),
                ("max_abs", mx),
            ]
            if xtx is not None:
                fields.append(("xtx", xtx))
            for f, a in fields:
                key = f"entry.{k}.{f}"
                arrays[key] = a
                items.append((key, a.dtype.name, a.shape))
        meta = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "full": "true" if self.full else "false",
            "entries": json.dumps(entries, separators=(",", ":")),
        }
        write_safetensors(path, items, arrays.__getitem__, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationStats:
        """Read a file written by :meth:`save`. Everything is validated before use: the
        safetensors container (header size, JSON, byte ranges tiling the data exactly), the
        metadata, every tensor's name, dtype and shape, ``count >= 1``, finite values, and the
        consistency of the sums (``FormatError`` naming the entry and field)."""
        path = os.fspath(path)
        header, data_start, size = read_safetensors_header(path)

        def bad(msg: str) -> FormatError:
            return FormatError(f"{path}: {msg}")

        meta = header.get("__metadata__")
        if not isinstance(meta, dict):
            raise bad("no `__metadata__`: not an edgepack calibration statistics file")
        if meta.get("format") != FILE_FORMAT:
            raise bad(f"`__metadata__.format` is {meta.get('format')!r}, expected {FILE_FORMAT!r}")
        if meta.get("version") != FILE_VERSION:
            raise bad(
                f"`__metadata__.version` is {meta.get('version')!r}; this edgepack reads "
                f"version {FILE_VERSION!r}"
            )
        full_s = meta.get("full")
        if full_s not in ("true", "false"):
            raise bad(f"`__metadata__.full` is {full_s!r}, expected 'true' or 'false'")
        full = full_s == "true"
        entries = _parse_entries(meta.get("entries"), bad)
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        fields = ["count", *_VECTORS] + (["xtx"] if full else [])
        want = {f"entry.{k}.{f}" for k in range(len(entries)) for f in fields}
        extra = sorted(set(tensors) - want)
        if extra:
            raise bad(f"unexpected tensor {extra[0]!r}")
        missing = sorted(want - set(tensors), key=lambda s: (len(s), s))
        if missing:
            raise bad(f"missing tensor {missing[0]!r}")
        # Byte ranges must tile the data section exactly: no holes, no overlaps, no tail.
        spans = sorted(tuple(int(o) for o in t["data_offsets"]) for t in tensors.values())
        end = 0
        for b, e in spans:
            if b != end:
                raise bad(f"tensor data is not contiguous at byte {data_start + min(b, end)}")
            end = e
        if data_start + end != size:
            raise bad(f"{size - data_start - end} bytes after the last tensor")

        out = cls(full=full)
        with open(path, "rb", buffering=0) as fh:

            def read(key: str, dtype: str, shape: tuple[int, ...] | None) -> np.ndarray:
                t = tensors[key]
                if t["dtype"] != dtype:
                    raise bad(f"tensor {key!r} has dtype {t['dtype']}, expected {dtype}")
                got = tuple(int(d) for d in t["shape"])
                if shape is not None and got != shape:
                    raise bad(f"tensor {key!r} has shape {list(got)}, expected {list(shape)}")
                if shape is None and len(got) != 1:
                    raise bad(f"tensor {key!r} has shape {list(got)}, expected 1-D")
                b, e = (int(o) for o in t["data_offsets"])
                a = np.empty((e - b) // 8, dtype="<f8" if dtype == "F64" else "<i8")
                fh.seek(data_start + b)
                buf = a.view(np.uint8)
                n = 0
                while n < e - b:
                    k = fh.readinto(buf.data[n:])
                    if not k:
                        raise bad(f"file ends inside tensor {key!r}")
                    n += k
                return a.reshape(got).astype(a.dtype.newbyteorder("="), copy=False)

            for k, (names, layouts) in enumerate(entries):
                p = f"entry.{k}."
                count = int(read(p + "count", "I64", (1,))[0])
                if count < 1:
                    raise bad(f"tensor {p + 'count'!r} is {count}, expected >= 1")
                vecs = [read(p + "sum", "F64", None)]
                n = vecs[0].shape[0]
                if n < 1:
                    raise bad(f"tensor {p + 'sum'!r} is empty")
                if full and n > _MAX_FULL:
                    raise bad(f"tensor {p + 'sum'!r} has {n} channels, beyond {_MAX_FULL} (full)")
                vecs += [read(p + f, "F64", (n,)) for f in _VECTORS[1:]]
                xtx = read(p + "xtx", "F64", (n * (n + 1) // 2,)) if full else None
                try:
                    out._core.insert_parts(
                        names, layouts, count, vecs[0], vecs[1], vecs[2], vecs[3], xtx
                    )
                except FormatError as e:
                    raise bad(f"entry {k}: {e}") from None
        return out


def _parse_entries(raw: Any, bad: Any) -> list[tuple[list[str], list[str]]]:
    if not isinstance(raw, str):
        raise bad("`__metadata__.entries` is missing")
    try:
        val = json.loads(raw)
    except json.JSONDecodeError as e:
        raise bad(f"`__metadata__.entries` is not valid JSON: {e}") from None
    if not isinstance(val, list):
        raise bad("`__metadata__.entries` is not a JSON list")
    seen: set[str] = set()
    out = []
    for k, ent in enumerate(val):
        if not isinstance(ent, dict) or set(ent) != {"names", "layouts"}:
            raise bad(f'`__metadata__.entries[{k}]` must be {{"names": [...], "layouts": [...]}}')
        names, layouts = ent["names"], ent["layouts"]
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise bad(f"`__metadata__.entries[{k}].names` must be a non-empty list of names")
        if not isinstance(layouts, list) or len(layouts) != len(names):
            raise bad(f"`__metadata__.entries[{k}].layouts` must hold one layout per name")
        for v in layouts:
            if v not in _LAYOUTS:
                raise bad(f"`__metadata__.entries[{k}].layouts` holds {v!r}, expected {_LAYOUTS}")
        for n in names:
            if n in seen:
                raise bad(f"layer {n!r} appears twice in `__metadata__.entries`")
            seen.add(n)
        out.append((names, layouts))
    return out


# ---- collectors -----------------------------------------------------------------------------


def _need_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"collect_onnx needs the onnx and onnxruntime packages ({e.name} is missing): "
            "pip install onnx onnxruntime"
        ) from e
    return onnx, onnxruntime


def onnx_linear_inputs(model: Any) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """The activation tensors of an ONNX graph that feed a MatMul / Gemm whose weight is an
    initializer: ``[(tensor, [(weight, layout, transA), ...]), ...]`` in graph order.

    MatMul ``x @ B`` with a 2-D initializer ``B`` (in, out): layout ``"in_out"``; Gemm with
    ``transB=1`` (``B`` is (out, in)): ``"out_in"``, else ``"in_out"``. A weight read by more
    than one activation tensor (weight sharing) is recorded alone, so that its statistics
    cover every token it multiplies."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    uses: dict[str, list[tuple[str, str, int]]] = {}
    order: list[str] = []
    for node in g.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        a, b = node.input[0], node.input[1]
        if b not in inits or a in inits or len(inits[b].dims) != 2:
            continue
        attrs = {at.name: at.i for at in node.attribute if at.name in ("transA", "transB")}
        if node.op_type == "MatMul":
            layout, trans_a = "in_out", 0
        else:
            layout = "out_in" if attrs.get("transB", 0) else "in_out"
            trans_a = int(attrs.get("transA", 0))
        if a not in uses:
            uses[a] = []
            order.append(a)
        if all(w != b for w, _, _ in uses[a]):
            uses[a].append((b, layout, trans_a))
    readers: dict[str, int] = {}
    for a in order:
        for w, _, _ in uses[a]:
            readers[w] = readers.get(w, 0) + 1
    out = []
    for a in order:
        grouped = [u for u in uses[a] if readers[u[0]] == 1]
        alone = [u for u in uses[a] if readers[u[0]] > 1]
        # Groups need one transA: split a mixed group.
        for t in (0, 1):
            part = [u for u in grouped if u[2] == t]
            if part:
                out.append((a, part))
        out.extend((a, [u]) for u in alone)
    return out


def collect_onnx(
    model: Any,
    feeds: Iterable[Mapping[str, Any]],
    stats: CalibrationStats | None = None,
    full: bool = True,
    *,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    token_mask: str | None = None,
) -> CalibrationStats:
    """Run an ONNX model (a path or a ``ModelProto``; never modified: a copy gets the extra
    outputs) with onnxruntime on each feed dict and record the input of every MatMul / Gemm
    whose weight is an initializer, under the initializer's name (see
    :func:`onnx_linear_inputs` for layouts and groups: an input read by several such nodes,
    e.g. the q / k / v projections, is one shared entry).

    ``stats``: statistics to add to (its ``full`` wins); else a new
    ``CalibrationStats(full=full)``. Needs ``onnx`` and ``onnxruntime``. Models over 2 GB
    (external data) are not supported.

    ``token_mask``: the name of a feed (e.g. ``"attention_mask"``, shape ``(batch, seq)``)
    whose zero entries mark padding: activations of shape ``(batch, seq, in)`` then record only
    the positions where it is non-zero. Without it every position counts, padding included,
    so feed unpadded sequences (one per feed) or name the mask."""
    onnx, ort = _need_onnx()
    if isinstance(model, (str, os.PathLike)):
        proto = onnx.load(os.fspath(model))
    elif isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    else:
        raise DtypeError(
            f"`model` must be a path or an onnx.ModelProto, found {type(model).__name__}"
        )
    stats = CalibrationStats(full=full) if stats is None else stats
    plan = onnx_linear_inputs(proto)
    inits = {t.name: t for t in proto.graph.initializer}
    graph_inputs = {i.name for i in proto.graph.input}
    outputs = {o.name for o in proto.graph.output}
    fetch: list[str] = []
    for a, uses in plan:
        if a in graph_inputs or a in fetch:
            continue
        if a not in outputs:
            elem = inits[uses[0][0]].data_type  # MatMul / Gemm: A has B's element type
            proto.graph.output.append(onnx.helper.make_tensor_value_info(a, elem, None))
        fetch.append(a)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=list(providers))
    for i, feed in enumerate(feeds):
        if not isinstance(feed, Mapping):
            raise DtypeError(
                f"feed {i} must be a dict of input name -> array, found {type(feed).__name__}"
            )
        keep = None
        if token_mask is not None:
            if token_mask not in feed:
                raise ArgumentError(
                    f"feed {i} has no input {token_mask!r} (token_mask); it has {sorted(feed)}"
                )
            keep = np.asarray(feed[token_mask]) != 0
        got = dict(zip(fetch, sess.run(fetch, dict(feed)) if fetch else [], strict=True))
        for a, uses in plan:
            x = np.asarray(feed[a]) if a in graph_inputs else got[a]
            if uses[0][2]:  # transA: the rows are the columns of A
                x = np.swapaxes(x, -1, -2)
            if keep is not None:
                if x.ndim != keep.ndim + 1 or x.shape[:-1] != keep.shape:
                    raise ArgumentError(
                        f"activation {a!r} of feed {i} has shape {x.shape}, which "
                        f"token_mask {token_mask!r} of shape {keep.shape} cannot select "
                        "positions of (expected its shape plus the feature axis)"
                    )
                x = x[keep]
            if x.size == 0:
                continue
            names = [w for w, _, _ in uses]
            try:
                stats.update(names, x, layout=[lay for _, lay, _ in uses])
            except (ArgumentError, DtypeError) as e:
                from edgepack.model import _add_note  # BaseException.add_note is 3.11+

                _add_note(e, f"while recording tensor {a!r} of feed {i}")
                raise
    return stats


def collect_torch(
    module: Any,
    batches: Iterable[Any],
    stats: CalibrationStats | None = None,
    full: bool = True,
) -> CalibrationStats:
    """Run a PyTorch module on each batch (a tensor: ``module(b)``; a tuple / list:
    ``module(*b)``; a dict: ``module(**b)``) under ``torch.no_grad()`` in eval mode (the mode
    is restored after), and record the input of every ``nn.Linear`` under
    ``"<module path>.weight"`` (layout ``"out_in"``). Consecutive calls on the same tensor
    (q / k / v projections) are one shared entry. Needs ``torch``."""
    try:
        import torch
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "collect_torch needs PyTorch: pip install 'edgepack[torch]'"
        ) from e
    stats = CalibrationStats(full=full) if stats is None else stats
    pending: list[Any] = [None, [], -1]  # tensor, names, version

    def flush() -> None:
        x, names = pending[0], pending[1]
        pending[0], pending[1], pending[2] = None, [], -1
        if x is None or x.numel() == 0:
            return
        t = x.detach()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        stats.update(names, t.cpu().contiguous().numpy())

    def hook(name: str) -> Callable[[Any, tuple[Any, ...]], None]:
        def pre(_mod: Any, args: tuple[Any, ...]) -> None:
            if not args or not torch.is_tensor(args[0]):
                return
            x = args[0]
            if pending[0] is x and pending[2] == x._version and name not in pending[1]:
                pending[1].append(name)
                return
            flush()
            pending[0], pending[1], pending[2] = x, [name], x._version

        return pre

    handles = [
        m.register_forward_pre_hook(hook(f"{path}.weight" if path else "weight"))
        for path, m in module.named_modules()
        if isinstance(m, torch.nn.Linear)
    ]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for b in batches:
                if isinstance(b, Mapping):
                    module(**b)
                elif isinstance(b, (tuple, list)):
                    module(*b)
                else:
                    module(b)
                flush()
    finally:
        pending[0] = None
        for h in handles:
            h.remove()
        module.train(was_training)
    return stats
