//! The model written against Ops, on the CPU backend: overfitting a fixed batch, prune masks
//! surviving AdamW, gradients against finite differences, and bad configs as clear errors.

mod common;

use asa_lth::backend::cpu::Cpu;
use asa_lth::backend::{MaskRef, Ops, IGNORE_INDEX};
use asa_lth::model::{AdamWConfig, Gpt, GptConfig};
use asa_lth::rng::Rng;

fn tiny() -> GptConfig {
    GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        ctx: 16,
        vocab: 37,
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
fn tiny_model_overfits_a_fixed_batch() {
    let cfg = tiny();
    let mut model = Gpt::new(Cpu, cfg, 7).unwrap();
    let mut rng = Rng::new(11);
    let (b, t) = (4, 16);
    let (x, y) = batch(&mut rng, b, t, cfg.vocab);
    let opt = AdamWConfig {
        weight_decay: 0.0,
        ..AdamWConfig::default()
    };
    let first = model.forward(&x, &y, b, t, None).unwrap().mean();
    assert!(
        (first - (cfg.vocab as f64).ln()).abs() < 0.3,
        "initial loss {first} should be near ln(V)"
    );
    let mut last = first;
    for step in 1..=300 {
        let loss = model.forward(&x, &y, b, t, None).unwrap();
        model.zero_grad().unwrap();
        model.backward(None).unwrap();
        model.step(3e-3, step, &opt).unwrap();
        last = loss.mean();
        if last < first / 10.0 {
            break;
        }
    }
    assert!(last < first / 10.0, "loss fell only from {first} to {last}");
}

#[test]
fn pruned_weights_stay_exactly_zero_through_adamw() {
    let cfg = tiny();
    let mut model = Gpt::new(Cpu, cfg, 3).unwrap();
    let mut rng = Rng::new(5);
    let names = [
        "blocks.0.attn.wq",
        "blocks.1.mlp.w_fc",
        "blocks.1.mlp.w_proj",
    ];
    let mut masks = Vec::new();
    for name in names {
        let n = model.param(name).unwrap().len();
        let m: Vec<f32> = (0..n)
            .map(|_| if rng.bernoulli(0.6) { 0.0 } else { 1.0 })
            .collect();
        model.set_prune_mask(name, Some(&m)).unwrap();
        masks.push(m);
    }
    let before: Vec<Vec<f32>> = names.iter().map(|n| model.param(n).unwrap()).collect();
    let (b, t) = (2, 16);
    let opt = AdamWConfig::default(); // weight decay on, clipping on
    for step in 1..=60 {
        let (x, y) = batch(&mut rng, b, t, cfg.vocab);
        model.forward(&x, &y, b, t, None).unwrap();
        model.zero_grad().unwrap();
        model.backward(None).unwrap();
        model.step(1e-2, step, &opt).unwrap();
    }
    for ((name, m), w0) in names.iter().zip(&masks).zip(&before) {
        let w = model.param(name).unwrap();
        let g = model.grad(name).unwrap();
        let mut moved = 0;
        for i in 0..w.len() {
            if m[i] == 0.0 {
                assert_eq!(w[i].to_bits(), 0, "{name}[{i}] pruned but = {}", w[i]);
                assert_eq!(g[i], 0.0, "{name}[{i}] pruned but has gradient {}", g[i]);
            } else if w[i] != w0[i] {
                moved += 1;
            }
        }
        let kept = m.iter().filter(|&&k| k == 1.0).count();
        assert!(
            moved * 10 > kept * 9,
            "{name}: only {moved}/{kept} kept weights trained"
        );
    }
}

/// Model-level check of the backward wiring: f32 central differences on the largest
/// gradient entries of every tensor (loose tolerance, f32 forward).
#[test]
fn model_gradients_match_finite_differences() {
    let cfg = GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 16,
        ctx: 8,
        vocab: 13,
    };
    let mut model = Gpt::new(Cpu, cfg, 9).unwrap();
    // Larger weights than the GPT-2 init so every path carries signal.
    let mut rng = Rng::new(21);
    for spec in model.table.specs.clone() {
        let n = spec.numel();
        let w = common::rand_vec_f32(&mut rng, n);
        let scaled: Vec<f32> = w.iter().map(|x| x * 0.5).collect();
        model.set_param(&spec.name, &scaled).unwrap();
    }
    let (b, t) = (2, 8);
    let (x, mut y) = batch(&mut rng, b, t, cfg.vocab);
    y[3] = IGNORE_INDEX;
    // A random shared mask (causality is added by the op).
    let words = t.div_ceil(32);
    let bits: Vec<u32> = (0..b * t * words)
        .map(|_| rng.next_u64() as u32 | 1)
        .collect();
    let bits = Cpu.upload_idx(&bits).unwrap();
    let mask = || {
        Some(MaskRef {
            bits: &bits,
            per_head: false,
        })
    };
    // A training forward forms the head's gradients with the loss; a plain forward leaves
    // them to the backward. Both give the same bits.
    let lt = model.forward_train(&x, &y, b, t, mask()).unwrap();
    model.zero_grad().unwrap();
    model.backward(mask()).unwrap();
    let eager: Vec<Vec<f32>> = model
        .table
        .specs
        .clone()
        .iter()
        .map(|s| model.grad(&s.name).unwrap())
        .collect();
    let lp = model.forward(&x, &y, b, t, mask()).unwrap();
    assert_eq!(lt.sum.to_bits(), lp.sum.to_bits());
    model.zero_grad().unwrap();
    model.backward(mask()).unwrap();
    for (spec, e) in model.table.specs.clone().iter().zip(&eager) {
        assert_eq!(
            &model.grad(&spec.name).unwrap(),
            e,
            "{}: forward_train vs forward",
            spec.name
        );
    }
    let h = 1e-2f32;
    for spec in model.table.specs.clone() {
        let w = model.param(&spec.name).unwrap();
        let g = model.grad(&spec.name).unwrap();
        // The three largest-|g| coordinates.
        let mut idx: Vec<usize> = (0..w.len()).collect();
        idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        for &i in idx.iter().take(3) {
            let mut wp = w.clone();
            wp[i] = w[i] + h;
            model.set_param(&spec.name, &wp).unwrap();
            let lp = model.forward(&x, &y, b, t, mask()).unwrap().mean();
            wp[i] = w[i] - h;
            model.set_param(&spec.name, &wp).unwrap();
            let lm = model.forward(&x, &y, b, t, mask()).unwrap().mean();
            model.set_param(&spec.name, &w).unwrap();
            let num = (lp - lm) / (2.0 * h as f64);
            let ana = g[i] as f64;
            assert!(
                (ana - num).abs() <= 2e-3 + 2e-2 * num.abs(),
                "{}[{i}]: analytic {ana:e} vs numeric {num:e}",
                spec.name
            );
        }
    }
}

