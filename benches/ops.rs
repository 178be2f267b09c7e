//! Criterion benches of every kernel at the model's shapes, on every available device
//! (the CPU; and the GPU attention sweep when `cuda:0` opens). Each bench's id is
//! `device/kernel/variant/shape`; throughput is FLOPs (shown as elem/s), bytes, or tokens.
//! The same cases, with the roofline ratios and JSON, come from `asa-lth bench`.
//!
//! The attention sweep here is the quick subset (src/bench/attention_cases.rs,
//! `AttnSweep::cpu_quick`); `ASA_LTH_BENCH_ATTN=full cargo bench` runs the whole CPU sweep.
//! Likewise the 2:4 GEMM (src/bench/gemm24_cases.rs, `Gemm24Sweep::cpu_quick`: M 16 and 512
//! at 4096x4096, M 16 at the two 11008 shapes); `ASA_LTH_BENCH_GEMM24=full` for all of it.

use asa_lth::bench::attention_cases::{self, AttnSweep};
use asa_lth::bench::gemm24_cases::{self, Gemm24Sweep};
use asa_lth::bench::{cpu_cases_with_sweeps, Unit};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::time::Duration;

fn throughput(unit: Unit, work: f64) -> Throughput {
    match unit {
        Unit::Bytes => Throughput::Bytes(work as u64),
        Unit::Flops | Unit::Tokens => Throughput::Elements(work as u64),
    }
}

fn bench_id(name: &str) -> String {
    name.split_once('/')
        .map_or(name.to_string(), |(_, r)| r.to_string())
}

fn bench_all(c: &mut Criterion) {
    let cases = cpu_cases_with_sweeps(
        &[],
        &AttnSweep::cpu_from_env(AttnSweep::cpu_quick()),
        &Gemm24Sweep::cpu_from_env(Gemm24Sweep::cpu_quick()),
    );
    for mut case in cases {
        let mut group = c.benchmark_group(format!("{}/{}", case.device, case.kernel));
        group.throughput(throughput(case.unit, case.work));
        // Slow cases (a full training step at a 33k vocabulary is ~1 s on 2 cores) get the
        // minimum sample count so `cargo bench` stays well under 15 minutes.
        group.sample_size(10);
        if case.kernel == "attention" || case.kernel == "gemm24" {
            // Tens to hundreds of ms per call: flat sampling needs 10 calls, linear 55.
            group.sampling_mode(SamplingMode::Flat);
        }
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        if case.kernel == "gemm24" {
            // Its weights and inputs are built on the first call: keep that out of the
            // warm-up, whose mean sets the iterations per sample.
            (case.run)();
        }
        group.bench_function(bench_id(&case.name), |b| b.iter(|| (case.run)()));
        group.finish();
    }
    // GPU attention, timed with the backend's CUDA events.
    match attention_cases::gpu_cases(&|k| k == "attention") {
        Err(why) => eprintln!("GPU attention benches skipped: {why}"),
        Ok(gpu) => {
            for mut case in gpu {
                let mut group = c.benchmark_group(format!("{}/{}", case.device, case.kernel));
                group.throughput(throughput(case.unit, case.work));
                group.sample_size(10);
                group.warm_up_time(Duration::from_millis(300));
                group.measurement_time(Duration::from_secs(1));
                group.bench_function(bench_id(&case.name), |b| {
                    b.iter_custom(|iters| {
                        let secs = (case.run)(iters).expect("GPU attention case");
                        Duration::from_secs_f64(secs)
                    })
                });
                group.finish();
            }
        }
    }
}

/// GPU 2:4 GEMM cases (timed with CUDA events), when `cuda:0` opens; a case whose first call
/// fails (e.g. cuSPARSELt rejecting a shape) is skipped with its error.
fn bench_gemm24_gpu(c: &mut Criterion) {
    match gemm24_cases::gpu_cases(&|k| k == "gemm24", &Gemm24Sweep::gpu()) {
        Err(why) => eprintln!("GPU gemm24 benches skipped: {why}"),
        Ok(gpu) => {
            for note in &gpu.notes {
                eprintln!("{note}");
            }
            for mut case in gpu.cases {
                if let Err(e) = (case.run)(1) {
                    eprintln!("{} skipped: {e}", case.name);
                    continue;
                }
                let mut group = c.benchmark_group(format!("{}/{}", case.device, case.kernel));
                group.throughput(throughput(case.unit, case.work));
                group.sample_size(10);
                group.warm_up_time(Duration::from_millis(300));
                group.measurement_time(Duration::from_secs(1));
                group.bench_function(bench_id(&case.name), |b| {
                    b.iter_custom(|iters| {
                        let secs = (case.run)(iters).expect("GPU gemm24 case");
                        Duration::from_secs_f64(secs)
                    })
                });
                group.finish();
            }
        }
    }
}

criterion_group!(benches, bench_all, bench_gemm24_gpu);
criterion_main!(benches);
