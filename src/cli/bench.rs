//! `asa-lth bench`: kernel and training-step benchmarks against rooflines measured in the
//! same run.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Kernel families to run (all when none): peak, read, copy, gemm, matmul, layernorm,
    /// gelu, attention, xent, lm_head, adamw, train_step, gemm24, topk, asa_mask.
    pub(crate) kernels: Vec<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Compare with a report written earlier (or by a peer script) and flag changes larger
    /// than the measured spread.
    #[arg(long)]
    pub(crate) baseline: Option<PathBuf>,
    /// Repeats per figure.
    #[arg(long, default_value_t = 11)]
    pub(crate) samples: usize,
    /// Minimum milliseconds per repeat.
    #[arg(long, default_value_t = 50.0)]
    pub(crate) min_sample_ms: f64,
    /// Measure a peer in the same run and compare figure by figure: `blas` (numpy's f32
    /// matmul, i.e. OpenBLAS: benches/peers/blas_gemm.py, the GEMM rows) or `jax` (the same
    /// training step in JAX: benches/peers/jax_train.py, the train_step rows). Runs
    /// `$ASA_LTH_PYTHON` (default python3) with the caller's PYTHONPATH.
    #[arg(long, value_parser = ["blas", "jax"])]
    pub(crate) peer: Vec<String>,
    /// Write the GPU attention sweep's masks (and index.json) to this directory for
    /// benches/peers/torch_attention.py, and exit without benchmarking.
    #[arg(long)]
    pub(crate) dump_masks: Option<PathBuf>,
}

