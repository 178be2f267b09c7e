//! The ASA mask builder against a brute-force definition (every T, per-head, unknown tags),
//! bit packing, tile classes vs the bits, refinements (binding, lexical resources),
//! compatibility matrices (default, JSON, derive-compat on a fixture) and bad input.

use asa_lth::cli::asa::{self as asa_cli, DeriveCompatArgs, PunctArg};
use asa_lth::data::batch::{EvalWindows, NO_TAG};
use asa_lth::data::{conllu, synthetic, Vocab};
use asa_lth::ling::compat::{derive, CompatMatrix, CompatSet, PunctPolicy, NTAGS};
use asa_lth::ling::lexres::{FileResource, LexicalResource};
use asa_lth::ling::Upos;
use asa_lth::mask::asa::{
    apply_cross_sentence, sentence_starts, AsaMaskBuilder, CrossSentence, RefineOptions, Refiner,
    UnknownTag,
};
use asa_lth::mask::tiles::{occupied_blocks, tag_grouped_ranks};
use asa_lth::mask::{BitMask, TileClass, TileMap};
use asa_lth::rng::Rng;
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-masktest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn random_matrix(rng: &mut Rng, p: f64) -> CompatMatrix {
    let mut m = CompatMatrix::diagonal();
    for a in Upos::ALL {
        for b in Upos::ALL {
            if rng.bernoulli(p) {
                m.set(a, b, true); // directed on purpose: the builder must not assume symmetry
            }
        }
    }
    m
}

fn random_tags(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            if rng.bernoulli(0.05) {
                NO_TAG
            } else {
                rng.below(NTAGS) as u8
            }
        })
        .collect()
}

const TS: &[usize] = &[1, 2, 5, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200];

/// The definition, pair by pair.
fn oracle(m: &CompatMatrix, unknown: UnknownTag, ti: u8, tj: u8, i: usize, j: usize) -> bool {
    if j == i {
        return true;
    }
    if j > i {
        return false;
    }
    let map = |t: u8| match (t, unknown) {
        (NO_TAG, UnknownTag::SelfOnly) => None,
        (NO_TAG, UnknownTag::AsX) => Some(Upos::X),
        (v, _) => Upos::from_index(v as usize),
    };
    match (map(ti), map(tj)) {
        (Some(a), Some(b)) => m.allows(a, b),
        _ => false,
    }
}

#[test]
fn builder_matches_the_definition_for_every_t_and_per_head() {
    let mut rng = Rng::new(1);
    for &t in TS {
        for heads in [1usize, 3] {
            for unknown in [UnknownTag::SelfOnly, UnknownTag::AsX] {
                let b = 3;
                let ms: Vec<CompatMatrix> = (0..heads)
                    .map(|k| {
                        if k == 0 {
                            CompatMatrix::default_asa()
                        } else {
                            random_matrix(&mut rng, 0.3)
                        }
                    })
                    .collect();
                let set = if heads == 1 {
                    CompatSet::shared(ms[0].clone())
                } else {
                    CompatSet::per_head(ms.clone()).unwrap()
                };
                let tags = random_tags(&mut rng, b * t);
                let mask = AsaMaskBuilder::new(&set)
                    .with_unknown(unknown)
                    .build(&tags, b, t)
                    .unwrap();
                assert_eq!((mask.b(), mask.heads(), mask.t()), (b, heads, t));
                let want = BitMask::from_fn(b, heads, t, |bi, h, i, j| {
                    oracle(&ms[h], unknown, tags[bi * t + i], tags[bi * t + j], i, j)
                });
                assert_eq!(mask, want, "T={t} heads={heads} {unknown:?}");
                // Causality and self always hold.
                for bi in 0..b {
                    for h in 0..heads {
                        for i in 0..t {
                            assert!(mask.get(bi, h, i, i));
                            for j in i + 1..t {
                                assert!(!mask.get(bi, h, i, j));
                            }
                        }
                    }
                }
                // Packing round-trips; bits past T stay clear.
                let words = mask.clone().into_words();
                assert_eq!(words.len(), b * heads * t * t.div_ceil(32));
                let back = BitMask::from_words(b, heads, t, words.clone()).unwrap();
                assert_eq!(back, mask);
                if t % 32 != 0 {
                    for row in words.chunks(t.div_ceil(32)) {
                        assert_eq!(row[row.len() - 1] >> (t % 32), 0);
                    }
                }
            }
        }
    }
}

