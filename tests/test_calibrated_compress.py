"""compress(..., calibration=stats): calibrated rules, budgets, the report's output error, the
CLI, and SmoothQuant in QuantizedLinear.

Oracles: the numpy references of tests/reference.py (GPTQ, Wanda, the objective, SmoothQuant,
the QuantizedLinear pipeline) and brute force for the budget allocation.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import reference as ref

import edgepack as ep
from edgepack import _calibrate
from edgepack.recipe import Recipe, Rule


def heavy_weight(rng, out, inp):
    """Student-t weights with a few outliers 100x the typical size."""
    w = rng.standard_t(3, size=(out, inp)) * 0.02
    idx = rng.choice(w.size, size=max(1, w.size // 500), replace=False)
    w.flat[idx] *= 100 / 3
    return w.astype(np.float32)


def activations(rng, tokens, inp, outliers=3):
    """Correlated activations with a few outlier channels (10-50x)."""
    z = rng.standard_normal((tokens, inp))
    mix = np.eye(inp) + 0.3 * rng.standard_normal((inp, inp)) / math.sqrt(inp)
    x = z @ mix
    cols = rng.choice(inp, size=outliers, replace=False)
    x[:, cols] *= rng.uniform(10, 50, size=outliers)
    return x.astype(np.float32)


def h_of(x):
    x64 = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    return x64.T @ x64 / x64.shape[0]


@pytest.fixture
def layer(rng):
    w = heavy_weight(rng, 48, 80)
    x = activations(rng, 640, 80)
    stats = ep.CalibrationStats()
    stats.update("fc.weight", x)
    return w, x, stats


def _codes(qt):
    """Unpacked integer codes (out, in) of a QuantizedTensor."""
    data = np.asarray(qt.data)
    if qt.bits == 8:
        return data.astype(np.int64)
    signed = np.asarray(qt.zero_point).dtype == np.int8
    return ref.unpack4(data, math.prod(qt.shape), signed).reshape(qt.shape).astype(np.int64)


# ------------------------------------------------------------------------------------------------
# Checks made before any work


def test_gptq_rule_without_calibration_fails_before_writing(tmp_path, layer):
    w, _x, _stats = layer
    out = tmp_path / "m.epk"
    rec = Recipe(rules=(Rule("fc.weight", method="gptq"),))
    with pytest.raises(ep.ArgumentError, match=r"'fc\.weight'.*calibration"):
        ep.compress({"fc.weight": w}, rec, out=out)
    assert not out.exists()


def test_missing_layer_in_stats_is_named(layer, rng):
    w, _x, stats = layer
    w2 = heavy_weight(rng, 16, 80)
    weights = {"fc.weight": w, "other.weight": w2}
    # a rule that asks for gptq needs the statistics
    rec = Recipe(rules=(Rule("*.weight", method="gptq"),))
    with pytest.raises(ep.ArgumentError, match=r"'other\.weight'.*no"):
        ep.compress(weights, rec, calibration=stats)
    # the recipe-level method is a default: uncovered tensors are rounded, with a warning
    with pytest.warns(UserWarning, match=r"'other\.weight'"):
        m = ep.compress(weights, Recipe(method="gptq"), calibration=stats)
    rtn = ep.quantize(w2, axis=0)
    np.testing.assert_array_equal(np.asarray(m["other.weight"].data), np.asarray(rtn.data))
    gptq = ep.gptq(w, stats.hessian("fc.weight"))
    np.testing.assert_array_equal(np.asarray(m["fc.weight"].data), np.asarray(gptq.data))

def test_stats_of_another_model_are_refused(layer):
    w, _x, stats = layer
    rec = Recipe(method="gptq")
    with pytest.raises(ep.ArgumentError, match=r"'fc\.weight' has 64 input features.*80"):
        ep.compress({"fc.weight": w[:, :64].copy()}, rec, calibration=stats)


def test_gptq_needs_full_statistics(rng):
    w = heavy_weight(rng, 32, 64)
    stats = ep.CalibrationStats(full=False)
    stats.update("fc.weight", activations(rng, 200, 64))
    with pytest.raises(ep.ArgumentError, match=r"full=False"):
        ep.compress({"fc.weight": w}, Recipe(method="gptq"), calibration=stats)


def test_rule_contradictions():
    with pytest.raises(ep.ArgumentError, match="wanda"):
        Rule("x", method="gptq", sparsity=0.5, sparsity_method="wanda")
    with pytest.raises(ep.ArgumentError, match="structure"):
        Rule("x", sparsity=0.5, structure="nm")
    with pytest.raises(ep.ArgumentError, match="damp"):
        Rule("x", damp=0.0)
    with pytest.raises(ep.ArgumentError, match="budget_bits"):
        Recipe(budget_bits=1.0)
    with pytest.raises(ep.ArgumentError, match="budget_sparsity"):
        Recipe(budget_sparsity=0.95)


def test_recipe_round_trips_with_calibrated_fields():
    r = Recipe(
        rules=(
            Rule(
                "*attn*",
                method="gptq",
                damp=0.05,
                act_order=False,
                layout="in_out",
                sparsity=0.5,
                sparsity_method="sparsegpt",
                structure="nm",
            ),
        ),
        method="hqq",
        budget_bits=4.5,
        budget_sparsity=0.3,
    )
    assert Recipe.from_dict(r.to_dict()) == r
    assert Recipe.from_json(r.to_json()) == r
    assert Recipe.from_toml(r.to_toml()) == r


# ------------------------------------------------------------------------------------------------
# Methods through compress, against the numpy references


@pytest.mark.parametrize(
    "scheme",
    [
        dict(bits=8),
        dict(bits=4, block_size=16),
        dict(bits=4, block_size=32, symmetric=False),
    ],
)
def test_gptq_through_compress_matches_reference(layer, scheme):
    w, x, stats = layer
    rec = Recipe(rules=(Rule("fc.weight", method="gptq", **scheme),))
    model = ep.compress({"fc.weight": w}, rec, calibration=stats)
    qt = model["fc.weight"]
    # The grid is plain rounding's (static groups) ...
    rtn = ep.quantize(
        w,
        bits=scheme["bits"],
        symmetric=scheme.get("symmetric", True),
        axis=0 if scheme["bits"] == 8 else 1,
        block_size=scheme.get("block_size"),
    )
    np.testing.assert_array_equal(qt.scale, rtn.scale)
    np.testing.assert_array_equal(qt.zero_point, rtn.zero_point)
    # ... and the codes are GPTQ's on it: replaying the reference along our codes, every code is
    # a nearest rounding of the running weight (exactly, or within 1e-6 of a tie).
    bits, sym = scheme["bits"], scheme.get("symmetric", True)
    qmin, qmax = {
        (8, True): (-127, 127),
        (8, False): (0, 255),
        (4, True): (-7, 7),
        (4, False): (0, 15),
    }[(bits, sym)]
    if bits == 8:
        scale, zp, rb, cb = np.asarray(qt.scale).reshape(-1, 1), None, 1, w.shape[1]
    else:
        scale, zp, rb, cb = np.asarray(qt.scale), None, 1, scheme["block_size"]
    if not sym:
        zp = np.asarray(qt.zero_point, np.int64).reshape(scale.shape)
    codes = _codes(qt)
    h = h_of(x)
    _, _, excess = ref.gptq_ref(w, h, scale, zp, rb, cb, qmin, qmax, follow=codes)
    assert excess.max() <= 1e-6
    # and it beats plain rounding on the calibration data
    err = ref.output_error_ref(w, qt.dequantize(), h)
    assert err < ref.output_error_ref(w, rtn.dequantize(), h)
    row = model.report()["fc.weight"]
    want = 10 * math.log10(ref.output_error_ref(w, np.zeros_like(w), h) / err)
    assert row.output_snr_db == pytest.approx(want, rel=1e-6)


def test_in_out_layout_is_the_transpose(layer):
    w, _x, stats = layer
    wt = np.ascontiguousarray(w.T)
    stats_t = ep.CalibrationStats()
    stats_t.update("fc.weight", _x, layout="in_out")
    a = ep.compress({"fc.weight": w}, Recipe(method="gptq"), calibration=stats)
    b = ep.compress({"fc.weight": wt}, Recipe(method="gptq"), calibration=stats_t)
    np.testing.assert_array_equal(
        np.asarray(b["fc.weight"].data), np.asarray(a["fc.weight"].data).T
    )
    assert b["fc.weight"].axis == 1 and a["fc.weight"].axis == 0


def test_wanda_through_compress_matches_reference(layer):
    w, x, stats = layer
    rec = Recipe(rules=(Rule("fc.weight", action="keep", sparsity=0.5, sparsity_method="wanda"),))
    got = np.asarray(ep.compress({"fc.weight": w}, rec, calibration=stats).decompress("fc.weight"))
    norm = np.sqrt((np.asarray(x, np.float64) ** 2).sum(axis=0))
    keep = ref.wanda_mask_ref(w, norm, 0.5)
    np.testing.assert_array_equal(got != 0, keep)
    np.testing.assert_array_equal(got[keep], w[keep])


def test_sparsegpt_through_compress_prunes_exactly_and_beats_magnitude(layer):
    w, x, stats = layer
    h = h_of(x)
    for structure, extra in (("unstructured", {}), ("nm", {"n": 2, "m": 4})):
        # float (kept) values: exactly half are zero
        rule = Rule(
            "fc.weight",
            action="keep",
            sparsity=0.5,
            sparsity_method="sparsegpt",
            structure=structure,
            **extra,
        )
        got = ep.compress({"fc.weight": w}, Recipe(rules=(rule,)), calibration=stats)
        assert int((np.asarray(got.decompress("fc.weight")) == 0).sum()) == w.size // 2
        # quantized jointly: at least half (a kept weight may round to 0)
        rule = Rule(
            "fc.weight", sparsity=0.5, sparsity_method="sparsegpt", structure=structure, **extra
        )
        got = ep.compress({"fc.weight": w}, Recipe(rules=(rule,)), calibration=stats)
        y = np.asarray(got.decompress("fc.weight"))
        assert int((y == 0).sum()) >= w.size // 2
        if structure == "nm":
            assert ((y.reshape(48, 20, 4) != 0).sum(axis=2) <= 2).all()
            mag = ref.nm_keep(np.abs(w), 2, 4)
        else:
            mag = ref.magnitude_keep(np.abs(w), 0.5)
        assert ref.output_error_ref(w, y, h) < ref.output_error_ref(w, w * mag, h)


# ------------------------------------------------------------------------------------------------
# Budgets


def _brute_force(items, budget):
    best = (math.inf, None)
    for combo in itertools.product(*[range(len(it.options)) for it in items]):
        cost = sum(it.options[c][0] * it.size for it, c in zip(items, combo, strict=True))
        if cost <= budget:
            err = sum(it.options[c][1] for it, c in zip(items, combo, strict=True))
            best = min(best, (err, combo), key=lambda t: t[0])
    return best


def test_greedy_allocation_respects_budget_and_is_near_optimal():
    rng = np.random.default_rng(7)
    for _ in range(200):
        items = []
        for i in range(4):
            costs = np.sort(rng.uniform(1, 10, size=4))
            errs = np.sort(rng.uniform(0, 1, size=4))[::-1]
            items.append(
                _calibrate._Item(
                    f"t{i}",
                    int(rng.integers(1, 5)),
                    [
                        (float(c), float(e), j)
                        for j, (c, e) in enumerate(zip(costs, errs, strict=True))
                    ],
                )
            )
        lo = sum(min(o[0] for o in it.options) * it.size for it in items)
        hi = sum(max(o[0] for o in it.options) * it.size for it in items)
        budget = float(rng.uniform(lo, hi))
        choice = _calibrate._greedy(items, budget)
        cost = sum(it.options[choice[it.name]][0] * it.size for it in items)
        assert cost <= budget * (1 + 1e-12)
        err = sum(it.options[choice[it.name]][1] for it in items)
        opt, _ = _brute_force(items, budget)
        # the hull walk is optimal up to the one step that did not fit: never worse than the
        # optimum at the budget minus the largest step
        largest = max((it.options[-1][0] - it.options[0][0]) * it.size for it in items)
        opt_lower, _ = _brute_force(items, budget - largest)
        assert opt <= err + 1e-12
        if math.isfinite(opt_lower):
            assert err <= opt_lower + 1e-12


def _mixed_model(rng):
    weights, stats = {}, ep.CalibrationStats()
    for i, (out, inp, out_mult) in enumerate(
        [(96, 64, 1), (64, 96, 4), (128, 64, 1), (64, 128, 1)]
    ):
        name = f"l{i}.weight"
        weights[name] = heavy_weight(rng, out, inp) * out_mult
        stats.update(name, activations(rng, 400, inp, outliers=1 + 2 * i))
    return weights, stats


def test_budget_bits_stays_within_budget_and_beats_uniform(rng):
    weights, stats = _mixed_model(rng)
    rec = Recipe(budget_bits=5.0, method="gptq")
    model = ep.compress(weights, rec, calibration=stats)
    n = sum(w.size for w in weights.values())
    stored_bits = 0.0
    total_err = 0.0
    for name, w in weights.items():
        qt = model[name]
        groups = np.asarray(qt.scale).size
        stored_bits += qt.bits * w.size + 32 * groups
        y = qt.dequantize()
        h = stats.hessian(name)
        total_err += ref.output_error_ref(w, y, h) / ref.output_error_ref(w, 0 * w, h)
    assert stored_bits / n <= 5.0 + 1e-9
    # any single uniform scheme that fits the budget does no better
    for bits, block in ((4, 32), (4, 64), (4, 128)):
        uni = ep.compress(
            weights,
            Recipe(rules=(Rule("*", bits=bits, block_size=block, method="gptq"),)),
            calibration=stats,
        )
        e = sum(
            ref.output_error_ref(w, uni[k].dequantize(), stats.hessian(k))
            / ref.output_error_ref(w, 0 * w, stats.hessian(k))
            for k, w in weights.items()
        )
        assert total_err <= e * (1 + 1e-9)


def test_budget_bits_counts_float16_scales(rng, tmp_path):
    """scale_dtype="float16": every scale is stored as a float16 and the budget counts 16 bits
    per scale, so a 4.5-bit budget fits int4 blocks of 32 (4 + 16 / 32) where float32 scales
    (5 bits) do not."""
    weights, stats = _mixed_model(rng)
    rec = Recipe(budget_bits=4.5, method="gptq", scale_dtype="float16")
    model = ep.compress(weights, rec, calibration=stats)
    n = sum(w.size for w in weights.values())
    stored_bits = 0.0
    for name, w in weights.items():
        qt = model[name]
        assert qt.scale.dtype == np.float16, name
        groups = np.asarray(qt.scale).size
        stored_bits += qt.bits * w.size + 16 * groups
        # the codes are GPTQ's on the float16 grid: decoding is float32(q) * float32(scale)
        want = ref.epk_dequantize(
            qt.data, qt.scale.astype(np.float32), qt.zero_point, bits=qt.bits, axis=qt.axis,
            block_size=qt.block_size, shape=qt.shape, symmetric=qt.signed,
        )
        assert np.array_equal(qt.dequantize(), want)
    assert stored_bits / n <= 4.5 + 1e-9
    chosen = {(model[k].bits, model[k].block_size) for k in weights}
    assert any(b == 4 and bs is not None and bs <= 32 for b, bs in chosen), chosen
    path = tmp_path / "m.epk"
    model.save(path)
    back = ep.load(path)
    for name in weights:
        assert back[name].scale.dtype == np.float16
        assert np.array_equal(back[name].dequantize(), model[name].dequantize())


def test_budget_bits_below_cheapest_is_an_error(rng):
    weights, stats = _mixed_model(rng)
    with pytest.raises(ep.ArgumentError, match="budget_bits=3"):
        ep.compress(weights, Recipe(budget_bits=3.0), calibration=stats)


def test_budget_sparsity_meets_the_fraction(rng):
    weights, stats = _mixed_model(rng)
    n = sum(w.size for w in weights.values())
    # kept float: the zeros are the pruned weights
    model = ep.compress(weights, Recipe(default="keep", budget_sparsity=0.5), calibration=stats)
    zeros = {k: int((np.asarray(model.decompress(k)) == 0).sum()) for k in weights}
    assert abs(sum(zeros.values()) / n - 0.5) <= len(weights) / n + 1e-12
    assert len({round(z / weights[k].size, 2) for k, z in zeros.items()}) > 1  # not uniform here
    # int8 (the default recipe): the same sparsities, recorded with each tensor
    model = ep.compress(weights, Recipe(budget_sparsity=0.5), calibration=stats)
    pruned = sum(model.info(k).params["sparsity"] * w.size for k, w in weights.items())
    assert abs(pruned / n - 0.5) <= len(weights) / n + 1e-12

    # the error it minimises (Wanda's, on the calibration data) is below uniform 50%
    def wanda_err(sp):
        tot = 0.0
        for k, w in weights.items():
            d = np.diag(stats.hessian(k))
            keep = ref.wanda_mask_ref(w, np.sqrt(d), sp[k])
            tot += ref.output_error_ref(w, w * keep, d) / ref.output_error_ref(w, 0 * w, d)
        return tot

    chosen = {k: z / weights[k].size for k, z in zeros.items()}
    assert wanda_err(chosen) < wanda_err({k: 0.5 for k in weights})


# ------------------------------------------------------------------------------------------------
# Report, CLI


def test_report_has_output_error_only_with_calibration(layer):
    w, _x, stats = layer
    plain = ep.compress({"fc.weight": w})
    assert plain.report()["fc.weight"].output_snr_db is None
    cal = ep.compress({"fc.weight": w}, calibration=stats)
    row = cal.report()["fc.weight"]
    assert row.output_snr_db is not None and row.output_rel_error is not None
    d = json.loads(cal.report().to_json())
    assert d["rows"][0]["output_snr_db"] == pytest.approx(row.output_snr_db)


def test_cli_calibrate_then_compress_with_gptq(tmp_path, rng):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = heavy_weight(rng, 32, 48)  # MatMul B is (in, out): store w.T
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "fc.weight"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 48])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "fc.weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    mpath = tmp_path / "m.onnx"
    onnx.save(model, mpath)
    x = activations(rng, 300, 48)
    np.savez(tmp_path / "feeds.npz", x=x)
    from edgepack.cli import main

    stats_path = tmp_path / "stats.safetensors"
    assert (
        main(
            ["calibrate", str(mpath), "--feeds", str(tmp_path / "feeds.npz"), "-o", str(stats_path)]
        )
        == 0
    )
    st = ep.CalibrationStats.load(stats_path)
    assert st.names() == ["fc.weight"] and st.layout("fc.weight") == "in_out"
    np.testing.assert_allclose(st.hessian("fc.weight"), h_of(x), rtol=1e-9, atol=1e-12)
    st_numpy = pytest.importorskip("safetensors.numpy")
    wpath = tmp_path / "w.safetensors"
    st_numpy.save_file({"fc.weight": np.ascontiguousarray(w.T)}, str(wpath))
    out = tmp_path / "w.epk"
    assert (
        main(
            [
                "compress",
                str(wpath),
                "-o",
                str(out),
                "--calibration",
                str(stats_path),
                "--method",
                "gptq",
                "-q",
            ]
        )
        == 0
    )
    m = ep.load(out)
    assert m["fc.weight"].axis == 1  # per output channel of an (in, out) weight
    assert m.report()["fc.weight"].output_snr_db is not None


def test_cli_refuses_gptq_without_calibration(tmp_path, rng, capsys):
    from edgepack.cli import main

    np.savez(tmp_path / "w.npz", w=heavy_weight(rng, 32, 48))
    assert main(["compress", str(tmp_path / "w.npz"), "--method", "gptq"]) == 2
    assert "--calibration" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# SmoothQuant in QuantizedLinear


def test_smoothquant_linear_matches_reference_pipeline(rng):
    w = heavy_weight(rng, 40, 64)
    bias = rng.standard_normal(40).astype(np.float32)
    x = activations(rng, 256, 64, outliers=4)
    stats = ep.CalibrationStats()
    stats.update("fc.weight", x)
    layer = ep.QuantizedLinear.from_float(w, bias, calibration=stats, alpha=0.5)
    act_max = np.abs(x.astype(np.float64)).max(axis=0)
    s_ref = ref.smoothquant_scales_ref(act_max, w, 0.5)
    s = layer.input_smoothing
    np.testing.assert_allclose(s, s_ref, rtol=2e-6)
    # the forward is the plain dynamic pipeline on (x / s, W * s)
    q_w, s_w = ref.symmetric_int8_weight((w * s[None, :]).astype(np.float32))
    x_eval = activations(np.random.default_rng(1), 50, 64, outliers=4)
    want = ref.quantized_linear_dynamic((x_eval / s).astype(np.float32), q_w, s_w, bias)
    np.testing.assert_array_equal(layer(x_eval), want)
    # and smoothing helps on activations with outlier channels
    plain = ep.QuantizedLinear.from_float(w, bias)
    exact = x_eval.astype(np.float64) @ w.T.astype(np.float64) + bias
    err_s = np.abs(layer(x_eval) - exact).max()
    err_p = np.abs(plain(x_eval) - exact).max()
    assert err_s < err_p


def test_smoothquant_needs_a_layer_name_when_ambiguous(rng):
    w = heavy_weight(rng, 8, 16)
    stats = ep.CalibrationStats()
    stats.update("a", activations(rng, 40, 16))
    stats.update("b", activations(rng, 40, 16))
    with pytest.raises(ep.ArgumentError, match="name="):
        ep.QuantizedLinear.from_float(w, calibration=stats)
    with pytest.raises(ep.ArgumentError, match="'c'"):
        ep.QuantizedLinear.from_float(w, calibration=stats, name="c")


def test_too_few_tokens_for_gptq_warns(rng):
    w = heavy_weight(rng, 16, 64)
    stats = ep.CalibrationStats()
    stats.update("fc.weight", activations(rng, 40, 64))  # 40 tokens < 64 inputs
    with pytest.warns(UserWarning, match=r"'fc\.weight' \(40 tokens, 64 inputs\)"):
        ep.compress({"fc.weight": w}, Recipe(method="gptq"), calibration=stats)


def test_collect_onnx_token_mask_skips_padding(rng):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = heavy_weight(rng, 8, 12)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "fc.weight"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 12]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["b", "s"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 8])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "fc.weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = activations(rng, 2 * 5, 12).reshape(2, 5, 12)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)
    x[0, 3:] = 1e3  # padding positions hold garbage
    st = ep.collect_onnx(model, [{"x": x, "mask": mask}], token_mask="mask")
    real = x[mask != 0]
    assert st.count("fc.weight") == 8
    np.testing.assert_allclose(st.hessian("fc.weight"), h_of(real), rtol=1e-12)
    with pytest.raises(ep.ArgumentError, match="'nope'"):
        ep.collect_onnx(model, [{"x": x, "mask": mask}], token_mask="nope")


def test_calibration_argument_of_the_wrong_kind(layer, tmp_path):
    w, _x, _stats = layer
    with pytest.raises(ep.DtypeError, match="calibration"):
        ep.compress({"fc.weight": w}, calibration=123)
    with pytest.raises(FileNotFoundError):
        ep.compress({"fc.weight": w}, calibration=tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ep.FormatError):
        ep.compress({"fc.weight": w}, calibration=bad)
