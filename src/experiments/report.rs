//! The report: reads a run directory's finished cells and writes `report.md`, `summary.json`
//! and SVG plots. Every number carries its interval, the seed list, the commits and devices
//! of the cells it comes from, and the command that reproduces it. Cells that are missing are
//! listed, never silently dropped.

use super::alignment::{Alignment, UnitSums, MASKS, RULES};
use super::cells::{CellKey, CellStore};
use super::e3::{E3Cell, E3Point};
use super::e4::E4Cell;
use super::e5::E5Cell;
use super::plot::{self, Chart, Series, Style};
use super::{load_config, ReproduceConfig, TrainCell};
use crate::lth::Variant;
use crate::stats::{self, BootstrapConfig, Interval};
use crate::train::{self, TrainResults};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// The seed's published claims that the report checks (DESIGN.md §2).
pub mod claims {
    /// Attention mass inside the ASA mask (E1).
    pub const ASA_MASS: f64 = 0.739;
    /// … and inside the seed's random mask.
    pub const RANDOM_MASS: f64 = 0.472;
    /// Validation perplexity, ASA-masked vs dense (E2; GPT-2 BPE tokens, WikiText-2).
    pub const ASA_PPL: f64 = 26.33;
    pub const DENSE_PPL: f64 = 26.56;
    /// Fewer steps for ASA to reach the dense model's final validation perplexity.
    pub const FEWER_STEPS: f64 = 0.21;
}

/// A statistic with its 95% interval (`n`: seeds or units it is over).
pub type Estimate = Interval;

/// An estimate that cannot be formed from `n` values (rendered "—").
fn undefined(n: usize) -> Estimate {
    Interval {
        estimate: f64::NAN,
        lo: f64::NAN,
        hi: f64::NAN,
        level: 0.95,
        n,
    }
}

/// Mean across seeds with a t-interval; NaN (rendered "—") when there are no values.
fn across(values: &[f64]) -> Estimate {
    stats::t_interval(values, 0.95).unwrap_or(undefined(values.len()))
}

/// [`across`] for positive quantities (ratios, rates): the geometric mean with a t-interval
/// on the log scale, which stays above 0.
fn across_log(values: &[f64]) -> Estimate {
    stats::t_interval_log(values, 0.95).unwrap_or(undefined(values.len()))
}

/// [`across`] for shares in [0, 1]: a t-interval on the logit scale, which stays inside
/// [0, 1].
fn across_fraction(values: &[f64]) -> Estimate {
    stats::t_interval_logit(values, 0.95).unwrap_or(undefined(values.len()))
}

fn pct(e: &Estimate) -> String {
    if !e.estimate.is_finite() {
        return "—".into();
    }
    if e.n < 2 {
        // One seed: no spread can be estimated, so no interval is shown.
        return format!("{:.1}% (1 value)", 100.0 * e.estimate);
    }
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        100.0 * e.estimate,
        100.0 * e.lo,
        100.0 * e.hi
    )
}

fn num(e: &Estimate, digits: usize) -> String {
    if !e.estimate.is_finite() {
        return "—".into();
    }
    if e.n < 2 {
        return format!("{:.d$} (1 value)", e.estimate, d = digits);
    }
    format!(
        "{:.d$} [{:.d$}, {:.d$}]",
        e.estimate,
        e.lo,
        e.hi,
        d = digits
    )
}

/// E1 for one (layer, head) or for all heads (`layer`/`head` = None).
#[derive(Clone, Debug, Serialize)]
pub struct HeadSummary {
    pub layer: Option<usize>,
    pub head: Option<usize>,
    /// Mass inside each mask of [`MASKS`], across seeds.
    pub mass: Vec<Estimate>,
    /// Off-diagonal share inside each mask, across seeds.
    pub offdiag: Vec<Estimate>,
    /// Top-k agreement with each mask, across seeds.
    pub topk: Vec<Estimate>,
    /// ASA mass minus the row-matched null's, across seeds.
    pub excess: Estimate,
    /// Per seed: ASA − row-matched null with a bootstrap interval over sentences.
    pub excess_per_seed: Vec<(u64, Estimate)>,
    pub diagonal: Estimate,
    /// Within-sentence density of the ASA mask on these rows.
    pub density: Estimate,
    /// Each tag rule with rows (causal, target, gold when the text has gold tags).
    pub rules: Vec<RuleSummary>,
    /// Share of a row's valid earlier keys that lie in earlier sentences (window frame).
    pub cross_keys: Estimate,
    /// Share of a row's attention on keys of earlier sentences.
    pub cross_mass: Estimate,
    /// The public code's frame: whole-window attention inside the ASA mask.
    pub window_mass: Estimate,
    /// The public code's null: a random mask at the ASA mask's density over the whole T×T
    /// square (its expected mass is that density).
    pub global_null: Estimate,
}

/// E1 for one tag rule ([`RULES`]), within-sentence, across seeds.
#[derive(Clone, Debug, Serialize)]
pub struct RuleSummary {
    pub rule: String,
    /// Scored rows per seed (mean over seeds; summed over the heads in the summary).
    pub rows: u64,
    /// Mass inside each mask of [`MASKS`].
    pub mass: Vec<Estimate>,
    /// ASA − row-matched null.
    pub excess: Estimate,
    /// ASA − distance-matched null.
    pub excess_dist: Estimate,
    pub density: Estimate,
}

/// E2's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ConvergenceSummary {
    pub dense_valid_ppl: Estimate,
    pub asa_valid_ppl: Estimate,
    pub dense_test_ppl: Estimate,
    pub asa_test_ppl: Estimate,
    /// ASA minus dense final validation perplexity, per seed pair.
    pub valid_ppl_diff: Estimate,
    /// Per seed: steps of the ASA run to the dense run's target (see [`StepsToTarget`]).
    pub steps_to_dense: Vec<StepsToTarget>,
    /// The null arms trained beside them (same seeds, schedule and budget).
    pub nulls: Vec<NullArm>,
    /// Per seed: the dense run's relative validation-perplexity improvement over its last
    /// 20% of steps (converged: below [`CONVERGED_BELOW`]).
    pub dense_late_improvement: Vec<(u64, f64)>,
}

/// The convergence criterion: a run has stopped improving when its validation perplexity fell
/// by less than this share over its last 20% of steps.
pub const CONVERGED_BELOW: f64 = 0.01;

/// Relative improvement of a validation curve over its last 20% of steps: from the last
/// evaluation at or before 80% of the final step to the final one.
fn late_improvement(curve: &[(u32, f64)]) -> Option<f64> {
    let &(last, fin) = curve.last()?;
    let cut = (0.8 * last as f64).floor() as u32;
    let &(_, early) = curve.iter().rev().find(|(st, _)| *st <= cut)?;
    Some((early - fin) / early)
}

