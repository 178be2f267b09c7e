//! Exact magnitude top-k pruning and 2:4 selection (DESIGN.md §3; src/sparse, kernels/topk.cu):
//! the CPU path against a brute-force sort-based oracle on inputs with heavy ties, invariants
//! at 10^7 weights, the edge cases and errors, determinism across thread counts, the host
//! build of the kernels' helpers against the Rust twins, and (on a GPU) the CUDA path against
//! the CPU. GPU tests print a skip reason without a GPU; `ASA_LTH_REQUIRE_GPU=1` makes that a
//! failure.

mod common;

use asa_lth::backend::cuda::topk::{self as gpu_topk, host_helpers as hh};
use asa_lth::bench::topk_cases::prune_global_by_sort;
use asa_lth::rng::Rng;
use asa_lth::sparse::topk::{self, PruneReport, PruneScope, PruneTensor, TopkWeight};
use asa_lth::sparse::two_four::{self, two_four_mask_vec};
use asa_lth::Error;
use common::{gpu, Gpu};
use half::{bf16, f16};

// ---------------------------------------------------------------- inputs and the oracle ----

/// Values with many exact ties (both zeros, a subnormal, repeated magnitudes of both signs).
const TIE_SET: [f32; 12] = [
    0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 0.25, 3.0, 1e-40, -1e-40,
];

#[derive(Clone, Copy, Debug)]
enum Values {
    /// Drawn from the first `k` entries of TIE_SET.
    Ties(usize),
    /// Continuous normal values.
    Normal,
    /// Half ties, half normal.
    Mixed,
}

fn value(rng: &mut Rng, v: Values) -> f32 {
    match v {
        Values::Ties(k) => TIE_SET[rng.below(k)],
        Values::Normal => rng.normal() as f32,
        Values::Mixed => {
            if rng.bernoulli(0.5) {
                TIE_SET[rng.below(TIE_SET.len())]
            } else {
                rng.normal() as f32
            }
        }
    }
}

/// A 0/1 mask with each weight already pruned with probability `p`.
fn mask(rng: &mut Rng, n: usize, p: f64) -> Vec<f32> {
    (0..n).map(|_| (!rng.bernoulli(p)) as u32 as f32).collect()
}

/// Pruned fractions of existing masks, including "none" and "all".
fn density(rng: &mut Rng) -> f64 {
    [0.0, 0.0, 0.3, 0.9, 1.0][rng.below(5)]
}

struct Model {
    names: Vec<String>,
    w: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
}

fn model(rng: &mut Rng, sizes: &[usize], v: Values) -> Model {
    let mut names = Vec::new();
    let mut w = Vec::new();
    let mut m = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        names.push(format!("t{i}"));
        w.push((0..n).map(|_| value(rng, v)).collect());
        let p = density(rng);
        m.push(mask(rng, n, p));
    }
    Model { names, w, m }
}

/// A prune entry point with the CPU path's signature (the CPU path, or the SIMT-emulated
/// kernels under the GPU driver).
type PruneFn<W> = fn(&mut [PruneTensor<'_, W>], f64, PruneScope) -> asa_lth::Result<PruneReport>;

/// Run `prune` on copies of the masks.
fn run_with<W: TopkWeight>(
    prune: PruneFn<W>,
    names: &[String],
    w: &[Vec<W>],
    m: &[Vec<f32>],
    f: f64,
    scope: PruneScope,
) -> asa_lth::Result<(Vec<Vec<f32>>, PruneReport)> {
    let mut masks = m.to_vec();
    let mut ts: Vec<PruneTensor<'_, W>> = names
        .iter()
        .zip(w)
        .zip(masks.iter_mut())
        .map(|((n, w), m)| PruneTensor::new(n, w, m))
        .collect();
    let r = prune(&mut ts, f, scope)?;
    drop(ts);
    Ok((masks, r))
}

/// Run the CPU path on copies of the masks.
fn run_cpu<W: TopkWeight>(
    names: &[String],
    w: &[Vec<W>],
    m: &[Vec<f32>],
    f: f64,
    scope: PruneScope,
) -> asa_lth::Result<(Vec<Vec<f32>>, PruneReport)> {
    run_with(topk::prune, names, w, m, f, scope)
}

/// What the oracle says about one group.
#[derive(Debug, PartialEq)]
struct GroupOracle {
    remaining: u64,
    pruned: u64,
    threshold: Option<f32>,
    ties: u64,
    ties_pruned: u64,
}

/// Brute force: sort every unpruned weight of a group by (|w|, tensor, index) and prune the
/// first ceil(f · remaining).
fn oracle(
    mag: &[Vec<f32>],
    m: &[Vec<f32>],
    f: f64,
    scope: PruneScope,
) -> (Vec<Vec<f32>>, Vec<GroupOracle>) {
    let mut out = m.to_vec();
    let groups: Vec<Vec<usize>> = match scope {
        PruneScope::Global => vec![(0..mag.len()).collect()],
        PruneScope::PerTensor => (0..mag.len()).map(|t| vec![t]).collect(),
    };
    let mut reports = Vec::new();
    for g in groups {
        let mut cand: Vec<(f32, usize, usize)> = Vec::new();
        for &t in &g {
            for (i, (&a, &k)) in mag[t].iter().zip(&m[t]).enumerate() {
                if k == 1.0 {
                    cand.push((a, t, i));
                }
            }
        }
        cand.sort_by(|a, b| {
            a.0.partial_cmp(&b.0)
                .expect("finite")
                .then((a.1, a.2).cmp(&(b.1, b.2)))
        });
        let n = ((f * cand.len() as f64).ceil() as usize).min(cand.len());
        for &(_, t, i) in &cand[..n] {
            out[t][i] = 0.0;
        }
        let threshold = (n > 0).then(|| cand[n - 1].0);
        let ties = threshold.map_or(0, |th| cand.iter().filter(|c| c.0 == th).count());
        let ties_pruned = threshold.map_or(0, |th| cand[..n].iter().filter(|c| c.0 == th).count());
        reports.push(GroupOracle {
            remaining: cand.len() as u64,
            pruned: n as u64,
            threshold,
            ties: ties as u64,
            ties_pruned: ties_pruned as u64,
        });
    }
    (out, reports)
}

fn abs_f32(w: &[Vec<f32>]) -> Vec<Vec<f32>> {
    w.iter()
        .map(|t| t.iter().map(|x| x.abs()).collect())
        .collect()
}

/// Masks equal, and the report agrees with the oracle and with the masks.
fn check_against_oracle(
    ctx: &str,
    got: &[Vec<f32>],
    r: &PruneReport,
    want: &[Vec<f32>],
    groups: &[GroupOracle],
    before: &[Vec<f32>],
) {
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            let i = g.iter().zip(w).position(|(a, b)| a != b).unwrap();
            panic!(
                "{ctx}: tensor {t} index {i}: mask {} vs oracle {}",
                g[i], w[i]
            );
        }
    }
    assert_eq!(r.selections.len(), groups.len(), "{ctx}");
    for (s, o) in r.selections.iter().zip(groups) {
        assert_eq!(s.remaining_before, o.remaining, "{ctx}: remaining");
        assert_eq!(s.pruned, o.pruned, "{ctx}: pruned");
        assert_eq!(
            s.threshold.map(f32::to_bits),
            o.threshold.map(f32::to_bits),
            "{ctx}: threshold"
        );
        assert_eq!(s.ties_at_threshold, o.ties, "{ctx}: ties");
        assert_eq!(s.ties_pruned, o.ties_pruned, "{ctx}: ties pruned");
        assert_eq!(
            s.below_threshold + s.ties_pruned,
            s.pruned,
            "{ctx}: below + ties"
        );
    }
    for (t, tr) in r.tensors.iter().enumerate() {
        let ones = |m: &[f32]| m.iter().filter(|&&x| x == 1.0).count() as u64;
        assert_eq!(tr.numel, got[t].len(), "{ctx}");
        assert_eq!(tr.remaining_before, ones(&before[t]), "{ctx}: tensor {t}");
        assert_eq!(tr.remaining, ones(&got[t]), "{ctx}: tensor {t}");
        assert_eq!(
            tr.pruned + tr.remaining,
            tr.remaining_before,
            "{ctx}: tensor {t}"
        );
    }
}

