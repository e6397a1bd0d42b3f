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
//!
//! The type and what the kernels read of it; `pack.rs` makes it. It depends on `layout.rs`
//! alone, so the kernels that read it never depend on the code that packs.

use super::layout::{Dtype, GROUP_BYTES, PANEL, STRIP};

/// One 64-byte line of the packed buffer (one `vpdpbusd` operand), 64-byte aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct Line(pub(super) [u8; 64]);

/// B packed for the int8 kernels; immutable and shareable between threads.
pub struct PackedMatrix {
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) kp: usize,
    pub(super) np: usize,
    pub(super) dtype: Dtype,
    pub(super) lines: Vec<Line>,
    /// `sum_k Bs[k, n]` for every padded column (wrapping int32).
    pub(super) col_sums: Vec<i32>,
    /// The zero point as given: empty, one value, or one per column.
    pub(super) zero_point: Vec<i32>,
    /// `b'[n] = zb[n] - (128 if uint8 else 0)` so that `B - zb = Bs - b'`; `None` when all zero.
    pub(super) b_prime: Option<Vec<i32>>,
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

impl PackedMatrix {
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
pub(super) fn panel_groups_for(groups: usize) -> usize {
    if groups > 0 && groups.is_multiple_of(16) {
        groups + 1
    } else {
        groups
    }
}
