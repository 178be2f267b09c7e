//! The benchmark harness: report JSON round-trip, the regression comparison on synthetic
//! reports, the statistics, and the CLI end to end on a cheap kernel.

use asa_lth::bench::{compare, median_spread, BenchReport, Figure, Machine, Roofline};
use std::process::Command;

fn figure(name: &str, device: &str, throughput: f64, rel_spread: f64) -> Figure {
    Figure {
        kernel: name.split('/').next().unwrap().to_string(),
        name: name.to_string(),
        device: device.to_string(),
        unit: "FLOP/s".into(),
        median_secs: 1.0 / throughput,
        rel_spread,
        samples: 11,
        throughput,
        roofline_ratio: Some(0.5),
    }
}

fn report(figures: Vec<Figure>) -> BenchReport {
    BenchReport {
        format: 1,
        implementation: "asa-lth".into(),
        git_commit: "abc123".into(),
        machine: Machine {
            cpu: "Test CPU (2 threads)".into(),
            isa: "avx2".into(),
            threads: 2,
            devices: vec!["cpu".into()],
            os: "linux".into(),
        },
        roofline: Some(Roofline {
            copy_bytes_per_sec: 3.5e10,
            read_bytes_per_sec: 4.0e10,
            fma_flops: 3.0e11,
            gemm_flops: 1.7e11,
        }),
        figures,
        command: "asa-lth bench".into(),
        peers: vec![],
        step_profiles: vec![],
    }
}

