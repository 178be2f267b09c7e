//! `asa-lth asa tag-eval` and `train-tagger`: score taggers on a treebank, train and save one.

use super::*;
use crate::data::Sentence;
use crate::ling::tagger::{
    self, evaluate, LexiconTagger, PerceptronTagger, RuleTagger, TagEval, TrainOptions,
};
use crate::ling::Upos;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

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
    /// Seed of the perceptron's per-pass shuffles.
    #[arg(long = "shuffle-seed", default_value_t = 1)]
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
    #[arg(long = "out-file")]
    pub out: PathBuf,
    /// Perceptron training passes.
    #[arg(long, default_value_t = 12)]
    pub iterations: usize,
    /// Seed of the perceptron's per-pass shuffles.
    #[arg(long = "shuffle-seed", default_value_t = 1)]
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
                     --iterations {} --shuffle-seed {}",
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
                command.push_str(&format!(" --out-file {}", a.out.display()));
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

/// The perceptron tagger with the CLI's training options (the rest at their defaults).
pub(super) fn train_perceptron(
    train: &[Sentence],
    iterations: usize,
    seed: u64,
) -> Result<PerceptronTagger> {
    Ok(PerceptronTagger::train(
        train,
        &TrainOptions {
            iterations,
            seed,
            ..Default::default()
        },
    )?)
}
