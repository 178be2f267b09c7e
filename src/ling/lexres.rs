//! Lexical resources: the plug-in point for WordNet- or VerbNet-style knowledge that refines
//! a tag-based ASA mask (selectional restrictions, a type hierarchy, agreement features).
//!
//! Nothing is shipped: a user who has such resources converts them to the small text format
//! read by [`FileResource`], or implements [`LexicalResource`] directly. The built-in
//! [`EnglishPronouns`] only knows the agreement features of English personal and reflexive
//! pronouns, which the pronoun binding refinement needs.
//!
//! ## File format (`format 1`)
//!
//! UTF-8 text, one statement per line, fields separated by tabs or spaces, `#` starts a
//! comment. The first non-comment line must be `format 1`. Word forms are matched
//! lower-cased; list every inflected form you need (`eat`, `eats`, `ate`, …).
//!
//! ```text
//! format 1
//! isa     dog     animal          # word or class → class (the type hierarchy)
//! isa     animal  animate
//! isa     cake    food
//! select  eat     food animate    # predicate → classes its nominal arguments may have
//! feats   dogs    Number=Plur     # agreement: Number=Sing|Plur, Gender=Masc|Fem|Neut,
//! feats   queen   Number=Sing|Gender=Fem   #            Person=1|2|3
//! ```

use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Grammatical number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Number {
    #[default]
    Unknown,
    Sing,
    Plur,
}

/// Grammatical gender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Gender {
    #[default]
    Unknown,
    Masc,
    Fem,
    Neut,
}

/// Agreement features of a word form; `Unknown` / `None` agree with anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Agreement {
    pub number: Number,
    pub gender: Gender,
    /// 1, 2 or 3 where known.
    pub person: Option<u8>,
}

impl Agreement {
    /// True unless some feature is known on both sides and differs.
    pub fn compatible(&self, o: &Agreement) -> bool {
        let num = self.number == Number::Unknown
            || o.number == Number::Unknown
            || self.number == o.number;
        let gen = self.gender == Gender::Unknown
            || o.gender == Gender::Unknown
            || self.gender == o.gender;
        let per = self.person.is_none() || o.person.is_none() || self.person == o.person;
        num && gen && per
    }

    /// Fill features `self` leaves unknown from `o`.
    pub fn or(self, o: Agreement) -> Agreement {
        Agreement {
            number: if self.number == Number::Unknown {
                o.number
            } else {
                self.number
            },
            gender: if self.gender == Gender::Unknown {
                o.gender
            } else {
                self.gender
            },
            person: self.person.or(o.person),
        }
    }

    /// Parse `Number=Sing|Gender=Fem|Person=3` (UD FEATS style); other features are ignored.
    pub fn parse_feats(s: &str) -> std::result::Result<Agreement, String> {
        let mut a = Agreement::default();
        for kv in s.split('|').filter(|x| !x.is_empty() && *x != "_") {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("feature `{kv}` is not Name=Value"))?;
            match (k, v) {
                ("Number", "Sing") => a.number = Number::Sing,
                ("Number", "Plur") => a.number = Number::Plur,
                ("Gender", "Masc") => a.gender = Gender::Masc,
                ("Gender", "Fem") => a.gender = Gender::Fem,
                ("Gender", "Neut") => a.gender = Gender::Neut,
                ("Person", p @ ("1" | "2" | "3")) => a.person = p.parse().ok(),
                ("Number" | "Gender" | "Person", _) => {
                    return Err(format!("unsupported value in `{kv}`"));
                }
                _ => {}
            }
        }
        Ok(a)
    }
}

/// How a pronoun refers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PronounKind {
    /// he, she, it, they, him, her, them, I, you, we …
    Personal,
    /// himself, herself, themselves … (bound inside their own sentence)
    Reflexive,
}

/// A source of lexical knowledge. Implementations must be cheap to query per word form;
/// the mask refiner queries each vocabulary entry once.
pub trait LexicalResource: Send + Sync {
    /// Name for reports.
    fn name(&self) -> String;
    /// Semantic classes of `word` (lower-cased form), closed under the type hierarchy;
    /// empty when unknown.
    fn classes(&self, word: &str) -> Vec<String>;
    /// If `word` is a predicate with selectional restrictions: the classes its nominal
    /// arguments may have (a nominal with known classes outside this set is ruled out).
    fn selects(&self, word: &str) -> Option<Vec<String>>;
    /// Agreement features of `word`.
    fn agreement(&self, _word: &str) -> Agreement {
        Agreement::default()
    }
    /// Whether `word` is an anaphoric pronoun, and of which kind.
    fn pronoun(&self, _word: &str) -> Option<PronounKind> {
        None
    }
}

/// Agreement features of English personal and reflexive pronouns.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnglishPronouns;

impl EnglishPronouns {
    fn lookup(w: &str) -> Option<(PronounKind, Agreement)> {
        use Gender::*;
        use Number::*;
        use PronounKind::*;
        let a = |number, gender, person| Agreement {
            number,
            gender,
            person: Some(person),
        };
        Some(match w {
            "i" | "me" | "my" | "mine" => (Personal, a(Sing, Gender::Unknown, 1)),
            "myself" => (Reflexive, a(Sing, Gender::Unknown, 1)),
            "we" | "us" | "our" | "ours" => (Personal, a(Plur, Gender::Unknown, 1)),
            "ourselves" => (Reflexive, a(Plur, Gender::Unknown, 1)),
            "you" | "your" | "yours" => (Personal, a(Number::Unknown, Gender::Unknown, 2)),
            "yourself" => (Reflexive, a(Sing, Gender::Unknown, 2)),
            "yourselves" => (Reflexive, a(Plur, Gender::Unknown, 2)),
            "he" | "him" | "his" => (Personal, a(Sing, Masc, 3)),
            "himself" => (Reflexive, a(Sing, Masc, 3)),
            "she" | "her" | "hers" => (Personal, a(Sing, Fem, 3)),
            "herself" => (Reflexive, a(Sing, Fem, 3)),
            "it" | "its" => (Personal, a(Sing, Neut, 3)),
            "itself" => (Reflexive, a(Sing, Neut, 3)),
            "they" | "them" | "their" | "theirs" => (Personal, a(Plur, Gender::Unknown, 3)),
            "themselves" => (Reflexive, a(Plur, Gender::Unknown, 3)),
            _ => return None,
        })
    }
}

