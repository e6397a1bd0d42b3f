//! Round trips, determinism and hostile inputs for the `.epk` core.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "edgepack-format-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes a small file with one raw, one float16-less quant tensor, one compressed raw.
fn sample(path: &std::path::Path, order_reversed: bool) {
    let w_vals: Vec<f32> = (0..48).map(|i| (i as f32 - 20.0) * 0.37).collect();
    let w = f32_bytes(&w_vals);
    let q: Vec<u8> = (0..24u8).map(|i| i.wrapping_mul(37)).collect();
    let scale = f32_bytes(&[0.5, 0.25, 0.125, 2.0]);
    let zeros = vec![0u8; 4096];
    let mut items: Vec<(TensorMeta, Vec<EncodedPayload<'_>>)> = vec![
        (
            TensorMeta {
                name: "b.bias".into(),
                dtype: Dtype::F32,
                shape: vec![12],
                encoding: Encoding::Raw,
                params: Map::new(),
                stats: None,
            },
            vec![encode_payload("data", Dtype::F32, &[12], &w[..48], None).unwrap()],
        ),
        (
            TensorMeta {
                name: "a.weight".into(),
                dtype: Dtype::F32,
                shape: vec![4, 6],
                encoding: Encoding::Quant,
                params: params(json!({"bits": 8, "symmetric": true, "axis": 0,
                    "block_size": null, "convention": "onnx", "sparsity": 0.0})),
                stats: Some(params(json!({"snr_db": 40.5, "cosine": null}))),
            },
            vec![
                encode_payload("scale", Dtype::F32, &[4], &scale, None).unwrap(),
                encode_payload("data", Dtype::I8, &[4, 6], &q, Some(3)).unwrap(),
            ],
        ),
        (
            TensorMeta {
                name: "c/zeros".into(),
                dtype: Dtype::U8,
                shape: vec![64, 64],
                encoding: Encoding::Raw,
                params: Map::new(),
                stats: None,
            },
            vec![encode_payload("data", Dtype::U8, &[64, 64], &zeros, Some(3)).unwrap()],
        ),
    ];
    if order_reversed {
        items.reverse();
    }
    let mut wr = Writer::create(path).unwrap();
    for (m, p) in &items {
        wr.add(m.clone(), p).unwrap();
    }
    let mut md = BTreeMap::new();
    md.insert("author".to_string(), "test".to_string());
    wr.finish(md, json!({"rules": []})).unwrap();
}

