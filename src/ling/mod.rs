//! Linguistic annotation: the Universal POS tag set.

pub mod upos;

pub use upos::Upos;
