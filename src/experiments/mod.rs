//! The experiments of DESIGN.md §2 as independent result cells, and the report built from them.
//!
//! A run directory holds one [`ReproduceConfig`] and the cells computed under it
//! ([`cells`]). Each cell is one (experiment, arm, seed): it trains what it needs from
//! scratch, measures, and writes one JSON file; a cell already on disk is never recomputed, so
//! an interrupted `reproduce` resumes, and shards of the cell list can run in parallel (a
//! Slurm job array). `report` reads whatever cells exist and writes the Markdown report,
//! `summary.json` and SVG plots ([`report`]).
//!
//! Cells:
//! - `train/dense/seed-s`: a causal model; its curve and final perplexities (E2's baseline),
//!   its attention's alignment with the ASA mask on held-out text (E1), and its FFN projected
//!   to 2:4, fine-tuned and run through the 2:4 GEMM (E5);
//! - `train/asa/seed-s`: the same with the ASA mask (E2; E5's ASA + 2:4 hybrid);
//! - `e3/<group>/seed-s`: iterative magnitude pruning of `<group>` with rewinding, the
//!   ticket and both controls measured against the ASA mask at every level (E3);
//! - `e4/{zero,asa}/seed-s`: a dense model with a learnable tag-pair attention bias,
//!   initialised to zero or from the ASA compatibilities (E4);
//! - `e5/{lth-ffn,hybrid}/seed-s`: IMP of the FFN under causal attention and under the ASA
//!   mask (E5's hybrid comparison).

pub mod alignment;
pub mod cells;
pub mod e3;
pub mod e4;
pub mod e5;
pub mod ffn24;
pub mod plot;
pub mod report;

use crate::backend::Ops;
use crate::data::{CorpusSource, Vocab};
use crate::ling::compat::{CompatMatrix, NTAGS};
use crate::ling::compat_choice::CompatChoice;
use crate::mask::asa::AsaMaskBuilder;
use crate::model::{Gpt, GptConfig};
use crate::train::{
    self, checkpoint::Checkpoint, AttnMaskKind, RunOptions, TrainConfig, TrainResults,
};
use crate::{Error, Result};
use alignment::{AlignOptions, Alignment};
use cells::{CellFile, CellKey, CellStore, Shard};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// How big a reproduction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// The embedded default: the synthetic corpus on a CPU in well under 30 minutes.
    Small,
    /// The published ASA configuration (2 layers, 2 heads, d_model 128) at full length.
    Paper,
}

impl std::str::FromStr for Scale {
    type Err = Error;
    fn from_str(s: &str) -> Result<Scale> {
        match s {
            "small" => Ok(Scale::Small),
            "paper" => Ok(Scale::Paper),
            _ => Err(Error::Config(format!(
                "--scale {s:?}: expected small or paper"
            ))),
        }
    }
}

/// Everything that determines a reproduction's cells (saved as `config.json` in the run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReproduceConfig {
    pub scale: Scale,
    /// Seeds of every experiment (model init, batch order and null masks).
    pub seeds: Vec<u64>,
    /// Base training configuration; each cell sets its seed and attention mask.
    pub train: TrainConfig,
    /// E1's held-out measurement (its `seed` is combined with each cell's seed).
    pub align: AlignOptions,
    /// Bootstrap resamples for intervals.
    pub bootstrap: usize,
    /// E3's pruning schedule.
    pub e3: e3::E3Config,
    /// E5: the FFN 2:4 projection, fine-tuning and inference comparison.
    pub ffn24: ffn24::Ffn24Config,
    /// E5: the pruned arms of the hybrid comparison.
    pub e5: e5::E5Config,
    /// E4: the tag-pair bias's learning rate and the non-inferiority margin. Not serialised
    /// at its defaults.
    #[serde(default, skip_serializing_if = "e4::E4Config::is_default")]
    pub e4: e4::E4Config,
    /// E2 and E4, steps to target: the treated arms (ASA and its nulls; E4's ASA-initialised
    /// bias) train on past the budget to this multiple of it, at the schedule's floor learning
    /// rate (see [`train::Extension`]), so a run that misses the target within the budget can
    /// still reach it. 1: no extension. Not serialised at 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub treated_budget_multiple: u32,
}

