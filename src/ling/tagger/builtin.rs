//! The built-in English tagger (placeholder until the embedded model lands).

use super::Tagger;
use crate::{Error, Result};
use std::sync::Arc;

/// The embedded English model.
pub fn english() -> Result<Arc<dyn Tagger>> {
    Err(Error::Config(
        "the built-in English tagger is not embedded in this build".into(),
    ))
}
