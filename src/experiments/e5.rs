//! E5, the hybrid (the seed's Exp. 2): the ASA attention mask combined with Lottery Ticket
//! magnitude pruning of the FFN, against each alone and the dense model. The dense and
//! ASA-only arms are the `train` cells; this module runs the two pruned arms — IMP with
//! rewinding on the FFN weights under causal attention (`lth-ffn`) and under the ASA mask
//! (`hybrid`). The 2:4 deployment half is [`super::ffn24`].

use super::cells::{CellKey, CellStore};
use super::ReproduceConfig;
use crate::backend::Ops;
use crate::lth::{self, Control, ImpConfig, ImpOptions, PrunableGroups, Variant};
use crate::train::AttnMaskKind;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// E5's pruning schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E5Config {
    /// IMP levels on the FFN (level L keeps ≈ (1 − fraction)^L of it).
    pub levels: u32,
    pub prune_fraction: f64,
    pub rewind_step: u32,
}

impl Default for E5Config {
    /// Five levels of 20%: a third of the FFN weights left.
    fn default() -> Self {
        E5Config {
            levels: 5,
            prune_fraction: 0.2,
            rewind_step: 20,
        }
    }
}

/// The pruned arms and their attention masks.
pub const ARMS: [(&str, AttnMaskKind); 2] = [
    ("lth-ffn", AttnMaskKind::None),
    ("hybrid", AttnMaskKind::Asa),
];

/// One level of a pruned arm.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E5Level {
    pub level: u32,
    /// Fraction of the FFN weights left.
    pub remaining_fraction: f64,
    pub valid_perplexity: f64,
    pub test_perplexity: f64,
    /// The controls at this level (random re-init with the ticket's mask, trained from step
    /// 1; the layerwise-shuffled mask on the rewound weights): `(variant, valid, test)`
    /// perplexities. Empty in cells from before E5 ran them.
    #[serde(default)]
    pub controls: Vec<(Variant, f64, f64)>,
}

/// An `e5/<arm>/seed-s` cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E5Cell {
    pub imp: ImpConfig,
    pub levels: Vec<E5Level>,
}

/// Run (or resume) the IMP of cell `key`.
pub fn run_cell<O: Ops>(
    ops: O,
    cfg: &ReproduceConfig,
    key: &CellKey,
    store: &CellStore,
    progress: bool,
) -> Result<E5Cell> {
    let mask = ARMS
        .iter()
        .find(|(a, _)| *a == key.arm)
        .map(|(_, m)| *m)
        .ok_or_else(|| Error::Config(format!("unknown E5 arm `{}`", key.arm)))?;
    let mut tcfg = cfg.train.clone();
    tcfg.seed = key.seed;
    tcfg.eval_every = cfg.retrain_eval_every();
    tcfg.attn_mask = mask;
    let imp = ImpConfig {
        levels: cfg.e5.levels,
        prune_fraction: cfg.e5.prune_fraction,
        rewind_step: cfg.e5.rewind_step,
        groups: PrunableGroups::Ffn,
        // The controls E3 runs: whether a pruned FFN's perplexity is the ticket's (its
        // weights' early values) or the mask's alone.
        // At the last level, the one the report compares.
        controls: vec![Control::RandomReinit, Control::LayerwiseShuffle],
        controls_last_level_only: true,
        ..ImpConfig::default()
    };
    let mut opts = ImpOptions::new(store.work_dir(key));
    opts.progress = progress;
    opts.command = format!("asa-lth reproduce (cell {key})");
    let outcome = lth::run_imp(ops, &tcfg, &imp, &opts)?;
    let levels = (0..=imp.levels)
        .map(|l| {
            let m = outcome
                .get(l, Variant::Ticket)
                .ok_or_else(|| Error::Config(format!("{key}: level {l} did not finish")))?;
            Ok(E5Level {
                level: l,
                remaining_fraction: m.remaining_fraction,
                valid_perplexity: m.valid_perplexity,
                test_perplexity: m.test_perplexity,
                controls: imp
                    .variants(l)
                    .into_iter()
                    .filter(|&v| v != Variant::Ticket)
                    .filter_map(|v| {
                        outcome
                            .get(l, v)
                            .map(|x| (v, x.valid_perplexity, x.test_perplexity))
                    })
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(E5Cell { imp, levels })
}