fn one() -> u32 {
    1
}

fn is_one(x: &u32) -> bool {
    *x == 1
}

impl ReproduceConfig {
    /// The preset for `scale` on `corpus` (None: the embedded synthetic corpus).
    pub fn preset(scale: Scale, corpus: Option<CorpusSource>) -> ReproduceConfig {
        let mut train = TrainConfig::default();
        if let Some(c) = corpus {
            train.corpus = c;
        }
        // Tags are the built-in causal tagger's (TrainConfig::default). At paper scale on
        // WikiText-2, GPT-2 BPE (per-piece causal tags) so perplexities are per BPE token like
        // the published ones.
        if matches!(train.corpus, CorpusSource::Wikitext2 { .. }) && scale == Scale::Paper {
            train.tokenizer = crate::data::Tokenizer::Gpt2;
        }
        let (align_tokens, bootstrap) = match scale {
            Scale::Small => {
                if matches!(train.corpus, CorpusSource::Synthetic { .. }) {
                    train.corpus = CorpusSource::Synthetic {
                        sentences: 8_000,
                        seed: 1,
                    };
                }
                train.seq_len = 64;
                // E3 retrains 31 times per seed (10 levels × ticket and two controls): short
                // runs keep the whole reproduction within 30 minutes on 2 CPU cores.
                train.steps = 300;
                train.warmup = 20;
                // Steps to target are read off this curve: every 10 steps, on a fixed subset of
                // 16k validation tokens (the whole split where it is smaller).
                train.eval_every = 10;
                train.eval_tokens = 16_384;
                train.checkpoint_every = 100;
                (8_192, 1_000)
            }
            Scale::Paper => {
                // 2 layers, 2 heads, d_model 128: the TrainConfig default.
                train.steps = 5_000;
                train.eval_every = 100;
                train.eval_tokens = 16_384;
                train.checkpoint_every = 250;
                (65_536, 2_000)
            }
        };
        let real_small = scale == Scale::Small && !train.corpus.is_synthetic();
        let mut c = ReproduceConfig {
            scale,
            seeds: vec![1, 2, 3],
            align: AlignOptions {
                batch: train.batch,
                seq_len: train.seq_len,
                max_tokens: align_tokens,
                seed: 0xA11C,
            },
            train,
            bootstrap,
            e3: e3::E3Config {
                // IMP on the attention projections and, separately, on every Linear weight;
                // the small scale keeps only the first to stay within its 30-minute budget.
                groups: match scale {
                    Scale::Small => vec![crate::lth::PrunableGroups::Attention],
                    Scale::Paper => vec![
                        crate::lth::PrunableGroups::Attention,
                        crate::lth::PrunableGroups::AllLinear,
                    ],
                },
                ..e3::E3Config::default()
            },
            ffn24: ffn24::Ffn24Config::default(),
            e5: e5::E5Config::default(),
            e4: e4::E4Config::default(),
            treated_budget_multiple: 2,
        };
        // Real text at the small scale (EWT, WikiText-2): words seen fewer than 3 times are
        // <unk> (the LM head is most of the step), 500 steps, and IMP in fewer, larger rounds
        // (E3: 5 of 36% to the same 11% left as 10 of 20%; E5: 3 of 30% to the same third),
        // so three seeds of every experiment fit 90 minutes on 2 CPU cores.
        if real_small {
            c.train.steps = 500;
            c.train.min_count = 3;
            (c.e3.levels, c.e3.prune_fraction) = (5, 0.36);
            (c.e5.levels, c.e5.prune_fraction) = (3, 0.3);
        }
        c
    }

