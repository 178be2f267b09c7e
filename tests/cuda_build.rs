//! The CUDA build pipeline (DESIGN.md §5–§6): the host build of the kernels' device-math
//! helpers, the embedded fatbin, the driver probe, and (on a GPU) the kernels against the
//! host helpers.
//!
//! GPU tests print a skip reason when no GPU (or no kernels) is available;
//! `ASA_LTH_REQUIRE_GPU=1` turns that skip into a failure.

mod common;

use asa_lth::backend::cuda::{self, host, DriverStatus};
use asa_lth::backend::AdamWStep;

/// Tiny xorshift64* generator: tests need no RNG crate and never draw all-zero inputs.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi), never exactly 0 (nudged away when it lands there).
    fn range(&mut self, lo: f64, hi: f64) -> f32 {
        let x = (lo + (hi - lo) * self.unit()) as f32;
        if x == 0.0 {
            1e-3
        } else {
            x
        }
    }
}

/// Independent f64 statement of the AdamW contract (src/backend/mod.rs `Ops::adamw`).
/// Returns the new (p, m, v).
fn adamw_ref(p: f64, g: f64, m: f64, v: f64, mask: f64, hp: &AdamWStep) -> (f64, f64, f64) {
    if mask == 0.0 {
        return (0.0, 0.0, 0.0);
    }
    let (b1, b2) = (hp.beta1 as f64, hp.beta2 as f64);
    let g = g * hp.grad_scale as f64;
    let m = b1 * m + (1.0 - b1) * g;
    let v = b2 * v + (1.0 - b2) * g * g;
    let mhat = m / (1.0 - b1.powi(hp.t as i32));
    let vhat = v / (1.0 - b2.powi(hp.t as i32));
    let p = p - hp.lr as f64 * (mhat / (vhat.sqrt() + hp.eps as f64) + hp.weight_decay as f64 * p);
    (p, m, v)
}

fn random_hp(rng: &mut XorShift) -> AdamWStep {
    AdamWStep {
        lr: rng.range(1e-4, 1e-2),
        beta1: rng.range(0.8, 0.95),
        beta2: rng.range(0.95, 0.9999),
        eps: rng.range(1e-8, 1e-6),
        weight_decay: rng.range(0.0, 0.1),
        grad_scale: rng.range(0.25, 1.0),
        t: 1 + (rng.next_u64() % 1000) as u32,
    }
}

/// |a - b| within `rel` of the magnitude the quantity is computed at.
fn close(a: f32, b: f64, scale: f64, rel: f64) -> bool {
    a.is_finite() && (a as f64 - b).abs() <= rel * scale.max(b.abs())
}

#[test]
fn host_adamw_matches_f64_reference() {
    let mut rng = XorShift::new(7);
    let mut masked = 0;
    for case in 0..20_000 {
        let hp = random_hp(&mut rng);
        let p0 = rng.range(-2.0, 2.0);
        let g = rng.range(-3.0, 3.0);
        let m0 = rng.range(-0.5, 0.5);
        let v0 = rng.range(1e-6, 1.0);
        let mask = if rng.next_u64().is_multiple_of(4) {
            0.0
        } else {
            1.0
        };
        let (mut p, mut m, mut v) = (p0, m0, v0);
        host::adamw_update(&mut p, &mut m, &mut v, g, mask, &hp);
        let (pr, mr, vr) = adamw_ref(p0 as f64, g as f64, m0 as f64, v0 as f64, mask as f64, &hp);
        if mask == 0.0 {
            masked += 1;
            assert!(
                p.to_bits() == 0 && m.to_bits() == 0 && v.to_bits() == 0,
                "case {case}: mask 0 must give exact +0.0, got p={p} m={m} v={v}"
            );
            continue;
        }
        // Each result is a short chain of f32 operations; measure its error against the
        // magnitudes of the terms it is made of (old value and increment), not just the result.
        let gs = (g * hp.grad_scale).abs() as f64;
        let pscale = p0.abs() as f64 + (pr - p0 as f64).abs();
        assert!(
            close(p, pr, pscale, 4e-6),
            "case {case}: p {p} vs {pr} ({hp:?})"
        );
        let mscale = (m0.abs() as f64).max(gs);
        assert!(close(m, mr, mscale, 4e-6), "case {case}: m {m} vs {mr}");
        let vscale = (v0 as f64).max(gs * gs);
        assert!(close(v, vr, vscale, 4e-6), "case {case}: v {v} vs {vr}");
    }
    assert!(
        masked > 1000,
        "the mask=0 path was exercised {masked} times"
    );
}

