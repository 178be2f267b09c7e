//! Statistics for the experiments' reports (DESIGN.md §2: a mean and a 95% interval over
//! ≥ 3 seeds, bootstrap over sentences within a seed, token-weighted perplexity).
//!
//! Everything is deterministic given its seed, and never panics on user data: empty or
//! degenerate input gives an error ([`Error::Config`]) or `None`, as documented per function.
//!
//! - [`bootstrap`] (any statistic of resampled units), [`bootstrap_mean`],
//!   [`bootstrap_perplexity`] (token-weighted, resampling sentences with their token counts),
//!   [`bootstrap_paired_diff`] (two models scored on the same units);
//! - [`t_interval`] (across seeds; Student t), [`hierarchical_bootstrap_mean`] (seeds, then
//!   units within a seed);
//! - [`perplexity`] (token-weighted, never averages per batch);
//! - [`spearman`] (average ranks for ties) and [`spearman_test`] (permutation p-value, exact
//!   enumeration for small n);
//! - [`steps_to_reach`] on a curve, [`speedup`];
//! - helpers: [`mean`], [`sample_sd`], [`quantile`], [`ranks`], [`t_quantile`].

use crate::rng::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A point estimate with a two-sided interval `[lo, hi]` at confidence `level`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on the original data (not the bootstrap mean).
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// Number of units (or seeds) the statistic is over.
    pub n: usize,
}

impl Interval {
    /// Whether `x` lies in `[lo, hi]`.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// Half-width `(hi − lo) / 2`.
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }
}

/// Settings of a bootstrap: resamples, confidence level, seed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    pub resamples: usize,
    pub level: f64,
    pub seed: u64,
}

impl Default for BootstrapConfig {
    /// 2000 resamples, 95%, seed 0.
    fn default() -> Self {
        BootstrapConfig {
            resamples: 2000,
            level: 0.95,
            seed: 0,
        }
    }
}

fn check_level(level: f64) -> Result<()> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "confidence level must be in (0, 1), got {level}"
        )))
    }
}

fn check_finite(what: &str, xs: &[f64]) -> Result<()> {
    match xs.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            tensor: what.to_string(),
            index: i,
            value: xs[i] as f32,
        }),
    }
}

