//! The lexicon tagger: each word form gets its most frequent training tag; unknown forms are
//! tagged by an [`UnknownModel`] (word class, suffix statistics of rare training words,
//! capitalisation). The tag of position `i` depends on `words[i]` and on whether `i == 0`,
//! so it is leak-free.

use super::features::{norm, suffix, word_class, WordClass};
use super::{model_err, model_tag, tagged, Tagger, MODEL_FORMAT};
use crate::ling::compat::NTAGS;
use crate::ling::Sentence;
use crate::ling::Upos;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The `kind` of a saved lexicon.
pub const KIND: &str = "lexicon";
/// Longest suffix the unknown-word model uses.
pub const MAX_SUFFIX: usize = 5;
/// Training forms seen at most this often feed the unknown-word statistics (as in TnT).
pub const RARE: u32 = 10;

type Counts = [u32; NTAGS];

fn argmax(p: &[f64; NTAGS]) -> Upos {
    let mut best = 0;
    for i in 1..NTAGS {
        if p[i] > p[best] {
            best = i;
        }
    }
    Upos::ALL[best]
}

fn argmax_counts(c: &Counts) -> Upos {
    // Ties go to the lower tag index (deterministic).
    let mut best = 0;
    for i in 1..NTAGS {
        if c[i] > c[best] {
            best = i;
        }
    }
    Upos::ALL[best]
}

fn normalise(c: &Counts) -> Option<[f64; NTAGS]> {
    let total: u32 = c.iter().sum();
    (total > 0).then(|| {
        let mut p = [0.0; NTAGS];
        for (pi, &ci) in p.iter_mut().zip(c) {
            *pi = f64::from(ci) / f64::from(total);
        }
        p
    })
}

/// Tag distribution of unknown words from the statistics of rare training words.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnknownModel {
    /// Tag counts of rare words per [`WordClass`].
    class: Vec<Counts>,
    /// Tag counts of rare capitalised words at sentence start (`i == 0`).
    initial_cap: Counts,
    /// Tag counts of rare capitalised words elsewhere.
    inner_cap: Counts,
    /// Suffix → tag counts of rare lower-case words (suffix lengths 1..=MAX_SUFFIX).
    suffix_lower: HashMap<String, Counts>,
    /// Suffix → tag counts of rare capitalised words not at sentence start.
    suffix_cap: HashMap<String, Counts>,
    /// Tag distribution of all rare words.
    prior: [f64; NTAGS],
    /// Successive-abstraction weight (TnT's θ: the standard deviation of `prior`).
    theta: f64,
}

impl UnknownModel {
    /// Learn from `(word, tag, sentence-initial)` occurrences of rare words.
    fn learn<'a>(rare: impl Iterator<Item = (&'a str, Upos, bool)>) -> Self {
        let mut m = UnknownModel {
            class: vec![[0; NTAGS]; WordClass::ALL.len()],
            ..Default::default()
        };
        let mut prior = [0u32; NTAGS];
        for (w, t, initial) in rare {
            let c = word_class(w);
            m.class[c.index()][t as usize] += 1;
            prior[t as usize] += 1;
            let lw = norm(w);
            let table = match c {
                WordClass::Lower => Some(&mut m.suffix_lower),
                WordClass::InitCap | WordClass::AllCaps if initial => {
                    m.initial_cap[t as usize] += 1;
                    None
                }
                WordClass::InitCap | WordClass::AllCaps => {
                    m.inner_cap[t as usize] += 1;
                    Some(&mut m.suffix_cap)
                }
                _ => None,
            };
            if let Some(table) = table {
                for n in 1..=MAX_SUFFIX.min(lw.chars().count()) {
                    table
                        .entry(suffix(&lw, n).to_string())
                        .or_insert([0; NTAGS])[t as usize] += 1;
                }
            }
        }
        m.prior = normalise(&prior).unwrap_or([1.0 / NTAGS as f64; NTAGS]);
        let mean = 1.0 / NTAGS as f64;
        let var = m.prior.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (NTAGS - 1) as f64;
        m.theta = var.sqrt().max(1e-3);
        m
    }

    /// P(tag | suffixes of `lw`) by successive abstraction over the longest suffixes seen,
    /// starting from the tag distribution `base` of the word's case group.
    fn suffix_dist(
        &self,
        table: &HashMap<String, Counts>,
        base: &Counts,
        lw: &str,
    ) -> [f64; NTAGS] {
        let mut p = normalise(base).unwrap_or(self.prior);
        for n in 1..=MAX_SUFFIX.min(lw.chars().count()) {
            let Some(c) = table.get(suffix(lw, n)) else {
                break;
            };
            let Some(q) = normalise(c) else { break };
            for (pi, qi) in p.iter_mut().zip(q) {
                *pi = (qi + self.theta * *pi) / (1.0 + self.theta);
            }
        }
        p
    }

    fn lower_counts(&self) -> &Counts {
        &self.class[WordClass::Lower.index()]
    }

    /// The tag distribution of an unknown word at position `i`.
    pub fn dist(&self, w: &str, initial: bool) -> [f64; NTAGS] {
        let c = word_class(w);
        let lw = norm(w);
        match c {
            WordClass::Lower | WordClass::Other => {
                self.suffix_dist(&self.suffix_lower, self.lower_counts(), &lw)
            }
            WordClass::InitCap | WordClass::AllCaps if initial => {
                // Naive-Bayes combination of the lower-case suffix evidence and the prior of
                // rare capitalised sentence-initial words.
                let s = self.suffix_dist(&self.suffix_lower, self.lower_counts(), &lw);
                let Some(init) = normalise(&self.initial_cap) else {
                    return s;
                };
                let mut p = [0.0; NTAGS];
                for k in 0..NTAGS {
                    p[k] = s[k] * (init[k] + 1e-3) / (self.prior[k] + 1e-3);
                }
                p
            }
            WordClass::InitCap | WordClass::AllCaps => {
                self.suffix_dist(&self.suffix_cap, &self.inner_cap, &lw)
            }
            _ => match self.class.get(c.index()).and_then(normalise) {
                Some(p) => p,
                None => {
                    let mut p = [0.0; NTAGS];
                    p[default_for_class(c) as usize] = 1.0;
                    p
                }
            },
        }
    }

    /// The most probable tag of an unknown word.
    pub fn guess(&self, w: &str, initial: bool) -> Upos {
        argmax(&self.dist(w, initial))
    }
}

