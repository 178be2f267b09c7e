#!/usr/bin/env python3
"""GPU peers for `asa-lth bench gemm24`: PyTorch's dense bf16 GEMM and its 2:4 semi-structured
sparse GEMM (torch.sparse.to_sparse_semi_structured, with the cuSPARSELt and the CUTLASS
backend) on the shapes of the asa-lth GPU sweep (src/bench/gemm24_cases.rs), timed with CUDA
events, written as asa-lth benchmark reports (benches/peers/peer_report.py) with the asa-lth
case names, so

    python3 benches/peers/torch_gemm24.py --out-dir results/peers
    asa-lth bench gemm24 --baseline results/peers/torch-cusparselt-gemm24.json
    asa-lth bench gemm24 --baseline results/peers/torch-cutlass-gemm24.json
    asa-lth bench gemm24 --baseline results/peers/torch-dense-gemm24.json

print, per case, asa-lth's throughput over the peer's ("vs baseline" > 1: asa-lth is faster).

Shapes: Y (M x N) = X (M x K) . W^T with (K, N) in (4096, 4096), (4096, 11008), (11008, 4096)
and M in 16, 64, 256, 1024, 4096, 16384 (--max-m caps M). W is N(0, 0.02) pruned to 2:4 along K
by magnitude (the 2 largest |w| of each group of 4), bf16; X is N(0, 1) bf16.

Implementations, and the asa-lth names they are written under:
  dense       F.linear(x, w) with the pruned weight stored densely (cuBLAS via PyTorch; bf16
              output). Written as gemm24/dense_bf16/... (asa-lth's cuBLASLt case).
  cusparselt  F.linear(x, to_sparse_semi_structured(w)) with
              SparseSemiStructuredTensor._FORCE_CUTLASS = False (cuSPARSELt; bf16 output).
              Written as gemm24/sparse_bf16/... (so --baseline sets asa-lth's 2:4 kernel against
              it) AND as gemm24/cusparselt_bf16/... (so asa-lth's own cuSPARSELt cases, driven
              through src/backend/cuda/cusparselt.rs, can be checked against PyTorch's use of
              the same library: expect ~1.0x).
  cutlass     The same with _FORCE_CUTLASS = True (PyTorch's CUTLASS 2:4 kernels). Written as
              gemm24/sparse_bf16/....
An implementation PyTorch lacks here (no cuSPARSELt in this build, no semi-structured support on
this card) is skipped with a message; its report is not written.

Work (FLOP/s in the report) is counted as asa-lth counts it: the dense 2*M*N*K for every
implementation, so throughputs compare as speed-ups. Note the output types differ: asa-lth's
2:4 kernel and cuBLASLt case write f32, PyTorch's bf16 (asa-lth's cuSPARSELt case writes f32
when cuSPARSELt allows it, else bf16; its summary says which). Timing: warm-up, then --samples
samples of enough calls to last --min-sample-ms each (CUDA events around the calls), median and
half the IQR over the median, as asa-lth reports them.
"""
import argparse
import os
import sys

from peer_report import build_report, figure, time_cuda, write_report
from peer_report import threads as cpu_threads

# Keep in step with src/bench/gemm24_cases.rs (SHAPES, GPU_ROWS).
SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096)]  # (K, N)
ROWS = [16, 64, 256, 1024, 4096, 16384]
IMPLS = ["dense", "cusparselt", "cutlass"]


