//! The Lottery Ticket engine: iterative magnitude pruning (IMP) with rewinding, as open_lth
//! does it (DESIGN.md §2 "LTH"), and its two controls.
//!
//! # The procedure
//! Level 0 trains the dense model from θ0 for `train.steps` steps and records θ_k, the whole
//! training state after step `k = rewind_step` (parameters, AdamW moments, the data-order RNG).
//! Level L ≥ 1 prunes `prune_fraction` of the *remaining* prunable weights of level L−1's final
//! weights by the exact top-k rule ([`crate::sparse::topk`]: exactly `ceil(f · remaining)`,
//! ties to the lower global index; globally or per tensor), rewinds the survivors to θ_k
//! (pruned weights are exactly 0 and stay 0 through AdamW) and retrains steps `k+1 ..= steps`
//! with the same learning-rate schedule position and the same batches as the dense run. So
//! after L levels exactly the iterated-ceil count `r_{L} = r_{L−1} − ceil(f·r_{L−1})` remains,
//! ≈ 0.8^L for f = 0.2.
//!
//! Every parameter is rewound (embeddings, norms and biases too; only the prunable group is
//! masked). The optimiser: by default a fresh AdamW state at the rewind point (zero moments,
//! bias correction counting from 1), as open_lth does; with `rewind_optimizer` the moments of
//! step k are restored as well and the step count continues from k.
//!
//! # Controls (per level L ≥ 1; level 0 has none — its mask is dense)
//! - [`Control::RandomReinit`]: level L's ticket mask on a *fresh* initialisation from another
//!   seed (every parameter re-drawn, fresh optimiser), trained like a fresh run: from step 1 on
//!   the full schedule (warmup included) and level 0's batches, for the ticket's total steps
//!   (its `k` before the rewind plus `steps − k` after). Starting it at step `k + 1`, at peak
//!   learning rate and with `k` fewer steps, would handicap the control.
//! - [`Control::LayerwiseShuffle`]: a uniformly random mask with exactly the ticket's per-tensor
//!   kept counts (seeded, deterministic), on the rewound θ_k, trained like the ticket.
//!
//! # Files (everything written atomically; `metrics.json` last, so it marks a finished cell)
//! ```text
//! <out>/imp.json                      manifest: configs, vocabulary size, provenance
//! <out>/vocab.json
//! <out>/rewind.safetensors            θ_k (checkpoint format) + data RNG + step in metadata
//! <out>/summary.json                  every finished cell's LevelMetrics
//! <out>/level_03/ticket/masks.safetensors   the mask this cell trained with (U8 per tensor)
//! <out>/level_03/ticket/model.safetensors   final state (checkpoint format, masks included)
//! <out>/level_03/ticket/metrics.json        LevelMetrics
//! <out>/level_03/ticket/progress.safetensors  in-level checkpoint (deleted when done)
//! <out>/level_03/reinit/…  <out>/level_03/shuffle/…   controls, same files
//! ```
//! [`run_imp`] always resumes: finished cells are read back, never recomputed; an interrupted
//! cell continues from its last in-level checkpoint (exactly: same batches, same state); a
//! manifest from a different configuration is an error. Asking for more levels or more
//! controls later extends the run.

pub mod masks;

pub use masks::{head_survival, HeadSurvival, MaskSet, TensorCount, TensorMask};

use crate::backend::Ops;
use crate::data::Vocab;
use crate::model::{Gpt, GptConfig, ParamKind, ParamTable};
use crate::rng::Rng;
use crate::sparse::topk::{self, PruneScope, PruneTensor};
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::{self, EvalRecord, MaskPlan, RunData, StepRecord, TrainConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which weights IMP prunes. Embeddings, norms and biases are never in a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrunableGroups {
    /// The attention projections `attn.wq`, `attn.wk`, `attn.wv`, `attn.wo` of every block.
    Attention,
    /// The FFN weights `mlp.w_fc`, `mlp.w_proj` of every block.
    Ffn,
    /// Every Linear weight (attention and FFN; the tied embedding/head is excluded).
    #[default]
    AllLinear,
}

impl PrunableGroups {
    /// Names of the group's tensors in parameter-table order (the order of the global
    /// tie-break).
    pub fn tensor_names(self, table: &ParamTable) -> Vec<String> {
        table
            .specs
            .iter()
            .filter(|s| s.kind == ParamKind::Linear)
            .filter(|s| match self {
                PrunableGroups::Attention => s.name.contains(".attn."),
                PrunableGroups::Ffn => s.name.contains(".mlp."),
                PrunableGroups::AllLinear => true,
            })
            .map(|s| s.name.clone())
            .collect()
    }
}

/// Whether each level's selection runs over all prunable tensors together or per tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// One selection across all prunable tensors (open_lth's default).
    #[default]
    Global,
    /// The same fraction of each tensor separately.
    PerLayer,
}

