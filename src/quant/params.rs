//! Output types, conventions, and the derivation of scale / zero point from a range
//! (ONNX Runtime's quantization tool, `compute_scale_zp`), plus calibration of the range.

use crate::error::{Error, Result};
use crate::kernels::quantize::Rounding;

/// An integer output type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QType {
    /// 8 or 4.
    pub bits: u8,
    /// int8 / int4 (true) or uint8 / uint4.
    pub signed: bool,
}

impl QType {
    /// int8.
    pub const INT8: QType = QType {
        bits: 8,
        signed: true,
    };
    /// uint8.
    pub const UINT8: QType = QType {
        bits: 8,
        signed: false,
    };

    /// Parse `int8`, `uint8`, `int4`, `uint4`.
    pub fn parse(name: &str) -> Result<QType> {
        Ok(match name {
            "int8" => QType {
                bits: 8,
                signed: true,
            },
            "uint8" => QType {
                bits: 8,
                signed: false,
            },
            "int4" => QType {
                bits: 4,
                signed: true,
            },
            "uint4" => QType {
                bits: 4,
                signed: false,
            },
            _ => {
                return Err(Error::dtype(format!(
                    "output type {name:?} is not supported; expected int8, uint8, int4 or uint4"
                )))
            }
        })
    }

    /// The name (`int8`, ...).
    pub fn name(self) -> &'static str {
        match (self.bits, self.signed) {
            (8, true) => "int8",
            (8, false) => "uint8",
            (4, true) => "int4",
            _ => "uint4",
        }
    }

    /// The full range `[qmin, qmax]`.
    pub fn range(self) -> (i32, i32) {
        let b = self.bits as u32;
        if self.signed {
            (-(1 << (b - 1)), (1 << (b - 1)) - 1)
        } else {
            (0, (1 << b) - 1)
        }
    }

    /// Bytes that store `n` values (4-bit: two per byte).
    pub fn storage_len(self, n: usize) -> usize {
        if self.bits == 4 {
            n.div_ceil(2)
        } else {
            n
        }
    }

    /// Check a zero point fits the type.
    pub fn check_zp(self, zp: &[i32], name: &str) -> Result<()> {
        let (lo, hi) = self.range();
        if let Some(i) = zp.iter().position(|&z| z < lo || z > hi) {
            return Err(Error::arg(format!(
                "`{name}` value {} at index {i} is outside the {} range [{lo}, {hi}]",
                zp[i],
                self.name()
            )));
        }
        Ok(())
    }
}

/// Whose rounding rule quantization follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// ONNX QuantizeLinear: `x / scale`, ties to even.
    Onnx,
    /// torch.quantize_per_tensor / per_channel: `x * float32(1 / scale)`, ties to even.
    Torch,
    /// TFLite weights: half away from zero of `x * (qmax / absmax)`, symmetric only.
    Tflite,
}

impl Convention {
    /// Parse `onnx`, `torch`, `tflite`.
    pub fn parse(name: &str) -> Result<Convention> {
        match name {
            "onnx" => Ok(Convention::Onnx),
            "torch" => Ok(Convention::Torch),
            "tflite" => Ok(Convention::Tflite),
            _ => Err(Error::arg(format!(
                "`convention` = {name:?} is not known; expected 'onnx', 'torch' or 'tflite'"
            ))),
        }
    }

    /// The kernel rounding of this convention.
    pub fn rounding(self) -> Rounding {
        match self {
            Convention::Onnx => Rounding::Div,
            Convention::Torch => Rounding::Mul,
            Convention::Tflite => Rounding::MulAway,
        }
    }
}

/// How the clipping range is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The data's min and max.
    MinMax,
    /// The exact percentile (0 < p <= 100) of |x| (symmetric) or both tails (affine).
    Percentile(f64),
    /// The clipping threshold that minimises the squared reconstruction error.
    Mse,
}

/// The quantization rule for derived parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    /// 8 or 4.
    pub bits: u8,
    /// Symmetric signed (zero point 0) or affine unsigned.
    pub symmetric: bool,
    /// `[-64, 64]` / `[0, 127]` instead of the full 8-bit range.
    pub reduce_range: bool,
    /// The rounding convention.
    pub convention: Convention,
    /// The range calibration.
    pub calibration: Calibration,
    /// Scales are stored as float16: each derived scale is rounded up to the nearest float16
    /// (so the range it covers only grows) before the zero point and the codes are computed.
    pub scale_f16: bool,
}