const FRACTIONS: [f64; 8] = [0.0, 0.1, 0.2, 0.5, 0.8, 0.999, 1.0, 0.37];

// --------------------------------------------------------------------------- CPU tests ----

#[test]
fn cpu_matches_oracle_small_inputs_heavy_ties() {
    let mut rng = Rng::new(1);
    let mut trials = 0;
    let mut resolved = 0;
    for trial in 0..400 {
        let nt = rng.below(9); // 0 ..= 8 tensors
        let sizes: Vec<usize> = (0..nt)
            .map(|_| match rng.below(4) {
                0 => rng.below(3),    // 0, 1, 2
                1 => rng.below(40),   // small
                _ => rng.below(1001), // up to 1000
            })
            .collect();
        let v = match trial % 4 {
            0 => Values::Ties(2), // only ±0: everything ties
            1 => Values::Ties(4 + rng.below(8)),
            2 => Values::Mixed,
            _ => Values::Normal,
        };
        let md = model(&mut rng, &sizes, v);
        let f = if trial % 3 == 0 {
            rng.uniform()
        } else {
            FRACTIONS[rng.below(FRACTIONS.len())]
        };
        for scope in [PruneScope::Global, PruneScope::PerTensor] {
            let ctx = format!("trial {trial} {scope:?} f {f} sizes {sizes:?} {v:?}");
            let (got, r) = run_cpu(&md.names, &md.w, &md.m, f, scope).unwrap();
            let (want, groups) = oracle(&abs_f32(&md.w), &md.m, f, scope);
            check_against_oracle(&ctx, &got, &r, &want, &groups, &md.m);
            resolved += r.ties_resolved_by_index();
            trials += 1;
        }
    }
    assert_eq!(trials, 800);
    assert!(
        resolved > 10_000,
        "the index tie rule was exercised {resolved} times"
    );
}

#[test]
fn cpu_matches_oracle_many_tensors_around_chunk_edges() {
    // Sizes straddle the CPU chunk (2^16) and GPU tile (4096) boundaries.
    let c = topk::CHUNK;
    let sizes = [
        c - 1,
        c,
        c + 1,
        1,
        0,
        2 * c + 3,
        4095,
        4096,
        4097,
        0,
        3 * c,
        17,
    ];
    let mut rng = Rng::new(2);
    for (k, v) in [Values::Ties(3), Values::Ties(6), Values::Mixed]
        .into_iter()
        .enumerate()
    {
        let md = model(&mut rng, &sizes, v);
        for f in [0.2, 0.5, 0.93] {
            for scope in [PruneScope::Global, PruneScope::PerTensor] {
                let ctx = format!("{k} {v:?} f {f} {scope:?}");
                let (got, r) = run_cpu(&md.names, &md.w, &md.m, f, scope).unwrap();
                let (want, groups) = oracle(&abs_f32(&md.w), &md.m, f, scope);
                check_against_oracle(&ctx, &got, &r, &want, &groups, &md.m);
            }
        }
    }
}

#[test]
fn cpu_matches_oracle_with_thousands_of_tiny_tensors() {
    // More chunks than one parallel batch (256), most of them tiny, many groups.
    let mut rng = Rng::new(15);
    let sizes: Vec<usize> = (0..3000).map(|_| rng.below(60)).collect();
    let md = model(&mut rng, &sizes, Values::Ties(5));
    for scope in [PruneScope::Global, PruneScope::PerTensor] {
        for f in [0.2, 0.5] {
            let (got, r) = run_cpu(&md.names, &md.w, &md.m, f, scope).unwrap();
            let (want, groups) = oracle(&abs_f32(&md.w), &md.m, f, scope);
            check_against_oracle(
                &format!("tiny {scope:?} {f}"),
                &got,
                &r,
                &want,
                &groups,
                &md.m,
            );
        }
    }
}

/// Invariants of a result: exact count, every pruned |w| ≤ every kept |w|, ties pruned only
/// below (in global index) ties kept, earlier pruning kept, and masks stay 0/1.
fn check_invariants(ctx: &str, w: &[Vec<f32>], before: &[Vec<f32>], after: &[Vec<f32>], f: f64) {
    let mut remaining = 0u64;
    let mut pruned = 0u64;
    let mut max_pruned: Option<(f32, (usize, usize))> = None;
    let mut min_kept: Option<(f32, (usize, usize))> = None;
    for t in 0..w.len() {
        for i in 0..w[t].len() {
            let (b, a) = (before[t][i], after[t][i]);
            assert!(a == 0.0 || a == 1.0, "{ctx}: mask value {a}");
            if b == 0.0 {
                assert_eq!(a, 0.0, "{ctx}: ({t},{i}) was pruned and must stay pruned");
                continue;
            }
            remaining += 1;
            let x = w[t][i].abs();
            if a == 0.0 {
                pruned += 1;
                // The largest pruned magnitude, and at that magnitude the highest index.
                if max_pruned.is_none_or(|(m, _)| x >= m) {
                    max_pruned = Some((x, (t, i)));
                }
            } else if min_kept.is_none_or(|(m, _)| x < m) {
                // The smallest kept magnitude, and at that magnitude the lowest index.
                min_kept = Some((x, (t, i)));
            }
        }
    }
    assert_eq!(pruned, (f * remaining as f64).ceil() as u64, "{ctx}: count");
    if let (Some((p, pi)), Some((k, ki))) = (max_pruned, min_kept) {
        assert!(p <= k, "{ctx}: pruned |w| {p} > kept |w| {k}");
        if p == k {
            assert!(
                pi < ki,
                "{ctx}: tie at {p}: pruned {pi:?} after kept {ki:?}"
            );
        }
    }
}

#[test]
fn cpu_ten_million_weights_over_many_tensors() {
    // 10^7 weights over 40 tensors of very different sizes (some empty, some tiny), heavy ties,
    // existing masks: against the oracle (a sort of ~10^7 tuples) and the invariants.
    let mut rng = Rng::new(3);
    let mut sizes: Vec<usize> = (0..40)
        .map(|i| match i % 5 {
            0 => 0,
            1 => 1 + rng.below(100),
            2 => 1 + rng.below(5000),
            _ => 200_000 + rng.below(400_000),
        })
        .collect();
    let total: usize = sizes.iter().sum();
    sizes.push(10_000_000 - total);
    let md = model(&mut rng, &sizes, Values::Ties(7));
    for scope in [PruneScope::Global, PruneScope::PerTensor] {
        let f = 0.2;
        let (got, r) = run_cpu(&md.names, &md.w, &md.m, f, scope).unwrap();
        let ctx = format!("1e7 {scope:?}");
        if scope == PruneScope::Global {
            check_invariants(&ctx, &md.w, &md.m, &got, f);
        }
        let (want, groups) = oracle(&abs_f32(&md.w), &md.m, f, scope);
        check_against_oracle(&ctx, &got, &r, &want, &groups, &md.m);
        println!(
            "{ctx}: pruned {} of {}, threshold {:?}, ties resolved by index {}",
            r.pruned(),
            r.remaining_before(),
            r.selections[0].threshold,
            r.ties_resolved_by_index()
        );
    }
}

