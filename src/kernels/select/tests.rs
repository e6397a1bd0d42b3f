//! The radix select equals a stable-sort oracle (`np.argsort(kind="stable")[:k]`).

use super::*;

fn oracle(keys: &[u32], k: usize) -> Vec<bool> {
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by_key(|&i| (keys[i], i));
    let mut keep = vec![true; keys.len()];
    for &i in &idx[..k] {
        keep[i] = false;
    }
    keep
}

fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

#[test]
fn matches_stable_sort_on_many_shapes() {
    let mut seed = 7u64;
    for n in [0usize, 1, 2, 3, 7, 15, 16, 17, 33, 64, 100, 1000, 5000] {
        for variant in 0..4 {
            let x: Vec<f32> = (0..n)
                .map(|_| {
                    let r = lcg(&mut seed);
                    match variant {
                        0 => (r as f32 / u32::MAX as f32) - 0.5,
                        1 => ((r % 5) as f32) - 2.0, // many ties, +-0 mixes
                        2 => f32::from_bits(r).clamp(-1e30, 1e30),
                        _ => [0.0f32, -0.0, f32::INFINITY, -f32::INFINITY, f32::MAX, 0.5]
                            [(r % 6) as usize],
                    }
                })
                .collect();
            let x: Vec<f32> = x
                .into_iter()
                .map(|v| if v.is_nan() { 1.0 } else { v })
                .collect();
            let keys: Vec<u32> = x.iter().map(|v| v.to_bits() & 0x7fff_ffff).collect();
            for k in [0, 1, n / 3, n / 2, n.saturating_sub(1), n] {
                if k > n {
                    continue;
                }
                for isa in crate::kernels::isa::detected() {
                    let mut keep = vec![false; n];
                    keep_mask_with(isa, &AbsKeys(&x), k, &mut keep, "`x`", 0).unwrap();
                    assert_eq!(
                        keep,
                        oracle(&keys, k),
                        "{isa} n={n} variant={variant} k={k}"
                    );
                }
            }
        }
    }
}

#[test]
fn threads_give_the_same_result() {
    let mut seed = 3u64;
    let n = 3 * PAR_CHUNK + 12345;
    let x: Vec<f32> = (0..n)
        .map(|_| ((lcg(&mut seed) % 1000) as f32) * 0.01)
        .collect();
    let keys: Vec<u32> = x.iter().map(|v| v.to_bits() & 0x7fff_ffff).collect();
    crate::parallel::set_num_threads(2).unwrap();
    let mut keep = vec![false; n];
    keep_mask(&AbsKeys(&x), n / 2, &mut keep, "`x`", 0).unwrap();
    assert_eq!(keep, oracle(&keys, n / 2));
}

#[test]
fn nan_is_an_error_naming_the_index() {
    let x = [1.0f32, 2.0, f32::NAN, 3.0];
    let mut keep = vec![false; 4];
    let e = keep_mask(&AbsKeys(&x), 1, &mut keep, "`x`", 10).unwrap_err();
    assert_eq!(e.to_string(), "`x` contains NaN at index 12");
    let inf = [1.0f32, f32::INFINITY, 0.0];
    let mut keep = vec![false; 3];
    keep_mask(&AbsKeys(&inf), 2, &mut keep, "`x`", 0).unwrap();
    assert_eq!(keep, [false, true, false]);
}

#[test]
fn u64_selection_breaks_ties_by_index() {
    let keys = [5u64, 1, 5, 1, 0, 5];
    assert_eq!(
        keep_mask_u64(&keys, 4),
        [false, false, true, false, false, true]
    );
    assert_eq!(keep_mask_u64(&keys, 0), [true; 6]);
    assert_eq!(keep_mask_u64(&keys, 6), [false; 6]);
}

#[test]
fn sampled_path_and_its_fallback_match_the_oracle() {
    let mut seed = 17u64;
    let n = 200_003;
    for variant in 0..4 {
        let mut x: Vec<f32> = (0..n)
            .map(|_| {
                let r = lcg(&mut seed);
                match variant {
                    0 => (r as f32 / u32::MAX as f32) - 0.5,
                    1 => (r % 7) as f32,
                    _ => ((r % 100_000) as f32) * 1e-3,
                }
            })
            .collect();
        if variant == 3 {
            // poison the sampled blocks so the guessed window misses: exact fallback
            for b in 0..SAMPLE_BLOCKS {
                let start = (b * (n - SAMPLE_BLOCK)) / (SAMPLE_BLOCKS - 1);
                x[start..start + SAMPLE_BLOCK].fill(1e30);
            }
        }
        let keys: Vec<u32> = x.iter().map(|v| v.to_bits() & 0x7fff_ffff).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (keys[i], i));
        for k in [1, n / 10, n / 2, n - 7, n - 1] {
            let mut expect = vec![true; n];
            for &i in &order[..k] {
                expect[i] = false;
            }
            for isa in crate::kernels::isa::detected() {
                let mut keep = vec![false; n];
                keep_mask_with(isa, &AbsKeys(&x), k, &mut keep, "`x`", 0).unwrap();
                assert!(keep == expect, "{isa} variant={variant} k={k}");
            }
        }
    }
    let mut x = vec![1.0f32; n];
    x[n - 3] = f32::NAN;
    let mut keep = vec![false; n];
    let e = keep_mask(&AbsKeys(&x), n / 2, &mut keep, "`x`", 0).unwrap_err();
    assert!(e.to_string().contains(&format!("index {}", n - 3)));
}
