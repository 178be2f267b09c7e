//! The benchmark cases: each kernel at the shapes the model uses (B 16, T 128, d_model 128,
//! 2 heads; vocabularies of the synthetic corpus and of WikiText-2), plus the two roofline
//! probes. The same list feeds the criterion benches and `asa-lth bench`.

use super::gemm24_cases::Gemm24Sweep;
use crate::backend::cpu::{adamw, attention, gelu, layernorm, lm_head, matmul, xent};
use crate::backend::{AdamWStep, AttnShape, GradWrite, MatmulShape};
use crate::model::{AdamWConfig, Gpt, GptConfig};
use crate::rng::Rng;

/// What a case's work is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Flops,
    Bytes,
    Tokens,
}

impl Unit {
    /// Throughput label.
    pub fn label(self) -> &'static str {
        match self {
            Unit::Flops => "FLOP/s",
            Unit::Bytes => "B/s",
            Unit::Tokens => "tokens/s",
        }
    }
}

/// One benchmark: a prepared call and the work it does.
pub struct BenchCase {
    /// Kernel family, used to select cases (`asa-lth bench matmul`).
    pub kernel: &'static str,
    /// Unique name: `kernel/variant/shape`.
    pub name: String,
    pub device: String,
    pub unit: Unit,
    /// Work per call in `unit` (FLOPs, bytes moved, tokens).
    pub work: f64,
    /// Runs the kernel once on prepared inputs.
    pub run: Box<dyn FnMut() + Send>,
}

/// The kernel families `cpu_cases` knows.
pub const KERNELS: &[&str] = &[
    "peak",
    "read",
    "copy",
    "gemm",
    "matmul",
    "layernorm",
    "gelu",
    "attention",
    "xent",
    "lm_head",
    "adamw",
    "train_step",
    "gemm24",
    "topk",
    "asa_mask",
];

fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect()
}

/// Vocabulary of the embedded synthetic corpus at its default size, and of WikiText-2.
pub const VOCAB_SYNTHETIC: usize = 153;
pub const VOCAB_WIKITEXT2: usize = 33_278;
/// A mid-sized vocabulary (a small BPE), between the two.
pub const VOCAB_2K: usize = 2_000;

/// The default batch the cases run at: B × T tokens of width d_model.
pub const BATCH: usize = 16;
pub const SEQ: usize = 128;
pub const D_MODEL: usize = 128;

/// The default model shape with vocabulary `vocab`.
/// The `train_step` cases: label and vocabulary (the synthetic corpus's, 2,000, WikiText-2's).
pub const TRAIN_STEP_VOCABS: [(&str, usize); 3] = [
    ("synthetic", VOCAB_SYNTHETIC),
    ("vocab2k", VOCAB_2K),
    ("wt2vocab", VOCAB_WIKITEXT2),
];

/// The `train_step` case's work on any backend: a model of vocabulary `vocab`, one random
/// batch (B × T tokens and targets), and one optimiser step (forward, backward, AdamW) per call.
pub struct TrainStep<O: crate::backend::Ops> {
    pub model: Gpt<O>,
    x: Vec<u32>,
    y: Vec<u32>,
    opt: AdamWConfig,
    step: u32,
}

impl<O: crate::backend::Ops> TrainStep<O> {
    /// The default model on `ops`, with a batch drawn from `rng`.
    pub fn new(ops: O, vocab: usize, rng: &mut Rng) -> crate::Result<Self> {
        let n = BATCH * SEQ;
        Ok(TrainStep {
            model: Gpt::new(ops, default_model(vocab), 1)?,
            x: (0..n).map(|_| rng.below(vocab) as u32).collect(),
            y: (0..n).map(|_| rng.below(vocab) as u32).collect(),
            opt: AdamWConfig::default(),
            step: 0,
        })
    }

    /// One training step.
    pub fn run(&mut self) -> crate::Result<()> {
        self.step += 1;
        let m = &mut self.model;
        m.forward_train(&self.x, &self.y, BATCH, SEQ, None)?;
        m.zero_grad()?;
        m.backward(None)?;
        m.step(1e-3, self.step, &self.opt)?;
        Ok(())
    }
}