/// Why a comparison is not like for like with the seed's (WikiText-2, GPT-2 BPE tokens, the
/// paper's model and budget); `None` when it is.
fn unlike_seed(c: &ReproduceConfig) -> Option<String> {
    let mut why = Vec::new();
    if !matches!(c.train.corpus, crate::data::CorpusSource::Wikitext2 { .. }) {
        why.push(format!("corpus {}", c.train.corpus.label()));
    }
    if c.train.tokenizer.is_word() {
        why.push("word tokens".to_string());
    }
    if c.scale != super::Scale::Paper {
        why.push(format!("{:?} scale", c.scale).to_lowercase());
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// A null arm of E2: its final validation perplexity and ASA's difference from it, per seed
/// pair, across seeds.
#[derive(Clone, Debug, Serialize)]
pub struct NullArm {
    pub arm: String,
    pub valid_ppl: Estimate,
    pub test_ppl: Estimate,
    /// ASA minus this arm's final validation perplexity.
    pub asa_minus_null: Estimate,
    /// Per seed: this arm's steps to the dense run's target.
    #[serde(default)]
    pub steps_to_dense: Vec<StepsToTarget>,
}

/// E3 at one pruning level, across seeds.
#[derive(Clone, Debug, Serialize)]
pub struct E3Level {
    pub level: u32,
    /// Fraction of the prunable weights left (the same in every seed).
    pub remaining: f64,
    /// Validation perplexity of the ticket, the random re-init and the shuffled-mask controls.
    pub valid_ppl: Vec<(Variant, Estimate)>,
    /// Attention mass inside the ASA mask, per variant.
    pub asa_mass: Vec<(Variant, Estimate)>,
    /// The ticket's attention mass inside the row-matched null mask.
    pub ticket_null_mass: Estimate,
    /// Ticket: ASA minus null mass, across seeds.
    pub ticket_excess: Estimate,
    /// Every variant's ASA mass minus its own row-matched null's, across seeds.
    pub excess: Vec<(Variant, Estimate)>,
    /// Per seed, the ticket's excess minus the shuffled mask's (paired), across seeds.
    pub ticket_minus_shuffled: Estimate,
}

/// E3 for one prunable group.
#[derive(Clone, Debug, Serialize)]
pub struct E3Summary {
    pub group: String,
    pub levels: Vec<E3Level>,
    /// The level nearest 10% remaining (the seed's bar).
    pub target_level: u32,
    /// Per (seed, head): the dense model's excess ASA alignment and the fraction of the head's
    /// W_q/W_k surviving at the target level, and their Spearman test.
    pub head_points: Vec<(f64, f64)>,
    pub spearman: Option<stats::SpearmanTest>,
    /// The stratum (seed × layer) of each head point.
    pub head_strata: Vec<usize>,
    /// The same correlation with ranks and permutations within seed × layer.
    pub spearman_stratified: Option<stats::SpearmanTest>,
}

/// E5 (2:4 deployment) for one training arm, across seeds.
#[derive(Clone, Debug, Serialize)]
pub struct E5Arm {
    pub arm: String,
    pub dense_valid_ppl: Estimate,
    pub oneshot_valid_ppl: Estimate,
    pub finetuned_valid_ppl: Estimate,
    pub finetuned_test_ppl: Estimate,
    pub compressed_valid_ppl: Estimate,
    /// Inference tokens/s of the compressed 2:4 path over the dense path (same device, run).
    pub speedup: Estimate,
    pub dense_tokens_per_sec: Estimate,
    pub compressed_tokens_per_sec: Estimate,
    /// Compressed FFN weight bytes over dense.
    pub ffn_bytes_ratio: f64,
    /// The fine-tune's control: the dense model trained the same extra steps (None: cells
    /// from before it).
    pub dense_extra_valid_ppl: Option<Estimate>,
    /// Fine-tuned 2:4 minus that control, per seed (validation perplexity).
    pub finetuned_minus_dense_extra: Option<Estimate>,
    /// Whether every seed's rates are forward-only and interleaved.
    pub interleaved: bool,
    /// Peak resident memory of the cells' processes, bytes (the largest; CPU).
    pub peak_rss_bytes: Option<u64>,
}

/// E5's hybrid comparison: final validation perplexity of each arm across seeds.
#[derive(Clone, Debug, Serialize)]
pub struct E5Hybrid {
    /// Fraction of the FFN left in the pruned arms.
    pub ffn_remaining: f64,
    /// `dense`, `asa`, `lth-ffn`, `hybrid`.
    pub valid_ppl: Vec<(String, Estimate)>,
    pub test_ppl: Vec<(String, Estimate)>,
}

/// E4: ASA-initialised vs zero-initialised tag-pair bias.
#[derive(Clone, Debug, Serialize)]
pub struct E4Summary {
    pub zero_valid_ppl: Estimate,
    pub asa_valid_ppl: Estimate,
    /// ASA minus zero final validation perplexity, per seed pair.
    pub valid_ppl_diff: Estimate,
    /// Per seed: steps of the ASA-initialised run to the zero-initialised run's target.
    pub steps_to_zero: Vec<StepsToTarget>,
    /// One-sided non-inferiority of the ASA-init final perplexity (see [`NonInferiority`]).
    pub non_inferiority: NonInferiority,
    /// The bias learning-rate multiple both arms trained with.
    pub tag_bias_lr_scale: f32,
    /// How far the ASA-initialised bias moved, across seeds: mean final bias on incompatible
    /// pairs (it starts at the prior), mean |drift| on incompatible and compatible pairs.
    pub asa_final_incompatible: Estimate,
    pub asa_drift_incompatible: Estimate,
    pub asa_drift_compatible: Estimate,
    /// The zero-initialised bias's mean final value on incompatible and compatible pairs.
    pub zero_final_incompatible: Estimate,
    pub zero_final_compatible: Estimate,
}

/// A one-sided non-inferiority test of `arm − reference` (lower is better): the arm is not
/// worse by more than `margin` when the upper end of the one-sided 95% t-interval of the
/// per-seed differences lies below it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct NonInferiority {
    pub mean_difference: f64,
    /// One-sided 95% upper bound (NaN with fewer than 2 seeds).
    pub upper: f64,
    pub margin: f64,
    pub non_inferior: bool,
    pub n: usize,
}

/// [`NonInferiority`] of per-seed differences against `margin`.
pub fn non_inferiority(diffs: &[f64], margin: f64) -> NonInferiority {
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n.max(1) as f64;
    let upper = if n < 2 {
        f64::NAN
    } else {
        let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let t = stats::t_quantile(0.95, (n - 1) as f64).unwrap_or(f64::NAN);
        mean + t * (var / n as f64).sqrt()
    };
    NonInferiority {
        mean_difference: mean,
        upper,
        margin,
        non_inferior: upper < margin,
        n,
    }
}

/// One seed's steps to a target: the reference run's final validation perplexity, first
/// reached by the reference itself at `reference_hit`; the arm reached it at `hit` (None:
/// not within its `budget`, a censored observation that stays in the statistic).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StepsToTarget {
    pub seed: u64,
    pub hit: Option<u32>,
    pub budget: u32,
    pub reference_hit: u32,
}

impl StepsToTarget {
    /// Against the `reference` run's curve, the `arm` run's curve followed by its extension
    /// past the budget (if any), whose end is then the budget.
    fn extended(
        seed: u64,
        reference: &TrainResults,
        arm: &TrainResults,
        ext: Option<&train::Extension>,
    ) -> Self {
        let mut curve = curve_of(arm);
        let mut budget = arm.steps_done;
        if let Some(x) = ext {
            curve.extend(valid_points(&x.eval_curve));
            budget += x.steps;
        }
        Self::new(seed, &curve_of(reference), &curve, budget)
    }

    /// The reference's curve and final value, and the arm's curve and step budget.
    fn new(seed: u64, reference: &[(u32, f64)], arm: &[(u32, f64)], budget: u32) -> Self {
        let target = reference.last().map_or(f64::NAN, |&(_, p)| p);
        let reference_hit = stats::steps_to_reach(reference, target, true)
            .or(reference.last().map(|&(s, _)| s))
            .unwrap_or(0);
        StepsToTarget {
            seed,
            hit: stats::steps_to_reach(arm, target, true),
            budget,
            reference_hit,
        }
    }
}

/// How steps to target are measured, for the report: the curve's cadence and subset, the
/// target, and the treated arms' extension past the budget.
fn steps_method(c: &ReproduceConfig) -> String {
    let t = &c.train;
    let mut s = format!(
        "Steps to target: validation perplexity every {} steps on a fixed subset of the first {} validation tokens (the whole split where it is shorter); the target is the reference run's own final value on that curve, first reached at the step shown.",
        t.eval_every, t.eval_tokens
    );
    match c.extension_steps() {
        Some(x) => s += &format!(
            " The treated arms train on past the budget of {} steps to {} ({}× it) at the schedule's floor learning rate ({:.1e}), so a miss within the budget is not yet censored; a run that misses the target by step {} is censored there and stays in the statistic. Final perplexities are those at the budget, like for like.\n",
            t.steps,
            t.steps + x,
            c.treated_budget_multiple,
            t.lr * t.min_lr_frac,
            t.steps + x
        ),
        None => s += " A run that misses the target within the budget is censored there and stays in the statistic.\n",
    }
    s
}

/// Steps to target across seeds as a censoring-aware estimate: the Kaplan–Meier median of
/// the arm's steps over the reference's (a run that never got there is censored at its
/// budget), as "fewer steps" `1 − median`, with the verdict it supports.
struct StepsClaim {
    text: String,
    /// `Some(true)`: faster (the interval's upper end below 1); `Some(false)`: slower; `None`:
    /// inconclusive or not reached.
    faster: Option<bool>,
    /// The interval's upper end is below `1 − margin` (e.g. 10% faster), for claims with a
    /// size.
    upper: Option<f64>,
    reached_median: bool,
}

fn steps_claim(obs: &[StepsToTarget]) -> StepsClaim {
    let o: Vec<stats::Observation> = obs
        .iter()
        .filter(|x| x.reference_hit > 0)
        .map(|x| stats::Observation {
            time: x.hit.unwrap_or(x.budget) as f64 / x.reference_hit as f64,
            event: x.hit.is_some(),
        })
        .collect();
    let km = stats::km_median(&o, 0.95).ok();
    let reached = o.iter().filter(|x| x.event).count();
    let pc = |r: f64| format!("{:.1}", 100.0 * (1.0 - r));
    let text = match km {
        Some(k) => match k.median {
            Some(m) => format!(
                "{}% fewer steps [{}, {}] (Kaplan–Meier median over seeds; {} of {} reached the target{})",
                pc(m),
                k.hi.map_or("−∞".to_string(), pc),
                k.lo.map_or("—".to_string(), pc),
                reached,
                o.len(),
                if reached < o.len() {
                    ", the rest censored at their budget"
                } else {
                    ""
                }
            ),
            None => format!(
                "median not reached: {} of {} seeds reached the target (the rest censored at their budget)",
                reached,
                o.len()
            ),
        },
        None => "—".into(),
    };
    let faster = km.and_then(|k| match (k.lo, k.hi) {
        (_, Some(h)) if h < 1.0 => Some(true),
        (Some(l), _) if l > 1.0 => Some(false),
        _ => None,
    });
    StepsClaim {
        text,
        faster,
        upper: km.and_then(|k| k.hi),
        reached_median: km.is_some_and(|k| k.median.is_some()),
    }
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub config: ReproduceConfig,
    pub config_hash: String,
    pub commits: Vec<String>,
    pub devices: Vec<String>,
    pub cells_done: Vec<String>,
    pub cells_missing: Vec<String>,
    pub e1: Vec<HeadSummary>,
    pub e2: Option<ConvergenceSummary>,
    pub e3: Vec<E3Summary>,
    pub e4: Option<E4Summary>,
    pub e5: Vec<E5Arm>,
    pub e5_hybrid: Option<E5Hybrid>,
}

