//! avx2 sparse kernels (placeholder: delegates to the scalar twin until the SIMD version lands).

use super::scalar;

macro_rules! delegate {
    ($bm:ident, $c:ident, $e:ident, $t:ty) => {
        pub unsafe fn $bm(v: &[$t], care: $t, out: &mut [u8]) -> usize {
            scalar::build_mask(v, care, out)
        }
        pub unsafe fn $c(v: &[$t], mask: &[u8], out: &mut [$t]) -> usize {
            scalar::compress(v, mask, out)
        }
        pub unsafe fn $e(mask: &[u8], kept: &[$t], out: &mut [$t]) -> usize {
            scalar::expand(mask, kept, out)
        }
    };
}
delegate!(build_mask_u8, compress_u8, expand_u8, u8);
delegate!(build_mask_u16, compress_u16, expand_u16, u16);
delegate!(build_mask_u32, compress_u32, expand_u32, u32);
