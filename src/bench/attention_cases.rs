//! Benchmark cases of masked attention (issue 9, kernel family `attention`): the sweep over
//! sequence length T, head dim D and mask, forward and backward reported separately.
//!
//! **Masks** (one shared mask head, i.e. the same mask for every head; a different mask per
//! sequence of the batch):
//! - `causal`: no mask (plain causal attention);
//! - `ones`: an all-ones bit mask, i.e. causal attention through the masked code path (the
//!   baseline every other mask's time is compared with);
//! - `asa`: real ASA masks built from the UPOS tags of random windows of the embedded
//!   synthetic corpus ([`AsaMaskBuilder`], default compatibility matrix);
//! - `rand0.05`, `rand0.3`: each key `j < i` allowed with that probability (seeded), the
//!   diagonal always allowed — so no row is fully masked, which the peers' SDPA turns into NaN.
//!
//! **Work** is counted on the allowed pairs only, `P = Σ_{b,h} #{(i,j): j ≤ i ∧ M[b][i][j]}`:
//! forward `4·D·P` FLOPs (QKᵀ and PV, 2 FLOPs per multiply-add), backward `2.5×` that,
//! `10·D·P` (the FlashAttention convention: five T×T×D products against the forward's two;
//! the recomputation of QKᵀ is not counted). So a kernel whose time does not fall with the mask
//! shows a falling FLOP/s; the summary ([`summary`]) also prints the fraction of 64×64 tiles of
//! the causal triangle the mask leaves non-empty (the work a tile-skipping kernel cannot avoid).
//! Random and ASA masks at these densities empty almost no 64×64 tile.
//!
//! **CPU cases** (`device = cpu`): the CPU twin (`attention/fwd|bwd/…`) for T in 512, 1024,
//! 2048 (capped by `ASA_LTH_BENCH_ATTN_MAX_T`; larger T on 2 cores takes seconds per call),
//! D 64 and 128, B·T = 4096 tokens, H = 2; and the naive CPU attention of this module, which
//! materialises the T×T scores (`attention/fwd_naive|bwd_naive/…`), for T ≤ 1024. `cargo
//! bench` (criterion) runs the [`AttnSweep::cpu_quick`] subset unless
//! `ASA_LTH_BENCH_ATTN=full`, so it stays within a few minutes.
//!
//! **GPU cases** (`device = cuda:0`, when [`CudaOps::new(0)`](CudaOps::new) succeeds): the
//! same masks through the [`Ops`] interface for T in 512…8192 (same cap), D 64 and 128, with
//! the FlashAttention-2 benchmark's shapes (B = 16384/T, H = 2048/D), timed with the
//! backend's CUDA events. `attention/fwd|bwd/…` is the default Ops path (the fused kernels;
//! with a mask every call also rebuilds the tile lists on the device, as the Ops call does),
//! `attention/fwd_ref|bwd_ref/…` the reference kernels (`set_fused_attention(false)`). The
//! fused backward runs in its default (deterministic) mode. Operands are f32 buffers rounded
//! to bf16 by the kernels. The PyTorch peers (benches/peers/torch_attention.py) write the same
//! names, so `asa-lth bench attention --baseline <peer report>` compares case by case; they
//! read the masks `asa-lth bench attention --dump-masks DIR` writes ([`dump_masks`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use super::cases::{BenchCase, Unit};
use super::report::Figure;
use crate::backend::cpu::attention;
use crate::backend::cuda::ops::CudaOps;
use crate::backend::{AttnShape, MaskRef, Ops};
use crate::error::check_len;
use crate::mask::{AsaMaskBuilder, BitMask, TileMap};
use crate::rng::Rng;
use crate::{Error, Result};

/// Tile edge used for the non-empty tile fraction (the CPU twin's and the fused kernels').
pub const TILE: usize = 64;
/// Sequence lengths of the GPU sweep (the CPU sweep uses those ≤ 2048).
pub const SEQ_LENS: &[usize] = &[512, 1024, 2048, 4096, 8192];
/// Head dims of the sweep (those the fused kernels are compiled for).
pub const HEAD_DIMS: &[usize] = &[64, 128];
/// Tokens per batch (B·T) on the CPU; H = [`CPU_HEADS`].
pub const CPU_TOKENS: usize = 4096;
pub const CPU_HEADS: usize = 2;
/// Tokens per batch (B·T) on the GPU; H·D = [`GPU_WIDTH`] (FlashAttention-2's benchmark).
pub const GPU_TOKENS: usize = 16384;
pub const GPU_WIDTH: usize = 2048;

