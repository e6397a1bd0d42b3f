//! Every ISA the host has equals the scalar twin, bit for bit.

use super::linear::{self, Activations};
use super::*;
#[allow(unused_imports)]
use crate::kernels::isa::{Gemm, GemmDirect};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn zps(d: Dtype, kind: usize, len: usize, rng: &mut Rng) -> Vec<i32> {
    let (lo, hi) = d.range();
    match kind {
        0 => vec![],
        1 => vec![lo + (rng.next() % (hi - lo + 1) as u64) as i32],
        _ => (0..len)
            .map(|_| lo + (rng.next() % (hi - lo + 1) as u64) as i32)
            .collect(),
    }
}

fn wide(z: &[i32]) -> Vec<i64> {
    z.iter().map(|&v| v as i64).collect()
}

/// `a` (`m` x `k` of `ad`) times `b` (`k` x `n` of `bd`) with zero points `za`, `zb` on every
/// entry and ISA, against the twin.
fn check(
    (m, k, n): (usize, usize, usize),
    (ad, bd): (Dtype, Dtype),
    a: &[u8],
    b: &[u8],
    za: &[i32],
    zb: &[i32],
) {
    let zb = wide(zb);
    let lhs = Lhs {
        data: a,
        rows: m,
        k,
        dtype: ad,
    };
    let rhs = Rhs {
        data: b,
        k,
        n,
        dtype: bd,
        zero_point: &zb,
    };
    check_operands(lhs, rhs, za);
}

fn check_operands(lhs: Lhs, b: Rhs, za: &[i32]) {
    let (m, k, n, ad, bd, a) = (lhs.rows, lhs.k, b.n, lhs.dtype, b.dtype, lhs.data);
    let zb = b.zero_point;
    let want = scalar::matmul(&lhs, &wide(za), &b);
    let packed = PackedMatrix::pack(b.data, k, n, bd, zb).unwrap();
    for isa in isa::detected() {
        let got = matmul_integer_with(isa, &lhs, &wide(za), &packed).unwrap();
        assert!(
            got == want,
            "isa={isa} m={m} k={k} n={n} {ad:?}x{bd:?} za={za:?} zb={zb:?}"
        );
    }
    // Every output element is written (the allocating entries skip zeroing): a sentinel-filled
    // buffer must come back equal to the twin.
    for isa in isa::detected() {
        let mut out = vec![i32::MIN + 7; m * n];
        matmul_integer_into_with(isa, &lhs, &wide(za), &packed, &mut out).unwrap();
        assert!(out == want, "sentinel isa={isa} m={m} k={k} n={n}");
    }
    // Unpacked B, packed per call into recycled storage (twice: the second reuses it).
    for isa in isa::detected() {
        for _ in 0..2 {
            let got = matmul_integer_unpacked_with(isa, &lhs, &wide(za), &b).unwrap();
            assert!(got == want, "unpacked isa={isa} m={m} k={k} n={n}");
        }
    }
    // ... and into a sentinel-filled buffer (results may land in recycled memory).
    for isa in isa::detected() {
        let mut out = vec![i32::MIN + 7; m * n];
        matmul_integer_unpacked_into_with(isa, &lhs, &wide(za), &b, &mut out).unwrap();
        assert!(out == want, "unpacked sentinel isa={isa} m={m} k={k} n={n}");
    }
    // Unaligned start of A (one byte into a larger buffer).
    let mut shifted = vec![0x5au8; a.len() + 1];
    shifted[1..].copy_from_slice(a);
    let lhs1 = Lhs {
        data: &shifted[1..],
        ..lhs
    };
    for isa in isa::detected() {
        let got = matmul_integer_with(isa, &lhs1, &wide(za), &packed).unwrap();
        assert!(got == want, "unaligned isa={isa} m={m} k={k} n={n}");
    }
    // The AVX-VNNI kernel, through the AVX-512VL encoding of the same instruction.
    if isa::detected().contains(&Isa::Avx512) {
        let got = matmul_integer_kernel(Gemm::AvxVnniViaVl, &lhs, &wide(za), &packed).unwrap();
        assert!(got == want, "avxvnni(vl) m={m} k={k} n={n} {ad:?}x{bd:?}");
        // ... and its plain-B kernel for small M, into a sentinel-filled buffer.
        if (1..=super::layout::DIRECT_ROWS).contains(&m) && k > 0 && n > 0 {
            let mut out = vec![i32::MIN + 7; m * n];
            // SAFETY: AVX-512 (checked above) includes avx2 + avx512f/vl/vnni.
            unsafe {
                super::direct::matmul_into(GemmDirect::AvxVnniViaVl, &lhs, &wide(za), &b, &mut out)
            }
            .unwrap();
            assert!(
                out == want,
                "avxvnni(vl) plain B m={m} k={k} n={n} {ad:?}x{bd:?}"
            );
        }
    }
}

