//! Per-layer activation statistics for calibration-aware compression.
//!
//! A [`LayerStats`] accumulates, over the rows `x` (tokens) of batches of activations `X`
//! (tokens, in) fed to a layer: the token count, `X^T X` in `f64` (only its lower triangle is
//! computed and stored; `full = false` skips it), and per input channel `sum x`, `sum |x|`,
//! `sum x^2` and `max |x|`. numpy twin (`tests/reference.py::calib_stats_ref`):
//! `x64 = x.astype(np.float64); x64.T @ x64, x64.sum(0), abs(x64).sum(0), (x64**2).sum(0),
//! abs(x64).max(0)`.
//!
//! A [`StatsSet`] is the thread-safe collection behind `edgepack.CalibrationStats`: names ->
//! entries, where several names fed the same input share one entry (a *group*), a layout
//! hint per name, and a lock per entry, so updates of different layers from different threads
//! run in parallel and updates of one entry are serialised.
//!
//! Every update first validates the whole batch (width, NaN / Inf, float64 overflow) and only
//! then changes anything: a failed update records nothing.
//!
//! Order of accumulation: per channel, the vector sums add the rows of a batch in order, then
//! the batch's totals into the entry's; `X^T X` adds the batch in chunks of rows (a fixed
//! number for a given width) with faer's GEMM. A batch's contribution is therefore the same
//! bits whatever the thread that sends it; only the order in which concurrent batches of one
//! entry arrive changes roundings (floating-point addition is not associative).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Largest `in_features` whose full `X^T X` is kept (`in^2 * 8` bytes = 32 GiB).
pub const MAX_IN_FEATURES_FULL: usize = 65_536;

/// Per-channel sums above this are refused: `X^T X` entries (bounded by Cauchy-Schwarz by the
/// largest diagonal) then stay finite with room for the GEMM's roundings.
const SUM_SQ_LIMIT: f64 = f64::MAX / 4.0;

/// Which dimension of the layer's weight the activations multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// PyTorch `(out, in)` weights (and ONNX Gemm with `transB=1`).
    OutIn,
    /// Keras / ONNX MatMul `(in, out)` weights.
    InOut,
}

impl Layout {
    /// Parse `"out_in"` / `"in_out"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "out_in" => Ok(Layout::OutIn),
            "in_out" => Ok(Layout::InOut),
            _ => Err(Error::arg(format!(
                "`layout` must be 'out_in' or 'in_out', found '{s}'"
            ))),
        }
    }
    /// `"out_in"` / `"in_out"`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::OutIn => "out_in",
            Layout::InOut => "in_out",
        }
    }
}

/// An activation element type the statistics accept (float16 / bfloat16 are widened to
/// float32 by the Python layer, exactly).
pub trait Elem: Copy + Send + Sync + 'static {
    /// The value in float64 (exact).
    fn to_f64(self) -> f64;
    /// `self` if `Self` is `f64` (the GEMM then reads the batch in place).
    fn as_f64_slice(x: &[Self]) -> Option<&[f64]>;
    /// The value for an error message.
    fn to_f32(self) -> f32;
}

impl Elem for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn as_f64_slice(_: &[Self]) -> Option<&[f64]> {
        None
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Elem for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    fn as_f64_slice(x: &[Self]) -> Option<&[f64]> {
        Some(x)
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
}

/// A batch of activations: `rows` tokens of `cols` features, row-major.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// float32 activations.
    F32(&'a [f32]),
    /// float64 activations.
    F64(&'a [f64]),
}

impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Rows::F32(x) => x.len(),
            Rows::F64(x) => x.len(),
        }
    }
}

/// The per-channel vectors of one batch or of an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSums {
    /// `sum x` per input channel.
    pub sum: Vec<f64>,
    /// `sum |x|`.
    pub sum_abs: Vec<f64>,
    /// `sum x^2`.
    pub sum_sq: Vec<f64>,
    /// `max |x|` (0 before any token).
    pub max_abs: Vec<f64>,
}

impl ChannelSums {
    fn zeros(n: usize) -> Result<Self> {
        Ok(ChannelSums {
            sum: zeroed(n)?,
            sum_abs: zeroed(n)?,
            sum_sq: zeroed(n)?,
            max_abs: zeroed(n)?,
        })
    }

    fn add(&mut self, o: &ChannelSums) {
        for (a, b) in self.sum.iter_mut().zip(&o.sum) {
            *a += b;
        }
        for (a, b) in self.sum_abs.iter_mut().zip(&o.sum_abs) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&o.sum_sq) {
            *a += b;
        }
        for (a, b) in self.max_abs.iter_mut().zip(&o.max_abs) {
            *a = a.max(*b);
        }
    }
}

/// A zero-filled vector, or [`Error::Limit`] if it cannot be allocated.
fn zeroed(n: usize) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::limit(format!(
            "cannot allocate {n} float64 values for calibration statistics"
        ))
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// The faer parallelism of the kernel pool.
fn par() -> Par {
    match crate::parallel::num_threads() {
        0 | 1 => Par::Seq,
        n => Par::rayon(n),
    }
}

