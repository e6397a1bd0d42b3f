//! Every ISA the host has equals the scalar twin, and the layout is ONNX's.

use super::*;
use crate::kernels::testutil::{isas, Rng};

#[test]
fn every_isa_equals_scalar_and_round_trips() {
    let mut rng = Rng(11);
    for isa in isas() {
        for n in 0..=4 * 64 + 1 {
            let q: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let mut want = vec![0xA5u8; packed_len(n) + 1];
            let mut got = want.clone();
            scalar::pack(&q, &mut want[..packed_len(n)]);
            pack_with(isa, &q, &mut got[..packed_len(n)]).unwrap();
            assert_eq!(got, want, "{isa} n={n}");
            for signed in [true, false] {
                let mut u = vec![0xA5u8; n + 1];
                let mut u2 = u.clone();
                unpack_with(isa, &got[..packed_len(n)], &mut u[..n], signed).unwrap();
                scalar::unpack(&want[..packed_len(n)], &mut u2[..n], signed);
                assert_eq!(u, u2);
                for i in 0..n {
                    let v = q[i] & 15;
                    let e = if signed && v > 7 {
                        v.wrapping_sub(16)
                    } else {
                        v
                    };
                    assert_eq!(u[i], e);
                }
            }
        }
    }
}

#[test]
fn onnx_layout() {
    let mut out = [0u8; 2];
    pack(&[1, 0xFE, 7], &mut out).unwrap(); // -2 as int4 is 0xE
    assert_eq!(out, [0xE1, 0x07]);
    assert!(pack(&[1, 2, 3], &mut [0u8; 1]).is_err());
}
