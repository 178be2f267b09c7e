//! Corpora, vocabulary and batching.
//!
//! Every source becomes a [`Corpus`]: train/valid/test lists of [`Sentence`]s, each word with
//! its UPOS tag and dependency head where the source knows them. A [`Vocab`] maps words to ids
//! and [`TokenStream`] concatenates sentences (each followed by `<eos>`) for language modelling;
//! [`batch`] cuts it into `(B, T)` windows that carry tags and heads beside the ids.

pub mod batch;
pub mod conllu;
pub mod synthetic;
pub mod tags;
pub mod vocab;
pub mod wikitext;

pub use batch::{Batch, EvalWindows};
pub use tags::TagsChoice;
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

/// Where the text comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CorpusSource {
    /// The embedded grammar: `sentences` training sentences (valid and test get a tenth each,
    /// from disjoint seeds).
    Synthetic { sentences: usize, seed: u64 },
    /// A directory holding `wiki.{train,valid,test}.tokens` (untagged: the run's causal
    /// tagger tags it, see [`tags`]).
    Wikitext2 { dir: PathBuf },
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
            CorpusSource::Wikitext2 { dir } => wikitext::load_dir(dir),
            CorpusSource::Conllu { dir } => conllu::load_dir(dir),
        }
    }

    /// True for the embedded grammar (whose built-in tagger is trained on the grammar).
    pub fn is_synthetic(&self) -> bool {
        matches!(self, CorpusSource::Synthetic { .. })
    }

    /// Short label for reports.
    pub fn label(&self) -> String {
        match self {
            CorpusSource::Synthetic { sentences, seed } => {
                format!("synthetic ({sentences} sentences, seed {seed})")
            }
            CorpusSource::Wikitext2 { dir } => format!("wikitext2 ({})", dir.display()),
            CorpusSource::Conllu { dir } => format!("conllu ({})", dir.display()),
        }
    }
}

pub(crate) use crate::io::read_file;