impl From<Scope> for PruneScope {
    fn from(s: Scope) -> PruneScope {
        match s {
            Scope::Global => PruneScope::Global,
            Scope::PerLayer => PruneScope::PerTensor,
        }
    }
}

/// A control trained beside the ticket at every level ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// The ticket's mask on a fresh initialisation from another seed.
    RandomReinit,
    /// A random mask with the ticket's per-tensor sparsity, on the rewound weights.
    LayerwiseShuffle,
}

/// One trained model of a level: the ticket or a control. Its directory name is
/// [`dir_name`](Self::dir_name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The IMP model (at level 0, the dense model).
    Ticket,
    RandomReinit,
    LayerwiseShuffle,
}

impl Variant {
    /// Directory name inside a level directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            Variant::Ticket => "ticket",
            Variant::RandomReinit => "reinit",
            Variant::LayerwiseShuffle => "shuffle",
        }
    }
}

impl From<Control> for Variant {
    fn from(c: Control) -> Variant {
        match c {
            Control::RandomReinit => Variant::RandomReinit,
            Control::LayerwiseShuffle => Variant::LayerwiseShuffle,
        }
    }
}

/// The IMP configuration (the training itself is a [`TrainConfig`], attention mask included).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpConfig {
    /// The last level: levels `0 ..= levels` are trained, level 0 dense. Level L keeps
    /// ≈ (1 − prune_fraction)^L of the prunable weights (0.8^10 ≈ 10.7% for the defaults).
    pub levels: u32,
    /// Fraction of the *remaining* prunable weights pruned per level.
    pub prune_fraction: f64,
    /// k: the step whose state the survivors are rewound to (0 = θ0, classic LTH); must be
    /// below `train.steps`.
    pub rewind_step: u32,
    pub groups: PrunableGroups,
    pub scope: Scope,
    /// Also rewind the AdamW moments (and step count) to step k; false (open_lth): a fresh
    /// optimiser at the rewind point.
    #[serde(default)]
    pub rewind_optimizer: bool,
    /// Controls trained at every level ≥ 1, beside the ticket.
    #[serde(default)]
    pub controls: Vec<Control>,
    /// Train the controls only at the last level (what a report comparing the final ticket
    /// reads), not at every level ≥ 1. Not serialised when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub controls_last_level_only: bool,
    /// Seed of the controls (reinit weights, shuffled masks); each level derives its own.
    #[serde(default = "default_control_seed")]
    pub control_seed: u64,
}

fn default_control_seed() -> u64 {
    0xC0_47_01
}

impl Default for ImpConfig {
    /// 10 levels of 20% (10.7% remaining), rewind to step 20, all Linear weights, global
    /// selection, no controls.
    fn default() -> Self {
        ImpConfig {
            levels: 10,
            prune_fraction: 0.2,
            rewind_step: 20,
            groups: PrunableGroups::AllLinear,
            scope: Scope::Global,
            rewind_optimizer: false,
            controls: vec![],
            controls_last_level_only: false,
            control_seed: default_control_seed(),
        }
    }
}

impl ImpConfig {
    /// Reject settings that cannot work with `train`.
    pub fn validate(&self, train: &TrainConfig) -> Result<()> {
        topk::check_fraction(self.prune_fraction)?;
        if self.rewind_step >= train.steps {
            return Err(Error::Config(format!(
                "rewind_step ({}) must be below the training steps ({})",
                self.rewind_step, train.steps
            )));
        }
        Ok(())
    }

    /// The variants trained at `level`: the ticket, then the controls (none at level 0).
    pub fn variants(&self, level: u32) -> Vec<Variant> {
        let mut v = vec![Variant::Ticket];
        if level > 0 && (!self.controls_last_level_only || level == self.levels) {
            for c in &self.controls {
                let c = Variant::from(*c);
                if !v.contains(&c) {
                    v.push(c);
                }
            }
        }
        v
    }

    /// Init seed of the random-reinit control at `level` (never the run's own seed).
    pub fn reinit_seed(&self, train_seed: u64, level: u32) -> u64 {
        let s = masks::mix(self.control_seed, 0x1000 + level as u64);
        if s == train_seed {
            s ^ 1
        } else {
            s
        }
    }

    /// Seed of the layerwise-shuffled mask at `level`.
    pub fn shuffle_seed(&self, level: u32) -> u64 {
        masks::mix(self.control_seed, 0x2000 + level as u64)
    }
}

