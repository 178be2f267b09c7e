//! GPT-2 BPE tokenisation, causal tagging of WikiText-2 text, and the configuration surface
//! of both (defaults keep old configs, vocabularies and hashes as they were).

use asa_lth::backend::cpu::Cpu;
use asa_lth::data::tags::tag_line;
use asa_lth::data::vocab::{gpt2_decode, gpt2_encode_word, GPT2_EOS, GPT2_VOCAB};
use asa_lth::data::{CorpusSource, EvalWindows, Sentence, TagsChoice, Tokenizer, Vocab};
use asa_lth::experiments::{ReproduceConfig, Scale};
use asa_lth::ling::tagger::RuleTagger;
use asa_lth::ling::Upos;
use asa_lth::train::{self, AttnMaskKind, RunOptions, TrainConfig};
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-tokenizer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// WikiText-2-like lines (leading space, `@-@`/`@,@`/`@.@` joiners, `<unk>`, headings).
const LINES: [&str; 5] = [
    " = Valkyria Chronicles III = ",
    " Senjō no Valkyria 3 : <unk> Chronicles ( Japanese : 戦場のヴァルキュリア3 ) is a tactical role @-@ playing video game . ",
    " It sold 1 @,@ 000 copies at 3 @.@ 5 dollars ; the critics were n't impressed . He left . ",
    " The game 's battle system , the BliTZ system , is carried over directly from <unk> . ",
    " Unbelievably , antidisestablishmentarianism was discussed ! Was it ? ",
];

fn sentences() -> Vec<Sentence> {
    LINES
        .iter()
        .map(|l| Sentence {
            words: l.split_whitespace().map(str::to_string).collect(),
            upos: None,
            heads: None,
        })
        .collect()
}

fn write_wikitext(dir: &Path, repeat: usize) {
    let mut text = String::new();
    for _ in 0..repeat {
        for l in LINES {
            text.push_str(l);
            text.push_str("\n \n");
        }
    }
    for split in ["train", "valid", "test"] {
        std::fs::write(dir.join(format!("wiki.{split}.tokens")), &text).unwrap();
    }
}

#[test]
fn gpt2_ids_are_the_published_ones() {
    let v = Vocab::gpt2();
    assert_eq!(v.len(), GPT2_VOCAB);
    assert_eq!(v.tokenizer(), Tokenizer::Gpt2);
    assert_eq!(v.eos(), GPT2_EOS);
    assert_eq!(v.unk(), None);
    assert_eq!(v.word(GPT2_EOS), "<|endoftext|>");
    // Well-known GPT-2 ids: " world" = 995, " the" = 262, " Hello" = 18435.
    assert_eq!(gpt2_encode_word("world"), vec![995]);
    assert_eq!(gpt2_encode_word("the"), vec![262]);
    assert_eq!(gpt2_encode_word("Hello"), vec![18435]);
    assert_eq!(v.word(995), " world");
    assert_eq!(v.id(" world"), 995);
    // The word-level vocabulary is untouched.
    let w = Vocab::build(&sentences(), 1).unwrap();
    assert_eq!((w.eos(), w.unk()), (1, Some(0)));
    assert_eq!(w.tokenizer(), Tokenizer::Word);
}

#[test]
fn bpe_round_trips_wikitext_lines() {
    let sents = sentences();
    let v = Vocab::gpt2();
    let s = v.encode(&sents);
    assert_eq!(s.eos, GPT2_EOS);
    assert!(s.ids.iter().all(|&id| (id as usize) < GPT2_VOCAB));
    // One <|endoftext|> per line, and the ids between decode to the line with single spaces.
    let lines: Vec<&[u32]> = s.ids.split(|&id| id == GPT2_EOS).collect();
    assert_eq!(lines.len(), sents.len() + 1);
    assert!(lines[sents.len()].is_empty());
    for (ids, sent) in lines.iter().zip(&sents) {
        assert_eq!(gpt2_decode(ids), format!(" {}", sent.words.join(" ")));
    }
    // More BPE tokens than words (subwords, the joiners, <unk> as `<`, `unk`, `>`).
    let words: usize = sents.iter().map(|s| s.words.len()).sum();
    assert!(s.len() > words + sents.len());
    assert_eq!(gpt2_encode_word("<unk>").len(), 3);
    assert_eq!(gpt2_decode(&gpt2_encode_word("@-@")), " @-@");
}

