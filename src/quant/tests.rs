//! Tests of the tensor-level logic (the Python suite compares against onnxruntime).

use super::*;

fn spec(symmetric: bool, calibration: Calibration) -> Spec {
    Spec {
        bits: 8,
        symmetric,
        reduce_range: false,
        convention: Convention::Onnx,
        calibration,
        scale_f16: false,
    }
}

fn conv(symmetric: bool, convention: Convention) -> Spec {
    Spec {
        symmetric,
        convention,
        ..spec(symmetric, Calibration::MinMax)
    }
}

#[test]
fn derive_follows_ort_tool() {
    let d = derive(-3.0, 1.0, -127, 127, &conv(true, Convention::Onnx));
    assert_eq!((d.scale, d.zp), ((3.0f64 / 127.0) as f32, 0));
    let d = derive(2.0, 5.0, 0, 255, &conv(false, Convention::Onnx));
    assert_eq!((d.scale, d.zp), ((5.0f64 / 255.0) as f32, 0));
    let d = derive(-2.0, -1.0, 0, 255, &conv(false, Convention::Onnx));
    assert_eq!(d.zp, 255);
    let d = derive(0.0, 0.0, -127, 127, &conv(true, Convention::Onnx));
    assert_eq!((d.scale, d.zp, d.factor), (1.0, 0, 1.0));
    let d = derive(-1e-40, 1e-40, -127, 127, &conv(true, Convention::Torch));
    assert_eq!(d.scale, 1.0);
    let d = derive(-127.0, 127.0, -127, 127, &conv(true, Convention::Tflite));
    assert_eq!((d.scale, d.factor), (1.0, 1.0));
}

#[test]
fn f16_scales_round_up_and_overflow_is_reported() {
    let half = |symmetric| Spec {
        scale_f16: true,
        ..conv(symmetric, Convention::Onnx)
    };
    // 3 / 127 = 0.0236220...; float16 neighbours 0.02362061 (below) and 0.02363586 (above).
    let d = derive(-3.0, 1.0, -127, 127, &half(true));
    assert_eq!((d.scale, d.zp), (0.023635864f32, 0));
    assert!(d.scale as f64 >= 3.0 / 127.0);
    assert_eq!(f16_ceil(1.0), 1.0);
    assert_eq!(f16_ceil(1e-9), 2f64.powi(-24));
    assert_eq!(f16_ceil(65504.0), 65504.0);
    assert!(f16_ceil(65504.5).is_infinite());
    // affine: the zero point comes from the widened scale
    let d = derive(-1.0, 2.0, 0, 15, &half(false));
    let s = f16_ceil(3.0 / 15.0);
    assert_eq!(d.scale as f64, s);
    assert_eq!(d.zp, (0.0 - -1.0 / s).round_ties_even() as i32);
    // all-zero units keep scale 1
    assert_eq!(derive(0.0, 0.0, -7, 7, &half(true)).scale, 1.0);
    let big = derive(-1e7, 1e7, -7, 7, &half(true));
    assert!(big.scale.is_infinite());
    let e = check_f16_scales(&half(true), &[1.0, big.scale]).unwrap_err();
    assert!(e.to_string().contains("unit 1"), "{e}");
    assert!(check_f16_scales(&conv(true, Convention::Onnx), &[big.scale]).is_ok());
}

#[test]
fn per_channel_paths_agree() {
    // The fused one-pass path (axis 0) and the column path (axis 1 of the transpose) agree.
    let (r, c) = (37usize, 53usize);
    let x: Vec<f32> = (0..r * c)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let mut xt = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            xt[j * r + i] = x[i * c + j];
        }
    }
    for symmetric in [true, false] {
        let a = quantize(
            &x,
            &[r, c],
            Some(0),
            None,
            &spec(symmetric, Calibration::MinMax),
        )
        .unwrap();
        let b = quantize(
            &xt,
            &[c, r],
            Some(-1),
            None,
            &spec(symmetric, Calibration::MinMax),
        )
        .unwrap();
        assert_eq!(a.scale, b.scale);
        assert_eq!(a.zero_point, b.zero_point);
        for i in 0..r {
            for j in 0..c {
                assert_eq!(a.data[i * c + j], b.data[j * r + i]);
            }
        }
    }
}

