//! The `asa-lth` command line: one module per subcommand (`asa` holds its own), the shared
//! flags in `common`; `src/main.rs` only calls [`main`].
//!
//! One vocabulary across subcommands: `--run DIR` is a run directory read, `--out DIR` a
//! directory written, `--out-file FILE` a file written, `--json FILE` a JSON report written;
//! `--tags` says where tags come from (`asa tag-eval --tagger` names the taggers to score);
//! `--seed` is a run's seed, and other seeds say what they seed (`--corpus-seed`,
//! `--shuffle-seed`, `--null-seed`); `--device` wherever a model runs.

#[macro_use]
mod common;
pub mod asa;
mod bench;
mod eval;
mod info;
mod reproduce;
mod train;

use bench::*;
use common::*;
use eval::*;
use info::*;
use reproduce::*;
use train::*;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

/// Structured-sparsity kernels and the Lottery Ticket vs Atomic Semantic Attention
/// experiments.
#[derive(Parser, Debug)]
#[command(name = "asa-lth", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Show the devices found (or why none), whether CUDA kernels were built and for which
    /// architectures, and versions.
    Info {
        /// Also print per-device details and the build toolchain.
        #[arg(long)]
        verbose: bool,
    },
    /// Train a model (the main job; defaults: the embedded synthetic corpus, the paper's
    /// 2-layer, 2-head, d_model 128 model). Writes results.json, vocab.json and
    /// checkpoint.safetensors into --out.
    Train(TrainArgs),
    /// Evaluate a trained run's checkpoint (--run) on a split: token-weighted perplexity.
    Eval(EvalArgs),
    /// Print sentences of the embedded synthetic corpus as CoNLL-U (ID, FORM, UPOS, HEAD), so
    /// they can be read, or fed to `asa-lth asa derive-compat` / `tag-eval`.
    Sample {
        /// Number of sentences.
        #[arg(long, default_value_t = 5)]
        sentences: usize,
        /// Seed of the synthetic corpus.
        #[arg(long, default_value_t = 1)]
        corpus_seed: u64,
    },
    /// Benchmark kernels at the model's shapes on every available device: median and spread
    /// over repeats, ratio to the copy-bandwidth and GEMM rooflines measured in the same run.
    Bench(BenchArgs),
    /// ASA masks: derive compatibility matrices, train and score taggers, mask statistics
    /// and pictures.
    #[command(subcommand)]
    Asa(AsaCommand),
    /// Run the LTH/ASA experiments (E1–E5) as independent result cells into a run directory:
    /// finished cells are skipped, so an interrupted run resumes and shards run in parallel.
    /// Writes the report at the end.
    Reproduce(ReproduceArgs),
    /// One experiment's cells (e1 … e5) — `reproduce --only NAME` — with the same flags, e.g.
    /// `asa-lth experiment e3 --config e3.json --out runs/x`.
    Experiment {
        /// e1, e2, e3, e4 or e5.
        name: String,
        #[command(flatten)]
        args: ReproduceArgs,
    },
    /// Build report.md, summary.json and SVG plots from a run directory's finished cells.
    Report(ReportArgs),
}

#[derive(Subcommand, Debug)]
pub(crate) enum AsaCommand {
    /// Derive a UPOS compatibility matrix from a treebank's head–dependent tag pairs.
    DeriveCompat(crate::cli::asa::DeriveCompatArgs),
    /// Score taggers on a CoNLL-U file (the built-in one, or taggers trained on --train):
    /// overall, known/unknown, per-tag and per-genre accuracy.
    TagEval(crate::cli::asa::TagEvalArgs),
    /// Train a lexicon or perceptron tagger and save it (JSON, or the built-in model's
    /// compressed format).
    TrainTagger(crate::cli::asa::TrainTaggerArgs),
    /// Causal UPOS tags for whitespace-tokenised text (one sentence per line), per word or per
    /// GPT-2 piece.
    Tag(crate::cli::asa::TagArgs),
    /// Mask statistics on a corpus split: density, tile classes, gold-arc coverage, nulls.
    Stats {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        args: crate::cli::asa::StatsArgs,
    },
    /// Tiles a block-sparse kernel could skip under the ASA mask at T 128…8192, in text
    /// order and regrouped by tag, against the causal mask: the best speed-up any
    /// tile-skipping kernel can get from it.
    Tiles {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        args: crate::cli::asa::TilesArgs,
    },
    /// Draw one sentence's mask as an SVG heatmap (and as text).
    Show {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        args: crate::cli::asa::ShowArgs,
    },
}

