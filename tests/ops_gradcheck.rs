//! Finite-difference gradient checks (f64) of every CPU op's backward except attention,
//! which tests/attention.rs covers. Each check uses the scalar loss `L = Σ y·R` for a fresh
//! random `R`, so `dL/dy = R` is what the backward receives; gradient buffers start from
//! random values to check accumulate (`+=`) semantics.

mod common;

use asa_lth::backend::cpu::{embedding, gelu, layernorm, matmul, xent};
use asa_lth::backend::{GradWrite, MatmulShape, IGNORE_INDEX};
use asa_lth::rng::Rng;
use common::{dot, fd_check, rand_vec};

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-8;

/// Run `bwd` into a buffer pre-filled with `pre`, return what it added.
fn added(pre: &[f64], after: &[f64]) -> Vec<f64> {
    after.iter().zip(pre).map(|(a, p)| a - p).collect()
}

#[test]
fn matmul_backward_matches_finite_differences() {
    let mut rng = Rng::new(1);
    for &(n, k, oc, with_bias, with_mask) in &[
        (3, 5, 4, true, false),
        (7, 16, 9, false, true),
        (1, 3, 2, true, true),
        (5, 33, 17, true, true),
    ] {
        let s = MatmulShape { n, k, oc };
        let x = rand_vec(&mut rng, n * k);
        let w = rand_vec(&mut rng, oc * k);
        let b = rand_vec(&mut rng, oc);
        let mask: Vec<f64> = (0..oc * k)
            .map(|_| if rng.bernoulli(0.5) { 1.0 } else { 0.0 })
            .collect();
        let r = rand_vec(&mut rng, n * oc);
        let bias = with_bias.then_some(&b[..]);
        let mk = with_mask.then_some(&mask[..]);
        let fwd = |x: &[f64], w: &[f64], b: Option<&[f64]>| {
            let mut y = vec![f64::NAN; n * oc];
            matmul::matmul_fwd(&mut y, x, w, b, mk, s).unwrap();
            dot(&y, &r)
        };
        let (px, pw, pb) = (
            rand_vec(&mut rng, n * k),
            rand_vec(&mut rng, oc * k),
            rand_vec(&mut rng, oc),
        );
        let (mut dx, mut dw, mut db) = (px.clone(), pw.clone(), pb.clone());
        matmul::matmul_bwd(
            Some((&mut dx, GradWrite::Accumulate)),
            &mut dw,
            with_bias.then_some(&mut db[..]),
            &r,
            &x,
            &w,
            mk,
            s,
        )
        .unwrap();
        let tag = format!("matmul n={n} k={k} oc={oc} bias={with_bias} mask={with_mask}");
        // Overwriting dinp: what the accumulation added, whatever dinp held (NaN here).
        let mut dx_w = vec![f64::NAN; n * k];
        let mut dw_w = pw.clone();
        let ow = Some((&mut dx_w[..], GradWrite::Overwrite));
        matmul::matmul_bwd(ow, &mut dw_w, None, &r, &x, &w, mk, s).unwrap();
        let want: Vec<f64> = dx.iter().zip(&px).map(|(d, p)| d - p).collect();
        assert!(
            common::rel_l2(&dx_w, &want) < 1e-12,
            "{tag}: overwritten dinp differs from the accumulated one"
        );
        fd_check(
            &format!("{tag} dinp"),
            &x,
            &added(&px, &dx),
            |x| fwd(x, &w, bias),
            RTOL,
            ATOL,
        );
        fd_check(
            &format!("{tag} dweight"),
            &w,
            &added(&pw, &dw),
            |w| fwd(&x, w, bias),
            RTOL,
            ATOL,
        );
        if with_bias {
            fd_check(
                &format!("{tag} dbias"),
                &b,
                &added(&pb, &db),
                |b| fwd(&x, &w, Some(b)),
                RTOL,
                ATOL,
            );
        }
        if with_mask {
            // Pruned weights get exactly zero gradient.
            for (i, (&m, g)) in mask.iter().zip(added(&pw, &dw)).enumerate() {
                if m == 0.0 {
                    assert!(g.abs() < 1e-15, "{tag}: pruned dweight[{i}] = {g}");
                }
            }
        }
    }
}

