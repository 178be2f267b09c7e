//! The training loop: random windows from the training split, AdamW with warmup + cosine
//! learning rate and global-norm clipping, periodic evaluation, atomic checkpoints every few
//! steps and exact resumption, and a results JSON with everything needed to reproduce it.

pub mod checkpoint;
pub mod schedule;

use crate::backend::{MaskRef, Ops};
use crate::data::{
    batch, Batch, CorpusSource, EvalWindows, TagsChoice, TokenStream, Tokenizer, Vocab,
};
use crate::ling::compat::{CompatMatrix, CompatSet};
use crate::ling::compat_choice::{CompatChoice, Refinement};
use crate::mask::asa::{
    apply_cross_sentence, sentence_starts, AsaMaskBuilder, CrossSentence, RefineOptions, Refiner,
};
use crate::mask::nulls;
use crate::model::tag_bias::{self, TagBiasInit};
use crate::model::{AdamWConfig, Gpt, GptConfig, LossStats};
use crate::rng::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which attention mask the model trains and evaluates with (combined with causality).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttnMaskKind {
    /// Causal only (the dense baseline).
    #[default]
    None,
    /// The ASA mask from each token's UPOS tag and the built-in compatibility matrix.
    Asa,
    /// A random mask with exactly the ASA mask's allowed keys per query row (null 1).
    NullRows,
    /// As `NullRows`, also matching the ASA mask's distance histogram in expectation, from
    /// the rows up to each query only (null 2, causal: [`nulls::distance_causal`]).
    NullDist,
}

impl AttnMaskKind {
    /// The name on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            AttnMaskKind::None => "none",
            AttnMaskKind::Asa => "asa",
            AttnMaskKind::NullRows => "null-rows",
            AttnMaskKind::NullDist => "null-dist",
        }
    }
}

/// Builds the attention mask of each batch for an [`AttnMaskKind`] from the batch's tags (the
/// run's causal tags, see [`TrainConfig::tags`]), the run's compatibility matrix and
/// refinements; text without tags is an error here.
pub struct MaskPlan {
    kind: AttnMaskKind,
    builder: AsaMaskBuilder,
    refiner: Option<Refiner>,
    cross_sentence: CrossSentence,
    eos: u32,
    seed: u64,
}

impl MaskPlan {
    /// A plan for `cfg`'s mask, matrix and refinements over `vocab`'s ids; nulls are reseeded
    /// per batch from `cfg.seed` and a batch counter, so a resumed run draws the same nulls.
    pub fn new(cfg: &TrainConfig, vocab: &Vocab) -> Result<Self> {
        let (compat, _) = if cfg.attn_mask == AttnMaskKind::None {
            (
                CompatSet::shared(CompatMatrix::default_asa()),
                String::new(),
            )
        } else {
            cfg.compat.load()?
        };
        let refiner = if cfg.attn_mask == AttnMaskKind::None {
            None
        } else {
            cfg.refiner(vocab)
        };
        Ok(MaskPlan {
            kind: cfg.attn_mask,
            builder: AsaMaskBuilder::new(&compat),
            refiner,
            cross_sentence: cfg.cross_sentence,
            eos: vocab.eos(),
            seed: cfg.seed,
        })
    }

    /// The mask words of `batch` (`None` for causal-only); `salt` distinguishes batches.
    pub fn words(&self, batch: &Batch, salt: u64) -> Result<Option<Vec<u32>>> {
        if self.kind == AttnMaskKind::None {
            return Ok(None);
        }
        if batch
            .upos
            .iter()
            .zip(&batch.targets)
            .any(|(&u, &y)| u == batch::NO_TAG && y != crate::backend::IGNORE_INDEX)
        {
            return Err(Error::Config(
                "--attn-mask needs UPOS tags for every token; this corpus has none (use \
                 --tags builtin, rules or model:PATH)"
                    .into(),
            ));
        }
        let mut asa = self.builder.build_for_batch(batch)?;
        if let Some(r) = &self.refiner {
            r.apply(&mut asa, &batch.tokens, &batch.upos)?;
        }
        // After the refinements, so `block` also drops a binding antecedent in the previous
        // sentence; before the nulls, which match the final mask.
        let starts = sentence_starts(&batch.tokens, batch.b, batch.t, self.eos);
        apply_cross_sentence(&mut asa, &starts, self.cross_sentence)?;
        let valid = nulls::valid_from_targets(&batch.targets);
        let seed = self.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Under allow/block the earlier sentences' keys are fixed by the policy, so a null
        // redraws only each row's own sentence, with the ASA mask's count there.
        let from = match self.cross_sentence {
            CrossSentence::Compat => vec![0; valid.len()],
            _ => starts,
        };
        let mask = match self.kind {
            AttnMaskKind::None | AttnMaskKind::Asa => asa,
            AttnMaskKind::NullRows => nulls::row_matched_from(&asa, &valid, &from, seed)?,
            AttnMaskKind::NullDist => nulls::distance_causal_from(&asa, &valid, &from, seed)?,
        };
        Ok(Some(mask.into_words()))
    }
}

