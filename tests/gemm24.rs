//! The 2:4 format, its CPU GEMM, and the `mma.sp` metadata reorder checked on the PTX-ISA warp
//! emulator.

mod common;

use asa_lth::rng::Rng;
use asa_lth::sparse::format24::Sparse24;
use asa_lth::sparse::gemm24::gemm24;
use asa_lth::sparse::mma_emu;
use half::bf16;

/// Independent 2:4 oracle: per group, order positions by (|w| desc, index asc), keep two.
fn prune24_oracle(w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for (gi, g) in w.chunks_exact(4).enumerate() {
        let mut idx = [0usize, 1, 2, 3];
        idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()).then(a.cmp(&b)));
        for &i in &idx[..2] {
            out[4 * gi + i] = g[i];
        }
    }
    out
}

/// Every accumulator of the warp (at the tile position `pos` gives it) equals `want(row, col)`.
fn assert_tile(
    acc: &[[f32; 4]; 32],
    pos: impl Fn(usize, usize) -> (usize, usize),
    want: impl Fn(usize, usize) -> f64,
) {
    for (lane, regs) in acc.iter().enumerate() {
        for (i, &got) in regs.iter().enumerate() {
            let (r, col) = pos(lane, i);
            let w = want(r, col);
            let got = got as f64;
            assert!(
                (got - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "lane {lane} reg {i} (row {r}, col {col}): {got} vs {w}"
            );
        }
    }
}

fn tie_heavy(rng: &mut Rng, n: usize) -> Vec<f32> {
    let set = [0.5f32, -0.5, 1.0, -1.0, 2.0, 0.25, -2.0, 0.0];
    (0..n).map(|_| set[rng.below(set.len())]).collect()
}

#[test]
fn compress_keeps_the_two_largest_and_round_trips() {
    let mut rng = Rng::new(1);
    for (n, k) in [(1, 16), (3, 32), (16, 64), (7, 160)] {
        for w in [
            common::rand_vec_f32(&mut rng, n * k),
            tie_heavy(&mut rng, n * k),
        ] {
            let c = Sparse24::compress("w", &w, n, k).unwrap();
            let dense = c.decompress();
            assert_eq!(dense, prune24_oracle(&w), "n={n} k={k}");
            // Every group keeps exactly two positions, in increasing order.
            for r in 0..n {
                for g in 0..k / 4 {
                    let (a, b) = c.positions(r, g);
                    assert!(a < b && b < 4);
                }
            }
            // Compressing the pruned matrix again gives the same compressed form.
            assert_eq!(Sparse24::compress("w", &dense, n, k).unwrap(), c);
            let again = Sparse24::from_parts(n, k, c.values().to_vec(), c.meta().to_vec()).unwrap();
            assert_eq!(again, c);
        }
    }
}

#[test]
fn bad_shapes_and_values_are_clear_errors() {
    let e = Sparse24::compress("blocks.0.mlp.w_fc", &[1.0f32; 24], 2, 12)
        .unwrap_err()
        .to_string();
    assert!(e.contains("K = 12") && e.contains("multiple of 16"), "{e}");
    let e = Sparse24::compress("w", &[1.0f32; 30], 2, 16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("30 weights"), "{e}");
    let mut w = vec![1.0f32; 32];
    w[17] = f32::NAN;
    let e = Sparse24::compress("wq", &w, 2, 16).unwrap_err().to_string();
    assert!(e.contains("wq") && e.contains("17"), "{e}");
    // 0b0101 names position 1 twice: invalid.
    let e = Sparse24::<f32>::from_parts(1, 16, vec![0.0; 8], vec![0x5555])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not increasing"), "{e}");
    let c = Sparse24::compress("w", &[1.0f32; 48], 3, 16).unwrap();
    let e = c.mma_sp_metadata().unwrap_err().to_string();
    assert!(e.contains("multiple of 32"), "{e}");
}

fn dense_ref(x: &[f64], w: &[f64], bias: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = bias[j] + (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum::<f64>();
        }
    }
    y
}