#[test]
fn unknown_tags_see_only_themselves_and_padding_is_invisible() {
    let tags = [
        Upos::Det as u8,
        Upos::Noun as u8,
        NO_TAG,
        Upos::Verb as u8,
        Upos::X as u8,
    ];
    let m = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::all()))
        .build(&tags, 1, 5)
        .unwrap();
    for j in 0..5 {
        assert_eq!(m.get(0, 0, 2, j), j == 2, "unknown query row");
        if j != 2 {
            for i in (j..5).filter(|&i| i != 2) {
                assert!(
                    m.get(0, 0, i, j),
                    "tagged pair ({i}, {j}) under an all-ones matrix"
                );
            }
        }
    }
    for i in 3..5 {
        assert!(!m.get(0, 0, i, 2), "unknown key visible to {i}");
    }
    // An evaluation batch: the padded tail carries NO_TAG and is never a key of a real query.
    let sents = synthetic::generate(30, 8);
    let vocab = Vocab::build(&sents, 1).unwrap();
    let stream = vocab.encode(&sents);
    let last = EvalWindows::new(&stream, 4, 64).unwrap().last().unwrap();
    let mask = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::default_asa()))
        .build_for_batch(&last)
        .unwrap();
    let pad: Vec<usize> = (0..last.b * last.t)
        .filter(|&p| last.targets[p] == asa_lth::backend::IGNORE_INDEX)
        .collect();
    assert!(!pad.is_empty(), "fixture should end in padding");
    for &p in &pad {
        let (bi, j) = (p / last.t, p % last.t);
        assert_eq!(last.upos[p], NO_TAG);
        for i in 0..last.t {
            let real = last.targets[bi * last.t + i] != asa_lth::backend::IGNORE_INDEX;
            if real {
                assert!(
                    !mask.get(bi, 0, i, j),
                    "padding key {j} visible to query {i}"
                );
            }
        }
    }
}

#[test]
fn bad_tags_and_shapes_are_errors() {
    let b = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::default_asa()));
    let e = b.build(&[0, 1, 40], 1, 3).unwrap_err().to_string();
    assert!(
        e.contains("tag value 40") && e.contains("position 2"),
        "{e}"
    );
    let e = b.build(&[0, 1], 1, 3).unwrap_err().to_string();
    assert!(e.contains("2 tags"), "{e}");
}

/// Brute-force tile class.
fn tile_oracle(m: &BitMask, b: usize, h: usize, tile: usize, qt: usize, kt: usize) -> TileClass {
    let t = m.t();
    let (mut any, mut all) = (false, true);
    for i in qt * tile..((qt + 1) * tile).min(t) {
        for j in kt * tile..((kt + 1) * tile).min(t) {
            let e = m.get(b, h, i, j) && j <= i;
            any |= e;
            all &= e;
        }
    }
    match (any, all) {
        (false, _) => TileClass::Empty,
        (true, true) => TileClass::Full,
        _ => TileClass::Partial,
    }
}

