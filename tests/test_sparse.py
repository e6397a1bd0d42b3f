"""edgepack.sparse: layout, bit-exact round trips, compressed size vs the bound, hostile bytes."""

from __future__ import annotations

import struct

import ml_dtypes
import numpy as np
import pytest
import reference as ref
from conftest import heavy_tailed

import edgepack
from edgepack import prune, sparse

DTYPES = [np.int8, np.uint8, np.float16, ml_dtypes.bfloat16, np.float32]
DENSITIES = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]


def _data(rng, shape, dtype, density):
    """Random values of `dtype` (no accidental zeros) with exactly round(density*n) nonzeros."""
    n = int(np.prod(shape))
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        v = rng.integers(1, 256, size=n).astype(np.uint8).view(np.int8 if dt.kind == "i" else np.uint8)
        v = v.astype(dt)
    else:
        v = heavy_tailed(rng, (n,)).astype(dt)
        v[v == 0] = dt.type(0.5)
    keep = np.zeros(n, bool)
    keep[rng.permutation(n)[: int(round(density * n))]] = True
    out = np.where(keep, v, np.zeros(1, dt)).astype(dt)
    return out.reshape(shape)


def _bits(a):
    a = np.asarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.itemsize])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (8, 9), (33, 65), (2, 3, 17)])
def test_round_trip_bit_exact(rng, dtype, density, shape):
    x = _data(rng, shape, dtype, density)
    t = sparse.encode(x)
    assert t.shape == x.shape and t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.mask, ref.packed_mask(x != 0))
    np.testing.assert_array_equal(_bits(t.values), _bits(x[x != 0]))
    assert t.nnz == int((x != 0).sum())
    assert t.density == (t.nnz / x.size if x.size else 0.0)
    assert t.nbytes == t.mask.size + t.nnz * x.itemsize
    d = t.to_dense()
    assert d.dtype == x.dtype and d.shape == x.shape
    np.testing.assert_array_equal(_bits(d), _bits(x))
    for level in (0, 1, 3):
        b = t.to_bytes(level=level)
        t2 = sparse.SparseTensor.from_bytes(b)
        np.testing.assert_array_equal(_bits(t2.to_dense()), _bits(x))
        assert t2.shape == x.shape and t2.dtype == x.dtype and t2.nnz == t.nnz


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_dense_out(rng, dtype):
    x = _data(rng, (17, 9), dtype, 0.4)
    t = sparse.encode(x)
    out = np.full(x.shape, 7, dtype=dtype)
    assert t.to_dense(out=out) is out
    np.testing.assert_array_equal(_bits(out), _bits(x))
    nm = sparse.encode_nm(np.where(prune.nm_mask(x.astype(np.float32)), x, np.zeros(1, dtype)))
    out2 = np.full(x.shape, 7, dtype=dtype)
    np.testing.assert_array_equal(_bits(nm.to_dense(out=out2)), _bits(nm.to_dense()))
    with pytest.raises(ValueError):
        t.to_dense(out=np.zeros((9, 17), dtype))
    with pytest.raises(ValueError):
        t.to_dense(out=np.zeros((17, 9), np.float64 if dtype != np.float64 else np.float32))
    with pytest.raises(ValueError):
        t.to_dense(out=np.zeros((9, 17), dtype).T)


def test_special_float_values_round_trip():
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 3.4e38, -1e-45, 1.0], np.float32)
    x[0] = np.frombuffer(struct.pack("<I", 0x7FC01234), np.float32)[0]  # a NaN payload
    t = sparse.encode(x)
    d = sparse.SparseTensor.from_bytes(t.to_bytes()).to_dense()
    expect = x.copy()
    expect[5] = 0.0  # -0.0 is a zero: not kept, comes back as +0.0 (documented)
    np.testing.assert_array_equal(_bits(d), _bits(expect))
    assert t.nnz == 7
    for dt in (np.float16, ml_dtypes.bfloat16):
        y = np.array([-0.0, 1.0, np.inf, -2.0], dt)
        d = sparse.encode(y).to_dense()
        np.testing.assert_array_equal(_bits(d), _bits(np.array([0.0, 1.0, np.inf, -2.0], dt)))


