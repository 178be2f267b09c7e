//! E4's learnable UPOS tag-pair attention bias: the widening trick against a direct biased
//! attention and finite differences in f64, the model's gradients with the bias on, known
//! answers (a zero bias changes nothing; a huge negative bias blocks a tag pair), the ASA
//! initialisation, and training with the bias resuming bit-identically.

mod common;

use asa_lth::backend::cpu::attention::{attention_bwd, attention_fwd, MaskView};
use asa_lth::backend::cpu::Cpu;
use asa_lth::backend::{AttnShape, MaskRef, Ops, IGNORE_INDEX};
use asa_lth::data::batch::NO_TAG;
use asa_lth::data::CorpusSource;
use asa_lth::ling::compat::{CompatMatrix, NTAGS};
use asa_lth::ling::Upos;
use asa_lth::lth::PrunableGroups;
use asa_lth::mask::BitMask;
use asa_lth::model::tag_bias::{self, TagBiasInit, DEFAULT_INCOMPATIBLE};
use asa_lth::model::{AdamWConfig, Gpt, GptConfig, ParamKind};
use asa_lth::rng::Rng;
use asa_lth::train::checkpoint::Checkpoint;
use asa_lth::train::{self, RunOptions, TrainConfig, TrainResults};
use common::{dot, fd_check, rand_vec, rand_vec_f32, tmpdir};

/// Tags drawn from a few UPOS values and NO_TAG, so tag pairs repeat within a batch.
fn rand_tags(rng: &mut Rng, n: usize) -> Vec<u8> {
    let pool = [0u8, 3, 7, 15, 16, NO_TAG];
    (0..n).map(|_| pool[rng.below(pool.len())]).collect()
}

/// A random mask with the diagonal always allowed (no fully masked rows).
fn rand_mask(rng: &mut Rng, b: usize, t: usize) -> BitMask {
    BitMask::from_fn(b, 1, t, |_, _, i, j| i == j || rng.uniform() < 0.6)
}

fn bias_at(bias: &[f64], h: usize, a: u8, b: u8) -> f64 {
    if (a as usize) < NTAGS && (b as usize) < NTAGS {
        bias[(h * NTAGS + a as usize) * NTAGS + b as usize]
    } else {
        0.0
    }
}

/// Direct f64 reference: `out = softmax(q·kᵀ/√D + B[h][a_i][b_j], causal ∧ mask)·v`.
fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bias: &[f64],
    tags: &[u8],
    mask: &BitMask,
    s: AttnShape,
) -> (Vec<f64>, Vec<f64>) {
    let (c, d) = (s.c(), s.d);
    let mut out = vec![0.0; s.b * s.t * c];
    let mut lse = vec![0.0; s.b * s.h * s.t];
    for b in 0..s.b {
        for h in 0..s.h {
            for i in 0..s.t {
                let qi = &q[(b * s.t + i) * c + h * d..][..d];
                let keys: Vec<usize> = (0..=i).filter(|&j| mask.get(b, 0, i, j)).collect();
                let sc: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        let kj = &k[(b * s.t + j) * c + h * d..][..d];
                        dot(qi, kj) / (d as f64).sqrt()
                            + bias_at(bias, h, tags[b * s.t + i], tags[b * s.t + j])
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|x| (x - m).exp()).sum();
                lse[(b * s.h + h) * s.t + i] = m + z.ln();
                for (&j, &x) in keys.iter().zip(&sc) {
                    let p = (x - m).exp() / z;
                    for e in 0..d {
                        out[(b * s.t + i) * c + h * d + e] += p * v[(b * s.t + j) * c + h * d + e];
                    }
                }
            }
        }
    }
    (out, lse)
}

struct Wide {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    out: Vec<f64>,
    lse: Vec<f64>,
}

