//! Shared test data for the kernel tests: a tiny deterministic PRNG and inputs rich in the
//! values SIMD paths get wrong (+-0, +-Inf, NaN, +-max, subnormals, exact .5 ties).

/// xorshift64*.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` values: specials, exact ties `(k + 0.5) * tie_step`, heavy tails and plain noise.
pub fn floats(rng: &mut Rng, n: usize, tie_step: f32) -> Vec<f32> {
    const SPECIAL: [f32; 10] = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        f32::MIN,
        1e-45,
        -1e-40,
        f32::MIN_POSITIVE,
    ];
    (0..n)
        .map(|_| match rng.below(8) {
            0 => SPECIAL[rng.below(SPECIAL.len() as u64) as usize],
            1 | 2 => ((rng.below(600) as f32) - 300.0 + 0.5) * tie_step,
            3 => rng.unit() * 1e6,
            _ => rng.unit() * 200.0 * tie_step,
        })
        .collect()
}

/// Every ISA this host supports.
pub fn isas() -> Vec<crate::kernels::Isa> {
    crate::kernels::isa::detected()
}
