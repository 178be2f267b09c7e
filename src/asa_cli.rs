//! The `asa-lth asa …` subcommands: derive-compat, tag-eval, train-tagger, tag, stats, show.
//!
//! Argument structs derive clap's [`Args`] so `main.rs` only flattens them; every command
//! writes its report to a `&mut dyn Write` so tests can read it.

use crate::data::batch::{EvalWindows, NO_TAG};
use crate::data::tags::tag_line;
use crate::data::{conllu, Corpus, CorpusSource, Sentence, TagsChoice, Tokenizer, Vocab};
use crate::ling::compat::{self, CompatMatrix, CompatSet, PunctPolicy};
use crate::ling::compat_choice::CompatChoice;
use crate::ling::lexres::{FileResource, LexicalResource};
use crate::ling::tagger::{
    self, evaluate, LexiconTagger, PerceptronTagger, RuleTagger, TagEval, Tagger, TrainOptions,
};
use crate::ling::Upos;
use crate::mask::asa::{AsaMaskBuilder, RefineOptions, Refiner, UnknownTag};
use crate::mask::stats::{MaskStats, DEFAULT_TILES};
use crate::mask::{nulls, svg, BitMask};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `asa derive-compat`.
#[derive(Args, Debug, Clone)]
pub struct DeriveCompatArgs {
    /// CoNLL-U file(s) with UPOS and HEAD columns.
    #[arg(long, required = true, num_args = 1..)]
    pub conllu: Vec<PathBuf>,
    /// Keep a tag pair when its arcs are at least this share of all counted arcs.
    #[arg(long, default_value_t = 0.005)]
    pub min_share: f64,
    /// Arcs touching PUNCT: exclude (dropped; PUNCT keeps only its diagonal), keep (counted
    /// like any other), all (dropped; PUNCT compatible with every tag).
    #[arg(long, value_enum, default_value = "exclude")]
    pub punct: PunctArg,
    /// Write the matrix (with each pair's share as its score) to this JSON file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum PunctArg {
    Exclude,
    Keep,
    All,
}

impl From<PunctArg> for PunctPolicy {
    fn from(p: PunctArg) -> Self {
        match p {
            PunctArg::Exclude => PunctPolicy::Exclude,
            PunctArg::Keep => PunctPolicy::Keep,
            PunctArg::All => PunctPolicy::All,
        }
    }
}

/// Which tagger(s) `tag-eval` runs.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum EvalTagger {
    /// Train and score the lexicon, the perceptron and the rules.
    All,
    Lexicon,
    Perceptron,
    Rules,
    /// The built-in English model (nothing is trained; `--train` is not needed).
    Builtin,
}

/// `asa tag-eval`.
#[derive(Args, Debug, Clone)]
pub struct TagEvalArgs {
    /// Training CoNLL-U file (required except with `--tagger builtin`).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Test CoNLL-U file.
    #[arg(long)]
    pub test: PathBuf,
    /// Tagger(s) to train and score.
    #[arg(long, value_enum, default_value = "all")]
    pub tagger: EvalTagger,
    /// Perceptron training passes.
    #[arg(long, default_value_t = 12)]
    pub iterations: usize,
    /// Perceptron shuffle seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the figures as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Trainable tagger kinds.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ModelKind {
    Lexicon,
    Perceptron,
}

/// Saved model formats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ModelFormat {
    /// Versioned JSON (lexicon or perceptron).
    Json,
    /// The binary, compressed `.tagger` format of the built-in model (perceptron only).
    Builtin,
}

/// `asa train-tagger`.
#[derive(Args, Debug, Clone)]
pub struct TrainTaggerArgs {
    /// Training CoNLL-U file.
    #[arg(long)]
    pub train: PathBuf,
    /// Model kind.
    #[arg(long, value_enum, default_value = "perceptron")]
    pub kind: ModelKind,
    /// Output model file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Perceptron training passes.
    #[arg(long, default_value_t = 12)]
    pub iterations: usize,
    /// Perceptron shuffle seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: ModelFormat,
    /// Development CoNLL-U file: its accuracy is recorded in a binary model's header.
    #[arg(long)]
    pub dev: Option<PathBuf>,
    /// Test CoNLL-U file: its accuracy is recorded in a binary model's header.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Provenance line for a binary model's header (default: the training file's name).
    #[arg(long)]
    pub provenance: Option<String>,
    /// Licence line for a binary model's header.
    #[arg(long, default_value = "same as the training data")]
    pub licence: String,
    /// CoNLL-U files whose word forms (never their tags) join the training words for the
    /// perceptron's word clusters (repeatable).
    #[arg(long)]
    pub unlabelled: Vec<PathBuf>,
    /// Perceptrons trained (seeds `seed`, `seed + 1`, …) and averaged into one model.
    #[arg(long, default_value_t = 1)]
    pub ensemble: usize,
}

