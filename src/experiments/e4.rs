//! E4, ASA-guided initialisation (the seed's A.2): a learnable per-layer, per-head 17×17
//! UPOS tag-pair attention bias ([`crate::model::TagBiasInit`]), initialised from the ASA
//! compatibilities (0 where compatible, a negative constant elsewhere) vs initialised to zero,
//! on an otherwise dense causal model; the report compares the steps each needs to reach the
//! zero-initialised model's final validation perplexity, and the final perplexities.

use super::cells::{CellKey, CellStore};
use super::ReproduceConfig;
use crate::backend::Ops;
use crate::model::TagBiasInit;
use crate::train::{self, AttnMaskKind, RunOptions, TrainResults};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The arms and their initialisations.
pub const ARMS: [(&str, TagBiasInit); 2] = [("zero", TagBiasInit::Zero), ("asa", TagBiasInit::Asa)];

/// An `e4/<arm>/seed-s` cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E4Cell {
    pub results: TrainResults,
}

/// Train cell `key`'s model (resuming its checkpoint if one is there).
pub fn run_cell<O: Ops>(
    ops: O,
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
    let opts = RunOptions {
        out_dir: store.work_dir(key),
        resume: true,
        progress,
        command: format!("asa-lth reproduce (cell {key})"),
        stop_after: None,
    };
    Ok(E4Cell {
        results: train::run(ops, &tcfg, &opts)?,
    })
}