/// The figure name of the `train_step` case `label` (shared with the JAX peer's names).
pub fn train_step_name(label: &str, vocab: usize) -> String {
    format!("train_step/{label}/b{BATCH}_t{SEQ}_d{D_MODEL}_l2_h2_v{vocab}")
}

pub fn default_model(vocab: usize) -> GptConfig {
    GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: D_MODEL,
        ctx: SEQ,
        vocab,
    }
}

/// Bytes the CPU cases of kernel family `kernel` hold once built (inputs, outputs, scratch
/// their calls allocate), from the same shapes the builders below use — checked against the
/// machine's memory before the family is built. Families not listed hold less than
/// [`SMALL_FAMILY_BYTES`].
pub fn family_bytes(kernel: &str) -> u64 {
    let (n, c) = (BATCH * SEQ, D_MODEL);
    let f = |floats: usize| 4 * floats as u64;
    match kernel {
        "read" => f(32 << 20),
        "copy" => f(2 * (16 << 20)),
        "gemm" => f(3 * 2048 * 2048 + 6 * 1024 * 1024),
        "matmul" => [(c, c), (c, 4 * c), (4 * c, c), (c, VOCAB_WIKITEXT2)]
            .iter()
            .map(|&(k, oc)| f(3 * n * k + 3 * oc * k + 2 * oc + 3 * n * oc))
            .sum(),
        "xent" => [VOCAB_SYNTHETIC, VOCAB_WIKITEXT2]
            .iter()
            .map(|&v| f(2 * n * v + 3 * n))
            .sum(),
        "lm_head" => [VOCAB_SYNTHETIC, VOCAB_2K, VOCAB_WIKITEXT2]
            .iter()
            .map(|&v| {
                let (rows, cols) = crate::backend::lm_head_blocks(n, v);
                // Two sets of x, W, dx, dW (fused and unfused), the unfused logits and their
                // gradient, the fused op's block.
                f(2 * (2 * n * c + 2 * v * c + 2 * n) + 2 * n * v + rows.min(n) * cols)
            })
            .sum(),
        "train_step" => [VOCAB_SYNTHETIC, VOCAB_2K, VOCAB_WIKITEXT2]
            .iter()
            .map(|&v| default_model(v).training_bytes(BATCH, SEQ, false))
            .sum(),
        // Weights, masks and saved masks of four cases (one bf16), and the sort baseline's
        // keys (16 bytes per weight).
        "topk" => {
            let w = super::topk_cases::WEIGHTS as u64;
            (12 + 12 + 10 + 12 + 16) * w
        }
        _ => SMALL_FAMILY_BYTES,
    }
}

/// The bound [`family_bytes`] assumes for the families it does not itemise (attention at
/// T ≤ 2048, the 2:4 GEMM's CPU sweep, layer norm, GELU, AdamW, masks).
pub const SMALL_FAMILY_BYTES: u64 = 256 << 20;

/// CPU cases whose kernel family is in `only` (all when empty); the attention sweep is
/// [`AttnSweep::cpu`](super::attention_cases::AttnSweep::cpu) unless `ASA_LTH_BENCH_ATTN`
/// says otherwise, the 2:4 GEMM sweep [`Gemm24Sweep::cpu`] unless `ASA_LTH_BENCH_GEMM24` does.
pub fn cpu_cases(only: &[String]) -> Vec<BenchCase> {
    use super::attention_cases::AttnSweep;
    cpu_cases_with(only, &AttnSweep::cpu_from_env(AttnSweep::cpu()))
}

/// [`cpu_cases`] with an explicit attention sweep (criterion runs a smaller one).
pub fn cpu_cases_with(only: &[String], attn: &super::attention_cases::AttnSweep) -> Vec<BenchCase> {
    cpu_cases_with_sweeps(only, attn, &Gemm24Sweep::cpu_from_env(Gemm24Sweep::cpu()))
}

