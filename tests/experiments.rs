//! The experiments' cells and report on a tiny configuration: alignment on a model with known
//! (uniform) attention, cells that are never recomputed once written (also after an
//! interruption and across shards), and a report with every section.

mod common;

use asa_lth::backend::cpu::Cpu;
use asa_lth::data::{CorpusSource, Vocab};
use asa_lth::experiments::alignment::{self, AlignOptions};
use asa_lth::experiments::cells::{CellKey, Shard};
use asa_lth::experiments::{self, report, ReproduceConfig, Scale, TrainCell};
use asa_lth::ling::compat::{CompatMatrix, CompatSet};
use asa_lth::mask::asa::AsaMaskBuilder;
use asa_lth::model::{Gpt, GptConfig};
use std::path::Path;
use std::time::SystemTime;

fn tiny() -> ReproduceConfig {
    let mut c = ReproduceConfig::preset(
        Scale::Small,
        Some(CorpusSource::Synthetic {
            sentences: 300,
            seed: 5,
        }),
    );
    c.seeds = vec![1, 2];
    c.train.n_layer = 1;
    c.train.d_model = 32;
    c.train.batch = 4;
    c.train.seq_len = 32;
    c.train.steps = 16;
    c.train.warmup = 2;
    c.train.eval_every = 8;
    c.train.eval_tokens = 256;
    c.train.checkpoint_every = 8;
    c.align.batch = 4;
    c.align.seq_len = 32;
    c.align.max_tokens = 512;
    c.bootstrap = 200;
    c.ffn24.finetune_steps = 4;
    c.ffn24.repeats = 1;
    c.ffn24.timed_tokens = 256;
    c.e5.levels = 1;
    c.e5.rewind_step = 4;
    c.e3.levels = 2;
    c.e3.rewind_step = 4;
    c
}

fn cpu() -> asa_lth::Result<Cpu> {
    Ok(Cpu)
}

fn mtimes(dir: &Path, cfg: &ReproduceConfig) -> Vec<SystemTime> {
    cfg.cells()
        .iter()
        .map(|k| {
            std::fs::metadata(dir.join("cells").join(format!("{}.json", k.id())))
                .and_then(|m| m.modified())
                .expect("cell file")
        })
        .collect()
}

#[test]
fn uniform_attention_puts_the_same_mass_in_every_density_matched_mask() {
    // Zero query weights and biases make every score 0: each row attends uniformly to its
    // keys, so the mass inside a mask is its share of the keys, which the nulls match exactly.
    let corpus = CorpusSource::Synthetic {
        sentences: 1000,
        seed: 9,
    }
    .load()
    .unwrap();
    let vocab = Vocab::build(&corpus.train, 1).unwrap();
    let stream = vocab.encode(&corpus.valid);
    let cfg = GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        ctx: 32,
        vocab: vocab.len(),
    };
    let mut model = Gpt::new(Cpu, cfg, 3).unwrap();
    for l in 0..2 {
        for p in ["wq", "bq"] {
            let name = format!("blocks.{l}.attn.{p}");
            let n = model.param(&name).unwrap().len();
            model.set_param(&name, &vec![0.0; n]).unwrap();
        }
    }
    let builder = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::default_asa()));
    let opts = AlignOptions {
        batch: 3,
        seq_len: 32,
        max_tokens: 400,
        seed: 11,
    };
    // The text's own (gold) tags serve as both the run's tags and the oracle here.
    let a = alignment::measure(&mut model, &builder, None, &stream, Some(&stream), &opts).unwrap();
    assert_eq!(a.heads.len(), 4);
    assert!(a.tokens >= 400);
    assert!(a.gold_tags);
    for h in &a.heads {
        let u = h.total();
        let t = u.causal();
        assert!(t.rows > 100, "rows {}", t.rows);
        assert!(h.units.len() > 10, "sentences {}", h.units.len());
        assert_eq!(
            &u.rules[2], t,
            "gold rule on the same tags = the causal rule"
        );
        assert!(
            u.rules[1].rows > 100 && u.rules[1] != *t,
            "the target rule differs"
        );
        // Uniform over the sentence's keys: the row-matched null's expected mass equals the
        // ASA mask's exactly, the distance-matched null's nearly (it matches per distance,
        // not per row).
        assert!(
            (t.mass[1] - t.mass[0]).abs() < 1e-6 * t.rows as f64,
            "mass {:?}",
            t.mass
        );
        assert!(
            (t.mass[2] - t.mass[0]).abs() < 0.05 * t.rows as f64,
            "mass {:?}",
            t.mass
        );
        // Uniform over keys: the off-diagonal share inside the ASA mask is its density.
        assert!((t.offdiag[0] - t.density).abs() < 1e-6 * t.rows as f64);
        // The mask is neither empty nor full on this text, so the measure can tell masks apart.
        let share = t.mass[0] / t.rows as f64;
        assert!(share > 0.05 && share < 0.999, "{share}");
        // The window frame: uniform attention over every earlier key, so the attention on
        // earlier sentences is their share of keys plus the diagonal's dilution.
        assert!(u.window_rows >= t.rows);
        assert!(u.cross_mass > 0.0 && u.cross_mass < u.cross_keys, "{u:?}");
    }
}

