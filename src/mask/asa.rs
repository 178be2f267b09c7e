//! The ASA mask builder: UPOS tags → bit-packed attention masks (DESIGN.md §3).
//!
//! For sequence `b`, (mask) head `h`, query `i` and key `j`:
//!
//! `M[b][h][i][j] = (j == i) ∨ (j < i ∧ compat_h[tag_i][tag_j])`
//!
//! - **Causality** is built in (keys after the query are never set) even though the kernels
//!   apply `j ≤ i` again; **self** is always allowed, so no row is ever empty.
//! - **Per head**: a [`CompatSet`] with one matrix per head gives a `(B, H, T, ⌈T/32⌉)` mask;
//!   a single matrix gives one shared head.
//! - **Unknown tags** ([`NO_TAG`]): the policy is [`UnknownTag::SelfOnly`] by default — such
//!   a position attends only to itself and no other query sees it. Padding in evaluation
//!   windows (the unscored tail of a row) carries `NO_TAG`, so it never becomes a key of a
//!   real query (it also lies after every real query, so causality alone already hides it)
//!   and its own rows are never scored. [`UnknownTag::AsX`] treats unknown tags as `X`
//!   instead.
//!
//! Building costs one pass over the tags plus, per sequence and head, `17 × ⌈T/32⌉` word ORs
//! for the per-tag key sets and `⌈T/32⌉` word copies per row: the query row is the
//! precomputed row of its tag cut at the diagonal.
//!
//! [`Refiner`] then applies the word-level refinements: pronoun binding and selectional
//! restrictions from a [`LexicalResource`].

use super::bits::BitMask;
use crate::data::batch::{Batch, NO_TAG};
use crate::ling::compat::{CompatSet, NTAGS};
use crate::ling::lexres::{Agreement, EnglishPronouns, LexicalResource, Number, PronounKind};
use crate::ling::Upos;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What positions without a tag ([`NO_TAG`]) may attend to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownTag {
    /// Only themselves; invisible to every other query.
    #[default]
    SelfOnly,
    /// Like an `X` token.
    AsX,
}

/// Builds ASA masks from tags.
#[derive(Clone, Debug)]
pub struct AsaMaskBuilder {
    /// Per mask head, the 17 key-tag sets.
    rows: Vec<[u32; NTAGS]>,
    unknown: UnknownTag,
}

/// Bits `0..=i%32` of the word holding key `i`.
#[inline]
fn upto(i: usize) -> u32 {
    u32::MAX >> (31 - i % 32)
}

impl AsaMaskBuilder {
    /// A builder for `compat` (one head per matrix).
    pub fn new(compat: &CompatSet) -> Self {
        AsaMaskBuilder {
            rows: compat.matrices().iter().map(|m| *m.rows()).collect(),
            unknown: UnknownTag::default(),
        }
    }

    /// Set the unknown-tag policy.
    pub fn with_unknown(mut self, p: UnknownTag) -> Self {
        self.unknown = p;
        self
    }

    /// Number of mask heads.
    pub fn heads(&self) -> usize {
        self.rows.len()
    }

    /// Build the mask of `b` sequences of `t` tags (`tags[b·t + i]`, UPOS index or
    /// [`NO_TAG`]).
    pub fn build(&self, tags: &[u8], b: usize, t: usize) -> Result<BitMask> {
        let mut words = Vec::new();
        self.build_into(tags, b, t, &mut words)?;
        BitMask::from_words(b, self.heads(), t, words)
    }

    /// [`build`](Self::build) into a reusable buffer (resized to `b·heads·t·⌈t/32⌉` words).
    pub fn build_into(&self, tags: &[u8], b: usize, t: usize, out: &mut Vec<u32>) -> Result<()> {
        self.build_rows_into(tags, tags, b, t, out)
    }

