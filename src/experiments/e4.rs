//! E4, ASA-guided initialisation (the seed's A.2): a learnable per-layer, per-head 17×17
//! UPOS tag-pair attention bias ([`crate::model::TagBiasInit`]), initialised from the ASA
//! compatibilities (0 where compatible, a negative constant elsewhere) vs initialised to zero,
//! on an otherwise dense causal model; the report compares the steps each needs to reach the
//! zero-initialised model's final validation perplexity, the final perplexities (with a
//! one-sided non-inferiority test), and how far the bias moved from where it started.
//!
//! The bias trains at its own learning rate ([`E4Config::tag_bias_lr_scale`] × the model's):
//! at the model's rate a −2 prior moves by less than ~0.5 in a short run, so "the prior
//! helped" and "the prior could not be unlearned" would look the same.

use super::cells::{CellKey, CellStore};
use super::ReproduceConfig;
use crate::backend::cpu::Cpu;
use crate::backend::Ops;
use crate::ling::compat::NTAGS;
use crate::ling::Upos;
use crate::model::{GptConfig, TagBiasInit};
use crate::train::{self, checkpoint::Checkpoint, AttnMaskKind, RunOptions, TrainResults};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The arms and their initialisations.
pub const ARMS: [(&str, TagBiasInit); 2] = [("zero", TagBiasInit::Zero), ("asa", TagBiasInit::Asa)];

/// E4's settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E4Config {
    /// The tag-pair bias's learning rate as a multiple of the model's.
    pub tag_bias_lr_scale: f32,
    /// "No loss in final perplexity" holds when the one-sided 95% upper bound of ASA-init −
    /// zero-init final validation perplexity is below this share of the zero-init perplexity.
    pub non_inferiority_margin: f64,
}

impl Default for E4Config {
    fn default() -> Self {
        E4Config {
            tag_bias_lr_scale: 10.0,
            non_inferiority_margin: 0.02,
        }
    }
}

impl E4Config {
    /// True at the defaults (configs leave them out).
    pub fn is_default(&self) -> bool {
        *self == E4Config::default()
    }
}

/// How far the trained bias moved from its initial values, over every layer and head, on the
/// tag pairs the ASA matrix allows and on those it does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BiasDrift {
    /// Mean final bias on compatible / incompatible pairs.
    pub final_compatible: f64,
    pub final_incompatible: f64,
    /// Mean |final − initial| on compatible / incompatible pairs, and the largest.
    pub drift_compatible: f64,
    pub drift_incompatible: f64,
    pub drift_max: f64,
}

/// An `e4/<arm>/seed-s` cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E4Cell {
    pub results: TrainResults,
    /// The bias learning-rate multiple the cell trained with (1 in cells from before it
    /// existed: the report refuses to mix those with another setting).
    #[serde(default = "one")]
    pub tag_bias_lr_scale: f32,
    /// The bias's drift (absent in cells from before it was recorded).
    #[serde(default)]
    pub drift: Option<BiasDrift>,
    /// Steps to target: the ASA-initialised arm's training past the budget (with
    /// `treated_budget_multiple` > 1).
    #[serde(default)]
    pub extension: Option<train::Extension>,
}

fn one() -> f32 {
    1.0
}

/// Train cell `key`'s model (resuming its checkpoint if one is there).
pub fn run_cell<O: Ops>(
    ops: O,
    device: impl Fn() -> Result<O>,
    cfg: &ReproduceConfig,
    key: &CellKey,
    store: &CellStore,
    progress: bool,
) -> Result<E4Cell> {
    let init = ARMS
        .iter()
        .find(|(a, _)| *a == key.arm)
        .map(|(_, i)| *i)
        .ok_or_else(|| Error::Config(format!("unknown E4 arm `{}`", key.arm)))?;
    let mut tcfg = cfg.train.clone();
    tcfg.seed = key.seed;
    tcfg.attn_mask = AttnMaskKind::None;
    tcfg.tag_bias = init;
    tcfg.opt.tag_bias_lr_scale = cfg.e4.tag_bias_lr_scale;
    let opts = RunOptions {
        out_dir: store.work_dir(key),
        resume: true,
        progress,
        command: format!("asa-lth reproduce (cell {key})"),
        stop_after: None,
    };
    let results = train::run(ops, &tcfg, &opts)?;
    // The bias before and after, read back from the finished checkpoint.
    let ck = Checkpoint::open(&opts.out_dir.join("checkpoint.safetensors"))?;
    let mcfg: GptConfig = ck.meta_json("model")?;
    let mut model = tcfg.new_model(Cpu, mcfg.vocab)?;
    ck.restore(&mut model)?;
    let initial = tcfg
        .tag_bias_values(tcfg.n_head)?
        .ok_or_else(|| Error::Config("E4 arm without a tag bias".into()))?;
    let (compat, _) = cfg.train.compat.load()?;
    let allowed = |h: usize, a: usize, b: usize| {
        compat.matrices()[h.min(compat.matrices().len() - 1)].allows(Upos::ALL[a], Upos::ALL[b])
    };
    let (mut fin, mut drift, mut n) = ([0f64; 2], [0f64; 2], [0usize; 2]);
    let mut drift_max = 0f64;
    for l in 0..tcfg.n_layer {
        let trained = model.tag_bias(l)?;
        for (i, (&x, &x0)) in trained.iter().zip(&initial).enumerate() {
            let (h, a, b) = (i / (NTAGS * NTAGS), i / NTAGS % NTAGS, i % NTAGS);
            let k = usize::from(!allowed(h, a, b));
            let d = (x as f64 - x0 as f64).abs();
            fin[k] += x as f64;
            drift[k] += d;
            n[k] += 1;
            drift_max = drift_max.max(d);
        }
    }
    let mean = |s: f64, n: usize| if n == 0 { f64::NAN } else { s / n as f64 };
    let extension = if init == TagBiasInit::Asa {
        cfg.extension_steps()
            .map(|extra| train::extend(device()?, &tcfg, &opts.out_dir, extra, progress))
            .transpose()?
    } else {
        None
    };
    Ok(E4Cell {
        extension,
        results,
        tag_bias_lr_scale: cfg.e4.tag_bias_lr_scale,
        drift: Some(BiasDrift {
            final_compatible: mean(fin[0], n[0]),
            final_incompatible: mean(fin[1], n[1]),
            drift_compatible: mean(drift[0], n[0]),
            drift_incompatible: mean(drift[1], n[1]),
            drift_max,
        }),
    })
}
