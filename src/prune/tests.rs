use super::*;

#[test]
fn counts_round_half_even() {
    assert_eq!(count_to_prune(0.5, 5).unwrap(), 2); // 2.5 -> 2
    assert_eq!(count_to_prune(0.5, 7).unwrap(), 4); // 3.5 -> 4
    assert_eq!(count_to_prune(0.0, 7).unwrap(), 0);
    assert!(count_to_prune(1.0, 7).is_err());
    assert!(count_to_prune(-0.1, 7).is_err());
    assert!(count_to_prune(f64::NAN, 7).is_err());
}

#[test]
fn magnitude_ties_prune_lower_index_first() {
    let x = [1.0f32, -1.0, 1.0, 0.5, -0.0, 0.0];
    let keep = magnitude_mask(&x, 1, None, 0.5).unwrap();
    // |x|: 1,1,1,0.5,0,0 -> prune 3: index 4, 5 (zeros) then 3
    assert_eq!(keep, [true, true, true, false, false, false]);
    // one more: the tie 1,1,1 loses its lowest index
    let keep = magnitude_mask(&x, 1, None, 0.66).unwrap();
    assert_eq!(keep, [false, true, true, false, false, false]);
}

#[test]
fn per_slice_and_importance() {
    let x = [4.0f32, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0];
    let keep = magnitude_mask(&x, 2, None, 0.5).unwrap();
    assert_eq!(keep, [true, true, false, false, false, false, true, true]);
    let imp = [0.0f32, 1.0, 1.0, 1.0];
    let keep = magnitude_mask(&x, 1, Some(&imp), 0.25).unwrap();
    // scores: 0,3,2,1, 0,2,3,4 -> prune 2: index 0 and 4
    assert_eq!(keep, [false, true, true, true, false, true, true, true]);
    assert!(magnitude_mask(&x, 1, Some(&[1.0, 2.0, 3.0]), 0.5).is_err());
    assert!(magnitude_mask(&x, 1, Some(&[1.0, f32::NAN]), 0.5).is_err());
    assert!(magnitude_mask(&x, 1, Some(&[1.0, -1.0]), 0.5).is_err());
}

#[test]
fn nm_two_of_four_and_partial_group() {
    let x = [1.0f32, -3.0, 2.0, 0.5, 7.0, 7.0, 7.0, 7.0, 1.0, 2.0, 3.0];
    let keep = nm_mask(&x, 1, 11, 1, 2, 4).unwrap();
    // last group r=3 keeps ceil(2*3/4)=2
    assert_eq!(
        keep,
        [false, true, true, false, false, false, true, true, false, true, true]
    );
    // the fast path agrees with the general one
    let y: Vec<f32> = (0..64).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
    let a = nm_mask(&y, 1, 64, 1, 2, 4).unwrap();
    let b = nm_mask(&y, 2, 32, 1, 2, 4).unwrap();
    assert_eq!(a, b);
    assert!(nm_mask(&y, 1, 64, 1, 5, 4).is_err());
}

#[test]
fn block_and_channel() {
    // 2x4, blocks (1,2): norms^2: [1+4, 9+16, 0+1, 4+4]
    let x = [1.0f32, 2.0, 3.0, 4.0, 0.0, 1.0, 2.0, 2.0];
    let keep = block_mask(&x, &[2, 4], &[1, 2], 0.5).unwrap();
    assert_eq!(keep, [false, false, true, true, false, false, true, true]);
    let keep = channel_mask(&x, 2, Norm::L2, 0.5).unwrap();
    assert_eq!(keep, [true, false]);
    let keep = channel_mask(&x, 2, Norm::Inf, 0.5).unwrap();
    assert_eq!(keep, [true, false]);
}