/// Run `forward` (or, for a training step, `forward_train`) on a batch with the plan's mask
/// (uploaded to the device).
fn forward_masked<O: Ops>(
    model: &mut Gpt<O>,
    plan: &MaskPlan,
    batch: &Batch,
    salt: u64,
    train: bool,
) -> Result<(LossStats, Option<O::Idx>)> {
    let bits = match plan.words(batch, salt)? {
        Some(w) => Some(model.ops.upload_idx(&w)?),
        None => None,
    };
    let mask = bits.as_ref().map(|bits| MaskRef {
        bits,
        per_head: false,
    });
    if model.tag_bias_enabled() {
        // As for the ASA mask: text without tags would leave the bias silently unused.
        if batch
            .upos
            .iter()
            .zip(&batch.targets)
            .any(|(&u, &y)| u == batch::NO_TAG && y != crate::backend::IGNORE_INDEX)
        {
            return Err(Error::Config(
                "tag_bias needs UPOS tags for every token; this corpus has none (use \
                 --tags builtin, rules or model:PATH)"
                    .into(),
            ));
        }
        model.set_tags(&batch.upos)?;
    }
    let s = if train {
        model.forward_train(&batch.tokens, &batch.targets, batch.b, batch.t, mask)?
    } else {
        model.forward(&batch.tokens, &batch.targets, batch.b, batch.t, mask)?
    };
    Ok((s, bits))
}

/// Everything that determines a training run (saved in checkpoints and results).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub corpus: CorpusSource,
    /// Where the UPOS tags of the ASA mask, nulls and tag bias come from (`builtin`, `rules`,
    /// `gold`, `model:PATH`; see [`crate::data::tags`]). Always written; a config from before
    /// the field existed used the corpus's gold tags, so that is what it reads as.
    #[serde(default = "legacy_tags")]
    pub tags: TagsChoice,
    /// Let gold tags shape the mask or bias of the model being trained: a leak study only
    /// (such runs are labelled leaky in results and reports). Not serialised when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_gold_train: bool,
    /// The compatibility matrix of the ASA mask and the ASA tag-bias initialisation
    /// (`builtin`, `derived:TREEBANK[@COVERAGE]`, a compat file). Not serialised at `builtin`.
    #[serde(default, skip_serializing_if = "CompatChoice::is_builtin")]
    pub compat: CompatChoice,
    /// Word-level refinements of the ASA mask (`binding`). Not serialised when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refine: Vec<Refinement>,
    /// What the ASA mask (and its nulls, which match it) does with keys in earlier sentences
    /// of a window: `compat` (the tag rule, as the seed), `allow` or `block`. Not serialised
    /// at `compat`.
    #[serde(default, skip_serializing_if = "CrossSentence::is_default")]
    pub cross_sentence: CrossSentence,
    /// How text becomes ids: `word` (default) or `gpt2` BPE (perplexity per BPE token; each
    /// subword inherits its word's tag). Not serialised at the default, so word-level configs
    /// (and results, checkpoints, cell keys) are byte-identical to before the field existed.
    #[serde(default, skip_serializing_if = "Tokenizer::is_word")]
    pub tokenizer: Tokenizer,
    /// Minimum training count for a word to get its own id (word level only).
    pub min_count: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub d_model: usize,
    /// Batch size `B` (windows per step).
    pub batch: usize,
    /// Window length `T` (also the model context).
    pub seq_len: usize,
    pub steps: u32,
    pub lr: f32,
    /// Final learning rate as a fraction of `lr`.
    pub min_lr_frac: f32,
    pub warmup: u32,
    pub opt: AdamWConfig,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: u32,
    /// Validation tokens scored by a periodic evaluation (the final one scores all).
    pub eval_tokens: usize,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u32,
    pub seed: u64,
    /// Attention mask during training and evaluation.
    #[serde(default)]
    pub attn_mask: AttnMaskKind,
    /// E4: a learnable per-layer, per-head UPOS tag-pair attention bias and how it starts
    /// (`off`: none). Not serialised when off, so configs (and results, checkpoints, cell
    /// keys) of runs without it are byte-identical to before the field existed.
    #[serde(default, skip_serializing_if = "TagBiasInit::is_off")]
    pub tag_bias: TagBiasInit,
    /// With `tag_bias = asa`: the initial bias on ASA-incompatible tag pairs (finite, ≤ 0;
    /// compatible pairs start at 0). Not serialised at its default.
    #[serde(
        default = "default_tag_bias_incompatible",
        skip_serializing_if = "is_default_tag_bias_incompatible"
    )]
    pub tag_bias_incompatible: f32,
}