/// The model's path in f64: widen, run the unchanged attention op on D + 17, keep the wide
/// tensors for the backward.
fn widened_fwd(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bias: &[f64],
    tags: &[u8],
    mask: &BitMask,
    s: AttnShape,
) -> Wide {
    let w = tag_bias::widened(s);
    let nw = s.b * s.t * w.c();
    let mut x = Wide {
        q: vec![f64::NAN; nw],
        k: vec![f64::NAN; nw],
        v: vec![f64::NAN; nw],
        out: vec![f64::NAN; nw],
        lse: vec![f64::NAN; s.b * s.h * s.t],
    };
    tag_bias::widen_q(&mut x.q, q, bias, tags, s).unwrap();
    tag_bias::widen_k(&mut x.k, k, tags, s).unwrap();
    tag_bias::widen_zero(&mut x.v, v, s).unwrap();
    attention_fwd(
        &mut x.out,
        &mut x.lse,
        &x.q,
        &x.k,
        &x.v,
        Some(MaskView::from(mask)),
        w,
    )
    .unwrap();
    x
}

#[test]
fn widening_equals_direct_biased_attention_f64() {
    let mut rng = Rng::new(1);
    for &(b, t, h, d) in &[(2, 7, 2, 3), (1, 40, 3, 8), (3, 5, 1, 16)] {
        let s = AttnShape { b, t, h, d };
        let n = b * t * s.c();
        let (q, k, v) = (
            rand_vec(&mut rng, n),
            rand_vec(&mut rng, n),
            rand_vec(&mut rng, n),
        );
        let bias = rand_vec(&mut rng, h * NTAGS * NTAGS);
        let tags = rand_tags(&mut rng, b * t);
        let mask = rand_mask(&mut rng, b, t);
        let (out_ref, lse_ref) = reference(&q, &k, &v, &bias, &tags, &mask, s);
        let x = widened_fwd(&q, &k, &v, &bias, &tags, &mask, s);
        let mut out = vec![f64::NAN; n];
        tag_bias::narrow(&mut out, &x.out, 1.0, s).unwrap();
        let wide_tail_max = x
            .out
            .chunks_exact(d + NTAGS)
            .flat_map(|c| &c[d..])
            .fold(0.0f64, |m, &y| m.max(y.abs()));
        assert_eq!(wide_tail_max, 0.0, "out' must be [out, 0]");
        assert!(common::rel_l2(&out, &out_ref) < 1e-12, "{b} {t} {h} {d}");
        assert!(common::rel_l2(&x.lse, &lse_ref) < 1e-12, "{b} {t} {h} {d}");
    }
}

#[test]
fn widened_backward_matches_finite_differences_f64() {
    let mut rng = Rng::new(2);
    for &(b, t, h, d) in &[(2, 7, 2, 3), (1, 9, 1, 5)] {
        let s = AttnShape { b, t, h, d };
        let n = b * t * s.c();
        let (q, k, v) = (
            rand_vec(&mut rng, n),
            rand_vec(&mut rng, n),
            rand_vec(&mut rng, n),
        );
        let bias = rand_vec(&mut rng, h * NTAGS * NTAGS);
        let tags = rand_tags(&mut rng, b * t);
        let mask = rand_mask(&mut rng, b, t);
        let r = rand_vec(&mut rng, n);
        // Analytic, through the model's path.
        let w = tag_bias::widened(s);
        let nw = b * t * w.c();
        let x = widened_fwd(&q, &k, &v, &bias, &tags, &mask, s);
        let mut dout = vec![f64::NAN; nw];
        tag_bias::widen_zero(&mut dout, &r, s).unwrap();
        let (mut dqw, mut dkw, mut dvw) = (vec![0.0; nw], vec![0.0; nw], vec![0.0; nw]);
        attention_bwd(
            &mut dqw,
            &mut dkw,
            &mut dvw,
            &dout,
            &x.q,
            &x.k,
            &x.v,
            &x.out,
            &x.lse,
            Some(MaskView::from(&mask)),
            w,
        )
        .unwrap();
        let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        tag_bias::narrow(&mut dq, &dqw, tag_bias::q_scale(s), s).unwrap();
        tag_bias::narrow(&mut dk, &dkw, 1.0, s).unwrap();
        tag_bias::narrow(&mut dv, &dvw, 1.0, s).unwrap();
        // bias_grad accumulates: start from random values and subtract them again.
        let pre = rand_vec(&mut rng, bias.len());
        let mut db = pre.clone();
        tag_bias::bias_grad(&mut db, &dqw, &tags, s).unwrap();
        db.iter_mut().zip(&pre).for_each(|(g, p)| *g -= p);
        assert!(db.iter().any(|&g| g.abs() > 1e-3), "bias gradient is all 0");
        // Numeric, on the direct reference (independent of the widening).
        let loss = |q: &[f64], k: &[f64], v: &[f64], bias: &[f64]| {
            dot(&reference(q, k, v, bias, &tags, &mask, s).0, &r)
        };
        let (rt, at) = (1e-6, 1e-8);
        fd_check("q", &q, &dq, |x| loss(x, &k, &v, &bias), rt, at);
        fd_check("k", &k, &dk, |x| loss(&q, x, &v, &bias), rt, at);
        fd_check("v", &v, &dv, |x| loss(&q, &k, x, &bias), rt, at);
        fd_check("tag_bias", &bias, &db, |x| loss(&q, &k, &v, x), rt, at);
    }
}

