"""Shared by the peer scripts: provenance for the asa-lth benchmark report JSON (the schema is
results/README.md, "Benchmark reports"), and its atomic write."""
import json
import os
import platform
import subprocess


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


def write_report(path, report):
    """Write `report` as JSON to `path` atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)
