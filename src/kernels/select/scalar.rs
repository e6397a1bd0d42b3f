//! The reference twin of the select kernel's split step.

/// For one block of keys (elements `base..base + keys.len()`): `keep[j] = (key >> 20) > bin`,
/// and append `(base + j, key)` of the keys with `key >> 20 == bin` at `ci[c..]` / `ck[c..]`.
/// Returns the new cursor. numpy: `keep = d > bin; idx = base + np.flatnonzero(d == bin)`.
pub fn split_block(
    keys: &[u32],
    base: u64,
    bin: u32,
    keep: &mut [bool],
    ci: &mut [u64],
    ck: &mut [u32],
    mut c: usize,
) -> usize {
    for (j, (&k, o)) in keys.iter().zip(keep.iter_mut()).enumerate() {
        let d = k >> super::TOP_BITS;
        *o = d > bin;
        if d == bin {
            ci[c] = base + j as u64;
            ck[c] = k;
            c += 1;
        }
    }
    c
}
