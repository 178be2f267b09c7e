//! Forward, backward and the optimiser step of the decoder, written once against [`Ops`].
//!
//! Per block (pre-LN):  `x1 = x + Wo·attn(LN1(x))`,  `x2 = x1 + Wproj·gelu(Wfc·LN2(x1))`;
//! then `logits = LN_f(x_L)·wteᵀ` (tied head) and a token-weighted cross-entropy that never
//! scores positions whose target is [`IGNORE_INDEX`](crate::backend::IGNORE_INDEX) — the two
//! fused ([`Ops::lm_head_xent`]), so the `B·T × V` logits are never stored.

use super::params::{BlockIds, ParamKind, ParamTable};
use super::tag_bias::{self, TagBiasInit};
use super::GptConfig;
use crate::backend::{AdamWStep, AttnShape, GradWrite, MaskRef, MatmulShape, Ops, IGNORE_INDEX};
use crate::data::batch::NO_TAG;
use crate::error::check_len;
use crate::ling::compat::NTAGS;
use crate::{Error, Result};

/// Optimiser settings (AdamW with decoupled weight decay on matrices, global-norm clipping).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    pub grad_clip: f32,
    /// The tag-pair bias's learning rate as a multiple of the model's (E4: at the model's
    /// rate a −2 prior barely moves in a short run). Not serialised at 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tag_bias_lr_scale: f32,
}

fn one() -> f32 {
    1.0
}

fn is_one(x: &f32) -> bool {
    *x == 1.0
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
            tag_bias_lr_scale: 1.0,
        }
    }
}

/// Sum of token losses and the number of scored tokens in one forward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossStats {
    pub sum: f64,
    pub count: usize,
}

impl LossStats {
    /// Mean loss per scored token (NaN when nothing was scored).
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// Saved activations of one block.
struct BlockActs<B> {
    ln1: B,
    ln1_mean: B,
    ln1_rstd: B,
    q: B,
    k: B,
    v: B,
    att: B,
    lse: B,
    att_proj: B,
    res1: B,
    ln2: B,
    ln2_mean: B,
    ln2_rstd: B,
    fch: B,
    fch_gelu: B,
    fc_proj: B,
    res2: B,
}

/// Activations and gradient scratch for one (B, T).
struct Acts<O: Ops> {
    b: usize,
    t: usize,
    tokens: O::Idx,
    targets: O::Idx,
    encoded: O::Buf,
    blocks: Vec<BlockActs<O::Buf>>,
    lnf: O::Buf,
    lnf_mean: O::Buf,
    lnf_rstd: O::Buf,
    losses: O::Buf,
    logits_lse: O::Buf,
    // gradient scratch
    d_res: O::Buf,
    d_c: O::Buf,
    d_q: O::Buf,
    d_k: O::Buf,
    d_v: O::Buf,
    d_att: O::Buf,
    d_4c: O::Buf,
    d_fch: O::Buf,
    /// The tied head's weight gradient (`V × C`), from the fused head op.
    d_head_w: O::Buf,
    /// `d_c` and `d_head_w` already hold the head's gradients for the last forward
    /// ([`Gpt::forward_train`] computes them with the loss).
    head_grads_ready: bool,
    n_scored: usize,
    /// Widened attention buffers of the tag bias (None when the model has none).
    tag: Option<TagActs<O::Buf>>,
}

/// The tag bias's activations for one (B, T): the batch's tags and, per block, the widened
/// `q'`, `k'`, `v'`, `out'` the attention ran on (see [`tag_bias`]), plus widened gradient
/// scratch shared by the blocks.
struct TagActs<B> {
    tags: Vec<u8>,
    /// Per block, the bias values the forward used (host copy, for attention captures).
    bias: Vec<Vec<f32>>,
    /// Per block: `[q', k', v', out']`, each `B×T×H·(D+17)`.
    blocks: Vec<[B; 4]>,
    d_q: B,
    d_k: B,
    d_v: B,
    d_out: B,
}

impl<O: Ops> Acts<O> {
    /// The fused head over `lnf` and the tied `wte`: losses and log-sum-exps, and with
    /// `grads` the head's gradients of the mean loss over scored tokens into `d_c` and
    /// `d_head_w` (recorded in `head_grads_ready`).
    fn head(&mut self, ops: &O, wte: &O::Buf, grads: bool, c: usize, v: usize) -> Result<()> {
        self.head_grads_ready = false;
        let scale = if self.n_scored == 0 {
            0.0
        } else {
            1.0 / self.n_scored as f32
        };
        ops.lm_head_xent(
            &mut self.losses,
            &mut self.logits_lse,
            grads.then_some((&mut self.d_c, &mut self.d_head_w)),
            &self.lnf,
            wte,
            &self.targets,
            scale,
            self.b * self.t,
            c,
            v,
        )?;
        self.head_grads_ready = grads;
        Ok(())
    }

