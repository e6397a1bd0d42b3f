//! The SIMD level a dispatch arm takes for a requested [`Isa`], with CPU support looked up
//! once (the per-call cost matters for short runs such as 32-element blocks).

use std::sync::OnceLock;

use super::Isa;

/// Which family of kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Scalar,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
}

/// The best kernel family allowed by `isa` that this CPU supports.
#[inline]
pub(crate) fn level(isa: Isa) -> Level {
    static CAN: OnceLock<(bool, bool)> = OnceLock::new();
    let (avx2, avx512) =
        *CAN.get_or_init(|| (Isa::Avx2.is_supported(), Isa::Avx512.is_supported()));
    if avx512 && isa.includes(Isa::Avx512) {
        Level::Avx512
    } else if avx2 && isa.includes(Isa::Avx2) {
        Level::Avx2
    } else {
        Level::Scalar
    }
}
