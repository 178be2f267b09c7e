//! The leak property (issue 18): in a causal language model, whatever shapes position `i` —
//! its tag, its mask row, the mask bits of keys `≤ i`, the binding refinement, E4's bias
//! inputs, the nulls — must depend on tokens `≤ i` only. For every corpus kind (synthetic, a
//! WikiText-format fixture, a CoNLL-U fixture) × tokenizer (word, gpt2) × tags choice
//! (builtin, rules, model:PATH of each trainable kind), at random positions `i`, everything
//! after `i` is replaced at random and the outputs at `≤ i` are compared. The last tests plant
//! leaks (the old whole-word BPE tags, a tagger that peeks one piece ahead, the exact
//! distance null) and check that the same harness catches each.

use asa_lth::data::batch::{Batch, NO_TAG};
use asa_lth::data::tags::{tag_pieces, Piece};
use asa_lth::data::vocab::gpt2_partial_words;
use asa_lth::data::{synthetic, wikitext, Sentence, TagsChoice, TokenStream, Tokenizer, Vocab};
use asa_lth::ling::compat_choice::{CompatChoice, Refinement};
use asa_lth::ling::tagger::{LexiconTagger, PerceptronTagger, Tagger, TrainOptions};
use asa_lth::ling::Upos;
use asa_lth::mask::asa::CrossSentence;
use asa_lth::mask::nulls;
use asa_lth::rng::Rng;
use asa_lth::train::{AttnMaskKind, MaskPlan, TrainConfig};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

fn manifest() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-leak-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The committed EWT excerpt (real English, CC BY-SA 4.0, see its README).
fn ewt_excerpt() -> PathBuf {
    manifest().join("tests/fixtures/ewt-excerpt")
}

/// WikiText-2-format lines: headings, `@-@`/`@,@`/`@.@` joiners, `<unk>`, several sentences
/// per line.
const WIKI_LINES: &[&str] = &[
    " = Valkyria Chronicles III = ",
    " The game began development in 2010 , carrying over a large portion of the work done on \
     Valkyria Chronicles II . It was released in January 2011 in Japan . ",
    " Senjō no Valkyria 3 : <unk> Chronicles is a tactical role @-@ playing video game \
     developed by Sega and Media.Vision for the PlayStation Portable . ",
    " The population grew to 1 @,@ 250 @,@ 000 by 1950 , about 3 @.@ 5 times the figure of \
     1900 ! Why did it grow ? Nobody knows . ",
    " = = Reception = = ",
    " Critics praised the story , but she said that the controls were unwieldy and that it \
     would have been better to release it later . ",
];

fn wikitext_fixture() -> Vec<Sentence> {
    let d = tmpdir("wt");
    let text: String = WIKI_LINES.iter().map(|l| format!("{l}\n \n")).collect();
    std::fs::write(d.join("wiki.valid.tokens"), text).unwrap();
    wikitext::load_file(&d.join("wiki.valid.tokens")).unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Synthetic,
    Wikitext,
    Conllu,
}

fn corpus(kind: Kind) -> Vec<Sentence> {
    match kind {
        Kind::Synthetic => synthetic::generate(30, 11),
        Kind::Wikitext => wikitext_fixture(),
        Kind::Conllu => {
            let s = asa_lth::ling::conllu::load_file(&ewt_excerpt().join("en_ewt-ud-dev.conllu"))
                .unwrap();
            s[..30].to_vec()
        }
    }
}

/// Every tags choice with its tagger: builtin, rules, and saved models of each trainable
/// kind (trained on the EWT excerpt, loaded back from disk as `model:PATH`).
fn taggers(kind: Kind) -> Vec<(String, Arc<dyn Tagger>)> {
    static MODELS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (lex, perc) = MODELS.get_or_init(|| {
        let train = asa_lth::ling::conllu::load_file(&ewt_excerpt().join("en_ewt-ud-train.conllu"))
            .unwrap();
        let d = tmpdir("models");
        let lex = d.join("lexicon.json");
        let perc = d.join("perceptron.json");
        LexiconTagger::train(&train).unwrap().save(&lex).unwrap();
        let opts = TrainOptions {
            iterations: 3,
            ..TrainOptions::default()
        };
        PerceptronTagger::train(&train, &opts)
            .unwrap()
            .save(&perc)
            .unwrap();
        (lex, perc)
    });
    let synthetic = kind == Kind::Synthetic;
    [
        TagsChoice::Builtin,
        TagsChoice::Rules,
        TagsChoice::Model(lex.clone()),
        TagsChoice::Model(perc.clone()),
    ]
    .into_iter()
    .map(|c| (c.name(), c.tagger(synthetic).unwrap().unwrap()))
    .collect()
}