/// The tag of a form class when training saw no example of it.
fn default_for_class(c: WordClass) -> Upos {
    match c {
        WordClass::Punct => Upos::Punct,
        WordClass::Symbol => Upos::Sym,
        WordClass::Number => Upos::Num,
        WordClass::Web => Upos::X,
        WordClass::InitCap | WordClass::AllCaps => Upos::Propn,
        _ => Upos::Noun,
    }
}

/// Most-frequent-tag lexicon with an unknown-word model.
#[derive(Clone, Debug, PartialEq)]
pub struct LexiconTagger {
    exact: HashMap<String, Upos>,
    lower: HashMap<String, Upos>,
    /// Lower-cased training frequency of each form.
    freq: HashMap<String, u32>,
    unknown: UnknownModel,
}

impl LexiconTagger {
    /// Learn from the tagged sentences of `train`.
    pub fn train(train: &[Sentence]) -> Result<Self> {
        let data = tagged(train)?;
        let mut exact: HashMap<String, Counts> = HashMap::new();
        let mut lower: HashMap<String, Counts> = HashMap::new();
        for (words, tags) in &data {
            for (w, &t) in words.iter().zip(tags.iter()) {
                exact.entry(w.clone()).or_insert([0; NTAGS])[t as usize] += 1;
                lower.entry(norm(w)).or_insert([0; NTAGS])[t as usize] += 1;
            }
        }
        let freq: HashMap<String, u32> = lower
            .iter()
            .map(|(w, c)| (w.clone(), c.iter().sum()))
            .collect();
        let rare = data.iter().flat_map(|(words, tags)| {
            let freq = &freq;
            words
                .iter()
                .zip(tags.iter())
                .enumerate()
                .filter(move |(_, (w, _))| freq.get(&norm(w)).copied().unwrap_or(0) <= RARE)
                .map(|(i, (w, &t))| (w.as_str(), t, i == 0))
        });
        let unknown = UnknownModel::learn(rare);
        Ok(LexiconTagger {
            exact: exact
                .into_iter()
                .map(|(w, c)| (w, argmax_counts(&c)))
                .collect(),
            lower: lower
                .into_iter()
                .map(|(w, c)| (w, argmax_counts(&c)))
                .collect(),
            freq,
            unknown,
        })
    }

    /// The tag of a form, and whether it was in the lexicon.
    pub fn lookup(&self, w: &str, initial: bool) -> (Upos, bool) {
        if let Some(&t) = self.exact.get(w) {
            return (t, true);
        }
        if let Some(&t) = self.lower.get(&norm(w)) {
            return (t, true);
        }
        (self.unknown.guess(w, initial), false)
    }

    /// Whether the (lower-cased) form was seen in training.
    pub fn knows(&self, w: &str) -> bool {
        self.freq.contains_key(&norm(w))
    }

    /// Lower-cased training frequency of a form (0 when unseen).
    pub fn frequency(&self, w: &str) -> u32 {
        self.freq.get(&norm(w)).copied().unwrap_or(0)
    }