/// `asa tag`.
#[derive(Args, Debug, Clone, Default)]
pub struct TagArgs {
    /// Tagger: builtin (default), rules or model:PATH (gold has no meaning for raw text).
    #[arg(long, default_value = "builtin", value_parser = parse_tags)]
    pub tags: TagsChoice,
    /// A saved lexicon or perceptron model (the same as --tags model:PATH).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Text file, one sentence per line, tokens separated by spaces (default: stdin). Lines
    /// starting with `#` are skipped.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Tokenizer: word, or gpt2 (one causal tag per BPE piece, from the partial word so far).
    #[arg(long, default_value = "word", value_parser = parse_tokenizer)]
    pub tokenizer: Tokenizer,
    /// Output: slash (`word/TAG` per line; word tokenizer only) or tsv (one row per token:
    /// sentence index, piece index, piece text, tag; a `#` header line).
    #[arg(long, value_enum, default_value = "slash")]
    pub format: TagFormat,
}

/// Output format of `asa tag`.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum TagFormat {
    /// `word/TAG word/TAG …`, one sentence per line.
    #[default]
    Slash,
    /// Tab-separated, one row per token.
    Tsv,
}

fn parse_tags(s: &str) -> std::result::Result<TagsChoice, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

fn parse_tokenizer(s: &str) -> std::result::Result<Tokenizer, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

/// Where the tags of a mask come from.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum TagSource {
    /// The built-in causal tagger (what training uses by default: the embedded English
    /// model, or for the synthetic corpus one trained on its grammar).
    Builtin,
    /// Gold tags when the corpus has them, else the built-in tagger.
    Auto,
    /// The corpus annotation (an oracle on real treebanks: annotators saw the whole
    /// sentence).
    Gold,
    /// Lexicon tagger (trained on the corpus's train split, or --tagger-model).
    Lexicon,
    /// Causal perceptron (trained on the corpus's train split, or --tagger-model).
    Perceptron,
    /// Rule-based tagger.
    Rules,
}

/// Corpus split.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SplitArg {
    Train,
    Valid,
    Test,
}

/// Unknown-tag policy.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum UnknownArg {
    /// Untagged positions see only themselves and are seen by no one.
    SelfOnly,
    /// Untagged positions are treated as X.
    AsX,
}

/// Options shared by `stats` and `show`: tags, compatibility matrix, refinements.
#[derive(Args, Debug, Clone)]
pub struct MaskArgs {
    /// Split to analyse.
    #[arg(long, value_enum, default_value = "valid")]
    pub split: SplitArg,
    /// Where tags come from (gold: the annotation, an oracle for measurement).
    #[arg(long, value_enum, default_value = "builtin")]
    pub tagger: TagSource,
    /// A saved lexicon/perceptron model for --tagger lexicon|perceptron (else one is trained
    /// on the corpus's train split).
    #[arg(long)]
    pub tagger_model: Option<PathBuf>,
    /// Compatibility matrix: default (built-in), all, diagonal, or a JSON file (one matrix
    /// or one per head).
    #[arg(long, default_value = "default")]
    pub compat: String,
    /// Pronoun binding refinement.
    #[arg(long)]
    pub binding: bool,
    /// Lexical resource file (selectional restrictions, type hierarchy, agreement).
    #[arg(long)]
    pub resource: Option<PathBuf>,
    /// Policy for positions without a tag.
    #[arg(long, value_enum, default_value = "self-only")]
    pub unknown: UnknownArg,
    /// Vocabulary cut-off (as in `train`): rarer training words become `<unk>`.
    #[arg(long, default_value_t = 1)]
    pub min_count: usize,
}

/// `asa stats`.
#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    #[command(flatten)]
    pub mask: MaskArgs,
    /// Windows per batch (B).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Tokens per window (T).
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Stop after this many batches (default: the whole split).
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Skip the two null masks.
    #[arg(long)]
    pub no_nulls: bool,
    /// Seed of the null masks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the statistics as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `asa show`.
#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    #[command(flatten)]
    pub mask: MaskArgs,
    /// Index of the sentence in the split.
    #[arg(long, default_value_t = 0)]
    pub sentence: usize,
    /// Mask head to draw (per-head matrices).
    #[arg(long, default_value_t = 0)]
    pub head: usize,
    /// SVG output file.
    #[arg(long, default_value = "mask.svg")]
    pub out: PathBuf,
}

/// A value's name on the command line (`valid`, `self-only`, …).
fn vname<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * x)
    }
}

fn load_conllu(p: &Path) -> Result<Vec<Sentence>> {
    Ok(conllu::load_file(p)?)
}