fn legacy_tags() -> TagsChoice {
    TagsChoice::Gold
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_tag_bias_incompatible() -> f32 {
    tag_bias::DEFAULT_INCOMPATIBLE
}

fn is_default_tag_bias_incompatible(x: &f32) -> bool {
    x.to_bits() == tag_bias::DEFAULT_INCOMPATIBLE.to_bits()
}

impl Default for TrainConfig {
    /// The embedded default: the synthetic corpus and the paper's model shape
    /// (2 layers, 2 heads, d_model 128, context 128, batch 16, 2000 steps).
    fn default() -> Self {
        TrainConfig {
            corpus: CorpusSource::Synthetic {
                sentences: 40_000,
                seed: 1,
            },
            tags: TagsChoice::Builtin,
            allow_gold_train: false,
            compat: CompatChoice::Builtin,
            refine: vec![],
            cross_sentence: CrossSentence::Compat,
            tokenizer: Tokenizer::Word,
            min_count: 1,
            n_layer: 2,
            n_head: 2,
            d_model: 128,
            batch: 16,
            seq_len: 128,
            steps: 2000,
            lr: 3e-3,
            min_lr_frac: 0.1,
            warmup: 50,
            opt: AdamWConfig::default(),
            eval_every: 100,
            eval_tokens: 16_384,
            checkpoint_every: 100,
            seed: 1,
            attn_mask: AttnMaskKind::None,
            tag_bias: TagBiasInit::Off,
            tag_bias_incompatible: tag_bias::DEFAULT_INCOMPATIBLE,
        }
    }
}

impl TrainConfig {
    /// The model shape for a vocabulary of `vocab` ids.
    pub fn model_config(&self, vocab: usize) -> GptConfig {
        GptConfig {
            n_layer: self.n_layer,
            n_head: self.n_head,
            d_model: self.d_model,
            ctx: self.seq_len,
            vocab,
        }
    }

    /// Reject settings that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 || self.seq_len == 0 || self.steps == 0 {
            return Err(Error::Config(format!(
                "batch ({}), seq_len ({}) and steps ({}) must be positive",
                self.batch, self.seq_len, self.steps
            )));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::Config(format!(
                "lr must be positive, got {}",
                self.lr
            )));
        }
        if !(0.0..=1.0).contains(&self.min_lr_frac) {
            return Err(Error::Config(format!(
                "min_lr_frac must be in [0, 1], got {}",
                self.min_lr_frac
            )));
        }
        tag_bias::check_incompatible(self.tag_bias_incompatible)?;
        let o = &self.opt;
        if !(o.grad_clip.is_finite() && o.grad_clip >= 0.0) {
            return Err(Error::Config(format!(
                "grad_clip (--grad-clip) must be finite and ≥ 0 (0 disables clipping), got {}",
                o.grad_clip
            )));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(Error::Config(format!(
                "weight_decay (--weight-decay) must be finite and ≥ 0, got {}",
                o.weight_decay
            )));
        }
        if !((0.0..1.0).contains(&o.beta1) && (0.0..1.0).contains(&o.beta2)) {
            return Err(Error::Config(format!(
                "AdamW betas must lie in [0, 1), got beta1 {} and beta2 {}",
                o.beta1, o.beta2
            )));
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return Err(Error::Config(format!(
                "AdamW eps must be positive, got {}",
                o.eps
            )));
        }
        if self.eval_tokens == 0 {
            return Err(Error::Config(
                "eval_tokens (--eval-tokens) must be positive: a periodic evaluation of 0 \
                 tokens measures nothing (use --eval-every 0 to evaluate only at the end)"
                    .into(),
            ));
        }
        if self.uses_tags() && self.tags.is_gold() && !self.allow_gold_train {
            return Err(Error::Config(format!(
                "--tags gold with {}: gold tags leak the future into a causal model (annotators \
                 resolved them with the words to the right in view, and with BPE every piece \
                 carries its whole word's tag), so they may measure but not shape the mask or \
                 bias of a model being trained; use --tags builtin (the default), or add \
                 --allow-gold-train for a leak study (the run is then labelled leaky)",
                self.tag_consumers()
            )));
        }
        self.model_config(2).validate()
    }

    /// Whether the model being trained consumes tags (an ASA or null mask, or a tag bias).
    pub fn uses_tags(&self) -> bool {
        self.attn_mask != AttnMaskKind::None || !self.tag_bias.is_off()
    }

    fn tag_consumers(&self) -> String {
        let mut v = vec![];
        if self.attn_mask != AttnMaskKind::None {
            v.push(format!("--attn-mask {}", self.attn_mask.name()));
        }
        if !self.tag_bias.is_off() {
            v.push(format!("--tag-bias {}", self.tag_bias.name()));
        }
        v.join(" and ")
    }

    /// True when gold tags shape what is trained (a leak study, labelled as such).
    pub fn is_leaky(&self) -> bool {
        self.uses_tags() && self.tags.is_gold()
    }

    /// One line naming the tags, matrix and refinements, for results and report headers.
    pub fn tags_label(&self) -> String {
        let mut s = format!("tags {}", self.tags.describe(self.corpus.is_synthetic()));
        if !self.compat.is_builtin() {
            s += &format!(", compat {}", self.compat);
        }
        if !self.refine.is_empty() {
            let r: Vec<&str> = self.refine.iter().map(|r| r.name()).collect();
            s += &format!(", refine {}", r.join("+"));
        }
        if !self.cross_sentence.is_default() {
            s += &format!(", cross-sentence keys {}", self.cross_sentence);
        }
        if self.is_leaky() {
            s += " (LEAKY: gold tags in training, --allow-gold-train)";
        }
        s
    }

    /// The word-level refinements of this run's ASA mask over `vocab`'s ids (None: none).
    pub fn refiner(&self, vocab: &Vocab) -> Option<Refiner> {
        (!self.refine.is_empty()).then(|| {
            Refiner::new(
                vocab.len(),
                |id| vocab.word(id),
                None,
                RefineOptions {
                    binding: self.refine.contains(&Refinement::Binding),
                    noun_number_heuristic: true,
                    selection: false,
                    eos: vocab.eos(),
                },
            )
        })
    }

    /// The causal tagger of this run's corpus (None: the corpus's gold tags).
    pub fn tagger(&self) -> Result<Option<std::sync::Arc<dyn crate::ling::tagger::Tagger>>> {
        self.tags.tagger(self.corpus.is_synthetic())
    }

    /// Encode `sents` with this run's vocabulary and tags.
    pub fn encode(&self, vocab: &Vocab, sents: &[crate::data::Sentence]) -> Result<TokenStream> {
        let tagger = self.tagger()?;
        Ok(vocab.encode_tagged(sents, tagger.as_deref()))
    }

    /// A freshly initialised model for this config and a vocabulary of `vocab` ids: the
    /// [`Gpt::new`] initialisation from `seed`, plus the tag bias if `tag_bias` is on.
    pub fn new_model<O: Ops>(&self, ops: O, vocab: usize) -> Result<Gpt<O>> {
        let mut model = Gpt::new(ops, self.model_config(vocab), self.seed)?;
        model.enable_tag_bias_values(self.tag_bias_values(self.n_head)?)?;
        Ok(model)
    }

    /// One layer's initial tag-bias values (`None` when off): `asa` from this run's
    /// compatibility matrix.
    pub fn tag_bias_values(&self, n_head: usize) -> Result<Option<Vec<f32>>> {
        if self.tag_bias != TagBiasInit::Asa {
            return self
                .tag_bias
                .layer_values(n_head, self.tag_bias_incompatible);
        }
        let (compat, _) = self.compat.load()?;
        self.tag_bias
            .layer_values_with(n_head, self.tag_bias_incompatible, &compat)
    }

    /// Field-by-field differences from `other`, for "checkpoint from a different config".
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        // Fields left out of the JSON at their defaults are put back, so a difference in one
        // of them is seen from either side.
        let full = |c: &TrainConfig| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("tag_bias".into(), c.tag_bias.name().into());
                m.insert("tokenizer".into(), c.tokenizer.name().into());
                m.insert("allow_gold_train".into(), c.allow_gold_train.into());
                m.insert("compat".into(), c.compat.name().into());
                let refine: Vec<&str> = c.refine.iter().map(|r| r.name()).collect();
                m.insert("refine".into(), serde_json::json!(refine));
                m.insert("cross_sentence".into(), c.cross_sentence.name().into());
                m.insert(
                    "tag_bias_incompatible".into(),
                    serde_json::json!(c.tag_bias_incompatible),
                );
            }
            v
        };
        match (full(self), full(other)) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, v)| {
                    format!(
                        "{k}: checkpoint {} vs now {v}",
                        b.get(k).cloned().unwrap_or_default()
                    )
                })
                .collect(),
            _ => vec![],
        }
    }
}

