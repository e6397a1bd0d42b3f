//! The leaf of `matmul/`: operand types, the packed layout's constants, the row tiling and the
//! direct path's blocking, shared by the drivers and every ISA file. It imports nothing from its
//! siblings, so every other file of the op depends on it and on nothing that depends back.

/// Element type of an int8 operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// uint8, 0..=255.
    U8,
    /// int8, -128..=127 (stored as its two's-complement byte).
    I8,
}

impl Dtype {
    /// numpy's name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
        }
    }
    /// Smallest and largest value.
    pub fn range(self) -> (i32, i32) {
        match self {
            Dtype::U8 => (0, 255),
            Dtype::I8 => (-128, 127),
        }
    }
    /// The value of byte `b`.
    #[inline(always)]
    pub fn value(self, b: u8) -> i32 {
        match self {
            Dtype::U8 => b as i32,
            Dtype::I8 => b as i8 as i32,
        }
    }
}

/// The left operand: `rows` x `k` bytes, row-major and contiguous.
#[derive(Clone, Copy, Debug)]
pub struct Lhs<'a> {
    /// The bytes (int8 as two's complement).
    pub data: &'a [u8],
    /// M.
    pub rows: usize,
    /// K.
    pub k: usize,
    /// Element type.
    pub dtype: Dtype,
}

/// The right operand as given (not packed): `k` x `n` bytes, row-major and contiguous.
#[derive(Clone, Copy, Debug)]
pub struct Rhs<'a> {
    /// The bytes (int8 as two's complement).
    pub data: &'a [u8],
    /// K.
    pub k: usize,
    /// N.
    pub n: usize,
    /// Element type.
    pub dtype: Dtype,
    /// Zero point: empty (none), one value, or N values.
    pub zero_point: &'a [i64],
}

/// Columns per strip (int32 lanes of a zmm register).
pub const STRIP: usize = 16;
/// Columns per panel; packed N is padded to a multiple of this.
pub const PANEL: usize = 64;
/// Bytes of one k-group of a panel: the lines of its 4 strips.
pub const GROUP_BYTES: usize = 4 * 64;

/// Largest M multiplied from unpacked B without packing it: row chunks of up to 10 rows
/// (8 on AVX2, with the ones row), each one pass over B. Measured on one Zen 4 core,
/// 4096 x 4096 int8 B, against packing + the packed kernels (AVX-512, A/B in alternating
/// processes): M = 8 1.90 vs 1.98 ms (the same path then), 9 2.28 vs 3.94, 12 3.03 vs 4.52,
/// 16 3.13 vs 4.79; 2 threads, M = 16 2.58 vs 3.19. AVX2 (`EDGEPACK_ISA=avx2`): M = 1 0.88 vs
/// 2.34 ms, 8 3.2 vs 4.2, 16 7.0 vs 7.6. Beyond 16 rows packing B once pays for itself.
/// The kernels take up to this many rows; `direct::max_rows` is where each one is used.
pub(crate) const DIRECT_ROWS: usize = 16;
/// `direct::max_rows` of the AVX-VNNI kernel: AVX-VNNI machines pack with the AVX2
/// transpose and then run a faster packed kernel than AVX2 ones, so packing wins earlier. One
/// thread, 4096 x 4096, measured through the VL encoding on this Zen 4 (`direct_throughput`):
/// direct against pack + packed, M = 8 2.67-2.79 vs 3.45-3.92 ms, 9 3.49-3.52 vs 3.68-3.71,
/// 12 4.40-4.51 vs 4.03-4.13, 16 5.39-5.45 vs 4.13-4.34. Up to 8 rows (one pass over B
/// without a zero point) the direct kernel is never the slower one.
pub(crate) const AVX_VNNI_DIRECT_ROWS: usize = 8;

