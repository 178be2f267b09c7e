//! [`Profiled`]: any backend with a stopwatch around every op, so a training step can be
//! itemised op by op (`asa-lth bench train_step` prints the table) without touching the model
//! code, which is written once over [`Ops`]. Each call waits for the device before and after
//! (a no-op on the CPU), so on a GPU the figures are per-op latencies, not a pipelined step.

use super::{AdamWStep, AttnShape, GradWrite, MaskRef, MatmulShape, MemoryReport, Ops, Timer};
use crate::Result;
use std::sync::Mutex;
use std::time::Instant;

/// Time spent in one op (at one shape, for the matmuls) over the calls since the last
/// [`Profiled::take`].
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// Op name, with the matmul's `k→oc` shape (`matmul_fwd 128→512`).
    pub op: String,
    pub calls: u64,
    pub secs: f64,
}

/// `O` with every op timed (see the module docs).
pub struct Profiled<O> {
    inner: O,
    times: Mutex<Vec<OpTime>>,
}

impl<O: Ops> Profiled<O> {
    /// Wrap `inner`.
    pub fn new(inner: O) -> Self {
        Self {
            inner,
            times: Mutex::new(Vec::new()),
        }
    }

    /// The times collected so far, in order of first call, and start afresh.
    pub fn take(&self) -> Vec<OpTime> {
        std::mem::take(&mut *self.times.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn time<T>(&self, op: impl FnOnce() -> String, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.inner.synchronize()?;
        let t0 = Instant::now();
        let out = f()?;
        self.inner.synchronize()?;
        let secs = t0.elapsed().as_secs_f64();
        let op = op();
        let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        match times.iter_mut().find(|t| t.op == op) {
            Some(t) => {
                t.calls += 1;
                t.secs += secs;
            }
            None => times.push(OpTime { op, calls: 1, secs }),
        }
        Ok(out)
    }
}

fn name(op: &str) -> impl FnOnce() -> String + '_ {
    move || op.to_string()
}

fn mm(op: &'static str, s: MatmulShape) -> impl FnOnce() -> String {
    move || format!("{op} {}→{}", s.k, s.oc)
}

impl<O: Ops> Ops for Profiled<O> {
    type Buf = O::Buf;
    type Idx = O::Idx;
    type Sparse24 = O::Sparse24;

    fn label(&self) -> String {
        self.inner.label()
    }
    fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }
    fn start_timer(&self) -> Result<Timer> {
        self.inner.start_timer()
    }
    fn memory(&self) -> Option<MemoryReport> {
        self.inner.memory()
    }
    fn set_context(&self, text: &str) {
        self.inner.set_context(text)
    }

    fn zeros(&self, n: usize) -> Result<Self::Buf> {
        self.time(name("zeros"), || self.inner.zeros(n))
    }
    fn upload(&self, host: &[f32]) -> Result<Self::Buf> {
        self.time(name("upload"), || self.inner.upload(host))
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        self.time(name("download"), || self.inner.download(buf))
    }
    fn upload_idx(&self, host: &[u32]) -> Result<Self::Idx> {
        self.time(name("upload_idx"), || self.inner.upload_idx(host))
    }
    fn write_idx(&self, dst: &mut Self::Idx, host: &[u32]) -> Result<()> {
        self.time(name("write_idx"), || self.inner.write_idx(dst, host))
    }
    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()> {
        self.time(name("write"), || self.inner.write(dst, host))
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        self.inner.len(buf)
    }
    fn idx_len(&self, idx: &Self::Idx) -> usize {
        self.inner.idx_len(idx)
    }
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()> {
        self.time(name("fill"), || self.inner.fill(buf, value))
    }

    fn residual_fwd(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()> {
        self.time(name("residual_fwd"), || self.inner.residual_fwd(out, a, b))
    }
    fn accumulate(&self, dst: &mut Self::Buf, src: &Self::Buf) -> Result<()> {
        self.time(name("accumulate"), || self.inner.accumulate(dst, src))
    }
    fn gelu_fwd(&self, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()> {
        self.time(name("gelu_fwd"), || self.inner.gelu_fwd(out, inp))
    }
    fn gelu_bwd(&self, dinp: &mut Self::Buf, inp: &Self::Buf, dout: &Self::Buf) -> Result<()> {
        self.time(name("gelu_bwd"), || self.inner.gelu_bwd(dinp, inp, dout))
    }

    fn embedding_fwd(
        &self,
        out: &mut Self::Buf,
        tokens: &Self::Idx,
        wte: &Self::Buf,
        wpe: &Self::Buf,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        self.time(name("embedding_fwd"), || {
            self.inner.embedding_fwd(out, tokens, wte, wpe, b, t, c)
        })
    }
    fn embedding_bwd(
        &self,
        dwte: &mut Self::Buf,
        dwpe: &mut Self::Buf,
        dout: &Self::Buf,
        tokens: &Self::Idx,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        self.time(name("embedding_bwd"), || {
            self.inner.embedding_bwd(dwte, dwpe, dout, tokens, b, t, c)
        })
    }

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
    ) -> Result<()> {
        self.time(name("layernorm_fwd"), || {
            self.inner
                .layernorm_fwd(out, mean, rstd, inp, weight, bias, n, c)
        })
    }
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
    ) -> Result<()> {
        self.time(name("layernorm_bwd"), || {
            self.inner
                .layernorm_bwd(dinp, dweight, dbias, dout, inp, weight, mean, rstd, n, c)
        })
    }