def test_explicit_mask_keeps_zeros_and_drops_nonzeros(rng):
    x = _data(rng, (10, 12), np.float32, 0.5)
    x[0, 0] = -0.0
    mask = rng.random((10, 12)) < 0.3
    mask[0, 0] = True
    t = sparse.encode(x, mask=mask)
    np.testing.assert_array_equal(t.mask, ref.packed_mask(mask))
    np.testing.assert_array_equal(_bits(t.values), _bits(x[mask]))
    d = sparse.SparseTensor.from_bytes(t.to_bytes()).to_dense()
    np.testing.assert_array_equal(_bits(d), _bits(np.where(mask, x, np.float32(0))))
    assert _bits(d)[0, 0] == 0x80000000  # -0.0 kept bit for bit when the mask keeps it


def test_prune_then_quantize_compounds(rng):
    w = heavy_tailed(rng, (64, 96))
    keep = prune.magnitude_mask(w, 0.75)
    scale = np.abs(w).max() / 127
    q = np.clip(np.rint(np.where(keep, w, 0) / scale), -127, 127).astype(np.int8)
    assert np.all(q[~keep] == 0)  # zeros stay exact zeros after symmetric quantization
    t = sparse.encode(q)
    assert t.nnz <= keep.sum()
    np.testing.assert_array_equal(sparse.SparseTensor.from_bytes(t.to_bytes()).to_dense(), q)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,shape,axis", [(2, 4, (8, 16), -1), (2, 4, (6, 10), -1), (4, 8, (16, 5), 0),
                                            (1, 4, (3, 9, 4), 1), (3, 8, (40,), 0), (2, 3, (5, 7), -1)])
