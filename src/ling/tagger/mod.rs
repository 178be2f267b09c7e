//! Leak-free UPOS taggers.
//!
//! A mask built from tags feeds a *causal* language model, so the tag of position `i` may
//! depend only on tokens `0..=i` (DESIGN.md §2, "tag leakage"). The [`Tagger`] trait makes
//! that structural: a tagger is asked for one tag at a time, [`Tagger::tag_next`], and is
//! handed only the words up to and including the one it tags plus the tags it chose before.
//! [`tag_sentence`] is the only way to tag a whole sentence, so no implementation can look
//! right. (Sentences are tagged independently; in a token stream a sentence's boundary is
//! known from the `<eos>` that ends the previous one, so that is causal too.)
//!
//! Taggers:
//! - [`LexiconTagger`]: most frequent tag per word form learned from CoNLL-U, unknown words
//!   by suffix, shape, capitalisation, digits and punctuation;
//! - [`PerceptronTagger`]: a greedy averaged perceptron over the current word's form, affixes
//!   and shape, the two previous words and the two previous *predicted* tags;
//! - [`RuleTagger`]: closed-class word lists and suffix heuristics, for text without a
//!   treebank.
//!
//! Gold tags (the synthetic corpus and CoNLL-U) are used directly from the corpus. On real
//! treebanks they are an oracle, not a causal tagger: annotators resolved ambiguities with the
//! whole sentence in view.
//!
//! Saved models are versioned JSON files (`"format": 1`, `"kind": "lexicon" | "perceptron"`)
//! or binary, compressed `.tagger` files ([`binary`]), written atomically; [`load_model`]
//! reads all of them. [`builtin::english`] is a perceptron trained on UD English-EWT and
//! embedded in the binary.

pub mod binary;
pub mod builtin;
pub mod clusters;
pub mod eval;
pub mod features;
pub mod lexicon;
pub mod perceptron;
pub mod rules;

pub use binary::ModelHeader;
pub use builtin::BUILTIN_PROVENANCE;
pub use eval::{evaluate, TagEval};
pub use lexicon::LexiconTagger;
pub use perceptron::{FeatureSet, PerceptronTagger, TrainOptions};
pub use rules::RuleTagger;

use super::Upos;
use crate::ling::Sentence;
use crate::{Error, Result};
use std::path::Path;

/// Format number of saved tagger models.
pub const MODEL_FORMAT: u32 = 1;

/// A causal tagger. Implementations see only the left context.
pub trait Tagger: Send + Sync {
    /// Short name for reports.
    fn name(&self) -> String;

    /// The tag of `words[words.len() - 1]`, given the words before it and the tags this
    /// tagger already chose for them (`prev.len() == words.len() - 1`).
    fn tag_next(&self, words: &[&str], prev: &[Upos]) -> Upos;
}

/// Tag a sentence left to right; position `i` is computed from `words[..=i]` only.
pub fn tag_sentence(tagger: &dyn Tagger, words: &[&str]) -> Vec<Upos> {
    let mut tags = Vec::with_capacity(words.len());
    for i in 0..words.len() {
        let t = tagger.tag_next(&words[..=i], &tags);
        tags.push(t);
    }
    tags
}

/// Tag owned words.
pub fn tag_words(tagger: &dyn Tagger, words: &[String]) -> Vec<Upos> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    tag_sentence(tagger, &w)
}

/// Copies of `sents` whose tags come from `tagger` (heads are kept).
pub fn retag(tagger: &dyn Tagger, sents: &[Sentence]) -> Vec<Sentence> {
    sents
        .iter()
        .map(|s| Sentence {
            words: s.words.clone(),
            upos: Some(tag_words(tagger, &s.words)),
            heads: s.heads.clone(),
        })
        .collect()
}

/// The (words, gold tags) of the tagged sentences in `sents`; errors when none has tags.
pub(crate) fn tagged(sents: &[Sentence]) -> Result<Vec<(&[String], &[Upos])>> {
    let v: Vec<_> = sents
        .iter()
        .filter_map(|s| s.upos.as_deref().map(|u| (s.words.as_slice(), u)))
        .collect();
    if v.is_empty() {
        return Err(Error::Config(
            "no UPOS-tagged sentences to train or evaluate a tagger on".into(),
        ));
    }
    Ok(v)
}

/// Load a saved model: a binary `.tagger` file ([`binary`]) or a JSON lexicon or perceptron.
pub fn load_model(path: &Path) -> Result<Box<dyn Tagger>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if binary::is_binary(&bytes) || (bytes.len() < binary::MAGIC.len() && bytes.starts_with(b"ASA"))
    {
        return Ok(Box::new(binary::decode(&bytes, path)?.1));
    }
    let text = String::from_utf8(bytes).map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        line: 1,
        msg: "not a tagger model file: neither a binary model (wrong magic bytes) nor UTF-8 JSON"
            .into(),
    })?;
    #[derive(serde::Deserialize)]
    struct Head {
        format: Option<u32>,
        kind: Option<String>,
    }
    let h: Head = serde_json::from_str(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        msg: format!("not a tagger model file: {e}"),
    })?;
    if h.format != Some(MODEL_FORMAT) {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            line: 1,
            msg: format!(
                "tagger model format {:?} is not supported (this build reads format {MODEL_FORMAT})",
                h.format
            ),
        });
    }
    match h.kind.as_deref() {
        Some(lexicon::KIND) => Ok(Box::new(LexiconTagger::from_json(&text, path)?)),
        Some(perceptron::KIND) => Ok(Box::new(PerceptronTagger::from_json(&text, path)?)),
        k => Err(Error::Parse {
            path: path.to_path_buf(),
            line: 1,
            msg: format!(
                "unknown tagger kind {k:?} (expected \"{}\" or \"{}\")",
                lexicon::KIND,
                perceptron::KIND
            ),
        }),
    }
}

/// Map a serde error on a model file to a parse error naming the file.
pub(crate) fn model_err(path: &Path, e: serde_json::Error) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        msg: format!("malformed tagger model: {e}"),
    }
}

/// Parse a tag name stored in a model file.
pub(crate) fn model_tag(path: &Path, name: &str) -> Result<Upos> {
    Upos::parse(name).ok_or_else(|| Error::Parse {
        path: path.to_path_buf(),
        line: 1,
        msg: format!("unknown UPOS tag `{name}` in tagger model"),
    })
}
