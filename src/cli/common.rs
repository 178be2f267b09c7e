//! What several subcommands share: corpus, tags and device flags, and the backend chosen
//! at run time.

use crate::backend::cpu::Cpu;
use crate::backend::cuda::ops::CudaOps;
use crate::backend::Ops;
use crate::data::{CorpusSource, TagsChoice, Tokenizer};
use crate::ling::compat_choice::{CompatChoice, Refinement};
use crate::mask::asa::CrossSentence;
use crate::train::TrainConfig;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum CorpusKind {
    /// The embedded probabilistic grammar with gold UPOS tags and heads.
    Synthetic,
    /// WikiText-2: a directory with wiki.{train,valid,test}.tokens (--data).
    Wikitext2,
    /// A UD treebank: a directory with *-ud-{train,dev,test}.conllu (--data).
    Conllu,
}

/// `--device auto|cpu|cuda|cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceArg {
    /// CUDA when the driver, a device and the embedded kernels all work, else the CPU (with
    /// the reason printed).
    Auto,
    /// The CPU backend.
    Cpu,
    /// The CUDA backend on GPU N (an error when it cannot be used).
    Cuda(usize),
}

pub(crate) fn parse_device(s: &str) -> std::result::Result<DeviceArg, String> {
    match s {
        "auto" => Ok(DeviceArg::Auto),
        "cpu" => Ok(DeviceArg::Cpu),
        "cuda" => Ok(DeviceArg::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceArg::Cuda)
            .ok_or_else(|| format!("expected auto, cpu, cuda or cuda:N, got {s:?}")),
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct CorpusArgs {
    /// Text source.
    #[arg(long, value_enum, default_value = "synthetic")]
    pub(crate) corpus: CorpusKind,
    /// Directory of the corpus files (wikitext2, conllu).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Training sentences generated for the synthetic corpus (valid and test get a tenth;
    /// default 40000).
    #[arg(long)]
    pub(crate) sentences: Option<usize>,
    /// Seed of the synthetic corpus (default 1).
    #[arg(long)]
    pub(crate) corpus_seed: Option<u64>,
}

/// `--tokenizer word|gpt2`.
pub(crate) fn parse_tokenizer(s: &str) -> std::result::Result<Tokenizer, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

/// `--tags builtin|rules|gold|model:PATH`.
pub(crate) fn parse_tags(s: &str) -> std::result::Result<TagsChoice, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

/// `--compat builtin|derived:TREEBANK[@COVERAGE]|FILE`.
pub(crate) fn parse_compat(s: &str) -> std::result::Result<CompatChoice, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

/// `--refine binding`.
pub(crate) fn parse_refine(s: &str) -> std::result::Result<Refinement, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

/// Where a training run's tags and compatibility matrix come from (train, experiment,
/// reproduce).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct TagArgs {
    /// UPOS tags of the ASA mask, nulls and tag bias: builtin (the default; a causal tagger:
    /// the embedded English model, or for the synthetic corpus one trained on its grammar),
    /// rules, model:PATH (from `asa train-tagger`), or gold (refused for masked or
    /// tag-biased training: gold tags leak the future).
    #[arg(long, value_parser = parse_tags)]
    pub(crate) tags: Option<TagsChoice>,
    /// Allow --tags gold in training, for a study of the leak (the run is labelled leaky).
    #[arg(long)]
    pub(crate) allow_gold_train: bool,
    /// Compatibility matrix: builtin (default), derived:TREEBANK[@COVERAGE] (a CoNLL-U file
    /// or UD directory; COVERAGE in (0, 1] is the share of arcs the kept pairs cover), or a
    /// compat file from `asa derive-compat` (one matrix or one per head).
    #[arg(long, value_parser = parse_compat)]
    pub(crate) compat: Option<CompatChoice>,
    /// Word-level refinements of the ASA mask (comma-separated): binding.
    #[arg(long, value_delimiter = ',', value_parser = parse_refine)]
    pub(crate) refine: Vec<Refinement>,
    /// What the ASA mask does with keys in earlier sentences of a window: compat (the default:
    /// the tag rule, as the seed's mask), allow (all allowed: the rule acts within sentences
    /// only), block (none: attention stays in the sentence). The nulls match the result.
    #[arg(long, value_parser = parse_cross_sentence)]
    pub(crate) cross_sentence: Option<CrossSentence>,
}

/// `--cross-sentence compat|allow|block`.
pub(crate) fn parse_cross_sentence(s: &str) -> std::result::Result<CrossSentence, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

impl TagArgs {
    /// Set the flags that were given on `cfg`.
    pub(crate) fn apply(&self, cfg: &mut TrainConfig) {
        if let Some(t) = &self.tags {
            cfg.tags = t.clone();
        }
        cfg.allow_gold_train |= self.allow_gold_train;
        if let Some(c) = &self.compat {
            cfg.compat = c.clone();
        }
        if !self.refine.is_empty() {
            cfg.refine = self.refine.clone();
        }
        if let Some(c) = self.cross_sentence {
            cfg.cross_sentence = c;
        }
    }
}

impl CorpusArgs {
    pub(crate) fn source(&self) -> Result<CorpusSource> {
        let dir = || {
            self.data.clone().with_context(|| {
                format!(
                    "--corpus {} needs --data DIR",
                    self.corpus
                        .to_possible_value()
                        .map_or_else(String::new, |v| v.get_name().to_string())
                )
            })
        };
        let name = self
            .corpus
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string());
        // A flag that does not apply to the chosen corpus would be ignored: refuse it.
        match self.corpus {
            CorpusKind::Synthetic => {
                if let Some(d) = &self.data {
                    bail!(
                        "--data {} does not apply to --corpus synthetic (the embedded grammar); \
                         add --corpus wikitext2 or --corpus conllu to read it",
                        d.display()
                    );
                }
            }
            _ => {
                for (flag, given) in [
                    ("--sentences", self.sentences.is_some()),
                    ("--corpus-seed", self.corpus_seed.is_some()),
                ] {
                    if given {
                        bail!("{flag} applies to --corpus synthetic only, not --corpus {name}");
                    }
                }
            }
        }
        Ok(match self.corpus {
            CorpusKind::Synthetic => CorpusSource::Synthetic {
                sentences: self.sentences.unwrap_or(40_000),
                seed: self.corpus_seed.unwrap_or(1),
            },
            CorpusKind::Wikitext2 => CorpusSource::Wikitext2 { dir: dir()? },
            CorpusKind::Conllu => CorpusSource::Conllu { dir: dir()? },
        })
    }
}

