//! Tests of the calibration solvers.

use super::gptq::{gptq, GptqOptions};
use super::grid::{quantize_one, Grid};
use super::hessian::{self, Precision};
use super::objective::{objective, Hessian};
use super::sparsegpt::{sparsegpt, SparseGptResult, Structure};
use crate::error::Error;
use crate::prune;

/// SplitMix64: seeded, reproducible test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    /// Student-t with `nu` degrees of freedom (integer).
    fn student(&mut self, nu: usize) -> f64 {
        let chi: f64 = (0..nu).map(|_| self.normal().powi(2)).sum();
        self.normal() / (chi / nu as f64).sqrt()
    }
}

/// Heavy-tailed weights: Student-t(3) with a few 100x outliers.
fn weights(rng: &mut Rng, out: usize, inp: usize) -> Vec<f32> {
    let mut w: Vec<f32> = (0..out * inp)
        .map(|_| (0.02 * rng.student(3)) as f32)
        .collect();
    for _ in 0..(out * inp / 200).max(2) {
        let i = (rng.next() % (out * inp) as u64) as usize;
        w[i] *= 100.0;
    }
    w
}

/// `X^T X / tokens` of correlated activations with a few outlier channels (and channels in
/// `dead` always 0).
fn hessian_of(rng: &mut Rng, tokens: usize, inp: usize, dead: &[usize]) -> Vec<f64> {
    let k = 4.min(inp);
    let mix: Vec<f64> = (0..k * inp).map(|_| rng.normal()).collect();
    let gain: Vec<f64> = (0..inp)
        .map(|j| if j % 11 == 3 { 20.0 } else { 1.0 })
        .collect();
    let mut h = vec![0f64; inp * inp];
    let mut x = vec![0f64; inp];
    for _ in 0..tokens {
        let z: Vec<f64> = (0..k).map(|_| rng.normal()).collect();
        for j in 0..inp {
            let shared: f64 = (0..k).map(|t| z[t] * mix[t * inp + j]).sum();
            x[j] = gain[j] * (shared + 0.5 * rng.normal());
        }
        for &d in dead {
            x[d] = 0.0;
        }
        for i in 0..inp {
            for j in 0..inp {
                h[i * inp + j] += x[i] * x[j];
            }
        }
    }
    h.iter_mut().for_each(|v| *v /= tokens as f64);
    h
}

/// A grid from the absmax of each group (symmetric: zp None) or min/max (affine).
struct OwnedGrid {
    scale: Vec<f32>,
    zp: Option<Vec<i32>>,
    shape: (usize, usize),
    rb: usize,
    cb: usize,
    qmin: i32,
    qmax: i32,
}

impl OwnedGrid {
    fn new(w: &[f32], out: usize, inp: usize, rb: usize, cb: usize, bits: u32, sym: bool) -> Self {
        let shape = (out.div_ceil(rb), inp.div_ceil(cb));
        let (qmin, qmax) = if sym {
            (-(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1)
        } else {
            (0, (1 << bits) - 1)
        };
        let mut lo = vec![0f32; shape.0 * shape.1];
        let mut hi = vec![0f32; shape.0 * shape.1];
        for r in 0..out {
            for c in 0..inp {
                let g = (r / rb) * shape.1 + c / cb;
                lo[g] = lo[g].min(w[r * inp + c]);
                hi[g] = hi[g].max(w[r * inp + c]);
            }
        }
        let mut scale = vec![1f32; lo.len()];
        let mut zp = vec![0i32; lo.len()];
        for g in 0..lo.len() {
            if sym {
                let a = lo[g].abs().max(hi[g]);
                if a > 0.0 {
                    scale[g] = a / qmax as f32;
                }
            } else if hi[g] > lo[g] {
                scale[g] = (hi[g] - lo[g]) / qmax as f32;
                zp[g] = ((-lo[g] / scale[g]).round() as i32).clamp(qmin, qmax);
            }
        }
        OwnedGrid {
            scale,
            zp: (!sym).then_some(zp),
            shape,
            rb,
            cb,
            qmin,
            qmax,
        }
    }
    fn grid(&self, out: usize, inp: usize) -> Grid<'_> {
        Grid::new(
            &self.scale,
            self.shape,
            self.zp.as_deref().map(|z| (z, self.shape)),
            self.rb,
            self.cb,
            self.qmin,
            self.qmax,
            out,
            inp,
        )
        .unwrap()
    }
}

fn rtn_codes(w: &[f32], g: &Grid<'_>, out: usize, inp: usize) -> Vec<i32> {
    let mut c = vec![0; out * inp];
    for r in 0..out {
        for j in 0..inp {
            c[r * inp + j] = g.quantize(w[r * inp + j], r, j).0;
        }
    }
    c
}

fn decode(codes: &[i32], g: &Grid<'_>, out: usize, inp: usize) -> Vec<f32> {
    let mut v = vec![0f32; out * inp];
    for r in 0..out {
        for j in 0..inp {
            let (s, z) = g.params(r, j);
            v[r * inp + j] = (codes[r * inp + j] - z) as f32 * s;
        }
    }
    v
}

fn identity(n: usize) -> Vec<f64> {
    let mut h = vec![0f64; n * n];
    for j in 0..n {
        h[j * n + j] = 1.0;
    }
    h
}

/// The grids of the tests: (row_block, col_block, bits, symmetric) for a (37, 45) weight.
const GRIDS: [(usize, usize, u32, bool); 6] = [
    (37, 45, 8, true),
    (1, 45, 8, true),
    (37, 1, 8, false),
    (1, 16, 4, true),
    (1, 16, 4, false),
    (5, 1, 4, false),
];

#[test]
fn quantize_one_matches_the_file_rounding() {
    // x / s, ties to even, clamp, zero point.
    assert_eq!(quantize_one(0.5, 1.0, 0, -7, 7), (0, 0.0));
    assert_eq!(quantize_one(1.5, 1.0, 0, -7, 7), (2, 2.0));
    assert_eq!(quantize_one(-100.0, 1.0, 3, 0, 15), (0, -3.0));
    assert_eq!(quantize_one(100.0, 0.5, 3, 0, 15), (15, 6.0));
    // Division, not multiplication by the reciprocal (CONVENTIONS.md).
    assert_eq!(
        quantize_one(0.273_939_94, 0.002_148_548_6, 0, -127, 127).0,
        127
    );
}

#[test]
fn identity_hessian_gives_plain_rounding() {
    let mut rng = Rng(1);
    let (out, inp) = (37, 45);
    let w = weights(&mut rng, out, inp);
    for (rb, cb, bits, sym) in GRIDS {
        let og = OwnedGrid::new(&w, out, inp, rb, cb, bits, sym);
        let g = og.grid(out, inp);
        for act_order in [true, false] {
            for block in [1, 7, 128] {
                let opts = GptqOptions {
                    damp: 0.01,
                    act_order,
                    block,
                    precision: Precision::F64,
                };
                let r = gptq(&w, out, inp, &identity(inp), &g, opts).unwrap();
                assert_eq!(
                    r.codes,
                    rtn_codes(&w, &g, out, inp),
                    "{rb} {cb} {bits} {sym}"
                );
                assert_eq!(r.damp_used, 0.01);
            }
        }
    }
}