    fn matmul_fwd(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        bias: Option<&Self::Buf>,
        mask: Option<&Self::Buf>,
        s: MatmulShape,
    ) -> Result<()> {
        self.time(mm("matmul_fwd", s), || {
            self.inner.matmul_fwd(out, inp, weight, bias, mask, s)
        })
    }
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
    ) -> Result<()> {
        self.time(mm("matmul_bwd", s), || {
            self.inner
                .matmul_bwd(dinp, dweight, dbias, dout, inp, weight, mask, s)
        })
    }

    fn attention_fwd(
        &self,
        out: &mut Self::Buf,
        lse: &mut Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        mask: Option<MaskRef<'_, Self::Idx>>,
        s: AttnShape,
    ) -> Result<()> {
        self.time(name("attention_fwd"), || {
            self.inner.attention_fwd(out, lse, q, k, v, mask, s)
        })
    }
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
    ) -> Result<()> {
        self.time(name("attention_bwd"), || {
            self.inner
                .attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, mask, s)
        })
    }

    fn xent_fwd(
        &self,
        losses: &mut Self::Buf,
        lse: &mut Self::Buf,
        logits: &Self::Buf,
        targets: &Self::Idx,
        n: usize,
        v: usize,
    ) -> Result<()> {
        self.time(name("xent_fwd"), || {
            self.inner.xent_fwd(losses, lse, logits, targets, n, v)
        })
    }
    fn xent_bwd(
        &self,
        dlogits: &mut Self::Buf,
        logits: &Self::Buf,
        lse: &Self::Buf,
        targets: &Self::Idx,
        dloss: f32,
        n: usize,
        v: usize,
    ) -> Result<()> {
        self.time(name("xent_bwd"), || {
            self.inner
                .xent_bwd(dlogits, logits, lse, targets, dloss, n, v)
        })
    }
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
    ) -> Result<()> {
        let op = if grads.is_some() {
            "lm_head_xent fwd+bwd"
        } else {
            "lm_head_xent fwd"
        };
        self.time(name(op), || {
            self.inner
                .lm_head_xent(losses, lse, grads, x, weight, targets, dloss, n, c, v)
        })
    }

    fn adamw(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        mask: Option<&Self::Buf>,
        hp: &AdamWStep,
    ) -> Result<()> {
        self.time(name("adamw"), || {
            self.inner.adamw(param, grad, m, v, mask, hp)
        })
    }
    fn sum_squares(&self, buf: &Self::Buf) -> Result<f64> {
        self.time(name("sum_squares"), || self.inner.sum_squares(buf))
    }
    fn sum_squares_many(&self, bufs: &[&Self::Buf]) -> Result<Vec<f64>> {
        self.time(name("sum_squares"), || self.inner.sum_squares_many(bufs))
    }

    fn compress24(
        &self,
        name_: &str,
        weight: &Self::Buf,
        n: usize,
        k: usize,
    ) -> Result<Self::Sparse24> {
        self.time(name("compress24"), || {
            self.inner.compress24(name_, weight, n, k)
        })
    }
    fn matmul24_fwd(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Sparse24,
        bias: Option<&Self::Buf>,
        s: MatmulShape,
    ) -> Result<()> {
        self.time(mm("matmul24_fwd", s), || {
            self.inner.matmul24_fwd(out, inp, weight, bias, s)
        })
    }
    fn matmul24_gelu_fwd(
        &self,
        out: &mut Self::Buf,
        pre: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Sparse24,
        bias: Option<&Self::Buf>,
        s: MatmulShape,
    ) -> Result<()> {
        self.time(mm("matmul24_gelu_fwd", s), || {
            self.inner.matmul24_gelu_fwd(out, pre, inp, weight, bias, s)
        })
    }
}