/// One mask of the sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaskKind {
    /// No mask: plain causal attention.
    Causal,
    /// All-ones bit mask (causal through the masked path).
    Ones,
    /// ASA masks from synthetic-corpus tags.
    Asa,
    /// Random keys `j < i` with this density; the diagonal always allowed.
    Random(f64),
}

/// The masks of the sweep, in report order.
pub const MASKS: &[MaskKind] = &[
    MaskKind::Causal,
    MaskKind::Ones,
    MaskKind::Asa,
    MaskKind::Random(0.05),
    MaskKind::Random(0.3),
];

impl MaskKind {
    /// Name suffix: `causal`, `ones`, `asa`, `rand0.05`, …
    pub fn label(&self) -> String {
        match self {
            MaskKind::Causal => "causal".into(),
            MaskKind::Ones => "ones".into(),
            MaskKind::Asa => "asa".into(),
            MaskKind::Random(p) => format!("rand{p}"),
        }
    }
}

/// Which part of the sweep to build.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnSweep {
    pub seq_lens: Vec<usize>,
    pub head_dims: Vec<usize>,
    pub masks: Vec<MaskKind>,
    /// The naive CPU attention runs for T ≤ this (0: never).
    pub naive_max_t: usize,
}

fn max_t_from_env() -> usize {
    std::env::var("ASA_LTH_BENCH_ATTN_MAX_T")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

impl AttnSweep {
    /// The CPU sweep of `asa-lth bench attention`: T ≤ 2048 (and ≤ `ASA_LTH_BENCH_ATTN_MAX_T`),
    /// D 64/128, every mask, naive for T ≤ 1024.
    pub fn cpu() -> Self {
        let cap = max_t_from_env().min(2048);
        AttnSweep {
            seq_lens: SEQ_LENS.iter().copied().filter(|&t| t <= cap).collect(),
            head_dims: HEAD_DIMS.to_vec(),
            masks: MASKS.to_vec(),
            naive_max_t: 1024,
        }
    }

    /// The criterion subset: T 512 and 2048, D 64, every mask, naive at T 512.
    pub fn cpu_quick() -> Self {
        let cap = max_t_from_env();
        AttnSweep {
            seq_lens: [512, 2048].into_iter().filter(|&t| t <= cap).collect(),
            head_dims: vec![64],
            masks: MASKS.to_vec(),
            naive_max_t: 512,
        }
    }

    /// [`cpu`](Self::cpu) when `ASA_LTH_BENCH_ATTN=full`, `quick` when it is `quick`,
    /// otherwise `default`.
    pub fn cpu_from_env(default: AttnSweep) -> Self {
        match std::env::var("ASA_LTH_BENCH_ATTN").as_deref() {
            Ok("full") => Self::cpu(),
            Ok("quick") => Self::cpu_quick(),
            _ => default,
        }
    }

    /// The GPU sweep: T 512…8192 (≤ `ASA_LTH_BENCH_ATTN_MAX_T`), D 64/128, every mask.
    pub fn gpu() -> Self {
        let cap = max_t_from_env();
        AttnSweep {
            seq_lens: SEQ_LENS.iter().copied().filter(|&t| t <= cap).collect(),
            head_dims: HEAD_DIMS.to_vec(),
            masks: MASKS.to_vec(),
            naive_max_t: 0,
        }
    }
}

/// `(B, H)` of the CPU cases at `(T, D)`.
pub fn cpu_shape(t: usize, _d: usize) -> (usize, usize) {
    ((CPU_TOKENS / t).max(1), CPU_HEADS)
}

/// `(B, H)` of the GPU cases at `(T, D)`.
pub fn gpu_shape(t: usize, d: usize) -> (usize, usize) {
    ((GPU_TOKENS / t).max(1), (GPU_WIDTH / d).max(1))
}

/// Shape part of a case name: `b4_h2_t1024_d64_asa`.
pub fn shape_label(s: &AttnShape, mask: &str) -> String {
    format!("b{}_h{}_t{}_d{}_{mask}", s.b, s.h, s.t, s.d)
}

// ---------------------------------------------------------------------------------------------
// Masks.

/// The synthetic corpus's token stream (with gold UPOS), generated once.
fn corpus() -> &'static crate::data::TokenStream {
    static S: OnceLock<crate::data::TokenStream> = OnceLock::new();
    S.get_or_init(|| {
        use crate::data::{synthetic, Vocab};
        let sents = synthetic::generate(4000, 7);
        let vocab = Vocab::build(&sents, 1).expect("synthetic vocabulary");
        vocab.encode(&sents)
    })
}

