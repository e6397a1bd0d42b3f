//! Large output buffers, recycled.
//!
//! A call that returns a fresh multi-megabyte array pays for its memory twice: once to write the
//! result and once, before that, for the kernel to hand it zeroed pages (a page fault per 4 KiB,
//! or per 2 MiB with transparent huge pages). On this class of machine faulting in 256 MiB costs
//! about 22 ms, twice the time the dequantize kernel needs to fill it. onnxruntime avoids the
//! cost with its arena (freed tensors keep their memory for the next run); this module does the
//! same for edgepack's results, and nothing else:
//!
//! * only buffers of at least [`MIN_BYTES`] are recycled (smaller ones come from numpy's
//!   allocator, where glibc's heap already reuses memory);
//! * a dropped buffer goes back to a process-wide cache holding at most [`limit`] bytes
//!   (`EDGEPACK_BUFFER_CACHE_MB`, default 256; `0` turns recycling off), oldest evicted first;
//! * [`release`] returns every cached buffer to the operating system.
//!
//! Results never depend on it: every kernel that writes into a buffer writes all of it (the
//! same contract as `out=`). Buffers are anonymous memory maps advised for huge pages, so even a
//! first allocation faults per 2 MiB where the kernel allows it.
//!
//! This cache is, with the thread pool, the only process-wide state; it changes how much
//! memory stays mapped between calls, never a result.

use std::sync::{Mutex, OnceLock};

use memmap2::MmapMut;

use crate::error::{Error, Result};

/// Buffers smaller than this are not recycled.
pub const MIN_BYTES: usize = 4 << 20;

/// Buffers are mapped in multiples of this (the x86-64 / aarch64 huge page), so that sizes
/// close to each other share a buffer.
const GRANULE: usize = 2 << 20;

/// Default cap on the bytes kept between calls.
/// 256 MiB: one 64M-element float32 result, or a few weight-sized ones; small enough to leave
/// idle on a laptop or an edge box (onnxruntime's CPU arena keeps what it grew to by default).
const DEFAULT_LIMIT_MB: usize = 256;

/// Parse `EDGEPACK_BUFFER_CACHE_MB` (`None` when unset or empty).
pub fn limit_from_env() -> Result<Option<usize>> {
    match std::env::var("EDGEPACK_BUFFER_CACHE_MB") {
        Ok(s) if !s.trim().is_empty() => parse_limit(&s).map(Some),
        _ => Ok(None),
    }
}

/// `EDGEPACK_BUFFER_CACHE_MB` as bytes.
fn parse_limit(s: &str) -> Result<usize> {
    match s.trim().parse::<usize>() {
        Ok(mb) if mb <= (1 << 20) => Ok(mb << 20),
        _ => Err(Error::arg(format!(
            "EDGEPACK_BUFFER_CACHE_MB={s:?}: expected a whole number of MiB from 0 to 1048576"
        ))),
    }
}

/// Bytes the cache may keep between calls (`EDGEPACK_BUFFER_CACHE_MB`, default 256 MiB).
pub fn limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        limit_from_env()
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_LIMIT_MB << 20)
    })
}

struct Cache {
    /// Oldest first.
    maps: Vec<MmapMut>,
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    maps: Vec::new(),
    bytes: 0,
});

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    // The cache holds no invariant a panic could break halfway (a push and an add).
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// This machine's physical memory plus swap in bytes (Linux `sysinfo`, read once); `None`
/// where it cannot be read.
pub fn memory_total() -> Option<u128> {
    static TOTAL: OnceLock<Option<u128>> = OnceLock::new();
    *TOTAL.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: sysinfo only writes the struct it is given, which is plain old data.
            let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
            // SAFETY: `si` is a valid, writable sysinfo struct.
            if unsafe { libc::sysinfo(&mut si) } == 0 {
                let unit = u128::from(si.mem_unit.max(1));
                return Some((si.totalram as u128 + si.totalswap as u128) * unit);
            }
            None
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    })
}

/// An error when `bytes` exceed this machine's memory and swap: such a request can never be
/// satisfied, and where the kernel overcommits (the allocation "succeeds" and the pages fault
/// in as they are written) the process would be killed mid-write instead of getting an error.
pub fn check_fits(bytes: u128, what: impl FnOnce() -> String) -> Result<()> {
    match memory_total() {
        Some(total) if bytes > total => Err(Error::limit(format!(
            "{} needs {bytes} bytes, more than this machine's memory and swap ({total} bytes)",
            what()
        ))),
        _ => Ok(()),
    }
}

/// A writable byte buffer of at least `len` bytes, page aligned; returned to the cache on drop.
/// Its contents are unspecified (zero when freshly mapped, a previous result when recycled).
#[derive(Debug)]
pub struct Buffer {
    map: Option<MmapMut>,
    len: usize,
}

