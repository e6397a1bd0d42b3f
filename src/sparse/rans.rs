//! A static order-0 rANS coder over bytes (256 symbols), the entropy coder of sparse sections.
//!
//! * Frequencies are the byte histogram of the section normalized to `2^15` (every byte that
//!   occurs gets at least 1), so the coded size is within a fraction of a percent of the
//!   order-0 entropy of the section plus the table.
//! * State in `[2^15, 2^31)`, renormalized 16 bits at a time, lower bound `L = 2^15` (ryg's
//!   `rans_word` variant); 32 interleaved states (`crate::kernels::rans`, AVX-512 + scalar).
//! * The section is cut into chunks of [`CHUNK_SYMS`] symbols coded independently with the
//!   same table, so chunks encode and decode in parallel, and a decoder can bound the decoded
//!   size by the input size before allocating (each chunk costs at least 128 bytes of states).
//!
//! Payload layout (all little endian):
//!
//! ```text
//! present: [u8; 32]          bit s set = byte value s occurs
//! freq:    LEB128 (1..=3 bytes) per present s (ascending s), summing to 2^15, each >= 1
//! chunk_len: u32 per chunk    bytes of each chunk (chunks = ceil(raw_len / CHUNK_SYMS))
//! chunks:  per chunk: 32 x u32 final states, then u16 words
//! ```
//!
//! A decoder checks that every chunk starts from states in `[L, 2^31)`, reads no word past the
//! chunk, consumes every word, and ends with every state back at `L` (the encoder's start).

#![allow(clippy::needless_range_loop)] // index loops over the 256 symbols read clearer

use crate::error::{Error, Result};
use crate::parallel;

use crate::kernels::rans::{self as kr, DecTable, EncTable, L, M, SCALE_BITS, WAYS};
/// Symbols per independently coded chunk.
pub const CHUNK_SYMS: usize = 1 << 20;
/// Bytes a chunk costs at the least (its final states).
pub const MIN_CHUNK_BYTES: usize = 4 * WAYS;

/// Normalized frequencies (sum `2^15`) and cumulative starts.
#[derive(Clone, Debug)]
pub struct Table {
    freq: [u32; 256],
    cum: [u32; 256],
}

/// Byte histogram.
pub fn histogram(data: &[u8]) -> [u64; 256] {
    let mut h = [[0u32; 256]; 4];
    let mut out = [0u64; 256];
    // Count in u32 blocks to stay overflow-free, four tables against store conflicts.
    for block in data.chunks(1 << 30) {
        let mut q = block.chunks_exact(4);
        for c in &mut q {
            h[0][c[0] as usize] += 1;
            h[1][c[1] as usize] += 1;
            h[2][c[2] as usize] += 1;
            h[3][c[3] as usize] += 1;
        }
        for &b in q.remainder() {
            h[0][b as usize] += 1;
        }
        for s in 0..256 {
            out[s] += (h[0][s] + h[1][s] + h[2][s] + h[3][s]) as u64;
        }
        h = [[0u32; 256]; 4];
    }
    out
}

impl Table {
    /// Normalize a histogram (not all zero) to frequencies summing to `2^15`.
    pub fn from_counts(counts: &[u64; 256]) -> Table {
        let total: u64 = counts.iter().sum();
        let mut f = [0u32; 256];
        if total > 0 {
            for s in 0..256 {
                if counts[s] > 0 {
                    let v = (counts[s] as f64 * M as f64 / total as f64).round() as u32;
                    f[s] = v.clamp(1, M);
                }
            }
            let mut sum: u32 = f.iter().sum();
            // Greedy fix-up: each step moves one unit where it costs the fewest bits.
            while sum > M {
                let mut best = usize::MAX;
                let mut best_cost = f64::INFINITY;
                for s in 0..256 {
                    if f[s] > 1 {
                        let c = counts[s] as f64 * ((f[s] as f64) / (f[s] - 1) as f64).ln();
                        if c < best_cost {
                            best_cost = c;
                            best = s;
                        }
                    }
                }
                f[best] -= 1;
                sum -= 1;
            }
            while sum < M {
                let mut best = 0;
                let mut best_gain = -1.0;
                for s in 0..256 {
                    if counts[s] > 0 {
                        let g = counts[s] as f64 * ((f[s] + 1) as f64 / f[s] as f64).ln();
                        if g > best_gain {
                            best_gain = g;
                            best = s;
                        }
                    }
                }
                f[best] += 1;
                sum += 1;
            }
        }
        Table::from_freq(f)
    }

    fn from_freq(freq: [u32; 256]) -> Table {
        let mut cum = [0u32; 256];
        let mut c = 0;
        for s in 0..256 {
            cum[s] = c;
            c += freq[s];
        }
        Table { freq, cum }
    }

    /// Estimated coded size in bits of data with histogram `counts` under this table.
    pub fn cost_bits(&self, counts: &[u64; 256]) -> f64 {
        let mut bits = 0.0;
        for s in 0..256 {
            if counts[s] > 0 {
                bits += counts[s] as f64 * (SCALE_BITS as f64 - (self.freq[s] as f64).log2());
            }
        }
        bits
    }