/// Ratio estimate of `Σnum/Σden` over units, with a bootstrap interval over units.
fn ratio_ci(units: &[(f64, f64)], resamples: usize, seed: u64) -> Estimate {
    let ratio = |idx: &[usize]| {
        let (n, d) = idx
            .iter()
            .fold((0.0, 0.0), |a, &i| (a.0 + units[i].0, a.1 + units[i].1));
        if d > 0.0 {
            n / d
        } else {
            0.0
        }
    };
    let cfg = BootstrapConfig {
        resamples,
        level: 0.95,
        seed,
    };
    stats::bootstrap(units.len(), &cfg, ratio).unwrap_or_else(|_| across(&[]))
}

fn head_units(a: &Alignment, layer: Option<usize>, head: Option<usize>) -> Vec<UnitSums> {
    let heads: Vec<_> = a
        .heads
        .iter()
        .filter(|h| layer.is_none_or(|l| h.layer == l) && head.is_none_or(|x| h.head == x))
        .collect();
    // Units are aligned across heads (same sentences in the same order), so summing them
    // keeps the sentence as the resampling unit.
    let n = heads.iter().map(|h| h.units.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let mut u = UnitSums::default();
            for h in &heads {
                if let Some(x) = h.units.get(i) {
                    u.add(x);
                }
            }
            u
        })
        .collect()
}

fn summarise_head(
    cells: &[(u64, &Alignment)],
    layer: Option<usize>,
    head: Option<usize>,
    resamples: usize,
) -> HeadSummary {
    let per_seed: Vec<(u64, Vec<UnitSums>)> = cells
        .iter()
        .map(|(s, a)| (*s, head_units(a, layer, head)))
        .collect();
    // Per seed Σnum/Σden, across seeds: `share` for shares in [0, 1] (logit scale), else
    // plain (the excess is a difference of shares).
    let ratio_on = |f: &dyn Fn(&UnitSums) -> (f64, f64), share: bool| -> Estimate {
        let vals: Vec<f64> = per_seed
            .iter()
            .map(|(_, us)| {
                let (n, d) = us
                    .iter()
                    .map(f)
                    .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
                n / d
            })
            .collect();
        if share {
            across_fraction(&vals)
        } else {
            across(&vals)
        }
    };
    let ratio = |f: &dyn Fn(&UnitSums) -> (f64, f64)| ratio_on(f, true);
    let rows = |u: &UnitSums| u.causal().rows as f64;
    let topk_rows = |u: &UnitSums| u.causal().topk_rows as f64;
    let window_rows = |u: &UnitSums| u.window_rows as f64;
    let excess_per_seed = per_seed
        .iter()
        .map(|(s, us)| {
            let units: Vec<(f64, f64)> = us
                .iter()
                .map(|u| (u.causal().mass[0] - u.causal().mass[1], rows(u)))
                .collect();
            (*s, ratio_ci(&units, resamples, *s))
        })
        .collect();
    let rules = RULES
        .iter()
        .enumerate()
        .filter(|&(r, _)| {
            per_seed
                .iter()
                .all(|(_, us)| us.iter().any(|u| u.rules[r].rows > 0))
        })
        .map(|(r, name)| {
            let rows = |u: &UnitSums| u.rules[r].rows as f64;
            RuleSummary {
                rule: name.to_string(),
                rows: per_seed
                    .iter()
                    .map(|(_, us)| us.iter().map(|u| u.rules[r].rows as u64).sum::<u64>())
                    .sum::<u64>()
                    / per_seed.len().max(1) as u64,
                mass: (0..MASKS.len())
                    .map(|m| ratio(&|u| (u.rules[r].mass[m], rows(u))))
                    .collect(),
                excess: ratio_on(
                    &|u| (u.rules[r].mass[0] - u.rules[r].mass[1], rows(u)),
                    false,
                ),
                excess_dist: ratio_on(
                    &|u| (u.rules[r].mass[0] - u.rules[r].mass[2], rows(u)),
                    false,
                ),
                density: ratio(&|u| (u.rules[r].density, rows(u))),
            }
        })
        .collect();
    HeadSummary {
        layer,
        head,
        mass: (0..MASKS.len())
            .map(|m| ratio(&|u| (u.causal().mass[m], rows(u))))
            .collect(),
        offdiag: (0..MASKS.len())
            .map(|m| ratio(&|u| (u.causal().offdiag[m], rows(u))))
            .collect(),
        topk: (0..MASKS.len())
            .map(|m| ratio(&|u| (u.causal().topk[m], topk_rows(u))))
            .collect(),
        excess: ratio_on(
            &|u| (u.causal().mass[0] - u.causal().mass[1], rows(u)),
            false,
        ),
        excess_per_seed,
        diagonal: ratio(&|u| (u.causal().diag, rows(u))),
        density: ratio(&|u| (u.causal().density, rows(u))),
        rules,
        cross_keys: ratio(&|u| (u.cross_keys, window_rows(u))),
        cross_mass: ratio(&|u| (u.cross_mass, window_rows(u))),
        window_mass: ratio(&|u| (u.window_mass, window_rows(u))),
        global_null: ratio(&|u| (u.global_null, window_rows(u))),
    }
}

/// The periodic validation evaluations of `records` as `(step, perplexity)`.
fn valid_points(records: &[train::EvalRecord]) -> impl Iterator<Item = (u32, f64)> + '_ {
    records
        .iter()
        .filter(|e| e.split == "valid")
        .map(|e| (e.step, e.perplexity))
}

/// A run's periodic validation perplexities `(step, perplexity)`.
fn curve_of(r: &TrainResults) -> Vec<(u32, f64)> {
    valid_points(&r.eval_curve).collect()
}

fn valid_curve(c: &TrainCell) -> Vec<(u32, f64)> {
    curve_of(&c.results)
}

/// E2's steps to target of seed `s`'s `arm` cell against its `dense` cell.
fn steps_to_target(s: u64, dense: &TrainCell, arm: &TrainCell) -> StepsToTarget {
    StepsToTarget::extended(s, &dense.results, &arm.results, arm.extension.as_ref())
}

