//! Word-level vocabulary and the token stream a language model reads.

use super::Sentence;
use crate::ling::Upos;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Id of `<unk>` (also used by WikiText's own `<unk>` word).
pub const UNK: u32 = 0;
/// Id of `<eos>`, appended after every sentence.
pub const EOS: u32 = 1;
const VOCAB_FORMAT: u32 = 1;

/// Word ↔ id map. Ids 0 and 1 are `<unk>` and `<eos>`; the rest are the training words seen
/// at least `min_count` times, most frequent first (ties alphabetical), so a vocabulary is a
/// pure function of the training text.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, u32>,
}

#[derive(Serialize, Deserialize)]
struct VocabFile {
    format: u32,
    words: Vec<String>,
}

impl Vocab {
    /// Build from training sentences.
    pub fn build(train: &[Sentence], min_count: usize) -> Result<Vocab> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in train {
            for w in &s.words {
                *counts.entry(w.as_str()).or_default() += 1;
            }
        }
        let mut kept: Vec<(&str, usize)> = counts
            .into_iter()
            .filter(|&(w, c)| c >= min_count.max(1) && w != "<unk>" && w != "<eos>")
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        if kept.is_empty() {
            return Err(Error::Config(format!(
                "vocabulary is empty: no training word occurs {min_count} or more times"
            )));
        }
        let words = ["<unk>", "<eos>"]
            .into_iter()
            .chain(kept.into_iter().map(|(w, _)| w))
            .map(str::to_string)
            .collect();
        Ok(Self::from_words(words))
    }

    fn from_words(words: Vec<String>) -> Vocab {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Vocab { words, index }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Always false (a vocabulary holds at least `<unk>` and `<eos>`).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Id of a word (`<unk>` if unknown).
    pub fn id(&self, word: &str) -> u32 {
        self.index.get(word).copied().unwrap_or(UNK)
    }

    /// Word of an id.
    pub fn word(&self, id: u32) -> &str {
        self.words
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("<unk>")
    }

    /// Save as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string(&VocabFile {
            format: VOCAB_FORMAT,
            words: self.words.clone(),
        })
        .map_err(|e| Error::Config(format!("vocab serialisation: {e}")))?;
        crate::io::write_atomic(path, json.as_bytes())
    }

    /// Load a file written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Vocab> {
        let text = super::read_file(path)?;
        let f: VocabFile = serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            msg: format!("not a vocabulary file: {e}"),
        })?;
        if f.format != VOCAB_FORMAT || f.words.len() < 2 || f.words[0] != "<unk>" {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: 1,
                msg: format!("unsupported vocabulary (format {})", f.format),
            });
        }
        Ok(Self::from_words(f.words))
    }

    /// Concatenate sentences into one stream, `<eos>` after each.
    pub fn encode(&self, sents: &[Sentence]) -> TokenStream {
        let mut s = TokenStream::default();
        for sent in sents {
            let base = s.ids.len();
            for (i, w) in sent.words.iter().enumerate() {
                s.ids.push(self.id(w));
                s.upos.push(sent.upos.as_ref().map(|u| u[i]));
                s.heads.push(
                    sent.heads
                        .as_ref()
                        .and_then(|h| (h[i] > 0).then(|| (base + h[i] as usize - 1) as u32)),
                );
            }
            s.ids.push(EOS);
            s.upos.push(sent.upos.as_ref().map(|_| Upos::Punct));
            s.heads.push(None);
        }
        s
    }

    /// Perplexity of `stream` under the add-one-smoothed unigram distribution of `train`
    /// (the baseline a trained model must beat by far).
    pub fn unigram_perplexity(&self, train: &TokenStream, stream: &TokenStream) -> f64 {
        let mut counts = vec![1.0f64; self.len()];
        for &id in &train.ids {
            counts[id as usize] += 1.0;
        }
        let total: f64 = counts.iter().sum();
        // Score the same positions the model scores: every token after the first.
        let nll: f64 = stream.ids[1..]
            .iter()
            .map(|&id| -(counts[id as usize] / total).ln())
            .sum();
        (nll / (stream.ids.len() - 1).max(1) as f64).exp()
    }
}

/// A split as one stream of ids, with each token's UPOS tag and its head's absolute position
/// in the stream (`None` for roots, `<eos>` and unannotated text).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenStream {
    pub ids: Vec<u32>,
    pub upos: Vec<Option<Upos>>,
    pub heads: Vec<Option<u32>>,
}

impl TokenStream {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