def test_encode_nm_round_trip(rng, dtype, n, m, shape, axis):
    w = heavy_tailed(rng, shape)
    keep = prune.nm_mask(w, n, m, axis=axis)
    x = np.where(keep, w, 0).astype(dtype)
    x[x == 0] = 0
    t = sparse.encode_nm(x, n, m, axis=axis)
    assert t.nm == (n, m, axis % len(shape))
    L = shape[axis]
    full, r = divmod(L, m)
    lanes = x.size // L
    assert t.nnz == lanes * (full * n + min(n, r))
    bits = max(1, int(np.ceil(np.log2(m)))) if m > 1 else 0
    assert t.positions.size == -(-t.nnz * bits // 8)
    np.testing.assert_array_equal(_bits(t.to_dense()), _bits(x))
    mask = np.unpackbits(t.mask, count=x.size, bitorder="little").reshape(x.shape).astype(bool)
    assert np.all(mask[x != 0])  # every nonzero is stored
    t2 = sparse.SparseTensor.from_bytes(t.to_bytes())
    assert t2.nm == t.nm
    np.testing.assert_array_equal(_bits(t2.to_dense()), _bits(x))


def test_encode_nm_positions_2bit_layout():
    x = np.array([[0, 3, 0, 4, 5, 0, 0, 0]], np.int8)
    t = sparse.encode_nm(x, 2, 4)
    np.testing.assert_array_equal(t.values, [3, 4, 5, 0])
    # positions 1, 3 | 0, 1 -> 2 bits each, LSB first: 0b01_00_11_01
    np.testing.assert_array_equal(t.positions, [0b01001101])


def test_encode_nm_rejects_denser_groups():
    x = np.array([[1, 2, 3, 0]], np.float32)
    with pytest.raises(edgepack.ArgumentError, match="not 2:4 sparse"):
        sparse.encode_nm(x, 2, 4)
    with pytest.raises(ValueError):
        sparse.encode_nm(x, 5, 4)


# --- compressed size against the information bound ------------------------------------------


def _pruned_int8(rng, sparsity, shape=(4096, 4096)):
    """Magnitude-pruned then symmetric-int8-quantized heavy-tailed weights (scale from the
    99.9th percentile of |w|, clipped): the data the model file stores."""
    w = heavy_tailed(rng, shape)
    keep = prune.magnitude_mask(w, sparsity)
    scale = np.quantile(np.abs(w), 0.999) / 127
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    q[~keep] = 0
    return q


@pytest.mark.slow
@pytest.mark.parametrize("sparsity", [0.5, 0.75, 0.9])
def test_size_within_1p5_percent_of_bound_4096(rng, sparsity):
    q = _pruned_int8(rng, sparsity)
    b = sparse.encode(q).to_bytes()
    bound = ref.sparse_bound_bits(q)
    ratio = len(b) * 8 / bound
    print(f"\nsparsity {sparsity}: {len(b) * 8 / q.size:.4f} bits/weight, bound "
          f"{bound / q.size:.4f}, ratio {ratio:.4f}")
    assert ratio <= 1.015
    np.testing.assert_array_equal(sparse.SparseTensor.from_bytes(b).to_dense(), q)


def test_size_near_bound_small(rng):
    for s in (0.5, 0.9):
        q = _pruned_int8(rng, s, (512, 512))
        b = sparse.encode(q).to_bytes()
        # small tensor: the two frequency tables (~600 bytes) are ~2% of the bound here
        assert len(b) * 8 <= 1.03 * ref.sparse_bound_bits(q)


def test_structured_mask_compresses_with_zstd_level(rng):
    w = heavy_tailed(rng, (256, 256))
    x = np.where(prune.channel_mask(w, 0.5), w, 0).astype(np.float32)
    t = sparse.encode(x)
    # rANS (order 0) codes the 0x00 / 0xFF mask bytes at 1 bit each; zstd sees the runs
    assert len(t.to_bytes(level=3)) < len(t.to_bytes(level=1)) - 900
    assert len(t.to_bytes(level=0)) >= len(t.to_bytes(level=1))


# --- hostile bytes -------------------------------------------------------------------------


def _small_payload(rng, level=1):
    x = _data(rng, (9, 13), np.float16, 0.3)
    return x, sparse.encode(x).to_bytes(level=level)


@pytest.mark.parametrize("level", [0, 1, 3])
def test_truncated_at_every_byte(rng, level):
    _, b = _small_payload(rng, level)
    for cut in range(len(b)):
        with pytest.raises(edgepack.FormatError):
            sparse.SparseTensor.from_bytes(b[:cut])
    with pytest.raises(edgepack.FormatError, match="unexpected bytes"):
        sparse.SparseTensor.from_bytes(b + b"\0")


def test_flipped_bytes_never_crash(rng):
    x, b = _small_payload(rng)
    for i in range(len(b)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(b)
            bad[i] ^= flip
            try:
                t = sparse.SparseTensor.from_bytes(bytes(bad))
            except edgepack.FormatError:
                continue
            t.to_dense()  # whatever passed validation is self-consistent


def _header(ndim=2, shape=(4, 4), nnz=3, layout=0, dtype=1, version=1, magic=b"EPSP"):
    h = magic + bytes([version, layout, dtype, ndim])
    h += b"".join(struct.pack("<Q", d) for d in shape) + struct.pack("<Q", nnz)
    return h


def _section(raw, method=0, raw_len=None, payload_len=None):
    return bytes([method]) + struct.pack("<QQ", len(raw) if raw_len is None else raw_len,
                                         len(raw) if payload_len is None else payload_len) + raw


def test_handmade_valid_payload_parses():
    mask = bytes([0b00000111, 0])
    b = _header() + _section(mask) + _section(bytes([5, 6, 7]))
    t = sparse.SparseTensor.from_bytes(b)
    np.testing.assert_array_equal(t.to_dense().ravel(), [5, 6, 7] + [0] * 13)


@pytest.mark.parametrize(
    "buf,field",
    [
        (_header(magic=b"NOPE") + _section(b"\x07\x00") + _section(b"\x05\x06\x07"), "magic"),
        (_header(version=2) + _section(b"\x07\x00") + _section(b"\x05\x06\x07"), "version"),
        (_header(dtype=9) + _section(b"\x07\x00") + _section(b"\x05\x06\x07"), "dtype"),
        (_header(layout=7) + _section(b"\x07\x00") + _section(b"\x05\x06\x07"), "layout"),
        (_header(nnz=4) + _section(b"\x07\x00") + _section(b"\x05\x06\x07\x08"), "nnz"),
        (_header(nnz=2) + _section(b"\x07\x00") + _section(b"\x05\x06"), "nnz"),
        (_header(nnz=17) + _section(b"\x07\x00"), "nnz"),
        (_header() + _section(b"\x07\x00\x00") + _section(b"\x05\x06\x07"), "raw_len"),
        (_header() + _section(b"\x07\x00", raw_len=2, payload_len=1) + _section(b"\x05\x06\x07"), "payload"),
        (_header() + _section(b"\x07\x00", payload_len=1 << 60), "payload_len"),
        (_header() + _section(b"\x07\x00", method=9) + _section(b"\x05\x06\x07"), "method"),
        (_header(shape=(1 << 40, 1 << 40)) + _section(b""), "shape"),
        (_header(ndim=40, shape=(1,) * 40), "ndim"),
        (_header(shape=(3, 3), nnz=1) + _section(b"\x01\x02") + _section(b"\x05"), "past the last"),
    ],
)
def test_corrupt_fields_are_named(buf, field):
    with pytest.raises(edgepack.FormatError, match=field):
        sparse.SparseTensor.from_bytes(buf)


def test_huge_claimed_sizes_are_rejected_before_allocating():
    n = 1 << 40  # 2^37 mask bytes claimed, a tiny rANS payload
    b = _header(ndim=1, shape=(n,), nnz=1) + _section(b"\0" * 100, method=1, raw_len=n // 8)
    with pytest.raises(edgepack.FormatError, match="claims"):
        sparse.SparseTensor.from_bytes(b)
    b = _header(ndim=1, shape=(n,), nnz=1) + _section(b"\0" * 10, method=2, raw_len=n // 8)
    with pytest.raises(edgepack.FormatError, match="claims"):
        sparse.SparseTensor.from_bytes(b)


def test_bad_arguments():
    with pytest.raises(TypeError):
        sparse.encode(np.ones(4, np.float64))
    with pytest.raises(TypeError):
        sparse.encode(np.ones(4, np.int32))
    with pytest.raises(ValueError):
        sparse.encode(np.ones(4, np.int8), mask=np.ones(5, bool))
    with pytest.raises(TypeError):
        sparse.encode(np.ones(4, np.int8), mask=np.ones(4, np.int8))
    t = sparse.encode(np.ones(4, np.int8))
    for lvl in (-1, 23):
        with pytest.raises(ValueError):
            t.to_bytes(level=lvl)
    with pytest.raises(ValueError):
        sparse.encode_nm(np.ones(4, np.int8), 2, 4, axis=3)


# --- properties (hypothesis) -----------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(
        dtype=st.sampled_from([np.int8, np.uint8, np.float16, np.float32]),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=40),
    ),
    level=st.integers(0, 4),
)
def test_round_trip_property(x, level):
    t = sparse.SparseTensor.from_bytes(sparse.encode(x).to_bytes(level=level))
    expect = np.where(x != 0, x, np.zeros(1, x.dtype))  # -0.0 -> +0.0, NaN kept bit for bit
    np.testing.assert_array_equal(_bits(t.to_dense()), _bits(expect))
    np.testing.assert_array_equal(t.mask, ref.packed_mask(x != 0))


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=30),
                 elements=st.floats(-1e6, 1e6, width=32)),
    nm=st.sampled_from([(1, 2), (2, 4), (3, 4), (4, 8), (2, 3)]),
)
def test_nm_property(x, nm):
    n, m = nm
    keep = prune.nm_mask(x, n, m)
    np.testing.assert_array_equal(keep, ref.nm_keep(x, n, m))
    y = np.where(keep, x, np.float32(0))
    t = sparse.SparseTensor.from_bytes(sparse.encode_nm(y, n, m).to_bytes())
    np.testing.assert_array_equal(_bits(t.to_dense()), _bits(y))