#[test]
fn subwords_inherit_their_words_tag_and_head() {
    let words: Vec<String> = [
        "Unbelievably",
        "antidisestablishmentarianism",
        "@-@",
        "ran",
        ".",
    ]
    .map(String::from)
    .to_vec();
    let tags = vec![Upos::Adv, Upos::Noun, Upos::Punct, Upos::Verb, Upos::Punct];
    let heads = vec![4, 4, 2, 0, 4];
    let sent = Sentence {
        words: words.clone(),
        upos: Some(tags.clone()),
        heads: Some(heads.clone()),
    };
    // Two sentences, so head positions are absolute in the stream.
    let s = Vocab::gpt2().encode(&[sent.clone(), sent]);
    let pieces: Vec<usize> = words.iter().map(|w| gpt2_encode_word(w).len()).collect();
    assert!(pieces[1] > 1, "a long word splits into subwords");
    let per_sent = pieces.iter().sum::<usize>() + 1;
    assert_eq!(s.len(), 2 * per_sent);
    for k in 0..2 {
        let base = k * per_sent;
        let mut first = vec![];
        let mut p = base;
        for &n in &pieces {
            first.push(p as u32);
            p += n;
        }
        let mut p = base;
        for (i, &n) in pieces.iter().enumerate() {
            for _ in 0..n {
                assert_eq!(s.upos[p], Some(tags[i]), "token {p} of word {i}");
                let want = (heads[i] > 0).then(|| first[heads[i] as usize - 1]);
                assert_eq!(s.heads[p], want, "head of token {p} (word {i})");
                p += 1;
            }
        }
        assert_eq!(s.ids[p], GPT2_EOS);
        assert_eq!(s.upos[p], Some(Upos::Punct));
        assert_eq!(s.heads[p], None);
    }
    // Untagged text stays untagged.
    let bare = Vocab::gpt2().encode(&sentences());
    assert!(bare.upos.iter().all(Option::is_none));
    assert!(bare.heads.iter().all(Option::is_none));
}

#[test]
fn gpt2_vocab_file_round_trips_and_word_level_file_is_unchanged() {
    let d = tmpdir("vocab");
    let g = Vocab::gpt2();
    g.save(&d.join("g.json")).unwrap();
    let text = std::fs::read_to_string(d.join("g.json")).unwrap();
    assert!(text.contains("\"tokenizer\":\"gpt2\""), "{text}");
    assert!(text.len() < 100, "the fixed ids are not written out");
    assert_eq!(Vocab::load(&d.join("g.json")).unwrap(), g);
    let w = Vocab::build(&sentences(), 1).unwrap();
    w.save(&d.join("w.json")).unwrap();
    let text = std::fs::read_to_string(d.join("w.json")).unwrap();
    assert!(
        text.starts_with("{\"format\":1,\"words\":[\"<unk>\",\"<eos>\","),
        "{text}"
    );
    assert_eq!(Vocab::load(&d.join("w.json")).unwrap(), w);
    // Batches over a GPT-2 stream pad with <|endoftext|>, never with a word-level id.
    let s = g.encode(&sentences());
    let last = EvalWindows::new(&s, 4, 64).unwrap().last().unwrap();
    let pad = last.targets.iter().position(|&y| y == u32::MAX).unwrap();
    assert!(last.tokens[pad..].iter().all(|&x| x == GPT2_EOS));
}