fn obj(w: &[f32], wh: &[f32], out: usize, inp: usize, h: &[f64]) -> f64 {
    objective(w, wh, out, inp, Hessian::Full(h)).unwrap()
}

#[test]
fn gptq_beats_round_to_nearest_on_heavy_tailed_data() {
    let (out, inp) = (37, 45);
    for (seed, tokens) in [(2u64, 400usize), (3, 20)] {
        let mut rng = Rng(seed);
        let w = weights(&mut rng, out, inp);
        let h = hessian_of(&mut rng, tokens, inp, &[]);
        for (rb, cb, bits, sym) in GRIDS {
            let og = OwnedGrid::new(&w, out, inp, rb, cb, bits, sym);
            let g = og.grid(out, inp);
            let rtn = obj(
                &w,
                &decode(&rtn_codes(&w, &g, out, inp), &g, out, inp),
                out,
                inp,
                &h,
            );
            for act_order in [true, false] {
                let opts = GptqOptions {
                    damp: 0.01,
                    act_order,
                    block: 16,
                    precision: Precision::F64,
                };
                let r = gptq(&w, out, inp, &h, &g, opts).unwrap();
                let e = obj(&w, &decode(&r.codes, &g, out, inp), out, inp, &h);
                assert!(
                    e <= rtn,
                    "tokens {tokens} grid {rb}x{cb} {bits} bits sym {sym} act_order \
                     {act_order}: gptq {e} > rtn {rtn}"
                );
                assert!(r.codes.iter().all(|&q| (og.qmin..=og.qmax).contains(&q)));
            }
        }
    }
}

/// GPTQ without lazy batches and without the reversal trick: explicit `H^-1` by Gauss-Jordan,
/// then OBS column updates on it (the paper's Algorithm 1 before Cholesky reformulation).
fn naive_gptq(w: &[f32], out: usize, inp: usize, h: &[f64], g: &Grid<'_>, damp: f64) -> Vec<i32> {
    let n = inp;
    let mean = (0..n).map(|j| h[j * n + j]).sum::<f64>() / n as f64;
    let mut a = h.to_vec();
    for j in 0..n {
        a[j * n + j] += damp * mean;
    }
    // Inverse by Gauss-Jordan.
    let mut inv = identity(n);
    for c in 0..n {
        let p = a[c * n + c];
        for j in 0..n {
            a[c * n + j] /= p;
            inv[c * n + j] /= p;
        }
        for r in 0..n {
            if r != c {
                let f = a[r * n + c];
                for j in 0..n {
                    a[r * n + j] -= f * a[c * n + j];
                    inv[r * n + j] -= f * inv[c * n + j];
                }
            }
        }
    }
    let mut codes = vec![0; out * inp];
    for r in 0..out {
        let mut hi = inv.clone();
        let mut row: Vec<f64> = w[r * inp..(r + 1) * inp]
            .iter()
            .map(|&x| x as f64)
            .collect();
        for q in 0..n {
            let (code, deq) = g.quantize(row[q] as f32, r, q);
            codes[r * inp + q] = code;
            let e = (row[q] - deq as f64) / hi[q * n + q];
            for j in q + 1..n {
                row[j] -= e * hi[q * n + j];
            }
            // Eliminate q from H^-1.
            let d = hi[q * n + q];
            let col: Vec<f64> = (0..n).map(|i| hi[i * n + q]).collect();
            for i in 0..n {
                for j in 0..n {
                    hi[i * n + j] -= col[i] * col[j] / d;
                }
            }
        }
    }
    codes
}

#[test]
fn gptq_matches_the_unblocked_algorithm() {
    let (out, inp) = (9, 23);
    let mut rng = Rng(4);
    let w = weights(&mut rng, out, inp);
    let h = hessian_of(&mut rng, 300, inp, &[]);
    let og = OwnedGrid::new(&w, out, inp, 1, 8, 4, true);
    let g = og.grid(out, inp);
    let want = naive_gptq(&w, out, inp, &h, &g, 0.01);
    for block in [1, 5, 128] {
        let opts = GptqOptions {
            damp: 0.01,
            act_order: false,
            block,
            precision: Precision::F64,
        };
        let got = gptq(&w, out, inp, &h, &g, opts).unwrap().codes;
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert!(diff <= 1, "block {block}: {diff} codes differ");
    }
}

#[test]
fn dead_channels_are_rounded_not_zeroed() {
    let (out, inp) = (13, 30);
    let mut rng = Rng(5);
    let w = weights(&mut rng, out, inp);
    let dead = [0usize, 7, 29];
    let h = hessian_of(&mut rng, 100, inp, &dead);
    let og = OwnedGrid::new(&w, out, inp, 1, inp, 8, true);
    let g = og.grid(out, inp);
    let rtn = rtn_codes(&w, &g, out, inp);
    let r = gptq(&w, out, inp, &h, &g, GptqOptions::default()).unwrap();
    for r_ in 0..out {
        for &d in &dead {
            assert_eq!(r.codes[r_ * inp + d], rtn[r_ * inp + d]);
        }
    }
    assert!(dead
        .iter()
        .any(|&d| (0..out).any(|i| r.codes[i * inp + d] != 0)));
    // Every channel dead: plain rounding everywhere.
    let zero = vec![0f64; inp * inp];
    let r = gptq(&w, out, inp, &zero, &g, GptqOptions::default()).unwrap();
    assert_eq!(r.codes, rtn);
}

#[test]
fn rank_deficient_hessian_works() {
    let (out, inp) = (20, 64);
    let mut rng = Rng(6);
    let w = weights(&mut rng, out, inp);
    let h = hessian_of(&mut rng, 10, inp, &[]);
    let og = OwnedGrid::new(&w, out, inp, 1, 32, 4, false);
    let g = og.grid(out, inp);
    let r = gptq(&w, out, inp, &h, &g, GptqOptions::default()).unwrap();
    let rtn = obj(
        &w,
        &decode(&rtn_codes(&w, &g, out, inp), &g, out, inp),
        out,
        inp,
        &h,
    );
    let e = obj(&w, &decode(&r.codes, &g, out, inp), out, inp, &h);
    assert!(e <= rtn, "{e} > {rtn}");
}

