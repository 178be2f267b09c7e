//! The device 2:4 compression (kernels/compress24.cu, src/backend/cuda/compress24.rs) against
//! the host path it replaces: `Sparse24::<f32>::compress`, half's f32 → bf16/f16 rounding, the
//! packing of `DeviceSparse24::upload` and `Sparse24::mma_sp_metadata`.
//!
//! Without a GPU the kernel's own code runs on the CPU (its `__host__ __device__` helpers built
//! into the crate from kernels/host_helpers.cpp): per (row, u16 index), per thread, and as a
//! whole grid, on random matrices full of ties. With a GPU the kernel's output is compared bit
//! for bit with the host path (skipped with a printed reason without one; a failure under
//! `ASA_LTH_REQUIRE_GPU=1`).

mod common;

use asa_lth::backend::cuda::compress24 as c24;
use asa_lth::backend::cuda::gemm24::{DeviceSparse24, Half};
use asa_lth::rng::Rng;
use asa_lth::sparse::Sparse24;
use asa_lth::Error;
use half::{bf16, f16};

/// Magnitudes that tie often: both zeros, subnormals of both signs, repeated values, and values
/// that round to a subnormal or to ±Inf in f16.
const TIE_SET: [f32; 16] = [
    0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 0.25, 3.0, 1e-40, -1e-40, 7.0e4, -7.0e4, 3.0e-6,
    -3.0e-6,
];

/// A weight: from TIE_SET (`ties` of the time), else a normal draw or, now and then, a float with
/// random exponent bits (anything finite: huge, tiny, subnormal).
fn value(rng: &mut Rng, ties: f64) -> f32 {
    if rng.bernoulli(ties) {
        TIE_SET[rng.below(TIE_SET.len())]
    } else if rng.bernoulli(0.8) {
        rng.normal() as f32
    } else {
        loop {
            let x = f32::from_bits(rng.next_u64() as u32);
            if x.is_finite() {
                return x;
            }
        }
    }
}

fn matrix(rng: &mut Rng, n: usize, k: usize, ties: f64) -> Vec<f32> {
    (0..n * k).map(|_| value(rng, ties)).collect()
}

/// The shapes (N, K) checked everywhere: K/32 even and odd (the zero metadata words), one
/// long row, several tiles.
const SHAPES: [(usize, usize); 7] = [
    (16, 32),
    (16, 64),
    (32, 96),
    (48, 160),
    (64, 256),
    (16, 4096),
    (32, 544),
];

fn round16(x: f32, dtype: Half) -> u16 {
    match dtype {
        Half::Bf16 => bf16::from_f32(x).to_bits(),
        Half::F16 => f16::from_f32(x).to_bits(),
    }
}

/// The host path the kernel replaces: `(values as u32 pairs, reordered metadata)`.
fn host_path(name: &str, w: &[f32], n: usize, k: usize, dtype: Half) -> (Vec<u32>, Vec<u32>) {
    let c = Sparse24::<f32>::compress(name, w, n, k).unwrap();
    // Packed exactly as DeviceSparse24::upload packs: lower column in the low half.
    let values = c
        .values()
        .chunks_exact(2)
        .map(|p| round16(p[0], dtype) as u32 | ((round16(p[1], dtype) as u32) << 16))
        .collect();
    (values, c.mma_sp_metadata().unwrap())
}

/// Put 1 to 4 NaN/±Inf into `w` (N × K): the later ones often near the first — in the same 16
/// columns, or the same columns 8 rows on (the other row of the same kernel thread) — so the
/// "first bad index" logic inside a thread is exercised, not only across threads.
fn poison_non_finite(rng: &mut Rng, w: &mut [f32], n: usize, k: usize) {
    let i = rng.below(n * k);
    let mut bad = vec![i];
    for _ in 0..rng.below(4) {
        bad.push(match rng.below(3) {
            0 => i - i % 16 + rng.below(16),
            1 => (i + 8 * k) % (n * k),
            _ => rng.below(n * k),
        });
    }
    for j in bad {
        w[j] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][rng.below(3)];
    }
}

