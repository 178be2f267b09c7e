//! The built-in English tagger and the binary `.tagger` format: obvious sentences, the name and
//! provenance, round trips, every kind of bad file named (never a panic), and — when
//! `../shared/data` is there — its accuracy on UD English-EWT dev and test.

mod common;

use asa_lth::cli::asa::{self as asa_cli, EvalTagger, TagEvalArgs};
use asa_lth::data::{conllu, synthetic};
use asa_lth::ling::tagger::{
    self, binary, builtin, evaluate, tag_sentence, ModelHeader, PerceptronTagger, Tagger,
    TrainOptions,
};
use asa_lth::ling::Upos;
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-builtin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tags(t: &dyn Tagger, line: &str) -> Vec<&'static str> {
    let w: Vec<&str> = line.split(' ').collect();
    tag_sentence(t, &w).into_iter().map(Upos::name).collect()
}

#[test]
fn builtin_tags_obvious_english() {
    let t = builtin::english().unwrap();
    assert_eq!(t.name(), "builtin");
    // Decoded once: the same shared model.
    assert!(std::sync::Arc::ptr_eq(&t, &builtin::english().unwrap()));
    for (line, want) in [
        ("The dog runs .", "DET NOUN VERB PUNCT"),
        // (A noun subject before a rare past tense is fragile without right context: both
        // the feature-set-2 and -3 models tag "sits"/"slept" NOUN after "cat", and the
        // feature-set-3 model tags "sat" NOUN too.)
        ("The cat is on the mat .", "DET NOUN AUX ADP DET NOUN PUNCT"),
        ("The dog is barking .", "DET NOUN AUX VERB PUNCT"),
        ("She wants to go home .", "PRON VERB PART VERB ADV PUNCT"),
        (
            "We went to Paris in 2019 .",
            "PRON VERB ADP PROPN ADP NUM PUNCT",
        ),
    ] {
        assert_eq!(tags(&*t, line).join(" "), want, "{line}");
    }
    let m = builtin::english_model().unwrap();
    let h = m.header();
    assert_eq!(h.kind, "perceptron");
    assert!(h.provenance.contains("UD_English-EWT at 15d613d"), "{h:?}");
    assert!(h.licence.contains("CC BY-SA 4.0"), "{h:?}");
    assert!(h.command.contains("train-tagger"), "{h:?}");
    assert!(h.dev_accuracy.unwrap() > 0.9 && h.test_accuracy.unwrap() > 0.9);
    assert!(m.knows("the") && !m.knows("zorblingish"));
    let p = builtin::provenance();
    assert!(p.contains("CC BY-SA 4.0") && p.contains("15d613d"), "{p}");
    assert!(builtin::BUILTIN_PROVENANCE.contains("UD_English-EWT at 15d613d"));
    // The committed model loads as a file too, and tags the same.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ling/tagger/models/en_ewt.tagger");
    let loaded = tagger::load_model(&path).unwrap();
    for s in synthetic::generate(50, 3) {
        let w: Vec<&str> = s.words.iter().map(String::as_str).collect();
        assert_eq!(tag_sentence(&*t, &w), tag_sentence(&*loaded, &w));
    }
}

fn small_model() -> PerceptronTagger {
    PerceptronTagger::train(
        &synthetic::generate(600, 21),
        &TrainOptions {
            iterations: 2,
            ..Default::default()
        },
    )
    .unwrap()
}

fn header() -> ModelHeader {
    ModelHeader {
        kind: String::new(),
        feature_set: 0,
        tags: vec![],
        provenance: "synthetic".into(),
        licence: "test".into(),
        command: "test".into(),
        dev_accuracy: None,
        test_accuracy: None,
        payload_bytes: 0,
    }
}