#[test]
fn damping_escalates_until_cholesky_succeeds() {
    // Eigenvalues -2 and 4: damp 0.01, 0.1 and 1 fail, 10 works.
    let h = [1.0, 3.0, 3.0, 1.0];
    let w = [0.3f32, -0.7, 1.1, 0.2];
    let og = OwnedGrid::new(&w, 2, 2, 1, 2, 8, true);
    let g = og.grid(2, 2);
    let r = gptq(&w, 2, 2, &h, &g, GptqOptions::default()).unwrap();
    assert!((r.damp_used - 10.0).abs() < 1e-9, "{}", r.damp_used);
    // A bound: strongly indefinite H fails with a named error.
    let h = [1.0, 1e12, 1e12, 1.0];
    let e = gptq(&w, 2, 2, &h, &g, GptqOptions::default()).unwrap_err();
    assert!(e.to_string().contains("not positive definite"), "{e}");
}

#[test]
fn inverse_factor_is_the_upper_cholesky_of_the_inverse() {
    let n = 17;
    let mut rng = Rng(7);
    let h = hessian_of(&mut rng, 50, n, &[]);
    let prep = crate::parallel::install(|| hessian::prepare(&h, n, 0.01, true)).unwrap();
    // U^T U (H + lambda I) = I in the processing order.
    let mean = (0..n).map(|j| h[j * n + j]).sum::<f64>() / n as f64;
    let hp = |a: usize, b: usize| {
        h[prep.perm[a] * n + prep.perm[b]] + if a == b { 0.01 * mean } else { 0.0 }
    };
    for i in 0..n {
        for j in 0..n {
            let mut s = 0.0;
            for k in 0..n {
                let utu: f64 = (0..n).map(|t| prep.u[t * n + i] * prep.u[t * n + k]).sum();
                s += utu * hp(k, j);
            }
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((s - want).abs() < 1e-8, "({i}, {j}): {s}");
            if j < i {
                assert_eq!(prep.u[i * n + j], 0.0);
            }
        }
    }
    // Descending diagonal.
    for p in 1..n {
        assert!(h[prep.perm[p - 1] * (n + 1)] >= h[prep.perm[p] * (n + 1)]);
    }
}

#[test]
fn objective_matches_a_direct_sum() {
    let (out, inp) = (7, 300);
    let mut rng = Rng(8);
    let w = weights(&mut rng, out, inp);
    let wh: Vec<f32> = w
        .iter()
        .map(|&x| x + (0.01 * rng.normal()) as f32)
        .collect();
    let h = hessian_of(&mut rng, 30, inp, &[]);
    let mut want = 0.0;
    for r in 0..out {
        for i in 0..inp {
            for j in 0..inp {
                let ei = w[r * inp + i] as f64 - wh[r * inp + i] as f64;
                let ej = w[r * inp + j] as f64 - wh[r * inp + j] as f64;
                want += ei * h[i * inp + j] * ej;
            }
        }
    }
    let got = obj(&w, &wh, out, inp, &h);
    assert!((got - want).abs() <= 1e-10 * want.abs(), "{got} vs {want}");
    let d: Vec<f64> = (0..inp).map(|j| h[j * inp + j]).collect();
    let want_d: f64 = (0..out * inp)
        .map(|k| d[k % inp] * (w[k] as f64 - wh[k] as f64).powi(2))
        .sum();
    let got_d = objective(&w, &wh, out, inp, Hessian::Diag(&d)).unwrap();
    assert!((got_d - want_d).abs() <= 1e-12 * want_d);
}

fn masked(w: &[f32], keep: &[bool]) -> Vec<f32> {
    w.iter()
        .zip(keep)
        .map(|(&x, &k)| if k { x } else { 0.0 })
        .collect()
}

#[test]
fn sparsegpt_beats_magnitude_pruning_with_exact_counts() {
    let (out, inp) = (37, 45);
    let mut rng = Rng(9);
    let w = weights(&mut rng, out, inp);
    for tokens in [400usize, 20] {
        let h = hessian_of(&mut rng, tokens, inp, &[3]);
        for s in [0.0, 0.3, 0.5, 0.77] {
            for block in [1, 16, 128] {
                let r = sparsegpt(
                    &w,
                    out,
                    inp,
                    &h,
                    s,
                    Structure::Unstructured,
                    None,
                    0.01,
                    block,
                    Precision::F64,
                )
                .unwrap();
                let pruned = r.keep.iter().filter(|k| !**k).count();
                assert_eq!(pruned, prune::count_to_prune(s, out * inp).unwrap());
                check_zeros(&r);
                let mag = prune::magnitude_mask(&w, 1, None, s).unwrap();
                let base = obj(&w, &masked(&w, &mag), out, inp, &h);
                let e = obj(&w, &r.w, out, inp, &h);
                assert!(e <= base, "s {s} block {block}: {e} > {base}");
            }
        }
    }
}

fn check_zeros(r: &SparseGptResult) {
    for (k, &x) in r.keep.iter().zip(&r.w) {
        if !k {
            assert_eq!(x.to_bits(), 0);
        }
    }
}

#[test]
fn sparsegpt_nm_structure_holds() {
    let (out, inp) = (19, 45); // 45 = 11 groups of 4 + a partial group of 1
    let mut rng = Rng(10);
    let w = weights(&mut rng, out, inp);
    let h = hessian_of(&mut rng, 300, inp, &[]);
    for (n, m) in [(2usize, 4usize), (1, 4), (4, 8), (3, 3)] {
        for block in [128, 6, 2] {
            let r = sparsegpt(
                &w,
                out,
                inp,
                &h,
                0.0,
                Structure::Nm { n, m },
                None,
                0.01,
                block,
                Precision::F64,
            )
            .unwrap();
            check_zeros(&r);
            for row in r.keep.chunks(inp) {
                for (gi, grp) in row.chunks(m).enumerate() {
                    let kept = grp.iter().filter(|k| **k).count();
                    assert_eq!(kept, prune::nm_keep(n, m, grp.len()), "{n}:{m} group {gi}");
                }
            }
            let mag = prune::nm_mask(&w, out, inp, 1, n, m).unwrap();
            let base = obj(&w, &masked(&w, &mag), out, inp, &h);
            let e = obj(&w, &r.w, out, inp, &h);
            assert!(e <= base, "{n}:{m} block {block}: {e} > {base}");
        }
    }
}

#[test]
fn sparsegpt_block_structure_prunes_whole_tiles() {
    let (out, inp) = (37, 45);
    let mut rng = Rng(11);
    let w = weights(&mut rng, out, inp);
    let h = hessian_of(&mut rng, 300, inp, &[]);
    for (br, bc) in [(1usize, 4usize), (2, 2), (4, 8)] {
        let s = 0.5;
        let r = sparsegpt(
            &w,
            out,
            inp,
            &h,
            s,
            Structure::Block { br, bc },
            None,
            0.01,
            16,
            Precision::F64,
        )
        .unwrap();
        let (tr, tc) = (out.div_ceil(br), inp.div_ceil(bc));
        let mut pruned_tiles = 0;
        for a in 0..tr {
            for b in 0..tc {
                let flags: Vec<bool> = (a * br..((a + 1) * br).min(out))
                    .flat_map(|i| (b * bc..((b + 1) * bc).min(inp)).map(move |j| (i, j)))
                    .map(|(i, j)| r.keep[i * inp + j])
                    .collect();
                assert!(
                    flags.iter().all(|&f| f == flags[0]),
                    "tile ({a}, {b}) split"
                );
                pruned_tiles += usize::from(!flags[0]);
            }
        }
        assert_eq!(pruned_tiles, prune::count_to_prune(s, tr * tc).unwrap());
        let mag = prune::block_mask(&w, &[out, inp], &[br, bc], s).unwrap();
        let base = obj(&w, &masked(&w, &mag), out, inp, &h);
        let e = obj(&w, &r.w, out, inp, &h);
        assert!(e <= base, "({br}, {bc}): {e} > {base}");
    }
}

