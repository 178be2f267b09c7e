//! The JSON report of a benchmark run and the comparison against a baseline.

use serde::{Deserialize, Serialize};

/// Report format version (bump on incompatible changes).
pub const FORMAT: u32 = 1;

/// What machine produced a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    /// The CPU kernels' instruction-set level (`avx512`, `avx2`, `portable`); empty in
    /// reports written before it was recorded and in peers' reports.
    #[serde(default)]
    pub isa: String,
    pub threads: usize,
    /// Devices the run measured, e.g. `["cpu"]`.
    pub devices: Vec<String>,
    pub os: String,
}

/// The rooflines measured in the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    /// Memory copy bandwidth on every thread, bytes read + written per second: the yardstick
    /// of `B/s` figures.
    pub copy_bytes_per_sec: f64,
    /// Memory read bandwidth on every thread, bytes per second (0 in reports written before
    /// it was measured).
    #[serde(default)]
    pub read_bytes_per_sec: f64,
    /// The cores' f32 FMA peak at the best instruction-set level, FLOP/s: the yardstick of
    /// `FLOP/s` figures (0 in reports written before it was measured, which used
    /// `gemm_flops`).
    #[serde(default)]
    pub fma_flops: f64,
    /// This project's dense f32 GEMM at 1024³, FLOP/s: a figure beside the peak, no longer
    /// the yardstick.
    pub gemm_flops: f64,
}

impl Roofline {
    /// The FLOP/s yardstick: the FMA peak, or the GEMM rate in reports from before it.
    pub fn flops(&self) -> f64 {
        if self.fma_flops > 0.0 {
            self.fma_flops
        } else {
            self.gemm_flops
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Kernel family (`matmul`, `attention`, `train_step`, …).
    pub kernel: String,
    /// Full case name, unique in a report: `kernel/variant/shape`.
    pub name: String,
    pub device: String,
    /// `FLOP/s`, `B/s` or `tokens/s`.
    pub unit: String,
    /// Median seconds per call.
    pub median_secs: f64,
    /// Half the inter-quartile range of the per-call times, relative to the median.
    pub rel_spread: f64,
    pub samples: usize,
    /// Median throughput in `unit`.
    pub throughput: f64,
    /// Throughput over the matching roofline of this run (the FMA peak for FLOP/s, copy
    /// bandwidth for B/s), if one applies.
    pub roofline_ratio: Option<f64>,
}

/// A benchmark report (`asa-lth bench --json`, and the peer scripts' output).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub format: u32,
    /// Who measured: `asa-lth` or a peer (`jax`, `pytorch`).
    pub implementation: String,
    pub git_commit: String,
    pub machine: Machine,
    pub roofline: Option<Roofline>,
    pub figures: Vec<Figure>,
    pub command: String,
    /// Peers measured in the same run (`asa-lth bench --peer`), each its own report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<BenchReport>,
    /// The `train_step` cases itemised op by op ([`super::step_profile`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_profiles: Vec<super::step_profile::StepProfile>,
}

/// One figure compared with a baseline figure of the same name and device.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub name: String,
    pub device: String,
    /// New throughput over baseline throughput.
    pub ratio: f64,
    /// The change exceeds the combined measured spread of both figures.
    pub significant: bool,
}

/// Compare `new` against `base` figure by figure (matched by name and device). A change is
/// significant when `|ratio − 1|` exceeds the sum of both figures' relative spreads (with a
/// floor of 1%, below which timers on a shared machine cannot resolve anything).
pub fn compare(new: &BenchReport, base: &BenchReport) -> Vec<Comparison> {
    new.figures
        .iter()
        .filter_map(|f| {
            let b = base
                .figures
                .iter()
                .find(|b| b.name == f.name && b.device == f.device && b.unit == f.unit)?;
            let ratio = f.throughput / b.throughput;
            let threshold = (f.rel_spread + b.rel_spread).max(0.01);
            Some(Comparison {
                name: f.name.clone(),
                device: f.device.clone(),
                ratio,
                significant: (ratio - 1.0).abs() > threshold,
            })
        })
        .collect()
}
