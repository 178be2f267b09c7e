"""Shared by the peer scripts: provenance for the asa-lth benchmark report JSON (the schema is
results/README.md, "Benchmark reports"), and its atomic write."""
import json
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
