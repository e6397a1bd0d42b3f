//! Every ISA the host has equals the scalar twin bit for bit (all lengths, unaligned starts,
//! sentinels, every byte value, signed and unsigned, extreme scales).

use super::*;
use crate::kernels::testutil::{isas, Rng};

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            if i % 7 == 0 {
                [0u8, 127, 128, 255][i % 4]
            } else {
                rng.next() as u8
            }
        })
        .collect()
}

#[test]
fn every_isa_equals_scalar_all_lengths() {
    let mut rng = Rng(42);
    let sentinel = f32::from_bits(0x7fc0_dead);
    for isa in isas() {
        for signed in [true, false] {
            for (scale, zp) in [
                (0.5f32, 0),
                (0.0173, -128),
                (3.4e38, 255),
                (1e-45, 3),
                (-0.0, 7),
            ] {
                for n in 0..=4 * 16 + 1 {
                    let q = bytes(&mut rng, n + 3);
                    for off in 0..3 {
                        let mut want = vec![sentinel; n + off + 2];
                        let mut got = want.clone();
                        scalar::dequantize(
                            &q[off..off + n],
                            &mut want[off..off + n],
                            signed,
                            scale,
                            zp,
                        );
                        dequantize_with(
                            isa,
                            &q[off..off + n],
                            &mut got[off..off + n],
                            signed,
                            scale,
                            zp,
                        )
                        .unwrap();
                        let (g, w): (Vec<u32>, Vec<u32>) = (
                            got.iter().map(|v| v.to_bits()).collect(),
                            want.iter().map(|v| v.to_bits()).collect(),
                        );
                        assert_eq!(
                            g, w,
                            "{isa} n={n} off={off} signed={signed} scale={scale} zp={zp}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn streaming_path_equals_scalar() {
    let mut rng = Rng(5);
    let n = avx512::STREAM_MIN + 99;
    let q = bytes(&mut rng, n + 8);
    for isa in isas() {
        for off in [0usize, 1, 3] {
            let mut want = vec![0f32; n + 8];
            let mut got = vec![0f32; n + 8];
            scalar::dequantize(&q[..n], &mut want[off..off + n], true, 0.37, 5);
            dequantize_with(isa, &q[..n], &mut got[off..off + n], true, 0.37, 5).unwrap();
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa} off={off}"
            );
        }
    }
}

#[test]
fn each_equals_scalar() {
    let mut rng = Rng(9);
    for isa in isas() {
        for signed in [true, false] {
            for n in 0..=4 * 16 + 1 {
                let q = bytes(&mut rng, n);
                let s: Vec<f32> = (0..n).map(|i| [0.25f32, 1e-3, 7.0, 3e38][i % 4]).collect();
                let z: Vec<i32> = (0..n).map(|_| rng.below(256) as i32 - 128).collect();
                let mut want = vec![-1f32; n];
                let mut got = want.clone();
                scalar::dequantize_each(&q, &mut want, signed, &s, &z);
                dequantize_each_with(isa, &q, &mut got, signed, &s, &z).unwrap();
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa} n={n}"
                );
            }
        }
    }
}

#[test]
fn golden() {
    for isa in isas() {
        let mut out = [0f32; 4];
        dequantize_with(isa, &[0u8, 3, 128, 255], &mut out, false, 2.0, 128).unwrap();
        assert_eq!(out, [-256.0, -250.0, 0.0, 254.0]);
        dequantize_with(isa, &[0u8, 3, 128, 255], &mut out, true, 0.5, -1).unwrap();
        assert_eq!(out, [0.5, 2.0, -63.5, 0.0]);
    }
}