/// What must match for a directory to be resumed: everything except `levels` and `controls`,
/// which a later invocation may extend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImpIdentity {
    pub train: TrainConfig,
    pub prune_fraction: f64,
    pub rewind_step: u32,
    pub groups: PrunableGroups,
    pub scope: Scope,
    pub rewind_optimizer: bool,
    pub control_seed: u64,
}

impl ImpIdentity {
    /// The identity of `imp` on `train`.
    pub fn new(train: &TrainConfig, imp: &ImpConfig) -> Self {
        ImpIdentity {
            train: train.clone(),
            prune_fraction: imp.prune_fraction,
            rewind_step: imp.rewind_step,
            groups: imp.groups,
            scope: imp.scope,
            rewind_optimizer: imp.rewind_optimizer,
            control_seed: imp.control_seed,
        }
    }
}

/// `<out>/imp.json`: what the run is and where it came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImpManifest {
    pub format: u32,
    pub identity: ImpIdentity,
    pub model: GptConfig,
    pub num_params: usize,
    /// The prunable tensors (in pruning order) and their sizes.
    pub prunable: Vec<TensorCount>,
    pub corpus: String,
    pub command: String,
    pub git_commit: String,
    pub device: String,
    pub created_unix: u64,
}

/// How the pruning step that produced a level's mask went (levels ≥ 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneInfo {
    pub fraction: f64,
    pub scope: Scope,
    pub remaining_before: u64,
    pub pruned: u64,
    pub remaining: u64,
    /// Per selection group, the largest pruned |w| (None if it pruned nothing).
    pub thresholds: Vec<Option<f32>>,
    /// Ties at a threshold decided by the lower-index rule.
    pub ties_resolved_by_index: u64,
}

/// The record of one finished cell (level, variant): `metrics.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelMetrics {
    pub format: u32,
    pub level: u32,
    pub variant: Variant,
    /// Init seed of this model (the run's seed; the reinit control's own seed).
    pub init_seed: u64,
    /// Seed of the shuffled mask (shuffle control only).
    pub mask_seed: Option<u64>,
    /// Kept prunable weights / all prunable weights.
    pub remaining_fraction: f64,
    pub remaining: u64,
    pub prunable: u64,
    /// Per prunable tensor.
    pub tensors: Vec<TensorCount>,
    /// Pruning step that made this level's ticket mask (levels ≥ 1).
    pub prune: Option<PruneInfo>,
    /// First and last trained step (1-based, of the schedule) and their count.
    pub first_step: u32,
    pub last_step: u32,
    pub steps_trained: u32,
    /// Token-weighted loss and perplexity over the whole validation / test split.
    pub valid_loss: f64,
    pub valid_perplexity: f64,
    pub valid_tokens: usize,
    pub test_loss: f64,
    pub test_perplexity: f64,
    pub test_tokens: usize,
    /// Periodic validation evaluations (every `eval_every` steps, `eval_tokens` tokens; the
    /// last entry, at `steps`, is from that partial evaluation too).
    pub eval_curve: Vec<EvalRecord>,
    pub train_curve: Vec<StepRecord>,
    /// Seconds in training steps, and wall seconds of the cell (evaluation and saving
    /// included), summed over interrupted invocations.
    pub train_seconds: f64,
    pub wall_seconds: f64,
    pub git_commit: String,
    pub device: String,
}

/// Options of one invocation (not part of the run's identity).
#[derive(Clone, Debug)]
pub struct ImpOptions {
    pub out_dir: PathBuf,
    pub progress: bool,
    pub command: String,
    /// Stop after this many training steps in this invocation (saving an in-level
    /// checkpoint), to test interruption; None: run to the end.
    pub stop_after_steps: Option<u64>,
}

impl ImpOptions {
    /// Options writing to `out_dir`, quiet, running to the end.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        ImpOptions {
            out_dir: out_dir.into(),
            progress: false,
            command: String::new(),
            stop_after_steps: None,
        }
    }
}

/// What [`run_imp`] did.
#[derive(Clone, Debug)]
pub struct ImpOutcome {
    /// Every requested cell finished.
    pub finished: bool,
    /// Metrics of every finished requested cell, by level then variant.
    pub cells: Vec<LevelMetrics>,
    /// Cells trained (at least partly) by this invocation.
    pub computed: Vec<(u32, Variant)>,
}

impl ImpOutcome {
    /// The metrics of one cell, if finished.
    pub fn get(&self, level: u32, variant: Variant) -> Option<&LevelMetrics> {
        self.cells
            .iter()
            .find(|m| m.level == level && m.variant == variant)
    }
}