/// Same error: variant, tensor, index, and value (bits, or both NaN).
#[track_caller]
fn assert_same_non_finite(got: &Error, want: &Error, ctx: &str) {
    match (got, want) {
        (
            Error::NonFinite {
                tensor: t1,
                index: i1,
                value: v1,
            },
            Error::NonFinite {
                tensor: t2,
                index: i2,
                value: v2,
            },
        ) => {
            assert_eq!((t1, i1), (t2, i2), "{ctx}");
            assert!(
                v1.to_bits() == v2.to_bits() || (v1.is_nan() && v2.is_nan()),
                "{ctx}: value {v1} vs {v2}"
            );
        }
        _ => panic!("{ctx}: got {got:?}, want {want:?}"),
    }
}

// ------------------------------------------------------------------- host-built helpers ----

#[test]
fn kernel_constants_match_the_launcher() {
    assert_eq!(c24::kernel_block(), c24::BLOCK);
    for (n, k) in SHAPES {
        let want = (n / 16 * (k / 32).div_ceil(2) * 32) as u64;
        assert_eq!(c24::kernel_words(n, k), Some(want), "{n} x {k}");
    }
    assert_eq!(c24::kernel_words(16, 1 << 33), None);
}

/// The kernel's integer rounding equals half's `from_f32` on every exponent and sign (all 2^16
/// upper halves of the f32 bits) with low halves around every rounding boundary, and on random
/// bits (NaN and ±Inf included).
#[test]
fn rounding_matches_half_bf16_and_f16() {
    const LOW: [u32; 14] = [
        0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x3000, 0x7FFF, 0x8000, 0x8001, 0xEFFF,
        0xF000, 0xFFFF,
    ];
    let check = |bits: u32| {
        let x = f32::from_bits(bits);
        let (b, h) = (c24::f32_to_bf16_bits(x), c24::f32_to_f16_bits(x));
        let (wb, wh) = (bf16::from_f32(x).to_bits(), f16::from_f32(x).to_bits());
        assert_eq!(b, wb, "bf16 of {bits:#010x} ({x:e})");
        assert_eq!(h, wh, "f16 of {bits:#010x} ({x:e})");
    };
    for hi in 0..=0xFFFFu32 {
        for lo in LOW {
            check((hi << 16) | lo);
        }
    }
    let mut rng = Rng::new(11);
    for _ in 0..1_000_000 {
        check(rng.next_u64() as u32);
    }
    // Every f32 in the f16 subnormal range and around 65504 (where rounding is subtle).
    for bits in (0x3300_0000u32..0x3880_0000)
        .step_by(7)
        .chain(0x477F_0000..0x4780_1000)
    {
        check(bits);
        check(bits | 0x8000_0000);
    }
}

/// The kernel's selection of 16 columns equals `Sparse24::<f32>::compress` for every row and
/// every u16 index: canonical metadata and the 8 kept values, bit for bit (so -0.0 stays -0.0).
#[test]
fn select16_matches_cpu_compress_for_every_row_and_u16() {
    let mut rng = Rng::new(1);
    let mut tie_groups = 0usize;
    for (n, k) in SHAPES {
        for ties in [1.0, 0.5, 0.0] {
            let w = matrix(&mut rng, n, k, ties);
            let c = Sparse24::<f32>::compress("w", &w, n, k).unwrap();
            for r in 0..n {
                for u in 0..k / 16 {
                    let x: [f32; 16] = w[r * k + 16 * u..r * k + 16 * u + 16].try_into().unwrap();
                    let (meta, kept) = c24::select16(&x);
                    let ctx = format!("{n} x {k}, ties {ties}: row {r}, u16 {u}");
                    assert_eq!(meta, c.meta()[r * k / 16 + u], "{ctx}: metadata");
                    let want = &c.values()[r * k / 2 + 8 * u..r * k / 2 + 8 * u + 8];
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&kept), bits(want), "{ctx}: kept values");
                    tie_groups += x
                        .chunks_exact(4)
                        .filter(|g| {
                            let mut m: Vec<u32> =
                                g.iter().map(|v| v.to_bits() & 0x7FFF_FFFF).collect();
                            m.sort_unstable();
                            m.windows(2).any(|p| p[0] == p[1])
                        })
                        .count();
                }
            }
        }
    }
    assert!(tie_groups > 10_000, "only {tie_groups} groups with a tie");
}