impl Spec {
    /// Check the combination.
    pub fn validate(&self) -> Result<()> {
        if self.bits != 8 && self.bits != 4 {
            return Err(Error::arg(format!(
                "`bits` must be 8 or 4, found {}",
                self.bits
            )));
        }
        if self.reduce_range && self.bits != 8 {
            return Err(Error::arg(
                "`reduce_range` is only defined for 8 bits (ONNX Runtime has no reduced 4-bit range)",
            ));
        }
        if self.scale_f16 && self.convention == Convention::Tflite {
            return Err(Error::arg(
                "convention 'tflite' multiplies by qmax / absmax, not by a stored scale; \
                 use scale_dtype='float32' with it",
            ));
        }
        if self.convention == Convention::Tflite && !self.symmetric {
            return Err(Error::arg(
                "convention 'tflite' is the symmetric weight rule; use symmetric=True",
            ));
        }
        if let Calibration::Percentile(p) = self.calibration {
            if !(p > 0.0 && p <= 100.0) {
                return Err(Error::arg(format!(
                    "`percentile` must be in (0, 100], found {p}"
                )));
            }
        }
        Ok(())
    }

    /// The output type: symmetric = signed, affine = unsigned.
    pub fn qtype(&self) -> QType {
        QType {
            bits: self.bits,
            signed: self.symmetric,
        }
    }

    /// The quantized range (ONNX Runtime `get_qmin_qmax_for_qType`).
    pub fn qrange(&self) -> (i32, i32) {
        match (self.bits, self.symmetric, self.reduce_range) {
            (8, true, true) => (-64, 64),
            (8, false, true) => (0, 127),
            (8, true, false) => (-127, 127),
            (8, false, false) => (0, 255),
            (_, true, _) => (-7, 7),
            (_, false, _) => (0, 15),
        }
    }
}

/// Parameters of one unit: the stored scale and zero point, and the kernel factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Derived {
    /// float32 scale.
    pub scale: f32,
    /// Zero point.
    pub zp: i32,
    /// The kernel factor: the scale (onnx), `float32(1 / scale)` (torch), `qmax / absmax` (tflite).
    pub factor: f32,
}

/// Scale and zero point from the range `[rmin, rmax]` (ONNX Runtime `compute_scale_zp`):
/// the range is widened to include 0; symmetric: `scale = 2 * absmax / (qmax - qmin)`, zero point
/// `round((qmin + qmax) / 2)`; affine: `scale = (rmax - rmin) / (qmax - qmin)`,
/// `zp = round(qmin - rmin / scale)`; all in float64 (ties to even), scale stored as float32;
/// a scale below float32's smallest normal gives scale 1, zero point 0.
///
/// With `spec.scale_f16` the scale is rounded up to the nearest float16 (in float64, before the
/// zero point is derived from it); a scale above float16's largest finite value (65504) comes
/// back as `+inf` and the caller reports it ([`check_f16_scales`]).
pub fn derive(rmin: f32, rmax: f32, qmin: i32, qmax: i32, spec: &Spec) -> Derived {
    let (symmetric, conv) = (spec.symmetric, spec.convention);
    let rmin = if rmin < 0.0 { rmin } else { 0.0 };
    let rmax = if rmax > 0.0 { rmax } else { 0.0 };
    let dq = (qmax - qmin) as f64;
    let absmax = (-rmin).max(rmax);
    // Promoted before the subtraction (a finite range can overflow float32).
    let raw = if symmetric {
        2.0 * absmax as f64 / dq
    } else {
        (rmax as f64 - rmin as f64) / dq
    };
    // Below float32's smallest normal (or NaN): scale 1, zero point 0.
    if raw.is_nan() || raw < f32::MIN_POSITIVE as f64 {
        return Derived {
            scale: 1.0,
            zp: 0,
            factor: 1.0,
        };
    }
    let s = if spec.scale_f16 { f16_ceil(raw) } else { raw };
    let zp = if symmetric {
        ((qmin + qmax) as f64 / 2.0).round_ties_even() as i32
    } else {
        (qmin as f64 - rmin as f64 / s).round_ties_even() as i32
    };
    let scale = s as f32;
    let zp = zp.clamp(qmin, qmax);
    let factor = match conv {
        Convention::Onnx => scale,
        Convention::Torch => 1.0f32 / scale,
        Convention::Tflite => qmax as f32 / absmax,
    };
    Derived { scale, zp, factor }
}

/// The smallest float16 value >= `s` (`s` >= 0), as float64; `+inf` above 65504. Float16's
/// subnormals count: a positive `s` below 2^-24 gives 2^-24.
pub fn f16_ceil(s: f64) -> f64 {
    let h = half::f16::from_f64(s); // nearest, ties to even
    let h = if h.to_f64() < s {
        half::f16::from_bits(h.to_bits() + 1) // the next float16 up (s > 0, h finite)
    } else {
        h
    };
    h.to_f64()
}

/// With float16 scales: an error when a derived scale overflowed float16 (see [`derive`]).
pub fn check_f16_scales(spec: &Spec, scale: &[f32]) -> Result<()> {
    if !spec.scale_f16 {
        return Ok(());
    }
    match scale.iter().position(|s| !s.is_finite()) {
        None => Ok(()),
        Some(u) => Err(Error::arg(format!(
            "scale of unit {u} exceeds float16's largest value 65504 (the range is too wide for \
             scale_dtype='float16'); use scale_dtype='float32'"
        ))),
    }
}

