//! Regression tests for what fuzzing and the hardening review found (SECURITY.md has
//! the record). Each input once crashed, hung or aborted; now it is an `Err` naming the problem.
//! Inputs are built here from their description rather than kept as binary blobs.

use edgepack::error::Error;
use edgepack::format::reader::Parsed;
use edgepack::sparse::{DType, Layout, SparseTensor, Values};

/// A sparse tensor whose dense form cannot be allocated (2^46 float32 = 256 TiB): `to_dense`
/// and `mask` used `vec![0; n]`, which aborts the process when the allocation fails.
#[test]
fn huge_dense_shape_is_limit_error_not_abort() {
    let n: usize = 1 << 46;
    let t = SparseTensor {
        dtype: DType::F32,
        shape: vec![n],
        layout: Layout::NM {
            n: 1,
            m: 256,
            axis: 0,
        },
        index: vec![],
        values: Values::U32(vec![]),
    };
    assert!(matches!(t.to_dense(), Err(Error::Limit(_))));
    assert!(matches!(t.mask(), Err(Error::Limit(_))));
}

/// Byte form of a sparse tensor: header, then sections (method, raw_len, payload_len, payload).
fn sparse_bytes(
    layout: u8,
    dtype: u8,
    shape: &[u64],
    nnz: u64,
    nm: Option<(u16, u16, u8)>,
    sections: &[(u8, u64, &[u8])],
) -> Vec<u8> {
    let mut b = b"EPSP".to_vec();
    b.extend_from_slice(&[1, layout, dtype, shape.len() as u8]);
    for d in shape {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&nnz.to_le_bytes());
    if let Some((n, m, axis)) = nm {
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&m.to_le_bytes());
        b.push(axis);
    }
    for (method, raw, payload) in sections {
        b.push(*method);
        b.extend_from_slice(&raw.to_le_bytes());
        b.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        b.extend_from_slice(payload);
    }
    b
}

/// A zero-size dimension makes the element count 0 while the other dimensions multiply past
/// 2^64: the N:M helpers computed `outer * inner` unchecked (a debug-build panic, and in
/// release a wrapped count that drove a loop of ~2^33 iterations).
#[test]
fn zero_dim_with_huge_other_dims_is_an_error_or_empty() {
    for axis in 0..3u8 {
        let b = sparse_bytes(
            1,
            5,
            &[0, 1 << 33, (1 << 31) + 1],
            0,
            Some((1, 4, axis)),
            &[
                (0, 0, &[]),
                (0, 0, &[]),
                (0, 0, &[]),
                (0, 0, &[]),
                (0, 0, &[]),
            ],
        );
        match SparseTensor::from_bytes(&b) {
            Ok(t) => {
                assert_eq!(t.numel(), 0);
                assert!(t.to_dense().unwrap().is_empty());
            }
            Err(e) => assert!(matches!(e, Error::Format(_)), "{e:?}"),
        }
    }
}

/// `.epk` bytes never panic the parser (smoke over the fuzz crashers' shapes).
#[test]
fn epk_parser_rejects_garbage() {
    for b in [
        &b""[..],
        b"\x89EPK\r\n\x1a\n",
        b"\x89EPK\r\n\x1a\n\x01\0\0\0\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        assert!(matches!(Parsed::parse(b), Err(Error::Format(_))));
    }
}

/// cargo-fuzz `sparse_from_bytes`, 2026-11-29 (a hang, found after ~6.8M executions): N:M
/// layout, shape `[3, 2^37 + 512, 0]`, axis 2. The tensor is empty but
/// `check_nm_positions` looped over its ~4e11 empty lanes. The input, byte for byte.
#[test]
fn fuzz_hang_empty_axis_with_many_lanes() {
    let empty: &[u8] = &[];
    let b = sparse_bytes(
        1,
        5,
        &[3, (1 << 37) + 512, 0],
        0,
        Some((1, 4, 2)),
        &[(0, 0, empty); 5],
    );
    assert_eq!(b.len(), 130);
    let t = std::thread::spawn(move || {
        let t = SparseTensor::from_bytes(&b).expect("an empty tensor is valid");
        assert_eq!(t.numel(), 0);
        assert!(t.to_dense().unwrap().is_empty());
        assert!(t.mask().unwrap().is_empty());
    });
    let start = std::time::Instant::now();
    while !t.is_finished() {
        assert!(start.elapsed().as_secs() < 10, "hangs");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    t.join().unwrap();
}

/// cargo-fuzz `epk_reader`, 2026-11-29 (~0.9M executions): the canonical-JSON round trip of a
/// header changed a float (stats "cosine": 999.09885108351488 read as ...5148 then re-read as
/// ...5149): serde_json's default float parsing is not correctly rounded, so the reader and
/// a correctly rounding parser (Python's json) could disagree on a header value. Fixed by
/// serde_json's `float_roundtrip` feature.
#[test]
fn fuzz_header_floats_are_read_correctly_rounded() {
    use edgepack::format::header::Header;
    let text = "999.09885108351488";
    let json = format!(r#"{{"metadata":{{}},"recipe":{{"x":{text}}},"tensors":[]}}"#);
    let h = Header::parse(json.as_bytes()).unwrap();
    let got = h.recipe["x"].as_f64().unwrap();
    assert_eq!(got, text.parse::<f64>().unwrap()); // std's parse is correctly rounded
    assert_eq!(Header::parse(h.to_json().as_bytes()).unwrap(), h);
}
