//! Benchmark cases of exact magnitude top-k pruning (kernel family `topk`, src/sparse/topk.rs):
//! the CPU radix select on 10^7 weights spread over 20 tensors of different sizes, global and
//! per tensor, f32 and bf16, and the same selection done by a full (parallel) sort as the
//! baseline, so the ratio is visible in one report.
//!
//! Every case prunes f = 0.2 of the remaining weights of masks that already have ~20% pruned
//! (an LTH level after the first), and restores the masks from a saved copy before each call
//! (a 40 MB copy, the same in every case, so ratios slightly understate the gap).
//! Work is counted as the bytes of one read of the inputs: 4 B weight (2 B for bf16) + 4 B mask
//! per element, so elements/s = (B/s) / 8 for f32 and (B/s) / 6 for bf16, and the roofline
//! ratio says how far the whole call is from one streaming read at copy bandwidth.

use rayon::prelude::*;

use crate::bench::cases::{BenchCase, Unit};
use crate::rng::Rng;
use crate::sparse::topk::{
    key_f32, prune, prune_count, prune_timed, PruneScope, PruneTensor, TopkWeight,
};

/// Weights in the benchmark model (over [`TENSORS`] tensors).
pub const WEIGHTS: usize = 10_000_000;
/// Tensors the weights are spread over.
pub const TENSORS: usize = 20;
/// Fraction pruned per call.
pub const FRACTION: f64 = 0.2;

/// Sizes of the benchmark tensors: 20 sizes in the ratios 1 : 2 : 3 : 4 (repeating), summing to
/// exactly [`WEIGHTS`].
pub fn tensor_sizes() -> Vec<usize> {
    let parts: Vec<usize> = (0..TENSORS).map(|i| i % 4 + 1).collect();
    let total: usize = parts.iter().sum();
    let mut sizes: Vec<usize> = parts.iter().map(|p| WEIGHTS * p / total).collect();
    let short = WEIGHTS - sizes.iter().sum::<usize>();
    sizes[TENSORS - 1] += short;
    sizes
}

struct Inputs {
    weights: Vec<Vec<f32>>,
    masks: Vec<Vec<f32>>,
    names: Vec<String>,
}

fn inputs(seed: u64) -> Inputs {
    let mut rng = Rng::new(seed);
    let mut weights = Vec::new();
    let mut masks = Vec::new();
    let mut names = Vec::new();
    for (i, n) in tensor_sizes().into_iter().enumerate() {
        weights.push((0..n).map(|_| (rng.normal() * 0.02) as f32).collect());
        masks.push(
            (0..n)
                .map(|_| (rng.uniform() >= 0.2) as u32 as f32)
                .collect(),
        );
        names.push(format!("layer{i}.weight"));
    }
    Inputs {
        weights,
        masks,
        names,
    }
}

fn restore(masks: &mut [Vec<f32>], saved: &[Vec<f32>]) {
    masks
        .par_iter_mut()
        .zip(saved)
        .for_each(|(m, s)| m.copy_from_slice(s));
}

fn radix_case<W: TopkWeight>(
    scope: PruneScope,
    label: &str,
    weights: Vec<Vec<W>>,
    masks: Vec<Vec<f32>>,
    names: Vec<String>,
) -> BenchCase {
    let bytes = (std::mem::size_of::<W>() + 4) * WEIGHTS;
    let saved = masks.clone();
    let mut masks = masks;
    BenchCase {
        kernel: "topk",
        name: format!(
            "topk/cpu_{label}_{}/n{WEIGHTS}_t{TENSORS}_f{FRACTION}",
            W::DTYPE
        ),
        device: "cpu".into(),
        unit: Unit::Bytes,
        work: bytes as f64,
        run: Box::new(move || {
            restore(&mut masks, &saved);
            let mut ts: Vec<PruneTensor<'_, W>> = names
                .iter()
                .zip(&weights)
                .zip(masks.iter_mut())
                .map(|((n, w), m)| PruneTensor::new(n, w, m))
                .collect();
            let r = prune(&mut ts, FRACTION, scope).expect("finite weights, 0/1 masks");
            std::hint::black_box(r);
        }),
    }
}