/// Arithmetic mean (`None` for an empty slice).
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// Sample standard deviation (n − 1 denominator; `None` for fewer than 2 values).
pub fn sample_sd(xs: &[f64]) -> Option<f64> {
    let m = mean(xs)?;
    if xs.len() < 2 {
        return None;
    }
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

/// The `q`-quantile of `sorted` (ascending) with linear interpolation between order
/// statistics (R's type 7, numpy's default). `None` if empty or `q` outside [0, 1].
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Percentile bootstrap over `n` units: draws `resamples` resamples of unit indices with
/// replacement (seeded), evaluates `stat` on each, and returns `stat` on the original units
/// with the `(1 − level)/2` and `(1 + level)/2` quantiles of the resampled values.
/// `stat` gets the indices of a resample (the original is `0..n`). Non-finite resampled
/// values are an error.
pub fn bootstrap(
    n: usize,
    cfg: &BootstrapConfig,
    mut stat: impl FnMut(&[usize]) -> f64,
) -> Result<Interval> {
    check_level(cfg.level)?;
    if n == 0 {
        return Err(Error::Config("bootstrap over zero units".into()));
    }
    if cfg.resamples == 0 {
        return Err(Error::Config(
            "bootstrap needs at least one resample".into(),
        ));
    }
    let all: Vec<usize> = (0..n).collect();
    let estimate = stat(&all);
    let mut rng = Rng::new(cfg.seed);
    let mut idx = vec![0usize; n];
    let mut vals = Vec::with_capacity(cfg.resamples);
    for _ in 0..cfg.resamples {
        for i in idx.iter_mut() {
            *i = rng.below(n);
        }
        vals.push(stat(&idx));
    }
    check_finite("bootstrap statistic", &vals)?;
    vals.sort_by(f64::total_cmp);
    let a = (1.0 - cfg.level) / 2.0;
    Ok(Interval {
        estimate,
        lo: quantile(&vals, a).unwrap_or(estimate),
        hi: quantile(&vals, 1.0 - a).unwrap_or(estimate),
        level: cfg.level,
        n,
    })
}

/// Bootstrap interval of the mean of per-unit values (e.g. per-sentence attention mass).
pub fn bootstrap_mean(values: &[f64], cfg: &BootstrapConfig) -> Result<Interval> {
    check_finite("bootstrap_mean input", values)?;
    bootstrap(values.len(), cfg, |idx| {
        idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64
    })
}

/// Token-weighted perplexity `exp(Σ loss / Σ tokens)` of units given their summed token losses
/// (nats) and scored-token counts. Never a mean of per-unit perplexities, never per batch.
/// `None` when no token is scored.
pub fn perplexity(loss_sums: &[f64], tokens: &[usize]) -> Option<f64> {
    let n: usize = tokens.iter().sum();
    if n == 0 || loss_sums.len() != tokens.len() {
        return None;
    }
    Some((loss_sums.iter().sum::<f64>() / n as f64).exp())
}

/// Bootstrap over units (sentences) of the token-weighted perplexity: each resample draws
/// whole units, with their token counts, and computes `exp(Σ loss / Σ tokens)`.
pub fn bootstrap_perplexity(
    loss_sums: &[f64],
    tokens: &[usize],
    cfg: &BootstrapConfig,
) -> Result<Interval> {
    if loss_sums.len() != tokens.len() {
        return Err(Error::Config(format!(
            "bootstrap_perplexity: {} loss sums but {} token counts",
            loss_sums.len(),
            tokens.len()
        )));
    }
    check_finite("bootstrap_perplexity losses", loss_sums)?;
    if tokens.iter().all(|&t| t == 0) {
        return Err(Error::Config(
            "bootstrap_perplexity: no scored tokens".into(),
        ));
    }
    bootstrap(loss_sums.len(), cfg, |idx| {
        let (mut l, mut n) = (0.0, 0usize);
        for &i in idx {
            l += loss_sums[i];
            n += tokens[i];
        }
        // A resample of only empty units has no perplexity; count it as the full-data value
        // would be wrong, so make it visible as an error instead.
        if n == 0 {
            f64::NAN
        } else {
            (l / n as f64).exp()
        }
    })
}

/// Paired bootstrap of `mean(a) − mean(b)` where `a[i]` and `b[i]` are two models' values on
/// the same unit i (resampling units keeps the pairing).
pub fn bootstrap_paired_diff(a: &[f64], b: &[f64], cfg: &BootstrapConfig) -> Result<Interval> {
    if a.len() != b.len() {
        return Err(Error::Config(format!(
            "paired bootstrap: {} vs {} values",
            a.len(),
            b.len()
        )));
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    bootstrap_mean(&d, cfg)
}

/// Two-level bootstrap of the grand mean over seeds (groups) of per-unit values: resample
/// seeds with replacement, then units within each drawn seed; the statistic is the mean of
/// the seeds' means. Its interval reflects both seed-to-seed and unit-to-unit variation.
pub fn hierarchical_bootstrap_mean(groups: &[Vec<f64>], cfg: &BootstrapConfig) -> Result<Interval> {
    check_level(cfg.level)?;
    if groups.is_empty() || groups.iter().any(Vec::is_empty) {
        return Err(Error::Config(
            "hierarchical bootstrap needs ≥ 1 group, each with ≥ 1 value".into(),
        ));
    }
    for g in groups {
        check_finite("hierarchical bootstrap input", g)?;
    }
    let gmean = |g: &[f64]| g.iter().sum::<f64>() / g.len() as f64;
    let estimate = groups.iter().map(|g| gmean(g)).sum::<f64>() / groups.len() as f64;
    let mut rng = Rng::new(cfg.seed);
    let mut vals = Vec::with_capacity(cfg.resamples);
    for _ in 0..cfg.resamples {
        let mut s = 0.0;
        for _ in 0..groups.len() {
            let g = &groups[rng.below(groups.len())];
            let mut t = 0.0;
            for _ in 0..g.len() {
                t += g[rng.below(g.len())];
            }
            s += t / g.len() as f64;
        }
        vals.push(s / groups.len() as f64);
    }
    vals.sort_by(f64::total_cmp);
    let a = (1.0 - cfg.level) / 2.0;
    Ok(Interval {
        estimate,
        lo: quantile(&vals, a).unwrap_or(estimate),
        hi: quantile(&vals, 1.0 - a).unwrap_or(estimate),
        level: cfg.level,
        n: groups.len(),
    })
}

/// Mean across seeds with the Student-t interval `mean ± t_{(1+level)/2, n−1} · sd/√n`.
/// One value gives a degenerate interval `[x, x]` flagged by `n = 1` (no spread can be
/// estimated; reports should say so). Empty input is an error.
pub fn t_interval(values: &[f64], level: f64) -> Result<Interval> {
    check_level(level)?;
    check_finite("t_interval input", values)?;
    let m = mean(values).ok_or_else(|| Error::Config("t_interval of no values".into()))?;
    let n = values.len();
    let hw = match sample_sd(values) {
        Some(sd) => t_quantile((1.0 + level) / 2.0, (n - 1) as f64)? * sd / (n as f64).sqrt(),
        None => 0.0,
    };
    Ok(Interval {
        estimate: m,
        lo: m - hw,
        hi: m + hw,
        level,
        n,
    })
}

/// A [`t_interval`] computed on a transformed scale and mapped back, so it stays inside the
/// quantity's range: `f` maps the values to the real line, `inv` maps the mean and ends back
/// (the estimate is then `inv(mean f(x))`, not the plain mean).
fn t_interval_on(
    what: &str,
    values: &[f64],
    level: f64,
    f: impl Fn(f64) -> Option<f64>,
    inv: impl Fn(f64) -> f64,
) -> Result<Interval> {
    let t: Vec<f64> = values
        .iter()
        .map(|&x| f(x).ok_or_else(|| Error::Config(format!("{what}: value {x} outside its range"))))
        .collect::<Result<_>>()?;
    let i = t_interval(&t, level)?;
    Ok(Interval {
        estimate: inv(i.estimate),
        lo: inv(i.lo),
        hi: inv(i.hi),
        ..i
    })
}

/// The geometric mean of positive values with a t-interval on the log scale: for ratios,
/// rates and times, whose interval must stay above 0. A value ≤ 0 is an error.
pub fn t_interval_log(values: &[f64], level: f64) -> Result<Interval> {
    t_interval_on(
        "t_interval_log",
        values,
        level,
        |x| (x > 0.0 && x.is_finite()).then(|| x.ln()),
        f64::exp,
    )
}

/// Proportions in [0, 1] with a t-interval on the logit scale, so the interval stays inside
/// [0, 1]; the estimate is the back-transformed mean logit. Exact 0 and 1 are moved in by
/// 10⁻⁶ (a logit must be finite).
pub fn t_interval_logit(values: &[f64], level: f64) -> Result<Interval> {
    const EPS: f64 = 1e-6;
    t_interval_on(
        "t_interval_logit",
        values,
        level,
        |p| {
            (0.0..=1.0).contains(&p).then(|| {
                let q = p.clamp(EPS, 1.0 - EPS);
                (q / (1.0 - q)).ln()
            })
        },
        |z| 1.0 / (1.0 + (-z).exp()),
    )
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, &g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the regularised incomplete beta (Numerical Recipes `betacf`).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Regularised incomplete beta I_x(a, b).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_bt = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let bt = ln_bt.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        bt * beta_cf(a, b, x) / a
    } else {
        1.0 - bt * beta_cf(b, a, 1.0 - x) / b
    }
}

/// CDF of Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, x);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p`-quantile of Student's t with `df > 0` degrees of freedom (bisection on
/// [`t_cdf`] to ~1e-12), e.g. `t_quantile(0.975, 2.0) ≈ 4.3027`.
pub fn t_quantile(p: f64, df: f64) -> Result<f64> {
    if !(p > 0.0 && p < 1.0 && df > 0.0) {
        return Err(Error::Config(format!(
            "t_quantile needs p in (0, 1) and df > 0, got p = {p}, df = {df}"
        )));
    }
    if p < 0.5 {
        return Ok(-t_quantile(1.0 - p, df)?);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while t_cdf(hi, df) < p {
        hi *= 2.0;
        if hi > 1e12 {
            break;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-13 * hi.max(1.0) {
            break;
        }
    }
    Ok(0.5 * (lo + hi))
}

/// Ranks 1..n of `xs`, ties given the average of the ranks they span (so `[10, 20, 20, 30]`
/// ranks `[1, 2.5, 2.5, 4]`). NaN is an error.
pub fn ranks(xs: &[f64]) -> Result<Vec<f64>> {
    check_finite("ranks input", xs)?;
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]).then(a.cmp(&b)));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        // -0.0 and 0.0 are equal values: compare with ==, not total order.
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    Ok(r)
}

