//! Every ISA the host has equals the scalar twin bit for bit: all lengths 0..=4*16+1,
//! unaligned starts, sentinel-filled outputs, specials, exact ties, every rounding.

use super::*;
use crate::kernels::testutil::{floats, isas, Rng};

const SENTINEL: u8 = 0xA5;

fn params() -> Vec<Params> {
    let mut v = Vec::new();
    for rounding in [Rounding::Div, Rounding::Mul, Rounding::MulAway] {
        for (factor, zp, qmin, qmax) in [
            (0.5f32, 0, -128, 127),
            (0.00214854861, 0, 0, 255),
            (1.0 / 3.0, 7, -128, 127),
            (2.0, 128, 0, 255),
            (0.25, 0, -127, 127),
            (1.0, -3, -8, 7),
            (0.125, 15, 0, 15),
            (1e-30, 0, -64, 64),
        ] {
            let factor = if rounding == Rounding::Div {
                factor
            } else {
                1.0 / factor
            };
            v.push(Params {
                rounding,
                factor,
                zp,
                qmin,
                qmax,
            });
        }
    }
    v
}

fn check(isa: Isa, x: &[f32], p: &Params, off: usize) {
    let n = x.len();
    let mut want = vec![SENTINEL; n + off + 3];
    let mut got = want.clone();
    scalar::quantize(x, &mut want[off..off + n], p);
    quantize_with(isa, x, &mut got[off..off + n], p).unwrap();
    assert_eq!(got, want, "{isa} n={n} off={off} {p:?}");
}

#[test]
fn every_isa_equals_scalar_all_lengths() {
    let mut rng = Rng(0x1234_5678);
    for isa in isas() {
        for p in params() {
            let tie = if p.rounding == Rounding::Div {
                p.factor
            } else {
                1.0 / p.factor
            };
            for n in 0..=4 * 16 + 1 {
                let buf = floats(&mut rng, n + 3, tie);
                for off in 0..3 {
                    check(isa, &buf[off..off + n], &p, off);
                }
            }
        }
    }
}

#[test]
fn streaming_path_equals_scalar() {
    let mut rng = Rng(99);
    let n = avx512::STREAM_MIN + 77;
    let buf = floats(&mut rng, n + 16, 0.5);
    for isa in isas() {
        for off in [0usize, 1, 13] {
            let p = Params {
                rounding: Rounding::Div,
                factor: 0.5,
                zp: 3,
                qmin: -128,
                qmax: 127,
            };
            check(isa, &buf[off..off + n], &p, off);
        }
    }
}

#[test]
fn each_equals_scalar() {
    let mut rng = Rng(7);
    for isa in isas() {
        for rounding in [Rounding::Div, Rounding::Mul, Rounding::MulAway] {
            for (qmin, qmax) in [(-128, 127), (0, 255), (-8, 7), (0, 15)] {
                for n in 0..=4 * 16 + 1 {
                    let x = floats(&mut rng, n, 0.25);
                    let f: Vec<f32> = (0..n).map(|i| [0.25f32, 0.5, 3.0, 0.01][i % 4]).collect();
                    let z: Vec<i32> = (0..n)
                        .map(|_| qmin + rng.below((qmax - qmin + 1) as u64) as i32)
                        .collect();
                    let mut want = vec![SENTINEL; n + 2];
                    let mut got = want.clone();
                    scalar::quantize_each(&x, &mut want[1..n + 1], &f, &z, rounding, qmin, qmax);
                    quantize_each_with(isa, &x, &mut got[1..n + 1], &f, &z, rounding, qmin, qmax)
                        .unwrap();
                    assert_eq!(got, want, "{isa} n={n} {rounding:?} [{qmin}, {qmax}]");
                }
            }
        }
    }
}