    fn new(ops: &O, cfg: &GptConfig, b: usize, t: usize, tagged: bool) -> Result<Self> {
        let (c, n, v) = (cfg.d_model, b * t, cfg.vocab);
        let z = |len| ops.zeros(len);
        let tag = if tagged {
            let cw = n * cfg.n_head * (cfg.head_dim() + NTAGS);
            let mut blocks = Vec::with_capacity(cfg.n_layer);
            for _ in 0..cfg.n_layer {
                blocks.push([z(cw)?, z(cw)?, z(cw)?, z(cw)?]);
            }
            Some(TagActs {
                tags: vec![NO_TAG; n],
                bias: vec![Vec::new(); cfg.n_layer],
                blocks,
                d_q: z(cw)?,
                d_k: z(cw)?,
                d_v: z(cw)?,
                d_out: z(cw)?,
            })
        } else {
            None
        };
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for _ in 0..cfg.n_layer {
            blocks.push(BlockActs {
                ln1: z(n * c)?,
                ln1_mean: z(n)?,
                ln1_rstd: z(n)?,
                q: z(n * c)?,
                k: z(n * c)?,
                v: z(n * c)?,
                att: z(n * c)?,
                lse: z(b * cfg.n_head * t)?,
                att_proj: z(n * c)?,
                res1: z(n * c)?,
                ln2: z(n * c)?,
                ln2_mean: z(n)?,
                ln2_rstd: z(n)?,
                fch: z(n * 4 * c)?,
                fch_gelu: z(n * 4 * c)?,
                fc_proj: z(n * c)?,
                res2: z(n * c)?,
            });
        }
        Ok(Acts {
            b,
            t,
            tokens: ops.upload_idx(&vec![0; n])?,
            targets: ops.upload_idx(&vec![IGNORE_INDEX; n])?,
            encoded: z(n * c)?,
            blocks,
            lnf: z(n * c)?,
            lnf_mean: z(n)?,
            lnf_rstd: z(n)?,
            losses: z(n)?,
            logits_lse: z(n)?,
            d_res: z(n * c)?,
            d_c: z(n * c)?,
            d_q: z(n * c)?,
            d_k: z(n * c)?,
            d_v: z(n * c)?,
            d_att: z(n * c)?,
            d_4c: z(n * 4 * c)?,
            d_fch: z(n * 4 * c)?,
            d_head_w: z(v * c)?,
            head_grads_ready: false,
            n_scored: 0,
            tag,
        })
    }
}

/// One block's attention inputs after a forward pass (see [`Gpt::attention_capture`]).
#[derive(Clone, Debug)]
pub struct AttentionCapture {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub d: usize,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub lse: Vec<f32>,
    /// With the tag bias: the batch's UPOS tags (`B×T`, [`NO_TAG`] for none); else empty.
    pub tags: Vec<u8>,
    /// With the tag bias: this layer's `H×17×17` bias as the forward used it; else empty.
    pub tag_bias: Vec<f32>,
}

impl AttentionCapture {
    /// The tag bias added to the score of query `i` on key `j` (0 without the feature or when
    /// either position has no tag).
    pub fn score_bias(&self, b: usize, h: usize, i: usize, j: usize) -> f64 {
        if self.tag_bias.is_empty() {
            return 0.0;
        }
        let (ti, tj) = (self.tags[b * self.t + i], self.tags[b * self.t + j]);
        if (ti as usize) < NTAGS && (tj as usize) < NTAGS {
            self.tag_bias[(h * NTAGS + ti as usize) * NTAGS + tj as usize] as f64
        } else {
            0.0
        }
    }

    /// Attention probability of query `i` on key `j` for sequence `b`, head `h`, tag bias
    /// included (0 where the row is fully masked, i.e. `lse = +∞`). The caller keeps `j` inside the mask the model
    /// ran with; outside it the value is what the softmax would have given, not 0.
    pub fn prob(&self, b: usize, h: usize, i: usize, j: usize) -> f64 {
        let c = self.h * self.d;
        let qi = &self.q[(b * self.t + i) * c + h * self.d..][..self.d];
        let kj = &self.k[(b * self.t + j) * c + h * self.d..][..self.d];
        let mut s: f64 = qi
            .iter()
            .zip(kj)
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum::<f64>()
            / (self.d as f64).sqrt();
        s += self.score_bias(b, h, i, j);
        let lse = self.lse[(b * self.h + h) * self.t + i] as f64;
        if lse.is_finite() {
            (s - lse).exp()
        } else {
            0.0
        }
    }
}

/// A decoder on device `O`: parameters, gradients, AdamW moments, optional prune masks.
pub struct Gpt<O: Ops> {
    pub ops: O,
    pub cfg: GptConfig,
    pub table: ParamTable,
    params: Vec<O::Buf>,
    grads: Vec<O::Buf>,
    adam_m: Vec<O::Buf>,
    adam_v: Vec<O::Buf>,
    masks: Vec<Option<O::Buf>>,
    /// Per block, the 2:4-compressed (w_fc, w_proj) the forward uses instead of the dense
    /// FFN weights (inference only; see [`Gpt::enable_ffn24`]).
    ffn24: Option<Vec<(O::Sparse24, O::Sparse24)>>,
    /// Tags for the next forward (see [`Gpt::set_tags`]); taken by that forward.
    pending_tags: Option<Vec<u8>>,
    acts: Option<Acts<O>>,
    forward_done: bool,
}

impl<O: Ops> Gpt<O> {
    /// A freshly initialised model (GPT-2 init, deterministic by `seed`).
    pub fn new(ops: O, cfg: GptConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let table = ParamTable::new(&cfg);
        let host = table.init(cfg.n_layer, seed);
        Self::from_host(ops, cfg, table, host)
    }

    fn from_host(ops: O, cfg: GptConfig, table: ParamTable, host: Vec<Vec<f32>>) -> Result<Self> {
        let mut params = Vec::with_capacity(host.len());
        let mut grads = Vec::with_capacity(host.len());
        let mut adam_m = Vec::with_capacity(host.len());
        let mut adam_v = Vec::with_capacity(host.len());
        for h in &host {
            params.push(ops.upload(h)?);
            grads.push(ops.zeros(h.len())?);
            adam_m.push(ops.zeros(h.len())?);
            adam_v.push(ops.zeros(h.len())?);
        }
        let masks = (0..host.len()).map(|_| None).collect();
        Ok(Gpt {
            ops,
            cfg,
            table,
            params,
            grads,
            adam_m,
            adam_v,
            masks,
            ffn24: None,
            pending_tags: None,
            acts: None,
            forward_done: false,
        })
    }