/// Build the report of the run in `run_dir` into `out_dir` (report.md, summary.json, SVGs).
/// `command` is the command line that reproduces the run, quoted in the report.
pub fn write_report(run_dir: &Path, out_dir: &Path, command: &str) -> Result<Summary> {
    let cfg = load_config(run_dir)?;
    let hash = cfg.hash()?;
    let store = CellStore::new(run_dir, &hash);
    let mut commits = BTreeSet::new();
    let mut devices = BTreeSet::new();
    let mut done = Vec::new();
    let mut missing = Vec::new();
    let mut train: Vec<(CellKey, TrainCell)> = Vec::new();
    let mut e3_cells: Vec<(CellKey, E3Cell)> = Vec::new();
    let mut e5_cells: Vec<(CellKey, E5Cell)> = Vec::new();
    let mut e4_cells: Vec<(CellKey, E4Cell)> = Vec::new();
    for key in cfg.cells() {
        match key.exp.as_str() {
            "e4" => match store.load::<E4Cell>(&key)? {
                Some(c) => {
                    commits.insert(c.git_commit.clone());
                    devices.insert(c.device.clone());
                    done.push(key.id());
                    e4_cells.push((key, c.result));
                }
                None => missing.push(key.id()),
            },
            "e5" => match store.load::<E5Cell>(&key)? {
                Some(c) => {
                    commits.insert(c.git_commit.clone());
                    devices.insert(c.device.clone());
                    done.push(key.id());
                    e5_cells.push((key, c.result));
                }
                None => missing.push(key.id()),
            },
            "e3" => match store.load::<E3Cell>(&key)? {
                Some(c) => {
                    commits.insert(c.git_commit.clone());
                    devices.insert(c.device.clone());
                    done.push(key.id());
                    e3_cells.push((key, c.result));
                }
                None => missing.push(key.id()),
            },
            "train" => match store.load::<TrainCell>(&key)? {
                Some(c) => {
                    commits.insert(c.git_commit.clone());
                    devices.insert(c.device.clone());
                    done.push(key.id());
                    train.push((key, c.result));
                }
                None => missing.push(key.id()),
            },
            other => return Err(Error::Config(format!("unknown cell kind `{other}`"))),
        }
    }
    let cell = |arm: &str, seed: u64| {
        train
            .iter()
            .find(|(k, _)| k.arm == arm && k.seed == seed)
            .map(|(_, c)| c)
    };

    // E1
    let aligned: Vec<(u64, &Alignment)> = cfg
        .seeds
        .iter()
        .filter_map(|&s| {
            cell("dense", s)
                .and_then(|c| c.alignment.as_ref())
                .map(|a| (s, a))
        })
        .collect();
    let mut e1 = Vec::new();
    if !aligned.is_empty() {
        e1.push(summarise_head(&aligned, None, None, cfg.bootstrap));
        for l in 0..cfg.train.n_layer {
            for h in 0..cfg.train.n_head {
                e1.push(summarise_head(&aligned, Some(l), Some(h), cfg.bootstrap));
            }
        }
    }

    // E2
    let pairs: Vec<(u64, &TrainCell, &TrainCell)> = cfg
        .seeds
        .iter()
        .filter_map(|&s| Some((s, cell("dense", s)?, cell("asa", s)?)))
        .filter(|(_, d, a)| d.results.finished && a.results.finished)
        .collect();
    let e2 = (!pairs.is_empty()).then(|| {
        let get = |f: &dyn Fn(&TrainCell) -> Option<f64>, asa: bool| -> Estimate {
            let v: Vec<f64> = pairs
                .iter()
                .filter_map(|(_, d, a)| f(if asa { a } else { d }))
                .collect();
            across(&v)
        };
        let vp = |c: &TrainCell| c.results.final_valid_perplexity;
        let tp = |c: &TrainCell| c.results.final_test_perplexity;
        let diffs: Vec<f64> = pairs
            .iter()
            .filter_map(|(_, d, a)| Some(vp(a)? - vp(d)?))
            .collect();
        ConvergenceSummary {
            dense_valid_ppl: get(&vp, false),
            asa_valid_ppl: get(&vp, true),
            dense_test_ppl: get(&tp, false),
            asa_test_ppl: get(&tp, true),
            valid_ppl_diff: across(&diffs),
            nulls: ["null-compat", "null-rows"]
                .iter()
                .filter_map(|&arm| {
                    // (seed, dense, ASA, null) of every seed whose null run finished.
                    let runs: Vec<_> = pairs
                        .iter()
                        .filter_map(|&(s, d, a)| Some((s, d, a, cell(arm, s)?)))
                        .filter(|(.., n)| n.results.finished)
                        .collect();
                    (!runs.is_empty()).then(|| NullArm {
                        steps_to_dense: runs
                            .iter()
                            .map(|&(s, d, _, n)| steps_to_target(s, d, n))
                            .collect(),
                        arm: arm.into(),
                        valid_ppl: across(
                            &runs.iter().filter_map(|(.., n)| vp(n)).collect::<Vec<_>>(),
                        ),
                        test_ppl: across(
                            &runs.iter().filter_map(|(.., n)| tp(n)).collect::<Vec<_>>(),
                        ),
                        asa_minus_null: across(
                            &runs
                                .iter()
                                .filter_map(|(_, _, a, n)| Some(vp(a)? - vp(n)?))
                                .collect::<Vec<_>>(),
                        ),
                    })
                })
                .collect(),
            dense_late_improvement: pairs
                .iter()
                .filter_map(|(s, d, _)| Some((*s, late_improvement(&valid_curve(d))?)))
                .collect(),
            steps_to_dense: pairs
                .iter()
                .map(|&(s, d, a)| steps_to_target(s, d, a))
                .collect(),
        }
    });

    let e3: Vec<E3Summary> = cfg
        .e3
        .groups
        .iter()
        .filter_map(|&g| {
            let name = super::e3::arm(g);
            let cells: Vec<(u64, &E3Cell)> = e3_cells
                .iter()
                .filter(|(k, _)| k.arm == name)
                .map(|(k, c)| (k.seed, c))
                .collect();
            (!cells.is_empty()).then(|| summarise_e3(name, &cells))
        })
        .collect();

    let e5: Vec<E5Arm> = ["dense", "asa"]
        .iter()
        .filter_map(|&arm| {
            let cs: Vec<&super::ffn24::Ffn24Result> = cfg
                .seeds
                .iter()
                .filter_map(|&s| cell(arm, s)?.ffn24.as_ref())
                .collect();
            let v = |f: &dyn Fn(&super::ffn24::Ffn24Result) -> f64| {
                across(&cs.iter().map(|c| f(c)).collect::<Vec<_>>())
            };
            // Rates and their ratios: log scale (their intervals stay above 0).
            let vl = |f: &dyn Fn(&super::ffn24::Ffn24Result) -> f64| {
                across_log(&cs.iter().map(|c| f(c)).collect::<Vec<_>>())
            };
            let first = cs.first()?;
            Some(E5Arm {
                arm: arm.into(),
                dense_valid_ppl: v(&|r| r.dense_valid_ppl),
                oneshot_valid_ppl: v(&|r| r.oneshot_valid_ppl),
                finetuned_valid_ppl: v(&|r| r.finetuned_valid_ppl),
                finetuned_test_ppl: v(&|r| r.finetuned_test_ppl),
                compressed_valid_ppl: v(&|r| r.compressed_valid_ppl),
                speedup: vl(&|r| r.compressed_tokens_per_sec / r.dense_tokens_per_sec),
                dense_tokens_per_sec: vl(&|r| r.dense_tokens_per_sec),
                compressed_tokens_per_sec: vl(&|r| r.compressed_tokens_per_sec),
                ffn_bytes_ratio: first.ffn_compressed_bytes as f64 / first.ffn_dense_bytes as f64,
                dense_extra_valid_ppl: cs
                    .iter()
                    .map(|c| c.dense_extra_valid_ppl)
                    .collect::<Option<Vec<f64>>>()
                    .map(|v| across(&v)),
                finetuned_minus_dense_extra: cs
                    .iter()
                    .map(|c| Some(c.finetuned_valid_ppl - c.dense_extra_valid_ppl?))
                    .collect::<Option<Vec<f64>>>()
                    .map(|v| across(&v)),
                interleaved: cs.iter().all(|c| c.interleaved),
                peak_rss_bytes: cs.iter().filter_map(|c| c.peak_rss_bytes).max(),
            })
        })
        .collect();

    let e4 = {
        let get = |arm: &str, seed: u64| {
            e4_cells
                .iter()
                .find(|(k, _)| k.arm == arm && k.seed == seed)
                .map(|(_, c)| c)
                .filter(|c| c.results.finished)
        };
        // A cell trained with another bias learning rate (an older method) is not mixed in.
        if let Some((k, c)) = e4_cells
            .iter()
            .find(|(_, c)| c.tag_bias_lr_scale != cfg.e4.tag_bias_lr_scale)
        {
            return Err(Error::Config(format!(
                "cell {k} trained the tag bias at {}× the learning rate, the config says {}×: \
                 delete its file under cells/ (and its work/ directory) and rerun reproduce",
                c.tag_bias_lr_scale, cfg.e4.tag_bias_lr_scale
            )));
        }
        let pairs: Vec<_> = cfg
            .seeds
            .iter()
            .filter_map(|&s| Some((s, get("zero", s)?, get("asa", s)?)))
            .collect();
        (!pairs.is_empty()).then(|| {
            let fv = |c: &E4Cell| c.results.final_valid_perplexity.unwrap_or(f64::NAN);
            let diffs: Vec<f64> = pairs.iter().map(|p| fv(p.2) - fv(p.1)).collect();
            let zero_mean = pairs.iter().map(|p| fv(p.1)).sum::<f64>() / pairs.len() as f64;
            let drift =
                |c: &E4Cell, f: &dyn Fn(&super::e4::BiasDrift) -> f64| c.drift.as_ref().map(f);
            let over = |pick: usize, f: &dyn Fn(&super::e4::BiasDrift) -> f64| {
                across(
                    &pairs
                        .iter()
                        .filter_map(|p| drift(if pick == 0 { p.1 } else { p.2 }, f))
                        .collect::<Vec<_>>(),
                )
            };
            E4Summary {
                zero_valid_ppl: across(&pairs.iter().map(|p| fv(p.1)).collect::<Vec<_>>()),
                asa_valid_ppl: across(&pairs.iter().map(|p| fv(p.2)).collect::<Vec<_>>()),
                valid_ppl_diff: across(&diffs),
                steps_to_zero: pairs
                    .iter()
                    .map(|(s, z, a)| {
                        StepsToTarget::extended(*s, &z.results, &a.results, a.extension.as_ref())
                    })
                    .collect(),
                non_inferiority: non_inferiority(&diffs, cfg.e4.non_inferiority_margin * zero_mean),
                tag_bias_lr_scale: cfg.e4.tag_bias_lr_scale,
                asa_final_incompatible: over(1, &|d| d.final_incompatible),
                asa_drift_incompatible: over(1, &|d| d.drift_incompatible),
                asa_drift_compatible: over(1, &|d| d.drift_compatible),
                zero_final_incompatible: over(0, &|d| d.final_incompatible),
                zero_final_compatible: over(0, &|d| d.final_compatible),
            }
        })
    };

    let e5_hybrid = (!e5_cells.is_empty()).then(|| {
        let mut valid = Vec::new();
        let mut test = Vec::new();
        for arm in ["dense", "asa"] {
            let cs: Vec<&TrainCell> = cfg.seeds.iter().filter_map(|&s| cell(arm, s)).collect();
            let v: Vec<f64> = cs
                .iter()
                .filter_map(|c| c.results.final_valid_perplexity)
                .collect();
            let t: Vec<f64> = cs
                .iter()
                .filter_map(|c| c.results.final_test_perplexity)
                .collect();
            valid.push((arm.to_string(), across(&v)));
            test.push((arm.to_string(), across(&t)));
        }
        let mut remaining = f64::NAN;
        for (arm, _) in super::e5::ARMS {
            let lasts: Vec<_> = e5_cells
                .iter()
                .filter(|(k, _)| k.arm == arm)
                .filter_map(|(_, c)| c.levels.last())
                .collect();
            if let Some(l) = lasts.first() {
                remaining = l.remaining_fraction;
            }
            let v: Vec<f64> = lasts.iter().map(|l| l.valid_perplexity).collect();
            let t: Vec<f64> = lasts.iter().map(|l| l.test_perplexity).collect();
            valid.push((arm.to_string(), across(&v)));
            test.push((arm.to_string(), across(&t)));
            // Its controls at the last level, where every seed ran them.
            for (variant, name) in [
                (Variant::RandomReinit, "re-init"),
                (Variant::LayerwiseShuffle, "shuffled mask"),
            ] {
                let pick = |l: &&super::e5::E5Level| {
                    l.controls
                        .iter()
                        .find(|c| c.0 == variant)
                        .map(|c| (c.1, c.2))
                };
                let got: Option<Vec<(f64, f64)>> = lasts.iter().map(pick).collect();
                if let Some(got) = got.filter(|g| !g.is_empty()) {
                    let label = format!("{arm} ({name} control)");
                    valid.push((
                        label.clone(),
                        across(&got.iter().map(|g| g.0).collect::<Vec<_>>()),
                    ));
                    test.push((label, across(&got.iter().map(|g| g.1).collect::<Vec<_>>())));
                }
            }
        }
        E5Hybrid {
            ffn_remaining: remaining,
            valid_ppl: valid,
            test_ppl: test,
        }
    });

    let summary = Summary {
        config: cfg.clone(),
        config_hash: hash,
        commits: commits.into_iter().collect(),
        devices: devices.into_iter().collect(),
        cells_done: done,
        cells_missing: missing,
        e1,
        e2,
        e3,
        e4,
        e5,
        e5_hybrid,
    };
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::Config(format!("summary serialisation: {e}")))?;
    crate::io::write_atomic(&out_dir.join("summary.json"), json.as_bytes())?;

    // Plots
    let mut curves = Vec::new();
    for arm in ["dense", "asa"] {
        let per_seed: Vec<Vec<(u32, f64)>> = cfg
            .seeds
            .iter()
            .filter_map(|&s| cell(arm, s).map(valid_curve))
            .collect();
        if let Some(first) = per_seed.first() {
            let pts = first
                .iter()
                .enumerate()
                .map(|(i, &(step, _))| {
                    let v: Vec<f64> = per_seed
                        .iter()
                        .filter_map(|c| c.get(i).map(|p| p.1.ln()))
                        .collect();
                    (step as f64, v.iter().sum::<f64>() / v.len() as f64)
                })
                .collect();
            curves.push(Series::new(arm, pts));
        }
    }
    let loss_svg = plot::svg(
        &Chart {
            title: "E2: validation loss (mean over seeds)",
            x_label: "step",
            y_label: "validation loss (nats/token)",
            style: Style::Lines,
            log_x: false,
        },
        &curves,
    );
    crate::io::write_atomic(&out_dir.join("e2_valid_loss.svg"), loss_svg.as_bytes())?;
    let heads: Vec<&HeadSummary> = summary.e1.iter().filter(|h| h.layer.is_some()).collect();
    let e1_series: Vec<Series> = (0..MASKS.len())
        .map(|m| {
            let mut s = Series::new(
                MASKS[m],
                heads
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (i as f64, h.mass[m].estimate))
                    .collect(),
            );
            s.intervals = Some(heads.iter().map(|h| (h.mass[m].lo, h.mass[m].hi)).collect());
            s
        })
        .collect();
    let e1_svg = plot::svg(
        &Chart {
            title: "E1: attention mass inside each mask, per head (layer·H + head)",
            x_label: "head index",
            y_label: "attention mass",
            style: Style::Points,
            log_x: false,
        },
        &e1_series,
    );
    crate::io::write_atomic(&out_dir.join("e1_mass_per_head.svg"), e1_svg.as_bytes())?;

    for e in &summary.e3 {
        e3_plots(e, out_dir)?;
    }
    let md = markdown(&summary, command);
    crate::io::write_atomic(&out_dir.join("report.md"), md.as_bytes())?;
    Ok(summary)
}