const MANIFEST: &str = "imp.json";
const REWIND: &str = "rewind.safetensors";
const SUMMARY: &str = "summary.json";
const MASKS: &str = "masks.safetensors";
const MODEL: &str = "model.safetensors";
const METRICS: &str = "metrics.json";
const PROGRESS: &str = "progress.safetensors";

/// Directory of one cell: `<root>/level_{level:02}/{variant}`.
pub fn cell_dir(root: &Path, level: u32, variant: Variant) -> PathBuf {
    root.join(format!("level_{level:02}"))
        .join(variant.dir_name())
}

fn json_err(what: &str) -> impl Fn(serde_json::Error) -> Error + '_ {
    move |e| Error::Config(format!("{what}: {e}"))
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(json_err("serialisation"))?;
    crate::io::write_atomic(path, s.as_bytes())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let s = crate::data::read_file(path)?;
    serde_json::from_str(&s).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        msg: e.to_string(),
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A finished or partial IMP run on disk, for readers (experiments, reports).
pub struct ImpRun {
    pub dir: PathBuf,
    pub manifest: ImpManifest,
}

impl ImpRun {
    /// Open the run in `dir` (reads `imp.json`).
    pub fn open(dir: impl Into<PathBuf>) -> Result<ImpRun> {
        let dir = dir.into();
        let manifest = read_json(&dir.join(MANIFEST))?;
        Ok(ImpRun { dir, manifest })
    }

    /// Directory of a cell.
    pub fn cell_dir(&self, level: u32, variant: Variant) -> PathBuf {
        cell_dir(&self.dir, level, variant)
    }

    /// The metrics of a cell, `None` if it has not finished.
    pub fn metrics(&self, level: u32, variant: Variant) -> Result<Option<LevelMetrics>> {
        let p = self.cell_dir(level, variant).join(METRICS);
        if p.is_file() {
            read_json(&p).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Every finished cell, by level then variant.
    pub fn finished_cells(&self) -> Result<Vec<LevelMetrics>> {
        let mut out = Vec::new();
        for level in 0.. {
            if !self.dir.join(format!("level_{level:02}")).is_dir() {
                break;
            }
            for v in [
                Variant::Ticket,
                Variant::RandomReinit,
                Variant::LayerwiseShuffle,
            ] {
                if let Some(m) = self.metrics(level, v)? {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// The mask a cell trains with (the ticket's at level L; the shuffled one for the shuffle
    /// control; the reinit control uses the ticket's).
    pub fn masks(&self, level: u32, variant: Variant) -> Result<MaskSet> {
        let v = match variant {
            Variant::RandomReinit => Variant::Ticket,
            v => v,
        };
        Ok(MaskSet::load(&self.cell_dir(level, v).join(MASKS))?.0)
    }

    /// The vocabulary of the run.
    pub fn vocab(&self) -> Result<Vocab> {
        Vocab::load(&self.dir.join("vocab.json"))
    }

    /// The final model of a finished cell on device `ops` (prune masks set, so its pruned
    /// weights are exactly zero).
    pub fn load_model<O: Ops>(&self, ops: O, level: u32, variant: Variant) -> Result<Gpt<O>> {
        let path = self.cell_dir(level, variant).join(MODEL);
        let ck = Checkpoint::open(&path)?;
        // Through the config, so a tag-bias model gets its bias tensors before the restore.
        let mut model = self
            .manifest
            .identity
            .train
            .new_model(ops, self.manifest.model.vocab)?;
        ck.restore(&mut model)?;
        Ok(model)
    }

    /// The per-head survival of the attention projections in a cell's mask (E3).
    pub fn head_survival(&self, level: u32, variant: Variant) -> Result<Vec<HeadSurvival>> {
        let m = self.manifest.model;
        head_survival(&self.masks(level, variant)?, m.n_layer, m.n_head, m.d_model)
    }
}

/// Read every f32 tensor of a safetensors checkpoint into a map.
fn read_f32_tensors(path: &Path) -> Result<HashMap<String, Vec<f32>>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: 0,
        msg: format!("not a safetensors checkpoint: {e}"),
    })?;
    let mut out = HashMap::new();
    for (name, t) in st.tensors() {
        if t.dtype() == safetensors::Dtype::F32 {
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            out.insert(name, v);
        }
    }
    Ok(out)
}

/// Shared state of one invocation.
struct Ctx<'a> {
    train: &'a TrainConfig,
    imp: &'a ImpConfig,
    data: RunData,
    plan: MaskPlan,
    root: PathBuf,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    budget: Option<u64>,
    progress: bool,
    git_commit: String,
}

/// How one cell starts.
struct Start {
    /// Masks to train with (None: dense).
    masks: Option<MaskSet>,
    /// Fresh parameters from this init seed instead of θ_k (reinit control).
    reinit_seed: Option<u64>,
}

/// Run (or resume, or extend) IMP per `imp` on the training setup `train`, on device `ops`,
/// in `opts.out_dir`. Returns the metrics of every finished cell; see the module docs.
pub fn run_imp<O: Ops>(
    ops: O,
    train: &TrainConfig,
    imp: &ImpConfig,
    opts: &ImpOptions,
) -> Result<ImpOutcome> {
    train.validate()?;
    imp.validate(train)?;
    let data = RunData::load(train)?;
    let mcfg = train.model_config(data.vocab.len());
    let mut model = train.new_model(ops, data.vocab.len())?;
    let root = opts.out_dir.clone();
    let names = imp.groups.tensor_names(&model.table);
    if names.is_empty() {
        return Err(Error::Config(format!(
            "prunable group {:?} has no tensors in a {}-layer model",
            imp.groups, mcfg.n_layer
        )));
    }
    let shapes: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            let i = model.table.index(n).expect("name from the table");
            model.table.specs[i].shape.clone()
        })
        .collect();

