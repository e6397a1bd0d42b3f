//! Packing B into [`PackedMatrix`] (the layout is described in `packed.rs`): the SIMD
//! transposes of full 4-row x 64-column blocks (`avx2::pack_lines`, `avx512::pack_lines`, by
//! the `pack_b` family of `isa::Kernels`) and the portable rest.
pub use super::layout::{GROUP_BYTES, PANEL, STRIP};
pub use super::packed::PackedMatrix;

use super::checks::check_b;
use super::layout::{Dtype, PackLines, Rhs, SyncPtr};
use super::packed::{panel_groups_for, Line};
use crate::error::{Error, Result};
use crate::kernels::isa::{self, Isa, Vector};

thread_local! {
    /// Packed storage of the last temporary pack on this thread (see `with_temporary`).
    static RECYCLED: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Packs of at least this many bytes are written with non-temporal stores (AVX-512 path; a
/// quarter of this machine's L3).
const NT_BYTES: usize = 8 << 20;

/// Largest temporary pack kept for reuse, bytes.
const RECYCLE_KEEP: usize = 32 << 20;

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
}

/// Row-major B (`k` x `n`) as [`pack_panel`] reads it, XOR `flip`.
struct Source<'a> {
    b: &'a [u8],
    k: usize,
    n: usize,
    flip: u8,
}

/// Write k-groups `g_from..` of the panel of columns `n0..n0+64` (`groups` k-groups, then any
/// padding k-group; line `4g + j` is strip j's line of k-group g): B's bytes where it has
/// them, zero beyond K and N.
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