/// The bit mask of `kind` for `b` sequences of length `t` (`None` for [`MaskKind::Causal`]).
/// Deterministic in `(kind, b, t)`.
pub fn build_mask(kind: MaskKind, b: usize, t: usize) -> Result<Option<BitMask>> {
    let seed = 0xA77E_0000 ^ (t as u64) << 8 ^ b as u64;
    Ok(match kind {
        MaskKind::Causal => None,
        MaskKind::Ones => Some(BitMask::all_ones(b, t)),
        MaskKind::Asa => {
            use crate::data::batch::random_batch;
            use crate::ling::compat::{CompatMatrix, CompatSet};
            let mut rng = Rng::new(seed);
            let batch = random_batch(corpus(), b, t, &mut rng)?;
            let builder = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::default_asa()));
            Some(builder.build(&batch.upos, b, t)?)
        }
        MaskKind::Random(p) => {
            let mut rng = Rng::new(seed ^ (p * 1e6) as u64);
            Some(BitMask::from_fn(b, 1, t, |_, _, i, j| {
                j == i || (j < i && rng.uniform() < p)
            }))
        }
    })
}

/// Allowed (causal ∧ mask) pairs of one head summed over the batch.
pub fn allowed_pairs(mask: Option<&BitMask>, b: usize, t: usize) -> u64 {
    match mask {
        Some(m) => m.causal_count(),
        None => (b * t * (t + 1) / 2) as u64,
    }
}

/// Fraction of the causal triangle's [`TILE`]² tiles that are not empty.
pub fn nonempty_tile_fraction(mask: Option<&BitMask>, b: usize, t: usize) -> Result<f64> {
    let map = match mask {
        Some(m) => TileMap::from_mask(m, TILE)?,
        None => TileMap::causal(b, t, TILE)?,
    };
    let (e, f, p) = map.counts();
    Ok((f + p) as f64 / (e + f + p).max(1) as f64)
}

/// Forward FLOPs counted on `pairs` allowed pairs per head, `h` heads, head dim `d`.
pub fn fwd_flops(pairs: u64, h: usize, d: usize) -> f64 {
    4.0 * d as f64 * h as f64 * pairs as f64
}

/// Backward FLOPs: 2.5× the forward.
pub fn bwd_flops(pairs: u64, h: usize, d: usize) -> f64 {
    2.5 * fwd_flops(pairs, h, d)
}

/// Non-empty tile fractions of the cases built in this process, by `b…_h…_t…_d…_mask` shape
/// label (read by [`summary`]).
fn tile_registry() -> &'static Mutex<BTreeMap<String, f64>> {
    static R: OnceLock<Mutex<BTreeMap<String, f64>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn register_tiles(shape: &str, frac: f64) {
    if let Ok(mut r) = tile_registry().lock() {
        r.insert(shape.to_string(), frac);
    }
}

// ---------------------------------------------------------------------------------------------
// The naive CPU attention.

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so the loop vectorises (a plain `sum()` cannot be reordered).
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Head `h` of sequence `b` as a contiguous `T×D` matrix.
fn gather(x: &[f32], s: &AttnShape, b: usize, h: usize) -> Vec<f32> {
    let (t, d, c) = (s.t, s.d, s.c());
    let mut out = Vec::with_capacity(t * d);
    for i in 0..t {
        out.extend_from_slice(&x[(b * t + i) * c + h * d..][..d]);
    }
    out
}

