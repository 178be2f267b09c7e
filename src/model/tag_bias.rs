//! E4's learnable UPOS tag-pair attention bias (DESIGN.md §2, "ASA-guided initialisation").
//!
//! For layer `l`, head `h`, a query `i` tagged `a_i` and a key `j` tagged `b_j`, the attention
//! score becomes `q_i·k_j/√D + B[l][h][a_i][b_j]`, before the causal/ASA mask and the softmax.
//! `B` is the parameter `blocks.{l}.attn.tag_bias` (`H × 17 × 17`, row = query tag, column =
//! key tag), trained by AdamW without weight decay and never pruned (its
//! [`ParamKind::TagBias`](super::ParamKind::TagBias) is not `Linear`). A position without a tag
//! ([`NO_TAG`], e.g. padding) adds no bias as a query or as a key.
//!
//! # How it runs without a new attention op
//! The [`Ops`](crate::backend::Ops) attention takes `q`, `k`, `v` and scales by `1/√d` of the
//! shape it is given. With `D' = D + 17` every head is widened to `D'` channels:
//!
//! ```text
//! q'_i = [ q_i·√(D'/D),  √D'·B[h][a_i][:] ]     k'_j = [ k_j, onehot(b_j) ]     v'_j = [ v_j, 0 ]
//! ```
//!
//! so `q'_i·k'_j/√D' = q_i·k_j/√D + B[h][a_i][b_j]`, the log-sum-exp the op saves is that of the
//! biased scores, and `out' = [out, 0]`. The backward maps back: `dq = √(D'/D)·dq'[:D]`,
//! `dk = dk'[:D]`, `dv = dv'[:D]`, `dB[h][a_i][:] += √D'·dq'_i[D:]`. Every backend (and any
//! future fused kernel) therefore supports the bias with no change to the trait.
//!
//! The widening is done on the host (download, rearrange, upload) by the functions below. That
//! costs a few copies of `B×T×C` per layer and step: fine for E4, a small experiment at the
//! paper's scale; a device kernel would replace them if the bias ever became a hot path.
//! The functions are generic over [`Real`] so the tests check the math in f64.

use crate::backend::cpu::Real;
use crate::backend::AttnShape;
use crate::data::batch::NO_TAG;
use crate::error::check_len;
use crate::ling::compat::{CompatMatrix, CompatSet, NTAGS};
use crate::ling::Upos;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Default initial bias on ASA-incompatible tag pairs for [`TagBiasInit::Asa`]: `e^{-2} ≈ 0.14`
/// of a compatible key's weight at equal `q·k`, a soft prior the model can unlearn (a hard
/// `−∞` would be the ASA mask itself, E2's subject).
pub const DEFAULT_INCOMPATIBLE: f32 = -2.0;

/// How the tag-pair bias starts, or whether the model has one at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagBiasInit {
    /// No tag bias: the model, its parameter table and checkpoints are as without the feature.
    #[default]
    Off,
    /// Every entry 0 (the bias starts neutral and is learned; E4's control).
    Zero,
    /// From the built-in ASA compatibility matrix ([`CompatMatrix::default_asa`]): 0 where a
    /// query tag may attend to a key tag (the diagonal, the UD-justified pairs, anything with
    /// `X`), a constant `incompatible ≤ 0` elsewhere; the same in every layer and head.
    /// Compatible pairs get 0, not a positive value, because the softmax is shift-invariant
    /// per row: only the gap between compatible and incompatible keys matters.
    Asa,
}

impl TagBiasInit {
    /// Whether the feature is off.
    pub fn is_off(&self) -> bool {
        *self == TagBiasInit::Off
    }

    /// The lower-case name (`off`, `zero`, `asa`), as in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TagBiasInit::Off => "off",
            TagBiasInit::Zero => "zero",
            TagBiasInit::Asa => "asa",
        }
    }

    /// Initial values of one layer's bias, `n_head × 17 × 17` (`None` for `Off`).
    /// `incompatible` is used by `Asa` only and must be finite and ≤ 0.
    pub fn layer_values(self, n_head: usize, incompatible: f32) -> Result<Option<Vec<f32>>> {
        let builtin = CompatSet::shared(CompatMatrix::default_asa());
        self.layer_values_with(n_head, incompatible, &builtin)
    }

    /// As [`layer_values`](Self::layer_values), with `Asa` initialised from `compat` (one
    /// matrix for every head, or one per head: then exactly `n_head` of them).
    pub fn layer_values_with(
        self,
        n_head: usize,
        incompatible: f32,
        compat: &CompatSet,
    ) -> Result<Option<Vec<f32>>> {
        check_incompatible(incompatible)?;
        Ok(match self {
            TagBiasInit::Off => None,
            TagBiasInit::Zero => Some(vec![0.0; NTAGS * NTAGS * n_head]),
            TagBiasInit::Asa => match compat.matrices() {
                [one] => Some(asa_values(one, incompatible).repeat(n_head)),
                per_head if per_head.len() == n_head => Some(
                    per_head
                        .iter()
                        .flat_map(|m| asa_values(m, incompatible))
                        .collect(),
                ),
                per_head => {
                    return Err(Error::Config(format!(
                        "tag bias: the compat set has {} per-head matrices for {n_head} heads",
                        per_head.len()
                    )))
                }
            },
        })
    }
}