#[test]
fn first_bad16_finds_the_first_non_finite() {
    let mut rng = Rng::new(2);
    for _ in 0..2000 {
        let mut x = [0f32; 16];
        x.iter_mut().for_each(|v| *v = value(&mut rng, 0.5));
        let bad = rng.below(3);
        let mut want = None::<usize>;
        for _ in 0..bad {
            let p = rng.below(16);
            x[p] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN][rng.below(4)];
            want = Some(want.map_or(p, |q| q.min(p)));
        }
        assert_eq!(c24::first_bad16(&x), want, "{x:?}");
    }
}

// ----------------------------------------------------------- the whole kernel on the host ----

/// Every thread of the kernel run on the CPU assembles the whole reordered word array, equal to
/// `mma_sp_metadata()` (the zero words of an odd K/32 included: outputs start poisoned).
#[test]
fn host_kernel_metadata_matches_mma_sp_metadata() {
    let mut rng = Rng::new(3);
    for (n, k) in SHAPES {
        let w = matrix(&mut rng, n, k, 0.7);
        let (_, want) = host_path("w", &w, n, k, Half::Bf16);
        for dtype in [Half::Bf16, Half::F16] {
            let (_, meta) = c24::compress24_host("w", &w, n, k, dtype).unwrap();
            assert_eq!(meta, want, "{n} x {k} {dtype:?}");
        }
    }
}

/// The values every thread of the kernel writes equal the host path's packed bf16/f16 values,
/// bit for bit, and cover the whole N × K/4 buffer (it starts poisoned).
#[test]
fn host_kernel_values_match_the_host_path() {
    let mut rng = Rng::new(4);
    for (n, k) in SHAPES {
        for ties in [1.0, 0.3] {
            let w = matrix(&mut rng, n, k, ties);
            for dtype in [Half::Bf16, Half::F16] {
                let (want, _) = host_path("w", &w, n, k, dtype);
                let (values, _) = c24::compress24_host("w", &w, n, k, dtype).unwrap();
                assert_eq!(values.len(), n * k / 4);
                let first = values.iter().zip(&want).position(|(a, b)| a != b);
                assert!(
                    first.is_none(),
                    "{n} x {k} {dtype:?} ties {ties}: first difference at u32 {first:?}"
                );
            }
        }
    }
}

/// NaN/±Inf anywhere: the error names the tensor and the first bad flat index, as the CPU does.
#[test]
fn host_kernel_reports_the_first_non_finite_like_the_cpu() {
    let mut rng = Rng::new(5);
    let (n, k) = (48, 160);
    for trial in 0..200 {
        let mut w = matrix(&mut rng, n, k, 0.5);
        poison_non_finite(&mut rng, &mut w, n, k);
        let want = Sparse24::<f32>::compress("enc.w", &w, n, k).unwrap_err();
        for dtype in [Half::Bf16, Half::F16] {
            let got = c24::compress24_host("enc.w", &w, n, k, dtype).unwrap_err();
            assert_same_non_finite(&got, &want, &format!("trial {trial} {dtype:?}"));
        }
    }
}

#[test]
fn shape_errors_name_the_tensor_and_the_shape() {
    for (n, k, len) in [
        (8, 32, 256),
        (16, 48, 768),
        (16, 0, 0),
        (0, 32, 0),
        (16, 16, 256),
        (16, 32, 511),
    ] {
        let w = vec![1.0f32; len];
        let e = c24::compress24_host("dec.w", &w, n, k, Half::Bf16).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Config(_)), "{n} x {k}: {e:?}");
        assert!(msg.contains("dec.w"), "{msg}");
        if len == n * k {
            assert!(msg.contains(&format!("{n} x {k}")), "{msg}");
        } else {
            // The length error is the CPU's (Sparse24::compress) word for word.
            let cpu = Sparse24::<f32>::compress("dec.w", &w, n, k).unwrap_err();
            assert_eq!(msg, cpu.to_string());
        }
    }
}

// ------------------------------------------------------------------------------ on a GPU ----

