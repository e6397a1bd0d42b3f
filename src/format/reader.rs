//! Reading `.epk` files: everything in the header and the layout is validated when the file
//! is opened; a payload is verified (checksum) and decoded only when it is asked for.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::header::{parse_preamble_version, Header, Payload, TensorRecord};
use super::spec::{self, Compression};
use crate::error::{Error, Result};

/// A validated view of an `.epk` file's bytes (any byte source: a memory map, a buffer).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub header: Header,
    pub data_start: u64,
    pub header_len: u64,
}

impl Parsed {
    /// Validate a whole file's bytes: preamble, header, layout, zero padding. Payload
    /// checksums are verified on access ([`Parsed::payload`]).
    pub fn parse(bytes: &[u8]) -> Result<Parsed> {
        let file_len = bytes.len() as u64;
        let (version, header_len) = parse_preamble_version(bytes, file_len)?;
        let hstart = spec::PREAMBLE_LEN as usize;
        // parse_preamble checked 24 + header_len <= file_len.
        let hbytes = &bytes[hstart..hstart + header_len as usize];
        let header = Header::parse(hbytes)?;
        header.check_version(version)?;
        let data_start = spec::align(spec::PREAMBLE_LEN + header_len)?;
        header.check_layout(data_start, file_len)?;
        // Zero padding: after the header, and between payloads.
        let hend = hstart + header_len as usize;
        check_zero(bytes, hend as u64, data_start, "header padding")?;
        let mut prev_end = 0u64;
        for t in &header.tensors {
            for p in &t.payloads {
                check_zero(
                    bytes,
                    data_start + prev_end,
                    data_start + p.offset,
                    "padding between payloads",
                )?;
                prev_end = p.offset + p.length; // checked in check_layout
            }
        }
        Ok(Parsed {
            header,
            data_start,
            header_len,
        })
    }

    /// Verify and decode one payload of a tensor from the file's bytes.
    pub fn payload(&self, bytes: &[u8], tensor: &str, role: &str) -> Result<Vec<u8>> {
        let t = self.record(tensor)?;
        let p = t
            .payloads
            .iter()
            .find(|p| p.role == role)
            .ok_or_else(|| Error::arg(format!("tensor {tensor:?} has no payload {role:?}")))?;
        decode_payload(bytes, self.data_start, t, p)
    }

    /// The record of a tensor, or an error naming it.
    pub fn record(&self, name: &str) -> Result<&TensorRecord> {
        self.header
            .find(name)
            .ok_or_else(|| Error::arg(format!("no tensor named {name:?} in the file")))
    }
}

fn check_zero(bytes: &[u8], from: u64, to: u64, what: &str) -> Result<()> {
    let to = to.min(bytes.len() as u64);
    if from >= to {
        return Ok(());
    }
    if let Some(i) = bytes[from as usize..to as usize]
        .iter()
        .position(|&b| b != 0)
    {
        return Err(Error::format(format!(
            "non-zero byte in the {what} at byte {}",
            from as usize + i
        )));
    }
    Ok(())
}

/// Verify a payload's checksum, then decode it into exactly `p.size` bytes.
pub fn decode_payload(
    bytes: &[u8],
    data_start: u64,
    t: &TensorRecord,
    p: &Payload,
) -> Result<Vec<u8>> {
    let stored = verified_stored(bytes, data_start, t, p)?;
    decode_stored(stored, t, p)
}

/// The stored bytes of a payload, after checking its bounds and checksum.
pub fn verified_stored<'a>(
    bytes: &'a [u8],
    data_start: u64,
    t: &TensorRecord,
    p: &Payload,
) -> Result<&'a [u8]> {
    let what = || format!("tensor {:?} payload {:?}", t.name, p.role);
    let start = data_start
        .checked_add(p.offset)
        .ok_or_else(|| Error::format(format!("{}: offset overflows", what())))?;
    let end = start
        .checked_add(p.length)
        .ok_or_else(|| Error::format(format!("{}: length overflows", what())))?;
    let stored = usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(s, e)| bytes.get(s..e))
        .ok_or_else(|| {
            Error::format(format!(
                "{}: bytes {start}..{end} are outside the file",
                what()
            ))
        })?;
    let h = xxhash_rust::xxh3::xxh3_64(stored);
    if h != p.xxh3 {
        return Err(Error::format(format!(
            "{}: checksum mismatch (xxh3 {h:016x}, header says {:016x}): the file is corrupt",
            what(),
            p.xxh3
        )));
    }
    Ok(stored)
}