#[test]
fn tile_classes_agree_with_the_bits_for_asa_and_random_masks() {
    let mut rng = Rng::new(3);
    for &t in TS.iter().chain(&[257, 300]) {
        // Sparse compat matrices make empty and full tiles likely; random masks too.
        let set = CompatSet::per_head(vec![
            CompatMatrix::diagonal(),
            random_matrix(&mut rng, 0.1),
            CompatMatrix::all(),
        ])
        .unwrap();
        let mut tags = random_tags(&mut rng, 2 * t);
        // Long runs of one tag give full blocks.
        for x in tags.iter_mut().take(t.min(150)) {
            *x = Upos::Noun as u8;
        }
        let asa = AsaMaskBuilder::new(&set).build(&tags, 2, t).unwrap();
        let dens = rng.uniform();
        let random = BitMask::from_fn(2, 1, t, |_, _, _, _| rng.bernoulli(dens));
        for m in [&asa, &random] {
            for tile in [16, 64, 128] {
                let tm = TileMap::from_mask(m, tile).unwrap();
                let nt = t.div_ceil(tile);
                for b in 0..m.b() {
                    for h in 0..m.heads() {
                        for qt in 0..nt {
                            for kt in 0..nt {
                                assert_eq!(
                                    tm.class(b, h, qt, kt),
                                    tile_oracle(m, b, h, tile, qt, kt),
                                    "T={t} tile={tile} b={b} h={h} ({qt},{kt})"
                                );
                            }
                        }
                    }
                }
                // The forward and backward lists hold exactly the non-empty blocks.
                let (fw, bw) = (tm.forward_lists(), tm.backward_lists());
                let nonempty = tm
                    .classes()
                    .iter()
                    .filter(|&&c| c != TileClass::Empty)
                    .count();
                assert_eq!(fw.tiles.len(), nonempty);
                assert_eq!(bw.tiles.len(), nonempty);
                for g in 0..fw.groups() {
                    let (bh, qt) = (g / nt, g % nt);
                    let (b, h) = (bh / m.heads(), bh % m.heads());
                    for (&kt, &c) in fw.group(g).0.iter().zip(fw.group(g).1) {
                        assert_eq!(c, tm.class(b, h, qt, kt as usize));
                    }
                }
            }
        }
    }
}

