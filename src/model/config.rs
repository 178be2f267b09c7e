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

    /// Number of parameters (embeddings, every block's attention, MLP and layer norms, the
    /// final layer norm; the LM head is tied to the token embedding).
    pub fn param_count(&self) -> usize {
        let c = self.d_model;
        let block = 2 * c + 4 * c * c + 4 * c + 2 * c + 4 * c * c + 4 * c + 4 * c * c + c;
        self.vocab * c + self.ctx * c + self.n_layer * block + 2 * c
    }

    /// f32 values of the activations one forward/backward of a `b × t` batch holds (the
    /// model's activation buffers, with the tag bias's widened ones when `tagged`).
    pub fn activation_floats(&self, b: usize, t: usize, tagged: bool) -> usize {
        let (c, n, v, h) = (self.d_model, b * t, self.vocab, self.n_head);
        let block = 18 * n * c + 4 * n + n * h;
        // The fused head holds no B·T × V logits: its V × C weight gradient, and while it
        // runs one block of logits on the CPU (the CUDA kernels keep theirs in registers).
        let (rows, cols) = crate::backend::lm_head_blocks(n, v);
        let head = n.min(rows) * cols;
        let global = 16 * n * c + v * c + head + 4 * n;
        let tag = if tagged {
            (4 * self.n_layer + 4) * n * h * (self.head_dim() + 17)
        } else {
            0
        };
        self.n_layer * block + global + tag
    }

    /// Bytes a training run of this shape holds on its device: parameters with their
    /// gradients, two AdamW moments and a prune mask, plus one batch's activations.
    pub fn training_bytes(&self, b: usize, t: usize, tagged: bool) -> u64 {
        4 * (5 * self.param_count() as u64 + self.activation_floats(b, t, tagged) as u64)
    }
}
