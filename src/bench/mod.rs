//! The benchmark harness shared by `cargo bench` (criterion) and `asa-lth bench`: a list of
//! named cases (one kernel at one shape on one device, with the work one call does), a timer
//! that reports the median and spread over repeats, the roofline measured in the same run
//! (copy bandwidth, dense GEMM rate), a JSON report with machine and commit, and the
//! comparison against a baseline report that flags changes larger than the measured spread.

pub mod attention_cases;
pub mod cases;
pub mod gemm24_cases;
pub mod peak;
pub mod report;
pub mod step_profile;
pub mod topk_cases;

pub use cases::{cpu_cases, cpu_cases_with, cpu_cases_with_sweeps, BenchCase, Unit};
pub use report::{compare, BenchReport, Comparison, Figure, Machine, Roofline};

use std::time::Instant;

/// Timing settings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Repeats whose spread is reported.
    pub samples: usize,
    /// Minimum seconds per sample (a sample runs the case enough times to last this long).
    pub min_sample_secs: f64,
    /// Warm-up seconds before sampling.
    pub warmup_secs: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            samples: 11,
            min_sample_secs: 0.05,
            warmup_secs: 0.2,
        }
    }
}

/// Seconds per call of `f`: `samples` measurements, each the mean over enough calls to last
/// `min_sample_secs`. A first, untimed call comes before the warm-up (cases that build their
/// inputs on first use, like the 2:4 GEMM's, would otherwise skew the calls-per-sample
/// estimate).
pub fn time_calls(f: &mut dyn FnMut(), t: Timing) -> Vec<f64> {
    f();
    let start = Instant::now();
    let mut calls_in_warmup = 0usize;
    while start.elapsed().as_secs_f64() < t.warmup_secs || calls_in_warmup == 0 {
        f();
        calls_in_warmup += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / calls_in_warmup as f64;
    let reps = ((t.min_sample_secs / per_call.max(1e-9)).ceil() as usize).max(1);
    (0..t.samples.max(1))
        .map(|_| {
            let s = Instant::now();
            for _ in 0..reps {
                f();
            }
            s.elapsed().as_secs_f64() / reps as f64
        })
        .collect()
}

/// Median and relative spread (half the inter-quartile range over the median).
pub fn median_spread(xs: &[f64]) -> (f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let i = p * (v.len() - 1) as f64;
        let (lo, hi) = (i.floor() as usize, i.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (i - lo as f64)
    };
    let med = q(0.5);
    (med, 0.5 * (q(0.75) - q(0.25)) / med)
}

/// The environment variables that shape a benchmark run, checked before any case is built: a
/// value the sweep would not understand is an error naming the variable, never a quietly
/// different sweep.
pub fn check_env() -> Result<(), String> {
    check_env_with(|k| std::env::var(k).ok())
}

/// [`check_env`] over any lookup (tests pass their own).
pub fn check_env_with(get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    for var in ["ASA_LTH_BENCH_ATTN", "ASA_LTH_BENCH_GEMM24"] {
        if let Some(v) = get(var) {
            if !matches!(v.as_str(), "full" | "quick" | "") {
                return Err(format!("{var}={v}: expected `full` or `quick` (or unset)"));
            }
        }
    }
    for var in ["ASA_LTH_BENCH_ATTN_MAX_T", "ASA_LTH_BENCH_GEMM24_MAX_M"] {
        if let Some(v) = get(var) {
            if !matches!(v.trim().parse::<usize>(), Ok(n) if n > 0) {
                return Err(format!("{var}={v}: expected a positive whole number"));
            }
        }
    }
    if let Some(v) = get("ASA_LTH_CUSPARSELT_SEARCH") {
        if !matches!(v.as_str(), "0" | "1") {
            return Err(format!("ASA_LTH_CUSPARSELT_SEARCH={v}: expected 0 or 1"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod env_tests {
    use super::check_env_with;

    #[test]
    fn bench_environment_is_checked() {
        let with = |k: &'static str, v: &'static str| {
            check_env_with(move |q| (q == k).then(|| v.to_string()))
        };
        assert!(with("ASA_LTH_BENCH_ATTN", "full").is_ok());
        assert!(with("ASA_LTH_BENCH_ATTN_MAX_T", "1024").is_ok());
        let e = with("ASA_LTH_BENCH_ATTN", "fulll").unwrap_err();
        assert!(e.contains("ASA_LTH_BENCH_ATTN=fulll"), "{e}");
        let e = with("ASA_LTH_BENCH_GEMM24_MAX_M", "abc").unwrap_err();
        assert!(e.contains("ASA_LTH_BENCH_GEMM24_MAX_M"), "{e}");
        assert!(with("ASA_LTH_BENCH_ATTN_MAX_T", "0").is_err());
        assert!(with("ASA_LTH_CUSPARSELT_SEARCH", "no").is_err());
    }
}
