//! The float type the CPU kernels are generic over: f32 in production, f64 in the
//! finite-difference gradient checks (so the check measures the math, not rounding).

/// f32 or f64.
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::fmt::Debug
    + Default
    + Send
    + Sync
    + 'static
{
    /// Convert from f64 (constants).
    fn c(x: f64) -> Self {
        <Self as num_traits::FromPrimitive>::from_f64(x).unwrap_or_else(Self::nan)
    }
    /// Convert to f64 (reductions, reporting).
    fn f64(self) -> f64 {
        num_traits::ToPrimitive::to_f64(&self).unwrap_or(f64::NAN)
    }
    /// `e^x` for hot loops: a vectorisable polynomial for f32, libm for f64.
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
    /// `tanh` for hot loops: via [`exp_fast`](Self::exp_fast) for f32, libm for f64.
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
}

impl Real for f32 {
    #[inline(always)]
    fn exp_fast(self) -> Self {
        super::fastmath::exp_f32(self)
    }
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        super::fastmath::tanh_f32(self)
    }
}
impl Real for f64 {}

/// `x` as f32, when `F` is f32 (the kernels with an f32-only fast path use it).
pub(crate) fn as_f32<F: Real>(x: &[F]) -> Option<&[f32]> {
    (std::any::TypeId::of::<F>() == std::any::TypeId::of::<f32>())
        // SAFETY: F is f32 (checked), so the slice reinterprets in place.
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) })
}

/// [`as_f32`] for a mutable slice.
pub(crate) fn as_f32_mut<F: Real>(x: &mut [F]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<F>() == std::any::TypeId::of::<f32>())
        // SAFETY: F is f32 (checked), so the slice reinterprets in place.
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) })
}