/// One training step's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u32,
    pub loss: f64,
    pub lr: f32,
    pub grad_norm: f64,
}

/// One evaluation's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: u32,
    pub split: String,
    pub loss: f64,
    pub perplexity: f64,
    pub tokens: usize,
}

/// The results file of a run (`results.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainResults {
    pub format: u32,
    pub command: String,
    pub config: TrainConfig,
    pub model: GptConfig,
    pub num_params: usize,
    pub corpus: String,
    /// Where the tags came from, the compatibility matrix and refinements
    /// ([`TrainConfig::tags_label`]; says LEAKY for gold tags in training).
    #[serde(default)]
    pub tags: String,
    pub git_commit: String,
    pub device: String,
    pub cpu: String,
    pub started_unix: u64,
    pub finished: bool,
    pub steps_done: u32,
    pub train_tokens: usize,
    pub valid_tokens: usize,
    pub test_tokens: usize,
    pub unigram_valid_perplexity: f64,
    pub train_curve: Vec<StepRecord>,
    pub eval_curve: Vec<EvalRecord>,
    pub final_valid_perplexity: Option<f64>,
    pub final_test_perplexity: Option<f64>,
    /// Training tokens per second over the steps timed in this process (excludes evaluation
    /// and checkpointing).
    pub tokens_per_sec: f64,
    pub train_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    /// Device memory the backend accounted (peak and current bytes, the driver's free/total),
    /// where it keeps its own (GPU); None on the CPU, whose use is `peak_rss_bytes`.
    #[serde(default)]
    pub device_memory: Option<crate::backend::MemoryReport>,
}