#[test]
fn wikitext_tags_are_leak_free_and_segment_at_sentence_ends() {
    let t = RuleTagger;
    for sent in sentences() {
        let tags = tag_line(&t, &sent.words);
        assert_eq!(tags.len(), sent.words.len());
        // Leak-freedom: the tags of every prefix are the prefix of the tags, and changing
        // the words after position i never changes tag i.
        for i in 1..=sent.words.len() {
            assert_eq!(tag_line(&t, &sent.words[..i]), tags[..i]);
            let mut changed = sent.words[..i].to_vec();
            changed.extend(["Zebra", "ran", "."].map(String::from));
            assert_eq!(tag_line(&t, &changed)[..i], tags[..i]);
        }
        for (w, &u) in sent.words.iter().zip(&tags) {
            if matches!(w.as_str(), "@-@" | "@,@" | "@.@" | "." | "," | "!" | "?") {
                assert_eq!(u, Upos::Punct, "{w}");
            }
        }
    }
    // A word after `.` is sentence-initial (a new tagger segment), after `@.@` it is not.
    let w = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let a = tag_line(&t, &w("He left . The dog ran ."));
    let b = tag_line(&t, &w("The dog ran ."));
    assert_eq!(a[3..], b[..]);
    assert_eq!(
        TagsChoice::Rules.tagger(false).unwrap().unwrap().name(),
        "rules"
    );
}

fn tiny(corpus: CorpusSource, tokenizer: Tokenizer) -> TrainConfig {
    TrainConfig {
        corpus,
        tokenizer,
        n_layer: 2,
        n_head: 2,
        d_model: 32,
        batch: 2,
        seq_len: 16,
        steps: 3,
        warmup: 1,
        eval_every: 0,
        eval_tokens: 64,
        checkpoint_every: 0,
        attn_mask: AttnMaskKind::Asa,
        ..TrainConfig::default()
    }
}

fn run_opts(dir: &Path) -> RunOptions {
    RunOptions {
        out_dir: dir.to_path_buf(),
        resume: false,
        progress: false,
        command: "test".into(),
        stop_after: None,
    }
}

#[test]
fn tagged_wikitext_trains_with_the_asa_mask_word_and_gpt2() {
    let w = tmpdir("wt");
    write_wikitext(&w, 4);
    let src = CorpusSource::Wikitext2 { dir: w.clone() };
    let c = src.load().unwrap();
    // WikiText has no annotation: the run's tagger tags it when it is encoded.
    assert!(c.train[0].upos.is_none());
    let rules = TagsChoice::Rules.tagger(false).unwrap().unwrap();
    let v = Vocab::build(&c.train, 1).unwrap();
    for split in [&c.train, &c.valid, &c.test] {
        let st = v.encode_tagged(split, Some(&*rules));
        assert!(st.upos.iter().all(Option::is_some));
        assert_eq!(st.upos.len(), st.ids.len());
    }

    for tok in [Tokenizer::Word, Tokenizer::Gpt2] {
        let cfg = TrainConfig {
            tags: TagsChoice::Rules,
            ..tiny(src.clone(), tok)
        };
        let out = tmpdir(&format!("wt-run-{tok}"));
        let r = train::run(Cpu, &cfg, &run_opts(&out)).unwrap();
        assert!(r.finished);
        assert_eq!(r.steps_done, 3);
        let ppl = r.final_valid_perplexity.unwrap();
        assert!(ppl.is_finite() && ppl > 1.0, "{tok}: {ppl}");
        let v = Vocab::load(&out.join("vocab.json")).unwrap();
        assert_eq!(v.tokenizer(), tok);
        assert_eq!(r.model.vocab, v.len());
        if tok == Tokenizer::Gpt2 {
            assert_eq!(r.model.vocab, GPT2_VOCAB);
            let words: usize = c.valid.iter().map(|s| s.words.len() + 1).sum();
            assert!(r.valid_tokens > words, "perplexity is per BPE token");
        }
        // The saved config names the tokenizer (gpt2) and the tagger; word level leaves the
        // tokenizer out.
        let json = serde_json::to_string(&r.config).unwrap();
        assert_eq!(
            json.contains("\"tokenizer\""),
            tok == Tokenizer::Gpt2,
            "{json}"
        );
        assert!(json.contains("\"tags\":\"rules\""), "{json}");
        assert!(r.tags.starts_with("tags rules"), "{}", r.tags);
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
    }
}

