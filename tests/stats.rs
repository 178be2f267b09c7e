//! The statistics module on inputs with known answers.

use asa_lth::rng::Rng;
use asa_lth::stats::{self, Alternative, BootstrapConfig};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn mean_sd_quantile() {
    assert_eq!(stats::mean(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
    assert_eq!(stats::mean(&[]), None);
    assert!(close(
        stats::sample_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap(),
        (32.0f64 / 7.0).sqrt(),
        1e-15
    ));
    assert_eq!(stats::sample_sd(&[1.0]), None);
    let s = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(stats::quantile(&s, 0.5), Some(2.5));
    assert_eq!(stats::quantile(&s, 0.25), Some(1.75));
    assert_eq!(stats::quantile(&s, 0.0), Some(1.0));
    assert_eq!(stats::quantile(&s, 1.0), Some(4.0));
    assert_eq!(stats::quantile(&s, 1.5), None);
}

#[test]
fn bootstrap_of_a_constant_is_the_constant() {
    let cfg = BootstrapConfig::default();
    let ci = stats::bootstrap_mean(&[3.25; 17], &cfg).unwrap();
    assert_eq!((ci.estimate, ci.lo, ci.hi, ci.n), (3.25, 3.25, 3.25, 17));
    let h = stats::hierarchical_bootstrap_mean(&[vec![2.0; 5], vec![2.0; 9]], &cfg).unwrap();
    assert_eq!((h.estimate, h.lo, h.hi, h.n), (2.0, 2.0, 2.0, 2));
    let d = stats::bootstrap_paired_diff(&[2.0, 3.0, 5.0], &[1.0, 2.0, 4.0], &cfg).unwrap();
    assert_eq!((d.lo, d.hi), (1.0, 1.0));
}

#[test]
fn bootstrap_is_seeded_and_matches_the_normal_theory_width() {
    let mut rng = Rng::new(11);
    let xs: Vec<f64> = (0..400).map(|_| rng.normal()).collect();
    let cfg = BootstrapConfig {
        resamples: 4000,
        level: 0.95,
        seed: 3,
    };
    let a = stats::bootstrap_mean(&xs, &cfg).unwrap();
    let b = stats::bootstrap_mean(&xs, &cfg).unwrap();
    assert_eq!(a, b, "same seed, same interval");
    let c = stats::bootstrap_mean(&xs, &BootstrapConfig { seed: 4, ..cfg }).unwrap();
    assert_ne!(a, c);
    let m = stats::mean(&xs).unwrap();
    assert_eq!(a.estimate, m);
    assert!(a.contains(m));
    let se = stats::sample_sd(&xs).unwrap() / (xs.len() as f64).sqrt();
    assert!(
        close(a.half_width(), 1.96 * se, 0.1),
        "{} vs {}",
        a.half_width(),
        1.96 * se
    );
}

#[test]
fn perplexity_is_token_weighted() {
    // Unit 0: 2 tokens of loss ln 4 each; unit 1: 6 tokens of loss 0. Token-weighted:
    // exp(2 ln 4 / 8) = 4^(1/4) = √2; the mean of per-unit perplexities would be 2.5.
    let l = [2.0 * 4f64.ln(), 0.0];
    let n = [2, 6];
    assert!(close(
        stats::perplexity(&l, &n).unwrap(),
        2f64.sqrt(),
        1e-15
    ));
    assert_eq!(stats::perplexity(&[1.0], &[0]), None);
    // Every unit with the same per-token loss c: every resample gives exp(c).
    let c = 1.7;
    let toks = [3, 8, 1, 12, 5];
    let sums: Vec<f64> = toks.iter().map(|&t| c * t as f64).collect();
    let ci = stats::bootstrap_perplexity(&sums, &toks, &BootstrapConfig::default()).unwrap();
    assert!(close(ci.lo, c.exp(), 1e-12) && close(ci.hi, c.exp(), 1e-12));
    assert!(stats::bootstrap_perplexity(&[1.0], &[1, 2], &BootstrapConfig::default()).is_err());
}

#[test]
fn t_quantiles_and_interval() {
    for (p, df, want) in [
        (0.975, 1.0, 12.706_204_736),
        (0.975, 2.0, 4.302_652_730),
        (0.975, 10.0, 2.228_138_852),
        (0.95, 5.0, 2.015_048_373),
        (0.975, 1e7, 1.959_964),
    ] {
        let got = stats::t_quantile(p, df).unwrap();
        assert!(close(got, want, 1e-6), "t({p}, {df}) = {got}, want {want}");
    }
    assert!(close(
        stats::t_quantile(0.025, 2.0).unwrap(),
        -4.302_652_730,
        1e-8
    ));
    assert!(close(stats::t_cdf(0.0, 3.0), 0.5, 1e-15));
    // Three seeds 1, 2, 3: mean 2, sd 1, half-width t(0.975, 2)/√3.
    let ci = stats::t_interval(&[1.0, 2.0, 3.0], 0.95).unwrap();
    assert_eq!(ci.estimate, 2.0);
    assert!(close(ci.half_width(), 4.302_652_730 / 3f64.sqrt(), 1e-8));
    let one = stats::t_interval(&[5.0], 0.95).unwrap();
    assert_eq!((one.lo, one.hi, one.n), (5.0, 5.0, 1));
    assert!(stats::t_interval(&[], 0.95).is_err());
    assert!(stats::t_interval(&[1.0, 2.0], 1.5).is_err());
}

#[test]
fn ranks_and_spearman_with_ties() {
    assert_eq!(
        stats::ranks(&[10.0, 20.0, 20.0, 30.0]).unwrap(),
        [1.0, 2.5, 2.5, 4.0]
    );
    assert_eq!(
        stats::ranks(&[3.0, 1.0, 3.0, 3.0]).unwrap(),
        [3.0, 1.0, 3.0, 3.0]
    );
    assert!(stats::ranks(&[1.0, f64::NAN]).is_err());
    // Monotone but non-linear: ρ = 1 (and −1 reversed).
    let x: Vec<f64> = (1..=9).map(|i| i as f64).collect();
    let y: Vec<f64> = x.iter().map(|v| v.powi(3)).collect();
    assert_eq!(stats::spearman(&x, &y).unwrap(), Some(1.0));
    let yr: Vec<f64> = y.iter().map(|v| -v).collect();
    assert_eq!(stats::spearman(&x, &yr).unwrap(), Some(-1.0));
    // A tie case (scipy.stats.spearmanr gives 0.9746794344808964).
    let r = stats::spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 2.0, 2.0, 3.0, 4.0])
        .unwrap()
        .unwrap();
    assert!(close(r, 0.974_679_434_480_896_4, 1e-14), "{r}");
    // Undefined: a constant side, or too few points.
    assert_eq!(stats::spearman(&[1.0, 2.0, 3.0], &[4.0; 3]).unwrap(), None);
    assert_eq!(stats::spearman(&[1.0], &[2.0]).unwrap(), None);
    assert!(stats::spearman(&[1.0, 2.0], &[1.0]).is_err());
}

