//! Vocabularies (word-level, or the fixed GPT-2 BPE) and the token stream a language model
//! reads.
//!
//! **Word level** (the default): one token per word, ids built from the training text.
//!
//! **GPT-2 BPE** ([`Tokenizer::Gpt2`]): the fixed 50,257 ids of GPT-2's byte-level BPE (the
//! `r50k_base` ranks embedded in `tiktoken-rs`, so no download), `<|endoftext|>` (50256) as the
//! end-of-sentence token and no `<unk>`. Each word is encoded on its own, with a leading space
//! as GPT-2 sees running text (`" word"`), so every BPE token belongs to exactly one word.
//! Tags from a causal tagger ([`Vocab::encode_tagged`]) are computed per piece from the
//! partial word so far (see [`super::tags`]); the corpus's own (gold) tags, kept by
//! [`Vocab::encode`], are inherited by every piece of a word — which leaks the rest of the
//! word, so they serve measurement only. Corpus text is used as it is: WikiText-2's `@-@`, `@,@`,
//! `@.@` joiners and `<unk>` are BPE-encoded literally (` @-@` → ` @`, `-`, `@`), which is what
//! GPT-2 tokenising the WikiText files (e.g. a Hugging Face pipeline) does as well; lines end
//! with `<|endoftext|>` instead of a newline. Perplexity is then per BPE token. Dependency
//! heads, where the corpus has them, map every subword of a word to the *first* subword of
//! its head word (roots stay `None`).

use super::tags::{tag_pieces, Piece};
use super::Sentence;
use crate::ling::tagger::Tagger;
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
/// GPT-2's vocabulary size.
pub const GPT2_VOCAB: usize = 50_257;
/// GPT-2's `<|endoftext|>` id (the end-of-sentence token of [`Tokenizer::Gpt2`]).
pub const GPT2_EOS: u32 = 50_256;

/// How text becomes token ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// One token per word; ids from the training text (`<unk>` 0, `<eos>` 1).
    #[default]
    Word,
    /// GPT-2 byte-level BPE: 50,257 fixed ids, `<|endoftext|>` = 50256 ends each sentence.
    Gpt2,
}

impl Tokenizer {
    /// True for the default (word level); configs leave the default out.
    pub fn is_word(&self) -> bool {
        *self == Tokenizer::Word
    }

    /// `word` or `gpt2`.
    pub fn name(&self) -> &'static str {
        match self {
            Tokenizer::Word => "word",
            Tokenizer::Gpt2 => "gpt2",
        }
    }
}

impl std::fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Tokenizer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Tokenizer> {
        match s {
            "word" => Ok(Tokenizer::Word),
            "gpt2" => Ok(Tokenizer::Gpt2),
            _ => Err(Error::Config(format!(
                "tokenizer {s:?}: expected word or gpt2"
            ))),
        }
    }
}

fn gpt2_bpe() -> &'static tiktoken_rs::CoreBPE {
    tiktoken_rs::r50k_base_singleton()
}

/// GPT-2 BPE of one word as it appears in running text: `" " + word`.
pub fn gpt2_encode_word(word: &str) -> Vec<u32> {
    gpt2_bpe().encode_ordinary(&format!(" {word}"))
}

/// The text of GPT-2 token ids (bytes that are not valid UTF-8 on their own are replaced).
pub fn gpt2_decode(ids: &[u32]) -> String {
    let bytes = gpt2_bpe().decode_bytes(ids).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Word ↔ id map. Word level: ids 0 and 1 are `<unk>` and `<eos>`; the rest are the training
/// words seen at least `min_count` times, most frequent first (ties alphabetical), so a
/// vocabulary is a pure function of the training text. GPT-2: the fixed BPE ids (see the
/// module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, u32>,
    tokenizer: Tokenizer,
}

#[derive(Serialize, Deserialize)]
struct VocabFile {
    format: u32,
    /// Left out for word level, so those files are byte-identical to before it existed.
    #[serde(default, skip_serializing_if = "Tokenizer::is_word")]
    tokenizer: Tokenizer,
    /// The words of a word-level vocabulary (empty for GPT-2, whose ids are fixed).
    words: Vec<String>,
}

