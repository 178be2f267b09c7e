//! The training loop end to end on the CPU: resumption (including after a hard kill)
//! reproduces the uninterrupted loss curve exactly, evaluation never scores padding, and bad
//! input becomes clear errors.

use asa_lth::backend::cpu::Cpu;
use asa_lth::backend::IGNORE_INDEX;
use asa_lth::data::{synthetic, CorpusSource, EvalWindows, TagsChoice, Vocab};
use asa_lth::model::{Gpt, GptConfig};
use asa_lth::train::{self, RunOptions, TrainConfig, TrainResults};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small() -> TrainConfig {
    TrainConfig {
        corpus: CorpusSource::Synthetic {
            sentences: 400,
            seed: 3,
        },
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        batch: 4,
        seq_len: 32,
        steps: 24,
        warmup: 4,
        eval_every: 8,
        eval_tokens: 512,
        checkpoint_every: 5,
        ..TrainConfig::default()
    }
}

fn opts(dir: &Path, resume: bool, stop_after: Option<u32>) -> RunOptions {
    RunOptions {
        out_dir: dir.to_path_buf(),
        resume,
        progress: false,
        command: "test".into(),
        stop_after,
    }
}

fn losses(r: &TrainResults) -> Vec<(u32, u64)> {
    r.train_curve
        .iter()
        .map(|s| (s.step, s.loss.to_bits()))
        .collect()
}

