//! Reading the header of a safetensors file written by anyone (a checkpoint to compress, the
//! safetensors form of an `.epk` file, calibration statistics), with the bounds of the `.epk`
//! header: the length is checked against the file before it is read, the JSON is parsed with
//! the same node, depth and duplicate-key limits ([`parse_json`]), every field is typed and
//! range-checked, and the tensors' byte ranges must tile the data section (no holes, no
//! overlaps, nothing after the last one), as the safetensors library itself requires.
//! Errors are [`Error::Format`] naming the tensor and the field, never quoting more than a
//! few hundred bytes of the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::header::{brief, clip, parse_json};
use super::spec::{self, Dtype};
use crate::error::{Error, Result};

/// Largest safetensors header read (the safetensors library's own limit, 100 MB).
pub const MAX_ST_HEADER_LEN: u64 = 100_000_000;

/// The safetensors dtype codes edgepack reads, with our dtypes.
pub const ST_DTYPES: [(&str, Dtype); 13] = [
    ("F64", Dtype::F64),
    ("F32", Dtype::F32),
    ("F16", Dtype::F16),
    ("BF16", Dtype::BF16),
    ("I64", Dtype::I64),
    ("I32", Dtype::I32),
    ("I16", Dtype::I16),
    ("I8", Dtype::I8),
    ("U64", Dtype::U64),
    ("U32", Dtype::U32),
    ("U16", Dtype::U16),
    ("U8", Dtype::U8),
    ("BOOL", Dtype::Bool),
];

/// One tensor of a safetensors header; `begin..end` is relative to the data section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub begin: u64,
    pub end: u64,
}

/// A validated safetensors header.
#[derive(Debug, Clone)]
pub struct StHeader {
    /// `__metadata__` (str -> str), when present.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Tensors sorted by name.
    pub tensors: Vec<StTensor>,
    /// Absolute offset of the data section (8 + header length).
    pub data_start: u64,
    /// Length of the whole file.
    pub file_len: u64,
}

/// Check the 8-byte length prefix of a file of `file_len` bytes; returns the header length.
pub fn header_len(prefix: &[u8], file_len: u64) -> Result<u64> {
    let p: [u8; 8] = prefix
        .get(..8)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| {
            Error::format(format!(
                "too short for a safetensors file ({file_len} bytes)"
            ))
        })?;
    let n = u64::from_le_bytes(p);
    if n.checked_add(8).is_none_or(|e| e > file_len) {
        return Err(Error::format(format!(
            "safetensors header length {n} is beyond the file ({file_len} bytes)"
        )));
    }
    if n > MAX_ST_HEADER_LEN {
        return Err(Error::format(format!(
            "safetensors header length {n} is above the limit of {MAX_ST_HEADER_LEN} bytes"
        )));
    }
    Ok(n)
}

fn st_dtype(v: &Value, what: &str) -> Result<Dtype> {
    let s = v.as_str().ok_or_else(|| {
        Error::format(format!(
            "{what}: \"dtype\" must be a string, found {}",
            brief(v)
        ))
    })?;
    ST_DTYPES
        .iter()
        .find(|(c, _)| *c == s)
        .map(|(_, d)| *d)
        .ok_or_else(|| {
            Error::format(format!(
                "{what}: \"dtype\" {} is not one edgepack reads (F64, F32, F16, BF16, I64, I32, \
                 I16, I8, U64, U32, U16, U8, BOOL)",
                clip(s)
            ))
        })
}

fn uint(v: &Value, what: &str) -> Result<u64> {
    match v.as_u64() {
        Some(n) if n <= spec::MAX_JSON_INT => Ok(n),
        Some(n) => Err(Error::format(format!(
            "{what} is {n}, above the largest allowed integer 2^53-1"
        ))),
        None => Err(Error::format(format!(
            "{what} must be a non-negative integer, found {}",
            brief(v)
        ))),
    }
}

fn uint_array(v: &Value, what: &str, len: Option<usize>) -> Result<Vec<u64>> {
    let a = v
        .as_array()
        .ok_or_else(|| Error::format(format!("{what} must be an array, found {}", brief(v))))?;
    if let Some(l) = len {
        if a.len() != l {
            return Err(Error::format(format!(
                "{what} must hold {l} integers, found {}",
                a.len()
            )));
        }
    } else if a.len() > spec::MAX_RANK {
        return Err(Error::format(format!(
            "{what} has rank {}, above the limit of {}",
            a.len(),
            spec::MAX_RANK
        )));
    }
    a.iter()
        .enumerate()
        .map(|(i, d)| uint(d, &format!("{what}[{i}]")))
        .collect()
}

