//! WikiText-2 (word level): `wiki.{train,valid,test}.tokens`, one paragraph or heading per
//! line, already tokenised with `<unk>` for rare words. Each non-empty line becomes one
//! [`Sentence`] (so one `<eos>` per line, as in the usual word-level LM setup; blank lines
//! carry no text and are skipped). No tags: a run's causal tagger supplies them when the text
//! is encoded (`--tags`, [`super::tags`]); inside a line, a sentence ends after `.`, `!`, `?`.

use super::{read_file, Corpus, Sentence};
use crate::{Error, Result};
use std::path::Path;

/// Parse one `.tokens` file.
pub fn load_file(path: &Path) -> Result<Vec<Sentence>> {
    let text = read_file(path)?;
    let sents: Vec<Sentence> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Sentence {
            words: l.split_whitespace().map(str::to_string).collect(),
            upos: None,
            heads: None,
        })
        .collect();
    if sents.is_empty() {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            line: 1,
            msg: "no text (empty or blank file)".into(),
        });
    }
    Ok(sents)
}

/// Load the three splits from `dir`.
pub fn load_dir(dir: &Path) -> Result<Corpus> {
    let split = |name: &str| {
        let p = dir.join(format!("wiki.{name}.tokens"));
        if !p.is_file() {
            return Err(Error::Config(format!(
                "{}: missing; a WikiText-2 directory holds wiki.train.tokens, wiki.valid.tokens \
                 and wiki.test.tokens (see README)",
                p.display()
            )));
        }
        load_file(&p)
    };
    Ok(Corpus {
        name: "wikitext2".into(),
        train: split("train")?,
        valid: split("valid")?,
        test: split("test")?,
    })
}