const DT: [(Dtype, Dtype); 4] = [
    (Dtype::U8, Dtype::I8),
    (Dtype::I8, Dtype::I8),
    (Dtype::U8, Dtype::U8),
    (Dtype::I8, Dtype::U8),
];

#[test]
fn twin_matches_known_values() {
    // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]] with a_zp = 1, b_zp = [5, 6]
    let a = [1u8, 2, 3, 4];
    let b = [5u8, 6, 7, 8];
    let lhs = |data, dtype, rows, k| Lhs {
        data,
        rows,
        k,
        dtype,
    };
    let rhs = |data, dtype, k, n, zero_point| Rhs {
        data,
        k,
        n,
        dtype,
        zero_point,
    };
    let got = scalar::matmul(
        &lhs(&a, Dtype::U8, 2, 2),
        &[1],
        &rhs(&b, Dtype::U8, 2, 2, &[5, 6]),
    );
    // (A-1) = [[0,1],[2,3]]; (B-zb) = [[0,0],[2,2]] -> [[2,2],[6,6]]
    assert_eq!(got, vec![2, 2, 6, 6]);
    let a = [0xffu8]; // int8 -1
    let got = scalar::matmul(
        &lhs(&a, Dtype::I8, 1, 1),
        &[],
        &rhs(&[0x80], Dtype::I8, 1, 1, &[]),
    );
    assert_eq!(got, vec![128]);
}

#[test]
fn small_shapes_every_isa() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for m in [1usize, 2, 3, 5, 7, 8, 9, 13, 16, 17, 23] {
        for k in [1usize, 2, 3, 4, 5, 7, 8, 15, 31, 64, 67] {
            for n in [1usize, 3, 15, 16, 17, 33, 64, 65, 67] {
                let (ad, bd) = DT[(m + k + n) % 4];
                let a = rng.bytes(m * k);
                let b = rng.bytes(k * n);
                let kind = (m * 7 + k * 3 + n) % 3;
                let za = zps(ad, kind, m, &mut rng);
                let zb = zps(bd, (kind + 1) % 3, n, &mut rng);
                check((m, k, n), (ad, bd), &a, &b, &za, &zb);
            }
        }
    }
}

#[test]
fn every_dtype_and_zero_point_form() {
    let mut rng = Rng(12345);
    for (ad, bd) in DT {
        for ka in 0..3 {
            for kb in 0..3 {
                let (m, k, n) = (11, 37, 70);
                let a = rng.bytes(m * k);
                let b = rng.bytes(k * n);
                let za = zps(ad, ka, m, &mut rng);
                let zb = zps(bd, kb, n, &mut rng);
                check((m, k, n), (ad, bd), &a, &b, &za, &zb);
            }
        }
    }
}