def prune_2_4(torch, w):
    """Keep the 2 largest |w| of each group of 4 along K (the last dimension)."""
    n, k = w.shape
    groups = w.view(n, k // 4, 4)
    keep = groups.abs().topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return (groups * mask).view(n, k)


def sparse_weight(torch, w, impl):
    """`w` as a SparseSemiStructuredTensor on the backend of `impl`, or the reason it cannot be."""
    try:
        from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured
    except ImportError as e:
        return None, f"torch.sparse has no semi-structured support ({e})"
    if impl == "cusparselt":
        try:
            ok = torch.backends.cusparselt.is_available()
        except AttributeError:
            ok = False
        if not ok:
            return None, "this PyTorch build has no cuSPARSELt (torch.backends.cusparselt)"
    SparseSemiStructuredTensor._FORCE_CUTLASS = impl == "cutlass"
    try:
        return to_sparse_semi_structured(w), None
    except Exception as e:  # unsupported card or dtype: say so and skip
        return None, f"to_sparse_semi_structured failed: {type(e).__name__}: {e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--out-dir", default="results/peers")
    ap.add_argument("--impl", default=",".join(IMPLS), help="comma list of " + ", ".join(IMPLS))
    ap.add_argument("--max-m", type=int, default=1 << 30)
    ap.add_argument("--samples", type=int, default=11)
    ap.add_argument("--min-sample-ms", type=float, default=50.0)
    ap.add_argument("--device-label", default="cuda:0",
                    help="device name in the report (must match asa-lth's to compare)")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        raise SystemExit(f"torch_gemm24.py: PyTorch is not importable ({e})")
    if not torch.cuda.is_available():
        raise SystemExit("torch_gemm24.py: no CUDA device visible to PyTorch "
                         f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    for i in impls:
        if i not in IMPLS:
            raise SystemExit(f"torch_gemm24.py: unknown --impl {i}; known: {', '.join(IMPLS)}")
    device = torch.device("cuda:0")
    figures = {i: [] for i in impls}
    skipped = {}
    for k, n in SHAPES:
        g = torch.Generator(device=device).manual_seed(24 ^ (k << 20) ^ n)
        w = prune_2_4(torch, torch.randn(n, k, generator=g, device=device) * 0.02)
        w = w.to(torch.bfloat16)
        sparse = {}
        for impl in impls:
            if impl == "dense" or impl in skipped:
                continue
            ws, why = sparse_weight(torch, w, impl)
            if ws is None:
                skipped[impl] = why
                print(f"{impl}: skipped: {why}", file=sys.stderr)
            else:
                sparse[impl] = ws
        for m in ROWS:
            if m > args.max_m:
                continue
            x = torch.randn(m, k, generator=g, device=device).to(torch.bfloat16)
            work = 2.0 * m * n * k
            label = f"m{m}_n{n}_k{k}"
            for impl in impls:
                if impl in skipped:
                    continue
                wt = w if impl == "dense" else sparse[impl]
                # The backend is chosen when the tensor is made; the flag only matters there,
                # but keep it consistent while this implementation runs.
                if impl != "dense":
                    from torch.sparse import SparseSemiStructuredTensor
                    SparseSemiStructuredTensor._FORCE_CUTLASS = impl == "cutlass"
                try:
                    with torch.no_grad():
                        secs = time_cuda(torch, lambda: F.linear(x, wt), args.samples,
                                         args.min_sample_ms)
                except Exception as e:  # e.g. a shape one backend rejects: report, go on
                    print(f"{impl} {label}: failed: {type(e).__name__}: {e}", file=sys.stderr)
                    continue
                names = {"dense": ["dense_bf16"], "cusparselt": ["sparse_bf16", "cusparselt_bf16"],
                         "cutlass": ["sparse_bf16"]}[impl]
                for v in names:
                    figures[impl].append(figure("gemm24", f"gemm24/{v}/{label}", args.device_label, secs,
                                                work))
                f = figures[impl][-1]
                print(f"{impl:10} {label:<22} {f['median_secs'] * 1e3:9.3f} ms "
                      f"{f['throughput'] / 1e12:7.1f} TFLOP/s")
            del x
        del w, sparse
        torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device)
    for impl in impls:
        if impl in skipped or not figures[impl]:
            continue
        report = build_report(f"pytorch-{impl}", cpu_threads(), [args.device_label], None,
                              figures[impl])
        path = os.path.join(args.out_dir, f"torch-{impl}-gemm24.json")
        write_report(path, report)
        print(f"report: {path} (torch {torch.__version__}, {name})")


if __name__ == "__main__":
    main()
