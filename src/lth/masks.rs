//! Prune masks of a set of named weight tensors: counting, the layerwise-shuffled control,
//! per-head survival of the attention projections, and a compact file form (safetensors, one
//! `U8` tensor of 0/1 per weight tensor, 4× smaller than the f32 masks the model holds).

use crate::rng::Rng;
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The 0/1 prune mask of one weight tensor (1 = kept, 0 = pruned), row-major like the weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMask {
    pub name: String,
    pub shape: Vec<usize>,
    /// One entry per weight: 1 kept, 0 pruned.
    pub keep: Vec<u8>,
}

impl TensorMask {
    /// An all-kept mask.
    pub fn dense(name: &str, shape: &[usize]) -> Self {
        TensorMask {
            name: name.to_string(),
            shape: shape.to_vec(),
            keep: vec![1; shape.iter().product()],
        }
    }

    /// Number of weights.
    pub fn numel(&self) -> usize {
        self.keep.len()
    }

    /// Number of kept (unpruned) weights.
    pub fn remaining(&self) -> u64 {
        self.keep.iter().map(|&k| k as u64).sum()
    }

    /// Kept weights as a fraction of all (1 for an empty tensor).
    pub fn fraction(&self) -> f64 {
        if self.keep.is_empty() {
            1.0
        } else {
            self.remaining() as f64 / self.numel() as f64
        }
    }

    /// The mask as 0.0/1.0 f32, the form [`Gpt::set_prune_mask`](crate::model::Gpt) and the
    /// top-k rule take.
    pub fn to_f32(&self) -> Vec<f32> {
        self.keep.iter().map(|&k| k as f32).collect()
    }

    /// From a 0.0/1.0 f32 mask; any other value is an error naming the tensor and index.
    pub fn from_f32(name: &str, shape: &[usize], m: &[f32]) -> Result<Self> {
        let keep = m
            .iter()
            .enumerate()
            .map(|(i, &x)| match x {
                1.0 => Ok(1u8),
                0.0 => Ok(0u8),
                x => Err(Error::Config(format!(
                    "mask of `{name}` has value {x} at index {i}; expected 0 or 1"
                ))),
            })
            .collect::<Result<Vec<u8>>>()?;
        let want: usize = shape.iter().product();
        if keep.len() != want {
            return Err(Error::Config(format!(
                "mask of `{name}` has {} elements, its shape {shape:?} needs {want}",
                keep.len()
            )));
        }
        Ok(TensorMask {
            name: name.to_string(),
            shape: shape.to_vec(),
            keep,
        })
    }
}

/// Remaining weights of one tensor (a row of [`MaskSet::counts`] and of level metrics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorCount {
    pub name: String,
    pub numel: usize,
    pub remaining: u64,
    /// `remaining / numel`.
    pub fraction: f64,
}

/// The masks of every prunable tensor, in the fixed (parameter-table) order the top-k rule's
/// global tie-break uses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MaskSet {
    pub tensors: Vec<TensorMask>,
}

impl MaskSet {
    /// The mask of tensor `name`, if it is in the set.
    pub fn get(&self, name: &str) -> Option<&TensorMask> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Weights over all tensors.
    pub fn numel(&self) -> u64 {
        self.tensors.iter().map(|t| t.numel() as u64).sum()
    }

    /// Kept weights over all tensors.
    pub fn remaining(&self) -> u64 {
        self.tensors.iter().map(TensorMask::remaining).sum()
    }

    /// Kept fraction over all tensors (1 for an empty set).
    pub fn fraction(&self) -> f64 {
        match self.numel() {
            0 => 1.0,
            n => self.remaining() as f64 / n as f64,
        }
    }

    /// Per-tensor counts, in set order.
    pub fn counts(&self) -> Vec<TensorCount> {
        self.tensors
            .iter()
            .map(|t| TensorCount {
                name: t.name.clone(),
                numel: t.numel(),
                remaining: t.remaining(),
                fraction: t.fraction(),
            })
            .collect()
    }

