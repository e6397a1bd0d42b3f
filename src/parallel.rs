//! The thread pool the kernels run on: `edgepack.set_num_threads(n)` / `EDGEPACK_NUM_THREADS`,
//! default = the cores available to this process. With the result-buffer cache (`buffers.rs`,
//! which never changes a result) this is the only global mutable state.

use std::sync::{Arc, OnceLock, RwLock};

use crate::error::{Error, Result};

static POOL: OnceLock<RwLock<Arc<rayon::ThreadPool>>> = OnceLock::new();

fn build(n: usize) -> Result<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("edgepack-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::arg(format!("cannot start {n} worker threads: {e}")))
}

/// Parse `EDGEPACK_NUM_THREADS` (`None` when unset or empty).
pub fn threads_from_env() -> Result<Option<usize>> {
    match std::env::var("EDGEPACK_NUM_THREADS") {
        Ok(s) if !s.trim().is_empty() => match s.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(Error::arg(format!(
                "EDGEPACK_NUM_THREADS={s:?}: expected a whole number of threads >= 1"
            ))),
        },
        _ => Ok(None),
    }
}

/// The default thread count: `EDGEPACK_NUM_THREADS`, else the cores available.
pub fn default_threads() -> usize {
    threads_from_env()
        .ok()
        .flatten()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn pool_lock() -> &'static RwLock<Arc<rayon::ThreadPool>> {
    POOL.get_or_init(|| {
        let n = default_threads();
        // Building a pool of `n >= 1` threads fails only if the OS refuses threads; fall back
        // to one thread rather than panicking.
        let pool = build(n)
            .or_else(|_| build(1))
            .expect("the OS refused to start even one worker thread");
        RwLock::new(pool)
    })
}

/// The pool kernels run on.
pub fn pool() -> Arc<rayon::ThreadPool> {
    pool_lock()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// How many threads kernels use.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Set how many threads kernels use (`n >= 1`). Calls already running keep their pool.
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::arg("`n` must be >= 1 threads, found 0"));
    }
    if n > 4096 {
        return Err(Error::arg(format!(
            "`n` must be <= 4096 threads, found {n}"
        )));
    }
    let new = build(n)?;
    *pool_lock().write().unwrap_or_else(|e| e.into_inner()) = new;
    Ok(())
}

/// Run `f` inside the kernel pool (so `rayon::join` / `par_iter` inside use it).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}

/// Split `0..n` into chunks of at least `min_chunk` items, about 4 per thread, and run
/// `f(start, end)` on each in parallel. With one thread or a small `n`, runs inline.
pub fn for_chunks(n: usize, min_chunk: usize, f: impl Fn(usize, usize) + Sync + Send) {
    let min_chunk = min_chunk.max(1);
    let threads = num_threads();
    if threads <= 1 || n <= min_chunk {
        if n > 0 {
            f(0, n);
        }
        return;
    }
    let chunks = (n / min_chunk).clamp(1, threads * 4);
    let per = n.div_ceil(chunks);
    for_each_index(n.div_ceil(per), |c| {
        let start = c * per;
        f(start, (start + per).min(n));
    });
}

/// Run `f(i)` for every `i` in `0..items` on the kernel threads, the calling thread included:
/// it takes items from a shared counter next to up to `num_threads() - 1` pool workers (work
/// sharing, so uneven items still balance). A short call then waits for no hand-off to the
/// pool and for at most the wake-up of the workers it needs, which overlaps its own first
/// item; with `install` the caller blocked while the job was handed over and every worker woke
/// up. matmul at M = 1 on a packed 4096 x 4096 B, 2 threads, 800 back-to-back calls: median
/// 166-185 us instead of 326-445 (minimum 104-118 vs 113-141).
pub fn for_each_index(items: usize, f: impl Fn(usize) + Sync) {
    for_each_index_in(&pool(), items, f)
}

fn for_each_index_in(pool: &rayon::ThreadPool, items: usize, f: impl Fn(usize) + Sync) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = pool.current_num_threads().min(items);
    if threads <= 1 {
        (0..items).for_each(f);
        return;
    }
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= items {
            break;
        }
        f(i);
    };
    pool.in_place_scope(|s| {
        for _ in 1..threads {
            s.spawn(|_| work());
        }
        work();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn zero_threads_is_an_error() {
        assert!(set_num_threads(0)
            .unwrap_err()
            .to_string()
            .contains("found 0"));
    }

    #[test]
    fn for_each_index_runs_every_index_once_on_several_threads() {
        // A pool of its own: other tests change the global one.
        let pool = build(3).unwrap();
        for n in [0usize, 1, 2, 5, 1000] {
            let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            let threads = std::sync::Mutex::new(std::collections::HashSet::new());
            for_each_index_in(&pool, n, |i| {
                seen[i].fetch_add(1, Ordering::Relaxed);
                threads.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(std::time::Duration::from_micros(200));
            });
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "n={n}");
            let used = threads.into_inner().unwrap().len();
            // The caller and the pool's workers share the items, at most 3 threads at once.
            assert!(
                used <= 3 && (n < 1000 || used >= 2),
                "n={n}: {used} threads"
            );
        }
    }

    #[test]
    fn for_chunks_covers_every_index_once() {
        for n in [0usize, 1, 7, 1000, 100_003] {
            let seen: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for_chunks(n, 64, |a, b| {
                for s in &seen[a..b] {
                    s.fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "n={n}");
        }
    }
}
