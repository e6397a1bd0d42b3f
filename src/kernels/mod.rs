//! The compute kernels. One folder per op: `mod.rs` (safe entry: validate, then dispatch on
//! [`isa::active`]), `scalar.rs` (the reference twin that defines the semantics), one file per
//! ISA, and `tests.rs` (every ISA the host has equals the twin, bit for bit).

pub mod isa;

pub use isa::Isa;

// Quantization: range reductions, quantize / dequantize runs, 4-bit packing.
pub mod dequantize;
pub mod pack4;
pub mod quantize;
pub mod reduce;

// int8 x int8 -> int32 matrix multiplication with fused epilogues.
pub mod matmul;

// Pruning and sparse storage: k-smallest selection, mask / compress / expand, rANS coding.
pub mod rans;
pub mod select;
pub mod sparse;

#[cfg(test)]
pub(crate) mod testutil;