    /// A mask whose query rows are keyed on `query_tags` and keys on `key_tags`:
    /// `M[i][j] = (j == i) ∨ (j < i ∧ compat[query_tags[i]][key_tags[j]])`. For measurement
    /// only (E1's target-tag variant keys row `i` on the tag of token `i + 1`, which a causal
    /// model must not see in training).
    pub fn build_with_query_tags(
        &self,
        key_tags: &[u8],
        query_tags: &[u8],
        b: usize,
        t: usize,
    ) -> Result<BitMask> {
        let mut words = Vec::new();
        self.build_rows_into(key_tags, query_tags, b, t, &mut words)?;
        BitMask::from_words(b, self.heads(), t, words)
    }

    fn build_rows_into(
        &self,
        tags: &[u8],
        qtags: &[u8],
        b: usize,
        t: usize,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        for (what, x) in [("tags", tags), ("query tags", qtags)] {
            if x.len() != b * t {
                return Err(Error::Mask(format!(
                    "{} {what} for B×T = {b}×{t} = {}",
                    x.len(),
                    b * t
                )));
            }
            if let Some((p, &v)) = x
                .iter()
                .enumerate()
                .find(|(_, &v)| v as usize >= NTAGS && v != NO_TAG)
            {
                return Err(Error::Mask(format!(
                    "tag value {v} at sequence {}, position {} is neither a UPOS index (0..17) \
                     nor NO_TAG ({NO_TAG})",
                    p / t,
                    p % t
                )));
            }
        }
        let w = t.div_ceil(32);
        let heads = self.heads();
        out.clear();
        out.resize(b * heads * t * w, 0);
        // Key sets per tag (index 17 = unknown), and the per-tag query rows.
        let mut keys = vec![0u32; (NTAGS + 1) * w];
        let mut tag_rows = vec![0u32; NTAGS * w];
        let x = Upos::X as usize;
        for bi in 0..b {
            let seq = &tags[bi * t..(bi + 1) * t];
            let qseq = &qtags[bi * t..(bi + 1) * t];
            keys.fill(0);
            let mut present = 0u32;
            for (j, &tg) in seq.iter().enumerate() {
                let k = match (tg, self.unknown) {
                    (NO_TAG, UnknownTag::SelfOnly) => NTAGS,
                    (NO_TAG, UnknownTag::AsX) => x,
                    (v, _) => v as usize,
                };
                keys[k * w + j / 32] |= 1 << (j % 32);
                present |= 1 << k;
            }
            let mut queries = 0u32;
            for &tg in qseq {
                queries |= match (tg, self.unknown) {
                    (NO_TAG, UnknownTag::SelfOnly) => 0,
                    (NO_TAG, UnknownTag::AsX) => 1 << x,
                    (v, _) => 1 << v,
                };
            }
            for (h, hrows) in self.rows.iter().enumerate() {
                // Row set of each present query tag: OR of the key sets it allows.
                for a in 0..NTAGS {
                    if queries >> a & 1 == 0 {
                        continue;
                    }
                    let row = &mut tag_rows[a * w..(a + 1) * w];
                    row.fill(0);
                    let mut allowed = hrows[a] & present;
                    while allowed != 0 {
                        let k = allowed.trailing_zeros() as usize;
                        allowed &= allowed - 1;
                        for (r, kw) in row.iter_mut().zip(&keys[k * w..(k + 1) * w]) {
                            *r |= kw;
                        }
                    }
                }
                let base = (bi * heads + h) * t * w;
                for (i, &tg) in qseq.iter().enumerate() {
                    let dst = &mut out[base + i * w..base + (i + 1) * w];
                    let a = match (tg, self.unknown) {
                        (NO_TAG, UnknownTag::SelfOnly) => None,
                        (NO_TAG, UnknownTag::AsX) => Some(x),
                        (v, _) => Some(v as usize),
                    };
                    let last = i / 32;
                    if let Some(a) = a {
                        let src = &tag_rows[a * w..a * w + last + 1];
                        dst[..=last].copy_from_slice(src);
                        dst[last] &= upto(i);
                    }
                    dst[last] |= 1 << (i % 32);
                }
            }
        }
        Ok(())
    }

