//! The Ops interface: every operation the model needs, with one contract and one
//! implementation per device (`cpu`, `cuda`). The model (`crate::model`) is written once
//! against this trait; devices differ only below it.
//!
//! Conventions shared by every implementation:
//! - Activations are row-major; `N` rows of `C` channels (`N = B·T`).
//! - Forward ops overwrite their outputs. Backward ops **accumulate** (`+=`) into every
//!   gradient they write, as llm.c does, so the residual stream's gradient is a plain sum;
//!   the caller zeroes gradients before a backward pass.
//! - Shapes are validated against buffer lengths before any work; a mismatch is
//!   [`Error::Shape`](crate::Error::Shape) naming the op and tensor.

pub mod cpu;
pub mod cuda;
pub mod profiled;
pub(crate) mod shapes;

use crate::{Error, Result};

/// Target id meaning "do not score this position" (padding, masked targets).
pub const IGNORE_INDEX: u32 = u32::MAX;

/// Shape of `Y = X·Wᵀ (+ bias)`: X is `n × k`, W is `oc × k` (out_features × in_features).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub n: usize,
    pub k: usize,
    pub oc: usize,
}

/// Shape of multi-head attention over `(B, T, C)` activations, `C = H·D`; head `h` of a row
/// occupies columns `h·D .. (h+1)·D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub d: usize,
}

impl AttnShape {
    /// Channels per row, `H·D`.
    pub fn c(&self) -> usize {
        self.h * self.d
    }
    /// u32 words per mask row, `⌈T/32⌉`.
    pub fn mask_words(&self) -> usize {
        self.t.div_ceil(32)
    }
}

/// A bit-packed attention mask on the device (DESIGN.md §3): `(B, Hm, T, ⌈T/32⌉)` u32 words,
/// `Hm = H` when `per_head`, else 1; bit `j%32` of word `j/32` of row `i` allows key `j` for
/// query `i`. The effective mask is this ∧ causality (`j ≤ i`).
pub struct MaskRef<'a, I> {
    pub bits: &'a I,
    pub per_head: bool,
}

impl<I> Clone for MaskRef<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for MaskRef<'_, I> {}

/// How a backward op writes an activation's gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradWrite {
    /// Overwrite it: its old contents are never read (no zero-fill needed first).
    Overwrite,
    /// Add to it: a fan-in, where several ops' gradients sum into one buffer.
    Accumulate,
}

/// One AdamW step's hyper-parameters. `grad_scale` multiplies every gradient first (global
/// norm clipping folds into it); `weight_decay` is decoupled (`p -= lr·wd·p`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub grad_scale: f32,
    /// 1-based step number, for bias correction.
    pub t: u32,
}

/// Memory held by a backend's buffers, as it accounts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryReport {
    /// Bytes allocated now.
    pub current_bytes: u64,
    /// Most bytes allocated at once since the backend was created.
    pub peak_bytes: u64,
    /// Free and total device memory as the driver reports them (`cuMemGetInfo`), if any.
    pub device_free_bytes: Option<u64>,
    pub device_total_bytes: Option<u64>,
}

/// A running timer of the work a backend queues after it started (see [`Ops::start_timer`]).
pub struct Timer(Box<dyn FnOnce() -> Result<f64> + Send>);

impl Timer {
    /// A timer from a closure that waits for the timed work and returns its seconds.
    pub fn new(stop: impl FnOnce() -> Result<f64> + Send + 'static) -> Self {
        Timer(Box::new(stop))
    }

    /// A wall-clock timer (work on the host is finished when the call returns).
    pub fn wall() -> Self {
        let t0 = std::time::Instant::now();
        Timer::new(move || Ok(t0.elapsed().as_secs_f64()))
    }

    /// Wait for the work queued since the start, and return its duration in seconds.
    pub fn stop(self) -> Result<f64> {
        (self.0)()
    }
}