#[test]
fn cpu_agrees_with_the_sort_baseline_at_two_million() {
    let mut rng = Rng::new(4);
    let sizes: Vec<usize> = (0..13).map(|i| 50_000 * (i % 4 + 1) + i).collect();
    let md = model(&mut rng, &sizes, Values::Normal);
    let (got, r) = run_cpu(&md.names, &md.w, &md.m, 0.2, PruneScope::Global).unwrap();
    let mut sorted = md.m.clone();
    let n = prune_global_by_sort(&md.w, &mut sorted, 0.2);
    assert_eq!(n, r.pruned());
    assert!(got == sorted, "radix select and the sort baseline disagree");
    check_invariants("2e6 normal", &md.w, &md.m, &got, 0.2);
}

#[test]
fn fraction_rule_and_edge_cases() {
    // n = ceil(f · remaining) with the product in f64.
    assert_eq!(topk::prune_count(0.2, 10), 2);
    assert_eq!(topk::prune_count(0.7, 10), 7);
    assert_eq!(topk::prune_count(0.25, 5), 2);
    assert_eq!(topk::prune_count(0.0, 5), 0);
    assert_eq!(topk::prune_count(1.0, 5), 5);
    assert_eq!(topk::prune_count(1e-9, 5), 1);
    assert_eq!(topk::prune_count(0.5, 0), 0);

    let names: Vec<String> = ["a", "empty", "dead", "b"].map(String::from).to_vec();
    let w = vec![
        vec![3.0f32, -1.0, 2.0, 0.5, -0.5],
        vec![],
        vec![9.0, 8.0],
        vec![1.0, 1.0, -1.0],
    ];
    let m = vec![vec![1.0f32; 5], vec![], vec![0.0, 0.0], vec![1.0, 0.0, 1.0]];
    for scope in [PruneScope::Global, PruneScope::PerTensor] {
        // f = 0: nothing changes.
        let (got, r) = run_cpu(&names, &w, &m, 0.0, scope).unwrap();
        assert_eq!(got, m);
        assert_eq!(r.pruned(), 0);
        assert!(r.selections.iter().all(|s| s.threshold.is_none()));
        assert_eq!(r.remaining_before(), 7);
        // f = 1: everything unpruned goes.
        let (got, r) = run_cpu(&names, &w, &m, 1.0, scope).unwrap();
        assert!(got.iter().flatten().all(|&x| x == 0.0));
        assert_eq!((r.pruned(), r.remaining()), (7, 0));
        // Empty and fully pruned tensors report zeros.
        assert_eq!(r.tensors[1].remaining_before, 0);
        assert_eq!(r.tensors[2].remaining_before, 0);
        assert_eq!(r.tensors[2].pruned, 0);
        assert_eq!(r.tensors[2].numel, 2);
    }
    // Global f = 0.5 of 7 unpruned: ceil(3.5) = 4 pruned: 0.5 (a[3]), -0.5 (a[4]), then two of
    // the three |1| ties a[1], b[0], b[2] — the two lowest global indices, a[1] and b[0].
    let (got, r) = run_cpu(&names, &w, &m, 0.5, PruneScope::Global).unwrap();
    assert_eq!(got[0], vec![1.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(got[3], vec![0.0, 0.0, 1.0]);
    let s = &r.selections[0];
    assert_eq!(
        (
            s.pruned,
            s.threshold,
            s.below_threshold,
            s.ties_at_threshold,
            s.ties_pruned
        ),
        (4, Some(1.0), 2, 3, 2)
    );
    assert_eq!(s.ties_resolved_by_index(), 3);
    assert_eq!(s.ties_kept(), 1);

    // No tensors at all.
    let (got, r) = run_cpu::<f32>(&[], &[], &[], 0.5, PruneScope::Global).unwrap();
    assert!(got.is_empty());
    assert_eq!(r.selections.len(), 1);
    assert_eq!(r.selections[0].pruned, 0);
    let (_, r) = run_cpu::<f32>(&[], &[], &[], 0.5, PruneScope::PerTensor).unwrap();
    assert!(r.selections.is_empty());

    // Repeated levels: 0.8^L of the weights remain (ceil each level).
    let mut rng = Rng::new(5);
    let md = model(&mut rng, &[1000, 3000, 500], Values::Normal);
    let mut masks = vec![vec![1.0f32; 1000], vec![1.0; 3000], vec![1.0; 500]];
    let mut remaining = 4500u64;
    for level in 0..6 {
        let (next, r) = run_cpu(&md.names, &md.w, &masks, 0.2, PruneScope::Global).unwrap();
        assert_eq!(r.remaining_before(), remaining, "level {level}");
        remaining -= (0.2 * remaining as f64).ceil() as u64;
        assert_eq!(r.remaining(), remaining, "level {level}");
        check_invariants(&format!("level {level}"), &md.w, &masks, &next, 0.2);
        masks = next;
    }
}

#[test]
fn per_tensor_mode_prunes_each_tensor_by_its_own_count() {
    let mut rng = Rng::new(6);
    let md = model(&mut rng, &[10, 0, 333, 1, 4096, 2], Values::Ties(5));
    let (got, r) = run_cpu(&md.names, &md.w, &md.m, 0.3, PruneScope::PerTensor).unwrap();
    assert_eq!(r.selections.len(), 6);
    for (t, s) in r.selections.iter().enumerate() {
        assert_eq!(s.tensors, t..t + 1);
        assert_eq!(s.pruned, (0.3 * s.remaining_before as f64).ceil() as u64);
        assert_eq!(r.tensors[t].pruned, s.pruned);
        check_invariants(
            &format!("tensor {t}"),
            &md.w[t..t + 1],
            &md.m[t..t + 1],
            &got[t..t + 1],
            0.3,
        );
    }
}

#[test]
fn errors_name_the_tensor_and_leave_masks_unchanged() {
    let names: Vec<String> = ["first", "second"].map(String::from).to_vec();
    let good = vec![vec![1.0f32, 2.0, 3.0], vec![4.0, 5.0, 6.0, 7.0]];
    let m = vec![vec![1.0f32; 3], vec![1.0; 4]];

    for f in [-0.1, 1.0000001, f64::NAN, f64::INFINITY] {
        let e = run_cpu(&names, &good, &m, f, PruneScope::Global).unwrap_err();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("fraction"),
            "{e}"
        );
    }

    for (bad, what) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let mut w = good.clone();
        w[1][2] = bad;
        w[1][3] = bad; // a later bad element: the lowest index is reported
        for scope in [PruneScope::Global, PruneScope::PerTensor] {
            let mut masks = m.clone();
            let mut ts: Vec<PruneTensor<'_>> = names
                .iter()
                .zip(&w)
                .zip(masks.iter_mut())
                .map(|((n, w), m)| PruneTensor::new(n, w, m))
                .collect();
            let e = topk::prune(&mut ts, 0.5, scope).unwrap_err();
            match &e {
                Error::NonFinite {
                    tensor,
                    index,
                    value,
                } => {
                    assert_eq!((tensor.as_str(), *index), ("second", 2), "{what}");
                    assert_eq!(value.to_bits(), bad.to_bits());
                }
                other => panic!("{what}: expected NonFinite, got {other}"),
            }
            assert!(e.to_string().contains("second"), "{e}");
            assert_eq!(masks, m, "masks must be unchanged on error");
        }
    }

    // A non-finite weight that is already pruned is ignored.
    let mut w = good.clone();
    w[0][1] = f32::NAN;
    let mut mm = m.clone();
    mm[0][1] = 0.0;
    let (got, r) = run_cpu(&names, &w, &mm, 0.5, PruneScope::Global).unwrap();
    assert_eq!(r.pruned(), 3);
    assert_eq!(got[0], vec![0.0, 0.0, 0.0]);

    // Mask values other than 0/1; the lowest global index wins over a later NaN.
    for badm in [0.5f32, -1.0, f32::NAN, 2.0] {
        let mut mm = m.clone();
        mm[0][2] = badm;
        let mut w = good.clone();
        w[1][0] = f32::NAN;
        let e = run_cpu(&names, &w, &mm, 0.5, PruneScope::Global).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, Error::Config(_)), "{s}");
        assert!(s.contains("`first`") && s.contains("index 2"), "{s}");
    }

    // A mask whose length differs from the weights.
    let mut mm = m.clone();
    mm[1].pop();
    let e = run_cpu(&names, &good, &mm, 0.5, PruneScope::Global).unwrap_err();
    assert!(e.to_string().contains("second"), "{e}");

    // -0.0 masks count as pruned.
    let mut mm = m.clone();
    mm[0][0] = -0.0;
    let (_, r) = run_cpu(&names, &good, &mm, 0.0, PruneScope::Global).unwrap();
    assert_eq!(r.remaining_before(), 6);
}

