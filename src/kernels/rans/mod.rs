//! The hot loops of the static rANS coder used by sparse storage (`crate::sparse::rans` owns
//! the tables' construction, the chunking and the byte format).
//!
//! Coder: 32-bit states in `[L, 2^31)` with `L = 2^15`, probabilities in `2^15` units,
//! 16-bit renormalization (ryg's `rans_word`), [`WAYS`] = 32 interleaved states: symbol `i`
//! of a chunk uses state `i % 32`. The encoder runs backwards and its words come out in
//! decoding order; the decoder reads one 16-bit word whenever a state drops below `L`.
//! Encoding divides through per-symbol reciprocals (Alverson's exact method, as in ryg's
//! `rans_byte`), exact because states stay below `2^31`.
//!
//! `scalar.rs` is the twin; `avx512.rs` runs 16 states per zmm (two zmm = 32 ways) with
//! gathers for the tables, `vpcompressw` (merge-masked register form) for the emitted words
//! and `vpexpandd` to route the words read back to the lanes that need them.

use crate::error::{Error, Result};
use crate::kernels::isa::{self, Avx512Only, Isa};

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod scalar;
#[cfg(test)]
mod tests;

/// Probability precision in bits.
pub const SCALE_BITS: u32 = 15;
/// Total frequency.
pub const M: u32 = 1 << SCALE_BITS;
/// Lower bound of a normalized state (and the encoder's initial state).
pub const L: u32 = 1 << 15;
/// Interleaved states per chunk.
pub const WAYS: usize = 32;

/// Encoder constants of the 256 symbols.
#[derive(Clone, Debug)]
pub struct EncTable {
    /// Renormalize (emit a word) while `x >= x_max`.
    pub x_max: [u32; 256],
    /// Reciprocal of the frequency.
    pub rcp: [u32; 256],
    /// Added after the division: `cum` (or `cum + M - 1` for frequency 1).
    pub bias: [u32; 256],
    /// `(M - freq) | shift << 16`.
    pub cmpl_shift: [u32; 256],
    /// `bias | (M - freq) << 16` (the SIMD encoder derives the shift from the frequency).
    pub bias_cmpl: [u32; 256],
}

impl EncTable {
    /// From frequencies (summing to `M`) and cumulative starts.
    pub fn new(freq: &[u32; 256], cum: &[u32; 256]) -> EncTable {
        let mut t = EncTable {
            x_max: [0; 256],
            rcp: [0; 256],
            bias: [0; 256],
            cmpl_shift: [0; 256],
            bias_cmpl: [0; 256],
        };
        for s in 0..256 {
            let f = freq[s];
            if f == 0 {
                continue;
            }
            t.x_max[s] = ((L >> SCALE_BITS) << 16) * f;
            let cmpl = M - f;
            if f < 2 {
                t.rcp[s] = u32::MAX;
                t.bias[s] = cum[s] + M - 1;
                t.cmpl_shift[s] = cmpl;
            } else {
                let mut shift = 0;
                while f > (1u32 << shift) {
                    shift += 1;
                }
                t.rcp[s] = (1u64 << (shift + 31)).div_ceil(f as u64) as u32;
                t.bias[s] = cum[s];
                t.cmpl_shift[s] = cmpl | (shift - 1) << 16;
            }
            t.bias_cmpl[s] = t.bias[s] | cmpl << 16;
        }
        t
    }
}

/// Decoder tables: per slot, the symbol and `freq | (slot - cum) << 16`.
#[derive(Clone, Debug)]
pub struct DecTable {
    /// Symbol of each slot (`M` entries, plus 3 bytes of padding for 4-byte gathers).
    pub sym: Vec<u8>,
    /// `freq | (slot - cum) << 16` of each slot.
    pub fb: Vec<u32>,
}

impl DecTable {
    /// From frequencies (summing to `M`) and cumulative starts.
    pub fn new(freq: &[u32; 256], cum: &[u32; 256]) -> DecTable {
        let mut sym = vec![0u8; M as usize + 3];
        let mut fb = vec![0u32; M as usize];
        for s in 0..256 {
            let a = cum[s] as usize;
            for k in 0..freq[s] as usize {
                sym[a + k] = s as u8;
                fb[a + k] = freq[s] | (k as u32) << 16;
            }
        }
        DecTable { sym, fb }
    }
}

/// Encode `syms` from the initial states `L`. `buf` is scratch space (reused across calls,
/// resized to `2 * (syms.len() + 1)` bytes); the words, little-endian u16 in decoding order,
/// end up in `buf[start..]`. Returns the final states and `start`.
pub fn encode(syms: &[u8], t: &EncTable, buf: &mut Vec<u8>) -> ([u32; WAYS], usize) {
    encode_with(isa::active(), syms, t, buf).expect("the active ISA is supported")
}

/// [`encode`] at a given level.
pub fn encode_with(
    isa: Isa,
    syms: &[u8],
    t: &EncTable,
    buf: &mut Vec<u8>,
) -> Result<([u32; WAYS], usize)> {
    check(isa)?;
    let need = 2 * (syms.len() + 1);
    if buf.len() > need {
        buf.truncate(need);
    } else {
        buf.resize(need, 0);
    }
    Ok(match isa::kernels(isa).rans {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX-512 (checked above); buf has 2 * (n + 1) bytes.
        Avx512Only::Avx512 => unsafe { avx512::encode(syms, t, buf) },
        Avx512Only::Scalar => scalar::encode(syms, t, buf),
    })
}

/// Decode `out.len()` symbols from `states` (each in `[L, 2^31)`, checked by the caller) and
/// `words` (little-endian u16 pairs). Returns false when the stream is inconsistent: it reads
/// past its words, leaves words unread, or does not end with every state at `L`.
pub fn decode(states: &[u32; WAYS], words: &[u8], t: &DecTable, out: &mut [u8]) -> bool {
    decode_with(isa::active(), states, words, t, out).expect("the active ISA is supported")
}

/// [`decode`] at a given level.
pub fn decode_with(
    isa: Isa,
    states: &[u32; WAYS],
    words: &[u8],
    t: &DecTable,
    out: &mut [u8],
) -> Result<bool> {
    check(isa)?;
    if states.iter().any(|s| !(L..1 << 31).contains(s)) || t.sym.len() != M as usize + 3 {
        return Ok(false);
    }
    Ok(match isa::kernels(isa).rans {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX-512 (checked above); states validated.
        Avx512Only::Avx512 => unsafe { avx512::decode(states, words, t, out) },
        Avx512Only::Scalar => scalar::decode(states, words, t, out),
    })
}

fn check(isa: Isa) -> Result<()> {
    if !isa.is_supported() {
        return Err(Error::arg(format!("this CPU does not support {isa}")));
    }
    Ok(())
}
