//! Constants and small vocabularies of `.epk` versions 1 and 2, mirroring `FORMAT.md` (sections 1, 3,
//! 5 and 7). A change here is a change of the spec.

use crate::error::{Error, Result};

/// Section 1: the 8 magic bytes.
pub const MAGIC: [u8; 8] = *b"\x89EPK\r\n\x1a\n";
/// Section 1 / 8: version 1, the base format (what the writer writes when no tensor needs more).
pub const VERSION: u32 = 1;
/// Section 8: version 2 = version 1 + the `quant` payload role `in_scale` and param `in_axis`,
/// and float16 `quant` scales.
pub const VERSION_2: u32 = 2;
/// Section 1: the versions this reader knows.
pub const VERSIONS: [u32; 2] = [VERSION, VERSION_2];
/// Section 1: magic + version + flags + header_len.
pub const PREAMBLE_LEN: u64 = 24;
/// Payload alignment.
pub const ALIGN: u64 = 64;

/// Section 7 limits.
pub const MAX_HEADER_LEN: u64 = 64 << 20;
pub const MAX_TENSORS: usize = 1 << 20;
pub const MAX_NAME_LEN: usize = 1024;
pub const MAX_RANK: usize = 8;
pub const MAX_DIM: u64 = 1 << 40;
pub const MAX_NUMEL: u64 = 1 << 48;
pub const MAX_METADATA_BYTES: usize = 16 << 20;
/// Most JSON values + object keys a header may hold (counted before parsing): bounds the parsed
/// tree, which costs up to ~110 bytes per node for headers of tiny values.
pub const MAX_JSON_NODES: usize = 1 << 23;
pub const MAX_ZSTD_RATIO: u64 = 32768;
/// Largest integer a header may hold (exact in a double).
pub const MAX_JSON_INT: u64 = (1 << 53) - 1;
/// Longest `convention` / `format` string in params.
pub const MAX_SHORT_STR: usize = 32;

/// `align64(n)`, checked.
pub fn align(n: u64) -> Result<u64> {
    n.checked_add(ALIGN - 1)
        .map(|v| v / ALIGN * ALIGN)
        .ok_or_else(|| Error::format(format!("offset {n} overflows when aligned to {ALIGN}")))
}

/// Section 3: element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl Dtype {
    pub const ALL: [Dtype; 13] = [
        Dtype::F64,
        Dtype::F32,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I64,
        Dtype::I32,
        Dtype::I16,
        Dtype::I8,
        Dtype::U64,
        Dtype::U32,
        Dtype::U16,
        Dtype::U8,
        Dtype::Bool,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U64 => "uint64",
            Dtype::U32 => "uint32",
            Dtype::U16 => "uint16",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
        }
    }

    pub fn itemsize(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }

    pub fn parse(s: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == s)
    }
}

/// Section 2.3: how a payload's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    }
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "none" => Some(Compression::None),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Section 5: the encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    Float16,
    Quant,
    Sparse,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Float16 => "float16",
            Encoding::Quant => "quant",
            Encoding::Sparse => "sparse",
        }
    }
    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "raw" => Some(Encoding::Raw),
            "float16" => Some(Encoding::Float16),
            "quant" => Some(Encoding::Quant),
            "sparse" => Some(Encoding::Sparse),
            _ => None,
        }
    }
}

/// Section 2.2: check a tensor name. `Ok(())` or a message saying what is wrong.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::format("tensor name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::format(format!(
            "tensor name of {} bytes is longer than the limit of {MAX_NAME_LEN} bytes",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|&c| c.is_control() || c == '\\') {
        return Err(Error::format(format!(
            "tensor name {name:?} contains {}",
            if c == '\\' {
                "a backslash (path separator)".to_string()
            } else {
                format!("the control character U+{:04X}", c as u32)
            }
        )));
    }
    if name.starts_with('/') {
        return Err(Error::format(format!(
            "tensor name {name:?} starts with '/' (reads as an absolute path)"
        )));
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::format(format!(
            "tensor name {name:?} has an empty, '.' or '..' path component"
        )));
    }
    Ok(())
}

/// numel of a shape with the rank / dim / numel limits, checked.
pub fn numel(shape: &[u64], what: &str) -> Result<u64> {
    if shape.len() > MAX_RANK {
        return Err(Error::format(format!(
            "{what} has rank {}, above the limit of {MAX_RANK}",
            shape.len()
        )));
    }
    // The product of the non-zero dimensions is bounded as well (a zero dimension makes the
    // count 0, but `[0, 2^40, 2^40]` must not pass: numpy cannot even make an empty array of
    // that shape, and sub-products of it overflow).
    let mut n: u64 = 1;
    for &d in shape {
        if d > MAX_DIM {
            return Err(Error::format(format!(
                "{what} has a dimension of {d}, above the limit of {MAX_DIM}"
            )));
        }
        n = n
            .checked_mul(d.max(1))
            .filter(|&n| n <= MAX_NUMEL)
            .ok_or_else(|| {
                Error::format(format!(
                    "{what} has shape {shape:?} whose element count overflows the limit of {MAX_NUMEL}"
                ))
            })?;
    }
    Ok(if shape.contains(&0) { 0 } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["w", "fc1.weight", "dense/kernel:0", "a b", "é"] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a\\b",
            "a\nb",
            "a\u{85}",
            "a/",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numel_limits() {
        assert_eq!(numel(&[], "t").unwrap(), 1);
        assert_eq!(numel(&[3, 0, 5], "t").unwrap(), 0);
        assert!(numel(&[1 << 40, 1 << 40], "t").is_err());
        assert!(numel(&[(1 << 40) + 1], "t").is_err());
        assert!(numel(&[1; 9], "t").is_err());
        assert!(numel(&[0, 1 << 40, 1 << 40], "t").is_err());
        assert_eq!(numel(&[0, 1 << 40, 1 << 8], "t").unwrap(), 0);
    }

    #[test]
    fn align64() {
        assert_eq!(align(0).unwrap(), 0);
        assert_eq!(align(1).unwrap(), 64);
        assert_eq!(align(64).unwrap(), 64);
        assert!(align(u64::MAX).is_err());
    }
}