impl LexicalResource for EnglishPronouns {
    fn name(&self) -> String {
        "english-pronouns".into()
    }
    fn classes(&self, _word: &str) -> Vec<String> {
        Vec::new()
    }
    fn selects(&self, _word: &str) -> Option<Vec<String>> {
        None
    }
    fn agreement(&self, word: &str) -> Agreement {
        Self::lookup(word).map(|(_, a)| a).unwrap_or_default()
    }
    fn pronoun(&self, word: &str) -> Option<PronounKind> {
        Self::lookup(word).map(|(k, _)| k)
    }
}

/// A resource read from the text format described in the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileResource {
    name: String,
    isa: HashMap<String, Vec<String>>,
    select: HashMap<String, Vec<String>>,
    feats: HashMap<String, Agreement>,
}

impl FileResource {
    /// Read a resource file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::parse(&crate::io::read_file(path)?, path)
    }

    /// Parse resource text (`path` names the source in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |line: usize, msg: String| Error::Parse {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let mut r = FileResource {
            name: path.display().to_string(),
            ..Default::default()
        };
        let mut seen_format = false;
        for (n, raw) in text.lines().enumerate() {
            let ln = n + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if !seen_format {
                if f.len() == 2 && f[0] == "format" {
                    if f[1] != "1" {
                        return Err(err(
                            ln,
                            format!("resource format {} is not supported (expected 1)", f[1]),
                        ));
                    }
                    seen_format = true;
                    continue;
                }
                return Err(err(
                    ln,
                    "the first statement must be `format 1`".to_string(),
                ));
            }
            let need = |k: usize| -> Result<()> {
                if f.len() < k {
                    Err(err(
                        ln,
                        format!("`{}` needs at least {} fields, found {}", f[0], k, f.len()),
                    ))
                } else {
                    Ok(())
                }
            };
            match f[0] {
                "isa" => {
                    need(3)?;
                    r.isa
                        .entry(f[1].to_lowercase())
                        .or_default()
                        .extend(f[2..].iter().map(|s| s.to_lowercase()));
                }
                "select" => {
                    need(3)?;
                    r.select
                        .entry(f[1].to_lowercase())
                        .or_default()
                        .extend(f[2..].iter().map(|s| s.to_lowercase()));
                }
                "feats" => {
                    need(3)?;
                    let a = Agreement::parse_feats(f[2]).map_err(|m| err(ln, m))?;
                    let e = r.feats.entry(f[1].to_lowercase()).or_default();
                    *e = a.or(*e);
                }
                other => {
                    return Err(err(
                        ln,
                        format!("unknown statement `{other}` (expected isa, select or feats)"),
                    ))
                }
            }
        }
        if !seen_format {
            return Err(err(1, "empty resource (no `format 1` line)".into()));
        }
        Ok(r)
    }

    /// Number of words/classes with a parent, predicates with restrictions, and words with
    /// features.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.isa.len(), self.select.len(), self.feats.len())
    }
}

impl LexicalResource for FileResource {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn classes(&self, word: &str) -> Vec<String> {
        // Transitive closure over `isa` (cycles are harmless: visited set).
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = self
            .isa
            .get(word)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(c) = stack.pop() {
            if seen.insert(c.to_string()) {
                if let Some(ps) = self.isa.get(c) {
                    stack.extend(ps.iter().map(String::as_str));
                }
            }
        }
        seen.into_iter().collect()
    }
    fn selects(&self, word: &str) -> Option<Vec<String>> {
        self.select.get(word).cloned()
    }
    fn agreement(&self, word: &str) -> Agreement {
        self.feats.get(word).copied().unwrap_or_default()
    }
}

/// Several resources queried in order: classes and restrictions are united; agreement
/// features and pronoun kinds come from the first resource that knows them.
pub struct Stack(pub Vec<Box<dyn LexicalResource>>);

impl LexicalResource for Stack {
    fn name(&self) -> String {
        self.0
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join("+")
    }
    fn classes(&self, word: &str) -> Vec<String> {
        let mut v: Vec<String> = self.0.iter().flat_map(|r| r.classes(word)).collect();
        v.sort();
        v.dedup();
        v
    }
    fn selects(&self, word: &str) -> Option<Vec<String>> {
        let mut any = false;
        let mut v = Vec::new();
        for r in &self.0 {
            if let Some(s) = r.selects(word) {
                any = true;
                v.extend(s);
            }
        }
        any.then(|| {
            v.sort();
            v.dedup();
            v
        })
    }
    fn agreement(&self, word: &str) -> Agreement {
        self.0
            .iter()
            .fold(Agreement::default(), |a, r| a.or(r.agreement(word)))
    }
    fn pronoun(&self, word: &str) -> Option<PronounKind> {
        self.0.iter().find_map(|r| r.pronoun(word))
    }
}
