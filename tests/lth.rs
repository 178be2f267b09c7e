//! The Lottery Ticket engine end to end on tiny configs: exact remaining counts per level,
//! pruned weights exactly zero, bit-exact rewinding, controls with the ticket's per-tensor
//! sparsity, and resumption that never retrains a finished level.

use asa_lth::backend::cpu::Cpu;
use asa_lth::data::CorpusSource;
use asa_lth::lth::{
    self, cell_dir, head_survival, Control, ImpConfig, ImpOptions, ImpRun, MaskSet, PrunableGroups,
    Scope, TensorMask, Variant,
};
use asa_lth::model::{GptConfig, ParamTable};
use asa_lth::train::{self, RunOptions, TrainConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-lth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny() -> TrainConfig {
    TrainConfig {
        corpus: CorpusSource::Synthetic {
            sentences: 300,
            seed: 5,
        },
        n_layer: 1,
        n_head: 2,
        d_model: 32,
        batch: 2,
        seq_len: 16,
        steps: 8,
        warmup: 2,
        eval_every: 4,
        eval_tokens: 128,
        checkpoint_every: 3,
        ..TrainConfig::default()
    }
}

fn imp(levels: u32) -> ImpConfig {
    ImpConfig {
        levels,
        prune_fraction: 0.2,
        rewind_step: 2,
        ..ImpConfig::default()
    }
}

/// Every f32 tensor of a checkpoint.
fn tensors(path: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(_, t)| t.dtype() == safetensors::Dtype::F32)
        .map(|(n, t)| {
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (n, v)
        })
        .collect()
}

/// `r_L = r_{L-1} − ceil(f · r_{L-1})`, the product in f64 as the top-k contract says.
fn expected_remaining(mut r: u64, f: f64, levels: u32) -> Vec<u64> {
    let mut out = vec![r];
    for _ in 0..levels {
        r -= (f * r as f64).ceil() as u64;
        out.push(r);
    }
    out
}

fn prunable_sizes(cfg: &TrainConfig, groups: PrunableGroups) -> Vec<(String, u64)> {
    let table = ParamTable::new(&cfg.model_config(10));
    groups
        .tensor_names(&table)
        .into_iter()
        .map(|n| {
            let i = table.index(&n).unwrap();
            (n, table.specs[i].numel() as u64)
        })
        .collect()
}

#[test]
fn groups_name_the_right_tensors() {
    let table = ParamTable::new(&GptConfig {
        n_layer: 2,
        n_head: 2,
        d_model: 8,
        ctx: 8,
        vocab: 10,
    });
    let attn = PrunableGroups::Attention.tensor_names(&table);
    assert_eq!(
        attn,
        [
            "blocks.0.attn.wq",
            "blocks.0.attn.wk",
            "blocks.0.attn.wv",
            "blocks.0.attn.wo",
            "blocks.1.attn.wq",
            "blocks.1.attn.wk",
            "blocks.1.attn.wv",
            "blocks.1.attn.wo"
        ]
    );
    let ffn = PrunableGroups::Ffn.tensor_names(&table);
    assert_eq!(
        ffn,
        [
            "blocks.0.mlp.w_fc",
            "blocks.0.mlp.w_proj",
            "blocks.1.mlp.w_fc",
            "blocks.1.mlp.w_proj"
        ]
    );
    let all = PrunableGroups::AllLinear.tensor_names(&table);
    assert_eq!(all.len(), 12);
    assert!(all.iter().all(|n| !n.contains("wte") && !n.contains("ln")));
}

