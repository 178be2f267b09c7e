//! Linguistic annotation: the Universal POS tag set, tag-compatibility matrices, leak-free
//! taggers and the plug-in point for lexical resources.

pub mod compat;
pub mod lexres;
pub mod tagger;
pub mod upos;

pub use compat::{CompatMatrix, CompatSet};
pub use upos::Upos;
