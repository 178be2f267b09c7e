//! Real English end to end (issue 18's acceptance): a masked run on a UD treebank trains on
//! the built-in causal tags by default and refuses gold tags naming the leak; per-piece BPE
//! tags as `asa tag` prints them. Runs on the committed EWT excerpt everywhere and on the full
//! treebank in `../shared/data` where it exists (required in CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-real-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn manifest() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_asa-lth"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

/// `train --corpus conllu --data DIR --attn-mask asa` with a tiny model: built-in tags by
/// default, recorded in results.json; `--tags gold` refused naming the leak.
fn masked_run_on(dir: &Path, name: &str) {
    let data = dir.to_str().unwrap();
    let out = tmpdir(name);
    let small = [
        "--steps",
        "2",
        "--batch",
        "2",
        "--seq-len",
        "32",
        "--layers",
        "1",
        "--d-model",
        "16",
        "--eval-every",
        "0",
        "--eval-tokens",
        "256",
        "--checkpoint-every",
        "0",
        "--device",
        "cpu",
        "--quiet",
    ];
    let mut args = vec![
        "train",
        "--corpus",
        "conllu",
        "--data",
        data,
        "--attn-mask",
        "asa",
    ];
    args.extend(small);
    let gold_out = out.join("gold");
    let mut gold = args.clone();
    gold.extend(["--tags", "gold", "--out", gold_out.to_str().unwrap()]);
    let (ok, _, err) = cli(&gold);
    assert!(!ok, "--tags gold was accepted for a masked run");
    assert!(
        err.contains("--tags gold")
            && err.contains("leak the future")
            && err.contains("--allow-gold-train"),
        "{err}"
    );
    assert!(!gold_out.join("results.json").exists());

    let run = out.join("builtin");
    args.extend(["--out", run.to_str().unwrap()]);
    let (ok, stdout, err) = cli(&args);
    assert!(ok, "{stdout}\n{err}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["config"]["tags"], "builtin", "{}", r["config"]);
    assert_eq!(r["config"]["attn_mask"], "asa");
    let tags = r["tags"].as_str().unwrap();
    assert!(
        tags.contains("UD English-EWT") && !tags.contains("LEAKY"),
        "{tags}"
    );
    assert!(r["final_valid_perplexity"].as_f64().unwrap().is_finite());

    // A leak study is possible, and labelled as such.
    let study = out.join("study");
    let mut leak = args.clone();
    leak.truncate(leak.len() - 2);
    leak.extend([
        "--tags",
        "gold",
        "--allow-gold-train",
        "--out",
        study.to_str().unwrap(),
    ]);
    let (ok, _, err) = cli(&leak);
    assert!(ok, "{err}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(study.join("results.json")).unwrap())
            .unwrap();
    assert!(
        r["tags"].as_str().unwrap().contains("LEAKY"),
        "{}",
        r["tags"]
    );
}

#[test]
fn masked_training_on_the_ewt_excerpt_uses_builtin_tags() {
    masked_run_on(&manifest().join("tests/fixtures/ewt-excerpt"), "excerpt");
}

#[test]
fn masked_training_on_full_ewt_uses_builtin_tags() {
    let Some(shared) = common::shared_data_dir() else {
        return;
    };
    masked_run_on(&shared.join("UD_English-EWT"), "full");
}

#[test]
fn asa_tag_prints_one_causal_tag_per_bpe_piece() {
    let d = tmpdir("tsv");
    let input = d.join("in.txt");
    std::fs::write(
        &input,
        "# a comment line\nThe antidisestablishmentarianism results surprised everyone .\n\nShe said that it works .\n",
    )
    .unwrap();
    let (ok, out, err) = cli(&[
        "asa",
        "tag",
        "--tokenizer",
        "gpt2",
        "--format",
        "tsv",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("# sentence\tpiece\ttext\ttag"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 4), "{out}");
    // Two sentences, pieces numbered from 0 in each; the pieces spell the words.
    let first: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == "0").collect();
    let text: String = first.iter().map(|r| r[2]).collect();
    assert_eq!(
        text,
        " The antidisestablishmentarianism results surprised everyone ."
    );
    assert!(first.len() > 6, "a long rare word is several pieces: {out}");
    assert!(rows.iter().any(|r| r[0] == "1"));
    for (k, r) in first.iter().enumerate() {
        assert_eq!(r[1], k.to_string());
        assert!(asa_lth::ling::Upos::parse(r[3]).is_some(), "{r:?}");
    }
    // The last piece of each word carries the word-level tag (same tagger, same left context).
    let (ok, words, err) = cli(&["asa", "tag", "--input", input.to_str().unwrap()]);
    assert!(ok, "{err}");
    let word_tags: Vec<&str> = words
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .map(|wt| wt.rsplit_once('/').unwrap().1)
        .collect();
    let mut last_piece_tags = vec![];
    for (k, r) in first.iter().enumerate() {
        let next_starts_word = first.get(k + 1).is_none_or(|n| n[2].starts_with(' '));
        if next_starts_word {
            last_piece_tags.push(r[3]);
        }
    }
    assert_eq!(last_piece_tags, word_tags, "{out}\n{words}");
    // Gold has no meaning for raw text; slash output is word level only.
    let (ok, _, err) = cli(&[
        "asa",
        "tag",
        "--tags",
        "gold",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no gold tags"), "{err}");
    let (ok, _, err) = cli(&[
        "asa",
        "tag",
        "--tokenizer",
        "gpt2",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("--format tsv"), "{err}");
}
