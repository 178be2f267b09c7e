//! Corpus loaders on fixtures written by the tests, the synthetic grammar's determinism and
//! annotation consistency, vocabulary and evaluation windows.

use asa_lth::backend::IGNORE_INDEX;
use asa_lth::data::batch::{random_batch, EvalWindows};
use asa_lth::data::{conllu, synthetic, wikitext, CorpusSource, Vocab};
use asa_lth::ling::Upos;
use asa_lth::rng::Rng;
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const CONLLU: &str = "# newdoc id = x
# sent_id = 1
# text = Don't stop.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\t_\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\t_\t_\t3\tadvmod\t_\t_
3\tstop\tstop\tVERB\t_\t_\t0\troot\t_\t_
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

# sent_id = 2
1\tSue\tSue\tPROPN\t_\t_\t2\tnsubj\t_\t_
2\tlikes\tlike\tVERB\t_\t_\t0\troot\t_\t_
2.1\tlikes\tlike\tVERB\t_\t_\t_\t_\t0:root\t_
3\ttea\ttea\tNOUN\t_\t_\t2\tobj\t_\t_
";

#[test]
fn conllu_reads_words_skipping_ranges_empty_nodes_and_comments() {
    let sents = conllu::parse(CONLLU, Path::new("fixture.conllu")).unwrap();
    assert_eq!(sents.len(), 2);
    assert_eq!(sents[0].words, ["Do", "n't", "stop", "."]);
    assert_eq!(
        sents[0].upos.as_deref().unwrap(),
        [Upos::Aux, Upos::Part, Upos::Verb, Upos::Punct]
    );
    assert_eq!(sents[0].heads.as_deref().unwrap(), [3, 3, 0, 3]);
    assert_eq!(sents[1].words, ["Sue", "likes", "tea"]);
    assert_eq!(sents[1].heads.as_deref().unwrap(), [2, 0, 2]);
}

#[test]
fn conllu_errors_name_file_and_line() {
    let p = Path::new("bad.conllu");
    let cases = [
        (
            "1\tA\ta\tNOUN\t_\t_\t0\troot\t_\n",
            "expected 10 tab-separated columns",
        ),
        (
            "1\tA\ta\tNOUNISH\t_\t_\t0\troot\t_\t_\n",
            "unknown UPOS tag `NOUNISH`",
        ),
        (
            "1\tA\ta\tNOUN\t_\t_\t0\troot\t_\t_\n3\tB\tb\tNOUN\t_\t_\t1\tx\t_\t_\n",
            "out of sequence",
        ),
        ("1\tA\ta\tNOUN\t_\t_\tX\troot\t_\t_\n", "HEAD `X`"),
        ("1\tA\ta\tNOUN\t_\t_\t7\troot\t_\t_\n", "HEAD of 7"),
    ];
    for (text, want) in cases {
        let e = conllu::parse(text, p).unwrap_err().to_string();
        assert!(e.starts_with("bad.conllu:"), "{e}");
        assert!(e.contains(want), "{e}");
    }
    let e = conllu::parse(
        "# only\n1\tA\ta\tNOUN\t_\t_\t0\troot\t_\t_\nX\tB\tb\tNOUN\t_\t_\t1\tx\t_\t_\n",
        p,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("bad.conllu:3:"), "line number: {e}");
}