/// The operations the model is built from. `Buf` holds f32 values, `Idx` holds u32 (token
/// ids, targets, mask words).
pub trait Ops: Send + Sync {
    /// An f32 buffer on this device.
    type Buf: Send + Sync;
    /// A u32 buffer on this device.
    type Idx: Send + Sync;
    /// A 2:4-compressed weight on this device (DESIGN.md §3 "2:4 format").
    type Sparse24: Send + Sync;

    /// Human-readable device label recorded in results (e.g. `cpu (2 threads)`).
    fn label(&self) -> String;

    /// Block until every queued operation has finished (a no-op where ops run synchronously).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    /// Start timing the work queued from now on (GPU: CUDA events on the stream; CPU: the
    /// wall clock). Used by the training loop's tokens/s and the benches.
    fn start_timer(&self) -> Result<Timer> {
        Ok(Timer::wall())
    }

    /// Memory held by this backend's buffers (None where it is ordinary host memory, which the
    /// process's peak RSS already reports).
    fn memory(&self) -> Option<MemoryReport> {
        None
    }

    /// Describe what this backend is running (e.g. the training configuration), so an
    /// out-of-memory error can name it beside the bytes asked. A no-op where allocation
    /// failures are the host's.
    fn set_context(&self, _text: &str) {}

    // ---- memory ----
    /// A zero-filled buffer of `n` f32.
    fn zeros(&self, n: usize) -> Result<Self::Buf>;
    /// Copy host values to a new device buffer.
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    /// Copy a device buffer to the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// Copy host u32 values to a new device buffer.
    fn upload_idx(&self, host: &[u32]) -> Result<Self::Idx>;
    /// Overwrite an existing u32 buffer with host values of the same length.
    fn write_idx(&self, dst: &mut Self::Idx, host: &[u32]) -> Result<()>;
    /// Overwrite an existing f32 buffer with host values of the same length.
    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()>;
    /// Number of elements in an f32 buffer.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// Number of elements in a u32 buffer.
    fn idx_len(&self, idx: &Self::Idx) -> usize;
    /// Set every element to `value`.
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()>;