fn tiny() -> GptConfig {
    GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 16,
        ctx: 8,
        vocab: 13,
    }
}

fn batch(rng: &mut Rng, b: usize, t: usize, v: usize) -> (Vec<u32>, Vec<u32>) {
    let x = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let y = (0..b * t).map(|_| rng.below(v) as u32).collect();
    (x, y)
}

/// Model-level check of the wiring with the bias on: f32 central differences on the largest
/// gradient entries of every tensor (tag biases, W_q, W_k and the rest), as tests/model.rs
/// but with an absolute tolerance well below these gradients (~1e-4..1e-3), so a wrong
/// `√(D'/D)` on `dq` (a factor 1.77 here) fails.
#[test]
fn model_gradients_with_tag_bias_match_finite_differences() {
    let cfg = tiny();
    let mut model = Gpt::new(Cpu, cfg, 9).unwrap();
    model
        .enable_tag_bias(TagBiasInit::Asa, DEFAULT_INCOMPATIBLE)
        .unwrap();
    let mut rng = Rng::new(21);
    for spec in model.table.specs.clone() {
        let w = rand_vec_f32(&mut rng, spec.numel());
        let scaled: Vec<f32> = w.iter().map(|x| x * 0.5).collect();
        model.set_param(&spec.name, &scaled).unwrap();
    }
    let (b, t) = (2, 8);
    let (x, mut y) = batch(&mut rng, b, t, cfg.vocab);
    y[3] = IGNORE_INDEX;
    let tags = rand_tags(&mut rng, b * t);
    let mask = rand_mask(&mut rng, b, t);
    let bits = Cpu.upload_idx(mask.words()).unwrap();
    let mask = || {
        Some(MaskRef {
            bits: &bits,
            per_head: false,
        })
    };
    let fwd = |model: &mut Gpt<Cpu>| {
        model.set_tags(&tags).unwrap();
        model.forward(&x, &y, b, t, mask()).unwrap().mean()
    };
    fwd(&mut model);
    model.zero_grad().unwrap();
    model.backward(mask()).unwrap();
    let h = 1e-2f32;
    let mut checked_bias = 0;
    for spec in model.table.specs.clone() {
        let w = model.param(&spec.name).unwrap();
        let g = model.grad(&spec.name).unwrap();
        let mut idx: Vec<usize> = (0..w.len()).collect();
        idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        let take = if spec.kind == ParamKind::TagBias {
            8
        } else {
            3
        };
        for &i in idx.iter().take(take) {
            let mut wp = w.clone();
            wp[i] = w[i] + h;
            model.set_param(&spec.name, &wp).unwrap();
            let lp = fwd(&mut model);
            wp[i] = w[i] - h;
            model.set_param(&spec.name, &wp).unwrap();
            let lm = fwd(&mut model);
            model.set_param(&spec.name, &w).unwrap();
            let num = (lp - lm) / (2.0 * h as f64);
            let ana = g[i] as f64;
            assert!(
                (ana - num).abs() <= 2e-5 + 5e-2 * num.abs(),
                "{}[{i}]: analytic {ana:e} vs numeric {num:e}",
                spec.name
            );
            if spec.kind == ParamKind::TagBias && num.abs() > 1e-3 {
                checked_bias += 1;
            }
        }
    }
    assert!(
        checked_bias >= 8,
        "only {checked_bias} non-trivial bias entries checked"
    );
}