    // Manifest: create, or check that the directory holds this run.
    let identity = ImpIdentity::new(train, imp);
    let mpath = root.join(MANIFEST);
    if mpath.is_file() {
        let old: ImpManifest = read_json(&mpath)?;
        if old.identity != identity {
            let a = serde_json::to_value(&identity).map_err(json_err("identity"))?;
            let b = serde_json::to_value(&old.identity).map_err(json_err("identity"))?;
            let diff = diff_json("", &b, &a);
            return Err(Error::Config(format!(
                "{} holds a different IMP run ({}); choose another output directory",
                mpath.display(),
                diff.join("; ")
            )));
        }
        if old.model != mcfg {
            return Err(Error::Config(format!(
                "{}: model {:?} differs from {:?} (the corpus changed?)",
                mpath.display(),
                old.model,
                mcfg
            )));
        }
    } else {
        let manifest = ImpManifest {
            format: 1,
            identity,
            model: mcfg,
            num_params: model.num_params(),
            prunable: names
                .iter()
                .zip(&shapes)
                .map(|(n, s)| TensorMask::dense(n, s))
                .map(|m| m.counts_row())
                .collect(),
            corpus: train.corpus.label(),
            command: opts.command.clone(),
            git_commit: crate::provenance::git_commit(),
            device: model.ops.label(),
            created_unix: unix_now(),
        };
        write_json(&mpath, &manifest)?;
    }
    data.vocab.save(&root.join("vocab.json"))?;

    let mut ctx = Ctx {
        train,
        imp,
        plan: MaskPlan::new(train, &data.vocab)?,
        data,
        root,
        names,
        shapes,
        budget: opts.stop_after_steps,
        progress: opts.progress,
        git_commit: crate::provenance::git_commit(),
    };
    let mut computed = Vec::new();
    let mut cells = Vec::new();
    let mut finished = true;
    'levels: for level in 0..=imp.levels {
        for variant in imp.variants(level) {
            let dir = cell_dir(&ctx.root, level, variant);
            let mpath = dir.join(METRICS);
            if mpath.is_file() {
                cells.push(read_json::<LevelMetrics>(&mpath)?);
                continue;
            }
            computed.push((level, variant));
            match run_cell(&mut model, &mut ctx, level, variant)? {
                Some(m) => {
                    cells.push(m);
                    write_summary(&ctx.root)?;
                }
                None => {
                    finished = false;
                    break 'levels;
                }
            }
        }
    }
    Ok(ImpOutcome {
        finished,
        cells,
        computed,
    })
}

impl TensorMask {
    fn counts_row(&self) -> TensorCount {
        TensorCount {
            name: self.name.clone(),
            numel: self.numel(),
            remaining: self.remaining(),
            fraction: self.fraction(),
        }
    }
}

fn write_summary(root: &Path) -> Result<()> {
    let run = ImpRun::open(root)?;
    write_json(&root.join(SUMMARY), &run.finished_cells()?)
}

/// Field-level differences of two JSON values (`old` vs `new`).
fn diff_json(prefix: &str, old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    match (old, new) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            let mut out = vec![];
            for (k, vb) in b {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match a.get(k) {
                    Some(va) => out.extend(diff_json(&key, va, vb)),
                    None => out.push(format!("{key}: absent vs now {vb}")),
                }
            }
            out
        }
        (a, b) if a != b => vec![format!("{prefix}: was {a}, now {b}")],
        _ => vec![],
    }
}

