//! E5's deployment half: project a trained model's FFN weights to 2:4 by magnitude, fine-tune
//! with the 2:4 masks held (one-shot prune then retrain, as NVIDIA's ASP recipe does), and
//! compare perplexity, inference throughput and FFN weight memory of the compressed 2:4 path
//! with the dense path on the same device.

use crate::backend::Ops;
use crate::data::TokenStream;
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
    /// Inference (forward-only) tokens/s, median of the repeats.
    pub dense_tokens_per_sec: f64,
    pub compressed_tokens_per_sec: f64,
    /// FFN weight bytes: dense f32, and 2:4-compressed (values + metadata).
    pub ffn_dense_bytes: u64,
    pub ffn_compressed_bytes: u64,
    /// Device memory held by the backend, if it accounts it (dense, then compressed path).
    pub device_peak_bytes: Option<(u64, u64)>,
}

/// Forward-only tokens/s over the first `tokens` scored tokens of `stream`: median of
/// `repeats` passes (after one warm-up pass), timed by the backend's timer.
fn inference_rate<O: Ops>(
    model: &mut Gpt<O>,
    plan: &MaskPlan,
    stream: &TokenStream,
    cfg: &TrainConfig,
    tokens: usize,
    repeats: usize,
) -> Result<f64> {
    let mut rates = Vec::with_capacity(repeats);
    for rep in 0..=repeats {
        let timer = model.ops.start_timer()?;
        let s = train::evaluate(model, plan, stream, cfg.batch, cfg.seq_len, Some(tokens))?;
        let secs = timer.stop()?;
        if rep > 0 {
            rates.push(s.count as f64 / secs.max(1e-12));
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
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
    let dense_rate = inference_rate(model, &plan, &data.valid, cfg, f.timed_tokens, f.repeats)?;
    let dense_peak = model.ops.memory().map(|m| m.peak_bytes);

    // Project: enable_ffn24 sets the 2:4 prune masks; fine-tune on the dense path with them.
    model.enable_ffn24()?;
    model.disable_ffn24();
    let oneshot_valid_ppl = ppl(model, &data.valid)?;
    let ft = TrainConfig {
        steps: f.finetune_steps,
        lr: cfg.lr * f.lr_frac,
        warmup: 0,
        ..cfg.clone()
    };
    let mut rng = Rng::new(cfg.seed ^ 0xF1_4E24);
    for step in 1..=f.finetune_steps {
        // The optimiser state carries on from training (step count continues).
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
    let finetuned_valid_ppl = ppl(model, &data.valid)?;
    let finetuned_test_ppl = ppl(model, &data.test)?;

    model.enable_ffn24()?;
    let compressed_valid_ppl = ppl(model, &data.valid)?;
    let compressed_rate =
        inference_rate(model, &plan, &data.valid, cfg, f.timed_tokens, f.repeats)?;
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
    })
}