/// Parse and validate the header bytes of a file of `file_len` bytes whose header is
/// `bytes.len()` long.
pub fn parse_header(bytes: &[u8], file_len: u64) -> Result<StHeader> {
    let data_start = 8 + bytes.len() as u64;
    let data_len = file_len.checked_sub(data_start).ok_or_else(|| {
        Error::format("safetensors header runs past the end of the file".to_string())
    })?;
    let v = parse_json(bytes, "safetensors header")?;
    let Value::Object(m) = v else {
        return Err(Error::format(format!(
            "safetensors header must be a JSON object, found {}",
            brief(&v)
        )));
    };
    let mut metadata = None;
    let mut tensors = Vec::with_capacity(m.len());
    for (name, info) in m {
        if name == "__metadata__" {
            let md = info.as_object().ok_or_else(|| {
                Error::format(format!(
                    "safetensors \"__metadata__\" must be an object of strings, found {}",
                    brief(&info)
                ))
            })?;
            let mut out = BTreeMap::new();
            for (k, v) in md {
                let s = v.as_str().ok_or_else(|| {
                    Error::format(format!(
                        "safetensors \"__metadata__\" value of {} must be a string, found {}",
                        clip(k),
                        brief(v)
                    ))
                })?;
                out.insert(k.clone(), s.to_owned());
            }
            metadata = Some(out);
            continue;
        }
        let what = format!("safetensors tensor {}", clip(&name));
        let t = info.as_object().ok_or_else(|| {
            Error::format(format!("{what} must be an object, found {}", brief(&info)))
        })?;
        for k in t.keys() {
            if !matches!(k.as_str(), "dtype" | "shape" | "data_offsets") {
                return Err(Error::format(format!(
                    "{what} has an unknown key {}",
                    clip(k)
                )));
            }
        }
        let field = |k: &str| {
            t.get(k)
                .ok_or_else(|| Error::format(format!("{what} lacks the key {k:?}")))
        };
        let dtype = st_dtype(field("dtype")?, &what)?;
        let shape = uint_array(field("shape")?, &format!("{what}: \"shape\""), None)?;
        let n = spec::numel(&shape, &what)?;
        let offs = uint_array(
            field("data_offsets")?,
            &format!("{what}: \"data_offsets\""),
            Some(2),
        )?;
        let (begin, end) = (offs[0], offs[1]);
        if begin > end {
            return Err(Error::format(format!(
                "{what}: \"data_offsets\" [{begin}, {end}] is not a byte range (begin > end)"
            )));
        }
        if end > data_len {
            return Err(Error::format(format!(
                "{what}: \"data_offsets\" [{begin}, {end}] end beyond the data section \
                 ({data_len} bytes): truncated file"
            )));
        }
        // numel <= 2^48 and itemsize <= 8: no overflow.
        let size = n * dtype.itemsize();
        if end - begin != size {
            return Err(Error::format(format!(
                "{what}: \"data_offsets\" [{begin}, {end}] ({} bytes) does not hold dtype {} x \
                 shape {shape:?} ({size} bytes)",
                end - begin,
                dtype.name()
            )));
        }
        tensors.push(StTensor {
            name,
            dtype,
            shape,
            begin,
            end,
        });
    }
    // The byte ranges tile the data section: no overlap (two tensors sharing bytes), no hole
    // (bytes no tensor describes), nothing after the last one.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_unstable_by_key(|&i| (tensors[i].begin, tensors[i].end));
    let mut at = 0u64;
    let mut prev: Option<usize> = None;
    for &i in &order {
        let t = &tensors[i];
        if t.begin < at {
            let p = &tensors[prev.unwrap_or(i)];
            return Err(Error::format(format!(
                "safetensors tensor {}: \"data_offsets\" [{}, {}] overlap those of tensor {} \
                 [{}, {}]",
                clip(&t.name),
                t.begin,
                t.end,
                clip(&p.name),
                p.begin,
                p.end
            )));
        }
        if t.begin > at {
            return Err(Error::format(format!(
                "safetensors tensor {}: \"data_offsets\" start at {}, expected {at}: the data \
                 is not contiguous (bytes {at}..{} of the data section belong to no tensor)",
                clip(&t.name),
                t.begin,
                t.begin
            )));
        }
        at = t.end;
        prev = Some(i);
    }
    if at != data_len {
        return Err(Error::format(format!(
            "safetensors data section holds {} bytes after the last tensor",
            data_len - at
        )));
    }
    tensors.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(StHeader {
        metadata,
        tensors,
        data_start,
        file_len,
    })
}

