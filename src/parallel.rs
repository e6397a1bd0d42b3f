//! The thread pool the kernels run on: `edgepack.set_num_threads(n)` / `EDGEPACK_NUM_THREADS`,
//! default = the cores available to this process. With the result-buffer cache (`buffers.rs`,
//! which never changes a result) this is the only global mutable state.
//!
//! Two ways in: [`install`] runs rayon code (`par_iter`, `join`) on the pool; [`for_each_index`]
//! (and [`for_chunks`] on top of it), what the matmul and quantization kernels use, runs items on
//! the calling thread and on *helpers*: pool workers that, after a call, keep polling for the
//! next one for a short while ([`spin_window`], `EDGEPACK_SPIN_US`) instead of going to sleep,
//! as OpenMP runtimes and onnxruntime's pool do. Waking a sleeping thread costs 10-100 us on
//! this VM and sometimes milliseconds, which a 1 ms multiplication on 2 threads cannot hide.

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A pool and the helper state of its [`for_each_index`] calls.
struct Workers {
    pool: rayon::ThreadPool,
    helpers: Arc<Helpers>,
    /// The process that started the pool's threads (a forked child has none of them).
    pid: u32,
}

static POOL: OnceLock<RwLock<Arc<Workers>>> = OnceLock::new();

fn build(n: usize) -> Result<Arc<Workers>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("edgepack-{i}"))
        .build()
        .map_err(|e| Error::arg(format!("cannot start {n} worker threads: {e}")))?;
    Ok(Arc::new(Workers {
        pool,
        helpers: Arc::new(Helpers::default()),
        pid: std::process::id(),
    }))
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

/// How long helpers poll for the next call before they sleep, 1 ms unless `EDGEPACK_SPIN_US`
/// says otherwise (0: never; read once). A call that follows within the window starts on
/// every thread at once; the price is up to this much CPU time per helper after the last
/// call, spent in `pause` loops.
pub fn spin_window() -> Result<Duration> {
    static SPIN: OnceLock<std::result::Result<Duration, String>> = OnceLock::new();
    SPIN.get_or_init(|| match std::env::var("EDGEPACK_SPIN_US") {
        Ok(s) if !s.trim().is_empty() => match s.trim().parse::<u64>() {
            Ok(us) if us <= 1_000_000 => Ok(Duration::from_micros(us)),
            _ => Err(format!(
                "EDGEPACK_SPIN_US={s:?}: expected a whole number of microseconds from 0 to 1000000"
            )),
        },
        _ => Ok(Duration::from_micros(1000)),
    })
    .clone()
    .map_err(Error::arg)
}

fn workers_lock() -> &'static RwLock<Arc<Workers>> {
    POOL.get_or_init(|| {
        let n = default_threads();
        // Building a pool of `n >= 1` threads fails only if the OS refuses threads; fall back
        // to one thread rather than panicking.
        let workers = build(n)
            .or_else(|_| build(1))
            .expect("the OS refused to start even one worker thread");
        RwLock::new(workers)
    })
}

fn workers() -> Arc<Workers> {
    let w = workers_lock()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if w.pid == std::process::id() {
        return w;
    }
    // A child of `fork()` (Python's multiprocessing default on Linux): the pool's threads
    // stayed in the parent, and work handed to them would wait forever. Start a pool of the
    // same size here; the parent's is leaked, not dropped (its threads are not ours to stop).
    let mut slot = workers_lock().write().unwrap_or_else(|e| e.into_inner());
    if slot.pid != std::process::id() {
        let n = slot.pool.current_num_threads();
        let fresh = build(n)
            .or_else(|_| build(1))
            .expect("the OS refused to start even one worker thread");
        std::mem::forget(std::mem::replace(&mut *slot, fresh));
    }
    slot.clone()
}

/// How many threads kernels use.
pub fn num_threads() -> usize {
    workers().pool.current_num_threads()
}

