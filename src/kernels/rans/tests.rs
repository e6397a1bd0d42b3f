//! Every ISA equals the scalar twin: same states and words when encoding, same symbols and
//! verdict when decoding (valid and corrupted streams), for every length 0..=4*32+1 and more.

use super::*;
use crate::kernels::isa;

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 24
}

fn table(kind: u32, seed: &mut u64) -> ([u32; 256], [u32; 256]) {
    let mut f = [0u32; 256];
    match kind {
        0 => f[7] = M, // one symbol
        1 => f.iter_mut().for_each(|v| *v = M / 256),
        _ => {
            // skewed, with many frequency-1 symbols
            let mut sum = 0;
            for (s, v) in f.iter_mut().enumerate() {
                *v = if s % 3 == 0 {
                    1
                } else {
                    1 + (lcg(seed) % 150) as u32
                };
                sum += *v;
            }
            f[1] += M - sum;
        }
    }
    let mut cum = [0u32; 256];
    let mut c = 0;
    for s in 0..256 {
        cum[s] = c;
        c += f[s];
    }
    assert_eq!(c, M);
    (f, cum)
}

fn data(n: usize, f: &[u32; 256], cum: &[u32; 256], seed: &mut u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            let slot = lcg(seed) as u32 % M;
            (0..256)
                .find(|&s| cum[s] <= slot && slot < cum[s] + f[s])
                .unwrap() as u8
        })
        .collect()
}

#[test]
fn every_isa_matches_scalar() {
    let mut seed = 11u64;
    for kind in 0..3 {
        let (f, cum) = table(kind, &mut seed);
        let et = EncTable::new(&f, &cum);
        let dt = DecTable::new(&f, &cum);
        for n in (0..=4 * WAYS + 1).chain([1000, 4099]) {
            let syms = data(n, &f, &cum, &mut seed);
            let mut b_ref = vec![0u8; 2 * (n + 1)];
            let (s_ref, start) = scalar::encode(&syms, &et, &mut b_ref);
            let bytes: Vec<u8> = b_ref[start..].to_vec();
            for isa in isa::detected() {
                let mut buf = vec![7u8; 3]; // reused scratch of the wrong size
                let (s, st) = encode_with(isa, &syms, &et, &mut buf).unwrap();
                assert_eq!(
                    (s, &buf[st..]),
                    (s_ref, &bytes[..]),
                    "encode {isa} kind={kind} n={n}"
                );
                let mut out = vec![0xEEu8; n];
                assert!(
                    decode_with(isa, &s_ref, &bytes, &dt, &mut out).unwrap(),
                    "{isa} n={n}"
                );
                assert_eq!(out, syms, "decode {isa} kind={kind} n={n}");
                // corrupted: a word flipped, a word missing, an extra word
                if !bytes.is_empty() {
                    let mut bad = bytes.clone();
                    bad[bytes.len() / 2] ^= 0x55;
                    let mut o1 = vec![0u8; n];
                    let mut o2 = vec![0u8; n];
                    assert_eq!(
                        decode_with(isa, &s_ref, &bad, &dt, &mut o1).unwrap(),
                        scalar::decode(&s_ref, &bad, &dt, &mut o2),
                        "{isa} corrupted n={n}"
                    );
                    let short = &bytes[..bytes.len() - 2];
                    assert!(!decode_with(isa, &s_ref, short, &dt, &mut o1).unwrap());
                }
                let mut long = bytes.clone();
                long.extend_from_slice(&[1, 2]);
                let mut o = vec![0u8; n];
                assert!(!decode_with(isa, &s_ref, &long, &dt, &mut o).unwrap());
            }
        }
    }
}