/// Pearson correlation (`None` if fewer than 2 points or either side is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (mx, my) = (mean(x)?, mean(y)?);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Spearman's ρ: the Pearson correlation of the average ranks (correct with ties). `Ok(None)`
/// when undefined (fewer than 2 points, or one side constant); mismatched lengths or NaN are
/// errors.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<Option<f64>> {
    if x.len() != y.len() {
        return Err(Error::Config(format!(
            "spearman: {} x values but {} y values",
            x.len(),
            y.len()
        )));
    }
    Ok(pearson(&ranks(x)?, &ranks(y)?))
}

/// Which deviations from zero a test counts as extreme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    /// |ρ_perm| ≥ |ρ|.
    #[default]
    TwoSided,
    /// ρ_perm ≥ ρ.
    Greater,
    /// ρ_perm ≤ ρ.
    Less,
}

/// Result of [`spearman_test`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpearmanTest {
    pub rho: f64,
    pub p_value: f64,
    pub n: usize,
    /// True when every permutation was enumerated (then `p_value` is exact).
    pub exact: bool,
    /// Permutations evaluated (n! when exact).
    pub permutations: u64,
    pub alternative: Alternative,
}

/// Spearman's ρ with a permutation p-value: the share of permutations of `y` (against fixed
/// `x`) whose ρ is at least as extreme as the observed one. If `n! ≤ max_permutations` all n!
/// permutations are enumerated (exact p; the identity included, so p ≥ 1/n!); otherwise
/// `max_permutations` seeded random permutations give `p = (1 + #extreme) / (1 + draws)`
/// (never 0). `Ok(None)` when ρ is undefined (n < 2 or a constant side). A tiny tolerance
/// (1e-12) makes ties of |ρ| count as extreme despite rounding.
pub fn spearman_test(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    max_permutations: u64,
    seed: u64,
) -> Result<Option<SpearmanTest>> {
    let Some(rho) = spearman(x, y)? else {
        return Ok(None);
    };
    let n = x.len();
    let rx = ranks(x)?;
    let ry = ranks(y)?;
    // ρ of a permutation is an affine function of Σ rx_i·ry_π(i) (the rank vectors' means and
    // norms do not change under permutation), so compare that sum: cheap and exact in order.
    let mx = mean(&rx).unwrap_or(0.0);
    let my = mean(&ry).unwrap_or(0.0);
    let cx: Vec<f64> = rx.iter().map(|r| r - mx).collect();
    let cy: Vec<f64> = ry.iter().map(|r| r - my).collect();
    let norm =
        (cx.iter().map(|a| a * a).sum::<f64>() * cy.iter().map(|b| b * b).sum::<f64>()).sqrt();
    let rho_of = |perm: &[usize]| -> f64 {
        cx.iter().zip(perm).map(|(a, &j)| a * cy[j]).sum::<f64>() / norm
    };
    let eps = 1e-12;
    let extreme = |r: f64| match alternative {
        Alternative::TwoSided => r.abs() >= rho.abs() - eps,
        Alternative::Greater => r >= rho - eps,
        Alternative::Less => r <= rho + eps,
    };
    let fact = (1..=n as u64).try_fold(1u64, |a, k| a.checked_mul(k));
    let mut perm: Vec<usize> = (0..n).collect();
    let (count, total, exact) = match fact {
        Some(f) if f <= max_permutations => {
            // Heap's algorithm (iterative): every permutation exactly once.
            let mut count = extreme(rho_of(&perm)) as u64;
            let mut c = vec![0usize; n];
            let mut i = 0;
            while i < n {
                if c[i] < i {
                    if i % 2 == 0 {
                        perm.swap(0, i);
                    } else {
                        perm.swap(c[i], i);
                    }
                    count += extreme(rho_of(&perm)) as u64;
                    c[i] += 1;
                    i = 0;
                } else {
                    c[i] = 0;
                    i += 1;
                }
            }
            (count, f, true)
        }
        _ => {
            if max_permutations == 0 {
                return Err(Error::Config(
                    "spearman_test needs max_permutations ≥ 1".into(),
                ));
            }
            let mut rng = Rng::new(seed);
            let mut count = 0u64;
            for _ in 0..max_permutations {
                rng.shuffle(&mut perm);
                count += extreme(rho_of(&perm)) as u64;
            }
            (count + 1, max_permutations + 1, false)
        }
    };
    Ok(Some(SpearmanTest {
        rho,
        p_value: count as f64 / total as f64,
        n,
        exact,
        permutations: if exact { total } else { total - 1 },
        alternative,
    }))
}

