//! Taggers: leak-freeness (changing every token after i never changes the tag at i),
//! accuracy on the synthetic corpus, unknown-word handling, versioned model files, the
//! `tag-eval` / `train-tagger` / `tag` commands, and CoNLL-U edge cases.

use asa_lth::cli::asa::{
    self as asa_cli, EvalTagger, ModelFormat, ModelKind, TagArgs, TagEvalArgs, TrainTaggerArgs,
};
use asa_lth::data::{conllu, synthetic, Sentence};
use asa_lth::ling::tagger::{
    self, evaluate, tag_sentence, LexiconTagger, PerceptronTagger, RuleTagger, Tagger, TrainOptions,
};
use asa_lth::ling::Upos;
use asa_lth::rng::Rng;
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-tagtest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Sentences as CoNLL-U text (FORM, UPOS, HEAD; other columns `_`).
fn to_conllu(sents: &[Sentence]) -> String {
    let mut s = String::new();
    for (k, sent) in sents.iter().enumerate() {
        s.push_str(&format!("# sent_id = {k}\n"));
        for (i, w) in sent.words.iter().enumerate() {
            let tag = sent.upos.as_ref().unwrap()[i];
            let head = sent.heads.as_ref().unwrap()[i];
            s.push_str(&format!(
                "{}\t{w}\t_\t{tag}\t_\t_\t{head}\t_\t_\t_\n",
                i + 1
            ));
        }
        s.push('\n');
    }
    s
}

fn trained() -> (LexiconTagger, PerceptronTagger) {
    let train = synthetic::generate(3000, 11);
    let lex = LexiconTagger::train(&train).unwrap();
    let per = PerceptronTagger::train(
        &train,
        &TrainOptions {
            iterations: 4,
            ..Default::default()
        },
    )
    .unwrap();
    (lex, per)
}

/// Random replacement words: in-vocabulary ones and unseen shapes.
const NOISE: &[&str] = &[
    "the",
    "dog",
    "runs",
    "that",
    "to",
    ".",
    ",",
    "Alice",
    "quickly",
    "1999",
    "$",
    "zorbling",
    "Xanadu",
    "re-entry",
    "NASA",
    "walked",
    "happiness",
    "she",
    "and",
    "because",
];

fn assert_leak_free(t: &dyn Tagger, sents: &[Sentence], rng: &mut Rng) {
    for s in sents {
        let words: Vec<&str> = s.words.iter().map(String::as_str).collect();
        let base = tag_sentence(t, &words);
        for i in 0..words.len() {
            for _ in 0..3 {
                let mut changed = words.clone();
                for w in changed.iter_mut().skip(i + 1) {
                    *w = NOISE[rng.below(NOISE.len())];
                }
                // Also vary the length of the right context.
                let extra = rng.below(4);
                for _ in 0..extra {
                    changed.push(NOISE[rng.below(NOISE.len())]);
                }
                let tags = tag_sentence(t, &changed);
                assert_eq!(
                    tags[..=i],
                    base[..=i],
                    "{}: tag at {i} of {:?} changed when the words after it changed to {:?}",
                    t.name(),
                    words,
                    &changed[i + 1..]
                );
            }
        }
    }
}

#[test]
fn every_tagger_is_leak_free() {
    let (lex, per) = trained();
    let mut sents = synthetic::generate(60, 99);
    // Real-looking text with unknown words, capitals and punctuation too.
    for line in [
        "Yesterday , NASA 's new re-entry vehicle landed near Houston at 10:30 .",
        "I could n't believe that the zorblings were singing so beautifully !",
        "Send $ 5 to http://example.com before Friday , or else .",
    ] {
        let words: Vec<String> = line.split(' ').map(str::to_string).collect();
        let n = words.len();
        sents.push(Sentence {
            words,
            upos: Some(vec![Upos::X; n]),
            heads: None,
        });
    }
    let mut rng = Rng::new(5);
    let rules = RuleTagger;
    let builtin = tagger::builtin::english().unwrap();
    let taggers: [&dyn Tagger; 4] = [&lex, &per, &rules, &*builtin];
    for t in taggers {
        assert_leak_free(t, &sents, &mut rng);
    }
    // A model loaded back from disk too.
    let d = tmpdir("leak");
    per.save(&d.join("p.json")).unwrap();
    let loaded = tagger::load_model(&d.join("p.json")).unwrap();
    assert_leak_free(&*loaded, &sents[..10], &mut rng);
}