/// `asa derive-compat`.
pub fn derive_compat(a: &DeriveCompatArgs, out: &mut dyn Write) -> Result<()> {
    if !(0.0..=1.0).contains(&a.min_share) {
        bail!("--min-share must lie in [0, 1], got {}", a.min_share);
    }
    if let Some(p) = &a.out {
        crate::io::check_writable(p)?;
    }
    let mut sents = Vec::new();
    for p in &a.conllu {
        sents.extend(load_conllu(p)?);
    }
    let d = compat::derive(&sents, a.min_share, a.punct.into())?;
    let files: Vec<String> = a.conllu.iter().map(|p| p.display().to_string()).collect();
    writeln!(
        out,
        "treebank: {} ({} sentences{}), {} non-root arcs counted, {} PUNCT arcs dropped \
         (policy: {})",
        files.join(", "),
        d.sentences,
        if d.sentences_skipped > 0 {
            format!(", {} without heads skipped", d.sentences_skipped)
        } else {
            String::new()
        },
        d.arcs,
        d.punct_arcs_dropped,
        vname(&a.punct)
    )?;
    writeln!(out, "{:<14} {:>9} {:>8}  kept", "pair", "arcs", "share")?;
    for (p, kept) in &d.pairs {
        writeln!(
            out,
            "{:<14} {:>9} {:>7.2}%  {}",
            format!("{}-{}", p.a, p.b),
            p.arcs,
            100.0 * p.share,
            if !kept {
                "no"
            } else if p.a == p.b {
                "yes (diagonal)"
            } else {
                "yes"
            }
        )?;
    }
    let off = d.pairs.iter().filter(|(p, k)| *k && p.a != p.b).count();
    writeln!(
        out,
        "matrix: {off} off-diagonal tag pairs kept at min share {} plus the diagonal; it \
         covers {} of the counted arcs",
        a.min_share,
        pct(d.covered_share)
    )?;
    write!(out, "{}", d.matrix.grid())?;
    if let Some(p) = &a.out {
        d.matrix.save(p)?;
        writeln!(out, "written: {}", p.display())?;
    }
    Ok(())
}

#[derive(Serialize)]
struct TagEvalReport<'a> {
    train: String,
    test: String,
    train_tokens: usize,
    test_tokens: usize,
    results: Vec<(&'a TagEval, f64)>,
}

