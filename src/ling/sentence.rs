//! A sentence of words with optional annotation, shared by the readers, taggers and corpora.

use super::Upos;

/// One sentence (or, for WikiText, one line): words, and where known their UPOS tags and
/// 1-based dependency heads (0 = root).
#[derive(Clone, Debug, PartialEq)]
pub struct Sentence {
    pub words: Vec<String>,
    pub upos: Option<Vec<Upos>>,
    pub heads: Option<Vec<u32>>,
}
