//! The `asa-lth asa …` subcommands: derive-compat, tag-eval, train-tagger, tag, stats, show —
//! one module each (`stats` and `show` share the mask set-up in `masks`).
//!
//! Argument structs derive clap's [`Args`] so the dispatcher only flattens them; every command
//! writes its report to a `&mut dyn Write` so tests can read it.

mod derive;
mod masks;
mod tag;
mod taggers;
mod tiles;

pub use derive::*;
pub use masks::*;
pub use tag::*;
pub use taggers::*;
pub use tiles::*;

use crate::data::{conllu, Sentence};
use anyhow::Result;
use clap::ValueEnum;
use std::path::Path;

/// A value's name on the command line (`valid`, `self-only`, …).
pub(super) fn vname<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

pub(super) fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * x)
    }
}

pub(super) fn load_conllu(p: &Path) -> Result<Vec<Sentence>> {
    Ok(conllu::load_file(p)?)
}
