//! The CUDA backend (`CudaOps`) against its CPU twin (`Cpu`), op by op on fresh random inputs
//! (never zeros), then a whole training step and a 50-step loss curve through `Gpt`.
//! Tolerances per DESIGN.md §3: relative L2 ≤ 1e-5 on f32 paths, ≤ 1e-2 where matmuls take
//! bf16 operands; NaN always fails. Outputs that an op overwrites are poisoned with NaN first;
//! gradients that an op accumulates into start from random nonzero values.
//!
//! Every `gpu_*` test skips with a printed reason without a GPU (a failure under
//! `ASA_LTH_REQUIRE_GPU=1`). The `host_*` tests run everywhere.

mod common;

use asa_lth::backend::cpu::Cpu;
use asa_lth::backend::cuda::blas::{emulate, plan, GemmKind, Operand};
use asa_lth::backend::cuda::ops::CudaOps;
use asa_lth::backend::cuda::{self, kernels_built, libcuda_present};
use asa_lth::backend::{AdamWStep, AttnShape, GradWrite, MaskRef, MatmulShape, Ops, IGNORE_INDEX};
use asa_lth::model::{AdamWConfig, Gpt, GptConfig};
use asa_lth::rng::Rng;
use common::{rand_vec_f32, rel_l2, skip_or_fail};

/// `CudaOps` on GPU 0, or `None` after printing why not (a panic under ASA_LTH_REQUIRE_GPU=1).
fn gpu_ops(test: &str) -> Option<CudaOps> {
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
    match CudaOps::new(0) {
        Ok(ops) => Some(ops),
        // A GPU is there and the kernels were built: failing to open it is a real failure.
        Err(e) => panic!("{test}: CudaOps::new(0) failed: {e}\n{}", probe.details()),
    }
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let err = rel_l2(&wide(got), &wide(want));
    assert!(err <= tol, "{what}: relative L2 error {err:e} > {tol:e}");
}

const F32_TOL: f64 = 1e-5;
const BF16_TOL: f64 = 1e-2;

fn nan(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}

// ---------------------------------------------------------------------------------------
// Host-side tests (no GPU needed).

/// The row-major → column-major GEMM arguments, interpreted as cuBLAS does, reproduce the CPU
/// twin's matmul forward and both backward products (accumulating, with masks).
#[test]
fn host_gemm_argument_mapping_matches_the_cpu_twin() {
    let mut rng = Rng::new(1);
    for s in [
        MatmulShape { n: 7, k: 16, oc: 5 },
        MatmulShape { n: 1, k: 3, oc: 9 },
        MatmulShape {
            n: 33,
            k: 20,
            oc: 12,
        },
    ] {
        let x = rand_vec_f32(&mut rng, s.n * s.k);
        let w = rand_vec_f32(&mut rng, s.oc * s.k);
        let dy = rand_vec_f32(&mut rng, s.n * s.oc);
        let pick = |o: Operand| match o {
            Operand::Input => &x[..],
            Operand::Weight => &w[..],
            Operand::OutGrad => &dy[..],
        };
        let mut want = nan(s.n * s.oc);
        Cpu.matmul_fwd(&mut want, &x, &w, None, None, s).unwrap();
        let g = plan(GemmKind::Forward, s);
        let mut got = nan(s.n * s.oc);
        emulate(&g, pick(g.a), pick(g.b), &mut got, 1.0, 0.0);
        assert_close(&format!("forward {s:?}"), &got, &want, 1e-6);

        let dx0 = rand_vec_f32(&mut rng, s.n * s.k);
        let dw0 = rand_vec_f32(&mut rng, s.oc * s.k);
        let (mut dx, mut dw) = (dx0.clone(), dw0.clone());
        Cpu.matmul_bwd(
            Some((&mut dx, GradWrite::Accumulate)),
            &mut dw,
            None,
            &dy,
            &x,
            &w,
            None,
            s,
        )
        .unwrap();
        let g = plan(GemmKind::InputGrad, s);
        let mut got = dx0.clone();
        emulate(&g, pick(g.a), pick(g.b), &mut got, 1.0, 1.0);
        assert_close(&format!("dinp {s:?}"), &got, &dx, 1e-6);
        let g = plan(GemmKind::WeightGrad, s);
        let mut got = dw0.clone();
        emulate(&g, pick(g.a), pick(g.b), &mut got, 1.0, 1.0);
        assert_close(&format!("dweight {s:?}"), &got, &dw, 1e-6);
    }
}