impl std::fmt::Display for TagBiasInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TagBiasInit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "off" => Ok(TagBiasInit::Off),
            "zero" => Ok(TagBiasInit::Zero),
            "asa" => Ok(TagBiasInit::Asa),
            _ => Err(Error::Config(format!(
                "tag bias `{s}`: expected off, zero or asa"
            ))),
        }
    }
}

/// Reject an initial incompatible-pair bias that is not finite or is positive (a positive
/// value would favour the pairs ASA rules out: almost certainly a sign slip).
pub fn check_incompatible(incompatible: f32) -> Result<()> {
    if incompatible.is_finite() && incompatible <= 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "tag_bias_incompatible must be finite and ≤ 0, got {incompatible}"
        )))
    }
}

/// One head's 17×17 bias from a compatibility matrix: 0 where `compat` allows query tag `a`
/// to attend to key tag `b`, `incompatible` elsewhere (row-major `[a][b]`).
pub fn asa_values(compat: &CompatMatrix, incompatible: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(NTAGS * NTAGS);
    for a in Upos::ALL {
        for b in Upos::ALL {
            out.push(if compat.allows(a, b) {
                0.0
            } else {
                incompatible
            });
        }
    }
    out
}

/// The parameter name of layer `layer`'s tag bias.
pub fn param_name(layer: usize) -> String {
    format!("blocks.{layer}.attn.tag_bias")
}

/// Check a batch's tags: each a UPOS index (`0..17`) or [`NO_TAG`].
pub fn check_tags(tags: &[u8]) -> Result<()> {
    match tags
        .iter()
        .position(|&t| t as usize >= NTAGS && t != NO_TAG)
    {
        Some(i) => Err(Error::Config(format!(
            "tag {} at position {i} is neither a UPOS index (0..{NTAGS}) nor NO_TAG ({NO_TAG})",
            tags[i]
        ))),
        None => Ok(()),
    }
}

/// The tag's row/column in the bias, or `None` for "no tag".
#[inline]
fn tag_index(t: u8) -> Option<usize> {
    ((t as usize) < NTAGS).then_some(t as usize)
}

/// The widened attention shape (`D' = D + 17`) for the model's shape `s`.
pub fn widened(s: AttnShape) -> AttnShape {
    AttnShape {
        d: s.d + NTAGS,
        ..s
    }
}

/// `√(D'/D)`, the factor on the query channels.
pub fn q_scale(s: AttnShape) -> f64 {
    ((s.d + NTAGS) as f64 / s.d as f64).sqrt()
}

fn check_shapes(
    op: &'static str,
    narrow: usize,
    wide: usize,
    tags: usize,
    s: AttnShape,
) -> Result<()> {
    let n = s.b * s.t;
    let shp = || format!("b={} t={} h={} d={}", s.b, s.t, s.h, s.d);
    check_len(op, "narrow", narrow, n * s.c(), shp)?;
    check_len(op, "wide", wide, n * widened(s).c(), shp)?;
    check_len(op, "tags", tags, n, shp)
}

/// `out = q'`: per row and head, the query scaled by `√(D'/D)` then `√D'·B[h][tag][:]`
/// (zeros for a row without a tag). `bias` is `H × 17 × 17`; `s` is the unwidened shape.
pub fn widen_q<F: Real>(
    out: &mut [F],
    q: &[F],
    bias: &[F],
    tags: &[u8],
    s: AttnShape,
) -> Result<()> {
    check_shapes("tag_bias::widen_q", q.len(), out.len(), tags.len(), s)?;
    check_len(
        "tag_bias::widen_q",
        "bias",
        bias.len(),
        s.h * NTAGS * NTAGS,
        || format!("H × 17 × 17 with h={}", s.h),
    )?;
    let (d, dw) = (s.d, s.d + NTAGS);
    let (qs, bs) = (F::c(q_scale(s)), F::c((dw as f64).sqrt()));
    for (&tag, (orow, qrow)) in tags
        .iter()
        .zip(out.chunks_exact_mut(s.h * dw).zip(q.chunks_exact(s.c())))
    {
        for h in 0..s.h {
            let o = &mut orow[h * dw..(h + 1) * dw];
            for (x, &y) in o[..d].iter_mut().zip(&qrow[h * d..(h + 1) * d]) {
                *x = y * qs;
            }
            match tag_index(tag) {
                Some(a) => {
                    let brow = &bias[(h * NTAGS + a) * NTAGS..][..NTAGS];
                    for (x, &b) in o[d..].iter_mut().zip(brow) {
                        *x = b * bs;
                    }
                }
                None => o[d..].fill(F::zero()),
            }
        }
    }
    Ok(())
}

