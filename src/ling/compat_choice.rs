//! Compatibility matrices and refinements as run configuration: `--compat` and `--refine`.
//!
//! - `builtin`: the built-in UPOS matrix ([`CompatMatrix::default_asa`]);
//! - `derived:TREEBANK[@COVERAGE]`: derived from a treebank's head–dependent tag pairs
//!   ([`derive()`](super::compat::derive), PUNCT arcs excluded). TREEBANK is a CoNLL-U file or
//!   a UD directory (its `*-ud-train.conllu`). Without `@COVERAGE` a pair is kept when it holds
//!   at least [`DEFAULT_MIN_SHARE`] of the arcs (the `derive-compat` default); with it, the
//!   most frequent pairs are kept until they cover that share of the arcs (in (0, 1]);
//! - `random:SEED:ROWS`: a random symmetric matrix drawn for the structural null arm
//!   (`reproduce`'s `null-compat`), its 17 row sets written out;
//! - anything else: a compat file (one matrix or one per head) as `asa-lth asa derive-compat`
//!   writes it.
//!
//! A matrix is a fixed 17×17 parameter of the run, derived from training text only: it
//! carries no information about any sentence's future tokens.

use super::compat::{derive, CompatMatrix, CompatSet, PunctPolicy, NTAGS};
use crate::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};

/// `derive-compat`'s default minimum arc share of a kept pair.
pub const DEFAULT_MIN_SHARE: f64 = 0.005;

/// Which compatibility matrix (or per-head set) a run's ASA mask and tag bias use.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum CompatChoice {
    /// The built-in matrix.
    #[default]
    Builtin,
    /// Derived from a treebank (file or UD directory), optionally to an arc coverage.
    Derived {
        treebank: PathBuf,
        coverage: Option<f64>,
    },
    /// A compat file.
    File(PathBuf),
    /// A random symmetric matrix drawn for a structural null (see
    /// [`CompatMatrix::random_matched`]), carried whole so the config alone rebuilds it:
    /// `random:SEED:ROW0,…,ROW16` (hexadecimal row sets).
    Random { seed: u64, rows: [u32; NTAGS] },
}

impl CompatChoice {
    /// True for the built-in matrix (configs leave the default out).
    pub fn is_builtin(&self) -> bool {
        *self == CompatChoice::Builtin
    }

    /// The spelling on the command line and in configs.
    pub fn name(&self) -> String {
        match self {
            CompatChoice::Builtin => "builtin".into(),
            CompatChoice::Derived { treebank, coverage } => match coverage {
                None => format!("derived:{}", treebank.display()),
                Some(c) => format!("derived:{}@{c}", treebank.display()),
            },
            CompatChoice::File(p) => p.display().to_string(),
            CompatChoice::Random { seed, rows } => {
                let r: Vec<String> = rows.iter().map(|r| format!("{r:x}")).collect();
                format!("random:{seed}:{}", r.join(","))
            }
        }
    }

    /// The matrices, and a one-line description for reports.
    pub fn load(&self) -> Result<(CompatSet, String)> {
        match self {
            CompatChoice::Builtin => Ok((
                CompatSet::shared(CompatMatrix::default_asa()),
                "built-in UPOS matrix".into(),
            )),
            CompatChoice::File(p) => Ok((CompatSet::load(p)?, format!("file {}", p.display()))),
            CompatChoice::Random { seed, rows } => {
                let desc = format!("random symmetric tag-pair matrix (seed {seed})");
                let m = CompatMatrix::from_rows(*rows, desc.clone())?;
                Ok((CompatSet::shared(m), desc))
            }
            CompatChoice::Derived { treebank, coverage } => {
                let file = treebank_file(treebank)?;
                let sents = super::conllu::load_file(&file)?;
                let named = |e: Error| match e {
                    Error::Config(m) => Error::Config(format!("{}: {m}", file.display())),
                    e => e,
                };
                let min_share = match coverage {
                    None => DEFAULT_MIN_SHARE,
                    Some(c) => share_for_coverage(&sents, *c).map_err(named)?,
                };
                let d = derive(&sents, min_share, PunctPolicy::Exclude).map_err(named)?;
                let desc = format!(
                    "derived from {} ({} arcs; pairs with ≥ {:.4} of the arcs kept, covering \
                     {:.1}% of them)",
                    file.display(),
                    d.arcs,
                    min_share,
                    100.0 * d.covered_share
                );
                Ok((CompatSet::shared(d.matrix), desc))
            }
        }
    }
}

