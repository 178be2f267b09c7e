//! Shape checks that are part of an op's contract, shared by the CPU and CUDA backends so both
//! accept the same shapes and reject the rest with the same message.

use super::{AttnShape, MatmulShape};
use crate::error::check_len;
use crate::{Error, Result};

impl std::fmt::Display for AttnShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "B={} T={} H={} D={}", self.b, self.t, self.h, self.d)
    }
}

impl AttnShape {
    /// `(B·T·C, B·H·T)`: the activation and log-sum-exp lengths, or an error naming `op` if
    /// the shape is unusable (overflow, or D = 0 with rows to compute).
    pub fn sizes(&self, op: &str) -> Result<(usize, usize)> {
        let s = self;
        let act =
            s.b.checked_mul(s.t)
                .and_then(|x| x.checked_mul(s.h))
                .and_then(|x| x.checked_mul(s.d));
        let rows = s.b.checked_mul(s.h).and_then(|x| x.checked_mul(s.t));
        match (act, rows) {
            (Some(a), Some(r)) if s.d > 0 || r == 0 => Ok((a, r)),
            (Some(_), Some(_)) => Err(Error::Config(format!(
                "{op}: head dim D must be positive ({s})"
            ))),
            _ => Err(Error::Config(format!("{op}: shape overflows usize ({s})"))),
        }
    }
}

/// The attention ops' buffer lengths: every activation-shaped buffer in `acts` (name, length;
/// checked in the order given) holds `B·T·C`, `lse` holds `B·H·T`. Returns `(B·T·C, B·H·T)`.
pub(crate) fn attention_lens(
    op: &'static str,
    s: &AttnShape,
    acts: &[(&'static str, usize)],
    lse: usize,
) -> Result<(usize, usize)> {
    let (n_act, n_rows) = s.sizes(op)?;
    for &(name, len) in acts {
        check_len(op, name, len, n_act, || format!("(B, T, H·D) with {s}"))?;
    }
    check_len(op, "lse", lse, n_rows, || format!("(B, H, T) with {s}"))?;
    Ok((n_act, n_rows))
}

/// `layernorm_fwd`'s buffer lengths: out, inp `n·c`; mean, rstd `n`; weight, bias `c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layernorm_fwd(
    out: usize,
    inp: usize,
    mean: usize,
    rstd: usize,
    weight: usize,
    bias: usize,
    n: usize,
    c: usize,
) -> Result<()> {
    const OP: &str = "layernorm_fwd";
    let sh = || format!("n={n} c={c}");
    check_len(OP, "out", out, n * c, sh)?;
    check_len(OP, "inp", inp, n * c, sh)?;
    check_len(OP, "mean", mean, n, sh)?;
    check_len(OP, "rstd", rstd, n, sh)?;
    check_len(OP, "weight", weight, c, sh)?;
    check_len(OP, "bias", bias, c, sh)
}

/// `layernorm_bwd`'s buffer lengths: dinp, dout, inp `n·c`; mean, rstd `n`; weight, dweight,
/// dbias `c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layernorm_bwd(
    dinp: usize,
    dout: usize,
    inp: usize,
    mean: usize,
    rstd: usize,
    weight: usize,
    dweight: usize,
    dbias: usize,
    n: usize,
    c: usize,
) -> Result<()> {
    const OP: &str = "layernorm_bwd";
    let sh = || format!("n={n} c={c}");
    check_len(OP, "dinp", dinp, n * c, sh)?;
    check_len(OP, "dout", dout, n * c, sh)?;
    check_len(OP, "inp", inp, n * c, sh)?;
    check_len(OP, "mean", mean, n, sh)?;
    check_len(OP, "rstd", rstd, n, sh)?;
    check_len(OP, "weight", weight, c, sh)?;
    check_len(OP, "dweight", dweight, c, sh)?;
    check_len(OP, "dbias", dbias, c, sh)
}

/// `embedding_fwd`'s lengths: out `b·t·c`, tokens `b·t`, a token table of whole rows of `c`
/// and a position table of at least `t` rows. Returns the vocabulary size.
pub(crate) fn embedding_fwd(
    out: usize,
    tokens: usize,
    wte: usize,
    wpe: usize,
    b: usize,
    t: usize,
    c: usize,
) -> Result<usize> {
    const OP: &str = "embedding_fwd";
    let sh = || format!("b={b} t={t} c={c}");
    check_len(OP, "out", out, b * t * c, sh)?;
    check_len(OP, "tokens", tokens, b * t, sh)?;
    if c == 0 || !wte.is_multiple_of(c) {
        return Err(Error::Config(format!(
            "{OP}: wte has {wte} elements, not a multiple of c={c}"
        )));
    }
    if wpe < t * c {
        return Err(Error::Config(format!(
            "{OP}: sequence length {t} exceeds the position table ({} positions)",
            wpe / c
        )));
    }
    Ok(wte / c)
}

impl std::fmt::Display for MatmulShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n={} k={} oc={}", self.n, self.k, self.oc)
    }
}

impl MatmulShape {
    /// `matmul_fwd`'s buffer lengths: out `n·oc`, inp `n·k`, weight and mask `oc·k`, bias `oc`.
    pub(crate) fn check_fwd(
        &self,
        out: usize,
        inp: usize,
        weight: usize,
        bias: Option<usize>,
        mask: Option<usize>,
    ) -> Result<()> {
        const OP: &str = "matmul_fwd";
        let s = *self;
        let sh = move || s.to_string();
        check_len(OP, "out", out, s.n * s.oc, sh)?;
        check_len(OP, "inp", inp, s.n * s.k, sh)?;
        check_len(OP, "weight", weight, s.oc * s.k, sh)?;
        if let Some(b) = bias {
            check_len(OP, "bias", b, s.oc, sh)?;
        }
        if let Some(m) = mask {
            check_len(OP, "mask", m, s.oc * s.k, sh)?;
        }
        Ok(())
    }