#[test]
fn remaining_is_the_exact_iterated_ceil_per_level_global() {
    let cfg = tiny();
    let d = tmpdir("global");
    let out = lth::run_imp(Cpu, &cfg, &imp(3), &ImpOptions::new(&d)).unwrap();
    assert!(out.finished);
    let total: u64 = prunable_sizes(&cfg, PrunableGroups::AllLinear)
        .iter()
        .map(|x| x.1)
        .sum();
    let want = expected_remaining(total, 0.2, 3);
    let run = ImpRun::open(&d).unwrap();
    for level in 0..=3u32 {
        let m = out.get(level, Variant::Ticket).unwrap();
        assert_eq!(m.prunable, total);
        assert_eq!(m.remaining, want[level as usize], "level {level}");
        assert!((m.remaining_fraction - 0.8f64.powi(level as i32)).abs() < 1e-3);
        assert_eq!(m.steps_trained, if level == 0 { 8 } else { 6 });
        assert!(m.valid_perplexity.is_finite() && m.test_perplexity.is_finite());
        let masks = run.masks(level, Variant::Ticket).unwrap();
        assert_eq!(masks.remaining(), m.remaining);
        assert_eq!(
            m.tensors.iter().map(|t| t.remaining).sum::<u64>(),
            m.remaining
        );
        if level > 0 {
            let p = m.prune.as_ref().unwrap();
            assert_eq!(p.remaining_before, want[level as usize - 1]);
            assert_eq!(p.pruned, p.remaining_before - p.remaining);
            // Nested masks: a weight pruned once stays pruned.
            let prev = run.masks(level - 1, Variant::Ticket).unwrap();
            for (a, b) in prev.tensors.iter().zip(&masks.tensors) {
                assert!(a.keep.iter().zip(&b.keep).all(|(&x, &y)| y <= x));
            }
        }
    }
    // The summary lists every cell.
    let summary: Vec<lth::LevelMetrics> =
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.len(), 4);
}

#[test]
fn per_layer_scope_prunes_each_tensor_exactly() {
    let cfg = tiny();
    let d = tmpdir("perlayer");
    let ic = ImpConfig {
        scope: Scope::PerLayer,
        groups: PrunableGroups::Attention,
        ..imp(2)
    };
    let out = lth::run_imp(Cpu, &cfg, &ic, &ImpOptions::new(&d)).unwrap();
    let sizes = prunable_sizes(&cfg, PrunableGroups::Attention);
    assert_eq!(sizes.len(), 4);
    for level in 0..=2u32 {
        let m = out.get(level, Variant::Ticket).unwrap();
        for ((name, n), t) in sizes.iter().zip(&m.tensors) {
            assert_eq!(&t.name, name);
            assert_eq!(
                t.remaining,
                expected_remaining(*n, 0.2, level)[level as usize]
            );
        }
    }
    // FFN weights were never masked: the final model holds no mask for them.
    let ck = tensors(&cell_dir(&d, 2, Variant::Ticket).join("model.safetensors"));
    assert!(ck.contains_key("mask/blocks.0.attn.wq"));
    assert!(!ck.contains_key("mask/blocks.0.mlp.w_fc"));
}

#[test]
fn pruned_weights_are_zero_and_rewinding_is_bit_exact() {
    let cfg = tiny();
    let d = tmpdir("rewind");
    // Level 0 trains 8 steps; the budget then runs out right after level 1 rewinds, so its
    // in-level checkpoint holds exactly the rewound state.
    let mut o = ImpOptions::new(&d);
    o.stop_after_steps = Some(8);
    let out = lth::run_imp(Cpu, &cfg, &imp(2), &o).unwrap();
    assert!(!out.finished);
    let rewound = tensors(&cell_dir(&d, 1, Variant::Ticket).join("progress.safetensors"));
    let theta_k = tensors(&d.join("rewind.safetensors"));
    let masks = ImpRun::open(&d).unwrap().masks(1, Variant::Ticket).unwrap();
    let prunable: Vec<&str> = masks.tensors.iter().map(|t| t.name.as_str()).collect();
    let (mut kept, mut zeroed) = (0, 0);
    for (key, v) in &theta_k {
        let Some(name) = key.strip_prefix("param/") else {
            continue;
        };
        let got = &rewound[key];
        match masks.get(name) {
            Some(m) => {
                for ((&w, &g), &k) in v.iter().zip(got).zip(&m.keep) {
                    if k == 1 {
                        assert_eq!(g.to_bits(), w.to_bits(), "{name}: survivor not rewound");
                        kept += 1;
                    } else {
                        assert_eq!(g, 0.0, "{name}: pruned weight not zero");
                        zeroed += 1;
                    }
                }
            }
            // Non-prunable parameters are rewound too.
            None => assert!(
                v.iter().zip(got).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name} not rewound"
            ),
        }
    }
    assert!(kept > 0 && zeroed > 0);
    // Fresh optimiser (the default): the rewound moments are zero.
    assert!(rewound["adam_m/blocks.0.attn.wq"].iter().all(|&x| x == 0.0));
    // Finish; after training, every pruned weight is still exactly zero, survivors moved.
    let out = lth::run_imp(Cpu, &cfg, &imp(2), &ImpOptions::new(&d)).unwrap();
    assert!(out.finished);
    assert_eq!(
        out.computed,
        vec![(1, Variant::Ticket), (2, Variant::Ticket)]
    );
    let run = ImpRun::open(&d).unwrap();
    for level in 1..=2 {
        let m = run.masks(level, Variant::Ticket).unwrap();
        let model = run.load_model(Cpu, level, Variant::Ticket).unwrap();
        let mut moved = false;
        for t in &m.tensors {
            let w = model.param(&t.name).unwrap();
            for (i, (&x, &k)) in w.iter().zip(&t.keep).enumerate() {
                if k == 0 {
                    assert_eq!(x, 0.0, "level {level} {}[{i}] revived", t.name);
                } else {
                    moved |= x.to_bits() != theta_k[&format!("param/{}", t.name)][i].to_bits();
                }
            }
        }
        assert!(
            moved,
            "level {level}: training did not change the survivors"
        );
    }
    assert_eq!(prunable.len(), 6);
}