#[test]
fn report_json_round_trips_exactly() {
    let r = report(vec![
        figure("matmul/fwd/x", "cpu", 1.234_567_890_123e11, 0.0123),
        figure("attention/fwd/y", "cuda:0", 9.87e13, 0.004),
    ]);
    let json = serde_json::to_string_pretty(&r).unwrap();
    let back: BenchReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    // Field names are the documented schema (results/README.md).
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in [
        "format",
        "implementation",
        "git_commit",
        "machine",
        "roofline",
        "figures",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let f = &v["figures"][0];
    for key in [
        "name",
        "device",
        "unit",
        "median_secs",
        "rel_spread",
        "throughput",
        "roofline_ratio",
    ] {
        assert!(f.get(key).is_some(), "figure missing {key}");
    }
}

#[test]
fn comparison_flags_only_changes_beyond_the_spread() {
    let base = report(vec![
        figure("a/x", "cpu", 100.0, 0.02),
        figure("b/x", "cpu", 100.0, 0.05),
        figure("c/x", "cpu", 100.0, 0.01),
        figure("d/x", "cuda:0", 100.0, 0.01),
    ]);
    let new = report(vec![
        figure("a/x", "cpu", 200.0, 0.02), // 2× faster: significant
        figure("b/x", "cpu", 104.0, 0.05), // +4% within ±10% combined spread: not flagged
        figure("c/x", "cpu", 90.0, 0.01),  // −10% beyond ±2%: significant regression
        figure("d/x", "cpu", 50.0, 0.01),  // other device: not matched
        figure("e/x", "cpu", 50.0, 0.01),  // not in the baseline: not matched
    ]);
    let cmp = compare(&new, &base);
    assert_eq!(cmp.len(), 3);
    let get = |n: &str| cmp.iter().find(|c| c.name == n).unwrap();
    assert!((get("a/x").ratio - 2.0).abs() < 1e-12 && get("a/x").significant);
    assert!(!get("b/x").significant);
    assert!((get("c/x").ratio - 0.9).abs() < 1e-12 && get("c/x").significant);
    // Identical reports: nothing flagged.
    assert!(compare(&base, &base)
        .iter()
        .all(|c| !c.significant && c.ratio == 1.0));
}

#[test]
fn median_and_spread_are_the_robust_statistics() {
    let (m, s) = median_spread(&[5.0, 1.0, 3.0, 2.0, 4.0]);
    assert_eq!(m, 3.0);
    assert!((s - 0.5 * (4.0 - 2.0) / 3.0).abs() < 1e-12);
    // An outlier's magnitude moves neither (only its rank counts).
    let mild = median_spread(&[6.0, 1.0, 3.0, 2.0, 4.0]);
    let wild = median_spread(&[4000.0, 1.0, 3.0, 2.0, 4.0]);
    assert_eq!(mild, wild);
    assert_eq!(wild.0, m);
}

#[test]
fn cli_bench_writes_a_report_and_compares_with_it() {
    let exe = env!("CARGO_BIN_EXE_asa-lth");
    let dir = std::env::temp_dir().join(format!("asa-lth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let run = |extra: &[&str]| {
        Command::new(exe)
            .args(["bench", "adamw", "--samples", "3", "--min-sample-ms", "2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--json", json.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: BenchReport = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut kernels: Vec<&str> = r.figures.iter().map(|f| f.kernel.as_str()).collect();
    kernels.dedup();
    assert_eq!(
        kernels,
        ["peak", "read", "copy", "gemm", "adamw"],
        "rooflines always measured"
    );
    let roof = r.roofline.as_ref().expect("roofline measured");
    assert!(roof.copy_bytes_per_sec > 1e8 && roof.read_bytes_per_sec > 1e8);
    assert!(roof.gemm_flops > 1e8 && roof.fma_flops > 1e8);
    // The yardstick of FLOP/s rows is the machine's FMA peak, not our GEMM (no ordering is
    // asserted: on a shared machine either can be measured low).
    let gemm = r.figures.iter().find(|f| f.kernel == "gemm").unwrap();
    let want = gemm.throughput / roof.fma_flops;
    assert!(
        (gemm.roofline_ratio.unwrap() - want).abs() < 1e-9 * want,
        "{gemm:?} vs {roof:?}"
    );
    let adamw = r.figures.iter().find(|f| f.kernel == "adamw").unwrap();
    assert!(adamw.throughput > 0.0 && adamw.roofline_ratio.is_some());
    assert!(r.git_commit.len() >= 7 || r.git_commit == "unknown");
    let out = run(&["--baseline", json.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vs baseline"), "{text}");
    let out = Command::new(exe)
        .args(["bench", "nosuchkernel"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown kernel `nosuchkernel`"),
        "{err}"
    );
    let out = Command::new(exe)
        .args(["bench", "adamw", "--baseline", "/nonexistent.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent.json"),
        "{err}"
    );
}

// ---- the attention sweep (src/bench/attention_cases.rs) ----

mod attention_sweep {
    use asa_lth::backend::cpu::{attention, Cpu};
    use asa_lth::backend::AttnShape;
    use asa_lth::bench::attention_cases::{
        self as ac, allowed_pairs, build_mask, bwd_flops, fwd_flops, naive_attention_bwd,
        naive_attention_fwd, nonempty_tile_fraction, AttnSweep, MaskKind, OpsVariant, MASKS,
    };
    use asa_lth::bench::{median_spread, Figure};
    use asa_lth::mask::BitMask;
    use asa_lth::rng::Rng;
    use std::rc::Rc;
    use std::sync::Arc;

    fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect()
    }

    fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        let num: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum();
        let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
        assert!(num.is_finite(), "NaN/inf in a result");
        (num / den.max(1e-300)).sqrt()
    }

    fn tiny_sweep(t: usize) -> AttnSweep {
        AttnSweep {
            seq_lens: vec![t],
            head_dims: vec![64],
            masks: MASKS.to_vec(),
            naive_max_t: t,
        }
    }

    #[test]
    fn cpu_case_list_builds_and_runs_at_a_tiny_size() {
        let cases = ac::cpu_cases(&|k| k == "attention", &tiny_sweep(96));
        // 5 masks × (twin, naive) × (fwd, bwd)
        assert_eq!(cases.len(), 20);
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        for want in [
            "attention/fwd/b42_h2_t96_d64_causal",
            "attention/bwd_naive/b42_h2_t96_d64_ones",
            "attention/fwd/b42_h2_t96_d64_asa",
            "attention/bwd/b42_h2_t96_d64_rand0.05",
            "attention/fwd_naive/b42_h2_t96_d64_rand0.3",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        let mut uniq = names.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), names.len(), "case names are unique");
        for mut c in cases {
            assert!(c.work > 0.0 && c.device == "cpu");
            (c.run)();
        }
        assert!(ac::cpu_cases(&|k| k == "gemm", &tiny_sweep(96)).is_empty());
        // The default CPU sweep keeps T ≤ 2048 and the naive path to T ≤ 1024.
        let full = AttnSweep::cpu();
        assert!(full.seq_lens.iter().all(|&t| t <= 2048) && full.naive_max_t == 1024);
        assert_eq!(AttnSweep::gpu().naive_max_t, 0);
    }

    #[test]
    fn naive_attention_matches_the_cpu_twin_on_a_random_mask() {
        // T not a multiple of the tile, H 2 per-head mask, density 0.3, rows 5 and 70 fully
        // masked (output 0, lse +∞, zero gradients).
        let s = AttnShape {
            b: 2,
            t: 100,
            h: 2,
            d: 64,
        };
        let mut rng = Rng::new(9);
        let mask = BitMask::from_fn(s.b, s.h, s.t, |_, _, i, _| {
            i != 5 && i != 70 && rng.uniform() < 0.3
        });
        let n = s.b * s.t * s.c();
        let (q, k, v, dout) = (
            rand(&mut rng, n),
            rand(&mut rng, n),
            rand(&mut rng, n),
            rand(&mut rng, n),
        );
        let rows = s.b * s.h * s.t;
        let (mut o1, mut l1) = (vec![0.0f32; n], vec![0.0f32; rows]);
        let (mut o2, mut l2) = (vec![0.0f32; n], vec![0.0f32; rows]);
        attention::attention_fwd(&mut o1, &mut l1, &q, &k, &v, Some((&mask).into()), s).unwrap();
        naive_attention_fwd(&mut o2, &mut l2, &q, &k, &v, Some(&mask), s).unwrap();
        assert!(rel_l2(&o2, &o1) < 1e-5, "out {}", rel_l2(&o2, &o1));
        let finite = |l: &[f32]| {
            l.iter()
                .map(|x| if x.is_finite() { *x } else { 0.0 })
                .collect::<Vec<_>>()
        };
        assert!(rel_l2(&finite(&l2), &finite(&l1)) < 1e-5);
        for (a, b) in l1.iter().zip(&l2) {
            assert_eq!(a.is_infinite(), b.is_infinite());
        }
        assert_eq!(l2[5], f32::INFINITY);
        let row5 = &o2[5 * s.c()..6 * s.c()];
        assert!(row5.iter().all(|&x| x == 0.0));
        // Backward (accumulating into non-zero gradients, as the contract says).
        let g0 = rand(&mut rng, n);
        let (mut dq1, mut dk1, mut dv1) = (g0.clone(), g0.clone(), g0.clone());
        let (mut dq2, mut dk2, mut dv2) = (g0.clone(), g0.clone(), g0.clone());
        attention::attention_bwd(
            &mut dq1,
            &mut dk1,
            &mut dv1,
            &dout,
            &q,
            &k,
            &v,
            &o1,
            &l1,
            Some((&mask).into()),
            s,
        )
        .unwrap();
        naive_attention_bwd(
            &mut dq2,
            &mut dk2,
            &mut dv2,
            &dout,
            &q,
            &k,
            &v,
            &o1,
            &l1,
            Some(&mask),
            s,
        )
        .unwrap();
        let sub = |a: &[f32]| a.iter().zip(&g0).map(|(x, y)| x - y).collect::<Vec<_>>();
        for (name, a, b) in [("dq", &dq2, &dq1), ("dk", &dk2, &dk1), ("dv", &dv2, &dv1)] {
            let e = rel_l2(&sub(a), &sub(b));
            assert!(e < 1e-5, "{name}: {e}");
        }
        // Without a mask: plain causal.
        naive_attention_fwd(&mut o2, &mut l2, &q, &k, &v, None, s).unwrap();
        attention::attention_fwd(&mut o1, &mut l1, &q, &k, &v, None, s).unwrap();
        assert!(rel_l2(&o2, &o1) < 1e-5);
        // Shapes are checked.
        assert!(naive_attention_fwd(&mut o2[1..], &mut l2, &q, &k, &v, None, s).is_err());
    }

    #[test]
    fn flops_are_counted_on_allowed_pairs_exactly() {
        let (b, t, h, d) = (3usize, 130usize, 4usize, 64usize);
        // Diagonal plus every even key: row i allows ⌊i/2⌋+1 even keys ≤ i, plus i if odd.
        let m = BitMask::from_fn(b, 1, t, |_, _, i, j| j == i || j % 2 == 0);
        let per_seq: u64 = (0..t as u64).map(|i| i / 2 + 1 + (i % 2)).sum();
        assert_eq!(allowed_pairs(Some(&m), b, t), b as u64 * per_seq);
        let pairs = allowed_pairs(Some(&m), b, t);
        assert_eq!(fwd_flops(pairs, h, d), (4 * d * h) as f64 * pairs as f64);
        assert_eq!(bwd_flops(pairs, h, d), 2.5 * fwd_flops(pairs, h, d));
        // No mask and the all-ones mask: T(T+1)/2 per sequence.
        let causal = (b * t * (t + 1) / 2) as u64;
        assert_eq!(allowed_pairs(None, b, t), causal);
        let ones = build_mask(MaskKind::Ones, b, t).unwrap().unwrap();
        assert_eq!(allowed_pairs(Some(&ones), b, t), causal);
        assert!(build_mask(MaskKind::Causal, b, t).unwrap().is_none());
        // Random masks: diagonal always set, density near p below it, deterministic.
        let r = build_mask(MaskKind::Random(0.3), b, t).unwrap().unwrap();
        assert_eq!(r, build_mask(MaskKind::Random(0.3), b, t).unwrap().unwrap());
        assert!((0..t).all(|i| r.get(1, 0, i, i)));
        let below = (allowed_pairs(Some(&r), b, t) - (b * t) as u64) as f64;
        let frac = below / (b * t * (t - 1) / 2) as f64;
        assert!((frac - 0.3).abs() < 0.02, "{frac}");
        // ASA masks: self always allowed, strictly fewer pairs than causal.
        let a = build_mask(MaskKind::Asa, b, t).unwrap().unwrap();
        let ap = allowed_pairs(Some(&a), b, t);
        assert!(ap >= (b * t) as u64 && ap < causal);
        // Tiles: causal → all non-empty; a diagonal-only mask at T 128 → 2 of 3 tiles.
        assert_eq!(nonempty_tile_fraction(None, b, t).unwrap(), 1.0);
        let diag = BitMask::from_fn(1, 1, 128, |_, _, i, j| i == j);
        let f = nonempty_tile_fraction(Some(&diag), 1, 128).unwrap();
        assert!((f - 2.0 / 3.0).abs() < 1e-12, "{f}");
    }

    #[test]
    fn ops_cases_run_through_the_ops_interface_and_the_summary_pairs_them() {
        // The GPU cases' machinery, on the CPU backend (wall-clock timer).
        let sweep = AttnSweep {
            seq_lens: vec![128],
            head_dims: vec![64],
            masks: vec![MaskKind::Ones, MaskKind::Random(0.05)],
            naive_max_t: 0,
        };
        let noop: OpsVariant<Cpu> = ("", Rc::new(|_: &Cpu| {}));
        let other: OpsVariant<Cpu> = ("_ref", Rc::new(|_: &Cpu| {}));
        let mut cases =
            ac::ops_cases(Arc::new(Cpu), "cpu", &sweep, |_, _| (2, 2), &[noop, other]).unwrap();
        assert_eq!(cases.len(), 2 * 2 * 2);
        let timing = asa_lth::bench::Timing {
            samples: 3,
            min_sample_secs: 0.001,
            warmup_secs: 0.0,
        };
        let mut figures = Vec::new();
        for c in &mut cases {
            let secs = ac::time_device_case(c, timing).unwrap();
            let (med, spread) = median_spread(&secs);
            assert!(med > 0.0);
            figures.push(Figure {
                kernel: c.kernel.into(),
                name: c.name.clone(),
                device: "cuda:0".into(), // pretend, to get the `ref` baseline column
                unit: "FLOP/s".into(),
                median_secs: med,
                rel_spread: spread,
                samples: secs.len(),
                throughput: c.work / med,
                roofline_ratio: None,
            });
        }
        assert!(figures
            .iter()
            .any(|f| f.name == "attention/bwd_ref/b2_h2_t128_d64_rand0.05"));
        let lines = ac::summary(&figures);
        // Header + one line per default-variant case (2 masks × fwd/bwd).
        assert_eq!(lines.len(), 1 + 4, "{lines:#?}");
        let ones = lines
            .iter()
            .find(|l| l.contains("fwd/b2_h2_t128_d64_ones"))
            .unwrap();
        assert!(ones.contains("1.00") && ones.contains("x ref"), "{ones}");
    }

    #[test]
    fn cli_dumps_the_masks_for_the_peer_script() {
        let exe = env!("CARGO_BIN_EXE_asa-lth");
        let dir = std::env::temp_dir().join(format!("asa-lth-masks-{}", std::process::id()));
        let out = std::process::Command::new(exe)
            .args(["bench", "attention", "--dump-masks", dir.to_str().unwrap()])
            .env("ASA_LTH_BENCH_ATTN_MAX_T", "512")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap())
                .unwrap();
        let masks = index["masks"].as_array().unwrap();
        assert_eq!(masks.len(), MASKS.len());
        for m in masks {
            let (t, b) = (m["t"].as_u64().unwrap(), m["b"].as_u64().unwrap());
            assert_eq!((t, b), (512, 32));
            let Some(file) = m["file"].as_str() else {
                assert!(["causal", "ones"].contains(&m["mask"].as_str().unwrap()));
                continue;
            };
            let bytes = std::fs::read(dir.join(file)).unwrap();
            assert_eq!(bytes.len() as u64, b * t * (t / 32) * 4);
            // The dumped words are the mask the Rust cases use.
            let kind = match m["mask"].as_str().unwrap() {
                "asa" => MaskKind::Asa,
                "rand0.05" => MaskKind::Random(0.05),
                "rand0.3" => MaskKind::Random(0.3),
                other => panic!("unexpected dumped mask {other}"),
            };
            let want = build_mask(kind, b as usize, t as usize).unwrap().unwrap();
            let words: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(words, want.words());
            assert_eq!(m["allowed_pairs"].as_u64().unwrap(), want.causal_count());
        }
        // 5 masks × D 64/128, H = 2048/D.
        let cases = index["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 10);
        assert!(cases
            .iter()
            .any(|c| c["name_suffix"] == "b32_h16_t512_d128_asa" && c["h"] == 16));
        std::fs::remove_dir_all(&dir).ok();
    }
}

// ---- the 2:4 GEMM sweep (src/bench/gemm24_cases.rs) ----

mod gemm24_sweep {
    use asa_lth::bench::gemm24_cases::{
        self as gc, case_name, parse_name, register_device, sparse_peak_flops, target_speedup,
        Gemm24Sweep, GemmShape, SHAPES,
    };
    use asa_lth::bench::Figure;
    use std::process::Command;

    fn fig(name: &str, device: &str, throughput: f64) -> Figure {
        Figure {
            kernel: "gemm24".into(),
            name: name.into(),
            device: device.into(),
            unit: "FLOP/s".into(),
            median_secs: 1.0 / throughput,
            rel_spread: 0.01,
            samples: 5,
            throughput,
            roofline_ratio: None,
        }
    }

    #[test]
    fn names_round_trip_and_the_sweeps_cover_the_issue_shapes() {
        let s = GemmShape {
            m: 16,
            n: 11008,
            k: 4096,
        };
        assert_eq!(
            case_name("sparse_bf16", s),
            "gemm24/sparse_bf16/m16_n11008_k4096"
        );
        assert_eq!(
            parse_name("gemm24/sparse_bf16/m16_n11008_k4096"),
            Some(("sparse_bf16", s))
        );
        for bad in [
            "attention/fwd/m16_n1_k1",
            "gemm24/sparse_f32/m16_n1",
            "gemm24/sparse_f32/m16_n1_k1_x",
            "gemm24/sparse_f32/n16_m1_k1",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        assert_eq!(s.flops(), 2.0 * 16.0 * 11008.0 * 4096.0);
        assert_eq!(SHAPES, &[(4096, 4096), (4096, 11008), (11008, 4096)]);
        // Sweeps (no ASA_LTH_BENCH_GEMM24_MAX_M in the test environment): M × (K, N),
        // grouped by weight.
        let cpu = Gemm24Sweep::cpu();
        assert_eq!(cpu.shapes.len(), 4 * 3);
        let gpu = Gemm24Sweep::gpu();
        assert_eq!(gpu.shapes.len(), 6 * 3);
        assert_eq!(
            gpu.shapes.iter().map(|s| s.m).max(),
            Some(16384),
            "M up to 16384"
        );
        for sw in [&cpu, &gpu, &Gemm24Sweep::cpu_quick()] {
            let weights: Vec<(usize, usize)> = sw.shapes.iter().map(|s| (s.k, s.n)).collect();
            let mut runs = weights.clone();
            runs.dedup();
            let mut uniq = runs.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(runs.len(), uniq.len(), "one run per weight: {weights:?}");
        }
        let quick = Gemm24Sweep::cpu_quick();
        assert_eq!(quick.shapes.len(), 4);
        assert!(quick
            .shapes
            .iter()
            .all(|s| s.m == 16 || (s.m == 512 && s.k == 4096 && s.n == 4096)));
    }

    #[test]
    fn cpu_cases_build_lazily_and_run_at_a_tiny_shape() {
        let sweep = Gemm24Sweep {
            shapes: vec![
                GemmShape { m: 3, n: 32, k: 64 },
                GemmShape {
                    m: 17,
                    n: 32,
                    k: 64,
                },
            ],
        };
        let cases = gc::cpu_cases(&|k| k == "gemm24", &sweep);
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gemm24/sparse_f32/m3_n32_k64",
                "gemm24/dense_f32/m3_n32_k64",
                "gemm24/sparse_f32/m17_n32_k64",
                "gemm24/dense_f32/m17_n32_k64"
            ]
        );
        for mut c in cases {
            assert_eq!((c.kernel, c.device.as_str()), ("gemm24", "cpu"));
            assert_eq!(c.work, parse_name(&c.name).unwrap().1.flops());
            (c.run)();
            (c.run)();
        }
        assert!(gc::cpu_cases(&|k| k == "gemm", &sweep).is_empty());
    }

    #[test]
    fn peaks_and_targets_follow_design_section_7() {
        let t = |n: &str| sparse_peak_flops(n).map(|p| p / 1e12);
        assert_eq!(t("NVIDIA A100-SXM4-80GB"), Some(624.0));
        assert_eq!(t("NVIDIA A100 80GB PCIe"), Some(624.0));
        assert_eq!(t("NVIDIA H100 80GB HBM3"), Some(1979.0));
        assert_eq!(t("NVIDIA H100 PCIe"), Some(1513.0));
        assert_eq!(t("NVIDIA H200"), Some(1979.0));
        assert_eq!(t("NVIDIA GeForce RTX 4090"), None);
        let s = |m| GemmShape {
            m,
            n: 4096,
            k: 4096,
        };
        assert_eq!(target_speedup("cpu", s(1)), Some(1.5));
        assert_eq!(target_speedup("cpu", s(16)), Some(1.5));
        assert_eq!(target_speedup("cpu", s(64)), None);
        assert_eq!(target_speedup("cpu", s(512)), Some(0.8));
        assert_eq!(target_speedup("NVIDIA A100-SXM4-80GB", s(4096)), Some(1.5));
        assert_eq!(target_speedup("NVIDIA A100-SXM4-80GB", s(1024)), None);
        assert_eq!(target_speedup("NVIDIA H200", s(16384)), Some(1.4));
        assert_eq!(target_speedup("NVIDIA L4", s(16384)), None);
    }

    #[test]
    fn summary_pairs_each_2_4_case_with_its_dense_and_cusparselt_figures() {
        assert!(gc::summary(&[fig("matmul/fwd_qkv/x", "cpu", 1e9)]).is_empty());
        register_device("cuda:9", "NVIDIA H100 80GB HBM3");
        let g = |v: &str, m: usize| format!("gemm24/{v}/m{m}_n4096_k4096");
        let figures = vec![
            fig(&g("sparse_f32", 16), "cpu", 60e9),
            fig(&g("dense_f32", 16), "cpu", 30e9),
            fig(&g("sparse_f32", 512), "cpu", 100e9),
            fig(&g("dense_f32", 512), "cpu", 150e9),
            fig(&g("sparse_bf16", 4096), "cuda:9", 1000e12),
            fig(&g("dense_bf16", 4096), "cuda:9", 625e12),
            fig(&g("cusparselt_bf16", 4096), "cuda:9", 800e12),
        ];
        let lines = gc::summary(&figures);
        let row = |label: &str, dev: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(label) && l.contains(dev))
                .unwrap_or_else(|| panic!("{label} {dev} not in {lines:#?}"))
                .clone()
        };
        let cpu16 = row("m16_n4096_k4096", "cpu");
        assert!(
            cpu16.contains("2.00x") && cpu16.contains(">=1.5x ok"),
            "{cpu16}"
        );
        let cpu512 = row("m512_n4096_k4096", "cpu");
        assert!(
            cpu512.contains("0.67x") && cpu512.contains(">=0.8x MISS"),
            "{cpu512}"
        );
        let gpu = row("m4096_n4096_k4096", "cuda:9");
        // 1000/1979 of the sparse peak; 1.6x dense, 1.25x cuSPARSELt, cuSPARSELt 1.28x dense.
        for want in ["50.5%", "1.60x", "1.25x", "1.28x", ">=1.4x ok", "1000.0 T"] {
            assert!(gpu.contains(want), "{want} not in {gpu}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains("cuda:9: NVIDIA H100 80GB HBM3") && l.contains("1979")),
            "{lines:#?}"
        );
        // Only the 2:4 cases get rows (3 here), after the notes and the header.
        assert_eq!(lines.iter().filter(|l| l.starts_with("m")).count(), 3);
    }

    #[test]
    fn cli_bench_gemm24_prints_the_summary() {
        let exe = env!("CARGO_BIN_EXE_asa-lth");
        // M = 1 only: three CPU shapes, two cases each (the GPU sweep starts at M 16).
        let out = Command::new(exe)
            .args(["bench", "gemm24", "--samples", "3", "--min-sample-ms", "1"])
            .env("ASA_LTH_BENCH_GEMM24_MAX_M", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for want in [
            "gemm24/sparse_f32/m1_n4096_k4096",
            "gemm24/dense_f32/m1_n11008_k4096",
            "gemm24: FLOP/s counted as the dense",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("m1_n4096_k11008") && l.contains(">=1.5x")),
            "{text}"
        );
    }
}
