//! `(B, T)` windows over a token stream, for training (random windows) and evaluation (every
//! token scored exactly once, the tail padded and never scored).

use super::vocab::TokenStream;
use crate::backend::IGNORE_INDEX;
use crate::ling::Upos;
use crate::rng::Rng;
use crate::{Error, Result};

/// Tag value for "no tag" in [`Batch::upos`].
pub const NO_TAG: u8 = u8::MAX;

/// One batch: `b × t` input ids, next-token targets ([`IGNORE_INDEX`] where not scored), and
/// per input token its UPOS index (or [`NO_TAG`]) and its head's position inside the same
/// window (or -1: root, unknown, or outside the window).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub b: usize,
    pub t: usize,
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
    pub upos: Vec<u8>,
    pub heads: Vec<i32>,
}

impl Batch {
    /// All padding: inputs `pad` (the stream's end-of-sentence id), nothing scored.
    fn empty(b: usize, t: usize, pad: u32) -> Batch {
        Batch {
            b,
            t,
            tokens: vec![pad; b * t],
            targets: vec![IGNORE_INDEX; b * t],
            upos: vec![NO_TAG; b * t],
            heads: vec![-1; b * t],
        }
    }

    /// Fill row `r` from stream positions `start .. start + len` (inputs) and
    /// `start + 1 .. start + len + 1` (targets); the rest of the row stays padding.
    fn fill_row(&mut self, r: usize, s: &TokenStream, start: usize, len: usize) {
        let t = self.t;
        for i in 0..len {
            let p = start + i;
            self.tokens[r * t + i] = s.ids[p];
            self.targets[r * t + i] = s.ids[p + 1];
            self.upos[r * t + i] = s.upos[p].map_or(NO_TAG, |u: Upos| u as u8);
            self.heads[r * t + i] = match s.heads[p] {
                Some(h) if (h as usize) >= start && (h as usize) < start + len => {
                    (h as usize - start) as i32
                }
                _ => -1,
            };
        }
    }

    /// Number of scored targets.
    pub fn scored(&self) -> usize {
        self.targets.iter().filter(|&&x| x != IGNORE_INDEX).count()
    }
}

fn check_fits(s: &TokenStream, t: usize, what: &str) -> Result<()> {
    if t == 0 {
        return Err(Error::Config("context length must be positive".into()));
    }
    if s.len() < t + 1 {
        return Err(Error::Config(format!(
            "context length {t} is longer than the data: the {what} split has {} tokens \
             (needs at least {})",
            s.len(),
            t + 1
        )));
    }
    Ok(())
}

/// Random training windows: `b` windows of `t` tokens at uniform random offsets.
pub fn random_batch(s: &TokenStream, b: usize, t: usize, rng: &mut Rng) -> Result<Batch> {
    check_fits(s, t, "training")?;
    let mut batch = Batch::empty(b, t, s.eos);
    for r in 0..b {
        let start = rng.below(s.len() - t);
        batch.fill_row(r, s, start, t);
    }
    Ok(batch)
}

/// Evaluation batches: consecutive non-overlapping windows covering every position that has
/// a next token exactly once; the last window and the last batch are padded with unscored
/// positions.
pub struct EvalWindows<'a> {
    s: &'a TokenStream,
    b: usize,
    t: usize,
    next: usize,
}

impl<'a> EvalWindows<'a> {
    /// Windows over `s`; errors if `t` is zero or `b` is zero.
    pub fn new(s: &'a TokenStream, b: usize, t: usize) -> Result<Self> {
        if b == 0 || t == 0 {
            return Err(Error::Config(format!(
                "evaluation batch must be non-empty (b = {b}, t = {t})"
            )));
        }
        if s.len() < 2 {
            return Err(Error::Config(
                "evaluation split has fewer than 2 tokens".into(),
            ));
        }
        Ok(EvalWindows { s, b, t, next: 0 })
    }

    /// Number of scored tokens over all batches (`len − 1`).
    pub fn total_scored(&self) -> usize {
        self.s.len() - 1
    }
}

impl Iterator for EvalWindows<'_> {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        let last = self.s.len() - 1; // positions with a next token: 0..last
        if self.next >= last {
            return None;
        }
        let mut batch = Batch::empty(self.b, self.t, self.s.eos);
        for r in 0..self.b {
            if self.next >= last {
                break;
            }
            let len = self.t.min(last - self.next);
            batch.fill_row(r, self.s, self.next, len);
            self.next += len;
        }
        Some(batch)
    }
}