    /// Total parameter count.
    pub fn num_params(&self) -> usize {
        self.table.numel()
    }

    fn id(&self, name: &str) -> Result<usize> {
        self.table
            .index(name)
            .ok_or_else(|| Error::Config(format!("no parameter named `{name}`")))
    }

    /// Copy a parameter to the host.
    pub fn param(&self, name: &str) -> Result<Vec<f32>> {
        self.ops.download(&self.params[self.id(name)?])
    }

    /// Copy a parameter's current gradient to the host.
    pub fn grad(&self, name: &str) -> Result<Vec<f32>> {
        self.ops.download(&self.grads[self.id(name)?])
    }

    /// The last forward pass's attention inputs of block `layer`, copied to the host: `q` and
    /// `k` (`B×T×C`, head `h` at columns `h·D..`) and the per-row log-sum-exp of the scaled
    /// scores (`B×H×T`), from which any attention probability is
    /// `exp(q_i·k_j/√D − lse_i)` (E1/E3 alignment measure it without a T×T buffer). With the
    /// tag bias the scores also carry `B[h][a_i][b_j]`: the capture holds the tags and bias,
    /// and [`AttentionCapture::prob`] adds it.
    pub fn attention_capture(&self, layer: usize) -> Result<AttentionCapture> {
        let a = match (&self.acts, self.forward_done) {
            (Some(a), true) => a,
            _ => {
                return Err(Error::Config(
                    "attention_capture needs a forward pass first".into(),
                ))
            }
        };
        let blk = a.blocks.get(layer).ok_or_else(|| {
            Error::Config(format!(
                "attention_capture: layer {layer} of a {}-layer model",
                self.cfg.n_layer
            ))
        })?;
        Ok(AttentionCapture {
            b: a.b,
            t: a.t,
            h: self.cfg.n_head,
            d: self.cfg.head_dim(),
            q: self.ops.download(&blk.q)?,
            k: self.ops.download(&blk.k)?,
            lse: self.ops.download(&blk.lse)?,
            tags: a.tag.as_ref().map(|ta| ta.tags.clone()).unwrap_or_default(),
            tag_bias: a
                .tag
                .as_ref()
                .map(|ta| ta.bias[layer].clone())
                .unwrap_or_default(),
        })
    }

    /// Overwrite a parameter from the host (its prune mask, if any, is re-applied).
    pub fn set_param(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let i = self.id(name)?;
        let mut vals = values.to_vec();
        if let Some(m) = &self.masks[i] {
            let m = self.ops.download(m)?;
            vals.iter_mut().zip(&m).for_each(|(v, &k)| *v *= k);
        }
        self.ops.write(&mut self.params[i], &vals)
    }

    /// Set (or clear, with `None`) the 0/1 prune mask of a Linear weight. The weight is
    /// multiplied by the mask now, and pruned entries stay exactly zero through training.
    pub fn set_prune_mask(&mut self, name: &str, mask: Option<&[f32]>) -> Result<()> {
        let i = self.id(name)?;
        let spec = &self.table.specs[i];
        if spec.kind != ParamKind::Linear {
            return Err(Error::Config(format!(
                "`{name}` is not a Linear weight; only Linear weights take prune masks"
            )));
        }
        match mask {
            None => self.masks[i] = None,
            Some(m) => {
                check_len("set_prune_mask", "mask", m.len(), spec.numel(), || {
                    format!("{name} {:?}", spec.shape)
                })?;
                if let Some(j) = m.iter().position(|&x| x != 0.0 && x != 1.0) {
                    return Err(Error::Config(format!(
                        "prune mask for `{name}` has value {} at index {j}; expected 0 or 1",
                        m[j]
                    )));
                }
                let mut w = self.ops.download(&self.params[i])?;
                w.iter_mut().zip(m).for_each(|(w, &k)| *w *= k);
                self.ops.write(&mut self.params[i], &w)?;
                self.masks[i] = Some(self.ops.upload(m)?);
            }
        }
        Ok(())
    }

    fn ensure_acts(&mut self, b: usize, t: usize) -> Result<()> {
        if t > self.cfg.ctx {
            return Err(Error::Config(format!(
                "sequence length {t} exceeds the model context {}",
                self.cfg.ctx
            )));
        }
        if b == 0 || t == 0 {
            return Err(Error::Config(format!(
                "empty batch: b = {b}, t = {t} (both must be positive)"
            )));
        }
        let tagged = self.tag_bias_enabled();
        let fits =
            matches!(&self.acts, Some(a) if a.b == b && a.t == t && a.tag.is_some() == tagged);
        if !fits {
            self.acts = None; // free the old activations before allocating new ones
            self.acts = Some(Acts::new(&self.ops, &self.cfg, b, t, tagged)?);
        }
        Ok(())
    }

    /// Forward pass on a `b × t` batch of token ids with next-token `targets` (same shape,
    /// [`IGNORE_INDEX`] where a position must not be scored) and an optional attention mask
    /// (combined with causality). Returns the summed loss and the number of scored tokens.
    pub fn forward(
        &mut self,
        tokens: &[u32],
        targets: &[u32],
        b: usize,
        t: usize,
        mask: Option<MaskRef<'_, O::Idx>>,
    ) -> Result<LossStats> {
        self.forward_impl(tokens, targets, b, t, mask, false)
    }

