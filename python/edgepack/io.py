"""Reading weights one tensor at a time: mappings, ``.safetensors``, ``.npz`` and PyTorch
checkpoints; and writing plain safetensors files tensor by tensor.

A *source* lists names and loads one tensor on demand, so :func:`edgepack.compress` keeps
at most a few tensors in memory whatever the size of the checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import struct
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import numpy as np

from edgepack import _core
from edgepack._errors import ArgumentError, DtypeError, FormatError

__all__ = [
    "Source",
    "open_source",
    "dtype_name",
    "numpy_dtype",
    "read_safetensors_header",
    "write_safetensors",
    "write_npz",
]

_NP_NAMES = {
    "float64": "float64",
    "float32": "float32",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64",
    "int32": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint64": "uint64",
    "uint32": "uint32",
    "uint16": "uint16",
    "uint8": "uint8",
    "bool": "bool",
}
FLOAT_NAMES = ("float64", "float32", "float16", "bfloat16")

# safetensors dtype codes <-> our names
ST_CODES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
ST_NAMES = {v: k for k, v in ST_CODES.items()}
ST_MAX_HEADER = 100_000_000


def _bfloat16() -> np.dtype:
    try:
        import ml_dtypes
    except ModuleNotFoundError as e:  # pragma: no cover - ml_dtypes is a test dependency
        raise DtypeError("bfloat16 tensors need the ml-dtypes package (pip install ml-dtypes)") from e
    bf16: np.dtype = np.dtype(ml_dtypes.bfloat16)
    return bf16


def numpy_dtype(name: str) -> np.dtype:
    """The little-endian numpy dtype of one of our dtype names."""
    if name == "bfloat16":
        return _bfloat16()
    if name not in _NP_NAMES:
        raise DtypeError(f"unsupported dtype {name!r}")
    dt: np.dtype = np.dtype(name).newbyteorder("<")
    return dt


def dtype_name(dt: np.dtype, what: str) -> str:
    """Our name of a numpy dtype, or a DtypeError naming ``what``."""
    name: str = dt.name
    if name in _NP_NAMES and (dt.kind in "fiub" or name == "bfloat16"):
        return name
    raise DtypeError(
        f"{what} has dtype {dt}, which edgepack cannot store; expected one of "
        f"{sorted(_NP_NAMES)}"
    )


def as_array(v: Any, what: str) -> np.ndarray:
    """Coerce a tensor value (numpy array, or a torch tensor) without copying when possible."""
    if isinstance(v, np.ndarray):
        a = v
    elif hasattr(v, "detach") and hasattr(v, "numpy"):  # a torch tensor
        t = v.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            import torch

            a = t.view(torch.int16).numpy().view(_bfloat16())
        else:
            a = t.numpy()
    else:
        raise DtypeError(
            f"{what} is a {type(v).__name__}, expected a numpy array (or a torch tensor)"
        )
    dtype_name(a.dtype, what)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


_SCRATCH = threading.local()


def scratch(key: str, nbytes: int) -> np.ndarray:
    """A per-thread reusable uint8 buffer of at least ``nbytes`` (grown on demand). Reusing it
    avoids the page faults of fresh memory for every tensor; the caller must be done with the
    previous contents before asking again with the same key on the same thread."""
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    b = bufs.get(key)
    if b is None or b.size < nbytes:
        b = bufs[key] = np.empty(max(nbytes, 1), dtype=np.uint8)
    return b[:nbytes]


def clear_scratch() -> None:
    """Free this thread's scratch buffers."""
    _SCRATCH.bufs = {}


class Source:
    """Names plus a loader of one tensor at a time."""

    def __init__(
        self,
        names: list[str],
        load: Callable[..., np.ndarray],
        close: Callable[[], None] | None = None,
        *,
        reuses: bool = False,
        metadata: dict[str, str] | None = None,
    ):
        self.names = names
        self._load = load
        self._close = close
        self._reuses = reuses
        #: The file's own metadata (a safetensors ``__metadata__``; str -> str), kept by compress.
        self.metadata: dict[str, str] = dict(metadata or {})

    def load(self, name: str, *, reuse: bool = False) -> np.ndarray:
        """Tensor ``name``. With ``reuse=True`` (file sources) the array may live in this
        thread's scratch buffer, valid until the next ``load(..., reuse=True)`` on the thread."""
        if self._reuses:
            return as_array(self._load(name, reuse), f"tensor {name!r}")
        return as_array(self._load(name), f"tensor {name!r}")

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _check_names(names: Iterable[Any], what: str) -> list[str]:
    out = []
    for n in names:
        if not isinstance(n, str):
            raise DtypeError(f"{what}: tensor names must be strings, found {n!r}")
        out.append(n)
    return out


def read_safetensors_header(path: str) -> tuple[dict[str, Any], int, int]:
    """``(header, data_start, file_len)`` of a safetensors file, validated by the Rust core
    (``src/format/safetensors.rs``): header length checked against the file before it is read,
    the ``.epk`` header's JSON limits (node count, depth, duplicate keys), every field typed and
    range-checked, byte ranges tiling the data section. ``header`` maps each tensor name to
    ``{"dtype": code, "shape": [...], "data_offsets": [begin, end]}`` (sorted by name), plus
    ``"__metadata__"`` (str -> str) when the file has one."""
    md, tensors, data_start, size = _core.safetensors_header(path)
    header: dict[str, Any] = {}
    if md is not None:
        header["__metadata__"] = md
    for name, dt, shape, b, e in tensors:
        header[name] = {"dtype": ST_NAMES[dt], "shape": shape, "data_offsets": [b, e]}
    return header, data_start, size