/// The CoNLL-U file of a treebank argument: the file itself, or a UD directory's
/// `*-ud-train.conllu`.
fn treebank_file(p: &Path) -> Result<PathBuf> {
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    if p.is_dir() {
        let entries = std::fs::read_dir(p).map_err(|source| Error::Io {
            path: p.to_path_buf(),
            source,
        })?;
        let mut train: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.to_string_lossy().ends_with("-ud-train.conllu"))
            .collect();
        train.sort();
        return train.into_iter().next().ok_or_else(|| {
            Error::Config(format!(
                "--compat derived:{}: the directory holds no *-ud-train.conllu (name a \
                 CoNLL-U file instead)",
                p.display()
            ))
        });
    }
    Err(Error::Config(format!(
        "--compat derived:{}: no such treebank file or directory",
        p.display()
    )))
}

/// The smallest minimum share whose kept pairs (most frequent first, diagonal always kept)
/// cover at least `coverage` of the counted arcs.
fn share_for_coverage(sents: &[crate::ling::Sentence], coverage: f64) -> Result<f64> {
    let all = derive(sents, 0.0, PunctPolicy::Exclude)?;
    let arcs = all.arcs as f64;
    let mut covered: u64 = all
        .pairs
        .iter()
        .filter(|(p, _)| p.a == p.b)
        .map(|(p, _)| p.arcs)
        .sum();
    if covered as f64 >= coverage * arcs {
        return Ok(1.0);
    }
    for (p, _) in all.pairs.iter().filter(|(p, _)| p.a != p.b) {
        covered += p.arcs;
        if covered as f64 >= coverage * arcs {
            return Ok(p.share);
        }
    }
    Ok(0.0)
}

impl std::fmt::Display for CompatChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for CompatChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<CompatChoice> {
        if s.is_empty() {
            return Err(Error::Config(
                "compat: expected builtin, derived:TREEBANK[@COVERAGE] or a compat file".into(),
            ));
        }
        if s == "builtin" {
            return Ok(CompatChoice::Builtin);
        }
        if let Some(rest) = s.strip_prefix("random:") {
            let bad = |why: &str| {
                Error::Config(format!(
                    "--compat {s}: {why} (expected random:SEED:ROW0,…,ROW16 with {NTAGS} \
                     hexadecimal row sets)"
                ))
            };
            let (seed, rows) = rest.split_once(':').ok_or_else(|| bad("no rows"))?;
            let seed: u64 = seed.parse().map_err(|_| bad("the seed is not a number"))?;
            let parsed: Vec<u32> = rows
                .split(',')
                .map(|r| u32::from_str_radix(r, 16))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad("a row is not hexadecimal"))?;
            let rows: [u32; NTAGS] = parsed
                .try_into()
                .map_err(|v: Vec<u32>| bad(&format!("{} rows", v.len())))?;
            CompatMatrix::from_rows(rows, String::new()).map_err(|e| bad(&e.to_string()))?;
            return Ok(CompatChoice::Random { seed, rows });
        }
        let Some(rest) = s.strip_prefix("derived:") else {
            return Ok(CompatChoice::File(PathBuf::from(s)));
        };
        let (treebank, coverage) = match rest.rsplit_once('@') {
            Some((t, c)) => {
                let v: f64 = c.parse().map_err(|_| {
                    Error::Config(format!(
                        "--compat {s}: coverage `{c}` is not a number (expected a share in (0, 1])"
                    ))
                })?;
                if !(v > 0.0 && v <= 1.0) {
                    return Err(Error::Config(format!(
                        "--compat {s}: coverage {v} is outside (0, 1] (it is the share of \
                         treebank arcs the kept tag pairs must cover)"
                    )));
                }
                (t, Some(v))
            }
            None => (rest, None),
        };
        if treebank.is_empty() {
            return Err(Error::Config(format!(
                "--compat {s}: no treebank named (derived:TREEBANK[@COVERAGE])"
            )));
        }
        Ok(CompatChoice::Derived {
            treebank: PathBuf::from(treebank),
            coverage,
        })
    }
}

impl Serialize for CompatChoice {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for CompatChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A word-level refinement of the tag mask (`--refine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refinement {
    /// Pronoun binding: a personal or reflexive pronoun's row allows exactly the earlier
    /// agreeing nominals in scope (see `crate::mask::Refiner`).
    Binding,
}

impl Refinement {
    /// The name on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Refinement::Binding => "binding",
        }
    }
}

impl std::str::FromStr for Refinement {
    type Err = Error;
    fn from_str(s: &str) -> Result<Refinement> {
        match s {
            "binding" => Ok(Refinement::Binding),
            _ => Err(Error::Config(format!("refinement {s:?}: expected binding"))),
        }
    }
}