#[test]
fn conllu_directory_and_wikitext_directory_load_and_complain() {
    let d = tmpdir("ud");
    for split in ["train", "dev", "test"] {
        std::fs::write(d.join(format!("en_x-ud-{split}.conllu")), CONLLU).unwrap();
    }
    let c = CorpusSource::Conllu { dir: d.clone() }.load().unwrap();
    assert_eq!((c.train.len(), c.valid.len(), c.test.len()), (2, 2, 2));
    std::fs::remove_file(d.join("en_x-ud-dev.conllu")).unwrap();
    let e = CorpusSource::Conllu { dir: d.clone() }
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.contains("-ud-dev.conllu"), "{e}");

    let w = tmpdir("wt2");
    std::fs::write(
        w.join("wiki.train.tokens"),
        " \n = Title = \n\n the cat sat on the <unk> . \n",
    )
    .unwrap();
    std::fs::write(w.join("wiki.valid.tokens"), " the cat . \n").unwrap();
    let e = CorpusSource::Wikitext2 { dir: w.clone() }
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wiki.test.tokens") && e.contains("missing"),
        "{e}"
    );
    std::fs::write(w.join("wiki.test.tokens"), "\n \n").unwrap();
    let e = CorpusSource::Wikitext2 { dir: w.clone() }
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.contains("wiki.test.tokens") && e.contains("empty"), "{e}");
    std::fs::write(w.join("wiki.test.tokens"), " the sat . \n").unwrap();
    let c = CorpusSource::Wikitext2 { dir: w.clone() }.load().unwrap();
    assert_eq!(c.train.len(), 2, "blank lines skipped");
    assert_eq!(c.train[0].words, ["=", "Title", "="]);
    let v = Vocab::build(&c.train, 1).unwrap();
    assert_eq!(v.id("<unk>"), 0, "WikiText's own <unk> maps to the unk id");
    let e = wikitext::load_file(&w.join("nope.tokens"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.tokens"), "{e}");
}

#[test]
fn synthetic_corpus_is_deterministic_and_its_trees_are_consistent() {
    let a = synthetic::generate(500, 7);
    assert_eq!(a, synthetic::generate(500, 7));
    assert_ne!(a, synthetic::generate(500, 8));
    let mut tag_counts = [0usize; 17];
    for s in &a {
        let tags = s.upos.as_ref().unwrap();
        let heads = s.heads.as_ref().unwrap();
        let n = s.words.len();
        assert_eq!(tags.len(), n);
        assert_eq!(heads.len(), n);
        assert_eq!(
            heads.iter().filter(|&&h| h == 0).count(),
            1,
            "one root: {:?}",
            s.words
        );
        assert_eq!(s.words.last().map(String::as_str), Some("."));
        for (i, &h) in heads.iter().enumerate() {
            tag_counts[tags[i] as usize] += 1;
            assert!(
                h as usize <= n && h as usize != i + 1,
                "head out of range/self"
            );
            // Walking up from any word reaches the root without a cycle.
            let (mut cur, mut steps) = (i + 1, 0);
            while cur != 0 {
                cur = heads[cur - 1] as usize;
                steps += 1;
                assert!(steps <= n, "cycle in {:?}", s.words);
            }
            match tags[i] {
                Upos::Det | Upos::Adj if heads[i] > 0 && tags[h as usize - 1] == Upos::Noun => {}
                Upos::Det => panic!("DET not attached to a noun in {:?}", s.words),
                Upos::Adp => assert!(
                    matches!(tags[h as usize - 1], Upos::Noun | Upos::Propn),
                    "ADP attaches to its noun"
                ),
                _ => {}
            }
        }
    }
    for t in [
        Upos::Noun,
        Upos::Verb,
        Upos::Det,
        Upos::Adj,
        Upos::Pron,
        Upos::Aux,
        Upos::Adp,
        Upos::Propn,
    ] {
        assert!(tag_counts[t as usize] > 50, "{t} too rare: {tag_counts:?}");
    }
}

#[test]
fn synthetic_agreement_holds() {
    // "this"/"a"/"every" take singular nouns, "these"/"two" plural ones.
    let sents = synthetic::generate(2000, 3);
    let plural_nouns = ["dogs", "men", "women", "boxes", "stories", "keys"];
    for s in &sents {
        let heads = s.heads.as_ref().unwrap();
        for (i, w) in s.words.iter().enumerate() {
            let head = heads[i] as usize;
            if head == 0 {
                continue;
            }
            let hw = &s.words[head - 1];
            if ["this", "a", "every"].contains(&w.as_str()) {
                assert!(
                    !plural_nouns.contains(&hw.as_str()),
                    "{w} {hw} in {:?}",
                    s.words
                );
            }
            if ["these", "those", "two", "three"].contains(&w.as_str()) {
                assert!(
                    !["dog", "man", "box", "story"].contains(&hw.as_str()),
                    "{w} {hw}"
                );
            }
        }
    }
}

#[test]
fn eval_windows_score_every_token_once_and_pad_the_rest() {
    let sents = synthetic::generate(30, 1);
    let v = Vocab::build(&sents, 1).unwrap();
    let s = v.encode(&sents);
    for (b, t) in [(1, 7), (3, 16), (4, 1000)] {
        let w = EvalWindows::new(&s, b, t).unwrap();
        assert_eq!(w.total_scored(), s.len() - 1);
        let mut scored = Vec::new();
        for batch in w {
            assert_eq!(batch.tokens.len(), b * t);
            for (i, &y) in batch.targets.iter().enumerate() {
                if y != IGNORE_INDEX {
                    scored.push(y);
                } else {
                    assert_eq!(batch.upos[i], asa_lth::data::batch::NO_TAG);
                }
            }
        }
        assert_eq!(scored, s.ids[1..].to_vec(), "b={b} t={t}");
    }
    // Heads inside a window point at the right tokens.
    let batch = random_batch(&s, 4, 16, &mut Rng::new(3)).unwrap();
    assert!(batch.heads.iter().all(|h| (-1..16).contains(h)));
    assert!(batch.heads.iter().any(|&h| h >= 0));
    // A context longer than the data is a clear error.
    let e = random_batch(&s, 1, s.len(), &mut Rng::new(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("longer than the data"), "{e}");
}

#[test]
fn vocab_round_trips_and_unigram_perplexity_is_sane() {
    let sents = synthetic::generate(300, 2);
    let v = Vocab::build(&sents, 2).unwrap();
    let d = tmpdir("vocab");
    v.save(&d.join("v.json")).unwrap();
    assert_eq!(Vocab::load(&d.join("v.json")).unwrap(), v);
    std::fs::write(d.join("bad.json"), "{\"nope\": 1}").unwrap();
    assert!(Vocab::load(&d.join("bad.json"))
        .unwrap_err()
        .to_string()
        .contains("bad.json"));
    let s = v.encode(&sents);
    let ppl = v.unigram_perplexity(&s, &s);
    assert!(
        ppl > 5.0 && ppl < v.len() as f64,
        "unigram ppl {ppl} vs vocab {}",
        v.len()
    );
}

#[test]
fn cli_sample_prints_valid_conllu_of_the_synthetic_corpus() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_asa-lth"))
        .args(["sample", "--sentences", "25", "--corpus-seed", "9"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed = conllu::parse(&text, Path::new("sample.conllu")).unwrap();
    assert_eq!(parsed, synthetic::generate(25, 9));
}