def clip(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters for an error message (a hostile file can hold
    megabytes in one field)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_json(text: str, what: str) -> Any:
    """``json.loads(text)`` of JSON from an untrusted file, after the Rust core checked it with
    the ``.epk`` header's limits (nodes, depth 128, duplicate keys, numbers in range): a
    ``FormatError`` naming ``what``, never a RecursionError or a huge message."""
    _core.check_json(text, what)
    try:
        return json.loads(text)
    except ValueError as e:  # pragma: no cover - the core accepted it
        raise FormatError(f"{what} is not valid JSON: {clip(str(e))}") from e


RESERVED_SAFETENSORS_NAMES = ("__metadata__",)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` atomically: a temporary file created exclusively
    (``O_CREAT | O_EXCL | O_NOFOLLOW``, an unpredictable name) in ``path``'s folder, written,
    fsynced, then renamed over ``path``; removed on any error. A symlink planted at a
    temporary name is never followed or overwritten."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    flags = (
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    )
    for _ in range(64):
        tmp = os.path.join(
            d, f".{os.path.basename(path)}.{os.getpid()}-{secrets.token_hex(8)}.{suffix}"
        )
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name next to the destination", path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _safetensors_source(path: str) -> Source:
    header, data_start, _ = read_safetensors_header(path)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}

    def load(name: str, reuse: bool = False) -> np.ndarray:
        info = entries[name]
        dt = numpy_dtype(ST_CODES[info["dtype"]])
        b, e = info["data_offsets"]
        if reuse:
            buf = scratch("load", e - b)
            out = buf.view(dt).reshape(tuple(info["shape"]))
        else:
            out = np.empty(tuple(info["shape"]), dtype=dt)
            buf = out.reshape(-1).view(np.uint8)
        # One read per tensor into a fresh buffer: memory stays bounded by the tensor being
        # processed (a truncated file gives an error, not a SIGBUS as with a memory map).
        with open(path, "rb", buffering=0) as f:
            f.seek(data_start + b)
            got = 0
            while got < e - b:
                k = f.readinto(buf.data[got:])
                if not k:
                    raise FormatError(f"{path}: file ends inside tensor {name!r}")
                got += k
        return out

    md = header.get("__metadata__") or {}
    kept = {str(k): str(v) for k, v in md.items() if not str(k).startswith("edgepack.")}
    return Source(sorted(entries), load, reuses=True, metadata=kept)


def _npz_source(path: str) -> Source:
    npz = np.load(path, allow_pickle=False)
    lock = threading.Lock()

    def load(name: str) -> np.ndarray:
        with lock:
            x: np.ndarray = npz[name]
            return x

    return Source(sorted(npz.files), load, npz.close)


def _torch_source(path: str) -> Source:
    try:
        import torch
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"{path} looks like a PyTorch checkpoint; reading it needs PyTorch "
            "(pip install torch), or convert it to .safetensors / .npz first"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise DtypeError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    return _mapping_source(obj)


def _mapping_source(m: Mapping[str, Any]) -> Source:
    names = _check_names(m.keys(), "weights")
    return Source(sorted(names), lambda n: m[n])


def open_source(weights: Any) -> Source:
    """A :class:`Source` for a mapping or a path (``.safetensors``, ``.npz``, ``.pt`` / ``.pth``
    / ``.bin``). A missing or unreadable path raises the OS error with the path."""
    if isinstance(weights, Mapping):
        return _mapping_source(weights)
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        with open(path, "rb") as f:  # the OS error, with the path, for missing / unreadable
            magic = f.read(8)
        low = path.lower()
        if low.endswith(".safetensors"):
            return _safetensors_source(path)
        if low.endswith(".npz") or magic[:4] == b"PK\x03\x04" and not low.endswith((".pt", ".pth", ".bin")):
            return _npz_source(path)
        if low.endswith((".pt", ".pth", ".bin", ".ckpt")):
            return _torch_source(path)
        raise DtypeError(
            f"{path}: unknown weights file type; expected .safetensors, .npz, .pt, .pth or .bin"
        )
    raise DtypeError(
        f"`weights` must be a mapping of name -> array or a path, found {type(weights).__name__}"
    )


def write_safetensors(
    path: str,
    items: list[tuple[str, str, tuple[int, ...]]],
    get: Callable[[str], np.ndarray],
    metadata: dict[str, str] | None,
) -> None:
    """Write a safetensors file tensor by tensor, atomically (temp file + fsync + rename).

    ``items`` are ``(name, dtype_name, shape)`` in file order; ``get(name)`` returns the array.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    for name, dt, shape in items:
        if name in RESERVED_SAFETENSORS_NAMES:
            raise ArgumentError(
                f"a tensor named {name!r} cannot be stored in a safetensors file (the name is "
                "reserved for the file's metadata); rename it, or write .npz / .epk instead"
            )
        n = int(np.prod(shape, dtype=np.int64)) * numpy_dtype(dt).itemsize
        header[name] = {"dtype": ST_NAMES[dt], "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with atomic_output(path, "st-tmp") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, dt, shape in items:
            a = np.ascontiguousarray(get(name), dtype=numpy_dtype(dt)).reshape(shape)
            f.write(a.reshape(-1).view(np.uint8).data)


def write_npz(path: str, names: list[str], get: Callable[[str], np.ndarray]) -> None:
    """Write an ``.npz`` (what ``np.load`` reads) tensor by tensor, atomically: every name
    round-trips (``np.savez(**arrays)`` would take ``file`` / ``allow_pickle`` as its own
    arguments), and memory stays bounded by the largest tensor."""
    with atomic_output(path, "npz-tmp") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            for name in names:
                a = np.asanyarray(get(name))
                with z.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)