fn gpt2() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(Vocab::gpt2)
}

fn vocab(tok: Tokenizer, sents: &[Sentence]) -> Vocab {
    match tok {
        Tokenizer::Word => Vocab::build(sents, 1).unwrap(),
        Tokenizer::Gpt2 => gpt2().clone(),
    }
}

/// Tokens per word (word level 1, GPT-2 its BPE pieces) and the stream position of every
/// (sentence, word): `(sentence, word, first position, pieces)` in stream order.
fn layout(tok: Tokenizer, sents: &[Sentence]) -> Vec<(usize, usize, usize, usize)> {
    let mut v = Vec::new();
    let mut pos = 0;
    for (si, s) in sents.iter().enumerate() {
        for (wi, w) in s.words.iter().enumerate() {
            let n = match tok {
                Tokenizer::Word => 1,
                Tokenizer::Gpt2 => gpt2_partial_words(w).len(),
            };
            v.push((si, wi, pos, n));
            pos += n;
        }
        pos += 1; // end of sentence
    }
    v
}

/// The pieces `encode_tagged` feeds the tag rule, rebuilt independently from the words.
fn pieces_of(tok: Tokenizer, sents: &[Sentence]) -> Vec<(String, bool, bool)> {
    let mut v = Vec::new();
    for s in sents {
        for w in &s.words {
            match tok {
                Tokenizer::Word => v.push((w.clone(), true, false)),
                Tokenizer::Gpt2 => {
                    for (k, p) in gpt2_partial_words(w).into_iter().enumerate() {
                        v.push((p, k == 0, false));
                    }
                }
            }
        }
        v.push((String::new(), true, true));
    }
    v
}

fn as_pieces(v: &[(String, bool, bool)]) -> Vec<Piece<'_>> {
    v.iter()
        .map(|(t, s, e)| Piece {
            word_so_far: t,
            starts_word: *s,
            eos: *e,
        })
        .collect()
}

const POOL: &[&str] = &[
    "the",
    "that",
    "to",
    "running",
    "Paris",
    "3",
    ".",
    "!",
    "un",
    "believable",
    "she",
    "of",
    "@-@",
    "dogs",
    "quickly",
    ",",
    "would",
    "Zebra",
    "ness",
    "re",
];

fn random_words(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| POOL[rng.below(POOL.len())].to_string())
        .collect()
}

/// `sents` with every word after word `wi` of sentence `si` replaced at random (and a random
/// number of them), and every later sentence replaced by random words.
fn change_after(rng: &mut Rng, sents: &[Sentence], si: usize, wi: usize) -> Vec<Sentence> {
    let mut out: Vec<Sentence> = sents[..si].to_vec();
    let mut words = sents[si].words[..=wi].to_vec();
    let extra = rng.below(6);
    words.extend(random_words(rng, extra));
    out.push(Sentence {
        words,
        upos: None,
        heads: None,
    });
    for _ in si + 1..sents.len() + rng.below(3) {
        let n = 1 + rng.below(12);
        out.push(Sentence {
            words: random_words(rng, n),
            upos: None,
            heads: None,
        });
    }
    out
}

/// The first stream position `≤ i` whose tag changed, if any.
fn first_diff(a: &TokenStream, b: &TokenStream, i: usize) -> Option<usize> {
    (0..=i).find(|&p| a.ids[p] != b.ids[p] || a.upos[p] != b.upos[p])
}