#[test]
fn sparsegpt_joint_quantization_keeps_zeros_on_the_grid() {
    let (out, inp) = (37, 45);
    let mut rng = Rng(12);
    let w = weights(&mut rng, out, inp);
    let h = hessian_of(&mut rng, 300, inp, &[]);
    for (rb, cb, bits, sym) in GRIDS {
        let og = OwnedGrid::new(&w, out, inp, rb, cb, bits, sym);
        let g = og.grid(out, inp);
        let r = sparsegpt(
            &w,
            out,
            inp,
            &h,
            0.5,
            Structure::Unstructured,
            Some(&g),
            0.01,
            128,
            Precision::F64,
        )
        .unwrap();
        let codes = r.codes.as_ref().unwrap();
        assert_eq!(decode(codes, &g, out, inp), r.w);
        for (i, k) in r.keep.iter().enumerate() {
            if !k {
                assert_eq!(codes[i], g.params(i / inp, i % inp).1);
            }
        }
        check_zeros(&r);
    }
}

fn is_arg(e: &Error, needle: &str) -> bool {
    matches!(e, Error::InvalidArgument(m) if m.contains(needle))
}

#[test]
fn bad_inputs_are_named_errors() {
    let (out, inp) = (3, 4);
    let w = vec![0.5f32; out * inp];
    let h = identity(inp);
    let og = OwnedGrid::new(&w, out, inp, 1, inp, 8, true);
    let g = og.grid(out, inp);
    let o = GptqOptions::default();
    let mut bad = w.clone();
    bad[5] = f32::NAN;
    let e = gptq(&bad, out, inp, &h, &g, o).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite { what, index: 5, .. } if what == "`w`"),
        "{e}"
    );
    let mut hb = h.clone();
    hb[6] = f64::INFINITY;
    let e = gptq(&w, out, inp, &hb, &g, o).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite { what, index: 6, .. } if what == "`h`"),
        "{e}"
    );
    let e = gptq(&w, out, inp, &identity(5), &g, o).unwrap_err();
    assert!(is_arg(&e, "`h` holds 25 values"), "{e}");
    let mut hs = h.clone();
    hs[1] = 0.5;
    assert!(is_arg(
        &gptq(&w, out, inp, &hs, &g, o).unwrap_err(),
        "symmetric"
    ));
    let mut hn = h.clone();
    hn[0] = -1.0;
    assert!(is_arg(
        &gptq(&w, out, inp, &hn, &g, o).unwrap_err(),
        "semi-definite"
    ));
    let e = gptq(&w[1..], out, inp, &h, &g, o).unwrap_err();
    assert!(is_arg(&e, "`w` holds 11 values"), "{e}");
    for damp in [0.0, -1.0, f64::NAN] {
        let o = GptqOptions { damp, ..o };
        assert!(is_arg(
            &gptq(&w, out, inp, &h, &g, o).unwrap_err(),
            "`damp`"
        ));
    }
    let o0 = GptqOptions { block: 0, ..o };
    assert!(is_arg(
        &gptq(&w, out, inp, &h, &g, o0).unwrap_err(),
        "`block`"
    ));
    // Grids.
    let s = [1.0f32; 3];
    let z = [0i32; 3];
    let mk =
        |s: &'static [f32], shape, z: Option<(&'static [i32], (usize, usize))>, rb, cb, lo, hi| {
            Grid::new(s, shape, z, rb, cb, lo, hi, out, inp).unwrap_err()
        };
    let s: &'static [f32] = Box::leak(Box::new(s));
    let z: &'static [i32] = Box::leak(Box::new(z));
    assert!(is_arg(
        &mk(s, (3, 1), None, 1, 4, 5, 5),
        "`qmin` must be < `qmax`"
    ));
    assert!(is_arg(
        &mk(s, (1, 3), None, 1, 4, -7, 7),
        "`scale` has shape (1, 3)"
    ));
    assert!(is_arg(&mk(s, (3, 1), None, 0, 4, -7, 7), "`row_block`"));
    assert!(is_arg(
        &mk(s, (3, 1), Some((z, (1, 3))), 1, 4, 0, 7),
        "`zero_point` has shape"
    ));
    let zb: &'static [i32] = Box::leak(Box::new([0i32, 9, 0]));
    assert!(is_arg(
        &mk(s, (3, 1), Some((zb, (3, 1))), 1, 4, 0, 7),
        "`zero_point` must lie"
    ));
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let sb: &'static [f32] = Box::leak(Box::new([1.0, bad, 1.0]));
        assert!(is_arg(
            &mk(sb, (3, 1), None, 1, 4, -7, 7),
            "`scale` must be positive"
        ));
    }
    // SparseGPT arguments.
    for sp in [-0.1, 1.0, f64::NAN] {
        let e = sparsegpt(
            &w,
            out,
            inp,
            &h,
            sp,
            Structure::Unstructured,
            None,
            0.01,
            128,
            Precision::F64,
        );
        assert!(is_arg(&e.unwrap_err(), "`sparsity`"));
    }
    let e = sparsegpt(
        &w,
        out,
        inp,
        &h,
        0.5,
        Structure::Nm { n: 5, m: 4 },
        None,
        0.01,
        128,
        Precision::F64,
    );
    assert!(is_arg(&e.unwrap_err(), "`n`"));
    let e = sparsegpt(
        &w,
        out,
        inp,
        &h,
        0.5,
        Structure::Block { br: 0, bc: 4 },
        None,
        0.01,
        9,
        Precision::F64,
    );
    assert!(is_arg(&e.unwrap_err(), "`block_shape`"));
    // Objective.
    let e = objective(&w, &w, out, inp, Hessian::Diag(&[1.0; 3])).unwrap_err();
    assert!(is_arg(&e, "length 3"), "{e}");
}

#[test]
fn empty_weights_work() {
    let g = Grid::new(&[], (0, 1), None, 1, 4, -7, 7, 0, 4).unwrap();
    let r = gptq(&[], 0, 4, &identity(4), &g, GptqOptions::default()).unwrap();
    assert!(r.codes.is_empty());
    let g = Grid::new(&[], (3, 0), None, 1, 4, -7, 7, 3, 0).unwrap();
    let r = gptq(&[], 3, 0, &[], &g, GptqOptions::default()).unwrap();
    assert!(r.codes.is_empty());
    let r = sparsegpt(
        &[],
        3,
        0,
        &[],
        0.5,
        Structure::Unstructured,
        None,
        0.01,
        128,
        Precision::F64,
    )
    .unwrap();
    assert!(r.w.is_empty());
}

