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
            threads: 2,
            devices: vec!["cpu".into()],
            os: "linux".into(),
        },
        roofline: Some(Roofline {
            copy_bytes_per_sec: 3.5e10,
            gemm_flops: 1.7e11,
        }),
        figures,
        command: "asa-lth bench".into(),
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
    let kernels: Vec<&str> = r.figures.iter().map(|f| f.kernel.as_str()).collect();
    assert_eq!(
        kernels,
        ["copy", "gemm", "adamw"],
        "rooflines always measured"
    );
    let roof = r.roofline.as_ref().expect("roofline measured");
    assert!(roof.copy_bytes_per_sec > 1e8 && roof.gemm_flops > 1e8);
    let adamw = &r.figures[2];
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