#[test]
fn bad_configs_are_clear_errors() {
    let base = tiny();
    let cases = [
        (GptConfig { n_head: 3, ..base }, "does not divide d_model"),
        (GptConfig { n_layer: 0, ..base }, "n_layer must be positive"),
        (GptConfig { vocab: 0, ..base }, "vocab must be positive"),
        (GptConfig { d_model: 0, ..base }, "d_model must be positive"),
    ];
    for (cfg, want) in cases {
        let err = Gpt::new(Cpu, cfg, 0)
            .err()
            .expect("config must be rejected");
        assert!(err.to_string().contains(want), "{cfg:?}: {err}");
    }
    let mut model = Gpt::new(Cpu, base, 0).unwrap();
    // Longer than the context.
    let t = base.ctx + 1;
    let err = model
        .forward(&vec![0; t], &vec![0; t], 1, t, None)
        .unwrap_err();
    assert!(
        err.to_string().contains("exceeds the model context"),
        "{err}"
    );
    // Token ids outside the vocabulary.
    let err = model.forward(&[99; 4], &[0; 4], 1, 4, None).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    // A mask built for another T.
    // b = 2, t = 16 needs 2·16 rows of one word; this one was built for t = 8.
    let wrong = Cpu.upload_idx(&[u32::MAX; 2 * 8]).unwrap();
    let err = model
        .forward(
            &[1; 32],
            &[1; 32],
            2,
            16,
            Some(MaskRef {
                bits: &wrong,
                per_head: false,
            }),
        )
        .unwrap_err();
    assert!(err.to_string().contains("mask"), "{err}");
    // Prune masks only on Linear weights, of the right length and 0/1.
    assert!(model
        .set_prune_mask("ln_f.weight", Some(&[1.0; 32]))
        .is_err());
    assert!(model
        .set_prune_mask("blocks.0.attn.wq", Some(&[1.0; 3]))
        .is_err());
    let n = base.d_model * base.d_model;
    let err = model
        .set_prune_mask("blocks.0.attn.wq", Some(&vec![0.5; n]))
        .unwrap_err();
    assert!(err.to_string().contains("expected 0 or 1"), "{err}");
    assert!(model.param("no.such.param").is_err());
    // backward before forward
    let mut fresh = Gpt::new(Cpu, base, 0).unwrap();
    assert!(fresh.backward(None).is_err());
}