#[test]
fn golden_semantics() {
    let p = |rounding, factor| Params {
        rounding,
        factor,
        zp: 0,
        qmin: -128,
        qmax: 127,
    };
    let x = [0.25f32, 0.75, 1.25, 1.75, -0.25, -0.75, -1.25];
    for isa in isas() {
        let mut out = [0u8; 7];
        quantize_with(isa, &x, &mut out, &p(Rounding::Div, 0.5)).unwrap();
        assert_eq!(out.map(|b| b as i8), [0, 2, 2, 4, 0, -2, -2], "{isa}");
        // division vs reciprocal multiplication (uint8, zp 0)
        let q = |r, f| {
            let mut o = [0u8];
            let pp = Params {
                rounding: r,
                factor: f,
                zp: 0,
                qmin: 0,
                qmax: 255,
            };
            quantize_with(isa, &[0.273939937f32], &mut o, &pp).unwrap();
            o[0]
        };
        assert_eq!(q(Rounding::Div, 0.00214854861), 127);
        assert_eq!(q(Rounding::Mul, 1.0f32 / 0.00214854861), 128);
        let x = [
            127.0f32,
            0.5,
            1.5,
            2.5,
            -0.5,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let mut out = [0u8; 8];
        quantize_with(isa, &x, &mut out, &p(Rounding::MulAway, 1.0)).unwrap();
        assert_eq!(
            out.map(|b| b as i8),
            [127, 1, 2, 3, -1, -128, 127, -128],
            "{isa}"
        );
    }
}

#[test]
fn bad_arguments_are_errors() {
    let p = Params {
        rounding: Rounding::Div,
        factor: 1.0,
        zp: 300,
        qmin: 0,
        qmax: 255,
    };
    assert!(quantize(&[1.0], &mut [0], &p)
        .unwrap_err()
        .to_string()
        .contains("zero point 300"));
    let p = Params { zp: 0, ..p };
    assert!(quantize(&[1.0], &mut [], &p)
        .unwrap_err()
        .to_string()
        .contains("`out`"));
}

#[test]
fn hinted_equals_scalar() {
    let mut rng = Rng(77);
    for isa in isas() {
        for n in (0..=4 * 16 + 1).chain([200, 1000, 4096 + 3]) {
            let buf = floats(&mut rng, 2 * n + 70, 0.5);
            for (off, stream) in [(0usize, false), (1, true), (5, true), (64, true)] {
                let x = &buf[off..off + n];
                let next = &buf[off + n..];
                let p = Params {
                    rounding: Rounding::Div,
                    factor: 0.5,
                    zp: -3,
                    qmin: -128,
                    qmax: 127,
                };
                let mut want = vec![SENTINEL; n + 80];
                let mut got = want.clone();
                scalar::quantize(x, &mut want[off..off + n], &p);
                quantize_hinted_with(isa, x, &mut got[off..off + n], &p, next, stream).unwrap();
                fence_with(isa);
                assert_eq!(got, want, "{isa} n={n} off={off} stream={stream}");
            }
        }
    }
}

#[test]
fn reduce_next_equals_scalar() {
    use crate::kernels::reduce;
    let mut rng = Rng(78);
    for isa in isas() {
        for n in (0..=4 * 16 + 1).chain([127, 200, 1000]) {
            for nn in [0usize, 1, 17, 64, 65, 130, n, n + 70] {
                let buf = floats(&mut rng, n + nn + 80, 0.5);
                for (off, stream) in [(0usize, false), (3, true), (64, true)] {
                    let x = &buf[off..off + n];
                    let next = &buf[off + n..off + n + nn];
                    let p = Params {
                        rounding: Rounding::Div,
                        factor: 0.5,
                        zp: 4,
                        qmin: 0,
                        qmax: 255,
                    };
                    let mut want = vec![SENTINEL; n + 80];
                    let mut got = want.clone();
                    scalar::quantize(x, &mut want[off..off + n], &p);
                    let wm = reduce::scalar::minmax(next);
                    let gm = quantize_reduce_next_with(
                        isa,
                        x,
                        &mut got[off..off + n],
                        &p,
                        next,
                        &buf[off..],
                        stream,
                    )
                    .unwrap();
                    fence_with(isa);
                    assert_eq!(got, want, "{isa} n={n} nn={nn} off={off}");
                    assert_eq!(
                        (gm.min.to_bits(), gm.max.to_bits(), gm.nan),
                        (wm.min.to_bits(), wm.max.to_bits(), wm.nan),
                        "{isa} n={n} nn={nn} off={off}"
                    );
                }
            }
        }
    }
}