/// The sums of columns `c0 .. c0 + sum.len()` of `x` (rows of `cols`) added into the four
/// accumulator rows. Each column adds its rows in order (four rows per pass, so each
/// accumulator is loaded and stored once per four rows): the same bits at every vector width,
/// since Rust never contracts `a * b + c` into an FMA. numpy twin: `x[:, c0:c1]` summed by
/// `calib_stats_ref`.
#[inline]
fn sums_body<T: Elem>(x: &[T], rows: usize, cols: usize, c0: usize, acc: [&mut [f64]; 4]) {
    let [sum, sum_abs, sum_sq, max_abs] = acc;
    let w = sum.len();
    let (sum_abs, sum_sq, max_abs) = (&mut sum_abs[..w], &mut sum_sq[..w], &mut max_abs[..w]);
    #[inline(always)]
    fn add(v: f64, s: &mut f64, a: &mut f64, q: &mut f64, m: &mut f64) {
        let av = v.abs();
        *s += v;
        *a += av;
        *q += v * v;
        // NaN never wins (it is caught through `sum |x|`); compiles to `maxpd`.
        *m = if av > *m { av } else { *m };
    }
    let row = |r: usize| &x[r * cols + c0..r * cols + c0 + w];
    let mut r = 0;
    while r + 4 <= rows {
        let (r0, r1, r2, r3) = (row(r), row(r + 1), row(r + 2), row(r + 3));
        for i in 0..w {
            let (mut s, mut a, mut q, mut m) = (sum[i], sum_abs[i], sum_sq[i], max_abs[i]);
            for v in [r0[i], r1[i], r2[i], r3[i]] {
                add(v.to_f64(), &mut s, &mut a, &mut q, &mut m);
            }
            (sum[i], sum_abs[i], sum_sq[i], max_abs[i]) = (s, a, q, m);
        }
        r += 4;
    }
    while r < rows {
        let r0 = row(r);
        for i in 0..w {
            let (s, a, q, m) = (
                &mut sum[i],
                &mut sum_abs[i],
                &mut sum_sq[i],
                &mut max_abs[i],
            );
            add(r0[i].to_f64(), s, a, q, m);
        }
        r += 1;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
fn sums_avx512<T: Elem>(x: &[T], rows: usize, cols: usize, c0: usize, acc: [&mut [f64]; 4]) {
    sums_body(x, rows, cols, c0, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sums_avx2<T: Elem>(x: &[T], rows: usize, cols: usize, c0: usize, acc: [&mut [f64]; 4]) {
    sums_body(x, rows, cols, c0, acc)
}

/// [`sums_body`] at the ISA level `isa` (the same bits at every level).
fn sums_at<T: Elem>(
    isa: crate::kernels::isa::Isa,
    x: &[T],
    rows: usize,
    cols: usize,
    c0: usize,
    acc: [&mut [f64]; 4],
) {
    use crate::kernels::isa::{self, Vector};
    match isa::kernels(isa).channel_sums {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX-512 F/VL, AVX2 and FMA (`kernels` checked).
        Vector::Avx512 => unsafe { sums_avx512(x, rows, cols, c0, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX2 and FMA (`kernels` checked).
        Vector::Avx2 => unsafe { sums_avx2(x, rows, cols, c0, acc) },
        Vector::Scalar => sums_body(x, rows, cols, c0, acc),
    }
}

/// Per-channel sums of a batch (rows in order per channel, so the result does not depend on
/// the thread count or the ISA). Columns are split in blocks over the kernel pool.
fn channel_sums<T: Elem>(x: &[T], rows: usize, cols: usize) -> Result<ChannelSums> {
    channel_sums_at(crate::kernels::isa::active(), x, rows, cols)
}

/// The four accumulator blocks of one column block, as the zipped chunk iterators give them.
type Acc<'a> = (
    ((&'a mut [f64], &'a mut [f64]), &'a mut [f64]),
    &'a mut [f64],
);

fn channel_sums_at<T: Elem>(
    isa: crate::kernels::isa::Isa,
    x: &[T],
    rows: usize,
    cols: usize,
) -> Result<ChannelSums> {
    let mut s = ChannelSums::zeros(cols)?;
    let threads = crate::parallel::num_threads().max(1);
    // Blocks of whole cache lines, 64 to 256 columns (the four accumulator rows, 8 KiB at
    // most, stay in L1), about two per thread when that allows.
    let block = cols
        .div_ceil(threads * 2)
        .next_multiple_of(16)
        .clamp(64, 256);
    let work = |(bi, (((sum, sum_abs), sum_sq), max_abs)): (usize, Acc<'_>)| {
        sums_at(
            isa,
            x,
            rows,
            cols,
            bi * block,
            [sum, sum_abs, sum_sq, max_abs],
        )
    };
    let ChannelSums {
        sum,
        sum_abs,
        sum_sq,
        max_abs,
    } = &mut s;
    if cols <= block || rows * cols < 1 << 16 {
        sum.chunks_mut(block)
            .zip(sum_abs.chunks_mut(block))
            .zip(sum_sq.chunks_mut(block))
            .zip(max_abs.chunks_mut(block))
            .enumerate()
            .for_each(work);
    } else {
        crate::parallel::install(|| {
            sum.par_chunks_mut(block)
                .zip(sum_abs.par_chunks_mut(block))
                .zip(sum_sq.par_chunks_mut(block))
                .zip(max_abs.par_chunks_mut(block))
                .enumerate()
                .for_each(work)
        });
    }
    Ok(s)
}

/// Rows of `x` converted per GEMM call: up to 64 MiB of float64, 256 to 4096 rows. Each
/// call reads and writes the lower triangle of `X^T X` once (64 MiB at 4096 features), so
/// long calls keep that traffic small next to the arithmetic.
fn chunk_rows(cols: usize) -> usize {
    ((1usize << 23) / cols.max(1)).clamp(256, 4096)
}

/// `xtx[lower] += X^T X` for `X` (rows, cols) row-major; `xtx` is (cols, cols) column-major,
/// of which only the lower triangle (diagonal included) is read or written.
fn add_xtx<T: Elem>(xtx: &mut [f64], x: &[T], rows: usize, cols: usize) -> Result<()> {
    let par = par();
    let gemm = |xtx: &mut [f64], a: &[f64], k: usize| {
        // Row-major (k, cols) rows == column-major `A` (cols, k); X^T X = A A^T.
        let a = MatRef::from_column_major_slice(a, cols, k);
        let dst = MatMut::from_column_major_slice_mut(xtx, cols, cols);
        crate::parallel::install(|| {
            matmul(
                dst,
                BlockStructure::TriangularLower,
                Accum::Add,
                a,
                BlockStructure::Rectangular,
                a.transpose(),
                BlockStructure::Rectangular,
                1.0,
                par,
            )
        });
    };
    if let Some(x64) = T::as_f64_slice(x) {
        gemm(xtx, x64, rows);
        return Ok(());
    }
    let step = chunk_rows(cols).min(rows);
    let mut buf = zeroed(step * cols)?;
    let mut r0 = 0;
    while r0 < rows {
        let k = step.min(rows - r0);
        let src = &x[r0 * cols..(r0 + k) * cols];
        let dst = &mut buf[..k * cols];
        if k * cols >= 1 << 16 {
            crate::parallel::install(|| {
                dst.par_chunks_mut(1 << 14)
                    .zip(src.par_chunks(1 << 14))
                    .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d = s.to_f64()))
            });
        } else {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d = s.to_f64());
        }
        gemm(xtx, dst, k);
        r0 += k;
    }
    Ok(())
}

/// The first non-finite element of `x`, as the error naming `what`.
fn non_finite<T: Elem>(x: &[T], what: &str) -> Option<Error> {
    x.iter()
        .position(|v| !v.to_f64().is_finite())
        .map(|index| Error::NonFinite {
            what: what.to_string(),
            index,
            value: x[index].to_f32(),
        })
}

/// A batch validated and reduced to its per-channel sums (nothing recorded yet).
struct Batch<'a> {
    x: Rows<'a>,
    rows: usize,
    sums: ChannelSums,
}

impl<'a> Batch<'a> {
    /// Check `x` (`rows * cols` values, finite, no float64 overflow) and sum its channels.
    fn new(x: Rows<'a>, rows: usize, cols: usize, what: &str) -> Result<Self> {
        if cols == 0 {
            return Err(Error::arg(format!("{what} has no input features")));
        }
        if rows == 0 {
            return Err(Error::arg(format!(
                "{what} has no rows (tokens): nothing to record"
            )));
        }
        let n = rows
            .checked_mul(cols)
            .ok_or_else(|| Error::limit(format!("{what}: {rows} x {cols} is too large")))?;
        if x.len() != n {
            return Err(Error::arg(format!(
                "{what} has {} values, expected {rows} x {cols} = {n}",
                x.len()
            )));
        }
        let sums = match x {
            Rows::F32(v) => channel_sums(v, rows, cols)?,
            Rows::F64(v) => channel_sums(v, rows, cols)?,
        };
        // NaN and Inf propagate into `sum |x|`; a finite float64 input can still overflow.
        if let Some(c) = sums.sum_abs.iter().position(|v| !v.is_finite()) {
            let e = match x {
                Rows::F32(v) => non_finite(v, what),
                Rows::F64(v) => non_finite(v, what),
            };
            return Err(e.unwrap_or_else(|| {
                Error::limit(format!(
                    "{what}: the sum of |x| of input channel {c} overflows float64"
                ))
            }));
        }
        check_sum_sq(&sums.sum_sq, what)?;
        Ok(Batch { x, rows, sums })
    }
}

fn check_sum_sq(sum_sq: &[f64], what: &str) -> Result<()> {
    match sum_sq.iter().position(|v| v.is_nan() || *v > SUM_SQ_LIMIT) {
        Some(c) => Err(Error::limit(format!(
            "{what}: the sum of x^2 of input channel {c} exceeds float64's range \
             (activations too large for X^T X)"
        ))),
        None => Ok(()),
    }
}

/// Accumulated statistics of one layer input (one entry).
#[derive(Debug, Clone)]
pub struct LayerStats {
    in_features: usize,
    count: u64,
    sums: ChannelSums,
    /// `X^T X`, (in, in) column-major, lower triangle valid (the rest stays 0); `None` when
    /// not full.
    xtx: Option<Vec<f64>>,
}

impl LayerStats {
    /// Empty statistics of a layer with `in_features` inputs.
    pub fn new(in_features: usize, full: bool) -> Result<Self> {
        if in_features == 0 {
            return Err(Error::arg("`in_features` must be >= 1, found 0"));
        }
        let xtx = if full {
            if in_features > MAX_IN_FEATURES_FULL {
                return Err(Error::limit(format!(
                    "full statistics of {in_features} input features need a {in_features} x \
                     {in_features} float64 matrix; the limit is {MAX_IN_FEATURES_FULL} (use \
                     full=False)"
                )));
            }
            Some(zeroed(in_features * in_features)?)
        } else {
            None
        };
        Ok(LayerStats {
            in_features,
            count: 0,
            sums: ChannelSums::zeros(in_features)?,
            xtx,
        })
    }

    /// Add a batch of `rows` tokens (`x` row-major, `rows * in_features` values). `what`
    /// names the layer in errors. On error nothing is recorded.
    pub fn update(&mut self, x: Rows<'_>, rows: usize, what: &str) -> Result<()> {
        let b = Batch::new(x, rows, self.in_features, what)?;
        self.commit(b, what)
    }

    fn commit(&mut self, b: Batch<'_>, what: &str) -> Result<()> {
        let total: Vec<f64> = self
            .sums
            .sum_sq
            .iter()
            .zip(&b.sums.sum_sq)
            .map(|(a, c)| a + c)
            .collect();
        check_sum_sq(&total, what)?;
        let count = self
            .count
            .checked_add(b.rows as u64)
            .ok_or_else(|| Error::limit(format!("{what}: token count overflows")))?;
        if let Some(xtx) = self.xtx.as_mut() {
            match b.x {
                Rows::F32(v) => add_xtx(xtx, v, b.rows, self.in_features)?,
                Rows::F64(v) => add_xtx(xtx, v, b.rows, self.in_features)?,
            }
        }
        self.sums.add(&b.sums);
        self.count = count;
        Ok(())
    }

    /// Add another entry's statistics (same width and kind).
    pub fn merge(&mut self, o: &LayerStats, what: &str) -> Result<()> {
        if o.in_features != self.in_features {
            return Err(Error::arg(format!(
                "{what} has {} input features here and {} in the statistics merged in",
                self.in_features, o.in_features
            )));
        }
        if o.xtx.is_some() != self.xtx.is_some() {
            return Err(Error::arg(format!(
                "{what}: cannot merge statistics with full={} into full={}",
                o.xtx.is_some(),
                self.xtx.is_some()
            )));
        }
        let total: Vec<f64> = self
            .sums
            .sum_sq
            .iter()
            .zip(&o.sums.sum_sq)
            .map(|(a, c)| a + c)
            .collect();
        check_sum_sq(&total, what)?;
        let count = self
            .count
            .checked_add(o.count)
            .ok_or_else(|| Error::limit(format!("{what}: token count overflows")))?;
        if let (Some(a), Some(b)) = (self.xtx.as_mut(), o.xtx.as_ref()) {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
        self.sums.add(&o.sums);
        self.count = count;
        Ok(())
    }

    /// Number of input features.
    pub fn in_features(&self) -> usize {
        self.in_features
    }
    /// Tokens recorded.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Whether `X^T X` is kept.
    pub fn full(&self) -> bool {
        self.xtx.is_some()
    }
    /// The raw per-channel sums.
    pub fn sums(&self) -> &ChannelSums {
        &self.sums
    }

    /// `H = X^T X / count`, (in, in) row-major, both triangles.
    pub fn hessian(&self, what: &str) -> Result<Vec<f64>> {
        let Some(xtx) = self.xtx.as_ref() else {
            return Err(Error::arg(format!(
                "{what} has only per-channel statistics (collected with full=False): no X^T X"
            )));
        };
        let n = self.in_features;
        let count = self.count as f64;
        let mut out = zeroed(n * n)?;
        const B: usize = 16;
        let fill = |(bi, chunk): (usize, &mut [f64])| {
            let i0 = bi * B;
            let r = chunk.len() / n;
            for j in 0..n {
                for t in 0..r {
                    let i = i0 + t;
                    // Lower (i >= j) of the column-major store: xtx[j * n + i].
                    let v = if i >= j {
                        xtx[j * n + i]
                    } else {
                        xtx[i * n + j]
                    };
                    chunk[t * n + j] = v / count;
                }
            }
        };
        if n >= 256 {
            crate::parallel::install(|| out.par_chunks_mut(n * B).enumerate().for_each(fill));
        } else {
            out.chunks_mut(n * B).enumerate().for_each(fill);
        }
        Ok(out)
    }

    /// The upper triangle of `X^T X` in row-major order (numpy `S[np.triu_indices(n)]`),
    /// `n (n + 1) / 2` values; `None` when not full.
    pub fn xtx_packed(&self) -> Option<Vec<f64>> {
        let xtx = self.xtx.as_ref()?;
        let n = self.in_features;
        let mut out = Vec::with_capacity(n * (n + 1) / 2);
        for i in 0..n {
            // Row i of the upper triangle == column i of the lower one (contiguous).
            out.extend_from_slice(&xtx[i * n + i..i * n + n]);
        }
        Some(out)
    }

    /// Rebuild statistics from their raw parts (e.g. read from a file), checking that they
    /// are consistent: `count >= 1`, finite, `sum |x| >= max |x| >= 0`, `sum x^2 >=
    /// max |x|^2`, `|sum x| <= sum |x|`, and (full) `diag(X^T X)` equal to `sum x^2` up to
    /// roundings with every `|X^T X|_ij <= sqrt(X^T X_ii X^T X_jj)` (Cauchy-Schwarz).
    /// Errors are [`Error::Format`] naming `what` and the field.
    pub fn from_parts(
        count: u64,
        sums: ChannelSums,
        xtx_packed: Option<&[f64]>,
        what: &str,
    ) -> Result<Self> {
        let n = sums.sum.len();
        let bad = |field: &str, msg: String| Error::format(format!("{what}: `{field}` {msg}"));
        if n == 0 {
            return Err(bad("sum", "is empty".into()));
        }
        for (field, v) in [
            ("sum_abs", &sums.sum_abs),
            ("sum_sq", &sums.sum_sq),
            ("max_abs", &sums.max_abs),
        ] {
            if v.len() != n {
                return Err(bad(
                    field,
                    format!("has {} values, expected {n} (as `sum`)", v.len()),
                ));
            }
        }
        if count == 0 {
            return Err(bad("count", "is 0, expected >= 1".into()));
        }
        for (field, v) in [
            ("sum", &sums.sum),
            ("sum_abs", &sums.sum_abs),
            ("sum_sq", &sums.sum_sq),
            ("max_abs", &sums.max_abs),
        ] {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(field, format!("holds {} at index {i}", v[i])));
            }
        }
        for c in 0..n {
            let (s, a, q, m) = (
                sums.sum[c],
                sums.sum_abs[c],
                sums.sum_sq[c],
                sums.max_abs[c],
            );
            if !(m >= 0.0 && a >= m) {
                return Err(bad(
                    "max_abs",
                    format!("[{c}] = {m} is not within [0, sum_abs = {a}]"),
                ));
            }
            if q < m * m {
                return Err(bad(
                    "sum_sq",
                    format!("[{c}] = {q} is below max_abs^2 = {}", m * m),
                ));
            }
            if s.abs() > a * (1.0 + 1e-9) {
                return Err(bad("sum", format!("[{c}] = {s} exceeds sum_abs = {a}")));
            }
        }
        check_sum_sq(&sums.sum_sq, what).map_err(|e| Error::format(e.to_string()))?;
        let xtx = match xtx_packed {
            None => None,
            Some(p) => {
                if n > MAX_IN_FEATURES_FULL {
                    return Err(bad(
                        "xtx",
                        format!("is for {n} input features, beyond {MAX_IN_FEATURES_FULL}"),
                    ));
                }
                let want = n * (n + 1) / 2;
                if p.len() != want {
                    return Err(bad(
                        "xtx",
                        format!("has {} values, expected n (n + 1) / 2 = {want}", p.len()),
                    ));
                }
                if let Some(i) = p.iter().position(|x| !x.is_finite()) {
                    return Err(bad("xtx", format!("holds {} at index {i}", p[i])));
                }
                let mut xtx = zeroed(n * n)?;
                let mut off = 0;
                let mut diag = Vec::with_capacity(n);
                for i in 0..n {
                    xtx[i * n + i..i * n + n].copy_from_slice(&p[off..off + n - i]);
                    diag.push(p[off]);
                    off += n - i;
                }
                for (c, (&d, &q)) in diag.iter().zip(&sums.sum_sq).enumerate() {
                    // Same terms, summed in another order: agree to a few ulps per token.
                    if (d - q).abs() > 1e-6 * q.max(d) + f64::MIN_POSITIVE {
                        return Err(bad(
                            "xtx",
                            format!("diagonal [{c}] = {d} differs from sum_sq = {q}"),
                        ));
                    }
                }
                for j in 0..n {
                    let col = &xtx[j * n..j * n + n];
                    for i in j + 1..n {
                        let bound = (diag[i] * diag[j]).sqrt() * (1.0 + 1e-6);
                        if col[i].abs() > bound {
                            return Err(bad(
                                "xtx",
                                format!(
                                    "[{j}, {i}] = {} exceeds sqrt(xtx[{i},{i}] xtx[{j},{j}]) = \
                                     {bound} (not a Gram matrix)",
                                    col[i]
                                ),
                            ));
                        }
                    }
                }
                Some(xtx)
            }
        };
        Ok(LayerStats {
            in_features: n,
            count,
            sums,
            xtx,
        })
    }
}

/// One entry of a [`StatsSet`]: the names sharing it and their statistics.
#[derive(Debug)]
struct Entry {
    /// Sorted.
    names: Vec<String>,
    in_features: usize,
    stats: Mutex<LayerStats>,
}

#[derive(Debug, Clone)]
struct Slot {
    entry: Arc<Entry>,
    layout: Layout,
}

/// What a saved entry holds (see [`StatsSet::parts`] / [`StatsSet::insert_parts`]).
#[derive(Debug, Clone)]
pub struct EntryParts {
    /// Sorted names of the group.
    pub names: Vec<String>,
    /// One per name.
    pub layouts: Vec<Layout>,
    /// Tokens recorded.
    pub count: u64,
    /// Raw per-channel sums.
    pub sums: ChannelSums,
    /// Upper triangle of `X^T X`, row-major (`None` when not full).
    pub xtx_packed: Option<Vec<f64>>,
}

/// Names -> shared entries, thread-safe (a lock per entry).
#[derive(Debug)]
pub struct StatsSet {
    full: bool,
    map: RwLock<BTreeMap<String, Slot>>,
}

fn describe(names: &[String]) -> String {
    match names {
        [one] => format!("layer '{one}'"),
        _ => format!(
            "layers [{}]",
            names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StatsSet {
    /// An empty set; `full = false` keeps only the per-channel vectors.
    pub fn new(full: bool) -> Self {
        StatsSet {
            full,
            map: RwLock::new(BTreeMap::new()),
        }
    }

    /// Whether `X^T X` is kept.
    pub fn full(&self) -> bool {
        self.full
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Slot>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Slot>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry every name of `names` belongs to (`None`: none is recorded), or an error if
    /// they are recorded in another grouping.
    fn existing(
        map: &BTreeMap<String, Slot>,
        names: &[String],
        layouts: Option<&[Layout]>,
    ) -> Result<Option<Arc<Entry>>> {
        let found: Vec<Option<&Slot>> = names.iter().map(|n| map.get(n)).collect();
        let Some(first) = found.iter().flatten().next() else {
            return Ok(None);
        };
        let entry = &first.entry;
        let mut sorted = names.to_vec();
        sorted.sort();
        for (name, slot) in names.iter().zip(&found) {
            match slot {
                None => {
                    return Err(Error::arg(format!(
                        "layer '{name}' is new but {} already shares an input with {}: \
                         update a group with exactly the names it was first recorded with",
                        describe(&entry.names[..1]),
                        describe(&entry.names)
                    )))
                }
                Some(s) if !Arc::ptr_eq(&s.entry, entry) || entry.names != sorted => {
                    return Err(Error::arg(format!(
                        "layer '{name}' is already recorded in the group {} (sharing one \
                         input); update it with exactly those names, found {}",
                        describe(&s.entry.names),
                        describe(names)
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some(ls) = layouts {
            for ((name, slot), l) in names.iter().zip(&found).zip(ls) {
                let have = slot.map(|s| s.layout).unwrap_or(*l);
                if have != *l {
                    return Err(Error::arg(format!(
                        "layer '{name}' was recorded with layout '{}', found '{}'",
                        have.name(),
                        l.name()
                    )));
                }
            }
        }
        Ok(Some(Arc::clone(entry)))
    }

    fn check_names(names: &[String], layouts: Option<&[Layout]>) -> Result<()> {
        if names.is_empty() {
            return Err(Error::arg(
                "`name` must be a layer name or a non-empty list",
            ));
        }
        if let Some(n) = names.iter().find(|n| n.is_empty()) {
            return Err(Error::arg(format!(
                "layer names must be non-empty, found '{n}'"
            )));
        }
        let mut s = names.to_vec();
        s.sort();
        if let Some(w) = s.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::arg(format!(
                "layer '{}' appears twice in `name`",
                w[0]
            )));
        }
        if let Some(ls) = layouts {
            if ls.len() != names.len() {
                return Err(Error::arg(format!(
                    "`layout` has {} values for {} names",
                    ls.len(),
                    names.len()
                )));
            }
        }
        Ok(())
    }

    /// Record a batch `x` (`rows` x `cols`, row-major) fed to every layer of `names` (one
    /// shared entry). `layouts` (one per name, default out_in) are stored for new names and
    /// must match for recorded ones. On error nothing is recorded.
    pub fn update(
        &self,
        names: &[String],
        layouts: Option<&[Layout]>,
        x: Rows<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        Self::check_names(names, layouts)?;
        let what = format!("`x` for {}", describe(names));
        let entry = Self::existing(&self.read(), names, layouts)?;
        if let Some(e) = &entry {
            if e.in_features != cols {
                return Err(Error::arg(format!(
                    "{} has {} input features, `x` has {cols} (its last dimension)",
                    describe(&e.names),
                    e.in_features
                )));
            }
        }
        let batch = Batch::new(x, rows, cols, &what)?;
        if let Some(e) = entry {
            return lock(&e.stats).commit(batch, &what);
        }
        // New names: build the entry outside any lock, then publish it (or, if another
        // thread published these names meanwhile, add into theirs).
        let mut st = LayerStats::new(cols, self.full)?;
        st.commit(batch, &what)?;
        self.publish(names, layouts, st, &what)
    }

    fn publish(
        &self,
        names: &[String],
        layouts: Option<&[Layout]>,
        st: LayerStats,
        what: &str,
    ) -> Result<()> {
        let mut map = self.write();
        if let Some(e) = Self::existing(&map, names, layouts)? {
            drop(map);
            return lock(&e.stats).merge(&st, what);
        }
        let mut sorted = names.to_vec();
        sorted.sort();
        let entry = Arc::new(Entry {
            names: sorted,
            in_features: st.in_features,
            stats: Mutex::new(st),
        });
        for (i, n) in names.iter().enumerate() {
            let layout = layouts.map_or(Layout::OutIn, |l| l[i]);
            map.insert(
                n.clone(),
                Slot {
                    entry: Arc::clone(&entry),
                    layout,
                },
            );
        }
        Ok(())
    }

    fn slot(&self, name: &str) -> Result<Slot> {
        self.read().get(name).cloned().ok_or_else(|| {
            Error::arg(format!(
                "no calibration statistics for layer '{name}' (update it first)"
            ))
        })
    }

    /// Every recorded name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }
    /// Number of names.
    pub fn len(&self) -> usize {
        self.read().len()
    }
    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
    /// Whether `name` is recorded.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }
    /// The groups (sorted names per entry), ordered by their first name.
    pub fn groups(&self) -> Vec<Vec<String>> {
        let map = self.read();
        map.iter()
            .filter(|(n, s)| s.entry.names[0] == **n)
            .map(|(_, s)| s.entry.names.clone())
            .collect()
    }
    /// The names sharing `name`'s entry (sorted, `name` included).
    pub fn group(&self, name: &str) -> Result<Vec<String>> {
        Ok(self.slot(name)?.entry.names.clone())
    }
    /// The layout hint of `name`.
    pub fn layout(&self, name: &str) -> Result<Layout> {
        Ok(self.slot(name)?.layout)
    }
    /// Input features of `name`.
    pub fn in_features(&self, name: &str) -> Result<usize> {
        Ok(self.slot(name)?.entry.in_features)
    }

    /// Run `f` on `name`'s statistics (under its entry's lock).
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&LayerStats) -> Result<R>) -> Result<R> {
        let s = self.slot(name)?;
        let g = lock(&s.entry.stats);
        f(&g)
    }

    /// Tokens recorded for `name`.
    pub fn count(&self, name: &str) -> Result<u64> {
        self.with(name, |s| Ok(s.count()))
    }

    /// `X^T X / count` of `name`, (in, in) row-major.
    pub fn hessian(&self, name: &str) -> Result<Vec<f64>> {
        self.with(name, |s| s.hessian(&format!("layer '{name}'")))
    }

    /// `(mean, mean_abs, mean_sq, max_abs)` per input channel of `name`.
    pub fn channel_stats(&self, name: &str) -> Result<ChannelSums> {
        self.with(name, |s| {
            let c = s.count as f64;
            let div = |v: &[f64]| v.iter().map(|x| x / c).collect::<Vec<_>>();
            Ok(ChannelSums {
                sum: div(&s.sums.sum),
                sum_abs: div(&s.sums.sum_abs),
                sum_sq: div(&s.sums.sum_sq),
                max_abs: s.sums.max_abs.clone(),
            })
        })
    }

    /// The raw parts of `name`'s entry (for saving).
    pub fn parts(&self, name: &str) -> Result<EntryParts> {
        let slot = self.slot(name)?;
        let layouts = {
            let map = self.read();
            slot.entry
                .names
                .iter()
                .map(|n| map.get(n).map_or(Layout::OutIn, |s| s.layout))
                .collect()
        };
        let g = lock(&slot.entry.stats);
        Ok(EntryParts {
            names: slot.entry.names.clone(),
            layouts,
            count: g.count,
            sums: g.sums.clone(),
            xtx_packed: g.xtx_packed(),
        })
    }

    /// Add an entry from its raw parts (validated, see [`LayerStats::from_parts`]; errors are
    /// [`Error::Format`]). Its names must all be new.
    pub fn insert_parts(&self, p: EntryParts) -> Result<()> {
        let what = describe(&p.names);
        Self::check_names(&p.names, Some(&p.layouts))
            .map_err(|e| Error::format(format!("{what}: {e}")))?;
        if p.xtx_packed.is_some() != self.full {
            return Err(Error::format(format!(
                "{what}: `xtx` is {} but the statistics are full={}",
                if p.xtx_packed.is_some() {
                    "present"
                } else {
                    "missing"
                },
                self.full
            )));
        }
        let st = LayerStats::from_parts(p.count, p.sums, p.xtx_packed.as_deref(), &what)?;
        let mut map = self.write();
        if let Some(n) = p.names.iter().find(|n| map.contains_key(*n)) {
            return Err(Error::format(format!(
                "layer '{n}' appears in more than one entry"
            )));
        }
        let mut names = p.names.clone();
        names.sort();
        let entry = Arc::new(Entry {
            names,
            in_features: st.in_features,
            stats: Mutex::new(st),
        });
        for (n, l) in p.names.iter().zip(&p.layouts) {
            map.insert(
                n.clone(),
                Slot {
                    entry: Arc::clone(&entry),
                    layout: *l,
                },
            );
        }
        Ok(())
    }

    /// Add every entry of `other` (same `full`): entries with new names are copied, entries
    /// with the same group, width and layouts are summed; anything else is an error and
    /// nothing is changed.
    pub fn merge(&self, other: &StatsSet) -> Result<()> {
        if other.full != self.full {
            return Err(Error::arg(format!(
                "cannot merge statistics with full={} into full={}",
                other.full, self.full
            )));
        }
        // A snapshot of `other` first: no two maps are ever locked at once.
        let snap: Vec<(Vec<String>, Vec<Layout>, LayerStats)> = other
            .groups()
            .into_iter()
            .map(|g| -> Result<_> {
                let p = other.slot(&g[0])?;
                let layouts = g
                    .iter()
                    .map(|n| other.layout(n))
                    .collect::<Result<Vec<_>>>()?;
                let st = lock(&p.entry.stats).clone();
                Ok((g, layouts, st))
            })
            .collect::<Result<_>>()?;
        let mut map = self.write();
        let mut targets = Vec::with_capacity(snap.len());
        for (names, layouts, st) in &snap {
            let e = Self::existing(&map, names, Some(layouts))?;
            if let Some(e) = &e {
                if e.in_features != st.in_features {
                    return Err(Error::arg(format!(
                        "{} has {} input features here, {} in the statistics merged in",
                        describe(names),
                        e.in_features,
                        st.in_features
                    )));
                }
                let total_ok = lock(&e.stats)
                    .sums
                    .sum_sq
                    .iter()
                    .zip(&st.sums.sum_sq)
                    .all(|(a, b)| a + b <= SUM_SQ_LIMIT);
                if !total_ok {
                    return Err(Error::limit(format!(
                        "{}: merged sums of x^2 exceed float64's range",
                        describe(names)
                    )));
                }
            }
            targets.push(e);
        }
        for ((names, layouts, st), target) in snap.into_iter().zip(targets) {
            let what = describe(&names);
            match target {
                Some(e) => lock(&e.stats).merge(&st, &what)?,
                None => {
                    let entry = Arc::new(Entry {
                        names: names.clone(),
                        in_features: st.in_features,
                        stats: Mutex::new(st),
                    });
                    for (n, l) in names.iter().zip(layouts) {
                        map.insert(
                            n.clone(),
                            Slot {
                                entry: Arc::clone(&entry),
                                layout: l,
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random batch (xorshift), values in about [-4, 4).
    fn batch(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..rows * cols)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0) as f32
            })
            .collect()
    }

    /// Plain triple-loop oracle of X^T X (full, row-major).
    fn xtx_ref(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
        let mut out = vec![0.0; cols * cols];
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            for i in 0..cols {
                for j in 0..cols {
                    out[i * cols + j] += row[i] as f64 * row[j] as f64;
                }
            }
        }
        out
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "index {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn update_matches_the_oracle_for_odd_shapes() {
        for (rows, cols) in [(1usize, 1usize), (3, 5), (300, 17), (2100, 70), (513, 300)] {
            let x = batch(rows, cols, rows as u64 * 31 + cols as u64);
            let mut s = LayerStats::new(cols, true).unwrap();
            s.update(Rows::F32(&x), rows, "`x`").unwrap();
            assert_eq!(s.count(), rows as u64);
            let h = s.hessian("l").unwrap();
            let r: Vec<f64> = xtx_ref(&x, rows, cols)
                .iter()
                .map(|v| v / rows as f64)
                .collect();
            close(&h, &r, 1e-12);
            // Symmetric to the bit.
            for i in 0..cols {
                for j in 0..cols {
                    assert_eq!(h[i * cols + j], h[j * cols + i]);
                }
            }
            for c in 0..cols {
                let col: Vec<f64> = (0..rows).map(|r| x[r * cols + c] as f64).collect();
                let sum: f64 = col.iter().sum();
                let sq: f64 = col.iter().map(|v| v * v).sum();
                let mx = col.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let sm = s.sums();
                assert!((sm.sum[c] - sum).abs() <= 1e-9 * (1.0 + sum.abs()));
                assert!((sm.sum_sq[c] - sq).abs() <= 1e-9 * sq);
                assert_eq!(sm.max_abs[c], mx);
            }
        }
    }

    #[test]
    fn batches_add_up_and_f64_input_agrees() {
        let (rows, cols) = (900, 40);
        let x = batch(rows, cols, 7);
        let mut one = LayerStats::new(cols, true).unwrap();
        one.update(Rows::F32(&x), rows, "x").unwrap();
        let mut parts = LayerStats::new(cols, true).unwrap();
        for (a, b) in [(0, 1), (1, 400), (400, 900)] {
            parts
                .update(Rows::F32(&x[a * cols..b * cols]), b - a, "x")
                .unwrap();
        }
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let mut wide = LayerStats::new(cols, true).unwrap();
        wide.update(Rows::F64(&x64), rows, "x").unwrap();
        close(
            &one.hessian("l").unwrap(),
            &parts.hessian("l").unwrap(),
            1e-13,
        );
        close(
            &one.hessian("l").unwrap(),
            &wide.hessian("l").unwrap(),
            1e-13,
        );
        // Merging is the same as updating with both batches.
        let mut m = LayerStats::new(cols, true).unwrap();
        m.update(Rows::F32(&x[..400 * cols]), 400, "x").unwrap();
        let mut m2 = LayerStats::new(cols, true).unwrap();
        m2.update(Rows::F32(&x[400 * cols..]), 500, "x").unwrap();
        m.merge(&m2, "x").unwrap();
        assert_eq!(m.count(), 900);
        close(&one.hessian("l").unwrap(), &m.hessian("l").unwrap(), 1e-13);
    }

    #[test]
    fn non_finite_and_bad_shapes_record_nothing() {
        let cols = 8;
        let mut x = batch(10, cols, 3);
        let mut s = LayerStats::new(cols, true).unwrap();
        s.update(Rows::F32(&x), 10, "x").unwrap();
        let before = s.clone();
        x[37] = f32::NAN;
        x[50] = f32::INFINITY;
        let e = s
            .update(Rows::F32(&x), 10, "`x` for layer 'fc'")
            .unwrap_err();
        assert_eq!(e.to_string(), "`x` for layer 'fc' contains NaN at index 37");
        x[37] = 1.0;
        let e = s.update(Rows::F32(&x), 10, "x").unwrap_err();
        assert!(e.to_string().contains("+Inf at index 50"), "{e}");
        assert!(s.update(Rows::F32(&x[..79]), 10, "x").is_err());
        assert!(s.update(Rows::F32(&[]), 0, "x").is_err());
        // Finite float64 values whose squares overflow.
        let big = vec![1e200f64; cols];
        let e = s.update(Rows::F64(&big), 1, "x").unwrap_err();
        assert!(matches!(e, Error::Limit(_)), "{e}");
        assert_eq!(s.count(), before.count());
        assert_eq!(s.sums(), before.sums());
        assert_eq!(s.xtx, before.xtx);
    }

    #[test]
    fn channel_sums_are_the_same_bits_at_every_isa() {
        use crate::kernels::isa::Isa;
        for (rows, cols) in [(0usize, 3usize), (1, 1), (7, 33), (9, 300), (130, 517)] {
            let mut x = batch(rows, cols, 9 + cols as u64);
            if x.len() > 4 {
                x[1] = -0.0;
                x[2] = f32::MAX;
                x[3] = -f32::MAX;
            }
            let x64: Vec<f64> = x.iter().map(|&v| v as f64 * 1.5).collect();
            let want = channel_sums_at(Isa::Scalar, &x, rows, cols).unwrap();
            let want64 = channel_sums_at(Isa::Scalar, &x64, rows, cols).unwrap();
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                assert_eq!(
                    channel_sums_at(isa, &x, rows, cols).unwrap(),
                    want,
                    "{isa:?}"
                );
                assert_eq!(channel_sums_at(isa, &x64, rows, cols).unwrap(), want64);
            }
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_thread_count() {
        let (rows, cols) = (1500, 260);
        let x = batch(rows, cols, 11);
        let run = || {
            let mut s = LayerStats::new(cols, true).unwrap();
            s.update(Rows::F32(&x), rows, "x").unwrap();
            s
        };
        let before = crate::parallel::num_threads();
        crate::parallel::set_num_threads(1).unwrap();
        let a = run();
        crate::parallel::set_num_threads(3).unwrap();
        let b = run();
        crate::parallel::set_num_threads(before).unwrap();
        assert_eq!(a.sums(), b.sums());
        close(&a.hessian("l").unwrap(), &b.hessian("l").unwrap(), 1e-14);
    }

    #[test]
    fn packed_round_trip_and_forged_parts() {
        let (rows, cols) = (50, 6);
        let x = batch(rows, cols, 5);
        let mut s = LayerStats::new(cols, true).unwrap();
        s.update(Rows::F32(&x), rows, "x").unwrap();
        let p = s.xtx_packed().unwrap();
        assert_eq!(p.len(), cols * (cols + 1) / 2);
        let back = LayerStats::from_parts(s.count(), s.sums().clone(), Some(&p), "e").unwrap();
        assert_eq!(back.hessian("l").unwrap(), s.hessian("l").unwrap());
        let err = |count: u64, sums: ChannelSums, p: &[f64]| {
            LayerStats::from_parts(count, sums, Some(p), "entry 0")
                .unwrap_err()
                .to_string()
        };
        assert!(err(0, s.sums().clone(), &p).contains("`count`"));
        let mut q = p.clone();
        q[3] = f64::NAN;
        assert!(err(50, s.sums().clone(), &q).contains("`xtx`"));
        let mut q = p.clone();
        q[1] = 1e9; // off-diagonal beyond Cauchy-Schwarz
        assert!(err(50, s.sums().clone(), &q).contains("not a Gram matrix"));
        let mut sums = s.sums().clone();
        sums.max_abs[2] = -1.0;
        assert!(err(50, sums, &p).contains("`max_abs`"));
        assert!(err(50, s.sums().clone(), &p[1..]).contains("expected"));
    }

    #[test]
    fn set_groups_layouts_and_errors() {
        let set = StatsSet::new(true);
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let x = batch(4, 3, 1);
        set.update(&n(&["q", "k"]), None, Rows::F32(&x), 4, 3)
            .unwrap();
        set.update(&n(&["k", "q"]), None, Rows::F32(&x), 4, 3)
            .unwrap();
        assert_eq!(set.count("q").unwrap(), 8);
        assert_eq!(set.group("k").unwrap(), n(&["k", "q"]));
        let e = set
            .update(&n(&["q"]), None, Rows::F32(&x), 4, 3)
            .unwrap_err();
        assert!(
            e.to_string().contains("already recorded in the group"),
            "{e}"
        );
        let e = set
            .update(&n(&["q", "k", "v"]), None, Rows::F32(&x), 4, 3)
            .unwrap_err();
        assert!(e.to_string().contains("['k', 'q']"), "{e}");
        let e = set
            .update(&n(&["q", "k"]), None, Rows::F32(&x), 3, 4)
            .unwrap_err();
        assert!(e.to_string().contains("has 3 input features"), "{e}");
        let e = set
            .update(
                &n(&["q", "k"]),
                Some(&[Layout::InOut, Layout::OutIn]),
                Rows::F32(&x),
                4,
                3,
            )
            .unwrap_err();
        assert!(e.to_string().contains("layout"), "{e}");
        assert_eq!(set.count("q").unwrap(), 8);
        assert!(!set.contains("v"));
        let diag = StatsSet::new(false);
        diag.update(&n(&["a"]), None, Rows::F32(&x), 4, 3).unwrap();
        assert!(diag.hessian("a").is_err());
        assert_eq!(diag.channel_stats("a").unwrap().sum.len(), 3);
    }
}