/// Options of one invocation (not part of the run's identity).
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub resume: bool,
    pub progress: bool,
    pub command: String,
    /// Stop after this many steps in this process (to test interruption); None: run to the end.
    pub stop_after: Option<u32>,
}

/// Token-weighted loss over the evaluation windows of `stream` (at most `max_tokens` scored
/// tokens, if given), with the attention mask of `plan`.
pub fn evaluate<O: Ops>(
    model: &mut Gpt<O>,
    plan: &MaskPlan,
    stream: &TokenStream,
    b: usize,
    t: usize,
    max_tokens: Option<usize>,
) -> Result<LossStats> {
    let mut total = LossStats::default();
    for (i, batch) in EvalWindows::new(stream, b, t)?.enumerate() {
        let (s, _) = forward_masked(model, plan, &batch, u64::MAX - i as u64, false)?;
        total.sum += s.sum;
        total.count += s.count;
        if max_tokens.is_some_and(|m| total.count >= m) {
            break;
        }
    }
    // A perplexity of NaN or ∞ is never an answer: say so instead of printing it.
    if !total.sum.is_finite() {
        return Err(Error::NonFinite {
            tensor: format!("evaluation loss (over {} tokens)", total.count),
            index: 0,
            value: total.sum as f32,
        });
    }
    Ok(total)
}

/// The vocabulary and encoded splits of a run's corpus (what [`run`] trains on).
pub struct RunData {
    pub vocab: Vocab,
    pub train: TokenStream,
    pub valid: TokenStream,
    pub test: TokenStream,
}

impl RunData {
    /// Load `cfg.corpus`, build the vocabulary of `cfg.tokenizer` (word level: from the
    /// training split) and encode all three
    /// splits; fails early, naming the split, if a training window of `cfg.seq_len` cannot be
    /// cut.
    pub fn load(cfg: &TrainConfig) -> Result<RunData> {
        let corpus = cfg.corpus.load()?;
        let vocab = Vocab::for_tokenizer(cfg.tokenizer, &corpus.train, cfg.min_count)?;
        let tagger = cfg.tagger()?;
        let enc = |s| vocab.encode_tagged(s, tagger.as_deref());
        let (train, valid, test) = (enc(&corpus.train), enc(&corpus.valid), enc(&corpus.test));
        batch::random_batch(&train, 1, cfg.seq_len, &mut Rng::new(0))?;
        Ok(RunData {
            vocab,
            train,
            valid,
            test,
        })
    }
}

/// The data-order RNG a run starts from (its state before step 1), so other drivers (the
/// Lottery Ticket engine) draw exactly the batches [`run`] draws.
pub fn data_rng(cfg: &TrainConfig) -> Rng {
    Rng::new(cfg.seed.wrapping_mul(0x9E37_79B9).wrapping_add(17))
}

/// One training step of [`run`] on a model the caller holds: draw a random batch from `train`
/// with `rng`, forward/backward with `plan`'s attention mask (salted by `step`, as `run` does),
/// and an AdamW step at the schedule's learning rate for `step` (1-based, of `cfg.steps`).
/// `adam_step` is the optimiser's own 1-based step count for its bias correction: `step` when
/// the optimiser state has been carried since step 1, or the steps since a fresh optimiser
/// state (e.g. `step - k` after a rewind to step `k` with zeroed moments). A non-finite loss
/// is an error (after the update, as in `run`).
pub fn train_step<O: Ops>(
    model: &mut Gpt<O>,
    cfg: &TrainConfig,
    plan: &MaskPlan,
    train: &TokenStream,
    rng: &mut Rng,
    step: u32,
    adam_step: u32,
) -> Result<StepRecord> {
    if model.tag_bias_enabled() == cfg.tag_bias.is_off() {
        return Err(Error::Config(format!(
            "train_step: the config says tag_bias = {} but the model {} one (build it with \
             TrainConfig::new_model)",
            cfg.tag_bias,
            if model.tag_bias_enabled() {
                "has"
            } else {
                "lacks"
            }
        )));
    }
    let batch = batch::random_batch(train, cfg.batch, cfg.seq_len, rng)?;
    let (loss, bits) = forward_masked(model, plan, &batch, step as u64, true)?;
    model.zero_grad()?;
    model.backward(bits.as_ref().map(|bits| MaskRef {
        bits,
        per_head: false,
    }))?;
    let lr = schedule::lr_at(step, cfg.steps, cfg.warmup, cfg.lr, cfg.min_lr_frac);
    let norm = model.step(lr, adam_step, &cfg.opt)?;
    if !loss.mean().is_finite() {
        return Err(Error::NonFinite {
            tensor: format!("training loss at step {step}"),
            index: 0,
            value: loss.mean() as f32,
        });
    }
    Ok(StepRecord {
        step,
        loss: loss.mean(),
        lr,
        grad_norm: norm,
    })
}