impl Buffer {
    /// A buffer of `len` bytes: a cached one of the same size class, else a new mapping.
    pub fn take(len: usize) -> Result<Buffer> {
        let class = len
            .max(1)
            .checked_next_multiple_of(GRANULE)
            .ok_or_else(|| Error::limit(format!("cannot allocate {len} bytes")))?;
        if len >= MIN_BYTES {
            let mut c = cache();
            if let Some(i) = c.maps.iter().rposition(|m| m.len() == class) {
                let map = c.maps.remove(i);
                c.bytes -= class;
                return Ok(Buffer {
                    map: Some(map),
                    len,
                });
            }
        }
        check_fits(class as u128, || "the result".to_string())?;
        let map = MmapMut::map_anon(class).map_err(|e| {
            Error::limit(format!("cannot allocate {len} bytes for the result: {e}"))
        })?;
        #[cfg(target_os = "linux")]
        {
            // Advice only: fewer, larger page faults when transparent huge pages are in
            // `madvise` mode (numpy gives its large arrays the same advice).
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Ok(Buffer {
            map: Some(map),
            len,
        })
    }

    /// The usable length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte; valid for [`Buffer::len`] bytes, page aligned, stable for the buffer's
    /// life (the mapping never moves).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map
            .as_mut()
            .map_or(std::ptr::null_mut(), |m| m.as_mut_ptr())
    }

    /// The buffer as bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        self.map.as_mut().map_or(&mut [], |m| &mut m[..len])
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let Some(map) = self.map.take() else { return };
        let class = map.len();
        let limit = limit();
        if self.len < MIN_BYTES || class > limit {
            return; // unmapped here
        }
        let evicted = {
            let mut c = cache();
            c.maps.push(map);
            c.bytes += class;
            let mut evicted = Vec::new();
            while c.bytes > limit {
                let old = c.maps.remove(0);
                c.bytes -= old.len();
                evicted.push(old);
            }
            evicted
        };
        drop(evicted); // unmapped outside the lock
    }
}

/// Unmap every cached buffer; returns the bytes given back to the operating system.
pub fn release() -> usize {
    let maps = {
        let mut c = cache();
        c.bytes = 0;
        std::mem::take(&mut c.maps)
    };
    maps.iter().map(|m| m.len()).sum()
}

/// Bytes currently cached.
pub fn cached_bytes() -> usize {
    cache().bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    // The cache is process-wide and tests run in parallel: assert only on buffers this test
    // owns, identified by an unusual size class.
    #[test]
    fn a_dropped_buffer_is_reused_for_the_same_size_class() {
        let len = MIN_BYTES + 7 * GRANULE + 3;
        let mut a = Buffer::take(len).unwrap();
        assert_eq!(a.len(), len);
        assert_eq!(a.as_mut_ptr() as usize % 4096, 0);
        a.as_mut_slice().fill(0xA5);
        let p = a.as_mut_ptr();
        drop(a);
        let mut b = Buffer::take(len - 1).unwrap();
        assert_eq!(b.as_mut_ptr(), p, "same size class, same mapping");
        assert_eq!(b.as_mut_slice()[len - 2], 0xA5, "recycled, not zeroed");
    }

    #[test]
    fn small_buffers_are_not_kept() {
        let before = cached_bytes();
        let mut a = Buffer::take(1000).unwrap();
        a.as_mut_slice().fill(1);
        drop(a);
        // Another test may add or take a large buffer concurrently, never a small one.
        assert!(
            cache().maps.iter().all(|m| m.len() >= MIN_BYTES),
            "{before}"
        );
    }

    #[test]
    fn a_huge_request_is_an_error_not_an_abort() {
        let e = Buffer::take(usize::MAX - 5).unwrap_err().to_string();
        assert!(e.contains("cannot allocate"), "{e}");
        // 1 EiB: above any machine's memory and swap, refused before it is mapped (where the
        // kernel overcommits, the mapping would succeed and writing it would get the process
        // killed); where sysinfo is unavailable, the mapping itself fails.
        let e = Buffer::take(1 << 60).unwrap_err().to_string();
        assert!(
            e.contains("more than this machine's memory and swap") || e.contains("cannot allocate"),
            "{e}"
        );
        if memory_total().is_some() {
            assert!(
                e.contains("more than this machine's memory and swap"),
                "{e}"
            );
        }
    }

    #[test]
    fn env_values() {
        assert_eq!(parse_limit("0").unwrap(), 0);
        assert_eq!(parse_limit(" 512 ").unwrap(), 512 << 20);
        for bad in ["-1", "lots", "1.5", "99999999999", ""] {
            let e = parse_limit(bad).unwrap_err().to_string();
            assert!(
                e.contains("EDGEPACK_BUFFER_CACHE_MB") && e.contains("whole number"),
                "{e}"
            );
        }
    }
}
