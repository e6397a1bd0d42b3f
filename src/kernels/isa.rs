//! Which instruction set the kernels use, detected once per process.
//!
//! Levels (each implies everything the kernels of the level below use):
//!
//! | level     | requires                                                         |
//! |-----------|------------------------------------------------------------------|
//! | `scalar`  | nothing (the reference twins; every platform)                    |
//! | `neon`    | aarch64 Advanced SIMD (always present on aarch64)                |
//! | `avx2`    | x86-64-v3: AVX2, FMA, F16C, BMI1/2, LZCNT, POPCNT                |
//! | `avxvnni` | `avx2` + AVX-VNNI (`vpdpbusd` on ymm)                             |
//! | `avx512`  | `avx2` + AVX-512 F/BW/VL/DQ/VNNI/VBMI/VBMI2                       |
//!
//! `avxvnni` and `avx512` are not nested (Ice Lake has AVX-512 VNNI but not AVX-VNNI);
//! a kernel without an `avxvnni` variant runs its `avx2` one at that level.
//!
//! `EDGEPACK_ISA=<level>` narrows the choice to that level; it may not ask for one the CPU
//! lacks. Every op's dispatch lives in its `mod.rs` and reads [`active`] once per call;
//! tests call the `*_with(isa, ..)` entries to run every level the host has.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// An instruction-set level; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, the reference twin of every kernel.
    Scalar,
    /// aarch64 Advanced SIMD.
    Neon,
    /// x86-64-v3 (AVX2 + FMA + F16C + BMI2).
    Avx2,
    /// x86-64-v3 + AVX-VNNI.
    AvxVnni,
    /// x86-64-v4 + VNNI + VBMI + VBMI2.
    Avx512,
}

impl Isa {
    /// Every level, in the order `build_info()` lists them.
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::AvxVnni, Isa::Avx512];

    /// The name used by `EDGEPACK_ISA` and `build_info()`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parse a level name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Isa> {
        let name = name.trim().to_ascii_lowercase();
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this CPU can run kernels of this level.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Neon => cfg!(target_arch = "aarch64"),
            Isa::Avx2 => has_avx2(),
            Isa::AvxVnni => has_avx2() && has_avxvnni(),
            Isa::Avx512 => has_avx2() && has_avx512(),
        }
    }

    /// Whether kernels written for `other` may run at this level.
    pub fn includes(self, other: Isa) -> bool {
        matches!(
            (self, other),
            (_, Isa::Scalar)
                | (Isa::Neon, Isa::Neon)
                | (Isa::Avx2 | Isa::AvxVnni | Isa::Avx512, Isa::Avx2)
                | (Isa::AvxVnni, Isa::AvxVnni)
                | (Isa::Avx512, Isa::Avx512)
        )
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
        && std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("bmi2")
        && std::arch::is_x86_feature_detected!("lzcnt")
        && std::arch::is_x86_feature_detected!("popcnt")
}
#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn has_avxvnni() -> bool {
    std::arch::is_x86_feature_detected!("avxvnni")
}
#[cfg(not(target_arch = "x86_64"))]
fn has_avxvnni() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512vbmi")
        && std::arch::is_x86_feature_detected!("avx512vbmi2")
}
#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

/// Every level this CPU supports, lowest first (always starts with `Scalar`).
pub fn detected() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
}

/// The best level this CPU supports.
pub fn best() -> Isa {
    // Avx512 beats AvxVnni: the zmm kernels do twice the work per instruction.
    *detected().last().unwrap_or(&Isa::Scalar)
}

/// Resolve a requested level (the value of `EDGEPACK_ISA`, or `None` when unset).
pub fn resolve(requested: Option<&str>) -> Result<Isa> {
    let Some(raw) = requested.filter(|s| !s.trim().is_empty()) else {
        return Ok(best());
    };
    let valid: Vec<&str> = detected().iter().map(|i| i.name()).collect();
    match Isa::from_name(raw) {
        Some(isa) if isa.is_supported() => Ok(isa),
        Some(isa) => Err(Error::arg(format!(
            "EDGEPACK_ISA={raw:?}: this CPU does not support {isa}; valid values here are {}",
            valid.join(", ")
        ))),
        None => Err(Error::arg(format!(
            "EDGEPACK_ISA={raw:?} is not a known level; valid values here are {}",
            valid.join(", ")
        ))),
    }
}

static ACTIVE: OnceLock<Result<Isa, String>> = OnceLock::new();

fn configured_inner() -> &'static Result<Isa, String> {
    ACTIVE.get_or_init(|| {
        let env = std::env::var("EDGEPACK_ISA").ok();
        resolve(env.as_deref()).map_err(|e| e.to_string())
    })
}

/// The level chosen for this process (`EDGEPACK_ISA` read once), or the error explaining why
/// `EDGEPACK_ISA` is invalid. The Python module refuses to import on that error.
pub fn configured() -> Result<Isa> {
    configured_inner().clone().map_err(Error::InvalidArgument)
}

/// The level every dispatch uses. With an invalid `EDGEPACK_ISA` (which the Python module
/// rejects at import) this is `Scalar`, the one level that is always correct.
pub fn active() -> Isa {
    configured_inner().clone().unwrap_or(Isa::Scalar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::from_name("sse9"), None);
    }

    #[test]
    fn scalar_is_always_available() {
        assert_eq!(detected()[0], Isa::Scalar);
        assert_eq!(resolve(Some("scalar")).unwrap(), Isa::Scalar);
        assert_eq!(resolve(None).unwrap(), best());
        assert_eq!(resolve(Some("")).unwrap(), best());
    }

    #[test]
    fn unknown_level_lists_valid_ones() {
        let msg = resolve(Some("sse9")).unwrap_err().to_string();
        assert!(msg.contains("sse9") && msg.contains("scalar"), "{msg}");
    }

    #[test]
    fn unsupported_level_is_an_error() {
        for isa in Isa::ALL.into_iter().filter(|i| !i.is_supported()) {
            let msg = resolve(Some(isa.name())).unwrap_err().to_string();
            assert!(msg.contains("does not support"), "{msg}");
        }
    }

    #[test]
    fn includes_is_consistent() {
        assert!(Isa::Avx512.includes(Isa::Avx2));
        assert!(Isa::AvxVnni.includes(Isa::Avx2));
        assert!(!Isa::Avx512.includes(Isa::AvxVnni));
        assert!(!Isa::Avx2.includes(Isa::Avx512));
        assert!(Isa::Neon.includes(Isa::Scalar));
    }
}
