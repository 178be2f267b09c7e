#!/usr/bin/env python3
"""GPU peer for `asa-lth bench topk`: the same global magnitude pruning step (f = 0.2 of the
remaining weights of 10^7 f32 weights over 20 tensors whose masks already have ~20% pruned)
done the way a PyTorch user does it — gather the unpruned |w| of every tensor into one vector,
then torch.kthvalue (threshold) or torch.topk (indices) or torch.sort, then write the masks —
timed with CUDA events, written as an asa-lth benchmark report (same JSON shape as
benches/peers/jax_train.py, same figure-name scheme and work as src/bench/topk_cases.rs) so
`asa-lth bench --baseline` can set the two side by side.

    python3 benches/peers/torch_topk.py --json results/peers/torch-topk-cuda.json

Figures (unit B/s, work = 8 bytes per weight: one read of the f32 weight and f32 mask, as in
src/bench/topk_cases.rs; elements/s = B/s / 8):
  topk/cuda_torch_kthvalue_f32/...  threshold by kthvalue, then prune |w| <= threshold (this
                                    does NOT resolve ties by index: with ties it may prune more
                                    than n; it is the fast path people use)
  topk/cuda_torch_topk_f32/...      exact n smallest by topk(largest=False), scattered back
  topk/cuda_torch_sort_f32/...      exact, by a full sort of (|w|) with a stable sort so equal
                                    |w| keep global index order (the asa-lth tie rule)
  copy/cuda_f32/...                 device-to-device copy of 256 MiB (the roofline)
The roofline (copy bandwidth, and an f32 GEMM rate with TF32 off) is measured in the same run,
so roofline_ratio = throughput / copy bandwidth.
"""
import argparse
import math
import statistics

import torch

from peer_report import build_report, write_report
from peer_report import threads as cpu_threads

WEIGHTS = 10_000_000
TENSORS = 20
FRACTION = 0.2


def tensor_sizes():
    parts = [i % 4 + 1 for i in range(TENSORS)]
    total = sum(parts)
    sizes = [WEIGHTS * p // total for p in parts]
    sizes[-1] += WEIGHTS - sum(sizes)
    return sizes


def make_inputs(device, seed=77):
    g = torch.Generator(device="cpu").manual_seed(seed)
    ws, ms = [], []
    for n in tensor_sizes():
        ws.append((torch.randn(n, generator=g) * 0.02).to(device))
        ms.append((torch.rand(n, generator=g) >= 0.2).float().to(device))
    return ws, ms


def prune_kthvalue(ws, ms):
    flat = torch.cat([w[m != 0].abs() for w, m in zip(ws, ms)])
    n = math.ceil(FRACTION * flat.numel())
    if n == 0:
        return
    thr = torch.kthvalue(flat, n).values
    for w, m in zip(ws, ms):
        m.masked_fill_(w.abs() <= thr, 0.0)


def _scatter_pruned(ws, ms, keep_idx_sorted, n):
    # Global indices of the unpruned weights, in tensor order.
    idx = torch.cat([torch.nonzero(m != 0).squeeze(1) + off
                     for m, off in zip(ms, _offsets(ws))])
    chosen = idx[keep_idx_sorted[:n]]
    flat_masks = torch.cat(ms)
    flat_masks[chosen] = 0.0
    for m, part in zip(ms, torch.split(flat_masks, [w.numel() for w in ws])):
        m.copy_(part)


def _offsets(ws):
    out, o = [], 0
    for w in ws:
        out.append(o)
        o += w.numel()
    return out


def prune_topk(ws, ms):
    flat = torch.cat([w[m != 0].abs() for w, m in zip(ws, ms)])
    n = math.ceil(FRACTION * flat.numel())
    if n == 0:
        return
    sel = torch.topk(flat, n, largest=False, sorted=False).indices
    _scatter_pruned(ws, ms, sel, n)


def prune_sort(ws, ms):
    flat = torch.cat([w[m != 0].abs() for w, m in zip(ws, ms)])
    n = math.ceil(FRACTION * flat.numel())
    if n == 0:
        return
    order = torch.sort(flat, stable=True).indices
    _scatter_pruned(ws, ms, order, n)


def time_cuda(fn, reset, samples, min_sample_secs):
    """Median and relative spread of seconds per call, CUDA events; `reset` runs untimed."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):  # warm-up
        reset()
        fn()
    torch.cuda.synchronize()
    reset()
    start.record()
    fn()
    stop.record()
    torch.cuda.synchronize()
    per = max(start.elapsed_time(stop) / 1e3, 1e-6)
    reps = max(1, int(math.ceil(min_sample_secs / per)))
    out = []
    for _ in range(samples):
        total = 0.0
        for _ in range(reps):
            reset()
            start.record()
            fn()
            stop.record()
            torch.cuda.synchronize()
            total += start.elapsed_time(stop) / 1e3
        out.append(total / reps)
    med = statistics.median(out)
    q1, _, q3 = statistics.quantiles(out, n=4, method="inclusive") if len(out) > 1 else (med,) * 3
    return med, 0.5 * (q3 - q1) / med, len(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--samples", type=int, default=11)
    ap.add_argument("--min-sample-secs", type=float, default=0.2)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_topk.py needs a CUDA device (torch.cuda.is_available() is False)")
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    threads = cpu_threads()

    # Roofline: device copy and f32 GEMM, measured here.
    src = torch.empty(64 << 20, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    med, spread, k = time_cuda(lambda: dst.copy_(src), lambda: None, a.samples, a.min_sample_secs)
    copy_bps = 2 * 4 * src.numel() / med
    figures = [{
        "kernel": "copy", "name": "copy/cuda_f32/256MiB", "device": "cuda", "unit": "B/s",
        "median_secs": med, "rel_spread": spread, "samples": k, "throughput": copy_bps,
        "roofline_ratio": 1.0,
    }]
    del src, dst
    x = torch.randn(4096, 4096, device=dev)
    y = torch.randn(4096, 4096, device=dev)
    med, _, _ = time_cuda(lambda: x @ y, lambda: None, 5, a.min_sample_secs)
    gemm = 2 * 4096 ** 3 / med
    del x, y

    ws, ms = make_inputs(dev)
    saved = [m.clone() for m in ms]

    def reset():
        for m, s in zip(ms, saved):
            m.copy_(s)

    shape = f"n{WEIGHTS}_t{TENSORS}_f{FRACTION}"
    for label, fn in [("kthvalue", prune_kthvalue), ("topk", prune_topk), ("sort", prune_sort)]:
        med, spread, k = time_cuda(lambda: fn(ws, ms), reset, a.samples, a.min_sample_secs)
        work = 8 * WEIGHTS
        figures.append({
            "kernel": "topk", "name": f"topk/cuda_torch_{label}_f32/{shape}", "device": "cuda",
            "unit": "B/s", "median_secs": med, "rel_spread": spread, "samples": k,
            "throughput": work / med, "roofline_ratio": work / med / copy_bps,
        })
    for f in figures:
        print(f"{f['name']}: {f['median_secs'] * 1e3:.3f} ms, {f['throughput'] / 1e9:.1f} GB/s "
              f"({f['roofline_ratio']:.2f} of copy)")
    report = build_report(f"pytorch {torch.__version__} (CUDA {torch.version.cuda})", threads,
                          [f"cuda:0 {torch.cuda.get_device_name(0)}"],
                          {"copy_bytes_per_sec": copy_bps, "gemm_flops": gemm}, figures)
    if a.json:
        write_report(a.json, report)
        print("report:", a.json)


if __name__ == "__main__":
    main()
