"""Shared by the peer scripts: provenance for the asa-lth benchmark report JSON (the schema is
results/README.md, "Benchmark reports"), and its atomic write."""
import json
import statistics
import os
import platform
import subprocess
import sys


def git_commit():
    """The asa-lth commit the peer ran beside (`unknown` outside a checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def cpu_model():
    """CPU model name, as asa-lth reports it."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threads():
    """CPU threads this process may use (its affinity mask)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def build_report(implementation, threads, devices, roofline, figures):
    """An asa-lth benchmark report (results/README.md) for a peer's figures."""
    return {
        "format": 1,
        "implementation": implementation,
        "git_commit": git_commit(),
        "machine": {"cpu": f"{cpu_model()} ({threads} threads)", "threads": threads,
                    "devices": devices, "os": platform.system().lower()},
        "roofline": roofline,
        "figures": figures,
        "command": "python3 " + " ".join(sys.argv),
    }


def write_report(path, report):
    """Write `report` as JSON to `path` atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)


def time_cuda(torch, fn, samples, min_sample_ms, warmup_ms=200.0):
    """Seconds per call of `fn` on the current CUDA device: `samples` CUDA-event measurements,
    each of enough calls to last `min_sample_ms`, after `warmup_ms` of warm-up."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    spent, calls = 0.0, 0
    while spent < warmup_ms or calls == 0:
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        spent += start.elapsed_time(stop)
        calls += 1
    reps = max(1, int(min_sample_ms / max(spent / calls, 1e-6) + 0.999))
    out = []
    for _ in range(samples):
        start.record()
        for _ in range(reps):
            fn()
        stop.record()
        stop.synchronize()
        out.append(start.elapsed_time(stop) / 1e3 / reps)
    return out


def median_spread(xs):
    """Median and half the interquartile range relative to it (asa-lth's spread)."""
    v = sorted(xs)
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    med = statistics.median(v)
    return med, 0.5 * (q[2] - q[0]) / med


def figure(kernel, name, device, secs, work):
    """One asa-lth benchmark figure (FLOP/s) from per-call seconds."""
    med, spread = median_spread(secs)
    return {"kernel": kernel, "name": name, "device": device, "unit": "FLOP/s",
            "median_secs": med, "rel_spread": spread, "samples": len(secs),
            "throughput": work / med, "roofline_ratio": None}