#[test]
fn zero_bias_gives_the_model_without_the_feature() {
    let cfg = tiny();
    let mut plain = Gpt::new(Cpu, cfg, 5).unwrap();
    let mut zero = Gpt::new(Cpu, cfg, 5).unwrap();
    zero.enable_tag_bias(TagBiasInit::Zero, DEFAULT_INCOMPATIBLE)
        .unwrap();
    // The table only gains the bias tensors, appended; every other parameter is identical.
    let n0 = plain.table.specs.len();
    assert_eq!(zero.table.specs[..n0], plain.table.specs[..]);
    let extra: Vec<&str> = zero.table.specs[n0..]
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(extra, ["blocks.0.attn.tag_bias", "blocks.1.attn.tag_bias"]);
    for s in &plain.table.specs {
        assert_eq!(plain.param(&s.name).unwrap(), zero.param(&s.name).unwrap());
    }
    assert_eq!(zero.num_params(), plain.num_params() + 2 * 2 * 17 * 17);

    let mut rng = Rng::new(8);
    let (b, t) = (3, 8);
    let (x, y) = batch(&mut rng, b, t, cfg.vocab);
    let tags = rand_tags(&mut rng, b * t);
    let lp = plain.forward(&x, &y, b, t, None).unwrap();
    zero.set_tags(&tags).unwrap();
    let lz = zero.forward(&x, &y, b, t, None).unwrap();
    assert_eq!(lp.count, lz.count);
    assert!(
        (lp.sum - lz.sum).abs() <= 1e-6 * lp.sum.abs(),
        "{} vs {}",
        lp.sum,
        lz.sum
    );
    for m in [&mut plain, &mut zero] {
        m.zero_grad().unwrap();
        m.backward(None).unwrap();
    }
    for name in [
        "blocks.0.attn.wq",
        "blocks.1.attn.wk",
        "blocks.0.attn.wv",
        "wte",
    ] {
        let a: Vec<f64> = plain
            .grad(name)
            .unwrap()
            .iter()
            .map(|&x| x as f64)
            .collect();
        let z: Vec<f64> = zero.grad(name).unwrap().iter().map(|&x| x as f64).collect();
        assert!(common::rel_l2(&z, &a) < 1e-4, "{name}");
    }
    let gb = zero.grad("blocks.0.attn.tag_bias").unwrap();
    assert!(gb.iter().any(|&g| g != 0.0), "a zero bias still learns");
}

#[test]
fn huge_negative_bias_blocks_a_tag_pair() {
    let cfg = tiny();
    let mut model = Gpt::new(Cpu, cfg, 6).unwrap();
    model
        .enable_tag_bias(TagBiasInit::Zero, DEFAULT_INCOMPATIBLE)
        .unwrap();
    let (noun, det) = (Upos::Noun as u8, Upos::Det as u8);
    let tags: Vec<u8> = vec![det, noun, det, noun, 15, noun, NO_TAG, noun];
    let (b, t) = (1, 8);
    let mut rng = Rng::new(3);
    let (x, y) = batch(&mut rng, b, t, cfg.vocab);
    // Block NOUN → DET in head 1 of layer 0 only.
    let mut bias = vec![0.0f32; cfg.n_head * 17 * 17];
    bias[(17 + noun as usize) * 17 + det as usize] = -1e4;
    model.set_param("blocks.0.attn.tag_bias", &bias).unwrap();
    model.set_tags(&tags).unwrap();
    model.forward(&x, &y, b, t, None).unwrap();
    for layer in 0..cfg.n_layer {
        let cap = model.attention_capture(layer).unwrap();
        assert_eq!(cap.tags, tags);
        for h in 0..cfg.n_head {
            for i in 0..t {
                let total: f64 = (0..=i).map(|j| cap.prob(0, h, i, j)).sum();
                assert!((total - 1.0).abs() < 1e-4, "row sums to {total}");
                for j in 0..=i {
                    let p = cap.prob(0, h, i, j);
                    let blocked = layer == 0 && h == 1 && tags[i] == noun && tags[j] == det;
                    if blocked {
                        assert!(p < 1e-30, "l{layer} h{h} {i}→{j}: {p}");
                    } else {
                        assert!(p > 1e-6, "l{layer} h{h} {i}→{j}: {p}");
                    }
                }
            }
        }
    }
    // The loss moves when the block is lifted.
    let blocked = fwd_tagged(&mut model, &x, &y, &tags, b, t);
    model
        .set_param("blocks.0.attn.tag_bias", &vec![0.0; bias.len()])
        .unwrap();
    let open = fwd_tagged(&mut model, &x, &y, &tags, b, t);
    assert!((blocked - open).abs() > 1e-5, "{blocked} vs {open}");
}