#[test]
fn result_does_not_depend_on_thread_count() {
    let mut rng = Rng::new(7);
    let sizes: Vec<usize> = (0..30).map(|i| (i * 7919) % 150_000).collect();
    let md = model(&mut rng, &sizes, Values::Ties(5));
    let mut results = Vec::new();
    for threads in [1, 2, 3, 8] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for scope in [PruneScope::Global, PruneScope::PerTensor] {
            let r = pool.install(|| run_cpu(&md.names, &md.w, &md.m, 0.35, scope).unwrap());
            results.push((threads, scope, r));
        }
    }
    for (t, s, r) in &results[2..] {
        let base = &results[if *s == PruneScope::Global { 0 } else { 1 }].2;
        assert!(r.0 == base.0, "{t} threads {s:?}: masks differ");
        assert_eq!(r.1, base.1, "{t} threads {s:?}: reports differ");
    }
}

fn to16<S: Copy, T>(w: &[Vec<S>], conv: impl Fn(S) -> T) -> Vec<Vec<T>> {
    w.iter()
        .map(|t| t.iter().map(|&x| conv(x)).collect())
        .collect()
}

#[test]
fn bf16_and_f16_match_the_oracle() {
    let mut rng = Rng::new(8);
    for trial in 0..120 {
        let nt = 1 + rng.below(6);
        let sizes: Vec<usize> = (0..nt).map(|_| rng.below(2000)).collect();
        let v = [Values::Ties(6), Values::Mixed, Values::Normal][trial % 3];
        let md = model(&mut rng, &sizes, v);
        let f = FRACTIONS[rng.below(FRACTIONS.len())];
        for scope in [PruneScope::Global, PruneScope::PerTensor] {
            let wb = to16(&md.w, bf16::from_f32);
            let (got, r) = run_cpu(&md.names, &wb, &md.m, f, scope).unwrap();
            let mag: Vec<Vec<f32>> = to16(&wb, |x: bf16| x.to_f32().abs());
            let (want, groups) = oracle(&mag, &md.m, f, scope);
            check_against_oracle(&format!("bf16 {trial}"), &got, &r, &want, &groups, &md.m);
            assert_eq!(r.dtype, "bf16");

            // f16 overflows above 65504 and flushes tiny values: only normal values here.
            let wh = to16(&md.w, f16::from_f32);
            let (got, r) = run_cpu(&md.names, &wh, &md.m, f, scope).unwrap();
            let mag: Vec<Vec<f32>> = to16(&wh, |x: f16| x.to_f32().abs());
            let (want, groups) = oracle(&mag, &md.m, f, scope);
            check_against_oracle(&format!("f16 {trial}"), &got, &r, &want, &groups, &md.m);
        }
    }
    // Non-finite 16-bit weights are errors too.
    let names = vec!["h".to_string()];
    let w = vec![vec![f16::from_f32(1.0), f16::INFINITY]];
    let e = run_cpu(&names, &w, &[vec![1.0, 1.0]], 0.5, PruneScope::Global).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 1, .. }), "{e}");
    let w = vec![vec![bf16::NAN, bf16::ONE]];
    let e = run_cpu(&names, &w, &[vec![1.0, 1.0]], 0.5, PruneScope::Global).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 0, .. }), "{e}");
}

#[test]
fn radix_select_and_tie_cut_units() {
    // A histogram where the n-th smallest lands in a bucket with ties.
    let mut h = vec![0u64; topk::BINS];
    h[3] = 5;
    h[7] = 10;
    let s = topk::RadixSelect::new(15, 0.5, &h).unwrap();
    assert_eq!(
        (s.remaining(), s.n(), s.prefix(), s.next_pass()),
        (15, 8, 7, 1)
    );
    assert!(!s.done());
    let mut h1 = vec![0u64; 16];
    h1[2] = 4;
    h1[9] = 6;
    let mut s = s;
    s.feed(&h1).unwrap();
    assert!(s.done());
    // 5 below the prefix bucket, then rank 3 within it: digit 2 holds 4 ≥ 3.
    assert_eq!(s.threshold_key(), Some((7 << 4) | 2));
    assert_eq!((s.below(), s.ties(), s.ties_to_prune()), (5, 4, 3));
    assert!(
        s.feed(&h1).is_err(),
        "a fed-out selection refuses more passes"
    );
    // An inconsistent histogram is an error, not a panic.
    let mut s = topk::RadixSelect::new(15, 0.5, &h).unwrap();
    assert!(s.feed(&[0u64; 16]).is_err());

    assert_eq!(topk::tie_cut([0u64, 3, 0, 2, 5], 4), Some((3, 1)));
    assert_eq!(topk::tie_cut([0u64, 3, 0, 2, 5], 3), Some((1, 3)));
    assert_eq!(topk::tie_cut([0u64, 3], 0), None);
    assert_eq!(topk::tie_cut([1u64, 1], 3), None);
}

// ------------------------------------------------------------------------------- 2:4 -------

/// Oracle: sort the 4 indices by (|w| descending, index ascending) and keep the first two.
fn two_four_oracle(w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for g in 0..w.len() / 4 {
        let mut idx: Vec<usize> = (0..4).collect();
        idx.sort_by(|&a, &b| {
            w[4 * g + b]
                .abs()
                .partial_cmp(&w[4 * g + a].abs())
                .unwrap()
                .then(a.cmp(&b))
        });
        out[4 * g + idx[0]] = 1.0;
        out[4 * g + idx[1]] = 1.0;
    }
    out
}

#[test]
fn two_four_keeps_exactly_two_and_matches_the_oracle() {
    let mut rng = Rng::new(9);
    for trial in 0..300 {
        let rows = rng.below(20);
        let k = 4 * rng.below(40);
        let v = [
            Values::Ties(2),
            Values::Ties(5),
            Values::Mixed,
            Values::Normal,
        ][trial % 4];
        let w: Vec<f32> = (0..rows * k).map(|_| value(&mut rng, v)).collect();
        let m = two_four_mask_vec(&format!("w{trial}"), &w, rows, k).unwrap();
        for g in m.chunks(4) {
            assert_eq!(g.iter().filter(|&&x| x == 1.0).count(), 2, "trial {trial}");
            assert!(g.iter().all(|&x| x == 0.0 || x == 1.0));
        }
        assert_eq!(m, two_four_oracle(&w), "trial {trial} {v:?}");
        // bf16: the same rule on the rounded values.
        let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
        let mb = two_four_mask_vec("wb", &wb, rows, k).unwrap();
        let wr: Vec<f32> = wb.iter().map(|x| x.to_f32()).collect();
        assert_eq!(mb, two_four_oracle(&wr), "bf16 trial {trial}");
    }
    // Large enough to cross chunks and run threaded.
    let (rows, k) = (300, 4096);
    let w: Vec<f32> = (0..rows * k)
        .map(|_| value(&mut rng, Values::Mixed))
        .collect();
    assert_eq!(
        two_four_mask_vec("big", &w, rows, k).unwrap(),
        two_four_oracle(&w)
    );
    // Ties keep the lower index: all equal keeps elements 0 and 1; -0.0 ties 0.0.
    let m = two_four_mask_vec("t", &[1.0f32, -1.0, 1.0, -1.0, 0.0, -0.0, 0.0, 0.0], 1, 8).unwrap();
    assert_eq!(m, vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    let m = two_four_mask_vec("t", &[0.1f32, 0.3, -0.3, 0.2], 1, 4).unwrap();
    assert_eq!(m, vec![0.0, 1.0, 1.0, 0.0]);
}

#[test]
fn two_four_errors() {
    let w = vec![1.0f32; 12];
    let e = two_four_mask_vec("fc", &w, 2, 6).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("`fc`") && s.contains("K = 6") && s.contains("multiple of 4"),
        "{s}"
    );
    let e = two_four_mask_vec("fc", &w, 2, 8).unwrap_err();
    assert!(e.to_string().contains("rows x K"), "{e}");
    let mut m = vec![0.0f32; 11];
    assert!(two_four::two_four_mask("fc", &w, 3, 4, &mut m).is_err());

    let mut w = vec![1.0f32; 16];
    w[13] = f32::NAN;
    w[9] = f32::NEG_INFINITY;
    let mut m = vec![7.0f32; 16];
    let e = two_four::two_four_mask("proj", &w, 2, 8, &mut m).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite { tensor, index: 9, .. } if tensor == "proj"),
        "{e}"
    );
    assert!(m.iter().all(|&x| x == 7.0), "mask unchanged on error");
}