    /// Serialized table size in bytes.
    pub fn serialized_len(&self) -> usize {
        32 + self
            .freq
            .iter()
            .filter(|&&f| f > 0)
            .map(|&f| 1 + (f >= 1 << 7) as usize + (f >= 1 << 14) as usize)
            .sum::<usize>()
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut present = [0u8; 32];
        for s in 0..256 {
            if self.freq[s] > 0 {
                present[s / 8] |= 1 << (s % 8);
            }
        }
        out.extend_from_slice(&present);
        for s in 0..256 {
            let mut f = self.freq[s];
            while f >= 0x80 {
                out.push(0x80 | (f & 0x7f) as u8);
                f >>= 7;
            }
            if self.freq[s] > 0 {
                out.push(f as u8);
            }
        }
    }

    /// Parse and validate a table at the front of `buf`; returns it and the bytes used.
    fn read(buf: &[u8], what: &str) -> Result<(Table, usize)> {
        let present = buf
            .get(..32)
            .ok_or_else(|| Error::format(format!("{what}: rANS frequency table truncated")))?;
        let mut f = [0u32; 256];
        let mut pos = 32;
        let mut sum = 0u32;
        for s in 0..256 {
            if present[s / 8] >> (s % 8) & 1 != 0 {
                // LEB128, at most 3 bytes
                let mut v = 0u32;
                let mut k = 0;
                loop {
                    let b = *buf.get(pos).ok_or_else(|| {
                        Error::format(format!("{what}: rANS frequency table truncated"))
                    })?;
                    pos += 1;
                    v |= ((b & 0x7f) as u32) << (7 * k);
                    k += 1;
                    if b & 0x80 == 0 {
                        break;
                    }
                    if k == 3 {
                        return Err(Error::format(format!(
                            "{what}: rANS frequency of byte {s} is over-long"
                        )));
                    }
                }
                if v == 0 || v > M {
                    return Err(Error::format(format!(
                        "{what}: rANS frequency of byte {s} is 0 or above 2^15"
                    )));
                }
                f[s] = v;
                sum += v;
            }
        }
        if sum != M {
            return Err(Error::format(format!(
                "{what}: rANS frequencies sum to {sum}, expected {M}"
            )));
        }
        Ok((Table::from_freq(f), pos))
    }
}

