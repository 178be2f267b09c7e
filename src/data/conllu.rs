//! UD treebank directories as corpora. Parsing CoNLL-U itself lives in [`crate::ling::conllu`]
//! (the linguistic layer owns sentences and their annotation; `data` builds on it).

pub use crate::ling::conllu::{load_file, parse};

use super::Corpus;
use crate::{Error, Result};
use std::path::Path;

/// Load a UD treebank directory: the files ending in `-ud-train.conllu`, `-ud-dev.conllu`
/// and `-ud-test.conllu`.
pub fn load_dir(dir: &Path) -> Result<Corpus> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let names: Vec<std::path::PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    let find = |suffix: &str| {
        names
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .cloned()
            .ok_or_else(|| {
                Error::Config(format!(
                    "{}: no file ending in `{suffix}` (a UD treebank directory holds \
                     *-ud-train.conllu, *-ud-dev.conllu, *-ud-test.conllu)",
                    dir.display()
                ))
            })
    };
    Ok(Corpus {
        name: format!(
            "conllu:{}",
            dir.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        train: load_file(&find("-ud-train.conllu")?)?,
        valid: load_file(&find("-ud-dev.conllu")?)?,
        test: load_file(&find("-ud-test.conllu")?)?,
    })
}