/// Mean loss of one forward with `tags`.
fn fwd_tagged(m: &mut Gpt<Cpu>, x: &[u32], y: &[u32], tags: &[u8], b: usize, t: usize) -> f64 {
    m.set_tags(tags).unwrap();
    m.forward(x, y, b, t, None).unwrap().mean()
}

#[test]
fn asa_init_puts_the_documented_values() {
    let cfg = tiny();
    let compat = CompatMatrix::default_asa();
    for incompatible in [DEFAULT_INCOMPATIBLE, -3.5, 0.0] {
        let mut model = Gpt::new(Cpu, cfg, 1).unwrap();
        model
            .enable_tag_bias(TagBiasInit::Asa, incompatible)
            .unwrap();
        let mut n_incompatible = 0;
        for l in 0..cfg.n_layer {
            let got = model.tag_bias(l).unwrap();
            assert_eq!(got, model.param(&tag_bias::param_name(l)).unwrap());
            assert_eq!(got.len(), cfg.n_head * 17 * 17);
            for h in 0..cfg.n_head {
                for a in Upos::ALL {
                    for b in Upos::ALL {
                        let v = got[(h * 17 + a as usize) * 17 + b as usize];
                        let want = if compat.allows(a, b) {
                            0.0
                        } else {
                            incompatible
                        };
                        assert_eq!(v, want, "l{l} h{h} {a}→{b}");
                        n_incompatible += usize::from(!compat.allows(a, b));
                    }
                }
            }
        }
        // Spot checks of the built-in matrix: NOUN→DET allowed, DET→VERB not, X with all.
        let b0 = model.tag_bias(0).unwrap();
        let at = |a: Upos, b: Upos| b0[a as usize * 17 + b as usize];
        assert_eq!(at(Upos::Noun, Upos::Det), 0.0);
        assert_eq!(at(Upos::Det, Upos::Verb), incompatible);
        assert_eq!(at(Upos::X, Upos::Punct), 0.0);
        assert_eq!(at(Upos::Sym, Upos::X), 0.0);
        assert!(n_incompatible > 100, "{n_incompatible}");
    }
    let mut zero = Gpt::new(Cpu, cfg, 1).unwrap();
    zero.enable_tag_bias(TagBiasInit::Zero, -7.0).unwrap();
    assert!(zero.tag_bias(1).unwrap().iter().all(|&x| x == 0.0));
    // Off adds nothing.
    let mut off = Gpt::new(Cpu, cfg, 1).unwrap();
    let before = off.table.specs.clone();
    off.enable_tag_bias(TagBiasInit::Off, DEFAULT_INCOMPATIBLE)
        .unwrap();
    assert_eq!(off.table.specs, before);
    assert!(!off.tag_bias_enabled());
    assert!(off.tag_bias(0).is_err());
}