// ------------------------------------------------ host build of kernels/topk.cuh ------------

#[test]
fn host_helpers_match_the_rust_twins() {
    let c = hh::constants();
    assert_eq!(c[0], topk::DIGIT_BITS);
    assert_eq!(c[1] as usize, topk::BINS);
    assert_eq!(c[2] as usize, gpu_topk::TILE);
    assert_eq!(c[3], gpu_topk::BLOCK);
    assert_eq!(c[4], <f32 as TopkWeight>::KEY_BITS);
    assert_eq!(c[5], <bf16 as TopkWeight>::KEY_BITS);
    assert_eq!(c[5], <f16 as TopkWeight>::KEY_BITS);
    assert_eq!(c[6], <f32 as TopkWeight>::NONFINITE_KEY);
    assert_eq!(c[7], <bf16 as TopkWeight>::NONFINITE_KEY);
    assert_eq!(c[8], <f16 as TopkWeight>::NONFINITE_KEY);
    // The non-finite keys are those of +Inf.
    assert_eq!(c[6], topk::key_f32(f32::INFINITY));
    assert_eq!(c[7], topk::key_16(bf16::INFINITY.to_bits()));
    assert_eq!(c[8], topk::key_16(f16::INFINITY.to_bits()));
    assert!(topk::key_f32(f32::NAN) >= c[6] && topk::key_f32(f32::MAX) < c[6]);

    // Digit schedule: 31 bits = 11 + 11 + 9, 15 bits = 11 + 4.
    for (bits, widths) in [(31u32, vec![11u32, 11, 9]), (15, vec![11, 4])] {
        assert_eq!(topk::passes(bits), widths.len() as u32);
        assert_eq!(hh::passes(bits), widths.len() as u32);
        for (p, &wd) in widths.iter().enumerate() {
            let p = p as u32;
            assert_eq!(topk::digit_width(bits, p), wd);
            assert_eq!(hh::width(bits, p), wd);
            assert_eq!(hh::shift(bits, p), topk::digit_shift(bits, p));
            assert_eq!(hh::prefix_shift(bits, p), topk::prefix_shift(bits, p));
        }
    }

    let mut rng = Rng::new(10);
    let specials = [
        0u32,
        1,
        0x7F_FFFF,
        0x80_0000,
        0x7F7F_FFFF,
        0x7F80_0000,
        0x7FC0_0000,
        0x8000_0000,
        0xFFFF_FFFF,
        0x3F80_0000,
        0xBF80_0000,
    ];
    for i in 0..200_000 {
        let bits = if i < specials.len() {
            specials[i]
        } else {
            rng.next_u64() as u32
        };
        assert_eq!(hh::key_f32(bits), topk::key_f32(f32::from_bits(bits)));
        let b16 = bits as u16;
        assert_eq!(hh::key_16(b16), topk::key_16(b16));
        for (kbits, key) in [
            (31u32, topk::key_f32(f32::from_bits(bits))),
            (15, topk::key_16(b16)),
        ] {
            // The digits concatenate back to the key, and each key matches its own prefixes.
            let mut prefix = 0u32;
            for p in 0..topk::passes(kbits) {
                let d = topk::digit(key, kbits, p);
                assert_eq!(hh::digit(key, kbits, p), d);
                assert!(hh::in_prefix(key, kbits, p, prefix));
                assert!(!hh::in_prefix(key, kbits, p, prefix ^ 1));
                prefix = (prefix << topk::digit_width(kbits, p)) | d;
            }
            assert_eq!(prefix, key);
        }
        // Order: unsigned order of keys = order of |w| for finite values.
        let a = f32::from_bits(bits);
        let b = f32::from_bits(rng.next_u64() as u32);
        if a.is_finite() && b.is_finite() {
            assert_eq!(
                topk::key_f32(a).cmp(&topk::key_f32(b)),
                a.abs().partial_cmp(&b.abs()).unwrap(),
                "{a} vs {b}"
            );
        }
    }

    for (m, want) in [
        (0.0f32, 0u32),
        (-0.0, 0),
        (1.0, 1),
        (0.5, 2),
        (-1.0, 2),
        (f32::NAN, 2),
        (f32::INFINITY, 2),
        (1.0 + f32::EPSILON, 2),
    ] {
        assert_eq!(hh::mask_state(m), want, "mask {m}");
    }

    // 2:4 group rule: exhaustive over keys in 0..5, then random keys.
    for code in 0..625u32 {
        let k = [code % 5, code / 5 % 5, code / 25 % 5, code / 125];
        let keep = two_four::two_four_keep(k);
        assert_eq!(hh::two_four_keep(k), keep, "{k:?}");
        assert_eq!(keep.count_ones(), 2, "{k:?}");
        let w: Vec<f32> = k.iter().map(|&x| x as f32).collect();
        let o = two_four_oracle(&w);
        let ob: u32 = (0..4).map(|j| (o[j] as u32) << j).sum();
        assert_eq!(keep, ob, "{k:?}");
    }
    for _ in 0..100_000 {
        let k = [0; 4].map(|_: u32| rng.next_u64() as u32 >> 1);
        assert_eq!(hh::two_four_keep(k), two_four::two_four_keep(k));
    }
}

#[test]
fn host_tile_math_covers_every_tile_once() {
    let mut rng = Rng::new(14);
    let tile = gpu_topk::TILE;
    for trial in 0..300 {
        // Tensor sizes with empty tensors anywhere (first, last, runs of them).
        let nt = 1 + rng.below(12);
        let sizes: Vec<usize> = (0..nt)
            .map(|_| match rng.below(4) {
                0 => 0,
                1 => 1 + rng.below(tile),
                2 => tile * (1 + rng.below(3)),
                _ => rng.below(5 * tile),
            })
            .collect();
        let mut tile_begin = vec![0u64];
        for &n in &sizes {
            tile_begin.push(tile_begin.last().unwrap() + n.div_ceil(tile) as u64);
        }
        let total = *tile_begin.last().unwrap();
        // Linear reference: tile -> (tensor, tile within tensor).
        let mut owner = Vec::new();
        for (t, &n) in sizes.iter().enumerate() {
            owner.extend(std::iter::repeat_n(t as u32, n.div_ceil(tile)));
        }
        for (g, &want) in owner.iter().enumerate() {
            assert_eq!(
                hh::tensor_of(&tile_begin, g as u64),
                Some(want),
                "trial {trial} sizes {sizes:?} tile {g}"
            );
        }
        assert_eq!(hh::tensor_of(&tile_begin, total), None);
        // Block ranges partition [0, total) in order, for any grid.
        for grid in [1u32, 2, 3, 7, 64, 1000] {
            let mut next = 0u64;
            for b in 0..grid {
                let (t0, t1) = hh::block_tiles(total, grid, b);
                assert!(t0 <= t1, "grid {grid} block {b}");
                if t0 < t1 {
                    assert_eq!(t0, next, "grid {grid} block {b}: ranges must be contiguous");
                    next = t1;
                }
            }
            assert_eq!(next, total, "grid {grid}: every tile covered");
        }
    }
}

