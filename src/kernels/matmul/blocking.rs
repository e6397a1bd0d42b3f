//! The one blocking driver for packed B, generic over an ISA's micro-kernel (the contract of
//! matrixmultiply's `GemmKernel`): an ISA file implements [`PackedKernel`] (its K blocking,
//! whether it pre-converts int8 A, whether it stores finished tiles itself, and the micro-kernel
//! that multiplies one row tile by one 64-column panel) and calls [`gemm_block`] from its
//! `#[target_feature]` shell, so the driver is compiled, and the micro-kernel inlined, with
//! that ISA's features.
//!
//! Every kernel reads B in the layout of `pack.rs` (panels of [`PANEL`] columns, k-groups of
//! [`GROUP_BYTES`]) and A as `Au` bytes (uint8, or int8 XOR 0x80), and leaves `Au @ Bs` for the
//! shared epilogue ([`finish_rows`]) unless it stores the tile itself ([`Store`]).

use super::epilogue::{finish_rows, Job, Out};
use super::layout::{row_tiles, GROUP_BYTES, PANEL};
use super::scratch::with_scratch;

/// Rows `m0..m1` x panels `p0..p1` of a [`Job`]: one block of `plan::run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub m0: usize,
    pub m1: usize,
    pub p0: usize,
    pub p1: usize,
}

/// Where a finished tile goes when the micro-kernel stores it itself (no per-row correction
/// terms and a full panel): straight from registers into the int32 or float32 output, with
/// the column terms (and the float epilogue). `out` null: into the tile, for [`finish_rows`].
#[derive(Clone, Copy)]
pub(crate) struct Store {
    /// Row 0, column 0 of the tile in the output (4-byte elements).
    pub out: *mut u8,
    /// Output row stride in elements.
    pub ldo: usize,
    pub col_add: *const i32,
    /// float32 output: `float32(acc) * (row_scale * col_scale) (+ bias)`.
    pub float: bool,
    pub row_scale: *const f32,
    /// 0 (one scale) or 1 (per row).
    pub rs_step: usize,
    pub col_scale: *const f32,
    pub bias: *const f32,
}

impl Store {
    pub(crate) const NONE: Store = Store {
        out: std::ptr::null_mut(),
        ldo: 0,
        col_add: std::ptr::null(),
        float: false,
        row_scale: std::ptr::null(),
        rs_step: 0,
        col_scale: std::ptr::null(),
        bias: std::ptr::null(),
    };

    /// The store of the tile at row `m` of panel `p` of `job` (its output is int32 or float32).
    fn at(job: &Job, m: usize, p: usize) -> Store {
        let n = job.b.n();
        let at = m * n + p * PANEL;
        let col_add = job.col_add[p * PANEL..].as_ptr();
        match job.out {
            Out::I32(ptr) => Store {
                out: ptr.get().wrapping_add(at).cast(),
                ldo: n,
                col_add,
                ..Store::NONE
            },
            Out::F32 {
                ptr,
                row_scale,
                col_scale,
                bias,
            } => {
                let per_row = row_scale.len() != 1;
                Store {
                    out: ptr.get().wrapping_add(at).cast(),
                    ldo: n,
                    col_add,
                    float: true,
                    row_scale: row_scale[if per_row { m } else { 0 }..].as_ptr(),
                    rs_step: per_row as usize,
                    col_scale: col_scale[p * PANEL..].as_ptr(),
                    bias: bias.map_or(std::ptr::null(), |b| b[p * PANEL..].as_ptr()),
                }
            }
            Out::Q8 { .. } => Store::NONE,
        }
    }
}

/// One call of a micro-kernel: `acc[r][0..64] (+)= sum_g Au[r, 4g..4g+4] . Bs[4g..4g+4,
/// panel]` for the `rows` rows of a row tile and `groups` k-groups of one panel (`+=` when
/// `accumulate`, else `=`), then the tile goes to `store` (unless it is [`Store::NONE`]).
#[derive(Clone, Copy)]
pub(crate) struct Tile {
    /// Row 0 of the tile at its first k-group; rows `lda` bytes apart.
    pub a: *const u8,
    pub lda: usize,
    /// XOR A's bytes with 0x80 while reading them (int8 A not converted beforehand).
    pub flip: bool,
    /// The panel's first k-group (line 0 of strip 0).
    pub b: *const u8,
    pub groups: usize,
    /// 1 to 6 (`layout::tile_of_row`).
    pub rows: usize,
    /// `rows` rows of [`PANEL`] int32, row stride [`PANEL`].
    pub acc: *mut i32,
    pub accumulate: bool,
    pub store: Store,
}

/// One ISA's micro-kernel on packed B, and the knobs of [`gemm_block`] it wants.
pub(crate) trait PackedKernel {
    /// k-groups per K block beyond 16 rows (partial sums wait in `acc` between blocks);
    /// `usize::MAX`: all of K in one pass.
    const KC_GROUPS: usize;
    /// Beyond 16 rows, convert int8 A to `Au` once per row block instead of in the kernel.
    const PRE_FLIP: bool;
    /// The kernel honours [`Tile::store`] (else every tile goes through [`finish_rows`]).
    const STORES: bool;