#[test]
fn beyond_tile_sizes() {
    let mut rng = Rng(777);
    for &(m, k, n) in &[
        (1, 1000, 300), // one row: K in four parts read at once (avx512::micro)
        (2, 1030, 70),  // two rows: two parts, and a tail of k-groups
        (6, 260, 129),
        (37, 129, 200),
        (100, 64, 130),
        (130, 300, 64),
        (40, 1030, 70),
        (17, 513, 129),
        (19, 4099, 70), // K past one K block (KC_GROUPS): accumulators stored and reloaded
        (25, 8200, 65), // ... three blocks, the last one short
        (3, 70, 4200),  // unpacked B without packing (direct.rs): two column blocks
        (8, 520, 1100), // ... eight rows in one pass, split between the threads
    ] {
        for (ad, bd) in DT {
            let a = rng.bytes(m * k);
            let b = rng.bytes(k * n);
            check((m, k, n), (ad, bd), &a, &b, &[], &[]);
        }
    }
}

#[test]
fn direct_path_rows_zero_points_and_column_blocks() {
    // Plain B up to 16 rows (direct.rs): one or two register passes, one or two row chunks
    // (plus the all-ones row when A has a zero point), both operand orders (uint8 / int8 A),
    // K past a register block and not a multiple of 4, N past a column block with a ragged
    // panel.
    let mut rng = Rng(4242);
    for m in (1..=11usize).chain([13, 16]) {
        for &(k, n) in &[(9usize, 70usize), (130, 4161)] {
            for (i, (ad, bd)) in DT.into_iter().enumerate() {
                let a = rng.bytes(m * k);
                let b = rng.bytes(k * n);
                let za = zps(ad, (m + i) % 3, m, &mut rng);
                let zb = zps(bd, (m + k + i) % 3, n, &mut rng);
                check((m, k, n), (ad, bd), &a, &b, &za, &zb);
            }
        }
    }
}

#[test]
fn extreme_operands_large_k() {
    // all-255 / all -128 / all 127 operands at the largest K each dtype pair allows.
    let cases: [(Dtype, u8, Dtype, u8); 5] = [
        (Dtype::U8, 255, Dtype::I8, 0x80),
        (Dtype::U8, 255, Dtype::I8, 127),
        (Dtype::I8, 0x80, Dtype::I8, 0x80),
        (Dtype::U8, 255, Dtype::U8, 255),
        (Dtype::I8, 0x80, Dtype::U8, 255),
    ];
    for (ad, av, bd, bv) in cases {
        let k = k_limit(ad, &[], bd, &[]);
        // 3 rows: the small-M path (all of K in registers); 20: the row-tile path (K blocks)
        for m in [3, 20] {
            let n = 17;
            let a = vec![av; m * k];
            let b = vec![bv; k * n];
            let want = ad.value(av) as i64 * bd.value(bv) as i64 * k as i64;
            assert!(want.abs() <= i32::MAX as i64 + 1, "{ad:?} {bd:?}");
            let packed = PackedMatrix::pack(&b, k, n, bd, &[]).unwrap();
            let lhs = Lhs {
                data: &a,
                rows: m,
                k,
                dtype: ad,
            };
            for isa in isa::detected() {
                let got = matmul_integer_with(isa, &lhs, &[], &packed).unwrap();
                assert!(
                    got.iter().all(|&x| x as i64 == want),
                    "isa={isa} {ad:?}x{bd:?} m={m} k={k}"
                );
                // Plain B: the direct kernels at 3 rows, packing per call at 20.
                let got = matmul_integer_unpacked_with(
                    isa,
                    &lhs,
                    &[],
                    &Rhs {
                        data: &b,
                        k,
                        n,
                        dtype: bd,
                        zero_point: &[],
                    },
                )
                .unwrap();
                assert!(
                    got.iter().all(|&x| x as i64 == want),
                    "unpacked isa={isa} {ad:?}x{bd:?} m={m} k={k}"
                );
            }
            if isa::detected().contains(&Isa::Avx512) {
                let got = matmul_integer_kernel(Gemm::AvxVnniViaVl, &lhs, &[], &packed).unwrap();
                assert!(
                    got.iter().all(|&x| x as i64 == want),
                    "avxvnni(vl) {ad:?}x{bd:?} k={k}"
                );
                if m <= super::layout::DIRECT_ROWS {
                    let mut got = vec![0i32; m * n];
                    // SAFETY: AVX-512 includes avx2 + avx512f/vl/vnni.
                    unsafe {
                        let rhs = Rhs {
                            data: &b,
                            k,
                            n,
                            dtype: bd,
                            zero_point: &[],
                        };
                        super::direct::matmul_into(
                            GemmDirect::AvxVnniViaVl,
                            &lhs,
                            &[],
                            &rhs,
                            &mut got,
                        )
                    }
                    .unwrap();
                    assert!(
                        got.iter().all(|&x| x as i64 == want),
                        "avxvnni(vl) plain B {ad:?}x{bd:?} k={k}"
                    );
                }
            }
        }
        let (m, n) = (3, 17);
        // one more row is refused
        let b1 = vec![bv; (k + 1) * n];
        let a1 = vec![av; m * (k + 1)];
        let p1 = PackedMatrix::pack(&b1, k + 1, n, bd, &[]).unwrap();
        let l1 = Lhs {
            data: &a1,
            rows: m,
            k: k + 1,
            dtype: ad,
        };
        let e = matmul_integer_with(Isa::Scalar, &l1, &[], &p1)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{k}")), "{e}");
    }
}

