//! Every ISA the host has equals the scalar twin bit for bit (all lengths, unaligned starts,
//! NaN / +-Inf / +-0 / +-max anywhere).

use super::*;
use crate::kernels::testutil::{floats, isas, Rng};

fn bits(m: MinMax) -> (u32, u32, bool) {
    (m.min.to_bits(), m.max.to_bits(), m.nan)
}

#[test]
fn every_isa_equals_scalar_all_lengths() {
    let mut rng = Rng(3);
    for isa in isas() {
        for n in 0..=4 * 16 + 1 {
            for rep in 0..20 {
                let buf = if rep % 2 == 0 {
                    floats(&mut rng, n + 3, 0.5)
                } else {
                    // mostly zeros of both signs: the sign of a zero must not depend on lanes
                    (0..n + 3)
                        .map(|i| if (i + rep) % 3 == 0 { -0.0 } else { 0.0 })
                        .collect()
                };
                for off in 0..3 {
                    let x = &buf[off..off + n];
                    assert_eq!(
                        bits(minmax_with(isa, x)),
                        bits(scalar::minmax(x)),
                        "{isa} n={n}"
                    );
                    let (a, an) = absmax_with(isa, x);
                    let (b, bn) = scalar::absmax(x);
                    assert_eq!((a.to_bits(), an), (b.to_bits(), bn), "{isa} n={n}");
                    let mut lo = floats(&mut rng, n, 1.0);
                    let mut hi = floats(&mut rng, n, 1.0);
                    let (mut lo2, mut hi2) = (lo.clone(), hi.clone());
                    let g = minmax_columns_with(isa, x, &mut lo, &mut hi).unwrap();
                    let w = scalar::minmax_columns(x, &mut lo2, &mut hi2);
                    assert_eq!(g, w);
                    let eq = |a: &[f32], b: &[f32]| {
                        a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
                    };
                    assert!(eq(&lo, &lo2) && eq(&hi, &hi2), "{isa} n={n}");
                }
            }
        }
    }
}

#[test]
fn semantics() {
    for isa in isas() {
        let m = minmax_with(isa, &[1.0, f32::NAN, -2.0, 3.0]);
        assert_eq!((m.min, m.max, m.nan), (-2.0, 3.0, true));
        let m = minmax_with(isa, &[]);
        assert_eq!(
            (m.min, m.max, m.nan),
            (f32::INFINITY, f32::NEG_INFINITY, false)
        );
        assert_eq!(absmax_with(isa, &[-5.0, f32::NAN, 4.0]), (5.0, true));
        assert_eq!(absmax_with(isa, &[-0.0; 70]).0.to_bits(), 0);
    }
    assert_eq!(first_nan(&[1.0, 2.0, f32::NAN]), Some(2));
    assert_eq!(first_non_finite(&[1.0, f32::NEG_INFINITY]), Some(1));
}
