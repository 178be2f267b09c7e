//! 2:4 selection (DESIGN.md §3 "2:4 format"): the 0/1 mask that keeps the 2 largest |w| of
//! every aligned group of 4 along K, ties to the lower index.
//!
//! W is N×K row-major (rows = out_features, K = in_features), so the groups are 4 consecutive
//! elements of a row and, with K a multiple of 4, 4 consecutive elements of the flat buffer.
//! Selection only needs K % 4 == 0; the 2:4 GEMM itself needs K % 16 (and the tensor-core path
//! K % 32) and checks that when it compresses. Magnitudes are compared by key (bits of |w|,
//! src/sparse/topk.rs), so -0.0 and 0.0 tie. Every group keeps exactly two entries, also when
//! it holds zeros (a weight already pruned to 0 ranks lowest): the mask is the structure the
//! compressed format stores; multiply it with an existing prune mask to get the training mask.
//!
//! Note the two tie rules: top-k *pruning* removes the lower index first, 2:4 selection *keeps*
//! the lower index first; both are what the contract says.
//!
//! The CUDA twin is `two_four_f32` / `two_four_16` in kernels/topk.cu, which uses the same
//! group rule (`asa_two_four_keep` in kernels/topk.cuh, checked against [`two_four_keep`]).

use rayon::prelude::*;

use super::topk::{TopkWeight, CHUNK};
use crate::{Error, Result};

/// The 2:4 rule for one group of 4 keys: bit i set when element i is kept (exactly two bits).
/// Element j beats element i when `k[j] > k[i]`, or `k[j] == k[i]` and `j < i`; an element is
/// kept when fewer than two elements beat it.
pub fn two_four_keep(k: [u32; 4]) -> u32 {
    let mut keep = 0;
    for i in 0..4 {
        let beaten = (0..4)
            .filter(|&j| k[j] > k[i] || (k[j] == k[i] && j < i))
            .count();
        if beaten < 2 {
            keep |= 1 << i;
        }
    }
    keep
}

/// Shape checks shared by the CPU and CUDA paths.
pub(crate) fn check_shape(
    name: &str,
    len: usize,
    mask_len: usize,
    rows: usize,
    k: usize,
) -> Result<()> {
    if !k.is_multiple_of(4) {
        return Err(Error::Config(format!(
            "2:4 selection of `{name}`: K = {k} is not a multiple of 4 (W is rows x K = \
             out_features x in_features, groups of 4 run along K)"
        )));
    }
    if rows.checked_mul(k) != Some(len) {
        return Err(Error::Config(format!(
            "2:4 selection of `{name}`: {len} weights, expected rows x K = {rows} x {k}"
        )));
    }
    if mask_len != len {
        return Err(Error::Config(format!(
            "2:4 selection of `{name}`: mask has {mask_len} elements, weights {len}"
        )));
    }
    Ok(())
}

/// Write the 2:4 mask of `weights` (rows × k, row-major) into `mask` (same length): per
/// aligned group of 4 along K, 1.0 for the 2 largest |w| (ties to the lower index), 0.0 for
/// the other two. Errors: K not a multiple of 4, lengths that do not match `rows × k`, NaN/Inf
/// (the first one in row-major order, naming `name` and the flat index); on error `mask` is
/// unchanged.
pub fn two_four_mask<W: TopkWeight>(
    name: &str,
    weights: &[W],
    rows: usize,
    k: usize,
    mask: &mut [f32],
) -> Result<()> {
    check_shape(name, weights.len(), mask.len(), rows, k)?;
    if let Some(i) = weights
        .par_iter()
        .position_first(|w| w.key() >= W::NONFINITE_KEY)
    {
        return Err(Error::NonFinite {
            tensor: name.to_string(),
            index: i,
            value: weights[i].to_f32(),
        });
    }
    weights
        .par_chunks(CHUNK)
        .zip(mask.par_chunks_mut(CHUNK))
        .for_each(|(w, m)| {
            // CHUNK is a multiple of 4, so chunks hold whole groups.
            for (wg, mg) in w.chunks_exact(4).zip(m.chunks_exact_mut(4)) {
                let keep = two_four_keep([wg[0].key(), wg[1].key(), wg[2].key(), wg[3].key()]);
                for (j, mj) in mg.iter_mut().enumerate() {
                    *mj = ((keep >> j) & 1) as f32;
                }
            }
        });
    Ok(())
}

/// [`two_four_mask`] into a new vector.
pub fn two_four_mask_vec<W: TopkWeight>(
    name: &str,
    weights: &[W],
    rows: usize,
    k: usize,
) -> Result<Vec<f32>> {
    let mut mask = vec![0.0f32; weights.len()];
    two_four_mask(name, weights, rows, k, &mut mask)?;
    Ok(mask)
}
