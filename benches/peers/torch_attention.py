#!/usr/bin/env python3
"""GPU peers for `asa-lth bench attention`: PyTorch scaled_dot_product_attention (SDPA) and
FlexAttention on the same shapes and the same masks as the asa-lth GPU sweep
(src/bench/attention_cases.rs), bf16, forward and backward, timed with CUDA events, written as
asa-lth benchmark reports (benches/peers/peer_report.py) with the asa-lth case names, so

    asa-lth bench attention --dump-masks /tmp/attn-masks          # once; CPU only, no GPU needed
    python3 benches/peers/torch_attention.py --masks /tmp/attn-masks --out-dir results/peers
    asa-lth bench attention --baseline results/peers/torch-sdpa-attention.json
    asa-lth bench attention --baseline results/peers/torch-flex-attention.json

print, per case, asa-lth's throughput over the peer's ("vs baseline" > 1: asa-lth is faster).

Masks: read from the dump (index.json + raw u32 little-endian words, (B, 1, T, ceil(T/32)),
key j of query i at bit j%32 of word j/32; the effective mask is that AND j <= i). The dump
has the ASA masks (synthetic-corpus tags) and the random masks (density 0.05 / 0.3 below the
diagonal, diagonal always set, so no row is fully masked: SDPA would give NaN there). `causal`
and `ones` are built here. One mask per sequence, shared by every head.

Shapes (from index.json): B = 16384/T, H = 2048/D, D 64 and 128, T 512..8192; layout
(B, H, T, D) bf16 contiguous.

Per case and implementation:
  SDPA   `causal`: is_causal=True (no mask tensor). Every other mask, `ones` included: an
         explicit boolean attn_mask (B, 1, T, T) = bits AND tril. PyTorch picks the backend
         (with an explicit mask: memory-efficient or math; flash only for is_causal).
  Flex   torch.compile(flex_attention) with a BlockMask from create_block_mask, whose mask_mod
         reads the same packed words: (words[b, q, kv // 32] >> (kv % 32)) & 1 and kv <= q.
         Block-mask creation is done once per case and NOT timed (asa-lth's Ops call rebuilds
         its tile lists every call, which its time includes).
Forward: under torch.no_grad(). Backward: one forward with autograd, then
torch.autograd.grad(out, (q, k, v), dout, retain_graph=True) timed (the backward only).

Work (FLOP/s in the report) is counted exactly as asa-lth counts it: forward 4*D*H*P with P
the allowed (mask AND causal) pairs summed over the batch (index.json's allowed_pairs),
backward 2.5x that. Timing: warm-up, then --samples samples of enough calls to last
--min-sample-ms each (CUDA events around the calls), median and half the IQR over the median.
"""
import argparse
import json
import os

import torch
import torch.nn.functional as F

from peer_report import build_report, figure, time_cuda, write_report
from peer_report import threads as cpu_threads


def load_index(masks_dir):
    with open(os.path.join(masks_dir, "index.json")) as f:
        index = json.load(f)
    masks = {(m["t"], m["mask"]): m for m in index["masks"]}
    return index, masks


def packed_words(masks_dir, entry, device):
    """(B, T, W) int32 tensor of the dumped words (bit patterns of the u32 words)."""
    b, t, w = entry["b"], entry["t"], entry["words_per_row"]
    with open(os.path.join(masks_dir, entry["file"]), "rb") as f:
        raw = bytearray(f.read())
    assert len(raw) == b * t * w * 4, f"{entry['file']}: size does not match index.json"
    words = torch.frombuffer(raw, dtype=torch.int32)  # little-endian hosts only
    return words.view(b, t, w).to(device)


