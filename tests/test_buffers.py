"""Recycled result buffers (src/buffers.rs): a large result may land in memory that held an
earlier result, so every kernel must write all of it. Each test here first leaves a poisoned
buffer (0xA5 bytes) in the cache, checks the next result really reuses it (same address), and
compares that result with the numpy oracle."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import edgepack as ep
import numpy as np
import pytest
import reference as ref
from edgepack import kernels

MIB = 1 << 20
# Results between 6 MiB (exclusive) and 8 MiB share one size class (buffers are mapped in
# multiples of 2 MiB), so a poisoned buffer of 7 MiB is reused by each result below.
POISON_F32 = (7 * MIB) // 4


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def poison(nbytes: int = 7 * MIB) -> int:
    """Leave a buffer of about `nbytes` full of 0xA5 in the cache; return its address."""
    a = kernels.dequantize_linear(np.ones(nbytes // 4, np.int8), np.float32(1))
    a.view(np.uint8)[:] = 0xA5
    addr = address(a)
    del a
    return addr


def reused(make, nbytes: int = 7 * MIB):
    """`make()`, checked to have written into a poisoned buffer of about `nbytes`."""
    addr = poison(nbytes)
    r = make()
    got = r[0] if isinstance(r, tuple) else r
    base = got.data if isinstance(got, ep.QuantizedTensor) else got
    assert 6 * MIB < base.nbytes <= 8 * MIB or nbytes != 7 * MIB, base.nbytes
    assert address(base) == addr, "the result did not reuse the poisoned buffer"
    return r


def test_quantize_linear_int8_on_a_recycled_buffer(heavy, rng):
    x = heavy(rng, (15 * MIB) // 2)
    s = np.float32(np.abs(x).max() / 127)
    q = reused(lambda: kernels.quantize_linear(x, s, np.int8(3)))
    assert np.array_equal(q.astype(np.int64), ref.quantize_onnx(x, s, 3, -128, 127))


def test_quantize_linear_4bit_blocked_odd_count_on_a_recycled_buffer(heavy, rng):
    import ml_dtypes

    x = heavy(rng, (1025, 13107))  # odd element count: the last byte holds one nibble
    assert x.size % 2 == 1 and 13107 % 32
    lo, hi = ref.unit_ranges(x, axis=1, block_size=32)
    absmax = np.maximum(np.abs(lo), np.abs(hi))
    s = np.where(absmax > 0, absmax / np.float32(7), np.float32(1)).astype(np.float32)
    z = np.zeros_like(s, dtype=np.int8)
    p = reused(
        lambda: kernels.quantize_linear(x, s, z.astype(ml_dtypes.int4), axis=1, block_size=32)
    )
    want = ref.quantize_onnx(x, ref.broadcast_params(x.shape, s, 1, 32), 0, -8, 7)
    assert np.array_equal(p, ref.pack4(want))


def test_dequantize_linear_on_a_recycled_buffer(rng):
    q = rng.integers(-128, 128, size=(1531, 1201), dtype=np.int8)
    s = rng.uniform(1e-3, 1e-1, size=1201).astype(np.float32)
    z = rng.integers(-5, 5, size=1201).astype(np.int8)
    y = reused(lambda: kernels.dequantize_linear(q, s, z, axis=1))
    want = ref.dequantize_linear(q, s[None, :], z[None, :].astype(np.int64))
    assert np.array_equal(y.view(np.uint32), want.view(np.uint32))


def test_dynamic_quantize_linear_on_a_recycled_buffer(heavy, rng):
    x = heavy(rng, (2049, 3583))
    y, s, z = reused(lambda: kernels.dynamic_quantize_linear(x))
    wy, ws, wz = ref.dynamic_quantize_linear(x)
    assert (s, z) == (ws, wz)
    assert np.array_equal(y, wy)


@pytest.mark.parametrize("bits,axis", [(8, None), (8, 0), (4, 1)])
def test_quantize_and_dequantize_on_recycled_buffers(heavy, rng, bits, axis):
    shape = (2047, 3583) if bits == 8 else (4095, 3583)  # 4-bit: odd count, 7.0 MiB packed
    x = heavy(rng, shape)
    qt = reused(lambda: ep.quantize(x, bits=bits, axis=axis))
    lo, hi = ref.unit_ranges(x, axis=axis)
    qmin, qmax = ref.qrange(bits, True, False)
    for idx in np.ndindex(np.shape(lo)):
        s, _ = ref.compute_scale_zp(np.asarray(lo)[idx], np.asarray(hi)[idx], qmin, qmax, True)
        assert np.asarray(qt.scale)[idx] == s
    full_s = ref.broadcast_params(x.shape, qt.scale, axis)
    want = ref.quantize_onnx(x, full_s, 0, qmin, qmax)
    got = qt.data.astype(np.int64) if bits == 8 else ref.unpack4(qt.data, x.size, True)
    assert np.array_equal(got.reshape(-1), want.reshape(-1))
    if bits == 8:
        d = reused(qt.dequantize, 4 * x.size)
        assert np.array_equal(d, ref.dequantize_linear(qt.data, full_s, 0))


def test_a_view_keeps_its_buffer_out_of_the_cache(rng):
    q = rng.integers(-128, 128, size=POISON_F32, dtype=np.int8)
    s = np.float32(0.03)
    a = kernels.dequantize_linear(q, s)
    v = a[5:]
    addr = address(a)
    del a  # the view still holds the buffer
    for _ in range(3):
        assert address(kernels.dequantize_linear(q[::-1].copy(), s)) != addr
    assert np.array_equal(v, ref.dequantize_linear(q, s, 0)[5:])
    assert not v.base.flags.owndata and v.flags.writeable


def test_release_buffers_frees_the_cache(rng):
    del rng
    poison()
    assert ep.release_buffers() >= 8 * MIB
    assert ep.release_buffers() == 0


def test_threads_share_the_cache_without_mixing_results(rng):
    qs = [rng.integers(-128, 128, size=3 * MIB, dtype=np.int8) for _ in range(4)]
    want = [ref.dequantize_linear(q, np.float32(0.5), 0) for q in qs]
    errors: list[str] = []

    def work(i: int) -> None:
        for _ in range(12):
            y = kernels.dequantize_linear(qs[i], np.float32(0.5))
            if not np.array_equal(y, want[i]):
                errors.append(f"thread {i}")
            y[:] = np.nan  # poison before it goes back to the cache

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def _run(env_value: str, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGEPACK_BUFFER_CACHE_MB=env_value)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_env_zero_turns_recycling_off():
    r = _run(
        "0",
        "import numpy as np, edgepack as ep\n"
        "q = np.arange(8 << 20, dtype=np.int64).astype(np.int8)\n"
        "y = ep.dequantize_linear(q, np.float32(2))\n"
        "assert y.base is None and y.flags.owndata\n"
        "assert np.array_equal(y, q.astype(np.float32) * 2)\n"
        "print(ep.build_info()['buffer_cache_limit'])\n",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"


@pytest.mark.parametrize("bad", ["lots", "-1", "1.5", "99999999999"])
def test_env_bad_value_is_refused_at_import(bad):
    r = _run(bad, "import edgepack")
    assert r.returncode != 0
    assert "EDGEPACK_BUFFER_CACHE_MB" in r.stderr and "whole number" in r.stderr, r.stderr


def test_matmul_integer_on_a_recycled_buffer(rng):
    a = rng.integers(-128, 128, size=(1500, 96), dtype=np.int8)
    b = rng.integers(-128, 128, size=(96, 1200), dtype=np.int8)
    packed = ep.pack_matrix(b)
    c = reused(lambda: kernels.matmul_integer(a, packed))  # 7.2 MB of int32
    assert np.array_equal(c, ref.matmul_integer(a, b))


@pytest.mark.parametrize("activations", ["dynamic", "dynamic-per-row"])
def test_quantized_linear_on_a_recycled_buffer(heavy, rng, activations):
    w = heavy(rng, (1200, 64))
    bias = rng.normal(0, 0.1, 1200).astype(np.float32)
    x = rng.normal(0, 1, (1500, 64)).astype(np.float32)
    layer = ep.QuantizedLinear.from_float(w, bias, activations=activations)
    q_w, s_w = ref.symmetric_int8_weight(w)
    y = reused(lambda: layer(x))  # 7.2 MB of float32
    oracle = (
        ref.quantized_linear_dynamic if activations == "dynamic" else ref.quantized_linear_per_row
    )
    assert np.array_equal(y, oracle(x, q_w, s_w, bias))


def test_matmul_integer_unpacked_b_on_a_recycled_buffer(rng):
    for m in (3, 1500):  # straight from B (AVX-512, M <= 8) and packed per call
        n = (7 * MIB) // (4 * m)
        a = rng.integers(0, 256, size=(m, 40), dtype=np.uint8)
        b = rng.integers(-128, 128, size=(40, n), dtype=np.int8)
        c = reused(lambda a=a, b=b: kernels.matmul_integer(a, b, np.uint8(7)))
        assert np.array_equal(c, ref.matmul_integer(a, b, np.uint8(7)))


def test_qlinear_matmul_on_a_recycled_buffer(rng):
    a = rng.integers(0, 256, size=(2500, 48), dtype=np.uint8)
    b = rng.integers(-128, 128, size=(48, 2900), dtype=np.int8)
    packed = ep.pack_matrix(b)
    # 7.25 MB of uint8: the scale keeps most outputs inside the range (not all clipped).
    s_a, s_b, s_y = np.float32(0.02), np.float32(0.01), np.float32(2.0)
    y = reused(
        lambda: kernels.qlinear_matmul(a, s_a, np.uint8(120), packed, s_b, None, s_y, np.uint8(128))
    )
    want = ref.qlinear_matmul(a, s_a, 120, b, s_b, 0, s_y, 128, np.uint8)
    assert 0.2 < np.mean((want > 0) & (want < 255))
    assert np.array_equal(y, want)


def test_int8_output_quantized_linear_on_a_recycled_buffer(heavy, rng):
    w = heavy(rng, (2900, 40))
    bias = rng.normal(0, 0.1, 2900).astype(np.float32)
    x = rng.normal(0, 1, (2500, 40)).astype(np.float32)
    layer = ep.QuantizedLinear.from_float(
        w,
        bias,
        activations="static",
        input_scale=0.02,
        input_zero_point=128,
        output_scale=0.05,
        output_zero_point=-3,
    )
    q_w, s_w = ref.symmetric_int8_weight(w)
    y = reused(lambda: layer(x))  # 7.25 MB of int8
    assert y.dtype == np.int8
    assert np.array_equal(
        y, ref.quantized_linear_static(x, q_w, s_w, bias, 0.02, 128, 0.05, -3, np.int8)
    )