#[test]
fn percentile_is_numpy_linear() {
    let mut v: Vec<f32> = (0..11).map(|i| i as f32).collect();
    assert_eq!(params::percentile(&mut v, 50.0), 5.0);
    assert_eq!(params::percentile(&mut v, 95.0), 9.5);
    assert_eq!(params::percentile(&mut v, 100.0), 10.0);
}

#[test]
fn nan_index_is_the_first() {
    let mut x = vec![1.0f32; 100];
    x[61] = f32::NAN;
    x[80] = f32::NAN;
    for axis in [None, Some(0), Some(1)] {
        let e = quantize(&x, &[10, 10], axis, None, &spec(true, Calibration::MinMax)).unwrap_err();
        assert_eq!(e.to_string(), "`x` contains NaN at index 61");
    }
}

#[test]
fn dynamic_golden() {
    let x = [0.0f32, 2.0, -3.0, -2.5, 1.34, 0.5];
    let mut out = [0u8; 6];
    let (s, z) = dynamic_quantize_linear(&x, &mut out).unwrap();
    assert_eq!(out, [153, 255, 0, 26, 221, 179]);
    assert_eq!((s, z), (5.0f32 / 255.0, 153));
}

/// Timing probe (not a test): `cargo test --release --lib probe_fused -- --ignored --nocapture`.
#[test]
#[ignore]
fn probe_fused() {
    use crate::kernels::{quantize as qk, reduce};
    use std::time::Instant;
    let (r, c) = (4096usize, 4096usize);
    let x: Vec<f32> = (0..r * c)
        .map(|i| ((i * 7919 % 10007) as f32 - 5000.0) * 1e-3)
        .collect();
    let mut out = vec![1u8; r * c];
    let best = |f: &mut dyn FnMut()| {
        let mut b = f64::INFINITY;
        for _ in 0..15 {
            let t = Instant::now();
            f();
            b = b.min(t.elapsed().as_secs_f64() * 1e3);
        }
        b
    };
    let p = qk::Params {
        rounding: qk::Rounding::Div,
        factor: 0.01,
        zp: 0,
        qmin: -127,
        qmax: 127,
    };
    println!(
        "absmax rows      {:.3} ms",
        best(&mut || {
            for row in x.chunks(c) {
                std::hint::black_box(reduce::absmax(row));
            }
        })
    );
    println!(
        "minmax all       {:.3} ms",
        best(&mut || {
            std::hint::black_box(reduce::minmax(&x));
        })
    );
    println!(
        "quantize all     {:.3} ms",
        best(&mut || qk::quantize(&x, &mut out, &p).unwrap())
    );
    println!(
        "quantize rows    {:.3} ms",
        best(&mut || {
            for (xr, o) in x.chunks(c).zip(out.chunks_mut(c)) {
                qk::quantize(xr, o, &p).unwrap();
            }
        })
    );
    for stream in [false, true] {
        println!(
            "q+reduce next s={stream} {:.3} ms",
            best(&mut || {
                for (i, (xr, o)) in x.chunks(c).zip(out.chunks_mut(c)).enumerate() {
                    let next = if i + 1 < r {
                        &x[(i + 1) * c..(i + 2) * c]
                    } else {
                        &[][..]
                    };
                    std::hint::black_box(
                        qk::quantize_reduce_next(xr, o, &p, next, &[], stream).unwrap(),
                    );
                }
            })
        );
        println!(
            "absmax+q rows s={stream} {:.3} ms",
            best(&mut || {
                for (xr, o) in x.chunks(c).zip(out.chunks_mut(c)) {
                    std::hint::black_box(reduce::absmax(xr));
                    qk::quantize_hinted(xr, o, &p, &[], stream).unwrap();
                }
            })
        );
    }
    let sp = spec(true, Calibration::MinMax);
    println!(
        "quant::quantize axis0 {:.3} ms",
        best(&mut || {
            std::hint::black_box(quantize_into(&x, &[r, c], Some(0), None, &sp, &mut out).unwrap());
        })
    );
    println!(
        "quant::quantize tensor {:.3} ms",
        best(&mut || {
            std::hint::black_box(quantize_into(&x, &[r, c], None, None, &sp, &mut out).unwrap());
        })
    );
}