    /// [`forward`](Self::forward) for a training step: the fused head also computes its
    /// gradients (of the mean loss over scored tokens) in the same pass over the logits, so
    /// the [`backward`](Self::backward) that follows need not form them again. Same results.
    pub fn forward_train(
        &mut self,
        tokens: &[u32],
        targets: &[u32],
        b: usize,
        t: usize,
        mask: Option<MaskRef<'_, O::Idx>>,
    ) -> Result<LossStats> {
        self.forward_impl(tokens, targets, b, t, mask, true)
    }

    fn forward_impl(
        &mut self,
        tokens: &[u32],
        targets: &[u32],
        b: usize,
        t: usize,
        mask: Option<MaskRef<'_, O::Idx>>,
        head_grads: bool,
    ) -> Result<LossStats> {
        self.forward_done = false;
        // Taken whether or not this pass succeeds, so a later batch never runs on stale tags.
        let tags = self.pending_tags.take();
        self.ensure_acts(b, t)?;
        let (c, v, h) = (self.cfg.d_model, self.cfg.vocab, self.cfg.n_head);
        let n = b * t;
        let shape = || format!("b={b} t={t}");
        check_len("forward", "tokens", tokens.len(), n, shape)?;
        check_len("forward", "targets", targets.len(), n, shape)?;
        let ops = &self.ops;
        let p = &self.params;
        let masks = &self.masks;
        let tab = &self.table;
        let a = self.acts.as_mut().expect("activations allocated above");
        if let Some(ta) = a.tag.as_mut() {
            let tags = tags.ok_or_else(|| {
                Error::Config(
                    "this model has a tag-pair attention bias: call set_tags with the batch's \
                     UPOS tags before every forward"
                        .into(),
                )
            })?;
            check_len("forward", "tags", tags.len(), n, shape)?;
            ta.tags = tags;
        }
        ops.write_idx(&mut a.tokens, tokens)?;
        ops.write_idx(&mut a.targets, targets)?;
        a.n_scored = targets.iter().filter(|&&x| x != IGNORE_INDEX).count();

        ops.embedding_fwd(&mut a.encoded, &a.tokens, &p[tab.wte], &p[tab.wpe], b, t, c)?;
        let attn = AttnShape {
            b,
            t,
            h,
            d: self.cfg.head_dim(),
        };
        let mm = |k, oc| MatmulShape { n, k, oc };
        for l in 0..self.cfg.n_layer {
            let (prev, rest) = a.blocks.split_at_mut(l);
            let x = if l == 0 {
                &a.encoded
            } else {
                &prev[l - 1].res2
            };
            let ba = &mut rest[0];
            let id: BlockIds = tab.blocks[l];
            let mk = |i: usize| masks[i].as_ref();
            ops.layernorm_fwd(
                &mut ba.ln1,
                &mut ba.ln1_mean,
                &mut ba.ln1_rstd,
                x,
                &p[id.ln1_w],
                &p[id.ln1_b],
                n,
                c,
            )?;
            for (out, w, bias) in [
                (&mut ba.q, id.wq, id.bq),
                (&mut ba.k, id.wk, id.bk),
                (&mut ba.v, id.wv, id.bv),
            ] {
                ops.matmul_fwd(out, &ba.ln1, &p[w], Some(&p[bias]), mk(w), mm(c, c))?;
            }
            match a.tag.as_mut() {
                Some(ta) => tagged_attention_fwd(ops, ta, l, ba, &p[tab.tag_bias[l]], mask, attn)?,
                None => {
                    ops.attention_fwd(&mut ba.att, &mut ba.lse, &ba.q, &ba.k, &ba.v, mask, attn)?
                }
            }
            ops.matmul_fwd(
                &mut ba.att_proj,
                &ba.att,
                &p[id.wo],
                Some(&p[id.bo]),
                mk(id.wo),
                mm(c, c),
            )?;
            ops.residual_fwd(&mut ba.res1, x, &ba.att_proj)?;
            ops.layernorm_fwd(
                &mut ba.ln2,
                &mut ba.ln2_mean,
                &mut ba.ln2_rstd,
                &ba.res1,
                &p[id.ln2_w],
                &p[id.ln2_b],
                n,
                c,
            )?;
            let ffn24 = self.ffn24.as_ref().map(|f| &f[l]);
            match ffn24 {
                // Inference only: the pre-activation is scratch (the CUDA kernel fuses GELU).
                Some((fc, _)) => ops.matmul24_gelu_fwd(
                    &mut ba.fch_gelu,
                    &mut ba.fch,
                    &ba.ln2,
                    fc,
                    Some(&p[id.b_fc]),
                    mm(c, 4 * c),
                )?,
                None => {
                    ops.matmul_fwd(
                        &mut ba.fch,
                        &ba.ln2,
                        &p[id.w_fc],
                        Some(&p[id.b_fc]),
                        mk(id.w_fc),
                        mm(c, 4 * c),
                    )?;
                    ops.gelu_fwd(&mut ba.fch_gelu, &ba.fch)?;
                }
            }
            match ffn24 {
                Some((_, proj)) => ops.matmul24_fwd(
                    &mut ba.fc_proj,
                    &ba.fch_gelu,
                    proj,
                    Some(&p[id.b_proj]),
                    mm(4 * c, c),
                )?,
                None => ops.matmul_fwd(
                    &mut ba.fc_proj,
                    &ba.fch_gelu,
                    &p[id.w_proj],
                    Some(&p[id.b_proj]),
                    mk(id.w_proj),
                    mm(4 * c, c),
                )?,
            }
            ops.residual_fwd(&mut ba.res2, &ba.res1, &ba.fc_proj)?;
        }
        let x_last = match a.blocks.last() {
            Some(bl) => &bl.res2,
            None => &a.encoded,
        };
        ops.layernorm_fwd(
            &mut a.lnf,
            &mut a.lnf_mean,
            &mut a.lnf_rstd,
            x_last,
            &p[tab.lnf_w],
            &p[tab.lnf_b],
            n,
            c,
        )?;
        a.head(ops, &p[tab.wte], head_grads, c, v)?;
        let losses = ops.download(&a.losses)?;
        let sum: f64 = losses.iter().map(|&x| x as f64).sum();
        self.forward_done = true;
        Ok(LossStats {
            sum,
            count: a.n_scored,
        })
    }

