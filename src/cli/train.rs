//! `asa-lth train`: train (or resume) a model.

use super::common::*;
use crate::data::Tokenizer;
use crate::train::{self, RunOptions, TrainConfig};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) corpus: CorpusArgs,
    #[command(flatten)]
    pub(crate) tags: TagArgs,
    /// Tokenizer: word (one token per word) or gpt2 (BPE; perplexity per BPE token).
    #[arg(long, default_value = "word", value_parser = parse_tokenizer)]
    pub(crate) tokenizer: Tokenizer,
    /// Output directory (results.json, checkpoint.safetensors, vocab.json).
    #[arg(long, default_value = "runs/default")]
    pub(crate) out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Device to train on: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub(crate) device: DeviceArg,
    /// Words seen fewer times in training map to <unk>.
    #[arg(long, default_value_t = defaults().min_count)]
    pub(crate) min_count: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = defaults().n_layer)]
    pub(crate) layers: usize,
    /// Attention heads (must divide --d-model).
    #[arg(long, default_value_t = defaults().n_head)]
    pub(crate) heads: usize,
    /// Model width.
    #[arg(long, default_value_t = defaults().d_model)]
    pub(crate) d_model: usize,
    /// Windows per step (B).
    #[arg(long, default_value_t = defaults().batch)]
    pub(crate) batch: usize,
    /// Tokens per window (T), also the model context.
    #[arg(long, default_value_t = defaults().seq_len)]
    pub(crate) seq_len: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = defaults().steps)]
    pub(crate) steps: u32,
    /// Peak learning rate.
    #[arg(long, default_value_t = defaults().lr)]
    pub(crate) lr: f32,
    /// Final learning rate as a fraction of --lr (cosine decay).
    #[arg(long, default_value_t = defaults().min_lr_frac)]
    pub(crate) min_lr_frac: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = defaults().warmup)]
    pub(crate) warmup: u32,
    /// AdamW decoupled weight decay (matrices only).
    #[arg(long, default_value_t = defaults().opt.weight_decay)]
    pub(crate) weight_decay: f32,
    /// Clip the global gradient norm to this (0 disables).
    #[arg(long, default_value_t = defaults().opt.grad_clip)]
    pub(crate) grad_clip: f32,
    /// Evaluate on validation text every N steps (0: only at the end).
    #[arg(long, default_value_t = defaults().eval_every)]
    pub(crate) eval_every: u32,
    /// Validation tokens per periodic evaluation (the final one scores the whole split).
    #[arg(long, default_value_t = defaults().eval_tokens)]
    pub(crate) eval_tokens: usize,
    /// Checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = defaults().checkpoint_every)]
    pub(crate) checkpoint_every: u32,
    /// Seed for initialisation and data order.
    #[arg(long, default_value_t = defaults().seed)]
    pub(crate) seed: u64,
    /// Stop after this many steps in this invocation (resume later with --resume).
    #[arg(long)]
    pub(crate) stop_after: Option<u32>,
    /// Attention mask (with causality) for training and evaluation: none (dense), asa (from
    /// the corpus's UPOS tags and the built-in compatibility matrix), null-rows / null-dist
    /// (random masks matching the ASA mask's per-row counts / also its distance histogram).
    #[arg(long, value_enum, default_value = "none")]
    pub(crate) attn_mask: AttnMaskArg,
    /// Hide the progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum AttnMaskArg {
    None,
    Asa,
    NullRows,
    NullDist,
}

impl From<AttnMaskArg> for train::AttnMaskKind {
    fn from(a: AttnMaskArg) -> Self {
        match a {
            AttnMaskArg::None => train::AttnMaskKind::None,
            AttnMaskArg::Asa => train::AttnMaskKind::Asa,
            AttnMaskArg::NullRows => train::AttnMaskKind::NullRows,
            AttnMaskArg::NullDist => train::AttnMaskKind::NullDist,
        }
    }
}

pub(crate) fn train_cmd(a: TrainArgs) -> Result<()> {
    let mut cfg = TrainConfig {
        corpus: a.corpus.source()?,
        tokenizer: a.tokenizer,
        min_count: a.min_count,
        n_layer: a.layers,
        n_head: a.heads,
        d_model: a.d_model,
        batch: a.batch,
        seq_len: a.seq_len,
        steps: a.steps,
        lr: a.lr,
        min_lr_frac: a.min_lr_frac,
        warmup: a.warmup,
        opt: crate::model::AdamWConfig {
            weight_decay: a.weight_decay,
            grad_clip: a.grad_clip,
            ..Default::default()
        },
        eval_every: a.eval_every,
        eval_tokens: a.eval_tokens,
        checkpoint_every: a.checkpoint_every,
        seed: a.seed,
        attn_mask: a.attn_mask.into(),
        ..TrainConfig::default()
    };
    a.tags.apply(&mut cfg);
    cfg.validate()?;
    let ckpt = a.out.join("checkpoint.safetensors");
    if a.resume && !ckpt.is_file() {
        bail!(
            "--resume: {} does not exist, so there is no run to continue in --out {} (a typo? \
             drop --resume to start a new run)",
            ckpt.display(),
            a.out.display()
        );
    }
    let device = select_device(a.device)?;
    let opts = RunOptions {
        out_dir: a.out.clone(),
        resume: a.resume,
        progress: !a.quiet,
        command: crate::provenance::command_line(),
        stop_after: a.stop_after,
    };
    let r = on_device!(device, |ops| train::run(ops, &cfg, &opts))?;
    println!(
        "{} steps on {} ({}), {} parameters, {:.0} tokens/s",
        r.steps_done, r.device, r.corpus, r.num_params, r.tokens_per_sec
    );
    if let (Some(v), Some(t)) = (r.final_valid_perplexity, r.final_test_perplexity) {
        println!(
            "perplexity: valid {v:.2}, test {t:.2} (unigram baseline on valid: {:.2})",
            r.unigram_valid_perplexity
        );
    } else {
        println!("stopped at step {}; continue with --resume", r.steps_done);
    }
    println!("results: {}", a.out.join("results.json").display());
    Ok(())
}