fn e3_point(c: &E3Cell, level: u32, v: Variant) -> Option<&E3Point> {
    c.points.iter().find(|p| p.level == level && p.variant == v)
}

fn summarise_e3(group: &str, cells: &[(u64, &E3Cell)]) -> E3Summary {
    let levels = cells.iter().map(|(_, c)| c.imp.levels).min().unwrap_or(0);
    let variants = [
        Variant::Ticket,
        Variant::RandomReinit,
        Variant::LayerwiseShuffle,
    ];
    let mut out = Vec::new();
    for level in 0..=levels {
        let vals = |v: Variant, f: &dyn Fn(&E3Point) -> f64| -> Vec<f64> {
            cells
                .iter()
                .filter_map(|(_, c)| e3_point(c, level, v).map(f))
                .collect()
        };
        let present: Vec<Variant> = variants
            .iter()
            .copied()
            .filter(|&v| !vals(v, &|p| p.valid_perplexity).is_empty())
            .collect();
        let remaining = vals(Variant::Ticket, &|p| p.remaining_fraction);
        out.push(E3Level {
            level,
            remaining: remaining.first().copied().unwrap_or(f64::NAN),
            valid_ppl: present
                .iter()
                .map(|&v| (v, across(&vals(v, &|p| p.valid_perplexity))))
                .collect(),
            asa_mass: present
                .iter()
                .map(|&v| (v, across_fraction(&vals(v, &|p| p.mass(0)))))
                .collect(),
            ticket_null_mass: across_fraction(&vals(Variant::Ticket, &|p| p.mass(1))),
            ticket_excess: across(&vals(Variant::Ticket, &|p| p.mass(0) - p.mass(1))),
            excess: present
                .iter()
                .map(|&v| (v, across(&vals(v, &|p| p.mass(0) - p.mass(1)))))
                .collect(),
            ticket_minus_shuffled: across(
                &cells
                    .iter()
                    .filter_map(|(_, c)| {
                        let t = e3_point(c, level, Variant::Ticket)?;
                        let sh = e3_point(c, level, Variant::LayerwiseShuffle)?;
                        Some((t.mass(0) - t.mass(1)) - (sh.mass(0) - sh.mass(1)))
                    })
                    .collect::<Vec<_>>(),
            ),
        });
    }
    let target = out
        .iter()
        .min_by(|a, b| {
            (a.remaining - 0.1)
                .abs()
                .total_cmp(&(b.remaining - 0.1).abs())
        })
        .map_or(0, |l| l.level);
    let mut head_points = Vec::new();
    let mut head_strata = Vec::new();
    let layers = cells
        .iter()
        .flat_map(|(_, c)| c.points.iter())
        .flat_map(|p| p.survival.iter().map(|s| s.layer + 1))
        .max()
        .unwrap_or(1);
    for (si, (_, c)) in cells.iter().enumerate() {
        if let (Some(dense), Some(t)) = (
            e3_point(c, 0, Variant::Ticket),
            e3_point(c, target, Variant::Ticket),
        ) {
            for (h, s) in dense.heads.iter().zip(&t.survival) {
                let c = h.causal();
                let rows = c.rows.max(1) as f64;
                head_points.push(((c.mass[0] - c.mass[1]) / rows, s.wqk));
                head_strata.push(si * layers + s.layer);
            }
        }
    }
    let (x, y): (Vec<f64>, Vec<f64>) = head_points.iter().copied().unzip();
    let spearman = stats::spearman_test(&x, &y, stats::Alternative::TwoSided, 200_000, 0x5EA)
        .ok()
        .flatten();
    let spearman_stratified = stats::spearman_stratified_test(&x, &y, &head_strata, 20_000, 0x5EB)
        .ok()
        .flatten();
    E3Summary {
        group: group.into(),
        levels: out,
        target_level: target,
        head_points,
        spearman,
        head_strata,
        spearman_stratified,
    }
}

fn variant_name(v: Variant) -> &'static str {
    match v {
        Variant::Ticket => "ticket",
        Variant::RandomReinit => "random re-init",
        Variant::LayerwiseShuffle => "shuffled mask",
    }
}