/// Read and validate the header of the safetensors file at `path`. OS errors keep their kind
/// and the path; format errors are prefixed with the path.
pub fn read_header(path: &Path) -> Result<StHeader> {
    let io = |e| Error::io(path, e);
    let pre = std::fs::metadata(path).map_err(io)?;
    if !pre.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, socket or device)",
            ),
        ));
    }
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let named = |e: Error| match e {
        Error::Format(m) => Error::format(format!("{}: {m}", path.display())),
        o => o,
    };
    let mut prefix = [0u8; 8];
    let got = read_full(&mut f, &mut prefix).map_err(io)?;
    let n = header_len(&prefix[..got], file_len).map_err(named)?;
    // n <= 100 MB and 8 + n <= file length: checked before allocating.
    let mut buf = Vec::new();
    buf.try_reserve_exact(n as usize).map_err(|_| {
        Error::limit(format!(
            "{}: a safetensors header of {n} bytes cannot be allocated",
            path.display()
        ))
    })?;
    f.by_ref().take(n).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 != n {
        return Err(named(Error::format(format!(
            "file ends inside the safetensors header ({} of {n} bytes)",
            buf.len()
        ))));
    }
    parse_header(&buf, file_len).map_err(named)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> (Vec<u8>, u64) {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.resize(v.len() + data_len, 0);
        let n = v.len() as u64;
        (v, n)
    }

    fn parse(header: &str, data_len: usize) -> Result<StHeader> {
        let (v, n) = file(header, data_len);
        let hl = header_len(&v, n)?;
        parse_header(&v[8..8 + hl as usize], n)
    }

    fn err(header: &str, data_len: usize) -> String {
        match parse(header, data_len) {
            Err(Error::Format(m)) => m,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn valid_header_sorted_by_name() {
        let h = parse(
            r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"U8","shape":[],"data_offsets":[8,9]},"__metadata__":{"k":"v"}}"#,
            9,
        )
        .unwrap();
        assert_eq!(h.tensors[0].name, "a");
        assert_eq!(h.tensors[1].shape, vec![2]);
        assert_eq!(h.metadata.unwrap()["k"], "v");
    }

    #[test]
    fn overlapping_ranges_are_rejected() {
        let m = err(
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
            6,
        );
        assert!(m.contains("overlap"), "{m}");
    }

    #[test]
    fn hostile_fields_name_the_field() {
        for (h, want) in [
            (
                r#"{"a":{"dtype":"F32","shape":["x"],"data_offsets":[0,4]}}"#,
                "shape\"[0]",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#,
                "shape\"[0]",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#,
                "shape\"[0]",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                "shape\"[0]",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1180591620717411303424],"data_offsets":[0,4]}}"#,
                "shape\"[0]",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,1e400]}}"#,
                "not valid JSON",
            ),
            (
                r#"{"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}"#,
                "\"dtype\"",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
                "data_offsets",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
                "begin > end",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                "truncated",
            ),
            (r#"{"__metadata__":[1]}"#, "__metadata__"),
            (r#"{"__metadata__":{"k":1}}"#, "__metadata__"),
            (r#"[1]"#, "JSON object"),
        ] {
            let m = err(h, 4);
            assert!(m.contains(want), "{h}: {m}");
        }
    }

    #[test]
    fn messages_stay_short() {
        let big = format!(
            r#"{{"a":{{"dtype":"F32","shape":"{}","data_offsets":[0,4]}}}}"#,
            "x".repeat(1 << 20)
        );
        assert!(err(&big, 4).len() < 400);
        let arr = format!(
            r#"{{"a":{{"dtype":"F32","shape":1,"data_offsets":[{}]}}}}"#,
            vec!["0.5"; 100_000].join(",")
        );
        assert!(err(&arr, 4).len() < 400);
    }
}
