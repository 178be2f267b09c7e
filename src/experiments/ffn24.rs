//! E5's deployment half: project a trained model's FFN weights to 2:4 by magnitude, fine-tune
//! with the 2:4 masks held (one-shot prune then retrain, as NVIDIA's ASP recipe does), and
//! compare perplexity, inference throughput and FFN weight memory of the compressed 2:4 path
//! with the dense path on the same device.

use crate::backend::{MaskRef, Ops, IGNORE_INDEX};
use crate::data::{EvalWindows, TokenStream};
use crate::model::Gpt;
use crate::rng::Rng;
use crate::train::{self, MaskPlan, RunData, TrainConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// E5's 2:4 settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ffn24Config {
    /// Fine-tuning steps with the 2:4 masks held.
    pub finetune_steps: u32,
    /// Fine-tuning learning rate as a fraction of the training peak.
    pub lr_frac: f32,
    /// Timed repeats of the inference pass (the median is reported).
    pub repeats: usize,
    /// Scored tokens per timed inference pass.
    pub timed_tokens: usize,
}

impl Default for Ffn24Config {
    fn default() -> Self {
        Ffn24Config {
            finetune_steps: 200,
            lr_frac: 0.1,
            repeats: 5,
            timed_tokens: 16_384,
        }
    }
}

/// What the 2:4 projection did to one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ffn24Result {
    pub dense_valid_ppl: f64,
    /// Right after the projection, before fine-tuning (dense path with masked weights).
    pub oneshot_valid_ppl: f64,
    /// After fine-tuning, dense path with the 2:4 masks applied.
    pub finetuned_valid_ppl: f64,
    pub finetuned_test_ppl: f64,
    /// After fine-tuning, through the compressed 2:4 GEMM (must equal the masked dense path
    /// up to summation order).
    pub compressed_valid_ppl: f64,
    /// Inference tokens/s, median of the repeats: forward-only and interleaved with the
    /// other path (see [`forward_rates`]) where `interleaved`, else (cells from before it)
    /// one evaluation pass per path, mask building and loss included.
    pub dense_tokens_per_sec: f64,
    pub compressed_tokens_per_sec: f64,
    /// FFN weight bytes: dense f32, and 2:4-compressed (values + metadata).
    pub ffn_dense_bytes: u64,
    pub ffn_compressed_bytes: u64,
    /// Device memory held by the backend, if it accounts it (dense, then compressed path).
    pub device_peak_bytes: Option<(u64, u64)>,
    /// The control for the fine-tune: the dense model trained the same extra steps on the
    /// same batches at the same rate, without the 2:4 masks (None in cells from before it).
    #[serde(default)]
    pub dense_extra_valid_ppl: Option<f64>,
    #[serde(default)]
    pub dense_extra_test_ppl: Option<f64>,
    /// Whether the rates are forward-only and interleaved.
    #[serde(default)]
    pub interleaved: bool,
    /// The process's peak resident memory after the measurements (CPU; None where the OS
    /// does not say).
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// Forward-only tokens/s of the dense and the 2:4-compressed FFN path, medians of `repeats`
/// passes each over the first `tokens` scored tokens of `stream`. The batches and their masks
/// are built and uploaded before any timer starts, so a pass times the model's forward alone
/// (the fused LM head's cross-entropy is part of it); the two paths alternate within each
/// repeat, in alternating order, so drift in the machine's speed (other jobs, clocks) falls
/// on both; one untimed pass of each warms up first. `model` must have the 2:4 path enabled.
fn forward_rates<O: Ops>(
    model: &mut Gpt<O>,
    plan: &MaskPlan,
    stream: &TokenStream,
    cfg: &TrainConfig,
    tokens: usize,
    repeats: usize,
) -> Result<(f64, f64)> {
    if model.tag_bias_enabled() {
        return Err(Error::Config(
            "ffn24 timing: a model with a tag bias needs its tags set per batch".into(),
        ));
    }
    let mut batches = Vec::new();
    let mut scored = 0;
    for (i, batch) in EvalWindows::new(stream, cfg.batch, cfg.seq_len)?.enumerate() {
        let bits = match plan.words(&batch, u64::MAX - i as u64)? {
            Some(w) => Some(model.ops.upload_idx(&w)?),
            None => None,
        };
        scored += batch.targets.iter().filter(|&&y| y != IGNORE_INDEX).count();
        batches.push((batch, bits));
        if scored >= tokens {
            break;
        }
    }
    let pass = |model: &mut Gpt<O>| -> Result<f64> {
        let timer = model.ops.start_timer()?;
        let mut n = 0;
        for (batch, bits) in &batches {
            let mask = bits.as_ref().map(|bits| MaskRef {
                bits,
                per_head: false,
            });
            n += model
                .forward(&batch.tokens, &batch.targets, batch.b, batch.t, mask)?
                .count;
        }
        Ok(n as f64 / timer.stop()?.max(1e-12))
    };
    // The model runs dense between passes; a compressed pass puts the weights back for its
    // duration (no compressing again).
    let lost = || Error::Config("ffn24 timing: the compressed weights went missing".into());
    let mut held = model.suspend_ffn24().ok_or_else(|| {
        Error::Config("ffn24 timing: needs the 2:4 path enabled (enable_ffn24)".into())
    })?;
    let (mut dense, mut comp) = (Vec::with_capacity(repeats), Vec::with_capacity(repeats));
    // Repeat 0 warms both paths up and is not kept.
    for rep in 0..=repeats {
        for compressed in [rep % 2 == 1, rep % 2 == 0] {
            let r = if compressed {
                model.resume_ffn24(held);
                let r = pass(model);
                held = model.suspend_ffn24().ok_or_else(lost)?;
                r?
            } else {
                pass(model)?
            };
            match (rep, compressed) {
                (0, _) => {}
                (_, true) => comp.push(r),
                (_, false) => dense.push(r),
            }
        }
    }
    // Leave the model as it came: the 2:4 path on.
    model.resume_ffn24(held);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(dense), median(comp)))
}

