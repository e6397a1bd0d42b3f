//! [`PackedMatrix`]: the right-hand operand B (K x N, int8 or uint8) packed once into the layout
//! the microkernels read, with its column sums and zero-point terms precomputed.
//!
//! Layout: B is stored as signed bytes `Bs = B` (int8) or `Bs = B ^ 0x80 = B - 128` (uint8).
//! Columns are grouped in strips of [`STRIP`] = 16 (one zmm of int32 lanes) and panels of
//! [`PANEL`] = 64 (4 strips, the widest microkernel); N is padded with zero columns to a multiple
//! of 64 and K with zero rows to a multiple of 4 (`kp`). In strip `s`, k-group `g` (rows
//! `4g..4g+4`) is one 64-byte line holding, for each of the 16 columns, its 4 bytes in k order:
//! exactly the `b` operand of one `vpdpbusd` on zmm. A panel stores its 4 strips' lines of one
//! k-group side by side ([`GROUP_BYTES`] = 256 bytes), k-group after k-group, so a microkernel
//! reads its panel as one sequential stream. Byte `(k, n)` lives at
//! `(n / 64) * panel_bytes + (k / 4) * 256 + (n % 64 / 16) * 64 + (n % 16) * 4 + k % 4`;
//! `panel_bytes` is `kp * 64`, plus one zero k-group when that is a multiple of 4 KiB
//! ([`PackedMatrix::panel_groups`]).

pub use super::layout::{GROUP_BYTES, PANEL, STRIP};

use super::checks::check_b;
use super::layout::{Dtype, PackLines, Rhs, SyncPtr};
use crate::error::{Error, Result};
use crate::kernels::isa::{self, Isa, Vector};

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

thread_local! {
    /// Packed storage of the last temporary pack on this thread (see `with_temporary`).
    static RECYCLED: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Packs of at least this many bytes are written with non-temporal stores (AVX-512 path; a
/// quarter of this machine's L3).
const NT_BYTES: usize = 8 << 20;

/// Largest temporary pack kept for reuse, bytes.
const RECYCLE_KEEP: usize = 32 << 20;

/// B packed for the int8 kernels; immutable and shareable between threads.
pub struct PackedMatrix {
    k: usize,
    n: usize,
    kp: usize,
    np: usize,
    dtype: Dtype,
    lines: Vec<Line>,
    /// `sum_k Bs[k, n]` for every padded column (wrapping int32).
    col_sums: Vec<i32>,
    /// The zero point as given: empty, one value, or one per column.
    zero_point: Vec<i32>,
    /// `b'[n] = zb[n] - (128 if uint8 else 0)` so that `B - zb = Bs - b'`; `None` when all zero.
    b_prime: Option<Vec<i32>>,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PackedMatrix(k={}, n={}, dtype={}, nbytes={})",
            self.k,
            self.n,
            self.dtype.name(),
            self.nbytes()
        )
    }
}

fn round_up(x: usize, m: usize) -> Option<usize> {
    x.checked_add(m - 1).map(|v| v / m * m)
}

impl PackedMatrix {
    /// Pack a row-major (K, N) matrix of `dtype` bytes (int8 as its two's-complement bytes)
    /// with zero point `zero_point` (empty, one value, or N values; checked against `dtype`).
    pub fn pack(b: &[u8], k: usize, n: usize, dtype: Dtype, zero_point: &[i64]) -> Result<Self> {
        Self::pack_with(crate::kernels::isa::active(), b, k, n, dtype, zero_point)
    }

    /// [`PackedMatrix::pack`] on a given ISA level (the layout is the same on every level).
    pub fn pack_with(
        isa: Isa,
        b: &[u8],
        k: usize,
        n: usize,
        dtype: Dtype,
        zero_point: &[i64],
    ) -> Result<Self> {
        let b = Rhs {
            data: b,
            k,
            n,
            dtype,
            zero_point,
        };
        Self::pack_into(isa, &b, Vec::new())
    }

    /// Pack B for one call and run `f` on it, with the packed storage recycled per thread
    /// (fresh pages for a large temporary cost more page faults than the packing itself).
    pub fn with_temporary<R>(isa: Isa, b: &Rhs, f: impl FnOnce(&PackedMatrix) -> R) -> Result<R> {
        let buf = RECYCLED.with(|r| std::mem::take(&mut *r.borrow_mut()));
        let packed = Self::pack_into(isa, b, buf)?;
        let out = f(&packed);
        if packed.lines.capacity() * 64 <= RECYCLE_KEEP {
            RECYCLED.with(|r| *r.borrow_mut() = packed.lines);
        }
        Ok(out)
    }

