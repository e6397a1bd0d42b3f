//! Buffers: per-thread scratch reused across calls, and output allocations that skip zeroing
//! (the kernels write every element) and ask for huge pages.

use crate::error::{Error, Result};

thread_local! {
    /// Per-thread scratch (padded A, quantized activations), reused across calls: fresh pages
    /// cost a page fault each, which at small shapes costs more than the multiplication.
    static SCRATCH: std::cell::RefCell<[Vec<u8>; 4]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()]) };
}

/// Largest scratch buffer kept between calls.
const SCRATCH_KEEP: usize = 16 << 20;

/// Run `f` with this thread's scratch buffer `slot` (0: padded A, 1: quantized activations,
/// 2: a block's partial sums, 3: a block of A flipped to uint8) of
/// at least `len` bytes; contents are arbitrary.
pub(crate) fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut v = SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut()[slot]));
    if v.len() < len {
        v = vec![0u8; len];
    }
    let r = f(&mut v[..len]);
    if v.len() <= SCRATCH_KEEP {
        SCRATCH.with(|s| s.borrow_mut()[slot] = v);
    }
    r
}

fn alloc_len<T>(m: usize, n: usize) -> Result<usize> {
    let len = m
        .checked_mul(n)
        .filter(|&l| l <= isize::MAX as usize / 8)
        .ok_or_else(|| Error::limit(format!("output shape ({m}, {n}) is too large")))?;
    let bytes = len as u128 * std::mem::size_of::<T>() as u128;
    crate::buffers::check_fits(bytes, || format!("output of shape ({m}, {n})"))?;
    Ok(len)
}

/// Ask for transparent huge pages on the whole 2 MiB pages inside a large fresh allocation
/// (what numpy does for its arrays): in `madvise` mode a 64 MiB result then faults 32 times
/// instead of 16384 (4096 x 512 x 4096 into int32: 81 ms without, 61 ms with; the Python entries
/// that return int32 / float32 use recycled buffers instead, 44 ms; see BENCHMARKS.md).
fn advise_huge_pages(p: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        if bytes < 2 * HUGE {
            return;
        }
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: [start, end) lies inside the allocation; MADV_HUGEPAGE is advice only (it
            // never changes the contents or the validity of the memory) and failure is ignored.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, bytes);
}

/// An output buffer the kernels overwrite completely (every row, every column of every panel),
/// so it is not zeroed first: zeroing costs a pass over memory the kernels write anyway.
/// The reservation is fallible: (2^20 x 1) @ (1 x 2^20) asks 4 TiB from 2 MiB of operands,
/// which is an error, not an abort.
pub(crate) fn alloc_output<T: Copy>(
    m: usize,
    n: usize,
    fill: impl FnOnce(*mut T),
) -> Result<Vec<T>> {
    let len = alloc_len::<T>(m, n)?;
    let mut v: Vec<std::mem::MaybeUninit<T>> = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::limit(format!(
            "output of shape ({m}, {n}) needs {} bytes, which cannot be allocated",
            len as u128 * std::mem::size_of::<T>() as u128
        ))
    })?;
    // SAFETY: MaybeUninit needs no initialisation; capacity is at least len.
    unsafe { v.set_len(len) };
    advise_huge_pages(v.as_mut_ptr().cast(), len * std::mem::size_of::<T>());
    fill(v.as_mut_ptr().cast::<T>());
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `fill` ran the kernels, which write all m*n elements (`run` covers every row
    // block and every panel, `finish_rows` every row and column of its tile); MaybeUninit<T>
    // has T's layout, so the allocation is a valid Vec<T> of the same length and capacity.
    Ok(unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) })
}

/// A zeroed M x N result for the allocating twins of the `_into` entries (fallible: a huge
/// shape is an error, not an abort).
pub(crate) fn zeroed_output<T: Copy + Default>(m: usize, n: usize) -> Result<Vec<T>> {
    let len = alloc_len::<T>(m, n)?;
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::limit(format!(
            "output of shape ({m}, {n}) needs {} bytes, which cannot be allocated",
            len as u128 * std::mem::size_of::<T>() as u128
        ))
    })?;
    v.resize(len, T::default());
    Ok(v)
}
