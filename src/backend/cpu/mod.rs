//! The CPU backend: f32, threaded with rayon, matmuls through the `gemm` crate. Every kernel
//! is a generic function over [`Real`] (f32 here, f64 in the gradient checks); this module
//! only adapts them to the [`Ops`] interface.

pub mod adamw;
pub mod attention;
pub mod embedding;
pub mod fastmath;
pub mod gelu;
pub mod isa;
pub mod layernorm;
pub mod lm_head;
pub mod matmul;
pub mod real;
pub mod sgemm;
pub mod xent;

pub use real::Real;

use crate::backend::{AdamWStep, AttnShape, GradWrite, MaskRef, MatmulShape, Ops};
use crate::error::check_len;
use crate::Result;
use attention::MaskView;

/// The CPU device. Uses rayon's global pool (size it with `RAYON_NUM_THREADS`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

fn view<'a>(m: Option<MaskRef<'a, Vec<u32>>>) -> Option<MaskView<'a>> {
    m.map(|m| MaskView {
        bits: m.bits,
        per_head: m.per_head,
    })
}

impl Ops for Cpu {
    type Buf = Vec<f32>;
    type Idx = Vec<u32>;
    type Sparse24 = crate::sparse::Sparse24<f32>;

    fn label(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn zeros(&self, n: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; n])
    }
    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }
    fn upload_idx(&self, host: &[u32]) -> Result<Vec<u32>> {
        Ok(host.to_vec())
    }
    fn write_idx(&self, dst: &mut Vec<u32>, host: &[u32]) -> Result<()> {
        check_len("write_idx", "host", host.len(), dst.len(), || {
            format!("n={}", dst.len())
        })?;
        dst.copy_from_slice(host);
        Ok(())
    }
    fn write(&self, dst: &mut Vec<f32>, host: &[f32]) -> Result<()> {
        check_len("write", "host", host.len(), dst.len(), || {
            format!("n={}", dst.len())
        })?;
        dst.copy_from_slice(host);
        Ok(())
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn idx_len(&self, idx: &Vec<u32>) -> usize {
        idx.len()
    }
    fn fill(&self, buf: &mut Vec<f32>, value: f32) -> Result<()> {
        buf.fill(value);
        Ok(())
    }

    fn residual_fwd(&self, out: &mut Vec<f32>, a: &Vec<f32>, b: &Vec<f32>) -> Result<()> {
        gelu::residual_fwd(out, a, b)
    }
    fn accumulate(&self, dst: &mut Vec<f32>, src: &Vec<f32>) -> Result<()> {
        gelu::accumulate(dst, src)
    }
    fn gelu_fwd(&self, out: &mut Vec<f32>, inp: &Vec<f32>) -> Result<()> {
        gelu::gelu_fwd(out, inp)
    }
    fn gelu_bwd(&self, dinp: &mut Vec<f32>, inp: &Vec<f32>, dout: &Vec<f32>) -> Result<()> {
        gelu::gelu_bwd(dinp, inp, dout)
    }

    fn embedding_fwd(
        &self,
        out: &mut Vec<f32>,
        tokens: &Vec<u32>,
        wte: &Vec<f32>,
        wpe: &Vec<f32>,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        embedding::embedding_fwd(out, tokens, wte, wpe, b, t, c)
    }
    fn embedding_bwd(
        &self,
        dwte: &mut Vec<f32>,
        dwpe: &mut Vec<f32>,
        dout: &Vec<f32>,
        tokens: &Vec<u32>,
        b: usize,
        t: usize,
        c: usize,
    ) -> Result<()> {
        embedding::embedding_bwd(dwte, dwpe, dout, tokens, b, t, c)
    }

    fn layernorm_fwd(
        &self,
        out: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        inp: &Vec<f32>,
        weight: &Vec<f32>,
        bias: &Vec<f32>,
        n: usize,
        c: usize,
    ) -> Result<()> {
        layernorm::layernorm_fwd(out, mean, rstd, inp, weight, bias, n, c)
    }
    fn layernorm_bwd(
        &self,
        dinp: &mut Vec<f32>,
        dweight: &mut Vec<f32>,
        dbias: &mut Vec<f32>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        weight: &Vec<f32>,
        mean: &Vec<f32>,
        rstd: &Vec<f32>,
        n: usize,
        c: usize,
    ) -> Result<()> {
        layernorm::layernorm_bwd(dinp, dweight, dbias, dout, inp, weight, mean, rstd, n, c)
    }

    fn matmul_fwd(
        &self,
        out: &mut Vec<f32>,
        inp: &Vec<f32>,
        weight: &Vec<f32>,
        bias: Option<&Vec<f32>>,
        mask: Option<&Vec<f32>>,
        s: MatmulShape,
    ) -> Result<()> {
        matmul::matmul_fwd(
            out,
            inp,
            weight,
            bias.map(|b| &b[..]),
            mask.map(|m| &m[..]),
            s,
        )
    }
    fn matmul_bwd(
        &self,
        dinp: Option<(&mut Vec<f32>, GradWrite)>,
        dweight: &mut Vec<f32>,
        dbias: Option<&mut Vec<f32>>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        weight: &Vec<f32>,
        mask: Option<&Vec<f32>>,
        s: MatmulShape,
    ) -> Result<()> {
        matmul::matmul_bwd(
            dinp.map(|(d, w)| (&mut d[..], w)),
            dweight,
            dbias.map(|d| &mut d[..]),
            dout,
            inp,
            weight,
            mask.map(|m| &m[..]),
            s,
        )
    }

    fn attention_fwd(
        &self,
        out: &mut Vec<f32>,
        lse: &mut Vec<f32>,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        mask: Option<MaskRef<'_, Vec<u32>>>,
        s: AttnShape,
    ) -> Result<()> {
        attention::attention_fwd(out, lse, q, k, v, view(mask), s)
    }
    fn attention_bwd(
        &self,
        dq: &mut Vec<f32>,
        dk: &mut Vec<f32>,
        dv: &mut Vec<f32>,
        dout: &Vec<f32>,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        out: &Vec<f32>,
        lse: &Vec<f32>,
        mask: Option<MaskRef<'_, Vec<u32>>>,
        s: AttnShape,
    ) -> Result<()> {
        attention::attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, view(mask), s)
    }

    fn xent_fwd(
        &self,
        losses: &mut Vec<f32>,
        lse: &mut Vec<f32>,
        logits: &Vec<f32>,
        targets: &Vec<u32>,
        n: usize,
        v: usize,
    ) -> Result<()> {
        xent::xent_fwd(losses, lse, logits, targets, n, v)
    }
    fn xent_bwd(
        &self,
        dlogits: &mut Vec<f32>,
        logits: &Vec<f32>,
        lse: &Vec<f32>,
        targets: &Vec<u32>,
        dloss: f32,
        n: usize,
        v: usize,
    ) -> Result<()> {
        xent::xent_bwd(dlogits, logits, lse, targets, dloss, n, v)
    }

    fn lm_head_xent(
        &self,
        losses: &mut Vec<f32>,
        lse: &mut Vec<f32>,
        grads: Option<(&mut Vec<f32>, &mut Vec<f32>)>,
        x: &Vec<f32>,
        weight: &Vec<f32>,
        targets: &Vec<u32>,
        dloss: f32,
        n: usize,
        c: usize,
        v: usize,
    ) -> Result<()> {
        let grads = grads.map(|(dx, dw)| (&mut dx[..], &mut dw[..]));
        lm_head::lm_head_xent(losses, lse, grads, x, weight, targets, dloss, n, c, v)
    }

    fn adamw(
        &self,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        mask: Option<&Vec<f32>>,
        hp: &AdamWStep,
    ) -> Result<()> {
        adamw::adamw(param, grad, m, v, mask.map(|m| &m[..]), hp)
    }
    fn sum_squares(&self, buf: &Vec<f32>) -> Result<f64> {
        Ok(adamw::sum_squares(buf))
    }

    fn compress24(
        &self,
        name: &str,
        weight: &Vec<f32>,
        n: usize,
        k: usize,
    ) -> Result<crate::sparse::Sparse24<f32>> {
        crate::sparse::Sparse24::compress(name, weight, n, k)
    }
    fn matmul24_fwd(
        &self,
        out: &mut Vec<f32>,
        inp: &Vec<f32>,
        weight: &crate::sparse::Sparse24<f32>,
        bias: Option<&Vec<f32>>,
        s: MatmulShape,
    ) -> Result<()> {
        s.check_24_weight(weight.n(), weight.k())?;
        crate::sparse::gemm24(out, inp, weight, bias.map(|b| &b[..]), s.n)
    }
}
