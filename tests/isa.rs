//! Every instruction-set level this CPU has (portable, AVX2, AVX-512) computes the same
//! thing: the f32 GEMM at each level against an f64 reference over shapes with tails and
//! transposed strides, the vectorised elementwise ops against f64, and a 50-step training
//! curve at each level against the best level's (rounding apart). CI runs the whole suite a
//! second time with `ASA_LTH_ISA=avx2` where the machine has AVX-512, so each path is covered.

mod common;

use asa_lth::backend::cpu::isa::{self, with_level, Isa};
use asa_lth::backend::cpu::{gelu, matmul, xent, Cpu};
use asa_lth::data::CorpusSource;
use asa_lth::rng::Rng;
use asa_lth::train::{self, RunOptions, TrainConfig};
use common::{rand_vec, rel_l2};
use std::sync::Mutex;

/// The level is process-wide: the tests of this file take turns.
static LEVEL: Mutex<()> = Mutex::new(());

#[allow(clippy::too_many_arguments)]
fn gemm_ref(
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    a_rs: usize,
    a_cs: usize,
    b: &[f64],
    b_rs: usize,
    b_cs: usize,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| a[i * a_rs + p * a_cs] * b[p * b_rs + j * b_cs])
                .sum();
        }
    }
    c
}

#[test]
fn sgemm_matches_f64_at_every_level() {
    let _g = LEVEL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng::new(11);
    let levels = Isa::available();
    assert!(levels.contains(&Isa::Portable));
    for &(m, n, k) in &[
        (1, 1, 1),
        (7, 5, 3),
        (17, 33, 65),
        (64, 48, 128),
        (129, 67, 257),
        (300, 200, 96),
        // Beyond every cache block: k > 384 (two depth blocks), n > 480, m > 4080.
        (50, 1000, 800),
        // A read in place (n within one B block) over three depth blocks, a partial panel.
        (30, 70, 900),
        (4100, 40, 20),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = rand_vec(&mut rng, m * k);
            let b = rand_vec(&mut rng, k * n);
            let acc = rand_vec(&mut rng, m * n);
            // Row-major m×k, or its transpose stored k×m.
            let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
            let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
            let mut want = gemm_ref(m, n, k, &a, a_rs, a_cs, &b, b_rs, b_cs);
            for (w, c) in want.iter_mut().zip(&acc) {
                *w += c;
            }
            let af: Vec<f32> = a.iter().map(|&x| x as f32).collect();
            let bf: Vec<f32> = b.iter().map(|&x| x as f32).collect();
            type Gemm = fn(
                Isa,
                usize,
                usize,
                usize,
                &mut [f32],
                bool,
                &[f32],
                isize,
                isize,
                &[f32],
                isize,
                isize,
            );
            let impls: [(&str, Gemm); 2] = [
                ("asa-lth sgemm", matmul::sgemm_at),
                ("gemm crate", matmul::sgemm_crate_at),
            ];
            for &level in &levels {
                for (name, gemm) in impls {
                    // Poisoned where overwritten, the accumulator where accumulated.
                    let mut over = vec![f32::NAN; m * n];
                    gemm(
                        level,
                        m,
                        n,
                        k,
                        &mut over,
                        false,
                        &af,
                        a_rs as isize,
                        a_cs as isize,
                        &bf,
                        b_rs as isize,
                        b_cs as isize,
                    );
                    let mut accd: Vec<f32> = acc.iter().map(|&x| x as f32).collect();
                    gemm(
                        level,
                        m,
                        n,
                        k,
                        &mut accd,
                        true,
                        &af,
                        a_rs as isize,
                        a_cs as isize,
                        &bf,
                        b_rs as isize,
                        b_cs as isize,
                    );
                    let over64: Vec<f64> = over.iter().map(|&x| x as f64).collect();
                    let acc64: Vec<f64> = accd.iter().map(|&x| x as f64).collect();
                    let plain: Vec<f64> = want.iter().zip(&acc).map(|(w, c)| w - c).collect();
                    let e1 = rel_l2(&over64, &plain);
                    let e2 = rel_l2(&acc64, &want);
                    let tol = 2e-6 * (k as f64).sqrt().max(1.0);
                    assert!(
                        e1 < tol && e2 < tol,
                        "{name} at {level}, m{m} n{n} k{k} ta{ta} tb{tb}: {e1:.2e} {e2:.2e}"
                    );
                }
            }
        }
    }
}