/// Without a driver or kernels the constructor is a clear error, never a panic.
#[test]
fn host_constructor_without_a_gpu_is_a_clear_error() {
    let probe = cuda::probe();
    match CudaOps::new(0) {
        Ok(ops) => {
            assert!(
                probe.gpu_ready(),
                "CudaOps opened but the probe says no GPU"
            );
            assert!(ops.label().starts_with("cuda:0 "), "{}", ops.label());
        }
        Err(e) => {
            let msg = e.to_string();
            println!("CudaOps::new(0): {msg}");
            if !libcuda_present() {
                assert!(msg.contains("libcuda not found"), "{msg}");
            }
            if !kernels_built() {
                assert!(msg.contains("built without CUDA kernels"), "{msg}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Op by op.

#[test]
fn gpu_elementwise_ops_match_cpu() {
    let Some(g) = gpu_ops("gpu_elementwise_ops_match_cpu") else {
        return;
    };
    let mut rng = Rng::new(2);
    for n in [1usize, 1000, 70_001] {
        let a = rand_vec_f32(&mut rng, n);
        let b = rand_vec_f32(&mut rng, n);
        let start = rand_vec_f32(&mut rng, n);
        let (da, db) = (g.upload(&a).unwrap(), g.upload(&b).unwrap());

        let mut want = nan(n);
        Cpu.residual_fwd(&mut want, &a, &b).unwrap();
        let mut out = g.upload(&nan(n)).unwrap();
        g.residual_fwd(&mut out, &da, &db).unwrap();
        assert_close("residual_fwd", &g.download(&out).unwrap(), &want, F32_TOL);

        let mut want = start.clone();
        Cpu.accumulate(&mut want, &a).unwrap();
        let mut acc = g.upload(&start).unwrap();
        g.accumulate(&mut acc, &da).unwrap();
        assert_close("accumulate", &g.download(&acc).unwrap(), &want, F32_TOL);

        let mut want = nan(n);
        Cpu.gelu_fwd(&mut want, &a).unwrap();
        let mut out = g.upload(&nan(n)).unwrap();
        g.gelu_fwd(&mut out, &da).unwrap();
        assert_close("gelu_fwd", &g.download(&out).unwrap(), &want, F32_TOL);

        // Overwrites: NaN before.
        let mut want = nan(n);
        Cpu.gelu_bwd(&mut want, &a, &b).unwrap();
        let mut d = g.upload(&nan(n)).unwrap();
        g.gelu_bwd(&mut d, &da, &db).unwrap();
        assert_close("gelu_bwd", &g.download(&d).unwrap(), &want, F32_TOL);

        let mut f = g.upload(&nan(n)).unwrap();
        g.fill(&mut f, -0.375).unwrap();
        assert!(g.download(&f).unwrap().iter().all(|&x| x == -0.375));
        let z = g.zeros(n).unwrap();
        assert!(g.download(&z).unwrap().iter().all(|&x| x == 0.0));
        assert_eq!(g.len(&z), n);
    }
    // Length mismatches are the CPU twin's shape errors.
    let (a, b) = (g.upload(&[1.0; 4]).unwrap(), g.upload(&[1.0; 5]).unwrap());
    let mut out = g.zeros(4).unwrap();
    let e = g.residual_fwd(&mut out, &a, &b).unwrap_err().to_string();
    let c = Cpu
        .residual_fwd(&mut vec![0.0; 4], &vec![1.0; 4], &vec![1.0; 5])
        .unwrap_err()
        .to_string();
    assert_eq!(e, c);
}

#[test]
fn gpu_embedding_matches_cpu() {
    let Some(g) = gpu_ops("gpu_embedding_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new(3);
    for (b, t, c, v) in [(3usize, 37usize, 48usize, 50usize), (2, 300, 130, 7)] {
        // Few distinct tokens, so rows repeat (the scatter-add's hard case).
        let tokens: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
        let wte = rand_vec_f32(&mut rng, v * c);
        let wpe = rand_vec_f32(&mut rng, (t + 3) * c);
        let mut want = nan(b * t * c);
        Cpu.embedding_fwd(&mut want, &tokens, &wte, &wpe, b, t, c)
            .unwrap();
        let (dt, dwte, dwpe) = (
            g.upload_idx(&tokens).unwrap(),
            g.upload(&wte).unwrap(),
            g.upload(&wpe).unwrap(),
        );
        let mut out = g.upload(&nan(b * t * c)).unwrap();
        g.embedding_fwd(&mut out, &dt, &dwte, &dwpe, b, t, c)
            .unwrap();
        assert_eq!(g.download(&out).unwrap(), want, "embedding_fwd is exact");

        let dout = rand_vec_f32(&mut rng, b * t * c);
        let gte0 = rand_vec_f32(&mut rng, v * c);
        let gpe0 = rand_vec_f32(&mut rng, (t + 3) * c);
        let (mut gte, mut gpe) = (gte0.clone(), gpe0.clone());
        Cpu.embedding_bwd(&mut gte, &mut gpe, &dout, &tokens, b, t, c)
            .unwrap();
        let (mut dgte, mut dgpe) = (g.upload(&gte0).unwrap(), g.upload(&gpe0).unwrap());
        let ddout = g.upload(&dout).unwrap();
        g.embedding_bwd(&mut dgte, &mut dgpe, &ddout, &dt, b, t, c)
            .unwrap();
        // Same additions in the same order as the CPU twin: bitwise equal.
        assert_eq!(g.download(&dgte).unwrap(), gte, "dwte");
        assert_eq!(g.download(&dgpe).unwrap(), gpe, "dwpe");
    }
    // A token outside the vocabulary: the CPU twin's error, and nothing launched.
    let tokens = vec![1u32, 2, 9, 3];
    let (wte, wpe) = (vec![0.5f32; 5 * 4], vec![0.5f32; 4 * 4]);
    let want = Cpu
        .embedding_fwd(&mut nan(16), &tokens, &wte, &wpe, 1, 4, 4)
        .unwrap_err()
        .to_string();
    let dt = g.upload_idx(&tokens).unwrap();
    let (dwte, dwpe) = (g.upload(&wte).unwrap(), g.upload(&wpe).unwrap());
    let mut out = g.zeros(16).unwrap();
    let got = g
        .embedding_fwd(&mut out, &dt, &dwte, &dwpe, 1, 4, 4)
        .unwrap_err()
        .to_string();
    assert_eq!(got, want);
}

#[test]
fn gpu_layernorm_matches_cpu() {
    let Some(g) = gpu_ops("gpu_layernorm_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new(4);
    for (n, c) in [(1usize, 32usize), (77, 130), (2050, 768)] {
        let x = rand_vec_f32(&mut rng, n * c);
        let w = rand_vec_f32(&mut rng, c);
        let bias = rand_vec_f32(&mut rng, c);
        let (mut o, mut m, mut r) = (nan(n * c), nan(n), nan(n));
        Cpu.layernorm_fwd(&mut o, &mut m, &mut r, &x, &w, &bias, n, c)
            .unwrap();
        let (dx, dw, db) = (
            g.upload(&x).unwrap(),
            g.upload(&w).unwrap(),
            g.upload(&bias).unwrap(),
        );
        let mut go = g.upload(&nan(n * c)).unwrap();
        let mut gm = g.upload(&nan(n)).unwrap();
        let mut gr = g.upload(&nan(n)).unwrap();
        g.layernorm_fwd(&mut go, &mut gm, &mut gr, &dx, &dw, &db, n, c)
            .unwrap();
        assert_close("ln out", &g.download(&go).unwrap(), &o, F32_TOL);
        assert_close("ln mean", &g.download(&gm).unwrap(), &m, F32_TOL);
        assert_close("ln rstd", &g.download(&gr).unwrap(), &r, F32_TOL);

        let dout = rand_vec_f32(&mut rng, n * c);
        let (dx0, dw0, db0) = (
            rand_vec_f32(&mut rng, n * c),
            rand_vec_f32(&mut rng, c),
            rand_vec_f32(&mut rng, c),
        );
        let (mut cx, mut cw, mut cb) = (dx0.clone(), dw0.clone(), db0.clone());
        Cpu.layernorm_bwd(&mut cx, &mut cw, &mut cb, &dout, &x, &w, &m, &r, n, c)
            .unwrap();
        let (mut gx, mut gw, mut gb) = (
            g.upload(&dx0).unwrap(),
            g.upload(&dw0).unwrap(),
            g.upload(&db0).unwrap(),
        );
        let gdo = g.upload(&dout).unwrap();
        g.layernorm_bwd(&mut gx, &mut gw, &mut gb, &gdo, &dx, &dw, &gm, &gr, n, c)
            .unwrap();
        assert_close("ln dinp", &g.download(&gx).unwrap(), &cx, F32_TOL);
        assert_close("ln dweight", &g.download(&gw).unwrap(), &cw, F32_TOL);
        assert_close("ln dbias", &g.download(&gb).unwrap(), &cb, F32_TOL);
    }
}

/// A 0/1 mask with about `keep` ones.
fn rand_mask(rng: &mut Rng, n: usize, keep: f64) -> Vec<f32> {
    (0..n)
        .map(|_| if rng.bernoulli(keep) { 1.0 } else { 0.0 })
        .collect()
}

#[test]
fn gpu_matmul_matches_cpu() {
    let Some(g) = gpu_ops("gpu_matmul_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new(5);
    for s in [
        MatmulShape {
            n: 64,
            k: 128,
            oc: 96,
        },
        MatmulShape {
            n: 33,
            k: 48,
            oc: 130,
        },
        MatmulShape { n: 1, k: 16, oc: 7 },
        MatmulShape {
            n: 200,
            k: 384,
            oc: 1536,
        },
    ] {
        for (with_bias, with_mask, with_dinp) in [
            (true, false, true),
            (false, true, true),
            (true, true, false),
        ] {
            let what = format!("{s:?} bias {with_bias} mask {with_mask} dinp {with_dinp}");
            let x = rand_vec_f32(&mut rng, s.n * s.k);
            let w = rand_vec_f32(&mut rng, s.oc * s.k);
            let bias = rand_vec_f32(&mut rng, s.oc);
            let mask = rand_mask(&mut rng, s.oc * s.k, 0.7);
            let (cb, cm) = (with_bias.then_some(&bias), with_mask.then_some(&mask));
            let mut want = nan(s.n * s.oc);
            Cpu.matmul_fwd(&mut want, &x, &w, cb, cm, s).unwrap();
            let (gx, gw, gbias, gmask) = (
                g.upload(&x).unwrap(),
                g.upload(&w).unwrap(),
                g.upload(&bias).unwrap(),
                g.upload(&mask).unwrap(),
            );
            let (gb, gm) = (with_bias.then_some(&gbias), with_mask.then_some(&gmask));
            let mut out = g.upload(&nan(s.n * s.oc)).unwrap();
            g.matmul_fwd(&mut out, &gx, &gw, gb, gm, s).unwrap();
            assert_close(
                &format!("fwd {what}"),
                &g.download(&out).unwrap(),
                &want,
                BF16_TOL,
            );

            let dy = rand_vec_f32(&mut rng, s.n * s.oc);
            let dx0 = rand_vec_f32(&mut rng, s.n * s.k);
            let dw0 = rand_vec_f32(&mut rng, s.oc * s.k);
            let db0 = rand_vec_f32(&mut rng, s.oc);
            // Both ways of writing dinp; an overwritten one starts as NaN (never read).
            let write = if rng.bernoulli(0.5) {
                GradWrite::Overwrite
            } else {
                GradWrite::Accumulate
            };
            let dx0 = match write {
                GradWrite::Overwrite => nan(s.n * s.k),
                GradWrite::Accumulate => dx0,
            };
            let (mut cdx, mut cdw, mut cdb) = (dx0.clone(), dw0.clone(), db0.clone());
            Cpu.matmul_bwd(
                with_dinp.then_some((&mut cdx, write)),
                &mut cdw,
                with_bias.then_some(&mut cdb),
                &dy,
                &x,
                &w,
                cm,
                s,
            )
            .unwrap();
            let gdy = g.upload(&dy).unwrap();
            let (mut gdx, mut gdw, mut gdb) = (
                g.upload(&dx0).unwrap(),
                g.upload(&dw0).unwrap(),
                g.upload(&db0).unwrap(),
            );
            g.matmul_bwd(
                with_dinp.then_some((&mut gdx, write)),
                &mut gdw,
                with_bias.then_some(&mut gdb),
                &gdy,
                &gx,
                &gw,
                gm,
                s,
            )
            .unwrap();
            let got_dw = g.download(&gdw).unwrap();
            assert_close(
                &format!("dinp {what}"),
                &g.download(&gdx).unwrap(),
                &cdx,
                BF16_TOL,
            );
            assert_close(&format!("dweight {what}"), &got_dw, &cdw, BF16_TOL);
            // The bias gradient is an f32 column sum: the tight tolerance.
            assert_close(
                &format!("dbias {what}"),
                &g.download(&gdb).unwrap(),
                &cdb,
                F32_TOL,
            );
            if with_mask {
                // dweight += (doutᵀ·inp) ⊙ M leaves masked entries exactly as they were.
                for (i, (&m, (&got, &start))) in
                    mask.iter().zip(got_dw.iter().zip(&dw0)).enumerate()
                {
                    if m == 0.0 {
                        assert_eq!(got, start, "masked dweight[{i}] changed ({what})");
                    }
                }
            }
        }
    }
}

/// With operands exactly representable in bf16 and sums exact in f32, the GPU matmuls must
/// equal the CPU twin bit for bit: this pins the row-major/column-major mapping of all three
/// GEMMs and the bf16 cast, independent of any tolerance.
#[test]
fn gpu_matmul_is_exact_on_exactly_representable_inputs() {
    let Some(g) = gpu_ops("gpu_matmul_is_exact_on_exactly_representable_inputs") else {
        return;
    };
    let mut rng = Rng::new(6);
    // Multiples of 1/4 in [-2, 2] (never 0); products are multiples of 1/16 below 4, and
    // sums of ≤ 512 of them stay exact in f32.
    let q = |rng: &mut Rng, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let v = 1 + rng.below(8) as i32;
                let s = if rng.bernoulli(0.5) { 1 } else { -1 };
                (s * v) as f32 / 4.0
            })
            .collect()
    };
    for s in [
        MatmulShape {
            n: 37,
            k: 64,
            oc: 24,
        },
        MatmulShape {
            n: 128,
            k: 256,
            oc: 96,
        },
    ] {
        let (x, w, dy) = (
            q(&mut rng, s.n * s.k),
            q(&mut rng, s.oc * s.k),
            q(&mut rng, s.n * s.oc),
        );
        let mut want = nan(s.n * s.oc);
        Cpu.matmul_fwd(&mut want, &x, &w, None, None, s).unwrap();
        let (gx, gw, gdy) = (
            g.upload(&x).unwrap(),
            g.upload(&w).unwrap(),
            g.upload(&dy).unwrap(),
        );
        let mut out = g.upload(&nan(s.n * s.oc)).unwrap();
        g.matmul_fwd(&mut out, &gx, &gw, None, None, s).unwrap();
        assert_eq!(g.download(&out).unwrap(), want, "fwd {s:?}");
        let (mut cdx, mut cdw) = (nan(s.n * s.k), vec![0.0f32; s.oc * s.k]);
        let ow = GradWrite::Overwrite;
        Cpu.matmul_bwd(Some((&mut cdx, ow)), &mut cdw, None, &dy, &x, &w, None, s)
            .unwrap();
        let mut gdx = g.upload(&nan(s.n * s.k)).unwrap();
        let mut gdw = g.zeros(s.oc * s.k).unwrap();
        g.matmul_bwd(
            Some((&mut gdx, ow)),
            &mut gdw,
            None,
            &gdy,
            &gx,
            &gw,
            None,
            s,
        )
        .unwrap();
        assert_eq!(g.download(&gdx).unwrap(), cdx, "dinp {s:?}");
        assert_eq!(g.download(&gdw).unwrap(), cdw, "dweight {s:?}");
    }
}

/// The fallback GEMM kernel (used without cuBLASLt, or when it has no algorithm for a shape)
/// and cuBLASLt compute the same products: on exactly representable inputs, bit for bit, for
/// all three GEMMs, including odd shapes.
#[test]
fn gpu_gemm_fallback_matches_cublaslt() {
    let Some(g) = gpu_ops("gpu_gemm_fallback_matches_cublaslt") else {
        return;
    };
    let mut rng = Rng::new(14);
    let q = |rng: &mut Rng, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| (1 + rng.below(8) as i32) as f32 / if rng.bernoulli(0.5) { 4.0 } else { -4.0 })
            .collect()
    };
    for s in [
        MatmulShape {
            n: 37,
            k: 64,
            oc: 24,
        },
        MatmulShape {
            n: 5,
            k: 17,
            oc: 33,
        },
        MatmulShape {
            n: 130,
            k: 48,
            oc: 97,
        },
    ] {
        let (x, w, dy) = (
            q(&mut rng, s.n * s.k),
            q(&mut rng, s.oc * s.k),
            q(&mut rng, s.n * s.oc),
        );
        let (gx, gw, gdy) = (
            g.upload(&x).unwrap(),
            g.upload(&w).unwrap(),
            g.upload(&dy).unwrap(),
        );
        let mut results = Vec::new();
        for blas in [true, false] {
            g.set_use_cublaslt(blas);
            let mut out = g.upload(&nan(s.n * s.oc)).unwrap();
            g.matmul_fwd(&mut out, &gx, &gw, None, None, s).unwrap();
            let (mut dx, mut dw) = (g.zeros(s.n * s.k).unwrap(), g.zeros(s.oc * s.k).unwrap());
            let ow = GradWrite::Overwrite;
            g.matmul_bwd(Some((&mut dx, ow)), &mut dw, None, &gdy, &gx, &gw, None, s)
                .unwrap();
            results.push((
                g.gemm_backend(),
                g.download(&out).unwrap(),
                g.download(&dx).unwrap(),
                g.download(&dw).unwrap(),
            ));
        }
        g.set_use_cublaslt(true);
        assert_eq!(results[1].0, "gemm_bf16_f32_ref");
        let mut want = nan(s.n * s.oc);
        Cpu.matmul_fwd(&mut want, &x, &w, None, None, s).unwrap();
        for r in &results {
            assert_eq!(r.1, want, "fwd {s:?} via {}", r.0);
        }
        assert_eq!(results[0].2, results[1].2, "dinp {s:?}");
        assert_eq!(results[0].3, results[1].3, "dweight {s:?}");
    }
}

#[test]
fn gpu_matmul24_matches_cpu() {
    let Some(g) = gpu_ops("gpu_matmul24_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new(7);
    // (mma.sp path: N % 16, K % 32; few tokens and a long K take split-K; many tokens the
    // large tiles) and (dense fallback: K % 32 != 0).
    for (s, mma) in [
        (
            MatmulShape {
                n: 33,
                k: 64,
                oc: 48,
            },
            true,
        ),
        (
            MatmulShape {
                n: 3,
                k: 2048,
                oc: 64,
            },
            true,
        ),
        (
            MatmulShape {
                n: 200,
                k: 256,
                oc: 144,
            },
            true,
        ),
        (
            MatmulShape {
                n: 5,
                k: 48,
                oc: 20,
            },
            false,
        ),
    ] {
        let w = rand_vec_f32(&mut rng, s.oc * s.k);
        let x = rand_vec_f32(&mut rng, s.n * s.k);
        let bias = rand_vec_f32(&mut rng, s.oc);
        let cw = Cpu.compress24("w", &w, s.oc, s.k).unwrap();
        let mut want = nan(s.n * s.oc);
        Cpu.matmul24_fwd(&mut want, &x, &cw, Some(&bias), s)
            .unwrap();
        let gw = g
            .compress24("w", &g.upload(&w).unwrap(), s.oc, s.k)
            .unwrap();
        assert_eq!(gw.uses_mma_sp(), mma, "{s:?}");
        let (gx, gb) = (g.upload(&x).unwrap(), g.upload(&bias).unwrap());
        let mut out = g.upload(&nan(s.n * s.oc)).unwrap();
        g.matmul24_fwd(&mut out, &gx, &gw, Some(&gb), s).unwrap();
        assert_close(
            &format!("matmul24 {s:?}"),
            &g.download(&out).unwrap(),
            &want,
            BF16_TOL,
        );
        // GELU: fused in the kernel's epilogue on the mma.sp path, separate on the fallback.
        let (mut want_act, mut want_pre) = (nan(s.n * s.oc), nan(s.n * s.oc));
        Cpu.matmul24_gelu_fwd(&mut want_act, &mut want_pre, &x, &cw, Some(&bias), s)
            .unwrap();
        assert_eq!(
            want_pre, want,
            "the default matmul24_gelu_fwd leaves the pre-activation"
        );
        let mut act = g.upload(&nan(s.n * s.oc)).unwrap();
        let mut pre = g.upload(&nan(s.n * s.oc)).unwrap();
        g.matmul24_gelu_fwd(&mut act, &mut pre, &gx, &gw, Some(&gb), s)
            .unwrap();
        assert_close(
            &format!("matmul24 + GELU {s:?}"),
            &g.download(&act).unwrap(),
            &want_act,
            BF16_TOL,
        );
    }
}

/// Bit-packed mask words `(B, Hm, T, ⌈T/32⌉)` with about `keep` of the bits set, and the rows in
/// `empty` (b, hm, i) cleared entirely.
fn mask_words(
    rng: &mut Rng,
    b: usize,
    hm: usize,
    t: usize,
    keep: f64,
    empty: &[(usize, usize, usize)],
) -> Vec<u32> {
    let w = t.div_ceil(32);
    let mut bits = vec![0u32; b * hm * t * w];
    for (r, row) in bits.chunks_exact_mut(w).enumerate() {
        let (bi, h, i) = (r / (hm * t), (r / t) % hm, r % t);
        if empty.contains(&(bi, h, i)) {
            continue;
        }
        for j in 0..t {
            if rng.bernoulli(keep) {
                row[j / 32] |= 1 << (j % 32);
            }
        }
    }
    bits
}

/// (per-head mask? (None: no mask), fraction of bits kept, fully masked rows (b, hm, i)).
type MaskCase = (Option<bool>, f64, Vec<(usize, usize, usize)>);

#[test]
fn gpu_attention_matches_cpu() {
    let Some(g) = gpu_ops("gpu_attention_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new(8);
    let shapes = [
        AttnShape {
            b: 2,
            t: 45,
            h: 3,
            d: 16,
        },
        AttnShape {
            b: 1,
            t: 130,
            h: 2,
            d: 64,
        },
        AttnShape {
            b: 2,
            t: 64,
            h: 2,
            d: 32,
        },
    ];
    for s in shapes {
        let n_act = s.b * s.t * s.c();
        let n_rows = s.b * s.h * s.t;
        // (per_head, keep, fully masked rows (b, hm, i)); row 0 with bit 0 cleared and a late
        // row are fully masked.
        let cases: [MaskCase; 3] = [
            (None, 1.0, vec![]),
            (Some(false), 0.6, vec![(0, 0, 0), (s.b - 1, 0, s.t - 2)]),
            (
                Some(true),
                0.4,
                vec![(0, s.h - 1, 5), (s.b - 1, 0, s.t - 1)],
            ),
        ];
        for (per_head, keep, empty) in cases {
            let what = format!("{s:?} mask {per_head:?}");
            let q = rand_vec_f32(&mut rng, n_act);
            let k = rand_vec_f32(&mut rng, n_act);
            let v = rand_vec_f32(&mut rng, n_act);
            let hm = if per_head == Some(true) { s.h } else { 1 };
            let words = per_head.map(|_| mask_words(&mut rng, s.b, hm, s.t, keep, &empty));
            let cmask = words.as_ref().zip(per_head).map(|(w, ph)| MaskRef {
                bits: w,
                per_head: ph,
            });
            let (mut co, mut cl) = (nan(n_act), nan(n_rows));
            Cpu.attention_fwd(&mut co, &mut cl, &q, &k, &v, cmask, s)
                .unwrap();
            let (gq, gk, gv) = (
                g.upload(&q).unwrap(),
                g.upload(&k).unwrap(),
                g.upload(&v).unwrap(),
            );
            let gwords = words.as_ref().map(|w| g.upload_idx(w).unwrap());
            let gmask = gwords.as_ref().zip(per_head).map(|(w, ph)| MaskRef {
                bits: w,
                per_head: ph,
            });
            let mut go = g.upload(&nan(n_act)).unwrap();
            let mut gl = g.upload(&nan(n_rows)).unwrap();
            g.attention_fwd(&mut go, &mut gl, &gq, &gk, &gv, gmask, s)
                .unwrap();
            let (out, lse) = (g.download(&go).unwrap(), g.download(&gl).unwrap());
            assert!(out.iter().all(|x| !x.is_nan()), "{what}: NaN in out");
            assert_close(&format!("attn out {what}"), &out, &co, F32_TOL);
            // +∞ exactly where the CPU has it (fully masked rows), close elsewhere.
            for (r, (&a, &b)) in lse.iter().zip(&cl).enumerate() {
                assert_eq!(
                    a == f32::INFINITY,
                    b == f32::INFINITY,
                    "{what}: lse[{r}] {a} vs {b}"
                );
            }
            let fin = |x: &[f32]| {
                x.iter()
                    .map(|&v| if v.is_finite() { v } else { 0.0 })
                    .collect::<Vec<_>>()
            };
            assert_close(&format!("attn lse {what}"), &fin(&lse), &fin(&cl), F32_TOL);
            for &(bi, h, i) in &empty {
                for hh in 0..s.h {
                    if per_head == Some(true) && hh != h {
                        continue;
                    }
                    assert_eq!(lse[(bi * s.h + hh) * s.t + i], f32::INFINITY, "{what}");
                    let row = &out[(bi * s.t + i) * s.c() + hh * s.d..][..s.d];
                    assert!(row.iter().all(|&x| x == 0.0), "{what}: masked row not 0");
                }
            }

            let dout = rand_vec_f32(&mut rng, n_act);
            let starts: Vec<Vec<f32>> = (0..3).map(|_| rand_vec_f32(&mut rng, n_act)).collect();
            let (mut cq, mut ck, mut cv) =
                (starts[0].clone(), starts[1].clone(), starts[2].clone());
            Cpu.attention_bwd(
                &mut cq, &mut ck, &mut cv, &dout, &q, &k, &v, &co, &cl, cmask, s,
            )
            .unwrap();
            let (mut gdq, mut gdk, mut gdv) = (
                g.upload(&starts[0]).unwrap(),
                g.upload(&starts[1]).unwrap(),
                g.upload(&starts[2]).unwrap(),
            );
            let gdo = g.upload(&dout).unwrap();
            g.attention_bwd(
                &mut gdq, &mut gdk, &mut gdv, &gdo, &gq, &gk, &gv, &go, &gl, gmask, s,
            )
            .unwrap();
            let gdq_h = g.download(&gdq).unwrap();
            assert_close(&format!("attn dq {what}"), &gdq_h, &cq, F32_TOL);
            assert_close(
                &format!("attn dk {what}"),
                &g.download(&gdk).unwrap(),
                &ck,
                F32_TOL,
            );
            assert_close(
                &format!("attn dv {what}"),
                &g.download(&gdv).unwrap(),
                &cv,
                F32_TOL,
            );
            for &(bi, h, i) in &empty {
                // A fully masked query row gets no gradient.
                let off = (bi * s.t + i) * s.c() + h * s.d;
                assert_eq!(&gdq_h[off..off + s.d], &starts[0][off..off + s.d], "{what}");
            }
        }
    }
    // A mask of the wrong length: the CPU twin's error.
    let s = shapes[0];
    let words = vec![u32::MAX; 3];
    let n_act = s.b * s.t * s.c();
    let (q, lse_n) = (vec![0.5f32; n_act], s.b * s.h * s.t);
    let want = Cpu
        .attention_fwd(
            &mut nan(n_act),
            &mut nan(lse_n),
            &q,
            &q,
            &q,
            Some(MaskRef {
                bits: &words,
                per_head: false,
            }),
            s,
        )
        .unwrap_err()
        .to_string();
    let gq = g.upload(&q).unwrap();
    let gw = g.upload_idx(&words).unwrap();
    let (mut go, mut gl) = (g.zeros(n_act).unwrap(), g.zeros(lse_n).unwrap());
    let got = g
        .attention_fwd(
            &mut go,
            &mut gl,
            &gq,
            &gq,
            &gq,
            Some(MaskRef {
                bits: &gw,
                per_head: false,
            }),
            s,
        )
        .unwrap_err()
        .to_string();
    assert_eq!(got, want);
}

/// The fused attention caches its tile lists by the mask's contents stamp: rewriting the mask
/// in place (`write_idx`) must rebuild them (stale lists of an all-ones mask would skip the
/// per-element test and attend to masked keys), and the same mask reused must give the same
/// bits as the first call.
#[test]
fn gpu_attention_tile_lists_follow_mask_writes() {
    let Some(g) = gpu_ops("gpu_attention_tile_lists_follow_mask_writes") else {
        return;
    };
    let mut rng = Rng::new(81);
    let s = AttnShape {
        b: 2,
        t: 200,
        h: 2,
        d: 64,
    };
    let (n_act, n_rows) = (s.b * s.t * s.c(), s.b * s.h * s.t);
    let q = rand_vec_f32(&mut rng, n_act);
    let k = rand_vec_f32(&mut rng, n_act);
    let v = rand_vec_f32(&mut rng, n_act);
    let (gq, gk, gv) = (
        g.upload(&q).unwrap(),
        g.upload(&k).unwrap(),
        g.upload(&v).unwrap(),
    );
    let ones = mask_words(&mut rng, s.b, 1, s.t, 1.0, &[]);
    let sparse = mask_words(&mut rng, s.b, 1, s.t, 0.1, &[]);
    let mut gw = g.upload_idx(&ones).unwrap();
    let mut first: Option<Vec<f32>> = None;
    for (step, words) in [&ones, &sparse, &sparse, &ones].into_iter().enumerate() {
        if step > 0 {
            g.write_idx(&mut gw, words).unwrap();
        }
        let (mut co, mut cl) = (nan(n_act), nan(n_rows));
        let cm = Some(MaskRef {
            bits: words,
            per_head: false,
        });
        Cpu.attention_fwd(&mut co, &mut cl, &q, &k, &v, cm, s)
            .unwrap();
        let mut go = g.upload(&nan(n_act)).unwrap();
        let mut gl = g.upload(&nan(n_rows)).unwrap();
        let gm = Some(MaskRef {
            bits: &gw,
            per_head: false,
        });
        g.attention_fwd(&mut go, &mut gl, &gq, &gk, &gv, gm, s)
            .unwrap();
        let out = g.download(&go).unwrap();
        assert_close(&format!("step {step}"), &out, &co, F32_TOL);
        match (&first, step) {
            (None, 0) => first = Some(out),
            (Some(f), 3) => assert_eq!(&out, f, "same mask again: same bits"),
            _ => {}
        }
    }
}

#[test]
fn gpu_xent_matches_cpu() {
    let Some(g) = gpu_ops("gpu_xent_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new(9);
    for (n, v) in [(37usize, 50_257usize), (5, 100), (64, 3)] {
        let logits: Vec<f32> = rand_vec_f32(&mut rng, n * v)
            .iter()
            .map(|x| 4.0 * x)
            .collect();
        let targets: Vec<u32> = (0..n)
            .map(|i| {
                if i % 5 == 2 {
                    IGNORE_INDEX
                } else {
                    rng.below(v) as u32
                }
            })
            .collect();
        let (mut cl, mut cz) = (nan(n), nan(n));
        Cpu.xent_fwd(&mut cl, &mut cz, &logits, &targets, n, v)
            .unwrap();
        let (glog, gt) = (g.upload(&logits).unwrap(), g.upload_idx(&targets).unwrap());
        let (mut gl, mut gz) = (g.upload(&nan(n)).unwrap(), g.upload(&nan(n)).unwrap());
        g.xent_fwd(&mut gl, &mut gz, &glog, &gt, n, v).unwrap();
        assert_close(
            &format!("losses n={n} v={v}"),
            &g.download(&gl).unwrap(),
            &cl,
            F32_TOL,
        );
        assert_close(
            &format!("lse n={n} v={v}"),
            &g.download(&gz).unwrap(),
            &cz,
            F32_TOL,
        );

        let scored = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
        let dloss = 1.0 / scored as f32;
        let mut cd = nan(n * v);
        Cpu.xent_bwd(&mut cd, &logits, &cz, &targets, dloss, n, v)
            .unwrap();
        let mut gd = g.upload(&nan(n * v)).unwrap();
        g.xent_bwd(&mut gd, &glog, &gz, &gt, dloss, n, v).unwrap();
        let got = g.download(&gd).unwrap();
        assert_close(&format!("dlogits n={n} v={v}"), &got, &cd, F32_TOL);
        for (r, &t) in targets.iter().enumerate() {
            if t == IGNORE_INDEX {
                assert!(
                    got[r * v..(r + 1) * v].iter().all(|&x| x == 0.0),
                    "ignored row {r}"
                );
            }
        }
    }
    // A target outside the vocabulary: the CPU twin's error.
    let (n, v) = (3, 4);
    let targets = vec![1u32, IGNORE_INDEX, 4];
    let logits = vec![0.25f32; n * v];
    let want = Cpu
        .xent_fwd(&mut nan(n), &mut nan(n), &logits, &targets, n, v)
        .unwrap_err()
        .to_string();
    let (glog, gt) = (g.upload(&logits).unwrap(), g.upload_idx(&targets).unwrap());
    let (mut gl, mut gz) = (g.zeros(n).unwrap(), g.zeros(n).unwrap());
    let got = g
        .xent_fwd(&mut gl, &mut gz, &glog, &gt, n, v)
        .unwrap_err()
        .to_string();
    assert_eq!(got, want);
}

#[test]
fn gpu_adamw_and_sum_squares_match_cpu() {
    let Some(g) = gpu_ops("gpu_adamw_and_sum_squares_match_cpu") else {
        return;
    };
    let mut rng = Rng::new(10);
    let (mut uploaded, mut singles) = (Vec::new(), Vec::new());
    for n in [1usize, 255, 256, 257, 100_003, 3_000_001] {
        let x = rand_vec_f32(&mut rng, n);
        let gx = g.upload(&x).unwrap();
        let want = Cpu.sum_squares(&x).unwrap();
        let got = g.sum_squares(&gx).unwrap();
        assert!(
            ((got - want) / want).abs() < 1e-12,
            "sum_squares n={n}: {got} vs {want}"
        );
        assert_eq!(
            got.to_bits(),
            g.sum_squares(&gx).unwrap().to_bits(),
            "deterministic"
        );
        uploaded.push(gx);
        singles.push(got);
    }
    // All at once (one read-back): the same bits as one at a time.
    let refs: Vec<_> = uploaded.iter().collect();
    let many = g.sum_squares_many(&refs).unwrap();
    assert_eq!(
        many.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        singles.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "sum_squares_many vs sum_squares"
    );
    for with_mask in [false, true] {
        let n = 10_007;
        let (p, grad) = (rand_vec_f32(&mut rng, n), rand_vec_f32(&mut rng, n));
        let m: Vec<f32> = rand_vec_f32(&mut rng, n).iter().map(|x| 0.1 * x).collect();
        let v: Vec<f32> = rand_vec_f32(&mut rng, n)
            .iter()
            .map(|x| 0.01 * x * x)
            .collect();
        let mask = rand_mask(&mut rng, n, 0.8);
        let hp = AdamWStep {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_scale: 0.7,
            t: 3,
        };
        let (mut cp, mut cm, mut cv) = (p.clone(), m.clone(), v.clone());
        Cpu.adamw(
            &mut cp,
            &grad,
            &mut cm,
            &mut cv,
            with_mask.then_some(&mask),
            &hp,
        )
        .unwrap();
        let (mut gp, mut gm, mut gv) = (
            g.upload(&p).unwrap(),
            g.upload(&m).unwrap(),
            g.upload(&v).unwrap(),
        );
        let (gg, gmask) = (g.upload(&grad).unwrap(), g.upload(&mask).unwrap());
        g.adamw(
            &mut gp,
            &gg,
            &mut gm,
            &mut gv,
            with_mask.then_some(&gmask),
            &hp,
        )
        .unwrap();
        assert_close("adamw p", &g.download(&gp).unwrap(), &cp, 1e-6);
        assert_close("adamw m", &g.download(&gm).unwrap(), &cm, 1e-6);
        assert_close("adamw v", &g.download(&gv).unwrap(), &cv, 1e-6);
    }
}

#[test]
fn gpu_memory_accounting_timer_and_oom() {
    let Some(g) = gpu_ops("gpu_memory_accounting_timer_and_oom") else {
        return;
    };
    let before = g.current_bytes();
    let b = g.zeros(1 << 20).unwrap();
    assert_eq!(g.current_bytes(), before + (4 << 20));
    assert!(g.peak_bytes() >= g.current_bytes());
    drop(b);
    assert_eq!(g.current_bytes(), before);
    let (free, total) = g.mem_get_info().unwrap();
    assert!(total > 0 && free <= total);
    let report = g.memory().expect("the CUDA backend reports memory");
    assert_eq!(report.device_total_bytes, Some(total as u64));

    let x = g.upload(&vec![1.5f32; 1 << 22]).unwrap();
    let timer = g.start_timer().unwrap();
    for _ in 0..10 {
        g.sum_squares(&x).unwrap();
    }
    let secs = timer.stop().unwrap();
    assert!(secs > 0.0 && secs < 10.0, "timed {secs} s");

    // More than this GPU has: a clear out-of-memory error naming the op and the bytes asked,
    // never a panic.
    let asked = total / 4 + (1 << 28); // total + 1 GiB
    let e = g
        .zeros(asked)
        .expect_err("more than the device's memory cannot be allocated")
        .to_string();
    println!("{e}");
    assert!(
        e.contains("out of GPU memory") && e.contains("Ops::zeros"),
        "{e}"
    );
    assert!(e.contains(&(4 * asked).to_string()), "{e}");
    // Absurd sizes are an error too (whatever the driver calls it).
    let e = g
        .zeros(1 << 42)
        .expect_err("16 TiB cannot be allocated")
        .to_string();
    assert!(
        e.contains("Ops::zeros") && e.contains(&(4u64 << 42).to_string()),
        "{e}"
    );
    // The backend still works afterwards.
    assert_eq!(
        g.download(&g.upload(&[2.0, 3.0]).unwrap()).unwrap(),
        vec![2.0, 3.0]
    );
}

// ---------------------------------------------------------------------------------------
// Whole model.

fn small() -> GptConfig {
    GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 64,
        ctx: 48,
        vocab: 97,
    }
}

fn batch(rng: &mut Rng, b: usize, t: usize, v: usize) -> (Vec<u32>, Vec<u32>) {
    let seq: Vec<u32> = (0..b * (t + 1)).map(|_| rng.below(v) as u32).collect();
    let mut x = Vec::with_capacity(b * t);
    let mut y = Vec::with_capacity(b * t);
    for bi in 0..b {
        let s = &seq[bi * (t + 1)..(bi + 1) * (t + 1)];
        x.extend_from_slice(&s[..t]);
        y.extend_from_slice(&s[1..]);
    }
    (x, y)
}

#[test]
fn gpu_training_step_matches_cpu() {
    let Some(g) = gpu_ops("gpu_training_step_matches_cpu") else {
        return;
    };
    let cfg = small();
    let mut cpu = Gpt::new(Cpu, cfg, 21).unwrap();
    let mut gpu = Gpt::new(g, cfg, 21).unwrap();
    let mut rng = Rng::new(12);
    let (b, t) = (3, 45); // T not a multiple of 32
    let (x, mut y) = batch(&mut rng, b, t, cfg.vocab);
    y[7] = IGNORE_INDEX;
    // A shared mask with one fully masked row, as ASA masks can produce.
    let words = mask_words(&mut rng, b, 1, t, 0.7, &[(1, 0, 0)]);
    let gwords = gpu.ops.upload_idx(&words).unwrap();
    let cm = Some(MaskRef {
        bits: &words,
        per_head: false,
    });
    let gm = Some(MaskRef {
        bits: &gwords,
        per_head: false,
    });
    let lc = cpu.forward(&x, &y, b, t, cm).unwrap();
    let lg = gpu.forward(&x, &y, b, t, gm).unwrap();
    assert_eq!(lc.count, lg.count);
    let rel = ((lg.mean() - lc.mean()) / lc.mean()).abs();
    assert!(rel < 5e-3, "loss {} vs {}", lg.mean(), lc.mean());
    cpu.zero_grad().unwrap();
    gpu.zero_grad().unwrap();
    cpu.backward(cm).unwrap();
    gpu.backward(gm).unwrap();
    for spec in &cpu.table.specs {
        let (gc, gg) = (cpu.grad(&spec.name).unwrap(), gpu.grad(&spec.name).unwrap());
        assert!(
            gg.iter().all(|v| v.is_finite()),
            "{}: non-finite gradient",
            spec.name
        );
        assert_close(&format!("grad {}", spec.name), &gg, &gc, BF16_TOL);
    }
    let (nc, ng) = (cpu.grad_norm().unwrap(), gpu.grad_norm().unwrap());
    assert!(((ng - nc) / nc).abs() < 1e-2, "grad norm {ng} vs {nc}");
}

#[test]
fn gpu_loss_curve_matches_cpu_over_50_steps() {
    let Some(g) = gpu_ops("gpu_loss_curve_matches_cpu_over_50_steps") else {
        return;
    };
    let cfg = small();
    let mut cpu = Gpt::new(Cpu, cfg, 22).unwrap();
    let mut gpu = Gpt::new(g, cfg, 22).unwrap();
    let opt = AdamWConfig::default();
    let mut rng = Rng::new(13);
    let (b, t) = (4, 48);
    let batches: Vec<_> = (0..5).map(|_| batch(&mut rng, b, t, cfg.vocab)).collect();
    let (mut first, mut worst) = (0.0, 0.0f64);
    let mut last = (0.0, 0.0);
    for step in 1..=50u32 {
        let (x, y) = &batches[step as usize % batches.len()];
        let lc = cpu.forward(x, y, b, t, None).unwrap().mean();
        let lg = gpu.forward(x, y, b, t, None).unwrap().mean();
        assert!(lg.is_finite(), "step {step}: GPU loss {lg}");
        worst = worst.max(((lg - lc) / lc).abs());
        if step == 1 {
            first = lc;
        }
        last = (lc, lg);
        for m in [&mut cpu as &mut dyn Train, &mut gpu as &mut dyn Train] {
            m.train_step(step, &opt);
        }
    }
    println!(
        "loss {first:.4} -> cpu {:.4} / gpu {:.4}; worst relative gap {worst:.2e}",
        last.0, last.1
    );
    assert!(
        last.0 < first,
        "the CPU run did not learn ({first} -> {})",
        last.0
    );
    assert!(
        worst < 2e-2,
        "GPU loss curve drifted from the CPU's by {worst:e}"
    );
}

/// One backward + AdamW step, for either device.
trait Train {
    fn train_step(&mut self, step: u32, opt: &AdamWConfig);
}

impl<O: Ops> Train for Gpt<O> {
    fn train_step(&mut self, step: u32, opt: &AdamWConfig) {
        self.zero_grad().unwrap();
        self.backward(None).unwrap();
        self.step(3e-3, step, opt).unwrap();
    }
}

#[test]
fn gpu_lm_head_xent_matches_cpu() {
    let Some(g) = gpu_ops("gpu_lm_head_xent_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new(19);
    // kernels/lm_head.cu: a large vocabulary with partial row and vocabulary tiles, a small
    // one, and C past one 128-column slice.
    for (n, c, v) in [
        (300usize, 64usize, 33_278usize),
        (37, 32, 153),
        (70, 200, 999),
    ] {
        let x = rand_vec_f32(&mut rng, n * c);
        let w = rand_vec_f32(&mut rng, v * c);
        let targets: Vec<u32> = (0..n)
            .map(|i| {
                if i % 5 == 2 {
                    IGNORE_INDEX
                } else {
                    rng.below(v) as u32
                }
            })
            .collect();
        let dloss = 0.37f32;
        let (mut cl, mut cz, mut cdx, mut cdw) = (nan(n), nan(n), nan(n * c), nan(v * c));
        Cpu.lm_head_xent(
            &mut cl,
            &mut cz,
            Some((&mut cdx, &mut cdw)),
            &x,
            &w,
            &targets,
            dloss,
            n,
            c,
            v,
        )
        .unwrap();
        let (gx, gw, gt) = (
            g.upload(&x).unwrap(),
            g.upload(&w).unwrap(),
            g.upload_idx(&targets).unwrap(),
        );
        let (mut gl, mut gz) = (g.upload(&nan(n)).unwrap(), g.upload(&nan(n)).unwrap());
        let (mut gdx, mut gdw) = (
            g.upload(&nan(n * c)).unwrap(),
            g.upload(&nan(v * c)).unwrap(),
        );
        g.lm_head_xent(
            &mut gl,
            &mut gz,
            Some((&mut gdx, &mut gdw)),
            &gx,
            &gw,
            &gt,
            dloss,
            n,
            c,
            v,
        )
        .unwrap();
        // f32 FMA on both sides, summed in different orders.
        for (name, got, want) in [
            ("losses", g.download(&gl).unwrap(), &cl),
            ("lse", g.download(&gz).unwrap(), &cz),
            ("dx", g.download(&gdx).unwrap(), &cdx),
            ("dweight", g.download(&gdw).unwrap(), &cdw),
        ] {
            assert_close(&format!("{name} n={n} c={c} v={v}"), &got, want, F32_TOL);
        }
    }
}