def dense_bool(words, t):
    """(B, 1, T, T) bool: unpacked bits AND causal."""
    b = words.shape[0]
    j = torch.arange(t, device=words.device)
    bits = (words[:, :, j // 32] >> (j % 32)) & 1  # (B, T, T)
    causal = torch.ones(t, t, dtype=torch.bool, device=words.device).tril()
    return (bits.bool() & causal).view(b, 1, t, t)


def sdpa_fn(case, words):
    if case["mask"] == "causal":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    dense = dense_bool(words, case["t"])
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=dense)


def flex_fn(case, words, device, flex):
    from torch.nn.attention.flex_attention import create_block_mask

    if words is None:
        def mask_mod(b, h, q, kv):
            return kv <= q
    else:
        def mask_mod(b, h, q, kv):
            return (((words[b, q, kv // 32] >> (kv % 32)) & 1) == 1) & (kv <= q)
    t, b = case["t"], case["b"]
    try:
        bm = create_block_mask(mask_mod, b, None, t, t, device=device, _compile=True)
    except TypeError:  # older torch without _compile
        bm = create_block_mask(mask_mod, b, None, t, t, device=device)
    return lambda q, k, v: flex(q, k, v, block_mask=bm)


def run_case(impl_fn, case, args, device, pairs):
    b, h, t, d = case["b"], case["h"], case["t"], case["d"]
    g = torch.Generator(device="cpu").manual_seed(t * 1000 + d)
    mk = lambda: (torch.rand(b, h, t, d, generator=g) * 2 - 1).to(device, torch.bfloat16)
    q, k, v, dout = mk(), mk(), mk(), mk()
    fwd_work = 4.0 * d * h * pairs
    name = case["name_suffix"]
    figs = []
    with torch.no_grad():
        secs = time_cuda(torch, lambda: impl_fn(q, k, v), args.samples, args.min_sample_ms)
    figs.append(figure("attention", f"attention/fwd/{name}", args.device_label, secs, fwd_work))
    qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))
    out = impl_fn(qg, kg, vg)
    secs = time_cuda(
        torch, lambda: torch.autograd.grad(out, (qg, kg, vg), dout, retain_graph=True),
        args.samples, args.min_sample_ms)
    figs.append(figure("attention", f"attention/bwd/{name}", args.device_label, secs, 2.5 * fwd_work))
    del out, qg, kg, vg
    return figs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--masks", required=True,
                    help="directory written by `asa-lth bench attention --dump-masks DIR`")
    ap.add_argument("--out-dir", default="results/peers")
    ap.add_argument("--impl", default="sdpa,flex", help="comma list of sdpa, flex")
    ap.add_argument("--max-t", type=int, default=1 << 30)
    ap.add_argument("--samples", type=int, default=11)
    ap.add_argument("--min-sample-ms", type=float, default=50.0)
    ap.add_argument("--device-label", default="cuda:0",
                    help="device name in the report (must match asa-lth's to compare)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_attention.py: no CUDA device visible to PyTorch")
    device = torch.device("cuda:0")
    index, masks = load_index(args.masks)
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    flex = None
    if "flex" in impls:
        from torch.nn.attention.flex_attention import flex_attention
        flex = torch.compile(flex_attention, dynamic=False)
    figures = {i: [] for i in impls}
    words_cache = {}
    for case in index["cases"]:
        t = case["t"]
        if t > args.max_t:
            continue
        entry = masks[(t, case["mask"])]
        key = (t, case["mask"])
        if key not in words_cache:
            words_cache.clear()  # one T's masks at a time on the device
            words_cache[key] = (packed_words(args.masks, entry, device)
                                if entry.get("file") else None)
        words = words_cache[key]
        if words is None and case["mask"] == "ones":
            # All-ones bits: every word set (T is a multiple of 32 in the sweep).
            words = torch.full((case["b"], t, entry["words_per_row"]), -1, dtype=torch.int32,
                               device=device)
            words_cache[key] = words
        for impl in impls:
            fn = sdpa_fn(case, words) if impl == "sdpa" else flex_fn(case, words, device, flex)
            figs = run_case(fn, case, args, device, entry["allowed_pairs"])
            figures[impl].extend(figs)
            for f in figs:
                print(f"{impl:5} {f['name']:<44} {f['median_secs'] * 1e3:9.3f} ms "
                      f"{f['throughput'] / 1e12:7.2f} TFLOP/s")
            del fn
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device)
    for impl in impls:
        report = build_report(f"pytorch-{impl}", cpu_threads(), [f"{args.device_label} {name}"],
                              None, figures[impl])
        report["machine"]["devices"] = [args.device_label]
        path = os.path.join(args.out_dir, f"torch-{impl}-attention.json")
        write_report(path, report)
        print(f"report: {path} (torch {torch.__version__}, {name})")


if __name__ == "__main__":
    main()