    /// Build the mask of a batch from its tags (`batch.upos`).
    pub fn build_for_batch(&self, batch: &Batch) -> Result<BitMask> {
        self.build(&batch.upos, batch.b, batch.t)
    }
}

/// What the ASA training mask does with keys in earlier sentences of the window
/// (`--cross-sentence`). A tag pair says something about two words of one sentence; across a
/// sentence boundary the rule has no linguistic reading, so the choice is the experimenter's
/// and is recorded with the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrossSentence {
    /// The tag rule applies to every earlier key, as in the seed's mask (the default: what is
    /// reproduced is the published intervention).
    #[default]
    Compat,
    /// Every key of an earlier sentence is allowed: the rule constrains only within-sentence
    /// attention and the model keeps its full cross-sentence context.
    Allow,
    /// Keys of earlier sentences are forbidden: attention stays inside the sentence (a
    /// locality intervention on top of the tag rule).
    Block,
}

impl CrossSentence {
    /// Every choice, in the order of the command line's help.
    pub const ALL: [CrossSentence; 3] = [
        CrossSentence::Compat,
        CrossSentence::Allow,
        CrossSentence::Block,
    ];

    /// The lower-case name, as on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            CrossSentence::Compat => "compat",
            CrossSentence::Allow => "allow",
            CrossSentence::Block => "block",
        }
    }

    /// True at the default ([`CrossSentence::Compat`]), which configs leave out.
    pub fn is_default(&self) -> bool {
        *self == CrossSentence::Compat
    }
}

impl std::fmt::Display for CrossSentence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CrossSentence {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        CrossSentence::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "cross-sentence policy `{s}`: expected compat, allow or block"
                ))
            })
    }
}

/// Position of the first token of the sentence holding each position of each sequence
/// (`tokens[b·t + i]`; a sentence ends with its `eos` token; a window that starts inside a
/// sentence starts that sentence at 0).
pub fn sentence_starts(tokens: &[u32], b: usize, t: usize, eos: u32) -> Vec<usize> {
    let mut starts = vec![0usize; b * t];
    for bi in 0..b {
        let mut s = 0;
        for i in 0..t {
            starts[bi * t + i] = s;
            if tokens[bi * t + i] == eos {
                s = i + 1;
            }
        }
    }
    starts
}

/// Apply `policy` to the keys of earlier sentences in every row of `mask` (all heads), given
/// each position's sentence start ([`sentence_starts`]): [`CrossSentence::Allow`] sets them,
/// [`CrossSentence::Block`] clears them, [`CrossSentence::Compat`] leaves the tag rule's bits.
pub fn apply_cross_sentence(
    mask: &mut BitMask,
    starts: &[usize],
    policy: CrossSentence,
) -> Result<()> {
    let (b, t) = (mask.b(), mask.t());
    if starts.len() != b * t {
        return Err(Error::Mask(format!(
            "cross-sentence policy: {} sentence starts for a B×T = {b}×{t} mask",
            starts.len()
        )));
    }
    if policy == CrossSentence::Compat {
        return Ok(());
    }
    for bi in 0..b {
        for h in 0..mask.heads() {
            for i in 0..t {
                let s = starts[bi * t + i];
                let row = mask.row_mut(bi, h, i);
                // Keys 0..s: whole words, then the low bits of word s / 32.
                for w in row[..s / 32].iter_mut() {
                    *w = if policy == CrossSentence::Allow {
                        u32::MAX
                    } else {
                        0
                    };
                }
                if !s.is_multiple_of(32) {
                    let low = u32::MAX >> (32 - s % 32);
                    let w = &mut row[s / 32];
                    *w = if policy == CrossSentence::Allow {
                        *w | low
                    } else {
                        *w & !low
                    };
                }
            }
        }
    }
    Ok(())
}

