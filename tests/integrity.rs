//! Checkpoint integrity (issue 19): a flipped byte in any tensor, a non-finite weight, or a
//! missing tensor is an error naming the file and the tensor, from the library and from the
//! CLI (`eval`, `train --resume`), never a wrong perplexity with exit code 0.

use asa_lth::backend::cpu::Cpu;
use asa_lth::data::CorpusSource;
use asa_lth::train::checkpoint::{checksum, Checkpoint};
use asa_lth::train::{self, RunOptions, TrainConfig};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asa-lth-integrity-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small() -> TrainConfig {
    TrainConfig {
        corpus: CorpusSource::Synthetic {
            sentences: 300,
            seed: 5,
        },
        n_layer: 1,
        n_head: 2,
        d_model: 16,
        batch: 2,
        seq_len: 16,
        steps: 6,
        warmup: 1,
        eval_every: 0,
        eval_tokens: 256,
        checkpoint_every: 0,
        ..TrainConfig::default()
    }
}

/// A finished tiny run in a fresh directory.
fn trained(name: &str) -> PathBuf {
    let d = tmpdir(name);
    let o = RunOptions {
        out_dir: d.clone(),
        resume: false,
        progress: false,
        command: "test".into(),
        stop_after: None,
    };
    train::run(Cpu, &small(), &o).unwrap();
    d
}

/// Byte range of tensor `name`'s data inside the file.
fn data_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let start = t.data().as_ptr() as usize - bytes.as_ptr() as usize;
    assert!(start >= 8 + header);
    start..start + t.data().len()
}

/// Rewrite the checkpoint with `edit` applied to tensor `name`'s f32 values, checksums
/// recomputed (so only the finiteness check can catch what `edit` did).
fn rewrite_consistently(path: &Path, name: &str, edit: impl Fn(&mut [f32])) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta: HashMap<String, String> = header.metadata().clone().unwrap();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
    for (n, t) in st.tensors() {
        let mut v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        if n == name {
            edit(&mut v);
        }
        owned.push((
            n,
            t.shape().to_vec(),
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    let mut sums: HashMap<String, String> = HashMap::new();
    for (n, _, b) in &owned {
        sums.insert(n.clone(), checksum(b));
    }
    meta.insert("checksums".into(), serde_json::to_string(&sums).unwrap());
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_asa-lth"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), err)
}

#[test]
fn a_flipped_byte_in_any_tensor_is_refused_naming_it() {
    let d = trained("flip");
    let ck = d.join("checkpoint.safetensors");
    let good = std::fs::read(&ck).unwrap();
    Checkpoint::open(&ck).unwrap();
    let st = SafeTensors::deserialize(&good).unwrap();
    let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    // A weight, an optimiser moment, and every other tensor in turn: one byte flipped in the
    // middle of its data.
    assert!(names.iter().any(|n| n.starts_with("adam_m/")), "{names:?}");
    for name in &names {
        let r = data_range(&good, name);
        let mut bad = good.clone();
        bad[(r.start + r.end) / 2] ^= 0x10;
        std::fs::write(&ck, &bad).unwrap();
        let e = Checkpoint::open(&ck)
            .err()
            .expect("corruption accepted")
            .to_string();
        assert!(
            e.contains(&format!("`{name}`"))
                && e.contains("corrupted")
                && e.contains("checkpoint.safetensors"),
            "{name}: {e}"
        );
    }
    // The CLI: eval and train --resume both refuse, exit code 1, no panic.
    let wname = names.iter().find(|n| n.starts_with("param/")).unwrap();
    let r = data_range(&good, wname);
    let mut bad = good.clone();
    bad[r.start + 3] ^= 0x40;
    std::fs::write(&ck, &bad).unwrap();
    let (ok, err) = cli(&["eval", "--run", d.to_str().unwrap()]);
    assert!(
        !ok && err.contains(wname.as_str()) && err.contains("corrupted"),
        "{err}"
    );
    std::fs::write(&ck, &good).unwrap();
    let (ok, err) = cli(&["eval", "--run", d.to_str().unwrap()]);
    assert!(ok, "{err}");
}

#[test]
fn non_finite_weights_are_refused_even_with_matching_checksums() {
    let d = trained("nan");
    let ck = d.join("checkpoint.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let name = st
        .names()
        .into_iter()
        .find(|n| n.starts_with("param/"))
        .unwrap()
        .to_string();
    for bad in [f32::NAN, f32::INFINITY] {
        std::fs::write(&ck, &bytes).unwrap();
        rewrite_consistently(&ck, &name, |v| v[v.len() / 3] = bad);
        let e = Checkpoint::open(&ck)
            .err()
            .expect("non-finite accepted")
            .to_string();
        assert!(
            e.contains(&format!("`{name}`")) && e.contains("non-finite"),
            "{e}"
        );
        let (ok, err) = cli(&["eval", "--run", d.to_str().unwrap()]);
        assert!(!ok && err.contains("non-finite"), "{err}");
    }
    // A tensor removed from the file (its checksum still listed) is named too.
    std::fs::write(&ck, &bytes).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let views: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| *n != name)
        .collect();
    std::fs::write(&ck, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    let e = Checkpoint::open(&ck)
        .err()
        .expect("missing tensor accepted")
        .to_string();
    assert!(
        e.contains(&format!("`{name}`")) && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn checksums_see_every_bit() {
    let mut rng = asa_lth::rng::Rng::new(4);
    for len in [0usize, 1, 7, 8, 9, 64, 1001] {
        let b: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        let base = checksum(&b);
        for i in 0..len {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert_ne!(checksum(&c), base, "len {len} byte {i} bit {bit}");
            }
        }
        // Length is part of it: a trailing zero byte is not invisible.
        let mut longer = b.clone();
        longer.push(0);
        assert_ne!(checksum(&longer), base, "len {len}");
    }
}
