//! `asa-lth asa tag`: causal tags for raw text, word by word or BPE piece by piece.

use crate::data::tags::tag_line;
use crate::data::{Sentence, TagsChoice, Tokenizer, Vocab};
use crate::ling::Upos;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// `asa tag`.
#[derive(Args, Debug, Clone, Default)]
pub struct TagArgs {
    /// Tagger: builtin (default), rules or model:PATH (gold has no meaning for raw text).
    #[arg(long, default_value = "builtin", value_parser = parse_tags)]
    pub tags: TagsChoice,
    /// Text file, one sentence per line, tokens separated by spaces (default: stdin). Lines
    /// starting with `#` are skipped.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Tokenizer: word, or gpt2 (one causal tag per BPE piece, from the partial word so far).
    #[arg(long, default_value = "word", value_parser = parse_tokenizer)]
    pub tokenizer: Tokenizer,
    /// Output: slash (`word/TAG` per line; word tokenizer only) or tsv (one row per token:
    /// sentence index, piece index, piece text, tag; a `#` header line).
    #[arg(long, value_enum, default_value = "slash")]
    pub format: TagFormat,
}

/// Output format of `asa tag`.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum TagFormat {
    /// `word/TAG word/TAG …`, one sentence per line.
    #[default]
    Slash,
    /// Tab-separated, one row per token.
    Tsv,
}

pub(super) fn parse_tags(s: &str) -> std::result::Result<TagsChoice, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

pub(super) fn parse_tokenizer(s: &str) -> std::result::Result<Tokenizer, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

/// `asa tag`: tag whitespace-tokenised lines from `input` (or `--input`), causally (word by
/// word, or BPE piece by piece with `--tokenizer gpt2`).
pub fn tag(a: &TagArgs, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<()> {
    let choice = a.tags.clone();
    if choice.is_gold() {
        bail!("--tags gold: raw text has no gold tags (use builtin, rules or model:PATH)");
    }
    if a.format == TagFormat::Slash && a.tokenizer == Tokenizer::Gpt2 {
        bail!("--tokenizer gpt2 tags BPE pieces: use --format tsv");
    }
    let tagger = choice
        .tagger(false)?
        .context("a causal tagger for raw text")?;
    let mut file_reader;
    let reader: &mut dyn BufRead = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| p.display().to_string())?;
            file_reader = std::io::BufReader::new(f);
            &mut file_reader
        }
        None => input,
    };
    let gpt2 = (a.tokenizer == Tokenizer::Gpt2).then(Vocab::gpt2);
    if a.format == TagFormat::Tsv {
        writeln!(
            out,
            "# sentence\tpiece\ttext\ttag (tokenizer {}, tags {})",
            a.tokenizer, choice
        )?;
    }
    let mut si = 0usize;
    for line in reader.lines() {
        let line = line?;
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let sent = Sentence {
            words: line.split_whitespace().map(str::to_string).collect(),
            upos: None,
            heads: None,
        };
        match a.format {
            TagFormat::Slash => {
                let tags = tag_line(&*tagger, &sent.words);
                let toks: Vec<String> = sent
                    .words
                    .iter()
                    .zip(&tags)
                    .map(|(w, t)| format!("{w}/{t}"))
                    .collect();
                writeln!(out, "{}", toks.join(" "))?;
            }
            TagFormat::Tsv => {
                let sents = std::slice::from_ref(&sent);
                let (texts, tags): (Vec<String>, Vec<Upos>) = match &gpt2 {
                    Some(v) => {
                        let st = v.encode_tagged(sents, Some(&*tagger));
                        let n = st.ids.len() - 1; // the last is <|endoftext|>
                        (
                            st.ids[..n]
                                .iter()
                                .map(|&id| v.word(id).to_string())
                                .collect(),
                            st.upos[..n].iter().map(|t| t.unwrap_or(Upos::X)).collect(),
                        )
                    }
                    None => (sent.words.clone(), tag_line(&*tagger, &sent.words)),
                };
                for (pi, (text, t)) in texts.iter().zip(&tags).enumerate() {
                    let text = text
                        .replace('\\', "\\\\")
                        .replace('\t', "\\t")
                        .replace('\n', "\\n");
                    writeln!(out, "{si}\t{pi}\t{text}\t{t}")?;
                }
            }
        }
        si += 1;
    }
    Ok(())
}