/// A validation/test record from summed loss statistics (loss per scored token and its exp).
pub fn eval_record(step: u32, split: &str, s: LossStats) -> EvalRecord {
    EvalRecord {
        step,
        split: split.into(),
        loss: s.mean(),
        perplexity: s.mean().exp(),
        tokens: s.count,
    }
}

const CKPT: &str = "checkpoint.safetensors";
const RESULTS: &str = "results.json";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn write_results(dir: &Path, r: &TrainResults) -> Result<()> {
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| Error::Config(format!("results serialisation: {e}")))?;
    crate::io::write_atomic(&dir.join(RESULTS), json.as_bytes())
}

/// Seconds between plain progress lines when stderr is not a terminal.
pub const LOG_EVERY_SECS: u64 = 10;

/// `h:mm:ss`.
fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Open the checkpoint at `path`, refusing one written under another config than `cfg`
/// (the error lists the differences, then `remedy`).
fn open_checkpoint_of(
    cfg: &TrainConfig,
    path: &Path,
    remedy: &str,
) -> Result<checkpoint::Checkpoint> {
    let ck = checkpoint::Checkpoint::open(path)?;
    let saved: TrainConfig = ck.meta_json("config")?;
    let diff = cfg.differences(&saved);
    if !diff.is_empty() {
        return Err(Error::Config(format!(
            "{}: checkpoint is from a different config ({}); {remedy}",
            path.display(),
            diff.join("; ")
        )));
    }
    Ok(ck)
}