#[test]
fn prepare_works_for_every_small_size() {
    let mut rng = Rng(7);
    for n in 1..80 {
        let h = hessian_of(&mut rng, 50, n, &[]);
        for ao in [false, true] {
            let p = crate::parallel::install(|| hessian::prepare(&h, n, 0.01, ao)).unwrap();
            assert!((0..n).all(|i| p.u[i * n + i] > 0.0));
        }
    }
}

/// SparseGPT through GPTQ's row-by-row driver (`solve_with`), with its masks chosen by a full
/// selection (`keep_mask_u64`): the algorithm as first written. `sparsegpt` (its own
/// column-wise driver, histogram selection) must give the same bits.
#[allow(clippy::too_many_arguments)]
fn sparsegpt_rowwise(
    w: &[f32],
    out: usize,
    inp: usize,
    h: &[f64],
    sparsity: f64,
    structure: Structure,
    grid: Option<&Grid<'_>>,
    block: usize,
) -> (Vec<f32>, Vec<bool>, Option<Vec<i32>>) {
    use super::gptq::{permuted, solve_with, spread, SUB};
    use crate::kernels::select::keep_mask_u64;
    let n = inp;
    let unit = match structure {
        Structure::Unstructured => 1,
        Structure::Nm { m, .. } => m,
        Structure::Block { bc, .. } => bc,
    };
    let bs = if block >= unit {
        block - block % unit
    } else {
        unit
    };
    let sub = match structure {
        Structure::Nm { m, .. } => SUB.div_ceil(m) * m,
        _ => SUB,
    };
    let score = |x: f64, d: f64| {
        let s = x / d;
        s * s
    };
    let share = |done: usize, items: usize| {
        prune::count_to_prune(sparsity, done + items).unwrap()
            - prune::count_to_prune(sparsity, done).unwrap()
    };
    crate::parallel::install(|| {
        let prep = hessian::prepare(h, inp, 0.01, false).unwrap();
        let u = &prep.u[..];
        let mut wp = permuted(w, out, inp, &prep.perm);
        let mut done = 0usize;
        // The keep mask of a batch, (out, b) row-major.
        let start = |i1: usize, i2: usize, wt: &[f64]| -> Vec<bool> {
            let b = i2 - i1;
            let sc = |r: usize, t: usize| score(wt[(i1 + t) * out + r], u[(i1 + t) * n + i1 + t]);
            match structure {
                Structure::Nm { .. } => vec![true; out * b],
                Structure::Unstructured => {
                    let keys: Vec<u64> = (0..out * b).map(|i| sc(i / b, i % b).to_bits()).collect();
                    let k = share(done, out * b).min(out * b);
                    done += out * b;
                    keep_mask_u64(&keys, k)
                }
                Structure::Block { br, bc } => {
                    let tc = b.div_ceil(bc);
                    let items = out.div_ceil(br) * tc;
                    let mut sums = vec![0f64; items];
                    for r in 0..out {
                        for t in 0..b {
                            sums[(r / br) * tc + t / bc] += sc(r, t);
                        }
                    }
                    let keys: Vec<u64> = sums.iter().map(|s| s.to_bits()).collect();
                    let k = share(done, items).min(items);
                    done += items;
                    let tk = keep_mask_u64(&keys, k);
                    (0..out * b)
                        .map(|i| tk[(i / b / br) * tc + (i % b) / bc])
                        .collect()
                }
            }
        };
        let mut codes = vec![0i32; out * n];
        solve_with(
            &mut wp,
            out,
            &prep,
            bs,
            sub,
            start,
            |mask, r, j1, row, err, crow| {
                let j2 = j1 + err.len();
                let mut gk = [true; 256];
                for p in j1..j2 {
                    let t = p - j1;
                    let d = u[p * n + p];
                    let (i1, b) = (p - p % bs, (p - p % bs + bs).min(n) - (p - p % bs));
                    let kept = match structure {
                        Structure::Nm { n: nk, m } => {
                            if t % m == 0 {
                                let len = m.min(j2 - p);
                                let keys: Vec<f64> = (0..len)
                                    .map(|q| score(row[t + q], u[(p + q) * n + p + q]))
                                    .collect();
                                let prune = len - prune::nm_keep(nk, m, len);
                                for q in 0..len {
                                    let rank = (0..len)
                                        .filter(|&v| {
                                            keys[v] < keys[q] || (keys[v] == keys[q] && v < q)
                                        })
                                        .count();
                                    gk[q] = rank >= prune;
                                }
                            }
                            gk[t % m]
                        }
                        _ => mask[r * b + p - i1],
                    };
                    let w = row[t];
                    let v = match grid {
                        Some(g) => {
                            let (q, deq) = if kept {
                                g.quantize(w as f32, r, p)
                            } else {
                                (g.params(r, p).1, 0.0)
                            };
                            crow[p] = q;
                            deq
                        }
                        None if kept => w as f32,
                        None => 0.0,
                    };
                    let e = (w - v as f64) / d;
                    err[t] = e;
                    spread(&mut row[t + 1..], &u[p * n + p + 1..p * n + j2], e);
                    row[t] = if kept { v as f64 } else { f64::NAN };
                }
            },
            &mut codes,
        );
        let mut wout = vec![0f32; out * n];
        let mut keep = vec![false; out * n];
        for r in 0..out {
            for p in 0..n {
                let x = wp[p * out + r];
                keep[r * n + p] = !x.is_nan();
                wout[r * n + p] = if x.is_nan() { 0.0 } else { x as f32 };
            }
        }
        (wout, keep, grid.map(|_| codes))
    })
}

#[test]
fn sparsegpt_matches_the_row_by_row_driver_bit_for_bit() {
    let mut rng = Rng(21);
    // Rows across several blocks and tasks (partial ones too); ties: equal and zero weights.
    for (out, inp, block) in [(37, 45, 16), (300, 70, 32), (130, 257, 128), (9, 20, 7)] {
        let mut w = weights(&mut rng, out, inp);
        for r in (0..out).step_by(3) {
            w[r * inp + 1] = 0.25;
            w[r * inp + 2] = 0.25;
            w[r * inp + inp - 1] = 0.0;
        }
        let h = hessian_of(&mut rng, 200, inp, &[4]);
        let og = OwnedGrid::new(&w, out, inp, 1, 16, 4, false);
        let g = og.grid(out, inp);
        let cases = [
            (Structure::Unstructured, 0.5),
            (Structure::Unstructured, 0.3),
            (Structure::Nm { n: 2, m: 4 }, 0.5),
            (Structure::Nm { n: 3, m: 7 }, 1.0 - 3.0 / 7.0),
            (Structure::Block { br: 1, bc: 4 }, 0.5),
            (Structure::Block { br: 4, bc: 1 }, 0.5),
            (Structure::Block { br: 3, bc: 5 }, 0.4),
        ];
        for (structure, sp) in cases {
            for grid in [None, Some(&g)] {
                let r = sparsegpt(
                    &w,
                    out,
                    inp,
                    &h,
                    sp,
                    structure,
                    grid,
                    0.01,
                    block,
                    Precision::F64,
                )
                .unwrap();
                let (ww, kk, cc) = sparsegpt_rowwise(&w, out, inp, &h, sp, structure, grid, block);
                let what = format!(
                    "{out}x{inp} block {block} {structure:?} grid {}",
                    grid.is_some()
                );
                assert_eq!(r.keep, kk, "{what}");
                assert!(
                    r.w.iter().zip(&ww).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{what}"
                );
                assert_eq!(r.codes, cc, "{what}");
            }
        }
    }
}

