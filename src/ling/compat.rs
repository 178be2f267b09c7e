//! UPOS compatibility matrices: which tag pairs may attend to each other under ASA.
//!
//! A [`CompatMatrix`] is a 17×17 boolean relation over [`Upos`] (row = query tag, column =
//! key tag), stored as one 17-bit row set per tag so the mask builder can OR whole rows, with
//! optional per-pair scores (e.g. the share of treebank arcs a pair covers). The diagonal is
//! always allowed. [`CompatSet`] holds either one matrix shared by every head or one per head.
//!
//! Files are versioned JSON (`"format": 1`), keyed by tag *name*, so they stay readable and
//! independent of the enum order:
//!
//! ```json
//! {"format": 1, "kind": "asa-lth-compat", "description": "…",
//!  "allowed": {"ADJ": ["ADV", "NOUN"], "ADP": ["NOUN"], …},
//!  "scores":  {"ADJ": {"NOUN": 0.041}, …}}
//! ```
//!
//! A per-head file is `{"format": 1, "kind": "asa-lth-compat-heads", "heads": [<matrix>, …]}`.
//! [`derive()`] builds a matrix from a treebank's head–dependent tag pairs.

use super::Upos;
use crate::ling::Sentence;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Number of UPOS tags.
pub const NTAGS: usize = 17;
/// Current file format number.
pub const COMPAT_FORMAT: u32 = 1;
const KIND_ONE: &str = "asa-lth-compat";
const KIND_HEADS: &str = "asa-lth-compat-heads";
const ALL_ROW: u32 = (1 << NTAGS) - 1;

/// A 17×17 tag-compatibility relation with optional scores.
#[derive(Clone, Debug, PartialEq)]
pub struct CompatMatrix {
    /// `rows[a]` bit `b`: a query tagged `a` may attend to a key tagged `b`.
    rows: [u32; NTAGS],
    /// Optional per-pair scores, row-major `[a][b]`.
    scores: Option<Box<[[f32; NTAGS]; NTAGS]>>,
    /// Free text saying where the matrix comes from.
    pub description: String,
}

impl CompatMatrix {
    /// Only the diagonal: every tag attends to its own tag.
    pub fn diagonal() -> Self {
        let mut rows = [0u32; NTAGS];
        for (a, r) in rows.iter_mut().enumerate() {
            *r = 1 << a;
        }
        CompatMatrix {
            rows,
            scores: None,
            description: "diagonal only".into(),
        }
    }

    /// Every pair allowed (the mask is then plain causal attention).
    pub fn all() -> Self {
        CompatMatrix {
            rows: [ALL_ROW; NTAGS],
            scores: None,
            description: "all pairs allowed".into(),
        }
    }

    /// The built-in ASA matrix: the diagonal plus the symmetric pairs below, each justified by
    /// the Universal Dependencies relations that join those tags (head tag first where the
    /// relation is directed). `X` (foreign words, typos, unanalysable tokens) is compatible
    /// with everything: nothing is known about its relations, so blocking it would cut arcs
    /// arbitrarily.
    pub fn default_asa() -> Self {
        use Upos::*;
        let pairs: &[(Upos, Upos)] = &[
            // Clausal arguments and adjuncts of verbs.
            (Verb, Noun), // nsubj, obj, iobj, obl; acl (noun ← participle / relative clause)
            (Verb, Propn), // nsubj, obj, obl with proper nouns
            (Verb, Pron), // pronominal nsubj/obj/expl; relative pronouns (nsubj in acl:relcl)
            (Verb, Num),  // obj/obl realised by numerals ("bought two")
            (Verb, Aux),  // aux, aux:pass
            (Verb, Adv),  // advmod
            (Verb, Part), // advmod (not), mark (infinitival to), compound:prt
            (Verb, Sconj), // mark (because, when, if)
            (Verb, Cconj), // cc on conjoined verbs
            (Verb, Adp),  // compound:prt (phrasal verbs), stranded case markers
            (Verb, Adj),  // xcomp (seems happy), advcl/conj/ccomp between predicates
            (Verb, Intj), // discourse
            (Verb, Punct), // punct attaches to the clause head
            // Nominals and their dependents.
            (Noun, Det),    // det
            (Noun, Adj),    // amod; nsubj of an adjectival predicate
            (Noun, Num),    // nummod
            (Noun, Adp),    // case
            (Noun, Propn),  // compound, nmod, appos, flat
            (Noun, Pron),   // nmod:poss (my car), nsubj of a nominal predicate
            (Noun, Aux),    // cop with nominal predicates
            (Noun, Cconj),  // cc on conjoined nouns
            (Noun, Part),   // case (possessive 's)
            (Noun, Punct),  // punct in appositions, lists, headlines
            (Propn, Det),   // det (the United States)
            (Propn, Adj),   // amod; nsubj of an adjectival predicate
            (Propn, Adp),   // case
            (Propn, Num),   // nummod, flat (dates, "Article 5")
            (Propn, Cconj), // cc on conjoined proper nouns
            (Propn, Part),  // case (possessive 's)
            (Pron, Adp),    // case (with him)
            (Pron, Adj),    // nsubj of an adjectival predicate (it is big), amod (something new)
            // Adjectival and adverbial predicates and modifiers.
            (Adj, Aux),   // cop
            (Adj, Adv),   // advmod (very big)
            (Adj, Part),  // advmod (not happy), mark (to)
            (Adj, Sconj), // mark on adjectival clause heads
            (Adj, Cconj), // cc on conjoined adjectives / adjectival clauses
            (Adj, Adp),   // case on obl of adjectives (afraid of)
            (Adj, Punct), // punct on adjectival clause heads
            (Num, Sym),   // nummod / the head of "$ 5", "5 %"
            (Num, Adp),   // case on numeric obliques
        ];
        let mut m = CompatMatrix::diagonal();
        for &(a, b) in pairs {
            m.allow_pair(a, b);
        }
        m.rows[X as usize] = ALL_ROW;
        for r in m.rows.iter_mut() {
            *r |= 1 << X as usize;
        }
        m.description = "asa-lth built-in default (UD relations; X compatible with all)".into();
        m
    }