    /// Set every parameter gradient to zero.
    pub fn zero_grad(&mut self) -> Result<()> {
        for g in &mut self.grads {
            self.ops.fill(g, 0.0)?;
        }
        Ok(())
    }

    /// Backward pass of the mean loss over scored tokens of the last [`forward`](Self::forward);
    /// accumulates into the parameter gradients. `mask` must be the one given to forward.
    pub fn backward(&mut self, mask: Option<MaskRef<'_, O::Idx>>) -> Result<()> {
        if !self.forward_done {
            return Err(Error::Config(
                "backward called without a successful forward".into(),
            ));
        }
        if self.ffn24.is_some() {
            return Err(Error::Config(
                "the 2:4-compressed FFN forward is inference-only: call disable_ffn24() and \
                 fine-tune through the 2:4 prune masks it left on mlp.w_fc / mlp.w_proj"
                    .into(),
            ));
        }
        let (c, v, h) = (self.cfg.d_model, self.cfg.vocab, self.cfg.n_head);
        let ops = &self.ops;
        let p = &self.params;
        let g = &mut self.grads;
        let masks = &self.masks;
        let tab = &self.table;
        let a = self.acts.as_mut().expect("forward allocated activations");
        let (b, t) = (a.b, a.t);
        let n = b * t;
        let mm = |k, oc| MatmulShape { n, k, oc };
        let attn = AttnShape {
            b,
            t,
            h,
            d: self.cfg.head_dim(),
        };
        if !a.head_grads_ready {
            // A plain forward: the fused head forms its gradients now (one more pass).
            a.head(ops, &p[tab.wte], true, c, v)?;
        }
        a.head_grads_ready = false;
        ops.accumulate(&mut g[tab.wte], &a.d_head_w)?;
        ops.fill(&mut a.d_res, 0.0)?;
        {
            let x_last = match a.blocks.last() {
                Some(bl) => &bl.res2,
                None => &a.encoded,
            };
            let (gw, gb) = pair_mut(g, tab.lnf_w, tab.lnf_b);
            ops.layernorm_bwd(
                &mut a.d_res,
                gw,
                gb,
                &a.d_c,
                x_last,
                &p[tab.lnf_w],
                &a.lnf_mean,
                &a.lnf_rstd,
                n,
                c,
            )?;
        }
        for l in (0..self.cfg.n_layer).rev() {
            let id = tab.blocks[l];
            let mk = |i: usize| masks[i].as_ref();
            let (prev, rest) = a.blocks.split_at(l);
            let x = if l == 0 {
                &a.encoded
            } else {
                &prev[l - 1].res2
            };
            let ba = &rest[0];
            // x2 = x1 + mo: d_res flows to both; mo = gelu(h)·Wprojᵀ + bproj.
            {
                let (gw, gb) = pair_mut(g, id.w_proj, id.b_proj);
                ops.matmul_bwd(
                    Some((&mut a.d_4c, GradWrite::Overwrite)),
                    gw,
                    Some(gb),
                    &a.d_res,
                    &ba.fch_gelu,
                    &p[id.w_proj],
                    mk(id.w_proj),
                    mm(4 * c, c),
                )?;
            }
            ops.gelu_bwd(&mut a.d_fch, &ba.fch, &a.d_4c)?;
            {
                let (gw, gb) = pair_mut(g, id.w_fc, id.b_fc);
                ops.matmul_bwd(
                    Some((&mut a.d_c, GradWrite::Overwrite)),
                    gw,
                    Some(gb),
                    &a.d_fch,
                    &ba.ln2,
                    &p[id.w_fc],
                    mk(id.w_fc),
                    mm(c, 4 * c),
                )?;
            }
            {
                let (gw, gb) = pair_mut(g, id.ln2_w, id.ln2_b);
                ops.layernorm_bwd(
                    &mut a.d_res,
                    gw,
                    gb,
                    &a.d_c,
                    &ba.res1,
                    &p[id.ln2_w],
                    &ba.ln2_mean,
                    &ba.ln2_rstd,
                    n,
                    c,
                )?;
            }
            // x1 = x + att·Woᵀ + bo
            {
                let (gw, gb) = pair_mut(g, id.wo, id.bo);
                ops.matmul_bwd(
                    Some((&mut a.d_att, GradWrite::Overwrite)),
                    gw,
                    Some(gb),
                    &a.d_res,
                    &ba.att,
                    &p[id.wo],
                    mk(id.wo),
                    mm(c, c),
                )?;
            }
            ops.fill(&mut a.d_q, 0.0)?;
            ops.fill(&mut a.d_k, 0.0)?;
            ops.fill(&mut a.d_v, 0.0)?;
            match a.tag.as_mut() {
                Some(ta) => tagged_attention_bwd(
                    ops,
                    ta,
                    l,
                    [&mut a.d_q, &mut a.d_k, &mut a.d_v],
                    &mut g[tab.tag_bias[l]],
                    &a.d_att,
                    &ba.lse,
                    mask,
                    attn,
                )?,
                None => ops.attention_bwd(
                    &mut a.d_q, &mut a.d_k, &mut a.d_v, &a.d_att, &ba.q, &ba.k, &ba.v, &ba.att,
                    &ba.lse, mask, attn,
                )?,
            }
            // The three projections share their input: the first writes d_c, the others add.
            for (dy, w, bias, write) in [
                (&a.d_q, id.wq, id.bq, GradWrite::Overwrite),
                (&a.d_k, id.wk, id.bk, GradWrite::Accumulate),
                (&a.d_v, id.wv, id.bv, GradWrite::Accumulate),
            ] {
                let (gw, gb) = pair_mut(g, w, bias);
                ops.matmul_bwd(
                    Some((&mut a.d_c, write)),
                    gw,
                    Some(gb),
                    dy,
                    &ba.ln1,
                    &p[w],
                    mk(w),
                    mm(c, c),
                )?;
            }
            let (gw, gb) = pair_mut(g, id.ln1_w, id.ln1_b);
            ops.layernorm_bwd(
                &mut a.d_res,
                gw,
                gb,
                &a.d_c,
                x,
                &p[id.ln1_w],
                &ba.ln1_mean,
                &ba.ln1_rstd,
                n,
                c,
            )?;
        }
        let (gte, gpe) = pair_mut(g, tab.wte, tab.wpe);
        ops.embedding_bwd(gte, gpe, &a.d_res, &a.tokens, b, t, c)?;
        Ok(())
    }