/// GPTQ and SparseGPT of a 4096 x 4096 layer with a full H from 8192 correlated tokens, on
/// 2 threads (`cargo test --release --lib calib::tests::timing_4096 -- --ignored --nocapture`;
/// with `EP_PHASES=1` also the phases of GPTQ: checks, inverse factor, layout, products).
#[test]
#[ignore]
fn timing_4096() {
    use faer::{Accum, MatMut, MatRef};
    use std::time::Instant;
    crate::parallel::set_num_threads(2).unwrap();
    let (out, inp, tokens) = (4096usize, 4096usize, 8192usize);
    let mut rng = Rng(13);
    let w = weights(&mut rng, out, inp);
    let k = 64;
    let mix: Vec<f64> = (0..k * inp).map(|_| rng.normal()).collect();
    let mut x = vec![0f64; tokens * inp];
    let z: Vec<f64> = (0..tokens * k).map(|_| rng.normal()).collect();
    faer::linalg::matmul::matmul(
        MatMut::from_row_major_slice_mut(&mut x, tokens, inp),
        Accum::Replace,
        MatRef::from_row_major_slice(&z, tokens, k),
        MatRef::from_row_major_slice(&mix, k, inp),
        1.0,
        faer::Par::rayon(2),
    );
    for (i, v) in x.iter_mut().enumerate() {
        let j = i % inp;
        *v = (*v + rng.normal()) * if j % 97 == 5 { 30.0 } else { 1.0 };
    }
    let mut h = vec![0f64; inp * inp];
    faer::linalg::matmul::matmul(
        MatMut::from_row_major_slice_mut(&mut h, inp, inp),
        Accum::Replace,
        MatRef::from_row_major_slice(&x, tokens, inp).transpose(),
        MatRef::from_row_major_slice(&x, tokens, inp),
        1.0 / tokens as f64,
        faer::Par::rayon(2),
    );
    // Exactly symmetric, as CalibrationStats makes it.
    for i in 0..inp {
        for j in 0..i {
            h[j * inp + i] = h[i * inp + j];
        }
    }
    let og = OwnedGrid::new(&w, out, inp, 1, 128, 4, true);
    let g = og.grid(out, inp);
    if std::env::var("EP_PHASES").is_ok() {
        let t = Instant::now();
        hessian::check_h(&h, inp).unwrap();
        let t1 = t.elapsed();
        let t = Instant::now();
        let prep = crate::parallel::install(|| hessian::prepare(&h, inp, 0.01, true)).unwrap();
        let t2 = t.elapsed();
        let t = Instant::now();
        let mut wt = super::gptq::permuted(&w, out, inp, &prep.perm);
        let t3 = t.elapsed();
        let mut codes = vec![0i32; out * inp];
        let t = Instant::now();
        crate::parallel::install(|| {
            super::gptq::solve_with(
                &mut wt,
                out,
                &prep,
                128,
                super::gptq::SUB,
                |_, _, _| (),
                |_, _, _, _, _, _| {},
                &mut codes,
            )
        });
        let t4 = t.elapsed();
        println!("check_h {t1:?} prepare {t2:?} permuted {t3:?} solve (no row work) {t4:?}");
    }
    let t = Instant::now();
    let r = gptq(&w, out, inp, &h, &g, GptqOptions::default()).unwrap();
    let tg = t.elapsed();
    let t = Instant::now();
    let prep = crate::parallel::install(|| hessian::prepare(&h, inp, 0.01, true)).unwrap();
    let tp = t.elapsed();
    drop(prep);
    let t = Instant::now();
    let s = sparsegpt(
        &w,
        out,
        inp,
        &h,
        0.5,
        Structure::Unstructured,
        None,
        0.01,
        128,
        Precision::F64,
    )
    .unwrap();
    let ts = t.elapsed();
    let t = Instant::now();
    let s2 = sparsegpt(
        &w,
        out,
        inp,
        &h,
        0.5,
        Structure::Nm { n: 2, m: 4 },
        Some(&g),
        0.01,
        128,
        Precision::F64,
    )
    .unwrap();
    let ts2 = t.elapsed();
    let t = Instant::now();
    let e = obj(&w, &decode(&r.codes, &g, out, inp), out, inp, &h);
    let to = t.elapsed();
    let rtn = obj(
        &w,
        &decode(&rtn_codes(&w, &g, out, inp), &g, out, inp),
        out,
        inp,
        &h,
    );
    println!(
        "gptq {tg:?} (of which H^-1 factor {tp:?}), sparsegpt 50% {ts:?}, sparsegpt 2:4 + int4 \
         {ts2:?}, objective {to:?}; gptq/rtn error {:.3}, kept {} and {}",
        e / rtn,
        s.keep.iter().filter(|k| **k).count(),
        s2.keep.iter().filter(|k| **k).count()
    );
}

/// Weighted squared error of `w` on a grid, per group.
fn group_errors(w: &[f32], g: &Grid<'_>, out: usize, inp: usize, cw: &[f64]) -> Vec<f64> {
    let mut e = vec![0f64; g.scale.len()];
    for r in 0..out {
        for j in 0..inp {
            let d = w[r * inp + j] as f64 - g.quantize(w[r * inp + j], r, j).1 as f64;
            e[g.index(r, j)] += cw[j] * d * d;
        }
    }
    e
}