pub(crate) fn asa_cmd(c: AsaCommand) -> Result<()> {
    use crate::cli::asa;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match c {
        AsaCommand::DeriveCompat(a) => asa::derive_compat(&a, &mut out),
        AsaCommand::TagEval(a) => asa::tag_eval(&a, &mut out),
        AsaCommand::TrainTagger(a) => asa::train_tagger(&a, &mut out),
        AsaCommand::Tag(a) => asa::tag(&a, &mut std::io::stdin().lock(), &mut out),
        AsaCommand::Stats { corpus, args } => asa::stats(&corpus.source()?, &args, &mut out),
        AsaCommand::Tiles { corpus, args } => asa::tiles(&corpus.source()?, &args, &mut out),
        AsaCommand::Show { corpus, args } => asa::show(&corpus.source()?, &args, &mut out),
    }
}

/// Run the command line (the binary's `main`).
pub fn main() {
    if let Err(e) = run() {
        // The chain of causes, each once: an I/O error's message already ends with its OS
        // error, which is also its source.
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg.push_str(": ");
                msg.push_str(&c);
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

pub(crate) fn run() -> Result<()> {
    let cli = Cli::parse();
    // A forced instruction-set level the CPU lacks, or no level at all, stops here.
    crate::backend::cpu::isa::requested().map_err(anyhow::Error::msg)?;
    match cli.command {
        Command::Info { verbose } => info(verbose),
        Command::Train(a) => train_cmd(a),
        Command::Eval(a) => eval_cmd(a),
        Command::Sample {
            sentences,
            corpus_seed,
        } => sample_cmd(sentences, corpus_seed),
        Command::Bench(a) => bench_cmd(a),
        Command::Asa(c) => asa_cmd(c),
        Command::Reproduce(a) => reproduce_cmd(a),
        Command::Experiment { name, mut args } => {
            if !args.only.is_empty() {
                bail!(
                    "`experiment {name}` runs one experiment; --only {} would contradict it \
                     (use `reproduce --only ...` for several)",
                    args.only.join(",")
                );
            }
            args.only = vec![name];
            reproduce_cmd(args)
        }
        Command::Report(a) => report_cmd(a),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::Parser;

    /// Every `asa-lth …` (or `cargo run --release -- …`) command README shows — inline or in a
    /// code block, without `[optional]`/`a|b`/`…` placeholders — parses: its subcommands and
    /// flags exist and their values are accepted.
    #[test]
    fn readme_examples_parse() {
        let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        let readme = std::fs::read_to_string(std::path::Path::new(&root).join("README.md"))
            .expect("README.md");
        // Code blocks line by line (continuations joined); prose by inline spans, which may
        // cross a line break.
        let mut texts: Vec<String> = Vec::new();
        let mut prose = String::new();
        let mut in_block = false;
        for line in readme.replace("\\\n", " ").lines() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if in_block {
                texts.push(line.trim().trim_start_matches("$ ").to_string());
            } else {
                prose.push_str(line);
                prose.push(' ');
            }
        }
        texts.extend(prose.split('`').skip(1).step_by(2).map(str::to_string));
        let mut candidates = Vec::new();
        for p in &texts {
            let p = p.split(" #").next().unwrap_or(p).trim();
            let p = p
                .split_whitespace()
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .collect::<Vec<_>>()
                .join(" ");
            let rest = p
                .strip_prefix("cargo run --release -- ")
                .or_else(|| p.strip_prefix("asa-lth "));
            if let Some(rest) = rest {
                if !rest.contains(['[', '|', '…', '<', '(']) && !rest.ends_with("...") {
                    candidates.push(rest.to_string());
                }
            }
        }
        candidates.sort();
        candidates.dedup();
        assert!(candidates.len() >= 15, "found only {candidates:?}");
        let bad: Vec<String> = candidates
            .iter()
            .filter_map(|c| {
                let args = std::iter::once("asa-lth").chain(c.split_whitespace());
                let err = Cli::try_parse_from(args).err()?;
                // A bare command name in prose (`asa-lth eval`) names it; it is no example.
                let bare = !c.split_whitespace().any(|w| w.starts_with('-'));
                if bare && err.kind() == clap::error::ErrorKind::MissingRequiredArgument {
                    return None;
                }
                Some(err).map(|e| {
                    format!(
                        "`asa-lth {c}`: {}",
                        e.to_string().lines().next().unwrap_or("")
                    )
                })
            })
            .collect();
        assert!(
            bad.is_empty(),
            "README examples that do not parse:\n{}",
            bad.join("\n")
        );
    }
}