pub(crate) fn bench_cmd(a: BenchArgs) -> Result<()> {
    use crate::bench::{self, cases::KERNELS, BenchReport, Figure, Machine, Roofline, Timing};
    bench::check_env().map_err(anyhow::Error::msg)?;
    if let Some(dir) = &a.dump_masks {
        use bench::attention_cases::{dump_masks, AttnSweep};
        let index = dump_masks(dir, &AttnSweep::gpu())?;
        println!("attention masks: {}", index.display());
        return Ok(());
    }
    for k in &a.kernels {
        if !KERNELS.contains(&k.as_str()) {
            bail!("unknown kernel `{k}`; known: {}", KERNELS.join(", "));
        }
    }
    let baseline: Option<BenchReport> = match &a.baseline {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a benchmark report", p.display()))?,
            )
        }
    };
    if let Some(p) = &a.json {
        crate::io::check_writable(p)?;
    }
    if a.samples < 3 {
        bail!(
            "--samples {}: a median and spread need at least 3 repeats",
            a.samples
        );
    }
    if !(a.min_sample_ms.is_finite() && a.min_sample_ms > 0.0) {
        bail!(
            "--min-sample-ms {}: must be a positive number of milliseconds",
            a.min_sample_ms
        );
    }
    let peers: Vec<Peer> = a
        .peer
        .iter()
        .map(|p| Peer::find(p))
        .collect::<Result<_>>()?;
    for p in &peers {
        p.check()?;
    }
    let timing = Timing {
        samples: a.samples,
        min_sample_secs: a.min_sample_ms / 1000.0,
        ..Timing::default()
    };
    // The rooflines are always measured, so every ratio refers to this run.
    let mut wanted = a.kernels.clone();
    if !wanted.is_empty() {
        wanted.extend(["peak", "read", "copy", "gemm"].map(String::from));
    }
    // One family at a time, each checked against the memory the machine has before its
    // buffers exist, so a run holds one family's buffers, not every family's.
    let families: Vec<&str> = KERNELS
        .iter()
        .copied()
        .filter(|k| wanted.is_empty() || wanted.iter().any(|w| w == k))
        .collect();
    let available = crate::io::available_memory_bytes();
    for fam in &families {
        crate::io::check_memory(
            &format!("benchmark family `{fam}`"),
            bench::cases::family_bytes(fam),
            available,
            "run other kernel families (e.g. `asa-lth bench gemm attention`)",
        )?;
    }
    let mut figures: Vec<Figure> = Vec::new();
    let profile_steps = families.contains(&"train_step");
    let pb = indicatif::ProgressBar::new(0);
    for fam in families {
        let cases = bench::cpu_cases(&[fam.to_string()]);
        pb.inc_length(cases.len() as u64);
        for mut case in cases {
            pb.set_message(case.name.clone());
            let secs = bench::time_calls(&mut *case.run, timing);
            figures.push(figure(
                case.kernel,
                case.name,
                case.device,
                case.unit,
                case.work,
                &secs,
            ));
            pb.inc(1);
        }
        if fam == "topk" {
            // Each sweep of the global f32 selection on its own (timed inside real calls).
            pb.set_message("topk sweeps");
            for p in bench::topk_cases::pass_samples(a.samples) {
                figures.push(figure(
                    "topk",
                    p.name,
                    "cpu".into(),
                    bench::Unit::Bytes,
                    p.bytes,
                    &p.secs,
                ));
            }
        }
    }
    // Each train_step case itemised op by op (a separate, profiled run of the same step).
    let mut step_profiles = Vec::new();
    if profile_steps {
        use bench::cases::{train_step_name, TRAIN_STEP_VOCABS};
        for (label, vocab) in TRAIN_STEP_VOCABS {
            let name = train_step_name(label, vocab);
            pb.set_message(format!("{name} (op by op)"));
            step_profiles.push(bench::step_profile::profile_cpu_step(&name, vocab, 10)?);
        }
    }
    pb.finish_and_clear();
    // GPU attention cases (timed with CUDA events through the Ops interface), when a GPU is
    // usable; otherwise say why they are skipped.
    let want_attn = a.kernels.is_empty() || a.kernels.iter().any(|k| k == "attention");
    let mut devices = vec!["cpu".to_string()];
    match bench::attention_cases::gpu_cases(&|k| want_attn && k == "attention") {
        Err(why) => println!("GPU attention cases skipped: {why}"),
        Ok(gpu) => {
            for mut case in gpu {
                pb.set_message(case.name.clone());
                let secs = bench::attention_cases::time_device_case(&mut case, timing)?;
                push_device_figure(&mut figures, &mut devices, case, &secs);
            }
        }
    }
    // GPU 2:4 GEMM cases (our kernel, cuBLASLt dense, cuSPARSELt when it loads); a case that
    // fails (e.g. cuSPARSELt rejecting a shape) is reported and the others still run.
    let want_g24 = a.kernels.is_empty() || a.kernels.iter().any(|k| k == "gemm24");
    if want_g24 {
        use bench::gemm24_cases::{gpu_cases, Gemm24Sweep};
        match gpu_cases(&|k| k == "gemm24", &Gemm24Sweep::gpu()) {
            Err(why) => println!("GPU gemm24 cases skipped: {why}"),
            Ok(gpu) => {
                for note in &gpu.notes {
                    println!("{note}");
                }
                for mut case in gpu.cases {
                    pb.set_message(case.name.clone());
                    let secs = match bench::attention_cases::time_device_case(&mut case, timing) {
                        Ok(secs) => secs,
                        Err(e) => {
                            println!("{} ({}) failed: {e}", case.name, case.device);
                            continue;
                        }
                    };
                    push_device_figure(&mut figures, &mut devices, case, &secs);
                }
            }
        }
    }
    let rate = |k: &str| figures.iter().find(|f| f.kernel == k).map(|f| f.throughput);
    let peak = figures
        .iter()
        .filter(|f| f.kernel == "peak")
        .map(|f| f.throughput)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let roofline = match (rate("copy"), rate("gemm"), peak) {
        (Some(copy), Some(gemm), Some(peak)) => Some(Roofline {
            copy_bytes_per_sec: copy,
            read_bytes_per_sec: rate("read").unwrap_or(0.0),
            fma_flops: peak,
            gemm_flops: gemm,
        }),
        _ => None,
    };
    if let Some(r) = &roofline {
        for f in figures.iter_mut().filter(|f| f.device == "cpu") {
            f.roofline_ratio = match f.unit.as_str() {
                "FLOP/s" => Some(f.throughput / r.flops()),
                // Read-only sweeps against the read bandwidth.
                "B/s" if f.kernel == "read" || is_read_sweep(&f.name) => {
                    Some(f.throughput / r.read_bytes_per_sec)
                }
                "B/s" => Some(f.throughput / r.copy_bytes_per_sec),
                _ => None,
            };
        }
    }
    let mut peer_reports = Vec::new();
    for p in &peers {
        println!("peer {}: {}", p.name, p.describe());
        peer_reports.push(p.run(a.samples, a.min_sample_ms)?);
    }
    let report = BenchReport {
        format: bench::report::FORMAT,
        implementation: "asa-lth".into(),
        git_commit: crate::provenance::git_commit(),
        machine: Machine {
            cpu: crate::provenance::cpu_summary(),
            isa: crate::backend::cpu::isa::active().name().into(),
            threads: rayon::current_num_threads(),
            devices,
            os: std::env::consts::OS.into(),
        },
        roofline,
        figures,
        command: crate::provenance::command_line(),
        peers: peer_reports,
        step_profiles,
    };
    println!(
        "cpu: {}; instruction set {}; {} threads",
        report.machine.cpu, report.machine.isa, report.machine.threads
    );
    let cmp = baseline
        .as_ref()
        .map(|b| bench::compare(&report, b))
        .unwrap_or_default();
    println!(
        "{:<48} {:>6} {:>11} {:>7} {:>14} {:>8}{}",
        "case",
        "device",
        "median",
        "spread",
        "throughput",
        "roofline",
        if baseline.is_some() {
            "  vs baseline"
        } else {
            ""
        }
    );
    for f in &report.figures {
        let vs = cmp
            .iter()
            .find(|c| c.name == f.name && c.device == f.device)
            .map(|c| format!("  {:.2}x{}", c.ratio, if c.significant { " *" } else { "" }))
            .unwrap_or_default();
        println!(
            "{:<48} {:>6} {:>9.3}ms {:>6.1}% {:>14} {:>8}{vs}",
            f.name,
            f.device,
            f.median_secs * 1e3,
            f.rel_spread * 100.0,
            human(f.throughput, &f.unit),
            f.roofline_ratio
                .map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
        );
    }
    if baseline.is_some() {
        println!("(* = change larger than the combined measured spread)");
    }
    let attn = bench::attention_cases::summary(&report.figures);
    if !attn.is_empty() {
        println!(
            "\nattention sweep: FLOP/s on allowed pairs (bwd = 2.5x fwd); tiles = non-empty 64x64 \
             tiles of the causal triangle; t/t_ones = time over the all-ones mask's; vs base = \
             speed-up over the naive CPU attention (cpu) or the reference kernels (cuda)"
        );
        for l in attn {
            println!("{l}");
        }
    }
    for p in &report.step_profiles {
        println!();
        for l in bench::step_profile::lines(p) {
            println!("{l}");
        }
    }
    let g24 = bench::gemm24_cases::summary(&report.figures);
    if !g24.is_empty() {
        println!();
        for l in g24 {
            println!("{l}");
        }
    }
    for peer in &report.peers {
        let cmp = bench::compare(&report, peer);
        if cmp.is_empty() {
            println!("\npeer {}: no figure in common", peer.implementation);
            continue;
        }
        println!(
            "\nvs {} (same run; ratio = asa-lth throughput over the peer's, * = beyond the measured spread)",
            peer.implementation
        );
        for c in cmp {
            let theirs = peer
                .figures
                .iter()
                .find(|f| f.name == c.name)
                .map(|f| human(f.throughput, &f.unit))
                .unwrap_or_default();
            println!(
                "{:<48} peer {:>14}  {:.2}x{}",
                c.name,
                theirs,
                c.ratio,
                if c.significant { " *" } else { "" }
            );
        }
    }
    if let Some(p) = &a.json {
        let json = serde_json::to_string_pretty(&report)?;
        crate::io::write_atomic(p, json.as_bytes())?;
        println!("report: {}", p.display());
    }
    Ok(())
}