#[test]
fn hqq_is_never_worse_than_its_input_grid() {
    use super::hqq::{hqq, HqqOptions};
    let (out, inp) = (37, 45);
    let mut rng = Rng(14);
    let w = weights(&mut rng, out, inp);
    let cw: Vec<f64> = (0..inp)
        .map(|j| if j % 7 == 0 { 0.0 } else { rng.uniform() * 5.0 })
        .collect();
    let ones = vec![1f64; inp];
    let mut improved = 0;
    for (rb, cb, bits, sym) in GRIDS {
        let og = OwnedGrid::new(&w, out, inp, rb, cb, bits, sym);
        let g = og.grid(out, inp);
        for weights in [None, Some(&cw[..])] {
            let r = hqq(&w, out, inp, &g, weights, HqqOptions::default()).unwrap();
            assert_eq!(r.zero_point.is_some(), !sym);
            let zs = r.zero_point.as_deref();
            let g2 = Grid::new(
                &r.scale,
                og.shape,
                zs.map(|z| (z, og.shape)),
                rb,
                cb,
                og.qmin,
                og.qmax,
                out,
                inp,
            )
            .unwrap();
            let c = weights.unwrap_or(&ones);
            let (before, after) = (
                group_errors(&w, &g, out, inp, c),
                group_errors(&w, &g2, out, inp, c),
            );
            for (b, a) in before.iter().zip(&after) {
                assert!(a <= b, "grid {rb}x{cb} {bits} bits sym {sym}: {a} > {b}");
            }
            improved += usize::from(after.iter().sum::<f64>() < 0.999 * before.iter().sum::<f64>());
        }
        // iters = 0 returns the input grid.
        let r = hqq(&w, out, inp, &g, None, HqqOptions { iters: 0, p: 0.7 }).unwrap();
        assert_eq!(r.scale, og.scale);
    }
    assert!(improved >= 6, "hqq improved only {improved} of 12 cases");
    let og = OwnedGrid::new(&w, out, inp, 1, 16, 4, false);
    let g = og.grid(out, inp);
    for p in [0.0, 1.5, f64::NAN] {
        let e = hqq(&w, out, inp, &g, None, HqqOptions { iters: 5, p }).unwrap_err();
        assert!(is_arg(&e, "`p`"), "{e}");
    }
    let e = hqq(&w, out, inp, &g, Some(&[1.0; 3]), HqqOptions::default()).unwrap_err();
    assert!(is_arg(&e, "`col_weight` has length 3"), "{e}");
}

#[test]
fn smoothquant_scales_follow_the_formula() {
    use super::smooth::smoothquant_scales;
    let (out, inp) = (3, 5);
    let mut w = vec![0.5f32; out * inp];
    w[1] = -2.0; // column 1: max 2
    for r in 0..out {
        w[r * inp + 2] = 0.0; // column 2 all zero
    }
    w[3] = 1e-12; // column 3: tiny max -> clamped
    let act = [4.0, 9.0, 3.0, 1e12, 0.0];
    let s = smoothquant_scales(&act, &w, out, inp, 0.5).unwrap();
    let want = [
        (4.0f64.sqrt() / 0.5f64.sqrt()) as f32,
        (9.0f64.sqrt() / 2.0f64.sqrt()) as f32,
        1.0,
        1e5,
        1.0,
    ];
    assert_eq!(s, want);
    assert!(is_arg(
        &smoothquant_scales(&act, &w, out, inp, 1.5).unwrap_err(),
        "`alpha`"
    ));
    assert!(is_arg(
        &smoothquant_scales(&act[..4], &w, out, inp, 0.5).unwrap_err(),
        "`act_max`"
    ));
    let e = smoothquant_scales(&[1.0, f64::NAN, 1.0, 1.0, 1.0], &w, out, inp, 0.5).unwrap_err();
    assert!(matches!(&e, Error::NonFinite { what, index: 1, .. } if what == "`act_max`"));
}

/// Codes (or mask entries) that agree, as a fraction.
fn agreement<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// Heavy-tailed weights with 3 outlier columns (x20) and `H` with an outlier channel.
fn outlier_layer(rng: &mut Rng, out: usize, inp: usize, tokens: usize) -> (Vec<f32>, Vec<f64>) {
    let mut w = weights(rng, out, inp);
    for c in [1, inp / 2, inp - 2] {
        for r in 0..out {
            w[r * inp + c] *= 20.0;
        }
    }
    let h = hessian_of(rng, tokens, inp, &[]);
    (w, h)
}

// Float32 mode against float64: the same quality (objective within 1e-3 relative: float32
// keeps ~7 digits and the running weights lose a few over the updates; a wrong update shows
// as 1e-2 or more), almost the same decisions (>= 99.5% of codes / mask entries; a near-tie
// decided the other way changes the later ones). tests/test_methods.py holds the same check
// against the numpy oracle.
#[test]
fn float32_mode_has_the_quality_of_float64() {
    let mut rng = Rng(77);
    for (out, inp, tokens) in [(37, 203, 500), (29, 130, 90), (64, 257, 400)] {
        let (w, h) = outlier_layer(&mut rng, out, inp, tokens);
        for (rb, cb, bits, sym) in [(1, 32, 4, true), (1, inp, 8, false), (5, 1, 4, true)] {
            let og = OwnedGrid::new(&w, out, inp, rb, cb, bits, sym);
            let g = og.grid(out, inp);
            for act_order in [true, false] {
                let run = |precision| {
                    let o = GptqOptions {
                        act_order,
                        precision,
                        ..GptqOptions::default()
                    };
                    gptq(&w, out, inp, &h, &g, o).unwrap().codes
                };
                let (c64, c32) = (run(Precision::F64), run(Precision::F32));
                assert!(agreement(&c64, &c32) >= 0.995);
                let e64 = obj(&w, &decode(&c64, &g, out, inp), out, inp, &h);
                let e32 = obj(&w, &decode(&c32, &g, out, inp), out, inp, &h);
                assert!((e32 - e64).abs() <= 1e-3 * e64, "{e32} vs {e64}");
            }
        }
        let s = [
            (0.5, Structure::Unstructured),
            (0.7, Structure::Unstructured),
            (0.5, Structure::Nm { n: 2, m: 4 }),
            (0.5, Structure::Block { br: 2, bc: 4 }),
        ];
        for (sp, st) in s {
            let run = |p| sparsegpt(&w, out, inp, &h, sp, st, None, 0.01, 128, p).unwrap();
            let (r64, r32) = (run(Precision::F64), run(Precision::F32));
            check_zeros(&r32);
            let pruned = |r: &SparseGptResult| r.keep.iter().filter(|k| !**k).count();
            assert_eq!(pruned(&r32), pruned(&r64), "{st:?}");
            assert!(agreement(&r64.keep, &r32.keep) >= 0.995, "{st:?}");
            let (e64, e32) = (obj(&w, &r64.w, out, inp, &h), obj(&w, &r32.w, out, inp, &h));
            assert!((e32 - e64).abs() <= 1e-3 * e64, "{st:?}: {e32} vs {e64}");
        }
    }
}

