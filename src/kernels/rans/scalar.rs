//! The reference twin of the rANS loops (see `mod.rs` for the coder).

use super::{DecTable, EncTable, L, M, SCALE_BITS, WAYS};

#[inline(always)]
pub(super) fn put(x: &mut u32, s: usize, t: &EncTable, buf: &mut [u8], w: &mut usize) {
    let emit = *x >= t.x_max[s];
    // Always store, advance only when emitting (branch-free renormalization).
    // `w` counts u16 words; word k lives in buf[2k..2k + 2], little endian.
    buf[2 * *w - 2..2 * *w].copy_from_slice(&(*x as u16).to_le_bytes());
    *w -= emit as usize;
    if emit {
        *x >>= 16;
    }
    let cs = t.cmpl_shift[s];
    let q = (((*x as u64) * t.rcp[s] as u64) >> 32) as u32 >> (cs >> 16);
    *x = x
        .wrapping_add(t.bias[s])
        .wrapping_add(q.wrapping_mul(cs & 0xffff));
}

/// Encode `syms` into `buf` (`2 * (n + 1)` bytes); returns the final states and the byte
/// offset where the words (decoding order) start.
pub fn encode(syms: &[u8], t: &EncTable, buf: &mut [u8]) -> ([u32; WAYS], usize) {
    let n = syms.len();
    // Words are written backwards from the end (at most one per symbol).
    let mut w = buf.len() / 2;
    let mut x = [L; WAYS];
    let mut i = n;
    while !i.is_multiple_of(WAYS) {
        i -= 1;
        put(&mut x[i % WAYS], syms[i] as usize, t, buf, &mut w);
    }
    while i > 0 {
        i -= WAYS;
        let g = &syms[i..i + WAYS];
        for j in (0..WAYS).rev() {
            put(&mut x[j], g[j] as usize, t, buf, &mut w);
        }
    }
    (x, 2 * w)
}

/// One decoding step of state `x`; reads word `p` when renormalizing (0 past the end, which
/// the caller detects through `p`).
#[inline(always)]
pub(super) fn step(x: &mut u32, p: &mut usize, words: &[u8], t: &DecTable) -> u8 {
    let slot = *x & (M - 1);
    let s = t.sym[slot as usize];
    let e = t.fb[slot as usize];
    *x = (e & 0xffff) * (*x >> SCALE_BITS) + (e >> 16);
    let need = *x < L;
    let w = match words.get(2 * *p..2 * *p + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]) as u32,
        None => 0,
    };
    let nx = (*x << 16) | w;
    *x = if need { nx } else { *x };
    *p += need as usize;
    s
}

/// Decode `out.len()` symbols; false when the stream is inconsistent (see `mod.rs`).
pub fn decode(states: &[u32; WAYS], words: &[u8], t: &DecTable, out: &mut [u8]) -> bool {
    let nwords = words.len() / 2;
    let mut x = *states;
    let mut p = 0usize;
    let mut groups = out.chunks_exact_mut(WAYS);
    for g in &mut groups {
        for j in 0..WAYS {
            g[j] = step(&mut x[j], &mut p, words, t);
        }
        if p > nwords {
            return false;
        }
    }
    for (j, o) in groups.into_remainder().iter_mut().enumerate() {
        *o = step(&mut x[j], &mut p, words, t);
    }
    p == nwords && x.iter().all(|&s| s == L)
}