#[test]
fn tags_of_every_corpus_tokenizer_and_tagger_ignore_the_future() {
    let mut rng = Rng::new(0x1EA4);
    for kind in [Kind::Synthetic, Kind::Wikitext, Kind::Conllu] {
        let sents = corpus(kind);
        for tok in [Tokenizer::Word, Tokenizer::Gpt2] {
            let v = vocab(tok, &sents);
            let lay = layout(tok, &sents);
            let owned = pieces_of(tok, &sents);
            for (name, t) in taggers(kind) {
                let what = format!("{kind:?} × {tok} × {name}");
                let base = v.encode_tagged(&sents, Some(&*t));
                // The production stream is the tag rule over these pieces.
                let by_rule = tag_pieces(&*t, &as_pieces(&owned));
                let got: Vec<Upos> = base.upos.iter().map(|u| u.unwrap()).collect();
                assert_eq!(got, by_rule, "{what}: encode_tagged ≠ tag_pieces");
                for _ in 0..12 {
                    // Whole words after a random word (the word level's "tokens after i").
                    let (si, wi, first, n) = lay[rng.below(lay.len())];
                    let i = first + n - 1;
                    let changed = change_after(&mut rng, &sents, si, wi);
                    let other = v.encode_tagged(&changed, Some(&*t));
                    assert_eq!(first_diff(&base, &other, i), None, "{what}: position {i}");
                    // Pieces after a random piece, mid-word included (BPE).
                    let i = rng.below(owned.len());
                    let mut p = owned[..=i].to_vec();
                    for _ in 0..rng.below(8) {
                        let w = random_words(&mut rng, 1).remove(0);
                        let cont = rng.bernoulli(0.5);
                        let text = if cont {
                            format!("{}{}", p.last().unwrap().0, w)
                        } else {
                            w
                        };
                        p.push((text, !cont, rng.bernoulli(0.1)));
                    }
                    let tags = tag_pieces(&*t, &as_pieces(&p));
                    assert_eq!(tags[..=i], by_rule[..=i], "{what}: piece {i}");
                }
            }
        }
    }
}

/// A window of `t` tokens from `start` as a batch (tags as the run would see them).
fn window(s: &TokenStream, start: usize, t: usize) -> Batch {
    Batch {
        b: 1,
        t,
        tokens: s.ids[start..start + t].to_vec(),
        targets: s.ids[start + 1..start + t + 1].to_vec(),
        upos: s.upos[start..start + t]
            .iter()
            .map(|u| u.map_or(NO_TAG, |u| u as u8))
            .collect(),
        heads: vec![-1; t],
    }
}

/// Mask words of one row of a `1 × H × T` mask.
fn row(words: &[u32], t: usize, h: usize, i: usize) -> Vec<u32> {
    let w = t.div_ceil(32);
    words[(h * t + i) * w..(h * t + i + 1) * w].to_vec()
}

fn bit(words: &[u32], t: usize, h: usize, i: usize, j: usize) -> bool {
    let w = t.div_ceil(32);
    words[(h * t + i) * w + j / 32] >> (j % 32) & 1 != 0
}

/// A per-head compat file (two different matrices) for the masks below.
fn per_head_compat() -> PathBuf {
    let d = tmpdir("compat");
    let p = d.join("heads.json");
    let json = r#"{"format":1,"kind":"asa-lth-compat-heads","heads":[
        {"allowed":{"NOUN":["DET","ADJ","VERB"],"VERB":["NOUN","PRON","ADV"],"PRON":["VERB"]}},
        {"allowed":{"ADP":["NOUN","PROPN"],"DET":["NOUN"],"AUX":["VERB"]}}]}"#;
    std::fs::write(&p, json).unwrap();
    p
}

