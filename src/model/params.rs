//! The named parameter table. Every tensor has a stable name (`blocks.0.attn.wq`, …) so
//! pruning, checkpoints and reports can address it.

use super::GptConfig;
use crate::rng::Rng;

/// What a parameter is, which decides weight decay, pruning and initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Token or position embedding table (decayed, not prunable by default).
    Embedding,
    /// A Linear layer's weight, `out × in` (decayed, prunable).
    Linear,
    /// A Linear layer's bias (no decay).
    Bias,
    /// A layernorm gain or shift (no decay).
    Norm,
    /// E4's per-head UPOS tag-pair attention bias, `H × 17 × 17` (no decay, never prunable;
    /// see [`super::tag_bias`]).
    TagBias,
}

/// One parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

impl ParamSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Matrices (embeddings and Linear weights) get weight decay; vectors do not.
    pub fn decayed(&self) -> bool {
        matches!(self.kind, ParamKind::Embedding | ParamKind::Linear)
    }
}

/// Indices into the table for one block.
#[derive(Clone, Copy, Debug)]
pub struct BlockIds {
    pub ln1_w: usize,
    pub ln1_b: usize,
    pub wq: usize,
    pub wk: usize,
    pub wv: usize,
    pub bq: usize,
    pub bk: usize,
    pub bv: usize,
    pub wo: usize,
    pub bo: usize,
    pub ln2_w: usize,
    pub ln2_b: usize,
    pub w_fc: usize,
    pub b_fc: usize,
    pub w_proj: usize,
    pub b_proj: usize,
}

/// All parameters of a model, in a fixed order.
#[derive(Clone, Debug)]
pub struct ParamTable {
    pub specs: Vec<ParamSpec>,
    pub wte: usize,
    pub wpe: usize,
    pub blocks: Vec<BlockIds>,
    pub lnf_w: usize,
    pub lnf_b: usize,
    /// Per block, the index of `blocks.{l}.attn.tag_bias` (empty unless the model has the tag
    /// bias; those tensors come after every other one, so the rest keep their indices).
    pub tag_bias: Vec<usize>,
}

impl ParamTable {
    /// The table for a (validated) config.
    pub fn new(cfg: &GptConfig) -> Self {
        let c = cfg.d_model;
        let mut specs = Vec::new();
        let mut add = |name: String, shape: Vec<usize>, kind| {
            specs.push(ParamSpec { name, shape, kind });
            specs.len() - 1
        };
        let wte = add("wte".into(), vec![cfg.vocab, c], ParamKind::Embedding);
        let wpe = add("wpe".into(), vec![cfg.ctx, c], ParamKind::Embedding);
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("blocks.{l}.{s}");
            blocks.push(BlockIds {
                ln1_w: add(p("ln1.weight"), vec![c], ParamKind::Norm),
                ln1_b: add(p("ln1.bias"), vec![c], ParamKind::Norm),
                wq: add(p("attn.wq"), vec![c, c], ParamKind::Linear),
                wk: add(p("attn.wk"), vec![c, c], ParamKind::Linear),
                wv: add(p("attn.wv"), vec![c, c], ParamKind::Linear),
                bq: add(p("attn.bq"), vec![c], ParamKind::Bias),
                bk: add(p("attn.bk"), vec![c], ParamKind::Bias),
                bv: add(p("attn.bv"), vec![c], ParamKind::Bias),
                wo: add(p("attn.wo"), vec![c, c], ParamKind::Linear),
                bo: add(p("attn.bo"), vec![c], ParamKind::Bias),
                ln2_w: add(p("ln2.weight"), vec![c], ParamKind::Norm),
                ln2_b: add(p("ln2.bias"), vec![c], ParamKind::Norm),
                w_fc: add(p("mlp.w_fc"), vec![4 * c, c], ParamKind::Linear),
                b_fc: add(p("mlp.b_fc"), vec![4 * c], ParamKind::Bias),
                w_proj: add(p("mlp.w_proj"), vec![c, 4 * c], ParamKind::Linear),
                b_proj: add(p("mlp.b_proj"), vec![c], ParamKind::Bias),
            });
        }
        let lnf_w = add("ln_f.weight".into(), vec![c], ParamKind::Norm);
        let lnf_b = add("ln_f.bias".into(), vec![c], ParamKind::Norm);
        ParamTable {
            specs,
            wte,
            wpe,
            blocks,
            lnf_w,
            lnf_b,
            tag_bias: Vec::new(),
        }
    }

    /// Append one `n_head × 17 × 17` tag-bias tensor per block ([`ParamKind::TagBias`]).
    /// Appending keeps every other tensor's index and the initialisation's random draws.
    pub fn add_tag_bias(&mut self, n_head: usize) -> crate::Result<()> {
        if !self.tag_bias.is_empty() {
            return Err(crate::Error::Config(
                "the parameter table already has a tag bias".into(),
            ));
        }
        let ntags = crate::ling::compat::NTAGS;
        for l in 0..self.blocks.len() {
            self.specs.push(ParamSpec {
                name: super::tag_bias::param_name(l),
                shape: vec![n_head, ntags, ntags],
                kind: ParamKind::TagBias,
            });
            self.tag_bias.push(self.specs.len() - 1);
        }
        Ok(())
    }

    /// Index of the parameter called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }

    /// Total parameter count.
    pub fn numel(&self) -> usize {
        self.specs.iter().map(ParamSpec::numel).sum()
    }

    /// GPT-2 initialisation: Linear weights N(0, 0.02) with the residual projections
    /// (`attn.wo`, `mlp.w_proj`) scaled by 1/√(2L); token embeddings N(0, 0.02), position
    /// embeddings N(0, 0.01); biases 0; layernorm gains 1, shifts 0; tag biases 0 (the model
    /// sets their chosen initialisation, which draws nothing from the RNG).
    pub fn init(&self, n_layer: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(seed);
        let resid_scale = 1.0 / ((2 * n_layer) as f64).sqrt();
        self.specs
            .iter()
            .map(|s| match s.kind {
                ParamKind::Embedding => {
                    let std = if s.name == "wpe" { 0.01 } else { 0.02 };
                    rng.normal_vec(s.numel(), std)
                }
                ParamKind::Linear => {
                    let resid = s.name.ends_with("attn.wo") || s.name.ends_with("mlp.w_proj");
                    let std = if resid { 0.02 * resid_scale } else { 0.02 };
                    rng.normal_vec(s.numel(), std)
                }
                ParamKind::Bias => vec![0.0; s.numel()],
                ParamKind::Norm if s.name.ends_with("weight") => vec![1.0; s.numel()],
                ParamKind::Norm | ParamKind::TagBias => vec![0.0; s.numel()],
            })
            .collect()
    }
}