#[test]
fn tag_bias_is_neither_decayed_nor_prunable() {
    let cfg = tiny();
    let mut model = Gpt::new(Cpu, cfg, 2).unwrap();
    model
        .enable_tag_bias(TagBiasInit::Asa, DEFAULT_INCOMPATIBLE)
        .unwrap();
    let i = model.table.index("blocks.1.attn.tag_bias").unwrap();
    let spec = &model.table.specs[i];
    assert_eq!(spec.kind, ParamKind::TagBias);
    assert_eq!(spec.shape, [2, 17, 17]);
    assert!(!spec.decayed());
    for g in [
        PrunableGroups::AllLinear,
        PrunableGroups::Attention,
        PrunableGroups::Ffn,
    ] {
        assert!(g
            .tensor_names(&model.table)
            .iter()
            .all(|n| !n.contains("tag_bias")));
    }
    let n = spec.numel();
    let e = model
        .set_prune_mask("blocks.1.attn.tag_bias", Some(&vec![1.0; n]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a Linear weight"), "{e}");
    // No tagged position: zero bias gradient, and with decay on the bias must not move.
    let before = model.tag_bias(0).unwrap();
    let mut rng = Rng::new(4);
    let (b, t) = (2, 8);
    let (x, y) = batch(&mut rng, b, t, cfg.vocab);
    model.set_tags(&vec![NO_TAG; b * t]).unwrap();
    model.forward(&x, &y, b, t, None).unwrap();
    model.zero_grad().unwrap();
    model.backward(None).unwrap();
    let opt = AdamWConfig {
        weight_decay: 0.5,
        ..AdamWConfig::default()
    };
    model.step(1e-2, 1, &opt).unwrap();
    assert_eq!(model.tag_bias(0).unwrap(), before);
    assert_ne!(model.param("blocks.0.attn.wq").unwrap().len(), 0);
}

#[test]
fn misuse_is_a_clear_error() {
    let cfg = tiny();
    let mut model = Gpt::new(Cpu, cfg, 2).unwrap();
    // Bad initial values.
    for bad in [1.0, f32::NAN, f32::NEG_INFINITY] {
        let e = model
            .enable_tag_bias(TagBiasInit::Asa, bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tag_bias_incompatible"), "{e}");
    }
    assert!(!model.tag_bias_enabled());
    let plain_state = model.state().unwrap();
    model.enable_tag_bias(TagBiasInit::Zero, -2.0).unwrap();
    let e = model
        .enable_tag_bias(TagBiasInit::Asa, -2.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already"), "{e}");
    let (b, t) = (1, 4);
    let (x, y) = (vec![1u32; 4], vec![2u32; 4]);
    // Forward without tags, with the wrong number, with a bad tag value.
    let e = model.forward(&x, &y, b, t, None).unwrap_err().to_string();
    assert!(e.contains("set_tags"), "{e}");
    model.set_tags(&[0, 1, 2]).unwrap();
    let e = model.forward(&x, &y, b, t, None).unwrap_err().to_string();
    assert!(e.contains("tags"), "{e}");
    let e = model.set_tags(&[0, 17, 2, 3]).unwrap_err().to_string();
    assert!(e.contains("17") && e.contains("position 1"), "{e}");
    // Tags are consumed by each forward.
    model.set_tags(&[0, 1, NO_TAG, 16]).unwrap();
    model.forward(&x, &y, b, t, None).unwrap();
    assert!(model.forward(&x, &y, b, t, None).is_err());
    // A state with the bias does not load silently into a model without it, nor the reverse.
    let tagged_state = model.state().unwrap();
    let mut plain = Gpt::new(Cpu, cfg, 2).unwrap();
    let e = plain
        .load_state(|k| {
            tagged_state
                .iter()
                .find(|t| t.name == k)
                .map(|t| t.values.clone())
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("enable_tag_bias"), "{e}");
    let e = model
        .load_state(|k| {
            plain_state
                .iter()
                .find(|t| t.name == k)
                .map(|t| t.values.clone())
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("tag_bias"), "{e}");
    // A model without the bias ignores tags.
    plain.set_tags(&[0, 1, 2, 3]).unwrap();
    plain.forward(&x, &y, b, t, None).unwrap();
}

fn small(tag_bias: TagBiasInit) -> TrainConfig {
    TrainConfig {
        corpus: CorpusSource::Synthetic {
            sentences: 300,
            seed: 3,
        },
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        batch: 4,
        seq_len: 24,
        steps: 10,
        warmup: 2,
        eval_every: 5,
        eval_tokens: 256,
        checkpoint_every: 3,
        tag_bias,
        ..TrainConfig::default()
    }
}

fn opts(dir: &std::path::Path, resume: bool, stop_after: Option<u32>) -> RunOptions {
    RunOptions {
        out_dir: dir.to_path_buf(),
        resume,
        progress: false,
        command: "test".into(),
        stop_after,
    }
}

fn losses(r: &TrainResults) -> Vec<(u32, u64)> {
    r.train_curve
        .iter()
        .map(|s| (s.step, s.loss.to_bits()))
        .collect()
}

fn checkpoint_bias(dir: &std::path::Path, cfg: &TrainConfig, vocab: usize) -> Vec<Vec<f32>> {
    let mut m = cfg.new_model(Cpu, vocab).unwrap();
    Checkpoint::open(&dir.join("checkpoint.safetensors"))
        .unwrap()
        .restore(&mut m)
        .unwrap();
    (0..cfg.n_layer).map(|l| m.tag_bias(l).unwrap()).collect()
}

#[test]
fn training_with_asa_bias_resumes_bit_identically() {
    let cfg = small(TagBiasInit::Asa);
    let full_dir = tmpdir("tag-bias", "full");
    let full = train::run(Cpu, &cfg, &opts(&full_dir, false, None)).unwrap();
    assert!(full.finished);
    assert!(full.train_curve.iter().all(|s| s.loss.is_finite()));
    assert_eq!(full.config.tag_bias, TagBiasInit::Asa);
    let vocab = full.model.vocab;
    // Interrupted after 4 steps (checkpoint at 3 and at the stop), then resumed.
    let d = tmpdir("tag-bias", "resumed");
    train::run(Cpu, &cfg, &opts(&d, false, Some(4))).unwrap();
    let resumed = train::run(Cpu, &cfg, &opts(&d, true, None)).unwrap();
    assert_eq!(losses(&resumed), losses(&full));
    assert_eq!(
        resumed.final_valid_perplexity.map(f64::to_bits),
        full.final_valid_perplexity.map(f64::to_bits)
    );
    // The checkpoint carries the bias; it trained away from its initialisation.
    let a = checkpoint_bias(&full_dir, &cfg, vocab);
    let b = checkpoint_bias(&d, &cfg, vocab);
    assert_eq!(a, b);
    let init = TagBiasInit::Asa
        .layer_values(cfg.n_head, DEFAULT_INCOMPATIBLE)
        .unwrap()
        .unwrap();
    assert_ne!(a[0], init);
    // Zero and Asa differ from the first step on; Zero differs from Off once the bias moves.
    let zero = train::run(
        Cpu,
        &small(TagBiasInit::Zero),
        &opts(&tmpdir("tag-bias", "zero"), false, None),
    )
    .unwrap();
    assert_ne!(zero.train_curve[0].loss, full.train_curve[0].loss);
    assert_eq!(
        zero.num_params, full.num_params,
        "Zero and Asa have the same table"
    );
    // Resuming with a different tag_bias setting is refused, naming the field, either way.
    let e = train::run(Cpu, &small(TagBiasInit::Zero), &opts(&d, true, None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("different config") && e.contains("tag_bias"),
        "{e}"
    );
    let e = train::run(Cpu, &small(TagBiasInit::Off), &opts(&d, true, None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("different config") && e.contains("tag_bias"),
        "{e}"
    );
}

#[test]
fn config_field_defaults_to_off_and_old_configs_are_unchanged() {
    let off = TrainConfig::default();
    assert_eq!(off.tag_bias, TagBiasInit::Off);
    assert_eq!(off.tag_bias_incompatible, DEFAULT_INCOMPATIBLE);
    // Off is not serialised at all: configs, results and cell keys of runs without the
    // feature stay byte-identical.
    let json = serde_json::to_string(&off).unwrap();
    assert!(!json.contains("tag_bias"), "{json}");
    let back: TrainConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, off);
    let on = TrainConfig {
        tag_bias: TagBiasInit::Asa,
        tag_bias_incompatible: -1.5,
        ..TrainConfig::default()
    };
    let json = serde_json::to_string(&on).unwrap();
    assert!(
        json.contains(r#""tag_bias":"asa""#) && json.contains(r#""tag_bias_incompatible":-1.5"#),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), on);
    assert!(off
        .differences(&on)
        .iter()
        .any(|d| d.starts_with("tag_bias:")));
    assert!(on
        .differences(&off)
        .iter()
        .any(|d| d.starts_with("tag_bias:")));
    // Validation and parsing.
    let bad = TrainConfig {
        tag_bias_incompatible: 2.0,
        ..on.clone()
    };
    assert!(bad.validate().is_err());
    assert_eq!("zero".parse::<TagBiasInit>().unwrap(), TagBiasInit::Zero);
    assert!("maybe".parse::<TagBiasInit>().is_err());
}

#[test]
fn train_step_refuses_a_model_that_disagrees_with_the_config() {
    let cfg = small(TagBiasInit::Asa);
    let data = train::RunData::load(&cfg).unwrap();
    let plan = train::MaskPlan::new(&cfg, &data.vocab).unwrap();
    let mut rng = train::data_rng(&cfg);
    let mut plain = Gpt::new(Cpu, cfg.model_config(data.vocab.len()), cfg.seed).unwrap();
    let e = train::train_step(&mut plain, &cfg, &plan, &data.train, &mut rng, 1, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tag_bias"), "{e}");
    let mut model = cfg.new_model(Cpu, data.vocab.len()).unwrap();
    let rec = train::train_step(&mut model, &cfg, &plan, &data.train, &mut rng, 1, 1).unwrap();
    assert!(rec.loss.is_finite());
}

/// `tag_bias_lr_scale` multiplies the bias's learning rate only: one AdamW step from the same
/// state moves the bias 10× as far at scale 10 (Adam's first step is ±lr per element), and
/// every other parameter exactly as at scale 1.
#[test]
fn the_tag_bias_has_its_own_learning_rate() {
    let cfg = tiny();
    let mut rng = Rng::new(9);
    let (b, t) = (2, 8);
    let (x, y) = batch(&mut rng, b, t, cfg.vocab);
    let tags = rand_tags(&mut rng, b * t);
    let stepped = |scale: f32| {
        let mut m = Gpt::new(Cpu, cfg, 3).unwrap();
        m.enable_tag_bias(TagBiasInit::Asa, DEFAULT_INCOMPATIBLE)
            .unwrap();
        let before = m.tag_bias(0).unwrap();
        m.set_tags(&tags).unwrap();
        m.forward(&x, &y, b, t, None).unwrap();
        m.zero_grad().unwrap();
        m.backward(None).unwrap();
        let opt = AdamWConfig {
            tag_bias_lr_scale: scale,
            ..AdamWConfig::default()
        };
        m.step(1e-3, 1, &opt).unwrap();
        let delta: Vec<f64> = m
            .tag_bias(0)
            .unwrap()
            .iter()
            .zip(&before)
            .map(|(a, b0)| (a - b0) as f64)
            .collect();
        (delta, m.param("blocks.0.attn.wq").unwrap())
    };
    let (d1, wq1) = stepped(1.0);
    let (d10, wq10) = stepped(10.0);
    assert_eq!(wq1, wq10, "other parameters must not see the scale");
    let moved: Vec<(f64, f64)> = d1
        .iter()
        .zip(&d10)
        .filter(|(a, _)| a.abs() > 1e-6)
        .map(|(&a, &b)| (a, b))
        .collect();
    assert!(
        moved.len() > 10,
        "the bias must get gradient on tagged pairs"
    );
    for (a, b) in moved {
        assert!((b / a - 10.0).abs() < 1e-2, "{b} vs 10 × {a}");
    }
    // Left out of a config at 1, kept otherwise.
    let json = serde_json::to_string(&AdamWConfig::default()).unwrap();
    assert!(!json.contains("tag_bias_lr_scale"), "{json}");
}