#[test]
fn permutation_p_values() {
    // n = 8, perfectly correlated, exact enumeration of 8! = 40320 permutations: only the
    // identity reaches ρ = 1, and only it and the reversal reach |ρ| = 1.
    let x: Vec<f64> = (0..8).map(|i| i as f64).collect();
    let y: Vec<f64> = x.iter().map(|v| v * 2.0 + 1.0).collect();
    let two = stats::spearman_test(&x, &y, Alternative::TwoSided, 100_000, 0)
        .unwrap()
        .unwrap();
    assert!(two.exact && two.permutations == 40320);
    assert_eq!(two.rho, 1.0);
    assert_eq!(two.p_value, 2.0 / 40320.0);
    let gt = stats::spearman_test(&x, &y, Alternative::Greater, 100_000, 0)
        .unwrap()
        .unwrap();
    assert_eq!(gt.p_value, 1.0 / 40320.0);
    let lt = stats::spearman_test(&x, &y, Alternative::Less, 100_000, 0)
        .unwrap()
        .unwrap();
    assert_eq!(lt.p_value, 1.0);
    // n = 4, y = [1, 3, 2, 4]: ρ = 0.8; 4 of 24 permutations have ρ ≥ 0.8 (identity and the
    // three adjacent swaps), 4 more have ρ ≤ −0.8.
    let a = [1.0, 2.0, 3.0, 4.0];
    let b = [1.0, 3.0, 2.0, 4.0];
    let t = stats::spearman_test(&a, &b, Alternative::TwoSided, 1000, 0)
        .unwrap()
        .unwrap();
    assert!(close(t.rho, 0.8, 1e-15));
    assert!(close(t.p_value, 8.0 / 24.0, 1e-15));
    let t = stats::spearman_test(&a, &b, Alternative::Greater, 1000, 0)
        .unwrap()
        .unwrap();
    assert!(close(t.p_value, 4.0 / 24.0, 1e-15));
    // n = 12 (12! > budget): Monte Carlo, perfect correlation gives the floor 1/(draws + 1);
    // seeded, so repeatable.
    let x: Vec<f64> = (0..12).map(|i| i as f64).collect();
    let mc = stats::spearman_test(&x, &x, Alternative::TwoSided, 5000, 9)
        .unwrap()
        .unwrap();
    assert!(!mc.exact && mc.permutations == 5000);
    assert_eq!(mc.p_value, 1.0 / 5001.0);
    // Uncorrelated-ish data: Monte Carlo p close to the exact one, and deterministic.
    let mut rng = Rng::new(5);
    let u: Vec<f64> = (0..9).map(|_| rng.uniform()).collect();
    let v: Vec<f64> = (0..9).map(|_| rng.uniform()).collect();
    let exact = stats::spearman_test(&u, &v, Alternative::TwoSided, 1_000_000, 0)
        .unwrap()
        .unwrap();
    let mc1 = stats::spearman_test(&u, &v, Alternative::TwoSided, 20_000, 1)
        .unwrap()
        .unwrap();
    let mc2 = stats::spearman_test(&u, &v, Alternative::TwoSided, 20_000, 1)
        .unwrap()
        .unwrap();
    assert!(exact.exact && !mc1.exact);
    assert_eq!(mc1, mc2);
    assert!((mc1.p_value - exact.p_value).abs() < 0.02);
    // Ties in y still work; constant y has no test.
    let tie = stats::spearman_test(&a, &[1.0, 1.0, 2.0, 2.0], Alternative::TwoSided, 1000, 0)
        .unwrap()
        .unwrap();
    assert!(tie.p_value > 0.0 && tie.p_value <= 1.0);
    assert!(
        stats::spearman_test(&a, &[1.0; 4], Alternative::TwoSided, 1000, 0)
            .unwrap()
            .is_none()
    );
}

