//! Bad input on the command line (issue 19): every case exits non-zero, without a panic, and
//! its message names the problem — the file (and line), the flag, the tensor or the shape. The
//! table runs the real binary under a virtual-memory cap, so a case that tried to allocate
//! what it cannot have would die instead of taking the machine down, and each must answer
//! within seconds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn manifest() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
}

/// Run the binary with `args` in `cwd` under an 8 GiB address-space cap; (exit code, stderr).
fn run(cwd: &Path, args: &[String]) -> (i32, String, Duration) {
    let t0 = Instant::now();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 8388608; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_asa-lth"))
        .args(args)
        .current_dir(cwd);
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t0.elapsed(),
    )
}

/// Files the cases point at.
struct Fixtures {
    dir: PathBuf,
}

impl Fixtures {
    fn new() -> Fixtures {
        let dir = tmpdir("fx");
        let w = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        let ok_row =
            "1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tdog\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n\n";
        for split in ["train", "dev", "test"] {
            w(
                &format!("tb-bad-upos/x-ud-{split}.conllu"),
                "1\tThe\tthe\tDETERMINER\t_\t_\t0\troot\t_\t_\n\n",
            );
            w(
                &format!("tb-bad-cols/x-ud-{split}.conllu"),
                &format!("{ok_row}1\tThe\tthe\n\n"),
            );
            w(
                &format!("tb-bad-id/x-ud-{split}.conllu"),
                "1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n3\tdog\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
            );
            w(
                &format!("tb-bad-head/x-ud-{split}.conllu"),
                "1\tThe\tthe\tDET\t_\t_\t9\tdet\t_\t_\n2\tdog\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
            );
            w(
                &format!("tb-nohead/x-ud-{split}.conllu"),
                "1\tThe\tthe\tDET\t_\t_\t_\t_\t_\t_\n\n",
            );
        }
        w("tb-notrain/x-ud-dev.conllu", ok_row);
        for split in ["train", "dev", "test"] {
            let mut bytes = ok_row.as_bytes().to_vec();
            bytes.extend(b"1\tcaf\xe9\tcafe\tNOUN\t_\t_\t0\troot\t_\t_\n\n");
            let p = dir.join(format!("tb-latin1/x-ud-{split}.conllu"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        w("wt-empty/wiki.train.tokens", "\n \n");
        w("wt-empty/wiki.valid.tokens", " a b \n");
        w("wt-empty/wiki.test.tokens", " a b \n");
        std::fs::create_dir_all(dir.join("wt-missing")).unwrap();
        w(
            "compat-unknown-tag.json",
            r#"{"format":1,"allowed":{"NOUN":["DETERMINER"]}}"#,
        );
        w("compat-format9.json", r#"{"format":9,"allowed":{}}"#);
        w("compat-not-json.json", "allowed: NOUN");
        w(
            "tagger-foreign.tagger",
            "PK\u{3}\u{4} this is a zip file, not a tagger",
        );
        let model = std::fs::read(manifest().join("src/ling/tagger/models/en_ewt.tagger")).unwrap();
        std::fs::write(
            dir.join("tagger-truncated.tagger"),
            &model[..model.len() / 3],
        )
        .unwrap();
        w("tagger-bad.json", r#"{"format":1,"kind":"tractor"}"#);
        w("text.txt", "The dog runs .\n");
        // A reproduce config with a misspelt key.
        let out = Command::new(env!("CARGO_BIN_EXE_asa-lth"))
            .args(["reproduce", "--write-config"])
            .arg(dir.join("good-config.json"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let good = std::fs::read_to_string(dir.join("good-config.json")).unwrap();
        w(
            "typo-config.json",
            &good.replacen("\"steps\"", "\"stepz\"", 1),
        );
        w("broken-config.json", &good[..good.len() / 2]);
        Fixtures { dir }
    }
}

#[test]
fn bad_input_table() {
    let f = Fixtures::new();
    let fx = |s: &str| s.replace("FX/", &format!("{}/", f.dir.display()));
    // (arguments, substrings the message must contain)
    let cases: Vec<(&str, Vec<&str>)> = vec![
        // The corpus and its files.
        ("train --corpus penn", vec!["penn", "--corpus"]),
        ("train --corpus wikitext2", vec!["--data"]),
        (
            "train --corpus conllu --data /nonexistent/tb",
            vec!["/nonexistent/tb"],
        ),
        (
            "train --corpus wikitext2 --data FX/wt-missing",
            vec!["wiki.train.tokens"],
        ),
        (
            "train --corpus wikitext2 --data FX/wt-empty",
            vec!["wiki.train.tokens", "no text"],
        ),
        (
            "train --corpus conllu --data FX/tb-bad-upos",
            vec!["x-ud-train.conllu:1", "DETERMINER"],
        ),
        (
            "train --corpus conllu --data FX/tb-bad-cols",
            vec!["x-ud-train.conllu:4", "10 tab-separated columns"],
        ),
        (
            "train --corpus conllu --data FX/tb-bad-id",
            vec!["x-ud-train.conllu:2", "out of sequence"],
        ),
        (
            "train --corpus conllu --data FX/tb-bad-head",
            vec!["x-ud-train.conllu", "HEAD of 9"],
        ),
        (
            "train --corpus conllu --data FX/tb-latin1",
            vec!["x-ud-train.conllu:4", "UTF-8", "column 6"],
        ),
        (
            "train --data FX/wt-missing",
            vec!["--data", "does not apply", "synthetic"],
        ),
        (
            "train --corpus conllu --data FX/tb-notrain --sentences 5",
            vec!["--sentences", "synthetic only"],
        ),
        (
            "reproduce --data FX/wt-missing",
            vec!["--data", "does not apply"],
        ),
        (
            "train --corpus conllu --data FX/tb-notrain",
            vec!["-ud-train.conllu"],
        ),
        // Tags, matrices, refinements.
        (
            "train --tags foo",
            vec!["--tags", "builtin, rules, gold or model:PATH"],
        ),
        ("train --tags model:", vec!["--tags", "model:PATH"]),
        (
            "train --attn-mask asa --tags model:/nope/tagger.json",
            vec!["/nope/tagger.json"],
        ),
        (
            "train --attn-mask asa --tags model:FX/tagger-truncated.tagger",
            vec!["tagger-truncated.tagger"],
        ),
        (
            "train --attn-mask asa --tags model:FX/tagger-foreign.tagger",
            vec!["tagger-foreign.tagger"],
        ),
        (
            "train --attn-mask asa --tags model:FX/tagger-bad.json",
            vec!["tagger-bad.json", "tractor"],
        ),
        (
            "train --attn-mask asa --tags gold",
            vec!["--tags gold", "leak the future", "--allow-gold-train"],
        ),
        (
            "train --compat derived:x@0",
            vec!["--compat", "outside (0, 1]"],
        ),
        (
            "train --compat derived:x@1.01",
            vec!["--compat", "outside (0, 1]"],
        ),
        (
            "train --compat derived:x@lots",
            vec!["--compat", "not a number"],
        ),
        (
            "train --attn-mask asa --compat derived:/nope/tb",
            vec!["/nope/tb"],
        ),
        (
            "train --attn-mask asa --compat derived:FX/tb-nohead/x-ud-train.conllu",
            vec!["x-ud-train.conllu", "HEAD"],
        ),
        (
            "train --attn-mask asa --compat FX/compat-unknown-tag.json",
            vec!["compat-unknown-tag.json", "DETERMINER"],
        ),
        (
            "train --attn-mask asa --compat FX/compat-format9.json",
            vec!["compat-format9.json", "format 9"],
        ),
        (
            "train --attn-mask asa --compat FX/compat-not-json.json",
            vec!["compat-not-json.json"],
        ),
        ("train --refine selection", vec!["--refine", "binding"]),
        // Numbers.
        ("train --batch 1000000", vec!["B 1000000", "GiB", "--batch"]),
        ("train --seq-len 0", vec!["seq_len"]),
        ("train --steps 0", vec!["steps"]),
        ("train --lr 0", vec!["lr"]),
        ("train --lr NaN", vec!["lr"]),
        ("train --heads 3", vec!["n_head = 3", "d_model = 128"]),
        ("train --grad-clip NaN", vec!["--grad-clip", "NaN"]),
        ("train --weight-decay=-0.5", vec!["--weight-decay", "-0.5"]),
        ("train --eval-tokens 0", vec!["--eval-tokens"]),
        ("train --min-lr-frac 2", vec!["min_lr_frac"]),
        (
            "train --resume --out FX/no-such-run",
            vec!["--resume", "no-such-run"],
        ),
        // Reproduce and experiments.
        (
            "reproduce --config /nope/config.json",
            vec!["/nope/config.json"],
        ),
        (
            "reproduce --config FX/typo-config.json",
            vec!["typo-config.json", "stepz", "did you mean `steps`"],
        ),
        (
            "reproduce --config FX/broken-config.json",
            vec!["broken-config.json"],
        ),
        (
            "reproduce --config FX/good-config.json --corpus conllu",
            vec!["--corpus", "contradict", "good-config.json"],
        ),
        ("reproduce --scale huge", vec!["--scale", "huge"]),
        ("reproduce --shard 3/2", vec!["--shard", "3/2"]),
        ("experiment e9", vec!["e9", "e1, e2, e3, e4, e5"]),
        ("experiment e2 --only e3", vec!["--only", "contradict"]),
        (
            "reproduce --tags gold --write-config FX/x.json",
            vec!["--tags gold", "leak"],
        ),
        // Evaluation, tagging, masks.
        (
            "eval --run FX/no-run --device cuda",
            vec!["checkpoint.safetensors"],
        ),
        (
            "asa tag-eval --tagger builtin --test FX/text.txt --json /proc/asa-nope/r.json",
            vec!["/proc/asa-nope"],
        ),
        (
            "eval --run /nope/run",
            vec!["/nope/run/checkpoint.safetensors"],
        ),
        (
            "asa tag --tags gold --input FX/text.txt",
            vec!["no gold tags"],
        ),
        (
            "asa tag --tokenizer gpt2 --input FX/text.txt",
            vec!["--format tsv"],
        ),
        (
            "asa tag --tags model:/nope/m.tagger --input FX/text.txt",
            vec!["/nope/m.tagger"],
        ),
        ("asa tag --input /nope/text.txt", vec!["/nope/text.txt"]),
        (
            "asa tag-eval --tagger perceptron --test FX/text.txt",
            vec!["--train"],
        ),
        (
            "asa tag-eval --tagger builtin --test /nope/test.conllu",
            vec!["/nope/test.conllu"],
        ),
        (
            "asa derive-compat --conllu FX/tb-nohead/x-ud-train.conllu",
            vec!["HEAD"],
        ),
        (
            "asa derive-compat --conllu FX/tb-bad-upos/x-ud-dev.conllu",
            vec!["x-ud-dev.conllu:1"],
        ),
        (
            "asa derive-compat --conllu FX/tb-bad-upos/x-ud-dev.conllu --min-share 2",
            vec!["--min-share"],
        ),
        (
            "asa stats --seq-len 100000 --max-batches 1",
            vec!["T 100000", "GiB", "--seq-len"],
        ),
        (
            "asa stats --compat /nope/compat.json",
            vec!["/nope/compat.json"],
        ),
        ("bench --samples 0 gelu", vec!["--samples 0"]),
        (
            "bench --json /proc/asa-nope/bench.json gelu",
            vec!["/proc/asa-nope"],
        ),
        ("bench --min-sample-ms NaN gelu", vec!["--min-sample-ms"]),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let work = tmpdir("cwd");
    let mut failures = vec![];
    for (args, want) in &cases {
        let argv: Vec<String> = args.split(' ').map(fx).collect();
        let (code, err, took) = run(&work, &argv);
        if work.join("runs").exists() {
            failures.push(format!("`{args}` left runs/ behind"));
            let _ = std::fs::remove_dir_all(work.join("runs"));
        }
        let missing: Vec<&&str> = want.iter().filter(|w| !err.contains(**w)).collect();
        if code == 0
            || err.contains("panicked")
            || !missing.is_empty()
            || took > Duration::from_secs(20)
        {
            failures.push(format!(
                "`{args}`: exit {code}, {:.1}s, missing {missing:?}\n{err}",
                took.as_secs_f64()
            ));
        }
    }
    // Nothing was written where a case's own --out was not given.
    assert!(
        !work.join("runs").exists(),
        "a failing case left runs/ behind"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A benchmark family whose buffers cannot fit is refused before they exist, naming the
/// family, the estimate and what to run instead (here under a 500 MB address-space cap; the
/// LM-head family holds about 0.65 GiB).
#[test]
fn bench_family_that_cannot_fit_is_refused_before_allocating() {
    let t0 = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 500000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_asa-lth"))
        .args(["bench", "lm_head", "--samples", "3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not enough memory: benchmark family `lm_head`") && err.contains("GiB"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
}