#[test]
fn default_matrix_is_symmetric_and_round_trips_as_json() {
    let m = CompatMatrix::default_asa();
    assert!(m.is_symmetric());
    for t in Upos::ALL {
        assert!(m.allows(t, t));
        assert!(m.allows(Upos::X, t) && m.allows(t, Upos::X));
    }
    assert!(m.allows(Upos::Verb, Upos::Noun) && m.allows(Upos::Noun, Upos::Det));
    assert!(
        !m.allows(Upos::Det, Upos::Verb),
        "det only attaches to nominals"
    );
    assert!(m.count() < 17 * 17);
    let d = tmpdir("compat");
    m.save(&d.join("m.json")).unwrap();
    let back = CompatSet::load(&d.join("m.json")).unwrap();
    assert_eq!(back.matrices()[0].rows(), m.rows());
    let heads = CompatSet::per_head(vec![m.clone(), CompatMatrix::diagonal()]).unwrap();
    heads.save(&d.join("h.json")).unwrap();
    let back = CompatSet::load(&d.join("h.json")).unwrap();
    assert_eq!(back.heads(), 2);
    assert_eq!(back.matrices()[1].rows(), CompatMatrix::diagonal().rows());
    // Bad files name the file and the tag.
    for (body, want) in [
        (
            r#"{"allowed": {"NOUN": ["DETT"]}}"#,
            "unknown UPOS tag `DETT`",
        ),
        (r#"{"allowed": {"NUON": []}}"#, "`NUON`"),
        (r#"{"format": 2, "allowed": {}}"#, "format 2"),
        (r#"{"allowed": "#, "not a JSON compat file"),
    ] {
        let p = d.join("bad.json");
        std::fs::write(&p, body).unwrap();
        let e = CompatSet::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains(want), "{e}");
    }
}

/// Four sentences; hand count (PUNCT excluded): NOUN–VERB 4, DET–NOUN 1, PRON–VERB 1,
/// ADJ–NOUN 1, CCONJ–NOUN 1, NOUN–NOUN 1 → 9 arcs; 3 PUNCT arcs.
const TREEBANK: &str = "\
# sent_id = 1
1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\t_\t_\t3\tnsubj\t_\t_
3\tbarks\tbark\tVERB\t_\t_\t0\troot\t_\t_
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

# sent_id = 2
1\tShe\tshe\tPRON\t_\t_\t2\tnsubj\t_\t_
2-3\treadsbooks\t_\t_\t_\t_\t_\t_\t_\t_
2\treads\tread\tVERB\t_\t_\t0\troot\t_\t_
3\tbooks\tbook\tNOUN\t_\t_\t2\tobj\t_\t_
3.1\tit\tit\tPRON\t_\t_\t_\t_\t2:obj\t_
4\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_

1\tBig\tbig\tADJ\t_\t_\t2\tamod\t_\t_
2\tdogs\tdog\tNOUN\t_\t_\t3\tnsubj\t_\t_
3\trun\trun\tVERB\t_\t_\t0\troot\t_\t_
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_

1\tDogs\tdog\tNOUN\t_\t_\t4\tnsubj\t_\t_
2\tand\tand\tCCONJ\t_\t_\t3\tcc\t_\t_
3\tcats\tcat\tNOUN\t_\t_\t1\tconj\t_\t_
4\tsleep\tsleep\tVERB\t_\t_\t0\troot\t_\t_
";

#[test]
fn derive_compat_gives_the_hand_computed_matrix() {
    let sents = conllu::parse(TREEBANK, Path::new("fixture.conllu")).unwrap();
    let d = derive(&sents, 0.2, PunctPolicy::Exclude).unwrap();
    assert_eq!((d.arcs, d.punct_arcs_dropped), (9, 3));
    let mut want = CompatMatrix::diagonal();
    want.allow_pair(Upos::Noun, Upos::Verb);
    assert_eq!(d.matrix.rows(), want.rows());
    assert!(
        (d.covered_share - 5.0 / 9.0).abs() < 1e-12,
        "NOUN–VERB 4 + NOUN–NOUN 1"
    );
    assert_eq!(
        (d.pairs[0].0.a, d.pairs[0].0.b, d.pairs[0].0.arcs),
        (Upos::Noun, Upos::Verb, 4)
    );
    assert!((d.matrix.score(Upos::Verb, Upos::Noun).unwrap() - 4.0 / 9.0).abs() < 1e-6);

    let d = derive(&sents, 0.1, PunctPolicy::Exclude).unwrap();
    let mut want = CompatMatrix::diagonal();
    for (a, b) in [
        (Upos::Noun, Upos::Verb),
        (Upos::Det, Upos::Noun),
        (Upos::Pron, Upos::Verb),
        (Upos::Adj, Upos::Noun),
        (Upos::Cconj, Upos::Noun),
    ] {
        want.allow_pair(a, b);
    }
    assert_eq!(d.matrix.rows(), want.rows());
    assert_eq!(d.covered_share, 1.0);

    let d = derive(&sents, 0.2, PunctPolicy::Keep).unwrap();
    assert_eq!(d.arcs, 12);
    want = CompatMatrix::diagonal();
    want.allow_pair(Upos::Noun, Upos::Verb); // 4/12
    want.allow_pair(Upos::Punct, Upos::Verb); // 3/12
    assert_eq!(d.matrix.rows(), want.rows());

    let d = derive(&sents, 0.2, PunctPolicy::All).unwrap();
    for t in Upos::ALL {
        assert!(d.matrix.allows(Upos::Punct, t) && d.matrix.allows(t, Upos::Punct));
    }
    assert!(d.matrix.is_symmetric());
    assert!(derive(&sents, 1.5, PunctPolicy::Keep).is_err());

    // The command prints shares and writes a loadable matrix.
    let dir = tmpdir("derive");
    let tb = dir.join("tb.conllu");
    std::fs::write(&tb, TREEBANK).unwrap();
    let mut out = Vec::new();
    asa_cli::derive_compat(
        &DeriveCompatArgs {
            conllu: vec![tb],
            min_share: 0.2,
            punct: PunctArg::Exclude,
            out: Some(dir.join("c.json")),
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    assert!(
        text.contains("NOUN-VERB") && text.contains("44.44%"),
        "{text}"
    );
    assert!(text.contains("covers 55.6%"), "{text}");
    let back = CompatSet::load(&dir.join("c.json")).unwrap();
    let mut want = CompatMatrix::diagonal();
    want.allow_pair(Upos::Noun, Upos::Verb);
    assert_eq!(back.matrices()[0].rows(), want.rows());
}

/// Token ids for a hand-made window (id = index in `words`; `<eos>` is id 1 as in `Vocab`).
fn window(text: &str) -> (Vec<String>, Vec<u32>) {
    let mut words = vec!["<unk>".to_string(), "<eos>".to_string()];
    let mut ids = Vec::new();
    for w in text.split(' ') {
        let id = match words.iter().position(|x| x == w) {
            Some(p) => p,
            None => {
                words.push(w.to_string());
                words.len() - 1
            }
        };
        ids.push(id as u32);
    }
    (words, ids)
}

#[test]
fn binding_lets_pronouns_see_agreeing_antecedents_in_scope() {
    use Upos::*;
    // 0 Alice 1 saw 2 the 3 dogs 4 . 5 <eos> 6 she 7 fed 8 them 9 herself
    let (words, ids) = window("Alice saw the dogs . <eos> she fed them herself");
    let tags: Vec<u8> = [Propn, Verb, Det, Noun, Punct, Punct, Pron, Verb, Pron, Pron]
        .iter()
        .map(|&t| t as u8)
        .collect();
    let t = tags.len();
    let diag = CompatSet::shared(CompatMatrix::diagonal());
    let mut m = AsaMaskBuilder::new(&diag).build(&tags, 1, t).unwrap();
    let r = Refiner::new(
        words.len(),
        |id| words[id as usize].as_str(),
        None,
        RefineOptions::default(),
    );
    r.apply(&mut m, &ids, &tags).unwrap();
    assert!(
        m.get(0, 0, 6, 0),
        "she → Alice (fem/sing vs unknown gender name)"
    );
    assert!(
        !m.get(0, 0, 6, 3),
        "she → dogs: number clash (heuristic plural)"
    );
    assert!(m.get(0, 0, 8, 3), "them → dogs");
    assert!(
        m.get(0, 0, 8, 0),
        "them → Alice: a name's number is unknown without a resource"
    );
    assert!(
        !m.get(0, 0, 9, 0),
        "herself → Alice: reflexive, other sentence"
    );
    assert!(m.get(0, 0, 9, 6), "herself → she (same sentence, agreeing)");
    assert!(!m.get(0, 0, 9, 8), "herself → them: number clash");
    assert!(
        !m.get(0, 0, 6, 1),
        "non-nominal keys untouched (diagonal matrix)"
    );
    for i in 0..t {
        assert!(m.get(0, 0, i, i));
        for j in i + 1..t {
            assert!(!m.get(0, 0, i, j), "binding stays causal");
        }
    }
}

#[test]
fn lexical_resources_refine_selection_and_name_bad_lines() {
    use Upos::*;
    let dir = tmpdir("lexres");
    let p = dir.join("res.txt");
    std::fs::write(
        &p,
        "# test resource\nformat 1\nisa dog animal\nisa animal animate\nisa cake food\n\
         select eats food   # only food is eaten here\nfeats Alice Number=Sing|Gender=Fem\n",
    )
    .unwrap();
    let res = FileResource::load(&p).unwrap();
    assert_eq!(res.classes("dog"), ["animal", "animate"]);
    assert_eq!(res.selects("eats").unwrap(), ["food"]);
    // 0 dog 1 eats 2 cake 3 stone
    let (words, ids) = window("dog eats cake stone");
    let tags: Vec<u8> = [Noun, Verb, Noun, Noun].iter().map(|&t| t as u8).collect();
    let all = CompatSet::shared(CompatMatrix::all());
    let mut m = AsaMaskBuilder::new(&all).build(&tags, 1, 4).unwrap();
    let r = Refiner::new(
        words.len(),
        |id| words[id as usize].as_str(),
        Some(&res as &dyn LexicalResource),
        RefineOptions::default(),
    );
    r.apply(&mut m, &ids, &tags).unwrap();
    assert!(!m.get(0, 0, 1, 0), "eats → dog: dog is not food");
    assert!(m.get(0, 0, 2, 1), "cake → eats: cake is food");
    assert!(m.get(0, 0, 3, 1), "stone → eats: unknown word, untouched");
    assert!(m.get(0, 0, 2, 0), "noun–noun untouched");
    for (body, line, want) in [
        ("isa a b\n", 1, "format 1"),
        ("format 2\n", 1, "format 2"),
        ("format 1\n\nisa a\n", 3, "at least 3 fields"),
        ("format 1\nfeats x Number=Dual\n", 2, "Number=Dual"),
        ("format 1\nfrob x y\n", 2, "frob"),
    ] {
        std::fs::write(&p, body).unwrap();
        let e = FileResource::load(&p).unwrap_err().to_string();
        assert!(
            e.contains(&format!("res.txt:{line}:")) && e.contains(want),
            "{body:?}: {e}"
        );
    }
}

#[test]
fn building_a_default_batch_is_fast() {
    // B 16, T 128 from random tags: far below the 2.5 ms budget (5% of a ~50 ms CPU step).
    let mut rng = Rng::new(9);
    let tags = random_tags(&mut rng, 16 * 128);
    let b = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::default_asa()));
    let mut words = Vec::new();
    let mut times = Vec::new();
    for _ in 0..50 {
        let t0 = std::time::Instant::now();
        b.build_into(&tags, 16, 128, &mut words).unwrap();
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!("mask build B16 T128: median {:.1} µs", med * 1e6);
    assert!(med < 2.5e-3, "median {med} s");
}

/// `--cross-sentence`: `compat` keeps the tag rule's bits on earlier sentences' keys, `allow`
/// sets them all, `block` clears them; within-sentence bits and the diagonal never change, on
/// every head, at sentence starts on and off word boundaries.
#[test]
fn cross_sentence_policy_changes_only_earlier_sentences_keys() {
    const EOS: u32 = 3;
    let mut rng = Rng::new(11);
    let (b, t) = (2, 77);
    let tokens: Vec<u32> = (0..b * t)
        .map(|_| {
            if rng.below(9) == 0 {
                EOS
            } else {
                10 + rng.below(50) as u32
            }
        })
        .collect();
    let tags: Vec<u8> = (0..b * t).map(|_| rng.below(NTAGS) as u8).collect();
    let compat = CompatSet::per_head(vec![CompatMatrix::default_asa(), CompatMatrix::diagonal()])
        .expect("two heads");
    let built = AsaMaskBuilder::new(&compat)
        .build(&tags, b, t)
        .expect("mask");
    let starts = sentence_starts(&tokens, b, t, EOS);
    let mut crossing = 0;
    for policy in CrossSentence::ALL {
        let mut m = built.clone();
        apply_cross_sentence(&mut m, &starts, policy).expect("policy");
        for bi in 0..b {
            for h in 0..2 {
                for i in 0..t {
                    let s = starts[bi * t + i];
                    assert!(s <= i && (s == 0 || tokens[bi * t + s - 1] == EOS));
                    for j in 0..=i {
                        let want = if j >= s {
                            built.get(bi, h, i, j)
                        } else {
                            crossing += 1;
                            match policy {
                                CrossSentence::Compat => built.get(bi, h, i, j),
                                CrossSentence::Allow => true,
                                CrossSentence::Block => false,
                            }
                        };
                        assert_eq!(m.get(bi, h, i, j), want, "{policy} b{bi} h{h} ({i}, {j})");
                    }
                }
            }
        }
    }
    assert!(
        crossing > 1000,
        "the input must have many cross-sentence pairs"
    );
    for p in CrossSentence::ALL {
        assert_eq!(p.name().parse::<CrossSentence>().expect("name"), p);
    }
    let e = "sideways".parse::<CrossSentence>().unwrap_err().to_string();
    assert!(
        e.contains("sideways") && e.contains("compat, allow or block"),
        "{e}"
    );
}

/// E1's target-tag rule: row i keyed on the query tags, keys on their own tags.
#[test]
fn query_tags_key_the_rows_and_key_tags_the_columns() {
    let mut rng = Rng::new(12);
    let (b, t) = (2, 40);
    let keys: Vec<u8> = (0..b * t).map(|_| rng.below(NTAGS) as u8).collect();
    let mut queries: Vec<u8> = (0..b * t).map(|_| rng.below(NTAGS) as u8).collect();
    queries[5] = NO_TAG;
    let compat = CompatSet::shared(CompatMatrix::default_asa());
    let m = AsaMaskBuilder::new(&compat)
        .build_with_query_tags(&keys, &queries, b, t)
        .expect("mask");
    let rule = CompatMatrix::default_asa();
    for bi in 0..b {
        for i in 0..t {
            for j in 0..t {
                let q = queries[bi * t + i];
                let want = j == i
                    || (j < i
                        && q != NO_TAG
                        && rule.allows(
                            Upos::from_index(q as usize).expect("tag"),
                            Upos::from_index(keys[bi * t + j] as usize).expect("tag"),
                        ));
                assert_eq!(m.get(bi, 0, i, j), want, "b{bi} ({i}, {j})");
            }
        }
    }
    // The same tags on both sides give the ordinary mask.
    let same = AsaMaskBuilder::new(&compat)
        .build_with_query_tags(&keys, &keys, b, t)
        .expect("mask");
    assert_eq!(
        same,
        AsaMaskBuilder::new(&compat)
            .build(&keys, b, t)
            .expect("mask")
    );
}

/// The structural null's matrix: symmetric, the diagonal kept, at the reference's expected
/// density within one tag pair, the same for a seed and different across seeds; its
/// `random:SEED:ROWS` spelling round-trips and rebuilds the same matrix.
#[test]
fn random_compat_matrix_matches_the_density_and_round_trips() {
    use asa_lth::ling::compat_choice::CompatChoice;
    let mut rng = Rng::new(21);
    let mut freq = [0f64; NTAGS];
    for f in freq.iter_mut() {
        *f = 0.2 + rng.uniform();
    }
    let total: f64 = freq.iter().sum();
    freq.iter_mut().for_each(|f| *f /= total);
    let asa = CompatMatrix::default_asa();
    let target = asa.expected_density(&freq);
    let max_pair = (0..NTAGS)
        .flat_map(|a| (0..NTAGS).map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
        .map(|(a, b)| 2.0 * freq[a] * freq[b])
        .fold(0.0, f64::max);
    let m1 = CompatMatrix::random_matched(target, &freq, 5);
    let d = m1.expected_density(&freq);
    assert!(
        (d - target).abs() <= max_pair / 2.0 + 1e-12,
        "{d} vs {target}"
    );
    assert!(m1.is_symmetric());
    for a in 0..NTAGS {
        let u = Upos::from_index(a).expect("tag");
        assert!(m1.allows(u, u), "diagonal of {u:?}");
    }
    assert_eq!(
        CompatMatrix::random_matched(target, &freq, 5).rows(),
        m1.rows()
    );
    let m2 = CompatMatrix::random_matched(target, &freq, 6);
    assert_ne!(m2.rows(), m1.rows(), "another seed, another matrix");
    assert_ne!(m1.rows(), asa.rows());

    let c = CompatChoice::Random {
        seed: 5,
        rows: *m1.rows(),
    };
    let back: CompatChoice = c.name().parse().expect("round trip");
    assert_eq!(back, c);
    assert_eq!(back.load().expect("load").0.matrices()[0].rows(), m1.rows());
    for (bad, says) in [
        ("random:x:1", "seed"),
        ("random:3", "no rows"),
        ("random:3:1,2", "2 rows"),
        ("random:3:zz,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", "hexadecimal"),
        (
            "random:3:fffffff,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
            "past the 17",
        ),
    ] {
        let e = bad.parse::<CompatChoice>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

/// The definition of a reordered block count, pair by pair.
fn occupied_oracle(m: &BitMask, b: usize, h: usize, rank: &[u32], tile: usize) -> usize {
    let t = m.t();
    let nt = t.div_ceil(tile);
    let mut occ = vec![false; nt * nt];
    for i in 0..t {
        for j in 0..=i {
            if m.get(b, h, i, j) {
                occ[rank[i] as usize / tile * nt + rank[j] as usize / tile] = true;
            }
        }
    }
    occ.iter().filter(|&&o| o).count()
}

#[test]
fn occupied_blocks_match_the_definition_in_text_and_tag_order() {
    let mut rng = Rng::new(21);
    for &t in &[1usize, 31, 32, 33, 100, 129, 257] {
        let tags = random_tags(&mut rng, t);
        let set = CompatSet::shared(random_matrix(&mut rng, 0.3));
        let asa = AsaMaskBuilder::new(&set).build(&tags, 1, t).unwrap();
        let dens = rng.uniform();
        // Bits above the diagonal too: the count must ignore them (causality).
        let random = BitMask::from_fn(1, 1, t, |_, _, _, _| rng.bernoulli(dens));
        let natural: Vec<u32> = (0..t as u32).collect();
        let grouped = tag_grouped_ranks(&tags);
        // The grouped order is a permutation sorting by (tag, position).
        let mut order: Vec<usize> = (0..t).collect();
        order.sort_by_key(|&i| grouped[i]);
        assert!(order
            .windows(2)
            .all(|w| (tags[w[0]], w[0]) < (tags[w[1]], w[1])));
        for m in [&asa, &random] {
            for tile in [16, 64] {
                for rank in [&natural, &grouped] {
                    assert_eq!(
                        occupied_blocks(m, 0, 0, rank, tile).unwrap(),
                        occupied_oracle(m, 0, 0, rank, tile),
                        "T={t} tile={tile}"
                    );
                }
                // In text order the count is TileMap's non-empty blocks.
                let (e, f, p) = TileMap::from_mask(m, tile).unwrap().counts();
                assert_eq!(
                    occupied_blocks(m, 0, 0, &natural, tile).unwrap(),
                    f + p,
                    "T={t} tile={tile}: {e} empty"
                );
            }
        }
    }
}

#[test]
fn grouping_by_tag_empties_the_blocks_of_incompatible_tags() {
    // Two alternating tags that see only themselves: every text-order block is occupied,
    // while grouped by tag the cross blocks are empty.
    let t = 256;
    let tags: Vec<u8> = (0..t)
        .map(|i| if i % 2 == 0 { Upos::Noun } else { Upos::Verb } as u8)
        .collect();
    let mask = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::diagonal()))
        .build(&tags, 1, t)
        .unwrap();
    let natural: Vec<u32> = (0..t as u32).collect();
    let nt = t / 64;
    assert_eq!(
        occupied_blocks(&mask, 0, 0, &natural, 64).unwrap(),
        nt * (nt + 1) / 2
    );
    // Grouped: each tag holds two 64-blocks; within a group the order is the text order, so
    // each group's own 2×2 blocks are a triangle (3 occupied), the cross blocks empty.
    assert_eq!(
        occupied_blocks(&mask, 0, 0, &tag_grouped_ranks(&tags), 64).unwrap(),
        6
    );
    // A rank that is not a permutation is an error, not a count.
    let mut bad = natural.clone();
    bad[1] = 0;
    assert!(occupied_blocks(&mask, 0, 0, &bad, 64).is_err());
}
