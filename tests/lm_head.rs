//! The fused LM head + cross-entropy (`Ops::lm_head_xent`) against the unfused definition in
//! f64: losses, log-sum-exps and both gradients, over shapes that cross the chunk boundary,
//! with ignored targets, at f64 (the generic kernel) and f32 (the production path, at every
//! instruction-set level this CPU has), outputs poisoned before every call.

mod common;

use asa_lth::backend::cpu::isa::{with_level, Isa};
use asa_lth::backend::cpu::lm_head::lm_head_xent;
use asa_lth::backend::cpu::Cpu;
use asa_lth::backend::lm_head_blocks;
use asa_lth::backend::{Ops, IGNORE_INDEX};
use asa_lth::rng::Rng;
use common::{rand_vec, rel_l2};

struct Reference {
    losses: Vec<f64>,
    lse: Vec<f64>,
    dx: Vec<f64>,
    dw: Vec<f64>,
}

/// `z = x·Wᵀ`, softmax cross-entropy and its gradients, written out plainly.
fn reference(
    x: &[f64],
    w: &[f64],
    targets: &[u32],
    dloss: f64,
    n: usize,
    c: usize,
    v: usize,
) -> Reference {
    let (mut losses, mut lse) = (vec![0.0; n], vec![0.0; n]);
    let (mut dx, mut dw) = (vec![0.0; n * c], vec![0.0; v * c]);
    for r in 0..n {
        let z: Vec<f64> = (0..v)
            .map(|j| (0..c).map(|p| x[r * c + p] * w[j * c + p]).sum())
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s = m + z.iter().map(|&zj| (zj - m).exp()).sum::<f64>().ln();
        lse[r] = s;
        if targets[r] == IGNORE_INDEX {
            continue;
        }
        let t = targets[r] as usize;
        losses[r] = s - z[t];
        for j in 0..v {
            let g = dloss * ((z[j] - s).exp() - if j == t { 1.0 } else { 0.0 });
            for p in 0..c {
                dx[r * c + p] += g * w[j * c + p];
                dw[j * c + p] += g * x[r * c + p];
            }
        }
    }
    Reference {
        losses,
        lse,
        dx,
        dw,
    }
}

fn case(rng: &mut Rng, n: usize, c: usize, v: usize) -> (Vec<f64>, Vec<f64>, Vec<u32>, f64) {
    let x = rand_vec(rng, n * c);
    let w = rand_vec(rng, v * c);
    // Every fifth target ignored; the rest anywhere in the vocabulary (its ends included).
    let targets = (0..n)
        .map(|r| match r % 5 {
            0 => IGNORE_INDEX,
            1 => (v - 1) as u32,
            _ => rng.below(v) as u32,
        })
        .collect();
    (x, w, targets, 0.3 + rng.uniform())
}

#[test]
fn fused_head_matches_the_unfused_definition_in_f64() {
    let mut rng = Rng::new(21);
    // Many vocabulary blocks (the last partial), one block, and several chunks of rows.
    assert!(lm_head_blocks(150, 70_000).1 < 70_000 / 4);
    assert!(lm_head_blocks(8300, 3).0 < 8300);
    for (n, c, v) in [(7, 5, 3), (150, 4, 70_000), (40, 16, 1000), (8300, 2, 3)] {
        let (x, w, targets, dloss) = case(&mut rng, n, c, v);
        let want = reference(&x, &w, &targets, dloss, n, c, v);
        let (mut losses, mut lse) = (vec![f64::NAN; n], vec![f64::NAN; n]);
        let (mut dx, mut dw) = (vec![f64::NAN; n * c], vec![f64::NAN; v * c]);
        lm_head_xent(
            &mut losses,
            &mut lse,
            Some((&mut dx, &mut dw)),
            &x,
            &w,
            &targets,
            dloss,
            n,
            c,
            v,
        )
        .unwrap();
        for (name, got, want) in [
            ("losses", &losses, &want.losses),
            ("lse", &lse, &want.lse),
            ("dx", &dx, &want.dx),
            ("dweight", &dw, &want.dw),
        ] {
            let e = rel_l2(got, want);
            assert!(e < 1e-12, "n{n} c{c} v{v} {name}: {e:.2e}");
        }
        // Without gradients: the same losses, nothing else touched.
        let (mut l2, mut s2) = (vec![f64::NAN; n], vec![f64::NAN; n]);
        lm_head_xent(&mut l2, &mut s2, None, &x, &w, &targets, dloss, n, c, v).unwrap();
        assert_eq!(l2, losses);
        assert_eq!(s2, lse);
    }
}

#[test]
fn fused_head_in_f32_through_ops_at_every_level() {
    let mut rng = Rng::new(22);
    let (n, c, v) = (300, 64, 30_000);
    assert!(lm_head_blocks(n, v).1 < v, "crosses a block boundary");
    let (x, w, targets, dloss) = case(&mut rng, n, c, v);
    let want = reference(&x, &w, &targets, dloss, n, c, v);
    let f = |a: &[f64]| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let up = |a: &[f32]| a.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let (x32, w32) = (f(&x), f(&w));
    for level in Isa::available() {
        with_level(level, || {
            let (mut losses, mut lse) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            let (mut dx, mut dw) = (vec![f32::NAN; n * c], vec![f32::NAN; v * c]);
            Cpu.lm_head_xent(
                &mut losses,
                &mut lse,
                Some((&mut dx, &mut dw)),
                &x32,
                &w32,
                &targets,
                dloss as f32,
                n,
                c,
                v,
            )
            .unwrap();
            for (name, got, want) in [
                ("losses", up(&losses), &want.losses),
                ("lse", up(&lse), &want.lse),
                ("dx", up(&dx), &want.dx),
                ("dweight", up(&dw), &want.dw),
            ] {
                let e = rel_l2(&got, want);
                assert!(e < 1e-5, "{level} {name}: {e:.2e}");
            }
        });
    }
}

