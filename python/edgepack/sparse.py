"""Sparse storage that really shrinks the file.

:func:`encode` keeps the nonzero entries (or those set in ``mask``) of an int8, uint8,
float16, bfloat16 or float32 array as a :class:`SparseTensor`: the shape, the dtype, a bit
mask and the kept values. :func:`encode_nm` stores N:M-sparse tensors as kept values plus a
``ceil(log2 m)``-bit position per kept value. :meth:`SparseTensor.to_bytes` is the
entropy-coded form stored in ``.epk`` files (within about 1% of the order-0 bound
``n * H(density) + nnz * H(values)``), and :meth:`SparseTensor.from_bytes` reads it back,
rejecting anything corrupt with :class:`edgepack.FormatError`.

Mask layout: one bit per element in C order, least significant bit first, unused high bits of
the last byte zero: ``np.packbits(mask.ravel(), bitorder="little")``.

Zeros: without ``mask``, a value equal to zero is not kept, so ``-0.0`` comes back from
:meth:`SparseTensor.to_dense` as ``+0.0``; everything else (NaN payloads included) round-trips
bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepack import _core
from edgepack._errors import ArgumentError, DtypeError

__all__ = ["SparseTensor", "encode", "encode_nm"]

_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32}
_NAMES = ("int8", "uint8", "float16", "bfloat16", "float32")


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:  # pragma: no cover - ml_dtypes is a test dependency
            raise DtypeError("bfloat16 tensors need the ml_dtypes package") from None
        bf16: np.dtype = np.dtype(ml_dtypes.bfloat16)
        return bf16
    return np.dtype(name)


def _bits(x: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """(contiguous array, its bit-pattern view, dtype name)."""
    a = np.asarray(x, order="C")
    name = a.dtype.name
    if name not in _NAMES:
        raise DtypeError(
            f"unsupported dtype {a.dtype}: expected int8, uint8, float16, bfloat16 or float32"
        )
    return a, a.view(_BITS[a.dtype.itemsize]), name


class SparseTensor:
    """A sparse tensor: ``shape``, ``dtype``, packed ``mask`` and kept ``values``.

    Build with :func:`encode` / :func:`encode_nm` or :meth:`from_bytes`.
    """

    __slots__ = ("_core", "_dtype")

    def __init__(self, core: _core.SparseTensorCore) -> None:
        self._core = core
        self._dtype = _np_dtype(core.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the dense tensor."""
        return tuple(self._core.shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the dense tensor (and of the kept values)."""
        return self._dtype

    @property
    def size(self) -> int:
        """Elements of the dense tensor."""
        return int(self._core.size)

    @property
    def mask(self) -> np.ndarray:
        """Packed bit mask of the stored entries (uint8, ``ceil(size / 8)`` bytes, LSB first);
        ``np.unpackbits(t.mask, count=t.size, bitorder="little").reshape(t.shape)``."""
        return self._core.mask()

    @property
    def values(self) -> np.ndarray:
        """The stored values in C order (1-D, ``dtype``)."""
        return self._core.values().view(self._dtype)

    @property
    def nnz(self) -> int:
        """Number of stored values (for N:M: the slots, ``n`` per full group)."""
        return int(self._core.nnz)

    @property
    def density(self) -> float:
        """``nnz / size`` (0.0 for an empty tensor)."""
        return self.nnz / self.size if self.size else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held in memory (mask or N:M positions + values); ``len(to_bytes())`` is the
        entropy-coded size."""
        return int(self._core.nbytes)

    @property
    def nm(self) -> tuple[int, int, int] | None:
        """``(n, m, axis)`` for the N:M layout, else ``None``."""
        return self._core.nm

    @property
    def positions(self) -> np.ndarray:
        """N:M layout: the packed slot positions (``ceil(log2 m)`` bits each, LSB first, in
        value order); empty for the mask layout."""
        return self._core.positions()

    def to_dense(self, *, out: np.ndarray | None = None) -> np.ndarray:
        """The dense array (equal bit for bit to the input, ``-0.0`` aside; see the module).

        ``out``: a C-contiguous, writeable array of this shape and dtype to fill (every element
        is written) instead of a new one; reusing it saves the page faults of fresh memory.
        """
        if out is None:
            return self._core.to_dense().view(self._dtype).reshape(self.shape)
        if not isinstance(out, np.ndarray):
            raise DtypeError(f"`out` must be a numpy array, found {type(out).__name__}")
        if out.dtype != self._dtype or out.shape != self.shape:
            raise ArgumentError(
                f"`out` is {out.dtype}{list(out.shape)}, expected {self._dtype}{list(self.shape)}"
            )
        if not (out.flags.c_contiguous and out.flags.writeable):
            raise ArgumentError("`out` must be C-contiguous and writeable")
        self._core.to_dense_into(out.reshape(-1).view(_BITS[out.itemsize]))
        return out

    def to_bytes(self, level: int = 1) -> bytes:
        """The entropy-coded byte form. ``level``: 0 stores, 1 (default) codes the mask and
        every byte plane of the values with a static rANS coder when that is smaller, 2..22
        also tries zstd at that level (helps structured block/channel masks)."""
        if not isinstance(level, (int, np.integer)) or isinstance(level, bool):
            raise ArgumentError(f"`level` must be an int in 0..=22, found {level!r}")
        return self._core.to_bytes(int(level))

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> SparseTensor:
        """Parse :meth:`to_bytes` output; raises :class:`edgepack.FormatError` on anything
        corrupt, truncated or inconsistent (checked before allocating)."""
        return cls(_core.SparseTensorCore.from_bytes(bytes(buf)))

    def __repr__(self) -> str:
        kind = f", nm={self.nm}" if self.nm else ""
        return (
            f"SparseTensor(shape={self.shape}, dtype={self.dtype}, nnz={self.nnz}, "
            f"density={self.density:.4f}{kind})"
        )


def encode(x: Any, *, mask: Any = None) -> SparseTensor:
    """Keep the nonzero entries of ``x`` (``x != 0``), or exactly those where ``mask`` (bool,
    same shape) is true. numpy: ``values = x[x != 0]``,
    ``mask = np.packbits((x != 0).ravel(), bitorder="little")``."""
    a, bits, name = _bits(x)
    m = None
    if mask is not None:
        mb = np.asarray(mask)
        if mb.dtype != np.bool_:
            raise DtypeError(f"`mask` must be a bool array, found dtype {mb.dtype}")
        if mb.shape != a.shape:
            raise ArgumentError(f"`mask` has shape {mb.shape}, `x` has shape {a.shape}")
        m = np.ascontiguousarray(mb).view(np.uint8)
    return SparseTensor(_core.SparseTensorCore.encode(bits, name, m))


def encode_nm(x: Any, n: int = 2, m: int = 4, *, axis: int = -1) -> SparseTensor:
    """Store an N:M-sparse ``x`` (at most ``n`` nonzeros in every group of ``m`` consecutive
    entries along ``axis``; e.g. the output of ``x * nm_mask(x, n, m)``) as ``n`` values per
    group (``min(n, r)`` for a partial group of ``r``) plus ``ceil(log2 m)``-bit positions,
    like the 2:4 metadata of sparse tensor cores. Groups with fewer nonzeros fill their free
    slots with their ``-0.0`` entries first, then their first zero positions. Round-trips bit
    for bit, except a ``-0.0`` in a group with no free slot left (it comes back ``+0.0``)."""
    a, bits, name = _bits(x)
    if a.ndim == 0:
        raise ArgumentError("`x` must have at least one dimension")
    for nm_name, v in (("n", n), ("m", m)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ArgumentError(f"`{nm_name}` must be an int, found {type(v).__name__}")
    if not -a.ndim <= axis < a.ndim:
        raise ArgumentError(f"`axis` {axis} is out of range for {a.ndim} dimensions")
    return SparseTensor(
        _core.SparseTensorCore.encode_nm(bits, name, int(n), int(m), int(axis) % a.ndim)
    )