/// Set how many threads kernels use (`n >= 1`). Calls already running keep their pool (and
/// the old pool's helpers stop after their spin window).
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
    *workers_lock().write().unwrap_or_else(|e| e.into_inner()) = new;
    Ok(())
}

/// Run `f` inside the kernel pool (so `rayon::join` / `par_iter` inside use it).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    workers().pool.install(f)
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
/// it takes items from a shared counter next to up to `num_threads() - 1` helpers (work
/// sharing, so uneven items still balance). The caller never waits for a helper to start,
/// only for the items helpers have taken. With helpers polling from the previous call
/// (`EDGEPACK_SPIN_US`), the next call starts on every thread within a microsecond instead of
/// after a wake-up (10-100 us here, and milliseconds at times).
///
/// A panic in `f` reaches the caller after every thread has left the call.
pub fn for_each_index(items: usize, f: impl Fn(usize) + Sync) {
    let spin = spin_window().unwrap_or(Duration::ZERO);
    for_each_index_in(&workers(), spin, items, &f)
}

fn for_each_index_in(w: &Workers, spin: Duration, items: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = w.pool.current_num_threads().min(items);
    if threads <= 1 {
        (0..items).for_each(f);
        return;
    }
    // Inside a pool worker (nested in rayon code) or with another call holding the helpers
    // (concurrent callers): rayon's own scope, whose tasks any free worker picks up.
    if spin.is_zero() || rayon::current_thread_index().is_some() {
        return scoped(&w.pool, threads, items, f);
    }
    let job = Job {
        next: AtomicUsize::new(0),
        active: AtomicUsize::new(0),
        items,
        f,
        panic: Mutex::new(None),
    };
    let h = &*w.helpers;
    let ptr = (&job as *const Job<'_>).cast::<Job<'static>>().cast_mut();
    if h.slot
        .compare_exchange(std::ptr::null_mut(), ptr, SeqCst, SeqCst)
        .is_err()
    {
        return scoped(&w.pool, threads, items, f);
    }
    h.epoch.fetch_add(1, SeqCst);
    // From here until the guard has run, helpers may hold `&job`.
    let guard = Unpublish(h, &job);
    let alive = h.helpers.load(SeqCst);
    for _ in alive..threads - 1 {
        h.helpers.fetch_add(1, SeqCst);
        let hh = Arc::clone(&w.helpers);
        w.pool.spawn(move || hh.serve(spin));
    }
    job.run();
    drop(guard);
    if let Some(p) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        std::panic::resume_unwind(p);
    }
}

/// [`for_each_index`] through a rayon scope: tasks on the pool's queue.
fn scoped(pool: &rayon::ThreadPool, threads: usize, items: usize, f: &(dyn Fn(usize) + Sync)) {
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, SeqCst);
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

/// One [`for_each_index`] call as helpers see it.
struct Job<'a> {
    next: AtomicUsize,
    /// Helpers working on this call.
    active: AtomicUsize,
    items: usize,
    f: &'a (dyn Fn(usize) + Sync),
    /// The first panic of a helper, re-raised by the caller.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl Job<'_> {
    /// Take items until none are left.
    fn run(&self) {
        loop {
            let i = self.next.fetch_add(1, SeqCst);
            if i >= self.items {
                break;
            }
            (self.f)(i);
        }
    }
}

/// The published call of one pool, and its helpers.
#[derive(Default)]
struct Helpers {
    /// The running call (null: none). Its owner clears it, then waits until `entering` is 0
    /// and then until its `active` is 0 before the job goes out of scope; so a helper that
    /// counted itself into `entering` and then still finds the same pointer here may count
    /// itself into the job's `active` and use it.
    slot: AtomicPtr<Job<'static>>,
    /// Bumped after each publication, so a helper enters each call once.
    epoch: AtomicU64,
    /// Helpers between reading `slot` and counting themselves into the job (a few
    /// instructions: never the time of an item).
    entering: AtomicUsize,
    /// Helper tasks alive (working or polling).
    helpers: AtomicUsize,
    /// Test hook: helpers entered a call (any call) at least once.
    #[cfg(test)]
    served: std::sync::atomic::AtomicBool,
}