#[test]
fn fused_head_refuses_bad_shapes_and_targets() {
    let (n, c, v) = (4, 3, 5);
    let x = vec![0.5f32; n * c];
    let w = vec![0.25f32; v * c];
    let (mut l, mut s) = (vec![0.0f32; n], vec![0.0f32; n]);
    let bad_target = vec![0, 1, 5, 2];
    let e = Cpu
        .lm_head_xent(&mut l, &mut s, None, &x, &w, &bad_target, 1.0, n, c, v)
        .unwrap_err();
    assert!(e.to_string().contains("target 5"), "{e}");
    let e = Cpu
        .lm_head_xent(
            &mut l,
            &mut s,
            None,
            &x,
            &w[..v * c - 1].to_vec(),
            &vec![0; n],
            1.0,
            n,
            c,
            v,
        )
        .unwrap_err();
    assert!(e.to_string().contains("weight"), "{e}");
    let (mut dx, mut dw) = (vec![0.0f32; n * c - 1], vec![0.0f32; v * c]);
    let e = Cpu
        .lm_head_xent(
            &mut l,
            &mut s,
            Some((&mut dx, &mut dw)),
            &x,
            &w,
            &vec![0; n],
            1.0,
            n,
            c,
            v,
        )
        .unwrap_err();
    assert!(e.to_string().contains("dx"), "{e}");
}

/// The CUDA kernels of `kernels/lm_head.cu`, their own source run by the SIMT emulation with
/// the backend's grids: against the f64 definition and the CPU twin, with tails in every
/// dimension (rows past a 64-row tile, C not a multiple of the 16-deep stage nor of the
/// 128-column slice, V past a 64-entry tile and below one), ignored rows and outputs poisoned;
/// two thread interleavings give the same bits (no atomics, fixed summation order).
#[test]
fn emulated_cuda_head_matches_cpu() {
    use asa_lth::backend::cuda::simt::{self, EmuConfig};
    let mut rng = Rng::new(23);
    let f = |a: &[f64]| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let up = |a: &[f32]| a.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    for (n, c, v) in [(70, 37, 150), (5, 140, 9), (64, 16, 64), (1, 3, 1)] {
        let (x, w, targets, dloss) = case(&mut rng, n, c, v);
        let want = reference(&x, &w, &targets, dloss, n, c, v);
        let (x32, w32) = (f(&x), f(&w));
        let run = |seed: u64| {
            simt::configure(EmuConfig {
                eager_copies: false,
                seed,
            });
            let (mut losses, mut lse) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            let (mut dx, mut dw) = (vec![f32::NAN; n * c], vec![f32::NAN; v * c]);
            simt::lm_head_xent(
                &mut losses,
                &mut lse,
                Some((&mut dx, &mut dw)),
                &x32,
                &w32,
                &targets,
                dloss as f32,
                n,
                c,
                v,
            )
            .unwrap();
            (losses, lse, dx, dw)
        };
        let got = run(5);
        let (mut cl, mut cs) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        let (mut cdx, mut cdw) = (vec![f32::NAN; n * c], vec![f32::NAN; v * c]);
        Cpu.lm_head_xent(
            &mut cl,
            &mut cs,
            Some((&mut cdx, &mut cdw)),
            &x32,
            &w32,
            &targets,
            dloss as f32,
            n,
            c,
            v,
        )
        .unwrap();
        for (name, emu, cpu, want) in [
            ("losses", &got.0, &cl, &want.losses),
            ("lse", &got.1, &cs, &want.lse),
            ("dx", &got.2, &cdx, &want.dx),
            ("dweight", &got.3, &cdw, &want.dw),
        ] {
            assert!(
                emu.iter().all(|x| x.is_finite()),
                "n{n} c{c} v{v} {name}: unwritten"
            );
            let e = rel_l2(&up(emu), want);
            assert!(
                e < 1e-5,
                "n{n} c{c} v{v} {name}: emulated CUDA vs f64 {e:.2e}"
            );
            let e = rel_l2(&up(emu), &up(cpu));
            assert!(
                e < 1e-5,
                "n{n} c{c} v{v} {name}: emulated CUDA vs CPU {e:.2e}"
            );
        }
        let again = run(99);
        assert!(
            got.0 == again.0 && got.1 == again.1 && got.2 == again.2 && got.3 == again.3,
            "n{n} c{c} v{v}: another interleaving changed the bits"
        );
        // Forward only: the same losses and lse; no rows: dweight all zeros.
        let (mut l2, mut s2) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        simt::lm_head_xent(&mut l2, &mut s2, None, &x32, &w32, &targets, 1.0, n, c, v).unwrap();
        assert!(
            l2 == got.0 && s2 == got.1,
            "n{n} c{c} v{v}: forward alone differs"
        );
    }
    let (c, v) = (20, 70);
    let w = f(&rand_vec(&mut rng, v * c));
    let mut dw = vec![f32::NAN; v * c];
    simt::lm_head_xent(
        &mut [],
        &mut [],
        Some((&mut [], &mut dw)),
        &[],
        &w,
        &[],
        1.0,
        0,
        c,
        v,
    )
    .unwrap();
    assert!(dw.iter().all(|&x| x == 0.0), "n = 0: dweight must be zeros");
}