#[test]
fn a_trained_model_attends_inside_the_asa_mask_more_than_uniform() {
    // Sanity of direction on the synthetic grammar (whose dependencies follow the ASA
    // compatibilities): after training, ASA mass exceeds the row-matched null.
    let dir = common::tmpdir("experiments", "trained");
    let mut cfg = tiny();
    cfg.seeds = vec![4];
    cfg.train.steps = 60;
    experiments::reproduce(cpu, &cfg, &dir, Shard::ALL, &["e1".into()], false).unwrap();
    let s = report::write_report(&dir, &dir.join("report"), "test").unwrap();
    let all = &s.e1[0];
    assert!(
        all.mass[0].estimate > all.mass[1].estimate,
        "{:?}",
        all.mass
    );
    assert!(all
        .mass
        .iter()
        .all(|e| e.estimate > 0.0 && e.estimate < 1.0));
}

#[test]
fn reproduce_writes_each_cell_once_and_resumes_without_recomputing() {
    let dir = common::tmpdir("experiments", "resume");
    let cfg = tiny();
    // An interrupted run: only shard 0 of 2 finished.
    let first =
        experiments::reproduce(cpu, &cfg, &dir, "0/2".parse().unwrap(), &[], false).unwrap();
    let n = cfg.cells().len();
    assert_eq!(
        n, 18,
        "per seed: dense, asa, null-rows, null-compat, e3, e4 zero/asa, e5 lth-ffn/hybrid"
    );
    assert_eq!(first.computed.len(), 9);
    assert!(first.skipped.is_empty());
    let shard0 = mtimes_of(&dir, &first.computed);
    // The full run computes only the rest.
    let second = experiments::reproduce(cpu, &cfg, &dir, Shard::ALL, &[], false).unwrap();
    assert_eq!(second.computed.len(), n - 9);
    // The report trains the two nulls beside ASA and names them in E2.
    let rep = report::write_report(&dir, &dir.join("report"), "test").unwrap();
    let e2 = rep.e2.as_ref().expect("E2");
    let arms: Vec<&str> = e2.nulls.iter().map(|n| n.arm.as_str()).collect();
    assert_eq!(arms, ["null-compat", "null-rows"]);
    let md = std::fs::read_to_string(dir.join("report").join("report.md")).unwrap();
    assert!(
        md.contains("| null-compat |") && md.contains("ASA − null-rows"),
        "{md}"
    );
    // Not the seed's corpus, tokenizer or scale: every verdict is marked direction only.
    let claims = report::claims_table(&rep);
    let rows: Vec<&str> = claims.lines().filter(|l| l.starts_with("| E")).collect();
    assert!(rows.len() >= 4, "{claims}");
    assert!(
        rows.iter()
            .all(|l| l.contains("direction only (corpus synthetic")),
        "{claims}"
    );
    assert_eq!(second.skipped, first.computed);
    assert_eq!(
        mtimes_of(&dir, &first.computed),
        shard0,
        "finished cells rewritten"
    );
    // Nothing left: a third run recomputes nothing and rewrites nothing.
    let before = mtimes(&dir, &cfg);
    let third = experiments::reproduce(cpu, &cfg, &dir, Shard::ALL, &[], false).unwrap();
    assert!(third.computed.is_empty());
    assert_eq!(mtimes(&dir, &cfg), before);

    // A different configuration in the same directory is refused, naming the file.
    let mut other = cfg.clone();
    other.train.steps += 1;
    let err = experiments::reproduce(cpu, &other, &dir, Shard::ALL, &[], false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("another"),
        "{err}"
    );

    // The report: every section, the claims table, plots, and no missing cells.
    let out = dir.join("report");
    let s = report::write_report(&dir, &out, "asa-lth reproduce --test").unwrap();
    assert!(s.cells_missing.is_empty());
    assert_eq!(s.e1.len(), 1 + cfg.train.n_layer * cfg.train.n_head);
    let e2 = s.e2.as_ref().expect("E2 summary");
    assert_eq!(e2.steps_to_dense.len(), 2);
    // Steps to target: the treated arms train on to 2× the budget at the floor learning
    // rate, the dense reference does not; the budget of a censored seed is the extension's.
    let store = experiments::open_run(&dir, &cfg).unwrap();
    let steps = cfg.train.steps;
    for seed in [1, 2] {
        for arm in ["asa", "null-rows", "null-compat"] {
            let c: TrainCell = store
                .load::<TrainCell>(&CellKey::new("train", arm, seed))
                .unwrap()
                .unwrap()
                .result;
            let x = c.extension.expect("treated arms are extended");
            assert_eq!(x.steps, steps, "{arm}");
            let floor = cfg.train.lr * cfg.train.min_lr_frac;
            assert!((x.lr - floor).abs() <= 1e-6 * floor, "{arm}: lr {}", x.lr);
            let at: Vec<u32> = x.eval_curve.iter().map(|e| e.step).collect();
            assert_eq!(at, [24, 32], "{arm}: evaluations past the budget");
            // Final perplexities stay those at the budget.
            assert_eq!(c.results.steps_done, steps);
        }
        let d: TrainCell = store
            .load::<TrainCell>(&CellKey::new("train", "dense", seed))
            .unwrap()
            .unwrap()
            .result;
        assert!(d.extension.is_none());
    }
    for x in &e2.steps_to_dense {
        assert_eq!(x.budget, 2 * steps);
    }
    // E5: the fine-tune's dense control, forward-only interleaved rates, and the IMP
    // controls of both pruned arms.
    for a in &s.e5 {
        let c = a.dense_extra_valid_ppl.as_ref().expect("the control ran");
        assert!(c.estimate.is_finite() && c.estimate > 1.0, "{}", a.arm);
        assert!(a.finetuned_minus_dense_extra.is_some() && a.interleaved);
        assert!(a.speedup.estimate > 0.0 && a.speedup.estimate.is_finite());
    }
    let h = s.e5_hybrid.as_ref().expect("E5 hybrid");
    let rows: Vec<&str> = h.valid_ppl.iter().map(|(a, _)| a.as_str()).collect();
    for arm in ["lth-ffn", "hybrid"] {
        for c in ["re-init control", "shuffled mask control"] {
            assert!(rows.contains(&format!("{arm} ({c})").as_str()), "{rows:?}");
        }
    }
    assert!(md.contains("dense + the same extra steps") && md.contains("(re-init control)"));
    assert!(e2.dense_valid_ppl.estimate.is_finite() && e2.asa_valid_ppl.estimate.is_finite());
    assert!(e2.dense_valid_ppl.lo <= e2.dense_valid_ppl.estimate);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let e4 = s.e4.as_ref().expect("E4 summary");
    assert_eq!(e4.steps_to_zero.len(), 2);
    assert!(e4.zero_valid_ppl.estimate.is_finite() && e4.asa_valid_ppl.estimate.is_finite());
    assert_ne!(e4.zero_valid_ppl.estimate, e4.asa_valid_ppl.estimate);
    let e4 = s.e4.as_ref().expect("E4 summary");
    assert_eq!(e4.steps_to_zero.len(), 2);
    assert!(e4.zero_valid_ppl.estimate.is_finite() && e4.asa_valid_ppl.estimate.is_finite());
    assert_ne!(e4.zero_valid_ppl.estimate, e4.asa_valid_ppl.estimate);
    assert_eq!(s.e5.len(), 2);
    let h = s.e5_hybrid.as_ref().expect("E5 hybrid");
    assert!((h.ffn_remaining - 0.8).abs() < 0.01, "{}", h.ffn_remaining);
    let arms: Vec<&str> = h.valid_ppl.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        arms,
        [
            "dense",
            "asa",
            "lth-ffn",
            "lth-ffn (re-init control)",
            "lth-ffn (shuffled mask control)",
            "hybrid",
            "hybrid (re-init control)",
            "hybrid (shuffled mask control)"
        ]
    );
    assert!(h
        .valid_ppl
        .iter()
        .all(|(_, e)| e.estimate.is_finite() && e.n == 2));
    for a in &s.e5 {
        // The compressed path computes what the masked dense path computes.
        let (f, c) = (
            a.finetuned_valid_ppl.estimate,
            a.compressed_valid_ppl.estimate,
        );
        assert!((f - c).abs() < 1e-3 * f, "{}: {f} vs {c}", a.arm);
        assert!(a.speedup.estimate > 0.0 && (a.ffn_bytes_ratio - 0.53125).abs() < 1e-9);
    }
    // Intervals stay in their quantity's range: shares in [0, 1], rates and speed-ups above 0;
    // the excess (a difference of shares) is finite.
    for h in &s.e1 {
        for e in h.mass.iter().chain(&h.offdiag).chain(&h.topk) {
            assert!(
                0.0 <= e.lo && e.lo <= e.estimate && e.estimate <= e.hi && e.hi <= 1.0,
                "{e:?}"
            );
        }
        assert!(
            h.excess.estimate.is_finite() && h.excess.lo <= h.excess.hi,
            "{:?}",
            h.excess
        );
    }
    for a in &s.e5 {
        for e in [
            &a.speedup,
            &a.dense_tokens_per_sec,
            &a.compressed_tokens_per_sec,
        ] {
            assert!(
                e.lo > 0.0 && e.lo <= e.estimate && e.estimate <= e.hi,
                "{e:?}"
            );
        }
    }
    assert_eq!(s.e3.len(), 1);
    let e3 = &s.e3[0];
    assert_eq!(e3.levels.len(), 3);
    assert!(
        (e3.levels[2].remaining - 0.64).abs() < 0.01,
        "{}",
        e3.levels[2].remaining
    );
    assert_eq!(e3.levels[1].valid_ppl.len(), 3, "ticket and both controls");
    assert_eq!(
        e3.head_points.len(),
        2 * cfg.train.n_layer * cfg.train.n_head
    );
    for needle in [
        "## Claims",
        "## E1",
        "## E2",
        "## E3 (attention)",
        "## E4",
        "## E4",
        "## E5: hybrid",
        "## E5: FFN projected",
        "seeds: [1, 2]",
        "asa-lth reproduce --test",
    ] {
        assert!(md.contains(needle), "report lacks {needle:?}:\n{md}");
    }
    for f in [
        "summary.json",
        "e1_mass_per_head.svg",
        "e2_valid_loss.svg",
        "e3_attention_mass.svg",
        "e3_attention_ppl.svg",
        "e3_attention_heads.svg",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

fn mtimes_of(dir: &Path, keys: &[CellKey]) -> Vec<SystemTime> {
    keys.iter()
        .map(|k| {
            std::fs::metadata(dir.join("cells").join(format!("{}.json", k.id())))
                .and_then(|m| m.modified())
                .unwrap()
        })
        .collect()
}

#[test]
fn shards_partition_the_cells_and_bad_specs_are_refused() {
    let cfg = tiny();
    let n = cfg.cells().len();
    for count in 1..=5 {
        let mut owners = vec![0; n];
        for index in 0..count {
            let s: Shard = format!("{index}/{count}").parse().unwrap();
            (0..n).filter(|&p| s.owns(p)).for_each(|p| owners[p] += 1);
        }
        assert!(owners.iter().all(|&o| o == 1), "{count}: {owners:?}");
    }
    for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
    let mut c = tiny();
    c.seeds = vec![1, 1];
    assert!(c.validate().unwrap_err().to_string().contains("repeated"));
    let dir = common::tmpdir("experiments", "only");
    let err = experiments::reproduce(cpu, &tiny(), &dir, Shard::ALL, &["e9".into()], false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown experiment `e9`"), "{err}");
}

#[test]
fn a_killed_reproduce_recomputes_no_finished_cell() {
    let exe = env!("CARGO_BIN_EXE_asa-lth");
    let dir = common::tmpdir("experiments", "kill");
    let cfg = tiny();
    let cfg_path = dir.join("tiny.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = dir.join("run");
    let args = |extra: &[&str]| {
        let mut c = std::process::Command::new(exe);
        c.args(["reproduce", "--device", "cpu", "--quiet", "--config"])
            .arg(&cfg_path)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut child = args(&[]).spawn().unwrap();
    // Kill it (SIGKILL) as soon as the first cell is on disk, mid-way through the second.
    let first = out
        .join("cells")
        .join(format!("{}.json", cfg.cells()[0].id()));
    let t0 = std::time::Instant::now();
    while !first.is_file() {
        assert!(t0.elapsed().as_secs() < 120, "first cell never appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done: Vec<CellKey> = cfg
        .cells()
        .into_iter()
        .filter(|k| out.join("cells").join(format!("{}.json", k.id())).is_file())
        .collect();
    assert!(!done.is_empty() && done.len() < cfg.cells().len());
    let before = mtimes_of(&out, &done);
    let o = args(&[]).output().unwrap();
    assert!(o.status.success());
    let stdout = String::from_utf8_lossy(&o.stdout);
    let expect = format!(
        "{} cells computed, {} already done",
        cfg.cells().len() - done.len(),
        done.len()
    );
    assert!(stdout.contains(&expect), "{stdout}");
    assert_eq!(
        mtimes_of(&out, &done),
        before,
        "a finished cell was rewritten"
    );
    assert!(out.join("report").join("report.md").is_file());
    // A report rebuilt later quotes the command that reproduces the cells, not its own.
    let o = std::process::Command::new(exe)
        .arg("report")
        .arg("--run")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(out.join("report").join("report.md")).unwrap();
    let want = format!(
        "- reproduce: `asa-lth reproduce --config {} --out {}`",
        out.join("config.json").display(),
        out.display()
    );
    assert!(md.contains(&want), "{want} not in the header of:\n{md}");
}

#[test]
fn one_experiment_runs_only_its_cells_and_paper_scale_prunes_both_groups() {
    let exe = env!("CARGO_BIN_EXE_asa-lth");
    let dir = common::tmpdir("experiments", "one");
    let cfg = tiny();
    let cfg_path = dir.join("tiny.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let run = |name: &str| {
        std::process::Command::new(exe)
            .args(["experiment", name, "--device", "cpu", "--quiet", "--config"])
            .arg(&cfg_path)
            .arg("--out")
            .arg(dir.join("run"))
            .output()
            .unwrap()
    };
    let o = run("e4");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("4 cells computed, 0 already done"),
        "{stdout}"
    );
    let bad = run("e9");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown experiment `e9`"));

    let paper = ReproduceConfig::preset(Scale::Paper, None);
    let arms: Vec<String> = paper
        .cells()
        .into_iter()
        .filter(|k| k.exp == "e3" && k.seed == 1)
        .map(|k| k.arm)
        .collect();
    assert_eq!(arms, ["attention", "all-linear"]);
}

#[test]
fn concurrent_unsharded_processes_compute_each_cell_once() {
    let d = std::env::temp_dir().join(format!("asa-lth-exp-{}-locks", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let mut cfg = tiny();
    cfg.seeds = vec![1, 2, 3];
    let cfg_path = d.join("config-in.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = d.join("run");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_asa-lth"))
            .args(["reproduce", "--only", "e2", "--device", "cpu", "--config"])
            .arg(&cfg_path)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut computed = 0;
    for o in [&a, &b] {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // "<out>: N cells computed, M already done (shard 0/1)"
        let line = text.lines().find(|l| l.contains("cells computed")).unwrap();
        let n: usize = line
            .split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        computed += n;
    }
    // e2's cells: dense, asa and the two nulls for each of 3 seeds — each computed by exactly
    // one process.
    assert_eq!(computed, 12, "cells computed twice or not at all");
    let store = experiments::open_run(&out, &cfg).unwrap();
    assert_eq!(store.finished().unwrap().len(), 12);
    // No lock is left behind.
    let leftover: Vec<_> = walk(&out.join("locks"));
    assert!(leftover.is_empty(), "{leftover:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p);
            }
        }
    }
    v
}

#[test]
fn a_dead_owners_lock_is_taken_over_and_a_live_one_is_respected() {
    let d = std::env::temp_dir().join(format!("asa-lth-exp-{}-stale", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let cfg = tiny();
    let store = experiments::open_run(&d, &cfg).unwrap();
    let key = CellKey::new("train", "dense", 1);
    // A lock held by this (live) process cannot be taken twice.
    let held = store.try_lock(&key).unwrap().unwrap();
    let again = store.try_lock(&key).unwrap();
    assert!(again.is_err(), "a live lock was taken over");
    drop(held);
    assert!(
        !store.lock_path(&key).exists(),
        "the lock file outlived its guard"
    );
    // A lock whose owner (on this host) has exited is stale: taken over at once.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    std::fs::create_dir_all(store.lock_path(&key).parent().unwrap()).unwrap();
    std::fs::write(
        store.lock_path(&key),
        format!(
            r#"{{"host":"{}","pid":{pid},"started_unix":0}}"#,
            host.trim()
        ),
    )
    .unwrap();
    let taken = store.try_lock(&key).unwrap();
    assert!(taken.is_ok(), "a dead owner's lock was respected");
}

#[test]
fn cells_from_another_thread_count_are_not_mixed_in() {
    let dir = common::tmpdir("experiments", "threads");
    let mut cfg = tiny();
    cfg.seeds = vec![1];
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let only = ["e2".to_string()];
    let one = pool(1)
        .install(|| experiments::reproduce(cpu, &cfg, &dir, Shard::ALL, &only, false))
        .unwrap();
    assert_eq!(one.computed.len(), 4, "dense, asa and the two nulls");
    // Same thread count: nothing to do.
    let again = pool(1)
        .install(|| experiments::reproduce(cpu, &cfg, &dir, Shard::ALL, &only, false))
        .unwrap();
    assert_eq!(again.skipped.len(), 4);
    // Two threads would mix bits: refused, naming both.
    let e = pool(2)
        .install(|| experiments::reproduce(cpu, &cfg, &dir, Shard::ALL, &only, false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cpu (1 threads)")
            && e.contains("cpu (2 threads)")
            && e.contains("RAYON_NUM_THREADS"),
        "{e}"
    );
    // The card, not its ordinal, decides a CUDA result.
    assert_eq!(
        experiments::result_class("cuda:0 NVIDIA H100 (sm_90)"),
        experiments::result_class("cuda:3 NVIDIA H100 (sm_90)")
    );
}

/// The structural null arm's matrix: random, fixed per seed, at the ASA matrix's expected
/// density under the training text's causal tags (within one tag pair), applied with the
/// ASA mask kind to the same tags; the row-matched arm trains with the random mask.
#[test]
fn the_null_arms_train_with_a_density_matched_random_matrix_and_the_row_null() {
    use asa_lth::ling::compat::{CompatMatrix, NTAGS};
    use asa_lth::ling::compat_choice::CompatChoice;
    use asa_lth::train::{AttnMaskKind, RunData};
    let cfg = tiny();
    let rows = cfg.train_config("null-rows", 1).unwrap();
    assert_eq!(rows.attn_mask, AttnMaskKind::NullRows);
    assert_eq!(rows.compat, cfg.train.compat);
    let a = cfg.train_config("null-compat", 1).unwrap();
    let b = cfg.train_config("null-compat", 2).unwrap();
    assert_eq!(a.attn_mask, AttnMaskKind::Asa);
    assert_eq!(
        a,
        cfg.train_config("null-compat", 1).unwrap(),
        "fixed per seed"
    );
    let (CompatChoice::Random { rows: ra, .. }, CompatChoice::Random { rows: rb, .. }) =
        (&a.compat, &b.compat)
    else {
        panic!(
            "expected random matrices, got {} and {}",
            a.compat, b.compat
        );
    };
    assert_ne!(ra, rb, "each seed draws its own");
    let data = RunData::load(&cfg.train).unwrap();
    let mut freq = [0f64; NTAGS];
    for u in data.train.upos.iter().flatten() {
        freq[*u as usize] += 1.0;
    }
    let total: f64 = freq.iter().sum();
    freq.iter_mut().for_each(|f| *f /= total);
    let asa = CompatMatrix::default_asa().expected_density(&freq);
    let max_pair = (0..NTAGS)
        .flat_map(|x| (0..NTAGS).map(move |y| (x, y)))
        .filter(|(x, y)| x != y)
        .map(|(x, y)| 2.0 * freq[x] * freq[y])
        .fold(0.0, f64::max);
    let m = a.compat.load().unwrap().0;
    let d = m.matrices()[0].expected_density(&freq);
    assert!(
        (d - asa).abs() <= max_pair / 2.0 + 1e-12,
        "{d} vs ASA {asa}"
    );
    assert_ne!(m.matrices()[0].rows(), CompatMatrix::default_asa().rows());
    let e = cfg.train_config("null-other", 1).unwrap_err().to_string();
    assert!(e.contains("null-other"), "{e}");
}