    /// Reject configurations that cannot produce a meaningful report.
    pub fn validate(&self) -> Result<()> {
        if self.seeds.is_empty() {
            return Err(Error::Config("reproduce: the seed list is empty".into()));
        }
        let mut s = self.seeds.clone();
        s.sort_unstable();
        s.dedup();
        if s.len() != self.seeds.len() {
            return Err(Error::Config(format!(
                "reproduce: repeated seeds in {:?}",
                self.seeds
            )));
        }
        if !(1..=10).contains(&self.treated_budget_multiple) {
            return Err(Error::Config(format!(
                "reproduce: treated_budget_multiple = {} (the treated arms' steps-to-target \
                 budget as a multiple of the dense one) must lie in 1..=10",
                self.treated_budget_multiple
            )));
        }
        if self.bootstrap < 100 {
            return Err(Error::Config(format!(
                "reproduce: bootstrap = {} resamples is too few for a 95% interval (≥ 100)",
                self.bootstrap
            )));
        }
        // The ASA arms, E3's alignment, E4's bias and E5's hybrid all train with tags.
        if self.train.tags.is_gold() && !self.train.allow_gold_train {
            let mut t = self.train.clone();
            t.attn_mask = AttnMaskKind::Asa;
            t.validate()?;
        }
        self.train.validate()
    }

    /// Steps the treated arms train past the budget (None: no extension).
    pub fn extension_steps(&self) -> Option<u32> {
        (self.treated_budget_multiple > 1)
            .then(|| (self.treated_budget_multiple - 1) * self.train.steps)
    }

    /// The evaluation cadence of E3's and E5's pruned retrains: about ten evaluations a run
    /// (their reports read only the final full evaluation; a fine cadence there would cost
    /// more than the training).
    pub fn retrain_eval_every(&self) -> u32 {
        self.train.eval_every.max(self.train.steps.div_ceil(10))
    }

    /// Stable identity of the configuration (cells record it).
    pub fn hash(&self) -> Result<String> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::Config(format!("config serialisation: {e}")))?;
        Ok(cells::fnv_hex(&json))
    }

    /// Every cell of the reproduction, in a fixed order (shards index into it).
    pub fn cells(&self) -> Vec<CellKey> {
        let mut v = Vec::new();
        for &seed in &self.seeds {
            for arm in TRAIN_ARMS {
                v.push(CellKey::new("train", arm, seed));
            }
            for &g in &self.e3.groups {
                v.push(CellKey::new("e3", e3::arm(g), seed));
            }
            for (arm, _) in e4::ARMS {
                v.push(CellKey::new("e4", arm, seed));
            }
            for (arm, _) in e5::ARMS {
                v.push(CellKey::new("e5", arm, seed));
            }
        }
        v
    }

    /// The training configuration of `train/<arm>/seed-<seed>` (one of [`TRAIN_ARMS`]).
    pub fn train_config(&self, arm: &str, seed: u64) -> Result<TrainConfig> {
        let mut cfg = self.train.clone();
        cfg.seed = seed;
        cfg.attn_mask = match arm {
            "dense" => AttnMaskKind::None,
            "asa" => AttnMaskKind::Asa,
            "null-rows" => AttnMaskKind::NullRows,
            "null-compat" => {
                cfg.compat = null_compat(&self.train, seed)?;
                AttnMaskKind::Asa
            }
            _ => return Err(Error::Config(format!("unknown training arm `{arm}`"))),
        };
        Ok(cfg)
    }
}

/// The training arms of every seed: dense, ASA, and its two nulls trained with the same seeds,
/// schedule and budget — `null-rows`, the ASA mask's row-matched random mask (redrawn per
/// batch: "less attention, placed at random"), and `null-compat`, the tag rule with a random
/// symmetric tag-pair matrix of the ASA matrix's expected density, fixed per seed (a function
/// of the same tags, like ASA: "any tag-keyed structure").
pub const TRAIN_ARMS: [&str; 4] = ["dense", "asa", "null-rows", "null-compat"];