#[test]
fn k_limits_per_dtype_pair() {
    assert_eq!(k_limit(Dtype::U8, &[], Dtype::I8, &[]), 65793);
    assert_eq!(k_limit(Dtype::I8, &[], Dtype::I8, &[]), 131071);
    assert_eq!(k_limit(Dtype::U8, &[], Dtype::U8, &[]), 33025);
    // zero points move the extremes: uint8 with zp 255 spans -255..=0.
    assert_eq!(k_limit(Dtype::U8, &[255], Dtype::I8, &[]), 65793);
    assert_eq!(k_limit(Dtype::U8, &[128], Dtype::I8, &[]), 131071);
}

#[test]
fn bad_inputs_are_errors() {
    let b = PackedMatrix::pack(&[1, 2, 3, 4, 5, 6], 2, 3, Dtype::I8, &[]).unwrap();
    let a = [1u8, 2, 3];
    let lhs = Lhs {
        data: &a,
        rows: 1,
        k: 3,
        dtype: Dtype::U8,
    };
    let e = matmul_integer(&lhs, &[], &b).unwrap_err().to_string();
    assert!(e.contains("K=3") && e.contains("K=2"), "{e}");
    let lhs = Lhs {
        data: &a[..2],
        rows: 1,
        k: 2,
        dtype: Dtype::U8,
    };
    let e = matmul_integer(&lhs, &[256], &b).unwrap_err().to_string();
    assert!(e.contains("a_zero_point") && e.contains("256"), "{e}");
    let e = matmul_integer(&lhs, &[1, 2], &b).unwrap_err().to_string();
    assert!(e.contains("2 values"), "{e}");
    let e = PackedMatrix::pack(&[1, 2, 3], 2, 3, Dtype::I8, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("K*N"), "{e}");
    let e = PackedMatrix::pack(&[1; 6], 2, 3, Dtype::I8, &[-129])
        .unwrap_err()
        .to_string();
    assert!(e.contains("b_zero_point"), "{e}");
}

#[test]
fn empty_dimensions() {
    for (m, k, n) in [(0, 5, 3), (2, 0, 3), (2, 5, 0), (0, 0, 0)] {
        let a = vec![7u8; m * k];
        let b = vec![9u8; k * n];
        let p = PackedMatrix::pack(&b, k, n, Dtype::I8, &[3]).unwrap();
        for dtype in [Dtype::U8, Dtype::I8] {
            let lhs = Lhs {
                data: &a,
                rows: m,
                k,
                dtype,
            };
            for isa in isa::detected() {
                let got = matmul_integer_with(isa, &lhs, &[1], &p).unwrap();
                assert_eq!(got, vec![0; m * n]);
            }
        }
    }
}