fn e3_plots(e: &E3Summary, out_dir: &Path) -> Result<()> {
    let by_variant = |f: &dyn Fn(&E3Level) -> Vec<(Variant, Estimate)>| -> Vec<Series> {
        [
            Variant::Ticket,
            Variant::RandomReinit,
            Variant::LayerwiseShuffle,
        ]
        .iter()
        .map(|&v| {
            let pts: Vec<(f64, Estimate)> = e
                .levels
                .iter()
                .filter_map(|l| {
                    f(l).into_iter()
                        .find(|(x, _)| *x == v)
                        .map(|(_, est)| (l.remaining, est))
                })
                .collect();
            let mut s = Series::new(
                variant_name(v),
                pts.iter().map(|(x, est)| (*x, est.estimate)).collect(),
            );
            s.intervals = Some(pts.iter().map(|(_, est)| (est.lo, est.hi)).collect());
            s
        })
        .collect()
    };
    let mut mass = by_variant(&|l| l.asa_mass.clone());
    let mut null = Series::new(
        "null (ticket, rows)",
        e.levels
            .iter()
            .map(|l| (l.remaining, l.ticket_null_mass.estimate))
            .collect(),
    );
    null.intervals = Some(
        e.levels
            .iter()
            .map(|l| (l.ticket_null_mass.lo, l.ticket_null_mass.hi))
            .collect(),
    );
    mass.push(null);
    let title = format!("E3 ({}): attention mass inside the ASA mask", e.group);
    let svg = plot::svg(
        &Chart {
            title: &title,
            x_label: "fraction of prunable weights remaining (log)",
            y_label: "attention mass",
            style: Style::Lines,
            log_x: true,
        },
        &mass,
    );
    crate::io::write_atomic(
        &out_dir.join(format!("e3_{}_mass.svg", e.group)),
        svg.as_bytes(),
    )?;
    let title = format!("E3 ({}): validation perplexity", e.group);
    let svg = plot::svg(
        &Chart {
            title: &title,
            x_label: "fraction of prunable weights remaining (log)",
            y_label: "validation perplexity",
            style: Style::Lines,
            log_x: true,
        },
        &by_variant(&|l| l.valid_ppl.clone()),
    );
    crate::io::write_atomic(
        &out_dir.join(format!("e3_{}_ppl.svg", e.group)),
        svg.as_bytes(),
    )?;
    let title = format!(
        "E3 ({}): per head, dense excess ASA alignment vs W_q/W_k kept at level {}",
        e.group, e.target_level
    );
    let svg = plot::svg(
        &Chart {
            title: &title,
            x_label: "excess ASA mass over the row-matched null (dense model)",
            y_label: "W_q/W_k fraction kept",
            style: Style::Points,
            log_x: false,
        },
        &[Series::new("(seed, head)", e.head_points.clone())],
    );
    crate::io::write_atomic(
        &out_dir.join(format!("e3_{}_heads.svg", e.group)),
        svg.as_bytes(),
    )?;
    Ok(())
}

fn verdict_excess(e: &Estimate) -> &'static str {
    if e.n < 2 {
        "too few seeds"
    } else if e.lo > 0.0 {
        "ASA mask above the density-matched null"
    } else if e.hi < 0.0 {
        "ASA mask below the null"
    } else {
        "not distinguishable from the null"
    }
}

/// The claims table (markdown): each of the seed's claims, our measurement with its interval,
/// and the verdict. The report opens with it; `asa-lth report --readme FILE` writes it into
/// README's findings block.
pub fn claims_table(s: &Summary) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "| claim (seed) | our measurement | verdict |\n|---|---|---|"
    );
    if let Some(all) = s.e1.first() {
        let _ = writeln!(
            m,
            "| E1: {:.1}% of attention inside the ASA mask vs {:.1}% for a random mask | within-sentence: ASA {} vs row-matched null {} vs distance-matched null {}; excess {} (public code's frame: ASA {} vs global-density null {}) | {} |",
            100.0 * claims::ASA_MASS,
            100.0 * claims::RANDOM_MASS,
            pct(&all.mass[0]),
            pct(&all.mass[1]),
            pct(&all.mass[2]),
            pct(&all.excess),
            pct(&all.window_mass),
            pct(&all.global_null),
            verdict_excess(&all.excess)
        );
    }
    if let Some(e2) = &s.e2 {
        let verdict = if e2.valid_ppl_diff.n < 2 {
            "too few seeds"
        } else if e2.valid_ppl_diff.hi < 0.0 {
            "ASA better"
        } else if e2.valid_ppl_diff.lo > 0.0 {
            "ASA worse"
        } else {
            "no difference resolved"
        };
        let _ = writeln!(
            m,
            "| E2: validation perplexity {} (ASA) vs {} (dense) | ASA {} vs dense {}; difference {}{} | {} |",
            claims::ASA_PPL,
            claims::DENSE_PPL,
            num(&e2.asa_valid_ppl, 2),
            num(&e2.dense_valid_ppl, 2),
            num(&e2.valid_ppl_diff, 2),
            e2.nulls
                .iter()
                .map(|n| format!("; ASA − {} {}", n.arm, num(&n.asa_minus_null, 2)))
                .collect::<String>(),
            verdict
        );
        let c = steps_claim(&e2.steps_to_dense);
        let _ = writeln!(
            m,
            "| E2: {:.0}% fewer steps to reach the dense model's final perplexity | {} | {} |",
            100.0 * claims::FEWER_STEPS,
            c.text,
            match (c.faster, c.reached_median) {
                (_, false) =>
                    "not reproduced (censored: ASA did not reach the dense target in most seeds)",
                (Some(true), _) => "ASA faster",
                (Some(false), _) => "ASA slower",
                (None, true) => "inconclusive (the interval allows both)",
            }
        );
    }
    if let Some(e4) = &s.e4 {
        let c = steps_claim(&e4.steps_to_zero);
        let ni = &e4.non_inferiority;
        let no_loss = ni.non_inferior;
        let _ = writeln!(
            m,
            "| E4: ASA-initialised tag-pair bias reaches the target >10% faster, no loss in final perplexity | {}; final validation perplexity ASA-init {} vs zero-init {}, difference {:+.3} with one-sided 95% upper bound {:+.3} against a non-inferiority margin of {:.3}: {} | {} |",
            c.text,
            num(&e4.asa_valid_ppl, 2),
            num(&e4.zero_valid_ppl, 2),
            ni.mean_difference,
            ni.upper,
            ni.margin,
            if ni.non_inferior { "non-inferior" } else { "non-inferiority not shown" },
            match (c.faster, c.reached_median) {
                (_, false) => "not reproduced (censored: ASA-init did not reach the target in most seeds)",
                (Some(true), _) if c.upper.is_some_and(|h| h < 0.9) && no_loss => "reproduced",
                (Some(true), _) => "faster, but not resolved above 10%",
                (Some(false), _) => "ASA-init slower",
                (None, true) => "inconclusive (the interval allows both)",
            }
        );
    }
    for e in &s.e3 {
        if let Some(l) = e.levels.iter().find(|l| l.level == e.target_level) {
            let get = |v: Variant| {
                l.asa_mass
                    .iter()
                    .find(|(x, _)| *x == v)
                    .map_or("—".to_string(), |(_, est)| pct(est))
            };
            let _ = writeln!(
                m,
                "| E3 ({}): >60% of a winning ticket's attention inside the ASA mask at 10% remaining, vs ~50% for random | level {} ({:.1}% remaining): ticket {} vs its row-matched null {}; random re-init {}; shuffled mask {} | {} |",
                e.group,
                l.level,
                100.0 * l.remaining,
                get(Variant::Ticket),
                pct(&l.ticket_null_mass),
                get(Variant::RandomReinit),
                get(Variant::LayerwiseShuffle),
                verdict_excess(&l.ticket_excess)
            );
        }
    }
    // A verdict on another corpus, tokenizer or budget than the seed's says which way the
    // effect goes, not whether the seed's numbers hold.
    if let Some(why) = unlike_seed(&s.config) {
        m = m
            .lines()
            .map(|l| match l.strip_prefix("| E").and(l.strip_suffix(" |")) {
                Some(row) => format!("{row}; direction only ({why}) |\n"),
                None => format!("{l}\n"),
            })
            .collect();
        let _ = writeln!(
            m,
            "\n*Direction only*: the seed measured on WikiText-2 with GPT-2 BPE tokens at the paper's scale; a verdict here says which way each effect goes under this run's setting, not whether the seed's numbers hold."
        );
    }
    if let Some(e2) = &s.e2 {
        let late: Vec<String> = e2
            .dense_late_improvement
            .iter()
            .filter(|(_, x)| *x >= CONVERGED_BELOW)
            .map(|(seed, x)| format!("seed {seed} by {:.1}%", 100.0 * x))
            .collect();
        if !late.is_empty() {
            let _ = writeln!(
                m,
                "\n**Not converged:** the dense model's validation perplexity was still falling over the last 20% of its steps ({}; criterion: < {:.0}%). A comparison with runs that train longer (E3's tickets, E5's IMP) then favours them by training alone.",
                late.join(", "),
                100.0 * CONVERGED_BELOW
            );
        }
    }
    m
}

