//! Helpers shared by the integration tests: seeded random inputs (never zeros) and a
//! finite-difference gradient checker in f64.
#![allow(dead_code)]

use asa_lth::backend::cuda;
use asa_lth::rng::Rng;

/// `n` values uniform in ±[0.1, 1] (bounded away from zero), as f64.
pub fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let m = 0.1 + 0.9 * rng.uniform();
            if rng.bernoulli(0.5) {
                m
            } else {
                -m
            }
        })
        .collect()
}

/// Same as [`rand_vec`], as f32.
pub fn rand_vec_f32(rng: &mut Rng, n: usize) -> Vec<f32> {
    rand_vec(rng, n).into_iter().map(|x| x as f32).collect()
}

/// Relative L2 error `‖a − b‖ / max(‖b‖, tiny)`; NaN anywhere gives +∞.
pub fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "rel_l2: length mismatch");
    if a.iter().chain(b).any(|x| x.is_nan()) {
        return f64::INFINITY;
    }
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

/// Check `analytic` against central differences of `loss` around `x`, elementwise:
/// `|a − n| ≤ atol + rtol·|n|`. Panics naming the tensor and index on the first failure.
pub fn fd_check(
    name: &str,
    x: &[f64],
    analytic: &[f64],
    mut loss: impl FnMut(&[f64]) -> f64,
    rtol: f64,
    atol: f64,
) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let h = 1e-6;
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        xp[i] = x[i] + h;
        let lp = loss(&xp);
        xp[i] = x[i] - h;
        let lm = loss(&xp);
        xp[i] = x[i];
        let num = (lp - lm) / (2.0 * h);
        let a = analytic[i];
        assert!(
            (a - num).abs() <= atol + rtol * num.abs(),
            "{name}[{i}]: analytic {a:e} vs numeric {num:e}"
        );
    }
}

/// `Σ y·r`.
pub fn dot(y: &[f64], r: &[f64]) -> f64 {
    y.iter().zip(r).map(|(a, b)| a * b).sum()
}

// ---- GPU tests: run, or skip with the reason (a failure under ASA_LTH_REQUIRE_GPU=1) ----

/// Whether a skipped GPU test must fail instead (`ASA_LTH_REQUIRE_GPU=1`).
pub fn require_gpu() -> bool {
    std::env::var("ASA_LTH_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Skip (print why) or, under ASA_LTH_REQUIRE_GPU=1, fail.
pub fn skip_or_fail(test: &str, why: &str) {
    if require_gpu() {
        panic!("{test}: {why}, and ASA_LTH_REQUIRE_GPU=1");
    }
    println!("SKIP {test}: {why} (set ASA_LTH_REQUIRE_GPU=1 to make this a failure)");
}

/// A CUDA stream on GPU 0 and the embedded kernels loaded there.
pub struct Gpu {
    pub stream: std::sync::Arc<cudarc::driver::CudaStream>,
    pub module: cuda::kernels::KernelModule,
}

/// The GPU, or `None` after printing why a GPU test cannot run (a panic under
/// `ASA_LTH_REQUIRE_GPU=1`).
pub fn gpu(test: &str) -> Option<Gpu> {
    let probe = cuda::probe();
    if !probe.has_gpu() {
        skip_or_fail(test, &format!("no GPU ({})", probe.one_line_summary()));
        return None;
    }
    if !probe.kernels_built {
        skip_or_fail(test, "built without CUDA kernels (no nvcc at build time)");
        return None;
    }
    if probe.driver_too_old() {
        skip_or_fail(test, &probe.warnings.join("; "));
        return None;
    }
    let ctx = cudarc::driver::CudaContext::new(0).expect("CUDA context on GPU 0");
    let stream = ctx.default_stream();
    let module = cuda::kernels::KernelModule::load(&ctx)
        .unwrap_or_else(|e| panic!("{e}\n{}", probe.details()));
    Some(Gpu { stream, module })
}

/// A fresh, empty scratch directory `<tmp>/asa-lth-<suite>-<pid>-<name>`.
pub fn tmpdir(suite: &str, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch directory");
    d
}

/// `../shared/data` beside the repository (UD treebanks), resolved at run time from
/// `CARGO_MANIFEST_DIR`. `None` (with the reason printed) when it is absent, so tests that need
/// it skip; with `ASA_LTH_REQUIRE_DATA=1` (CI) an absent directory fails the test instead.
pub fn shared_data_dir() -> Option<std::path::PathBuf> {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let dir = root.join("..").join("shared").join("data");
    if dir.is_dir() {
        return Some(dir);
    }
    let why = format!("{} is absent", dir.display());
    if std::env::var("ASA_LTH_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("ASA_LTH_REQUIRE_DATA=1 but {why}");
    }
    eprintln!("skipped: {why} (set ASA_LTH_REQUIRE_DATA=1 to make this a failure)");
    None
}
