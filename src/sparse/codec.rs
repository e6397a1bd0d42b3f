//! The byte form of a [`SparseTensor`] (`to_bytes` / `from_bytes`), version 1.
//!
//! ```text
//! offset size  field
//! 0      4     magic "EPSP"
//! 4      1     version = 1
//! 5      1     layout: 0 = bit mask, 1 = N:M
//! 6      1     dtype: 1 int8, 2 uint8, 3 float16, 4 bfloat16, 5 float32
//! 7      1     ndim (<= 32)
//! 8      8*nd  shape, u64 each
//! ..     8     nnz (stored values)
//! N:M only:    n u16, m u16, axis u8
//! then sections: the index (mask, or N:M positions), then one section per little-endian
//! byte plane of the values (1, 2 or 4). A section is
//!        1     method: 0 stored, 1 rANS (see `rans`), 2 zstd frame
//!        8     raw_len: decoded bytes (must equal what the header implies)
//!        8     payload_len
//!        ..    payload
//! ```
//!
//! All integers little endian. Nothing may follow the last section. A reader checks the magic,
//! version, codes, that `nnz` agrees with the shape and with the mask's popcount (or the N:M
//! slot count and positions), that every claimed size fits in the buffer, and that a decoded
//! size is reachable from its payload size (rANS: 2^20 bytes per 132 payload bytes at most;
//! zstd: 2^15 per byte) *before* allocating.
//!
//! Levels: 0 stores every section; 1 (default) codes each section with rANS when that is
//! smaller; 2..=22 also try zstd at that level (useful for structured masks: blocks, channels)
//! and keep the smallest.

use super::{mask_len, numel, pos_bits, rans, DType, Layout, SparseTensor, Values};
use crate::error::{Error, Result};
use crate::kernels::sparse::popcount;

/// Magic bytes.
pub const MAGIC: &[u8; 4] = b"EPSP";
/// Format version.
pub const VERSION: u8 = 1;
/// Highest level.
pub const MAX_LEVEL: i32 = 22;
/// Largest zstd expansion accepted (decoded bytes per payload byte).
const ZSTD_MAX_RATIO: usize = 1 << 15;

const METHOD_STORED: u8 = 0;
const METHOD_RANS: u8 = 1;
const METHOD_ZSTD: u8 = 2;

fn put_section(data: &[u8], level: i32, out: &mut Vec<u8>) -> Result<()> {
    let head = out.len();
    out.push(METHOD_STORED);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let body = out.len();
    let mut best = data.len();
    let mut method = METHOD_STORED;
    if level >= 1 && !data.is_empty() {
        let counts = rans::histogram(data);
        let (t, est) = rans::estimate(&counts, data.len());
        if est < best {
            // code straight into `out`; roll back if it did not pay
            rans::encode(data, &t, out);
            if out.len() - body < best {
                best = out.len() - body;
                method = METHOD_RANS;
            } else {
                out.truncate(body);
            }
        }
        if level >= 2 {
            let z = zstd::bulk::compress(data, level)
                .map_err(|e| Error::arg(format!("zstd failed: {e}")))?;
            if z.len() < best {
                out.truncate(body);
                out.extend_from_slice(&z);
                best = z.len();
                method = METHOD_ZSTD;
            }
        }
    }
    if method == METHOD_STORED {
        out.truncate(body);
        out.extend_from_slice(data);
    }
    out[head] = method;
    out[head + 9..head + 17].copy_from_slice(&(best as u64).to_le_bytes());
    Ok(())
}