#[test]
fn host_adamw_bias_correction_is_f64_rounded_once() {
    for (beta, t) in [
        (0.9f32, 1u32),
        (0.999, 1),
        (0.999, 10),
        (0.95, 1000),
        (0.9, 100000),
    ] {
        let want = (1.0 - (beta as f64).powi(t as i32)) as f32;
        let got = host::adamw_bias_correction(beta, t);
        assert!(
            (got - want).abs() <= f32::EPSILON * want,
            "beta {beta} t {t}: {got} vs {want}"
        );
    }
}

#[test]
fn host_adamw_slice_matches_elementwise_and_checks_lengths() {
    let mut rng = XorShift::new(11);
    let hp = random_hp(&mut rng);
    let n = 1000;
    let p0: Vec<f32> = (0..n).map(|_| rng.range(-1.0, 1.0)).collect();
    let g: Vec<f32> = (0..n).map(|_| rng.range(-1.0, 1.0)).collect();
    let m0: Vec<f32> = (0..n).map(|_| rng.range(-0.1, 0.1)).collect();
    let v0: Vec<f32> = (0..n).map(|_| rng.range(1e-4, 0.1)).collect();
    let mask: Vec<f32> = (0..n).map(|i| (i % 3 != 0) as u32 as f32).collect();
    let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
    host::adamw_f32(&mut p, &g, &mut m, &mut v, Some(&mask), &hp).unwrap();
    for i in 0..n {
        let (mut pe, mut me, mut ve) = (p0[i], m0[i], v0[i]);
        host::adamw_update(&mut pe, &mut me, &mut ve, g[i], mask[i], &hp);
        assert_eq!(
            (p[i].to_bits(), m[i].to_bits(), v[i].to_bits()),
            (pe.to_bits(), me.to_bits(), ve.to_bits()),
            "element {i}"
        );
    }
    let err = host::adamw_f32(&mut p, &g[..n - 1], &mut m, &mut v, None, &hp).unwrap_err();
    assert!(err.to_string().contains("grad"), "{err}");
}

#[test]
fn embedded_fatbin_has_magic() {
    match cuda::KERNELS_FATBIN {
        Some(fatbin) => {
            assert!(cuda::kernels_built());
            assert!(fatbin.len() > 16, "fatbin is {} bytes", fatbin.len());
            let magic = u32::from_le_bytes(fatbin[..4].try_into().unwrap());
            assert_eq!(magic, cuda::FATBIN_MAGIC, "fatbin magic {magic:#x}");
            assert_eq!(fatbin.as_ptr() as usize % 64, 0, "fatbin must be aligned");
            let archs = cuda::kernel_archs();
            for want in ["sm_80", "sm_86", "sm_89"] {
                assert!(archs.contains(&want), "{want} missing from {archs:?}");
            }
            assert!(
                archs.contains(&"sm_90") || archs.contains(&"sm_90a"),
                "no sm_90 SASS in {archs:?}"
            );
            assert!(cuda::nvcc_version().is_some());
            assert!(cuda::toolkit_version().is_some());
        }
        None => {
            assert!(!cuda::kernels_built());
            assert!(cuda::kernel_archs().is_empty());
            println!(
                "SKIP embedded_fatbin_has_magic: built without CUDA kernels (no nvcc at build \
                 time; set NVCC or run scripts/install-cuda-toolchain.sh)"
            );
        }
    }
}