/// Train (or resume) a model per `cfg` on device `ops`, writing checkpoints and results into
/// `opts.out_dir`.
pub fn run<O: Ops>(ops: O, cfg: &TrainConfig, opts: &RunOptions) -> Result<TrainResults> {
    cfg.validate()?;
    // An out-of-memory error on the device then names the run it happened in.
    ops.set_context(&format!(
        "training {} (L{} H{} d{} B{} T{})",
        cfg.corpus.label(),
        cfg.n_layer,
        cfg.n_head,
        cfg.d_model,
        cfg.batch,
        cfg.seq_len
    ));
    // Memory: a lower bound before the corpus is read (a two-id vocabulary), so an absurd
    // batch fails at once, then the estimate with the real vocabulary.
    let available = match ops.memory() {
        Some(m) => m.device_free_bytes,
        None => crate::io::available_memory_bytes(),
    };
    let check_memory = |vocab: usize| {
        let need =
            cfg.model_config(vocab)
                .training_bytes(cfg.batch, cfg.seq_len, !cfg.tag_bias.is_off());
        crate::io::check_memory(
            &format!(
                "training (B {} × T {}, {} layers, d_model {}, vocabulary {vocab})",
                cfg.batch, cfg.seq_len, cfg.n_layer, cfg.d_model
            ),
            need,
            available,
            "lower --batch, --seq-len or --d-model",
        )
    };
    check_memory(2)?;
    let RunData {
        vocab,
        train,
        valid,
        test,
    } = RunData::load(cfg)?;
    check_memory(vocab.len())?;
    // Compat files and treebanks are read here, before anything is written.
    let plan = MaskPlan::new(cfg, &vocab)?;
    let mcfg = cfg.model_config(vocab.len());
    let mut model = cfg.new_model(ops, vocab.len())?;
    let dir = &opts.out_dir;
    let ckpt_path = dir.join(CKPT);
    let mut rng = data_rng(cfg);
    let mut results = TrainResults {
        format: 1,
        command: opts.command.clone(),
        config: cfg.clone(),
        model: mcfg,
        num_params: model.num_params(),
        corpus: cfg.corpus.label(),
        tags: cfg.tags_label(),
        git_commit: crate::provenance::git_commit(),
        device: model.ops.label(),
        cpu: crate::provenance::cpu_summary(),
        started_unix: unix_now(),
        finished: false,
        steps_done: 0,
        train_tokens: train.len(),
        valid_tokens: valid.len(),
        test_tokens: test.len(),
        unigram_valid_perplexity: vocab.unigram_perplexity(&train, &valid),
        train_curve: vec![],
        eval_curve: vec![],
        final_valid_perplexity: None,
        final_test_perplexity: None,
        tokens_per_sec: 0.0,
        train_seconds: 0.0,
        peak_rss_bytes: None,
        device_memory: None,
    };
    if opts.resume && ckpt_path.is_file() {
        let ck = open_checkpoint_of(cfg, &ckpt_path, "use another --out or drop --resume")?;
        let saved_vocab: usize = ck.meta_json("vocab_size")?;
        if saved_vocab != vocab.len() {
            return Err(Error::Config(format!(
                "{}: checkpoint vocabulary has {saved_vocab} ids, the corpus now gives {}",
                ckpt_path.display(),
                vocab.len()
            )));
        }
        ck.restore(&mut model)?;
        rng = ck.meta_json("rng")?;
        results.steps_done = ck.meta_json("step")?;
        results.train_curve = ck.meta_json("train_curve")?;
        results.eval_curve = ck.meta_json("eval_curve")?;
        results.started_unix = ck.meta_json("started_unix")?;
        // The timed steps so far (absent in checkpoints from before it was recorded).
        if let Ok((secs, tokens)) = ck.meta_json::<(f64, u64)>("timed") {
            results.train_seconds = secs;
            results.tokens_per_sec = if secs > 0.0 {
                tokens as f64 / secs
            } else {
                0.0
            };
        }
    } else if !opts.resume && ckpt_path.exists() {
        return Err(Error::Config(format!(
            "{} exists: pass --resume to continue that run, or choose another --out",
            ckpt_path.display()
        )));
    }
    vocab.save(&dir.join("vocab.json"))?;

    let save = |model: &Gpt<O>, rng: &Rng, r: &TrainResults| -> Result<()> {
        let mut meta = HashMap::new();
        let j = |v: serde_json::Result<String>| {
            v.map_err(|e| Error::Config(format!("checkpoint metadata: {e}")))
        };
        meta.insert("config".into(), j(serde_json::to_string(cfg))?);
        meta.insert("model".into(), j(serde_json::to_string(&r.model))?);
        meta.insert("vocab_size".into(), r.model.vocab.to_string());
        meta.insert("rng".into(), j(serde_json::to_string(rng))?);
        meta.insert("step".into(), r.steps_done.to_string());
        meta.insert(
            "train_curve".into(),
            j(serde_json::to_string(&r.train_curve))?,
        );
        meta.insert(
            "eval_curve".into(),
            j(serde_json::to_string(&r.eval_curve))?,
        );
        meta.insert("started_unix".into(), r.started_unix.to_string());
        meta.insert("git_commit".into(), r.git_commit.clone());
        let tokens = (r.tokens_per_sec * r.train_seconds).round() as u64;
        meta.insert(
            "timed".into(),
            j(serde_json::to_string(&(r.train_seconds, tokens)))?,
        );
        checkpoint::save(&ckpt_path, model, meta)?;
        write_results(dir, r)
    };

    let (b, t) = (cfg.batch, cfg.seq_len);
    let first = results.steps_done + 1;
    let last = match opts.stop_after {
        Some(n) => cfg.steps.min(results.steps_done + n),
        None => cfg.steps,
    };
    let pb = if opts.progress {
        indicatif::ProgressBar::new(cfg.steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| Error::Config(format!("progress bar template: {e}")))?
            .progress_chars("=> "),
    );
    pb.set_position(results.steps_done as u64);
    // Resumed runs carry the time and tokens of the steps timed before the interruption.
    let mut timed = results.train_seconds;
    let mut timed_tokens = (results.tokens_per_sec * results.train_seconds).round() as usize;
    // Without a terminal (a log file, a batch job) the bar draws nothing: plain lines instead.
    let log_lines = opts.progress && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = std::time::Instant::now();
    let run_t0 = std::time::Instant::now();
    for step in first..=last {
        // The backend's timer: CUDA events on a GPU (device time of the step's work), the
        // wall clock on the CPU.
        let timer = model.ops.start_timer()?;
        let rec = train_step(&mut model, cfg, &plan, &train, &mut rng, step, step)?;
        let dt = timer.stop()?;
        timed += dt;
        timed_tokens += b * t;
        let (loss, lr) = (rec.loss, rec.lr);
        results.train_curve.push(rec);
        results.steps_done = step;
        pb.set_position(step as u64);
        pb.set_message(format!(
            "loss {:.3} lr {:.2e} {:.0} tok/s",
            loss,
            lr,
            timed_tokens as f64 / timed
        ));
        if log_lines && (last_line.elapsed().as_secs() >= LOG_EVERY_SECS || step == last) {
            last_line = std::time::Instant::now();
            let done = (step + 1 - first) as f64;
            let eta = run_t0.elapsed().as_secs_f64() / done * (last - step) as f64;
            eprintln!(
                "step {step}/{}  loss {loss:.4}  lr {lr:.2e}  {:.0} tokens/s  ETA {}",
                cfg.steps,
                timed_tokens as f64 / timed.max(1e-9),
                hms(eta)
            );
        }
        let at_end = step == cfg.steps;
        if (cfg.eval_every > 0 && step % cfg.eval_every == 0) || at_end {
            let s = evaluate(&mut model, &plan, &valid, b, t, Some(cfg.eval_tokens))?;
            let rec = eval_record(step, "valid", s);
            let line = format!(
                "step {step:>6}  train loss {:.4}  valid loss {:.4}  ppl {:.2}",
                loss, rec.loss, rec.perplexity
            );
            if log_lines {
                eprintln!("{line}");
            } else {
                pb.println(line);
            }
            results.eval_curve.push(rec);
        }
        if (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0) || at_end || step == last
        {
            results.tokens_per_sec = timed_tokens as f64 / timed.max(1e-9);
            results.train_seconds = timed;
            results.peak_rss_bytes = crate::io::peak_rss_bytes();
            results.device_memory = model.ops.memory();
            save(&model, &rng, &results)?;
        }
    }
    pb.finish_and_clear();
    if timed > 0.0 {
        results.tokens_per_sec = timed_tokens as f64 / timed;
        results.train_seconds = timed;
    }
    if results.steps_done == cfg.steps {
        let v = evaluate(&mut model, &plan, &valid, b, t, None)?;
        let te = evaluate(&mut model, &plan, &test, b, t, None)?;
        results.final_valid_perplexity = Some(v.mean().exp());
        results.final_test_perplexity = Some(te.mean().exp());
        results
            .eval_curve
            .push(eval_record(cfg.steps, "valid(full)", v));
        results
            .eval_curve
            .push(eval_record(cfg.steps, "test(full)", te));
        results.finished = true;
    }
    results.peak_rss_bytes = crate::io::peak_rss_bytes();
    results.device_memory = model.ops.memory();
    write_results(dir, &results)?;
    Ok(results)
}