/// Options of the word-level refinements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefineOptions {
    /// Pronoun binding (see [`Refiner`]).
    pub binding: bool,
    /// Guess the number of `NOUN`-tagged keys from English morphology when no resource
    /// knows it (`-s` but not `-ss`/`-us`/`-is` → plural; else singular).
    pub noun_number_heuristic: bool,
    /// Selectional restrictions from the lexical resource.
    pub selection: bool,
    /// Token id that ends a sentence (`<eos>`), for binding scopes.
    pub eos: u32,
}

impl Default for RefineOptions {
    fn default() -> Self {
        RefineOptions {
            binding: true,
            noun_number_heuristic: true,
            selection: true,
            eos: crate::data::vocab::EOS,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct WordInfo {
    agr: Agreement,
    /// Number guessed from morphology (used for NOUN-tagged tokens only).
    noun_number: Number,
    pronoun: Option<PronounKind>,
    classes: Vec<u32>,
    selects: Option<Vec<u32>>,
}

/// Word-level refinements of a tag mask, applied per token id.
///
/// **Binding.** A query tagged `PRON` whose form is a personal or reflexive pronoun (per the
/// resource, else the built-in English table) is an anaphor. Its candidate antecedents are
/// the earlier keys tagged `NOUN`, `PROPN` or `PRON`. A candidate is allowed — whatever the
/// tag matrix says — when it lies in scope (the same sentence for reflexives, the same or
/// the previous sentence for other pronouns; sentences end at the `<eos>` token) and its
/// number, gender and person do not conflict with the pronoun's (unknown features agree
/// with anything; nouns and names are third person); otherwise it is removed. Other keys of
/// the row are untouched.
///
/// **Selection.** When the query or the key is tagged `VERB`/`ADJ` and has restrictions
/// (`select`) and the other is a nominal (`NOUN`/`PROPN`/`PRON`) with known classes, the
/// pair is removed unless some class is allowed. Unknown words are never removed.
pub struct Refiner {
    info: Vec<WordInfo>,
    opts: RefineOptions,
}

fn is_nominal(tag: u8) -> bool {
    tag == Upos::Noun as u8 || tag == Upos::Propn as u8 || tag == Upos::Pron as u8
}

fn is_predicate(tag: u8) -> bool {
    tag == Upos::Verb as u8 || tag == Upos::Adj as u8
}

fn guess_noun_number(w: &str) -> Number {
    let alpha = w.chars().all(char::is_alphabetic);
    if !alpha || w.len() < 3 {
        return Number::Unknown;
    }
    if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        Number::Plur
    } else {
        Number::Sing
    }
}

impl Refiner {
    /// Precompute per token id (`0..n_ids`, `word(id)` its form) what the refinements
    /// need. `resource` is consulted before the built-in English pronoun table.
    pub fn new<'a>(
        n_ids: usize,
        word: impl Fn(u32) -> &'a str,
        resource: Option<&dyn LexicalResource>,
        opts: RefineOptions,
    ) -> Self {
        let mut class_ids: HashMap<String, u32> = HashMap::new();
        let mut intern = |names: Vec<String>| -> Vec<u32> {
            let mut v: Vec<u32> = names
                .into_iter()
                .map(|n| {
                    let next = class_ids.len() as u32;
                    *class_ids.entry(n).or_insert(next)
                })
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let builtin = EnglishPronouns;
        let info = (0..n_ids as u32)
            .map(|id| {
                let w = word(id).to_lowercase();
                let (agr, pronoun, classes, selects) = match resource {
                    Some(r) => (
                        r.agreement(&w).or(builtin.agreement(&w)),
                        r.pronoun(&w).or(builtin.pronoun(&w)),
                        r.classes(&w),
                        r.selects(&w),
                    ),
                    None => (builtin.agreement(&w), builtin.pronoun(&w), vec![], None),
                };
                WordInfo {
                    agr,
                    noun_number: guess_noun_number(&w),
                    pronoun,
                    classes: intern(classes),
                    selects: selects.map(&mut intern),
                }
            })
            .collect();
        Refiner { info, opts }
    }

    fn get(&self, id: u32) -> Option<&WordInfo> {
        self.info.get(id as usize)
    }

    fn agreement_of(&self, id: u32, tag: u8) -> Agreement {
        let Some(wi) = self.get(id) else {
            return Agreement::default();
        };
        let mut a = wi.agr;
        if tag == Upos::Noun as u8 || tag == Upos::Propn as u8 {
            a.person = a.person.or(Some(3));
            if tag == Upos::Noun as u8
                && self.opts.noun_number_heuristic
                && a.number == Number::Unknown
            {
                a.number = wi.noun_number;
            }
        }
        a
    }

    /// Apply the refinements to `mask` (`tokens`, `tags`: `B×T`, as in a [`Batch`]).
    pub fn apply(&self, mask: &mut BitMask, tokens: &[u32], tags: &[u8]) -> Result<()> {
        let (b, t) = (mask.b(), mask.t());
        if tokens.len() != b * t || tags.len() != b * t {
            return Err(Error::Mask(format!(
                "refine: {} tokens and {} tags for a B×T = {b}×{t} mask",
                tokens.len(),
                tags.len()
            )));
        }
        for bi in 0..b {
            let toks = &tokens[bi * t..(bi + 1) * t];
            let tgs = &tags[bi * t..(bi + 1) * t];
            // Sentence index of each position: <eos> closes the sentence it ends.
            let mut sent = Vec::with_capacity(t);
            let mut s = 0usize;
            for &tok in toks {
                sent.push(s);
                if tok == self.opts.eos {
                    s += 1;
                }
            }
            for h in 0..mask.heads() {
                for i in 0..t {
                    let qi = self.get(toks[i]);
                    if self.opts.binding && tgs[i] == Upos::Pron as u8 {
                        if let Some(kind) = qi.and_then(|w| w.pronoun) {
                            let qa = self.agreement_of(toks[i], tgs[i]);
                            for j in 0..i {
                                if !is_nominal(tgs[j]) {
                                    continue;
                                }
                                let in_scope = match kind {
                                    PronounKind::Reflexive => sent[j] == sent[i],
                                    PronounKind::Personal => sent[j] + 1 >= sent[i],
                                };
                                let ok =
                                    in_scope && qa.compatible(&self.agreement_of(toks[j], tgs[j]));
                                mask.set(bi, h, i, j, ok);
                            }
                        }
                    }
                    if self.opts.selection {
                        self.select_row(mask, bi, h, i, toks, tgs);
                    }
                }
            }
        }
        Ok(())
    }

    fn select_row(
        &self,
        mask: &mut BitMask,
        b: usize,
        h: usize,
        i: usize,
        toks: &[u32],
        tgs: &[u8],
    ) {
        let Some(qi) = self.get(toks[i]) else { return };
        let q_pred = is_predicate(tgs[i]) && qi.selects.is_some();
        let q_nom = is_nominal(tgs[i]) && !qi.classes.is_empty();
        if !q_pred && !q_nom {
            return;
        }
        for j in 0..i {
            if !mask.get(b, h, i, j) {
                continue;
            }
            let Some(kj) = self.get(toks[j]) else {
                continue;
            };
            let (sel, cls) = if q_pred && is_nominal(tgs[j]) && !kj.classes.is_empty() {
                (qi.selects.as_deref(), kj.classes.as_slice())
            } else if q_nom && is_predicate(tgs[j]) && kj.selects.is_some() {
                (kj.selects.as_deref(), qi.classes.as_slice())
            } else {
                continue;
            };
            let sel = sel.unwrap_or(&[]);
            if !cls.iter().any(|c| sel.binary_search(c).is_ok()) {
                mask.set(b, h, i, j, false);
            }
        }
    }
}
