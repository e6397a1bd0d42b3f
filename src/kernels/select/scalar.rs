//! The reference twin of the select kernel's split step.

/// For one block of keys (elements `base..base + keys.len()`): `keep[j] = key > hi`, and
/// append `(base + j, key)` of the keys with `lo <= key <= hi` at `ci[c..]` / `ck[c..]`.
/// Returns the new cursor, how many keys were below `lo`, and whether a NaN key
/// (`> 0x7f80_0000`) was seen. numpy: `keep = k > hi; idx = base + np.flatnonzero((k >= lo) &
/// (k <= hi)); below = (k < lo).sum(); nan = (k > 0x7f800000).any()`.
#[allow(clippy::too_many_arguments)]
pub fn split_block(
    keys: &[u32],
    base: u64,
    lo: u32,
    hi: u32,
    keep: &mut [bool],
    ci: &mut [u64],
    ck: &mut [u32],
    mut c: usize,
) -> (usize, usize, bool) {
    let mut below = 0usize;
    let mut nan = false;
    for (j, (&k, o)) in keys.iter().zip(keep.iter_mut()).enumerate() {
        *o = k > hi;
        below += (k < lo) as usize;
        nan |= k > 0x7f80_0000;
        if lo <= k && k <= hi {
            ci[c] = base + j as u64;
            ck[c] = k;
            c += 1;
        }
    }
    (c, below, nan)
}