    fn pack_into(isa: Isa, rhs: &Rhs, mut lines: Vec<Line>) -> Result<Self> {
        let Rhs {
            data: b,
            k,
            n,
            dtype,
            zero_point,
        } = *rhs;
        let zp = check_b(b, k, n, dtype, zero_point)?;
        let kp = round_up(k, 4).ok_or_else(|| Error::limit("`b` has too many rows"))?;
        let np = round_up(n, PANEL).ok_or_else(|| Error::limit("`b` has too many columns"))?;
        let groups = kp / 4;
        let panel_groups = panel_groups_for(groups);
        let panels = np / PANEL;
        let nlines = (panel_groups * 4)
            .checked_mul(panels)
            .filter(|&l| l <= isize::MAX as usize / 64)
            .ok_or_else(|| Error::limit(format!("`b` of shape ({k}, {n}) is too large to pack")))?;
        let flip = if dtype == Dtype::U8 { 0x80u8 } else { 0 };
        // Every line is written below (padding as zeros), so storage kept from an earlier
        // pack is reused as it is: only new storage is initialised here.
        if lines.len() >= nlines {
            lines.truncate(nlines);
        } else {
            lines.clear();
            lines.resize(nlines, Line([0u8; 64]));
        }
        let mut col_sums = vec![0i32; np];
        let ptr = SyncPtr(lines.as_mut_ptr());
        let kernel = isa::kernels(isa).pack_b;
        let simd = kernel != Vector::Scalar;
        // Full 4-row x 64-column blocks go through the SIMD transpose (AVX-512 or AVX2), which
        // also sums the columns (parallel over k-groups, every thread writing its own lines of
        // every strip and summing into its own buffer); the rest per strip in Rust.
        let (simd_groups, simd_panels) = if simd { (k / 4, n / PANEL) } else { (0, 0) };
        #[cfg(target_arch = "x86_64")]
        if simd_groups > 0 && simd_panels > 0 {
            // Non-temporal stores from NT_BYTES of packed data on (see pack_lines): 4096 x 4096
            // packs in 1.5 ms instead of 2.1 (one thread); below that, the kernel that follows
            // finds plain stores' lines still in cache (128 x 768 x 3072 with a plain B: 1.61
            // ms with a 1 MiB threshold, 1.48 with 8 MiB).
            let nt = nlines * 64 >= NT_BYTES;
            let total = std::sync::Mutex::new(&mut col_sums);
            crate::parallel::for_chunks(simd_groups, 256, |g0, g1| {
                let mut part = vec![0i32; simd_panels * PANEL];
                let dst = PackLines {
                    b,
                    n,
                    panels: simd_panels,
                    flip,
                    out: ptr.get().cast::<u8>(),
                    pbytes: panel_groups * GROUP_BYTES,
                };
                // SAFETY: the Avx512 level implies avx512f/bw/vbmi/vnni, Avx2 avx2; rows
                // 4*g1 <= k, columns simd_panels*64 <= n; `lines` is 64-byte aligned with panels
                // of panel_groups k-groups; lines of k-groups g0..g1 are written by this chunk
                // only.
                unsafe {
                    use super::{avx2, avx512};
                    match (kernel, nt) {
                        (Vector::Avx512, true) => {
                            avx512::pack_lines::<true>(dst, g0, g1, &mut part)
                        }
                        (Vector::Avx512, false) => {
                            avx512::pack_lines::<false>(dst, g0, g1, &mut part)
                        }
                        (Vector::Avx2, true) => avx2::pack_lines::<true>(dst, g0, g1, &mut part),
                        (Vector::Avx2, false) => avx2::pack_lines::<false>(dst, g0, g1, &mut part),
                        // `simd` is false: no blocks for the transpose.
                        (Vector::Scalar, _) => {}
                    }
                };
                let mut t = total.lock().unwrap_or_else(|e| e.into_inner());
                for (s, &v) in t.iter_mut().zip(&part) {
                    *s = s.wrapping_add(v);
                }
            });
        }
        let src = Source { b, k, n, flip };
        crate::parallel::for_chunks(panels, 2, |p0, p1| {
            for p in p0..p1 {
                let pl = panel_groups * 4;
                // SAFETY: panel `p` owns lines `p*pl..(p+1)*pl`; chunks are disjoint and
                // `lines` outlives this call (for_chunks returns after every chunk ran).
                let panel = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(p * pl), pl) };
                let g_from = if p < simd_panels { simd_groups } else { 0 };
                pack_panel(&src, p * PANEL, g_from, groups, panel);
            }
        });
        // Column sums of what the SIMD transpose did not cover: every row of the columns past
        // its panels, and the rows past its k-groups of the columns within them.
        for (r, row) in b.chunks_exact(n.max(1)).take(k).enumerate() {
            let c_from = if r < 4 * simd_groups {
                simd_panels * PANEL
            } else {
                0
            };
            for (s, &v) in col_sums[c_from..].iter_mut().zip(&row[c_from..]) {
                *s = s.wrapping_add(((v ^ flip) as i8) as i32);
            }
        }
        let offset = if dtype == Dtype::U8 { 128 } else { 0 };
        let mut bp = vec![0i32; np];
        for (j, v) in bp.iter_mut().take(n).enumerate() {
            let z = match zp.len() {
                0 => 0,
                1 => zp[0],
                _ => zp[j],
            };
            *v = z - offset;
        }
        let b_prime = bp.iter().any(|&v| v != 0).then_some(bp);
        Ok(PackedMatrix {
            k,
            n,
            kp,
            np,
            dtype,
            lines,
            col_sums,
            zero_point: zp,
            b_prime,
        })
    }

    /// Rows of B (K).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns of B (N).
    pub fn n(&self) -> usize {
        self.n
    }
    /// K padded to a multiple of 4.
    pub fn kp(&self) -> usize {
        self.kp
    }
    /// k-groups from one panel to the next: `kp / 4`, plus one unused zero k-group when
    /// `kp * 64` is a multiple of 4 KiB. Packing writes k-group g of every panel in turn; at
    /// a 4 KiB multiple they all fall in the same cache sets (with strips of their own, 4096 x
    /// 4096 packed at 5 GB/s, 3.1 ms, before such padding).
    pub fn panel_groups(&self) -> usize {
        panel_groups_for(self.kp / 4)
    }
    /// Bytes from one panel to the next.
    pub fn panel_bytes(&self) -> usize {
        self.panel_groups() * GROUP_BYTES
    }
    /// N padded to a multiple of [`PANEL`].
    pub fn np(&self) -> usize {
        self.np
    }
    /// The element type of B.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    /// The zero point given at pack time (empty, one value, or N values).
    pub fn zero_point(&self) -> &[i32] {
        &self.zero_point
    }
    /// Bytes held (packed data + column terms).
    pub fn nbytes(&self) -> usize {
        self.lines.len() * 64
            + (self.col_sums.len() + self.b_prime.as_ref().map_or(0, Vec::len)) * 4
            + self.zero_point.len() * 4
    }
    /// The packed bytes (see the module docs for the layout).
    pub fn data(&self) -> &[u8] {
        // SAFETY: `Line` is 64 plain bytes with no padding; the Vec's buffer holds
        // `lines.len() * 64` initialised bytes.
        unsafe {
            std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.lines.len() * 64)
        }
    }
    /// `sum_k Bs[k, n]` per padded column.
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }
    /// `b'[n]` per padded column, or `None` when all are zero.
    pub fn b_prime(&self) -> Option<&[i32]> {
        self.b_prime.as_deref()
    }
    /// `Bs[k, n]` (the stored signed byte), for the scalar path and tests.
    #[inline]
    pub fn signed_at(&self, k: usize, n: usize) -> i8 {
        let at = (n / PANEL) * self.panel_bytes()
            + (k / 4) * GROUP_BYTES
            + (n % PANEL / STRIP) * 64
            + (n % STRIP) * 4
            + k % 4;
        self.data()[at] as i8
    }
}

