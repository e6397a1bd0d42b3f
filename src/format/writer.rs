//! Writing `.epk` files incrementally and atomically (FORMAT.md section 9).
//!
//! Tensors arrive in any order (from parallel workers): [`encode_payload`] compresses and
//! hashes a payload without any lock, [`Writer::add`] appends it to a spool file in the
//! destination's folder. [`Writer::finish`] lays the payloads out in canonical order behind
//! the header in a second temporary file (a kernel-side copy), fsyncs it and renames it over
//! the destination. Until then the destination is untouched; on error or drop, both
//! temporary files are removed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::header::{preamble_version, Header, Payload, TensorRecord};
use super::spec::{self, Compression, Dtype, Encoding};
use crate::error::{Error, Result};

/// A payload ready to be appended: stored bytes, checksum, and what they decode to.
#[derive(Debug)]
pub struct EncodedPayload<'a> {
    pub role: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub size: u64,
    pub compression: Compression,
    pub stored: Cow<'a, [u8]>,
    pub xxh3: u64,
}

/// Check that `data` holds dtype x shape bytes, then compress it with zstd at `level` when
/// `zstd_level` is `Some` and that makes it smaller; hash the stored bytes.
pub fn encode_payload<'a>(
    role: &str,
    dtype: Dtype,
    shape: &[u64],
    data: &'a [u8],
    zstd_level: Option<i32>,
) -> Result<EncodedPayload<'a>> {
    let what = format!("payload {role:?}");
    let n = spec::numel(shape, &what).map_err(|e| Error::arg(e.to_string()))?;
    let size = n
        .checked_mul(dtype.itemsize())
        .ok_or_else(|| Error::limit(format!("{what}: size overflows")))?;
    if size != data.len() as u64 {
        return Err(Error::arg(format!(
            "{what}: {} bytes given, dtype {} x shape {shape:?} needs {size}",
            data.len(),
            dtype.name()
        )));
    }
    let mut stored: Cow<'a, [u8]> = Cow::Borrowed(data);
    let mut compression = Compression::None;
    if let Some(level) = zstd_level {
        if !data.is_empty() {
            let c = zstd::bulk::compress(data, level)
                .map_err(|e| Error::arg(format!("{what}: zstd compression failed: {e}")))?;
            let ok_ratio = (c.len() as u64).saturating_mul(spec::MAX_ZSTD_RATIO) >= size;
            if c.len() < data.len() && ok_ratio {
                stored = Cow::Owned(c);
                compression = Compression::Zstd;
            }
        }
    }
    let xxh3 = xxhash_rust::xxh3::xxh3_64(&stored);
    Ok(EncodedPayload {
        role: role.to_owned(),
        dtype,
        shape: shape.to_vec(),
        size,
        compression,
        stored,
        xxh3,
    })
}

/// What a tensor is, apart from its payloads.
#[derive(Debug, Clone)]
pub struct TensorMeta {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub encoding: Encoding,
    pub params: Map<String, Value>,
    pub stats: Option<Map<String, Value>>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary path next to `dest`: `.<name>.<pid>-<n>.<suffix>`.
pub fn temp_path(dest: &Path, suffix: &str) -> PathBuf {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "edgepack".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        ".{name}.{}-{nanos}-{n}.{suffix}",
        std::process::id()
    ))
}

/// Removes a file on drop unless disarmed.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Create `path`; errors name `dest`, the file the user asked for.
    fn create(path: PathBuf, dest: &Path) -> Result<(File, TempFile)> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(dest, e))?;
        Ok((f, TempFile { path, armed: true }))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

struct Spooled {
    meta: TensorMeta,
    payloads: Vec<(Payload, u64)>, // payload (offset unset) + offset in the spool
}

/// An `.epk` file being written.
pub struct Writer {
    dest: PathBuf,
    spool: File,
    _spool_tmp: TempFile,
    spool_len: u64,
    tensors: Vec<Spooled>,
    names: HashSet<String>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dest", &self.dest)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Writer {
    /// Start writing `dest` (nothing happens to `dest` until [`Writer::finish`]).
    pub fn create(dest: impl AsRef<Path>) -> Result<Writer> {
        let dest = dest.as_ref().to_path_buf();
        if dest.is_dir() {
            return Err(Error::io(
                &dest,
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
            ));
        }
        let (spool, _spool_tmp) = TempFile::create(temp_path(&dest, "epk-spool"), &dest)?;
        Ok(Writer {
            dest,
            spool,
            _spool_tmp,
            spool_len: 0,
            tensors: Vec::new(),
            names: HashSet::new(),
        })
    }

