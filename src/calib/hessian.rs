//! The Hessian machinery shared by GPTQ and SparseGPT.
//!
//! From `H = X^T X / count` (`(n, n)` f64, symmetric) [`prepare`] builds the upper Cholesky
//! factor `U` of `(P H P^T + lambda I)^-1` (`H^-1 = U^T U`), where:
//!
//! * dead input channels (`H_jj == 0`: never active in calibration) get `H_jj = 1` and their
//!   row and column are set to 0, so they are isolated: their column is quantized by plain
//!   rounding and neither receives nor sends error updates;
//! * `P` orders the channels by descending `diag H` when `act_order` (ties: lower index first),
//!   else keeps them in place;
//! * `lambda = damp * mean(diag H)`, the mean taken after the dead fix (dead channels count
//!   as 1, as in the GPTQ reference code). When the factorisation fails, `damp` is multiplied by
//!   10 and it is tried again, at most [`MAX_ESCALATIONS`] times; the damp that worked is
//!   returned as `damp_used`.
//!
//! `U` comes from one Cholesky factorisation and one triangular inverse (no explicit inverse):
//! with `J` the reversal permutation, `J H J = L L^T` gives `H = R R^T` with `R = J L J` upper,
//! so `H^-1 = R^-T R^-1` and `U = R^-1 = J L^-1 J`, the unique upper factor with a positive
//! diagonal (what `torch.linalg.cholesky(torch.cholesky_inverse(..), upper=True)` gives, at
//! half the cost). `J M J` of a row-major matrix is its flat buffer reversed.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltRegularization,
};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::calib::grid::check_finite_f64;
use crate::error::{Error, Result};
use crate::parallel;

/// The precision of the solvers' working data: the triangular inverse that gives the factor
/// `U`, the working copy of the weight, the errors and the matrix products that carry the
/// errors forward. `H`, its damping and its Cholesky factorisation are float64 in both (a
/// float32 Cholesky moved SparseGPT's output error by up to 0.5% on a real layer, see
/// [`crate::calib::gptq`]); the rounding is float32 on `f32(w)` in both (as the file decodes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// float64 throughout (what the numpy oracles compute).
    F64,
    /// float32 triangular inverse, weight updates and products, as the papers' PyTorch code
    /// (half the memory traffic, twice the SIMD lanes).
    #[default]
    F32,
}

impl Precision {
    /// `"float64"` / `"float32"` (also `"f64"`, `"f32"`).
    pub fn parse(s: &str) -> Result<Precision> {
        match s {
            "float64" | "f64" => Ok(Precision::F64),
            "float32" | "f32" => Ok(Precision::F32),
            other => Err(Error::arg(format!(
                "`precision` must be 'float32' or 'float64', found {other:?}"
            ))),
        }
    }
}

impl Precision {
    /// The precision a solver uses for `h` (checked, `(n, n)`): `F32` needs the nonzero
    /// entries of `diag h` within `[1e-30, 1e30]`, else `U ~ diag(h)^-1/2` and the scaled
    /// errors `(w - q) / U_pp` could leave float32's range; outside it, `F64` is used.
    pub fn for_hessian(self, h: &[f64], n: usize) -> Precision {
        let in_range = |d: f64| d == 0.0 || (1e-30..=1e30).contains(&d);
        match self {
            Precision::F32 if (0..n).all(|j| in_range(h[j * n + j])) => Precision::F32,
            _ => Precision::F64,
        }
    }
}

/// The float type of the solvers' working data ([`Precision`]): `f64` or `f32`.
pub trait Work:
    faer::traits::ComplexField
    + Copy
    + Send
    + Sync
    + PartialEq
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::SubAssign
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + 'static
{
    /// Not a number (marks a pruned weight in SparseGPT's working copy).
    const NAN: Self;
    /// `x` rounded to nearest (exact for `f64`).
    fn of_f64(x: f64) -> Self;
    /// `x`, exactly.
    fn of_f32(x: f32) -> Self;
    /// `self`, exactly.
    fn to_f64(self) -> f64;
    /// `self` rounded to nearest (exact for `f32`).
    fn to_f32(self) -> f32;
    /// Whether `self` is NaN.
    fn nan(self) -> bool;
    /// The precision's name in messages.
    const NAME: &'static str;
    /// [`factor_in`] for this working precision.
    fn factor(
        h: &[f64],
        n: usize,
        dead: &[bool],
        rperm: &[usize],
        mean: f64,
        damp: f64,
    ) -> Result<(Vec<Self>, f64)>;
}

