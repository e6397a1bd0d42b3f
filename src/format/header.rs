//! The `.epk` header: parse and validate everything (FORMAT.md sections 1, 2, 4, 5), with
//! checked arithmetic; and serialize it deterministically for the writer.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::spec::{self, Compression, Dtype, Encoding};
use crate::error::{Error, Result};

/// One payload of a tensor (FORMAT.md 2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub role: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Relative to `data_start`.
    pub offset: u64,
    /// Stored bytes.
    pub length: u64,
    /// Decoded bytes (= itemsize x numel(shape)).
    pub size: u64,
    pub compression: Compression,
    pub xxh3: u64,
}

/// One tensor record (FORMAT.md 2.1).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRecord {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub encoding: Encoding,
    pub params: Map<String, Value>,
    pub payloads: Vec<Payload>,
    pub stats: Option<Map<String, Value>>,
}

/// The whole header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub metadata: BTreeMap<String, String>,
    /// `Value::Null` or an object.
    pub recipe: Value,
    pub tensors: Vec<TensorRecord>,
}

// ---------------------------------------------------------------------------------------------
// Strict JSON: a serde_json::Value, but a duplicate key in any object is an error.

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let Strict(v) = map.next_value()?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

/// An upper bound on the values + object keys a parse of `bytes` builds: one for the root plus
/// one per `[`, `{`, `,` and `:` outside strings (every other value or key follows one of them).
fn json_node_bound(bytes: &[u8]) -> usize {
    let (mut n, mut in_str, mut esc) = (1usize, false, false);
    for &b in bytes {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else {
            match b {
                b'"' => in_str = true,
                b'[' | b'{' | b',' | b':' => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// Parse JSON bytes, rejecting duplicate keys and more than [`spec::MAX_JSON_NODES`] values +
/// keys (checked before any tree is built). `what` names the thing in errors.
pub fn parse_json(bytes: &[u8], what: &str) -> Result<Value> {
    let nodes = json_node_bound(bytes);
    if nodes > spec::MAX_JSON_NODES {
        return Err(Error::format(format!(
            "{what} holds about {nodes} JSON values, above the limit of {}",
            spec::MAX_JSON_NODES
        )));
    }
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| Error::format(format!("{what} is not valid JSON: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Typed access with messages that name the field.

fn as_obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::format(format!("{what} must be a JSON object, found {}", kind(v))))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn only_keys(
    m: &Map<String, Value>,
    required: &[&str],
    optional: &[&str],
    what: &str,
) -> Result<()> {
    for k in m.keys() {
        if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
            return Err(Error::format(format!("{what} has an unknown key {k:?}")));
        }
    }
    for k in required {
        if !m.contains_key(*k) {
            return Err(Error::format(format!("{what} lacks the key {k:?}")));
        }
    }
    Ok(())
}

fn get<'a>(m: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a Value> {
    m.get(key)
        .ok_or_else(|| Error::format(format!("{what} lacks the key {key:?}")))
}

fn get_str<'a>(m: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str> {
    let v = get(m, key, what)?;
    v.as_str().ok_or_else(|| {
        Error::format(format!(
            "{what}: {key:?} must be a string, found {}",
            kind(v)
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
            "{what} must be a non-negative integer, found {v}"
        ))),
    }
}

fn get_uint(m: &Map<String, Value>, key: &str, what: &str) -> Result<u64> {
    uint(get(m, key, what)?, &format!("{what}: {key:?}"))
}

fn get_shape(m: &Map<String, Value>, what: &str) -> Result<Vec<u64>> {
    let v = get(m, "shape", what)?;
    let arr = v.as_array().ok_or_else(|| {
        Error::format(format!(
            "{what}: \"shape\" must be an array, found {}",
            kind(v)
        ))
    })?;
    if arr.len() > spec::MAX_RANK {
        return Err(Error::format(format!(
            "{what} has rank {}, above the limit of {}",
            arr.len(),
            spec::MAX_RANK
        )));
    }
    arr.iter()
        .enumerate()
        .map(|(i, d)| uint(d, &format!("{what}: shape[{i}]")))
        .collect()
}

fn get_dtype(m: &Map<String, Value>, what: &str) -> Result<Dtype> {
    let s = get_str(m, "dtype", what)?;
    Dtype::parse(s).ok_or_else(|| Error::format(format!("{what} has an unknown dtype {s:?}")))
}

// ---------------------------------------------------------------------------------------------
// Preamble (section 1).

/// Parse the 24-byte preamble of a file of `file_len` bytes; returns `header_len`, checked
/// against the limit and the file's length. See [`parse_preamble_version`] for the version.
pub fn parse_preamble(pre: &[u8], file_len: u64) -> Result<u64> {
    parse_preamble_version(pre, file_len).map(|(_, n)| n)
}

/// [`parse_preamble`], also returning the format version (one of [`spec::VERSIONS`]).
pub fn parse_preamble_version(pre: &[u8], file_len: u64) -> Result<(u32, u64)> {
    if pre.len() < spec::PREAMBLE_LEN as usize || file_len < spec::PREAMBLE_LEN {
        return Err(Error::format(format!(
            "file of {file_len} bytes is too short for an .epk preamble ({} bytes): truncated or not an .epk file",
            spec::PREAMBLE_LEN
        )));
    }
    if pre[0..8] != spec::MAGIC {
        return Err(Error::format(
            "not an .epk file: the magic bytes \\x89EPK\\r\\n\\x1a\\n are missing",
        ));
    }
    let word = |a: usize| u32::from_le_bytes([pre[a], pre[a + 1], pre[a + 2], pre[a + 3]]);
    let version = word(8);
    if !spec::VERSIONS.contains(&version) {
        return Err(Error::format(format!(
            "unsupported .epk format version {version} (this reader supports versions 1 and 2)"
        )));
    }
    let flags = word(12);
    if flags != 0 {
        return Err(Error::format(format!(
            "preamble flags are {flags:#x}, expected 0 in version {version}"
        )));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&pre[16..24]);
    let header_len = u64::from_le_bytes(b);
    if header_len == 0 {
        return Err(Error::format("header length is 0"));
    }
    if header_len > spec::MAX_HEADER_LEN {
        return Err(Error::format(format!(
            "header length {header_len} is above the limit of {} bytes",
            spec::MAX_HEADER_LEN
        )));
    }
    let end = spec::PREAMBLE_LEN + header_len; // both bounded, cannot overflow
    if end > file_len {
        return Err(Error::format(format!(
            "header length {header_len} runs past the end of the file ({file_len} bytes): truncated file"
        )));
    }
    Ok((version, header_len))
}

/// The 24-byte version-1 preamble for a header of `header_len` bytes.
pub fn preamble(header_len: u64) -> [u8; 24] {
    preamble_version(header_len, spec::VERSION)
}

/// The 24-byte preamble of format `version` for a header of `header_len` bytes.
pub fn preamble_version(header_len: u64, version: u32) -> [u8; 24] {
    let mut p = [0u8; 24];
    p[0..8].copy_from_slice(&spec::MAGIC);
    p[8..12].copy_from_slice(&version.to_le_bytes());
    p[16..24].copy_from_slice(&header_len.to_le_bytes());
    p
}

// ---------------------------------------------------------------------------------------------
// Header (sections 2, 5).

fn parse_payload(v: &Value, what: &str) -> Result<Payload> {
    let m = as_obj(v, what)?;
    only_keys(
        m,
        &[
            "role",
            "dtype",
            "shape",
            "offset",
            "length",
            "size",
            "compression",
            "xxh3",
        ],
        &[],
        what,
    )?;
    let role = get_str(m, "role", what)?.to_owned();
    let what = format!("{what} (role {role:?})");
    let dtype = get_dtype(m, &what)?;
    let shape = get_shape(m, &what)?;
    let n = spec::numel(&shape, &what)?;
    let offset = get_uint(m, "offset", &what)?;
    let length = get_uint(m, "length", &what)?;
    let size = get_uint(m, "size", &what)?;
    let expect = n
        .checked_mul(dtype.itemsize())
        .ok_or_else(|| Error::format(format!("{what}: size of shape {shape:?} overflows")))?;
    if size != expect {
        return Err(Error::format(format!(
            "{what}: size is {size} bytes but dtype {} x shape {shape:?} is {expect} bytes",
            dtype.name()
        )));
    }
    let cs = get_str(m, "compression", &what)?;
    let compression = Compression::parse(cs)
        .ok_or_else(|| Error::format(format!("{what} has an unknown compression {cs:?}")))?;
    match compression {
        Compression::None if length != size => {
            return Err(Error::format(format!(
                "{what}: stored length {length} != size {size} for an uncompressed payload"
            )))
        }
        Compression::Zstd => {
            let cap = length.saturating_mul(spec::MAX_ZSTD_RATIO);
            if length == 0 || size > cap {
                return Err(Error::format(format!(
                    "{what}: zstd payload of {length} bytes claims {size} decoded bytes, above the limit of {} x its length",
                    spec::MAX_ZSTD_RATIO
                )));
            }
        }
        _ => {}
    }
    let h = get_str(m, "xxh3", &what)?;
    if h.len() != 16
        || !h
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(Error::format(format!(
            "{what}: xxh3 must be 16 lower-case hex digits, found {h:?}"
        )));
    }
    let xxh3 =
        u64::from_str_radix(h, 16).map_err(|_| Error::format(format!("{what}: bad xxh3 {h:?}")))?;
    Ok(Payload {
        role,
        dtype,
        shape,
        offset,
        length,
        size,
        compression,
        xxh3,
    })
}

const STATS_KEYS: [&str; 8] = [
    "sparsity",
    "snr_db",
    "rel_error",
    "cosine",
    "max_abs_error",
    "bits_per_weight",
    "output_snr_db",
    "output_rel_error",
];

/// Parse one tensor record and check its encoding's rules (section 5).
pub fn parse_record(v: &Value, index: usize) -> Result<TensorRecord> {
    let what = format!("tensor record #{index}");
    let m = as_obj(v, &what)?;
    let name = get_str(m, "name", &what)?;
    spec::check_name(name)?;
    let what = format!("tensor {name:?}");
    only_keys(
        m,
        &["name", "dtype", "shape", "encoding", "params", "payloads"],
        &["stats"],
        &what,
    )?;
    let dtype = get_dtype(m, &what)?;
    let shape = get_shape(m, &what)?;
    spec::numel(&shape, &what)?;
    let es = get_str(m, "encoding", &what)?;
    let encoding = Encoding::parse(es)
        .ok_or_else(|| Error::format(format!("{what} has an unknown encoding {es:?}")))?;
    let params = as_obj(get(m, "params", &what)?, &format!("{what}: params"))?.clone();
    let pv = get(m, "payloads", &what)?;
    let parr = pv.as_array().ok_or_else(|| {
        Error::format(format!(
            "{what}: payloads must be an array, found {}",
            kind(pv)
        ))
    })?;
    let payloads = parr
        .iter()
        .enumerate()
        .map(|(i, p)| parse_payload(p, &format!("{what} payload #{i}")))
        .collect::<Result<Vec<_>>>()?;
    for w in payloads.windows(2) {
        if w[0].role >= w[1].role {
            return Err(Error::format(format!(
                "{what}: payload roles must be unique and sorted, found {:?} before {:?}",
                w[0].role, w[1].role
            )));
        }
    }
    let stats = match m.get("stats") {
        None => None,
        Some(s) => {
            let sm = as_obj(s, &format!("{what}: stats"))?;
            only_keys(sm, &[], &STATS_KEYS, &format!("{what}: stats"))?;
            for (k, v) in sm {
                if !(v.is_null() || v.is_number()) {
                    return Err(Error::format(format!(
                        "{what}: stats {k:?} must be a number or null, found {}",
                        kind(v)
                    )));
                }
            }
            Some(sm.clone())
        }
    };
    let rec = TensorRecord {
        name: name.to_owned(),
        dtype,
        shape,
        encoding,
        params,
        payloads,
        stats,
    };
    check_encoding(&rec)?;
    Ok(rec)
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

fn check_encoding(r: &TensorRecord) -> Result<()> {
    let what = format!("tensor {:?} ({} encoding)", r.name, r.encoding.name());
    let n = spec::numel(&r.shape, &what)?;
    let roles: Vec<&str> = r.payloads.iter().map(|p| p.role.as_str()).collect();
    let payload = |role: &str| r.payloads.iter().find(|p| p.role == role);
    let expect_roles = |want: &[&str]| -> Result<()> {
        if roles != want {
            return Err(Error::format(format!(
                "{what} must have payloads {want:?}, found {roles:?}"
            )));
        }
        Ok(())
    };
    let expect_payload = |p: &Payload, dtypes: &[Dtype], shape: &[u64]| -> Result<()> {
        if !dtypes.contains(&p.dtype) {
            let names: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
            return Err(Error::format(format!(
                "{what}: payload {:?} has dtype {}, expected one of {names:?}",
                p.role,
                p.dtype.name()
            )));
        }
        if p.shape != shape {
            return Err(Error::format(format!(
                "{what}: payload {:?} has shape {:?}, expected {shape:?}",
                p.role, p.shape
            )));
        }
        Ok(())
    };
    let float_only = || -> Result<()> {
        if !r.dtype.is_float() {
            return Err(Error::format(format!(
                "{what}: the encoding needs a float tensor, found dtype {}",
                r.dtype.name()
            )));
        }
        Ok(())
    };
    let pwhat = format!("{what}: params");
    match r.encoding {
        Encoding::Raw | Encoding::Float16 => {
            only_keys(&r.params, &[], &[], &pwhat)?;
            expect_roles(&["data"])?;
            let dt = if r.encoding == Encoding::Raw {
                r.dtype
            } else {
                float_only()?;
                Dtype::F16
            };
            expect_payload(&r.payloads[0], &[dt], &r.shape)?;
        }
        Encoding::Sparse => {
            float_only()?;
            only_keys(&r.params, &["format", "nnz"], &[], &pwhat)?;
            let f = get_str(&r.params, "format", &pwhat)?;
            if f.is_empty() || f.len() > spec::MAX_SHORT_STR {
                return Err(Error::format(format!("{pwhat}: bad format {f:?}")));
            }
            let nnz = get_uint(&r.params, "nnz", &pwhat)?;
            if nnz > n {
                return Err(Error::format(format!(
                    "{pwhat}: nnz {nnz} is more than the {n} elements of the tensor"
                )));
            }
            expect_roles(&["data"])?;
            let p = &r.payloads[0];
            expect_payload(p, &[Dtype::U8], &[p.shape.first().copied().unwrap_or(0)])?;
        }
        Encoding::Quant => {
            float_only()?;
            only_keys(
                &r.params,
                &[
                    "bits",
                    "symmetric",
                    "axis",
                    "block_size",
                    "convention",
                    "sparsity",
                ],
                &["in_axis"],
                &pwhat,
            )?;
            let bits = get_uint(&r.params, "bits", &pwhat)?;
            if bits != 8 && bits != 4 {
                return Err(Error::format(format!(
                    "{pwhat}: bits must be 8 or 4, found {bits}"
                )));
            }
            let symmetric = get(&r.params, "symmetric", &pwhat)?
                .as_bool()
                .ok_or_else(|| Error::format(format!("{pwhat}: symmetric must be a boolean")))?;
            let conv = get_str(&r.params, "convention", &pwhat)?;
            if conv.is_empty() || conv.len() > spec::MAX_SHORT_STR {
                return Err(Error::format(format!("{pwhat}: bad convention {conv:?}")));
            }
            let sp = get(&r.params, "sparsity", &pwhat)?
                .as_f64()
                .ok_or_else(|| Error::format(format!("{pwhat}: sparsity must be a number")))?;
            if !(0.0..=1.0).contains(&sp) {
                return Err(Error::format(format!(
                    "{pwhat}: sparsity {sp} is not in [0, 1]"
                )));
            }
            let axis = match get(&r.params, "axis", &pwhat)? {
                Value::Null => None,
                v => {
                    let a = uint(v, &format!("{pwhat}: axis"))?;
                    if a >= r.shape.len() as u64 {
                        return Err(Error::format(format!(
                            "{pwhat}: axis {a} is out of range for rank {}",
                            r.shape.len()
                        )));
                    }
                    Some(a as usize)
                }
            };
            let block = match get(&r.params, "block_size", &pwhat)? {
                Value::Null => None,
                v => {
                    let b = uint(v, &format!("{pwhat}: block_size"))?;
                    if b == 0 || axis.is_none() {
                        return Err(Error::format(format!(
                            "{pwhat}: block_size must be >= 1 and needs an axis, found {b}"
                        )));
                    }
                    Some(b)
                }
            };
            // Version 2: an AWQ per-input-channel scale, `in_scale`, along `in_axis`.
            let in_axis = match r.params.get("in_axis") {
                None => None,
                Some(v) => {
                    let a = uint(v, &format!("{pwhat}: in_axis"))?;
                    if a >= r.shape.len() as u64 {
                        return Err(Error::format(format!(
                            "{pwhat}: in_axis {a} is out of range for rank {}",
                            r.shape.len()
                        )));
                    }
                    Some(a as usize)
                }
            };
            let mut want = vec!["data"];
            if in_axis.is_some() {
                want.push("in_scale");
            }
            want.push("scale");
            if !symmetric {
                want.push("zero_point");
            }
            expect_roles(&want)?;
            if let Some(a) = in_axis {
                let p = payload("in_scale").expect("role checked");
                expect_payload(p, &[Dtype::F32], &[r.shape[a]])?;
            }
            let data = payload("data").expect("role checked");
            let data_shape = if bits == 8 {
                r.shape.clone()
            } else {
                vec![ceil_div(n, 2)]
            };
            // 8 bits: int8 (symmetric) or uint8 (affine); 4 bits: packed bytes (uint8).
            let data_dtype = match (bits, symmetric) {
                (8, true) => Dtype::I8,
                _ => Dtype::U8,
            };
            expect_payload(data, &[data_dtype], &data_shape)?;
            let scale = payload("scale").expect("role checked");
            match (axis, block) {
                (None, _) => {
                    if scale.shape.len() > 1 || spec::numel(&scale.shape, &what)? != 1 {
                        return Err(Error::format(format!(
                            "{what}: per-tensor scale must hold one value, found shape {:?}",
                            scale.shape
                        )));
                    }
                    expect_payload(scale, SCALE_DTYPES, &scale.shape.clone())?;
                }
                (Some(a), None) => expect_payload(scale, SCALE_DTYPES, &[r.shape[a]])?,
                (Some(a), Some(b)) => {
                    let mut s = r.shape.clone();
                    s[a] = ceil_div(s[a], b);
                    expect_payload(scale, SCALE_DTYPES, &s)?;
                }
            }
            if let Some(zp) = payload("zero_point") {
                expect_payload(zp, &[Dtype::U8], &scale.shape.clone())?;
            }
        }
    }
    Ok(())
}

/// The dtypes a `quant` scale payload may have (float16 from version 2 on, section 5).
const SCALE_DTYPES: &[Dtype] = &[Dtype::F32, Dtype::F16];

/// The first version-2 feature a record uses (FORMAT.md section 8), named for an error.
fn version2_feature(t: &TensorRecord) -> Option<&'static str> {
    if t.payloads.iter().any(|p| p.role == "in_scale") || t.params.contains_key("in_axis") {
        Some("payload \"in_scale\" (param \"in_axis\")")
    } else if t.encoding == Encoding::Quant
        && t.payloads
            .iter()
            .any(|p| p.role == "scale" && p.dtype == Dtype::F16)
    {
        Some("a float16 \"scale\" payload")
    } else {
        None
    }
}

impl Header {
    /// Parse and validate a header's JSON bytes (without the layout, see [`Header::check_layout`]).
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        let v = parse_json(bytes, "header")?;
        let m = as_obj(&v, "header")?;
        only_keys(m, &["metadata", "recipe", "tensors"], &[], "header")?;
        let md = as_obj(get(m, "metadata", "header")?, "header: metadata")?;
        let mut metadata = BTreeMap::new();
        let mut md_bytes: usize = 0;
        for (k, v) in md {
            let s = v.as_str().ok_or_else(|| {
                Error::format(format!(
                    "header: metadata value of {k:?} must be a string, found {}",
                    kind(v)
                ))
            })?;
            md_bytes = md_bytes.saturating_add(k.len()).saturating_add(s.len());
            metadata.insert(k.clone(), s.to_owned());
        }
        if md_bytes > spec::MAX_METADATA_BYTES {
            return Err(Error::format(format!(
                "header: metadata of {md_bytes} bytes is above the limit of {}",
                spec::MAX_METADATA_BYTES
            )));
        }
        let recipe = get(m, "recipe", "header")?.clone();
        if !(recipe.is_null() || recipe.is_object()) {
            return Err(Error::format(format!(
                "header: recipe must be null or an object, found {}",
                kind(&recipe)
            )));
        }
        let tv = get(m, "tensors", "header")?;
        let arr = tv.as_array().ok_or_else(|| {
            Error::format(format!(
                "header: tensors must be an array, found {}",
                kind(tv)
            ))
        })?;
        if arr.len() > spec::MAX_TENSORS {
            return Err(Error::format(format!(
                "header lists {} tensors, above the limit of {}",
                arr.len(),
                spec::MAX_TENSORS
            )));
        }
        let tensors = arr
            .iter()
            .enumerate()
            .map(|(i, t)| parse_record(t, i))
            .collect::<Result<Vec<_>>>()?;
        let mut seen = HashSet::with_capacity(tensors.len());
        for w in tensors.iter() {
            if !seen.insert(w.name.as_str()) {
                return Err(Error::format(format!("duplicate tensor name {:?}", w.name)));
            }
        }
        for w in tensors.windows(2) {
            if w[0].name > w[1].name {
                return Err(Error::format(format!(
                    "tensor records must be sorted by name, found {:?} before {:?}",
                    w[0].name, w[1].name
                )));
            }
        }
        Ok(Header {
            metadata,
            recipe,
            tensors,
        })
    }

    /// Check section 4: payloads contiguous from offset 0, each at the next multiple of 64,
    /// ending exactly at `file_len`. Returns the data section's length.
    pub fn check_layout(&self, data_start: u64, file_len: u64) -> Result<u64> {
        let mut next: u64 = 0;
        let mut end: u64 = 0;
        for t in &self.tensors {
            for p in &t.payloads {
                if p.offset != next {
                    return Err(Error::format(format!(
                        "tensor {:?} payload {:?} starts at offset {}, expected {next} (payloads must be contiguous, 64-byte aligned, in order; no holes or overlaps)",
                        t.name, p.role, p.offset
                    )));
                }
                end = p.offset.checked_add(p.length).ok_or_else(|| {
                    Error::format(format!(
                        "tensor {:?} payload {:?}: offset + length overflows",
                        t.name, p.role
                    ))
                })?;
                let abs_end = data_start.saturating_add(end);
                if abs_end > file_len {
                    return Err(Error::format(format!(
                        "tensor {:?} payload {:?} ends at byte {abs_end}, past the end of the file ({file_len} bytes): truncated file or bad offsets",
                        t.name, p.role
                    )));
                }
                next = spec::align(end)?;
            }
        }
        let total = data_start
            .checked_add(end)
            .ok_or_else(|| Error::format("data section end overflows"))?;
        if total != file_len {
            return Err(Error::format(format!(
                "file has {file_len} bytes but its header describes {total}: {} bytes",
                if file_len > total {
                    "trailing"
                } else {
                    "missing"
                }
            )));
        }
        Ok(end)
    }

    /// The header's canonical JSON (compact, keys sorted).
    pub fn to_json(&self) -> String {
        let tensors: Vec<Value> = self.tensors.iter().map(record_json).collect();
        let md: Map<String, Value> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut m = Map::new();
        m.insert("metadata".into(), Value::Object(md));
        m.insert("recipe".into(), self.recipe.clone());
        m.insert("tensors".into(), Value::Array(tensors));
        Value::Object(m).to_string()
    }

    /// The oldest format version that can hold this header: 2 when a tensor uses a
    /// version-2 feature (FORMAT.md section 8: an `in_scale` payload, or float16 scales), else 1.
    pub fn min_version(&self) -> u32 {
        if self.tensors.iter().any(|t| version2_feature(t).is_some()) {
            spec::VERSION_2
        } else {
            spec::VERSION
        }
    }

    /// Check that a file of format `version` may hold this header: a version-1 file MUST NOT
    /// use a version-2 feature (the role `in_scale` or its param `in_axis`, float16 scales).
    pub fn check_version(&self, version: u32) -> Result<()> {
        if version < self.min_version() {
            let (t, what) = self
                .tensors
                .iter()
                .find_map(|t| version2_feature(t).map(|w| (t, w)))
                .expect("min_version found one");
            return Err(Error::format(format!(
                "tensor {:?}: {what} needs .epk format version 2, the file is version {version}",
                t.name
            )));
        }
        Ok(())
    }

    /// The record of `name` (binary search: records are sorted).
    pub fn find(&self, name: &str) -> Option<&TensorRecord> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.tensors[i])
    }
}

