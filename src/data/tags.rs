//! Where the UPOS tags of a token stream come from, and the causal rule that computes them.
//!
//! A mask (or E4's tag bias) built from tags feeds a *causal* language model, so the tag of
//! stream position `i` may depend on tokens `0..=i` only (DESIGN.md §2, "tag leakage").
//! [`TagsChoice`] names the source of a run's tags (`--tags builtin|rules|gold|model:PATH`);
//! [`tag_pieces`] is the one function that turns a stream of tokens into tags, one token at a
//! time, so position `i` sees only the pieces up to `i`:
//!
//! - **word level**: every token is a word; its tag is the tagger's tag of that word given the
//!   words before it in its sentence and the tags already emitted for them;
//! - **GPT-2 BPE**: a word arrives as several pieces. Piece `k` of a word is tagged as if the
//!   word were the text of its pieces `0..=k` (the partial word) after the same left context;
//!   so the first piece of `antidisestablishmentarianism` is tagged from `ant` alone. The last piece's tag is
//!   the word's tag, and that is the tag the next words see as their left context. Whether a
//!   piece starts a word is read from the piece itself (GPT-2 pieces that start a word carry
//!   the leading space), and a sentence starts after `<eos>` or after a word `.`, `!`, `?`.
//!
//! Gold tags are the corpus annotation. On real treebanks annotators resolved them with the
//! whole sentence in view, and with BPE every piece inherits its word's gold tag, so gold tags
//! leak the future: they may measure (E1's oracle), never shape the mask or bias of a model
//! being trained unless a run says it studies the leak (`allow_gold_train`).

use crate::ling::tagger::{self, Tagger};
use crate::ling::Upos;
use crate::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The source of a run's UPOS tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum TagsChoice {
    /// The built-in causal tagger of the corpus's language: for real text the English model
    /// embedded in the binary (trained on UD English-EWT), for the synthetic grammar a causal
    /// perceptron trained on the grammar's own sentences ([`synthetic_tagger`]).
    #[default]
    Builtin,
    /// The rule-based tagger (closed-class lists and suffixes; needs no training).
    Rules,
    /// The corpus annotation (synthetic grammar, CoNLL-U). Leaks the future into a causal
    /// model: refused for masked or tag-biased training unless `allow_gold_train`.
    Gold,
    /// A model saved by `asa-lth asa train-tagger` (a relative path is taken from the
    /// working directory of the process that loads the corpus).
    Model(PathBuf),
}

impl TagsChoice {
    /// `builtin`, `rules`, `gold` or `model:PATH`.
    pub fn name(&self) -> String {
        match self {
            TagsChoice::Builtin => "builtin".into(),
            TagsChoice::Rules => "rules".into(),
            TagsChoice::Gold => "gold".into(),
            TagsChoice::Model(p) => format!("model:{}", p.display()),
        }
    }

    /// What the tags are, in a few words, for results and report headers.
    pub fn describe(&self, synthetic: bool) -> String {
        match self {
            TagsChoice::Builtin if synthetic => format!(
                "builtin (causal perceptron trained on {SYNTHETIC_TAGGER_SENTENCES} sentences \
                 of the synthetic grammar)"
            ),
            TagsChoice::Builtin => {
                "builtin (causal perceptron trained on UD English-EWT train, CC BY-SA 4.0)".into()
            }
            TagsChoice::Rules => "rules (closed-class lists and suffixes)".into(),
            TagsChoice::Gold => "gold (the corpus annotation)".into(),
            TagsChoice::Model(p) => format!("model:{} (causal)", p.display()),
        }
    }

    /// True for gold tags (which leak the future into a causal model's mask).
    pub fn is_gold(&self) -> bool {
        *self == TagsChoice::Gold
    }

    /// The tags of `corpus_kind` text (`synthetic` or anything else): a causal tagger, or
    /// `None` for gold (the corpus's own annotation).
    pub fn tagger(&self, synthetic: bool) -> Result<Option<Arc<dyn Tagger>>> {
        Ok(match self {
            TagsChoice::Gold => None,
            TagsChoice::Rules => Some(Arc::new(tagger::RuleTagger)),
            TagsChoice::Model(p) => Some(Arc::from(tagger::load_model(p)?)),
            TagsChoice::Builtin if synthetic => Some(synthetic_tagger()?),
            TagsChoice::Builtin => Some(tagger::builtin::english()?),
        })
    }
}

impl std::fmt::Display for TagsChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for TagsChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<TagsChoice> {
        match s {
            "builtin" => Ok(TagsChoice::Builtin),
            "rules" => Ok(TagsChoice::Rules),
            "gold" => Ok(TagsChoice::Gold),
            _ => match s.strip_prefix("model:") {
                Some(p) if !p.is_empty() => Ok(TagsChoice::Model(PathBuf::from(p))),
                _ => Err(Error::Config(format!(
                    "tags {s:?}: expected builtin, rules, gold or model:PATH (a model saved by \
                     `asa-lth asa train-tagger`)"
                ))),
            },
        }
    }
}