    /// The unknown-word model.
    pub fn unknown_model(&self) -> &UnknownModel {
        &self.unknown
    }

    /// Number of distinct forms (case-sensitive).
    pub fn forms(&self) -> usize {
        self.exact.len()
    }

    /// Serialise as a versioned JSON model.
    pub fn to_json(&self) -> String {
        let tag_map = |m: &HashMap<String, Upos>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(w, t)| (w.clone(), t.name().to_string()))
                .collect()
        };
        let counts_map = |m: &HashMap<String, Counts>| -> BTreeMap<String, Counts> {
            m.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        let f = LexiconFile {
            format: MODEL_FORMAT,
            kind: KIND.into(),
            tags: Upos::ALL.iter().map(|t| t.name().to_string()).collect(),
            exact: tag_map(&self.exact),
            lower: tag_map(&self.lower),
            freq: self.freq.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            unknown: UnknownFile {
                class: WordClass::ALL
                    .iter()
                    .map(|c| (format!("{c:?}"), self.unknown.class[c.index()]))
                    .collect(),
                initial_cap: self.unknown.initial_cap,
                inner_cap: self.unknown.inner_cap,
                suffix_lower: counts_map(&self.unknown.suffix_lower),
                suffix_cap: counts_map(&self.unknown.suffix_cap),
                prior: self.unknown.prior,
                theta: self.unknown.theta,
            },
        };
        serde_json::to_string(&f).expect("plain data serialises")
    }

    /// Save (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, self.to_json().as_bytes())
    }

    /// Parse a saved model (`path` names the source in errors).
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let f: LexiconFile = serde_json::from_str(text).map_err(|e| model_err(path, e))?;
        check_header(path, f.format, &f.kind, KIND, &f.tags)?;
        let tag_map = |m: BTreeMap<String, String>| -> Result<HashMap<String, Upos>> {
            m.into_iter()
                .map(|(w, t)| Ok((w, model_tag(path, &t)?)))
                .collect()
        };
        let mut class = vec![[0; NTAGS]; WordClass::ALL.len()];
        for (name, c) in f.unknown.class {
            let wc = WordClass::ALL
                .iter()
                .find(|wc| format!("{wc:?}") == name)
                .ok_or_else(|| Error::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    msg: format!("unknown word class `{name}` in lexicon"),
                })?;
            class[wc.index()] = c;
        }
        Ok(LexiconTagger {
            exact: tag_map(f.exact)?,
            lower: tag_map(f.lower)?,
            freq: f.freq.into_iter().collect(),
            unknown: UnknownModel {
                class,
                initial_cap: f.unknown.initial_cap,
                inner_cap: f.unknown.inner_cap,
                suffix_lower: f.unknown.suffix_lower.into_iter().collect(),
                suffix_cap: f.unknown.suffix_cap.into_iter().collect(),
                prior: f.unknown.prior,
                theta: f.unknown.theta,
            },
        })
    }
}

/// Check a model file's format, kind and tag order.
pub(crate) fn check_header(
    path: &Path,
    format: u32,
    kind: &str,
    want: &str,
    tags: &[String],
) -> Result<()> {
    let bad = |msg: String| Error::Parse {
        path: path.to_path_buf(),
        line: 1,
        msg,
    };
    if format != MODEL_FORMAT {
        return Err(bad(format!(
            "tagger model format {format} is not supported (this build reads {MODEL_FORMAT})"
        )));
    }
    if kind != want {
        return Err(bad(format!("expected a `{want}` model, found `{kind}`")));
    }
    let names: Vec<&str> = Upos::ALL.iter().map(|t| t.name()).collect();
    if tags.iter().map(String::as_str).ne(names.iter().copied()) {
        return Err(bad(format!(
            "the model's tag list {tags:?} differs from this build's UPOS order"
        )));
    }
    Ok(())
}

impl Tagger for LexiconTagger {
    fn name(&self) -> String {
        "lexicon".into()
    }
    fn tag_next(&self, words: &[&str], _prev: &[Upos]) -> Upos {
        let i = words.len() - 1;
        self.lookup(words[i], i == 0).0
    }
}

#[derive(Serialize, Deserialize)]
struct UnknownFile {
    class: BTreeMap<String, Counts>,
    initial_cap: Counts,
    inner_cap: Counts,
    suffix_lower: BTreeMap<String, Counts>,
    suffix_cap: BTreeMap<String, Counts>,
    prior: [f64; NTAGS],
    theta: f64,
}

#[derive(Serialize, Deserialize)]
struct LexiconFile {
    format: u32,
    kind: String,
    tags: Vec<String>,
    exact: BTreeMap<String, String>,
    lower: BTreeMap<String, String>,
    freq: BTreeMap<String, u32>,
    unknown: UnknownFile,
}
