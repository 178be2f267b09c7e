//! Corpora, vocabulary and batching.
//!
//! Every source becomes a [`Corpus`]: train/valid/test lists of [`Sentence`]s, each word with
//! its UPOS tag and dependency head where the source knows them. A [`Vocab`] maps words to ids
//! and [`TokenStream`] concatenates sentences (each followed by `<eos>`) for language modelling;
//! [`batch`] cuts it into `(B, T)` windows that carry tags and heads beside the ids.

pub mod batch;
pub mod conllu;
pub mod synthetic;
pub mod vocab;
pub mod wikitext;

pub use batch::{Batch, EvalWindows};
pub use vocab::{TokenStream, Tokenizer, Vocab};

pub use crate::ling::Sentence;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Train, validation and test sentences.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub name: String,
    pub train: Vec<Sentence>,
    pub valid: Vec<Sentence>,
    pub test: Vec<Sentence>,
}

/// Which leak-free tagger gives an untagged corpus (WikiText-2) its UPOS tags at load time.
/// In JSON: `"rules"` or `{"model": "PATH"}`; on the command line `rules` or a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorpusTagger {
    /// The rule-based tagger (closed-class lists and suffixes; needs no training).
    Rules,
    /// A lexicon or perceptron model saved by `asa-lth asa train-tagger` (a relative path is
    /// taken from the working directory of the process that loads the corpus).
    Model(PathBuf),
}

impl CorpusTagger {
    /// The tagger itself.
    pub fn load(&self) -> Result<Box<dyn crate::ling::tagger::Tagger>> {
        match self {
            CorpusTagger::Rules => Ok(Box::new(crate::ling::tagger::RuleTagger)),
            CorpusTagger::Model(p) => crate::ling::tagger::load_model(p),
        }
    }
}

impl std::fmt::Display for CorpusTagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorpusTagger::Rules => f.write_str("rules"),
            CorpusTagger::Model(p) => write!(f, "{}", p.display()),
        }
    }
}

impl std::str::FromStr for CorpusTagger {
    type Err = Error;
    /// `rules`, or the path of a saved tagger model.
    fn from_str(s: &str) -> Result<CorpusTagger> {
        match s {
            "" => Err(Error::Config(
                "tagger: expected `rules` or the path of a saved tagger model".into(),
            )),
            "rules" => Ok(CorpusTagger::Rules),
            p => Ok(CorpusTagger::Model(PathBuf::from(p))),
        }
    }
}

/// Where the text comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CorpusSource {
    /// The embedded grammar: `sentences` training sentences (valid and test get a tenth each,
    /// from disjoint seeds).
    Synthetic { sentences: usize, seed: u64 },
    /// A directory holding `wiki.{train,valid,test}.tokens`; with `tagger`, every word gets a
    /// UPOS tag from that leak-free tagger at load time (see [`wikitext::tag_line`]), which
    /// the ASA mask, nulls and tag bias need. Left out of the JSON when None, so configs
    /// without it load, hash and compare as before.
    Wikitext2 {
        dir: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tagger: Option<CorpusTagger>,
    },
    /// A UD treebank directory holding `*-ud-{train,dev,test}.conllu`.
    Conllu { dir: PathBuf },
}

impl CorpusSource {
    /// Load the corpus.
    pub fn load(&self) -> Result<Corpus> {
        match self {
            CorpusSource::Synthetic { sentences, seed } => {
                if *sentences < 10 {
                    return Err(Error::Config(format!(
                        "synthetic corpus needs at least 10 sentences, got {sentences}"
                    )));
                }
                let held = (sentences / 10).max(1);
                Ok(Corpus {
                    name: "synthetic".into(),
                    train: synthetic::generate(*sentences, *seed),
                    valid: synthetic::generate(held, seed.wrapping_add(1_000_003)),
                    test: synthetic::generate(held, seed.wrapping_add(2_000_003)),
                })
            }
            CorpusSource::Wikitext2 { dir, tagger } => {
                let mut c = wikitext::load_dir(dir)?;
                if let Some(t) = tagger {
                    wikitext::tag_corpus(&mut c, &*t.load()?);
                }
                Ok(c)
            }
            CorpusSource::Conllu { dir } => conllu::load_dir(dir),
        }
    }

    /// Short label for reports.
    pub fn label(&self) -> String {
        match self {
            CorpusSource::Synthetic { sentences, seed } => {
                format!("synthetic ({sentences} sentences, seed {seed})")
            }
            CorpusSource::Wikitext2 { dir, tagger } => match tagger {
                None => format!("wikitext2 ({})", dir.display()),
                Some(t) => format!("wikitext2 ({}, tags: {t})", dir.display()),
            },
            CorpusSource::Conllu { dir } => format!("conllu ({})", dir.display()),
        }
    }
}

pub(crate) use crate::io::read_file;