    /// Multiply one [`Tile`].
    ///
    /// # Safety
    /// The CPU has the kernel's features; `a` is readable for `(rows - 1) * lda + 4 * groups`
    /// bytes, `b` for the panel's `groups` k-groups ([`GROUP_BYTES`] each); `acc` is writable
    /// for `rows * PANEL` int32; a `store` that is not [`Store::NONE`] points at the tile's
    /// output rows and column terms (see [`Store::at`]).
    unsafe fn tile(t: &Tile);
}

/// Rows `m0..m1` x panels `p0..p1` of `job` with micro-kernel `K`. Beyond 16 rows, K is
/// blocked ([`PackedKernel::KC_GROUPS`]) and partial sums live in a per-thread buffer of
/// (m1 - m0) x 64 int32 until the last block.
///
/// # Safety
/// The CPU supports `K`'s features; `blk` lies within `job` (rows < `job.m`, panels <
/// `job.b.np() / PANEL`).
#[inline(always)]
pub(crate) unsafe fn gemm_block<K: PackedKernel>(job: &Job, blk: Block) {
    let Block { m0, m1, p0, p1 } = blk;
    let kp = job.b.kp();
    let groups = kp / 4;
    let pbytes = job.b.panel_bytes();
    let data = job.b.data();
    let lda = job.lda;
    debug_assert!(job.a.len() >= job.m * lda && lda >= kp);
    let kcg = if job.m <= 16 {
        groups.max(1)
    } else {
        K::KC_GROUPS.min(groups.max(1))
    };
    let rows_blk = m1 - m0;
    let n = job.b.n();
    // Tiles may skip finish_rows when no per-row terms apply (B int8 without zero point, A
    // zero point scalar) and the output is int32 or float32.
    let store_ok = K::STORES
        && job.row_a.is_none()
        && job.b.b_prime().is_none()
        && matches!(job.out, Out::I32(_) | Out::F32 { .. });
    // int8 A beyond the small-M path: this block's rows are flipped to `Au = A ^ 0x80` once
    // (a copy of rows_blk x lda bytes, hot in L2 when the tiles read it) instead of in the
    // microkernel, where each broadcast costs a load, an XOR and a shuffle instead of one
    // broadcast load (int8 activations were 3-5% slower than uint8 on the large shapes).
    let pre_flip = K::PRE_FLIP && job.flip && job.m > 16;
    let a_len = if pre_flip { rows_blk * lda } else { 0 };
    with_scratch(3, a_len, |abuf| {
        if pre_flip {
            let src = &job.a[m0 * lda..m1 * lda];
            for (d, &s) in abuf.iter_mut().zip(src) {
                *d = s ^ 0x80;
            }
        }
        // (A block base, its first row, XOR in the kernel)
        let (a_base, a_row0, kflip) = if pre_flip {
            (abuf.as_ptr(), m0, false)
        } else {
            (job.a.as_ptr(), 0, job.flip)
        };
        // Partial sums wait between K blocks in a buffer of the block's rows; with K in one
        // pass, every tile reuses the same 6 rows (they stay in L1 for the epilogue).
        let one_pass = kcg >= groups;
        let acc_rows = if one_pass { 6.min(rows_blk) } else { rows_blk };
        with_scratch(2, acc_rows * PANEL * 4 + 64, |buf| {
            // SAFETY: every bit pattern is a valid i32; the aligned middle part is used.
            let (_, acc, _) = unsafe { buf.align_to_mut::<i32>() };
            let acc = &mut acc[..acc_rows * PANEL];
            for p in p0..p1 {
                // SAFETY: panel p is inside the packed buffer: p < np / PANEL.
                let bp = unsafe { data.as_ptr().add(p * pbytes) };
                let mut g0 = 0;
                loop {
                    let g1 = (g0 + kcg).min(groups);
                    let last = g1 == groups;
                    row_tiles(job.m, m0, m1, |m, rows| {
                        let at = if one_pass { 0 } else { (m - m0) * PANEL };
                        let store = if store_ok && last && (p + 1) * PANEL <= n {
                            Store::at(job, m, p)
                        } else {
                            Store::NONE
                        };
                        // SAFETY: rows m..m+rows of the block (m0 <= m, m + rows <= m1), each
                        // `lda >= kp` bytes in `job.a` or in the flipped copy of rows m0..m1,
                        // from byte 4*g0; k-groups g0..g1 of the panel's strips; tile rows
                        // inside `acc`; the store of a full panel of an int32 / float32
                        // output.
                        unsafe {
                            let t = Tile {
                                a: a_base.add((m - a_row0) * lda + 4 * g0),
                                lda,
                                flip: kflip,
                                b: bp.add(g0 * GROUP_BYTES),
                                groups: g1 - g0,
                                rows,
                                acc: acc.as_mut_ptr().add(at),
                                accumulate: g0 > 0,
                                store,
                            };
                            K::tile(&t);
                        }
                        if last && store.out.is_null() {
                            finish_rows(job, m, rows, p, &mut acc[at..at + rows * PANEL]);
                        }
                    });
                    if last {
                        break;
                    }
                    g0 = g1;
                }
            }
        });
    });
}
