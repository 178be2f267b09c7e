//! The machine's own rooflines, measured in the run that uses them: the f32 FMA peak of the
//! cores at each instruction-set level (independent FMA chains in registers on every thread,
//! so neither latency nor memory limits them), and memory read and copy bandwidth over
//! buffers far larger than the caches, on every thread. Every kernel's "% of roofline" is
//! against these, not against another kernel of this project.

use crate::backend::cpu::isa::Isa;
use rayon::prelude::*;

/// Independent accumulator chains per thread: FMA latency (4 cycles) × 2 pipes = 8 chains
/// keep both pipes busy; 12 leave margin without spilling (16 or 32 vector registers).
const CHAINS: usize = 12;

/// Vector lanes of f32 at `level` (the portable build is SSE2: 4).
pub fn lanes(level: Isa) -> usize {
    match level {
        Isa::Portable => 4,
        Isa::Avx2 => 8,
        Isa::Avx512 => 16,
    }
}

/// FLOPs one call of [`fma_chains`] performs on one thread.
pub fn fma_flops_per_call(level: Isa, iters: usize) -> f64 {
    (iters * CHAINS * lanes(level) * 2) as f64
}

/// Run `iters` rounds of [`CHAINS`] independent multiply-adds at `level` on this thread;
/// returns a value that depends on every chain (so nothing is optimised away).
///
/// # Panics
/// When `level` is above what this CPU has.
pub fn fma_chains(level: Isa, iters: usize) -> f32 {
    assert!(
        level <= crate::backend::cpu::isa::detected(),
        "fma_chains: {level} is above this CPU's level"
    );
    let (a, b) = (
        std::hint::black_box(0.999_9f32),
        std::hint::black_box(1e-4f32),
    );
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (asserted above against the detected level).
        Isa::Avx512 => unsafe { chains_avx512(iters, a, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (asserted above).
        Isa::Avx2 => unsafe { chains_avx2(iters, a, b) },
        _ => chains_portable(iters, a, b),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chains_avx512(iters: usize, a: f32, b: f32) -> f32 {
    use std::arch::x86_64::*;
    let (va, vb) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, va, vb);
        }
    }
    let mut s = _mm512_setzero_ps();
    for x in acc {
        s = _mm512_add_ps(s, x);
    }
    _mm512_reduce_add_ps(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_avx2(iters: usize, a: f32, b: f32) -> f32 {
    use std::arch::x86_64::*;
    let (va, vb) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, va, vb);
        }
    }
    let mut out = [0.0f32; 8];
    let mut s = _mm256_setzero_ps();
    for x in acc {
        s = _mm256_add_ps(s, x);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

/// SSE2 as built: a multiply and an add per lane (no FMA instruction), counted as 2 FLOPs.
fn chains_portable(iters: usize, a: f32, b: f32) -> f32 {
    let mut acc = [[1.0f32; 4]; CHAINS];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            for l in x.iter_mut() {
                *l = *l * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}

/// [`fma_chains`] on every thread of the pool at once; the FLOPs of one call.
pub fn fma_all_threads(level: Isa, iters: usize) -> f64 {
    let r: f32 = rayon::broadcast(|_| fma_chains(level, iters))
        .into_iter()
        .sum();
    std::hint::black_box(r);
    fma_flops_per_call(level, iters) * rayon::current_num_threads() as f64
}

/// Sum of `buf` read on every thread (a chunk each): the read-bandwidth kernel.
pub fn read_all_threads(buf: &[f32]) -> f32 {
    let chunk = buf.len().div_ceil(rayon::current_num_threads()).max(1);
    buf.par_chunks(chunk)
        .map(|c| {
            crate::backend::cpu::fastmath::dispatch(
                #[inline(always)]
                || {
                    // 64 partial sums (several vector add chains at any width), so the loop
                    // is bound by loads, not by the latency of one add chain.
                    let mut s = [0.0f32; 64];
                    let mut it = c.chunks_exact(64);
                    for v in &mut it {
                        for (a, b) in s.iter_mut().zip(v) {
                            *a += b;
                        }
                    }
                    s.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
                },
            )
        })
        .sum()
}

/// `dst = src` with every thread copying a chunk: the copy-bandwidth kernel.
pub fn copy_all_threads(dst: &mut [f32], src: &[f32]) {
    let chunk = src.len().div_ceil(rayon::current_num_threads()).max(1);
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_compute_the_same_at_every_level() {
        // x ← 0.9999·x + 1e-4 from 1 stays 1; the sum over chains and lanes is their count.
        for level in Isa::available() {
            let v = fma_chains(level, 1000);
            let want = (CHAINS * lanes(level)) as f32;
            assert!((v - want).abs() < 1e-2 * want, "{level}: {v} vs {want}");
        }
        let buf: Vec<f32> = (0..100_001).map(|i| (i % 7) as f32).collect();
        let want: f32 = buf.iter().sum();
        assert_eq!(read_all_threads(&buf), want);
        let mut dst = vec![f32::NAN; buf.len()];
        copy_all_threads(&mut dst, &buf);
        assert_eq!(dst, buf);
    }
}
