//! Checkpoints in safetensors: the model state (parameters, AdamW moments, prune masks) as
//! f32 tensors, and in the header metadata the run config, step, data-RNG state and curves,
//! so `--resume` continues exactly where the run stopped. Written atomically.
//!
//! Integrity: every tensor's checksum is written in the metadata (`checksums`, name → hex) and
//! verified when the file is opened, and every tensor must be finite, so a flipped byte or a
//! NaN weight is an error naming the file and the tensor — never a wrong perplexity.

use crate::backend::Ops;
use crate::model::Gpt;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Save the model state with `meta` (string key → JSON string) to `path`.
pub fn save<O: Ops>(path: &Path, model: &Gpt<O>, mut meta: HashMap<String, String>) -> Result<()> {
    let state = model.state()?;
    let mut sums = std::collections::BTreeMap::new();
    for t in &state {
        if let Some(k) = t.values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                tensor: format!("{} (while writing {})", t.name, path.display()),
                index: k,
                value: t.values[k],
            });
        }
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = state
        .into_iter()
        .map(|t| {
            let b = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (t.name, t.shape, b)
        })
        .collect();
    for (name, _, b) in &bytes {
        sums.insert(name.clone(), checksum(b));
    }
    meta.insert(
        CHECKSUMS.into(),
        serde_json::to_string(&sums).map_err(|e| Error::Config(format!("checksums: {e}")))?,
    );
    let mut views = Vec::with_capacity(bytes.len());
    for (name, shape, b) in &bytes {
        let view = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| Error::Config(format!("checkpoint tensor `{name}`: {e}")))?;
        views.push((name.clone(), view));
    }
    let buf = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Config(format!("checkpoint serialisation: {e}")))?;
    crate::io::write_atomic(path, &buf)
}

/// Metadata key of the per-tensor checksums.
const CHECKSUMS: &str = "checksums";

/// A 64-bit checksum of a tensor's bytes (8 bytes per step, multiply–xorshift mixing; a
/// flipped bit anywhere changes it).
pub fn checksum(bytes: &[u8]) -> String {
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    let mix = |h: u64, x: u64| {
        let v = (h ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        v ^ (v >> 29)
    };
    for c in &mut chunks {
        h = mix(
            h,
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = mix(h, u64::from_le_bytes(tail));
    format!("{h:016x}")
}

/// A loaded checkpoint file.
pub struct Checkpoint {
    bytes: Vec<u8>,
    path: std::path::PathBuf,
}

impl Checkpoint {
    /// Read `path` (the tensors are parsed lazily).
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let ck = Checkpoint {
            bytes,
            path: path.to_path_buf(),
        };
        ck.verify()?; // now, so later errors are about content, not format or corruption
        Ok(ck)
    }

    /// Check the format, every tensor's checksum (files from before checksums existed have
    /// none) and that every f32 tensor is finite.
    fn verify(&self) -> Result<()> {
        let st = self.tensors()?;
        let sums: Option<HashMap<String, String>> = match self.meta()?.get(CHECKSUMS) {
            Some(s) => Some(
                serde_json::from_str(s)
                    .map_err(|e| self.bad(format!("metadata `{CHECKSUMS}`: {e}")))?,
            ),
            None => None,
        };
        for (name, t) in st.tensors() {
            if let Some(sums) = &sums {
                let want = sums.get(&name).ok_or_else(|| {
                    self.bad(format!(
                        "tensor `{name}` has no checksum (the file was altered)"
                    ))
                })?;
                let got = checksum(t.data());
                if &got != want {
                    return Err(self.bad(format!(
                        "tensor `{name}` is corrupted: checksum {got}, written as {want}"
                    )));
                }
            }
            if t.dtype() == Dtype::F32 {
                let bad = t
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .enumerate()
                    .find(|(_, v)| !v.is_finite());
                if let Some((k, v)) = bad {
                    return Err(self.bad(format!(
                        "tensor `{name}` holds a non-finite value ({v}) at index {k}"
                    )));
                }
            }
        }
        if let Some(sums) = &sums {
            if let Some(missing) = sums.keys().find(|n| st.tensor(n).is_err()) {
                return Err(self.bad(format!("tensor `{missing}` is missing from the file")));
            }
        }
        Ok(())
    }

    fn bad(&self, msg: String) -> Error {
        Error::Parse {
            path: self.path.clone(),
            line: 0,
            msg,
        }
    }

    fn tensors(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes)
            .map_err(|e| self.bad(format!("not a safetensors checkpoint: {e}")))
    }

    /// The metadata map.
    pub fn meta(&self) -> Result<HashMap<String, String>> {
        let (_, m) = SafeTensors::read_metadata(&self.bytes)
            .map_err(|e| self.bad(format!("unreadable header: {e}")))?;
        Ok(m.metadata().clone().unwrap_or_default())
    }

    /// One metadata entry parsed from JSON.
    pub fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let m = self.meta()?;
        let s = m
            .get(key)
            .ok_or_else(|| self.bad(format!("metadata lacks `{key}`")))?;
        serde_json::from_str(s).map_err(|e| self.bad(format!("metadata `{key}`: {e}")))
    }

    /// Restore the model's state from this checkpoint.
    pub fn restore<O: Ops>(&self, model: &mut Gpt<O>) -> Result<()> {
        let st = self.tensors()?;
        model.load_state(|name| {
            let t = st.tensor(name).ok()?;
            if t.dtype() != Dtype::F32 {
                return None;
            }
            Some(
                t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        })
    }
}