/// The exact percentile `p` of `v` (numpy's default 'linear' method, in float64), reordering `v`.
pub fn percentile(v: &mut [f32], p: f64) -> f32 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let vi = (n - 1) as f64 * (p / 100.0);
    let lo = (vi.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = vi - lo as f64;
    let cmp = |a: &f32, b: &f32| a.total_cmp(b);
    let (_, a, right) = v.select_nth_unstable_by(lo, cmp);
    let a = *a as f64;
    let b = if hi == lo {
        a
    } else {
        right.iter().copied().min_by(cmp).map_or(a, |b| b as f64)
    };
    let d = b - a;
    let r = if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    };
    r as f32
}

/// The clipping range of a unit's values under a percentile calibration.
pub fn percentile_range(v: &mut [f32], p: f64, symmetric: bool) -> (f32, f32) {
    if symmetric {
        for x in v.iter_mut() {
            *x = x.abs();
        }
        let t = percentile(v, p);
        (-t, t)
    } else {
        let cut = (100.0 - p) / 2.0;
        let lo = percentile(v, cut);
        let hi = percentile(v, 100.0 - cut);
        (lo, hi)
    }
}

/// Fractions of the min/max range tried by the MSE search, largest first.
pub const MSE_GRID: usize = 81;

/// Scratch of [`sq_error`]: one L1-sized chunk of quantized and dequantized values.
const CHUNK: usize = 2048;

/// Squared reconstruction error of `v` under `d` (quantized and dequantized by the SIMD
/// kernels in L1-sized chunks; the sum is in float64, eight interleaved partial sums).
pub fn sq_error(v: &[f32], d: &Derived, rounding: Rounding, qmin: i32, qmax: i32) -> f64 {
    let mut q = vec![0u8; CHUNK.min(v.len())];
    let mut y = vec![0f32; CHUNK.min(v.len())];
    sq_error_with(v, d, rounding, qmin, qmax, &mut q, &mut y)
}

fn sq_error_with(
    v: &[f32],
    d: &Derived,
    rounding: Rounding,
    qmin: i32,
    qmax: i32,
    q: &mut [u8],
    y: &mut [f32],
) -> f64 {
    use crate::kernels::{dequantize as dq, quantize as qk};
    let p = qk::Params {
        rounding,
        factor: d.factor,
        zp: d.zp,
        qmin,
        qmax,
    };
    let mut acc = [0f64; 8];
    for xs in v.chunks(q.len().max(1)) {
        let n = xs.len();
        // Lengths match and the zero point is in range: these cannot fail.
        if qk::quantize(xs, &mut q[..n], &p).is_err()
            || dq::dequantize(&q[..n], &mut y[..n], qmin < 0, d.scale, d.zp).is_err()
        {
            return f64::INFINITY;
        }
        let (ys, xs8) = (y[..n].chunks_exact(8), xs.chunks_exact(8));
        let (yr, xr) = (ys.remainder(), xs8.remainder());
        for (a8, b8) in ys.zip(xs8) {
            for k in 0..8 {
                let r = a8[k] as f64 - b8[k] as f64;
                acc[k] += r * r;
            }
        }
        for (k, (a, b)) in yr.iter().zip(xr).enumerate() {
            let r = *a as f64 - *b as f64;
            acc[k] += r * r;
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// The range `(f * rmin, f * rmax)`, `f` in `1.00, 0.99, .., 0.20`, with the smallest squared
/// reconstruction error (the largest such `f` on ties).
pub fn mse_range(v: &[f32], rmin: f32, rmax: f32, spec: &Spec) -> (f32, f32) {
    let (qmin, qmax) = spec.qrange();
    let rounding = spec.convention.rounding();
    let candidate = |k: usize| {
        let f = 1.0 - k as f32 / 100.0;
        let (a, b) = (rmin * f, rmax * f);
        let d = derive(a, b, qmin, qmax, spec);
        (sq_error(v, &d, rounding, qmin, qmax), a, b)
    };
    // Small units (a channel, a block): one scratch for every candidate.
    let small = |_: ()| {
        let mut q = vec![0u8; CHUNK.min(v.len())];
        let mut y = vec![0f32; CHUNK.min(v.len())];
        (0..MSE_GRID)
            .map(|k| {
                let f = 1.0 - k as f32 / 100.0;
                let (a, b) = (rmin * f, rmax * f);
                let d = derive(a, b, qmin, qmax, spec);
                (
                    sq_error_with(v, &d, rounding, qmin, qmax, &mut q, &mut y),
                    a,
                    b,
                )
            })
            .collect::<Vec<_>>()
    };
    // Large units (a whole tensor) evaluate the candidates in parallel; the choice is the same.
    let errs: Vec<(f64, f32, f32)> = if v.len() >= 1 << 16 && crate::parallel::num_threads() > 1 {
        use rayon::prelude::*;
        crate::parallel::install(|| (0..MSE_GRID).into_par_iter().map(candidate).collect())
    } else {
        small(())
    };
    let mut best = (f64::INFINITY, rmin, rmax);
    for e in errs {
        if e.0 < best.0 {
            best = e;
        }
    }
    (best.1, best.2)
}
