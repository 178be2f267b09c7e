//! E3, the ASA mask vs the winning ticket (the seed's A.1): iterative magnitude pruning with
//! rewinding of a causal model ([`crate::lth`]), and at every level the attention's alignment
//! with the ASA mask for the ticket and both controls (random re-init with the ticket's mask;
//! a layerwise-shuffled mask), beside the heads' surviving W_q/W_k fraction.

use super::alignment::{self, AlignOptions, Alignment, UnitSums, MASKS};
use super::cells::{CellKey, CellStore};
use super::ReproduceConfig;
use crate::backend::{cpu::Cpu, Ops};
use crate::data::Vocab;
use crate::lth::masks::HeadSurvival;
use crate::lth::{self, Control, ImpConfig, ImpOptions, ImpRun, PrunableGroups, Variant};
use crate::mask::asa::AsaMaskBuilder;
use crate::train::AttnMaskKind;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// E3's settings (part of the run configuration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E3Config {
    /// Pruning levels (level L keeps ≈ 0.8^L of the prunable weights at fraction 0.2).
    pub levels: u32,
    pub prune_fraction: f64,
    /// The step the survivors are rewound to.
    pub rewind_step: u32,
    /// Which weights are pruned, one cell each: `attention` (the projections), `all-linear`.
    pub groups: Vec<PrunableGroups>,
}

impl Default for E3Config {
    fn default() -> Self {
        E3Config {
            levels: 10,
            prune_fraction: 0.2,
            rewind_step: 20,
            groups: vec![PrunableGroups::Attention],
        }
    }
}

/// Cell arm name of a prunable group.
pub fn arm(g: PrunableGroups) -> &'static str {
    match g {
        PrunableGroups::Attention => "attention",
        PrunableGroups::Ffn => "ffn",
        PrunableGroups::AllLinear => "all-linear",
    }
}

fn group(arm: &str) -> Result<PrunableGroups> {
    match arm {
        "attention" => Ok(PrunableGroups::Attention),
        "ffn" => Ok(PrunableGroups::Ffn),
        "all-linear" => Ok(PrunableGroups::AllLinear),
        _ => Err(Error::Config(format!("unknown prunable group `{arm}`"))),
    }
}

/// One (level, variant) of an E3 cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E3Point {
    pub level: u32,
    pub variant: Variant,
    pub remaining_fraction: f64,
    pub valid_perplexity: f64,
    pub test_perplexity: f64,
    /// Alignment summed over every head (sums as in [`UnitSums`]).
    pub total: UnitSums,
    /// Per sentence, `(ASA mass − row-matched null mass, rows)` over every head, for the
    /// bootstrap over sentences.
    pub excess_units: Vec<(f64, f64)>,
    /// Per (layer, head) alignment sums.
    pub heads: Vec<UnitSums>,
    /// Per (layer, head) surviving fractions of the attention projections.
    pub survival: Vec<HeadSurvival>,
}

impl E3Point {
    /// Row-weighted mass inside mask `m` over every head.
    pub fn mass(&self, m: usize) -> f64 {
        self.total.causal().mean_mass(m)
    }
}

/// An `e3/<group>/seed-s` cell: every level and variant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E3Cell {
    pub imp: ImpConfig,
    pub points: Vec<E3Point>,
}

/// The IMP configuration of an E3 cell.
pub fn imp_config(e3: &E3Config, g: PrunableGroups) -> ImpConfig {
    ImpConfig {
        levels: e3.levels,
        prune_fraction: e3.prune_fraction,
        rewind_step: e3.rewind_step,
        groups: g,
        controls: vec![Control::RandomReinit, Control::LayerwiseShuffle],
        ..ImpConfig::default()
    }
}

/// Run (or resume) the IMP of cell `key` and measure every level.
pub fn run_cell<O: Ops>(
    ops: O,
    cfg: &ReproduceConfig,
    e3: &E3Config,
    key: &CellKey,
    store: &CellStore,
    progress: bool,
) -> Result<E3Cell> {
    let mut tcfg = cfg.train.clone();
    tcfg.seed = key.seed;
    tcfg.eval_every = cfg.retrain_eval_every();
    tcfg.attn_mask = AttnMaskKind::None;
    let imp = imp_config(e3, group(&key.arm)?);
    let work = store.work_dir(key);
    let mut opts = ImpOptions::new(&work);
    opts.progress = progress;
    opts.command = format!("asa-lth reproduce (cell {key})");
    let outcome = lth::run_imp(ops, &tcfg, &imp, &opts)?;
    if !outcome.finished {
        return Err(Error::Config(format!("IMP of {key} did not finish")));
    }
    let run = ImpRun::open(&work)?;
    let vocab: Vocab = run.vocab()?;
    let corpus = cfg.train.corpus.load()?;
    let stream = cfg.train.encode(&vocab, &corpus.valid)?;
    let gold = vocab.encode(&corpus.valid);
    let builder = AsaMaskBuilder::new(&cfg.train.compat.load()?.0);
    let refiner = cfg.train.refiner(&vocab);
    let aopts = AlignOptions {
        seed: cfg.align.seed ^ key.seed,
        ..cfg.align
    };
    let mut points = Vec::new();
    for level in 0..=imp.levels {
        for variant in imp.variants(level) {
            let m = run.metrics(level, variant)?.ok_or_else(|| {
                Error::Config(format!("{key}: level {level} {variant:?} has no metrics"))
            })?;
            // The measurement is host arithmetic over one forward per window; the CPU
            // backend keeps it independent of the training device.
            let mut model = run.load_model(Cpu, level, variant)?;
            let a = alignment::measure(
                &mut model,
                &builder,
                refiner.as_ref(),
                &stream,
                Some(&gold),
                &aopts,
            )?;
            points.push(point(&a, &m, run.head_survival(level, variant)?));
        }
    }
    Ok(E3Cell { imp, points })
}

fn point(a: &Alignment, m: &lth::LevelMetrics, survival: Vec<HeadSurvival>) -> E3Point {
    let heads: Vec<UnitSums> = a.heads.iter().map(|h| h.total()).collect();
    let mut total = UnitSums::default();
    let n_units = a.heads.iter().map(|h| h.units.len()).max().unwrap_or(0);
    let mut excess_units = vec![(0.0, 0.0); n_units];
    for h in &a.heads {
        total.add(&h.total());
        for (e, u) in excess_units.iter_mut().zip(&h.units) {
            e.0 += u.causal().mass[0] - u.causal().mass[1];
            e.1 += u.causal().rows as f64;
        }
    }
    debug_assert_eq!(MASKS.len(), 3);
    E3Point {
        level: m.level,
        variant: m.variant,
        remaining_fraction: m.remaining_fraction,
        valid_perplexity: m.valid_perplexity,
        test_perplexity: m.test_perplexity,
        total,
        excess_units,
        heads,
        survival,
    }
}