    /// `matmul_bwd`'s buffer lengths: dinp and inp `n·k`, dweight, weight and mask `oc·k`,
    /// dbias `oc`, dout `n·oc`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_bwd(
        &self,
        dinp: Option<usize>,
        dweight: usize,
        dbias: Option<usize>,
        dout: usize,
        inp: usize,
        weight: usize,
        mask: Option<usize>,
    ) -> Result<()> {
        const OP: &str = "matmul_bwd";
        let s = *self;
        let sh = move || s.to_string();
        if let Some(d) = dinp {
            check_len(OP, "dinp", d, s.n * s.k, sh)?;
        }
        check_len(OP, "dweight", dweight, s.oc * s.k, sh)?;
        if let Some(d) = dbias {
            check_len(OP, "dbias", d, s.oc, sh)?;
        }
        check_len(OP, "dout", dout, s.n * s.oc, sh)?;
        check_len(OP, "inp", inp, s.n * s.k, sh)?;
        check_len(OP, "weight", weight, s.oc * s.k, sh)?;
        if let Some(m) = mask {
            check_len(OP, "mask", m, s.oc * s.k, sh)?;
        }
        Ok(())
    }

    /// `matmul24_fwd`'s weight: a 2:4 matrix of `oc × k` (`n × k` as compressed).
    pub(crate) fn check_24_weight(&self, n: usize, k: usize) -> Result<()> {
        if n != self.oc || k != self.k {
            return Err(Error::Config(format!(
                "matmul24_fwd: weight is {n} x {k}, the shape asks for oc {} x k {}",
                self.oc, self.k
            )));
        }
        Ok(())
    }
}

/// `xent_fwd`'s buffer lengths: losses, lse and targets `n`; logits `n·v`.
pub(crate) fn xent_fwd(
    losses: usize,
    lse: usize,
    logits: usize,
    targets: usize,
    n: usize,
    v: usize,
) -> Result<()> {
    const OP: &str = "xent_fwd";
    let sh = || format!("n={n} v={v}");
    check_len(OP, "losses", losses, n, sh)?;
    check_len(OP, "lse", lse, n, sh)?;
    check_len(OP, "logits", logits, n * v, sh)?;
    check_len(OP, "targets", targets, n, sh)
}

/// `xent_bwd`'s buffer lengths: dlogits and logits `n·v`; lse and targets `n`.
pub(crate) fn xent_bwd(
    dlogits: usize,
    logits: usize,
    lse: usize,
    targets: usize,
    n: usize,
    v: usize,
) -> Result<()> {
    const OP: &str = "xent_bwd";
    let sh = || format!("n={n} v={v}");
    check_len(OP, "dlogits", dlogits, n * v, sh)?;
    check_len(OP, "logits", logits, n * v, sh)?;
    check_len(OP, "lse", lse, n, sh)?;
    check_len(OP, "targets", targets, n, sh)
}

/// Cross-entropy needs a vocabulary (checked after the targets, whose own error is clearer).
pub(crate) fn xent_vocab(v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::Config(
            "cross-entropy over an empty vocabulary".into(),
        ));
    }
    Ok(())
}

/// `embedding_bwd`'s buffers: dout `b·t·c`, tokens `b·t`, and gradient tables that fit `c`
/// (dwte a whole number of rows, dwpe at least `t` rows). Returns the vocabulary (dwte rows).
pub(crate) fn embedding_bwd(
    dwte: usize,
    dwpe: usize,
    dout: usize,
    tokens: usize,
    b: usize,
    t: usize,
    c: usize,
) -> Result<usize> {
    const OP: &str = "embedding_bwd";
    let sh = || format!("b={b} t={t} c={c}");
    check_len(OP, "dout", dout, b * t * c, sh)?;
    check_len(OP, "tokens", tokens, b * t, sh)?;
    if c == 0 || !dwte.is_multiple_of(c) || dwpe < t * c {
        return Err(Error::Config(format!(
            "{OP}: gradient tables (dwte {dwte}, dwpe {dwpe}) do not fit c={c}, t={t}"
        )));
    }
    Ok(dwte / c)
}

/// `lm_head_xent`'s buffer lengths: losses, lse and targets `n`; x `n·c`; weight `v·c`; with
/// gradients, dx `n·c` and dweight `v·c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lm_head_xent(
    losses: usize,
    lse: usize,
    grads: Option<(usize, usize)>,
    x: usize,
    weight: usize,
    targets: usize,
    n: usize,
    c: usize,
    v: usize,
) -> Result<()> {
    const OP: &str = "lm_head_xent";
    let sh = || format!("n={n} c={c} v={v}");
    check_len(OP, "losses", losses, n, sh)?;
    check_len(OP, "lse", lse, n, sh)?;
    check_len(OP, "x", x, n * c, sh)?;
    check_len(OP, "weight", weight, v * c, sh)?;
    check_len(OP, "targets", targets, n, sh)?;
    if let Some((dx, dw)) = grads {
        check_len(OP, "dx", dx, n * c, sh)?;
        check_len(OP, "dweight", dw, v * c, sh)?;
    }
    Ok(())
}