#[test]
fn masks_refinements_bias_inputs_and_nulls_ignore_the_future() {
    let mut rng = Rng::new(0xA5A);
    let heads_file = per_head_compat();
    let t = 48;
    let mut checked = 0;
    for kind in [Kind::Synthetic, Kind::Wikitext, Kind::Conllu] {
        let sents = corpus(kind);
        for tok in [Tokenizer::Word, Tokenizer::Gpt2] {
            let v = vocab(tok, &sents);
            let lay = layout(tok, &sents);
            let (name, tagger) = taggers(kind).remove(0);
            let base = v.encode_tagged(&sents, Some(&*tagger));
            for (compat, refine, cross) in [
                (CompatChoice::Builtin, vec![], CrossSentence::Compat),
                (
                    CompatChoice::Builtin,
                    vec![Refinement::Binding],
                    CrossSentence::Compat,
                ),
                (
                    CompatChoice::Builtin,
                    vec![Refinement::Binding],
                    CrossSentence::Allow,
                ),
                (
                    CompatChoice::File(heads_file.clone()),
                    vec![],
                    CrossSentence::Block,
                ),
                (
                    CompatChoice::Derived {
                        treebank: ewt_excerpt(),
                        coverage: Some(0.8),
                    },
                    vec![Refinement::Binding],
                    CrossSentence::Compat,
                ),
            ] {
                for mask in [
                    AttnMaskKind::Asa,
                    AttnMaskKind::NullRows,
                    AttnMaskKind::NullDist,
                ] {
                    let cfg = TrainConfig {
                        attn_mask: mask,
                        compat: compat.clone(),
                        refine: refine.clone(),
                        cross_sentence: cross,
                        ..TrainConfig::default()
                    };
                    let plan = MaskPlan::new(&cfg, &v).unwrap();
                    let what = format!(
                        "{kind:?} × {tok} × {name} × {compat} {refine:?} {cross} × {mask:?}"
                    );
                    for _ in 0..6 {
                        let (si, wi, first, n) = lay[rng.below(lay.len())];
                        let i = first + n - 1;
                        if i + t + 2 > base.len() {
                            continue;
                        }
                        // A window that holds position i and some of its future.
                        let start = i.saturating_sub(rng.below(t - 1));
                        let changed = v
                            .encode_tagged(&change_after(&mut rng, &sents, si, wi), Some(&*tagger));
                        if changed.len() < start + t + 1 {
                            continue;
                        }
                        let (wa, wb) = (window(&base, start, t), window(&changed, start, t));
                        let li = i - start;
                        checked += 1;
                        // E4's bias inputs are the window's tags.
                        assert_eq!(wa.upos[..=li], wb.upos[..=li], "{what}: tags");
                        let salt = rng.next_u64();
                        let ma = plan.words(&wa, salt).unwrap().unwrap();
                        let mb = plan.words(&wb, salt).unwrap().unwrap();
                        let heads = ma.len() / (t * t.div_ceil(32));
                        for h in 0..heads {
                            for r in 0..=li {
                                assert_eq!(
                                    row(&ma, t, h, r),
                                    row(&mb, t, h, r),
                                    "{what}: head {h} row {r} (changed after {li})"
                                );
                            }
                            // Keys ≤ i of later rows whose own token and tag are unchanged:
                            // the key side of the tag rule sees nothing of the future. (Under
                            // allow/block row r also depends on where its sentence starts, a
                            // token ≤ r: causal for row r, so not checked here.)
                            if mask == AttnMaskKind::Asa
                                && refine.is_empty()
                                && cross == CrossSentence::Compat
                            {
                                for r in li + 1..t {
                                    if wa.tokens[r] == wb.tokens[r] && wa.upos[r] == wb.upos[r] {
                                        for j in 0..=li {
                                            assert_eq!(
                                                bit(&ma, t, h, r, j),
                                                bit(&mb, t, h, r, j),
                                                "{what}: head {h} row {r} key {j}"
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // Most draws must have produced a comparison (windows that fit).
    assert!(checked >= 150, "only {checked} windows compared");
}

/// The harness of the tag tests as a function: the first position `≤ i` whose output changes
/// when the pieces after `i` are replaced at random (None: no leak found).
fn find_leak(
    f: &dyn Fn(&[Piece]) -> Vec<Upos>,
    owned: &[(String, bool, bool)],
    seed: u64,
) -> Option<usize> {
    let mut rng = Rng::new(seed);
    let base = f(&as_pieces(owned));
    for _ in 0..200 {
        let i = rng.below(owned.len());
        let mut p = owned[..=i].to_vec();
        let w = random_words(&mut rng, 1).remove(0);
        let cont = rng.bernoulli(0.5);
        let text = if cont { format!("{}{}", p[i].0, w) } else { w };
        p.push((text, !cont, false));
        let out = f(&as_pieces(&p));
        if let Some(d) = (0..=i).find(|&k| out[k] != base[k]) {
            return Some(d);
        }
    }
    None
}

#[test]
fn the_harness_catches_planted_leaks() {
    let sents = corpus(Kind::Conllu);
    let owned = pieces_of(Tokenizer::Gpt2, &sents);
    let t = TagsChoice::Rules.tagger(false).unwrap().unwrap();
    // The rule as built passes.
    let honest = |p: &[Piece]| tag_pieces(&*t, p);
    assert_eq!(find_leak(&honest, &owned, 1), None);
    // Planted leak 1: the old BPE rule — every piece carries its whole word's tag.
    let whole_word = |p: &[Piece]| {
        let mut tags = tag_pieces(&*t, p);
        let mut k = tags.len();
        let mut word_tag = None;
        while k > 0 {
            k -= 1;
            let last_of_word = k + 1 == p.len() || p[k + 1].starts_word || p[k + 1].eos;
            if last_of_word {
                word_tag = Some(tags[k]);
            }
            if let Some(w) = word_tag {
                tags[k] = w;
            }
        }
        tags
    };
    let at = find_leak(&whole_word, &owned, 1);
    println!("planted leak (whole-word BPE tags) caught at position {at:?}");
    assert!(at.is_some(), "the harness missed the whole-word BPE leak");
    // Planted leak 2: a tagger that peeks at the next piece (`that` + a noun → DET).
    let peek = |p: &[Piece]| {
        let mut tags = tag_pieces(&*t, p);
        for k in 0..p.len().saturating_sub(1) {
            if p[k + 1].starts_word && p[k + 1].word_so_far.ends_with('s') {
                tags[k] = Upos::Det;
            }
        }
        tags
    };
    let at = find_leak(&peek, &owned, 2);
    println!("planted leak (one piece of right context) caught at position {at:?}");
    assert!(at.is_some(), "the harness missed a one-piece look-ahead");
    // Planted leak 3: the exact distance-matched null (E1's measurement null), whose
    // histogram is a property of the whole window, is not causal — which is why training
    // uses `distance_causal`. The mask test's comparison finds it.
    let v = vocab(Tokenizer::Word, &sents);
    let tagger = TagsChoice::Rules.tagger(false).unwrap().unwrap();
    let base = v.encode_tagged(&sents, Some(&*tagger));
    let builder = asa_lth::mask::AsaMaskBuilder::new(&CompatChoice::Builtin.load().unwrap().0);
    let lay = layout(Tokenizer::Word, &sents);
    let mut rng = Rng::new(3);
    let mut caught = 0;
    for _ in 0..20 {
        let (si, wi, first, _) = lay[rng.below(lay.len() / 2)];
        let changed = v.encode_tagged(&change_after(&mut rng, &sents, si, wi), Some(&*tagger));
        let (wa, wb) = (window(&base, 0, 64), window(&changed, 0, 64));
        let na = nulls::distance_matched(
            &builder.build_for_batch(&wa).unwrap(),
            &nulls::valid_from_targets(&wa.targets),
            9,
        )
        .unwrap();
        let nb = nulls::distance_matched(
            &builder.build_for_batch(&wb).unwrap(),
            &nulls::valid_from_targets(&wb.targets),
            9,
        )
        .unwrap();
        let ca = nulls::distance_causal(
            &builder.build_for_batch(&wa).unwrap(),
            &nulls::valid_from_targets(&wa.targets),
            9,
        )
        .unwrap();
        let cb = nulls::distance_causal(
            &builder.build_for_batch(&wb).unwrap(),
            &nulls::valid_from_targets(&wb.targets),
            9,
        )
        .unwrap();
        let rows_equal = |x: &asa_lth::mask::BitMask, y: &asa_lth::mask::BitMask| {
            (0..=first).all(|r| (0..=r).all(|j| x.get(0, 0, r, j) == y.get(0, 0, r, j)))
        };
        if first < 64 {
            assert!(rows_equal(&ca, &cb), "distance_causal leaked at {first}");
            caught += usize::from(!rows_equal(&na, &nb));
        }
    }
    println!("planted leak (exact distance null in training) caught in {caught} of 20 trials");
    assert!(
        caught > 0,
        "the harness missed the exact distance null's look-ahead"
    );
}

#[test]
fn gold_tags_are_refused_for_masked_and_biased_training_unless_a_leak_study() {
    let base = TrainConfig {
        tags: TagsChoice::Gold,
        ..TrainConfig::default()
    };
    // Dense training does not use tags: gold is harmless there.
    base.validate().unwrap();
    for cfg in [
        TrainConfig {
            attn_mask: AttnMaskKind::Asa,
            ..base.clone()
        },
        TrainConfig {
            attn_mask: AttnMaskKind::NullRows,
            ..base.clone()
        },
        TrainConfig {
            tag_bias: asa_lth::model::tag_bias::TagBiasInit::Zero,
            ..base.clone()
        },
    ] {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(
            e.contains("leak the future") && e.contains("--allow-gold-train"),
            "{e}"
        );
        let study = TrainConfig {
            allow_gold_train: true,
            ..cfg
        };
        study.validate().unwrap();
        assert!(study.is_leaky());
        assert!(
            study.tags_label().contains("LEAKY"),
            "{}",
            study.tags_label()
        );
    }
}

#[test]
fn bad_compat_choices_get_named_errors() {
    let d = tmpdir("badcompat");
    for (arg, want) in [
        ("derived:x@0", "outside (0, 1]"),
        ("derived:x@1.5", "outside (0, 1]"),
        ("derived:x@NaN", "outside (0, 1]"),
        ("derived:x@most", "not a number"),
        ("derived:", "no treebank"),
    ] {
        let e = arg.parse::<CompatChoice>().unwrap_err().to_string();
        assert!(e.contains(want), "{arg}: {e}");
    }
    // A compat file with an unknown tag name.
    let f = d.join("bad.json");
    std::fs::write(&f, r#"{"format":1,"allowed":{"NOUN":["DETERMINER"]}}"#).unwrap();
    let e = CompatChoice::File(f).load().unwrap_err().to_string();
    assert!(e.contains("DETERMINER") && e.contains("bad.json"), "{e}");
    // A treebank without a HEAD column.
    let tb = d.join("nohead.conllu");
    std::fs::write(
        &tb,
        "1\tThe\tthe\tDET\t_\t_\t_\t_\t_\t_\n2\tdog\tdog\tNOUN\t_\t_\t_\t_\t_\t_\n\n",
    )
    .unwrap();
    let e = format!("derived:{}", tb.display())
        .parse::<CompatChoice>()
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.contains("nohead.conllu") && e.contains("HEAD"), "{e}");
    // A missing treebank, and a directory without a train file.
    let e = "derived:/nonexistent/tb"
        .parse::<CompatChoice>()
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/tb"), "{e}");
    let e = format!("derived:{}", d.display())
        .parse::<CompatChoice>()
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.contains("-ud-train.conllu"), "{e}");
    // Derived to a coverage: the kept pairs cover at least that share, and more coverage
    // never means fewer pairs.
    let (lo, _) = "derived:tests/fixtures/ewt-excerpt@0.6"
        .replace("tests", &manifest().join("tests").display().to_string())
        .parse::<CompatChoice>()
        .unwrap()
        .load()
        .unwrap();
    let (hi, desc) = format!("derived:{}@0.95", ewt_excerpt().display())
        .parse::<CompatChoice>()
        .unwrap()
        .load()
        .unwrap();
    assert!(
        hi.matrices()[0].count() > lo.matrices()[0].count(),
        "{desc}"
    );
    let share: f64 = desc
        .split("covering ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(share >= 95.0, "{desc}");
}