    /// A matrix from its 17 row sets (bit `k` of `rows[q]`: `q → k` allowed); the diagonal
    /// is always allowed. Bits past the 17 tags are an error.
    pub fn from_rows(rows: [u32; NTAGS], description: String) -> Result<Self> {
        if let Some((q, r)) = rows.iter().enumerate().find(|(_, &r)| r & !ALL_ROW != 0) {
            return Err(Error::Config(format!(
                "compat row {q} = {r:#x} has bits past the {NTAGS} UPOS tags"
            )));
        }
        let mut rows = rows;
        for (a, r) in rows.iter_mut().enumerate() {
            *r |= 1 << a;
        }
        Ok(CompatMatrix {
            rows,
            scores: None,
            description,
        })
    }

    /// The share of (query, key) pairs the matrix allows when both tags are drawn with the
    /// frequencies `freq` (which sum to 1): the expected density of its mask, causality and
    /// the always-allowed self position aside.
    pub fn expected_density(&self, freq: &[f64; NTAGS]) -> f64 {
        (0..NTAGS)
            .flat_map(|a| (0..NTAGS).map(move |b| (a, b)))
            .filter(|&(a, b)| self.rows[a] >> b & 1 != 0)
            .map(|(a, b)| freq[a] * freq[b])
            .sum()
    }

    /// A random symmetric matrix (the diagonal always allowed) whose expected density under
    /// `freq` is as close to `target` as one tag pair allows: the off-diagonal pairs are taken
    /// in a random order (seeded) and each is kept when it brings the density closer. The
    /// structural null of a tag rule: a function of the same tags, at the same density, with
    /// no linguistics in it.
    pub fn random_matched(target: f64, freq: &[f64; NTAGS], seed: u64) -> Self {
        let mut m = CompatMatrix::diagonal();
        let mut d = m.expected_density(freq);
        let mut pairs: Vec<(usize, usize)> = (0..NTAGS)
            .flat_map(|a| (a + 1..NTAGS).map(move |b| (a, b)))
            .collect();
        let mut rng = crate::rng::Rng::new(seed);
        for i in (1..pairs.len()).rev() {
            pairs.swap(i, rng.below(i + 1));
        }
        for (a, b) in pairs {
            let w = 2.0 * freq[a] * freq[b];
            if (d + w - target).abs() < (d - target).abs() {
                m.rows[a] |= 1 << b;
                m.rows[b] |= 1 << a;
                d += w;
            }
        }
        m.description = format!(
            "random symmetric tag-pair matrix (seed {seed}), expected density {d:.4} for a \
             target of {target:.4}"
        );
        m
    }

    /// Whether a query tagged `q` may attend to a key tagged `k`.
    #[inline]
    pub fn allows(&self, q: Upos, k: Upos) -> bool {
        self.rows[q as usize] >> (k as usize) & 1 != 0
    }