    /// The layerwise-shuffled control: per tensor, a uniformly random mask with exactly the
    /// same number of kept weights (a seeded Fisher–Yates shuffle of the tensor's mask; each
    /// tensor draws from its own stream, so the result does not depend on the other tensors).
    pub fn layerwise_shuffled(&self, seed: u64) -> MaskSet {
        let tensors = self
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut keep = t.keep.clone();
                let mut rng = Rng::new(mix(seed, i as u64));
                rng.shuffle(&mut keep);
                TensorMask {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    keep,
                }
            })
            .collect();
        MaskSet { tensors }
    }

    /// Write the set as safetensors (`U8` tensors named like the weights) with `meta`,
    /// atomically.
    pub fn save(&self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        let mut views = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let view = TensorView::new(Dtype::U8, t.shape.clone(), &t.keep)
                .map_err(|e| Error::Config(format!("mask tensor `{}`: {e}", t.name)))?;
            views.push((t.name.clone(), view));
        }
        // The tensor order is stored too: safetensors sorts tensors by name, and the global
        // tie-break needs the parameter-table order back.
        let mut meta = meta;
        let order: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
        meta.insert(
            "order".into(),
            serde_json::to_string(&order)
                .map_err(|e| Error::Config(format!("mask metadata: {e}")))?,
        );
        let buf = safetensors::serialize(views, Some(meta))
            .map_err(|e| Error::Config(format!("mask serialisation: {e}")))?;
        crate::io::write_atomic(path, &buf)
    }

    /// Read a set written by [`save`](Self::save), with its metadata.
    pub fn load(path: &Path) -> Result<(MaskSet, HashMap<String, String>)> {
        let bad = |msg: String| Error::Parse {
            path: path.to_path_buf(),
            line: 0,
            msg,
        };
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors mask file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors mask file: {e}")))?;
        let order: Vec<String> = match meta.get("order") {
            Some(s) => {
                serde_json::from_str(s).map_err(|e| bad(format!("metadata `order`: {e}")))?
            }
            None => {
                let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
                names.sort();
                names
            }
        };
        let mut tensors = Vec::with_capacity(order.len());
        for name in order {
            let t = st
                .tensor(&name)
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
            if t.dtype() != Dtype::U8 {
                return Err(bad(format!(
                    "tensor `{name}` is {:?}, expected U8",
                    t.dtype()
                )));
            }
            if let Some(i) = t.data().iter().position(|&b| b > 1) {
                return Err(bad(format!(
                    "tensor `{name}` has value {} at {i}",
                    t.data()[i]
                )));
            }
            tensors.push(TensorMask {
                name,
                shape: t.shape().to_vec(),
                keep: t.data().to_vec(),
            });
        }
        Ok((MaskSet { tensors }, meta))
    }
}

/// Surviving fractions of one attention head's slices of the projection weights.
///
/// `W_q`, `W_k`, `W_v` are `d_model × d_model` (out × in) and head `h` owns output rows
/// `h·d .. (h+1)·d` (`d` = head dim); `W_o` maps the concatenated heads back, so head `h` owns
/// its input *columns* `h·d .. (h+1)·d`. A tensor the set does not prune counts as 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadSurvival {
    pub layer: usize,
    pub head: usize,
    pub wq: f64,
    pub wk: f64,
    pub wv: f64,
    pub wo: f64,
    /// Kept fraction of the head's `W_q` and `W_k` slices together (E3's per-head measure).
    pub wqk: f64,
}

/// [`HeadSurvival`] for every layer and head of a model with `n_layer` layers, `n_head`
/// heads and width `d_model`.
pub fn head_survival(
    masks: &MaskSet,
    n_layer: usize,
    n_head: usize,
    d_model: usize,
) -> Result<Vec<HeadSurvival>> {
    if n_head == 0 || !d_model.is_multiple_of(n_head) {
        return Err(Error::Config(format!(
            "head_survival: d_model {d_model} is not a multiple of n_head {n_head}"
        )));
    }
    let d = d_model / n_head;
    // (kept, total) of head h's slice of tensor `name`; rows for q/k/v, columns for o.
    let slice = |name: String, h: usize, rows: bool| -> Result<(u64, u64)> {
        let Some(t) = masks.get(&name) else {
            return Ok((1, 1));
        };
        if t.shape != [d_model, d_model] {
            return Err(Error::Config(format!(
                "head_survival: `{name}` has shape {:?}, expected [{d_model}, {d_model}]",
                t.shape
            )));
        }
        let mut kept = 0u64;
        for r in 0..d_model {
            for c in 0..d_model {
                let mine = if rows { r / d == h } else { c / d == h };
                if mine {
                    kept += t.keep[r * d_model + c] as u64;
                }
            }
        }
        Ok((kept, (d * d_model) as u64))
    };
    let mut out = Vec::with_capacity(n_layer * n_head);
    for layer in 0..n_layer {
        let name = |w: &str| format!("blocks.{layer}.attn.{w}");
        for head in 0..n_head {
            let q = slice(name("wq"), head, true)?;
            let k = slice(name("wk"), head, true)?;
            let v = slice(name("wv"), head, true)?;
            let o = slice(name("wo"), head, false)?;
            let f = |(a, b): (u64, u64)| a as f64 / b as f64;
            out.push(HeadSurvival {
                layer,
                head,
                wq: f(q),
                wk: f(k),
                wv: f(v),
                wo: f(o),
                wqk: f((q.0 + k.0, q.1 + k.1)),
            });
        }
    }
    Ok(out)
}

/// A 64-bit mix of a seed and a salt (SplitMix64 finaliser), for independent seeded streams.
pub(crate) fn mix(seed: u64, salt: u64) -> u64 {
    let mut z = seed
        ^ salt
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
