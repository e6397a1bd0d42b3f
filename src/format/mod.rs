//! The `.epk` file format, version 1. `FORMAT.md` is the normative spec; [`spec`] mirrors its
//! constants, [`header`] parses and validates the header, [`reader`] opens files lazily
//! (memory map, checksum verified on access), [`writer`] writes them incrementally and
//! atomically.

pub mod header;
pub mod reader;
pub mod safetensors;
pub mod spec;
pub mod writer;

#[cfg(test)]
mod tests;

pub use header::{Header, Payload, TensorRecord};
pub use reader::{Parsed, Reader};
pub use spec::{Compression, Dtype, Encoding};
pub use writer::{encode_payload, EncodedPayload, TensorMeta, Writer};