fn markdown(s: &Summary, command: &str) -> String {
    let c = &s.config;
    let mut m = String::new();
    let _ = writeln!(m, "# ASA vs LTH reproduction ({:?} scale)\n", c.scale);
    let _ = writeln!(
        m,
        "- corpus: {}\n- {}\n- model: {} layers, {} heads, d_model {}, context {}; batch {}, {} steps, lr {}\n- seeds: {:?}; intervals are 95%: across seeds a t-interval of the per-seed values — on the logit scale for shares of attention mass, on the log scale for step ratios, rates and speed ratios (so each stays in its range; the estimate is then the back-transformed mean), plain otherwise — within a seed a bootstrap over sentences ({} resamples)\n- commits: {}\n- devices: {}\n- config hash: `{}`\n- reproduce: `{}`\n",
        c.train.corpus.label(),
        c.train.tags_label(),
        c.train.n_layer,
        c.train.n_head,
        c.train.d_model,
        c.train.seq_len,
        c.train.batch,
        c.train.steps,
        c.train.lr,
        c.seeds,
        c.bootstrap,
        s.commits.join(", "),
        s.devices.join(", "),
        s.config_hash,
        command
    );
    if !s.cells_missing.is_empty() {
        let _ = writeln!(
            m,
            "**Incomplete:** {} cells missing ({}); numbers below use the finished ones.\n",
            s.cells_missing.len(),
            s.cells_missing.join(", ")
        );
    }
    let _ = write!(m, "## Claims\n\n{}", claims_table(s));
    let _ = writeln!(
        m,
        "\nThe seed's perplexities are per GPT-2 BPE token on WikiText-2; perplexities on another corpus or tokenizer are not comparable with them, only the direction and size of the ASA-vs-dense difference is.\n"
    );
    if !s.e1.is_empty() {
        let _ = writeln!(
            m,
            "## E1: alignment of a dense model's attention with the ASA mask\n\nMeasured **within-sentence**: a row's keys are the earlier tokens of its own sentence, its attention renormalised over them and itself; rows with at least one such key. `mass` includes the diagonal (every mask here allows it), `off-diag` is the share of off-diagonal attention inside the mask, `top-k` the share of a row's most-attended keys (as many as the mask allows) inside it. The nulls are exact expectations: the row-matched null allows as many of the row's keys as the ASA mask, at random; the distance-matched null allows a pair at distance d with the ASA mask's share of the sentence's pairs at that distance. Tags: the run's causal tags.\n\n| layer | head | ASA mass | null (rows) | null (dist) | ASA off-diag | null off-diag | ASA top-k | null top-k | diagonal | ASA density |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for h in &s.e1 {
            let name = |x: Option<usize>| x.map_or("all".to_string(), |v| v.to_string());
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                name(h.layer),
                name(h.head),
                pct(&h.mass[0]),
                pct(&h.mass[1]),
                pct(&h.mass[2]),
                pct(&h.offdiag[0]),
                pct(&h.offdiag[1]),
                pct(&h.topk[0]),
                pct(&h.topk[1]),
                pct(&h.diagonal),
                pct(&h.density)
            );
        }
        if let Some(all) = s.e1.first() {
            let _ = writeln!(
                m,
                "\nPer seed, ASA − row-matched null with a bootstrap interval over sentences:\n"
            );
            for (seed, e) in &all.excess_per_seed {
                let _ = writeln!(m, "- seed {seed}: {} over {} sentences", pct(e), e.n);
            }
            let _ = writeln!(
                m,
                "\n### E1 by tag rule (all heads, within-sentence)\n\n`causal`: the run's leak-free tags (what a model could be trained with); `target`: row i keyed on the tag of token i+1, the word it predicts (measurement only, never a training mask); `gold`: the treebank's tags, an oracle (absent when the text has none).\n\n| rule | rows per seed | ASA mass | null (rows) | null (dist) | ASA − null (rows) | ASA − null (dist) | ASA density |\n|---|---|---|---|---|---|---|---|"
            );
            for r in &all.rules {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.rule,
                    r.rows,
                    pct(&r.mass[0]),
                    pct(&r.mass[1]),
                    pct(&r.mass[2]),
                    pct(&r.excess),
                    pct(&r.excess_dist),
                    pct(&r.density)
                );
            }
            let _ = writeln!(
                m,
                "\n### Cross-sentence keys and the public code's frame\n\nOver every row of a window with an earlier key: {} of the valid earlier keys lie in earlier sentences and they take {} of the attention. In the public code's frame (every key of the window, the ASA mask over all of them, not renormalised) the ASA mask holds {} of the attention, against {} for its null — one random mask at the ASA mask's global density over the whole T×T square, half of which falls where causal attention is zero. That null's expectation is the density itself, so the gap it shows measures the mask's placement in the causal triangle as much as any alignment; the within-sentence row-matched null above is the comparison that answers E1.",
                pct(&all.cross_keys),
                pct(&all.cross_mass),
                pct(&all.window_mass),
                pct(&all.global_null),
            );
        }
        let _ = writeln!(m, "\n![E1 per head](e1_mass_per_head.svg)\n");
    }
    if let Some(e2) = &s.e2 {
        let _ = writeln!(
            m,
            "## E2: convergence, dense vs ASA-masked\n\n| | dense | ASA |\n|---|---|---|\n| final validation perplexity | {} | {} |\n| final test perplexity | {} | {} |\n",
            num(&e2.dense_valid_ppl, 3),
            num(&e2.asa_valid_ppl, 3),
            num(&e2.dense_test_ppl, 3),
            num(&e2.asa_test_ppl, 3)
        );
        let _ = writeln!(m, "{}", steps_method(&s.config));
        for x in &e2.steps_to_dense {
            let _ = writeln!(
                m,
                "- seed {}: the dense run first reached its final validation perplexity at step {}; ASA {}",
                x.seed,
                x.reference_hit,
                match x.hit {
                    Some(h) => format!("at step {h} of {}", x.budget),
                    None => format!("not within {} steps (censored)", x.budget),
                }
            );
        }
        if !e2.nulls.is_empty() {
            let _ = writeln!(
                m,
                "\nThe nulls, trained with the same seeds, schedule and budget: `null-compat` applies the tag rule with a random symmetric tag-pair matrix of the ASA matrix's expected density, fixed per seed (any tag-keyed structure); `null-rows` is the ASA mask's row-matched random mask, redrawn per batch (less attention, placed at random). ASA beats its nulls only if its difference is below 0.\n\n| arm | final validation perplexity | final test perplexity | ASA − arm (validation) | steps to the dense target |\n|---|---|---|---|---|"
            );
            for n in &e2.nulls {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} |",
                    n.arm,
                    num(&n.valid_ppl, 3),
                    num(&n.test_ppl, 3),
                    num(&n.asa_minus_null, 3),
                    steps_claim(&n.steps_to_dense).text
                );
            }
        }
        let _ = writeln!(m, "\n![E2 validation loss](e2_valid_loss.svg)\n");
    }
    if let Some(e4) = &s.e4 {
        let _ = writeln!(
            m,
            "## E4: ASA-guided initialisation of a tag-pair attention bias\n\nA learnable per-layer, per-head 17×17 UPOS tag-pair bias added to the attention scores of a dense causal model, initialised from the ASA compatibilities (0 where compatible, {} elsewhere) or to zero. Target: the zero-initialised run's final periodic validation perplexity.\n\n| | zero-init | ASA-init |\n|---|---|---|\n| final validation perplexity | {} | {} |\n",
            s.config.train.tag_bias_incompatible,
            num(&e4.zero_valid_ppl, 3),
            num(&e4.asa_valid_ppl, 3)
        );
        let _ = writeln!(
            m,
            "The bias trains at {}× the model's learning rate. Where it ended (mean over layers and heads, across seeds): ASA-init incompatible pairs at {} (from {}: on average {:.0}% of the way to 0, each pair moving by {} in either direction), compatible pairs moved by {}; zero-init incompatible pairs at {}, compatible at {}.\n",
            e4.tag_bias_lr_scale,
            num(&e4.asa_final_incompatible, 3),
            s.config.train.tag_bias_incompatible,
            {
                let init = s.config.train.tag_bias_incompatible as f64;
                100.0 * (e4.asa_final_incompatible.estimate - init) / init.abs().max(f64::MIN_POSITIVE)
            },
            num(&e4.asa_drift_incompatible, 3),
            num(&e4.asa_drift_compatible, 3),
            num(&e4.zero_final_incompatible, 3),
            num(&e4.zero_final_compatible, 3),
        );
        let _ = writeln!(m, "{}", steps_method(&s.config));
        for x in &e4.steps_to_zero {
            let _ = writeln!(
                m,
                "- seed {}: zero-init first reached its final perplexity at step {}; ASA-init {}",
                x.seed,
                x.reference_hit,
                match x.hit {
                    Some(h) => format!("at step {h} of {}", x.budget),
                    None => format!("not within {} steps (censored)", x.budget),
                }
            );
        }
        let _ = writeln!(m);
    }
    if let Some(h) = &s.e5_hybrid {
        let _ = writeln!(
            m,
            "## E5: hybrid — ASA mask + Lottery Ticket pruning of the FFN\n\nThe pruned arms run IMP with rewinding on the FFN weights down to {:.1}% remaining; `lth-ffn` attends causally, `hybrid` with the ASA mask. Each has the controls E3 uses, at the last level: the ticket's mask on a random re-initialisation (trained from step 1) and a layerwise-shuffled mask of the same sparsity on the rewound weights — a ticket is a ticket only if it beats both.\n\n| arm | final validation perplexity | final test perplexity |\n|---|---|---|",
            100.0 * h.ffn_remaining
        );
        for ((arm, v), (_, t)) in h.valid_ppl.iter().zip(&h.test_ppl) {
            let _ = writeln!(m, "| {arm} | {} | {} |", num(v, 3), num(t, 3));
        }
        let _ = writeln!(m);
    }
    if !s.e5.is_empty() {
        let _ = writeln!(
            m,
            "## E5: FFN projected to 2:4, fine-tuned ({} steps), and run through the 2:4 GEMM\n\nOne-shot magnitude projection of every FFN weight to 2:4, then fine-tuning with the 2:4 masks held. The control trains the dense model for the same extra steps on the same batches at the same rate without the masks: the 2:4 model beats dense only if it beats that control (fine-tuned − control below 0). Inference throughput: {}, the compressed 2:4 path against the dense path on the training device (median of {} passes each).\n\n| arm | valid ppl dense | dense + the same extra steps | one-shot 2:4 | fine-tuned 2:4 | fine-tuned − control | through the 2:4 GEMM | test ppl (2:4) | tokens/s dense | tokens/s 2:4 | speed ratio | FFN bytes ratio |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
            s.config.ffn24.finetune_steps,
            if s.e5.iter().all(|a| a.interleaved) {
                "forward-only tokens/s (batches and masks built before the timer; the two paths alternate within each repeat)"
            } else {
                "tokens/s of an evaluation pass (mask building and loss included; cells from before forward-only interleaved timing)"
            },
            s.config.ffn24.repeats
        );
        let opt = |e: &Option<Estimate>, d: usize| e.as_ref().map_or("—".into(), |e| num(e, d));
        for a in &s.e5 {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
                a.arm,
                num(&a.dense_valid_ppl, 2),
                opt(&a.dense_extra_valid_ppl, 2),
                num(&a.oneshot_valid_ppl, 2),
                num(&a.finetuned_valid_ppl, 2),
                opt(&a.finetuned_minus_dense_extra, 2),
                num(&a.compressed_valid_ppl, 2),
                num(&a.finetuned_test_ppl, 2),
                num(&a.dense_tokens_per_sec, 0),
                num(&a.compressed_tokens_per_sec, 0),
                num(&a.speedup, 2),
                a.ffn_bytes_ratio
            );
        }
        let _ = writeln!(
            m,
            "\nThe ASA arm with 2:4 FFN is the deployment form of the hybrid (ASA mask + sparse FFN).{}\n",
            s.e5
                .iter()
                .filter_map(|a| a.peak_rss_bytes)
                .max()
                .map_or(String::new(), |b| format!(
                    " Peak resident memory of the cells' processes (measured, whole process): {:.0} MiB.",
                    b as f64 / (1u64 << 20) as f64
                ))
        );
    }
    for e in &s.e3 {
        let _ = writeln!(
            m,
            "## E3 ({g}): ASA vs the winning ticket\n\nIterative magnitude pruning of the {g} weights with rewinding; at each level the ticket and both controls (random re-init with the ticket's mask; a layerwise-shuffled mask of the same per-tensor sparsity) are trained and their attention measured on held-out text. The re-init control trains like a fresh run, from step 1 through the warmup, for the ticket's total steps. Pruning W_q and W_k removes weights, not attention edges — every pruned model still attends over every key — so the measurement bridges the two by measuring each pruned model's attention against the ASA mask and its own row-matched null (the excess columns), and, per head, by correlating the dense model's ASA excess with how much of the head's W_q/W_k survives.\n\n| level | remaining | ppl ticket | ppl re-init | ppl shuffled | ASA mass ticket | re-init | shuffled | excess ticket | excess re-init | excess shuffled | ticket − shuffled (paired) |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
            g = e.group
        );
        for l in &e.levels {
            let find = |v: &[(Variant, Estimate)], x: Variant, f: &dyn Fn(&Estimate) -> String| {
                v.iter()
                    .find(|(y, _)| *y == x)
                    .map_or("—".to_string(), |(_, est)| f(est))
            };
            let p2 = |e: &Estimate| num(e, 2);
            let pc = |e: &Estimate| pct(e);
            let _ = writeln!(
                m,
                "| {} | {:.1}% | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.level,
                100.0 * l.remaining,
                find(&l.valid_ppl, Variant::Ticket, &p2),
                find(&l.valid_ppl, Variant::RandomReinit, &p2),
                find(&l.valid_ppl, Variant::LayerwiseShuffle, &p2),
                find(&l.asa_mass, Variant::Ticket, &pc),
                find(&l.asa_mass, Variant::RandomReinit, &pc),
                find(&l.asa_mass, Variant::LayerwiseShuffle, &pc),
                find(&l.excess, Variant::Ticket, &pc),
                find(&l.excess, Variant::RandomReinit, &pc),
                find(&l.excess, Variant::LayerwiseShuffle, &pc),
                pct(&l.ticket_minus_shuffled)
            );
        }
        match &e.spearman {
            Some(t) => {
                let _ = writeln!(
                    m,
                    "\nPer head (pooled over seeds, n = {}): Spearman ρ = {:.3} between the dense model's excess ASA alignment and the fraction of the head's W_q/W_k kept at level {}; permutation p = {:.4} ({}).\n",
                    t.n,
                    t.rho,
                    e.target_level,
                    t.p_value,
                    if t.exact { "exact" } else { "Monte Carlo" }
                );
            }
            None => {
                let _ = writeln!(
                    m,
                    "\nPer-head Spearman correlation: undefined (a constant variable or too few heads).\n"
                );
            }
        }
        if let Some(t) = &e.spearman_stratified {
            let _ = writeln!(
                m,
                "Heads are not the same unit across seeds, and global pruning makes a layer's heads compete for one budget, so the test that answers this ranks heads only against the heads of the same seed and layer and permutes the survival fractions only within each seed × layer ({} strata): ρ = {:.3}, two-sided p = {:.4} ({} permutations). The pooled ρ above mixes between-seed and between-layer differences in and is shown for comparison only.\n",
                e.head_strata.iter().collect::<std::collections::BTreeSet<_>>().len(),
                t.rho,
                t.p_value,
                t.permutations
            );
        }
        let _ = writeln!(
            m,
            "![E3 mass](e3_{g}_mass.svg)\n![E3 perplexity](e3_{g}_ppl.svg)\n![E3 heads](e3_{g}_heads.svg)\n",
            g = e.group
        );
    }
    m
}