/// The first step at which a curve of `(step, value)` (in step order) reaches `target`:
/// `value ≤ target` when lower is better (loss, perplexity), `value ≥ target` otherwise.
/// `None` if it never does. The answer is on the curve's own grid (no interpolation), so
/// compare runs evaluated at the same steps.
pub fn steps_to_reach(curve: &[(u32, f64)], target: f64, lower_is_better: bool) -> Option<u32> {
    curve
        .iter()
        .find(|(_, v)| {
            if lower_is_better {
                *v <= target
            } else {
                *v >= target
            }
        })
        .map(|&(s, _)| s)
}

/// Fractional saving of `steps` relative to `baseline`: `1 − steps/baseline` (0.21 = 21%
/// fewer steps). `None` if the baseline is 0.
pub fn speedup(baseline: u32, steps: u32) -> Option<f64> {
    if baseline == 0 {
        None
    } else {
        Some(1.0 - steps as f64 / baseline as f64)
    }
}

/// One time-to-event observation: the event happened at `time`, or (`event = false`) had not
/// happened by `time`, when observation stopped (censored).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Observation {
    pub time: f64,
    pub event: bool,
}

/// The Kaplan–Meier median of a set of possibly censored observations, with the interval the
/// pointwise confidence band of the survival curve gives it (Greenwood's variance on the log
/// scale, as R's `survfit` does by default): `lo` is the first time the band's lower edge
/// falls to 0.5 or below (the earliest the median could be), `hi` the first time its upper
/// edge does. `None` where the curve or
/// the edge never gets there within the observations (the median is "not reached", or the
/// interval is unbounded above).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KmMedian {
    pub median: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    /// Observations, and how many of them saw the event.
    pub n: usize,
    pub events: usize,
}

