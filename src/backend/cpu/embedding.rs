//! Token + position embedding, forward and backward. Contract:
//! [`crate::backend::Ops::embedding_fwd`].

use super::real::Real;
use crate::backend::shapes;
use crate::{Error, Result};
use rayon::prelude::*;

fn check_tokens(tokens: &[u32], vocab: usize) -> Result<()> {
    match tokens.iter().position(|&t| t as usize >= vocab) {
        None => Ok(()),
        Some(i) => Err(Error::Config(format!(
            "embedding: token id {} at position {i} is outside the vocabulary of {vocab}",
            tokens[i]
        ))),
    }
}

/// `out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]`.
#[allow(clippy::too_many_arguments)]
pub fn embedding_fwd<F: Real>(
    out: &mut [F],
    tokens: &[u32],
    wte: &[F],
    wpe: &[F],
    b: usize,
    t: usize,
    c: usize,
) -> Result<()> {
    let vocab = shapes::embedding_fwd(out.len(), tokens.len(), wte.len(), wpe.len(), b, t, c)?;
    check_tokens(tokens, vocab)?;
    out.par_chunks_mut(c).enumerate().for_each(|(bt, o)| {
        let tok = tokens[bt] as usize;
        let pos = bt % t;
        let we = &wte[tok * c..(tok + 1) * c];
        let pe = &wpe[pos * c..(pos + 1) * c];
        for i in 0..c {
            o[i] = we[i] + pe[i];
        }
    });
    Ok(())
}

/// Accumulates `dwte[tok] += dout[b,t]`, `dwpe[t] += dout[b,t]`.
#[allow(clippy::too_many_arguments)]
pub fn embedding_bwd<F: Real>(
    dwte: &mut [F],
    dwpe: &mut [F],
    dout: &[F],
    tokens: &[u32],
    b: usize,
    t: usize,
    c: usize,
) -> Result<()> {
    let vocab = shapes::embedding_bwd(dwte.len(), dwpe.len(), dout.len(), tokens.len(), b, t, c)?;
    check_tokens(tokens, vocab)?;
    // Positions: each thread owns a set of positions and sums over the batch.
    dwpe[..t * c]
        .par_chunks_mut(c)
        .enumerate()
        .for_each(|(pos, dp)| {
            for bi in 0..b {
                let g = &dout[(bi * t + pos) * c..(bi * t + pos + 1) * c];
                for i in 0..c {
                    dp[i] += g[i];
                }
            }
        });
    // Tokens: scatter by token id. Sequential in position order keeps the sum's rounding
    // deterministic; its cost (B·T·C adds) is negligible beside the matmuls.
    for (bt, &tok) in tokens.iter().enumerate() {
        let tok = tok as usize;
        let g = &dout[bt * c..(bt + 1) * c];
        let dw = &mut dwte[tok * c..(tok + 1) * c];
        for i in 0..c {
            dw[i] += g[i];
        }
    }
    Ok(())
}
