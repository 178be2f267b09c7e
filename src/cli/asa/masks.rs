//! `asa-lth asa stats` and `show`: ASA masks on a corpus split — density, tiles, gold-arc
//! coverage, nulls — and one sentence's mask as a picture.

use super::*;
use crate::data::batch::{EvalWindows, NO_TAG};
use crate::data::tags::tag_line;
use crate::data::{Corpus, CorpusSource, Sentence, TagsChoice, Vocab};
use crate::ling::compat::{CompatMatrix, CompatSet};
use crate::ling::compat_choice::CompatChoice;
use crate::ling::lexres::{FileResource, LexicalResource};
use crate::ling::tagger::{
    self, evaluate, LexiconTagger, PerceptronTagger, RuleTagger, Tagger, TrainOptions,
};
use crate::ling::Upos;
use crate::mask::asa::{AsaMaskBuilder, RefineOptions, Refiner, UnknownTag};
use crate::mask::stats::{MaskStats, DEFAULT_TILES};
use crate::mask::{nulls, svg, BitMask};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Where the tags of a mask come from (`--tags`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagSource {
    /// `builtin`: the built-in causal tagger (what training uses by default: the embedded
    /// English model, or for the synthetic corpus one trained on its grammar).
    Builtin,
    /// `auto`: gold tags when the corpus has them, else the built-in tagger.
    Auto,
    /// `gold`: the corpus annotation (an oracle on real treebanks: annotators saw the whole
    /// sentence).
    Gold,
    /// `lexicon`: a lexicon tagger trained on the corpus's train split.
    Lexicon,
    /// `perceptron`: a causal perceptron trained on the corpus's train split.
    Perceptron,
    /// `rules`: the rule-based tagger.
    Rules,
    /// `model:PATH`: a model saved by `asa train-tagger`.
    Model(PathBuf),
}

impl std::str::FromStr for TagSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "builtin" => TagSource::Builtin,
            "auto" => TagSource::Auto,
            "gold" => TagSource::Gold,
            "lexicon" => TagSource::Lexicon,
            "perceptron" => TagSource::Perceptron,
            "rules" => TagSource::Rules,
            _ => match s.strip_prefix("model:") {
                Some(p) if !p.is_empty() => TagSource::Model(PathBuf::from(p)),
                _ => {
                    return Err(format!(
                        "{s:?}: expected builtin, auto, gold, lexicon, perceptron, rules or \
                         model:PATH"
                    ))
                }
            },
        })
    }
}

impl std::fmt::Display for TagSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagSource::Builtin => f.write_str("builtin"),
            TagSource::Auto => f.write_str("auto"),
            TagSource::Gold => f.write_str("gold"),
            TagSource::Lexicon => f.write_str("lexicon"),
            TagSource::Perceptron => f.write_str("perceptron"),
            TagSource::Rules => f.write_str("rules"),
            TagSource::Model(p) => write!(f, "model:{}", p.display()),
        }
    }
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
    /// Where tags come from: builtin, auto (gold where the corpus has it), gold (the
    /// annotation: an oracle for measurement), lexicon or perceptron (trained on the
    /// corpus's train split), rules, or model:PATH.
    #[arg(long = "tags", default_value = "builtin")]
    pub tagger: TagSource,
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
    #[arg(long = "null-seed", default_value_t = 1)]
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
    #[arg(long = "out-file", default_value = "mask.svg")]
    pub out: PathBuf,
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
    let kind = match &a.tagger {
        TagSource::Auto if has_gold => TagSource::Gold,
        TagSource::Auto => TagSource::Builtin,
        k => k.clone(),
    };
    let trained = |what: &str| -> Result<()> {
        if corpus.train.iter().all(|s| s.upos.is_none()) {
            bail!(
                "--tags {what} needs a tagged train split to learn from (this corpus has no \
                 UPOS tags); use --tags model:FILE, builtin or rules"
            );
        }
        Ok(())
    };
    let tagger: Option<std::sync::Arc<dyn Tagger>> = match &kind {
        TagSource::Gold => {
            if !has_gold {
                bail!(
                    "--tags gold: the {} split of {} has no UPOS tags",
                    vname(&a.split),
                    source.label()
                );
            }
            None
        }
        TagSource::Builtin | TagSource::Auto => {
            TagsChoice::Builtin.tagger(source.is_synthetic())?
        }
        TagSource::Rules => Some(std::sync::Arc::new(RuleTagger)),
        TagSource::Model(p) => Some(std::sync::Arc::from(tagger::load_model(p)?)),
        TagSource::Lexicon => {
            trained("lexicon")?;
            Some(std::sync::Arc::new(LexiconTagger::train(&corpus.train)?))
        }
        TagSource::Perceptron => {
            trained("perceptron")?;
            Some(std::sync::Arc::new(PerceptronTagger::train(
                &corpus.train,
                &TrainOptions::default(),
            )?))
        }
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