/// `asa tag-eval`.
pub fn tag_eval(a: &TagEvalArgs, out: &mut dyn Write) -> Result<()> {
    if a.tagger != EvalTagger::Builtin && a.train.is_none() {
        bail!(
            "--train is required for --tagger {} (only the built-in model needs no training \
             file)",
            a.tagger
                .to_possible_value()
                .map_or_else(|| "?".to_string(), |v| v.get_name().to_string())
        );
    }
    if let Some(p) = &a.json {
        crate::io::check_writable(p)?;
    }
    let test = load_conllu(&a.test)?;
    let ntok = |s: &[Sentence]| s.iter().map(|s| s.words.len()).sum::<usize>();
    let pct2 = |x: f64| {
        if x.is_nan() {
            "-".to_string()
        } else {
            format!("{:.2}%", 100.0 * x)
        }
    };
    let mut runs: Vec<(TagEval, f64)> = Vec::new();
    let mut train_tokens = 0;
    let mut builtin = None;
    if a.tagger == EvalTagger::Builtin {
        let m = tagger::builtin::english_model()?;
        let unseen = test
            .iter()
            .flat_map(|s| &s.words)
            .filter(|w| !m.knows(w))
            .count();
        writeln!(
            out,
            "model: builtin ({} bytes; {}); test: {} ({} sentences, {} tokens, {} unseen by \
             the model's lexicon)",
            m.file_bytes(),
            m.header().provenance,
            a.test.display(),
            test.len(),
            ntok(&test),
            pct(unseen as f64 / ntok(&test).max(1) as f64)
        )?;
        let known = |w: &str| m.knows(w);
        runs.push((evaluate(&*m, &test, Some(&known))?, 0.0));
        builtin = Some(m.clone());
    } else {
        let Some(train_path) = &a.train else {
            bail!("--train is required for --tagger {:?}", a.tagger);
        };
        let train = load_conllu(train_path)?;
        train_tokens = ntok(&train);
        let lex_t0 = Instant::now();
        let lexicon = LexiconTagger::train(&train)?;
        let lex_secs = lex_t0.elapsed().as_secs_f64();
        let unseen = test
            .iter()
            .flat_map(|s| &s.words)
            .filter(|w| !lexicon.knows(w))
            .count();
        writeln!(
            out,
            "train: {} ({} sentences, {} tokens); test: {} ({} sentences, {} tokens, {} unseen \
             in train)",
            train_path.display(),
            train.len(),
            ntok(&train),
            a.test.display(),
            test.len(),
            ntok(&test),
            pct(unseen as f64 / ntok(&test).max(1) as f64)
        )?;
        let known = |w: &str| lexicon.knows(w);
        let want = |k: EvalTagger| a.tagger == EvalTagger::All || a.tagger == k;
        if want(EvalTagger::Lexicon) {
            runs.push((evaluate(&lexicon, &test, Some(&known))?, lex_secs));
        }
        if want(EvalTagger::Perceptron) {
            let t0 = Instant::now();
            let p = train_perceptron(&train, a.iterations, a.seed)?;
            let secs = t0.elapsed().as_secs_f64();
            runs.push((evaluate(&p, &test, Some(&known))?, secs));
        }
        if want(EvalTagger::Rules) {
            runs.push((evaluate(&RuleTagger, &test, Some(&known))?, 0.0));
        }
    }
    writeln!(
        out,
        "{:<11} {:>9} {:>9} {:>9} {:>9}",
        "tagger", "accuracy", "known", "unknown", "train s"
    )?;
    for (e, s) in &runs {
        writeln!(
            out,
            "{:<11} {:>9} {:>9} {:>9} {:>9.1}",
            e.tagger,
            pct2(e.accuracy()),
            pct2(e.known_accuracy()),
            pct2(e.unknown_accuracy()),
            s
        )?;
    }
    writeln!(out, "per-tag accuracy (recall) / precision:")?;
    write!(out, "{:<6} {:>7}", "tag", "tokens")?;
    for (e, _) in &runs {
        write!(out, " {:>15}", e.tagger)?;
    }
    writeln!(out)?;
    let gold = &runs.first().map(|r| r.0.gold).unwrap_or_default();
    for t in Upos::ALL {
        if gold[t as usize] == 0 {
            continue;
        }
        write!(out, "{:<6} {:>7}", t.name(), gold[t as usize])?;
        for (e, _) in &runs {
            write!(
                out,
                " {:>15}",
                format!("{} / {}", pct(e.tag_accuracy(t)), pct(e.tag_precision(t)))
            )?;
        }
        writeln!(out)?;
    }
    for (e, _) in &runs {
        let c: Vec<String> = e
            .top_confusions(6)
            .iter()
            .map(|(g, p, n)| format!("{g}→{p} {n}"))
            .collect();
        writeln!(out, "top confusions ({}): {}", e.tagger, c.join(", "))?;
    }
    // Per genre, when sentence ids carry one (UD English-EWT: `answers-…`, `email-…`).
    if let Some(m) = &builtin {
        let text =
            std::fs::read_to_string(&a.test).with_context(|| a.test.display().to_string())?;
        let mut genres: Vec<Option<String>> = Vec::new();
        let (mut id, mut in_sent) = (None::<String>, false);
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                in_sent = false;
            } else if let Some(v) = line.strip_prefix("# sent_id = ") {
                id = Some(v.trim().to_string());
            } else if !line.starts_with('#') && !in_sent {
                in_sent = true;
                let g = id.take().and_then(|v| {
                    let g = v.split(['-', '_']).next().unwrap_or("");
                    (!g.is_empty() && g.chars().all(|c| c.is_ascii_lowercase()))
                        .then(|| g.to_string())
                });
                genres.push(g);
            }
        }
        if genres.len() == test.len() && genres.iter().all(Option::is_some) {
            let mut names: Vec<&String> = genres.iter().flatten().collect();
            names.sort();
            names.dedup();
            if names.len() > 1 {
                let known = |w: &str| m.knows(w);
                writeln!(
                    out,
                    "per genre (builtin): {:<10} {:>7} {:>9} {:>9} {:>9}",
                    "genre", "tokens", "accuracy", "known", "unknown"
                )?;
                for g in names {
                    let sub: Vec<Sentence> = test
                        .iter()
                        .zip(&genres)
                        .filter(|(_, sg)| sg.as_ref() == Some(g))
                        .map(|(s, _)| s.clone())
                        .collect();
                    let e = evaluate(&**m, &sub, Some(&known))?;
                    writeln!(
                        out,
                        "per genre (builtin): {:<10} {:>7} {:>9} {:>9} {:>9}",
                        g,
                        e.tokens,
                        pct2(e.accuracy()),
                        pct2(e.known_accuracy()),
                        pct2(e.unknown_accuracy())
                    )?;
                }
            }
        }
    }
    if let Some(p) = &a.json {
        let rep = TagEvalReport {
            train: a
                .train
                .as_ref()
                .map_or("(builtin model)".into(), |t| t.display().to_string()),
            test: a.test.display().to_string(),
            train_tokens,
            test_tokens: ntok(&test),
            results: runs.iter().map(|(e, s)| (e, *s)).collect(),
        };
        crate::io::write_atomic(p, serde_json::to_string_pretty(&rep)?.as_bytes())?;
        writeln!(out, "written: {}", p.display())?;
    }
    Ok(())
}