/// The `null-compat` arm's matrix for `seed`: density-matched to the run's (shared) ASA
/// matrix under the tag frequencies of the training split's causal tags.
fn null_compat(train: &TrainConfig, seed: u64) -> Result<CompatChoice> {
    let (set, _) = train.compat.load()?;
    let [reference] = set.matrices() else {
        return Err(Error::Config(
            "the null-compat arm draws one matrix like the run's; per-head compat sets are not \
             supported there"
                .into(),
        ));
    };
    let data = train::RunData::load(train)?;
    let mut counts = [0f64; NTAGS];
    for u in data.train.upos.iter().flatten() {
        counts[*u as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    if total == 0.0 {
        return Err(Error::Config(
            "the null-compat arm needs tags on the training text".into(),
        ));
    }
    let freq = counts.map(|c| c / total);
    let target = reference.expected_density(&freq);
    let m = CompatMatrix::random_matched(target, &freq, seed ^ 0x00C0_4FA7);
    Ok(CompatChoice::Random {
        seed,
        rows: *m.rows(),
    })
}

/// The experiments a `reproduce` can run.
pub const EXPERIMENTS: [&str; 5] = ["e1", "e2", "e3", "e4", "e5"];

/// The experiments a cell's result feeds.
pub fn serves(key: &CellKey) -> &'static [&'static str] {
    match (key.exp.as_str(), key.arm.as_str()) {
        ("train", "dense") => &["e1", "e2", "e5"],
        ("train", "asa") => &["e2", "e5"],
        ("train", _) => &["e2"],
        ("e3", _) => &["e3"],
        ("e4", _) => &["e4"],
        ("e5", _) => &["e5"],
        _ => &[],
    }
}

/// A `train/<arm>/seed-s` cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainCell {
    pub results: TrainResults,
    /// E1: the dense model's attention vs the ASA mask and the nulls (dense arm only).
    pub alignment: Option<Alignment>,
    /// E5: the FFN projected to 2:4, fine-tuned, and run through the 2:4 GEMM (dense and
    /// ASA arms only).
    #[serde(default)]
    pub ffn24: Option<ffn24::Ffn24Result>,
    /// Steps to target: training past the budget (treated arms, with
    /// `treated_budget_multiple` > 1).
    #[serde(default)]
    pub extension: Option<train::Extension>,
}

/// Write (or check) the run's `config.json` and open its cell store. A run directory keeps one
/// configuration for life: a different one is an error naming both hashes.
pub fn open_run(dir: &Path, cfg: &ReproduceConfig) -> Result<CellStore> {
    cfg.validate()?;
    let hash = cfg.hash()?;
    let path = dir.join("config.json");
    if path.is_file() {
        let saved = load_config(dir)?;
        let saved_hash = saved.hash()?;
        if saved_hash != hash {
            return Err(Error::Config(format!(
                "{} holds another configuration ({saved_hash}, this one is {hash}); \
                 use another --out",
                path.display()
            )));
        }
    } else {
        let json = serde_json::to_string_pretty(cfg)
            .map_err(|e| Error::Config(format!("config serialisation: {e}")))?;
        crate::io::write_atomic(&path, json.as_bytes())?;
    }
    Ok(CellStore::new(dir, &hash))
}

/// The configuration saved in a run directory.
pub fn load_config(dir: &Path) -> Result<ReproduceConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    parse_config(&text, &path)
}

/// Parse a reproduce configuration (`path` names it in errors). Unknown keys are refused,
/// naming the key and the nearest valid one.
pub fn parse_config(text: &str, path: &Path) -> Result<ReproduceConfig> {
    serde_json::from_str(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        msg: format!(
            "not a reproduce config: {}",
            crate::error::suggest_field(&e.to_string())
        ),
    })
}

/// What one `reproduce` invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReproduceSummary {
    pub computed: Vec<CellKey>,
    pub skipped: Vec<CellKey>,
}

