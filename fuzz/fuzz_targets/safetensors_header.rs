//! The safetensors header reader (`format::safetensors`, what `edgepack.load`, `compress(path)`
//! and `CalibrationStats.load` run on a `.safetensors` file) on arbitrary bytes: the first 8
//! bytes are the length prefix, the rest the file. Never a panic; an accepted header's tensors
//! tile the data section and are sorted by name.
#![no_main]

use edgepack::format::safetensors::{header_len, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file_len = data.len() as u64;
    let Ok(n) = header_len(data, file_len) else {
        return;
    };
    let Ok(h) = parse_header(&data[8..8 + n as usize], file_len) else {
        return;
    };
    let mut spans: Vec<(u64, u64)> = h.tensors.iter().map(|t| (t.begin, t.end)).collect();
    spans.sort_unstable();
    let mut at = 0;
    for (b, e) in spans {
        assert_eq!(b, at, "ranges tile the data section");
        at = e;
    }
    assert_eq!(h.data_start + at, file_len);
    assert!(h.tensors.windows(2).all(|w| w[0].name < w[1].name));
});