#[test]
fn controls_keep_the_per_tensor_sparsity() {
    let cfg = tiny();
    let d = tmpdir("controls");
    let ic = ImpConfig {
        controls: vec![Control::RandomReinit, Control::LayerwiseShuffle],
        ..imp(2)
    };
    let out = lth::run_imp(Cpu, &cfg, &ic, &ImpOptions::new(&d)).unwrap();
    assert!(out.finished);
    assert_eq!(out.cells.len(), 1 + 3 + 3, "no controls at level 0");
    let run = ImpRun::open(&d).unwrap();
    let theta_k = tensors(&d.join("rewind.safetensors"));
    for level in 1..=2 {
        let ticket = run.masks(level, Variant::Ticket).unwrap();
        let reinit = run.masks(level, Variant::RandomReinit).unwrap();
        let shuffle = run.masks(level, Variant::LayerwiseShuffle).unwrap();
        assert_eq!(reinit, ticket);
        assert_ne!(shuffle, ticket);
        for (a, b) in ticket.tensors.iter().zip(&shuffle.tensors) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.remaining(), b.remaining(), "{}", a.name);
        }
        let mt = out.get(level, Variant::Ticket).unwrap();
        for v in [Variant::RandomReinit, Variant::LayerwiseShuffle] {
            let mc = out.get(level, v).unwrap();
            assert_eq!(mc.tensors, mt.tensors);
        }
        // The shuffled mask trains like the ticket, from the rewind point; the re-init
        // control like a fresh run: from step 1 through the warmup, for the ticket's total
        // steps (k before the rewind + steps − k after).
        let shuffle_m = out.get(level, Variant::LayerwiseShuffle).unwrap();
        assert_eq!(
            (shuffle_m.first_step, shuffle_m.steps_trained),
            (mt.first_step, mt.steps_trained)
        );
        assert_eq!(mt.first_step, ic.rewind_step + 1);
        let reinit_m = out.get(level, Variant::RandomReinit).unwrap();
        assert_eq!((reinit_m.first_step, reinit_m.last_step), (1, cfg.steps));
        assert_eq!(reinit_m.steps_trained, cfg.steps);
        let curve = &reinit_m.train_curve;
        assert_eq!(curve.first().map(|r| r.step), Some(1));
        assert!(
            curve[0].lr < curve[cfg.warmup as usize].lr,
            "warmup at the start"
        );
        let reinit_m = out.get(level, Variant::RandomReinit).unwrap();
        assert_ne!(reinit_m.init_seed, cfg.seed);
        // The shuffled model's pruned weights are zero under its own mask.
        let model = run
            .load_model(Cpu, level, Variant::LayerwiseShuffle)
            .unwrap();
        for t in &shuffle.tensors {
            let w = model.param(&t.name).unwrap();
            assert!(w.iter().zip(&t.keep).all(|(&x, &k)| k == 1 || x == 0.0));
        }
        // Reinit trained from another init: its embeddings are not θ_k's descendants; check
        // that at least the starting point differed via the recorded seed and final weights.
        let re = run.load_model(Cpu, level, Variant::RandomReinit).unwrap();
        let tk = run.load_model(Cpu, level, Variant::Ticket).unwrap();
        assert_ne!(re.param("wte").unwrap(), tk.param("wte").unwrap());
        assert!(theta_k.contains_key("param/wte"));
    }
    // Deterministic: the shuffle of a fresh run with the same seed is identical.
    let d2 = tmpdir("controls2");
    let ic2 = ImpConfig {
        levels: 1,
        controls: vec![Control::LayerwiseShuffle],
        ..ic.clone()
    };
    lth::run_imp(Cpu, &cfg, &ic2, &ImpOptions::new(&d2)).unwrap();
    assert_eq!(
        ImpRun::open(&d2)
            .unwrap()
            .masks(1, Variant::LayerwiseShuffle)
            .unwrap(),
        run.masks(1, Variant::LayerwiseShuffle).unwrap()
    );
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
                out.push((p.clone(), std::fs::read(&p).unwrap(), mtime));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn resume_extends_without_retraining_finished_levels() {
    let cfg = tiny();
    let d = tmpdir("extend");
    let first = lth::run_imp(Cpu, &cfg, &imp(1), &ImpOptions::new(&d)).unwrap();
    assert_eq!(
        first.computed,
        vec![(0, Variant::Ticket), (1, Variant::Ticket)]
    );
    let before: Vec<_> = [0, 1]
        .iter()
        .flat_map(|&l| snapshot(&d.join(format!("level_{l:02}"))))
        .collect();
    let rewind_before = std::fs::read(d.join("rewind.safetensors")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = lth::run_imp(Cpu, &cfg, &imp(2), &ImpOptions::new(&d)).unwrap();
    assert_eq!(second.computed, vec![(2, Variant::Ticket)]);
    assert!(second.finished);
    let after: Vec<_> = [0, 1]
        .iter()
        .flat_map(|&l| snapshot(&d.join(format!("level_{l:02}"))))
        .collect();
    assert_eq!(before, after, "finished levels were rewritten");
    assert_eq!(
        std::fs::read(d.join("rewind.safetensors")).unwrap(),
        rewind_before
    );
    // Asking again computes nothing.
    let third = lth::run_imp(Cpu, &cfg, &imp(2), &ImpOptions::new(&d)).unwrap();
    assert!(third.computed.is_empty() && third.finished && third.cells.len() == 3);
    // Same levels from scratch in one go give the same level-2 ticket, bit for bit.
    let d2 = tmpdir("extend-oneshot");
    let one = lth::run_imp(Cpu, &cfg, &imp(2), &ImpOptions::new(&d2)).unwrap();
    let a = second.get(2, Variant::Ticket).unwrap();
    let b = one.get(2, Variant::Ticket).unwrap();
    assert_eq!(a.valid_loss.to_bits(), b.valid_loss.to_bits());
    // A different configuration in the same directory is refused, naming the field.
    let other = ImpConfig {
        prune_fraction: 0.3,
        ..imp(2)
    };
    let e = lth::run_imp(Cpu, &cfg, &other, &ImpOptions::new(&d))
        .unwrap_err()
        .to_string();
    assert!(e.contains("prune_fraction"), "{e}");
}

#[test]
fn interrupted_level_resumes_exactly() {
    let cfg = tiny();
    let ic = ImpConfig {
        controls: vec![Control::RandomReinit],
        ..imp(1)
    };
    let full = lth::run_imp(Cpu, &cfg, &ic, &ImpOptions::new(tmpdir("full"))).unwrap();
    let d = tmpdir("interrupted");
    // Stop inside level 0 (after step 5), then inside level 1's ticket, then in the control.
    for budget in [5, 6, 5] {
        let mut o = ImpOptions::new(&d);
        o.stop_after_steps = Some(budget);
        let r = lth::run_imp(Cpu, &cfg, &ic, &o).unwrap();
        assert!(!r.finished);
    }
    let rest = lth::run_imp(Cpu, &cfg, &ic, &ImpOptions::new(&d)).unwrap();
    assert!(rest.finished);
    assert_eq!(full.cells.len(), 3);
    assert_eq!(rest.cells.len(), 3);
    for (a, b) in full.cells.iter().zip(&rest.cells) {
        assert_eq!((a.level, a.variant), (b.level, b.variant));
        let bits = |m: &lth::LevelMetrics| {
            m.train_curve
                .iter()
                .map(|s| s.loss.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(a), bits(b), "level {} {:?}", a.level, a.variant);
        assert_eq!(a.test_loss.to_bits(), b.test_loss.to_bits());
        assert_eq!(a.eval_curve.len(), b.eval_curve.len());
    }
    assert!(!cell_dir(&d, 1, Variant::Ticket)
        .join("progress.safetensors")
        .exists());
}

#[test]
fn level_zero_is_the_plain_training_run() {
    let cfg = tiny();
    let d = tmpdir("level0");
    let out = lth::run_imp(Cpu, &cfg, &imp(0), &ImpOptions::new(&d)).unwrap();
    let r = train::run(
        Cpu,
        &cfg,
        &RunOptions {
            out_dir: tmpdir("plain"),
            resume: false,
            progress: false,
            command: "test".into(),
            stop_after: None,
        },
    )
    .unwrap();
    let m = out.get(0, Variant::Ticket).unwrap();
    let bits = |c: &[train::StepRecord]| c.iter().map(|s| s.loss.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&m.train_curve), bits(&r.train_curve));
    assert_eq!(
        m.test_perplexity.to_bits(),
        r.final_test_perplexity.unwrap().to_bits()
    );
    assert_eq!(m.remaining_fraction, 1.0);
}

#[test]
fn attention_masked_imp_runs() {
    // E3/E5 shape: IMP under the ASA attention mask, pruning the FFN only.
    let cfg = TrainConfig {
        attn_mask: train::AttnMaskKind::Asa,
        steps: 5,
        ..tiny()
    };
    let d = tmpdir("asa");
    let ic = ImpConfig {
        groups: PrunableGroups::Ffn,
        rewind_step: 1,
        ..imp(1)
    };
    let out = lth::run_imp(Cpu, &cfg, &ic, &ImpOptions::new(&d)).unwrap();
    let m = out.get(1, Variant::Ticket).unwrap();
    assert_eq!(m.tensors.len(), 2);
    assert!(m.valid_perplexity.is_finite());
}

#[test]
fn head_survival_counts_rows_and_columns() {
    // d_model 4, 2 heads of dim 2: head 0 owns rows 0-1 of wq/wk/wv and columns 0-1 of wo.
    let mut wq = TensorMask::dense("blocks.0.attn.wq", &[4, 4]);
    wq.keep[8..16].fill(0); // rows 2-3: head 1 fully pruned
    let mut wk = TensorMask::dense("blocks.0.attn.wk", &[4, 4]);
    wk.keep[0] = 0; // one weight of head 0
    let mut wo = TensorMask::dense("blocks.0.attn.wo", &[4, 4]);
    for r in 0..4 {
        wo.keep[r * 4] = 0; // column 0: head 0
    }
    let set = MaskSet {
        tensors: vec![wq, wk, wo],
    };
    let h = head_survival(&set, 1, 2, 4).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!((h[0].wq, h[1].wq), (1.0, 0.0));
    assert_eq!((h[0].wk, h[1].wk), (7.0 / 8.0, 1.0));
    assert_eq!((h[0].wv, h[1].wv), (1.0, 1.0)); // not in the set: unpruned
    assert_eq!((h[0].wo, h[1].wo), (0.5, 1.0));
    assert_eq!(h[0].wqk, 15.0 / 16.0);
    assert_eq!(h[1].wqk, 0.5);
}

#[test]
fn mask_files_round_trip_in_table_order() {
    let d = tmpdir("maskio");
    let mut a = TensorMask::dense("z.last", &[2, 3]);
    a.keep[1] = 0;
    let b = TensorMask::dense("a.first", &[4]);
    let set = MaskSet {
        tensors: vec![a, b],
    };
    let p = d.join("m.safetensors");
    set.save(&p, HashMap::new()).unwrap();
    let (back, _) = MaskSet::load(&p).unwrap();
    assert_eq!(back, set);
    assert_eq!(back.remaining(), 9);
    // Shuffling keeps counts and is seeded.
    let s1 = set.layerwise_shuffled(7);
    assert_eq!(s1, set.layerwise_shuffled(7));
    assert_eq!(s1.tensors[0].remaining(), 5);
    // Non-binary masks are rejected.
    assert!(TensorMask::from_f32("x", &[2], &[1.0, 0.5]).is_err());
}

#[test]
fn controls_run_at_every_level_or_only_the_last() {
    let mut ic = ImpConfig {
        controls: vec![Control::RandomReinit, Control::LayerwiseShuffle],
        ..imp(3)
    };
    let all = [
        Variant::Ticket,
        Variant::RandomReinit,
        Variant::LayerwiseShuffle,
    ];
    assert_eq!(ic.variants(0), [Variant::Ticket]);
    assert_eq!(ic.variants(1), all);
    assert_eq!(ic.variants(3), all);
    ic.controls_last_level_only = true;
    assert_eq!(ic.variants(0), [Variant::Ticket]);
    assert_eq!(ic.variants(2), [Variant::Ticket]);
    assert_eq!(ic.variants(3), all);
    // Not written at its default, so older configurations keep their bytes.
    let json = serde_json::to_string(&imp(3)).unwrap();
    assert!(!json.contains("last_level"), "{json}");
}