    /// The key-tag set of query tag `q`: bit `k` = allowed.
    #[inline]
    pub fn row_bits(&self, q: Upos) -> u32 {
        self.rows[q as usize]
    }

    /// All 17 row sets.
    pub fn rows(&self) -> &[u32; NTAGS] {
        &self.rows
    }

    /// Allow `q → k` and `k → q`.
    pub fn allow_pair(&mut self, q: Upos, k: Upos) {
        self.rows[q as usize] |= 1 << k as usize;
        self.rows[k as usize] |= 1 << q as usize;
    }

    /// Set one directed entry (`q → k`). The diagonal cannot be removed.
    pub fn set(&mut self, q: Upos, k: Upos, allowed: bool) {
        if allowed {
            self.rows[q as usize] |= 1 << k as usize;
        } else if q != k {
            self.rows[q as usize] &= !(1 << k as usize);
        }
    }

    /// True when `allows(a, b) == allows(b, a)` for every pair.
    pub fn is_symmetric(&self) -> bool {
        (0..NTAGS).all(|a| (0..NTAGS).all(|b| (self.rows[a] >> b & 1) == (self.rows[b] >> a & 1)))
    }

    /// Number of allowed directed entries (diagonal included), out of 289.
    pub fn count(&self) -> usize {
        self.rows.iter().map(|r| r.count_ones() as usize).sum()
    }

    /// The score of `(q, k)`, if the matrix carries scores.
    pub fn score(&self, q: Upos, k: Upos) -> Option<f32> {
        self.scores.as_ref().map(|s| s[q as usize][k as usize])
    }

    /// Attach scores (row-major `[q][k]`).
    pub fn with_scores(mut self, scores: [[f32; NTAGS]; NTAGS]) -> Self {
        self.scores = Some(Box::new(scores));
        self
    }

    /// A 17×17 text grid (`#` allowed, `.` not), rows = query tags, columns = key tags
    /// abbreviated to three letters.
    pub fn grid(&self) -> String {
        const ABBR: [&str; NTAGS] = [
            "ADJ", "ADP", "ADV", "AUX", "CCJ", "DET", "INJ", "NOU", "NUM", "PRT", "PRN", "PPN",
            "PUN", "SCJ", "SYM", "VRB", "X",
        ];
        let mut s = String::from("      ");
        for a in ABBR {
            s.push_str(&format!(" {a:>3}"));
        }
        s.push('\n');
        for q in Upos::ALL {
            s.push_str(&format!("{:<6}", q.name()));
            for k in Upos::ALL {
                s.push_str(if self.allows(q, k) { "   #" } else { "   ." });
            }
            s.push('\n');
        }
        s
    }

    fn to_file(&self) -> MatrixFile {
        let mut allowed = BTreeMap::new();
        let mut scores = BTreeMap::new();
        for q in Upos::ALL {
            let ks: Vec<String> = Upos::ALL
                .iter()
                .filter(|&&k| self.allows(q, k))
                .map(|k| k.name().to_string())
                .collect();
            allowed.insert(q.name().to_string(), ks);
            if let Some(sc) = &self.scores {
                let row: BTreeMap<String, f32> = Upos::ALL
                    .iter()
                    .filter(|&&k| sc[q as usize][k as usize] != 0.0)
                    .map(|&k| (k.name().to_string(), sc[q as usize][k as usize]))
                    .collect();
                if !row.is_empty() {
                    scores.insert(q.name().to_string(), row);
                }
            }
        }
        MatrixFile {
            format: Some(COMPAT_FORMAT),
            kind: Some(KIND_ONE.into()),
            description: self.description.clone(),
            allowed,
            scores: self.scores.as_ref().map(|_| scores),
        }
    }