    // ---- elementwise ----
    /// `out = a + b` (the residual connection).
    fn residual_fwd(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()>;
    /// `dst += src` (the residual connection's backward, gradient fan-in).
    fn accumulate(&self, dst: &mut Self::Buf, src: &Self::Buf) -> Result<()>;
    /// GELU, tanh approximation (GPT-2).
    fn gelu_fwd(&self, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()>;
    /// `dinp = gelu'(inp) · dout` (overwrites: the pre-activation feeds nothing else).
    fn gelu_bwd(&self, dinp: &mut Self::Buf, inp: &Self::Buf, dout: &Self::Buf) -> Result<()>;

    // ---- embeddings ----
    /// `out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]`; `tokens` is `B×T`, out `B×T×C`.
    #[allow(clippy::too_many_arguments)]
    fn embedding_fwd(
        &self,
        out: &mut Self::Buf,
        tokens: &Self::Idx,
        wte: &Self::Buf,
        wpe: &Self::Buf,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()>;
    /// Scatter-add `dout` into `dwte` rows (by token) and `dwpe` rows (by position).
    #[allow(clippy::too_many_arguments)]
    fn embedding_bwd(
        &self,
        dwte: &mut Self::Buf,
        dwpe: &mut Self::Buf,
        dout: &Self::Buf,
        tokens: &Self::Idx,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()>;

    // ---- layernorm ----
    /// Row-wise layernorm over `n` rows of `c`; saves `mean` and `rstd` (length `n`).
    #[allow(clippy::too_many_arguments)]
    fn layernorm_fwd(
        &self,
        out: &mut Self::Buf,
        mean: &mut Self::Buf,
        rstd: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        bias: &Self::Buf,
        n: usize,
        c: usize,
    ) -> Result<()>;
    /// Accumulates `dinp`, `dweight`, `dbias`.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_bwd(
        &self,
        dinp: &mut Self::Buf,
        dweight: &mut Self::Buf,
        dbias: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        n: usize,
        c: usize,
    ) -> Result<()>;

    // ---- matmul ----
    /// `out = inp·(W⊙M)ᵀ + bias`, with `M` the optional 0/1 prune mask shaped like `W`.
    fn matmul_fwd(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        bias: Option<&Self::Buf>,
        mask: Option<&Self::Buf>,
        s: MatmulShape,
    ) -> Result<()>;
    /// `dinp = dout·(W⊙M)` or `dinp += dout·(W⊙M)` as its [`GradWrite`] says; accumulates
    /// `dweight += (doutᵀ·inp)⊙M`, `dbias += Σ_rows dout`. `dinp` may be `None` when the input
    /// needs no gradient (e.g. the first layer's input).
    #[allow(clippy::too_many_arguments)]
    fn matmul_bwd(
        &self,
        dinp: Option<(&mut Self::Buf, GradWrite)>,
        dweight: &mut Self::Buf,
        dbias: Option<&mut Self::Buf>,
        dout: &Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        mask: Option<&Self::Buf>,
        s: MatmulShape,
    ) -> Result<()>;

    // ---- attention ----
    /// Causal (optionally masked) softmax attention, `out = softmax(q·kᵀ/√D ⊙ mask)·v`, and the
    /// per-row log-sum-exp `lse` (`B×H×T`) of the scaled scores; a fully masked row gives
    /// `out = 0` and `lse = +∞` (DESIGN.md §3).
    #[allow(clippy::too_many_arguments)]
    fn attention_fwd(
        &self,
        out: &mut Self::Buf,
        lse: &mut Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        mask: Option<MaskRef<'_, Self::Idx>>,
        s: AttnShape,
    ) -> Result<()>;
    /// Accumulates `dq`, `dk`, `dv` by recomputation from `lse`.
    #[allow(clippy::too_many_arguments)]
    fn attention_bwd(
        &self,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
        dout: &Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        out: &Self::Buf,
        lse: &Self::Buf,
        mask: Option<MaskRef<'_, Self::Idx>>,
        s: AttnShape,
    ) -> Result<()>;

    // ---- classifier ----
    /// Per-row cross-entropy of `softmax(logits)` (`n × v`) against `targets`, and each row's
    /// log-sum-exp `lse` (length `n`, saved for the backward); rows whose target is
    /// [`IGNORE_INDEX`] get loss 0.
    fn xent_fwd(
        &self,
        losses: &mut Self::Buf,
        lse: &mut Self::Buf,
        logits: &Self::Buf,
        targets: &Self::Idx,
        n: usize,
        v: usize,
    ) -> Result<()>;
    /// `dlogits = dloss·(softmax(logits) − onehot(target))` for scored rows, 0 for ignored
    /// rows (overwrites, since logits feed nothing else); `lse` is the forward's.
    #[allow(clippy::too_many_arguments)]
    fn xent_bwd(
        &self,
        dlogits: &mut Self::Buf,
        logits: &Self::Buf,
        lse: &Self::Buf,
        targets: &Self::Idx,
        dloss: f32,
        n: usize,
        v: usize,
    ) -> Result<()>;

    /// The tied LM head fused with cross-entropy (logits a block at a time, see
    /// [`lm_head_blocks`]): for each row `r` of `x` (`n × c`) the
    /// logits `z_r = x_r·Wᵀ` (`W` = `weight`, `v × c`) give `lse[r] = log Σ_j e^{z_rj}` and
    /// `losses[r] = lse[r] − z_r[target_r]` (0 where the target is [`IGNORE_INDEX`]). With
    /// `grads = Some((dx, dweight))` it also overwrites `dx = G·W` and `dweight = Gᵀ·x`, where
    /// `G_r = dloss·(softmax(z_r) − onehot(target_r))` for scored rows and 0 for ignored ones
    /// — the forward and backward of `xent(matmul(x, W))` in one pass, whose `n × v` logits an
    /// implementation need never hold at once (the CPU walks blocks of vocabulary, the CUDA
    /// kernels keep a tile in registers and recompute it in the backward).
    #[allow(clippy::too_many_arguments)]
    fn lm_head_xent(
        &self,
        losses: &mut Self::Buf,
        lse: &mut Self::Buf,
        grads: Option<(&mut Self::Buf, &mut Self::Buf)>,
        x: &Self::Buf,
        weight: &Self::Buf,
        targets: &Self::Idx,
        dloss: f32,
        n: usize,
        c: usize,
        v: usize,
    ) -> Result<()>;

    // ---- optimiser ----
    /// One AdamW step on one tensor. With a prune `mask`, entries where the mask is 0 are set
    /// to exactly 0 in the parameter and both moments, whatever the gradient says.
    fn adamw(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        mask: Option<&Self::Buf>,
        hp: &AdamWStep,
    ) -> Result<()>;
    /// `Σ x²` accumulated in f64 (for global-norm clipping).
    fn sum_squares(&self, buf: &Self::Buf) -> Result<f64>;
    /// [`Ops::sum_squares`] of each buffer, in order, with the same values; a device backend
    /// waits once for all of them instead of once per buffer.
    fn sum_squares_many(&self, bufs: &[&Self::Buf]) -> Result<Vec<f64>> {
        bufs.iter().map(|b| self.sum_squares(b)).collect()
    }

    // ---- 2:4 sparsity (inference) ----
    /// Prune `weight` (`n × k`, out × in) to 2:4 along K (the 2 largest |w| of every aligned
    /// group of 4, ties to the lower index) and compress it; K must be a multiple of 16.
    fn compress24(
        &self,
        name: &str,
        weight: &Self::Buf,
        n: usize,
        k: usize,
    ) -> Result<Self::Sparse24>;
    /// `out = inp·Wᵀ + bias` with W 2:4-compressed (`s.oc × s.k`); forward only.
    fn matmul24_fwd(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Sparse24,
        bias: Option<&Self::Buf>,
        s: MatmulShape,
    ) -> Result<()>;
    /// `out = GELU(inp·Wᵀ + bias)` with W 2:4-compressed: the FFN's first layer at inference.
    /// `pre` (`s.n × s.oc`) is scratch for the pre-activation: a backend that fuses the GELU
    /// into the GEMM's epilogue (CUDA) may leave it unwritten. Default: [`Ops::matmul24_fwd`]
    /// into `pre`, then [`Ops::gelu_fwd`].
    fn matmul24_gelu_fwd(
        &self,
        out: &mut Self::Buf,
        pre: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Sparse24,
        bias: Option<&Self::Buf>,
        s: MatmulShape,
    ) -> Result<()> {
        self.matmul24_fwd(pre, inp, weight, bias, s)?;
        self.gelu_fwd(out, pre)
    }
}

/// How the fused LM head ([`Ops::lm_head_xent`]) walks the logits at `n` rows and
/// vocabulary `v`: `(rows, cols)` — chunks of at most `rows` rows, and within a chunk blocks
/// of at most `cols` vocabulary entries, so one block of logits (`rows × cols`, ≤ about 16 MB)
/// stays in the caches.
pub fn lm_head_blocks(n: usize, v: usize) -> (usize, usize) {
    const BLOCK_FLOATS: usize = 4 << 20;
    let rows = n.clamp(1, 8192);
    let cols = (BLOCK_FLOATS / rows).clamp(64, 4096) / 32 * 32;
    (rows, cols.min(v.max(1)))
}

/// `(n, c, v)` as the 32-bit sizes of the fused head's kernels (kernels/lm_head.cu), checked
/// against their limits: each at most 2³¹ (the tile loops step past the end in 32 bits) and
/// `c` at most 2²³ (the backward grids' y dimension holds ⌈c/128⌉ < 65,536 slices).
pub fn lm_head_grid_dims(n: usize, c: usize, v: usize) -> Result<(u32, u32, u32)> {
    const MAX: usize = 1 << 31;
    for (what, x, max) in [
        ("rows", n, MAX),
        ("width", c, 1 << 23),
        ("vocabulary", v, MAX),
    ] {
        if x > max {
            return Err(Error::Config(format!(
                "lm_head_xent: {what} {x} exceeds the kernels' limit {max}"
            )));
        }
    }
    Ok((n as u32, c as u32, v as u32))
}