/// Training continued past a finished run's budget at the schedule's floor learning rate,
/// evaluated on the run's cadence and validation subset: how many steps an arm needs to reach
/// a target it missed within the budget (steps to target, censored at the extension's end).
/// Everything up to the budget — the final perplexities included — is the run's own, so the
/// like-for-like comparison at the budget is untouched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    /// Steps trained past `config.steps`.
    pub steps: u32,
    /// The (constant) learning rate of those steps: the schedule's floor.
    pub lr: f32,
    /// Validation evaluations at the run's cadence past the budget (split `valid`, the same
    /// `eval_tokens` subset as the run's curve), the last at `config.steps + steps`.
    pub eval_curve: Vec<EvalRecord>,
}

/// Continue the finished run in `dir` (its checkpoint at step `cfg.steps`, which is left as it
/// is) for `extra` steps at the floor learning rate, with the run's data order, mask and
/// optimiser state carried on; see [`Extension`]. Nothing is written: an interrupted extension
/// starts again from the budget's checkpoint.
pub fn extend<O: Ops>(
    ops: O,
    cfg: &TrainConfig,
    dir: &Path,
    extra: u32,
    progress: bool,
) -> Result<Extension> {
    cfg.validate()?;
    let path = dir.join(CKPT);
    let ck = open_checkpoint_of(cfg, &path, "only the run's own config extends it")?;
    let done: u32 = ck.meta_json("step")?;
    if done != cfg.steps {
        return Err(Error::Config(format!(
            "{}: the run stopped at step {done} of {}; only a finished run is extended",
            path.display(),
            cfg.steps
        )));
    }
    let data = RunData::load(cfg)?;
    let plan = MaskPlan::new(cfg, &data.vocab)?;
    let mut model = cfg.new_model(ops, data.vocab.len())?;
    ck.restore(&mut model)?;
    let mut rng: Rng = ck.meta_json("rng")?;
    let (b, t) = (cfg.batch, cfg.seq_len);
    let end = cfg.steps + extra;
    let mut out = Extension {
        steps: extra,
        lr: schedule::lr_at(end, cfg.steps, cfg.warmup, cfg.lr, cfg.min_lr_frac),
        eval_curve: vec![],
    };
    let log_lines = progress && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = std::time::Instant::now();
    for step in cfg.steps + 1..=end {
        let rec = train_step(&mut model, cfg, &plan, &data.train, &mut rng, step, step)?;
        if (cfg.eval_every > 0 && step % cfg.eval_every == 0) || step == end {
            let s = evaluate(&mut model, &plan, &data.valid, b, t, Some(cfg.eval_tokens))?;
            out.eval_curve.push(eval_record(step, "valid", s));
        }
        if log_lines && (last_line.elapsed().as_secs() >= LOG_EVERY_SECS || step == end) {
            last_line = std::time::Instant::now();
            eprintln!(
                "extension step {step}/{end}  loss {:.4}  lr {:.2e}",
                rec.loss, rec.lr
            );
        }
    }
    Ok(out)
}