// ------------------------------------------------------------------------------- GPU --------

enum Host16 {
    F32(Vec<Vec<f32>>),
    Bf16(Vec<Vec<bf16>>),
    F16(Vec<Vec<f16>>),
}

/// Upload (an empty slice becomes cudarc's null allocation, as it does for zero lengths).
fn up<T: cudarc::driver::DeviceRepr>(
    s: &std::sync::Arc<cudarc::driver::CudaStream>,
    x: &[T],
) -> cudarc::driver::CudaSlice<T> {
    if x.is_empty() {
        s.null().unwrap()
    } else {
        s.clone_htod(x).unwrap()
    }
}

fn down<T: cudarc::driver::DeviceRepr>(
    s: &std::sync::Arc<cudarc::driver::CudaStream>,
    x: &cudarc::driver::CudaSlice<T>,
) -> Vec<T> {
    if x.is_empty() {
        Vec::new()
    } else {
        s.clone_dtoh(x).unwrap()
    }
}

/// Run the GPU path on the given weights and masks; returns masks and report.
fn run_gpu(
    g: &Gpu,
    names: &[String],
    w: &Host16,
    m: &[Vec<f32>],
    f: f64,
    scope: PruneScope,
) -> asa_lth::Result<(Vec<Vec<f32>>, PruneReport)> {
    use gpu_topk::{DevicePruneTensor, DeviceWeights};
    let s = &g.stream;
    let mut dm: Vec<_> = m.iter().map(|x| up(s, x)).collect();
    enum D {
        F(Vec<cudarc::driver::CudaSlice<f32>>),
        B(Vec<cudarc::driver::CudaSlice<u16>>, bool),
    }
    let dw = match w {
        Host16::F32(v) => D::F(v.iter().map(|x| up(s, x)).collect()),
        Host16::Bf16(v) => D::B(
            v.iter()
                .map(|x| up(s, &x.iter().map(|y| y.to_bits()).collect::<Vec<_>>()))
                .collect(),
            true,
        ),
        Host16::F16(v) => D::B(
            v.iter()
                .map(|x| up(s, &x.iter().map(|y| y.to_bits()).collect::<Vec<_>>()))
                .collect(),
            false,
        ),
    };
    let mut ts: Vec<DevicePruneTensor<'_>> = dm
        .iter_mut()
        .enumerate()
        .map(|(i, mask)| DevicePruneTensor {
            name: &names[i],
            weights: match &dw {
                D::F(v) => DeviceWeights::F32(&v[i]),
                D::B(v, true) => DeviceWeights::Bf16Bits(&v[i]),
                D::B(v, false) => DeviceWeights::F16Bits(&v[i]),
            },
            mask,
        })
        .collect();
    let r = gpu_topk::prune_gpu(&g.module, s, &mut ts, f, scope)?;
    drop(ts);
    let out = dm.iter().map(|x| down(s, x)).collect();
    s.synchronize().unwrap();
    Ok((out, r))
}

fn assert_same(ctx: &str, cpu: &(Vec<Vec<f32>>, PruneReport), gpu: &(Vec<Vec<f32>>, PruneReport)) {
    for (t, (a, b)) in cpu.0.iter().zip(&gpu.0).enumerate() {
        if a != b {
            let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap();
            panic!("{ctx}: tensor {t} index {i}: cpu {} gpu {}", a[i], b[i]);
        }
    }
    assert_eq!(cpu.1, gpu.1, "{ctx}: reports differ");
}

#[test]
fn gpu_topk_matches_cpu_f32() {
    const TEST: &str = "gpu_topk_matches_cpu_f32";
    let Some(g) = gpu(TEST) else { return };
    let mut rng = Rng::new(11);
    // Small inputs with heavy ties, many configurations.
    for trial in 0..150 {
        let nt = 1 + rng.below(8);
        let sizes: Vec<usize> = (0..nt)
            .map(|_| [0, 1, 2, 4095, 4096, 4097, 1000][rng.below(7)] + rng.below(3000))
            .collect();
        let v = [
            Values::Ties(2),
            Values::Ties(5),
            Values::Mixed,
            Values::Normal,
        ][trial % 4];
        let md = model(&mut rng, &sizes, v);
        let f = FRACTIONS[rng.below(FRACTIONS.len())];
        for scope in [PruneScope::Global, PruneScope::PerTensor] {
            let ctx = format!("trial {trial} {scope:?} f {f} {v:?} {sizes:?}");
            let c = run_cpu(&md.names, &md.w, &md.m, f, scope).unwrap();
            let d = run_gpu(&g, &md.names, &Host16::F32(md.w.clone()), &md.m, f, scope).unwrap();
            assert_same(&ctx, &c, &d);
        }
    }
    // 10^7 weights over many tensors, heavy ties and continuous values.
    let mut sizes: Vec<usize> = (0..60).map(|i| [0, 1, 77, 4096, 300_000][i % 5]).collect();
    let total: usize = sizes.iter().sum();
    sizes.push(10_000_000 - total);
    for v in [Values::Ties(6), Values::Normal] {
        let md = model(&mut rng, &sizes, v);
        for scope in [PruneScope::Global, PruneScope::PerTensor] {
            let c = run_cpu(&md.names, &md.w, &md.m, 0.2, scope).unwrap();
            let d = run_gpu(&g, &md.names, &Host16::F32(md.w.clone()), &md.m, 0.2, scope).unwrap();
            assert_same(&format!("1e7 {v:?} {scope:?}"), &c, &d);
            println!(
                "{TEST}: 1e7 {v:?} {scope:?}: identical ({} pruned)",
                c.1.pruned()
            );
        }
    }
}

#[test]
fn gpu_topk_matches_cpu_bf16_f16() {
    const TEST: &str = "gpu_topk_matches_cpu_bf16_f16";
    let Some(g) = gpu(TEST) else { return };
    let mut rng = Rng::new(12);
    for trial in 0..80 {
        let nt = 1 + rng.below(6);
        let sizes: Vec<usize> = (0..nt).map(|_| rng.below(20_000)).collect();
        let v = [Values::Ties(5), Values::Mixed, Values::Normal][trial % 3];
        let md = model(&mut rng, &sizes, v);
        let f = FRACTIONS[rng.below(FRACTIONS.len())];
        for scope in [PruneScope::Global, PruneScope::PerTensor] {
            let wb = to16(&md.w, bf16::from_f32);
            let c = run_cpu(&md.names, &wb, &md.m, f, scope).unwrap();
            let d = run_gpu(&g, &md.names, &Host16::Bf16(wb), &md.m, f, scope).unwrap();
            assert_same(&format!("bf16 {trial} {scope:?}"), &c, &d);
            let wh = to16(&md.w, f16::from_f32);
            let c = run_cpu(&md.names, &wh, &md.m, f, scope).unwrap();
            let d = run_gpu(&g, &md.names, &Host16::F16(wh), &md.m, f, scope).unwrap();
            assert_same(&format!("f16 {trial} {scope:?}"), &c, &d);
        }
    }
}