/// Clears the slot and waits for the helpers in the job, also when the caller's own item
/// panics.
struct Unpublish<'a, 'j>(&'a Helpers, &'a Job<'j>);

impl Drop for Unpublish<'_, '_> {
    fn drop(&mut self) {
        self.0.slot.store(std::ptr::null_mut(), SeqCst);
        while self.0.entering.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        while self.1.active.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }
}

impl Helpers {
    /// A helper's life: join each published call once; after `spin` without one, leave.
    /// While polling it also runs pending rayon work of the pool, so it never holds up
    /// `install` / `par_iter` code.
    fn serve(&self, spin: Duration) {
        let mut seen = self.epoch.load(SeqCst).wrapping_sub(1);
        let mut idle = Instant::now();
        let mut polls = 0u32;
        loop {
            let e = self.epoch.load(SeqCst);
            if e != seen {
                seen = e;
                let p = self.slot.load(SeqCst);
                if !p.is_null() {
                    self.entering.fetch_add(1, SeqCst);
                    let job = if self.slot.load(SeqCst) == p {
                        // SAFETY: counted into `entering` while `p` is still published: its
                        // owner keeps it alive until `entering` and then its `active` are 0
                        // (`Unpublish`), and `active` is raised before `entering` drops.
                        let job = unsafe { &*p };
                        job.active.fetch_add(1, SeqCst);
                        Some(job)
                    } else {
                        None
                    };
                    self.entering.fetch_sub(1, SeqCst);
                    if let Some(job) = job {
                        #[cfg(test)]
                        self.served.store(true, SeqCst);
                        let r =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
                        if let Err(payload) = r {
                            // No more items for anyone: the call is failing.
                            job.next.store(job.items, SeqCst);
                            let mut slot = job.panic.lock().unwrap_or_else(|e| e.into_inner());
                            slot.get_or_insert(payload);
                        }
                        job.active.fetch_sub(1, SeqCst);
                    }
                }
                idle = Instant::now();
                continue;
            }
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            if !polls.is_multiple_of(64) {
                continue;
            }
            if matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                idle = Instant::now();
            }
            if idle.elapsed() >= spin {
                self.helpers.fetch_sub(1, SeqCst);
                // A call published after the caller counted this helper as alive: stay for it.
                if self.epoch.load(SeqCst) == seen {
                    return;
                }
                self.helpers.fetch_add(1, SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn zero_threads_is_an_error() {
        assert!(set_num_threads(0)
            .unwrap_err()
            .to_string()
            .contains("found 0"));
    }

    /// Counts how often each index ran.
    fn counts(n: usize) -> Vec<AtomicUsize> {
        (0..n).map(|_| AtomicUsize::new(0)).collect()
    }

    fn all_once(seen: &[AtomicUsize]) -> bool {
        seen.iter().all(|s| s.load(Ordering::Relaxed) == 1)
    }

    #[test]
    fn for_each_index_runs_every_index_once_on_several_threads() {
        // A pool of its own: other tests change the global one. Both ways in: helpers that
        // poll between calls, and rayon's scope (no spin window).
        for spin in [Duration::from_millis(2), Duration::ZERO] {
            let w = build(3).unwrap();
            for n in [0usize, 1, 2, 5, 1000] {
                let seen = counts(n);
                let threads = Mutex::new(std::collections::HashSet::new());
                for_each_index_in(&w, spin, n, &|i| {
                    seen[i].fetch_add(1, Ordering::Relaxed);
                    threads.lock().unwrap().insert(std::thread::current().id());
                    std::thread::sleep(Duration::from_micros(200));
                });
                assert!(all_once(&seen), "n={n} spin={spin:?}");
                let used = threads.into_inner().unwrap().len();
                // The caller and the pool's workers share the items, at most 3 threads at once.
                assert!(
                    used <= 3 && (n < 1000 || used >= 2),
                    "n={n} spin={spin:?}: {used} threads"
                );
            }
            assert_eq!(w.helpers.served.load(SeqCst), !spin.is_zero());
        }
    }

    #[test]
    fn back_to_back_calls_each_run_every_index_once() {
        // The publish / join / unpublish protocol under churn: short calls, no pause between
        // them, so helpers join calls as they start and end.
        let w = build(2).unwrap();
        for call in 0..2000usize {
            let n = 1 + call % 7;
            let seen = counts(n);
            for_each_index_in(&w, Duration::from_millis(1), n, &|i| {
                // A few microseconds, so that helpers join some calls while they run.
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros((i % 3) as u64 * 2) {
                    std::hint::spin_loop();
                }
                seen[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(all_once(&seen), "call {call}");
        }
        assert!(w.helpers.served.load(SeqCst));
    }

    #[test]
    fn helpers_leave_after_the_spin_window() {
        let w = build(3).unwrap();
        for_each_index_in(&w, Duration::from_millis(1), 50, &|_| {
            std::thread::sleep(Duration::from_micros(50))
        });
        let t = Instant::now();
        while w.helpers.helpers.load(SeqCst) != 0 {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "helpers still polling"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_panicking_item_reaches_the_caller_and_the_pool_still_works() {
        let w = build(2).unwrap();
        for bad in [0usize, 7, 63] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for_each_index_in(&w, Duration::from_millis(1), 64, &|i| {
                    std::thread::sleep(Duration::from_micros(20));
                    assert!(i != bad, "item {i} failed");
                });
            }));
            let msg = r.unwrap_err();
            let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains(&format!("item {bad} failed")), "{msg}");
            let seen = counts(64);
            for_each_index_in(&w, Duration::from_millis(1), 64, &|i| {
                seen[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(all_once(&seen));
        }
    }

    #[test]
    fn concurrent_and_nested_calls_finish_with_every_index_once() {
        let w = build(2).unwrap();
        let spin = Duration::from_millis(1);
        std::thread::scope(|s| {
            for t in 0..4usize {
                let w = &w;
                s.spawn(move || {
                    for call in 0..200usize {
                        let n = 1 + (call + t) % 9;
                        let seen = counts(n);
                        for_each_index_in(w, spin, n, &|i| {
                            // Nested: an item that itself splits work.
                            let inner = counts(3);
                            for_each_index_in(w, spin, 3, &|j| {
                                inner[j].fetch_add(1, Ordering::Relaxed);
                            });
                            assert!(all_once(&inner));
                            seen[i].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(all_once(&seen), "thread {t} call {call}");
                    }
                });
            }
        });
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

    /// What the helpers buy: 8 items of 150 us on 2 threads (600 us ideal) after a pause of
    /// the caller, with and without a spin window
    /// (`cargo test --release --lib call_latency -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn call_latency() {
        let busy = |us: u64| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(us) {
                std::hint::spin_loop();
            }
        };
        for spin in [Duration::from_millis(1), Duration::ZERO] {
            let w = build(2).unwrap();
            for gap in [0u64, 50, 200, 800, 3000] {
                let mut t: Vec<u128> = (0..200)
                    .map(|_| {
                        busy(gap);
                        let t0 = Instant::now();
                        for_each_index_in(&w, spin, 8, &|_| busy(150));
                        t0.elapsed().as_micros()
                    })
                    .collect();
                t.sort_unstable();
                println!(
                    "spin {spin:?} gap {gap} us: p10 {} median {} p90 {} us",
                    t[20], t[100], t[180]
                );
            }
        }
    }
}