/// Columns of B per direct block call: rows of B are read in runs of up to 4 KiB (the
/// prefetchers and DRAM pages like long runs); the partial sums of up to 9 rows (144 KiB)
/// stay in L2. Measured at M = 1 (4096 x 4096, one Zen 4 core): 1024 columns 0.54 ms, 2048
/// 0.47, 4096 0.45.
pub(crate) const DIRECT_COLS: usize = 4096;
/// Row stride of the partial sums: 1 KiB past a multiple of 4 KiB, so that the rows of one
/// panel sit at different offsets modulo 4 KiB (a load that seems to alias an earlier store
/// to another row would wait for it).
pub(crate) const ACC_STRIDE: usize = DIRECT_COLS + 256;
/// k-groups summed in registers between loads and stores of the partial sums. Each group
/// reads 4 rows of B at once, and more concurrent row streams read slower (new 4 KiB pages
/// every 64 lines): at M = 1, 4096 x 4096 (AVX-512), 1 group 0.55 ms, 2 groups 0.45, 4 0.78.
pub(crate) const DIRECT_GROUPS: usize = 2;

/// The row tile holding row `r` of an M-row matrix: (first row, height). The same tiling
/// [`row_tiles`] produces for the whole matrix, and for every block of `plan::run` (blocks start
/// at multiples of 6 when M > 16).
#[inline(always)]
pub(crate) fn tile_of_row(m: usize, r: usize) -> (usize, usize) {
    if m <= 6 {
        (0, m)
    } else if m <= 16 {
        // 2 or 3 tiles of near-equal height (at most 6: a tile reads whole k-groups of its
        // panel, 256 contiguous bytes; 8-row tiles took the panel in halves and M = 8 on a
        // packed 4096 x 4096 B ran at 1.5-2.1 ms instead of 0.9-1.0).
        let t = m.div_ceil(6);
        let (base, extra) = (m / t, m % t);
        let big = extra * (base + 1);
        if r < big {
            (r / (base + 1) * (base + 1), base + 1)
        } else {
            (big + (r - big) / base * base, base)
        }
    } else {
        let r0 = r / 6 * 6;
        (r0, (m - r0).min(6))
    }
}

/// The row tiles of rows `m0..m1` of an M-row matrix, as `f(first_row, height)`: one tile up to
/// 6 rows, two or three of near-equal height up to 16, else 6-row tiles from row 0 (see
/// [`tile_of_row`]; `m0` must start one).
#[inline(always)]
pub(crate) fn row_tiles(m: usize, m0: usize, m1: usize, mut f: impl FnMut(usize, usize)) {
    let mut r = m0;
    while r < m1 {
        let (r0, h) = tile_of_row(m, r);
        debug_assert_eq!(r0, r);
        f(r, h);
        r += h;
    }
}

/// One call of a SIMD packing transpose (`avx2::pack_lines`, `avx512::pack_lines`): the full
/// 4-row x 64-column blocks of row-major B (`n` columns) in panels `0..panels`, XOR `flip`,
/// written as lines of the packed buffer `out` (64-byte aligned, panel stride `pbytes`).
#[derive(Clone, Copy)]
pub(crate) struct PackLines<'a> {
    pub b: &'a [u8],
    pub n: usize,
    pub panels: usize,
    pub flip: u8,
    pub out: *mut u8,
    pub pbytes: usize,
}

/// The operands of one direct-kernel call (`direct.rs`): rows of A from `a` (row stride `lda`
/// elements: bytes, or int16 pairs for AVX2), and the `nc` columns from `c0` of row-major B
/// (`k` x `n` bytes).
#[derive(Clone, Copy)]
pub(crate) struct DirectOperands<A> {
    pub a: *const A,
    pub lda: usize,
    pub b: *const u8,
    pub k: usize,
    pub n: usize,
    pub c0: usize,
    pub nc: usize,
}

/// A raw pointer that may cross threads; users guarantee disjoint access.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SyncPtr<T>(pub *mut T);
// SAFETY: only used to hand disjoint regions of one buffer to worker threads.
unsafe impl<T> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}