#[test]
fn gpu_topk_errors_match_cpu() {
    const TEST: &str = "gpu_topk_errors_match_cpu";
    let Some(g) = gpu(TEST) else { return };
    let names: Vec<String> = ["first", "empty", "second"].map(String::from).to_vec();
    let mut w = vec![vec![1.0f32; 5000], vec![], vec![2.0f32; 9000]];
    w[2][8000] = f32::NAN;
    w[2][7000] = f32::INFINITY;
    let mut m = vec![vec![1.0f32; 5000], vec![], vec![1.0f32; 9000]];
    for scope in [PruneScope::Global, PruneScope::PerTensor] {
        let c = run_cpu(&names, &w, &m, 0.5, scope).unwrap_err().to_string();
        let d = run_gpu(&g, &names, &Host16::F32(w.clone()), &m, 0.5, scope)
            .unwrap_err()
            .to_string();
        assert_eq!(c, d);
        assert!(d.contains("second") && d.contains("7000"), "{d}");
    }
    m[0][4321] = 0.5;
    let c = run_cpu(&names, &w, &m, 0.5, PruneScope::Global)
        .unwrap_err()
        .to_string();
    let d = run_gpu(
        &g,
        &names,
        &Host16::F32(w.clone()),
        &m,
        0.5,
        PruneScope::Global,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(c, d);
    assert!(d.contains("first") && d.contains("4321"), "{d}");
    // Masks unchanged on error.
    let (got, _) = {
        m[0][4321] = 1.0;
        w[2][8000] = 3.0;
        w[2][7000] = 3.0;
        run_gpu(
            &g,
            &names,
            &Host16::F32(w.clone()),
            &m,
            0.0,
            PruneScope::Global,
        )
        .unwrap()
    };
    assert_eq!(got, m);
}

#[test]
fn gpu_two_four_matches_cpu() {
    const TEST: &str = "gpu_two_four_matches_cpu";
    let Some(g) = gpu(TEST) else { return };
    use gpu_topk::DeviceWeights;
    let s = &g.stream;
    let mut rng = Rng::new(13);
    for (rows, k) in [(1, 4), (3, 8), (64, 128), (777, 516), (4096, 1024)] {
        for v in [Values::Ties(3), Values::Mixed] {
            let w: Vec<f32> = (0..rows * k).map(|_| value(&mut rng, v)).collect();
            let cpu = two_four_mask_vec("w", &w, rows, k).unwrap();
            let dw = s.clone_htod(&w).unwrap();
            let mut dm = s.alloc_zeros::<f32>(rows * k).unwrap();
            gpu_topk::two_four_mask_gpu(
                &g.module,
                s,
                "w",
                DeviceWeights::F32(&dw),
                rows,
                k,
                &mut dm,
            )
            .unwrap();
            let got = s.clone_dtoh(&dm).unwrap();
            s.synchronize().unwrap();
            assert!(got == cpu, "f32 {rows}x{k} {v:?}");
            for bf in [true, false] {
                let bits: Vec<u16> = if bf {
                    w.iter().map(|&x| bf16::from_f32(x).to_bits()).collect()
                } else {
                    w.iter().map(|&x| f16::from_f32(x).to_bits()).collect()
                };
                let cpu = if bf {
                    let wb: Vec<bf16> = bits.iter().map(|&b| bf16::from_bits(b)).collect();
                    two_four_mask_vec("w", &wb, rows, k).unwrap()
                } else {
                    let wh: Vec<f16> = bits.iter().map(|&b| f16::from_bits(b)).collect();
                    two_four_mask_vec("w", &wh, rows, k).unwrap()
                };
                let db = s.clone_htod(&bits).unwrap();
                let dwt = if bf {
                    DeviceWeights::Bf16Bits(&db)
                } else {
                    DeviceWeights::F16Bits(&db)
                };
                gpu_topk::two_four_mask_gpu(&g.module, s, "w", dwt, rows, k, &mut dm).unwrap();
                let got = s.clone_dtoh(&dm).unwrap();
                s.synchronize().unwrap();
                assert!(got == cpu, "16-bit (bf16 {bf}) {rows}x{k} {v:?}");
            }
        }
    }
    let mut w = vec![1.0f32; 64];
    w[37] = f32::NAN;
    w[50] = f32::INFINITY;
    let dw = s.clone_htod(&w).unwrap();
    let mut dm = s.alloc_zeros::<f32>(64).unwrap();
    let e =
        gpu_topk::two_four_mask_gpu(&g.module, s, "bad", DeviceWeights::F32(&dw), 4, 16, &mut dm)
            .unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite { index: 37, tensor, .. } if tensor == "bad"),
        "{e}"
    );
    let e =
        gpu_topk::two_four_mask_gpu(&g.module, s, "bad", DeviceWeights::F32(&dw), 8, 8, &mut dm)
            .unwrap_err();
    assert!(matches!(&e, Error::NonFinite { .. }), "{e}");
    let e = gpu_topk::two_four_mask_gpu(&g.module, s, "k6", DeviceWeights::F32(&dw), 1, 6, &mut dm)
        .unwrap_err();
    assert!(e.to_string().contains("multiple of 4"), "{e}");
}

// ------------------------------------------------------------- SIMT-emulated kernels ------
// The kernels' own CUDA source run on the CPU (src/backend/cuda/simt.rs) under the same driver
// as on a GPU (`prune_driver`): every block, barrier, ballot, warp reduction and atomic of
// topk_hist_*, topk_tie_count_* and topk_mask_update_*, against the CPU path bit for bit.

use asa_lth::backend::cuda::simt;

fn run_emu<W: TopkWeight>(
    names: &[String],
    w: &[Vec<W>],
    m: &[Vec<f32>],
    f: f64,
    scope: PruneScope,
) -> asa_lth::Result<(Vec<Vec<f32>>, PruneReport)> {
    run_with(simt::prune, names, w, m, f, scope)
}

#[test]
fn emulated_topk_kernels_match_cpu() {
    let mut rng = Rng::new(71);
    // Heavy ties, several tensors (empty ones, tile tails), existing masks, both scopes; sizes
    // span several 4096-element tiles so blocks own tile ranges and tie cuts fall mid-tile.
    for trial in 0..12 {
        let nt = 1 + rng.below(5);
        let sizes: Vec<usize> = (0..nt)
            .map(|_| [0, 1, 4095, 4097, 9000, 300][rng.below(6)] + rng.below(200))
            .collect();
        let v = [
            Values::Ties(2),
            Values::Ties(5),
            Values::Mixed,
            Values::Normal,
        ][trial % 4];
        let md = model(&mut rng, &sizes, v);
        let f = FRACTIONS[rng.below(FRACTIONS.len())];
        for scope in [PruneScope::Global, PruneScope::PerTensor] {
            let ctx = format!("emulated f32 trial {trial} {scope:?} f {f} {v:?} {sizes:?}");
            let c = run_cpu(&md.names, &md.w, &md.m, f, scope).unwrap();
            let e = run_emu(&md.names, &md.w, &md.m, f, scope).unwrap();
            assert_same(&ctx, &c, &e);
        }
        // bf16 and f16: 15-bit keys, two passes.
        let wb = to16(&md.w, bf16::from_f32);
        let wh = to16(&md.w, f16::from_f32);
        let ctx = format!("emulated 16-bit trial {trial} f {f} {v:?}");
        let c = run_cpu(&md.names, &wb, &md.m, f, PruneScope::Global).unwrap();
        let e = run_emu(&md.names, &wb, &md.m, f, PruneScope::Global).unwrap();
        assert_same(&format!("{ctx} bf16"), &c, &e);
        let c = run_cpu(&md.names, &wh, &md.m, f, PruneScope::PerTensor).unwrap();
        let e = run_emu(&md.names, &wh, &md.m, f, PruneScope::PerTensor).unwrap();
        assert_same(&format!("{ctx} f16"), &c, &e);
    }
    // Ten million weights over 40 tensors, heavy ties: many blocks, each over a tile range that
    // crosses tensor (and group) boundaries.
    let mut sizes: Vec<usize> = (0..39).map(|i| [0, 1, 77, 4096, 30_000][i % 5]).collect();
    sizes.push(10_000_000 - sizes.iter().sum::<usize>());
    let md = model(&mut rng, &sizes, Values::Ties(6));
    for scope in [PruneScope::Global, PruneScope::PerTensor] {
        let c = run_cpu(&md.names, &md.w, &md.m, 0.37, scope).unwrap();
        let e = run_emu(&md.names, &md.w, &md.m, 0.37, scope).unwrap();
        assert_same(&format!("emulated 1e7 {scope:?}"), &c, &e);
    }
}