    /// Project every block's FFN weights (`mlp.w_fc`, `mlp.w_proj`) to 2:4 by magnitude
    /// (DESIGN.md §3, ties to the lower index) and run their forward from the compressed form
    /// through [`Ops::matmul24_fwd`]. The 2:4 mask (times any existing prune mask) is also set
    /// as those weights' prune mask, so the dense parameters equal what the compressed ones
    /// hold, and fine-tuning after [`disable_ffn24`](Self::disable_ffn24) keeps the pattern.
    pub fn enable_ffn24(&mut self) -> Result<()> {
        let mut compressed = Vec::with_capacity(self.table.blocks.len());
        for l in 0..self.table.blocks.len() {
            let id = self.table.blocks[l];
            let mut pair = Vec::with_capacity(2);
            for w in [id.w_fc, id.w_proj] {
                let spec = self.table.specs[w].clone();
                let (n, k) = (spec.shape[0], spec.shape[1]);
                let dense = self.ops.download(&self.params[w])?;
                let mut mask = vec![0.0f32; dense.len()];
                crate::sparse::two_four_mask(&spec.name, &dense, n, k, &mut mask)?;
                if let Some(old) = &self.masks[w] {
                    let old = self.ops.download(old)?;
                    mask.iter_mut().zip(&old).for_each(|(m, &o)| *m *= o);
                }
                self.set_prune_mask(&spec.name, Some(&mask))?;
                pair.push(self.ops.compress24(&spec.name, &self.params[w], n, k)?);
            }
            let proj = pair.pop().expect("two compressed weights");
            let fc = pair.pop().expect("two compressed weights");
            compressed.push((fc, proj));
        }
        self.ffn24 = Some(compressed);
        Ok(())
    }

    /// Go back to the dense FFN forward (the 2:4 prune masks stay).
    pub fn disable_ffn24(&mut self) {
        self.ffn24 = None;
    }

    /// Take the compressed FFN weights out (the forward runs dense), to put back with
    /// [`resume_ffn24`](Self::resume_ffn24) without compressing again: alternating the two
    /// paths for interleaved timing.
    pub fn suspend_ffn24(&mut self) -> Option<Ffn24Weights<O>> {
        self.ffn24.take().map(Ffn24Weights)
    }

    /// Put back weights from [`suspend_ffn24`](Self::suspend_ffn24) of this model.
    pub fn resume_ffn24(&mut self, w: Ffn24Weights<O>) {
        self.ffn24 = Some(w.0);
    }

    /// Whether the FFN forward runs from 2:4-compressed weights.
    pub fn ffn24_enabled(&self) -> bool {
        self.ffn24.is_some()
    }

    /// Global L2 norm of all gradients.
    pub fn grad_norm(&self) -> Result<f64> {
        let grads: Vec<&O::Buf> = self.grads.iter().collect();
        // Summed in tensor order, as one tensor at a time did.
        let s: f64 = self.ops.sum_squares_many(&grads)?.iter().sum();
        Ok(s.sqrt())
    }

    /// One AdamW step at learning rate `lr` (`step` is 1-based), clipping the global
    /// gradient norm first. Returns the norm before clipping. A non-finite norm is an error
    /// and leaves the parameters untouched.
    pub fn step(&mut self, lr: f32, step: u32, opt: &AdamWConfig) -> Result<f64> {
        let norm = self.grad_norm()?;
        if !norm.is_finite() {
            return Err(Error::NonFinite {
                tensor: "gradients (global norm)".into(),
                index: 0,
                value: norm as f32,
            });
        }
        let grad_scale = if opt.grad_clip > 0.0 && norm > opt.grad_clip as f64 {
            (opt.grad_clip as f64 / norm) as f32
        } else {
            1.0
        };
        for i in 0..self.params.len() {
            let hp = AdamWStep {
                lr: if self.table.specs[i].kind == crate::model::ParamKind::TagBias {
                    lr * opt.tag_bias_lr_scale
                } else {
                    lr
                },
                beta1: opt.beta1,
                beta2: opt.beta2,
                eps: opt.eps,
                weight_decay: if self.table.specs[i].decayed() {
                    opt.weight_decay
                } else {
                    0.0
                },
                grad_scale,
                t: step,
            };
            self.ops.adamw(
                &mut self.params[i],
                &self.grads[i],
                &mut self.adam_m[i],
                &mut self.adam_v[i],
                self.masks[i].as_ref(),
                &hp,
            )?;
        }
        Ok(norm)
    }
}

/// Two distinct elements of a slice, both mutably.
fn pair_mut<T>(xs: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j, "pair_mut needs distinct indices");
    if i < j {
        let (lo, hi) = xs.split_at_mut(j);
        (&mut lo[i], &mut hi[0])
    } else {
        let (lo, hi) = xs.split_at_mut(i);
        (&mut hi[0], &mut lo[j])
    }
}