#[test]
fn layernorm_backward_matches_finite_differences() {
    let mut rng = Rng::new(2);
    for &(n, c) in &[(1, 2), (4, 7), (9, 64)] {
        let x = rand_vec(&mut rng, n * c);
        let w = rand_vec(&mut rng, c);
        let b = rand_vec(&mut rng, c);
        let r = rand_vec(&mut rng, n * c);
        let fwd = |x: &[f64], w: &[f64], b: &[f64]| {
            let (mut y, mut m, mut rs) = (vec![f64::NAN; n * c], vec![0.0; n], vec![0.0; n]);
            layernorm::layernorm_fwd(&mut y, &mut m, &mut rs, x, w, b, n, c).unwrap();
            dot(&y, &r)
        };
        let (mut y, mut m, mut rs) = (vec![f64::NAN; n * c], vec![f64::NAN; n], vec![f64::NAN; n]);
        layernorm::layernorm_fwd(&mut y, &mut m, &mut rs, &x, &w, &b, n, c).unwrap();
        assert!(y.iter().chain(&m).chain(&rs).all(|v| v.is_finite()));
        let (px, pw, pb) = (
            rand_vec(&mut rng, n * c),
            rand_vec(&mut rng, c),
            rand_vec(&mut rng, c),
        );
        let (mut dx, mut dw, mut db) = (px.clone(), pw.clone(), pb.clone());
        layernorm::layernorm_bwd(&mut dx, &mut dw, &mut db, &r, &x, &w, &m, &rs, n, c).unwrap();
        let tag = format!("layernorm n={n} c={c}");
        fd_check(
            &format!("{tag} dinp"),
            &x,
            &added(&px, &dx),
            |x| fwd(x, &w, &b),
            1e-5,
            1e-7,
        );
        fd_check(
            &format!("{tag} dweight"),
            &w,
            &added(&pw, &dw),
            |w| fwd(&x, w, &b),
            RTOL,
            ATOL,
        );
        fd_check(
            &format!("{tag} dbias"),
            &b,
            &added(&pb, &db),
            |b| fwd(&x, &w, b),
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn gelu_and_residual_backward_match_finite_differences() {
    let mut rng = Rng::new(3);
    let n = 257;
    let x: Vec<f64> = rand_vec(&mut rng, n).iter().map(|v| 3.0 * v).collect();
    let r = rand_vec(&mut rng, n);
    let fwd = |x: &[f64]| {
        let mut y = vec![f64::NAN; n];
        gelu::gelu_fwd(&mut y, x).unwrap();
        dot(&y, &r)
    };
    let pre = rand_vec(&mut rng, n);
    // gelu_bwd overwrites: NaN before, the gradient after.
    let mut dx = vec![f64::NAN; n];
    gelu::gelu_bwd(&mut dx, &x, &r).unwrap();
    fd_check("gelu dinp", &x, &dx, fwd, RTOL, ATOL);

    // residual: y = a + b, so dL/da = dL/db = R; its backward is `accumulate`.
    let a = rand_vec(&mut rng, n);
    let bb = rand_vec(&mut rng, n);
    let mut y = vec![f64::NAN; n];
    gelu::residual_fwd(&mut y, &a, &bb).unwrap();
    let mut da = pre.clone();
    gelu::accumulate(&mut da, &r).unwrap();
    fd_check(
        "residual da",
        &a,
        &added(&pre, &da),
        |a| {
            let mut y = vec![0.0; n];
            gelu::residual_fwd(&mut y, a, &bb).unwrap();
            dot(&y, &r)
        },
        RTOL,
        ATOL,
    );
}

#[test]
fn embedding_backward_matches_finite_differences() {
    let mut rng = Rng::new(4);
    let (b, t, c, v) = (2, 5, 3, 4); // repeated tokens exercise the scatter-add
    let tokens: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let wte = rand_vec(&mut rng, v * c);
    let wpe = rand_vec(&mut rng, 7 * c); // a position table longer than t, as in the model
    let r = rand_vec(&mut rng, b * t * c);
    let fwd = |wte: &[f64], wpe: &[f64]| {
        let mut y = vec![f64::NAN; b * t * c];
        embedding::embedding_fwd(&mut y, &tokens, wte, wpe, b, t, c).unwrap();
        dot(&y, &r)
    };
    let (pte, ppe) = (rand_vec(&mut rng, v * c), rand_vec(&mut rng, 7 * c));
    let (mut dte, mut dpe) = (pte.clone(), ppe.clone());
    embedding::embedding_bwd(&mut dte, &mut dpe, &r, &tokens, b, t, c).unwrap();
    fd_check(
        "embedding dwte",
        &wte,
        &added(&pte, &dte),
        |w| fwd(w, &wpe),
        RTOL,
        ATOL,
    );
    fd_check(
        "embedding dwpe",
        &wpe,
        &added(&ppe, &dpe),
        |w| fwd(&wte, w),
        RTOL,
        ATOL,
    );
}

#[test]
fn cross_entropy_backward_matches_finite_differences_and_ignores() {
    let mut rng = Rng::new(5);
    let (n, v) = (6, 11);
    let logits: Vec<f64> = rand_vec(&mut rng, n * v).iter().map(|x| 4.0 * x).collect();
    let mut targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    targets[2] = IGNORE_INDEX;
    targets[5] = IGNORE_INDEX;
    let dloss = 0.37;
    let fwd = |z: &[f64]| {
        let (mut l, mut lse) = (vec![f64::NAN; n], vec![f64::NAN; n]);
        xent::xent_fwd(&mut l, &mut lse, z, &targets, n, v).unwrap();
        dloss * l.iter().sum::<f64>()
    };
    let (mut losses, mut lse) = (vec![f64::NAN; n], vec![f64::NAN; n]);
    xent::xent_fwd(&mut losses, &mut lse, &logits, &targets, n, v).unwrap();
    assert_eq!(losses[2], 0.0);
    assert_eq!(losses[5], 0.0);
    // Against a direct log-softmax.
    for r in [0, 1, 3, 4] {
        let row = &logits[r * v..(r + 1) * v];
        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        let want = lse - row[targets[r] as usize];
        assert!(
            (losses[r] - want).abs() < 1e-12,
            "row {r}: {} vs {want}",
            losses[r]
        );
    }
    let mut d = vec![f64::NAN; n * v];
    xent::xent_bwd(&mut d, &logits, &lse, &targets, dloss, n, v).unwrap();
    fd_check("xent dlogits", &logits, &d, fwd, RTOL, ATOL);
    assert!(d[2 * v..3 * v].iter().all(|&x| x == 0.0));

    // A target outside the vocabulary is an error naming it.
    let mut bad = targets.clone();
    bad[0] = v as u32;
    let err = xent::xent_fwd(&mut losses, &mut lse, &logits, &bad, n, v).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}

#[test]
fn ops_reject_mismatched_shapes_with_named_tensors() {
    let s = MatmulShape { n: 2, k: 3, oc: 4 };
    let mut y = vec![0.0f32; 8];
    let err = matmul::matmul_fwd(&mut y, &[0.0; 5], &[0.0; 12], None, None, s).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("matmul_fwd") && msg.contains("`inp`") && msg.contains("expected 6"),
        "{msg}"
    );
    let (mut o, mut m, mut r) = (vec![0.0f32; 6], vec![0.0f32; 2], vec![0.0f32; 2]);
    let err = layernorm::layernorm_fwd(
        &mut o, &mut m, &mut r, &[0.0; 6], &[1.0; 2], &[0.0; 3], 2, 3,
    )
    .unwrap_err();
    assert!(err.to_string().contains("`weight`"), "{err}");
    let mut e = vec![0.0f32; 6];
    let err = embedding::embedding_fwd(&mut e, &[0, 9], &[0.0; 6], &[0.0; 6], 1, 2, 3).unwrap_err();
    assert!(err.to_string().contains("token id 9"), "{err}");
}

/// The f32 instantiations (vectorised exp/tanh) against the f64 ones: relative L2 ≤ 1e-5.
#[test]
fn f32_elementwise_ops_match_f64_within_contract_tolerance() {
    let mut rng = Rng::new(6);
    let n = 10_000;
    let x: Vec<f64> = rand_vec(&mut rng, n).iter().map(|v| 6.0 * v).collect();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let g = rand_vec(&mut rng, n);
    let g32: Vec<f32> = g.iter().map(|&v| v as f32).collect();
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let (mut y, mut y32) = (vec![0.0; n], vec![0.0f32; n]);
    gelu::gelu_fwd(&mut y, &x).unwrap();
    gelu::gelu_fwd(&mut y32, &x32).unwrap();
    assert!(common::rel_l2(&widen(&y32), &y) < 1e-5);
    let (mut d, mut d32) = (vec![0.0; n], vec![0.0f32; n]);
    gelu::gelu_bwd(&mut d, &x, &g).unwrap();
    gelu::gelu_bwd(&mut d32, &x32, &g32).unwrap();
    assert!(common::rel_l2(&widen(&d32), &d) < 1e-5);

    let (rows, v) = (37, 1001);
    let logits: Vec<f64> = rand_vec(&mut rng, rows * v)
        .iter()
        .map(|x| 8.0 * x)
        .collect();
    let l32: Vec<f32> = logits.iter().map(|&x| x as f32).collect();
    let targets: Vec<u32> = (0..rows).map(|_| rng.below(v) as u32).collect();
    let (mut loss, mut loss32) = (vec![0.0; rows], vec![0.0f32; rows]);
    let (mut z, mut z32) = (vec![0.0; rows], vec![0.0f32; rows]);
    xent::xent_fwd(&mut loss, &mut z, &logits, &targets, rows, v).unwrap();
    xent::xent_fwd(&mut loss32, &mut z32, &l32, &targets, rows, v).unwrap();
    assert!(common::rel_l2(&widen(&loss32), &loss) < 1e-5);
    let (mut dl, mut dl32) = (vec![0.0; rows * v], vec![0.0f32; rows * v]);
    xent::xent_bwd(&mut dl, &logits, &z, &targets, 0.5, rows, v).unwrap();
    xent::xent_bwd(&mut dl32, &l32, &z32, &targets, 0.5, rows, v).unwrap();
    assert!(common::rel_l2(&widen(&dl32), &dl) < 1e-5);
}
