//! Criterion benches of every kernel at the model's shapes, on every available device
//! (the CPU today; CUDA cases join the same list when the CUDA backend lands). Each bench's id
//! is `device/kernel/variant/shape`; throughput is FLOPs (shown as elem/s), bytes, or tokens.
//! The same cases, with the roofline ratios and JSON, come from `asa-lth bench`.

use asa_lth::bench::{cpu_cases, Unit};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn bench_all(c: &mut Criterion) {
    let cases = cpu_cases(&[]);
    for mut case in cases {
        let mut group = c.benchmark_group(format!("{}/{}", case.device, case.kernel));
        group.throughput(match case.unit {
            Unit::Bytes => Throughput::Bytes(case.work as u64),
            Unit::Flops | Unit::Tokens => Throughput::Elements(case.work as u64),
        });
        // Slow cases (a full training step at a 33k vocabulary is ~1 s on 2 cores) get the
        // minimum sample count so `cargo bench` stays well under 15 minutes.
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        let id = case
            .name
            .split_once('/')
            .map_or(case.name.clone(), |(_, r)| r.to_string());
        group.bench_function(id, |b| b.iter(|| (case.run)()));
        group.finish();
    }
}

criterion_group!(benches, bench_all);
criterion_main!(benches);