/// Code one chunk into `out` (states, then words); returns its length in bytes.
fn encode_chunk(syms: &[u8], t: &EncTable, scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> usize {
    let (x, start) = kr::encode(syms, t, scratch);
    let before = out.len();
    for s in x {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(&scratch[start..]);
    out.len() - before
}

fn decode_chunk(chunk: &[u8], d: &DecTable, out: &mut [u8], what: &str) -> Result<()> {
    let bad = |m: &str| Error::format(format!("{what}: rANS chunk {m}"));
    if chunk.len() < 4 * WAYS || !(chunk.len() - 4 * WAYS).is_multiple_of(2) {
        return Err(bad("has an invalid length"));
    }
    let mut x = [0u32; WAYS];
    for (j, s) in x.iter_mut().enumerate() {
        let b = &chunk[4 * j..4 * j + 4];
        *s = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if !(L..1 << 31).contains(s) {
            return Err(bad("starts from an invalid state"));
        }
    }
    if !kr::decode(&x, &chunk[4 * WAYS..], d, out) {
        return Err(bad("does not decode consistently (corrupt data)"));
    }
    Ok(())
}

/// Estimated bytes of the rANS payload of data with histogram `counts` (`n` symbols).
pub fn estimate(counts: &[u64; 256], n: usize) -> (Table, usize) {
    let t = Table::from_counts(counts);
    let chunks = n.div_ceil(CHUNK_SYMS);
    let bytes = (t.cost_bits(counts) / 8.0).ceil() as usize
        + t.serialized_len()
        + chunks * (4 + MIN_CHUNK_BYTES + 2);
    (t, bytes)
}

/// Encode `data` with table `t` (built from its histogram), appending the payload to `out`.
pub fn encode(data: &[u8], t: &Table, out: &mut Vec<u8>) {
    t.write(out);
    let pieces: Vec<&[u8]> = data.chunks(CHUNK_SYMS).collect();
    let t = &EncTable::new(&t.freq, &t.cum);
    let lens_at = out.len();
    out.resize(lens_at + 4 * pieces.len(), 0);
    let lens: Vec<usize> = if pieces.len() > 1 && parallel::num_threads() > 1 {
        use rayon::prelude::*;
        let coded: Vec<Vec<u8>> = parallel::install(|| {
            pieces
                .par_iter()
                .map(|p| {
                    let mut c = Vec::new();
                    encode_chunk(p, t, &mut Vec::new(), &mut c);
                    c
                })
                .collect()
        });
        coded
            .iter()
            .map(|c| {
                out.extend_from_slice(c);
                c.len()
            })
            .collect()
    } else {
        let mut scratch = Vec::new();
        pieces
            .iter()
            .map(|p| encode_chunk(p, t, &mut scratch, out))
            .collect()
    };
    for (k, len) in lens.into_iter().enumerate() {
        out[lens_at + 4 * k..lens_at + 4 * k + 4].copy_from_slice(&(len as u32).to_le_bytes());
    }
}

/// The largest decoded size a payload of `payload_len` bytes can describe.
pub fn max_decoded_len(payload_len: usize) -> usize {
    // Every chunk costs 4 (its length) + 128 (its states) bytes at least.
    (payload_len / (4 + MIN_CHUNK_BYTES)).saturating_mul(CHUNK_SYMS)
}

/// Decode a payload into `out` (whose length is the decoded size, already checked against
/// [`max_decoded_len`]). `what` names the section in errors.
pub fn decode(payload: &[u8], out: &mut [u8], what: &str) -> Result<()> {
    let (t, mut pos) = Table::read(payload, what)?;
    let nchunks = out.len().div_ceil(CHUNK_SYMS);
    let lens_end = nchunks
        .checked_mul(4)
        .and_then(|v| v.checked_add(pos))
        .filter(|&e| e <= payload.len())
        .ok_or_else(|| Error::format(format!("{what}: rANS chunk lengths truncated")))?;
    let mut spans = Vec::with_capacity(nchunks);
    let mut start = lens_end;
    while pos < lens_end {
        let b = &payload[pos..pos + 4];
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= payload.len())
            .ok_or_else(|| {
                Error::format(format!(
                    "{what}: rANS chunk {} claims {len} bytes, past the end of the section",
                    spans.len()
                ))
            })?;
        spans.push((start, end));
        start = end;
        pos += 4;
    }
    if start != payload.len() {
        return Err(Error::format(format!(
            "{what}: {} bytes after the last rANS chunk",
            payload.len() - start
        )));
    }
    let d = DecTable::new(&t.freq, &t.cum);
    let outs: Vec<&mut [u8]> = out.chunks_mut(CHUNK_SYMS).collect();
    if outs.len() > 1 && parallel::num_threads() > 1 {
        use rayon::prelude::*;
        parallel::install(|| {
            outs.into_par_iter()
                .zip(spans.par_iter())
                .try_for_each(|(o, &(a, b))| decode_chunk(&payload[a..b], &d, o, what))
        })
    } else {
        for (o, &(a, b)) in outs.into_iter().zip(&spans) {
            decode_chunk(&payload[a..b], &d, o, what)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8]) -> usize {
        let t = Table::from_counts(&histogram(data));
        let mut buf = Vec::new();
        encode(data, &t, &mut buf);
        let mut out = vec![0xAAu8; data.len()];
        decode(&buf, &mut out, "test").unwrap();
        assert_eq!(out, data);
        buf.len()
    }

    #[test]
    fn roundtrips_all_lengths_and_skews() {
        let mut seed = 1u64;
        for n in (1..40).chain([1000, 65537, CHUNK_SYMS + 3]) {
            for kind in 0..3 {
                let data: Vec<u8> = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let r = (seed >> 40) as u32;
                        match kind {
                            0 => r as u8,
                            1 => r.is_multiple_of(100) as u8 * (r >> 8) as u8,
                            _ => 7,
                        }
                    })
                    .collect();
                roundtrip(&data);
            }
        }
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * i % 251) as u8).collect();
        let t = Table::from_counts(&histogram(&data));
        let mut buf = Vec::new();
        encode(&data, &t, &mut buf);
        let mut out = vec![0u8; data.len()];
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut], &mut out, "t").is_err(), "cut {cut}");
        }
        for i in (0..buf.len()).step_by(7) {
            let mut b = buf.clone();
            b[i] ^= 0x5a;
            let _ = decode(&b, &mut out, "t"); // must not panic
        }
    }
}

#[cfg(test)]
mod timing {
    /// `cargo test --release --lib rans_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn rans_timing() {
        let n = 8 << 20;
        let mut seed = 1u64;
        let data: Vec<u8> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let r = (seed >> 33) as u32;
                ((r % 64) as i32 - 32 + (r >> 20) as i32 % 7) as u8
            })
            .collect();
        crate::parallel::set_num_threads(1).unwrap();
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            let h = super::histogram(&data);
            let t1 = std::time::Instant::now();
            let t = super::Table::from_counts(&h);
            let mut out = Vec::with_capacity(n);
            super::encode(&data, &t, &mut out);
            let t2 = std::time::Instant::now();
            let mut dec = vec![0u8; n];
            super::decode(&out, &mut dec, "t").unwrap();
            let t3 = std::time::Instant::now();
            eprintln!(
                "hist {:?} encode {:?} decode {:?}",
                t1 - t0,
                t2 - t1,
                t3 - t2
            );
        }
    }
}
