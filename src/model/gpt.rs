//! Forward, backward and the optimiser step of the decoder, written once against [`Ops`].
//!
//! Per block (pre-LN):  `x1 = x + Wo·attn(LN1(x))`,  `x2 = x1 + Wproj·gelu(Wfc·LN2(x1))`;
//! then `logits = LN_f(x_L)·wteᵀ` (tied head) and a token-weighted cross-entropy that never
//! scores positions whose target is [`IGNORE_INDEX`](crate::backend::IGNORE_INDEX).

use super::params::{BlockIds, ParamKind, ParamTable};
use super::GptConfig;
use crate::backend::{AdamWStep, AttnShape, MaskRef, MatmulShape, Ops, IGNORE_INDEX};
use crate::error::check_len;
use crate::{Error, Result};

/// Optimiser settings (AdamW with decoupled weight decay on matrices, global-norm clipping).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    pub grad_clip: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
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
    logits: O::Buf,
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
    d_logits: O::Buf,
    n_scored: usize,
}

impl<O: Ops> Acts<O> {
    fn new(ops: &O, cfg: &GptConfig, b: usize, t: usize) -> Result<Self> {
        let (c, n, v) = (cfg.d_model, b * t, cfg.vocab);
        let z = |len| ops.zeros(len);
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
            logits: z(n * v)?,
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
            d_logits: z(n * v)?,
            n_scored: 0,
        })
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
        let fits = matches!(&self.acts, Some(a) if a.b == b && a.t == t);
        if !fits {
            self.acts = None; // free the old activations before allocating new ones
            self.acts = Some(Acts::new(&self.ops, &self.cfg, b, t)?);
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
        self.forward_done = false;
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
            ops.attention_fwd(&mut ba.att, &mut ba.lse, &ba.q, &ba.k, &ba.v, mask, attn)?;
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
                Some((fc, _)) => {
                    ops.matmul24_fwd(&mut ba.fch, &ba.ln2, fc, Some(&p[id.b_fc]), mm(c, 4 * c))?
                }
                None => ops.matmul_fwd(
                    &mut ba.fch,
                    &ba.ln2,
                    &p[id.w_fc],
                    Some(&p[id.b_fc]),
                    mk(id.w_fc),
                    mm(c, 4 * c),
                )?,
            }
            ops.gelu_fwd(&mut ba.fch_gelu, &ba.fch)?;
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
        ops.matmul_fwd(&mut a.logits, &a.lnf, &p[tab.wte], None, None, mm(c, v))?;
        ops.xent_fwd(
            &mut a.losses,
            &mut a.logits_lse,
            &a.logits,
            &a.targets,
            n,
            v,
        )?;
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
        let dloss = if a.n_scored == 0 {
            0.0
        } else {
            1.0 / a.n_scored as f32
        };
        ops.xent_bwd(
            &mut a.d_logits,
            &a.logits,
            &a.logits_lse,
            &a.targets,
            dloss,
            n,
            v,
        )?;
        ops.fill(&mut a.d_c, 0.0)?;
        ops.matmul_bwd(
            Some(&mut a.d_c),
            &mut g[tab.wte],
            None,
            &a.d_logits,
            &a.lnf,
            &p[tab.wte],
            None,
            mm(c, v),
        )?;
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
            ops.fill(&mut a.d_4c, 0.0)?;
            {
                let (gw, gb) = pair_mut(g, id.w_proj, id.b_proj);
                ops.matmul_bwd(
                    Some(&mut a.d_4c),
                    gw,
                    Some(gb),
                    &a.d_res,
                    &ba.fch_gelu,
                    &p[id.w_proj],
                    mk(id.w_proj),
                    mm(4 * c, c),
                )?;
            }
            ops.fill(&mut a.d_fch, 0.0)?;
            ops.gelu_bwd(&mut a.d_fch, &ba.fch, &a.d_4c)?;
            ops.fill(&mut a.d_c, 0.0)?;
            {
                let (gw, gb) = pair_mut(g, id.w_fc, id.b_fc);
                ops.matmul_bwd(
                    Some(&mut a.d_c),
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
            ops.fill(&mut a.d_att, 0.0)?;
            {
                let (gw, gb) = pair_mut(g, id.wo, id.bo);
                ops.matmul_bwd(
                    Some(&mut a.d_att),
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
            ops.attention_bwd(
                &mut a.d_q, &mut a.d_k, &mut a.d_v, &a.d_att, &ba.q, &ba.k, &ba.v, &ba.att,
                &ba.lse, mask, attn,
            )?;
            ops.fill(&mut a.d_c, 0.0)?;
            for (dy, w, bias) in [
                (&a.d_q, id.wq, id.bq),
                (&a.d_k, id.wk, id.bk),
                (&a.d_v, id.wv, id.bv),
            ] {
                let (gw, gb) = pair_mut(g, w, bias);
                ops.matmul_bwd(
                    Some(&mut a.d_c),
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

    /// Whether the FFN forward runs from 2:4-compressed weights.
    pub fn ffn24_enabled(&self) -> bool {
        self.ffn24.is_some()
    }

    /// Global L2 norm of all gradients.
    pub fn grad_norm(&self) -> Result<f64> {
        let mut s = 0.0;
        for g in &self.grads {
            s += self.ops.sum_squares(g)?;
        }
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
                lr,
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

/// A named host tensor of the model state (for checkpoints).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

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
        for i in 0..self.table.specs.len() {
            let spec = self.table.specs[i].clone();
            for (p, part) in STATE_PARTS.iter().enumerate() {
                let key = format!("{part}/{}", spec.name);
                let vals = get(&key)
                    .ok_or_else(|| Error::Config(format!("checkpoint lacks tensor `{key}`")))?;
                check_len("load_state", "tensor", vals.len(), spec.numel(), || {
                    format!("{key} {:?}", spec.shape)
                })?;
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