#[test]
fn qlinear_and_scaled_match_scalar() {
    let mut rng = Rng(4242);
    let (m, k, n) = (19, 45, 77);
    let a = rng.bytes(m * k);
    let b = rng.bytes(k * n);
    let bs: Vec<f32> = (0..n).map(|j| 0.001 + j as f32 * 1e-4).collect();
    let p = PackedMatrix::pack(&b, k, n, Dtype::I8, &[]).unwrap();
    let lhs = Lhs {
        data: &a,
        rows: m,
        k,
        dtype: Dtype::U8,
    };
    let q = QLinear {
        a_scale: 0.02,
        a_zero_point: &[128],
        b_scale: &bs,
        y_scale: 0.05,
        y_zero_point: -3,
        y_dtype: Dtype::I8,
    };
    let want = qlinear_matmul_with(Isa::Scalar, &lhs, &p, &q).unwrap();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.1 - 3.0).collect();
    let rs: Vec<f32> = (0..m).map(|i| 0.01 + i as f32 * 1e-3).collect();
    let sc = Scaled {
        row_scale: &rs,
        col_scale: &bs,
        bias_i32: None,
        bias: Some(&bias),
    };
    let want_f = matmul_scaled_with(Isa::Scalar, &lhs, &[3], &p, &sc).unwrap();
    for isa in isa::detected() {
        let got = qlinear_matmul_with(isa, &lhs, &p, &q).unwrap();
        assert_eq!(got, want, "{isa}");
        let got = matmul_scaled_with(isa, &lhs, &[3], &p, &sc).unwrap();
        assert!(
            got.iter()
                .zip(&want_f)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{isa}"
        );
    }
}

#[test]
fn activation_quantizers_every_isa() {
    let mut rng = Rng(99);
    for len in 0..70usize {
        let x: Vec<f32> = (0..len)
            .map(|i| match i % 7 {
                0 => 0.5,
                1 => -0.0,
                2 => 2.5,
                _ => (rng.next() as i32 as f32) / (1u64 << 28) as f32,
            })
            .collect();
        let want = linear::dynamic_qparams_with(Isa::Scalar, &x).unwrap();
        let wq = linear::quantize_u8_with(Isa::Scalar, &x, want.0, want.1);
        let rows = if len % 5 == 0 && len > 0 { 5 } else { 1 };
        let wr = linear::quantize_rows_i8_with(Isa::Scalar, &x, rows, len / rows).unwrap();
        for isa in isa::detected() {
            assert_eq!(
                linear::dynamic_qparams_with(isa, &x).unwrap(),
                want,
                "{isa} {len}"
            );
            assert_eq!(
                linear::quantize_u8_with(isa, &x, want.0, want.1),
                wq,
                "{isa} {len}"
            );
            assert_eq!(
                linear::quantize_rows_i8_with(isa, &x, rows, len / rows).unwrap(),
                wr
            );
        }
        if len > 3 {
            let mut bad = x.clone();
            bad[len - 2] = f32::NAN;
            for isa in isa::detected() {
                let e = linear::dynamic_qparams_with(isa, &bad)
                    .unwrap_err()
                    .to_string();
                assert!(e.contains(&format!("NaN at index {}", len - 2)), "{e}");
            }
        }
    }
    // ties: 0.5 / 1.0 -> 0, 2.5 -> 2 (half to even), plus zero point
    let q = linear::quantize_u8_with(Isa::Scalar, &[0.5, 1.5, 2.5, -0.5, 1e9, -1e9], 1.0, 10);
    assert_eq!(q, vec![10, 12, 12, 10, 255, 0]);
}