/// Run the projection, fine-tuning and measurements on `model` (trained per `cfg` on `data`).
pub fn run<O: Ops>(
    model: &mut Gpt<O>,
    cfg: &TrainConfig,
    data: &RunData,
    f: &Ffn24Config,
) -> Result<Ffn24Result> {
    if f.repeats == 0 {
        return Err(Error::Config("ffn24: repeats must be at least 1".into()));
    }
    let plan = MaskPlan::new(cfg, &data.vocab)?;
    let (b, t) = (cfg.batch, cfg.seq_len);
    let ppl = |m: &mut Gpt<O>, s: &TokenStream| -> Result<f64> {
        Ok(train::evaluate(m, &plan, s, b, t, None)?.mean().exp())
    };
    let dense_valid_ppl = ppl(model, &data.valid)?;
    let dense_peak = model.ops.memory().map(|m| m.peak_bytes);
    let ft = TrainConfig {
        steps: f.finetune_steps,
        lr: cfg.lr * f.lr_frac,
        warmup: 0,
        ..cfg.clone()
    };
    // The same batches for the control and the 2:4 fine-tune; the optimiser state carries on
    // from training (its step count continues).
    let finetune = |model: &mut Gpt<O>| -> Result<()> {
        let mut rng = Rng::new(cfg.seed ^ 0xF1_4E24);
        for step in 1..=f.finetune_steps {
            train::train_step(
                model,
                &ft,
                &plan,
                &data.train,
                &mut rng,
                step,
                cfg.steps + step,
            )?;
        }
        Ok(())
    };
    // The control: the dense model trained the same extra steps (what they alone buy), then
    // put back as it was.
    let state: std::collections::HashMap<String, Vec<f32>> = model
        .state()?
        .into_iter()
        .map(|t| (t.name, t.values))
        .collect();
    finetune(model)?;
    let dense_extra_valid_ppl = ppl(model, &data.valid)?;
    let dense_extra_test_ppl = ppl(model, &data.test)?;
    model.load_state(|name| state.get(name).cloned())?;

    // Project: enable_ffn24 sets the 2:4 prune masks; fine-tune on the dense path with them.
    model.enable_ffn24()?;
    model.disable_ffn24();
    let oneshot_valid_ppl = ppl(model, &data.valid)?;
    finetune(model)?;
    let finetuned_valid_ppl = ppl(model, &data.valid)?;
    let finetuned_test_ppl = ppl(model, &data.test)?;

    model.enable_ffn24()?;
    let compressed_valid_ppl = ppl(model, &data.valid)?;
    let (dense_rate, compressed_rate) =
        forward_rates(model, &plan, &data.valid, cfg, f.timed_tokens, f.repeats)?;
    let compressed_peak = model.ops.memory().map(|m| m.peak_bytes);
    model.disable_ffn24();

    let (mut dense_bytes, mut comp_bytes) = (0u64, 0u64);
    for l in 0..model.cfg.n_layer {
        for w in ["w_fc", "w_proj"] {
            let n = model.param(&format!("blocks.{l}.mlp.{w}"))?.len() as u64;
            dense_bytes += 4 * n;
            // Values: half the entries (f32); metadata: 2 bits per kept value, packed in u16.
            comp_bytes += 4 * (n / 2) + 2 * (n / 16);
        }
    }
    Ok(Ffn24Result {
        dense_valid_ppl,
        oneshot_valid_ppl,
        finetuned_valid_ppl,
        finetuned_test_ppl,
        compressed_valid_ppl,
        dense_tokens_per_sec: dense_rate,
        compressed_tokens_per_sec: compressed_rate,
        ffn_dense_bytes: dense_bytes,
        ffn_compressed_bytes: comp_bytes,
        device_peak_bytes: dense_peak.zip(compressed_peak),
        dense_extra_valid_ppl: Some(dense_extra_valid_ppl),
        dense_extra_test_ppl: Some(dense_extra_test_ppl),
        interleaved: true,
        peak_rss_bytes: crate::io::peak_rss_bytes(),
    })
}