/// [`KmMedian`] of `obs` at confidence `level` (e.g. 0.95). Censored observations stay in the
/// risk set up to their time — a run that never reached its target still counts.
pub fn km_median(obs: &[Observation], level: f64) -> Result<KmMedian> {
    if !(level > 0.0 && level < 1.0) {
        return Err(Error::Config(format!(
            "confidence level {level} is outside (0, 1)"
        )));
    }
    if let Some(o) = obs.iter().find(|o| !o.time.is_finite()) {
        return Err(Error::Config(format!(
            "Kaplan–Meier: observation time {} is not finite",
            o.time
        )));
    }
    // The normal quantile as Student's t with (practically) infinite degrees of freedom.
    let z = t_quantile(0.5 + level / 2.0, 1e9)?;
    let mut times: Vec<f64> = obs.iter().filter(|o| o.event).map(|o| o.time).collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    let (mut s, mut var_sum) = (1.0f64, 0.0f64);
    let (mut median, mut lo, mut hi) = (None, None, None);
    for &t in &times {
        let at_risk = obs.iter().filter(|o| o.time >= t).count() as f64;
        let d = obs.iter().filter(|o| o.event && o.time == t).count() as f64;
        s *= 1.0 - d / at_risk;
        if at_risk > d {
            var_sum += d / (at_risk * (at_risk - d));
        }
        // Log-scale band; once S reaches 0 its lower edge is 0 too.
        let (lower, upper) = if s > 0.0 {
            let se = var_sum.sqrt();
            ((s.ln() - z * se).exp(), (s.ln() + z * se).exp().min(1.0))
        } else {
            (0.0, 0.0)
        };
        if median.is_none() && s <= 0.5 {
            median = Some(t);
        }
        if lo.is_none() && lower <= 0.5 {
            lo = Some(t);
        }
        if hi.is_none() && upper <= 0.5 {
            hi = Some(t);
        }
    }
    Ok(KmMedian {
        median,
        lo,
        hi,
        n: obs.len(),
        events: obs.iter().filter(|o| o.event).count(),
    })
}