/// The line opening README's generated findings block of the run in `run` (as typed after
/// `--run`, e.g. `results/reproduce-small`): one block per committed run.
pub fn findings_begin(run: &str) -> String {
    format!("<!-- findings:begin {run} (asa-lth report --readme) -->")
}
/// The line closing a findings block (see [`findings_begin`]).
pub const FINDINGS_END: &str = "<!-- findings:end -->";

/// `text` with the findings block of `run` replaced by `block`; an error naming `file` when
/// its markers are missing or out of order.
pub fn replace_findings(text: &str, run: &str, block: &str, file: &Path) -> Result<String> {
    let begin = findings_begin(run);
    let missing = || {
        Error::Config(format!(
            "{}: no findings block for {run} (a line `{begin}`, then one `{FINDINGS_END}`)",
            file.display()
        ))
    };
    let a = text.find(&begin).ok_or_else(missing)? + begin.len();
    let b = a + text[a..].find(FINDINGS_END).ok_or_else(missing)?;
    Ok(format!("{}\n{}{}", &text[..a], block, &text[b..]))
}

/// The findings block `asa-lth report --run RUN --readme FILE` writes for summary `s`.
pub fn findings_block(run: &str, s: &Summary) -> String {
    format!(
        "`asa-lth report --run {run}` (commits {}):\n\n{}",
        s.commits.join(", "),
        claims_table(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_improvement_is_over_the_last_fifth_of_the_steps() {
        // 300 steps, evaluated every 50: from step 200 (≤ 240) to 300.
        let c = [(50, 20.0), (100, 12.0), (200, 10.0), (250, 9.9), (300, 9.5)];
        assert!((late_improvement(&c).unwrap() - 0.05).abs() < 1e-12);
        let flat = [(100, 9.0), (240, 9.0), (300, 8.95)];
        assert!(late_improvement(&flat).unwrap() < CONVERGED_BELOW);
        assert_eq!(late_improvement(&[(300, 9.0)]), None);
        assert_eq!(late_improvement(&[]), None);
    }

    #[test]
    fn non_inferiority_on_both_sides_of_the_margin() {
        // Differences 0.05 ± 0.01 over 3 seeds: upper bound ≈ 0.05 + 2.92·0.0058 ≈ 0.067.
        let d = [0.04, 0.05, 0.06];
        let yes = non_inferiority(&d, 0.10);
        assert!(
            yes.non_inferior && yes.upper > 0.06 && yes.upper < 0.07,
            "{yes:?}"
        );
        let no = non_inferiority(&d, 0.06);
        assert!(!no.non_inferior, "{no:?}");
        // A mean below the margin is not enough when the spread is wide.
        let wide = non_inferiority(&[-0.3, 0.0, 0.3], 0.1);
        assert!(
            !wide.non_inferior && wide.mean_difference.abs() < 1e-12,
            "{wide:?}"
        );
        // One seed: no bound, never shown non-inferior.
        let one = non_inferiority(&[-1.0], 0.1);
        assert!(one.upper.is_nan() && !one.non_inferior);
    }

    #[test]
    fn only_the_seeds_setting_is_like_for_like() {
        let small = ReproduceConfig::preset(super::super::Scale::Small, None);
        let why = unlike_seed(&small).expect("the embedded default is not the seed's setting");
        assert!(
            why.contains("synthetic") && why.contains("small scale"),
            "{why}"
        );
        let mut paper = ReproduceConfig::preset(
            super::super::Scale::Paper,
            Some(crate::data::CorpusSource::Wikitext2 {
                dir: "/data/wikitext-2".into(),
            }),
        );
        paper.train.tokenizer = crate::data::Tokenizer::Gpt2;
        assert_eq!(unlike_seed(&paper), None);
    }
}
