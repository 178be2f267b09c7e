//! Every instruction-set level this CPU has (portable, AVX2, AVX-512) computes the same
//! thing: the f32 GEMM at each level against an f64 reference over shapes with tails and
//! transposed strides, the vectorised elementwise ops and the masked attention forward and
//! backward against f64, and a 50-step training curve at each level against the best
//! level's (rounding apart). CI runs the whole suite a
//! second time with `ASA_LTH_ISA=avx2` where the machine has AVX-512, so each path is covered.

mod common;

use asa_lth::backend::cpu::attention::{attention_bwd, attention_fwd, MaskView};
use asa_lth::backend::cpu::isa::{self, with_level, Isa};
use asa_lth::backend::cpu::{gelu, matmul, xent, Cpu};
use asa_lth::backend::AttnShape;
use asa_lth::data::CorpusSource;
use asa_lth::mask::BitMask;
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

/// Dense f64 masked causal attention, `(B, T, H·D)` layout: `(out, lse, dq, dk, dv)` for the
/// upstream gradient `dout`. A row with no allowed key gives `out = 0`, `lse = +∞` and no
/// gradient.
#[allow(clippy::type_complexity)]
fn attention_ref(
    s: AttnShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dout: &[f64],
    mask: Option<&BitMask>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let AttnShape { b: nb, t, h: nh, d } = s;
    let c = nh * d;
    let scale = 1.0 / (d as f64).sqrt();
    let n = nb * t * c;
    let (mut out, mut lse) = (vec![0.0; n], vec![f64::INFINITY; nb * nh * t]);
    let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let at = |b: usize, i: usize, h: usize| (b * t + i) * c + h * d;
    for b in 0..nb {
        for h in 0..nh {
            for i in 0..t {
                let keys: Vec<usize> = (0..=i)
                    .filter(|&j| mask.is_none_or(|m| m.get(b, h.min(m.heads() - 1), i, j)))
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let qi = at(b, i, h);
                let sc: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        let kj = at(b, j, h);
                        scale * (0..d).map(|x| q[qi + x] * k[kj + x]).sum::<f64>()
                    })
                    .collect();
                let m = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let l: f64 = sc.iter().map(|&x| (x - m).exp()).sum();
                lse[(b * nh + h) * t + i] = m + l.ln();
                let p: Vec<f64> = sc.iter().map(|&x| (x - m).exp() / l).collect();
                for (&j, &pj) in keys.iter().zip(&p) {
                    let vj = at(b, j, h);
                    for x in 0..d {
                        out[qi + x] += pj * v[vj + x];
                        dv[vj + x] += pj * dout[qi + x];
                    }
                }
                let di: f64 = (0..d).map(|x| dout[qi + x] * out[qi + x]).sum();
                for (&j, &pj) in keys.iter().zip(&p) {
                    let (kj, vj) = (at(b, j, h), at(b, j, h));
                    let dp: f64 = (0..d).map(|x| dout[qi + x] * v[vj + x]).sum();
                    let ds = scale * pj * (dp - di);
                    for x in 0..d {
                        dq[qi + x] += ds * k[kj + x];
                        dk[kj + x] += ds * q[qi + x];
                    }
                }
            }
        }
    }
    (out, lse, dq, dk, dv)
}

/// The CPU attention forward and backward at every level against the f64 reference, on
/// random non-zero inputs with partial masks (one fully masked row) and T not a multiple of
/// the 64-row tile; head dims with and without a 16-column tail beyond the 32-wide AVX-512
/// blocks. AVX2 and AVX-512 must also agree bitwise: they sum every product in the same
/// order (the wider kernels only change the vector width), which this holds them to.
#[test]
fn attention_matches_f64_at_every_level() {
    let _g = LEVEL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng::new(14);
    for (b, t, h, d, mask_heads, density) in [
        (2, 100, 2, 40, 2, 0.5),
        (1, 130, 3, 16, 1, 0.3),
        (1, 70, 1, 64, 0, 1.0),
    ] {
        let s = AttnShape { b, t, h, d };
        let n = b * t * h * d;
        let (q, k, v, dout) = (
            rand_vec(&mut rng, n),
            rand_vec(&mut rng, n),
            rand_vec(&mut rng, n),
            rand_vec(&mut rng, n),
        );
        let mask = (mask_heads > 0).then(|| {
            let mut m = BitMask::from_fn(b, mask_heads, t, |_, _, _, _| rng.bernoulli(density));
            for j in 0..t {
                m.set(0, 0, 5, j, false);
            }
            m
        });
        let view = mask.as_ref().map(MaskView::from);
        let (wo, wl, wq, wk, wv) = attention_ref(s, &q, &k, &v, &dout, mask.as_ref());
        let f = |a: &[f64]| a.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let up = |a: &[f32]| a.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let (q32, k32, v32, do32) = (f(&q), f(&k), f(&v), f(&dout));
        let mut results: Vec<(Isa, [Vec<f32>; 5])> = Vec::new();
        for level in Isa::available() {
            let got = with_level(level, || {
                let mut out = vec![f32::NAN; n];
                let mut lse = vec![f32::NAN; b * h * t];
                attention_fwd(&mut out, &mut lse, &q32, &k32, &v32, view, s).unwrap();
                let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
                attention_bwd(
                    &mut dq, &mut dk, &mut dv, &do32, &q32, &k32, &v32, &out, &lse, view, s,
                )
                .unwrap();
                [out, lse, dq, dk, dv]
            });
            let ctx = format!("{level} B{b} T{t} H{h} D{d} mask heads {mask_heads}");
            for (l, w) in got[1].iter().zip(&wl) {
                if w.is_infinite() {
                    assert_eq!(*l as f64, *w, "lse {ctx}");
                } else {
                    assert!((*l as f64 - w).abs() < 1e-5 * (1.0 + w.abs()), "lse {ctx}");
                }
            }
            for (name, g, w) in [
                ("out", &got[0], &wo),
                ("dq", &got[2], &wq),
                ("dk", &got[3], &wk),
                ("dv", &got[4], &wv),
            ] {
                let e = rel_l2(&up(g), w);
                assert!(e < 1e-5, "{name} {ctx}: relative error {e:.2e}");
            }
            results.push((level, got));
        }
        let by = |l: Isa| results.iter().find(|r| r.0 == l).map(|r| &r.1);
        if let (Some(a), Some(w)) = (by(Isa::Avx2), by(Isa::Avx512)) {
            for (i, (x, y)) in a.iter().zip(w).enumerate() {
                let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same,
                    "AVX2 vs AVX-512 output {i}, B{b} T{t} H{h} D{d}: not bitwise equal"
                );
            }
        }
    }
}
