//! The `asa-lth` command line.

use anyhow::{bail, Context, Result};
use asa_lth::backend::cpu::Cpu;
use asa_lth::backend::cuda::ops::CudaOps;
use asa_lth::backend::Ops;
use asa_lth::data::{CorpusSource, TagsChoice, Tokenizer, Vocab};
use asa_lth::ling::compat_choice::{CompatChoice, Refinement};
use asa_lth::model::GptConfig;
use asa_lth::train::{self, checkpoint::Checkpoint, RunOptions, TrainConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Structured-sparsity kernels and the Lottery Ticket vs Atomic Semantic Attention
/// experiments.
#[derive(Parser, Debug)]
#[command(name = "asa-lth", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Evaluate a trained run's checkpoint on a split (token-weighted perplexity).
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

#[derive(Args, Debug)]
struct ReproduceArgs {
    /// Text source (default: the embedded synthetic corpus).
    #[arg(long, value_enum)]
    corpus: Option<CorpusKind>,
    /// Directory of the corpus files (wikitext2, conllu).
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    tags: TagArgs,
    /// small (the default): the embedded default (minutes on a CPU); paper: the published
    /// configuration (on WikiText-2: GPT-2 BPE).
    #[arg(long)]
    scale: Option<String>,
    /// A configuration file (JSON, as written by --write-config) instead of the preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the configuration that would run to this file and stop (to edit and pass back
    /// with --config).
    #[arg(long)]
    write_config: Option<PathBuf>,
    /// Only the experiments named (comma-separated: e1,e2).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run only shard i of n of the cell list (0-based), e.g. `--shard $SLURM_ARRAY_TASK_ID/8`.
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Run directory (cells, config.json) — shared by all shards.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the report (default: <out>/report).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Device to train on: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// A run directory written by `asa-lth reproduce`.
    #[arg(long)]
    run: PathBuf,
    /// Output directory (default: <run>/report).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Kernel families to run (all when none): copy, gemm, matmul, layernorm, gelu,
    /// attention, xent, adamw, train_step, gemm24, topk, asa_mask.
    kernels: Vec<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Compare with a report written earlier (or by a peer script) and flag changes larger
    /// than the measured spread.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Repeats per figure.
    #[arg(long, default_value_t = 11)]
    samples: usize,
    /// Minimum milliseconds per repeat.
    #[arg(long, default_value_t = 50.0)]
    min_sample_ms: f64,
    /// Write the GPU attention sweep's masks (and index.json) to this directory for
    /// benches/peers/torch_attention.py, and exit without benchmarking.
    #[arg(long)]
    dump_masks: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CorpusKind {
    /// The embedded probabilistic grammar with gold UPOS tags and heads.
    Synthetic,
    /// WikiText-2: a directory with wiki.{train,valid,test}.tokens (--data).
    Wikitext2,
    /// A UD treebank: a directory with *-ud-{train,dev,test}.conllu (--data).
    Conllu,
}

/// `--device auto|cpu|cuda|cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceArg {
    /// CUDA when the driver, a device and the embedded kernels all work, else the CPU (with
    /// the reason printed).
    Auto,
    /// The CPU backend.
    Cpu,
    /// The CUDA backend on GPU N (an error when it cannot be used).
    Cuda(usize),
}

fn parse_device(s: &str) -> std::result::Result<DeviceArg, String> {
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
struct CorpusArgs {
    /// Text source.
    #[arg(long, value_enum, default_value = "synthetic")]
    corpus: CorpusKind,
    /// Directory of the corpus files (wikitext2, conllu).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training sentences generated for the synthetic corpus (valid and test get a tenth;
    /// default 40000).
    #[arg(long)]
    sentences: Option<usize>,
    /// Seed of the synthetic corpus (default 1).
    #[arg(long)]
    corpus_seed: Option<u64>,
}

/// `--tokenizer word|gpt2`.
fn parse_tokenizer(s: &str) -> std::result::Result<Tokenizer, String> {
    s.parse().map_err(|e: asa_lth::Error| e.to_string())
}

/// `--tags builtin|rules|gold|model:PATH`.
fn parse_tags(s: &str) -> std::result::Result<TagsChoice, String> {
    s.parse().map_err(|e: asa_lth::Error| e.to_string())
}

/// `--compat builtin|derived:TREEBANK[@COVERAGE]|FILE`.
fn parse_compat(s: &str) -> std::result::Result<CompatChoice, String> {
    s.parse().map_err(|e: asa_lth::Error| e.to_string())
}

/// `--refine binding`.
fn parse_refine(s: &str) -> std::result::Result<Refinement, String> {
    s.parse().map_err(|e: asa_lth::Error| e.to_string())
}

/// Where a training run's tags and compatibility matrix come from (train, experiment,
/// reproduce).
#[derive(Args, Debug, Clone, Default)]
struct TagArgs {
    /// UPOS tags of the ASA mask, nulls and tag bias: builtin (the default; a causal tagger:
    /// the embedded English model, or for the synthetic corpus one trained on its grammar),
    /// rules, model:PATH (from `asa train-tagger`), or gold (refused for masked or
    /// tag-biased training: gold tags leak the future).
    #[arg(long, value_parser = parse_tags)]
    tags: Option<TagsChoice>,
    /// Allow --tags gold in training, for a study of the leak (the run is labelled leaky).
    #[arg(long)]
    allow_gold_train: bool,
    /// Compatibility matrix: builtin (default), derived:TREEBANK[@COVERAGE] (a CoNLL-U file
    /// or UD directory; COVERAGE in (0, 1] is the share of arcs the kept pairs cover), or a
    /// compat file from `asa derive-compat` (one matrix or one per head).
    #[arg(long, value_parser = parse_compat)]
    compat: Option<CompatChoice>,
    /// Word-level refinements of the ASA mask (comma-separated): binding.
    #[arg(long, value_delimiter = ',', value_parser = parse_refine)]
    refine: Vec<Refinement>,
}

impl TagArgs {
    /// Set the flags that were given on `cfg`.
    fn apply(&self, cfg: &mut TrainConfig) {
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
    }
}

impl CorpusArgs {
    fn source(&self) -> Result<CorpusSource> {
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

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    #[command(flatten)]
    tags: TagArgs,
    /// Tokenizer: word (one token per word) or gpt2 (BPE; perplexity per BPE token).
    #[arg(long, default_value = "word", value_parser = parse_tokenizer)]
    tokenizer: Tokenizer,
    /// Output directory (results.json, checkpoint.safetensors, vocab.json).
    #[arg(long, default_value = "runs/default")]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Device to train on: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
    /// Words seen fewer times in training map to <unk>.
    #[arg(long, default_value_t = defaults().min_count)]
    min_count: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = defaults().n_layer)]
    layers: usize,
    /// Attention heads (must divide --d-model).
    #[arg(long, default_value_t = defaults().n_head)]
    heads: usize,
    /// Model width.
    #[arg(long, default_value_t = defaults().d_model)]
    d_model: usize,
    /// Windows per step (B).
    #[arg(long, default_value_t = defaults().batch)]
    batch: usize,
    /// Tokens per window (T), also the model context.
    #[arg(long, default_value_t = defaults().seq_len)]
    seq_len: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = defaults().steps)]
    steps: u32,
    /// Peak learning rate.
    #[arg(long, default_value_t = defaults().lr)]
    lr: f32,
    /// Final learning rate as a fraction of --lr (cosine decay).
    #[arg(long, default_value_t = defaults().min_lr_frac)]
    min_lr_frac: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = defaults().warmup)]
    warmup: u32,
    /// AdamW decoupled weight decay (matrices only).
    #[arg(long, default_value_t = defaults().opt.weight_decay)]
    weight_decay: f32,
    /// Clip the global gradient norm to this (0 disables).
    #[arg(long, default_value_t = defaults().opt.grad_clip)]
    grad_clip: f32,
    /// Evaluate on validation text every N steps (0: only at the end).
    #[arg(long, default_value_t = defaults().eval_every)]
    eval_every: u32,
    /// Validation tokens per periodic evaluation (the final one scores the whole split).
    #[arg(long, default_value_t = defaults().eval_tokens)]
    eval_tokens: usize,
    /// Checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = defaults().checkpoint_every)]
    checkpoint_every: u32,
    /// Seed for initialisation and data order.
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Stop after this many steps in this invocation (resume later with --resume).
    #[arg(long)]
    stop_after: Option<u32>,
    /// Attention mask (with causality) for training and evaluation: none (dense), asa (from
    /// the corpus's UPOS tags and the built-in compatibility matrix), null-rows / null-dist
    /// (random masks matching the ASA mask's per-row counts / also its distance histogram).
    #[arg(long, value_enum, default_value = "none")]
    attn_mask: AttnMaskArg,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AttnMaskArg {
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

#[derive(Args, Debug)]
struct EvalArgs {
    /// A run directory written by `asa-lth train`.
    #[arg(long)]
    run: PathBuf,
    /// Split to score.
    #[arg(long, value_enum, default_value = "test")]
    split: Split,
    /// Project the FFN weights to 2:4 by magnitude (one shot, no fine-tuning) and run their
    /// forward from the compressed form (the 2:4 GEMM).
    #[arg(long)]
    ffn24: bool,
    /// Device to evaluate on: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Split {
    Train,
    Valid,
    Test,
}

/// The library's default run, so the CLI's defaults and `TrainConfig::default()` never drift.
fn defaults() -> TrainConfig {
    TrainConfig::default()
}

fn main() {
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

fn run() -> Result<()> {
    let cli = Cli::parse();
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

fn info(verbose: bool) -> Result<()> {
    let probe = asa_lth::backend::cuda::probe();
    println!("asa-lth {}", env!("CARGO_PKG_VERSION"));
    println!("cpu: {}", asa_lth::provenance::cpu_summary());
    println!("gpu: {}", probe.one_line_summary());
    println!("tags: {}", asa_lth::ling::tagger::builtin::provenance());
    if verbose {
        println!("{}", probe.details());
    }
    Ok(())
}

/// A backend chosen at run time; [`on_device!`] runs generic code on either.
enum Device {
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
fn select_device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu(Cpu)),
        DeviceArg::Cuda(n) => CudaOps::new(n)
            .map(|o| Device::Cuda(Box::new(o)))
            .with_context(|| format!("--device cuda:{n}")),
        DeviceArg::Auto => {
            if !asa_lth::backend::cuda::libcuda_present() {
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

fn train_cmd(a: TrainArgs) -> Result<()> {
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
        opt: asa_lth::model::AdamWConfig {
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
        command: std::env::args().collect::<Vec<_>>().join(" "),
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

fn eval_cmd(a: EvalArgs) -> Result<()> {
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

fn bench_cmd(a: BenchArgs) -> Result<()> {
    use asa_lth::bench::{self, cases::KERNELS, BenchReport, Figure, Machine, Roofline, Timing};
    if let Some(dir) = &a.dump_masks {
        use bench::attention_cases::{dump_masks, AttnSweep};
        let index = dump_masks(dir, &AttnSweep::gpu())?;
        println!("attention masks: {}", index.display());
        return Ok(());
    }
    for k in &a.kernels {
        if !KERNELS.contains(&k.as_str()) {
            bail!("unknown kernel `{k}`; known: {}", KERNELS.join(", "));
        }
    }
    let baseline: Option<BenchReport> = match &a.baseline {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a benchmark report", p.display()))?,
            )
        }
    };
    if let Some(p) = &a.json {
        asa_lth::io::check_writable(p)?;
    }
    if a.samples < 3 {
        bail!(
            "--samples {}: a median and spread need at least 3 repeats",
            a.samples
        );
    }
    if !(a.min_sample_ms.is_finite() && a.min_sample_ms > 0.0) {
        bail!(
            "--min-sample-ms {}: must be a positive number of milliseconds",
            a.min_sample_ms
        );
    }
    let timing = Timing {
        samples: a.samples,
        min_sample_secs: a.min_sample_ms / 1000.0,
        ..Timing::default()
    };
    // The rooflines are always measured, so every ratio refers to this run.
    let mut wanted = a.kernels.clone();
    if !wanted.is_empty() {
        wanted.extend(["copy".to_string(), "gemm".to_string()]);
    }
    let cases = bench::cpu_cases(&wanted);
    let mut figures: Vec<Figure> = Vec::new();
    let pb = indicatif::ProgressBar::new(cases.len() as u64);
    for mut case in cases {
        pb.set_message(case.name.clone());
        let secs = bench::time_calls(&mut *case.run, timing);
        let (med, spread) = bench::median_spread(&secs);
        figures.push(Figure {
            kernel: case.kernel.to_string(),
            name: case.name,
            device: case.device,
            unit: case.unit.label().to_string(),
            median_secs: med,
            rel_spread: spread,
            samples: secs.len(),
            throughput: case.work / med,
            roofline_ratio: None,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    // GPU attention cases (timed with CUDA events through the Ops interface), when a GPU is
    // usable; otherwise say why they are skipped.
    let want_attn = a.kernels.is_empty() || a.kernels.iter().any(|k| k == "attention");
    let mut devices = vec!["cpu".to_string()];
    match bench::attention_cases::gpu_cases(&|k| want_attn && k == "attention") {
        Err(why) => println!("GPU attention cases skipped: {why}"),
        Ok(gpu) => {
            for mut case in gpu {
                pb.set_message(case.name.clone());
                let secs = bench::attention_cases::time_device_case(&mut case, timing)?;
                push_device_figure(&mut figures, &mut devices, case, &secs);
            }
        }
    }
    // GPU 2:4 GEMM cases (our kernel, cuBLASLt dense, cuSPARSELt when it loads); a case that
    // fails (e.g. cuSPARSELt rejecting a shape) is reported and the others still run.
    let want_g24 = a.kernels.is_empty() || a.kernels.iter().any(|k| k == "gemm24");
    if want_g24 {
        use bench::gemm24_cases::{gpu_cases, Gemm24Sweep};
        match gpu_cases(&|k| k == "gemm24", &Gemm24Sweep::gpu()) {
            Err(why) => println!("GPU gemm24 cases skipped: {why}"),
            Ok(gpu) => {
                for note in &gpu.notes {
                    println!("{note}");
                }
                for mut case in gpu.cases {
                    pb.set_message(case.name.clone());
                    let secs = match bench::attention_cases::time_device_case(&mut case, timing) {
                        Ok(secs) => secs,
                        Err(e) => {
                            println!("{} ({}) failed: {e}", case.name, case.device);
                            continue;
                        }
                    };
                    push_device_figure(&mut figures, &mut devices, case, &secs);
                }
            }
        }
    }
    let rate = |k: &str| figures.iter().find(|f| f.kernel == k).map(|f| f.throughput);
    let roofline = match (rate("copy"), rate("gemm")) {
        (Some(copy), Some(gemm)) => Some(Roofline {
            copy_bytes_per_sec: copy,
            gemm_flops: gemm,
        }),
        _ => None,
    };
    if let Some(r) = &roofline {
        for f in figures.iter_mut().filter(|f| f.device == "cpu") {
            f.roofline_ratio = match f.unit.as_str() {
                "FLOP/s" => Some(f.throughput / r.gemm_flops),
                "B/s" => Some(f.throughput / r.copy_bytes_per_sec),
                _ => None,
            };
        }
    }
    let report = BenchReport {
        format: bench::report::FORMAT,
        implementation: "asa-lth".into(),
        git_commit: asa_lth::provenance::git_commit(),
        machine: Machine {
            cpu: asa_lth::provenance::cpu_summary(),
            threads: rayon::current_num_threads(),
            devices,
            os: std::env::consts::OS.into(),
        },
        roofline,
        figures,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let cmp = baseline
        .as_ref()
        .map(|b| bench::compare(&report, b))
        .unwrap_or_default();
    println!(
        "{:<48} {:>6} {:>11} {:>7} {:>14} {:>8}{}",
        "case",
        "device",
        "median",
        "spread",
        "throughput",
        "roofline",
        if baseline.is_some() {
            "  vs baseline"
        } else {
            ""
        }
    );
    for f in &report.figures {
        let vs = cmp
            .iter()
            .find(|c| c.name == f.name && c.device == f.device)
            .map(|c| format!("  {:.2}x{}", c.ratio, if c.significant { " *" } else { "" }))
            .unwrap_or_default();
        println!(
            "{:<48} {:>6} {:>9.3}ms {:>6.1}% {:>14} {:>8}{vs}",
            f.name,
            f.device,
            f.median_secs * 1e3,
            f.rel_spread * 100.0,
            human(f.throughput, &f.unit),
            f.roofline_ratio
                .map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
        );
    }
    if baseline.is_some() {
        println!("(* = change larger than the combined measured spread)");
    }
    let attn = bench::attention_cases::summary(&report.figures);
    if !attn.is_empty() {
        println!(
            "\nattention sweep: FLOP/s on allowed pairs (bwd = 2.5x fwd); tiles = non-empty 64x64 \
             tiles of the causal triangle; t/t_ones = time over the all-ones mask's; vs base = \
             speed-up over the naive CPU attention (cpu) or the reference kernels (cuda)"
        );
        for l in attn {
            println!("{l}");
        }
    }
    let g24 = bench::gemm24_cases::summary(&report.figures);
    if !g24.is_empty() {
        println!();
        for l in g24 {
            println!("{l}");
        }
    }
    if let Some(p) = &a.json {
        let json = serde_json::to_string_pretty(&report)?;
        asa_lth::io::write_atomic(p, json.as_bytes())?;
        println!("report: {}", p.display());
    }
    Ok(())
}

/// `1.23 GFLOP/s`-style formatting.
fn human(x: f64, unit: &str) -> String {
    let (v, p) = if x >= 1e12 {
        (x / 1e12, "T")
    } else if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    format!("{v:.2} {p}{unit}")
}

// ---- `asa-lth asa …` (the logic lives in asa_lth::asa_cli) ----

#[derive(Subcommand, Debug)]
enum AsaCommand {
    /// Derive a UPOS compatibility matrix from a treebank's head–dependent tag pairs.
    DeriveCompat(asa_lth::asa_cli::DeriveCompatArgs),
    /// Train taggers on one CoNLL-U file and report overall and per-tag accuracy on another.
    TagEval(asa_lth::asa_cli::TagEvalArgs),
    /// Train a lexicon or perceptron tagger and save it (versioned JSON).
    TrainTagger(asa_lth::asa_cli::TrainTaggerArgs),
    /// Tag whitespace-tokenised text (one sentence per line) with a saved model or the rules.
    Tag(asa_lth::asa_cli::TagArgs),
    /// Mask statistics on a corpus split: density, tile classes, gold-arc coverage, nulls.
    Stats {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        args: asa_lth::asa_cli::StatsArgs,
    },
    /// Draw one sentence's mask as an SVG heatmap (and as text).
    Show {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        args: asa_lth::asa_cli::ShowArgs,
    },
}

fn asa_cmd(c: AsaCommand) -> Result<()> {
    use asa_lth::asa_cli;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match c {
        AsaCommand::DeriveCompat(a) => asa_cli::derive_compat(&a, &mut out),
        AsaCommand::TagEval(a) => asa_cli::tag_eval(&a, &mut out),
        AsaCommand::TrainTagger(a) => asa_cli::train_tagger(&a, &mut out),
        AsaCommand::Tag(a) => asa_cli::tag(&a, &mut std::io::stdin().lock(), &mut out),
        AsaCommand::Stats { corpus, args } => asa_cli::stats(&corpus.source()?, &args, &mut out),
        AsaCommand::Show { corpus, args } => asa_cli::show(&corpus.source()?, &args, &mut out),
    }
}

fn sample_cmd(n: usize, seed: u64) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for (si, s) in asa_lth::data::synthetic::generate(n, seed)
        .iter()
        .enumerate()
    {
        let (tags, heads) = match (&s.upos, &s.heads) {
            (Some(t), Some(h)) => (t, h),
            _ => bail!("synthetic sentence {si} lacks tags or heads"),
        };
        writeln!(out, "# sent_id = synthetic-{seed}-{si}")?;
        writeln!(out, "# text = {}", s.words.join(" "))?;
        for (i, w) in s.words.iter().enumerate() {
            writeln!(
                out,
                "{}\t{w}\t_\t{}\t_\t_\t{}\t_\t_\t_",
                i + 1,
                tags[i],
                heads[i]
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn reproduce_cmd(a: ReproduceArgs) -> Result<()> {
    use asa_lth::experiments::{self, cells::Shard, ReproduceConfig, Scale};
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
            let text = asa_lth::io::read_file(p)?;
            asa_lth::experiments::parse_config(&text, p)?
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
        asa_lth::io::write_atomic(p, json.as_bytes())?;
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
    let command = std::env::args().collect::<Vec<_>>().join(" ");
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

fn report_cmd(a: ReportArgs) -> Result<()> {
    let out = a.out.unwrap_or_else(|| a.run.join("report"));
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let s = asa_lth::experiments::report::write_report(&a.run, &out, &command)?;
    println!(
        "{} cells, {} missing; report: {}",
        s.cells_done.len(),
        s.cells_missing.len(),
        out.join("report.md").display()
    );
    Ok(())
}

/// The figure of a timed GPU case (median and spread of `secs`), its device listed once.
fn push_device_figure(
    figures: &mut Vec<asa_lth::bench::Figure>,
    devices: &mut Vec<String>,
    case: asa_lth::bench::attention_cases::DeviceCase,
    secs: &[f64],
) {
    let (med, spread) = asa_lth::bench::median_spread(secs);
    if !devices.contains(&case.device) {
        devices.push(case.device.clone());
    }
    figures.push(asa_lth::bench::Figure {
        kernel: case.kernel.to_string(),
        name: case.name,
        device: case.device,
        unit: case.unit.label().to_string(),
        median_secs: med,
        rel_spread: spread,
        samples: secs.len(),
        throughput: case.work / med,
        roofline_ratio: None,
    });
}
