//! Every ISA the host has equals the scalar twin bit for bit: every length 0..=4*64+1, unaligned
//! starts, sentinel-filled outputs, +-0 / NaN / Inf / max bit patterns.

use super::*;
use crate::kernels::isa;

const SENT8: u8 = 0xA5;

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 11
}

/// Values with a given density of (bit-pattern) nonzeros, including special float patterns.
fn data<T: Lane + From<u8>>(n: usize, density_pct: u64, seed: &mut u64, special: &[T]) -> Vec<T> {
    (0..n)
        .map(|_| {
            let r = lcg(seed);
            if r % 100 >= density_pct {
                T::ZERO
            } else if r.is_multiple_of(7) && !special.is_empty() {
                special[(r as usize / 7) % special.len()]
            } else {
                T::from(((r >> 20) as u8) | 1)
            }
        })
        .collect()
}

fn check_all<T: Lane + From<u8>>(care: T, sentinel: T, special: &[T]) {
    let mut seed = 99u64;
    for isa in isa::detected() {
        for n in 0..=(4 * 64 + 1) {
            for off in [0usize, 1, 3] {
                for dens in [0u64, 10, 50, 90, 100] {
                    let buf = data::<T>(n + off, dens, &mut seed, special);
                    let v = &buf[off..];
                    // mask
                    let mut m_ref = vec![0x5Au8; mask_len(n)];
                    let mut m_isa = vec![0xC3u8; mask_len(n)];
                    let c_ref = scalar::build_mask(v, care, &mut m_ref);
                    let c_isa = build_mask_with(isa, v, care, &mut m_isa).unwrap();
                    assert_eq!(
                        (c_isa, &m_isa),
                        (c_ref, &m_ref),
                        "mask {isa} n={n} off={off}"
                    );
                    // compress into a sentinel-filled buffer with slack
                    let mut o_ref = vec![sentinel; n + 70];
                    let mut o_isa = vec![sentinel; n + 70];
                    let k_ref = scalar::compress(v, &m_ref, &mut o_ref);
                    let k_isa = compress_with(isa, v, &m_ref, &mut o_isa).unwrap();
                    assert_eq!(
                        (k_isa, &o_isa),
                        (k_ref, &o_ref),
                        "compress {isa} n={n} off={off}"
                    );
                    // exact-size output
                    let mut o_exact = vec![sentinel; k_ref];
                    compress_with(isa, v, &m_ref, &mut o_exact).unwrap();
                    assert_eq!(&o_exact[..], &o_ref[..k_ref]);
                    // expand from an unaligned kept slice
                    let mut kept = vec![sentinel; off];
                    kept.extend_from_slice(&o_ref[..k_ref]);
                    let mut d_isa = vec![sentinel; n];
                    expand_with(isa, &m_ref, &kept[off..], &mut d_isa).unwrap();
                    let mut d_ref = vec![sentinel; n];
                    scalar::expand(&m_ref, &kept[off..], &mut d_ref);
                    assert_eq!(d_isa, d_ref, "expand {isa} n={n} off={off}");
                    // round trip: zeros (by care) come back as zero
                    for (a, b) in v.iter().zip(&d_ref) {
                        if a.and(care) != T::ZERO {
                            assert_eq!(a, b);
                        } else {
                            assert_eq!(*b, T::ZERO);
                        }
                    }
                    // sentinel after the output survived
                    assert!(o_isa[k_ref..].iter().all(|&s| s == sentinel));
                    // fused mask + compress == the two passes (values beyond nnz unspecified)
                    let mut m_f = vec![0x77u8; mask_len(n)];
                    let mut o_f = vec![sentinel; n];
                    let k_f = mask_compress_with(isa, v, care, &mut m_f, &mut o_f).unwrap();
                    assert_eq!(
                        (k_f, &m_f, &o_f[..k_f]),
                        (k_ref, &m_ref, &o_ref[..k_ref]),
                        "fused {isa} n={n}"
                    );
                }
            }
        }
    }
}

#[test]
fn u8_every_isa_matches_scalar() {
    check_all::<u8>(0xff, SENT8, &[0x80, 0x7f, 0xff, 0x01]);
}

#[test]
fn u16_every_isa_matches_scalar() {
    // +-0, +-Inf, NaN, +-max (float16), and 0x8000 = -0.0 which counts as zero
    check_all::<u16>(
        0x7fff,
        0xBEEF,
        &[0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7bff, 0xfbff, 0x3800],
    );
}

#[test]
fn u32_every_isa_matches_scalar() {
    check_all::<u32>(
        0x7fff_ffff,
        0xDEAD_BEEF,
        &[
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7f7f_ffff,
            0xff7f_ffff,
            0x3f00_0000,
        ],
    );
}

#[test]
fn wrong_lengths_are_errors() {
    let v = [1u8, 0, 2];
    let mut m = [0u8; 2];
    assert!(build_mask(&v, 0xff, &mut m).is_err());
    let mut m = [0u8; 1];
    assert_eq!(build_mask(&v, 0xff, &mut m).unwrap(), 2);
    let mut o = [0u8; 1];
    assert!(compress(&v, &m, &mut o).is_err());
    let mut d = [0u8; 3];
    assert!(expand(&m, &[1u8], &mut d).is_err());
}

#[test]
fn threads_agree_with_one_thread() {
    let mut seed = 5u64;
    let n = 3 * CHUNK + 77;
    let v = data::<u16>(n, 30, &mut seed, &[0x8000]);
    let mut m1 = vec![0u8; mask_len(n)];
    let c1 = scalar::build_mask(&v, 0x7fff, &mut m1);
    crate::parallel::set_num_threads(2).unwrap();
    let mut m2 = vec![0u8; mask_len(n)];
    let c2 = build_mask(&v, 0x7fff, &mut m2).unwrap();
    assert_eq!((c1, &m1), (c2, &m2));
    let mut o = vec![0u16; c1];
    compress(&v, &m1, &mut o).unwrap();
    let mut o_ref = vec![0u16; c1];
    scalar::compress(&v, &m1, &mut o_ref);
    assert_eq!(o, o_ref);
    let mut d = vec![1u16; n];
    expand(&m1, &o, &mut d).unwrap();
    let mut d_ref = vec![1u16; n];
    scalar::expand(&m1, &o, &mut d_ref);
    assert_eq!(d, d_ref);
}

#[test]
fn popcount_matches_a_bit_loop() {
    let mut seed = 9u64;
    for n in [0usize, 1, 7, 8, 9, 63, 64, 65, 1000, 4099] {
        let m: Vec<u8> = (0..mask_len(n)).map(|_| lcg(&mut seed) as u8).collect();
        let expect = (0..n).filter(|&i| m[i / 8] >> (i % 8) & 1 != 0).count();
        assert_eq!(popcount(&m, n), expect, "n={n}");
        assert_eq!(
            scalar::popcount_bytes(&m),
            m.iter().map(|b| b.count_ones() as usize).sum::<usize>()
        );
    }
}