/// `asa train-tagger`.
pub fn train_tagger(a: &TrainTaggerArgs, out: &mut dyn Write) -> Result<()> {
    crate::io::check_writable(&a.out)?;
    let train = load_conllu(&a.train)?;
    let t0 = Instant::now();
    if a.format == ModelFormat::Builtin && a.kind != ModelKind::Perceptron {
        bail!("--format builtin stores perceptron models only");
    }
    match a.kind {
        ModelKind::Lexicon => {
            let l = LexiconTagger::train(&train)?;
            l.save(&a.out)?;
            writeln!(
                out,
                "lexicon: {} forms from {} sentences in {:.1}s",
                l.forms(),
                train.len(),
                t0.elapsed().as_secs_f64()
            )?;
        }
        ModelKind::Perceptron => {
            let mut unlabelled = Vec::new();
            for f in &a.unlabelled {
                unlabelled.extend(load_conllu(f)?);
            }
            let p = PerceptronTagger::train_with(
                &train,
                &unlabelled,
                &TrainOptions {
                    iterations: a.iterations,
                    seed: a.seed,
                    ensemble: a.ensemble,
                    ..Default::default()
                },
            )?;
            let secs = t0.elapsed().as_secs_f64();
            writeln!(
                out,
                "perceptron: {} weighted features, {} passes over {} sentences in {secs:.1}s",
                p.num_features(),
                a.iterations,
                train.len(),
            )?;
            if a.format == ModelFormat::Json {
                p.save(&a.out)?;
            } else {
                let mut score = |f: &Option<PathBuf>| -> Result<Option<f64>> {
                    let Some(f) = f else { return Ok(None) };
                    let known = |w: &str| p.lexicon().knows(w);
                    let e = evaluate(&p, &load_conllu(f)?, Some(&known))?;
                    writeln!(
                        out,
                        "accuracy on {}: {:.2}% (known {:.2}%, unknown {:.2}% of {:.1}%)",
                        f.display(),
                        100.0 * e.accuracy(),
                        100.0 * e.known_accuracy(),
                        100.0 * e.unknown_accuracy(),
                        100.0 * e.unknown_share()
                    )?;
                    Ok(Some(e.accuracy()))
                };
                let (dev_accuracy, test_accuracy) = (score(&a.dev)?, score(&a.test)?);
                let mut command = format!(
                    "asa-lth asa train-tagger --train {} --kind perceptron --format builtin \
                     --iterations {} --seed {}",
                    a.train.display(),
                    a.iterations,
                    a.seed
                );
                if a.ensemble != 1 {
                    command.push_str(&format!(" --ensemble {}", a.ensemble));
                }
                for f in &a.unlabelled {
                    command.push_str(&format!(" --unlabelled {}", f.display()));
                }
                for (flag, f) in [("--dev", &a.dev), ("--test", &a.test)] {
                    if let Some(f) = f {
                        command.push_str(&format!(" {flag} {}", f.display()));
                    }
                }
                command.push_str(&format!(" --out {}", a.out.display()));
                let header = tagger::ModelHeader {
                    kind: String::new(),
                    feature_set: 0,
                    tags: Vec::new(),
                    provenance: a.provenance.clone().unwrap_or_else(|| {
                        format!(
                            "trained on {} ({} sentences)",
                            a.train.display(),
                            train.len()
                        )
                    }),
                    licence: a.licence.clone(),
                    command,
                    dev_accuracy,
                    test_accuracy,
                    payload_bytes: 0,
                };
                let bytes = tagger::binary::encode(&p, &header);
                crate::io::write_atomic(&a.out, &bytes)?;
                writeln!(out, "binary model: {} bytes", bytes.len())?;
            }
        }
    }
    writeln!(out, "written: {}", a.out.display())?;
    Ok(())
}

/// `asa tag`: tag whitespace-tokenised lines from `input` (or `--input`), causally (word by
/// word, or BPE piece by piece with `--tokenizer gpt2`).
pub fn tag(a: &TagArgs, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<()> {
    let choice = match &a.model {
        Some(p) => TagsChoice::Model(p.clone()),
        None => a.tags.clone(),
    };
    if choice.is_gold() {
        bail!("--tags gold: raw text has no gold tags (use builtin, rules or model:PATH)");
    }
    if a.format == TagFormat::Slash && a.tokenizer == Tokenizer::Gpt2 {
        bail!("--tokenizer gpt2 tags BPE pieces: use --format tsv");
    }
    let tagger = choice
        .tagger(false)?
        .context("a causal tagger for raw text")?;
    let mut file_reader;
    let reader: &mut dyn BufRead = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| p.display().to_string())?;
            file_reader = std::io::BufReader::new(f);
            &mut file_reader
        }
        None => input,
    };
    let gpt2 = (a.tokenizer == Tokenizer::Gpt2).then(Vocab::gpt2);
    if a.format == TagFormat::Tsv {
        writeln!(
            out,
            "# sentence\tpiece\ttext\ttag (tokenizer {}, tags {})",
            a.tokenizer, choice
        )?;
    }
    let mut si = 0usize;
    for line in reader.lines() {
        let line = line?;
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let sent = Sentence {
            words: line.split_whitespace().map(str::to_string).collect(),
            upos: None,
            heads: None,
        };
        match a.format {
            TagFormat::Slash => {
                let tags = tag_line(&*tagger, &sent.words);
                let toks: Vec<String> = sent
                    .words
                    .iter()
                    .zip(&tags)
                    .map(|(w, t)| format!("{w}/{t}"))
                    .collect();
                writeln!(out, "{}", toks.join(" "))?;
            }
            TagFormat::Tsv => {
                let sents = std::slice::from_ref(&sent);
                let (texts, tags): (Vec<String>, Vec<Upos>) = match &gpt2 {
                    Some(v) => {
                        let st = v.encode_tagged(sents, Some(&*tagger));
                        let n = st.ids.len() - 1; // the last is <|endoftext|>
                        (
                            st.ids[..n]
                                .iter()
                                .map(|&id| v.word(id).to_string())
                                .collect(),
                            st.upos[..n].iter().map(|t| t.unwrap_or(Upos::X)).collect(),
                        )
                    }
                    None => (sent.words.clone(), tag_line(&*tagger, &sent.words)),
                };
                for (pi, (text, t)) in texts.iter().zip(&tags).enumerate() {
                    let text = text
                        .replace('\\', "\\\\")
                        .replace('\t', "\\t")
                        .replace('\n', "\\n");
                    writeln!(out, "{si}\t{pi}\t{text}\t{t}")?;
                }
            }
        }
        si += 1;
    }
    Ok(())
}

