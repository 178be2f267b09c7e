//! Learning-rate schedule: linear warmup, then cosine decay to a floor.

/// `lr` at 1-based `step` of `total`: rises linearly over `warmup` steps to `peak`, then
/// follows a half cosine down to `peak·min_frac` at `total`.
pub fn lr_at(step: u32, total: u32, warmup: u32, peak: f32, min_frac: f32) -> f32 {
    let min = peak * min_frac;
    if warmup > 0 && step <= warmup {
        return peak * step as f32 / warmup as f32;
    }
    if total <= warmup {
        return peak;
    }
    let progress = (step.min(total) - warmup) as f64 / (total - warmup) as f64;
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    min + (peak - min) * cos as f32
}

#[cfg(test)]
mod tests {
    use super::lr_at;

    #[test]
    fn warmup_then_cosine() {
        assert_eq!(lr_at(1, 100, 10, 1.0, 0.1), 0.1);
        assert_eq!(lr_at(10, 100, 10, 1.0, 0.1), 1.0);
        assert!((lr_at(55, 100, 10, 1.0, 0.1) - 0.55).abs() < 1e-6);
        assert!((lr_at(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-6);
        let mut prev = f32::INFINITY;
        for s in 10..=100 {
            let lr = lr_at(s, 100, 10, 1.0, 0.1);
            assert!(lr <= prev, "not monotone after warmup at step {s}");
            prev = lr;
        }
    }
}
