//! Masked flash attention on the CPU against a dense f64 reference, finite differences,
//! tile classification against brute force, and bad-input handling.

// The dense reference reads most clearly as plain index loops.
#![allow(clippy::needless_range_loop)]

use asa_lth::backend::cpu::attention::{attention_bwd, attention_fwd, MaskView, TILE};
use asa_lth::backend::cpu::isa::{with_level, Isa};
use asa_lth::backend::AttnShape;
use asa_lth::mask::{BitMask, TileClass, TileMap};
use asa_lth::Error;

// ---------------------------------------------------------------------------------------
// Helpers.

/// xorshift64* — small, seeded, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unif(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-scale, scale], never exactly zero.
    fn sym(&mut self, scale: f64) -> f64 {
        let x = 2.0 * self.unif() - 1.0;
        scale * if x == 0.0 { 0.5 } else { x }
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.sym(scale)).collect()
    }
}

fn shape(b: usize, t: usize, h: usize, d: usize) -> AttnShape {
    AttnShape { b, t, h, d }
}

fn to32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

/// Effective-mask oracle: mask bit (if any) ∧ causal.
fn allowed(mask: Option<&BitMask>, b: usize, h: usize, i: usize, j: usize) -> bool {
    j <= i
        && mask.is_none_or(|m| {
            let hm = if m.heads() == 1 { 0 } else { h };
            m.get(b, hm, i, j)
        })
}

struct Inputs {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
}

fn inputs(rng: &mut Rng, s: AttnShape, qk_scale: f64) -> Inputs {
    let n = s.b * s.t * s.h * s.d;
    Inputs {
        q: rng.vec(n, qk_scale),
        k: rng.vec(n, qk_scale),
        v: rng.vec(n, 1.0),
    }
}

/// Dense reference forward: returns (out, lse); fully masked rows → out 0, lse +∞.
fn ref_fwd(x: &Inputs, mask: Option<&BitMask>, s: AttnShape) -> (Vec<f64>, Vec<f64>) {
    let (t, d, c) = (s.t, s.d, s.h * s.d);
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; s.b * t * c];
    let mut lse = vec![0.0; s.b * s.h * t];
    let mut sc = vec![0.0; t];
    for b in 0..s.b {
        for h in 0..s.h {
            for i in 0..t {
                let qi = &x.q[(b * t + i) * c + h * d..][..d];
                let mut m = f64::NEG_INFINITY;
                for j in 0..t {
                    sc[j] = if allowed(mask, b, h, i, j) {
                        let kj = &x.k[(b * t + j) * c + h * d..][..d];
                        scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                    } else {
                        f64::NEG_INFINITY
                    };
                    m = m.max(sc[j]);
                }
                let o = &mut out[(b * t + i) * c + h * d..][..d];
                if m == f64::NEG_INFINITY {
                    lse[(b * s.h + h) * t + i] = f64::INFINITY;
                    continue;
                }
                let mut l = 0.0;
                for j in 0..t {
                    let p = (sc[j] - m).exp();
                    l += p;
                    if p != 0.0 {
                        let vj = &x.v[(b * t + j) * c + h * d..][..d];
                        for (oo, vv) in o.iter_mut().zip(vj) {
                            *oo += p * vv;
                        }
                    }
                }
                o.iter_mut().for_each(|v| *v /= l);
                lse[(b * s.h + h) * t + i] = m + l.ln();
            }
        }
    }
    (out, lse)
}