#[test]
fn steps_to_reach_a_target() {
    let curve = [(100, 5.0), (200, 4.0), (300, 3.5), (400, 3.6)];
    assert_eq!(stats::steps_to_reach(&curve, 4.0, true), Some(200));
    assert_eq!(stats::steps_to_reach(&curve, 3.55, true), Some(300));
    assert_eq!(stats::steps_to_reach(&curve, 3.0, true), None);
    let acc = [(10, 0.1), (20, 0.5), (30, 0.7)];
    assert_eq!(stats::steps_to_reach(&acc, 0.5, false), Some(20));
    assert!(close(stats::speedup(100, 79).unwrap(), 0.21, 1e-12));
    assert_eq!(stats::speedup(0, 5), None);
}

#[test]
fn bounded_intervals_stay_in_range() {
    // Three seeds with a wide spread: the plain t-interval leaves [0, 1], the logit one not.
    let p = [0.02, 0.5, 0.97];
    let t = stats::t_interval(&p, 0.95).unwrap();
    assert!(t.lo < 0.0 && t.hi > 1.0, "{t:?}");
    let l = stats::t_interval_logit(&p, 0.95).unwrap();
    assert!(
        0.0 < l.lo && l.lo < l.estimate && l.estimate < l.hi && l.hi < 1.0,
        "{l:?}"
    );
    // Exact 0 and 1 are allowed, values outside are errors.
    let e = stats::t_interval_logit(&[0.0, 1.0, 0.5], 0.95).unwrap();
    assert!(e.lo >= 0.0 && e.hi <= 1.0, "{e:?}");
    assert!(stats::t_interval_logit(&[0.5, 1.2], 0.95).is_err());
    // Ratios: a geometric mean with an interval above 0.
    let r = [0.3, 1.0, 2.9];
    let g = stats::t_interval_log(&r, 0.95).unwrap();
    assert!(
        close(g.estimate, (0.3f64 * 1.0 * 2.9).cbrt(), 1e-12),
        "{g:?}"
    );
    assert!(
        g.lo > 0.0 && g.lo < g.estimate && g.hi > g.estimate,
        "{g:?}"
    );
    assert!(stats::t_interval(&r, 0.95).unwrap().lo < 0.0);
    assert!(stats::t_interval_log(&[1.0, 0.0], 0.95).is_err());
    // One value: the degenerate interval, on either scale.
    let one = stats::t_interval_log(&[2.0], 0.95).unwrap();
    assert!(one.n == 1 && close(one.lo, 2.0, 1e-12) && close(one.hi, 2.0, 1e-12));
}