/// `1.23 GFLOP/s`-style formatting.
pub(crate) fn human(x: f64, unit: &str) -> String {
    let (v, p) = if x >= 1e12 {
        (x / 1e12, "T")
    } else if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    format!("{v:.2} {p}{unit}")
}

/// The figure of a timed GPU case (median and spread of `secs`), its device listed once.
pub(crate) fn push_device_figure(
    figures: &mut Vec<crate::bench::Figure>,
    devices: &mut Vec<String>,
    case: crate::bench::attention_cases::DeviceCase,
    secs: &[f64],
) {
    if !devices.contains(&case.device) {
        devices.push(case.device.clone());
    }
    figures.push(figure(
        case.kernel,
        case.name,
        case.device,
        case.unit,
        case.work,
        secs,
    ));
}

/// The figure (median and spread) of a case timed `secs` per call; its ratio to the
/// rooflines is filled in once they are known.
fn figure(
    kernel: &str,
    name: String,
    device: String,
    unit: crate::bench::Unit,
    work: f64,
    secs: &[f64],
) -> crate::bench::Figure {
    let (med, spread) = crate::bench::median_spread(secs);
    crate::bench::Figure {
        kernel: kernel.to_string(),
        name,
        device,
        unit: unit.label().to_string(),
        median_secs: med,
        rel_spread: spread,
        samples: secs.len(),
        throughput: work / med,
        roofline_ratio: None,
    }
}

