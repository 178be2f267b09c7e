//! `asa-lth reproduce`, `experiment` and `report`: the experiments as resumable cells.

use super::common::*;
use crate::backend::cpu::Cpu;
use crate::backend::cuda::ops::CudaOps;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct ReproduceArgs {
    /// Text source (default: the embedded synthetic corpus).
    #[arg(long, value_enum)]
    pub(crate) corpus: Option<CorpusKind>,
    /// Directory of the corpus files (wikitext2, conllu).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) tags: TagArgs,
    /// small (the default): the embedded default (minutes on a CPU); paper: the published
    /// configuration (on WikiText-2: GPT-2 BPE).
    #[arg(long)]
    pub(crate) scale: Option<String>,
    /// A configuration file (JSON, as written by --write-config) instead of the preset.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Write the configuration that would run to this file and stop (to edit and pass back
    /// with --config).
    #[arg(long)]
    pub(crate) write_config: Option<PathBuf>,
    /// Only the experiments named (comma-separated: e1,e2).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Run only shard i of n of the cell list (0-based), e.g. `--shard $SLURM_ARRAY_TASK_ID/8`.
    #[arg(long, default_value = "0/1")]
    pub(crate) shard: String,
    /// Run directory (cells, config.json) — shared by all shards.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Where to write the report (default: <out>/report).
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Device to train on: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub(crate) device: DeviceArg,
    /// No progress output.
    #[arg(long)]
    pub(crate) quiet: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// A run directory written by `asa-lth reproduce`.
    #[arg(long)]
    pub(crate) run: PathBuf,
    /// Output directory (default: <run>/report).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Also write the claims table into this file's findings block of the run (README.md),
    /// between `<!-- findings:begin RUN (asa-lth report --readme) -->` (RUN as given to
    /// --run) and `<!-- findings:end -->`.
    #[arg(long)]
    pub(crate) readme: Option<PathBuf>,
}

pub(crate) fn reproduce_cmd(a: ReproduceArgs) -> Result<()> {
    use crate::experiments::{self, cells::Shard, ReproduceConfig, Scale};
    if let Some(p) = &a.config {
        // The config file decides everything the preset flags would; a flag beside it would
        // be silently ignored, so it is refused.
        let given: Vec<&str> = [
            ("--corpus", a.corpus.is_some()),
            ("--data", a.data.is_some()),
            ("--scale", a.scale.is_some()),
            ("--tags", a.tags.tags.is_some()),
            ("--allow-gold-train", a.tags.allow_gold_train),
            ("--compat", a.tags.compat.is_some()),
            ("--refine", !a.tags.refine.is_empty()),
            ("--cross-sentence", a.tags.cross_sentence.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect();
        if !given.is_empty() {
            bail!(
                "{} contradict{} --config {}: the config file sets them (edit it, or drop \
                 --config to use the preset)",
                given.join(", "),
                if given.len() == 1 { "s" } else { "" },
                p.display()
            );
        }
    }
    let scale_name = a.scale.clone().unwrap_or_else(|| "small".into());
    let scale: Scale = scale_name.parse()?;
    let kind = a.corpus.unwrap_or(CorpusKind::Synthetic);
    let corpus = CorpusArgs {
        corpus: kind,
        data: a.data.clone(),
        sentences: None,
        corpus_seed: None,
    };
    let cfg = match &a.config {
        Some(p) => {
            let text = crate::io::read_file(p)?;
            crate::experiments::parse_config(&text, p)?
        }
        None => {
            let source = corpus.source()?;
            let mut cfg = ReproduceConfig::preset(
                scale,
                match kind {
                    CorpusKind::Synthetic => None,
                    _ => Some(source),
                },
            );
            a.tags.apply(&mut cfg.train);
            cfg
        }
    };
    cfg.validate()?;
    if let Some(p) = &a.write_config {
        let json = serde_json::to_string_pretty(&cfg)?;
        crate::io::write_atomic(p, json.as_bytes())?;
        println!("wrote {}", p.display());
        return Ok(());
    }
    let shard: Shard = a.shard.parse()?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/reproduce-{scale_name}")));
    // Each cell opens its own backend; the first selection decides which kind.
    let summary = match select_device(a.device)? {
        Device::Cpu(_) => experiments::reproduce(|| Ok(Cpu), &cfg, &out, shard, &a.only, !a.quiet)?,
        Device::Cuda(first) => {
            let ordinal = first.ordinal();
            drop(first);
            experiments::reproduce(
                || CudaOps::new(ordinal),
                &cfg,
                &out,
                shard,
                &a.only,
                !a.quiet,
            )?
        }
    };
    println!(
        "{}: {} cells computed, {} already done (shard {}/{})",
        out.display(),
        summary.computed.len(),
        summary.skipped.len(),
        shard.index,
        shard.count
    );
    let report_dir = a.report.unwrap_or_else(|| out.join("report"));
    let command = crate::provenance::command_line();
    let s = experiments::report::write_report(&out, &report_dir, &command)?;
    if !s.cells_missing.is_empty() {
        println!(
            "report is partial: {} cells not computed yet (other shards?)",
            s.cells_missing.len()
        );
    }
    println!("report: {}", report_dir.join("report.md").display());
    Ok(())
}

pub(crate) fn report_cmd(a: ReportArgs) -> Result<()> {
    let out = a.out.unwrap_or_else(|| a.run.join("report"));
    // The report quotes the command that reproduces the cells (not this one): the run's own
    // config.json determines every cell.
    let command = format!(
        "asa-lth reproduce --config {} --out {}",
        a.run.join("config.json").display(),
        a.run.display()
    );
    let s = crate::experiments::report::write_report(&a.run, &out, &command)?;
    if let Some(path) = &a.readme {
        use crate::experiments::report::{findings_block, replace_findings};
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let run = a.run.display().to_string();
        let new = replace_findings(&text, &run, &findings_block(&run, &s), path)?;
        crate::io::write_atomic(path, new.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("findings block of {} rewritten", path.display());
    }
    println!(
        "{} cells, {} missing; report: {}",
        s.cells_done.len(),
        s.cells_missing.len(),
        out.join("report.md").display()
    );
    Ok(())
}