/// Block `l`'s attention with the tag bias: widen `q`, `k`, `v` on the host (see
/// [`tag_bias`]), run the unchanged attention op on `D + 17` channels per head, and narrow its
/// output back into `ba.att`. `lse` is the biased scores' log-sum-exp, as captures need it.
fn tagged_attention_fwd<O: Ops>(
    ops: &O,
    ta: &mut TagActs<O::Buf>,
    l: usize,
    ba: &mut BlockActs<O::Buf>,
    bias: &O::Buf,
    mask: Option<MaskRef<'_, O::Idx>>,
    s: AttnShape,
) -> Result<()> {
    let wide = tag_bias::widened(s);
    let nw = s.b * s.t * wide.c();
    let bias = ops.download(bias)?;
    let [q, k, v, out] = &mut ta.blocks[l];
    let mut host = vec![0.0f32; nw];
    tag_bias::widen_q(&mut host, &ops.download(&ba.q)?, &bias, &ta.tags, s)?;
    ops.write(q, &host)?;
    tag_bias::widen_k(&mut host, &ops.download(&ba.k)?, &ta.tags, s)?;
    ops.write(k, &host)?;
    tag_bias::widen_zero(&mut host, &ops.download(&ba.v)?, s)?;
    ops.write(v, &host)?;
    ops.attention_fwd(out, &mut ba.lse, q, k, v, mask, wide)?;
    let mut att = vec![0.0f32; s.b * s.t * s.c()];
    tag_bias::narrow(&mut att, &ops.download(out)?, 1.0, s)?;
    ops.write(&mut ba.att, &att)?;
    ta.bias[l] = bias;
    Ok(())
}

/// The backward of [`tagged_attention_fwd`]: widen `d_att`, run the attention backward on
/// the saved widened tensors, narrow `dq` (times `√(D'/D)`), `dk`, `dv` into `dqkv`, and
/// accumulate the bias gradient. `dqkv` must be zero on entry (the caller fills them), so
/// writing the narrowed values is the accumulation the Ops contract asks for.
#[allow(clippy::too_many_arguments)]
fn tagged_attention_bwd<O: Ops>(
    ops: &O,
    ta: &mut TagActs<O::Buf>,
    l: usize,
    dqkv: [&mut O::Buf; 3],
    dbias: &mut O::Buf,
    d_att: &O::Buf,
    lse: &O::Buf,
    mask: Option<MaskRef<'_, O::Idx>>,
    s: AttnShape,
) -> Result<()> {
    let wide = tag_bias::widened(s);
    let mut host = vec![0.0f32; s.b * s.t * wide.c()];
    tag_bias::widen_zero(&mut host, &ops.download(d_att)?, s)?;
    ops.write(&mut ta.d_out, &host)?;
    for d in [&mut ta.d_q, &mut ta.d_k, &mut ta.d_v] {
        ops.fill(d, 0.0)?;
    }
    let [q, k, v, out] = &ta.blocks[l];
    ops.attention_bwd(
        &mut ta.d_q,
        &mut ta.d_k,
        &mut ta.d_v,
        &ta.d_out,
        q,
        k,
        v,
        out,
        lse,
        mask,
        wide,
    )?;
    let dq_wide = ops.download(&ta.d_q)?;
    let mut gb = ops.download(dbias)?;
    tag_bias::bias_grad(&mut gb, &dq_wide, &ta.tags, s)?;
    ops.write(dbias, &gb)?;
    let mut narrow = vec![0.0f32; s.b * s.t * s.c()];
    let [dq, dk, dv] = dqkv;
    tag_bias::narrow(&mut narrow, &dq_wide, tag_bias::q_scale(s) as f32, s)?;
    ops.write(dq, &narrow)?;
    tag_bias::narrow(&mut narrow, &ops.download(&ta.d_k)?, 1.0, s)?;
    ops.write(dk, &narrow)?;
    tag_bias::narrow(&mut narrow, &ops.download(&ta.d_v)?, 1.0, s)?;
    ops.write(dv, &narrow)?;
    Ok(())
}