#[test]
fn probe_never_panics_and_summarises() {
    let p = cuda::probe();
    let line = p.one_line_summary();
    assert!(!line.contains('\n'), "summary must be one line: {line:?}");
    assert!(!p.details().is_empty());
    assert_eq!(p.kernels_built, cuda::kernels_built());
    println!("probe: {line}");
    print!("{}", p.details());
    if !p.has_gpu() {
        assert!(line.starts_with("no GPU: "), "{line}");
        assert!(line.contains("CPU backend will be used"), "{line}");
        if !p.kernels_built {
            assert!(line.contains("built without CUDA kernels"), "{line}");
        }
        if p.driver == DriverStatus::NoLibrary {
            assert!(line.contains("libcuda not found"), "{line}");
        }
    }
    // A second probe agrees (no hidden state that changes the answer).
    assert_eq!(cuda::probe(), p);
}

#[test]
fn driver_older_than_toolkit_is_reported() {
    let gpu = cuda::DeviceInfo {
        ordinal: 0,
        name: "Test GPU".into(),
        compute_capability: (9, 0),
        total_memory_bytes: 80 << 30,
        multiprocessors: 132,
    };
    let mut p = cuda::CudaProbe {
        kernels_built: true,
        kernel_archs: vec![
            "sm_80".into(),
            "sm_86".into(),
            "sm_89".into(),
            "sm_90".into(),
        ],
        kernel_ptx: Some("compute_90".into()),
        nvcc_version: Some("13.0.88".into()),
        fatbin_bytes: 1,
        driver: DriverStatus::Ready {
            version: 12080,
            devices: vec![gpu.clone()],
        },
        warnings: vec![],
    };
    let w = cuda::compatibility_warnings(&p, Some((13, 0)));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("cannot load"), "{}", w[0]);
    p.warnings = w;
    assert!(p.driver_too_old());
    let line = p.one_line_summary();
    assert!(line.contains("WARNING") && !line.contains('\n'), "{line}");

    p.driver = DriverStatus::Ready {
        version: 13000,
        devices: vec![gpu.clone()],
    };
    assert!(cuda::compatibility_warnings(&p, Some((13, 0))).is_empty());
    assert!(!p.driver_too_old());

    // A newer GPU without SASS falls back to the PTX; an old one cannot run the kernels.
    let mut newer = gpu.clone();
    newer.compute_capability = (10, 0);
    let mut old = gpu;
    old.compute_capability = (7, 5);
    p.driver = DriverStatus::Ready {
        version: 13000,
        devices: vec![newer, old],
    };
    let w = cuda::compatibility_warnings(&p, Some((13, 0)));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("JIT"), "{}", w[0]);
    assert!(w[1].contains("sm_80 or newer"), "{}", w[1]);
}