/// A corpus split tagged for masks, with the vocabulary and the mask builder.
pub struct Prepared {
    pub corpus: Corpus,
    /// The split with the tags the masks use (gold heads kept).
    pub sents: Vec<Sentence>,
    pub vocab: Vocab,
    pub builder: AsaMaskBuilder,
    pub refiner: Option<Refiner>,
    pub tagger: String,
    pub compat: String,
    /// Tagger accuracy against gold on this split, when both exist and differ.
    pub accuracy: Option<f64>,
}

/// Resolve `--compat`: `default`/`builtin`, `all`, `diagonal`, `derived:TREEBANK[@COVERAGE]`
/// or a compat file (as in training, [`CompatChoice`]).
pub fn compat_from_arg(s: &str) -> Result<(CompatSet, String)> {
    Ok(match s {
        "default" | "builtin" => (
            CompatSet::shared(CompatMatrix::default_asa()),
            "built-in default".into(),
        ),
        "all" => (CompatSet::shared(CompatMatrix::all()), "all pairs".into()),
        "diagonal" => (
            CompatSet::shared(CompatMatrix::diagonal()),
            "diagonal only".into(),
        ),
        other => other.parse::<CompatChoice>()?.load()?,
    })
}

/// Tag a corpus split and set up the mask builder as the `MaskArgs` say.
pub fn prepare(source: &CorpusSource, a: &MaskArgs) -> Result<Prepared> {
    let corpus = source.load()?;
    let split = match a.split {
        SplitArg::Train => &corpus.train,
        SplitArg::Valid => &corpus.valid,
        SplitArg::Test => &corpus.test,
    };
    let has_gold = split.iter().all(|s| s.upos.is_some()) && !split.is_empty();
    let kind = match a.tagger {
        TagSource::Auto if has_gold => TagSource::Gold,
        TagSource::Auto => TagSource::Builtin,
        k => k,
    };
    let trained = |what: &str| -> Result<()> {
        if corpus.train.iter().all(|s| s.upos.is_none()) {
            bail!(
                "--tagger {what} needs a tagged train split to learn from (this corpus has no \
                 UPOS tags); pass --tagger-model FILE or use --tagger rules"
            );
        }
        Ok(())
    };
    let tagger: Option<std::sync::Arc<dyn Tagger>> = match (kind, &a.tagger_model) {
        (TagSource::Gold, _) => {
            if !has_gold {
                bail!(
                    "--tagger gold: the {} split of {} has no UPOS tags",
                    vname(&a.split),
                    source.label()
                );
            }
            None
        }
        (TagSource::Builtin, _) => TagsChoice::Builtin.tagger(source.is_synthetic())?,
        (TagSource::Rules, _) => Some(std::sync::Arc::new(RuleTagger)),
        (TagSource::Lexicon | TagSource::Perceptron, Some(p)) => {
            Some(std::sync::Arc::from(tagger::load_model(p)?))
        }
        (TagSource::Lexicon, None) => {
            trained("lexicon")?;
            Some(std::sync::Arc::new(LexiconTagger::train(&corpus.train)?))
        }
        (TagSource::Perceptron, None) => {
            trained("perceptron")?;
            Some(std::sync::Arc::new(PerceptronTagger::train(
                &corpus.train,
                &TrainOptions::default(),
            )?))
        }
        (TagSource::Auto, _) => unreachable!("resolved above"),
    };
    let (sents, tagger_name, accuracy) = match &tagger {
        None => (split.clone(), "gold".to_string(), None),
        Some(t) => {
            let acc = if has_gold {
                Some(evaluate(&**t, split, None)?.accuracy())
            } else {
                None
            };
            let sents = split
                .iter()
                .map(|s| Sentence {
                    words: s.words.clone(),
                    upos: Some(tag_line(&**t, &s.words)),
                    heads: s.heads.clone(),
                })
                .collect();
            (sents, t.name(), acc)
        }
    };
    let (cs, compat_label) = compat_from_arg(&a.compat)?;
    let builder = AsaMaskBuilder::new(&cs).with_unknown(match a.unknown {
        UnknownArg::SelfOnly => UnknownTag::SelfOnly,
        UnknownArg::AsX => UnknownTag::AsX,
    });
    let vocab = Vocab::build(&corpus.train, a.min_count)?;
    let resource: Option<FileResource> = match &a.resource {
        Some(p) => Some(FileResource::load(p)?),
        None => None,
    };
    let refiner = (a.binding || resource.is_some()).then(|| {
        Refiner::new(
            vocab.len(),
            |id| vocab.word(id),
            resource.as_ref().map(|r| r as &dyn LexicalResource),
            RefineOptions {
                binding: a.binding,
                selection: resource.is_some(),
                ..Default::default()
            },
        )
    });
    Ok(Prepared {
        corpus,
        sents,
        vocab,
        builder,
        refiner,
        tagger: tagger_name,
        compat: compat_label,
        accuracy,
    })
}