/// Spearman's ρ of `x` and `y` computed within strata and pooled: each point is ranked among
/// the points of its own stratum (`strata[i]`), centred on its stratum's mean rank, and ρ is
/// the pooled correlation of those centred ranks. The two-sided p-value comes from
/// `permutations` seeded draws that shuffle `y` within each stratum only:
/// `p = (1 + #|ρ*| ≥ |ρ|) / (1 + draws)`. Differences between strata (one seed's or layer's
/// overall level) then neither create nor hide a correlation. `Ok(None)` when ρ is undefined
/// (no stratum with two points, or no variation within strata).
pub fn spearman_stratified_test(
    x: &[f64],
    y: &[f64],
    strata: &[usize],
    permutations: u64,
    seed: u64,
) -> Result<Option<SpearmanTest>> {
    if x.len() != y.len() || x.len() != strata.len() {
        return Err(Error::Config(format!(
            "stratified Spearman: {} x, {} y and {} strata",
            x.len(),
            y.len(),
            strata.len()
        )));
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &s) in strata.iter().enumerate() {
        groups.entry(s).or_default().push(i);
    }
    let (mut cx, mut cy) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    for idx in groups.values() {
        let gx: Vec<f64> = idx.iter().map(|&i| x[i]).collect();
        let gy: Vec<f64> = idx.iter().map(|&i| y[i]).collect();
        let (rx, ry) = (ranks(&gx)?, ranks(&gy)?);
        let (mx, my) = (mean(&rx).unwrap_or(0.0), mean(&ry).unwrap_or(0.0));
        for (k, &i) in idx.iter().enumerate() {
            cx[i] = rx[k] - mx;
            cy[i] = ry[k] - my;
        }
    }
    let norm =
        (cx.iter().map(|a| a * a).sum::<f64>() * cy.iter().map(|b| b * b).sum::<f64>()).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Ok(None);
    }
    let rho_of = |cy: &[f64]| cx.iter().zip(cy).map(|(a, b)| a * b).sum::<f64>() / norm;
    let rho = rho_of(&cy);
    let mut rng = Rng::new(seed);
    let mut perm = cy.clone();
    let mut extreme = 0u64;
    for _ in 0..permutations {
        for idx in groups.values() {
            for k in (1..idx.len()).rev() {
                let j = rng.below(k + 1);
                perm.swap(idx[k], idx[j]);
            }
        }
        if rho_of(&perm).abs() >= rho.abs() - 1e-12 {
            extreme += 1;
        }
    }
    Ok(Some(SpearmanTest {
        rho,
        p_value: (1 + extreme) as f64 / (1 + permutations) as f64,
        n: x.len(),
        exact: false,
        permutations,
        alternative: Alternative::TwoSided,
    }))
}
