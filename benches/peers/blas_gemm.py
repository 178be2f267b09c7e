#!/usr/bin/env python3
"""Reference-BLAS peer for `asa-lth bench gemm`: numpy's f32 matmul (OpenBLAS in the PyPI
wheels, which picks its kernel for the CPU at run time) at the same shapes and contract as
asa-lth's GEMM rows (`Y = X·Wᵀ`, 1024³ and 2048³, f32), timed the same way (median over
samples of at least `--min-sample-ms` each), written as an asa-lth benchmark report with the
same figure names, so `asa-lth bench gemm --peer blas` (which runs this script in the same run)
or `--baseline` compares the two.

    python3 -m pip install --target .peer-env numpy
    PYTHONPATH=.peer-env python3 benches/peers/blas_gemm.py --json results/peers/blas-gemm.json

Threads: OpenBLAS uses every core it is given; run both sides under the same `taskset`.
"""
import argparse
import time

import numpy as np

from peer_report import build_report, figure, write_report
from peer_report import threads as cpu_threads


def blas_name():
    """`numpy 2.x (OpenBLAS 0.3.y, <core>)` as far as numpy says."""
    name = f"numpy {np.__version__}"
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        name += f" ({blas.get('name', 'blas')} {blas.get('version', '')})".replace(" )", ")")
    except Exception:  # older numpy: no dict mode
        pass
    return name


def time_calls(fn, samples, min_sample_ms, warmup_ms=200.0):
    """Seconds per call: `samples` wall-clock measurements of enough calls to last
    `min_sample_ms` each, after `warmup_ms` of warm-up (asa-lth's method)."""
    t0, calls = time.perf_counter(), 0
    while (time.perf_counter() - t0) * 1e3 < warmup_ms or calls == 0:
        fn()
        calls += 1
    per_call = (time.perf_counter() - t0) / calls
    reps = max(1, int(min_sample_ms / 1e3 / max(per_call, 1e-9) + 0.999))
    out = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append((time.perf_counter() - t) / reps)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--samples", type=int, default=11)
    ap.add_argument("--min-sample-ms", type=float, default=50.0)
    ap.add_argument("--sizes", default="1024,2048", help="square sizes, comma-separated")
    a = ap.parse_args()
    if a.samples < 3:
        ap.error(f"--samples {a.samples}: a median and spread need at least 3 repeats")
    rng = np.random.default_rng(1234)
    figures = []
    for m in (int(s) for s in a.sizes.split(",")):
        x = rng.uniform(-1, 1, (m, m)).astype(np.float32)
        w = rng.uniform(-1, 1, (m, m)).astype(np.float32)
        y = np.empty((m, m), np.float32)
        secs = time_calls(lambda: np.matmul(x, w.T, out=y), a.samples, a.min_sample_ms)
        figures.append(figure("gemm", f"gemm/f32/{m}x{m}x{m}", "cpu", secs, 2.0 * m ** 3))
        f = figures[-1]
        print(f"{f['name']}: {f['median_secs'] * 1e3:.3f} ms, {f['throughput'] / 1e9:.1f} GFLOP/s")
    report = build_report(blas_name(), cpu_threads(), ["cpu"], None, figures)
    if a.json:
        write_report(a.json, report)
        print("report:", a.json)


if __name__ == "__main__":
    main()