#[test]
fn linear_every_isa_equals_scalar() {
    let mut rng = Rng(31337);
    let (rows, k, n) = (13, 70, 90);
    let x: Vec<f32> = (0..rows * k)
        .map(|_| (rng.next() as i32 as f32) / (1u64 << 30) as f32)
        .collect();
    let wb = rng.bytes(k * n);
    let p = PackedMatrix::pack(&wb, k, n, Dtype::I8, &[]).unwrap();
    let ws: Vec<f32> = (0..n).map(|j| 0.01 + j as f32 * 1e-4).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
    let w = linear::Weights {
        packed: &p,
        scale: &ws,
        bias: Some(&bias),
    };
    for act in [
        Activations::Dynamic,
        Activations::DynamicPerRow,
        Activations::Static {
            scale: 0.01,
            zero_point: 120,
        },
    ] {
        let want = linear::linear_f32_with(Isa::Scalar, &x, rows, &w, act).unwrap();
        for isa in isa::detected() {
            let got = linear::linear_f32_with(isa, &x, rows, &w, act).unwrap();
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa} {act:?}"
            );
        }
    }
    let q8 = linear::StaticQ8 {
        in_scale: 0.01,
        in_zero_point: 120,
        out_scale: 0.5,
        out_zero_point: 3,
        out_dtype: Dtype::I8,
    };
    let want = linear::linear_q8_with(Isa::Scalar, &x, rows, &w, &q8).unwrap();
    for isa in isa::detected() {
        let got = linear::linear_q8_with(isa, &x, rows, &w, &q8).unwrap();
        assert_eq!(got, want, "{isa}");
    }
}