/// The library's default run, so the CLI's defaults and `TrainConfig::default()` never drift.
pub(crate) fn defaults() -> TrainConfig {
    TrainConfig::default()
}

/// A backend chosen at run time; [`on_device!`] runs generic code on either.
pub(crate) enum Device {
    Cpu(Cpu),
    Cuda(Box<CudaOps>),
}

/// Run `$body` with `$ops` bound to the selected backend (each arm monomorphises it).
macro_rules! on_device {
    ($dev:expr, |$ops:ident| $body:expr) => {
        match $dev {
            Device::Cpu($ops) => $body,
            Device::Cuda($ops) => {
                let $ops = *$ops;
                $body
            }
        }
    };
}

/// Open the backend `d` asks for. `auto` takes CUDA only when the driver library is present
/// (checked before any CUDA call), a device opens and the kernels were built, and otherwise
/// says in one line why it uses the CPU; an explicit `cuda` that cannot work is an error.
pub(crate) fn select_device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu(Cpu)),
        DeviceArg::Cuda(n) => CudaOps::new(n)
            .map(|o| Device::Cuda(Box::new(o)))
            .with_context(|| format!("--device cuda:{n}")),
        DeviceArg::Auto => {
            if !crate::backend::cuda::libcuda_present() {
                eprintln!("device: cpu (no NVIDIA driver library on this machine)");
                return Ok(Device::Cpu(Cpu));
            }
            match CudaOps::new(0) {
                Ok(ops) => {
                    eprintln!("device: {}", ops.label());
                    Ok(Device::Cuda(Box::new(ops)))
                }
                Err(e) => {
                    eprintln!("device: cpu (CUDA not usable: {e})");
                    Ok(Device::Cpu(Cpu))
                }
            }
        }
    }
}