/// Dense analytic gradient of `Σ out∘dout` (computed independently of the kernel's
/// formulation: Di = Σ_j P_ij dP_ij).
fn ref_bwd(
    x: &Inputs,
    dout: &[f64],
    mask: Option<&BitMask>,
    s: AttnShape,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (t, d, c) = (s.t, s.d, s.h * s.d);
    let scale = 1.0 / (d as f64).sqrt();
    let n = s.b * t * c;
    let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let row = |b: usize, i: usize, h: usize| (b * t + i) * c + h * d;
    let mut p = vec![0.0; t];
    let mut dp = vec![0.0; t];
    for b in 0..s.b {
        for h in 0..s.h {
            for i in 0..t {
                let qi = row(b, i, h);
                let mut m = f64::NEG_INFINITY;
                for j in 0..t {
                    p[j] = if allowed(mask, b, h, i, j) {
                        scale * dot(&x.q[qi..qi + d], &x.k[row(b, j, h)..][..d])
                    } else {
                        f64::NEG_INFINITY
                    };
                    m = m.max(p[j]);
                }
                if m == f64::NEG_INFINITY {
                    continue;
                }
                let mut l = 0.0;
                for pj in p.iter_mut() {
                    *pj = (*pj - m).exp();
                    l += *pj;
                }
                p.iter_mut().for_each(|v| *v /= l);
                let go = &dout[qi..qi + d];
                let mut di = 0.0;
                for j in 0..t {
                    dp[j] = dot(go, &x.v[row(b, j, h)..][..d]);
                    di += p[j] * dp[j];
                }
                for j in 0..t {
                    if p[j] == 0.0 {
                        continue;
                    }
                    let kj = row(b, j, h);
                    let ds = p[j] * (dp[j] - di) * scale;
                    for e in 0..d {
                        dq[qi + e] += ds * x.k[kj + e];
                        dk[kj + e] += ds * x.q[qi + e];
                        dv[kj + e] += p[j] * go[e];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

/// Random Bernoulli mask (`heads` = 1 or H) with some rows fully masked on purpose.
fn random_mask(rng: &mut Rng, b: usize, heads: usize, t: usize, density: f64) -> BitMask {
    let mut m = BitMask::from_fn(b, heads, t, |_, _, _, _| rng.unif() < density);
    // Kill a few whole rows (row 3 mod 7 of the first sequence and head).
    for i in (3..t).step_by(7) {
        for j in 0..t {
            m.set(0, 0, i, j, false);
        }
    }
    m
}

fn assert_close64(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_infinite() {
            assert_eq!(g, w, "{what}[{idx}]: got {g}, want {w}");
            continue;
        }
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{idx}]: got {g}, want {w}, diff {:e}",
            (g - w).abs()
        );
    }
}

/// Relative L2 error of an f32 result against an f64 reference (infinite entries must match
/// exactly and are left out of the norm).
fn rel_l2_32(what: &str, got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (mut num, mut den) = (0.0, 0.0);
    for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(!g.is_nan(), "{what}[{idx}] is NaN");
        if w.is_infinite() {
            assert_eq!(g as f64, w, "{what}[{idx}]");
            continue;
        }
        num += (g as f64 - w).powi(2);
        den += w * w;
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

#[derive(Clone, Copy, Debug)]
enum MaskKind {
    None,
    Shared(f64),
    PerHead(f64),
}

fn mask_kinds() -> Vec<MaskKind> {
    let mut v = vec![MaskKind::None];
    for d in [0.0, 0.05, 0.3, 1.0] {
        v.push(MaskKind::Shared(d));
        v.push(MaskKind::PerHead(d));
    }
    v
}

fn make_mask(rng: &mut Rng, kind: MaskKind, s: AttnShape) -> Option<BitMask> {
    match kind {
        MaskKind::None => None,
        MaskKind::Shared(d) => Some(random_mask(rng, s.b, 1, s.t, d)),
        MaskKind::PerHead(d) => Some(random_mask(rng, s.b, s.h, s.t, d)),
    }
}

const TS: [usize; 6] = [1, 37, 64, 65, 130, 200];
const BHD: [(usize, usize, usize); 4] = [(2, 2, 8), (1, 3, 5), (2, 1, 64), (1, 2, 20)];

// ---------------------------------------------------------------------------------------
// Forward.

#[test]
fn forward_matches_dense_reference() {
    let mut rng = Rng::new(1);
    let mut worst32 = 0f64;
    for &t in &TS {
        for &(b, h, d) in &BHD {
            for kind in mask_kinds() {
                let s = shape(b, t, h, d);
                let x = inputs(&mut rng, s, 1.5);
                let mask = make_mask(&mut rng, kind, s);
                let view = mask.as_ref().map(MaskView::from);
                let (want_o, want_l) = ref_fwd(&x, mask.as_ref(), s);
                let ctx = format!("T={t} B={b} H={h} D={d} {kind:?}");

                // f64 instantiation, outputs poisoned first.
                let mut out = vec![f64::NAN; want_o.len()];
                let mut lse = vec![f64::NAN; want_l.len()];
                attention_fwd(&mut out, &mut lse, &x.q, &x.k, &x.v, view, s).unwrap();
                assert_close64(&format!("out f64 {ctx}"), &out, &want_o, 1e-12);
                assert_close64(&format!("lse f64 {ctx}"), &lse, &want_l, 1e-12);

                // f32 instantiation.
                let mut out32 = vec![f32::NAN; want_o.len()];
                let mut lse32 = vec![f32::NAN; want_l.len()];
                let (q, k, v) = (to32(&x.q), to32(&x.k), to32(&x.v));
                attention_fwd(&mut out32, &mut lse32, &q, &k, &v, view, s).unwrap();
                // Compare against the reference on the f32-rounded inputs.
                let x32 = Inputs {
                    q: q.iter().map(|&v| v as f64).collect(),
                    k: k.iter().map(|&v| v as f64).collect(),
                    v: v.iter().map(|&v| v as f64).collect(),
                };
                let (wo, wl) = ref_fwd(&x32, mask.as_ref(), s);
                let eo = rel_l2_32(&format!("out f32 {ctx}"), &out32, &wo);
                let el = rel_l2_32(&format!("lse f32 {ctx}"), &lse32, &wl);
                assert!(eo <= 1e-5, "out f32 rel L2 {eo:e} {ctx}");
                assert!(el <= 1e-5, "lse f32 rel L2 {el:e} {ctx}");
                worst32 = worst32.max(eo).max(el);
            }
        }
    }
    eprintln!("worst f32 forward rel L2: {worst32:e}");
}

#[test]
fn fully_masked_rows_give_zero_and_infinite_lse() {
    let mut rng = Rng::new(2);
    let s = shape(2, 70, 2, 16);
    let x = inputs(&mut rng, s, 1.0);
    // Per-head mask: head 1 of sequence 1 allows nothing; other rows random.
    let mask = BitMask::from_fn(2, 2, 70, |b, h, i, _| !(b == 1 && h == 1) && i % 5 != 2);
    let mut out = vec![f32::NAN; x.q.len()];
    let mut lse = vec![f32::NAN; 2 * 2 * 70];
    let (q, k, v) = (to32(&x.q), to32(&x.k), to32(&x.v));
    attention_fwd(&mut out, &mut lse, &q, &k, &v, Some((&mask).into()), s).unwrap();
    for b in 0..2 {
        for h in 0..2 {
            for i in 0..70 {
                let dead = (b == 1 && h == 1) || i % 5 == 2;
                let l = lse[(b * 2 + h) * 70 + i];
                let o = &out[(b * 70 + i) * 32 + h * 16..][..16];
                assert!(!l.is_nan() && o.iter().all(|v| !v.is_nan()));
                if dead {
                    assert_eq!(l, f32::INFINITY, "b={b} h={h} i={i}");
                    assert!(o.iter().all(|&v| v == 0.0), "b={b} h={h} i={i}");
                } else {
                    assert!(l.is_finite(), "b={b} h={h} i={i}");
                }
            }
        }
    }
    // Backward: no NaN, and dead query rows get zero dq.
    let dout = to32(&rng.vec(x.q.len(), 1.0));
    let (mut dq, mut dk, mut dv) = (
        vec![0f32; q.len()],
        vec![0f32; q.len()],
        vec![0f32; q.len()],
    );
    attention_bwd(
        &mut dq,
        &mut dk,
        &mut dv,
        &dout,
        &q,
        &k,
        &v,
        &out,
        &lse,
        Some((&mask).into()),
        s,
    )
    .unwrap();
    for g in [&dq, &dk, &dv] {
        assert!(g.iter().all(|v| v.is_finite()));
    }
    for b in 0..2 {
        for h in 0..2 {
            for i in 0..70 {
                if (b == 1 && h == 1) || i % 5 == 2 {
                    let r = &dq[(b * 70 + i) * 32 + h * 16..][..16];
                    assert!(r.iter().all(|&v| v == 0.0), "dq b={b} h={h} i={i}");
                }
                if b == 1 && h == 1 {
                    let r = &dk[(b * 70 + i) * 32 + h * 16..][..16];
                    assert!(r.iter().all(|&v| v == 0.0), "dk b={b} h={h} i={i}");
                    let r = &dv[(b * 70 + i) * 32 + h * 16..][..16];
                    assert!(r.iter().all(|&v| v == 0.0), "dv b={b} h={h} i={i}");
                }
            }
        }
    }
}

#[test]
fn causal_only_equals_all_ones_mask() {
    let mut rng = Rng::new(3);
    let s = shape(2, 130, 2, 16);
    let x = inputs(&mut rng, s, 1.0);
    let ones = BitMask::all_ones(2, 130);
    let run = |m: Option<MaskView>| {
        let mut out = vec![0.0; x.q.len()];
        let mut lse = vec![0.0; 2 * 2 * 130];
        attention_fwd(&mut out, &mut lse, &x.q, &x.k, &x.v, m, s).unwrap();
        (out, lse)
    };
    let (a, la) = run(None);
    let (b, lb) = run(Some((&ones).into()));
    assert_close64("out", &a, &b, 1e-14);
    assert_close64("lse", &la, &lb, 1e-14);
}

// ---------------------------------------------------------------------------------------
// Backward.

#[test]
fn backward_matches_dense_reference_and_accumulates() {
    let mut rng = Rng::new(4);
    let mut worst32 = 0f64;
    for &t in &TS {
        for &(b, h, d) in &BHD {
            for kind in mask_kinds() {
                let s = shape(b, t, h, d);
                let x = inputs(&mut rng, s, 1.5);
                let mask = make_mask(&mut rng, kind, s);
                let view = mask.as_ref().map(MaskView::from);
                let ctx = format!("T={t} B={b} H={h} D={d} {kind:?}");
                let n = x.q.len();
                let dout = rng.vec(n, 1.0);
                let (wq, wk, wv) = ref_bwd(&x, &dout, mask.as_ref(), s);

                // f64: run forward, then backward into pre-filled buffers.
                let mut out = vec![0.0; n];
                let mut lse = vec![0.0; b * h * t];
                attention_fwd(&mut out, &mut lse, &x.q, &x.k, &x.v, view, s).unwrap();
                let pre = [rng.vec(n, 1.0), rng.vec(n, 1.0), rng.vec(n, 1.0)];
                let (mut dq, mut dk, mut dv) = (pre[0].clone(), pre[1].clone(), pre[2].clone());
                attention_bwd(
                    &mut dq, &mut dk, &mut dv, &dout, &x.q, &x.k, &x.v, &out, &lse, view, s,
                )
                .unwrap();
                for (name, got, p, want) in [
                    ("dq", &dq, &pre[0], &wq),
                    ("dk", &dk, &pre[1], &wk),
                    ("dv", &dv, &pre[2], &wv),
                ] {
                    let delta: Vec<f64> = got.iter().zip(p).map(|(g, p)| g - p).collect();
                    assert_close64(&format!("{name} f64 {ctx}"), &delta, want, 1e-11);
                }

                // f32 against the reference on the f32-rounded inputs.
                let (q, k, v, go) = (to32(&x.q), to32(&x.k), to32(&x.v), to32(&dout));
                let x32 = Inputs {
                    q: q.iter().map(|&v| v as f64).collect(),
                    k: k.iter().map(|&v| v as f64).collect(),
                    v: v.iter().map(|&v| v as f64).collect(),
                };
                let go64: Vec<f64> = go.iter().map(|&v| v as f64).collect();
                let (rq, rk, rv) = ref_bwd(&x32, &go64, mask.as_ref(), s);
                let mut out32 = vec![0f32; n];
                let mut lse32 = vec![0f32; b * h * t];
                attention_fwd(&mut out32, &mut lse32, &q, &k, &v, view, s).unwrap();
                let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
                attention_bwd(
                    &mut dq, &mut dk, &mut dv, &go, &q, &k, &v, &out32, &lse32, view, s,
                )
                .unwrap();
                for (name, got, want) in [("dq", &dq, &rq), ("dk", &dk, &rk), ("dv", &dv, &rv)] {
                    let e = rel_l2_32(&format!("{name} f32 {ctx}"), got, want);
                    assert!(e <= 1e-5, "{name} f32 rel L2 {e:e} {ctx}");
                    worst32 = worst32.max(e);
                }
            }
        }
    }
    eprintln!("worst f32 backward rel L2: {worst32:e}");
}

/// The portable build of the kernels agrees with the reference too (the other tests run
/// the best build the CPU has, e.g. AVX2+FMA). Other tests running meanwhile may also take
/// the portable path; every path is correct.
#[test]
fn portable_build_matches_reference() {
    with_level(Isa::Portable, isa_level_matches_reference);
}

fn isa_level_matches_reference() {
    let mut rng = Rng::new(8);
    for (b, t, h, d, kind) in [
        (2, 130, 2, 16, MaskKind::PerHead(0.3)),
        (1, 65, 3, 5, MaskKind::None),
        (1, 70, 2, 48, MaskKind::Shared(0.05)),
        (2, 37, 1, 64, MaskKind::Shared(1.0)),
    ] {
        let s = shape(b, t, h, d);
        let x = inputs(&mut rng, s, 1.5);
        let mask = make_mask(&mut rng, kind, s);
        let view = mask.as_ref().map(MaskView::from);
        let n = x.q.len();
        let (wo, wl) = ref_fwd(&x, mask.as_ref(), s);
        let mut out = vec![f64::NAN; n];
        let mut lse = vec![f64::NAN; b * h * t];
        attention_fwd(&mut out, &mut lse, &x.q, &x.k, &x.v, view, s).unwrap();
        assert_close64("portable out", &out, &wo, 1e-12);
        assert_close64("portable lse", &lse, &wl, 1e-12);
        let dout = rng.vec(n, 1.0);
        let (wq, wk, wv) = ref_bwd(&x, &dout, mask.as_ref(), s);
        let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        attention_bwd(
            &mut dq, &mut dk, &mut dv, &dout, &x.q, &x.k, &x.v, &out, &lse, view, s,
        )
        .unwrap();
        assert_close64("portable dq", &dq, &wq, 1e-11);
        assert_close64("portable dk", &dk, &wk, 1e-11);
        assert_close64("portable dv", &dv, &wv, 1e-11);
        let (q, k, v) = (to32(&x.q), to32(&x.k), to32(&x.v));
        let mut out32 = vec![f32::NAN; n];
        let mut lse32 = vec![f32::NAN; b * h * t];
        attention_fwd(&mut out32, &mut lse32, &q, &k, &v, view, s).unwrap();
        assert!(rel_l2_32("portable out f32", &out32, &wo) < 1e-5);
    }
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = Rng::new(5);
    // Small shapes; T = 70 crosses a tile boundary.
    for (b, t, h, d, kind) in [
        (2, 9, 2, 4, MaskKind::None),
        (1, 70, 2, 3, MaskKind::PerHead(0.3)),
        (2, 13, 1, 5, MaskKind::Shared(0.5)),
    ] {
        let s = shape(b, t, h, d);
        let mut x = inputs(&mut rng, s, 1.5);
        let mask = make_mask(&mut rng, kind, s);
        let view = mask.as_ref().map(MaskView::from);
        let n = x.q.len();
        let r = rng.vec(n, 1.0);
        let loss = |x: &Inputs| {
            let mut out = vec![0.0; n];
            let mut lse = vec![0.0; b * h * t];
            attention_fwd(&mut out, &mut lse, &x.q, &x.k, &x.v, view, s).unwrap();
            out.iter().zip(&r).map(|(o, r)| o * r).sum::<f64>()
        };
        let mut out = vec![0.0; n];
        let mut lse = vec![0.0; b * h * t];
        attention_fwd(&mut out, &mut lse, &x.q, &x.k, &x.v, view, s).unwrap();
        let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        attention_bwd(
            &mut dq, &mut dk, &mut dv, &r, &x.q, &x.k, &x.v, &out, &lse, view, s,
        )
        .unwrap();
        let eps = 1e-5;
        let mut worst = 0f64;
        for which in 0..3 {
            for idx in 0..n {
                let orig = [&x.q, &x.k, &x.v][which][idx];
                let set = |x: &mut Inputs, val: f64| match which {
                    0 => x.q[idx] = val,
                    1 => x.k[idx] = val,
                    _ => x.v[idx] = val,
                };
                set(&mut x, orig + eps);
                let lp = loss(&x);
                set(&mut x, orig - eps);
                let lm = loss(&x);
                set(&mut x, orig);
                let fd = (lp - lm) / (2.0 * eps);
                let an = [&dq, &dk, &dv][which][idx];
                let err = (fd - an).abs() / (1.0 + an.abs());
                worst = worst.max(err);
                assert!(
                    err < 1e-8,
                    "{} [{idx}] fd {fd} analytic {an} (B={b} T={t} H={h} D={d} {kind:?})",
                    ["dq", "dk", "dv"][which]
                );
            }
        }
        eprintln!("finite differences B={b} T={t} H={h} D={d} {kind:?}: worst {worst:e}");
    }
}

// ---------------------------------------------------------------------------------------
// Tile classification.

fn brute_class(m: &BitMask, b: usize, h: usize, tile: usize, qt: usize, kt: usize) -> TileClass {
    let t = m.t();
    let (mut any, mut all) = (false, true);
    for i in qt * tile..((qt + 1) * tile).min(t) {
        for j in kt * tile..((kt + 1) * tile).min(t) {
            if j <= i && m.get(b, h, i, j) {
                any = true;
            } else {
                all = false;
            }
        }
    }
    match (any, all) {
        (false, _) => TileClass::Empty,
        (true, true) => TileClass::Full,
        (true, false) => TileClass::Partial,
    }
}

fn check_map(m: &BitMask, map: &TileMap, tile: usize) {
    let nt = m.t().div_ceil(tile);
    assert_eq!(map.nt(), nt);
    for b in 0..m.b() {
        for h in 0..m.heads() {
            for qt in 0..nt {
                for kt in 0..nt {
                    assert_eq!(
                        map.class(b, h, qt, kt),
                        brute_class(m, b, h, tile, qt, kt),
                        "T={} tile={tile} b={b} h={h} qt={qt} kt={kt}",
                        m.t()
                    );
                }
            }
        }
    }
    let fwd = map.forward_lists();
    let bwd = map.backward_lists();
    let packed = fwd.packed();
    assert_eq!(fwd.groups(), m.b() * m.heads() * nt);
    assert_eq!(bwd.groups(), m.b() * m.heads() * nt);
    for g in 0..m.b() * m.heads() {
        let (b, h) = (g / m.heads(), g % m.heads());
        for x in 0..nt {
            let want: Vec<(u32, TileClass)> = (0..nt)
                .map(|y| (y as u32, map.class(b, h, x, y)))
                .filter(|e| e.1 != TileClass::Empty)
                .collect();
            let (tiles, classes) = fwd.group(g * nt + x);
            let got: Vec<_> = tiles.iter().copied().zip(classes.iter().copied()).collect();
            assert_eq!(got, want, "forward list g={g} qt={x}");
            let a = fwd.offsets[g * nt + x] as usize;
            for (e, &(kt, c)) in want.iter().enumerate() {
                assert_eq!(packed[a + e], kt << 1 | u32::from(c == TileClass::Partial));
            }
            let want: Vec<(u32, TileClass)> = (0..nt)
                .map(|y| (y as u32, map.class(b, h, y, x)))
                .filter(|e| e.1 != TileClass::Empty)
                .collect();
            let (tiles, classes) = bwd.group(g * nt + x);
            let got: Vec<_> = tiles.iter().copied().zip(classes.iter().copied()).collect();
            assert_eq!(got, want, "backward list g={g} kt={x}");
        }
    }
}

#[test]
fn tile_classes_match_brute_force() {
    let mut rng = Rng::new(6);
    for &tile in &[64usize, 128, 1, 5, 32, 33] {
        for &t in &[1usize, 2, 37, 63, 64, 65, 129, 200, 257] {
            for density in [0.0, 0.02, 0.5, 0.97, 1.0] {
                let mut m = BitMask::from_fn(2, 2, t, |_, _, _, _| rng.unif() < density);
                // Make some blocks exactly full / exactly empty to exercise both outcomes.
                if t > 70 {
                    for i in 0..t {
                        for j in 0..t.min(70) {
                            m.set(1, 0, i, j, i % 3 != 0);
                        }
                    }
                }
                let map = TileMap::from_mask(&m, tile).unwrap();
                check_map(&m, &map, tile);
            }
        }
    }
}

#[test]
fn tile_classes_all_ones_and_causal_agree() {
    for &tile in &[64usize, 128, 1, 7] {
        for &t in &[1usize, 37, 64, 65, 128, 129, 200] {
            let ones = BitMask::all_ones(3, t);
            let a = TileMap::from_mask(&ones, tile).unwrap();
            let c = TileMap::causal(3, t, tile).unwrap();
            check_map(&ones, &a, tile);
            assert_eq!(a, c, "T={t} tile={tile}");
            let nt = t.div_ceil(tile);
            let (e, f, p) = a.counts();
            assert_eq!(e + f + p, 3 * nt * (nt + 1) / 2);
        }
    }
}

#[test]
fn tile_size_matches_kernel_assumption() {
    assert_eq!(TILE, 64);
    assert!(TileMap::causal(1, 10, 0).is_err());
}

// ---------------------------------------------------------------------------------------
// BitMask.

#[test]
fn bitmask_roundtrip_and_normalisation() {
    let mut rng = Rng::new(7);
    let mut m = BitMask::from_fn(2, 3, 37, |_, _, _, _| rng.unif() < 0.5);
    assert_eq!(m.words_per_row(), 2);
    assert_eq!(m.words().len(), 2 * 3 * 37 * 2);
    let snapshot: Vec<bool> = (0..2 * 3 * 37 * 37)
        .map(|x| m.get(x / (3 * 37 * 37), x / (37 * 37) % 3, x / 37 % 37, x % 37))
        .collect();
    m.set(1, 2, 36, 36, true);
    assert!(m.get(1, 2, 36, 36));
    m.set(1, 2, 36, 36, false);
    assert!(!m.get(1, 2, 36, 36));
    m.set(1, 2, 36, 36, snapshot[snapshot.len() - 1]);
    // Words with junk beyond T are normalised.
    let mut words = m.words().to_vec();
    for row in words.chunks_mut(2) {
        row[1] |= !0u32 << 5;
    }
    let m2 = BitMask::from_words(2, 3, 37, words).unwrap();
    assert_eq!(m2, m);
    for row in m2.words().chunks(2) {
        assert_eq!(row[1] >> 5, 0);
    }
    // all_ones: T bits set per row, causal count = T(T+1)/2 per sequence.
    let ones = BitMask::all_ones(2, 37);
    assert!(ones
        .words()
        .chunks(2)
        .all(|r| r[0] == u32::MAX && r[1] == 0x1F));
    assert_eq!(ones.causal_count(), 2 * 37 * 38 / 2);
    assert_eq!(ones.row(1, 0, 5), &[u32::MAX, 0x1F]);
}

#[test]
fn bitmask_errors_are_clear() {
    let err = BitMask::from_words(2, 1, 37, vec![0; 10]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Mask(_)), "{msg}");
    assert!(
        msg.contains("148") && msg.contains("got 10") && msg.contains("T = 37"),
        "{msg}"
    );

    let m = BitMask::all_ones(2, 16);
    assert!(m.validate_for(&shape(2, 16, 4, 8)).is_ok());
    let e = m.validate_for(&shape(3, 16, 4, 8)).unwrap_err().to_string();
    assert!(e.contains("batch 2") && e.contains("is 3"), "{e}");
    let e = m.validate_for(&shape(2, 17, 4, 8)).unwrap_err().to_string();
    assert!(e.contains("T = 16") && e.contains("T = 17"), "{e}");
    let ph = BitMask::from_fn(2, 3, 16, |_, _, _, _| true);
    assert!(ph.validate_for(&shape(2, 16, 3, 8)).is_ok());
    let e = ph
        .validate_for(&shape(2, 16, 4, 8))
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 heads") && e.contains("H = 4"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Bad inputs: errors, never panics.

#[test]
fn bad_inputs_are_errors() {
    let s = shape(2, 37, 2, 8);
    let n = 2 * 37 * 16;
    let (q, k, v) = (vec![0.1f32; n], vec![0.2f32; n], vec![0.3f32; n]);
    let mut out = vec![0f32; n];
    let mut lse = vec![0f32; 2 * 2 * 37];

    // Wrong mask length (shared mask expects 2·1·37·2 = 148 words).
    let bad = vec![u32::MAX; 147];
    let mv = MaskView {
        bits: &bad,
        per_head: false,
    };
    let err = attention_fwd(&mut out, &mut lse, &q, &k, &v, Some(mv), s).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Mask(_)), "{msg}");
    assert!(
        msg.contains("T = 37") && msg.contains("148") && msg.contains("got 147"),
        "{msg}"
    );
    // A shared-length mask flagged per-head is also wrong (expects 296).
    let good_shared = vec![u32::MAX; 148];
    let mv = MaskView {
        bits: &good_shared,
        per_head: true,
    };
    let msg = attention_fwd(&mut out, &mut lse, &q, &k, &v, Some(mv), s)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("296") && msg.contains("got 148"), "{msg}");

    // Wrong q length.
    let short = vec![0.1f32; n - 1];
    let err = attention_fwd(&mut out, &mut lse, &short, &k, &v, None, s).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Shape { tensor: "q", got, expected, .. } if got == n - 1 && expected == n),
        "{msg}"
    );
    assert!(
        msg.contains("`q`") && msg.contains("attention_fwd"),
        "{msg}"
    );

    // Wrong lse length.
    let mut short_lse = vec![0f32; 3];
    let err = attention_fwd(&mut out, &mut short_lse, &q, &k, &v, None, s).unwrap_err();
    assert!(matches!(err, Error::Shape { tensor: "lse", .. }), "{err}");

    // Backward: wrong dv length and wrong mask length.
    let (mut dq, mut dk) = (vec![0f32; n], vec![0f32; n]);
    let mut dv = vec![0f32; n + 1];
    let err = attention_bwd(
        &mut dq, &mut dk, &mut dv, &q, &q, &k, &v, &out, &lse, None, s,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape { tensor: "dv", .. }), "{err}");
    let mut dv = vec![0f32; n];
    let mv = MaskView {
        bits: &bad,
        per_head: false,
    };
    let err = attention_bwd(
        &mut dq,
        &mut dk,
        &mut dv,
        &q,
        &q,
        &k,
        &v,
        &out,
        &lse,
        Some(mv),
        s,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Mask(_)), "{err}");
    assert!(dq.iter().chain(&dk).chain(&dv).all(|&x| x == 0.0));

    // D = 0 with rows to compute is rejected; an empty batch is fine.
    let err = attention_fwd(
        &mut [],
        &mut [0f32; 4],
        &[],
        &[],
        &[],
        None,
        shape(1, 2, 2, 0),
    );
    assert!(err.is_err());
    attention_fwd::<f32>(&mut [], &mut [], &[], &[], &[], None, shape(0, 5, 2, 8)).unwrap();
}

