"""Reading weights one tensor at a time: mappings, ``.safetensors``, ``.npz`` and PyTorch
checkpoints; and writing plain safetensors files tensor by tensor.

A *source* lists names and loads one tensor on demand, so :func:`edgepack.compress` keeps
at most a few tensors in memory whatever the size of the checkpoint.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from edgepack._errors import DtypeError, FormatError

__all__ = [
    "Source",
    "open_source",
    "dtype_name",
    "numpy_dtype",
    "read_safetensors_header",
    "write_safetensors",
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
    ):
        self.names = names
        self._load = load
        self._close = close
        self._reuses = reuses

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


def _no_dups(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise FormatError(f"duplicate key {k!r} in a safetensors header")
        d[k] = v
    return d


def read_safetensors_header(path: str) -> tuple[dict[str, Any], int, int]:
    """``(header, data_start, file_len)`` of a safetensors file, validated: header size cap,
    JSON, every tensor's dtype x shape == its byte range, ranges inside the file."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{path}: too short for a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > ST_MAX_HEADER or 8 + n > size:
            raise FormatError(f"{path}: safetensors header length {n} is beyond the file ({size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_dups)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: safetensors header is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise FormatError(f"{path}: safetensors header is not a JSON object")
    data_start = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dt = ST_CODES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as ex:
            raise FormatError(f"{path}: bad safetensors entry for tensor {name!r}: {info!r}") from ex
        itemsize = 2 if dt == "bfloat16" else np.dtype(dt).itemsize
        count = 1
        for d in shape:
            if d < 0:
                raise FormatError(f"{path}: tensor {name!r} has a negative dimension")
            count *= d
        if not (0 <= begin <= end and data_start + end <= size and end - begin == count * itemsize):
            raise FormatError(
                f"{path}: tensor {name!r} byte range [{begin}, {end}) does not hold {dt} x {shape} "
                f"inside the file"
            )
    return header, data_start, size


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

    return Source(sorted(entries), load, reuses=True)


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
        n = int(np.prod(shape, dtype=np.int64)) * numpy_dtype(dt).itemsize
        header[name] = {"dtype": ST_NAMES[dt], "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}-{threading.get_ident()}.st-tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for name, dt, shape in items:
                a = np.ascontiguousarray(get(name), dtype=numpy_dtype(dt)).reshape(shape)
                f.write(a.reshape(-1).view(np.uint8).data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
