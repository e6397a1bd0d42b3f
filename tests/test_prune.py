"""edgepack.prune against the numpy oracles in tests/reference.py."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import heavy_tailed

import edgepack
from edgepack import prune
import reference as ref

SHAPES = [(1,), (2,), (7,), (3, 5), (4, 8), (17, 33), (2, 3, 7), (64, 130)]
SPARSITIES = [0.0, 0.1, 0.5, 0.55, 0.75, 0.9, 0.999]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_magnitude_matches_oracle_and_counts(rng, shape, sparsity):
    x = heavy_tailed(rng, shape)
    keep = prune.magnitude_mask(x, sparsity)
    assert keep.dtype == np.bool_ and keep.shape == x.shape
    np.testing.assert_array_equal(keep, ref.magnitude_keep(x, sparsity))
    assert (~keep).sum() == ref.prune_count(sparsity, x.size)


def test_magnitude_ties_lower_index_pruned_first():
    x = np.array([1.0, -1.0, 1.0, 0.5, -0.0, 0.0, 2.0, 1.0], dtype=np.float32)
    keep = prune.magnitude_mask(x, 0.5)  # prune 4: -0, 0, 0.5, then the first 1.0
    np.testing.assert_array_equal(keep, [False, True, True, False, False, False, True, True])
    np.testing.assert_array_equal(keep, ref.magnitude_keep(x, 0.5))


def test_magnitude_rounding_is_half_even():
    x = np.arange(1, 11, dtype=np.float32)
    assert (~prune.magnitude_mask(x[:5], 0.5)).sum() == 2  # 2.5 -> 2
    assert (~prune.magnitude_mask(x[:7], 0.5)).sum() == 4  # 3.5 -> 4


def test_magnitude_many_ties_and_integers(rng):
    x = rng.integers(-3, 4, size=(50, 41)).astype(np.float32)
    for s in (0.3, 0.5, 0.8):
        np.testing.assert_array_equal(prune.magnitude_mask(x, s), ref.magnitude_keep(x, s))
    xi = rng.integers(-128, 128, size=(33, 17), dtype=np.int8)
    np.testing.assert_array_equal(prune.magnitude_mask(xi, 0.6), ref.magnitude_keep(xi, 0.6))


def test_magnitude_special_values():
    x = np.array([np.inf, -np.inf, 0.0, -0.0, 1e-45, -3e38, 7.0], dtype=np.float32)
    np.testing.assert_array_equal(prune.magnitude_mask(x, 0.5), ref.magnitude_keep(x, 0.5))


@pytest.mark.parametrize("shape,axis", [((8, 16), 0), ((8, 16), 1), ((3, 4, 5), 1), ((3, 4, 5), -1), ((9,), 0)])
def test_magnitude_per_slice(rng, shape, axis):
    x = heavy_tailed(rng, shape)
    keep = prune.magnitude_mask(x, 0.5, axis=axis)
    np.testing.assert_array_equal(keep, ref.magnitude_keep(x, 0.5, axis=axis))
    moved = np.moveaxis(keep, axis, 0).reshape(x.shape[axis], -1)
    k = ref.prune_count(0.5, moved.shape[1])
    assert np.all((~moved).sum(axis=1) == k)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_wanda_importance(rng, axis):
    x = heavy_tailed(rng, (16, 24))
    imp = np.abs(rng.standard_normal(24)).astype(np.float32)
    keep = prune.magnitude_mask(x, 0.5, importance=imp, axis=axis)
    np.testing.assert_array_equal(keep, ref.magnitude_keep(x, 0.5, importance=imp, axis=axis))


def test_heavy_tailed_large(rng):
    x = heavy_tailed(rng, (300, 1000))
    for s in (0.5, 0.9):
        np.testing.assert_array_equal(prune.magnitude_mask(x, s), ref.magnitude_keep(x, s))


def test_threads_do_not_change_results(rng):
    x = heavy_tailed(rng, (1024, 1100))
    before = edgepack.get_num_threads()
    try:
        edgepack.set_num_threads(1)
        a = prune.magnitude_mask(x, 0.7)
        b = prune.nm_mask(x)
        edgepack.set_num_threads(2)
        np.testing.assert_array_equal(prune.magnitude_mask(x, 0.7), a)
        np.testing.assert_array_equal(prune.nm_mask(x), b)
    finally:
        edgepack.set_num_threads(before)
    np.testing.assert_array_equal(a, ref.magnitude_keep(x, 0.7))


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (3, 4), (1, 2), (2, 3), (5, 16), (4, 4)])
@pytest.mark.parametrize("shape,axis", [((8, 32), -1), ((8, 30), -1), ((12, 7), 0), ((3, 10, 5), 1), ((13,), 0)])
def test_nm_matches_oracle(rng, n, m, shape, axis):
    x = heavy_tailed(rng, shape)
    keep = prune.nm_mask(x, n, m, axis=axis)
    np.testing.assert_array_equal(keep, ref.nm_keep(x, n, m, axis=axis))


def test_two_four_holds_in_every_group(rng):
    x = heavy_tailed(rng, (64, 256))
    keep = prune.nm_mask(x, 2, 4)
    assert np.all(keep.reshape(-1, 4).sum(axis=1) == 2)
    # the two kept are the two largest |x| of each group
    g = np.abs(x).reshape(-1, 4)
    kept_min = np.where(keep.reshape(-1, 4), g, np.inf).min(axis=1)
    pruned_max = np.where(~keep.reshape(-1, 4), g, -np.inf).max(axis=1)
    assert np.all(kept_min >= pruned_max)


def test_nm_ties_and_partial_group():
    x = np.array([[5, 5, 5, 5, 1, 2, 3]], dtype=np.float32)
    keep = prune.nm_mask(x, 2, 4)
    # ties: lower index pruned first; partial group of 3 keeps ceil(2*3/4) = 2
    np.testing.assert_array_equal(keep, [[False, False, True, True, False, True, True]])


@pytest.mark.parametrize("shape,block", [((8, 16), (1, 4)), ((9, 14), (2, 4)), ((5, 5), (2, 2)), ((16, 16), (4, 1))])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9])
def test_block_matches_oracle(rng, shape, block, sparsity):
    x = heavy_tailed(rng, shape)
    keep = prune.block_mask(x, sparsity, block=block)
    np.testing.assert_array_equal(keep, ref.block_keep(x, sparsity, block))


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("norm", [1, 2, np.inf])
def test_channel_matches_oracle(rng, axis, norm):
    x = heavy_tailed(rng, (12, 6, 5))
    keep = prune.channel_mask(x, 0.5, axis=axis, norm=norm)
    np.testing.assert_array_equal(keep, ref.channel_keep(x, 0.5, axis=axis, norm=norm))


def test_global_masks_one_threshold(rng):
    w = {"a": heavy_tailed(rng, (10, 20)), "b": heavy_tailed(rng, (7,)) * 5, "c": heavy_tailed(rng, (3, 3))}
    masks = prune.global_masks(w, 0.6)
    flat = np.concatenate([w[k].ravel() for k in w])
    expect = ref.magnitude_keep(flat, 0.6)
    got = np.concatenate([masks[k].ravel() for k in w])
    np.testing.assert_array_equal(got, expect)
    sub = prune.global_masks(w, 0.5, include=["c", "a"])
    assert list(sub) == ["a", "c"]
    flat2 = np.concatenate([w["a"].ravel(), w["c"].ravel()])
    np.testing.assert_array_equal(
        np.concatenate([sub["a"].ravel(), sub["c"].ravel()]), ref.magnitude_keep(flat2, 0.5)
    )
    assert list(prune.global_masks(w, 0.5, include=lambda k: k != "b")) == ["a", "c"]


@pytest.mark.parametrize(
    "call",
    [
        lambda x: prune.magnitude_mask(x, 1.0),
        lambda x: prune.magnitude_mask(x, -0.1),
        lambda x: prune.magnitude_mask(x, float("nan")),
        lambda x: prune.magnitude_mask(x, 0.5, importance=np.ones(3, np.float32)),
        lambda x: prune.magnitude_mask(x, 0.5, importance=-np.ones(8, np.float32)),
        lambda x: prune.magnitude_mask(x, 0.5, axis=2),
        lambda x: prune.nm_mask(x, 5, 4),
        lambda x: prune.nm_mask(x, 0, 4),
        lambda x: prune.nm_mask(x, 2, 0),
        lambda x: prune.nm_mask(x, 2, 300),
        lambda x: prune.block_mask(x, 0.5, block=(1, 2, 3)),
        lambda x: prune.block_mask(x, 0.5, block=(0, 2)),
        lambda x: prune.channel_mask(x, 0.5, norm=3),
        lambda x: prune.global_masks({"a": x}, 0.5, include=["zz"]),
    ],
)
def test_bad_arguments_are_value_errors(call):
    x = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError) as e:
        call(x)
    assert isinstance(e.value, edgepack.EdgepackError)


def test_nan_scores_name_the_index():
    x = np.ones((4, 8), np.float32)
    x[2, 3] = np.nan
    for f in (lambda: prune.magnitude_mask(x, 0.5), lambda: prune.nm_mask(x),
              lambda: prune.block_mask(x, 0.5), lambda: prune.channel_mask(x, 0.5)):
        with pytest.raises(edgepack.NonFiniteError, match="NaN at index 19"):
            f()
    imp = np.ones(8, np.float32)
    imp[1] = np.inf
    with pytest.raises(edgepack.NonFiniteError):
        prune.magnitude_mask(np.ones((4, 8), np.float32), 0.5, importance=imp)
    with pytest.raises(edgepack.NonFiniteError, match="'w'"):
        prune.global_masks({"w": x}, 0.5)


def test_unsupported_dtypes_are_type_errors():
    with pytest.raises(TypeError):
        prune.magnitude_mask(np.array(["a", "b"]), 0.5)
    with pytest.raises(TypeError):
        prune.nm_mask(np.ones(4, np.complex64))


def test_empty_and_scalar():
    assert prune.magnitude_mask(np.zeros((0, 3), np.float32), 0.5).shape == (0, 3)
    assert prune.magnitude_mask(np.float32(3.0), 0.4).shape == ()
    assert prune.nm_mask(np.zeros((0, 4), np.float32)).shape == (0, 4)


# --- TFMOT schedules -------------------------------------------------------------------------


def test_polynomial_decay_formula_and_steps():
    s = prune.PolynomialDecay(0.2, 0.8, begin_step=100, end_step=1100, power=3, frequency=50)
    for step in [0, 99, 100, 149, 150, 300, 1099, 1100, 1150, 5000]:
        assert s(step) == ref.tfmot_polynomial_decay(step, 0.2, 0.8, 100, 1100, 3, 50)
    assert s(100) == (True, pytest.approx(0.2))
    assert s(1100)[1] == pytest.approx(0.8)
    assert s(1150) == (False, pytest.approx(0.8))


def test_constant_sparsity():
    c = prune.ConstantSparsity(0.5, begin_step=10, frequency=5)
    assert c(10) == (True, 0.5) and c(12) == (False, 0.5) and c(10**6) == (True, 0.5)
    assert c(5) == (False, 0.5)
    c2 = prune.ConstantSparsity(0.5, begin_step=10, end_step=20, frequency=5)
    assert c2(20)[0] and not c2(25)[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda: prune.PolynomialDecay(0.1, 0.9, -1, 10),
        lambda: prune.PolynomialDecay(0.1, 0.9, 0, -1),
        lambda: prune.PolynomialDecay(0.1, 0.9, 10, 5),
        lambda: prune.PolynomialDecay(0.1, 1.0, 0, 10),
        lambda: prune.PolynomialDecay(0.1, 0.9, 0, 10, frequency=0),
        lambda: prune.PolynomialDecay(0.1, 0.9, 5, 5),
        lambda: prune.ConstantSparsity(1.0, 0),
        lambda: prune.ConstantSparsity(0.5, 0, end_step=-2),
    ],
)
def test_schedule_validation(make):
    with pytest.raises(ValueError):
        make()


# --- torch.nn.utils.prune (only when torch is installed) ------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_against_torch_prune(rng):
    import torch
    import torch.nn.utils.prune as tp

    x = heavy_tailed(rng, (64, 48))  # continuous data: no ties, so torch's topk is unique
    for amount in (0.3, 0.5, 0.9):
        lin = torch.nn.Linear(48, 64, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(x))
        tp.l1_unstructured(lin, "weight", amount=amount)
        np.testing.assert_array_equal(prune.magnitude_mask(x, amount), lin.weight_mask.numpy() > 0)
        lin2 = torch.nn.Linear(48, 64, bias=False)
        with torch.no_grad():
            lin2.weight.copy_(torch.from_numpy(x))
        tp.ln_structured(lin2, "weight", amount=amount, n=2, dim=0)
        np.testing.assert_array_equal(
            prune.channel_mask(x, amount, axis=0, norm=2), lin2.weight_mask.numpy() > 0
        )
    mods = [torch.nn.Linear(20, 10, bias=False), torch.nn.Linear(10, 5, bias=False)]
    ws = {"a": heavy_tailed(rng, (10, 20)), "b": heavy_tailed(rng, (5, 10))}
    for mod, w in zip(mods, ws.values()):
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(w))
    tp.global_unstructured([(m, "weight") for m in mods], pruning_method=tp.L1Unstructured, amount=0.6)
    ours = prune.global_masks(ws, 0.6)
    for mod, k in zip(mods, ws):
        np.testing.assert_array_equal(ours[k], mod.weight_mask.numpy() > 0)
