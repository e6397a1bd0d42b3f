//! The compute kernels. One folder per op: `mod.rs` (safe entry: validate, then dispatch on
//! [`isa::active`]), `scalar.rs` (the reference twin that defines the semantics), one file per
//! ISA, and `tests.rs` (every ISA the host has equals the twin, bit for bit).

pub mod isa;
// pruning and sparse storage (issue 4)
pub mod rans;
pub mod select;
pub mod sparse;
// --- int8 matmul (issue 3) ---
pub mod matmul;

pub use isa::Isa;

pub(crate) mod level;

#[cfg(test)]
pub(crate) mod testutil;

// ---- quantization kernels (issue 2) ----
pub mod dequantize;
pub mod pack4;
pub mod quantize;
pub mod reduce;