fn check_naive(
    op: &'static str,
    s: &AttnShape,
    bufs: &[(&'static str, usize)],
    mask: Option<&BitMask>,
) -> Result<()> {
    let n = s.b * s.t * s.c();
    let shp = || format!("B={} T={} H={} D={}", s.b, s.t, s.h, s.d);
    for &(name, len) in bufs {
        let want = if name == "lse" { s.b * s.h * s.t } else { n };
        check_len(op, name, len, want, shp)?;
    }
    if let Some(m) = mask {
        m.validate_for(s)?;
    }
    Ok(())
}

/// Whether key `j` is allowed for query `i` of `(b, h)` (`j ≤ i` assumed).
#[inline]
fn allowed(mask: Option<&BitMask>, b: usize, h: usize, i: usize, j: usize) -> bool {
    mask.is_none_or(|m| m.get(b, if m.per_head() { h } else { 0 }, i, j))
}

/// The materialised `T×T` probabilities of `(b, h)`: scores of every causal pair (as a dense
/// masked GEMM computes them), the mask applied to the stored scores, then `exp(S − lse)`;
/// with `lse = None` the row log-sum-exps are computed (forward) and returned.
#[allow(clippy::too_many_arguments)]
fn probs(
    q: &[f32],
    k: &[f32],
    mask: Option<&BitMask>,
    s: &AttnShape,
    b: usize,
    h: usize,
    lse_in: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let t = s.t;
    let d = s.d;
    let scale = 1.0 / (d as f32).sqrt();
    let mut p = vec![0.0f32; t * t];
    let mut lse = vec![f32::INFINITY; t];
    for i in 0..t {
        let row = &mut p[i * t..(i + 1) * t];
        let qi = &q[i * d..(i + 1) * d];
        for (j, r) in row[..=i].iter_mut().enumerate() {
            *r = dot(qi, &k[j * d..(j + 1) * d]) * scale;
        }
        for (j, r) in row[..=i].iter_mut().enumerate() {
            if !allowed(mask, b, h, i, j) {
                *r = f32::NEG_INFINITY;
            }
        }
        let l = match lse_in {
            Some(l) => l[i],
            None => {
                let m = row[..=i].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if m == f32::NEG_INFINITY {
                    f32::INFINITY
                } else {
                    let sum: f32 = row[..=i].iter().map(|&x| (x - m).exp()).sum();
                    m + sum.ln()
                }
            }
        };
        lse[i] = l;
        for r in row[..=i].iter_mut() {
            // exp(−∞) = 0 for masked pairs and for fully masked rows (lse = +∞).
            *r = (*r - l).exp();
        }
    }
    (p, lse)
}

/// Naive masked causal attention (f32): per `(b, h)` materialises the `T×T` scores and
/// probabilities. Same contract as [`attention::attention_fwd`] (a fully masked row gives
/// `out = 0`, `lse = +∞`); rayon over `(b, h)`.
pub fn naive_attention_fwd(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&BitMask>,
    s: AttnShape,
) -> Result<()> {
    let bufs = [
        ("out", out.len()),
        ("lse", lse.len()),
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
    ];
    check_naive("naive_attention_fwd", &s, &bufs, mask)?;
    let (t, d, c) = (s.t, s.d, s.c());
    let heads: Vec<(Vec<f32>, Vec<f32>)> = (0..s.b * s.h)
        .into_par_iter()
        .map(|g| {
            let (b, h) = (g / s.h, g % s.h);
            let (qh, kh, vh) = (
                gather(q, &s, b, h),
                gather(k, &s, b, h),
                gather(v, &s, b, h),
            );
            let (p, l) = probs(&qh, &kh, mask, &s, b, h, None);
            let mut o = vec![0.0f32; t * d];
            for i in 0..t {
                let oi = &mut o[i * d..(i + 1) * d];
                for j in 0..=i {
                    axpy(oi, p[i * t + j], &vh[j * d..(j + 1) * d]);
                }
            }
            (o, l)
        })
        .collect();
    for (g, (o, l)) in heads.into_iter().enumerate() {
        let (b, h) = (g / s.h, g % s.h);
        for i in 0..t {
            out[(b * t + i) * c + h * d..][..d].copy_from_slice(&o[i * d..(i + 1) * d]);
        }
        lse[(b * s.h + h) * t..][..t].copy_from_slice(&l);
    }
    Ok(())
}

/// Naive backward: recomputes and materialises `P` (from the forward's `lse`) and `dS` as
/// `T×T` matrices; accumulates (`+=`) into `dq`, `dk`, `dv` like [`attention::attention_bwd`].
#[allow(clippy::too_many_arguments)]
pub fn naive_attention_bwd(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    mask: Option<&BitMask>,
    s: AttnShape,
) -> Result<()> {
    let bufs = [
        ("dq", dq.len()),
        ("dk", dk.len()),
        ("dv", dv.len()),
        ("dout", dout.len()),
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("out", out.len()),
        ("lse", lse.len()),
    ];
    check_naive("naive_attention_bwd", &s, &bufs, mask)?;
    let (t, d, c) = (s.t, s.d, s.c());
    let scale = 1.0 / (d as f32).sqrt();
    let grads: Vec<[Vec<f32>; 3]> = (0..s.b * s.h)
        .into_par_iter()
        .map(|g| {
            let (b, h) = (g / s.h, g % s.h);
            let (qh, kh, vh) = (
                gather(q, &s, b, h),
                gather(k, &s, b, h),
                gather(v, &s, b, h),
            );
            let (doh, oh) = (gather(dout, &s, b, h), gather(out, &s, b, h));
            let l = &lse[(b * s.h + h) * t..][..t];
            let (p, _) = probs(&qh, &kh, mask, &s, b, h, Some(l));
            let mut ds = vec![0.0f32; t * t];
            for i in 0..t {
                let doi = &doh[i * d..(i + 1) * d];
                let di = dot(doi, &oh[i * d..(i + 1) * d]);
                for j in 0..=i {
                    let pij = p[i * t + j];
                    ds[i * t + j] = pij * (dot(doi, &vh[j * d..(j + 1) * d]) - di);
                }
            }
            let (mut gq, mut gk, mut gv) = (
                vec![0.0f32; t * d],
                vec![0.0f32; t * d],
                vec![0.0f32; t * d],
            );
            for i in 0..t {
                let (qi, doi) = (&qh[i * d..(i + 1) * d], &doh[i * d..(i + 1) * d]);
                for j in 0..=i {
                    let dsij = ds[i * t + j] * scale;
                    axpy(&mut gq[i * d..(i + 1) * d], dsij, &kh[j * d..(j + 1) * d]);
                    axpy(&mut gk[j * d..(j + 1) * d], dsij, qi);
                    axpy(&mut gv[j * d..(j + 1) * d], p[i * t + j], doi);
                }
            }
            [gq, gk, gv]
        })
        .collect();
    for (g, [gq, gk, gv]) in grads.into_iter().enumerate() {
        let (b, h) = (g / s.h, g % s.h);
        for i in 0..t {
            let o = (b * t + i) * c + h * d;
            let r = i * d..(i + 1) * d;
            axpy(&mut dq[o..o + d], 1.0, &gq[r.clone()]);
            axpy(&mut dk[o..o + d], 1.0, &gk[r.clone()]);
            axpy(&mut dv[o..o + d], 1.0, &gv[r]);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CPU cases.

fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect()
}

/// Forward/backward inputs of one CPU case (the forward's `out`/`lse` feed the backward).
struct CpuInputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    dout: Vec<f32>,
    out: Vec<f32>,
    lse: Vec<f32>,
}

/// The attention CPU cases of `sweep`, if `want("attention")`.
pub fn cpu_cases(want: &dyn Fn(&str) -> bool, sweep: &AttnSweep) -> Vec<BenchCase> {
    let mut cases = Vec::new();
    if !want("attention") {
        return cases;
    }
    let mut rng = Rng::new(0xA77E);
    for &t in &sweep.seq_lens {
        let b = cpu_shape(t, 64).0;
        for &kind in &sweep.masks {
            let mask = build_mask(kind, b, t)
                .expect("valid sweep mask")
                .map(Arc::new);
            let pairs = allowed_pairs(mask.as_deref(), b, t);
            let frac = nonempty_tile_fraction(mask.as_deref(), b, t).expect("tile 64");
            for &d in &sweep.head_dims {
                let h = cpu_shape(t, d).1;
                let s = AttnShape { b, t, h, d };
                let label = shape_label(&s, &kind.label());
                register_tiles(&label, frac);
                cases.extend(cpu_pair(&mut rng, s, mask.clone(), pairs, &label, false));
                if t <= sweep.naive_max_t {
                    cases.extend(cpu_pair(&mut rng, s, mask.clone(), pairs, &label, true));
                }
            }
        }
    }
    cases
}

fn cpu_pair(
    rng: &mut Rng,
    s: AttnShape,
    mask: Option<Arc<BitMask>>,
    pairs: u64,
    label: &str,
    naive: bool,
) -> Vec<BenchCase> {
    let n = s.b * s.t * s.c();
    let mut x = CpuInputs {
        q: rand(rng, n),
        k: rand(rng, n),
        v: rand(rng, n),
        dout: rand(rng, n),
        out: vec![0.0; n],
        lse: vec![0.0; s.b * s.h * s.t],
    };
    attention::attention_fwd(
        &mut x.out,
        &mut x.lse,
        &x.q,
        &x.k,
        &x.v,
        mask.as_deref().map(Into::into),
        s,
    )
    .expect("valid case");
    let x = Arc::new(x);
    let suffix = if naive { "_naive" } else { "" };
    let (mut out, mut lse) = (vec![0.0f32; n], vec![0.0f32; s.b * s.h * s.t]);
    let (xf, mf) = (x.clone(), mask.clone());
    let fwd: Box<dyn FnMut() + Send> = Box::new(move || {
        let m = mf.as_deref();
        if naive {
            naive_attention_fwd(&mut out, &mut lse, &xf.q, &xf.k, &xf.v, m, s)
        } else {
            attention::attention_fwd(
                &mut out,
                &mut lse,
                &xf.q,
                &xf.k,
                &xf.v,
                m.map(Into::into),
                s,
            )
        }
        .expect("valid case")
    });
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let bwd: Box<dyn FnMut() + Send> = Box::new(move || {
        let m = mask.as_deref();
        let x = &*x;
        if naive {
            naive_attention_bwd(
                &mut dq, &mut dk, &mut dv, &x.dout, &x.q, &x.k, &x.v, &x.out, &x.lse, m, s,
            )
        } else {
            attention::attention_bwd(
                &mut dq,
                &mut dk,
                &mut dv,
                &x.dout,
                &x.q,
                &x.k,
                &x.v,
                &x.out,
                &x.lse,
                m.map(Into::into),
                s,
            )
        }
        .expect("valid case")
    });
    vec![
        BenchCase {
            kernel: "attention",
            name: format!("attention/fwd{suffix}/{label}"),
            device: "cpu".into(),
            unit: Unit::Flops,
            work: fwd_flops(pairs, s.h, s.d),
            run: fwd,
        },
        BenchCase {
            kernel: "attention",
            name: format!("attention/bwd{suffix}/{label}"),
            device: "cpu".into(),
            unit: Unit::Flops,
            work: bwd_flops(pairs, s.h, s.d),
            run: bwd,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Device cases (through the Ops interface, timed with the backend's timer).

/// A case timed by its backend: `run(n)` enqueues `n` calls and returns their total seconds
/// as the backend's timer measures them ([`Ops::start_timer`]: CUDA events on a GPU).
pub struct DeviceCase {
    pub kernel: &'static str,
    pub name: String,
    pub device: String,
    pub unit: Unit,
    pub work: f64,
    pub run: Box<dyn FnMut(u64) -> Result<f64>>,
}

/// Device buffers of one `(T, D, mask)` configuration, allocated on first use and shared by
/// its forward and backward cases of every variant.
struct OpsState<O: Ops> {
    q: O::Buf,
    k: O::Buf,
    v: O::Buf,
    out: O::Buf,
    lse: O::Buf,
    dout: O::Buf,
    dq: O::Buf,
    dk: O::Buf,
    dv: O::Buf,
    mask: Option<O::Idx>,
}

type Shared<O> = Rc<RefCell<Option<OpsState<O>>>>;

fn ops_state<O: Ops>(
    ops: &O,
    s: AttnShape,
    mask: Option<&BitMask>,
    seed: u64,
) -> Result<OpsState<O>> {
    let mut rng = Rng::new(seed);
    let n = s.b * s.t * s.c();
    let mut st = OpsState {
        q: ops.upload(&rand(&mut rng, n))?,
        k: ops.upload(&rand(&mut rng, n))?,
        v: ops.upload(&rand(&mut rng, n))?,
        out: ops.zeros(n)?,
        lse: ops.zeros(s.b * s.h * s.t)?,
        dout: ops.upload(&rand(&mut rng, n))?,
        dq: ops.zeros(n)?,
        dk: ops.zeros(n)?,
        dv: ops.zeros(n)?,
        mask: mask.map(|m| ops.upload_idx(m.words())).transpose()?,
    };
    let OpsState {
        q,
        k,
        v,
        out,
        lse,
        mask,
        ..
    } = &mut st;
    let m = mask.as_ref().map(|bits| MaskRef {
        bits,
        per_head: false,
    });
    ops.attention_fwd(out, lse, q, k, v, m, s)?;
    ops.synchronize()?;
    Ok(st)
}

/// A variant of the device cases: name suffix and the backend setting it needs.
pub type OpsVariant<O> = (&'static str, Rc<dyn Fn(&O)>);

/// The sweep's cases on `ops` (device label `device`), one forward and one backward case per
/// variant per `(T, D, mask)`; `shape(t, d)` gives `(B, H)`. Buffers are allocated on a
/// configuration's first call and freed when its last case is dropped.
pub fn ops_cases<O: Ops + 'static>(
    ops: Arc<O>,
    device: &str,
    sweep: &AttnSweep,
    shape: fn(usize, usize) -> (usize, usize),
    variants: &[OpsVariant<O>],
) -> Result<Vec<DeviceCase>> {
    let mut cases = Vec::new();
    for &t in &sweep.seq_lens {
        let b = shape(t, sweep.head_dims.first().copied().unwrap_or(64)).0;
        for &kind in &sweep.masks {
            let mask = build_mask(kind, b, t)?.map(Rc::new);
            let pairs = allowed_pairs(mask.as_deref(), b, t);
            let frac = nonempty_tile_fraction(mask.as_deref(), b, t)?;
            for &d in &sweep.head_dims {
                let (b2, h) = shape(t, d);
                assert_eq!(b2, b, "B must depend on T only (one mask per T)");
                let s = AttnShape { b, t, h, d };
                let label = shape_label(&s, &kind.label());
                register_tiles(&label, frac);
                let state: Shared<O> = Rc::new(RefCell::new(None));
                let seed = (t * 1000 + d) as u64;
                for (suffix, configure) in variants {
                    for bwd in [false, true] {
                        let (ops, state, mask, configure) =
                            (ops.clone(), state.clone(), mask.clone(), configure.clone());
                        let run = move |n: u64| -> Result<f64> {
                            configure(&ops);
                            let mut guard = state.borrow_mut();
                            if guard.is_none() {
                                *guard = Some(ops_state(&*ops, s, mask.as_deref(), seed)?);
                            }
                            let OpsState {
                                q,
                                k,
                                v,
                                out,
                                lse,
                                dout,
                                dq,
                                dk,
                                dv,
                                mask,
                            } = guard.as_mut().expect("initialised above");
                            let m = mask.as_ref().map(|bits| MaskRef {
                                bits,
                                per_head: false,
                            });
                            let timer = ops.start_timer()?;
                            for _ in 0..n {
                                if bwd {
                                    ops.attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, m, s)?;
                                } else {
                                    ops.attention_fwd(out, lse, q, k, v, m, s)?;
                                }
                            }
                            timer.stop()
                        };
                        let pass = if bwd { "bwd" } else { "fwd" };
                        cases.push(DeviceCase {
                            kernel: "attention",
                            name: format!("attention/{pass}{suffix}/{label}"),
                            device: device.to_string(),
                            unit: Unit::Flops,
                            work: if bwd {
                                bwd_flops(pairs, h, d)
                            } else {
                                fwd_flops(pairs, h, d)
                            },
                            run: Box::new(run),
                        });
                    }
                }
            }
        }
    }
    Ok(cases)
}

/// The GPU attention cases (fused = the default Ops path, and `_ref` = the reference
/// kernels) on `cuda:0`, or the reason they are skipped.
pub fn gpu_cases(want: &dyn Fn(&str) -> bool) -> std::result::Result<Vec<DeviceCase>, String> {
    if !want("attention") {
        return Ok(vec![]);
    }
    let ops = Arc::new(CudaOps::new(0).map_err(|e| e.to_string())?);
    let fused: Rc<dyn Fn(&CudaOps)> = Rc::new(|o: &CudaOps| o.set_fused_attention(true));
    let reference: Rc<dyn Fn(&CudaOps)> = Rc::new(|o: &CudaOps| o.set_fused_attention(false));
    ops_cases(
        ops,
        "cuda:0",
        &AttnSweep::gpu(),
        gpu_shape,
        &[("", fused), ("_ref", reference)],
    )
    .map_err(|e| format!("building the GPU attention cases failed: {e}"))
}

/// Time a device case: warm-up, then `t.samples` samples of enough calls to last
/// `t.min_sample_secs` each (device seconds per call).
pub fn time_device_case(case: &mut DeviceCase, t: super::Timing) -> Result<Vec<f64>> {
    let mut warm = 0.0;
    let mut calls = 0u64;
    while warm < t.warmup_secs || calls == 0 {
        warm += (case.run)(1)?;
        calls += 1;
        if calls >= 1000 {
            break;
        }
    }
    let per_call = (warm / calls as f64).max(1e-9);
    let reps = ((t.min_sample_secs / per_call).ceil() as u64).max(1);
    (0..t.samples.max(1))
        .map(|_| Ok((case.run)(reps)? / reps as f64))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Mask dump for the peer script.

/// Write the masks of `sweep` (the GPU sweep: [`AttnSweep::gpu`]) at the GPU shapes (ASA and random; `ones`/`causal` the peer builds itself) for
/// benches/peers/torch_attention.py: `DIR/attn_t{T}_{mask}.u32` holds the `(B, 1, T, ⌈T/32⌉)`
/// words little-endian, `DIR/index.json` lists every case (T, D, B, H, mask, its file, the
/// allowed pairs per head and the non-empty tile fraction). Returns the index path.
pub fn dump_masks(dir: &Path, sweep: &AttnSweep) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut masks = Vec::new();
    let mut cases = Vec::new();
    for &t in &sweep.seq_lens {
        let b = gpu_shape(t, 64).0;
        for &kind in &sweep.masks {
            let mask = build_mask(kind, b, t)?;
            let label = kind.label();
            let file = match &mask {
                Some(m) if kind != MaskKind::Ones => {
                    let name = format!("attn_t{t}_{label}.u32");
                    let bytes: Vec<u8> = m.words().iter().flat_map(|w| w.to_le_bytes()).collect();
                    crate::io::write_atomic(&dir.join(&name), &bytes)?;
                    Some(name)
                }
                _ => None,
            };
            masks.push(serde_json::json!({
                "t": t,
                "b": b,
                "mask": label,
                "file": file,
                "words_per_row": t.div_ceil(32),
                "allowed_pairs": allowed_pairs(mask.as_ref(), b, t),
                "nonempty_tile_fraction": nonempty_tile_fraction(mask.as_ref(), b, t)?,
            }));
            for &d in &sweep.head_dims {
                let (_, h) = gpu_shape(t, d);
                let s = AttnShape { b, t, h, d };
                cases.push(serde_json::json!({
                    "t": t, "d": d, "b": b, "h": h, "mask": label,
                    "name_suffix": shape_label(&s, &label),
                }));
            }
        }
    }
    let index = serde_json::json!({
        "format": 1,
        "layout": "u32 little-endian, (B, 1, T, ceil(T/32)) row-major; key j of query i at \
                   bit j%32 of word j/32; effective mask = mask AND (j <= i)",
        "tile": TILE,
        "work": "fwd FLOPs = 4*D*H*allowed_pairs, bwd = 2.5x fwd",
        "masks": masks,
        "cases": cases,
    });
    let path = dir.join("index.json");
    let text = serde_json::to_string_pretty(&index).expect("a JSON value always serialises");
    crate::io::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// The ratio summary.

/// Split `attention/{pass}{_variant}/b…_h…_t…_d…_{mask}` into `(pass, variant, shape, mask)`.
fn parse_name(name: &str) -> Option<(&str, &str, &str, &str)> {
    let mut it = name.splitn(3, '/');
    if it.next()? != "attention" {
        return None;
    }
    let pv = it.next()?;
    let label = it.next()?;
    let (pass, variant) = pv.split_once('_').unwrap_or((pv, ""));
    // The shape is `b.._h.._t.._d..`; the mask is everything after the fourth `_`.
    let mut cut = 0;
    for _ in 0..4 {
        cut += label[cut..].find('_')? + 1;
    }
    Some((pass, variant, &label[..cut - 1], &label[cut..]))
}

/// Lines of the attention ratio table for `figures`: per sweep case (default variant), the
/// time relative to the same kernel with the all-ones mask next to the fraction of non-empty
/// tiles (the time a tile-skipping kernel should approach), and the speed-up over the naive
/// CPU attention (CPU) or the reference kernels (GPU). Empty when no sweep case ran.
pub fn summary(figures: &[Figure]) -> Vec<String> {
    let tiles = tile_registry()
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    let find = |device: &str, pass: &str, variant: &str, shape: &str, mask: &str| {
        figures.iter().find(|f| {
            f.device == device && parse_name(&f.name) == Some((pass, variant, shape, mask))
        })
    };
    let mut lines = Vec::new();
    for f in figures {
        let Some((pass, "", shape, mask)) = parse_name(&f.name) else {
            continue;
        };
        let key = format!("{shape}_{mask}");
        let Some(frac) = tiles.get(&key) else {
            continue; // not a sweep case (e.g. the model-shape cases)
        };
        if lines.is_empty() {
            lines.push(format!(
                "{:<44} {:>7} {:>10} {:>8} {:>9} {:>10}",
                "attention case", "device", "FLOP/s", "tiles", "t/t_ones", "vs base"
            ));
        }
        let ones = find(&f.device, pass, "", shape, "ones")
            .map(|o| format!("{:.2}", f.median_secs / o.median_secs))
            .unwrap_or_else(|| "-".into());
        let base_variant = if f.device == "cpu" { "naive" } else { "ref" };
        let base = find(&f.device, pass, base_variant, shape, mask)
            .map(|b| format!("{:.2}x {base_variant}", b.median_secs / f.median_secs))
            .unwrap_or_else(|| "-".into());
        lines.push(format!(
            "{:<44} {:>7} {:>10} {:>7.1}% {:>9} {:>10}",
            format!("{pass}/{key}"),
            f.device,
            format!("{:.1} G", f.throughput / 1e9),
            frac * 100.0,
            ones,
            base
        ));
    }
    lines
}