/// [`cpu_cases`] with explicit attention and 2:4 GEMM sweeps (criterion runs smaller ones).
pub fn cpu_cases_with_sweeps(
    only: &[String],
    attn: &super::attention_cases::AttnSweep,
    gemm24: &Gemm24Sweep,
) -> Vec<BenchCase> {
    let want = |k: &str| only.is_empty() || only.iter().any(|o| o == k);
    let dev = || "cpu".to_string();
    let mut rng = Rng::new(1234);
    let mut cases = Vec::new();
    let (b, t, c) = (BATCH, SEQ, D_MODEL);
    let n = b * t;

    if want("peak") {
        // The machine's f32 FMA peak at each FMA level it has (the portable SSE2 build has
        // no FMA instruction: it is no peak of the machine).
        use crate::backend::cpu::isa::Isa;
        const ITERS: usize = 1 << 18;
        let fma = |l: Isa| l >= Isa::Avx2 || crate::backend::cpu::isa::detected() == Isa::Portable;
        for level in Isa::available().into_iter().filter(|&l| fma(l)) {
            cases.push(BenchCase {
                kernel: "peak",
                name: format!("peak/fma_f32/{level}"),
                device: dev(),
                unit: Unit::Flops,
                work: super::peak::fma_flops_per_call(level, ITERS)
                    * rayon::current_num_threads() as f64,
                run: Box::new(move || {
                    std::hint::black_box(super::peak::fma_all_threads(level, ITERS));
                }),
            });
        }
    }
    if want("read") {
        let len = 32 << 20; // 128 MiB of f32: far beyond the caches
        let src = rand(&mut rng, len);
        cases.push(BenchCase {
            kernel: "read",
            name: "read/f32/128MiB".into(),
            device: dev(),
            unit: Unit::Bytes,
            work: (4 * len) as f64,
            run: Box::new(move || {
                std::hint::black_box(super::peak::read_all_threads(&src));
            }),
        });
    }
    if want("copy") {
        let len = 16 << 20; // 64 MiB of f32: far beyond the caches
        let src = rand(&mut rng, len);
        let mut dst = vec![0.0f32; len];
        cases.push(BenchCase {
            kernel: "copy",
            name: "copy/f32/64MiB".into(),
            device: dev(),
            unit: Unit::Bytes,
            work: (2 * 4 * len) as f64,
            run: Box::new(move || {
                super::peak::copy_all_threads(&mut dst, &src);
                std::hint::black_box(&dst);
            }),
        });
    }
    if want("gemm") {
        // Square sizes a reference BLAS is measured at too (benches/peers/blas_gemm.py).
        for m in [1024usize, 2048] {
            let s = MatmulShape { n: m, k: m, oc: m };
            let (x, w) = (rand(&mut rng, m * m), rand(&mut rng, m * m));
            let mut y = vec![0.0f32; m * m];
            cases.push(BenchCase {
                kernel: "gemm",
                name: format!("gemm/f32/{m}x{m}x{m}"),
                device: dev(),
                unit: Unit::Flops,
                work: 2.0 * (m * m * m) as f64,
                run: Box::new(move || {
                    matmul::matmul_fwd(&mut y, &x, &w, None, None, s).expect("shapes fixed above");
                }),
            });
        }
        // The same product through the `gemm` crate (the previous CPU GEMM) at the same
        // level: the in-run baseline of our own kernel.
        let m = 1024;
        let (x, w) = (rand(&mut rng, m * m), rand(&mut rng, m * m));
        let mut y = vec![0.0f32; m * m];
        cases.push(BenchCase {
            kernel: "gemm",
            name: format!("gemm/f32_gemm-crate/{m}x{m}x{m}"),
            device: dev(),
            unit: Unit::Flops,
            work: 2.0 * (m * m * m) as f64,
            run: Box::new(move || {
                let level = crate::backend::cpu::isa::active();
                let mi = m as isize;
                matmul::sgemm_crate_at(level, m, m, m, &mut y, false, &x, mi, 1, &w, 1, mi);
            }),
        });
    }
    if want("matmul") {
        for (label, k, oc) in [
            ("qkv", c, c),
            ("fc", c, 4 * c),
            ("proj", 4 * c, c),
            ("lm_head_wt2", c, VOCAB_WIKITEXT2),
        ] {
            let s = MatmulShape { n, k, oc };
            let (x, w, bias) = (
                rand(&mut rng, n * k),
                rand(&mut rng, oc * k),
                rand(&mut rng, oc),
            );
            let mut y = vec![0.0f32; n * oc];
            let flops = 2.0 * (n * k * oc) as f64;
            cases.push(BenchCase {
                kernel: "matmul",
                name: format!("matmul/fwd_{label}/n{n}_k{k}_oc{oc}"),
                device: dev(),
                unit: Unit::Flops,
                work: flops,
                run: Box::new(move || {
                    matmul::matmul_fwd(&mut y, &x, &w, Some(&bias), None, s).expect("fixed shapes");
                }),
            });
            let (x, w, dy) = (
                rand(&mut rng, n * k),
                rand(&mut rng, oc * k),
                rand(&mut rng, n * oc),
            );
            let (mut dx, mut dw, mut db) =
                (vec![0.0f32; n * k], vec![0.0f32; oc * k], vec![0.0f32; oc]);
            cases.push(BenchCase {
                kernel: "matmul",
                name: format!("matmul/bwd_{label}/n{n}_k{k}_oc{oc}"),
                device: dev(),
                unit: Unit::Flops,
                work: 2.0 * flops,
                run: Box::new(move || {
                    matmul::matmul_bwd(
                        Some((&mut dx, GradWrite::Overwrite)),
                        &mut dw,
                        Some(&mut db),
                        &dy,
                        &x,
                        &w,
                        None,
                        s,
                    )
                    .expect("fixed shapes");
                }),
            });
        }
    }
    if want("layernorm") {
        let (x, w, bb) = (rand(&mut rng, n * c), rand(&mut rng, c), rand(&mut rng, c));
        let (mut y, mut mean, mut rstd) = (vec![0.0f32; n * c], vec![0.0f32; n], vec![0.0f32; n]);
        layernorm::layernorm_fwd(&mut y, &mut mean, &mut rstd, &x, &w, &bb, n, c).expect("fixed");
        let dy = rand(&mut rng, n * c);
        let (mean2, rstd2) = (mean.clone(), rstd.clone());
        let (x2, w2) = (x.clone(), w.clone());
        cases.push(BenchCase {
            kernel: "layernorm",
            name: format!("layernorm/fwd/n{n}_c{c}"),
            device: dev(),
            unit: Unit::Bytes,
            work: (2 * 4 * n * c) as f64,
            run: Box::new(move || {
                layernorm::layernorm_fwd(&mut y, &mut mean, &mut rstd, &x, &w, &bb, n, c)
                    .expect("fixed");
            }),
        });
        let (mut dx, mut dw, mut db) = (vec![0.0f32; n * c], vec![0.0f32; c], vec![0.0f32; c]);
        cases.push(BenchCase {
            kernel: "layernorm",
            name: format!("layernorm/bwd/n{n}_c{c}"),
            device: dev(),
            unit: Unit::Bytes,
            work: (4 * 4 * n * c) as f64,
            run: Box::new(move || {
                layernorm::layernorm_bwd(
                    &mut dx, &mut dw, &mut db, &dy, &x2, &w2, &mean2, &rstd2, n, c,
                )
                .expect("fixed");
            }),
        });
    }
    if want("gelu") {
        let len = n * 4 * c;
        let x = rand(&mut rng, len);
        let dy = rand(&mut rng, len);
        let mut y = vec![0.0f32; len];
        let x2 = x.clone();
        let mut dx = vec![0.0f32; len];
        cases.push(BenchCase {
            kernel: "gelu",
            name: format!("gelu/fwd/{len}"),
            device: dev(),
            unit: Unit::Bytes,
            work: (2 * 4 * len) as f64,
            run: Box::new(move || gelu::gelu_fwd(&mut y, &x).expect("fixed")),
        });
        cases.push(BenchCase {
            kernel: "gelu",
            name: format!("gelu/bwd/{len}"),
            device: dev(),
            unit: Unit::Bytes,
            work: (4 * 4 * len) as f64,
            run: Box::new(move || gelu::gelu_bwd(&mut dx, &x2, &dy).expect("fixed")),
        });
    }
    if want("attention") {
        for (bb, h, tt, d) in [(b, 2, t, 64), (2, 2, 1024, 64)] {
            let s = AttnShape { b: bb, t: tt, h, d };
            let len = bb * tt * h * d;
            let (q, k, v) = (
                rand(&mut rng, len),
                rand(&mut rng, len),
                rand(&mut rng, len),
            );
            let (mut o, mut lse) = (vec![0.0f32; len], vec![0.0f32; bb * h * tt]);
            attention::attention_fwd(&mut o, &mut lse, &q, &k, &v, None, s).expect("fixed");
            // FLOPs counted on the unmasked (causal) pairs: 4·D per pair forward
            // (QKᵀ and PV), 2.5× that backward (the FlashAttention convention).
            let pairs = (bb * h * tt * (tt + 1) / 2) as f64;
            let shape = format!("b{bb}_h{h}_t{tt}_d{d}_causal");
            let (q2, k2, v2, o2, lse2) = (q.clone(), k.clone(), v.clone(), o.clone(), lse.clone());
            let dout = rand(&mut rng, len);
            cases.push(BenchCase {
                kernel: "attention",
                name: format!("attention/fwd/{shape}"),
                device: dev(),
                unit: Unit::Flops,
                work: 4.0 * d as f64 * pairs,
                run: Box::new(move || {
                    attention::attention_fwd(&mut o, &mut lse, &q, &k, &v, None, s).expect("fixed")
                }),
            });
            let (mut dq, mut dk, mut dv) =
                (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; len]);
            cases.push(BenchCase {
                kernel: "attention",
                name: format!("attention/bwd/{shape}"),
                device: dev(),
                unit: Unit::Flops,
                work: 10.0 * d as f64 * pairs,
                run: Box::new(move || {
                    attention::attention_bwd(
                        &mut dq, &mut dk, &mut dv, &dout, &q2, &k2, &v2, &o2, &lse2, None, s,
                    )
                    .expect("fixed")
                }),
            });
        }
    }
    if want("xent") {
        for v in [VOCAB_SYNTHETIC, VOCAB_WIKITEXT2] {
            let logits = rand(&mut rng, n * v);
            let targets: Vec<u32> = (0..n).map(|i| (i % v) as u32).collect();
            let (mut losses, mut lse) = (vec![0.0f32; n], vec![0.0f32; n]);
            let mut dlogits = vec![0.0f32; n * v];
            cases.push(BenchCase {
                kernel: "xent",
                name: format!("xent/fwd_bwd/n{n}_v{v}"),
                device: dev(),
                unit: Unit::Bytes,
                // the forward reads the logits; the backward reads them and writes dlogits
                work: (3 * 4 * n * v) as f64,
                run: Box::new(move || {
                    xent::xent_fwd(&mut losses, &mut lse, &logits, &targets, n, v).expect("fixed");
                    let dloss = 1.0 / n as f32;
                    xent::xent_bwd(&mut dlogits, &logits, &lse, &targets, dloss, n, v)
                        .expect("fixed");
                }),
            });
        }
    }
    if want("lm_head") {
        // The tied head with cross-entropy, forward and backward at the default batch: fused
        // (blocks over V, nothing of n × V kept) beside the unfused ops it replaced (logits
        // and their gradient stored) — the price and the memory of not storing them.
        for v in [VOCAB_SYNTHETIC, VOCAB_2K, VOCAB_WIKITEXT2] {
            let (x, w) = (rand(&mut rng, n * c), rand(&mut rng, v * c));
            let targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
            let flops = 6.0 * (n * c * v) as f64;
            let (mut losses, mut lse) = (vec![0.0f32; n], vec![0.0f32; n]);
            let (mut dx, mut dw) = (vec![0.0f32; n * c], vec![0.0f32; v * c]);
            let (x2, w2, t2) = (x.clone(), w.clone(), targets.clone());
            cases.push(BenchCase {
                kernel: "lm_head",
                name: format!("lm_head/fused_fwd_bwd/n{n}_c{c}_v{v}"),
                device: dev(),
                unit: Unit::Flops,
                work: flops,
                run: Box::new(move || {
                    let g = Some((&mut dx[..], &mut dw[..]));
                    lm_head::lm_head_xent(
                        &mut losses,
                        &mut lse,
                        g,
                        &x,
                        &w,
                        &targets,
                        1.0 / n as f32,
                        n,
                        c,
                        v,
                    )
                    .expect("fixed shapes");
                }),
            });
            let (mut losses, mut lse) = (vec![0.0f32; n], vec![0.0f32; n]);
            let (mut dx, mut dw) = (vec![0.0f32; n * c], vec![0.0f32; v * c]);
            let (mut z, mut dz) = (vec![0.0f32; n * v], vec![0.0f32; n * v]);
            let s = MatmulShape { n, k: c, oc: v };
            cases.push(BenchCase {
                kernel: "lm_head",
                name: format!("lm_head/unfused_fwd_bwd/n{n}_c{c}_v{v}"),
                device: dev(),
                unit: Unit::Flops,
                work: flops,
                run: Box::new(move || {
                    matmul::matmul_fwd(&mut z, &x2, &w2, None, None, s).expect("fixed");
                    xent::xent_fwd(&mut losses, &mut lse, &z, &t2, n, v).expect("fixed");
                    xent::xent_bwd(&mut dz, &z, &lse, &t2, 1.0 / n as f32, n, v).expect("fixed");
                    dx.fill(0.0);
                    dw.fill(0.0);
                    matmul::matmul_bwd(
                        Some((&mut dx, GradWrite::Overwrite)),
                        &mut dw,
                        None,
                        &dz,
                        &x2,
                        &w2,
                        None,
                        s,
                    )
                    .expect("fixed");
                }),
            });
        }
    }
    if want("adamw") {
        let len = 1 << 20;
        let (mut p, g) = (rand(&mut rng, len), rand(&mut rng, len));
        let (mut m, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
        let hp = AdamWStep {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_scale: 1.0,
            t: 10,
        };
        cases.push(BenchCase {
            kernel: "adamw",
            name: format!("adamw/f32/{len}"),
            device: dev(),
            unit: Unit::Bytes,
            work: (7 * 4 * len) as f64, // read p, g, m, v; write p, m, v
            run: Box::new(move || {
                adamw::adamw(&mut p, &g, &mut m, &mut v, None, &hp).expect("fixed")
            }),
        });
    }
    if want("train_step") {
        for (label, vocab) in TRAIN_STEP_VOCABS {
            let mut ts = TrainStep::new(crate::backend::cpu::Cpu, vocab, &mut rng)
                .expect("the default model is valid");
            cases.push(BenchCase {
                kernel: "train_step",
                name: train_step_name(label, vocab),
                device: dev(),
                unit: Unit::Tokens,
                work: n as f64,
                run: Box::new(move || ts.run().expect("fixed shapes, finite gradients")),
            });
        }
    }
    cases.extend(super::attention_cases::cpu_cases(&want, attn));
    cases.extend(super::gemm24_cases::cpu_cases(&want, gemm24));
    cases.extend(super::topk_cases::topk_cases(&want));
    if want("asa_mask") {
        // ASA mask building for one default batch (B 16, T 128) from the synthetic corpus's
        // gold tags: the per-step cost an ASA-masked training run adds (compare with
        // train_step/synthetic). The second case adds the tile classification (tile 64) and
        // the forward/backward tile lists the kernels read.
        use crate::data::{batch::random_batch, synthetic, Vocab};
        use crate::ling::compat::{CompatMatrix, CompatSet};
        use crate::mask::{AsaMaskBuilder, TileMap};
        let sents = synthetic::generate(2000, 7);
        let vocab = Vocab::build(&sents, 1).expect("synthetic vocabulary");
        let stream = vocab.encode(&sents);
        let batch = random_batch(&stream, b, t, &mut rng).expect("stream longer than T");
        let builder = AsaMaskBuilder::new(&CompatSet::shared(CompatMatrix::default_asa()));
        let tags = batch.upos.clone();
        let mut words = Vec::new();
        let b2 = builder.clone();
        let tags2 = tags.clone();
        cases.push(BenchCase {
            kernel: "asa_mask",
            name: format!("asa_mask/build/b{b}_t{t}"),
            device: dev(),
            unit: Unit::Tokens,
            work: n as f64,
            run: Box::new(move || {
                builder
                    .build_into(&tags, b, t, &mut words)
                    .expect("valid tags");
                std::hint::black_box(&words);
            }),
        });
        cases.push(BenchCase {
            kernel: "asa_mask",
            name: format!("asa_mask/build+tiles64/b{b}_t{t}"),
            device: dev(),
            unit: Unit::Tokens,
            work: n as f64,
            run: Box::new(move || {
                let m = b2.build(&tags2, b, t).expect("valid tags");
                let tm = TileMap::from_mask(&m, 64).expect("tile 64");
                std::hint::black_box((tm.forward_lists(), tm.backward_lists()));
            }),
        });
    }
    cases
}