/// The kernel on the GPU against the host path, bit for bit: both 16-bit types, every shape,
/// outputs poisoned before the launch; the allocating entry point; NaN/Inf errors; a shape
/// error before anything runs.
#[test]
fn gpu_compress24_matches_the_host_path() {
    let Some(gpu) = common::gpu("gpu_compress24_matches_the_host_path") else {
        return;
    };
    let (stream, module) = (&gpu.stream, &gpu.module);
    let mut rng = Rng::new(6);
    for (n, k) in SHAPES.into_iter().chain([(256, 1024), (1024, 4128)]) {
        let w = matrix(&mut rng, n, k, 0.5);
        let wd = stream.clone_htod(&w).unwrap();
        for dtype in [Half::Bf16, Half::F16] {
            let ctx = format!("{n} x {k} {dtype:?}");
            let (want_v, want_m) = host_path("w", &w, n, k, dtype);
            let mut out = DeviceSparse24 {
                n,
                k,
                values: stream
                    .clone_htod(&vec![0xDEAD_BEEFu32; want_v.len()])
                    .unwrap(),
                meta: stream
                    .clone_htod(&vec![0xDEAD_BEEFu32; want_m.len()])
                    .unwrap(),
            };
            c24::launch_compress24(module, stream, dtype, "w", &wd, &mut out).unwrap();
            let got_v = stream.clone_dtoh(&out.values).unwrap();
            let got_m = stream.clone_dtoh(&out.meta).unwrap();
            let first = |a: &[u32], b: &[u32]| a.iter().zip(b).position(|(x, y)| x != y);
            assert_eq!(first(&got_v, &want_v), None, "{ctx}: values");
            assert_eq!(first(&got_m, &want_m), None, "{ctx}: metadata");
            let fresh = c24::compress24_gpu(module, stream, dtype, "w", &wd, n, k).unwrap();
            assert_eq!(stream.clone_dtoh(&fresh.values).unwrap(), want_v, "{ctx}");
            assert_eq!(stream.clone_dtoh(&fresh.meta).unwrap(), want_m, "{ctx}");
        }
    }
    // NaN/Inf: the first bad index across threads and blocks, as the CPU reports it.
    let (n, k) = (64, 256);
    for trial in 0..20 {
        let mut w = matrix(&mut rng, n, k, 0.5);
        poison_non_finite(&mut rng, &mut w, n, k);
        let want = Sparse24::<f32>::compress("blk.w", &w, n, k).unwrap_err();
        let wd = stream.clone_htod(&w).unwrap();
        let got = c24::compress24_gpu(module, stream, Half::Bf16, "blk.w", &wd, n, k)
            .err()
            .unwrap();
        assert_same_non_finite(&got, &want, &format!("gpu trial {trial}"));
    }
    let wd = stream.clone_htod(&vec![1.0f32; 16 * 48]).unwrap();
    let e = c24::compress24_gpu(module, stream, Half::Bf16, "odd.w", &wd, 16, 48)
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::Config(ref m) if m.contains("odd.w")),
        "{e:?}"
    );
}

/// `CudaOps::compress24` takes the device path on mma.sp shapes (no download), gives the CPU's
/// NaN error, and the dense fallback elsewhere.
#[test]
fn gpu_ops_compress24_uses_the_device_kernel() {
    use asa_lth::backend::cpu::Cpu;
    use asa_lth::backend::cuda::ops::CudaOps;
    use asa_lth::backend::Ops;
    let test = "gpu_ops_compress24_uses_the_device_kernel";
    if common::gpu(test).is_none() {
        return;
    }
    let g = CudaOps::new(0).unwrap_or_else(|e| panic!("{test}: CudaOps::new(0): {e}"));
    let mut rng = Rng::new(7);
    let (n, k) = (32, 96);
    let mut w = matrix(&mut rng, n, k, 0.5);
    let gw = g.compress24("w", &g.upload(&w).unwrap(), n, k).unwrap();
    assert!(gw.uses_mma_sp());
    assert_eq!(gw.shape(), (n, k));
    w[1234] = f32::NAN;
    w[77] = f32::NEG_INFINITY;
    let want = Cpu.compress24("w", &w, n, k).unwrap_err();
    let got = g
        .compress24("w", &g.upload(&w).unwrap(), n, k)
        .err()
        .unwrap();
    assert_same_non_finite(&got, &want, "ops");
    let dense = g
        .compress24(
            "w",
            &g.upload(&matrix(&mut rng, 20, 48, 0.5)).unwrap(),
            20,
            48,
        )
        .unwrap();
    assert!(!dense.uses_mma_sp());
}