/// A peer implementation measured in the same run (`--peer`).
struct Peer {
    name: &'static str,
    python: String,
    script: PathBuf,
    /// The module it imports, checked before any benchmark runs.
    module: &'static str,
}

impl Peer {
    fn find(name: &str) -> Result<Peer> {
        let (name, file, module) = match name {
            "blas" => ("blas", "blas_gemm.py", "numpy"),
            "jax" => ("jax", "jax_train.py", "jax"),
            other => bail!("--peer {other}: unknown peer; known: blas, jax"),
        };
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches/peers")
            .join(file);
        if !script.is_file() {
            bail!(
                "--peer {name}: {} not found (the peers live in the asa-lth checkout this binary was built from)",
                script.display()
            );
        }
        let python = std::env::var("ASA_LTH_PYTHON").unwrap_or_else(|_| "python3".into());
        Ok(Peer {
            name,
            python,
            script,
            module,
        })
    }

    fn describe(&self) -> String {
        format!("{} {}", self.python, self.script.display())
    }

    /// Fail before the benchmarks when the interpreter or the peer's module is missing.
    fn check(&self) -> Result<()> {
        let out = std::process::Command::new(&self.python)
            .args(["-c", &format!("import {}", self.module)])
            .output()
            .with_context(|| {
                format!(
                    "--peer {}: cannot run `{}` (set ASA_LTH_PYTHON)",
                    self.name, self.python
                )
            })?;
        if !out.status.success() {
            bail!(
                "--peer {}: `{}` cannot import {} (install it, e.g. `{} -m pip install --target .peer-env {}` and set PYTHONPATH=.peer-env)",
                self.name,
                self.python,
                self.module,
                self.python,
                if self.module == "jax" { "\"jax[cpu]\"" } else { self.module }
            );
        }
        Ok(())
    }

    fn run(&self, samples: usize, min_sample_ms: f64) -> Result<crate::bench::BenchReport> {
        let json = std::env::temp_dir().join(format!(
            "asa-lth-peer-{}-{}.json",
            self.name,
            std::process::id()
        ));
        let mut cmd = std::process::Command::new(&self.python);
        cmd.arg(&self.script)
            .arg("--json")
            .arg(&json)
            .arg("--samples")
            .arg(samples.to_string());
        match self.name {
            "jax" => cmd
                .arg("--min-sample-secs")
                .arg((min_sample_ms / 1e3).max(0.3).to_string()),
            _ => cmd.arg("--min-sample-ms").arg(min_sample_ms.to_string()),
        };
        let out = cmd
            .output()
            .with_context(|| format!("--peer {}: {}", self.name, self.describe()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            bail!(
                "--peer {} failed ({}): {}",
                self.name,
                self.describe(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let text = std::fs::read_to_string(&json)
            .with_context(|| format!("--peer {}: its report {}", self.name, json.display()))?;
        let _ = std::fs::remove_file(&json);
        serde_json::from_str(&text).with_context(|| {
            format!(
                "--peer {}: {} is not a benchmark report",
                self.name,
                json.display()
            )
        })
    }
}

/// A top-k sweep that only reads (the histogram and tie passes; the mask pass also writes).
fn is_read_sweep(name: &str) -> bool {
    ["topk/pass", "topk/ties_"]
        .iter()
        .any(|p| name.starts_with(p))
}