#[test]
fn gpu_adamw_matches_host_helper() {
    const TEST: &str = "gpu_adamw_matches_host_helper";
    let Some(common::Gpu { stream, module }) = common::gpu(TEST) else {
        return;
    };

    let mut rng = XorShift::new(2024);
    // Enough elements that a capped grid loops several times; not a multiple of the block.
    let n = 3 * 256 * 64 + 77;
    for (with_mask, max_blocks) in [(true, Some(64)), (false, None)] {
        let hp = random_hp(&mut rng);
        let p0: Vec<f32> = (0..n).map(|_| rng.range(-2.0, 2.0)).collect();
        let g: Vec<f32> = (0..n).map(|_| rng.range(-3.0, 3.0)).collect();
        let m0: Vec<f32> = (0..n).map(|_| rng.range(-0.5, 0.5)).collect();
        let v0: Vec<f32> = (0..n).map(|_| rng.range(1e-6, 1.0)).collect();
        let mask: Vec<f32> = (0..n)
            .map(|_| !rng.next_u64().is_multiple_of(5) as u32 as f32)
            .collect();

        let mut dp = stream.clone_htod(&p0).unwrap();
        let dg = stream.clone_htod(&g).unwrap();
        let mut dm = stream.clone_htod(&m0).unwrap();
        let mut dv = stream.clone_htod(&v0).unwrap();
        let dmask = stream.clone_htod(&mask).unwrap();
        cuda::kernels::launch_adamw_f32(
            &module,
            &stream,
            &mut dp,
            &dg,
            &mut dm,
            &mut dv,
            with_mask.then_some(&dmask),
            &hp,
            max_blocks,
        )
        .unwrap();
        let gp = stream.clone_dtoh(&dp).unwrap();
        let gm = stream.clone_dtoh(&dm).unwrap();
        let gv = stream.clone_dtoh(&dv).unwrap();
        stream.synchronize().unwrap();

        let (mut hp_, mut hm, mut hv) = (p0.clone(), m0.clone(), v0.clone());
        host::adamw_f32(
            &mut hp_,
            &g,
            &mut hm,
            &mut hv,
            with_mask.then_some(&mask[..]),
            &hp,
        )
        .unwrap();

        for (name, gpu, hst) in [("p", &gp, &hp_), ("m", &gm, &hm), ("v", &gv, &hv)] {
            let (mut num, mut den) = (0f64, 0f64);
            for i in 0..n {
                assert!(gpu[i].is_finite(), "{name}[{i}] = {}", gpu[i]);
                if with_mask && mask[i] == 0.0 {
                    assert_eq!(gpu[i].to_bits(), 0, "{name}[{i}] must be exactly 0");
                }
                num += (gpu[i] as f64 - hst[i] as f64).powi(2);
                den += (hst[i] as f64).powi(2);
            }
            let rel = (num / den.max(1e-30)).sqrt();
            // f32 contract (DESIGN.md §3) is 1e-5; FMA contraction on the GPU is the only
            // expected difference, so hold it well below that.
            assert!(
                rel <= 1e-6,
                "{name}: relative L2 {rel:e} (mask {with_mask})"
            );
            println!("{TEST}: {name} relative L2 {rel:e} (mask {with_mask}, n {n})");
        }
    }
}

/// The CPU backend's AdamW and the kernel's element helper (host build) implement the same
/// contract bit for bit, with and without a prune mask.
#[test]
fn cpu_adamw_matches_the_kernel_helper_bit_for_bit() {
    let mut rng = XorShift::new(77);
    let n = 4099;
    for with_mask in [false, true] {
        let hp = random_hp(&mut rng);
        let p0: Vec<f32> = (0..n).map(|_| rng.range(-2.0, 2.0)).collect();
        let g: Vec<f32> = (0..n).map(|_| rng.range(-3.0, 3.0)).collect();
        let m0: Vec<f32> = (0..n).map(|_| rng.range(-0.5, 0.5)).collect();
        let v0: Vec<f32> = (0..n).map(|_| rng.range(0.0, 0.5)).collect();
        let mask: Vec<f32> = (0..n).map(|i| (i % 3 != 0) as u32 as f32).collect();
        let mk = with_mask.then_some(&mask[..]);
        let (mut p1, mut m1, mut v1) = (p0.clone(), m0.clone(), v0.clone());
        asa_lth::backend::cpu::adamw::adamw(&mut p1, &g, &mut m1, &mut v1, mk, &hp).unwrap();
        let (mut p2, mut m2, mut v2) = (p0.clone(), m0.clone(), v0.clone());
        host::adamw_f32(&mut p2, &g, &mut m2, &mut v2, mk, &hp).unwrap();
        for i in 0..n {
            assert_eq!(
                (p1[i].to_bits(), m1[i].to_bits(), v1[i].to_bits()),
                (p2[i].to_bits(), m2[i].to_bits(), v2[i].to_bits()),
                "element {i} (mask {with_mask})"
            );
        }
    }
}
