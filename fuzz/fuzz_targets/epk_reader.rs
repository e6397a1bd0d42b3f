//! The `.epk` reader on arbitrary bytes: `Parsed::parse` is what `Reader::open` (and so
//! `edgepack.load`) runs on the memory-mapped file; then every payload of every tensor is
//! verified and decoded (`decode_payload`, what `CompressedModel[name]` / `verify` run), and a
//! `sparse` tensor's bytes go through `SparseTensor::from_bytes`. Never a panic; a parsed
//! header serializes to canonical JSON that parses back to the same header.
#![no_main]

use edgepack::format::header::Header;
use edgepack::format::reader::{decode_payload, Parsed};
use edgepack::format::Encoding;
use edgepack::sparse::SparseTensor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Parsed::parse(data) else {
        return;
    };
    let again = Header::parse(p.header.to_json().as_bytes()).expect("canonical JSON parses");
    assert_eq!(again, p.header);
    for t in &p.header.tensors {
        for pl in &t.payloads {
            let Ok(bytes) = decode_payload(data, p.data_start, t, pl) else {
                continue;
            };
            assert_eq!(bytes.len() as u64, pl.size);
            if t.encoding == Encoding::Sparse {
                if let Ok(s) = SparseTensor::from_bytes(&bytes) {
                    if s.numel().saturating_mul(s.dtype.size()) <= 256 << 20 {
                        let _ = s.to_dense().expect("a validated sparse tensor decodes");
                    }
                }
            }
        }
    }
});
