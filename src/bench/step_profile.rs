//! Where a training step's time goes: the benchmark's `train_step` case (same model, batch
//! and optimiser) run on [`Profiled`] backends, every op call timed, summed per op and
//! divided by the steps. The remainder — the step's wall time minus every op's — is the model
//! code between ops (and the stopwatches themselves), reported as its own line so nothing is
//! left unitemised.

use super::cases::TrainStep;
use crate::backend::cpu::Cpu;
use crate::backend::profiled::Profiled;
use crate::rng::Rng;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One op's share of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpShare {
    /// Op name (the matmuls with their `k→oc` shape); `(between ops)` for the remainder.
    pub op: String,
    pub calls_per_step: f64,
    pub secs_per_step: f64,
    /// Of the step's wall time.
    pub share: f64,
}

/// The itemised step of one `train_step` case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepProfile {
    /// The `train_step` figure it itemises.
    pub case: String,
    pub steps: usize,
    /// Mean wall seconds per step, profiled (each op's stopwatch included).
    pub step_secs: f64,
    /// Largest first; the last line is the time between ops.
    pub ops: Vec<OpShare>,
}

/// Profile `steps` training steps (after two untimed ones) of the `train_step` case with
/// vocabulary `vocab` on the CPU; `case` names its figure.
pub fn profile_cpu_step(case: &str, vocab: usize, steps: usize) -> Result<StepProfile> {
    let mut ts = TrainStep::new(Profiled::new(Cpu), vocab, &mut Rng::new(5))?;
    for _ in 0..2 {
        ts.run()?;
    }
    ts.model.ops.take();
    let t0 = Instant::now();
    for _ in 0..steps {
        ts.run()?;
    }
    let step_secs = t0.elapsed().as_secs_f64() / steps as f64;
    let per = steps as f64;
    let mut ops: Vec<OpShare> = ts
        .model
        .ops
        .take()
        .into_iter()
        .map(|o| OpShare {
            op: o.op,
            calls_per_step: o.calls as f64 / per,
            secs_per_step: o.secs / per,
            share: o.secs / per / step_secs,
        })
        .collect();
    ops.sort_by(|a, b| b.secs_per_step.total_cmp(&a.secs_per_step));
    let between = step_secs - ops.iter().map(|o| o.secs_per_step).sum::<f64>();
    ops.push(OpShare {
        op: "(between ops)".into(),
        calls_per_step: 0.0,
        secs_per_step: between,
        share: between / step_secs,
    });
    Ok(StepProfile {
        case: case.to_string(),
        steps,
        step_secs,
        ops,
    })
}

/// The profile as printed lines: op, calls per step, ms per step, share.
pub fn lines(p: &StepProfile) -> Vec<String> {
    let mut out = vec![format!(
        "{} — {:.2} ms per profiled step ({} steps; every op timed on its own)",
        p.case,
        p.step_secs * 1e3,
        p.steps
    )];
    for o in &p.ops {
        out.push(format!(
            "  {:<32} {:>6} {:>9.3} ms {:>6.1}%",
            o.op,
            if o.calls_per_step > 0.0 {
                format!("{:.0}×", o.calls_per_step)
            } else {
                String::new()
            },
            o.secs_per_step * 1e3,
            o.share * 100.0
        ));
    }
    out
}