#[test]
fn accuracy_on_the_synthetic_corpus() {
    let (lex, per) = trained();
    let test = synthetic::generate(500, 12345);
    let known = |w: &str| lex.knows(w);
    let el = evaluate(&lex, &test, Some(&known)).unwrap();
    let ep = evaluate(&per, &test, Some(&known)).unwrap();
    let er = evaluate(&RuleTagger, &test, None).unwrap();
    println!(
        "synthetic accuracy: lexicon {:.4}, perceptron {:.4}, rules {:.4}",
        el.accuracy(),
        ep.accuracy(),
        er.accuracy()
    );
    // The grammar's only ambiguous form is "that" (DET / relative PRON): a lexicon cannot
    // separate them, left context can.
    assert!(el.accuracy() > 0.95, "lexicon {}", el.accuracy());
    assert!(ep.accuracy() > 0.995, "perceptron {}", ep.accuracy());
    assert!(
        ep.tag_accuracy(Upos::Pron) > el.tag_accuracy(Upos::Pron),
        "left context should resolve relative `that`"
    );
    assert!(er.accuracy() > 0.80, "rules {}", er.accuracy());
    assert_eq!(el.tokens, ep.tokens);
    assert_eq!(el.gold.iter().sum::<u64>(), el.tokens);
}

/// A small English treebank fragment for unknown-word behaviour.
const ENGLISH: &str = "\
1\tShe\t_\tPRON\t_\t_\t2\t_\t_\t_
2\tsang\t_\tVERB\t_\t_\t0\t_\t_\t_
3\tbeautifully\t_\tADV\t_\t_\t2\t_\t_\t_
4\t.\t_\tPUNCT\t_\t_\t2\t_\t_\t_

1\tThe\t_\tDET\t_\t_\t2\t_\t_\t_
2\thappiness\t_\tNOUN\t_\t_\t3\t_\t_\t_
3\tlasted\t_\tVERB\t_\t_\t0\t_\t_\t_
4\tquietly\t_\tADV\t_\t_\t3\t_\t_\t_
5\tin\t_\tADP\t_\t_\t6\t_\t_\t_
6\tParis\t_\tPROPN\t_\t_\t3\t_\t_\t_
7\t.\t_\tPUNCT\t_\t_\t3\t_\t_\t_

1\tSadness\t_\tNOUN\t_\t_\t2\t_\t_\t_
2\twalked\t_\tVERB\t_\t_\t0\t_\t_\t_
3\tslowly\t_\tADV\t_\t_\t2\t_\t_\t_
4\tto\t_\tADP\t_\t_\t5\t_\t_\t_
5\tLondon\t_\tPROPN\t_\t_\t2\t_\t_\t_
6\tin\t_\tADP\t_\t_\t7\t_\t_\t_
7\t1999\t_\tNUM\t_\t_\t2\t_\t_\t_
8\t!\t_\tPUNCT\t_\t_\t2\t_\t_\t_

1\tKindness\t_\tNOUN\t_\t_\t2\t_\t_\t_
2\tjumped\t_\tVERB\t_\t_\t0\t_\t_\t_
3\tgladly\t_\tADV\t_\t_\t2\t_\t_\t_
4\tto\t_\tADP\t_\t_\t5\t_\t_\t_
5\tRome\t_\tPROPN\t_\t_\t2\t_\t_\t_
6\tat\t_\tADP\t_\t_\t7\t_\t_\t_
7\t12\t_\tNUM\t_\t_\t2\t_\t_\t_
8\t;\t_\tPUNCT\t_\t_\t2\t_\t_\t_
";