// ---------------------------------------------------------------------------------------
// Timing (run with `--ignored --nocapture`; no assertion on time).

#[test]
#[ignore]
fn timing_fwd_bwd_f32() {
    use std::time::Instant;
    for (b, h, t, d) in [(16, 2, 128, 64), (1, 8, 2048, 64)] {
        let s = shape(b, t, h, d);
        let mut rng = Rng::new(9);
        let n = b * t * h * d;
        let (q, k, v, go) = (
            to32(&rng.vec(n, 1.0)),
            to32(&rng.vec(n, 1.0)),
            to32(&rng.vec(n, 1.0)),
            to32(&rng.vec(n, 1.0)),
        );
        let mut out = vec![0f32; n];
        let mut lse = vec![0f32; b * h * t];
        let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let masks: Vec<(&str, Option<BitMask>)> = vec![
            ("causal", None),
            (
                "mask 0.3",
                Some(BitMask::from_fn(b, 1, t, |_, _, _, _| rng.unif() < 0.3)),
            ),
            (
                "block-sparse",
                Some(BitMask::from_fn(b, 1, t, |_, _, i, j| {
                    (i / 64 + j / 64) % 3 == 0
                })),
            ),
        ];
        for (name, m) in &masks {
            let view = m.as_ref().map(MaskView::from);
            let reps = if t > 1000 { 3 } else { 20 };
            let mut tf = f64::INFINITY;
            let mut tb = f64::INFINITY;
            for _ in 0..reps {
                let t0 = Instant::now();
                attention_fwd(&mut out, &mut lse, &q, &k, &v, view, s).unwrap();
                let t1 = Instant::now();
                attention_bwd(
                    &mut dq, &mut dk, &mut dv, &go, &q, &k, &v, &out, &lse, view, s,
                )
                .unwrap();
                let t2 = Instant::now();
                tf = tf.min((t1 - t0).as_secs_f64());
                tb = tb.min((t2 - t1).as_secs_f64());
            }
            let flops = 4.0 * (b * h * d) as f64 * (t * (t + 1) / 2) as f64;
            eprintln!(
                "B={b} H={h} T={t} D={d} {name}: fwd {:.3} ms, bwd {:.3} ms \
                 (causal-dense GFLOP/s: fwd {:.1}, bwd {:.1})",
                tf * 1e3,
                tb * 1e3,
                flops / tf * 1e-9,
                2.5 * flops / tb * 1e-9
            );
        }
    }
}
