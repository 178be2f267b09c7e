//! Linguistic annotation: the Universal POS tag set, tag-compatibility matrices, leak-free
//! taggers, CoNLL-U reading and the plug-in point for lexical resources. `ling` never imports
//! `data` (corpora build on sentences, not the other way round).

pub mod compat;
pub mod compat_choice;
pub mod conllu;
pub mod lexres;
pub mod sentence;
pub mod tagger;
pub mod upos;

pub use compat::{CompatMatrix, CompatSet};
pub use sentence::Sentence;
pub use upos::Upos;