/// The mask of level `level`'s ticket: read if already computed, else pruned from level
/// `level − 1`'s final weights (and saved).
fn ticket_masks(ctx: &Ctx<'_>, level: u32) -> Result<(MaskSet, Option<PruneInfo>)> {
    let path = cell_dir(&ctx.root, level, Variant::Ticket).join(MASKS);
    if path.is_file() {
        let (m, meta) = MaskSet::load(&path)?;
        let info = match meta.get("prune") {
            Some(s) => serde_json::from_str(s).map_err(json_err("mask metadata `prune`"))?,
            None => None,
        };
        return Ok((m, info));
    }
    if level == 0 {
        let m = MaskSet {
            tensors: ctx
                .names
                .iter()
                .zip(&ctx.shapes)
                .map(|(n, s)| TensorMask::dense(n, s))
                .collect(),
        };
        m.save(&path, HashMap::new())?;
        return Ok((m, None));
    }
    let prev_dir = cell_dir(&ctx.root, level - 1, Variant::Ticket);
    let (prev_masks, _) = MaskSet::load(&prev_dir.join(MASKS))?;
    let weights = read_f32_tensors(&prev_dir.join(MODEL))?;
    let mut f32_masks: Vec<Vec<f32>> = prev_masks.tensors.iter().map(|t| t.to_f32()).collect();
    let report = {
        let mut tensors = Vec::with_capacity(ctx.names.len());
        for ((name, m), pm) in ctx
            .names
            .iter()
            .zip(f32_masks.iter_mut())
            .zip(&prev_masks.tensors)
        {
            if &pm.name != name {
                return Err(Error::Config(format!(
                    "{}: mask tensors out of order (`{}` where `{name}` belongs)",
                    prev_dir.display(),
                    pm.name
                )));
            }
            let w = weights.get(&format!("param/{name}")).ok_or_else(|| {
                Error::Config(format!(
                    "{}: lacks `param/{name}`",
                    prev_dir.join(MODEL).display()
                ))
            })?;
            tensors.push(PruneTensor::new(name, w.as_slice(), m.as_mut_slice()));
        }
        topk::prune(&mut tensors, ctx.imp.prune_fraction, ctx.imp.scope.into())?
    };
    let masks = MaskSet {
        tensors: ctx
            .names
            .iter()
            .zip(&ctx.shapes)
            .zip(&f32_masks)
            .map(|((n, s), m)| TensorMask::from_f32(n, s, m))
            .collect::<Result<_>>()?,
    };
    let info = PruneInfo {
        fraction: ctx.imp.prune_fraction,
        scope: ctx.imp.scope,
        remaining_before: report.remaining_before(),
        pruned: report.pruned(),
        remaining: report.remaining(),
        thresholds: report.selections.iter().map(|s| s.threshold).collect(),
        ties_resolved_by_index: report.ties_resolved_by_index(),
    };
    let mut meta = HashMap::new();
    meta.insert(
        "prune".into(),
        serde_json::to_string(&Some(&info)).map_err(json_err("mask metadata"))?,
    );
    meta.insert("level".into(), level.to_string());
    masks.save(&path, meta)?;
    Ok((masks, Some(info)))
}

/// Set (or clear) the prune masks of the prunable tensors.
fn apply_masks<O: Ops>(model: &mut Gpt<O>, ctx: &Ctx<'_>, masks: Option<&MaskSet>) -> Result<()> {
    for (i, name) in ctx.names.iter().enumerate() {
        match masks {
            Some(m) => model.set_prune_mask(name, Some(&m.tensors[i].to_f32()))?,
            None => model.set_prune_mask(name, None)?,
        }
    }
    Ok(())
}

/// Load the initialisation [`TrainConfig::new_model`] would give with `seed` (bit-identical:
/// [`Gpt::new`]'s draws, and a tag bias at the config's initial values), with zero AdamW
/// moments and no prune masks.
fn load_fresh<O: Ops>(model: &mut Gpt<O>, train: &TrainConfig, seed: u64) -> Result<()> {
    let table = model.table.clone();
    let init = table.init(model.cfg.n_layer, seed);
    let bias = train.tag_bias_values(model.cfg.n_head)?;
    let mut state: HashMap<String, Vec<f32>> = HashMap::new();
    for (s, mut v) in table.specs.iter().zip(init) {
        if s.kind == crate::model::ParamKind::TagBias {
            if let Some(b) = &bias {
                v.clone_from(b);
            }
        }
        state.insert(format!("adam_m/{}", s.name), vec![0.0; v.len()]);
        state.insert(format!("adam_v/{}", s.name), vec![0.0; v.len()]);
        state.insert(format!("param/{}", s.name), v);
    }
    model.load_state(|k| state.remove(k))
}