#[test]
fn elementwise_ops_match_f64_at_every_level() {
    let _g = LEVEL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng::new(12);
    let (n, v) = (37, 1001);
    let x = rand_vec(&mut rng, n * v)
        .into_iter()
        .map(|x| 4.0 * x)
        .collect::<Vec<f64>>();
    let dout = rand_vec(&mut rng, n * v);
    let targets: Vec<u32> = (0..n).map(|i| ((i * 7919) % v) as u32).collect();
    let x32: Vec<f32> = x.iter().map(|&a| a as f32).collect();
    let d32: Vec<f32> = dout.iter().map(|&a| a as f32).collect();
    let mut g64 = vec![0.0f64; n * v];
    gelu::gelu_fwd(&mut g64, &x).unwrap();
    // gelu_bwd overwrites: start from NaN.
    let mut gb64 = vec![f64::NAN; n * v];
    gelu::gelu_bwd(&mut gb64, &x, &dout).unwrap();
    let (mut l64, mut z64) = (vec![0.0f64; n], vec![0.0f64; n]);
    xent::xent_fwd(&mut l64, &mut z64, &x, &targets, n, v).unwrap();
    let mut xb64 = vec![0.0f64; n * v];
    xent::xent_bwd(&mut xb64, &x, &z64, &targets, 0.5, n, v).unwrap();
    let up = |a: &[f32]| a.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    for level in Isa::available() {
        with_level(level, || {
            assert_eq!(isa::active(), level);
            let mut g = vec![f32::NAN; n * v];
            gelu::gelu_fwd(&mut g, &x32).unwrap();
            let mut gb = vec![f32::NAN; n * v];
            gelu::gelu_bwd(&mut gb, &x32, &d32).unwrap();
            let (mut l, mut z) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            xent::xent_fwd(&mut l, &mut z, &x32, &targets, n, v).unwrap();
            let mut xb = vec![f32::NAN; n * v];
            xent::xent_bwd(&mut xb, &x32, &z, &targets, 0.5, n, v).unwrap();
            for (name, got, want) in [
                ("gelu_fwd", up(&g), &g64),
                ("gelu_bwd", up(&gb), &gb64),
                ("xent loss", up(&l), &l64),
                ("xent lse", up(&z), &z64),
                ("xent_bwd", up(&xb), &xb64),
            ] {
                let e = rel_l2(&got, want);
                assert!(e < 1e-5, "{name} at {level}: relative error {e:.2e}");
            }
        });
    }
}

/// 50 steps at each level give the best level's curve up to rounding: the levels differ in
/// summation order only, so the curves agree closely but are not promised bitwise.
#[test]
fn training_curve_agrees_across_levels() {
    let _g = LEVEL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = TrainConfig {
        corpus: CorpusSource::Synthetic {
            sentences: 300,
            seed: 4,
        },
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        batch: 4,
        seq_len: 32,
        steps: 50,
        warmup: 5,
        eval_every: 0,
        eval_tokens: 256,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let run = |level: Isa| {
        with_level(level, || {
            let dir = common::tmpdir("isa", level.name());
            let opts = RunOptions {
                out_dir: dir,
                resume: false,
                progress: false,
                command: "test".into(),
                stop_after: None,
            };
            train::run(Cpu, &cfg, &opts)
                .unwrap()
                .train_curve
                .iter()
                .map(|s| s.loss)
                .collect::<Vec<f64>>()
        })
    };
    let best = isa::detected();
    let reference = run(best);
    assert_eq!(reference.len(), 50);
    assert!(reference.iter().all(|l| l.is_finite()));
    assert!(
        reference[49] < reference[0] - 0.3,
        "the model learns: {reference:?}"
    );
    for level in Isa::available().into_iter().filter(|&l| l != best) {
        let curve = run(level);
        let worst = curve
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        // Rounding differences grow over 50 steps of Adam but stay far below the loss's
        // own step-to-step change.
        assert!(
            worst < 2e-3,
            "{level} vs {best}: loss differs by {worst:.2e}"
        );
    }
}

/// The Linear forward with a bias (the bias is the f32 GEMM's epilogue) and a prune mask, at
/// every level, against f64 — shapes with edge tiles and an empty reduction.
#[test]
fn matmul_forward_with_bias_at_every_level() {
    use asa_lth::backend::MatmulShape;
    let _g = LEVEL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng::new(13);
    for (n, k, oc) in [(37, 19, 45), (100, 128, 512), (5, 0, 7)] {
        let x = rand_vec(&mut rng, n * k);
        let w = rand_vec(&mut rng, oc * k);
        let b = rand_vec(&mut rng, oc);
        let mask: Vec<f64> = (0..oc * k).map(|i| (i % 3 != 0) as u8 as f64).collect();
        let s = MatmulShape { n, k, oc };
        let mut want = vec![f64::NAN; n * oc];
        matmul::matmul_fwd(&mut want, &x, &w, Some(&b), Some(&mask), s).unwrap();
        let f = |a: &[f64]| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        for level in Isa::available() {
            with_level(level, || {
                let mut got = vec![f32::NAN; n * oc];
                matmul::matmul_fwd(&mut got, &f(&x), &f(&w), Some(&f(&b)), Some(&f(&mask)), s)
                    .unwrap();
                let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
                let e = rel_l2(&got, &want);
                assert!(e < 1e-5, "{level} n{n} k{k} oc{oc}: {e:.2e}");
            });
        }
    }
}