    /// `text` is the file's text, used to find the line of a bad tag name.
    fn from_file(f: MatrixFile, path: &Path, text: &str) -> Result<Self> {
        let line_of = |needle: &str| {
            text.find(&format!("\"{needle}\""))
                .map_or(1, |p| text[..p].matches('\n').count() + 1)
        };
        let bad = |line: usize, msg: String| Error::Parse {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let tag = |name: &str, what: &str| {
            Upos::parse(name).ok_or_else(|| {
                bad(
                    line_of(name),
                    format!(
                        "unknown UPOS tag `{name}` in {what} (expected one of {})",
                        Upos::ALL.map(|t| t.name()).join(" ")
                    ),
                )
            })
        };
        let mut m = CompatMatrix::diagonal();
        m.description = f.description;
        for (q, ks) in &f.allowed {
            let qt = tag(q, "`allowed`")?;
            for k in ks {
                let kt = tag(k, &format!("`allowed.{q}`"))?;
                m.set(qt, kt, true);
            }
        }
        if let Some(sc) = f.scores {
            let mut s = [[0f32; NTAGS]; NTAGS];
            for (q, row) in &sc {
                let qt = tag(q, "`scores`")?;
                for (k, &v) in row {
                    let kt = tag(k, &format!("`scores.{q}`"))?;
                    if !v.is_finite() {
                        return Err(bad(1, format!("score {q}→{k} is not finite")));
                    }
                    s[qt as usize][kt as usize] = v;
                }
            }
            m.scores = Some(Box::new(s));
        }
        Ok(m)
    }

    /// Save as a versioned JSON file (written atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        CompatSet::shared(self.clone()).save(path)
    }
}

impl Default for CompatMatrix {
    fn default() -> Self {
        Self::default_asa()
    }
}

#[derive(Serialize, Deserialize)]
struct MatrixFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default)]
    description: String,
    allowed: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scores: Option<BTreeMap<String, BTreeMap<String, f32>>>,
}

#[derive(Serialize, Deserialize)]
struct HeadsFile {
    format: u32,
    kind: String,
    heads: Vec<MatrixFile>,
}

/// One matrix shared by all heads, or one per attention head.
#[derive(Clone, Debug, PartialEq)]
pub struct CompatSet {
    heads: Vec<CompatMatrix>,
}

impl CompatSet {
    /// One matrix for every head.
    pub fn shared(m: CompatMatrix) -> Self {
        CompatSet { heads: vec![m] }
    }

    /// One matrix per head (at least one).
    pub fn per_head(heads: Vec<CompatMatrix>) -> Result<Self> {
        if heads.is_empty() {
            return Err(Error::Config(
                "a per-head compat set needs at least one matrix".into(),
            ));
        }
        Ok(CompatSet { heads })
    }

    /// The matrices (length 1 = shared).
    pub fn matrices(&self) -> &[CompatMatrix] {
        &self.heads
    }

    /// Number of mask heads (1 = shared).
    pub fn heads(&self) -> usize {
        self.heads.len()
    }

    /// Save as versioned JSON (one matrix: the single-matrix format), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = if self.heads.len() == 1 {
            serde_json::to_string_pretty(&self.heads[0].to_file())
        } else {
            serde_json::to_string_pretty(&HeadsFile {
                format: COMPAT_FORMAT,
                kind: KIND_HEADS.into(),
                heads: self.heads.iter().map(CompatMatrix::to_file).collect(),
            })
        }
        .map_err(|e| Error::Config(format!("compat serialisation: {e}")))?;
        crate::io::write_atomic(path, json.as_bytes())
    }

    /// Load a single-matrix or per-head file written by [`save`](Self::save) (or by hand).
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::io::read_file(path)?;
        Self::parse(&text, path)
    }

    /// Parse file text (`path` only names the source in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let perr = |e: serde_json::Error, what: &str| Error::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            msg: format!("not {what}: {e}"),
        };
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| perr(e, "a JSON compat file"))?;
        let format = v.get("format").and_then(|f| f.as_u64());
        if format.is_some_and(|f| f != u64::from(COMPAT_FORMAT)) {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: 1,
                msg: format!(
                    "compat file format {} is not supported (this build reads format {COMPAT_FORMAT})",
                    format.unwrap_or_default()
                ),
            });
        }
        if v.get("kind").and_then(|k| k.as_str()) == Some(KIND_HEADS) {
            let f: HeadsFile =
                serde_json::from_str(text).map_err(|e| perr(e, "a per-head compat file"))?;
            let heads = f
                .heads
                .into_iter()
                .map(|m| CompatMatrix::from_file(m, path, text))
                .collect::<Result<Vec<_>>>()?;
            return CompatSet::per_head(heads).map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                line: 1,
                msg: "`heads` is empty".into(),
            });
        }
        let f: MatrixFile = serde_json::from_str(text).map_err(|e| perr(e, "a compat file"))?;
        Ok(CompatSet::shared(CompatMatrix::from_file(f, path, text)?))
    }
}

/// What derive does with arcs that touch `PUNCT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PunctPolicy {
    /// Drop arcs with a PUNCT head or dependent before counting; PUNCT keeps only its diagonal
    /// (punctuation attaches to whatever heads its clause, so its arcs say little about tags).
    Exclude,
    /// Count PUNCT arcs like any other.
    Keep,
    /// Drop PUNCT arcs from the counts and make PUNCT compatible with every tag (a structural
    /// "sink" any token may consult).
    All,
}