impl Serialize for TagsChoice {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for TagsChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Sentences of the synthetic grammar the synthetic corpus's built-in tagger learns from,
/// and their seed (fixed, so the tagger is the same for every corpus seed and size).
pub const SYNTHETIC_TAGGER_SENTENCES: usize = 4_000;
const SYNTHETIC_TAGGER_SEED: u64 = 0x7A66_E55E_ED00_0001;

/// The built-in tagger of the synthetic grammar: a causal averaged perceptron trained once
/// per process on [`SYNTHETIC_TAGGER_SENTENCES`] sentences of the grammar (a fixed seed),
/// so its tags resolve the grammar's ambiguous forms (`that`) from the left context only,
/// where the generator's gold tags announce what follows.
pub fn synthetic_tagger() -> Result<Arc<dyn Tagger>> {
    static CELL: OnceLock<std::result::Result<Arc<tagger::PerceptronTagger>, String>> =
        OnceLock::new();
    let r = CELL.get_or_init(|| {
        let sents = super::synthetic::generate(SYNTHETIC_TAGGER_SENTENCES, SYNTHETIC_TAGGER_SEED);
        tagger::PerceptronTagger::train(&sents, &tagger::TrainOptions::default())
            .map(Arc::new)
            .map_err(|e| e.to_string())
    });
    match r {
        Ok(t) => Ok(t.clone()),
        Err(e) => Err(Error::Config(format!("synthetic built-in tagger: {e}"))),
    }
}

/// One token as the causal tag rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The text of the word this token belongs to, up to and including this token, without
    /// the word-initial space: the whole word at word level; for BPE the bytes of the word's
    /// pieces so far (lossily decoded), so the partial word is a function of those pieces.
    pub word_so_far: &'a str,
    /// True when the token starts a new word (always, at word level).
    pub starts_word: bool,
    /// True for the end-of-sentence token (tagged `PUNCT`; the next token starts a sentence).
    pub eos: bool,
}

/// The form a tagger sees for a word: WikiText's joiners `@-@`, `@,@`, `@.@` (a hyphen,
/// thousands separator or decimal point split off by its tokeniser) as `-`, `,`, `.`. A
/// per-form rewrite, so it cannot leak.
pub fn tagger_form(w: &str) -> &str {
    match w {
        "@-@" => "-",
        "@,@" => ",",
        "@.@" => ".",
        _ => w,
    }
}

/// Whether a finished word ends a sentence inside a line (`.`, `!`, `?`; not WikiText's
/// `@.@` joiner), so the next word is tagged as sentence-initial.
fn ends_sentence(w: &str) -> bool {
    matches!(w, "." | "!" | "?")
}

/// The causal tag of every piece (see the module documentation): a streaming function, so
/// tag `i` is computed before piece `i + 1` is read.
pub fn tag_pieces(tagger: &dyn Tagger, pieces: &[Piece]) -> Vec<Upos> {
    let mut out = Vec::with_capacity(pieces.len());
    // The current sentence's finished words (tagger forms) and the tags emitted for them.
    let mut words: Vec<String> = Vec::new();
    let mut tags: Vec<Upos> = Vec::new();
    // The word being read, and the tag emitted for its latest piece.
    let mut partial = String::new();
    let mut partial_tag = Upos::X;
    let mut in_word = false;
    for p in pieces {
        if p.eos {
            words.clear();
            tags.clear();
            partial.clear();
            in_word = false;
            out.push(Upos::Punct);
            continue;
        }
        if p.starts_word && in_word {
            let done = std::mem::take(&mut partial);
            if ends_sentence(tagger_form(&done)) {
                words.clear();
                tags.clear();
            } else {
                words.push(tagger_form(&done).to_string());
                tags.push(partial_tag);
            }
        }
        in_word = true;
        partial.clear();
        partial.push_str(p.word_so_far);
        let mut view: Vec<&str> = Vec::with_capacity(words.len() + 1);
        view.extend(words.iter().map(String::as_str));
        view.push(tagger_form(&partial));
        partial_tag = tagger.tag_next(&view, &tags);
        out.push(partial_tag);
    }
    out
}

/// The causal tags of one line of whole words (each word one piece), with sentences split
/// after `.`, `!`, `?` as [`tag_pieces`] splits them.
pub fn tag_line(tagger: &dyn Tagger, words: &[String]) -> Vec<Upos> {
    let pieces: Vec<Piece> = words
        .iter()
        .map(|w| Piece {
            word_so_far: w,
            starts_word: true,
            eos: false,
        })
        .collect();
    tag_pieces(tagger, &pieces)
}