impl Vocab {
    /// The vocabulary of `tokenizer`: word level from the training sentences (see
    /// [`build`](Self::build)); GPT-2's fixed ids (`train` and `min_count` unused).
    pub fn for_tokenizer(
        tokenizer: Tokenizer,
        train: &[Sentence],
        min_count: usize,
    ) -> Result<Vocab> {
        match tokenizer {
            Tokenizer::Word => Self::build(train, min_count),
            Tokenizer::Gpt2 => Ok(Self::gpt2()),
        }
    }

    /// GPT-2's 50,257 BPE ids; [`word`](Self::word) gives each token's text.
    pub fn gpt2() -> Vocab {
        let bpe = gpt2_bpe();
        let words: Vec<String> = (0..GPT2_VOCAB as u32)
            .map(|id| {
                if id == GPT2_EOS {
                    "<|endoftext|>".to_string()
                } else {
                    String::from_utf8_lossy(&bpe.decode_bytes(&[id]).unwrap_or_default())
                        .into_owned()
                }
            })
            .collect();
        let mut index = HashMap::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            index.entry(w.clone()).or_insert(i as u32);
        }
        Vocab {
            words,
            index,
            tokenizer: Tokenizer::Gpt2,
        }
    }

    /// Build a word-level vocabulary from training sentences.
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
        Vocab {
            words,
            index,
            tokenizer: Tokenizer::Word,
        }
    }

    /// The tokenizer this vocabulary encodes with.
    pub fn tokenizer(&self) -> Tokenizer {
        self.tokenizer
    }

    /// The id that ends every sentence: `<eos>` ([`EOS`]) or GPT-2's `<|endoftext|>`
    /// ([`GPT2_EOS`]).
    pub fn eos(&self) -> u32 {
        match self.tokenizer {
            Tokenizer::Word => EOS,
            Tokenizer::Gpt2 => GPT2_EOS,
        }
    }

    /// The id of unknown words ([`UNK`]); None for GPT-2, which encodes any text.
    pub fn unk(&self) -> Option<u32> {
        match self.tokenizer {
            Tokenizer::Word => Some(UNK),
            Tokenizer::Gpt2 => None,
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Always false (a vocabulary holds at least `<unk>` and `<eos>`).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Id of a word. Word level: `<unk>` if unknown. GPT-2: the token whose text is exactly
    /// `word`, else the first token of `word`'s encoding in running text (use [`encode`]
    /// for whole words).
    ///
    /// [`encode`]: Self::encode
    pub fn id(&self, word: &str) -> u32 {
        match (self.index.get(word), self.tokenizer) {
            (Some(&id), _) => id,
            (None, Tokenizer::Word) => UNK,
            (None, Tokenizer::Gpt2) => gpt2_encode_word(word).first().copied().unwrap_or(GPT2_EOS),
        }
    }

    /// Word (GPT-2: token text) of an id.
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
            tokenizer: self.tokenizer,
            words: match self.tokenizer {
                Tokenizer::Word => self.words.clone(),
                Tokenizer::Gpt2 => vec![],
            },
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
        if f.format == VOCAB_FORMAT && f.tokenizer == Tokenizer::Gpt2 {
            return Ok(Self::gpt2());
        }
        if f.format != VOCAB_FORMAT || f.words.len() < 2 || f.words[0] != "<unk>" {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: 1,
                msg: format!("unsupported vocabulary (format {})", f.format),
            });
        }
        Ok(Self::from_words(f.words))
    }

    /// Concatenate sentences into one stream, the end-of-sentence id after each (tagged
    /// `PUNCT` when the sentence is tagged). GPT-2: every subword carries its word's tag and
    /// head (see the module documentation).
    pub fn encode(&self, sents: &[Sentence]) -> TokenStream {
        if self.tokenizer == Tokenizer::Gpt2 {
            return encode_gpt2(sents);
        }
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

    /// As [`encode`](Self::encode), with the tags of a causal `tagger` in place of the
    /// sentences' own (None: keep them). Every token's tag comes from
    /// [`tag_pieces`](super::tags::tag_pieces): at word level the word's tag given the words
    /// before it; with GPT-2 each piece's tag from the partial word so far, so no piece's tag
    /// depends on the pieces after it. Tags are computed from the corpus words, not from
    /// `<unk>`. Heads are as in `encode`.
    pub fn encode_tagged(&self, sents: &[Sentence], tagger: Option<&dyn Tagger>) -> TokenStream {
        use rayon::prelude::*;
        let mut s = self.encode(sents);
        let Some(tagger) = tagger else { return s };
        let partials: HashMap<&str, Vec<String>> = if self.tokenizer == Tokenizer::Gpt2 {
            let mut types: Vec<&str> = sents
                .iter()
                .flat_map(|x| x.words.iter().map(String::as_str))
                .collect();
            types.sort_unstable();
            types.dedup();
            types
                .par_iter()
                .map(|&w| (w, gpt2_partial_words(w)))
                .collect()
        } else {
            HashMap::new()
        };
        let per_sentence: Vec<Vec<Upos>> = sents
            .par_iter()
            .map(|sent| {
                let mut pieces = Vec::with_capacity(sent.words.len() * 2 + 1);
                for w in &sent.words {
                    match partials.get(w.as_str()) {
                        Some(ps) => pieces.extend(ps.iter().enumerate().map(|(k, p)| Piece {
                            word_so_far: p,
                            starts_word: k == 0,
                            eos: false,
                        })),
                        None => pieces.push(Piece {
                            word_so_far: w,
                            starts_word: true,
                            eos: false,
                        }),
                    }
                }
                pieces.push(Piece {
                    word_so_far: "",
                    starts_word: true,
                    eos: true,
                });
                tag_pieces(tagger, &pieces)
            })
            .collect();
        s.upos = per_sentence.into_iter().flatten().map(Some).collect();
        debug_assert_eq!(s.upos.len(), s.ids.len());
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

/// The partial words a tagger sees for the GPT-2 pieces of `word` (one per piece): the
/// decoded bytes of pieces `0..=k`, without the word-initial space.
pub fn gpt2_partial_words(word: &str) -> Vec<String> {
    let ids = gpt2_encode_word(word);
    (1..=ids.len())
        .map(|k| {
            let text = gpt2_decode(&ids[..k]);
            text.strip_prefix(' ').unwrap_or(&text).to_string()
        })
        .collect()
}

fn encode_gpt2(sents: &[Sentence]) -> TokenStream {
    let mut s = TokenStream {
        eos: GPT2_EOS,
        ..TokenStream::default()
    };
    // WikiText-2 has ~33k word types in ~2M words: encode each type once.
    let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut first = Vec::new();
    let mut word_of = Vec::new();
    for sent in sents {
        first.clear();
        word_of.clear();
        for (i, w) in sent.words.iter().enumerate() {
            first.push(s.ids.len() as u32);
            let pieces = cache
                .entry(w.as_str())
                .or_insert_with(|| gpt2_encode_word(w));
            for &p in pieces.iter() {
                s.ids.push(p);
                s.upos.push(sent.upos.as_ref().map(|u| u[i]));
                word_of.push(i);
            }
        }
        for &i in &word_of {
            s.heads.push(
                sent.heads
                    .as_ref()
                    .and_then(|h| (h[i] > 0).then(|| first[h[i] as usize - 1])),
            );
        }
        debug_assert_eq!(s.heads.len(), s.ids.len());
        s.ids.push(GPT2_EOS);
        s.upos.push(sent.upos.as_ref().map(|_| Upos::Punct));
        s.heads.push(None);
    }
    s
}

/// A split as one stream of ids, with each token's UPOS tag and its head's absolute position
/// in the stream (`None` for roots, `<eos>` and unannotated text).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenStream {
    pub ids: Vec<u32>,
    pub upos: Vec<Option<Upos>>,
    pub heads: Vec<Option<u32>>,
    /// The id that ends a sentence in this stream ([`EOS`] for word level, [`GPT2_EOS`]);
    /// batches pad with it and E1 splits its units at it.
    pub eos: u32,
}

impl Default for TokenStream {
    fn default() -> Self {
        TokenStream {
            ids: vec![],
            upos: vec![],
            heads: vec![],
            eos: EOS,
        }
    }
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