    /// Number of tensors added.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Append one tensor. Its record is validated with the reader's own rules.
    pub fn add(&mut self, meta: TensorMeta, payloads: &[EncodedPayload<'_>]) -> Result<()> {
        spec::check_name(&meta.name).map_err(|e| Error::arg(e.to_string()))?;
        if self.names.contains(&meta.name) {
            return Err(Error::arg(format!("duplicate tensor name {:?}", meta.name)));
        }
        if self.tensors.len() >= spec::MAX_TENSORS {
            return Err(Error::limit(format!(
                "more than {} tensors in one file",
                spec::MAX_TENSORS
            )));
        }
        let mut sorted: Vec<&EncodedPayload<'_>> = payloads.iter().collect();
        sorted.sort_by(|a, b| a.role.cmp(&b.role));
        let mut recs = Vec::with_capacity(sorted.len());
        let mut offset = 0u64;
        for p in &sorted {
            let rec = Payload {
                role: p.role.clone(),
                dtype: p.dtype,
                shape: p.shape.clone(),
                offset,
                length: p.stored.len() as u64,
                size: p.size,
                compression: p.compression,
                xxh3: p.xxh3,
            };
            offset = spec::align(offset + rec.length)?;
            recs.push(rec);
        }
        // The same checks a reader makes (encoding rules, dtypes, shapes).
        let record = TensorRecord {
            name: meta.name.clone(),
            dtype: meta.dtype,
            shape: meta.shape.clone(),
            encoding: meta.encoding,
            params: meta.params.clone(),
            payloads: recs.clone(),
            stats: meta.stats.clone(),
        };
        let json = super::header::record_json(&record).to_string();
        super::header::parse_record(
            &super::header::parse_json(json.as_bytes(), "record")?,
            self.tensors.len(),
        )
        .map_err(|e| match e {
            Error::Format(m) => Error::arg(m),
            other => other,
        })?;
        let mut placed = Vec::with_capacity(recs.len());
        for (rec, p) in recs.into_iter().zip(&sorted) {
            let at = self.spool_len;
            self.spool
                .write_all(&p.stored)
                .map_err(|e| Error::io(&self.dest, e))?;
            self.spool_len += p.stored.len() as u64;
            placed.push((rec, at));
        }
        self.names.insert(meta.name.clone());
        self.tensors.push(Spooled {
            meta,
            payloads: placed,
        });
        Ok(())
    }

    /// Lay out the file, fsync it and rename it over the destination.
    pub fn finish(mut self, metadata: BTreeMap<String, String>, recipe: Value) -> Result<()> {
        self.tensors.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        let mut offset = 0u64;
        let mut records = Vec::with_capacity(self.tensors.len());
        for s in &self.tensors {
            let mut payloads = Vec::with_capacity(s.payloads.len());
            for (p, _) in &s.payloads {
                let mut p = p.clone();
                p.offset = offset;
                offset = spec::align(offset + p.length)?;
                payloads.push(p);
            }
            records.push(TensorRecord {
                name: s.meta.name.clone(),
                dtype: s.meta.dtype,
                shape: s.meta.shape.clone(),
                encoding: s.meta.encoding,
                params: s.meta.params.clone(),
                payloads,
                stats: s.meta.stats.clone(),
            });
        }
        let header = Header {
            metadata,
            recipe,
            tensors: records,
        };
        let json = header.to_json();
        // Never write what a reader would reject.
        Header::parse(json.as_bytes()).map_err(|e| match e {
            Error::Format(m) => Error::arg(m),
            other => other,
        })?;
        let hlen = json.len() as u64;
        if hlen > spec::MAX_HEADER_LEN {
            return Err(Error::limit(format!(
                "header of {hlen} bytes is above the limit of {} bytes",
                spec::MAX_HEADER_LEN
            )));
        }
        let data_start = spec::align(spec::PREAMBLE_LEN + hlen)?;

        let (mut out, out_tmp) = TempFile::create(temp_path(&self.dest, "epk-tmp"), &self.dest)?;
        let io = |e| Error::io(&self.dest, e);
        out.write_all(&preamble_version(hlen, header.min_version()))
            .map_err(io)?;
        out.write_all(json.as_bytes()).map_err(io)?;
        let zeros = [0u8; 64];
        let mut pos = spec::PREAMBLE_LEN + hlen;
        out.write_all(&zeros[..(data_start - pos) as usize])
            .map_err(io)?;
        pos = data_start;
        self.spool.flush().map_err(|e| Error::io(&self.dest, e))?;
        for (s, r) in self.tensors.iter().zip(&header.tensors) {
            for ((_, at), p) in s.payloads.iter().zip(&r.payloads) {
                let want = data_start + p.offset;
                out.write_all(&zeros[..(want - pos) as usize]).map_err(io)?;
                self.spool
                    .seek(SeekFrom::Start(*at))
                    .map_err(|e| Error::io(&self.dest, e))?;
                let n = std::io::copy(&mut (&self.spool).take(p.length), &mut out).map_err(io)?;
                if n != p.length {
                    return Err(Error::io(
                        &self.dest,
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "spool file shrank"),
                    ));
                }
                pos = want + p.length;
            }
        }
        out.sync_all().map_err(io)?;
        drop(out);
        fs::rename(&out_tmp.path, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        let mut out_tmp = out_tmp;
        out_tmp.armed = false;
        sync_dir(&self.dest);
        Ok(())
    }
}

fn sync_dir(dest: &Path) {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Not every filesystem can fsync a folder; the rename itself is atomic either way.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Copy `src` to `dest` atomically (temporary file in `dest`'s folder, fsync, rename).
pub fn atomic_copy(src: &Path, dest: &Path) -> Result<()> {
    if dest.is_dir() {
        return Err(Error::io(
            dest,
            std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
        ));
    }
    let mut input = File::open(src).map_err(|e| Error::io(src, e))?;
    let (mut out, mut tmp) = TempFile::create(temp_path(dest, "epk-tmp"), dest)?;
    std::io::copy(&mut input, &mut out).map_err(|e| Error::io(dest, e))?;
    out.sync_all().map_err(|e| Error::io(dest, e))?;
    drop(out);
    fs::rename(&tmp.path, dest).map_err(|e| Error::io(dest, e))?;
    tmp.armed = false;
    sync_dir(dest);
    Ok(())
}
