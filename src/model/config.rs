//! Model shape.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Shape of the decoder: `n_layer` pre-LN blocks of `n_head` heads over `d_model` channels,
/// contexts up to `ctx` tokens, `vocab` token ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GptConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub d_model: usize,
    pub ctx: usize,
    pub vocab: usize,
}

impl GptConfig {
    /// Reject shapes that cannot work, naming the field.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("d_model", self.d_model),
            ("ctx", self.ctx),
            ("vocab", self.vocab),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{name} must be positive, got 0")));
            }
        }
        if !self.d_model.is_multiple_of(self.n_head) {
            return Err(Error::Config(format!(
                "n_head = {} does not divide d_model = {}",
                self.n_head, self.d_model
            )));
        }
        if self.vocab > u32::MAX as usize - 1 {
            return Err(Error::Config(format!(
                "vocab = {} does not fit u32 token ids",
                self.vocab
            )));
        }
        Ok(())
    }

    /// Head dimension `D = d_model / n_head`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head
    }
}
