//! The reference twins of the sparse kernels; they define the semantics.
//!
//! The mask layout is one bit per element, least significant bit first:
//! bit `i % 8` of byte `i / 8` belongs to element `i`, and the unused high bits of the last
//! byte are zero. That is `np.packbits(mask, bitorder="little")`.

use super::Lane;

/// Build the bit mask of `values`: element `i` is kept when `values[i] & care != 0`.
/// Writes `values.len().div_ceil(8)` bytes of `out` and returns the number of kept elements.
///
/// numpy: `np.packbits((v & care) != 0, bitorder="little")` (for floats `care` drops the sign
/// bit, so `-0.0` counts as zero: `np.packbits(x != 0, bitorder="little")`).
pub fn build_mask<T: Lane>(values: &[T], care: T, out: &mut [u8]) -> usize {
    let mut nnz = 0usize;
    for (chunk, byte) in values.chunks(8).zip(out.iter_mut()) {
        let mut b = 0u8;
        for (j, v) in chunk.iter().enumerate() {
            if v.and(care) != T::ZERO {
                b |= 1 << j;
            }
        }
        nnz += b.count_ones() as usize;
        *byte = b;
    }
    nnz
}

/// Gather the kept values: `out[j]` = the value of the `j`-th set bit of `mask`, for every set
/// bit among the first `values.len()` elements. Writes exactly that many entries of `out`
/// (the caller checked it is long enough) and returns the count.
///
/// numpy: `values[np.unpackbits(mask, count=n, bitorder="little").astype(bool)]`.
pub fn compress<T: Lane>(values: &[T], mask: &[u8], out: &mut [T]) -> usize {
    let mut j = 0usize;
    for (i, v) in values.iter().enumerate() {
        if mask[i / 8] >> (i % 8) & 1 != 0 {
            out[j] = *v;
            j += 1;
        }
    }
    j
}

/// Scatter kept values back into dense form: `out[i]` = the next kept value where bit `i` is
/// set, else zero. Reads exactly `popcount(mask over out.len() bits)` entries of `kept`
/// (the caller checked it is long enough) and returns that count.
///
/// numpy: `d = np.zeros(n, dtype); d[np.unpackbits(mask, count=n, bitorder="little") == 1] = kept`.
pub fn expand<T: Lane>(mask: &[u8], kept: &[T], out: &mut [T]) -> usize {
    let mut j = 0usize;
    for (i, o) in out.iter_mut().enumerate() {
        if mask[i / 8] >> (i % 8) & 1 != 0 {
            *o = kept[j];
            j += 1;
        } else {
            *o = T::ZERO;
        }
    }
    j
}

/// Set bits of `bytes`, eight bytes at a time. numpy: `np.unpackbits(bytes).sum()`.
pub fn popcount_bytes(bytes: &[u8]) -> usize {
    let mut q = bytes.chunks_exact(8);
    let mut c = 0usize;
    for w in &mut q {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        c += u64::from_le_bytes(a).count_ones() as usize;
    }
    c + q
        .remainder()
        .iter()
        .map(|b| b.count_ones() as usize)
        .sum::<usize>()
}
