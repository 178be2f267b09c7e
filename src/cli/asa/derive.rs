//! `asa-lth asa derive-compat`: a UPOS compatibility matrix from a treebank's arcs.

use super::*;
use crate::ling::compat::{self, PunctPolicy};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

/// `asa derive-compat`.
#[derive(Args, Debug, Clone)]
pub struct DeriveCompatArgs {
    /// CoNLL-U file(s) with UPOS and HEAD columns.
    #[arg(long, required = true, num_args = 1..)]
    pub conllu: Vec<PathBuf>,
    /// Keep a tag pair when its arcs are at least this share of all counted arcs.
    #[arg(long, default_value_t = 0.005)]
    pub min_share: f64,
    /// Arcs touching PUNCT: exclude (dropped; PUNCT keeps only its diagonal), keep (counted
    /// like any other), all (dropped; PUNCT compatible with every tag).
    #[arg(long, value_enum, default_value = "exclude")]
    pub punct: PunctArg,
    /// Write the matrix (with each pair's share as its score) to this JSON file.
    #[arg(long = "out-file")]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum PunctArg {
    Exclude,
    Keep,
    All,
}

impl From<PunctArg> for PunctPolicy {
    fn from(p: PunctArg) -> Self {
        match p {
            PunctArg::Exclude => PunctPolicy::Exclude,
            PunctArg::Keep => PunctPolicy::Keep,
            PunctArg::All => PunctPolicy::All,
        }
    }
}

/// `asa derive-compat`.
pub fn derive_compat(a: &DeriveCompatArgs, out: &mut dyn Write) -> Result<()> {
    if !(0.0..=1.0).contains(&a.min_share) {
        bail!("--min-share must lie in [0, 1], got {}", a.min_share);
    }
    if let Some(p) = &a.out {
        crate::io::check_writable(p)?;
    }
    let mut sents = Vec::new();
    for p in &a.conllu {
        sents.extend(load_conllu(p)?);
    }
    let d = compat::derive(&sents, a.min_share, a.punct.into())?;
    let files: Vec<String> = a.conllu.iter().map(|p| p.display().to_string()).collect();
    writeln!(
        out,
        "treebank: {} ({} sentences{}), {} non-root arcs counted, {} PUNCT arcs dropped \
         (policy: {})",
        files.join(", "),
        d.sentences,
        if d.sentences_skipped > 0 {
            format!(", {} without heads skipped", d.sentences_skipped)
        } else {
            String::new()
        },
        d.arcs,
        d.punct_arcs_dropped,
        vname(&a.punct)
    )?;
    writeln!(out, "{:<14} {:>9} {:>8}  kept", "pair", "arcs", "share")?;
    for (p, kept) in &d.pairs {
        writeln!(
            out,
            "{:<14} {:>9} {:>7.2}%  {}",
            format!("{}-{}", p.a, p.b),
            p.arcs,
            100.0 * p.share,
            if !kept {
                "no"
            } else if p.a == p.b {
                "yes (diagonal)"
            } else {
                "yes"
            }
        )?;
    }
    let off = d.pairs.iter().filter(|(p, k)| *k && p.a != p.b).count();
    writeln!(
        out,
        "matrix: {off} off-diagonal tag pairs kept at min share {} plus the diagonal; it \
         covers {} of the counted arcs",
        a.min_share,
        pct(d.covered_share)
    )?;
    write!(out, "{}", d.matrix.grid())?;
    if let Some(p) = &a.out {
        d.matrix.save(p)?;
        writeln!(out, "written: {}", p.display())?;
    }
    Ok(())
}
