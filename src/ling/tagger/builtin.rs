//! The built-in causal English UPOS tagger: an averaged perceptron (feature set 2) trained on
//! UD English-EWT train and embedded in the binary as a compressed `.tagger` model
//! ([`super::binary`]).
//!
//! The model is a derivative of UD English-EWT and is licensed like it, CC BY-SA 4.0. It is
//! rebuilt, byte for byte, by `scripts/train-builtin-tagger.sh`; the header of the file
//! records the command, the data and the dev/test accuracy.

use super::binary::{self, ModelHeader};
use super::perceptron::PerceptronTagger;
use super::{LexiconTagger, Tagger};
use crate::ling::Upos;
use crate::{Error, Result};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The embedded model file.
const MODEL: &[u8] = include_bytes!("models/en_ewt.tagger");

/// Where the built-in model's source data and licence come from.
pub const BUILTIN_PROVENANCE: &str = "built-in UPOS tagger: averaged perceptron (left context \
only) trained on UD_English-EWT at 15d613d (en_ewt-ud-train.conllu), CC BY-SA 4.0, by \
scripts/train-builtin-tagger.sh";

/// Licence of the built-in model (a derivative of UD English-EWT).
pub const BUILTIN_LICENCE: &str = "CC BY-SA 4.0 (derivative of UD English-EWT, \
https://universaldependencies.org, by the UD English-EWT contributors)";

/// The decoded built-in model.
pub struct BuiltinModel {
    header: ModelHeader,
    tagger: PerceptronTagger,
}

impl BuiltinModel {
    /// The file header (provenance, licence, training command, accuracies).
    pub fn header(&self) -> &ModelHeader {
        &self.header
    }
    /// The lexicon the model learnt (its known words).
    pub fn lexicon(&self) -> &LexiconTagger {
        self.tagger.lexicon()
    }
    /// Whether a form was seen in the model's training data.
    pub fn knows(&self, w: &str) -> bool {
        self.tagger.lexicon().knows(w)
    }
    /// Size of the embedded model file in bytes.
    pub fn file_bytes(&self) -> usize {
        MODEL.len()
    }
    /// One line for results files and `asa-lth info`.
    pub fn provenance(&self) -> String {
        let acc = |a: Option<f64>| a.map_or("n/a".into(), |a| format!("{:.2}%", 100.0 * a));
        format!(
            "{BUILTIN_PROVENANCE}; {} bytes; dev {} / test {} token accuracy; `{}`",
            MODEL.len(),
            acc(self.header.dev_accuracy),
            acc(self.header.test_accuracy),
            self.header.command
        )
    }
}

impl Tagger for BuiltinModel {
    fn name(&self) -> String {
        "builtin".into()
    }
    fn tag_next(&self, words: &[&str], prev: &[Upos]) -> Upos {
        self.tagger.tag_next(words, prev)
    }
}

fn decoded() -> Result<Arc<BuiltinModel>> {
    static CELL: OnceLock<std::result::Result<Arc<BuiltinModel>, String>> = OnceLock::new();
    CELL.get_or_init(|| {
        binary::decode(MODEL, Path::new("<builtin:en_ewt.tagger>"))
            .map(|(header, tagger)| Arc::new(BuiltinModel { header, tagger }))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| Error::Config(format!("the built-in tagger model is unusable: {e}")))
}

/// The built-in model with its header and lexicon (decoded once).
pub fn english_model() -> Result<Arc<BuiltinModel>> {
    decoded()
}

/// The built-in English tagger (decoded once, then shared); `name()` is `"builtin"`.
pub fn english() -> Result<Arc<dyn Tagger>> {
    Ok(decoded()? as Arc<dyn Tagger>)
}

/// A short provenance line for the built-in tagger (or why it is unusable).
pub fn provenance() -> String {
    match decoded() {
        Ok(m) => m.provenance(),
        Err(e) => format!("{BUILTIN_PROVENANCE}; {e}"),
    }
}