/// Put the model in its state at the rewind point (θ_k; or a fresh init for the reinit
/// control), with fresh or rewound optimiser moments per the config; returns the data RNG at
/// the rewind point.
fn rewind<O: Ops>(model: &mut Gpt<O>, ctx: &Ctx<'_>, start: &Start) -> Result<Rng> {
    let path = ctx.root.join(REWIND);
    let rng: Rng = Checkpoint::open(&path)?.meta_json("rng")?;
    match start.reinit_seed {
        Some(seed) => load_fresh(model, ctx.train, seed)?,
        None => {
            let state = read_f32_tensors(&path)?;
            let keep_moments = ctx.imp.rewind_optimizer;
            model.load_state(|k| {
                let v = state.get(k)?;
                if !keep_moments && (k.starts_with("adam_m/") || k.starts_with("adam_v/")) {
                    Some(vec![0.0; v.len()])
                } else {
                    Some(v.clone())
                }
            })?;
        }
    }
    apply_masks(model, ctx, start.masks.as_ref())?;
    Ok(rng)
}

/// Train one cell to the end (or until the step budget runs out: then `None`).
fn run_cell<O: Ops>(
    model: &mut Gpt<O>,
    ctx: &mut Ctx<'_>,
    level: u32,
    variant: Variant,
) -> Result<Option<LevelMetrics>> {
    let t_wall = Instant::now();
    let dir = cell_dir(&ctx.root, level, variant);
    let (ticket, prune) = ticket_masks(ctx, level)?;
    let (masks, mask_seed, init_seed) = match variant {
        Variant::Ticket => (ticket, None, ctx.train.seed),
        Variant::RandomReinit => (ticket, None, ctx.imp.reinit_seed(ctx.train.seed, level)),
        Variant::LayerwiseShuffle => {
            let seed = ctx.imp.shuffle_seed(level);
            let m = ticket.layerwise_shuffled(seed);
            m.save(&dir.join(MASKS), {
                let mut meta = HashMap::new();
                meta.insert("shuffle_seed".into(), seed.to_string());
                meta
            })?;
            (m, Some(seed), ctx.train.seed)
        }
    };
    let start = Start {
        masks: (level > 0).then(|| masks.clone()),
        reinit_seed: (variant == Variant::RandomReinit).then_some(init_seed),
    };
    let k = ctx.imp.rewind_step;
    let steps = ctx.train.steps;
    // Level 0 and the random re-init control start from step 1 (see the module docs).
    let from_start = level == 0 || variant == Variant::RandomReinit;
    let first_step = if from_start { 1 } else { k + 1 };
    // Adam's own step count: from 1 at a fresh optimiser state, else continuing from k.
    let adam_offset = if from_start || (ctx.imp.rewind_optimizer && start.reinit_seed.is_none()) {
        0
    } else {
        k
    };

    let ppath = dir.join(PROGRESS);
    let mut train_curve: Vec<StepRecord> = vec![];
    let mut eval_curve: Vec<EvalRecord> = vec![];
    let mut done_step = first_step - 1;
    let mut train_seconds = 0.0;
    let mut wall_before = 0.0;
    let mut rng;
    if ppath.is_file() {
        let ck = Checkpoint::open(&ppath)?;
        ck.restore(model)?;
        rng = ck.meta_json("rng")?;
        done_step = ck.meta_json("step")?;
        train_curve = ck.meta_json("train_curve")?;
        eval_curve = ck.meta_json("eval_curve")?;
        train_seconds = ck.meta_json("train_seconds")?;
        wall_before = ck.meta_json("wall_seconds")?;
    } else if level == 0 {
        load_fresh(model, ctx.train, ctx.train.seed)?;
        apply_masks(model, ctx, None)?;
        rng = train::data_rng(ctx.train);
        if k == 0 {
            save_rewind(model, &rng, 0, &ctx.root)?;
        }
    } else {
        rng = rewind(model, ctx, &start)?;
        if from_start {
            // The re-init control sees level 0's batches from step 1.
            rng = train::data_rng(ctx.train);
        }
    }
    if level == 0 && done_step >= k && !ctx.root.join(REWIND).is_file() {
        return Err(Error::Config(format!(
            "{}: missing although level 0 is past the rewind step; delete {} to retrain it",
            ctx.root.join(REWIND).display(),
            dir.display()
        )));
    }

    let cfg = ctx.train;
    let (b, t) = (cfg.batch, cfg.seq_len);
    let pb = if ctx.progress {
        indicatif::ProgressBar::new(steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_position(done_step as u64);
    pb.set_message(format!("level {level} {}", variant.dir_name()));
    // Without a terminal (a log file, a batch job) the bar draws nothing: plain lines instead.
    let log_lines = ctx.progress && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = Instant::now();
    let save_progress = |model: &Gpt<O>,
                         rng: &Rng,
                         step: u32,
                         tc: &[StepRecord],
                         ec: &[EvalRecord],
                         ts: f64,
                         ws: f64|
     -> Result<()> {
        let j = |v: serde_json::Result<String>| v.map_err(json_err("progress metadata"));
        let mut meta = HashMap::new();
        meta.insert("rng".into(), j(serde_json::to_string(rng))?);
        meta.insert("step".into(), step.to_string());
        meta.insert("train_curve".into(), j(serde_json::to_string(tc))?);
        meta.insert("eval_curve".into(), j(serde_json::to_string(ec))?);
        meta.insert("train_seconds".into(), j(serde_json::to_string(&ts))?);
        meta.insert("wall_seconds".into(), j(serde_json::to_string(&ws))?);
        checkpoint::save(&ppath, model, meta)
    };
    for step in done_step + 1..=steps {
        if ctx.budget == Some(0) {
            save_progress(
                model,
                &rng,
                step - 1,
                &train_curve,
                &eval_curve,
                train_seconds,
                wall_before + t_wall.elapsed().as_secs_f64(),
            )?;
            return Ok(None);
        }
        let t0 = Instant::now();
        let rec = train::train_step(
            model,
            cfg,
            &ctx.plan,
            &ctx.data.train,
            &mut rng,
            step,
            step - adam_offset,
        )?;
        train_seconds += t0.elapsed().as_secs_f64();
        if let Some(n) = ctx.budget.as_mut() {
            *n -= 1;
        }
        pb.set_position(step as u64);
        if log_lines && (last_line.elapsed().as_secs() >= train::LOG_EVERY_SECS || step == steps) {
            last_line = Instant::now();
            eprintln!(
                "level {level} {}  step {step}/{steps}  loss {:.4}",
                variant.dir_name(),
                rec.loss
            );
        }
        train_curve.push(rec);
        if level == 0 && step == k {
            save_rewind(model, &rng, k, &ctx.root)?;
        }
        if (cfg.eval_every > 0 && step % cfg.eval_every == 0) || step == steps {
            let s = train::evaluate(
                model,
                &ctx.plan,
                &ctx.data.valid,
                b,
                t,
                Some(cfg.eval_tokens),
            )?;
            eval_curve.push(train::eval_record(step, "valid", s));
        }
        if cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && step < steps {
            save_progress(
                model,
                &rng,
                step,
                &train_curve,
                &eval_curve,
                train_seconds,
                wall_before + t_wall.elapsed().as_secs_f64(),
            )?;
        }
    }
    pb.finish_and_clear();
    let v = train::evaluate(model, &ctx.plan, &ctx.data.valid, b, t, None)?;
    let te = train::evaluate(model, &ctx.plan, &ctx.data.test, b, t, None)?;
    let mut meta = HashMap::new();
    meta.insert("level".into(), level.to_string());
    meta.insert("variant".into(), format!("{:?}", variant.dir_name()));
    meta.insert("step".into(), steps.to_string());
    meta.insert("git_commit".into(), ctx.git_commit.clone());
    checkpoint::save(&dir.join(MODEL), model, meta)?;
    let metrics = LevelMetrics {
        format: 1,
        level,
        variant,
        init_seed,
        mask_seed,
        remaining_fraction: masks.fraction(),
        remaining: masks.remaining(),
        prunable: masks.numel(),
        tensors: masks.counts(),
        prune,
        first_step,
        last_step: steps,
        steps_trained: steps + 1 - first_step,
        valid_loss: v.mean(),
        valid_perplexity: v.mean().exp(),
        valid_tokens: v.count,
        test_loss: te.mean(),
        test_perplexity: te.mean().exp(),
        test_tokens: te.count,
        eval_curve,
        train_curve,
        train_seconds,
        wall_seconds: wall_before + t_wall.elapsed().as_secs_f64(),
        git_commit: ctx.git_commit.clone(),
        device: model.ops.label(),
    };
    write_json(&dir.join(METRICS), &metrics)?;
    if ppath.is_file() {
        std::fs::remove_file(&ppath).map_err(|source| Error::Io {
            path: ppath.clone(),
            source,
        })?;
    }
    Ok(Some(metrics))
}

/// Save θ_k: the full training state after step `step` and the data RNG.
fn save_rewind<O: Ops>(model: &Gpt<O>, rng: &Rng, step: u32, root: &Path) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert(
        "rng".into(),
        serde_json::to_string(rng).map_err(json_err("rewind metadata"))?,
    );
    meta.insert("step".into(), step.to_string());
    checkpoint::save(&root.join(REWIND), model, meta)
}