/// `out = k'`: per row and head, the key then the one-hot of the row's tag (zeros without).
pub fn widen_k<F: Real>(out: &mut [F], k: &[F], tags: &[u8], s: AttnShape) -> Result<()> {
    check_shapes("tag_bias::widen_k", k.len(), out.len(), tags.len(), s)?;
    let (d, dw) = (s.d, s.d + NTAGS);
    for (&tag, (orow, krow)) in tags
        .iter()
        .zip(out.chunks_exact_mut(s.h * dw).zip(k.chunks_exact(s.c())))
    {
        for h in 0..s.h {
            let o = &mut orow[h * dw..(h + 1) * dw];
            o[..d].copy_from_slice(&krow[h * d..(h + 1) * d]);
            o[d..].fill(F::zero());
            if let Some(b) = tag_index(tag) {
                o[d + b] = F::one();
            }
        }
    }
    Ok(())
}

/// `out = [x, 0]` per head: `v'` from `v`, and the widened `out'`/`dout'` from the narrow ones.
pub fn widen_zero<F: Real>(out: &mut [F], x: &[F], s: AttnShape) -> Result<()> {
    let n = s.b * s.t;
    let shp = || format!("b={} t={} h={} d={}", s.b, s.t, s.h, s.d);
    check_len("tag_bias::widen_zero", "narrow", x.len(), n * s.c(), shp)?;
    check_len(
        "tag_bias::widen_zero",
        "wide",
        out.len(),
        n * widened(s).c(),
        shp,
    )?;
    let (d, dw) = (s.d, s.d + NTAGS);
    for (o, xh) in out.chunks_exact_mut(dw).zip(x.chunks_exact(d)) {
        o[..d].copy_from_slice(xh);
        o[d..].fill(F::zero());
    }
    Ok(())
}

/// `out = scale·wide[:D]` per head: the inverse of the widening for `out'` (scale 1), `dk'`,
/// `dv'` (scale 1) and `dq'` (scale [`q_scale`], the chain rule through `q·√(D'/D)`).
pub fn narrow<F: Real>(out: &mut [F], wide: &[F], scale: F, s: AttnShape) -> Result<()> {
    let n = s.b * s.t;
    let shp = || format!("b={} t={} h={} d={}", s.b, s.t, s.h, s.d);
    check_len("tag_bias::narrow", "narrow", out.len(), n * s.c(), shp)?;
    check_len(
        "tag_bias::narrow",
        "wide",
        wide.len(),
        n * widened(s).c(),
        shp,
    )?;
    let (d, dw) = (s.d, s.d + NTAGS);
    for (o, w) in out.chunks_exact_mut(d).zip(wide.chunks_exact(dw)) {
        for (x, &y) in o.iter_mut().zip(&w[..d]) {
            *x = y * scale;
        }
    }
    Ok(())
}

/// `dbias[h][a_i][:] += √D'·dq'_i[h][D:]` for every row `i` with a tag (accumulates).
pub fn bias_grad<F: Real>(dbias: &mut [F], dq_wide: &[F], tags: &[u8], s: AttnShape) -> Result<()> {
    let n = s.b * s.t;
    let shp = || format!("b={} t={} h={} d={}", s.b, s.t, s.h, s.d);
    check_len(
        "tag_bias::bias_grad",
        "dq_wide",
        dq_wide.len(),
        n * widened(s).c(),
        shp,
    )?;
    check_len("tag_bias::bias_grad", "tags", tags.len(), n, shp)?;
    check_len(
        "tag_bias::bias_grad",
        "dbias",
        dbias.len(),
        s.h * NTAGS * NTAGS,
        shp,
    )?;
    let (d, dw) = (s.d, s.d + NTAGS);
    let bs = F::c((dw as f64).sqrt());
    for (&tag, row) in tags.iter().zip(dq_wide.chunks_exact(s.h * dw)) {
        let Some(a) = tag_index(tag) else { continue };
        for h in 0..s.h {
            let g = &mut dbias[(h * NTAGS + a) * NTAGS..][..NTAGS];
            for (x, &y) in g.iter_mut().zip(&row[h * dw + d..(h + 1) * dw]) {
                *x += y * bs;
            }
        }
    }
    Ok(())
}