/// Compute this shard's missing cells of the run in `dir`; `device` makes a fresh backend per
/// cell. Finished cells are skipped; a failing cell stops the run with its key in the error.
pub fn reproduce<O: Ops, F: Fn() -> Result<O>>(
    device: F,
    cfg: &ReproduceConfig,
    dir: &Path,
    shard: Shard,
    only: &[String],
    progress: bool,
) -> Result<ReproduceSummary> {
    for e in only {
        if !EXPERIMENTS.contains(&e.as_str()) {
            return Err(Error::Config(format!(
                "unknown experiment `{e}`; known: {}",
                EXPERIMENTS.join(", ")
            )));
        }
    }
    let store = open_run(dir, cfg)?;
    let mut sum = ReproduceSummary::default();
    let all: Vec<CellKey> = cfg
        .cells()
        .into_iter()
        .filter(|k| only.is_empty() || serves(k).iter().any(|e| only.iter().any(|o| o == e)))
        .collect();
    let mine: Vec<&CellKey> = all
        .iter()
        .enumerate()
        .filter(|(p, _)| shard.owns(*p))
        .map(|(_, k)| k)
        .collect();
    // Cells other processes hold are revisited until they finish (or their owner dies and the
    // lock goes stale), so every process ends with the whole shard done and each cell is
    // computed once.
    // Cells computed on another kind of device or thread count differ in their last bits:
    // they are not mixed into one report silently.
    let here = result_class(&device()?.label());
    let same_device = |key: &CellKey| -> Result<bool> {
        match store.load::<serde_json::Value>(key)? {
            None => Ok(false),
            Some(cell) if result_class(&cell.device) == here => Ok(true),
            Some(cell) => Err(Error::Config(format!(
                "{}: computed on `{}` but this process runs on `{here}`; results differ in \
                 their last bits across devices and thread counts, so they are not mixed (run \
                 with the same device and RAYON_NUM_THREADS, or use another --out)",
                store.path(key).display(),
                cell.device
            ))),
        }
    };
    let mut pending: Vec<(usize, &CellKey)> = mine.iter().copied().enumerate().collect();
    let mut announced = std::collections::HashSet::new();
    while !pending.is_empty() {
        let mut busy = Vec::new();
        for (n, key) in pending {
            if same_device(key)? {
                sum.skipped.push(key.clone());
                continue;
            }
            let _lock = match store.try_lock(key)? {
                Ok(lock) => lock,
                Err(holder) => {
                    if progress && announced.insert(key.clone()) {
                        eprintln!(
                            "[{}/{}] {key}: computed by {} — waiting",
                            n + 1,
                            mine.len(),
                            holder.0
                        );
                    }
                    busy.push((n, key));
                    continue;
                }
            };
            // Finished by another process between the check and the lock?
            if store.load::<serde_json::Value>(key)?.is_some() {
                sum.skipped.push(key.clone());
                continue;
            }
            if progress {
                eprintln!("[{}/{}] {key}", n + 1, mine.len());
            }
            compute_cell(&device, cfg, key, &store, progress)?;
            sum.computed.push(key.clone());
        }
        if !busy.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        pending = busy;
    }
    Ok(sum)
}

/// What decides a result's bits on a backend: for CUDA the card (not its ordinal, so shards
/// on several GPUs of one kind agree), for the CPU its thread count.
pub fn result_class(label: &str) -> String {
    match label.strip_prefix("cuda:") {
        Some(rest) => format!("cuda {}", rest.split_once(' ').map_or(rest, |(_, r)| r)),
        None => label.to_string(),
    }
}

