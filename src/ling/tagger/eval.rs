//! Tagging accuracy: overall, on words known and unknown to a training lexicon, per gold tag,
//! and the most frequent confusions.

use super::{tag_words, tagged, Tagger};
use crate::ling::compat::NTAGS;
use crate::ling::Sentence;
use crate::ling::Upos;
use crate::Result;
use serde::Serialize;

/// Accuracy figures of one tagger on one test set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TagEval {
    pub tagger: String,
    pub tokens: u64,
    pub correct: u64,
    /// Tokens whose lower-cased form occurs in the training data (when known).
    pub known_tokens: u64,
    pub known_correct: u64,
    /// Per gold tag (UD order): tokens and correct predictions.
    pub gold: [u64; NTAGS],
    pub gold_correct: [u64; NTAGS],
    /// Per predicted tag: how often predicted.
    pub predicted: [u64; NTAGS],
    /// `confusion[gold][predicted]`.
    pub confusion: [[u64; NTAGS]; NTAGS],
}

impl TagEval {
    /// Overall accuracy.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.tokens)
    }
    /// Accuracy on known words.
    pub fn known_accuracy(&self) -> f64 {
        ratio(self.known_correct, self.known_tokens)
    }
    /// Accuracy on unknown words.
    pub fn unknown_accuracy(&self) -> f64 {
        ratio(
            self.correct - self.known_correct,
            self.tokens - self.known_tokens,
        )
    }
    /// Share of unknown tokens.
    pub fn unknown_share(&self) -> f64 {
        ratio(self.tokens - self.known_tokens, self.tokens)
    }
    /// Recall of gold tag `t` (per-tag accuracy).
    pub fn tag_accuracy(&self, t: Upos) -> f64 {
        ratio(self.gold_correct[t as usize], self.gold[t as usize])
    }
    /// Precision of predicted tag `t`.
    pub fn tag_precision(&self, t: Upos) -> f64 {
        ratio(self.gold_correct[t as usize], self.predicted[t as usize])
    }
    /// The `n` most frequent `(gold, predicted, count)` errors.
    pub fn top_confusions(&self, n: usize) -> Vec<(Upos, Upos, u64)> {
        let mut v: Vec<(Upos, Upos, u64)> = Vec::new();
        for g in 0..NTAGS {
            for p in 0..NTAGS {
                if g != p && self.confusion[g][p] > 0 {
                    v.push((Upos::ALL[g], Upos::ALL[p], self.confusion[g][p]));
                }
            }
        }
        v.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        v.truncate(n);
        v
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Tag every tagged sentence of `test` with `tagger` and compare with its gold tags.
/// `known(word)` says whether a form was seen in training (for the known/unknown split);
/// without it every token counts as known.
pub fn evaluate(
    tagger: &dyn Tagger,
    test: &[Sentence],
    known: Option<&dyn Fn(&str) -> bool>,
) -> Result<TagEval> {
    let mut e = TagEval {
        tagger: tagger.name(),
        ..Default::default()
    };
    for (words, gold) in tagged(test)? {
        let pred = tag_words(tagger, words);
        for ((w, &g), &p) in words.iter().zip(gold).zip(&pred) {
            let ok = g == p;
            let kn = known.is_none_or(|k| k(w));
            e.tokens += 1;
            e.correct += u64::from(ok);
            e.known_tokens += u64::from(kn);
            e.known_correct += u64::from(kn && ok);
            e.gold[g as usize] += 1;
            e.gold_correct[g as usize] += u64::from(ok);
            e.predicted[p as usize] += 1;
            e.confusion[g as usize][p as usize] += 1;
        }
    }
    Ok(e)
}
