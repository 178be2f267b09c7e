//! `asa stats` and `asa show` on the synthetic corpus: what they print and write, with the
//! corpus options the train command uses, and their errors.

use asa_lth::cli::asa::{
    self as asa_cli, MaskArgs, ShowArgs, SplitArg, StatsArgs, TagSource, UnknownArg,
};
use asa_lth::data::CorpusSource;
use std::path::PathBuf;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-clitest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn source() -> CorpusSource {
    CorpusSource::Synthetic {
        sentences: 600,
        seed: 2,
    }
}

fn mask_args(tagger: TagSource) -> MaskArgs {
    MaskArgs {
        split: SplitArg::Valid,
        tagger,
        compat: "default".into(),
        binding: true,
        resource: None,
        unknown: UnknownArg::SelfOnly,
        min_count: 1,
    }
}

#[test]
fn stats_prints_density_tiles_arcs_and_nulls() {
    let d = tmpdir("stats");
    for tagger in [TagSource::Auto, TagSource::Perceptron, TagSource::Rules] {
        let mut out = Vec::new();
        asa_cli::stats(
            &source(),
            &StatsArgs {
                mask: mask_args(tagger.clone()),
                batch: 4,
                seq_len: 64,
                max_batches: None,
                no_nulls: false,
                seed: 1,
                json: Some(d.join("stats.json")),
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        println!("{text}");
        for want in [
            "density (valid causal pairs)",
            "off the diagonal",
            "diagonal allowed",
            "rows with < 2 valid keys",
            "density by row length",
            "tile 64",
            "tile 128",
            "gold dependency arcs inside windows",
            "head before dependent",
            "null:rows",
            "null:dist",
        ] {
            assert!(text.contains(want), "missing `{want}`:\n{text}");
        }
        if tagger != TagSource::Auto {
            assert!(text.contains("vs gold"), "{text}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("stats.json")).unwrap()).unwrap();
        let (a, r, n) = (&json["asa"], &json["null_rows"], &json["null_distance"]);
        // Nulls match the density exactly (same allowed pairs in every row).
        assert_eq!(a["allowed"], r["allowed"]);
        assert_eq!(a["allowed"], n["allowed"]);
        assert_eq!(a["pairs"], r["pairs"]);
        assert!(a["arcs"]["arcs"].as_u64().unwrap() > 100);
        if tagger == TagSource::Auto {
            // Gold tags and the default matrix cover every gold arc of the grammar.
            assert_eq!(a["arcs"]["covered"], a["arcs"]["arcs"]);
            assert!(r["arcs"]["covered"].as_u64() < a["arcs"]["covered"].as_u64());
        }
    }
}

#[test]
fn show_draws_an_svg_and_a_text_grid() {
    let d = tmpdir("show");
    let out_svg = d.join("m.svg");
    let mut out = Vec::new();
    asa_cli::show(
        &source(),
        &ShowArgs {
            mask: mask_args(TagSource::Gold),
            sentence: 2,
            head: 0,
            out: out_svg.clone(),
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    assert!(
        text.contains("sentence 2") && text.contains("/PUNCT"),
        "{text}"
    );
    let svg = std::fs::read_to_string(&out_svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("/PUNCT") && svg.contains("gold arc"));
    // Errors: a sentence out of range, a missing compat file, a head out of range.
    let mut a = ShowArgs {
        mask: mask_args(TagSource::Gold),
        sentence: 10_000,
        head: 0,
        out: out_svg.clone(),
    };
    let e = asa_cli::show(&source(), &a, &mut Vec::new()).unwrap_err();
    assert!(format!("{e:#}").contains("--sentence 10000"), "{e:#}");
    a.sentence = 0;
    a.mask.compat = d.join("nope.json").display().to_string();
    let e = asa_cli::show(&source(), &a, &mut Vec::new()).unwrap_err();
    assert!(format!("{e:#}").contains("nope.json"), "{e:#}");
    a.mask.compat = "default".into();
    a.head = 3;
    let e = asa_cli::show(&source(), &a, &mut Vec::new()).unwrap_err();
    assert!(format!("{e:#}").contains("--head 3"), "{e:#}");
}

#[test]
fn gold_tags_are_refused_for_untagged_text() {
    let d = tmpdir("wt");
    for split in ["train", "valid", "test"] {
        std::fs::write(
            d.join(format!("wiki.{split}.tokens")),
            " = Title = \n the cat sat on the mat . \n a dog ran . \n",
        )
        .unwrap();
    }
    let src = CorpusSource::Wikitext2 { dir: d.clone() };
    let mut a = ShowArgs {
        mask: mask_args(TagSource::Gold),
        sentence: 0,
        head: 0,
        out: d.join("m.svg"),
    };
    let e = asa_cli::show(&src, &a, &mut Vec::new()).unwrap_err();
    assert!(format!("{e:#}").contains("no UPOS tags"), "{e:#}");
    // auto falls back to the built-in causal tagger.
    a.mask.tagger = TagSource::Auto;
    let mut out = Vec::new();
    asa_cli::show(&src, &a, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("tags: builtin"), "{text}");
    a.mask.tagger = TagSource::Lexicon;
    let e = asa_cli::show(&src, &a, &mut Vec::new()).unwrap_err();
    assert!(
        format!("{e:#}").contains("needs a tagged train split"),
        "{e:#}"
    );
}