impl Work for f64 {
    const NAN: f64 = f64::NAN;
    #[inline(always)]
    fn of_f64(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn of_f32(x: f32) -> f64 {
        x as f64
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn nan(self) -> bool {
        self.is_nan()
    }
    const NAME: &'static str = "float64";
    fn factor(
        h: &[f64],
        n: usize,
        dead: &[bool],
        rperm: &[usize],
        mean: f64,
        damp: f64,
    ) -> Result<(Vec<f64>, f64)> {
        factor_in::<f64, f64>(h, n, dead, rperm, mean, damp)
    }
}

impl Work for f32 {
    const NAN: f32 = f32::NAN;
    #[inline(always)]
    fn of_f64(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn of_f32(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn nan(self) -> bool {
        self.is_nan()
    }
    const NAME: &'static str = "float32";
    fn factor(
        h: &[f64],
        n: usize,
        dead: &[bool],
        rperm: &[usize],
        mean: f64,
        damp: f64,
    ) -> Result<(Vec<f32>, f64)> {
        factor_in::<f64, f32>(h, n, dead, rperm, mean, damp)
    }
}

/// How often `damp` is multiplied by 10 before giving up.
pub const MAX_ESCALATIONS: usize = 6;

/// Relative tolerance of the symmetry check of `h`.
const SYM_TOL: f64 = 1e-6;

/// faer's parallelism for the current kernel thread count.
pub fn par() -> Par {
    let n = parallel::num_threads();
    if n <= 1 {
        Par::Seq
    } else {
        Par::rayon(n)
    }
}

/// Check a Hessian argument: `n * n` values, finite, symmetric (to a relative `1e-6`),
/// non-negative diagonal.
pub fn check_h(h: &[f64], n: usize) -> Result<()> {
    let nn = n
        .checked_mul(n)
        .ok_or_else(|| Error::limit(format!("`h` of shape ({n}, {n}) is too large")))?;
    if h.len() != nn {
        return Err(Error::arg(format!(
            "`h` holds {} values, expected {nn} for shape ({n}, {n}) (the weight has {n} input \
             channels)",
            h.len()
        )));
    }
    check_finite_f64(h, "`h`")?;
    for j in 0..n {
        let d = h[j * n + j];
        if d < 0.0 {
            return Err(Error::arg(format!(
                "`h` must be positive semi-definite, found h[{j}, {j}] = {d} < 0"
            )));
        }
    }
    // Symmetry: the first row `i` with an asymmetric pair `(i, j < i)`, by square tiles of the
    // lower triangle against a buffered copy of the mirror tile (a column of `h` is read in
    // runs along the rows, not one cache line per value).
    const T: usize = 32;
    let asym = |a: f64, b: f64| {
        (a - b).abs() > SYM_TOL * (a.abs() + b.abs()) && (a - b).abs() > f64::MIN_POSITIVE
    };
    let bad = (0..n.div_ceil(T)).into_par_iter().find_map_first(|ib| {
        let (i0, i1) = (ib * T, (ib * T + T).min(n));
        let mut bad = [false; T];
        let mut buf = [0f64; T * T];
        for j0 in (0..i1).step_by(T) {
            let j1 = (j0 + T).min(i1);
            // buf[(j - j0) * T + (i - i0)] = h[j, i].
            for (j, bj) in (j0..j1).zip(buf.chunks_mut(T)) {
                bj[..i1 - i0].copy_from_slice(&h[j * n + i0..j * n + i1]);
            }
            for (i, bad_i) in (i0..i1).zip(bad.iter_mut()) {
                let row = &h[i * n + j0..i * n + j1.min(i)];
                for (jj, &a) in row.iter().enumerate() {
                    if asym(a, buf[jj * T + (i - i0)]) {
                        *bad_i = true;
                    }
                }
            }
        }
        (i0..i1).find(|&i| bad[i - i0])
    });
    if let Some(i) = bad {
        let j = (0..i)
            .find(|&j| {
                let (a, b) = (h[i * n + j], h[j * n + i]);
                (a - b).abs() > SYM_TOL * (a.abs() + b.abs())
            })
            .unwrap_or(0);
        return Err(Error::arg(format!(
            "`h` must be symmetric, found h[{i}, {j}] = {} and h[{j}, {i}] = {}",
            h[i * n + j],
            h[j * n + i]
        )));
    }
    Ok(())
}

/// The prepared inverse Hessian of [`prepare`] (`U` in the working precision `F`).
#[derive(Debug)]
pub struct Prepared<F = f64> {
    /// Input channels.
    pub n: usize,
    /// `perm[p]` = the original column at position `p` of the processing order.
    pub perm: Vec<usize>,
    /// `U`, `(n, n)` row-major, upper triangular (the strict lower part is 0), in the
    /// processing order (computed in f64, then rounded to `F`).
    pub u: Vec<F>,
    /// The damp that made the factorisation succeed (the argument times a power of 10).
    pub damp_used: f64,
}

/// The processing order: by descending diagonal (ties: lower index first) or the identity.
pub fn order(h: &[f64], n: usize, act_order: bool) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    if act_order {
        perm.sort_by(|&a, &b| h[b * n + b].total_cmp(&h[a * n + a]).then(a.cmp(&b)));
    }
    perm
}

/// Build `U` for `h` (checked by [`check_h`]) with relative damping `damp` (> 0, finite).
/// Must run inside [`parallel::install`] to use the kernel threads.
pub fn prepare(h: &[f64], n: usize, damp: f64, act_order: bool) -> Result<Prepared> {
    prepare_as::<f64>(h, n, damp, act_order)
}

/// [`prepare`] with `U` in the working precision `F` (the Cholesky factorisation is float64
/// either way; the triangular inverse is done in `F`).
pub fn prepare_as<F: Work>(h: &[f64], n: usize, damp: f64, act_order: bool) -> Result<Prepared<F>> {
    if !(damp.is_finite() && damp > 0.0) {
        return Err(Error::arg(format!(
            "`damp` must be a finite number > 0, found {damp}"
        )));
    }
    let perm = order(h, n, act_order);
    if n == 0 {
        return Ok(Prepared {
            n,
            perm,
            u: Vec::<F>::new(),
            damp_used: damp,
        });
    }
    let dead: Vec<bool> = (0..n).map(|j| h[j * n + j] == 0.0).collect();
    // The mean after the dead fix (dead channels count as 1), as the GPTQ reference code.
    let mean = (0..n)
        .map(|j| if dead[j] { 1.0 } else { h[j * n + j] })
        .sum::<f64>()
        / n as f64;
    // The reversed processing order: row a of A is channel rperm[a].
    let rperm: Vec<usize> = perm.iter().rev().copied().collect();
    let (u, damp_now) = F::factor(h, n, &dead, &rperm, mean, damp)?;
    // Rounded to f32, a diagonal far outside f32's range becomes 0 or inf.
    if let Some(i) = (0..n).find(|&i| {
        let d = u[i * n + i].to_f64();
        !(d.is_finite() && d > 0.0)
    }) {
        return Err(Error::arg(format!(
            "`h` is too ill-conditioned for precision {}: the inverse Hessian factor has {} \
             on its diagonal at position {i} (damp {damp_now:e})",
            F::NAME,
            u[i * n + i].to_f64()
        )));
    }
    Ok(Prepared {
        n,
        perm,
        u,
        damp_used: damp_now,
    })
}

/// `U` (row-major, upper, strict lower part 0) and the damp used, with the damped and
/// reordered matrix and its Cholesky factorisation in `G`, the triangular inverse in `I`: the
/// lower Cholesky factor `L` of `J (P H P^T + lambda I) J` (row `a` = channel `rperm[a]`), then
/// `L^-1` and `U = J L^-1 J` (see the module docs).
fn factor_in<G: Work, I: Work>(
    h: &[f64],
    n: usize,
    dead: &[bool],
    rperm: &[usize],
    mean: f64,
    damp: f64,
) -> Result<(Vec<I>, f64)> {
    let par = par();
    let zero = G::of_f64(0.0);
    let mut a = zeros::<G>(n * n);
    let mut damp_now = damp;
    let mut tries = 0;
    loop {
        let lambda = damp_now * mean;
        a.par_chunks_mut(n).enumerate().for_each(|(ra, row)| {
            let i = rperm[ra];
            let hrow = &h[i * n..(i + 1) * n];
            if dead[i] {
                row.fill(zero);
                row[ra] = G::of_f64(1.0 + lambda);
                return;
            }
            for (v, &j) in row.iter_mut().zip(rperm) {
                *v = if dead[j] { zero } else { G::of_f64(hrow[j]) };
            }
            row[ra] = G::of_f64(hrow[i] + lambda);
        });
        let mut mem = MemBuffer::new(cholesky_in_place_scratch::<G>(n, par, Default::default()));
        let stack = MemStack::new(&mut mem);
        let view = MatMut::from_column_major_slice_mut(&mut a, n, n);
        let ok = cholesky_in_place(
            view,
            LltRegularization::default(),
            par,
            stack,
            Default::default(),
        )
        .is_ok()
            && (0..n).all(|j| {
                let d = a[j * n + j].to_f64();
                d.is_finite() && d > 0.0
            });
        if ok {
            break;
        }
        tries += 1;
        if tries > MAX_ESCALATIONS {
            return Err(Error::arg(format!(
                "`h` is not positive definite even with damping {damp_now:e} * mean(diag h) \
                 (started at {damp:e}, escalated x10 {MAX_ESCALATIONS} times)"
            )));
        }
        damp_now *= 10.0;
    }
    // L^-1 (lower) into a row-major buffer, then U = J L^-1 J = the flat buffer reversed.
    let a: Vec<I> = cast_vec(a);
    let zero = I::of_f64(0.0);
    let mut u = zeros::<I>(n * n);
    {
        let l = MatRef::from_column_major_slice(&a, n, n);
        let dst = MatMut::from_row_major_slice_mut(&mut u, n, n);
        faer::linalg::triangular_inverse::invert_lower_triangular(dst, l, par);
    }
    drop(a);
    // `u.reverse()`, in parallel: element `i` swaps with element `len - 1 - i`.
    {
        let half = u.len() / 2;
        let (lo, hi) = u.split_at_mut(half);
        let hi_len = hi.len();
        let hi = &mut hi[hi_len - half..];
        lo.par_iter_mut()
            .zip(hi.par_iter_mut().rev())
            .with_min_len(1 << 14)
            .for_each(|(x, y)| std::mem::swap(x, y));
    }
    // The strict lower part of U holds what faer left above the diagonal of L^-1: clear it.
    u.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        row[..i].fill(zero);
    });
    Ok((u, damp_now))
}

/// `len` zeros, the allocation's pages advised huge (`MADV_HUGEPAGE`, Linux): the solvers'
/// `n x n` and `out x n` buffers are touched first by their writers (fresh pages: with 4 KiB
/// pages, 128 MiB is 32768 page faults) and then read with large strides (TLB misses).
pub(crate) fn zeros<T: Work>(len: usize) -> Vec<T> {
    let mut v = vec![T::of_f64(0.0); len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = len * std::mem::size_of::<T>();
        let p = v.as_mut_ptr() as usize;
        let (start, end) = (p.next_multiple_of(HUGE), (p + bytes) / HUGE * HUGE);
        if bytes >= 2 * HUGE && end > start {
            // SAFETY: [start, end) lies inside `v`'s allocation; MADV_HUGEPAGE is advice only
            // (it never changes the contents or the validity of the memory), failure ignored.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    v
}

/// `v` rounded to `B` (moved when `A` is `B`).
fn cast_vec<A: Work, B: Work>(v: Vec<A>) -> Vec<B> {
    let mut v = v;
    if let Some(same) = (&mut v as &mut dyn std::any::Any).downcast_mut::<Vec<B>>() {
        return std::mem::take(same);
    }
    v.par_iter()
        .with_min_len(1 << 14)
        .map(|&x| B::of_f64(x.to_f64()))
        .collect()
}

/// GPTQ / SparseGPT's lazy update inside a batch: once sub-batch `j1..j2` of batch `i1..i2` is
/// done, columns `j2..i2` of `W` lose `E[:, j1..j2] @ U[j1..j2, j2..i2]`. `wt` is `W`
/// column-major with `out` rows (a contiguous destination: see the module docs on faer), `e`
/// the batch's scaled errors column-major from column `i1`, `u` the row-major `n x n` factor.
#[allow(clippy::too_many_arguments)] // the two solvers' loop state, passed as it is
pub(crate) fn sub_batch_update<F: Work>(
    wt: &mut [F],
    e: &[F],
    u: &[F],
    n: usize,
    out: usize,
    (i1, i2): (usize, usize),
    (j1, j2): (usize, usize),
    par: Par,
) {
    if j2 < i2 {
        let sbs = j2 - j1;
        let dst = MatMut::from_column_major_slice_mut(&mut wt[j2 * out..i2 * out], out, i2 - j2);
        let lhs = MatRef::from_column_major_slice(&e[(j1 - i1) * out..(j2 - i1) * out], out, sbs);
        let rhs = MatRef::from_row_major_slice_with_stride(&u[j1 * n + j2..], sbs, i2 - j2, n);
        faer::linalg::matmul::matmul(dst, Accum::Add, lhs, rhs, -F::of_f64(1.0), par);
    }
}

/// After batch `i1..i2`: columns `i2..n` of `W` lose `E @ U[i1..i2, i2..n]` (arguments as in
/// [`sub_batch_update`]).
pub(crate) fn batch_update<F: Work>(
    wt: &mut [F],
    e: &[F],
    u: &[F],
    n: usize,
    out: usize,
    (i1, i2): (usize, usize),
    par: Par,
) {
    if i2 < n {
        let (bs, rest) = (i2 - i1, n - i2);
        let dst = MatMut::from_column_major_slice_mut(&mut wt[i2 * out..], out, rest);
        let lhs = MatRef::from_column_major_slice(&e[..out * bs], out, bs);
        let rhs = MatRef::from_row_major_slice_with_stride(&u[i1 * n + i2..], bs, rest, n);
        faer::linalg::matmul::matmul(dst, Accum::Add, lhs, rhs, -F::of_f64(1.0), par);
    }
}
