//! CoNLL-U (Universal Dependencies) reader: FORM, UPOS and HEAD of every syntactic word.
//! Comment lines (`#`) are skipped; multiword-token ranges (`3-4`) are skipped because their
//! parts follow as words; empty nodes (`5.1`) are skipped because they are not in the surface
//! text. Malformed lines are errors naming the file and line. Loading a treebank directory as
//! a corpus is `crate::data::conllu::load_dir`.

use super::{Sentence, Upos};
use crate::io::read_file;
use crate::{Error, Result};
use std::path::Path;

/// Parse CoNLL-U text (`path` only names the source in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Sentence>> {
    let err = |line: usize, msg: String| Error::Parse {
        path: path.to_path_buf(),
        line,
        msg,
    };
    let mut out = Vec::new();
    let mut cur = Sentence {
        words: vec![],
        upos: Some(vec![]),
        heads: Some(vec![]),
    };
    let mut flush = |cur: &mut Sentence, line: usize| -> Result<()> {
        if cur.words.is_empty() {
            return Ok(());
        }
        let n = cur.words.len() as u32;
        if let Some(h) = cur
            .heads
            .as_ref()
            .and_then(|hs| hs.iter().find(|&&h| h > n))
        {
            return Err(err(
                line,
                format!("sentence ending here has a HEAD of {h} but only {n} words"),
            ));
        }
        out.push(std::mem::replace(
            cur,
            Sentence {
                words: vec![],
                upos: Some(vec![]),
                heads: Some(vec![]),
            },
        ));
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let ln = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            flush(&mut cur, ln)?;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 10 {
            return Err(err(
                ln,
                format!("expected 10 tab-separated columns, found {}", cols.len()),
            ));
        }
        let id = cols[0];
        if id.contains('-') || id.contains('.') {
            continue; // multiword range or empty node
        }
        let id: u32 = id
            .parse()
            .map_err(|_| err(ln, format!("ID `{id}` is not an integer, range or decimal")))?;
        let expected = cur.words.len() as u32 + 1;
        if id != expected {
            return Err(err(
                ln,
                format!("word ID {id} out of sequence (expected {expected})"),
            ));
        }
        let upos = Upos::parse(cols[3])
            .ok_or_else(|| err(ln, format!("unknown UPOS tag `{}`", cols[3])))?;
        let head = match cols[6] {
            "_" => None,
            h => Some(
                h.parse::<u32>()
                    .map_err(|_| err(ln, format!("HEAD `{h}` is not an integer")))?,
            ),
        };
        cur.words.push(cols[1].to_string());
        if let Some(u) = cur.upos.as_mut() {
            u.push(upos);
        }
        match head {
            Some(h) => {
                if let Some(hs) = cur.heads.as_mut() {
                    hs.push(h)
                }
            }
            None => cur.heads = None, // unannotated heads: the sentence carries none
        }
    }
    flush(&mut cur, text.lines().count() + 1)?;
    Ok(out)
}

/// Parse one CoNLL-U file; an empty file is an error.
pub fn load_file(path: &Path) -> Result<Vec<Sentence>> {
    let sents = parse(&read_file(path)?, path)?;
    if sents.is_empty() {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            line: 1,
            msg: "no sentences".into(),
        });
    }
    Ok(sents)
}
