//! Checkpoints in safetensors: the model state (parameters, AdamW moments, prune masks) as
//! f32 tensors, and in the header metadata the run config, step, data-RNG state and curves,
//! so `--resume` continues exactly where the run stopped. Written atomically.

use crate::backend::Ops;
use crate::model::Gpt;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Save the model state with `meta` (string key → JSON string) to `path`.
pub fn save<O: Ops>(path: &Path, model: &Gpt<O>, meta: HashMap<String, String>) -> Result<()> {
    let state = model.state()?;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = state
        .into_iter()
        .map(|t| {
            let b = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (t.name, t.shape, b)
        })
        .collect();
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
        ck.tensors()?; // validate now, so later errors are about content, not format
        Ok(ck)
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