#[test]
fn emulated_topk_errors_match_cpu() {
    let names: Vec<String> = ["first", "empty", "second"].map(String::from).to_vec();
    let mut w = vec![vec![1.0f32; 5000], vec![], vec![2.0f32; 9000]];
    w[2][8000] = f32::NAN;
    w[2][7000] = f32::INFINITY;
    let mut m = vec![vec![1.0f32; 5000], vec![], vec![1.0f32; 9000]];
    for scope in [PruneScope::Global, PruneScope::PerTensor] {
        let c = run_cpu(&names, &w, &m, 0.5, scope).unwrap_err().to_string();
        let e = run_emu(&names, &w, &m, 0.5, scope).unwrap_err().to_string();
        assert_eq!(c, e);
        assert!(e.contains("second") && e.contains("7000"), "{e}");
    }
    m[0][4321] = 0.5;
    let c = run_cpu(&names, &w, &m, 0.5, PruneScope::Global)
        .unwrap_err()
        .to_string();
    let e = run_emu(&names, &w, &m, 0.5, PruneScope::Global)
        .unwrap_err()
        .to_string();
    assert_eq!(c, e);
    assert!(e.contains("first") && e.contains("4321"), "{e}");
}

#[test]
fn emulated_two_four_kernels_match_cpu() {
    let mut rng = Rng::new(73);
    for (rows, k) in [(1, 4), (3, 8), (64, 128), (77, 516)] {
        for v in [Values::Ties(3), Values::Mixed] {
            let w: Vec<f32> = (0..rows * k).map(|_| value(&mut rng, v)).collect();
            let cpu = two_four_mask_vec("w", &w, rows, k).unwrap();
            let mut got = vec![f32::NAN; rows * k];
            simt::two_four_mask("w", &w, rows, k, &mut got).unwrap();
            assert!(got == cpu, "f32 {rows}x{k} {v:?}");
            let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
            let cpu = two_four_mask_vec("w", &wb, rows, k).unwrap();
            simt::two_four_mask("w", &wb, rows, k, &mut got).unwrap();
            assert!(got == cpu, "bf16 {rows}x{k} {v:?}");
            let wh: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
            let cpu = two_four_mask_vec("w", &wh, rows, k).unwrap();
            simt::two_four_mask("w", &wh, rows, k, &mut got).unwrap();
            assert!(got == cpu, "f16 {rows}x{k} {v:?}");
        }
    }
    let mut w = vec![1.0f32; 64];
    w[37] = f32::NAN;
    w[50] = f32::INFINITY;
    let mut m = vec![0.0f32; 64];
    let e = simt::two_four_mask("bad", &w, 4, 16, &mut m).unwrap_err();
    assert!(
        matches!(&e, Error::NonFinite { index: 37, tensor, .. } if tensor == "bad"),
        "{e}"
    );
}

// ------------------------------------------------------------------------------- bench ------

/// The `topk` bench cases timed once (the CLI wiring lives in src/main.rs):
/// `cargo test --release --test topk bench_topk_cases -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark; run explicitly"]
fn bench_topk_cases() {
    use asa_lth::bench::{median_spread, time_calls, topk_cases::topk_cases, Timing};
    let t = Timing {
        samples: 7,
        min_sample_secs: 0.3,
        warmup_secs: 0.5,
    };
    let mut sort_secs = None;
    let mut rows = Vec::new();
    for mut c in topk_cases(&|k| k == "topk") {
        let (med, spread) = median_spread(&time_calls(&mut c.run, t));
        if c.name.contains("sort_baseline") {
            sort_secs = Some(med);
        }
        rows.push((c.name.clone(), c.work, med, spread));
    }
    let elems = asa_lth::bench::topk_cases::WEIGHTS as f64;
    for (name, work, med, spread) in rows {
        println!(
            "{name}: {:.2} ms (±{:.1}%), {:.3} G elements/s, {:.2} GB/s, {:.1}x the sort baseline",
            med * 1e3,
            spread * 100.0,
            elems / med / 1e9,
            work / med / 1e9,
            sort_secs.map_or(f64::NAN, |s| s / med)
        );
    }
}

/// Pass 0 has a vector form per instruction-set level (on AVX-512 with conflict detection, a
/// gather/scatter histogram; elsewhere scalar increments over eight histograms). Every level
/// gives the same masks and report on trained-like weights whose magnitudes crowd into a few
/// top-digit bins, with tensors that end inside a 16-lane group and past a chunk edge, and
/// reports the same (lowest) bad element when it sits inside a vector group.
#[test]
fn pass0_is_the_same_at_every_instruction_set_level() {
    use asa_lth::backend::cpu::isa::{self, with_level, Isa};
    let mut rng = Rng::new(20);
    let sizes = [topk::CHUNK + 37, 16 * 1000, 33, 2 * topk::CHUNK, 15];
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("t{i}")).collect();
    let w: Vec<Vec<f32>> = sizes
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| match rng.below(8) {
                    0 => TIE_SET[rng.below(6)],
                    _ => (rng.normal() * 0.02) as f32,
                })
                .collect()
        })
        .collect();
    let m: Vec<Vec<f32>> = sizes.iter().map(|&n| mask(&mut rng, n, 0.2)).collect();
    let levels = Isa::available();
    println!(
        "levels {levels:?}; conflict-detection path: {}",
        isa::has_avx512_conflict()
    );
    for scope in [PruneScope::Global, PruneScope::PerTensor] {
        let reference = with_level(Isa::Portable, || run_cpu(&names, &w, &m, 0.3, scope))
            .expect("portable run");
        for &level in &levels {
            let got = with_level(level, || run_cpu(&names, &w, &m, 0.3, scope)).expect("run");
            let differ: usize = (got.0.iter().flatten())
                .zip(reference.0.iter().flatten())
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "{level} {scope:?}: mask entries differ from portable"
            );
            assert_eq!(got.1, reference.1, "{level} {scope:?}: report");
        }
    }
    // Bad elements inside vector groups of the second chunk of t3, each alone in its chunk
    // so that only the vector form can flag it: an unpruned +Inf (beside a NaN under a pruned
    // mask, which is ignored); then a 0.5 mask value.
    let at = topk::CHUNK + 5;
    let mut wb = w.clone();
    let mut mb = m.clone();
    wb[3][at - 40] = f32::NAN;
    mb[3][at - 40] = 0.0;
    wb[3][at] = f32::INFINITY;
    mb[3][at] = 1.0;
    let wc = w.clone();
    let mut mc = m.clone();
    mc[3][at + 21] = 0.5;
    for &level in &levels {
        match with_level(level, || run_cpu(&names, &wb, &mb, 0.3, PruneScope::Global)) {
            Err(Error::NonFinite { tensor, index, .. }) => {
                assert_eq!((tensor.as_str(), index), ("t3", at), "{level}")
            }
            Err(other) => panic!("{level}: expected NonFinite, got {other}"),
            Ok(_) => panic!("{level}: an unpruned +Inf was accepted"),
        }
        let s = match with_level(level, || run_cpu(&names, &wc, &mc, 0.3, PruneScope::Global)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{level}: a 0.5 mask value was accepted"),
        };
        let want = format!("index {}", at + 21);
        assert!(s.contains("`t3`") && s.contains(&want), "{level}: {s}");
    }
}