#[test]
fn float32_mode_falls_back_to_float64_outside_its_range() {
    let (out, inp) = (6, 20);
    let mut rng = Rng(78);
    let (w, h) = outlier_layer(&mut rng, out, inp, 100);
    assert_eq!(Precision::F32.for_hessian(&h, inp), Precision::F32);
    let og = OwnedGrid::new(&w, out, inp, 1, 4, 4, true);
    let g = og.grid(out, inp);
    for f in [1e70, 1e-70] {
        let hs: Vec<f64> = h.iter().map(|x| x * f).collect();
        assert_eq!(Precision::F32.for_hessian(&hs, inp), Precision::F64);
        let run = |precision| {
            let o = GptqOptions {
                precision,
                ..GptqOptions::default()
            };
            gptq(&w, out, inp, &hs, &g, o).unwrap().codes
        };
        assert_eq!(run(Precision::F32), run(Precision::F64));
        let run = |p| {
            let s = Structure::Unstructured;
            sparsegpt(&w, out, inp, &hs, 0.5, s, None, 0.01, 128, p).unwrap()
        };
        let (a, b) = (run(Precision::F32), run(Precision::F64));
        assert_eq!((a.w, a.keep), (b.w, b.keep));
    }
    assert_eq!(Precision::parse("float32").unwrap(), Precision::F32);
    assert_eq!(Precision::parse("float64").unwrap(), Precision::F64);
    assert!(is_arg(
        &Precision::parse("half").unwrap_err(),
        "`precision`"
    ));
}

mod awq_tests {
    use super::Rng;
    use crate::calib::awq::{awq, awq_scales, rtn_scaled, Scheme};
    use crate::calib::objective::Hessian;
    use crate::quant::{Calibration, Convention, Spec};

    fn scheme(bits: u8, symmetric: bool, axis: Option<i64>, block: Option<i64>) -> Scheme {
        Scheme {
            axis,
            block_size: block,
            spec: Spec {
                bits,
                symmetric,
                reduce_range: false,
                convention: Convention::Onnx,
                calibration: Calibration::MinMax,
                scale_f16: false,
            },
        }
    }

    /// `(w (out, inp), H, mean_abs)` with activation outliers on two channels and channel 1 dead.
    fn case(out: usize, inp: usize) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let mut rng = Rng(7);
        let w: Vec<f32> = (0..out * inp)
            .map(|_| (0.05 * rng.student(3)) as f32)
            .collect();
        let tokens = 200;
        let mut x = vec![0f64; tokens * inp];
        for t in 0..tokens {
            for j in 0..inp {
                let f = if j == 2 || j == inp - 1 { 30.0 } else { 1.0 };
                x[t * inp + j] = if j == 1 { 0.0 } else { f * rng.student(3) };
            }
        }
        let mut h = vec![0f64; inp * inp];
        let mut ma = vec![0f64; inp];
        for t in 0..tokens {
            let r = &x[t * inp..(t + 1) * inp];
            for i in 0..inp {
                ma[i] += r[i].abs() / tokens as f64;
                for j in 0..inp {
                    h[i * inp + j] += r[i] * r[j] / tokens as f64;
                }
            }
        }
        (w, h, ma)
    }

    #[test]
    fn alpha_zero_is_rtn_and_dead_channels_get_one() {
        let (_, _, ma) = case(4, 40);
        assert!(awq_scales(&ma, 0.0).unwrap().iter().all(|&s| s == 1.0));
        let s = awq_scales(&ma, 0.5).unwrap();
        assert_eq!(s[1], 1.0);
        assert!(s[2] > s[0]);
        assert!(awq_scales(&[0.0; 5], 0.7)
            .unwrap()
            .iter()
            .all(|&s| s == 1.0));
        assert!(awq_scales(&ma, 1.5).is_err());
        assert!(awq_scales(&[-1.0], 0.5).is_err());
        assert!(awq_scales(&[f64::NAN], 0.5).is_err());
    }

    #[test]
    fn never_worse_than_rtn_in_both_layouts() {
        let (out, inp) = (12, 40);
        let (w, h, ma) = case(out, inp);
        let sc = scheme(4, true, Some(1), Some(16));
        let r = awq(&w, [out, inp], 1, Hessian::Full(&h), &ma, &sc, 20).unwrap();
        assert_eq!(r.errors.len(), 20);
        assert!(r.error <= r.errors[0]);
        assert!(
            r.error < 0.5 * r.errors[0],
            "{} vs {}",
            r.error,
            r.errors[0]
        );
        // the same weight in (in, out) layout, blocks along axis 0: the same answer
        let mut wt = vec![0f32; w.len()];
        for i in 0..out {
            for j in 0..inp {
                wt[j * out + i] = w[i * inp + j];
            }
        }
        let sc0 = scheme(4, true, Some(0), Some(16));
        let r0 = awq(&wt, [inp, out], 0, Hessian::Full(&h), &ma, &sc0, 20).unwrap();
        assert_eq!(r0.scale, r.scale);
        assert_eq!(r0.alpha, r.alpha);
        let a = rtn_scaled(&w, [out, inp], 1, &r.scale, &sc).unwrap();
        let b = rtn_scaled(&wt, [inp, out], 0, &r.scale, &sc0).unwrap();
        for i in 0..out {
            for j in 0..inp {
                assert_eq!(a[i * inp + j].to_bits(), b[j * out + i].to_bits());
            }
        }
        // diagonal H works too, and bad arguments are errors, not panics
        let d: Vec<f64> = (0..inp).map(|j| h[j * inp + j]).collect();
        let rd = awq(&w, [out, inp], 1, Hessian::Diag(&d), &ma, &sc, 20).unwrap();
        assert!(rd.error <= rd.errors[0]);
        assert!(awq(&w, [out, inp], 1, Hessian::Diag(&d), &ma[1..], &sc, 20).is_err());
        assert!(awq(&w, [out, inp], 2, Hessian::Diag(&d), &ma, &sc, 20).is_err());
        assert!(awq(&w, [out, inp], 1, Hessian::Diag(&d), &ma, &sc, 0).is_err());
    }

    #[test]
    fn clip_without_shrink_is_the_rtn_grid_and_shrinking_never_hurts_a_group() {
        use crate::calib::awq::clip;
        use crate::calib::grid::Grid;
        let (out, inp, b) = (6, 40, 16);
        let (w, h, _) = case(out, inp);
        let q = crate::quant::quantize(
            &w,
            &[out, inp],
            Some(1),
            Some(b as i64),
            &scheme(4, false, None, None).spec,
        )
        .unwrap();
        let cg = inp.div_ceil(b);
        let g = Grid::new(
            &q.scale,
            (out, cg),
            Some((&q.zero_point, (out, cg))),
            1,
            b,
            0,
            15,
            out,
            inp,
        )
        .unwrap();
        let (s0, z0) = clip(&w, out, inp, Hessian::Full(&h), &g, 20, 0.0).unwrap();
        assert_eq!(s0, q.scale);
        assert_eq!(z0.unwrap(), q.zero_point);
        let (s1, _) = clip(&w, out, inp, Hessian::Full(&h), &g, 20, 0.5).unwrap();
        assert!(s1.iter().zip(&q.scale).all(|(a, b)| a <= b));
        assert!(clip(&w, out, inp, Hessian::Full(&h), &g, 20, 1.5).is_err());
        assert!(clip(&w, out, inp, Hessian::Diag(&h[..3]), &g, 20, 0.5).is_err());
    }
}
