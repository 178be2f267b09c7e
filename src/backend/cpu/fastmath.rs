//! Branch-free f32 `exp` and `tanh` that the compiler vectorises (the libm calls do not),
//! for the elementwise hot loops (GELU, softmax/cross-entropy). f64 keeps the exact libm
//! functions: the f64 instantiation exists for gradient checks, where accuracy is the point.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75; // few mantissa bits: n·LN2_HI is exact for |n| ≤ 128
const LN2_LO: f32 = 1.428_606_8e-6;
const ROUND_MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
const EXP_MIN: f32 = -87.33; // below this e^x is subnormal: return 0
const EXP_MAX: f32 = 88.0; // clamp so the exponent field cannot overflow (e^88 ≈ 1.65e38)

/// `e^x`, relative error ≲ 2 ulp on `[-87.3, 88]`; 0 below, `e^88` above; NaN → NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // max/min (not clamp, whose NaN and assertion handling blocks vectorisation); NaN is
    // restored at the end.
    #[allow(clippy::manual_clamp)]
    let xc = x.max(EXP_MIN).min(EXP_MAX);
    let n = (xc * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO; // |r| ≤ ln2/2
                                            // Taylor to degree 7 on |r| ≤ 0.347: truncation < 3e-9 relative.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n ∈ [-126, 127] after the clamp; `to_int_unchecked` avoids the saturating-cast checks.
    // SAFETY: n is an integer-valued, finite f32 in [-126, 127] (xc was clamped above), so it
    // is representable as i32.
    let ni = unsafe { n.to_int_unchecked::<i32>() };
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    let y = p * scale;
    let y = if x < EXP_MIN { 0.0 } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `tanh(x) = 1 − 2/(e^{2x} + 1)`; absolute error ≲ 1e-7.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    1.0 - 2.0 / (exp_f32(2.0 * x) + 1.0)
}

/// Run `f` compiled for the active instruction-set level ([`super::isa::active`]): AVX-512
/// or AVX2+FMA when the CPU has them and no lower level is forced, else as built. `f` must be
/// a closure whose body is inlined here (hot loops over slices are), so LLVM generates its
/// loops with 16- or 8-wide vectors; the portable build stays 4-wide SSE2.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        use super::isa::{active, Isa};
        match active() {
            // SAFETY: `active` never exceeds the detected level, so the CPU has AVX-512
            // F/BW/DQ/VL, AVX2 and FMA.
            Isa::Avx512 => return unsafe { run_avx512(f) },
            // SAFETY: as above, the CPU has AVX2 and FMA.
            Isa::Avx2 => return unsafe { run_avx2(f) },
            Isa::Portable => {}
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
#[inline]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_tanh_match_libm() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            let th = (x as f64).tanh();
            assert!((tanh_f32(x) as f64 - th).abs() < 2e-7, "tanh({x})");
            x += 0.0137;
        }
        assert!(worst < 3e-7, "exp relative error {worst}");
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(50.0), 1.0);
        assert_eq!(tanh_f32(-50.0), -1.0);
    }
}
