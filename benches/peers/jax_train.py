#!/usr/bin/env python3
"""CPU peer for `asa-lth bench train_step`: the same decoder (pre-LN GPT, tied head, GELU-tanh,
AdamW with decay on matrices, global-norm clipping at 1.0) trained in JAX on the CPU at the same
shapes, timed per step, written as an asa-lth benchmark report (same JSON shape, same figure
names) so `asa-lth bench --baseline` compares the two.

    python3 -m pip install --target .peer-env "jax[cpu]"
    PYTHONPATH=.peer-env python3 benches/peers/jax_train.py --json results/peers/jax-cpu.json

Thread count: XLA's CPU backend uses every core it is given; run both sides under the same
`taskset` (or on the same machine unrestricted) and compare `machine.threads`.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from peer_report import build_report, write_report
from peer_report import threads as cpu_threads


def init_params(key, n_layer, d, vocab, ctx):
    def normal(key, shape, std):
        return jax.random.normal(key, shape, jnp.float32) * std

    keys = iter(jax.random.split(key, 4 + 8 * n_layer))
    resid = 0.02 / np.sqrt(2 * n_layer)
    p = {"wte": normal(next(keys), (vocab, d), 0.02), "wpe": normal(next(keys), (ctx, d), 0.01)}
    blocks = []
    for _ in range(n_layer):
        blocks.append({
            "ln1_w": jnp.ones(d), "ln1_b": jnp.zeros(d),
            "wq": normal(next(keys), (d, d), 0.02), "bq": jnp.zeros(d),
            "wk": normal(next(keys), (d, d), 0.02), "bk": jnp.zeros(d),
            "wv": normal(next(keys), (d, d), 0.02), "bv": jnp.zeros(d),
            "wo": normal(next(keys), (d, d), resid), "bo": jnp.zeros(d),
            "ln2_w": jnp.ones(d), "ln2_b": jnp.zeros(d),
            "w_fc": normal(next(keys), (4 * d, d), 0.02), "b_fc": jnp.zeros(4 * d),
            "w_proj": normal(next(keys), (d, 4 * d), resid), "b_proj": jnp.zeros(d),
        })
    p["blocks"] = blocks
    p["lnf_w"], p["lnf_b"] = jnp.ones(d), jnp.zeros(d)
    return p


def layernorm(x, w, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) * jax.lax.rsqrt(v + 1e-5) * w + b


def forward(p, tokens, targets, n_head):
    B, T = tokens.shape
    x = p["wte"][tokens] + p["wpe"][:T]
    d = x.shape[-1]
    hd = d // n_head
    causal = jnp.tril(jnp.ones((T, T), bool))
    for blk in p["blocks"]:
        h = layernorm(x, blk["ln1_w"], blk["ln1_b"])
        q = (h @ blk["wq"].T + blk["bq"]).reshape(B, T, n_head, hd)
        k = (h @ blk["wk"].T + blk["bk"]).reshape(B, T, n_head, hd)
        v = (h @ blk["wv"].T + blk["bv"]).reshape(B, T, n_head, hd)
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(hd)
        s = jnp.where(causal, s, -jnp.inf)
        a = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, -1), v).reshape(B, T, d)
        x = x + a @ blk["wo"].T + blk["bo"]
        h = layernorm(x, blk["ln2_w"], blk["ln2_b"])
        h = jax.nn.gelu(h @ blk["w_fc"].T + blk["b_fc"], approximate=True)
        x = x + h @ blk["w_proj"].T + blk["b_proj"]
    x = layernorm(x, p["lnf_w"], p["lnf_b"])
    logits = x @ p["wte"].T
    logp = jax.nn.log_softmax(logits, -1)
    return -jnp.take_along_axis(logp, targets[..., None], -1).mean()


def make_step(n_head, lr=1e-3, b1=0.9, b2=0.95, eps=1e-8, wd=0.1, clip=1.0):
    def step(p, m, v, t, tokens, targets):
        loss, g = jax.value_and_grad(forward)(p, tokens, targets, n_head)
        norm = jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(g)))
        scale = jnp.minimum(1.0, clip / (norm + 1e-12))

        def upd(p, g, m, v):
            g = g * scale
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mh = m / (1 - b1 ** t)
            vh = v / (1 - b2 ** t)
            decay = wd if p.ndim >= 2 else 0.0  # matrices only, as asa-lth does
            return p - lr * (mh / (jnp.sqrt(vh) + eps) + decay * p), m, v

        out = jax.tree_util.tree_map(upd, p, g, m, v)
        istuple = lambda x: isinstance(x, tuple)
        pick = lambda i: jax.tree_util.tree_map(lambda o: o[i], out, is_leaf=istuple)
        return pick(0), pick(1), pick(2), loss

    return jax.jit(step, donate_argnums=(0, 1, 2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--vocabs", default="synthetic:153,vocab2k:2000,wt2vocab:33278",
                    help="label:size pairs; labels match asa-lth's train_step figure names")
    ap.add_argument("--samples", type=int, default=11)
    ap.add_argument("--min-sample-secs", type=float, default=0.3)
    a = ap.parse_args()
    threads = cpu_threads()
    figures = []
    B, T, d = a.batch, a.seq_len, a.d_model
    for item in a.vocabs.split(","):
        label, vocab = item.split(":")
        vocab = int(vocab)
        key = jax.random.PRNGKey(1)
        p = init_params(key, a.layers, d, vocab, T)
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, p)
        m, v = zeros(), zeros()
        rng = np.random.default_rng(1)
        tokens = jnp.asarray(rng.integers(0, vocab, (B, T)), jnp.int32)
        targets = jnp.asarray(rng.integers(0, vocab, (B, T)), jnp.int32)
        step = make_step(a.heads)
        t = 1
        p, m, v, loss = step(p, m, v, float(t), tokens, targets)  # compile
        loss.block_until_ready()
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < 1.0 or n < 2:  # warm-up, and calibrate reps
            t += 1
            p, m, v, loss = step(p, m, v, float(t), tokens, targets)
            loss.block_until_ready()
            n += 1
        per = (time.perf_counter() - t0) / n
        reps = max(1, int(np.ceil(a.min_sample_secs / per)))
        samples = []
        for _ in range(a.samples):
            s = time.perf_counter()
            for _ in range(reps):
                t += 1
                p, m, v, loss = step(p, m, v, float(t), tokens, targets)
            loss.block_until_ready()
            samples.append((time.perf_counter() - s) / reps)
        med = statistics.median(samples)
        q = np.quantile(samples, [0.25, 0.75])
        figures.append({
            "kernel": "train_step",
            "name": f"train_step/{label}/b{B}_t{T}_d{d}_l{a.layers}_h{a.heads}_v{vocab}",
            "device": "cpu",
            "unit": "tokens/s",
            "median_secs": med,
            "rel_spread": float(0.5 * (q[1] - q[0]) / med),
            "samples": len(samples),
            "throughput": B * T / med,
            "roofline_ratio": None,
        })
        print(f"{figures[-1]['name']}: {B * T / med:,.0f} tokens/s (loss {float(loss):.3f})")
    report = build_report(f"jax {jax.__version__} (XLA CPU, jit)", threads, ["cpu"], None,
                          figures)
    if a.json:
        write_report(a.json, report)
        print("report:", a.json)


if __name__ == "__main__":
    main()