impl SparseTensor {
    /// The entropy-coded byte form; see the module docs for `level`.
    pub fn to_bytes(&self, level: i32) -> Result<Vec<u8>> {
        if !(0..=MAX_LEVEL).contains(&level) {
            return Err(Error::arg(format!(
                "`level` must be in 0..={MAX_LEVEL}, found {level}"
            )));
        }
        // sections never end up larger than stored: one allocation, no regrowth
        let mut out = Vec::with_capacity(1024 + 64 * self.shape.len() + self.nbytes());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(match self.layout {
            Layout::Mask => 0,
            Layout::NM { .. } => 1,
        });
        out.push(self.dtype.code());
        out.push(self.shape.len() as u8);
        for &d in &self.shape {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&(self.nnz() as u64).to_le_bytes());
        if let Layout::NM { n, m, axis } = self.layout {
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.extend_from_slice(&(m as u16).to_le_bytes());
            out.push(axis as u8);
        }
        put_section(&self.index, level, &mut out)?;
        match &self.values {
            // one byte per value: the values are the plane (no copy)
            Values::U8(v) => put_section(v, level, &mut out)?,
            other => {
                for plane in other.planes() {
                    put_section(&plane, level, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Parse and validate the byte form; never reads past `buf` and checks every claimed
    /// size before allocating. Errors are [`Error::Format`] naming the field.
    pub fn from_bytes(buf: &[u8]) -> Result<SparseTensor> {
        let mut r = Reader { buf, pos: 0 };
        let magic = r.take(4, "magic")?;
        if magic != MAGIC {
            return Err(Error::format(format!(
                "sparse tensor: field `magic` is {magic:02x?}, expected \"EPSP\" (not an edgepack sparse tensor)"
            )));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(Error::format(format!(
                "sparse tensor: field `version` is {version}, this reader supports {VERSION}"
            )));
        }
        let layout_code = r.u8("layout")?;
        let dtype_code = r.u8("dtype")?;
        let dtype = DType::from_code(dtype_code).ok_or_else(|| {
            Error::format(format!(
                "sparse tensor: field `dtype` has unknown code {dtype_code}"
            ))
        })?;
        let ndim = r.u8("ndim")? as usize;
        if ndim > 32 {
            return Err(Error::format(format!(
                "sparse tensor: field `ndim` is {ndim}, at most 32 allowed"
            )));
        }
        let mut shape = Vec::with_capacity(ndim);
        for _ in 0..ndim {
            let d = r.u64("shape")?;
            shape.push(usize::try_from(d).map_err(|_| {
                Error::format(format!("sparse tensor: field `shape` has dimension {d}"))
            })?);
        }
        let n = numel(&shape).map_err(|_| {
            Error::format(format!(
                "sparse tensor: field `shape` {shape:?} has more than 2^48 elements"
            ))
        })?;
        let nnz = r.u64("nnz")?;
        if nnz > n as u64 {
            return Err(Error::format(format!(
                "sparse tensor: field `nnz` is {nnz} but the shape has {n} elements"
            )));
        }
        let nnz = nnz as usize;
        let (layout, index_len) = match layout_code {
            0 => (Layout::Mask, mask_len(n)),
            1 => {
                let nn = r.u16("n")? as usize;
                let m = r.u16("m")? as usize;
                let axis = r.u8("axis")? as usize;
                crate::prune::check_nm(nn, m).map_err(|e| {
                    Error::format(format!("sparse tensor: fields `n`/`m` invalid: {e}"))
                })?;
                if axis >= ndim {
                    return Err(Error::format(format!(
                        "sparse tensor: field `axis` is {axis} for {ndim} dimensions"
                    )));
                }
                let slots = super::nm_total_slots(&shape, nn, m, axis);
                if slots != nnz {
                    return Err(Error::format(format!(
                        "sparse tensor: field `nnz` is {nnz} but {nn}:{m} groups hold {slots} slots"
                    )));
                }
                (
                    Layout::NM { n: nn, m, axis },
                    (nnz * pos_bits(m) as usize).div_ceil(8),
                )
            }
            c => {
                return Err(Error::format(format!(
                    "sparse tensor: field `layout` has unknown code {c}"
                )))
            }
        };
        let index_name = if layout == Layout::Mask {
            "mask"
        } else {
            "positions"
        };
        let index = r.section(index_len, index_name)?;
        let mut planes = Vec::with_capacity(dtype.size());
        for b in 0..dtype.size() {
            planes.push(r.section(nnz, &format!("values (byte plane {b})"))?);
        }
        if r.pos != buf.len() {
            return Err(Error::format(format!(
                "sparse tensor: {} unexpected bytes after the last section",
                buf.len() - r.pos
            )));
        }
        if layout == Layout::Mask {
            let c = popcount(&index, n);
            if c != nnz {
                return Err(Error::format(format!(
                    "sparse tensor: field `nnz` is {nnz} but the mask has {c} bits set"
                )));
            }
            if n % 8 != 0 && index[n / 8] >> (n % 8) != 0 {
                return Err(Error::format(
                    "sparse tensor: mask has bits set past the last element",
                ));
            }
        }
        let t = SparseTensor {
            dtype,
            shape,
            layout,
            index,
            values: Values::from_planes(dtype.size(), planes),
        };
        t.check_nm_positions()?;
        Ok(t)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(e) => {
                let s = &self.buf[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => Err(Error::format(format!(
                "sparse tensor: truncated at field `{field}` (needs {n} bytes at offset {}, buffer has {})",
                self.pos,
                self.buf.len()
            ))),
        }
    }
    fn u8(&mut self, f: &str) -> Result<u8> {
        Ok(self.take(1, f)?[0])
    }
    fn u16(&mut self, f: &str) -> Result<u16> {
        let b = self.take(2, f)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u64(&mut self, f: &str) -> Result<u64> {
        let b = self.take(8, f)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Read one section whose decoded size must be `expect`.
    fn section(&mut self, expect: usize, name: &str) -> Result<Vec<u8>> {
        let what = format!("sparse tensor section `{name}`");
        let method = self.u8(&format!("{name}.method"))?;
        let raw_len = self.u64(&format!("{name}.raw_len"))?;
        if raw_len != expect as u64 {
            return Err(Error::format(format!(
                "{what}: field `raw_len` is {raw_len}, the header implies {expect}"
            )));
        }
        let plen = self.u64(&format!("{name}.payload_len"))?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if plen > remaining {
            return Err(Error::format(format!(
                "{what}: field `payload_len` is {plen}, only {remaining} bytes remain"
            )));
        }
        let payload = self.take(plen as usize, &format!("{name}.payload"))?;
        match method {
            METHOD_STORED => {
                if payload.len() != expect {
                    return Err(Error::format(format!(
                        "{what}: stored payload has {} bytes, expected {expect}",
                        payload.len()
                    )));
                }
                Ok(payload.to_vec())
            }
            METHOD_RANS => {
                if expect > rans::max_decoded_len(payload.len()) {
                    return Err(Error::format(format!(
                        "{what}: claims {expect} decoded bytes from a {}-byte rANS payload",
                        payload.len()
                    )));
                }
                let mut out: Vec<u8> = super::try_zeroed(expect, &what)?;
                rans::decode(payload, &mut out, &what)?;
                Ok(out)
            }
            METHOD_ZSTD => {
                if expect > payload.len().saturating_mul(ZSTD_MAX_RATIO) {
                    return Err(Error::format(format!(
                        "{what}: claims {expect} decoded bytes from a {}-byte zstd payload",
                        payload.len()
                    )));
                }
                // Capacity `expect` (checked above), allocated fallibly; zstd never writes past it.
                let mut out: Vec<u8> = Vec::new();
                out.try_reserve_exact(expect).map_err(|_| {
                    Error::limit(format!("{what}: {expect} bytes cannot be allocated"))
                })?;
                zstd::bulk::Decompressor::new()
                    .and_then(|mut d| d.decompress_to_buffer(payload, &mut out))
                    .map_err(|e| Error::format(format!("{what}: zstd frame is corrupt: {e}")))?;
                if out.len() != expect {
                    return Err(Error::format(format!(
                        "{what}: zstd frame holds {} bytes, expected {expect}",
                        out.len()
                    )));
                }
                Ok(out)
            }
            m => Err(Error::format(format!(
                "{what}: field `method` has unknown code {m}"
            ))),
        }
    }
}