#[test]
fn round_trip_and_determinism() {
    let d = tmp("rt");
    let (p1, p2) = (d.join("a.epk"), d.join("b.epk"));
    sample(&p1, false);
    sample(&p2, true);
    let b1 = std::fs::read(&p1).unwrap();
    assert_eq!(b1, std::fs::read(&p2).unwrap(), "same input, same bytes");
    let r = Reader::open(&p1).unwrap();
    let names: Vec<&str> = r.header().tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a.weight", "b.bias", "c/zeros"]);
    assert_eq!(r.header().metadata["author"], "test");
    let q: Vec<u8> = (0..24u8).map(|i| i.wrapping_mul(37)).collect();
    assert_eq!(r.payload("a.weight", "data").unwrap(), q);
    assert_eq!(r.payload("c/zeros", "data").unwrap(), vec![0u8; 4096]);
    let zp = &r.header().find("c/zeros").unwrap().payloads[0];
    assert_eq!(zp.compression, Compression::Zstd);
    for t in &r.header().tensors {
        for p in &t.payloads {
            assert_eq!((r.parsed().data_start + p.offset) % 64, 0);
        }
    }
    r.verify().unwrap();
    // Only the two final files remain (no temporary files).
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_never_a_panic() {
    let d = tmp("hostile");
    let p = d.join("a.epk");
    sample(&p, false);
    let good = std::fs::read(&p).unwrap();
    for n in 0..good.len() {
        assert!(Parsed::parse(&good[..n]).is_err(), "truncated at {n}");
    }
    let mut extra = good.clone();
    extra.push(0);
    assert!(Parsed::parse(&extra).is_err(), "trailing byte");
    // Flip each byte: either the parse fails or reading every payload fails or gives data
    // (a flip in a JSON string value can stay valid); it never panics.
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x5a;
        if let Ok(parsed) = Parsed::parse(&b) {
            let mut any_err = false;
            for t in &parsed.header.tensors {
                for pl in &t.payloads {
                    any_err |= reader::decode_payload(&b, parsed.data_start, t, pl).is_err();
                }
            }
            // Flips inside payload bytes must be caught by the checksum.
            if i as u64 >= parsed.data_start {
                assert!(any_err, "flip at payload byte {i} went unnoticed");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

fn file_with_header(h: &str, data: &[u8]) -> Vec<u8> {
    let mut b = header::preamble(h.len() as u64).to_vec();
    b.extend_from_slice(h.as_bytes());
    while !b.len().is_multiple_of(64) {
        b.push(0);
    }
    b.extend_from_slice(data);
    b
}

fn raw_record(name: &str, offset: u64, data: &[u8]) -> String {
    format!(
        r#"{{"name":"{name}","dtype":"uint8","shape":[{n}],"encoding":"raw","params":{{}},"payloads":[{{"role":"data","dtype":"uint8","shape":[{n}],"offset":{offset},"length":{n},"size":{n},"compression":"none","xxh3":"{h:016x}"}}]}}"#,
        n = data.len(),
        h = xxhash_rust::xxh3::xxh3_64(data)
    )
}

fn err(b: &[u8]) -> String {
    Parsed::parse(b).unwrap_err().to_string()
}

#[test]
fn hostile_headers_are_named() {
    let data = [1u8, 2, 3];
    let ok = format!(
        r#"{{"metadata":{{}},"recipe":null,"tensors":[{}]}}"#,
        raw_record("x", 0, &data)
    );
    Parsed::parse(&file_with_header(&ok, &data)).unwrap();

    let mut b = file_with_header(&ok, &data);
    b[8] = 7;
    assert!(err(&b).contains("version 7"));
    let mut b = file_with_header(&ok, &data);
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(err(&b).contains("limit"));
    let mut b = file_with_header(&ok, &data);
    b[16..24].copy_from_slice(&(100_000u64).to_le_bytes());
    assert!(err(&b).contains("past the end"));
    assert!(err(&file_with_header("not json!", &[])).contains("not valid JSON"));
    let dup = format!(
        r#"{{"metadata":{{}},"recipe":null,"tensors":[{},{}]}}"#,
        raw_record("x", 0, &data),
        raw_record("x", 64, &data)
    );
    assert!(err(&file_with_header(&dup, &data)).contains("duplicate tensor name"));
    let dupkey = r#"{"metadata":{},"metadata":{},"recipe":null,"tensors":[]}"#;
    assert!(err(&file_with_header(dupkey, &[])).contains("duplicate key"));
    let overlap = format!(
        r#"{{"metadata":{{}},"recipe":null,"tensors":[{},{}]}}"#,
        raw_record("x", 0, &data),
        raw_record("y", 0, &data)
    );
    assert!(err(&file_with_header(&overlap, &data)).contains("expected 64"));
    let oob = format!(
        r#"{{"metadata":{{}},"recipe":null,"tensors":[{}]}}"#,
        raw_record("x", 1 << 40, &data)
    );
    assert!(err(&file_with_header(&oob, &data)).contains("offset"));
    let overflow = ok.replace(
        r#""shape":[3],"encoding""#,
        r#""shape":[4294967296,4294967296,4294967296],"encoding""#,
    );
    assert!(err(&file_with_header(&overflow, &data)).contains("overflows"));
    let badlen = ok.replace(r#""size":3"#, r#""size":4"#);
    assert!(err(&file_with_header(&badlen, &data)).contains("dtype uint8"));
    for bad in ["../etc/passwd", "a\\\\b", "a\\u0001b", "/abs", ""] {
        let h = ok.replace(r#""name":"x""#, &format!(r#""name":"{bad}""#));
        assert!(
            err(&file_with_header(&h, &data)).contains("tensor name"),
            "{bad}"
        );
    }
    // Bad checksum: parses, fails on access, naming the tensor.
    let mut b = file_with_header(&ok, &data);
    let n = b.len();
    b[n - 1] ^= 1;
    let p = Parsed::parse(&b).unwrap();
    let e = p.payload(&b, "x", "data").unwrap_err().to_string();
    assert!(e.contains("checksum") && e.contains("\"x\""), "{e}");
}

#[test]
fn zstd_bombs_are_bounded() {
    // A frame that really decodes to 1 MiB but declares 1 KiB.
    let big = vec![0u8; 1 << 20];
    let frame = zstd::bulk::compress(&big, 3).unwrap();
    let rec = |size: u64| {
        format!(
            r#"{{"metadata":{{}},"recipe":null,"tensors":[{{"name":"z","dtype":"uint8","shape":[{size}],"encoding":"raw","params":{{}},"payloads":[{{"role":"data","dtype":"uint8","shape":[{size}],"offset":0,"length":{n},"size":{size},"compression":"zstd","xxh3":"{h:016x}"}}]}}]}}"#,
            n = frame.len(),
            h = xxhash_rust::xxh3::xxh3_64(&frame)
        )
    };
    let b = file_with_header(&rec(1024), &frame);
    let p = Parsed::parse(&b).unwrap();
    let e = p.payload(&b, "z", "data").unwrap_err().to_string();
    assert!(e.contains("declares"), "{e}");
    // A declared size beyond the ratio limit is refused before allocating.
    let b = file_with_header(&rec(1 << 30), &frame);
    assert!(err(&b).contains("claims"));
    // The honest declaration decodes.
    let b = file_with_header(&rec(1 << 20), &frame);
    let p = Parsed::parse(&b).unwrap();
    assert_eq!(p.payload(&b, "z", "data").unwrap(), big);
}

#[test]
fn writer_rejects_bad_input_and_leaves_no_temp_files() {
    let d = tmp("wr");
    let dest = d.join("m.epk");
    std::fs::write(&dest, b"old").unwrap();
    let mut w = Writer::create(&dest).unwrap();
    let data = [0u8; 4];
    let meta = |name: &str| TensorMeta {
        name: name.into(),
        dtype: Dtype::U8,
        shape: vec![4],
        encoding: Encoding::Raw,
        params: Map::new(),
        stats: None,
    };
    let p = [encode_payload("data", Dtype::U8, &[4], &data, None).unwrap()];
    assert!(w.add(meta("a\u{0}"), &p).is_err());
    w.add(meta("a"), &p).unwrap();
    assert!(w
        .add(meta("a"), &p)
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
    let wrong = [encode_payload("data", Dtype::U8, &[4], &data, None).unwrap()];
    let mut m = meta("b");
    m.shape = vec![5];
    assert!(w.add(m, &wrong).is_err());
    assert!(encode_payload("data", Dtype::F32, &[4], &data, None).is_err());
    drop(w); // abandoned: destination untouched, spool removed
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    let _ = std::fs::remove_dir_all(&d);
}

/// A version-`v` file with one int8 per-channel `quant` tensor (2 x 3) with an AWQ `in_scale`
/// along axis 1 (the params and payload of FORMAT.md section 5, version 2).
fn awq_file(v: u32, in_axis: u64, in_scale_len: usize) -> Vec<u8> {
    let data = [1u8, 2, 3, 4, 5, 6];
    let ins: Vec<u8> = (0..in_scale_len).flat_map(|_| 1f32.to_le_bytes()).collect();
    let sc: Vec<u8> = [0.5f32, 0.25]
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let pl = |role: &str, dt: &str, shape: usize, off: usize, b: &[u8]| {
        format!(
            r#"{{"role":"{role}","dtype":"{dt}","shape":[{shape}],"offset":{off},"length":{n},"size":{n},"compression":"none","xxh3":"{h:016x}"}}"#,
            n = b.len(),
            h = xxhash_rust::xxh3::xxh3_64(b)
        )
    };
    let h = format!(
        r#"{{"metadata":{{}},"recipe":null,"tensors":[{{"name":"w","dtype":"float32","shape":[2,3],"encoding":"quant","params":{{"axis":0,"bits":8,"block_size":null,"convention":"onnx","in_axis":{in_axis},"sparsity":0.0,"symmetric":true}},"payloads":[{},{},{}]}}]}}"#,
        pl("data", "int8", 0, 0, &data).replace("[0]", "[2,3]"),
        pl("in_scale", "float32", in_scale_len, 64, &ins),
        pl("scale", "float32", 2, 128, &sc),
    );
    let mut body = vec![0u8; 128 + sc.len()];
    body[..6].copy_from_slice(&data);
    body[64..64 + ins.len()].copy_from_slice(&ins);
    body[128..].copy_from_slice(&sc);
    let mut b = header::preamble_version(h.len() as u64, v).to_vec();
    b.extend_from_slice(h.as_bytes());
    while !b.len().is_multiple_of(64) {
        b.push(0);
    }
    b.extend_from_slice(&body);
    b
}

#[test]
fn in_scale_needs_version_2_and_a_valid_shape() {
    let p = Parsed::parse(&awq_file(2, 1, 3)).unwrap();
    assert_eq!(p.header.min_version(), 2);
    let e = err(&awq_file(1, 1, 3));
    assert!(
        e.contains("\"w\"") && e.contains("in_scale") && e.contains("version 2"),
        "{e}"
    );
    let e = err(&awq_file(2, 2, 3));
    assert!(e.contains("in_axis 2 is out of range"), "{e}");
    let e = err(&awq_file(2, 0, 3));
    assert!(e.contains("in_scale") && e.contains("shape"), "{e}");
    let e = err(&awq_file(2, 1, 2));
    assert!(e.contains("in_scale") && e.contains("shape"), "{e}");
    let e = err(&awq_file(3, 1, 3));
    assert!(e.contains("versions 1 and 2"), "{e}");
}