#[test]
fn configs_without_the_new_fields_keep_the_old_behaviour() {
    // An old WikiText-2 config: no tokenizer, no tagger.
    let json = r#"{"corpus":{"kind":"wikitext2","dir":"/data/wt2"},"min_count":1,
        "n_layer":2,"n_head":2,"d_model":128,"batch":16,"seq_len":128,"steps":2000,
        "lr":0.003,"min_lr_frac":0.1,"warmup":50,
        "opt":{"beta1":0.9,"beta2":0.95,"eps":1e-8,"weight_decay":0.1,"grad_clip":1.0},
        "eval_every":100,"eval_tokens":16384,"checkpoint_every":100,"seed":1}"#;
    let cfg: TrainConfig = serde_json::from_str(json).unwrap();
    let def = TrainConfig::default();
    assert_eq!(cfg.tokenizer, Tokenizer::Word);
    assert_eq!(
        cfg.corpus,
        CorpusSource::Wikitext2 {
            dir: "/data/wt2".into()
        }
    );
    // A config from before `tags` existed used the corpus's gold tags: it reads as gold (so
    // a masked run from then is refused as leaky, not silently re-tagged).
    assert_eq!(cfg.tags, TagsChoice::Gold);
    // Tags are always written; the other new keys only away from their defaults.
    let back = serde_json::to_string(&cfg).unwrap();
    assert!(back.contains("\"tags\":\"gold\""), "{back}");
    assert!(
        !back.contains("tokenizer") && !back.contains("compat"),
        "{back}"
    );
    let d = serde_json::to_string(&def).unwrap();
    assert!(
        !d.contains("tokenizer") && d.contains("\"tags\":\"builtin\""),
        "{d}"
    );
    // The tags' JSON and command-line forms.
    for (t, j) in [
        (TagsChoice::Builtin, r#""builtin""#),
        (TagsChoice::Rules, r#""rules""#),
        (TagsChoice::Gold, r#""gold""#),
        (
            TagsChoice::Model("m/tagger.json".into()),
            r#""model:m/tagger.json""#,
        ),
    ] {
        assert_eq!(serde_json::to_string(&t).unwrap(), j);
        assert_eq!(serde_json::from_str::<TagsChoice>(j).unwrap(), t);
        assert_eq!(t.name().parse::<TagsChoice>().unwrap(), t);
    }
    for bad in ["", "x.json", "model:", "Gold"] {
        let e = bad.parse::<TagsChoice>().unwrap_err().to_string();
        assert!(
            e.contains("builtin, rules, gold or model:PATH"),
            "{bad}: {e}"
        );
    }
    assert_eq!("gpt2".parse::<Tokenizer>().unwrap(), Tokenizer::Gpt2);
    assert!("bpe".parse::<Tokenizer>().is_err());
    // A differing tokenizer is reported as a config difference.
    let g = TrainConfig {
        tokenizer: Tokenizer::Gpt2,
        ..def.clone()
    };
    assert!(def
        .differences(&g)
        .iter()
        .any(|d| d.starts_with("tokenizer")));
    assert!(def.differences(&def).is_empty());
}

#[test]
fn paper_preset_on_wikitext_uses_gpt2_and_the_builtin_tagger() {
    let wt = || CorpusSource::Wikitext2 {
        dir: "/data/wt2".into(),
    };
    let p = ReproduceConfig::preset(Scale::Paper, Some(wt()));
    assert_eq!(p.train.tokenizer, Tokenizer::Gpt2);
    assert_eq!(p.train.corpus, wt());
    assert_eq!(p.train.tags, TagsChoice::Builtin);
    assert_eq!(
        (p.train.n_layer, p.train.n_head, p.train.d_model),
        (2, 2, 128)
    );
    // Small scale on WikiText-2: built-in tags, word level.
    let s = ReproduceConfig::preset(Scale::Small, Some(wt()));
    assert_eq!(s.train.tokenizer, Tokenizer::Word);
    assert_eq!(s.train.tags, TagsChoice::Builtin);
    // The synthetic presets are untouched.
    for scale in [Scale::Small, Scale::Paper] {
        let c = ReproduceConfig::preset(scale, None);
        assert_eq!(c.train.tokenizer, Tokenizer::Word);
        assert!(!serde_json::to_string(&c).unwrap().contains("tokenizer"));
    }
}