/// The FFN forward from 2:4-compressed weights equals the dense forward of the same model
/// with the 2:4 masks applied; the compressed forward refuses a backward.
#[test]
fn ffn24_forward_matches_the_dense_forward_of_the_projected_weights() {
    let cfg = GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        ctx: 16,
        vocab: 37,
    };
    let mut model = Gpt::new(Cpu, cfg, 4).unwrap();
    let mut rng = Rng::new(8);
    // An existing prune mask on one FFN weight must survive the projection.
    let n = model.param("blocks.0.mlp.w_fc").unwrap().len();
    let old: Vec<f32> = (0..n)
        .map(|_| if rng.bernoulli(0.3) { 0.0 } else { 1.0 })
        .collect();
    model
        .set_prune_mask("blocks.0.mlp.w_fc", Some(&old))
        .unwrap();
    let (b, t) = (3, 16);
    let (x, y) = batch(&mut rng, b, t, cfg.vocab);
    let dense_before = model.forward(&x, &y, b, t, None).unwrap();
    model.enable_ffn24().unwrap();
    assert!(model.ffn24_enabled());
    let sparse = model.forward(&x, &y, b, t, None).unwrap();
    for name in ["blocks.0.mlp.w_fc", "blocks.1.mlp.w_proj"] {
        let w = model.param(name).unwrap();
        for (gi, g) in w.chunks_exact(4).enumerate() {
            let nz = g.iter().filter(|v| **v != 0.0).count();
            assert!(nz <= 2, "{name} group {gi} keeps {nz}");
        }
    }
    let w_fc = model.param("blocks.0.mlp.w_fc").unwrap();
    assert!(w_fc.iter().zip(&old).all(|(w, m)| *m != 0.0 || *w == 0.0));
    model.disable_ffn24();
    let dense_after = model.forward(&x, &y, b, t, None).unwrap();
    let rel = (sparse.sum - dense_after.sum).abs() / dense_after.sum;
    assert!(
        rel < 1e-5,
        "compressed {} vs dense-projected {}",
        sparse.sum,
        dense_after.sum
    );
    assert_ne!(
        dense_before.sum, dense_after.sum,
        "the projection must change the model"
    );
    model.enable_ffn24().unwrap();
    // Suspending the compressed weights runs the dense path; resuming them runs the compressed
    // one again, bit for bit, without compressing again (interleaved timing relies on it).
    let held = model.suspend_ffn24().expect("enabled");
    assert!(!model.ffn24_enabled());
    let suspended = model.forward(&x, &y, b, t, None).unwrap();
    assert_eq!(suspended.sum.to_bits(), dense_after.sum.to_bits());
    model.resume_ffn24(held);
    assert!(model.ffn24_enabled());
    let resumed = model.forward(&x, &y, b, t, None).unwrap();
    assert_eq!(resumed.sum.to_bits(), sparse.sum.to_bits());
    let e = model.backward(None).unwrap_err().to_string();
    assert!(e.contains("inference-only"), "{e}");
}
