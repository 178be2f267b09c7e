//! WikiText-2 (word level): `wiki.{train,valid,test}.tokens`, one paragraph or heading per
//! line, already tokenised with `<unk>` for rare words. Each non-empty line becomes one
//! [`Sentence`] (so one `<eos>` per line, as in the usual word-level LM setup; blank lines
//! carry no text and are skipped). No tags: a leak-free tagger supplies them
//! ([`tag_corpus`], `CorpusSource::Wikitext2 { tagger, .. }`).

use super::{read_file, Corpus, Sentence};
use crate::ling::tagger::{tag_sentence, Tagger};
use crate::ling::Upos;
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

/// The form a tagger sees for a WikiText word: the joiners `@-@`, `@,@`, `@.@` (a hyphen,
/// thousands separator or decimal point split off by WikiText's tokeniser) as `-`, `,`, `.`.
/// A per-form rewrite, so it cannot leak.
pub fn tagger_form(w: &str) -> &str {
    match w {
        "@-@" => "-",
        "@,@" => ",",
        "@.@" => ".",
        _ => w,
    }
}

/// Whether a word ends a sentence inside a WikiText line (`.`, `!`, `?`; not the `@.@`
/// joiner).
fn ends_sentence(w: &str) -> bool {
    matches!(w, "." | "!" | "?")
}

/// Tags of one WikiText line, causally. A line is a paragraph of several sentences; the
/// tagger is run on each sentence separately (so a word after `.` is sentence-initial, as the
/// taggers expect), where a sentence ends after `.`, `!` or `?`. Whether position `i` starts a
/// sentence depends only on word `i - 1`, and within a sentence [`tag_sentence`] sees words
/// `..=i` only, so tag `i` is a function of `words[..=i]`: the taggers' leak-freedom holds.
pub fn tag_line(tagger: &dyn Tagger, words: &[String]) -> Vec<Upos> {
    let mut tags = Vec::with_capacity(words.len());
    let mut start = 0;
    for i in 0..words.len() {
        if ends_sentence(&words[i]) || i + 1 == words.len() {
            let seg: Vec<&str> = words[start..=i].iter().map(|w| tagger_form(w)).collect();
            tags.extend(tag_sentence(tagger, &seg));
            start = i + 1;
        }
    }
    tags
}

/// Fill every sentence's `upos` of all three splits from `tagger` ([`tag_line`]; in
/// parallel, deterministic). Heads are left as they are (None for WikiText).
pub fn tag_corpus(c: &mut Corpus, tagger: &dyn Tagger) {
    for split in [&mut c.train, &mut c.valid, &mut c.test] {
        split
            .par_iter_mut()
            .for_each(|s| s.upos = Some(tag_line(tagger, &s.words)));
    }
}

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