fn describe(p: &Prepared, a: &MaskArgs, source: &CorpusSource) -> String {
    format!(
        "corpus: {}, split {}: {} sentences\ntags: {}{} | compat: {} | binding: {} | \
         resource: {} | untagged positions: {}",
        source.label(),
        vname(&a.split),
        p.sents.len(),
        p.tagger,
        p.accuracy
            .map(|x| format!(" ({} vs gold)", pct(x)))
            .unwrap_or_default(),
        p.compat,
        if a.binding { "on" } else { "off" },
        a.resource
            .as_ref()
            .map_or("none".into(), |r| r.display().to_string()),
        vname(&a.unknown)
    )
}

#[derive(Serialize)]
struct StatsReport {
    corpus: String,
    split: String,
    tagger: String,
    tagger_accuracy: Option<f64>,
    compat: String,
    batch: usize,
    seq_len: usize,
    batches: usize,
    asa: MaskStats,
    null_rows: Option<MaskStats>,
    null_distance: Option<MaskStats>,
}

/// `asa stats`.
pub fn stats(source: &CorpusSource, a: &StatsArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(p) = &a.json {
        crate::io::check_writable(p)?;
    }
    // One batch holds the mask, both nulls and the distance null's row sets, each
    // B × heads × T × ⌈T/32⌉ words: refuse before building anything that cannot fit.
    let heads = compat_from_arg(&a.mask.compat)?.0.heads() as u64;
    let words = a.batch as u64 * heads * a.seq_len as u64 * a.seq_len.div_ceil(32) as u64;
    crate::io::check_memory(
        &format!(
            "mask statistics (B {} × T {}, {heads} mask head(s))",
            a.batch, a.seq_len
        ),
        6 * 4 * words,
        crate::io::available_memory_bytes(),
        "lower --batch or --seq-len",
    )?;
    let p = prepare(source, &a.mask)?;
    let stream = p.vocab.encode(&p.sents);
    let windows = EvalWindows::new(&stream, a.batch, a.seq_len)?;
    let mut asa = MaskStats::new(&DEFAULT_TILES);
    let mut nr = MaskStats::new(&DEFAULT_TILES);
    let mut nd = MaskStats::new(&DEFAULT_TILES);
    let mut batches = 0usize;
    let mut build_secs = 0.0;
    for (k, batch) in windows.enumerate() {
        if a.max_batches.is_some_and(|m| k >= m) {
            break;
        }
        let t0 = Instant::now();
        let mut mask = p.builder.build_for_batch(&batch)?;
        if let Some(r) = &p.refiner {
            r.apply(&mut mask, &batch.tokens, &batch.upos)?;
        }
        build_secs += t0.elapsed().as_secs_f64();
        let valid = nulls::valid_from_targets(&batch.targets);
        asa.add(&mask, &valid, Some(&batch.heads))?;
        if !a.no_nulls {
            let seed = a.seed.wrapping_mul(1_000_003).wrapping_add(k as u64);
            nr.add(
                &nulls::row_matched(&mask, &valid, seed)?,
                &valid,
                Some(&batch.heads),
            )?;
            nd.add(
                &nulls::distance_matched(&mask, &valid, seed)?,
                &valid,
                Some(&batch.heads),
            )?;
        }
        batches += 1;
    }
    if batches == 0 {
        bail!("the split produced no batches");
    }
    writeln!(out, "{}", describe(&p, &a.mask, source))?;
    writeln!(
        out,
        "windows: {batches} batches of B {} x T {} ({} mask head(s)); padding is never a \
         query or key; mask building {:.2} ms per batch",
        a.batch,
        a.seq_len,
        p.builder.heads(),
        1e3 * build_secs / batches as f64
    )?;
    let cols: Vec<(&str, &MaskStats)> = if a.no_nulls {
        vec![("ASA", &asa)]
    } else {
        vec![("ASA", &asa), ("null:rows", &nr), ("null:dist", &nd)]
    };
    let row = |out: &mut dyn Write, name: &str, f: &dyn Fn(&MaskStats) -> String| -> Result<()> {
        write!(out, "{name:<34}")?;
        for (_, s) in &cols {
            write!(out, " {:>10}", f(s))?;
        }
        writeln!(out)?;
        Ok(())
    };
    write!(out, "{:<34}", "")?;
    for (n, _) in &cols {
        write!(out, " {n:>10}")?;
    }
    writeln!(out)?;
    row(out, "density (valid causal pairs)", &|s| pct(s.density()))?;
    row(out, "  off the diagonal", &|s| pct(s.offdiag_density()))?;
    row(
        out,
        "  rows with >= 2 keys",
        &|s| pct(s.density_long_rows()),
    )?;
    row(out, "diagonal allowed", &|s| pct(s.diagonal_share()))?;
    row(out, "rows with < 2 valid keys", &|s| {
        format!("{}/{}", s.short_rows, s.rows)
    })?;
    writeln!(out, "density by row length (valid keys incl. self):")?;
    for (k, b) in asa.by_len.iter().enumerate() {
        if b.rows == 0 {
            continue;
        }
        let range = if b.lo == b.hi {
            b.lo.to_string()
        } else {
            format!("{}-{}", b.lo, b.hi)
        };
        let name = format!("  {range:>9}  ({} rows)", b.rows);
        row(out, &name, &|s| {
            s.by_len.get(k).map_or("-".into(), |b| pct(b.density()))
        })?;
    }
    writeln!(out, "tile classes, causal blocks (empty / full / partial):")?;
    for (ti, ts) in asa.tiles.iter().enumerate() {
        row(
            out,
            &format!("  tile {} ({} blocks)", ts.tile, ts.blocks),
            &|s| {
                let (e, f, p) = s.tiles[ti].shares();
                format!("{:.0}/{:.0}/{:.0}", 100.0 * e, 100.0 * f, 100.0 * p)
            },
        )?;
    }
    match &asa.arcs {
        Some(arcs) if arcs.arcs > 0 => {
            writeln!(out, "gold dependency arcs inside windows: {}", arcs.arcs)?;
            let share = |f: fn(&crate::mask::stats::ArcCoverage) -> f64| {
                move |s: &MaskStats| s.arcs.as_ref().map_or("-".into(), |a| pct(f(a)))
            };
            row(out, "  covered", &share(|a| a.share()))?;
            row(
                out,
                &format!("  head before dependent ({})", arcs.head_first),
                &share(|a| a.head_first_share()),
            )?;
            row(
                out,
                &format!("  head after dependent ({})", arcs.head_later),
                &share(|a| a.head_later_share()),
            )?;
        }
        _ => writeln!(out, "gold dependency arcs: none in this corpus")?,
    }
    if let Some(path) = &a.json {
        let rep = StatsReport {
            corpus: source.label(),
            split: vname(&a.mask.split),
            tagger: p.tagger.clone(),
            tagger_accuracy: p.accuracy,
            compat: p.compat.clone(),
            batch: a.batch,
            seq_len: a.seq_len,
            batches,
            asa,
            null_rows: (!a.no_nulls).then_some(nr),
            null_distance: (!a.no_nulls).then_some(nd),
        };
        crate::io::write_atomic(path, serde_json::to_string_pretty(&rep)?.as_bytes())?;
        writeln!(out, "written: {}", path.display())?;
    }
    Ok(())
}