#[test]
fn lexicon_handles_unknown_words_by_suffix_shape_and_case() {
    let sents = conllu::parse(ENGLISH, Path::new("english.conllu")).unwrap();
    let lex = LexiconTagger::train(&sents).unwrap();
    let tag = |w: &str, initial: bool| lex.lookup(w, initial);
    assert_eq!(tag("She", true), (Upos::Pron, true));
    assert_eq!(tag("she", false), (Upos::Pron, true), "lower-case fallback");
    assert_eq!(tag("wonderfully", false).0, Upos::Adv, "-ly suffix");
    assert_eq!(tag("talked", false).0, Upos::Verb, "-ed suffix");
    assert_eq!(
        tag("Madrid", false).0,
        Upos::Propn,
        "capitalised, not initial"
    );
    assert_eq!(tag("2024", false).0, Upos::Num, "digits");
    assert_eq!(tag("?", false).0, Upos::Punct, "punctuation");
    assert_eq!(
        tag("Darkness", true).0,
        Upos::Noun,
        "sentence-initial, -ness"
    );
    assert!(!tag("wonderfully", false).1);
}

#[test]
fn models_round_trip_and_bad_files_are_named() {
    let (lex, per) = trained();
    let d = tmpdir("models");
    lex.save(&d.join("lex.json")).unwrap();
    per.save(&d.join("per.json")).unwrap();
    let text = std::fs::read_to_string(d.join("per.json")).unwrap();
    assert!(text.contains("\"format\":1") && text.contains("\"kind\":\"perceptron\""));
    let l2 = tagger::load_model(&d.join("lex.json")).unwrap();
    let p2 = tagger::load_model(&d.join("per.json")).unwrap();
    assert_eq!(
        LexiconTagger::from_json(&lex.to_json(), Path::new("x")).unwrap(),
        lex
    );
    for s in synthetic::generate(200, 777) {
        let w: Vec<&str> = s.words.iter().map(String::as_str).collect();
        assert_eq!(tag_sentence(&lex, &w), tag_sentence(&*l2, &w));
        assert_eq!(tag_sentence(&per, &w), tag_sentence(&*p2, &w));
    }
    // Bad files: named, never a panic.
    let cases = [
        ("bad1.json", "not json", "bad1.json:1"),
        (
            "bad2.json",
            "{\"format\": 7, \"kind\": \"lexicon\"}",
            "format",
        ),
        (
            "bad3.json",
            "{\"format\": 1, \"kind\": \"hmm\"}",
            "unknown tagger kind",
        ),
        (
            "bad4.json",
            &text.replacen("\"NOUN\"", "\"NOUNY\"", 1),
            "NOUNY",
        ),
    ];
    for (name, body, want) in cases {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        let e = tagger::load_model(&p).err().expect("must fail").to_string();
        assert!(e.contains(name) && e.contains(want), "{e}");
    }
    let e = tagger::load_model(&d.join("missing.json"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn tag_eval_train_tagger_and_tag_commands() {
    let d = tmpdir("cli");
    let train = d.join("train.conllu");
    let test = d.join("test.conllu");
    std::fs::write(&train, to_conllu(&synthetic::generate(800, 3))).unwrap();
    std::fs::write(&test, to_conllu(&synthetic::generate(100, 4))).unwrap();
    let mut out = Vec::new();
    asa_cli::tag_eval(
        &TagEvalArgs {
            train: Some(train.clone()),
            test: test.clone(),
            tagger: EvalTagger::All,
            iterations: 3,
            seed: 1,
            json: Some(d.join("eval.json")),
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    for want in [
        "lexicon",
        "perceptron",
        "rules",
        "per-tag accuracy",
        "NOUN",
        "top confusions",
        "unseen in train",
    ] {
        assert!(text.contains(want), "missing `{want}` in\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 3);

    let model = d.join("model.json");
    let mut out = Vec::new();
    asa_cli::train_tagger(
        &TrainTaggerArgs {
            train,
            kind: ModelKind::Perceptron,
            out: model.clone(),
            iterations: 2,
            seed: 1,
            format: ModelFormat::Json,
            dev: None,
            test: None,
            provenance: None,
            licence: "test".into(),
            unlabelled: Vec::new(),
            ensemble: 1,
        },
        &mut out,
    )
    .unwrap();
    assert!(model.exists());
    let mut out = Vec::new();
    let mut input: &[u8] = b"the dogs that the girl saw are happy .\nAlice runs\n";
    asa_cli::tag(
        &TagArgs {
            tags: asa_lth::data::TagsChoice::Model(model),
            ..TagArgs::default()
        },
        &mut input,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "the/DET dogs/NOUN that/PRON the/DET girl/NOUN saw/VERB are/AUX happy/ADJ ./PUNCT\n\
         Alice/PROPN runs/VERB\n"
    );
    // Missing files are named.
    let e = asa_cli::tag_eval(
        &TagEvalArgs {
            train: Some(d.join("nope.conllu")),
            test: test.clone(),
            tagger: EvalTagger::Lexicon,
            iterations: 1,
            seed: 1,
            json: None,
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("nope.conllu"), "{e:#}");
    // Trainable taggers need --train; the builtin does not.
    let e = asa_cli::tag_eval(
        &TagEvalArgs {
            train: None,
            test: test.clone(),
            tagger: EvalTagger::Perceptron,
            iterations: 1,
            seed: 1,
            json: None,
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("--train is required"), "{e:#}");
    let mut out = Vec::new();
    asa_cli::tag_eval(
        &TagEvalArgs {
            train: None,
            test: test.clone(),
            tagger: EvalTagger::Builtin,
            iterations: 1,
            seed: 1,
            json: Some(d.join("builtin.json")),
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("builtin ") && text.contains("model's lexicon"),
        "{text}"
    );
    // A binary model from the command, with its header, read back by `tag`.
    let bin = d.join("model.tagger");
    let mut out = Vec::new();
    asa_cli::train_tagger(
        &TrainTaggerArgs {
            train: d.join("train.conllu"),
            kind: ModelKind::Perceptron,
            out: bin.clone(),
            iterations: 2,
            seed: 1,
            format: ModelFormat::Builtin,
            dev: Some(test.clone()),
            test: None,
            provenance: Some("synthetic".into()),
            licence: "test".into(),
            unlabelled: Vec::new(),
            ensemble: 1,
        },
        &mut out,
    )
    .unwrap();
    let (h, _) = tagger::binary::load(&bin).unwrap();
    assert!(
        h.dev_accuracy.unwrap() > 0.8 && h.test_accuracy.is_none(),
        "{h:?}"
    );
    assert!(h.command.contains("--format builtin") && h.provenance == "synthetic");
    let mut out = Vec::new();
    let mut input: &[u8] = b"Alice runs\n";
    asa_cli::tag(
        &TagArgs {
            tags: asa_lth::data::TagsChoice::Model(bin),
            ..TagArgs::default()
        },
        &mut input,
        &mut out,
    )
    .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "Alice/PROPN runs/VERB\n");
}

#[test]
fn conllu_edge_cases_per_the_format() {
    // Multiword ranges, empty nodes, comments, several blank lines, CRLF, a last sentence
    // without a trailing blank line.
    let text = "# newdoc\r\n# sent_id = a\r\n1-2\tvámonos\t_\t_\t_\t_\t_\t_\t_\t_\r\n\
                1\tvamos\tir\tVERB\t_\t_\t0\troot\t_\t_\r\n\
                2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_\r\n\
                2.1\tx\t_\tX\t_\t_\t_\t_\t1:dep\t_\r\n\r\n\r\n\
                1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_";
    let s = conllu::parse(text, Path::new("edge.conllu")).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].words, ["vamos", "nos"]);
    assert_eq!(s[1].words, ["Hi"]);
    // Malformed rows name the file and the line.
    for (body, line, what) in [
        ("1\tA\ta\tNOUN\t_\t_\t0\troot\t_\n", 1, "columns"),
        (
            "# c\n1\tA\ta\tNOUN\t_\t_\t0\troot\t_\t_\nx\tB\tb\tNOUN\t_\t_\t1\tdep\t_\t_\n",
            3,
            "ID",
        ),
        ("1\tA\ta\tNOUNISH\t_\t_\t0\troot\t_\t_\n", 1, "NOUNISH"),
        ("1\tA\ta\tNOUN\t_\t_\tz\troot\t_\t_\n", 1, "HEAD"),
        ("1\tA\ta\tNOUN\t_\t_\t5\troot\t_\t_\n\n", 2, "HEAD of 5"),
    ] {
        let e = conllu::parse(body, Path::new("bad.conllu"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("bad.conllu:{line}:")) && e.contains(what),
            "{body:?}: {e}"
        );
    }
}
