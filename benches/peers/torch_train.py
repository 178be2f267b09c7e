#!/usr/bin/env python3
"""PyTorch eager peer of asa-lth's training step: the same decoder as src/model/gpt.rs (and
benches/peers/jax_train.py) trained with torch on CUDA (or the CPU, as a sanity check), timed
per step, written as an asa-lth benchmark report (results/README.md; same figure names as
`asa-lth bench train_step`) so `asa-lth bench --baseline` and scripts/gpu-validate.sh can set
the two side by side.

    python3 benches/peers/torch_train.py --json results/peers/torch-train-cuda.json
    python3 benches/peers/torch_train.py --device cpu --json results/peers/torch-train-cpu.json

The model, as asa-lth's (src/model/params.rs, gpt.rs): token embedding wte (V x C, N(0, 0.02)),
position embedding wpe (T x C, N(0, 0.01)); per block, pre-LN: x += Wo.attn(LN1(x)) + bo,
x += Wproj.gelu_tanh(Wfc.LN2(x) + bfc) + bproj, with separate Q, K, V Linear layers (weights
C x C and biases), causal softmax attention with scale 1/sqrt(D), Wo and Wproj initialised with
std 0.02/sqrt(2L), layernorm eps 1e-5; final layernorm; the head is TIED to wte
(logits = LN_f(x).wte^T); mean token cross-entropy. AdamW: lr 1e-3 (constant here, as in the
JAX peer), betas (0.9, 0.95), eps 1e-8, decoupled weight decay 0.1 on matrices only (wte, wpe
and the Linear weights; not biases or layernorm), global-norm clipping at 1.0.

Precision (--precision):
  bf16  autocast(bfloat16) around the forward: matmuls take bf16 operands with f32
        accumulation, softmax/layernorm/loss stay f32 (autocast's policy), f32 master weights
        and AdamW state. This is what asa-lth's CUDA backend does (cuBLASLt bf16 operands, f32
        accumulation, f32 master weights), so it is the default on CUDA.
  f32   everything f32 with TF32 switched off (torch.backends.*.allow_tf32 = False). The
        default on the CPU, where asa-lth runs f32.
Attention (--attention): `sdpa` (F.scaled_dot_product_attention(is_causal=True): the flash or
memory-efficient kernel, what an eager PyTorch user writes; the default) or `manual`
(materialised QK^T, masked softmax, PV). The optimiser is torch.optim.AdamW with its default
implementation for the device (foreach on CUDA) unless --adamw fused.

Timing: after warm-up (at least 1 s and 3 steps), each of --samples samples times `reps` whole
steps (forward, backward, clip, AdamW, zero_grad), reps chosen so a sample lasts at least
--min-sample-secs; CUDA events on the GPU (device time between the first and last step), the
wall clock on the CPU. Reported: median tokens/s (B*T / median seconds per step), rel_spread
(half the inter-quartile range over the median, as asa-lth reports it), and the peak device
memory (torch.cuda.max_memory_allocated, bytes) as the figure's extra field `peak_memory_bytes`.
"""
import argparse
import math
import statistics
import time

from peer_report import build_report, write_report
from peer_report import threads as cpu_threads


def parse_args():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]))
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--device", default="auto",
                    help="cuda, cuda:N, cpu or auto (CUDA when available; default)")
    ap.add_argument("--precision", choices=["auto", "bf16", "f32"], default="auto",
                    help="bf16 autocast matmuls or plain f32 (auto: bf16 on CUDA, f32 on CPU)")
    ap.add_argument("--attention", choices=["sdpa", "manual"], default="sdpa")
    ap.add_argument("--adamw", choices=["default", "foreach", "fused"], default="default",
                    help="torch.optim.AdamW implementation")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--vocabs", default="synthetic:153,wt2vocab:33278",
                    help="label:size pairs; labels match asa-lth's train_step figure names")
    ap.add_argument("--samples", type=int, default=11)
    ap.add_argument("--min-sample-secs", type=float, default=0.3)
    ap.add_argument("--warmup-secs", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=1)
    return ap.parse_args()


def build_model(torch, n_layer, n_head, d, vocab, ctx, attention, device):
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d, eps=1e-5)
            self.wq, self.wk, self.wv = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.wo = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d, eps=1e-5)
            self.w_fc = nn.Linear(d, 4 * d)
            self.w_proj = nn.Linear(4 * d, d)

        def forward(self, x):
            B, T, C = x.shape
            hd = C // n_head
            h = self.ln1(x)
            q = self.wq(h).view(B, T, n_head, hd).transpose(1, 2)
            k = self.wk(h).view(B, T, n_head, hd).transpose(1, 2)
            v = self.wv(h).view(B, T, n_head, hd).transpose(1, 2)
            if attention == "sdpa":
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
                causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                s = s.masked_fill(~causal, float("-inf"))
                a = torch.softmax(s.float(), dim=-1).to(v.dtype) @ v
            a = a.transpose(1, 2).reshape(B, T, C)
            x = x + self.wo(a)
            h = F.gelu(self.w_fc(self.ln2(x)), approximate="tanh")
            return x + self.w_proj(h)

    class Gpt(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Parameter(torch.empty(vocab, d))
            self.wpe = nn.Parameter(torch.empty(ctx, d))
            self.blocks = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(d, eps=1e-5)
            resid = 0.02 / math.sqrt(2 * n_layer)
            with torch.no_grad():
                self.wte.normal_(0.0, 0.02)
                self.wpe.normal_(0.0, 0.01)
                for b in self.blocks:
                    for lin in (b.wq, b.wk, b.wv, b.wo, b.w_fc, b.w_proj):
                        std = resid if lin in (b.wo, b.w_proj) else 0.02
                        lin.weight.normal_(0.0, std)
                        lin.bias.zero_()

        def forward(self, tokens, targets):
            T = tokens.shape[1]
            x = self.wte[tokens] + self.wpe[:T]
            for b in self.blocks:
                x = b(x)
            logits = self.ln_f(x) @ self.wte.t()  # tied head
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]),
                                   targets.view(-1))

    return Gpt().to(device)