/// `asa show`.
pub fn show(source: &CorpusSource, a: &ShowArgs, out: &mut dyn Write) -> Result<()> {
    crate::io::check_writable(&a.out)?;
    let p = prepare(source, &a.mask)?;
    let Some(s) = p.sents.get(a.sentence) else {
        bail!(
            "--sentence {}: the {} split has {} sentences",
            a.sentence,
            vname(&a.mask.split),
            p.sents.len()
        );
    };
    if a.head >= p.builder.heads() {
        bail!(
            "--head {}: the compat set has {} head(s)",
            a.head,
            p.builder.heads()
        );
    }
    let n = s.words.len();
    let tags: Vec<u8> = match &s.upos {
        Some(u) => u.iter().map(|&t| t as u8).collect(),
        None => vec![NO_TAG; n],
    };
    let tokens: Vec<u32> = s.words.iter().map(|w| p.vocab.id(w)).collect();
    let mut mask: BitMask = p.builder.build(&tags, 1, n)?;
    if let Some(r) = &p.refiner {
        r.apply(&mut mask, &tokens, &tags)?;
    }
    let heads: Option<Vec<i32>> = s
        .heads
        .as_ref()
        .map(|hs| hs.iter().map(|&h| h as i32 - 1).collect());
    let tag_opts: Vec<Option<Upos>> = tags.iter().map(|&t| Upos::from_index(t as usize)).collect();
    let title = format!(
        "{} {} sentence {} — tags: {}, compat: {}, head {}",
        p.corpus.name,
        vname(&a.mask.split),
        a.sentence,
        p.tagger,
        p.compat,
        a.head
    );
    let hm = svg::Heatmap {
        words: &s.words,
        tags: &tag_opts,
        heads: heads.as_deref(),
        title: &title,
    };
    writeln!(out, "{}", describe(&p, &a.mask, source))?;
    writeln!(
        out,
        "sentence {} ({n} words): {}",
        a.sentence,
        s.words.join(" ")
    )?;
    let valid = vec![true; n];
    let mut st = MaskStats::new(&[]);
    st.add(&mask, &valid, heads.as_deref())?;
    writeln!(
        out,
        "density {} (off-diagonal {}); gold arcs covered {}",
        pct(st.density()),
        pct(st.offdiag_density()),
        st.arcs.as_ref().map_or("-".into(), |x| pct(x.share()))
    )?;
    writeln!(
        out,
        "('#' allowed, '.' masked, '@' gold arc allowed, 'o' gold arc masked)"
    )?;
    write!(out, "{}", svg::text(&mask, 0, a.head, &hm))?;
    crate::io::write_atomic(&a.out, svg::svg(&mask, 0, a.head, &hm).as_bytes())?;
    writeln!(out, "svg: {}", a.out.display())?;
    Ok(())
}

/// The perceptron tagger with the CLI's training options (the rest at their defaults).
fn train_perceptron(train: &[Sentence], iterations: usize, seed: u64) -> Result<PerceptronTagger> {
    Ok(PerceptronTagger::train(
        train,
        &TrainOptions {
            iterations,
            seed,
            ..Default::default()
        },
    )?)
}
