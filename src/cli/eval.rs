//! `asa-lth eval`: a trained run's perplexity on a split.

use super::common::*;
use crate::data::Vocab;
use crate::model::GptConfig;
use crate::train::{self, checkpoint::Checkpoint, TrainConfig};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct EvalArgs {
    /// A run directory written by `asa-lth train`.
    #[arg(long)]
    pub(crate) run: PathBuf,
    /// Split to score.
    #[arg(long, value_enum, default_value = "test")]
    pub(crate) split: Split,
    /// Project the FFN weights to 2:4 by magnitude (one shot, no fine-tuning) and run their
    /// forward from the compressed form (the 2:4 GEMM).
    #[arg(long)]
    pub(crate) ffn24: bool,
    /// Device to evaluate on: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub(crate) device: DeviceArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Split {
    Train,
    Valid,
    Test,
}

pub(crate) fn eval_cmd(a: EvalArgs) -> Result<()> {
    let ck = Checkpoint::open(&a.run.join("checkpoint.safetensors"))?;
    let cfg: TrainConfig = ck.meta_json("config")?;
    let mcfg: GptConfig = ck.meta_json("model")?;
    let vocab = Vocab::load(&a.run.join("vocab.json"))?;
    if vocab.len() != mcfg.vocab {
        bail!(
            "{}: vocabulary has {} ids but the checkpoint's model expects {}",
            a.run.join("vocab.json").display(),
            vocab.len(),
            mcfg.vocab
        );
    }
    let corpus = cfg.corpus.load()?;
    let sents = match a.split {
        Split::Train => &corpus.train,
        Split::Valid => &corpus.valid,
        Split::Test => &corpus.test,
    };
    let stream = cfg.encode(&vocab, sents)?;
    if cfg.model_config(vocab.len()) != mcfg {
        bail!(
            "{}: the checkpoint's model {mcfg:?} is not the one its config describes",
            a.run.join("checkpoint.safetensors").display()
        );
    }
    let plan = train::MaskPlan::new(&cfg, &vocab)?;
    let device = select_device(a.device)?;
    let s = on_device!(device, |ops| {
        // The run's own model (its tag bias included), restored from the checkpoint.
        let mut model = cfg.new_model(ops, vocab.len())?;
        ck.restore(&mut model)?;
        if a.ffn24 {
            model.enable_ffn24()?;
        }
        train::evaluate(&mut model, &plan, &stream, cfg.batch, cfg.seq_len, None)
    })?;
    println!(
        "{}{}: loss {:.4}, perplexity {:.2} over {} tokens",
        a.split
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string()),
        if a.ffn24 { " (FFN 2:4-compressed)" } else { "" },
        s.mean(),
        s.mean().exp(),
        s.count
    );
    Ok(())
}