/// Compute one cell on a fresh backend and save it.
fn compute_cell<O: Ops, F: Fn() -> Result<O>>(
    device: &F,
    cfg: &ReproduceConfig,
    key: &CellKey,
    store: &CellStore,
    progress: bool,
) -> Result<()> {
    let t0 = Instant::now();
    let ops = device()?;
    let label = ops.label();
    let second = || device();
    let cell_err = |e: Error| match e {
        // An I/O or parse error keeps its kind (its path lies under the cell's directory).
        Error::Config(m) => Error::Config(format!("cell {key}: {m}")),
        e @ (Error::Io { .. } | Error::Parse { .. }) => e,
        e => Error::Config(format!("cell {key}: {e}")),
    };
    let result = match key.exp.as_str() {
        "train" => run_train_cell(ops, second, cfg, key, store, progress)
            .and_then(|r| to_value(&r))
            .map_err(cell_err)?,
        "e3" => e3::run_cell(ops, cfg, &cfg.e3, key, store, progress)
            .and_then(|r| to_value(&r))
            .map_err(cell_err)?,
        "e4" => e4::run_cell(ops, second, cfg, key, store, progress)
            .and_then(|r| to_value(&r))
            .map_err(cell_err)?,
        "e5" => e5::run_cell(ops, cfg, key, store, progress)
            .and_then(|r| to_value(&r))
            .map_err(cell_err)?,
        _ => return Err(Error::Config(format!("unknown cell kind `{}`", key.exp))),
    };
    store.save(&CellFile {
        key: key.clone(),
        config_hash: store.config_hash().into(),
        git_commit: crate::provenance::git_commit(),
        device: label,
        seconds: t0.elapsed().as_secs_f64(),
        result,
    })
}

fn to_value<T: Serialize>(r: &T) -> Result<serde_json::Value> {
    serde_json::to_value(r).map_err(|e| Error::Config(format!("cell serialisation: {e}")))
}

fn run_train_cell<O: Ops>(
    ops: O,
    device: impl Fn() -> Result<O>,
    cfg: &ReproduceConfig,
    key: &CellKey,
    store: &CellStore,
    progress: bool,
) -> Result<TrainCell> {
    let tcfg = cfg.train_config(&key.arm, key.seed)?;
    let work = store.work_dir(key);
    let opts = RunOptions {
        out_dir: work.clone(),
        resume: true,
        progress,
        command: format!("asa-lth reproduce (cell {key})"),
        stop_after: None,
    };
    let results = train::run(ops, &tcfg, &opts)?;
    let alignment = if key.arm == "dense" {
        Some(measure_run(&work, cfg, key.seed)?)
    } else {
        None
    };
    let ffn24 = if serves(key).contains(&"e5") {
        let ck = Checkpoint::open(&work.join("checkpoint.safetensors"))?;
        let mut model = Gpt::new(device()?, ck.meta_json("model")?, 0)?;
        ck.restore(&mut model)?;
        let data = train::RunData::load(&tcfg)?;
        Some(ffn24::run(&mut model, &tcfg, &data, &cfg.ffn24)?)
    } else {
        None
    };
    let extension = if key.arm != "dense" {
        cfg.extension_steps()
            .map(|extra| train::extend(device()?, &tcfg, &work, extra, progress))
            .transpose()?
    } else {
        None
    };
    Ok(TrainCell {
        results,
        alignment,
        ffn24,
        extension,
    })
}

/// E1 on a finished causal run in `dir` (its checkpoint and vocabulary), on the validation
/// split.
fn measure_run(dir: &Path, cfg: &ReproduceConfig, seed: u64) -> Result<Alignment> {
    let ck = Checkpoint::open(&dir.join("checkpoint.safetensors"))?;
    let mcfg: GptConfig = ck.meta_json("model")?;
    let vocab = Vocab::load(&dir.join("vocab.json"))?;
    let corpus = cfg.train.corpus.load()?;
    let stream = cfg.train.encode(&vocab, &corpus.valid)?;
    // The same text with its gold tags, for E1's oracle line only.
    let gold = vocab.encode(&corpus.valid);
    let mut model = Gpt::new(crate::backend::cpu::Cpu, mcfg, 0)?;
    ck.restore(&mut model)?;
    let builder = AsaMaskBuilder::new(&cfg.train.compat.load()?.0);
    let opts = AlignOptions {
        seed: cfg.align.seed ^ seed,
        ..cfg.align
    };
    let refiner = cfg.train.refiner(&vocab);
    alignment::measure(
        &mut model,
        &builder,
        refiner.as_ref(),
        &stream,
        Some(&gold),
        &opts,
    )
}