fn decode_stored(stored: &[u8], t: &TensorRecord, p: &Payload) -> Result<Vec<u8>> {
    let what = || format!("tensor {:?} payload {:?}", t.name, p.role);
    match p.compression {
        Compression::None => Ok(stored.to_vec()),
        Compression::Zstd => {
            let size = usize::try_from(p.size).map_err(|_| {
                Error::limit(format!("{}: {} bytes do not fit in memory", what(), p.size))
            })?;
            // Exactly one frame covering the stored bytes.
            match zstd::zstd_safe::find_frame_compressed_size(stored) {
                Ok(n) if n == stored.len() => {}
                Ok(n) => {
                    return Err(Error::format(format!(
                        "{}: zstd frame is {n} bytes but the payload holds {} bytes (exactly one frame expected)",
                        what(),
                        stored.len()
                    )))
                }
                Err(_) => return Err(Error::format(format!("{}: not a valid zstd frame", what()))),
            }
            match zstd::zstd_safe::get_frame_content_size(stored) {
                Ok(Some(n)) if n != p.size => {
                    return Err(Error::format(format!(
                        "{}: zstd frame declares {n} decoded bytes, the header says {}",
                        what(),
                        p.size
                    )))
                }
                Ok(_) => {}
                Err(_) => return Err(Error::format(format!("{}: not a valid zstd frame", what()))),
            }
            // size <= MAX_ZSTD_RATIO * length was checked when the header was parsed.
            // Fallible: a file of L bytes may declare up to 32768 x L; failing to get that
            // much memory is an error, not an abort.
            let mut out: Vec<u8> = Vec::new();
            out.try_reserve_exact(size).map_err(|_| {
                Error::limit(format!("{}: {size} bytes cannot be allocated", what()))
            })?;
            let mut dec = zstd::bulk::Decompressor::new()
                .map_err(|e| Error::format(format!("{}: zstd: {e}", what())))?;
            let n = dec.decompress_to_buffer(stored, &mut out).map_err(|e| {
                Error::format(format!(
                    "{}: zstd data is corrupt or decodes to more than the declared {} bytes ({e})",
                    what(),
                    p.size
                ))
            })?;
            if n != size || out.len() != size {
                return Err(Error::format(format!(
                    "{}: zstd data decodes to {n} bytes, the header says {}",
                    what(),
                    p.size
                )));
            }
            Ok(out)
        }
    }
}

/// An opened `.epk` file: memory-mapped, validated, lazy.
#[derive(Debug)]
pub struct Reader {
    path: PathBuf,
    map: Option<Mmap>,
    parsed: Parsed,
}

impl Reader {
    /// Open and validate a file. OS errors keep their kind and name the path.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader> {
        let path = path.as_ref().to_path_buf();
        // Refuse what is not a regular file before opening it: opening a FIFO for reading
        // blocks until a writer appears, and a device has no length to check against.
        let pre = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if pre.is_dir() {
            return Err(Error::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
            ));
        }
        if !pre.is_file() {
            return Err(Error::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file (a FIFO, socket or device)",
                ),
            ));
        }
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        let len = meta.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only; the file may change under us (as with any mmap
            // reader, e.g. safetensors), which is why checksums are verified on every access.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?)
        };
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        let parsed = Parsed::parse(bytes).map_err(|e| match e {
            Error::Format(m) => Error::format(format!("{}: {m}", path.display())),
            other => other,
        })?;
        Ok(Reader { path, map, parsed })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.parsed.header
    }

    pub fn parsed(&self) -> &Parsed {
        &self.parsed
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Verify and decode one payload.
    pub fn payload(&self, tensor: &str, role: &str) -> Result<Vec<u8>> {
        self.parsed.payload(self.bytes(), tensor, role)
    }

    /// For an uncompressed payload: verify its checksum and return its absolute byte range in
    /// the file, so a caller can map it without copying. `None` for a compressed payload.
    pub fn verified_range(&self, tensor: &str, role: &str) -> Result<Option<(u64, u64)>> {
        let t = self.parsed.record(tensor)?;
        let p = t
            .payloads
            .iter()
            .find(|p| p.role == role)
            .ok_or_else(|| Error::arg(format!("tensor {tensor:?} has no payload {role:?}")))?;
        if p.compression != Compression::None {
            return Ok(None);
        }
        verified_stored(self.bytes(), self.parsed.data_start, t, p)?;
        // In bounds: checked by verified_stored.
        Ok(Some((self.parsed.data_start + p.offset, p.length)))
    }

    /// Verify every payload's checksum and decoding (reads the whole file).
    pub fn verify(&self) -> Result<()> {
        for t in &self.parsed.header.tensors {
            for p in &t.payloads {
                decode_payload(self.bytes(), self.parsed.data_start, t, p)?;
            }
        }
        Ok(())
    }
}