#[test]
fn binary_models_round_trip_deterministically() {
    let p = small_model();
    let bytes = binary::encode(&p, &header());
    assert_eq!(
        bytes,
        binary::encode(&p, &header()),
        "same model, same bytes"
    );
    assert!(bytes.starts_with(b"ASATAGGR"));
    let d = tmpdir("rt");
    let f = d.join("m.tagger");
    std::fs::write(&f, &bytes).unwrap();
    let (h, q) = binary::load(&f).unwrap();
    assert_eq!(h.kind, "perceptron");
    assert_eq!(h.feature_set, 3);
    assert!(!p.clusters().is_empty() && q.clusters() == p.clusters());
    assert_eq!(
        h.payload_bytes as usize,
        bytes.len() - 16 - { u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize }
    );
    let loaded = tagger::load_model(&f).unwrap();
    // Quantised weights: the same tags on held-out sentences.
    let test = synthetic::generate(200, 5);
    let a = evaluate(&p, &test, None).unwrap().accuracy();
    let b = evaluate(&q, &test, None).unwrap().accuracy();
    let c = evaluate(&*loaded, &test, None).unwrap().accuracy();
    assert!((a - b).abs() < 1e-3 && b == c, "{a} {b} {c}");
    // JSON models still load (feature set recorded).
    p.save(&d.join("m.json")).unwrap();
    let text = std::fs::read_to_string(d.join("m.json")).unwrap();
    assert!(text.contains("\"features\":3") && text.contains("\"clusters\":"));
    let j = tagger::load_model(&d.join("m.json")).unwrap();
    for s in &test[..50] {
        let w: Vec<&str> = s.words.iter().map(String::as_str).collect();
        assert_eq!(tag_sentence(&p, &w), tag_sentence(&*j, &w));
    }
    // Feature set 2 models (no clusters) still write and load, binary and JSON.
    let v2 = PerceptronTagger::train(
        &synthetic::generate(300, 21),
        &TrainOptions {
            iterations: 2,
            features: tagger::FeatureSet::V2,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(v2.clusters().is_empty());
    std::fs::write(d.join("v2.tagger"), binary::encode(&v2, &header())).unwrap();
    let (h2, q2) = binary::load(&d.join("v2.tagger")).unwrap();
    assert_eq!(h2.feature_set, 2);
    assert_eq!(q2.feature_set(), tagger::FeatureSet::V2);
    v2.save(&d.join("v2.json")).unwrap();
    let j2 = tagger::load_model(&d.join("v2.json")).unwrap();
    for s in &test[..20] {
        let w: Vec<&str> = s.words.iter().map(String::as_str).collect();
        assert_eq!(tag_sentence(&v2, &w), tag_sentence(&*j2, &w));
    }
}

#[test]
fn bad_binary_models_are_named_errors() {
    let bytes = binary::encode(&small_model(), &header());
    let hlen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let d = tmpdir("bad");
    let mut wrong_version = bytes.clone();
    wrong_version[8..12].copy_from_slice(&9u32.to_le_bytes());
    let mut foreign = bytes.clone();
    foreign[..8].copy_from_slice(b"PK\x03\x04abcd");
    let mut corrupt = bytes.clone();
    let mid = 16 + hlen + (bytes.len() - 16 - hlen) / 2;
    for b in &mut corrupt[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let mut bad_header = bytes.clone();
    bad_header[16] = b'!';
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("trunc_magic.tagger", bytes[..5].to_vec(), "truncated"),
        ("trunc_version.tagger", bytes[..10].to_vec(), "truncated"),
        ("trunc_header.tagger", bytes[..40].to_vec(), "truncated"),
        (
            "trunc_payload.tagger",
            bytes[..bytes.len() - 100].to_vec(),
            "truncated",
        ),
        ("foreign.tagger", foreign, "wrong magic"),
        (
            "version.tagger",
            wrong_version,
            "version 9 is not supported",
        ),
        ("corrupt.tagger", corrupt, "corrupted tagger model payload"),
        ("header.tagger", bad_header, "corrupted tagger model header"),
        (
            "binary_junk.tagger",
            vec![0xff, 0xfe, 0, 1, 2, 3, 4, 5, 6],
            "wrong magic",
        ),
    ];
    for (name, body, want) in cases {
        let p = d.join(name);
        std::fs::write(&p, &body).unwrap();
        let e = tagger::load_model(&p).err().expect(name).to_string();
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
        let e = binary::load(&p).expect_err(name).to_string();
        assert!(e.contains(name), "{name}: {e}");
    }
}

#[test]
fn builtin_accuracy_on_ud_english_ewt() {
    let Some(data) = common::shared_data_dir() else {
        return;
    };
    let ewt = data.join("UD_English-EWT");
    let m = builtin::english_model().unwrap();
    let known = |w: &str| m.knows(w);
    // Measured: dev 93.10%, test 93.11% (EWT r2.x at 15d613d); floors 0.3 pp below. (Dev
    // forms feed the word clusters, so dev is slightly optimistic: 93.06% without them.)
    for (file, floor) in [
        ("en_ewt-ud-dev.conllu", 0.928),
        ("en_ewt-ud-test.conllu", 0.928),
    ] {
        let sents = conllu::load_file(&ewt.join(file)).unwrap();
        let e = evaluate(&*m, &sents, Some(&known)).unwrap();
        println!(
            "{file}: {:.2}% (known {:.2}%, unknown {:.2}%)",
            100.0 * e.accuracy(),
            100.0 * e.known_accuracy(),
            100.0 * e.unknown_accuracy()
        );
        assert!(e.accuracy() >= floor, "{file}: {} < {floor}", e.accuracy());
    }
    // The command scores it without training anything, per genre too.
    let mut out = Vec::new();
    asa_cli::tag_eval(
        &TagEvalArgs {
            train: None,
            test: ewt.join("en_ewt-ud-test.conllu"),
            tagger: EvalTagger::Builtin,
            iterations: 1,
            seed: 1,
            json: None,
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    for want in ["builtin ", "per genre (builtin): email", "reviews"] {
        assert!(text.contains(want), "missing `{want}` in\n{text}");
    }
}
