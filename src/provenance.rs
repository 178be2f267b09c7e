//! Where a result came from: git commit, machine, time. Recorded in every results file.

/// The git commit this binary was built from (`<hash>`, `<hash>-dirty` when tracked files
/// differed from it at build time, or `unknown` outside a checkout), embedded by `build.rs`:
/// it names the code that ran wherever the binary runs, not the directory it runs in. (Cargo
/// reruns the build script when HEAD or the branch moves; the dirty flag is as of then.)
pub fn git_commit() -> String {
    env!("ASA_LTH_GIT_COMMIT").to_string()
}

/// CPU model name and thread count, e.g. `AMD EPYC 7B13 (2 threads)`.
pub fn cpu_summary() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{model} ({} threads)", rayon::current_num_threads())
}