/// Seconds per `matmul_integer_into` call: the best of 5 runs of `reps` calls.
fn best_call_seconds(lhs: &Lhs, p: &PackedMatrix, reps: usize) -> f64 {
    let mut out = vec![0i32; lhs.rows * p.n()];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        for _ in 0..reps {
            matmul_integer_into(lhs, &[], p, &mut out).unwrap();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

/// Kernel-only throughput with everything in L1 (run with
/// `cargo test --release --lib kernel_throughput -- --ignored --nocapture`).
#[test]
#[ignore]
fn kernel_throughput() {
    let mut rng = Rng(5);
    for &(m, k, n) in &[
        (6usize, 256usize, 64usize),
        (24, 256, 64),
        (6, 768, 64),
        (120, 768, 128),
    ] {
        let a = rng.bytes(m * k);
        let b = rng.bytes(k * n);
        let p = PackedMatrix::pack(&b, k, n, Dtype::I8, &[]).unwrap();
        let lhs = Lhs {
            data: &a,
            rows: m,
            k,
            dtype: Dtype::U8,
        };
        let reps = (2_000_000_000usize / (2 * m * k * n)).max(10);
        crate::parallel::set_num_threads(1).unwrap();
        let best = best_call_seconds(&lhs, &p, reps);
        println!(
            "{m}x{k}x{n}: {:.1} GOP/s",
            2.0 * (m * k * n) as f64 / best / 1e9
        );
    }
}

/// Throughput of the packed-B path on the large shapes, one thread or
/// `EDGEPACK_PROBE_THREADS` (A/B probe for kernel changes:
/// `cargo test --release --lib large_throughput -- --ignored --nocapture`).
#[test]
#[ignore]
fn large_throughput() {
    let mut rng = Rng(7);
    let threads = std::env::var("EDGEPACK_PROBE_THREADS").map_or(1, |v| v.parse().unwrap());
    crate::parallel::set_num_threads(threads).unwrap();
    for &(m, k, n) in &[
        (64usize, 4096usize, 4096usize),
        (128, 768, 3072),
        (512, 1024, 1024),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
    ] {
        let b = rng.bytes(k * n);
        let p = PackedMatrix::pack(&b, k, n, Dtype::I8, &[]).unwrap();
        let a = rng.bytes(m * k);
        for dtype in [Dtype::U8, Dtype::I8] {
            let lhs = Lhs {
                data: &a,
                rows: m,
                k,
                dtype,
            };
            let reps = (4_000_000_000usize * threads / (2 * m * k * n)).max(3);
            let best = best_call_seconds(&lhs, &p, reps);
            println!(
                "{m}x{k}x{n} {} t{threads}: {:.3} ms {:.1} GOP/s",
                dtype.name(),
                best * 1e3,
                2.0 * (m * k * n) as f64 / best / 1e9
            );
        }
    }
}

#[test]
fn packing_is_the_same_on_every_isa() {
    let mut rng = Rng(2024);
    for &(k, n) in &[
        (1usize, 1usize),
        (4, 64),
        (7, 64),
        (8, 128),
        (9, 130),
        (64, 192), // 16 k-groups: panels padded with a zero k-group
        (261, 320),
        (300, 70),
        (256, 100),
        (1024, 4096),
        (2047, 4100), // >= 8 MiB: non-temporal stores on AVX-512
    ] {
        for dt in [Dtype::I8, Dtype::U8] {
            let b = rng.bytes(k * n);
            let want = PackedMatrix::pack_with(Isa::Scalar, &b, k, n, dt, &[]).unwrap();
            let groups = k.div_ceil(4);
            let pg = groups + (groups % 16 == 0) as usize;
            assert_eq!(want.panel_groups(), pg);
            // The layout of pack.rs's module docs, byte for byte: Bs at
            // (n/64) pg*256 + (k/4) 256 + (n%64/16) 64 + (n%16) 4 + k%4, zero elsewhere.
            let mut layout = vec![0u8; n.div_ceil(64) * pg * 256];
            for kk in 0..k {
                for nn in 0..n {
                    let at = nn / 64 * pg * 256 + kk / 4 * 256 + nn % 64 / 16 * 64 + nn % 16 * 4;
                    let flip = if dt == Dtype::U8 { 0x80 } else { 0 };
                    layout[at + kk % 4] = b[kk * n + nn] ^ flip;
                }
            }
            assert!(want.data() == layout, "layout k={k} n={n} {dt:?}");
            for (kk, nn) in [(0, 0), (k - 1, n - 1), (k / 2, n / 3)] {
                let v = dt.value(b[kk * n + nn]) - if dt == Dtype::U8 { 128 } else { 0 };
                assert_eq!(want.signed_at(kk, nn) as i32, v);
            }
            for isa in isa::detected() {
                let got = PackedMatrix::pack_with(isa, &b, k, n, dt, &[]).unwrap();
                assert!(got.data() == want.data(), "{isa} k={k} n={n} {dt:?}");
                assert_eq!(got.col_sums(), want.col_sums(), "{isa} k={k} n={n} {dt:?}");
                // Per-call packing reuses this thread's storage as it is: fill it with a
                // larger pack of 0xA5 first; every line must still be written.
                let junk = vec![0xA5u8; 1100 * 4200];
                let rhs = |data, k, n, dtype| Rhs {
                    data,
                    k,
                    n,
                    dtype,
                    zero_point: &[],
                };
                PackedMatrix::with_temporary(isa, &rhs(&junk, 1100, 4200, Dtype::U8), |_| ())
                    .unwrap();
                PackedMatrix::with_temporary(isa, &rhs(&b, k, n, dt), |got| {
                    assert!(
                        got.data() == want.data(),
                        "recycled {isa} k={k} n={n} {dt:?}"
                    );
                    assert_eq!(
                        got.col_sums(),
                        want.col_sums(),
                        "recycled {isa} k={k} n={n}"
                    );
                })
                .unwrap();
            }
        }
    }
}

#[test]
fn partition_covers_every_row_and_panel_once_in_aligned_blocks() {
    use super::plan::{partition, Partition};
    for &(m, panels, kp) in &[
        (1usize, 1usize, 64usize),
        (7, 3, 4096),
        (16, 64, 4096),
        (17, 5, 1024),
        (64, 64, 4096),
        (128, 48, 768),
        (512, 16, 1024),
        (1000, 7, 1024),
        (1024, 16, 1024),
        (2048, 32, 2048),
        (4099, 33, 100),
    ] {
        for threads in 1..=5 {
            let p: Partition = partition(m, panels, kp, threads);
            let mut seen = vec![0u8; m * panels];
            for mb in 0..p.mblocks {
                let m0 = mb * p.mc;
                assert!(m0 < m, "{m} {panels} {threads}: empty row block {p:?}");
                if m > 16 {
                    assert_eq!(m0 % 6, 0, "row blocks start on a row tile");
                }
                for pb in 0..p.pblocks {
                    let p0 = pb * p.pc;
                    assert!(
                        p0 < panels,
                        "{m} {panels} {threads}: empty panel block {p:?}"
                    );
                    for r in m0..(m0 + p.mc).min(m) {
                        for c in p0..(p0 + p.pc).min(panels) {
                            seen[r * panels + c] += 1;
                        }
                    }
                }
            }
            assert!(
                seen.iter().all(|&v| v == 1),
                "{m} {panels} {threads}: {p:?}"
            );
        }
    }
    // The case that motivated balancing: 12 equal blocks on 2 threads, not 9 unequal ones.
    let p = partition(512, 16, 1024, 2);
    assert_eq!(p.mblocks * p.pblocks % 2, 0, "{p:?}");
}

/// The plain-B kernels for small M on one thread, 4096 x 4096 int8 B: AVX2 (`vpmaddwd`)
/// against AVX-VNNI (`vpdpbusd` on ymm, here in its AVX-512VL encoding) and AVX-512
/// (`cargo test --release --lib direct_throughput -- --ignored --nocapture`).
#[test]
#[ignore]
fn direct_throughput() {
    use super::direct::matmul_into;
    use crate::kernels::isa::GemmDirect;
    if !isa::detected().contains(&Isa::Avx512) {
        return;
    }
    let mut rng = Rng(11);
    let (k, n) = (4096usize, 4096usize);
    let b = rng.bytes(k * n);
    crate::parallel::set_num_threads(1).unwrap();
    for m in [1usize, 4, 8, 9, 12, 16] {
        let a = rng.bytes(m * k);
        let lhs = Lhs {
            data: &a,
            rows: m,
            k,
            dtype: Dtype::U8,
        };
        let rhs = Rhs {
            data: &b,
            k,
            n,
            dtype: Dtype::I8,
            zero_point: &[],
        };
        let mut out = vec![0i32; m * n];
        let mut line = format!("M={m}:");
        for kernel in [
            GemmDirect::Avx2,
            GemmDirect::AvxVnniViaVl,
            GemmDirect::Avx512,
        ] {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for _ in 0..10 {
                    // SAFETY: AVX-512 (checked above) covers all three kernels' features.
                    unsafe { matmul_into(kernel, &lhs, &[], &rhs, &mut out) }.unwrap();
                }
                best = best.min(t.elapsed().as_secs_f64() / 10.0);
            }
            line += &format!(" {kernel:?} {:.3} ms", best * 1e3);
        }
        // What AVX-VNNI machines would do without the direct kernel: pack (AVX2), then the
        // packed AVX-VNNI kernel.
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..10 {
                let p = PackedMatrix::pack_with(Isa::Avx2, &b, k, n, Dtype::I8, &[]).unwrap();
                matmul_integer_kernel(Gemm::AvxVnniViaVl, &lhs, &[], &p).unwrap();
            }
            best = best.min(t.elapsed().as_secs_f64() / 10.0);
        }
        println!("{line}; AVX-VNNI pack + packed kernel {:.3} ms", best * 1e3);
    }
}

#[test]
fn row_tiles_cover_every_row_once_in_tiles_of_at_most_six() {
    for m in 1..=40usize {
        let mut tiles = Vec::new();
        super::layout::row_tiles(m, 0, m, |r0, h| tiles.push((r0, h)));
        let mut next = 0;
        for &(r0, h) in &tiles {
            assert!(r0 == next && (1..=6).contains(&h), "m={m}: {tiles:?}");
            for r in r0..r0 + h {
                assert_eq!(super::layout::tile_of_row(m, r), (r0, h), "m={m} r={r}");
            }
            next = r0 + h;
        }
        assert_eq!(next, m, "m={m}: {tiles:?}");
        if m <= 16 {
            // The small-M path: as few tiles as 6 rows allow, of near-equal height.
            let hs: Vec<usize> = tiles.iter().map(|t| t.1).collect();
            assert_eq!(tiles.len(), m.div_ceil(6), "m={m}");
            assert!(
                hs.iter().max().unwrap() - hs.iter().min().unwrap() <= 1,
                "m={m}"
            );
        }
    }
}