def make_optimizer(torch, model, impl):
    decay = [p for p in model.parameters() if p.dim() >= 2]  # wte, wpe, Linear weights
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    kw = {}
    if impl == "foreach":
        kw["foreach"] = True
    elif impl == "fused":
        kw["fused"] = True
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95), eps=1e-8, **kw)


def quantile(xs, p):
    """Linear-interpolation quantile (numpy's default), as the JAX peer and asa-lth use."""
    s = sorted(xs)
    x = p * (len(s) - 1)
    i = int(math.floor(x))
    j = min(i + 1, len(s) - 1)
    return s[i] + (s[j] - s[i]) * (x - i)


class Clock:
    """Seconds of the work queued between start() and stop(): CUDA events or the wall clock."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"

    def start(self):
        if self.cuda:
            self.e0 = self.torch.cuda.Event(enable_timing=True)
            self.e1 = self.torch.cuda.Event(enable_timing=True)
            self.e0.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.e1.record()
            self.e1.synchronize()
            return self.e0.elapsed_time(self.e1) / 1e3
        return time.perf_counter() - self.t0


def main():
    a = parse_args()
    import torch

    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"torch_train: --device {a.device} but torch.cuda.is_available() is "
                         f"False (torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    precision = a.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "f32"
    # f32 means f32: no TF32 tensor-core shortcuts.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if device.type == "cuda":
        dev_label = f"cuda:{device.index or 0}"
        props = torch.cuda.get_device_properties(device)
        dev_name = props.name
    else:
        dev_label, dev_name = "cpu", "cpu"
    B, T, d = a.batch, a.seq_len, a.d_model
    clock = Clock(torch, device)
    figures = []
    for item in a.vocabs.split(","):
        label, vocab = item.split(":")
        vocab = int(vocab)
        torch.manual_seed(a.seed)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        model = build_model(torch, a.layers, a.heads, d, vocab, T, a.attention, device)
        opt = make_optimizer(torch, model, a.adamw)
        g = torch.Generator(device="cpu").manual_seed(a.seed)
        tokens = torch.randint(0, vocab, (B, T), generator=g).to(device)
        targets = torch.randint(0, vocab, (B, T), generator=g).to(device)
        params = list(model.parameters())

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=precision == "bf16"):
                loss = model(tokens, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        # Warm-up (autotuning, allocator, lazy init), then calibrate reps per sample.
        n, t0 = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t0 < a.warmup_secs:
            loss = step()
            n += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        clock.start()
        for _ in range(3):
            loss = step()
        per = clock.stop() / 3
        reps = max(1, math.ceil(a.min_sample_secs / max(per, 1e-9)))
        samples = []
        for _ in range(a.samples):
            clock.start()
            for _ in range(reps):
                loss = step()
            samples.append(clock.stop() / reps)
        med = statistics.median(samples)
        q1, q3 = quantile(samples, 0.25), quantile(samples, 0.75)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        fig = {
            "kernel": "train_step",
            "name": f"train_step/{label}/b{B}_t{T}_d{d}_l{a.layers}_h{a.heads}_v{vocab}",
            "device": dev_label,
            "unit": "tokens/s",
            "median_secs": med,
            "rel_spread": 0.5 * (q3 - q1) / med,
            "samples": len(samples),
            "throughput": B * T / med,
            "roofline_ratio": None,
            "peak_memory_bytes": peak,
            "precision": precision,
            "attention": a.attention,
            "reps_per_sample": reps,
        }
        figures.append(fig)
        mem = f", peak {peak / 2**20:.1f} MiB" if peak is not None else ""
        print(f"{fig['name']} [{dev_label} {precision} {a.attention}]: "
              f"{fig['throughput']:,.0f} tokens/s ±{100 * fig['rel_spread']:.1f}% "
              f"(loss {float(loss):.3f}{mem})", flush=True)
        del model, opt, params, step, loss, tokens, targets
    impl = (f"pytorch {torch.__version__} eager ({dev_name}, {precision}"
            f"{' autocast' if precision == 'bf16' else ', no TF32'}, attention {a.attention}, "
            f"AdamW {a.adamw}; CUDA {torch.version.cuda})")
    threads = torch.get_num_threads() if device.type == "cpu" else cpu_threads()
    report = build_report(impl, threads, [dev_label], None, figures)
    if a.json:
        write_report(a.json, report)
        print("report:", a.json)


if __name__ == "__main__":
    main()
