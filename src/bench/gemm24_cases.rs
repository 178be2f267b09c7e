//! Benchmark cases for the 2:4 GEMM on the CPU against the dense GEMM of the same shape, at
//! an LLM shape (K = N = 4096) for few rows of X (weight-bandwidth bound) and many (compute
//! bound). FLOPs are counted as the dense GEMM's `2·M·N·K` for both, so throughputs compare
//! as speed-ups (DESIGN.md §7: ≥ 1.5× at M ≤ 16, ≥ 0.8× at M ≥ 512).

use super::cases::{BenchCase, Unit};
use crate::backend::cpu::matmul;
use crate::backend::MatmulShape;
use crate::rng::Rng;
use crate::sparse::{gemm24, Sparse24};

/// The `gemm24` cases (and their dense baselines), if `want("gemm24")`.
pub fn gemm24_cases(want: &dyn Fn(&str) -> bool) -> Vec<BenchCase> {
    if !want("gemm24") {
        return vec![];
    }
    let mut rng = Rng::new(24);
    let (n, k) = (4096usize, 4096usize);
    let w: Vec<f32> = rng.normal_vec(n * k, 0.02);
    let sparse = std::sync::Arc::new(Sparse24::compress("w", &w, n, k).expect("valid shape"));
    let dense = std::sync::Arc::new(sparse.decompress());
    let mut cases = Vec::new();
    for m in [16usize, 512] {
        let x: std::sync::Arc<Vec<f32>> = std::sync::Arc::new(rng.normal_vec(m * k, 1.0));
        let flops = 2.0 * (m * n * k) as f64;
        let (xs, ws) = (x.clone(), sparse.clone());
        let mut y = vec![0.0f32; m * n];
        cases.push(BenchCase {
            kernel: "gemm24",
            name: format!("gemm24/sparse_f32/m{m}_n{n}_k{k}"),
            device: "cpu".into(),
            unit: Unit::Flops,
            work: flops,
            run: Box::new(move || gemm24(&mut y, &xs, &ws, None, m).expect("fixed shapes")),
        });
        let wd = dense.clone();
        let mut y = vec![0.0f32; m * n];
        let s = MatmulShape { n: m, k, oc: n };
        cases.push(BenchCase {
            kernel: "gemm24",
            name: format!("gemm24/dense_f32/m{m}_n{n}_k{k}"),
            device: "cpu".into(),
            unit: Unit::Flops,
            work: flops,
            run: Box::new(move || {
                matmul::matmul_fwd(&mut y, &x, &wd, None, None, s).expect("fixed shapes")
            }),
        });
    }
    cases
}