fn shape_json(s: &[u64]) -> Value {
    Value::Array(s.iter().map(|&d| Value::from(d)).collect())
}

/// One record as canonical JSON.
pub fn record_json(t: &TensorRecord) -> Value {
    let payloads = t
        .payloads
        .iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert("role".into(), Value::String(p.role.clone()));
            m.insert("dtype".into(), Value::String(p.dtype.name().into()));
            m.insert("shape".into(), shape_json(&p.shape));
            m.insert("offset".into(), Value::from(p.offset));
            m.insert("length".into(), Value::from(p.length));
            m.insert("size".into(), Value::from(p.size));
            m.insert(
                "compression".into(),
                Value::String(p.compression.name().into()),
            );
            m.insert("xxh3".into(), Value::String(format!("{:016x}", p.xxh3)));
            Value::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("name".into(), Value::String(t.name.clone()));
    m.insert("dtype".into(), Value::String(t.dtype.name().into()));
    m.insert("shape".into(), shape_json(&t.shape));
    m.insert("encoding".into(), Value::String(t.encoding.name().into()));
    m.insert("params".into(), Value::Object(t.params.clone()));
    m.insert("payloads".into(), Value::Array(payloads));
    if let Some(s) = &t.stats {
        m.insert("stats".into(), Value::Object(s.clone()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod node_bound_tests {
    use super::*;

    #[test]
    fn node_bound_counts_values_and_keys_outside_strings() {
        // root object, key a, value array, 3 elements, key "b", value: 1 + 1 + 1 + 3 + 2 = 8
        // upper bound: root + '{' + ':' + '[' + ',' + ',' + ',' + ':' = 8
        let j = br#"{"a":[1,2,3],"b":"x,[{:\"]"}"#;
        assert_eq!(json_node_bound(j), 8);
        let v: Value = serde_json::from_slice(j).unwrap();
        assert_eq!(v["b"], "x,[{:\"]");
    }

    #[test]
    fn too_many_nodes_is_a_format_error_before_parsing() {
        let n = spec::MAX_JSON_NODES;
        let mut j = Vec::with_capacity(3 * n + 2);
        j.push(b'[');
        for i in 0..n {
            if i > 0 {
                j.push(b',');
            }
            j.push(b'0');
        }
        j.push(b']');
        let e = parse_json(&j, "header").unwrap_err();
        assert!(matches!(e, Error::Format(_)), "{e}");
        assert!(e.to_string().contains("above the limit of 8388608"), "{e}");
        // One node fewer parses.
        let ok = &j[..j.len() - 3];
        let mut ok = ok.to_vec();
        ok.push(b']');
        assert_eq!(
            parse_json(&ok, "header").unwrap().as_array().unwrap().len(),
            n - 1
        );
    }
}