/// Kaplan–Meier: without censoring the median is the sample median's event time; a censored
/// seed stays in the risk set (so the median moves, not the count), and a median that the
/// curve never reaches is `None` — never a number made up from the runs that finished.
#[test]
fn km_median_keeps_censored_runs() {
    use asa_lth::stats::{km_median, Observation};
    let ev = |time| Observation { time, event: true };
    let cens = |time| Observation { time, event: false };
    let all = km_median(&[ev(0.5), ev(0.7), ev(0.9)], 0.95).unwrap();
    assert_eq!(all.median, Some(0.7));
    assert_eq!((all.n, all.events), (3, 3));
    // Dropping the slowest seed would give 0.5–0.7; keeping it censored at 2.0 (never reached
    // within twice the budget) gives S = 2/3 after 0.5, 1/3 after 0.7: the median is 0.7.
    let c = km_median(&[ev(0.5), ev(0.7), cens(2.0)], 0.95).unwrap();
    assert_eq!(c.median, Some(0.7));
    assert_eq!(c.events, 2);
    // Two of three never reached it: the median is not reached, the interval unbounded above.
    let nr = km_median(&[ev(0.5), cens(2.0), cens(2.0)], 0.95).unwrap();
    assert_eq!(nr.median, None);
    assert_eq!(nr.hi, None);
    // With many events the interval brackets the median and narrows with n.
    let many: Vec<Observation> = (1..=40).map(|i| ev(i as f64)).collect();
    let m = km_median(&many, 0.95).unwrap();
    let (lo, med, hi) = (m.lo.unwrap(), m.median.unwrap(), m.hi.unwrap());
    assert!(lo < med && med < hi, "{lo} {med} {hi}");
    assert!(lo >= 12.0 && hi <= 29.0, "{lo} {hi}");
    assert!(km_median(&[ev(f64::NAN)], 0.95).is_err());
    assert!(km_median(&[ev(1.0)], 1.5).is_err());
}

/// Stratified Spearman: a correlation made only by differences between strata (each stratum
/// shifted in both x and y) is not one; within-stratum agreement is, with a small p.
#[test]
fn stratified_spearman_ignores_between_stratum_shifts() {
    use asa_lth::stats::spearman_stratified_test;
    let mut rng = asa_lth::rng::Rng::new(8);
    let (mut x, mut y, mut s) = (vec![], vec![], vec![]);
    for stratum in 0..6 {
        for _ in 0..5 {
            // Within a stratum: independent; between strata: both shifted together.
            x.push(10.0 * stratum as f64 + rng.normal());
            y.push(10.0 * stratum as f64 + rng.normal());
            s.push(stratum);
        }
    }
    let pooled = asa_lth::stats::spearman(&x, &y).unwrap().unwrap();
    assert!(
        pooled > 0.8,
        "the pooled ρ is driven by the strata: {pooled}"
    );
    let t = spearman_stratified_test(&x, &y, &s, 5000, 1)
        .unwrap()
        .unwrap();
    assert!(t.rho.abs() < 0.5 && t.p_value > 0.05, "{t:?}");
    // Within-stratum agreement: y follows x inside each stratum, strata shuffled apart.
    let y2: Vec<f64> = x
        .iter()
        .zip(&s)
        .map(|(&v, &st)| v - 20.0 * st as f64 + 0.01 * rng.normal())
        .collect();
    let t2 = spearman_stratified_test(&x, &y2, &s, 5000, 1)
        .unwrap()
        .unwrap();
    assert!(t2.rho > 0.95 && t2.p_value < 0.001, "{t2:?}");
    // Two points per stratum (heads of one layer): still defined.
    let t3 = spearman_stratified_test(
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0, 2.0, 4.0, 3.0],
        &[0, 0, 1, 1],
        100,
        2,
    )
    .unwrap()
    .unwrap();
    assert!((t3.rho - 0.0).abs() < 1e-12, "{t3:?}");
    assert!(spearman_stratified_test(&[1.0], &[1.0, 2.0], &[0], 10, 0).is_err());
}