#[test]
fn cpu_gemm24_matches_a_dense_f64_reference() {
    let mut rng = Rng::new(2);
    for (m, n, k) in [
        (1, 16, 32),
        (5, 24, 64),
        (32, 17, 48),
        (33, 40, 128),
        (70, 8, 16),
        (64, 300, 32),
        // Two K blocks of the AXPY path (KB = 4096) with a tail, and the GEMV path at long K.
        (12, 16, 4160),
        (3, 20, 4160),
        (8, 48, 160),
        // The dense-block path (M ≥ DENSE_FROM_M).
        (130, 24, 64),
    ] {
        let w = common::rand_vec_f32(&mut rng, n * k);
        let x = common::rand_vec_f32(&mut rng, m * k);
        let bias = common::rand_vec_f32(&mut rng, n);
        let c = Sparse24::compress("w", &w, n, k).unwrap();
        let wide = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let want = dense_ref(&wide(&x), &wide(&c.decompress()), &wide(&bias), m, n, k);
        let mut y = vec![f32::NAN; m * n];
        gemm24(&mut y, &x, &c, Some(&bias), m).unwrap();
        assert!(
            common::rel_l2(&wide(&y), &want) < 1e-5,
            "f32 m={m} n={n} k={k}"
        );

        // bf16 operands, f32 accumulation: against f64 on the same rounded operands.
        let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let cb = Sparse24::compress("w", &wb, n, k).unwrap();
        let wdb: Vec<f64> = cb.decompress().iter().map(|v| v.to_f64()).collect();
        let xdb: Vec<f64> = xb.iter().map(|v| v.to_f64()).collect();
        let want = dense_ref(&xdb, &wdb, &vec![0.0; n], m, n, k);
        let mut y = vec![f32::NAN; m * n];
        gemm24(&mut y, &xb, &cb, None, m).unwrap();
        assert!(
            common::rel_l2(&wide(&y), &want) < 1e-5,
            "bf16 m={m} n={n} k={k}"
        );
    }
    let c = Sparse24::compress("w", &[1.0f32; 32], 2, 16).unwrap();
    let e = gemm24(&mut [0.0; 5], &[0.0f32; 48], &c, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("y has 5"), "{e}");
    let e = gemm24(&mut [0.0; 6], &[0.0f32; 47], &c, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x has 47"), "{e}");
}

/// The canonical values (one u32 per kept pair) plus the reordered metadata, fed to the warp
/// emulator for two k32 steps with the selector alternating, reproduce a plain matmul of the
/// decompressed tile: the format and the reorder agree with the ISA fragment tables.
#[test]
fn reordered_metadata_drives_mma_sp_correctly_on_the_emulator() {
    let mut rng = Rng::new(3);
    let (n, k) = (32, 128); // two 16-row tiles, two pairs of k32 steps
    let w: Vec<bf16> = common::rand_vec_f32(&mut rng, n * k)
        .iter()
        .map(|&v| bf16::from_f32(v))
        .collect();
    let x: Vec<bf16> = common::rand_vec_f32(&mut rng, 8 * k) // 8 tokens = the n8 of the MMA
        .iter()
        .map(|&v| bf16::from_f32(v))
        .collect();
    let c = Sparse24::compress("w", &w, n, k).unwrap();
    let meta = c.mma_sp_metadata().unwrap();
    let dense = c.decompress();
    let pairs = k / 64;
    let to_f32 = |h: u16| bf16::from_bits(h).to_f32();
    let pack = |lo: bf16, hi: bf16| lo.to_bits() as u32 | ((hi.to_bits() as u32) << 16);
    for tile in 0..n / 16 {
        let mut acc = [[0.0f32; 4]; 32];
        for step in 0..k / 32 {
            let (pair, sel) = (step / 2, step % 2);
            let mut a = [[0u32; 4]; 32];
            let mut b = [[0u32; 4]; 32];
            let mut e = [0u32; 32];
            for lane in 0..32 {
                let (g, t) = (lane / 4, lane % 4);
                for j in 0..4 {
                    let row = tile * 16 + g + 8 * (j & 1);
                    let col = step * 16 + 2 * t + 8 * (j >> 1); // compressed column
                    let v = &c.values()[row * k / 2 + col..row * k / 2 + col + 2];
                    a[lane][j] = pack(v[0], v[1]);
                    let kk = step * 32 + 8 * j + 2 * t;
                    b[lane][j] = pack(x[g * k + kk], x[g * k + kk + 1]);
                }
                e[lane] = meta[(tile * pairs + pair) * 32 + lane];
            }
            acc = mma_emu::mma_sp_m16n8k32(&a, &b, &acc, &e, sel, to_f32).unwrap();
        }
        assert_tile(&acc, mma_emu::c_position, |r, col| {
            let row = tile * 16 + r;
            (0..k)
                .map(|p| dense[row * k + p].to_f64() * x[col * k + p].to_f64())
                .sum()
        });
    }
}

#[test]
fn emulator_rejects_unordered_metadata() {
    let a = [[0u32; 4]; 32];
    let e = [0u32; 32]; // nibble 0b0000: position 0 twice
    let err = mma_emu::sparse_a_dense(&a, &e, 0, |h| h as f32).unwrap_err();
    assert!(err.contains("not an ordered pair"), "{err}");
}

/// The kernel's own lane-layout helpers (kernels/gemm24.cuh, compiled for the host) build the
/// fragments; the ISA emulator executes them; the result must be the plain matmul. This is
/// what ties the CUDA kernel's loads and stores to the PTX ISA without a GPU.
#[test]
fn kernel_layout_helpers_agree_with_the_isa_emulator() {
    use asa_lth::backend::cuda::gemm24 as g24;
    let mut rng = Rng::new(4);
    let (n, k) = (32, 96); // K/32 = 3 steps: the second pair has a missing step
    let w: Vec<half::f16> = common::rand_vec_f32(&mut rng, n * k)
        .iter()
        .map(|&v| half::f16::from_f32(v))
        .collect();
    let x: Vec<half::f16> = common::rand_vec_f32(&mut rng, 8 * k)
        .iter()
        .map(|&v| half::f16::from_f32(v))
        .collect();
    let c = Sparse24::compress("w", &w, n, k).unwrap();
    let canonical_reorder = c.mma_sp_metadata().unwrap();
    let pairs = (k / 32).div_ceil(2);
    let to_f32 = |h: u16| half::f16::from_bits(h).to_f32();
    let dense = c.decompress();
    for lane in 0..32u32 {
        for i in 0..4 {
            let (r, col) = g24::c_pos(lane, i);
            assert_eq!(
                (r as usize, col as usize),
                mma_emu::c_position(lane as usize, i as usize)
            );
        }
    }
    for tile in 0..n / 16 {
        for pair in 0..pairs {
            for lane in 0..32 {
                let word = g24::meta_word(&c, (tile * 16) as u32, pair as u32, lane).unwrap();
                assert_eq!(
                    word,
                    canonical_reorder[(tile * pairs + pair) * 32 + lane as usize]
                );
            }
        }
        let mut acc = [[0.0f32; 4]; 32];
        for step in 0..k / 32 {
            let (pair, sel) = (step / 2, step % 2);
            let (mut a, mut b, mut e) = ([[0u32; 4]; 32], [[0u32; 4]; 32], [0u32; 32]);
            for lane in 0..32 {
                for j in 0..4 {
                    let mut ra = 0u32;
                    let mut rb = 0u32;
                    for h in 0..2 {
                        let (row, ccol) = g24::a_pos(lane as u32, j as u32, h);
                        let v = c.values()
                            [(tile * 16 + row as usize) * k / 2 + step * 16 + ccol as usize];
                        ra |= (v.to_bits() as u32) << (16 * h);
                        let (kk, nn) = g24::b_pos(lane as u32, j as u32, h);
                        let xv = x[nn as usize * k + step * 32 + kk as usize];
                        rb |= (xv.to_bits() as u32) << (16 * h);
                    }
                    a[lane][j] = ra;
                    b[lane][j] = rb;
                }
                e[lane] = g24::meta_word(&c, (tile * 16) as u32, pair as u32, lane as u32).unwrap();
            }
            acc = mma_emu::mma_sp_m16n8k32(&a, &b, &acc, &e, sel, to_f32).unwrap();
        }
        let pos = |lane: usize, i: usize| {
            let (r, col) = g24::c_pos(lane as u32, i as u32);
            (r as usize, col as usize)
        };
        assert_tile(&acc, pos, |r, col| {
            let row = tile * 16 + r;
            (0..k)
                .map(|p| dense[row * k + p].to_f64() * x[col * k + p].to_f64())
                .sum()
        });
    }
}

/// The reference mma.sp kernel against the CPU twin (bf16 and f16 operands, M tails, bias).
#[test]
fn gpu_gemm24_matches_the_cpu_twin() {
    use asa_lth::backend::cuda::gemm24 as g24;
    let Some(gpu) = common::gpu("gpu_gemm24_matches_the_cpu_twin") else {
        return;
    };
    let (stream, module) = (&gpu.stream, &gpu.module);
    let mut rng = Rng::new(5);
    for (m, n, k) in [(1, 16, 32), (13, 48, 96), (64, 128, 256), (77, 32, 4096)] {
        let wf = common::rand_vec_f32(&mut rng, n * k);
        let xf = common::rand_vec_f32(&mut rng, m * k);
        let bias = common::rand_vec_f32(&mut rng, n);
        for dtype in [g24::Half::Bf16, g24::Half::F16] {
            let (want, xbits, dw) = match dtype {
                g24::Half::Bf16 => {
                    let w: Vec<bf16> = wf.iter().map(|&v| bf16::from_f32(v)).collect();
                    let x: Vec<bf16> = xf.iter().map(|&v| bf16::from_f32(v)).collect();
                    let c = Sparse24::compress("w", &w, n, k).unwrap();
                    let mut y = vec![0.0f32; m * n];
                    gemm24(&mut y, &x, &c, Some(&bias), m).unwrap();
                    let dw = g24::DeviceSparse24::upload(stream, &c).unwrap();
                    (y, x.iter().map(|v| v.to_bits()).collect::<Vec<u16>>(), dw)
                }
                g24::Half::F16 => {
                    let w: Vec<half::f16> = wf.iter().map(|&v| half::f16::from_f32(v)).collect();
                    let x: Vec<half::f16> = xf.iter().map(|&v| half::f16::from_f32(v)).collect();
                    let c = Sparse24::compress("w", &w, n, k).unwrap();
                    let mut y = vec![0.0f32; m * n];
                    gemm24(&mut y, &x, &c, Some(&bias), m).unwrap();
                    let dw = g24::DeviceSparse24::upload(stream, &c).unwrap();
                    (y, x.iter().map(|v| v.to_bits()).collect::<Vec<u16>>(), dw)
                }
            };
            let xd = stream.clone_htod(&xbits).unwrap();
            let bd = stream.clone_htod(&bias).unwrap();
            let mut yd = stream.clone_htod(&vec![f32::NAN; m * n]).unwrap(); // poisoned
            g24::launch_gemm24_ref(module, stream, dtype, &mut yd, &xd, &dw, Some(&bd), m).unwrap();
            let got = stream.clone_dtoh(&yd).unwrap();
            let wide = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
            let err = common::rel_l2(&wide(&got), &wide(&want));
            assert!(err < 1e-4, "{dtype:?} m={m} n={n} k={k}: rel L2 {err}");
        }
    }
}

/// The layout probe (PTX-FACTS.md, last section): one `mma.sp` on the GPU with registers
/// chosen so every product is exact (small integers), compared register by register with the
/// ISA emulator, for both selectors and both 16-bit types. The first GPU test to run: if it
/// fails, fix the emulator's [figure] tables first, then the kernels.
#[test]
fn gpu_mma_sp_layout_probe_matches_the_emulator() {
    use asa_lth::backend::cuda::gemm24 as g24;
    let Some(gpu) = common::gpu("gpu_mma_sp_layout_probe_matches_the_emulator") else {
        return;
    };
    let mut rng = Rng::new(6);
    const NIBBLES: [u32; 6] = [0b0100, 0b1000, 0b1001, 0b1100, 0b1101, 0b1110];
    for dtype in [g24::Half::Bf16, g24::Half::F16] {
        let enc = |v: f32| match dtype {
            g24::Half::Bf16 => bf16::from_f32(v).to_bits() as u32,
            g24::Half::F16 => half::f16::from_f32(v).to_bits() as u32,
        };
        let dec = move |h: u16| match dtype {
            g24::Half::Bf16 => bf16::from_bits(h).to_f32(),
            g24::Half::F16 => half::f16::from_bits(h).to_f32(),
        };
        for selector in 0..2 {
            let mut small = || (rng.below(7) as f32) - 3.0;
            let (mut a, mut b, mut c) = ([[0u32; 4]; 32], [[0u32; 4]; 32], [[0f32; 4]; 32]);
            for lane in 0..32 {
                for j in 0..4 {
                    a[lane][j] = enc(small()) | (enc(small()) << 16);
                    b[lane][j] = enc(small()) | (enc(small()) << 16);
                    c[lane][j] = small();
                }
            }
            let mut e = [0u32; 32];
            for word in e.iter_mut() {
                for q in 0..8 {
                    *word |= NIBBLES[rng.below(6)] << (4 * q);
                }
            }
            let want = mma_emu::mma_sp_m16n8k32(&a, &b, &c, &e, selector, dec).unwrap();
            let got = g24::run_mma_sp_probe(
                &gpu.module,
                &gpu.stream,
                dtype,
                &a,
                &b,
                &c,
                &e,
                selector as u32,
            )
            .unwrap();
            let bad: Vec<String> = (0..32)
                .flat_map(|l| (0..4).map(move |i| (l, i)))
                .filter(|&(l, i)| got[l][i] != want[l][i])
                .map(|(l, i)| format!("lane {l} d{i}: gpu {} emulator {}", got[l][i], want[l][i]))
                .collect();
            assert!(
                bad.is_empty(),
                "{dtype:?} selector {selector}:\n{}",
                bad.join("\n")
            );
        }
    }
}