#[test]
fn resume_reproduces_the_uninterrupted_curve_exactly() {
    let cfg = small();
    let full = train::run(Cpu, &cfg, &opts(&tmpdir("full"), false, None)).unwrap();
    assert!(full.finished && full.train_curve.len() == 24);
    let d = tmpdir("split");
    let part = train::run(Cpu, &cfg, &opts(&d, false, Some(11))).unwrap();
    assert!(!part.finished);
    assert_eq!(part.steps_done, 11);
    let rest = train::run(Cpu, &cfg, &opts(&d, true, None)).unwrap();
    assert_eq!(losses(&rest), losses(&full), "resumed curve differs");
    let ev = |r: &TrainResults| {
        r.eval_curve
            .iter()
            .map(|e| (e.step, e.loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ev(&rest), ev(&full));
    // The results file on disk is the finished one.
    let on_disk: TrainResults =
        serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap();
    assert!(on_disk.finished);
    assert_eq!(on_disk.final_test_perplexity, full.final_test_perplexity);
}

#[test]
fn a_killed_run_loses_at_most_the_steps_since_its_last_checkpoint() {
    let exe = env!("CARGO_BIN_EXE_asa-lth");
    let d = tmpdir("kill");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "train",
            "--sentences",
            "400",
            "--corpus-seed",
            "3",
            "--d-model",
            "32",
            "--batch",
            "4",
            "--seq-len",
            "32",
            "--steps",
            "400",
            "--warmup",
            "4",
            "--eval-every",
            "0",
            "--eval-tokens",
            "512",
            "--checkpoint-every",
            "3",
            "--quiet",
            "--device",
            "cpu",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(d.to_string_lossy().into_owned());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut child = Command::new(exe).args(args(&[])).spawn().unwrap();
    let ck = d.join("checkpoint.safetensors");
    let t0 = std::time::Instant::now();
    while !ck.exists() {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL: no chance to save anything more
    child.wait().unwrap();
    let saved = asa_lth::train::checkpoint::Checkpoint::open(&ck).expect("checkpoint intact");
    let step: u32 = saved.meta_json("step").unwrap();
    assert!(
        step >= 3 && step.is_multiple_of(3),
        "checkpoint at step {step}"
    );
    // Resume for a few more steps in-process and compare with an uninterrupted run.
    let mut cfg = small();
    cfg.steps = 400;
    cfg.eval_every = 0;
    cfg.checkpoint_every = 3;
    let resumed = train::run(Cpu, &cfg, &opts(&d, true, Some(4))).unwrap();
    assert_eq!(resumed.steps_done, step + 4);
    let reference =
        train::run(Cpu, &cfg, &opts(&tmpdir("kill-ref"), false, Some(step + 4))).unwrap();
    assert_eq!(losses(&resumed), losses(&reference));
}

#[test]
fn perplexity_never_scores_padding() {
    let sents = synthetic::generate(60, 5);
    let vocab = Vocab::build(&sents, 1).unwrap();
    let stream = vocab.encode(&sents);
    let cfg = GptConfig {
        n_layer: 1,
        n_head: 2,
        d_model: 16,
        ctx: 24,
        vocab: vocab.len(),
    };
    let mut model = Gpt::new(Cpu, cfg, 1).unwrap();
    // Same windows, batched 1 or 5 at a time (the last batch of 5 is mostly padding rows).
    let plan = |attn_mask| {
        let c = TrainConfig {
            attn_mask,
            seed: 0,
            ..TrainConfig::default()
        };
        train::MaskPlan::new(&c, &vocab).unwrap()
    };
    let dense = plan(train::AttnMaskKind::None);
    let one = train::evaluate(&mut model, &dense, &stream, 1, 24, None).unwrap();
    let five = train::evaluate(&mut model, &dense, &stream, 5, 24, None).unwrap();
    // With the ASA mask too: padding has no tag, so it never becomes a key of a real query.
    let asa = plan(train::AttnMaskKind::Asa);
    let one_asa = train::evaluate(&mut model, &asa, &stream, 1, 24, None).unwrap();
    let five_asa = train::evaluate(&mut model, &asa, &stream, 5, 24, None).unwrap();
    assert_eq!(five_asa.count, one_asa.count);
    assert!((one_asa.sum - five_asa.sum).abs() < 1e-6 * one_asa.sum);
    assert!(
        (one_asa.sum - one.sum).abs() > 1e-3,
        "the ASA mask must change the loss"
    );
    assert_eq!(one.count, stream.len() - 1);
    assert_eq!(five.count, one.count);
    assert!(
        (one.sum - five.sum).abs() < 1e-6 * one.sum,
        "{} vs {}",
        one.sum,
        five.sum
    );
    // Garbage in padded positions changes nothing.
    let batch = EvalWindows::new(&stream, 5, 24).unwrap().last().unwrap();
    let base = model
        .forward(&batch.tokens, &batch.targets, 5, 24, None)
        .unwrap();
    let mut noisy = batch.tokens.clone();
    for (i, y) in batch.targets.iter().enumerate() {
        if *y == IGNORE_INDEX {
            noisy[i] = (i % vocab.len()) as u32;
        }
    }
    let again = model.forward(&noisy, &batch.targets, 5, 24, None).unwrap();
    assert!(base.count < 5 * 24, "fixture must contain padding");
    assert_eq!(base.count, again.count);
    assert_eq!(base.sum, again.sum);
}

#[test]
fn bad_runs_are_clear_errors() {
    // A context longer than the data.
    let mut cfg = small();
    cfg.corpus = CorpusSource::Synthetic {
        sentences: 10,
        seed: 1,
    };
    cfg.seq_len = 4096;
    let e = train::run(Cpu, &cfg, &opts(&tmpdir("long"), false, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than the data"), "{e}");
    // A checkpoint from a different config.
    let d = tmpdir("mismatch");
    let cfg = small();
    train::run(Cpu, &cfg, &opts(&d, false, Some(5))).unwrap();
    let mut other = cfg.clone();
    other.d_model = 64;
    let e = train::run(Cpu, &other, &opts(&d, true, None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("different config") && e.contains("d_model"),
        "{e}"
    );
    // Reusing an output directory without --resume.
    let e = train::run(Cpu, &cfg, &opts(&d, false, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume"), "{e}");
    // A missing corpus directory.
    let mut wt = small();
    wt.corpus = CorpusSource::Wikitext2 {
        dir: "/nonexistent/wt2".into(),
    };
    let e = train::run(Cpu, &wt, &opts(&tmpdir("wt"), false, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/wt2/wiki.train.tokens"), "{e}");
}

#[test]
fn cli_rejects_unknown_values_and_explains_missing_data() {
    let exe = env!("CARGO_BIN_EXE_asa-lth");
    let out = Command::new(exe)
        .args(["train", "--corpus", "penn"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'penn'") && err.contains("synthetic"),
        "{err}"
    );
    let out = Command::new(exe)
        .args(["train", "--corpus", "wikitext2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--data"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = Command::new(exe)
        .args(["train", "--heads", "3", "--out"])
        .arg(tmpdir("cli-heads"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not divide d_model"),
        "{err}"
    );
    // `info` on a machine without a GPU says so in one line.
    let out = Command::new(exe).arg("info").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let gpu: Vec<&str> = text.lines().filter(|l| l.starts_with("gpu:")).collect();
    assert_eq!(gpu.len(), 1, "{text}");
}

#[test]
fn cli_train_then_eval_agree_on_perplexity() {
    let exe = env!("CARGO_BIN_EXE_asa-lth");
    let d = tmpdir("cli-eval");
    let out = Command::new(exe)
        .args([
            "train",
            "--sentences",
            "300",
            "--d-model",
            "32",
            "--batch",
            "4",
            "--seq-len",
            "32",
            "--steps",
            "6",
            "--warmup",
            "2",
            "--eval-every",
            "3",
            "--quiet",
            "--device",
            "cpu",
            "--out",
        ])
        .arg(&d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("unigram baseline"), "{stdout}");
    let r: TrainResults =
        serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap();
    let want = format!("perplexity {:.2}", r.final_valid_perplexity.unwrap());
    let out = Command::new(exe)
        .args(["eval", "--split", "valid", "--run"])
        .arg(&d)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&want),
        "{text} vs {want}"
    );
    // A run directory without a checkpoint is a clear error.
    let out = Command::new(exe)
        .args(["eval", "--run", "/nonexistent/run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/run/checkpoint.safetensors"),
        "{err}"
    );
}

#[test]
fn masked_training_runs_resumes_exactly_and_needs_tags() {
    for kind in [
        train::AttnMaskKind::Asa,
        train::AttnMaskKind::NullRows,
        train::AttnMaskKind::NullDist,
    ] {
        let mut cfg = small();
        cfg.steps = 10;
        cfg.eval_every = 5;
        cfg.attn_mask = kind;
        let full = train::run(
            Cpu,
            &cfg,
            &opts(&tmpdir(&format!("{kind:?}-full")), false, None),
        )
        .unwrap();
        assert!(full.finished && full.final_valid_perplexity.unwrap().is_finite());
        let d = tmpdir(&format!("{kind:?}-split"));
        train::run(Cpu, &cfg, &opts(&d, false, Some(4))).unwrap();
        let rest = train::run(Cpu, &cfg, &opts(&d, true, None)).unwrap();
        assert_eq!(
            losses(&rest),
            losses(&full),
            "{kind:?}: resumed curve differs"
        );
        let mut dense_cfg = cfg.clone();
        dense_cfg.attn_mask = train::AttnMaskKind::None;
        let dense = train::run(
            Cpu,
            &dense_cfg,
            &opts(&tmpdir(&format!("{kind:?}-dense")), false, None),
        )
        .unwrap();
        assert_ne!(
            losses(&dense)[1..],
            losses(&full)[1..],
            "{kind:?} must change training"
        );
    }
    // Text without tags cannot be masked.
    let w = tmpdir("wt-mask");
    for split in ["train", "valid", "test"] {
        let text = " the cat sat on the mat . \n".repeat(200);
        std::fs::write(w.join(format!("wiki.{split}.tokens")), text).unwrap();
    }
    let mut cfg = small();
    cfg.corpus = CorpusSource::Wikitext2 { dir: w };
    cfg.attn_mask = train::AttnMaskKind::Asa;
    // Gold tags (refused for a masked run unless it studies the leak) …
    cfg.tags = TagsChoice::Gold;
    let e = train::run(Cpu, &cfg, &opts(&tmpdir("wt-mask-gold"), false, None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("leak the future") && e.contains("--allow-gold-train"),
        "{e}"
    );
    // … and WikiText has none anyway.
    cfg.allow_gold_train = true;
    let e = train::run(Cpu, &cfg, &opts(&tmpdir("wt-mask-out"), false, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs UPOS tags"), "{e}");
}

#[test]
fn logs_get_plain_progress_lines_and_resuming_a_finished_run_keeps_its_figures() {
    let d = tmpdir("log");
    let args = [
        "train",
        "--steps",
        "12",
        "--batch",
        "2",
        "--seq-len",
        "16",
        "--layers",
        "1",
        "--d-model",
        "16",
        "--eval-every",
        "6",
        "--eval-tokens",
        "128",
        "--sentences",
        "300",
        "--device",
        "cpu",
        "--out",
    ];
    let exe = env!("CARGO_BIN_EXE_asa-lth");
    // stderr is a pipe here, as in a log file or a batch job: no bar, plain lines.
    let out = Command::new(exe).args(args).arg(&d).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("step 12/12") && err.contains("tokens/s") && err.contains("ETA"),
        "{err}"
    );
    assert!(
        err.contains("step      6  train loss") && err.contains("valid loss"),
        "{err}"
    );
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap()
    };
    let before = read();
    assert!(before["tokens_per_sec"].as_f64().unwrap() > 0.0);
    let out = Command::new(exe)
        .args(args)
        .arg(&d)
        .arg("--resume")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = read();
    for k in [
        "tokens_per_sec",
        "train_seconds",
        "final_valid_perplexity",
        "steps_done",
    ] {
        let (x, y) = (before[k].as_f64().unwrap(), after[k].as_f64().unwrap());
        assert!(
            (x - y).abs() <= 1e-9 * x.abs(),
            "{k}: {x} before, {y} after --resume"
        );
    }
}

/// `cross_sentence` reaches the training masks: with `block` no ASA row (nor its row-matched
/// null, which matches the final mask) reaches an earlier sentence; with `allow` every
/// earlier-sentence key is open; `compat` is the default and is left out of the config JSON.
#[test]
fn cross_sentence_policy_shapes_the_training_masks() {
    use asa_lth::mask::asa::{sentence_starts, CrossSentence};
    let sents = synthetic::generate(80, 9);
    let vocab = Vocab::build(&sents, 1).unwrap();
    let stream = vocab.encode(&sents);
    let batch = EvalWindows::new(&stream, 3, 48).unwrap().next().unwrap();
    let (b, t) = (batch.b, batch.t);
    let w = t.div_ceil(32);
    let starts = sentence_starts(&batch.tokens, b, t, vocab.eos());
    let words = |attn_mask, cross_sentence| {
        let c = TrainConfig {
            attn_mask,
            cross_sentence,
            tags: asa_lth::data::TagsChoice::Gold,
            allow_gold_train: true,
            seed: 4,
            ..TrainConfig::default()
        };
        let plan = train::MaskPlan::new(&c, &vocab).unwrap();
        plan.words(&batch, 1).unwrap().expect("a mask")
    };
    // Allowed keys of (b, i) in earlier sentences, and in all.
    let cross = |m: &[u32], bi: usize, i: usize| {
        (0..starts[bi * t + i])
            .filter(|&j| m[(bi * t + i) * w + j / 32] >> (j % 32) & 1 == 1)
            .count()
    };
    let within = |m: &[u32], bi: usize, i: usize| {
        (starts[bi * t + i]..i)
            .filter(|&j| m[(bi * t + i) * w + j / 32] >> (j % 32) & 1 == 1)
            .count()
    };
    let asa_block = words(train::AttnMaskKind::Asa, CrossSentence::Block);
    let mut total_cross = 0;
    let kinds = [
        train::AttnMaskKind::Asa,
        train::AttnMaskKind::NullRows,
        train::AttnMaskKind::NullDist,
    ];
    for kind in kinds {
        let block = words(kind, CrossSentence::Block);
        let compat = words(kind, CrossSentence::Compat);
        let allow = words(kind, CrossSentence::Allow);
        for bi in 0..b {
            for i in 0..t {
                if batch.targets[bi * t + i] == IGNORE_INDEX {
                    continue;
                }
                assert_eq!(cross(&block, bi, i), 0, "{kind:?} block, row {i}");
                assert_eq!(
                    within(&block, bi, i),
                    within(&asa_block, bi, i),
                    "{kind:?} block: the null keeps the ASA row's count, row {i}"
                );
                assert_eq!(
                    cross(&allow, bi, i),
                    starts[bi * t + i],
                    "{kind:?} allow, row {i}"
                );
                if kind == train::AttnMaskKind::Asa {
                    total_cross += cross(&compat, bi, i);
                }
            }
        }
    }
    assert!(
        total_cross > 0,
        "the tag rule must allow some earlier-sentence keys"
    );
    let mut c = TrainConfig::default();
    let json = serde_json::to_string(&c).unwrap();
    assert!(!json.contains("cross_sentence"), "{json}");
    c.cross_sentence = CrossSentence::Block;
    let json = serde_json::to_string(&c).unwrap();
    assert!(json.contains(r#""cross_sentence":"block""#), "{json}");
    let back: TrainConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.cross_sentence, CrossSentence::Block);
    assert!(c.tags_label().contains("cross-sentence keys block"));
}

#[test]
fn an_extension_carries_a_finished_run_on_at_the_floor_and_leaves_its_checkpoint() {
    let cfg = small();
    let dir = tmpdir("extend");
    let r = train::run(Cpu, &cfg, &opts(&dir, false, None)).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    let x = train::extend(Cpu, &cfg, &dir, 16, false).unwrap();
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        before,
        "the budget's checkpoint is kept"
    );
    assert_eq!(x.steps, 16);
    let floor = cfg.lr * cfg.min_lr_frac;
    assert!((x.lr - floor).abs() <= 1e-6 * floor, "lr {}", x.lr);
    // The run's cadence (every 8) past the budget of 24, on the run's subset.
    let at: Vec<(u32, usize)> = x.eval_curve.iter().map(|e| (e.step, e.tokens)).collect();
    let subset = r
        .eval_curve
        .iter()
        .find(|e| e.split == "valid")
        .unwrap()
        .tokens;
    assert_eq!(at, [(32, subset), (40, subset)]);
    // The trained model is carried on (not restarted), and the extension is deterministic.
    let last = r
        .eval_curve
        .iter()
        .rfind(|e| e.split == "valid")
        .unwrap()
        .perplexity;
    let early = r.eval_curve[0].perplexity;
    let first = x.eval_curve[0].perplexity;
    assert!(
        first < 1.2 * last && first < early,
        "extension starts at {first}, the run was at {early} by step 8 and ended at {last}"
    );
    assert_eq!(train::extend(Cpu, &cfg, &dir, 16, false).unwrap(), x);
    // Only a finished run of the same config is extended.
    let part = tmpdir("extend-part");
    train::run(Cpu, &cfg, &opts(&part, false, Some(10))).unwrap();
    let e = train::extend(Cpu, &cfg, &part, 8, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stopped at step 10 of 24"), "{e}");
    let mut other = cfg.clone();
    other.lr *= 2.0;
    let e = train::extend(Cpu, &other, &dir, 8, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("different config") && e.contains("lr"), "{e}");
}