/// The baseline: the same global selection by sorting every unpruned (key, global index)
/// pair (rayon's parallel unstable sort of packed u64s), then pruning the first n.
pub fn prune_global_by_sort(weights: &[Vec<f32>], masks: &mut [Vec<f32>], fraction: f64) -> u64 {
    let mut offsets = Vec::with_capacity(weights.len());
    let mut off = 0u64;
    for w in weights {
        offsets.push(off);
        off += w.len() as u64;
    }
    assert!(
        off <= u32::MAX as u64,
        "the packed sort baseline indexes with u32"
    );
    let mut keys: Vec<u64> = weights
        .par_iter()
        .zip(masks.par_iter())
        .zip(offsets.par_iter())
        .flat_map_iter(|((w, m), &o)| {
            w.iter()
                .zip(m)
                .enumerate()
                .filter(|(_, (_, &mk))| mk != 0.0)
                .map(move |(i, (&x, _))| ((key_f32(x) as u64) << 32) | (o + i as u64))
        })
        .collect();
    let n = prune_count(fraction, keys.len() as u64) as usize;
    keys.par_sort_unstable();
    for &k in &keys[..n] {
        let g = k & 0xFFFF_FFFF;
        let t = offsets.partition_point(|&o| o <= g) - 1;
        masks[t][(g - offsets[t]) as usize] = 0.0;
    }
    n as u64
}

/// The `topk` cases wanted by `want` (called with the kernel family name, "topk").
pub fn topk_cases(want: &dyn Fn(&str) -> bool) -> Vec<BenchCase> {
    let mut cases = Vec::new();
    if !want("topk") {
        return cases;
    }
    let Inputs {
        weights,
        masks,
        names,
    } = inputs(77);
    cases.push(radix_case(
        PruneScope::Global,
        "global",
        weights.clone(),
        masks.clone(),
        names.clone(),
    ));
    cases.push(radix_case(
        PruneScope::PerTensor,
        "per_tensor",
        weights.clone(),
        masks.clone(),
        names.clone(),
    ));
    let wb: Vec<Vec<half::bf16>> = weights
        .iter()
        .map(|w| w.iter().map(|&x| half::bf16::from_f32(x)).collect())
        .collect();
    cases.push(radix_case(
        PruneScope::Global,
        "global",
        wb,
        masks.clone(),
        names,
    ));
    let saved = masks.clone();
    let mut masks = masks;
    cases.push(BenchCase {
        kernel: "topk",
        name: format!("topk/cpu_sort_baseline_f32/n{WEIGHTS}_t{TENSORS}_f{FRACTION}"),
        device: "cpu".into(),
        unit: Unit::Bytes,
        work: (8 * WEIGHTS) as f64,
        run: Box::new(move || {
            restore(&mut masks, &saved);
            std::hint::black_box(prune_global_by_sort(&weights, &mut masks, FRACTION));
        }),
    });
    cases
}

/// One sweep of the global f32 selection timed on its own, over `samples` calls: its figure
/// name, the bytes it moves (weights and masks read; the mask pass also writes the masks) and
/// the seconds of each call. The sweeps are timed inside real `prune` calls on the benchmark's
/// inputs (masks restored between calls), so they see the prefixes and ties a real selection
/// has; the roofline of a read-only sweep is the read bandwidth.
pub struct PassSample {
    pub name: String,
    pub bytes: f64,
    pub secs: Vec<f64>,
}

/// The per-sweep samples of the `topk/cpu_global_f32` case (see [`PassSample`]).
pub fn pass_samples(samples: usize) -> Vec<PassSample> {
    let Inputs {
        weights,
        masks,
        names,
    } = inputs(77);
    let saved = masks.clone();
    let mut masks = masks;
    let mut out: Vec<PassSample> = Vec::new();
    // One untimed call first (page faults, thread start-up), like the harness's warm-up.
    for call in 0..=samples {
        restore(&mut masks, &saved);
        let mut ts: Vec<PruneTensor<'_, f32>> = names
            .iter()
            .zip(&weights)
            .zip(masks.iter_mut())
            .map(|((n, w), m)| PruneTensor::new(n, w, m))
            .collect();
        let (_, times) =
            prune_timed(&mut ts, FRACTION, PruneScope::Global).expect("finite weights");
        if call == 0 {
            continue;
        }
        for (what, secs) in times {
            let name = format!("topk/{what}_global_f32/n{WEIGHTS}_t{TENSORS}_f{FRACTION}");
            match out.iter_mut().find(|p| p.name == name) {
                Some(p) => p.secs.push(secs),
                None => out.push(PassSample {
                    name,
                    bytes: (if what == "mask" { 12 } else { 8 } * WEIGHTS) as f64,
                    secs: vec![secs],
                }),
            }
        }
    }
    out
}