/// One kept tag pair of a derived matrix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairShare {
    pub a: Upos,
    pub b: Upos,
    /// Arcs joining the two tags (either direction).
    pub arcs: u64,
    /// `arcs / counted arcs`.
    pub share: f64,
}

/// The result of [`derive()`].
#[derive(Clone, Debug)]
pub struct Derivation {
    pub matrix: CompatMatrix,
    /// Every unordered tag pair with at least one arc, largest share first, with whether it
    /// was kept.
    pub pairs: Vec<(PairShare, bool)>,
    /// Non-root arcs counted (after the PUNCT policy).
    pub arcs: u64,
    /// Arcs dropped by the PUNCT policy.
    pub punct_arcs_dropped: u64,
    /// Share of counted arcs whose tag pair the matrix allows (diagonal pairs included).
    pub covered_share: f64,
    /// Sentences read and sentences skipped for lacking tags or heads.
    pub sentences: usize,
    pub sentences_skipped: usize,
}

/// Derive a symmetric matrix from head–dependent UPOS pairs: the unordered pair `{a, b}`
/// (`a ≠ b`) is kept when its arcs are at least `min_share` of all counted non-root arcs;
/// the diagonal is always allowed. Scores are the pairs' shares (symmetric).
pub fn derive(sents: &[Sentence], min_share: f64, punct: PunctPolicy) -> Result<Derivation> {
    if !(0.0..=1.0).contains(&min_share) {
        return Err(Error::Config(format!(
            "--min-share must lie in [0, 1], got {min_share}"
        )));
    }
    let mut counts = [[0u64; NTAGS]; NTAGS]; // unordered: [min][max]
    let (mut arcs, mut dropped, mut skipped) = (0u64, 0u64, 0usize);
    for s in sents {
        let (Some(tags), Some(heads)) = (&s.upos, &s.heads) else {
            skipped += 1;
            continue;
        };
        for (d, &h) in heads.iter().enumerate() {
            if h == 0 {
                continue;
            }
            let (Some(&td), Some(&th)) = (tags.get(d), tags.get(h as usize - 1)) else {
                return Err(Error::Config(format!(
                    "sentence `{}`: HEAD {h} out of range",
                    s.words.join(" ")
                )));
            };
            if punct != PunctPolicy::Keep && (td == Upos::Punct || th == Upos::Punct) {
                dropped += 1;
                continue;
            }
            let (x, y) = if td <= th { (td, th) } else { (th, td) };
            counts[x as usize][y as usize] += 1;
            arcs += 1;
        }
    }
    if arcs == 0 {
        return Err(Error::Config(
            "no dependency arcs to derive from (the treebank needs UPOS and HEAD columns)".into(),
        ));
    }
    let mut m = CompatMatrix::diagonal();
    let mut scores = [[0f32; NTAGS]; NTAGS];
    let mut pairs = Vec::new();
    let mut covered = 0u64;
    for x in 0..NTAGS {
        for y in x..NTAGS {
            let c = counts[x][y];
            if c == 0 {
                continue;
            }
            let share = c as f64 / arcs as f64;
            let (a, b) = (Upos::ALL[x], Upos::ALL[y]);
            let keep = x == y || share >= min_share;
            if keep {
                m.allow_pair(a, b);
                covered += c;
            }
            scores[x][y] = share as f32;
            scores[y][x] = share as f32;
            pairs.push((
                PairShare {
                    a,
                    b,
                    arcs: c,
                    share,
                },
                keep,
            ));
        }
    }
    if punct == PunctPolicy::All {
        m.rows[Upos::Punct as usize] = ALL_ROW;
        for r in m.rows.iter_mut() {
            *r |= 1 << Upos::Punct as usize;
        }
    }
    pairs.sort_by(|p, q| {
        q.0.arcs
            .cmp(&p.0.arcs)
            .then((p.0.a, p.0.b).cmp(&(q.0.a, q.0.b)))
    });
    m.description =
        format!("derived from {arcs} treebank arcs, min share {min_share}, PUNCT policy {punct:?}");
    Ok(Derivation {
        matrix: m.with_scores(scores),
        pairs,
        arcs,
        punct_arcs_dropped: dropped,
        covered_share: covered as f64 / arcs as f64,
        sentences: sents.len(),
        sentences_skipped: skipped,
    })
}
