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
        self.included().contains(&other)
    }

    /// The levels whose kernels may run at this one (itself included).
    const fn included(self) -> &'static [Isa] {
        match self {
            Isa::Scalar => &[Isa::Scalar],
            Isa::Neon => &[Isa::Scalar, Isa::Neon],
            Isa::Avx2 => &[Isa::Scalar, Isa::Avx2],
            Isa::AvxVnni => &[Isa::Scalar, Isa::Avx2, Isa::AvxVnni],
            Isa::Avx512 => &[Isa::Scalar, Isa::Avx2, Isa::Avx512],
        }
    }

    /// Position in [`Isa::ALL`].
    const fn index(self) -> usize {
        match self {
            Isa::Scalar => 0,
            Isa::Neon => 1,
            Isa::Avx2 => 2,
            Isa::AvxVnni => 3,
            Isa::Avx512 => 4,
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernels of a SIMD family with AVX2 and AVX-512 variants (the float32 runs: quantize,
/// dequantize, reduce, per-channel sums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vector {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The kernels of an op with one AVX2 variant (4-bit packing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Avx2Only {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// The kernels of an op with one AVX-512 variant (k-smallest selection, rANS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Avx512Only {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The int8 GEMM micro-kernel on packed B (`matmul/`, one file per variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gemm {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The AVX-VNNI kernel with the AVX-512VL encoding (tests on hosts without AVX-VNNI).
    #[cfg(all(test, target_arch = "x86_64"))]
    AvxVnniViaVl,
}

/// The int8 GEMM on plain (unpacked) B for small M (`matmul/direct.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GemmDirect {
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The AVX-VNNI kernel with the AVX-512VL encoding (tests on hosts without AVX-VNNI).
    #[cfg(all(test, target_arch = "x86_64"))]
    AvxVnniViaVl,
}

/// Which kernel family every op runs at one [`Isa`]: the one map from levels to kernels.
///
/// Every op dispatches with an exhaustive `match` on its field (no `_` arm), so a new level
/// does not compile until its row below says what each op runs, and a new kernel variant does
/// not compile until the op's dispatch calls it.
///
/// Adding a level, e.g. Intel AMX: the `Isa` variant (its arms in `name`, `is_supported`,
/// `included`, `index` and `ALL` do not compile until written), its row in [`Isa::kernels`]
/// (`gemm: Gemm::Amx`, the AVX-512 families for everything else), and the kernel itself:
/// `matmul/amx.rs` implementing `matmul::blocking::PackedKernel` (tile sizes, K blocking, the
/// micro-kernel on a `Tile`) with a `#[target_feature]` shell over the shared driver, plus
/// the `Gemm::Amx` arm of the one packed-B dispatch (`matmul/plan.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kernels {
    /// `quantize/`.
    pub quantize: Vector,
    /// `dequantize/`.
    pub dequantize: Vector,
    /// `reduce/` (min / max, absmax).
    pub reduce: Vector,
    /// `calib::stats` per-channel sums.
    pub channel_sums: Vector,
    /// `pack4/`.
    pub pack4: Avx2Only,
    /// `sparse/` (mask, compress, expand, popcount).
    pub sparse: Vector,
    /// `select/`.
    pub select: Avx512Only,
    /// `rans/`.
    pub rans: Avx512Only,
    /// `matmul/`: packing B (the transpose into the K-quad layout).
    pub pack_b: Vector,
    /// `matmul/`: the micro-kernel on packed B.
    pub gemm: Gemm,
    /// `matmul/`: plain B, small M; `None`: pack B and run [`Kernels::gemm`].
    pub gemm_direct: Option<GemmDirect>,
}

const SCALAR_KERNELS: Kernels = Kernels {
    quantize: Vector::Scalar,
    dequantize: Vector::Scalar,
    reduce: Vector::Scalar,
    channel_sums: Vector::Scalar,
    pack4: Avx2Only::Scalar,
    sparse: Vector::Scalar,
    select: Avx512Only::Scalar,
    rans: Avx512Only::Scalar,
    pack_b: Vector::Scalar,
    gemm: Gemm::Scalar,
    gemm_direct: None,
};

impl Isa {
    /// What every op runs at this level (see [`Kernels`]). Pure: it does not ask whether the
    /// CPU supports the level; [`kernels`] does.
    pub(crate) const fn kernels(self) -> Kernels {
        match self {
            Isa::Scalar => SCALAR_KERNELS,
            // No NEON kernels yet: the portable twins.
            Isa::Neon => SCALAR_KERNELS,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Kernels {
                quantize: Vector::Avx2,
                dequantize: Vector::Avx2,
                reduce: Vector::Avx2,
                channel_sums: Vector::Avx2,
                pack4: Avx2Only::Avx2,
                sparse: Vector::Avx2,
                select: Avx512Only::Scalar,
                rans: Avx512Only::Scalar,
                pack_b: Vector::Avx2,
                gemm: Gemm::Avx2,
                gemm_direct: Some(GemmDirect::Avx2),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => Kernels {
                quantize: Vector::Avx2,
                dequantize: Vector::Avx2,
                reduce: Vector::Avx2,
                channel_sums: Vector::Avx2,
                pack4: Avx2Only::Avx2,
                sparse: Vector::Avx2,
                select: Avx512Only::Scalar,
                rans: Avx512Only::Scalar,
                pack_b: Vector::Avx2,
                gemm: Gemm::AvxVnni,
                gemm_direct: Some(GemmDirect::AvxVnni),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Kernels {
                quantize: Vector::Avx512,
                dequantize: Vector::Avx512,
                reduce: Vector::Avx512,
                channel_sums: Vector::Avx512,
                pack4: Avx2Only::Avx2,
                sparse: Vector::Avx512,
                select: Avx512Only::Avx512,
                rans: Avx512Only::Avx512,
                pack_b: Vector::Avx512,
                gemm: Gemm::Avx512,
                gemm_direct: Some(GemmDirect::Avx512),
            },
            // The x86-64 levels are never supported elsewhere (`is_supported`).
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::AvxVnni | Isa::Avx512 => SCALAR_KERNELS,
        }
    }
}

/// What every op runs when asked for `isa`: [`Isa::kernels`] of `isa` if this CPU supports
/// it, else of the best level below it that it does (a `*_with` call naming a level the CPU
/// lacks runs kernels it can run, never an illegal instruction). Support is looked up once.
#[inline]
pub(crate) fn kernels(isa: Isa) -> Kernels {
    static RUNNABLE: OnceLock<[Isa; Isa::ALL.len()]> = OnceLock::new();
    let table = RUNNABLE.get_or_init(|| {
        Isa::ALL.map(|want| {
            detected()
                .into_iter()
                .rfind(|&have| want.includes(have))
                .unwrap_or(Isa::Scalar)
        })
    });
    table[isa.index()].kernels()
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
    fn all_lists_every_level_in_index_order() {
        for (i, isa) in Isa::ALL.into_iter().enumerate() {
            assert_eq!(isa.index(), i);
        }
    }

    #[test]
    fn kernels_never_exceed_the_cpu() {
        for isa in Isa::ALL {
            let want = isa.kernels();
            let got = kernels(isa);
            if isa.is_supported() {
                assert_eq!(got, want, "{isa}");
            }
            // What runs is what some supported level runs.
            assert!(detected().iter().any(|d| d.kernels() == got), "{isa}");
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