/// k-groups per panel for `groups` k-groups (see [`PackedMatrix::panel_groups`]).
fn panel_groups_for(groups: usize) -> usize {
    if groups > 0 && groups.is_multiple_of(16) {
        groups + 1
    } else {
        groups
    }
}

/// Write k-groups `g_from..` of the panel of columns `n0..n0+64` (`groups` k-groups, then any
/// padding k-group; line `4g + j` is strip j's line of k-group g): B's bytes where it has
/// them, zero beyond K and N.
/// Row-major B (`k` x `n`) as [`pack_panel`] reads it, XOR `flip`.
struct Source<'a> {
    b: &'a [u8],
    k: usize,
    n: usize,
    flip: u8,
}

fn pack_panel(src: &Source, n0: usize, g_from: usize, groups: usize, panel: &mut [Line]) {
    let Source { b, k, n, flip } = *src;
    for (at, line) in panel.iter_mut().enumerate().skip(4 * g_from) {
        let (g, j) = (at / 4, at % 4);
        *line = Line([0u8; 64]);
        let c0 = n0 + j * STRIP;
        let cols = n.saturating_sub(c0).min(STRIP);
        if g >= groups || cols == 0 {
            continue;
        }
        for i in 0..4 {
            let kk = 4 * g + i;
            if kk >= k {
                break;
            }
            let row = &b[kk * n + c0..kk * n + c0 + cols];
            for (c, &v) in row.iter().enumerate() {
                line.0[c * 4 + i] = v ^ flip;
            }
        }
    }
}
