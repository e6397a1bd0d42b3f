//! `SparseTensor::from_bytes` (the core of `edgepack.sparse.SparseTensor.from_bytes` and of
//! the `.epk` `sparse` encoding) on arbitrary bytes: it must return `Ok` or `Err`, never panic,
//! never read out of bounds, never allocate beyond the input's bound. A parsed tensor must
//! decode (`to_dense`, `mask`) and survive a round trip through `to_bytes`.
#![no_main]

use edgepack::sparse::SparseTensor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = SparseTensor::from_bytes(data) else {
        return;
    };
    // A valid tensor may be huge when dense (an all-zero 2^30-element mask is a few KiB):
    // that allocation is by design proportional to the declared shape (and fallible, see
    // tests/fuzz_regressions.rs), so only densify what fits the fuzzer's memory limit.
    if t.numel().saturating_mul(t.dtype.size()) <= 256 << 20 {
        let dense = t.to_dense().expect("a validated sparse tensor decodes");
        assert_eq!(dense.len(), t.numel());
        let mask = t.mask().expect("mask");
        let bits: usize = mask.iter().map(|b| b.count_ones() as usize).sum();
        assert!(bits <= t.nnz());
    }
    // Re-encoding (stored sections, then rANS) gives a buffer that parses to the same tensor.
    for level in [0, 1] {
        let b = t.to_bytes(level).expect("re-encode");
        let u = SparseTensor::from_bytes(&b).expect("re-encoded bytes parse");
        assert_eq!(u, t);
    }
});