/// A named host tensor of the model state (for checkpoints).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl<O: Ops> Gpt<O> {
    /// Give the model E4's learnable tag-pair attention bias (see [`tag_bias`]): one
    /// `blocks.{l}.attn.tag_bias` tensor (`H×17×17`, [`ParamKind::TagBias`]: no weight decay,
    /// no prune mask) per block, appended after every other parameter, initialised per `init`
    /// (`incompatible`, finite and ≤ 0, is the ASA initialisation's value on incompatible
    /// pairs; [`tag_bias::DEFAULT_INCOMPATIBLE`] is the default). `Off` does nothing, so a
    /// driver can pass its config through unconditionally. From then on every
    /// [`forward`](Self::forward) needs [`set_tags`](Self::set_tags) first. Call it before
    /// restoring a checkpoint that has the bias.
    pub fn enable_tag_bias(&mut self, init: TagBiasInit, incompatible: f32) -> Result<()> {
        let values = init.layer_values(self.cfg.n_head, incompatible)?;
        self.enable_tag_bias_values(values)
    }

    /// As [`enable_tag_bias`](Self::enable_tag_bias) with the initial values given (one
    /// layer's `H×17×17`, the same in every layer; `None` does nothing).
    pub fn enable_tag_bias_values(&mut self, values: Option<Vec<f32>>) -> Result<()> {
        let Some(values) = values else {
            return Ok(());
        };
        if self.tag_bias_enabled() {
            return Err(Error::Config(
                "enable_tag_bias: the model already has a tag bias".into(),
            ));
        }
        let mut table = self.table.clone();
        table.add_tag_bias(self.cfg.n_head)?;
        // Allocate everything before touching the model, so an error leaves it unchanged.
        let mut bufs = Vec::with_capacity(table.tag_bias.len());
        for _ in &table.tag_bias {
            bufs.push([
                self.ops.upload(&values)?,
                self.ops.zeros(values.len())?,
                self.ops.zeros(values.len())?,
                self.ops.zeros(values.len())?,
            ]);
        }
        for [p, g, m, v] in bufs {
            self.params.push(p);
            self.grads.push(g);
            self.adam_m.push(m);
            self.adam_v.push(v);
            self.masks.push(None);
        }
        self.table = table;
        self.acts = None; // reallocated with the widened attention buffers
        self.forward_done = false;
        Ok(())
    }

    /// Whether the model has the tag-pair attention bias.
    pub fn tag_bias_enabled(&self) -> bool {
        !self.table.tag_bias.is_empty()
    }

    /// The UPOS tags of the next [`forward`](Self::forward)'s batch, `B×T` in the token
    /// layout: a UPOS index `0..17` ([`crate::ling::Upos`] as `u8`) or
    /// [`NO_TAG`] (no bias to or from that position), as in [`crate::data::Batch::upos`].
    /// Consumed by that forward (and kept for its backward), so every batch must set its own.
    /// Models without the tag bias ignore them.
    pub fn set_tags(&mut self, tags: &[u8]) -> Result<()> {
        tag_bias::check_tags(tags)?;
        self.pending_tags = Some(tags.to_vec());
        Ok(())
    }

    /// Block `layer`'s current tag bias, `H×17×17` row-major (`[h][query tag][key tag]`),
    /// the same as `param("blocks.{layer}.attn.tag_bias")`.
    pub fn tag_bias(&self, layer: usize) -> Result<Vec<f32>> {
        match self.table.tag_bias.get(layer) {
            Some(&i) => self.ops.download(&self.params[i]),
            None if self.tag_bias_enabled() => Err(Error::Config(format!(
                "tag_bias: layer {layer} of a {}-layer model",
                self.cfg.n_layer
            ))),
            None => Err(Error::Config(
                "tag_bias: this model has no tag bias (see enable_tag_bias)".into(),
            )),
        }
    }
}

/// A model's 2:4-compressed FFN weights, held aside by [`Gpt::suspend_ffn24`].
pub struct Ffn24Weights<O: Ops>(Vec<(O::Sparse24, O::Sparse24)>);

/// Which part of the model state a checkpoint tensor holds.
const STATE_PARTS: [&str; 3] = ["param", "adam_m", "adam_v"];

impl<O: Ops> Gpt<O> {
    /// The whole trainable state as named host tensors: `param/<name>`, `adam_m/<name>`,
    /// `adam_v/<name>` and, for pruned weights, `mask/<name>`.
    pub fn state(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for (i, spec) in self.table.specs.iter().enumerate() {
            for (part, bufs) in STATE_PARTS
                .iter()
                .zip([&self.params, &self.adam_m, &self.adam_v])
            {
                out.push(NamedTensor {
                    name: format!("{part}/{}", spec.name),
                    shape: spec.shape.clone(),
                    values: self.ops.download(&bufs[i])?,
                });
            }
            if let Some(m) = &self.masks[i] {
                out.push(NamedTensor {
                    name: format!("mask/{}", spec.name),
                    shape: spec.shape.clone(),
                    values: self.ops.download(m)?,
                });
            }
        }
        Ok(out)
    }

    /// Restore state written by [`state`](Self::state). Every `param`/`adam_*` tensor must
    /// be present with the right length; an unknown name is an error.
    pub fn load_state(&mut self, mut get: impl FnMut(&str) -> Option<Vec<f32>>) -> Result<()> {
        // A state with a tag bias must not load silently into a model without one: the bias
        // would be dropped and the model would compute something else.
        let probe = format!("param/{}", tag_bias::param_name(0));
        if !self.tag_bias_enabled() && get(&probe).is_some() {
            return Err(Error::Config(format!(
                "the state has a tag-pair attention bias (`{probe}`) but this model has none: \
                 call enable_tag_bias before loading it"
            )));
        }
        for i in 0..self.table.specs.len() {
            let spec = self.table.specs[i].clone();
            for (p, part) in STATE_PARTS.iter().enumerate() {
                let key = format!("{part}/{}", spec.name);
                let vals = get(&key)
                    .ok_or_else(|| Error::Config(format!("checkpoint lacks tensor `{key}`")))?;
                if vals.len() != spec.numel() {
                    return Err(Error::Config(format!(
                        "checkpoint tensor `{key}` has {} values, the model's shape {:?} needs {} \
                         (a checkpoint of another model?)",
                        vals.len(),
                        spec.shape,
                        spec.numel()
                    )));
                }
                let dst = match p {
                    0 => &mut self.params[i],
                    1 => &mut self.adam_m[i],
                    _ => &mut self.adam_v[i],
                };
                self.ops.write(dst, &vals)?;
            }
            let mask = get(&format!("mask/{}", spec.name));
            self.masks[i] = None;
            if let Some(m) = mask {
                self.set_prune_mask(&spec.name, Some(&m))?;
            }
        }
        Ok(())
    }
}
