//! The tuned 2:4 kernels (kernels/gemm24.cu, `gemm24_{bf16,f16}_{large,small}`) without a GPU:
//! their shared-memory swizzles and ldmatrix addressing (kernels/gemm24.cuh, compiled for the
//! host) drive the PTX-ISA ldmatrix and mma.sp emulators (src/sparse/mma_emu.rs), first per
//! fragment, then for whole CTAs — every stage loaded by the kernel's own cp.async rules
//! (zero-fill past M, N and K), split-K and the epilogue — against a dense f64 reference.
//! Then the same kernels on a GPU against the CPU twin (skipped without one).

mod common;

use asa_lth::backend::cuda::gemm24::{self as g24, Gemm24Plan, Half, TileConfig};
use asa_lth::rng::Rng;
use asa_lth::sparse::format24::Sparse24;
use asa_lth::sparse::gemm24::gemm24;
use asa_lth::sparse::mma_emu;
use half::{bf16, f16};

const CONFIGS: [TileConfig; 2] = [TileConfig::Large, TileConfig::Small];

fn decoder(dtype: Half) -> impl Fn(u16) -> f32 + Copy {
    move |h| match dtype {
        Half::Bf16 => bf16::from_bits(h).to_f32(),
        Half::F16 => f16::from_bits(h).to_f32(),
    }
}

fn encode(dtype: Half, v: f32) -> u16 {
    match dtype {
        Half::Bf16 => bf16::from_f32(v).to_bits(),
        Half::F16 => f16::from_f32(v).to_bits(),
    }
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// A random 2:4 problem in 16-bit bits: compressed W (values as u16, canonical metadata and the
/// mma.sp reorder), X, bias, and the dense f64 reference `X·Wᵀ + bias` (GELU optional).
struct Problem {
    m: usize,
    n: usize,
    k: usize,
    vals: Vec<u16>,
    /// Canonical metadata (N × K/16 u16) and its mma.sp reorder.
    canon: Vec<u16>,
    meta: Vec<u32>,
    x: Vec<u16>,
    bias: Vec<f32>,
    dense_w: Vec<f64>,
    xf: Vec<f64>,
}

impl Problem {
    fn new(rng: &mut Rng, dtype: Half, m: usize, n: usize, k: usize) -> Self {
        let dec = decoder(dtype);
        let w: Vec<u16> = common::rand_vec_f32(rng, n * k)
            .iter()
            .map(|&v| encode(dtype, v))
            .collect();
        let wf: Vec<f32> = w.iter().map(|&b| dec(b)).collect();
        let c = Sparse24::compress("w", &wf, n, k).unwrap();
        let vals: Vec<u16> = c.values().iter().map(|&v| encode(dtype, v)).collect();
        let x: Vec<u16> = common::rand_vec_f32(rng, m * k)
            .iter()
            .map(|&v| encode(dtype, v))
            .collect();
        Problem {
            m,
            n,
            k,
            meta: c.mma_sp_metadata().unwrap(),
            canon: c.meta().to_vec(),
            dense_w: c.decompress().iter().map(|&v| v as f64).collect(),
            xf: x.iter().map(|&b| dec(b) as f64).collect(),
            vals,
            x,
            bias: common::rand_vec_f32(rng, n),
        }
    }

    fn reference(&self, bias: bool, act: bool) -> Vec<f64> {
        let (m, n, k) = (self.m, self.n, self.k);
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s: f64 = (0..k)
                    .map(|p| self.xf[i * k + p] * self.dense_w[j * k + p])
                    .sum();
                if bias {
                    s += self.bias[j] as f64;
                }
                y[i * n + j] = if act { gelu(s) } else { s };
            }
        }
        y
    }
}

fn put16(img: &mut [u8], at: usize, halves: &[u16]) {
    for (i, h) in halves.iter().enumerate() {
        img[at + 2 * i..at + 2 * i + 2].copy_from_slice(&h.to_le_bytes());
    }
}

/// The tuned kernel executed on the emulators, CTA by CTA, with the kernel's own helpers for
/// every address. Stage images start poisoned (0xFF: NaN values, invalid metadata), so a chunk
/// the load rules forget to write shows up as a NaN or an emulator error.
fn emulate_tuned(
    p: &Problem,
    dtype: Half,
    plan: Gemm24Plan,
    bias: bool,
    act: bool,
) -> Result<Vec<f64>, String> {
    let (m, n, k) = (p.m, p.n, p.k);
    let g = plan.config.geometry();
    let (mt, nt) = (g.bm / g.warps_m / 16, g.bn / g.warps_n / 8);
    let (steps, pairs) = (k / 32, k.div_ceil(64));
    let splits = plan.splits;
    let (x_base, e_base) = (g.bm * 64, g.bm * 64 + g.bn * 128);
    let stage = e_base + g.bm / 16 * 128;
    let dec = decoder(dtype);
    let mut partial = vec![0.0f64; splits * m * n];
    for z in 0..splits {
        let (first, end) = g24::split_range(pairs as u32, splits as u32, z as u32);
        for bx in 0..n.div_ceil(g.bm) {
            for by in 0..m.div_ceil(g.bn) {
                let (n0, m0) = (bx * g.bm, by * g.bn);
                let warps = g.warps_m * g.warps_n;
                let mut acc = vec![[[0.0f32; 4]; 32]; warps * mt * nt];
                for kt in first as usize..end as usize {
                    let mut img = vec![0xFFu8; stage];
                    // Every chunk through the kernels' own source and zero-fill rules.
                    for i in 0..g.bm * 4 {
                        let at = g24::w_smem((i / 4) as u32, (i % 4) as u32) as usize;
                        let src = match g24::w_src(n0, i, kt, n, k) {
                            Some(byte) => p.vals[byte / 2..][..8].to_vec(),
                            None => vec![0; 8],
                        };
                        put16(&mut img, at, &src);
                    }
                    for i in 0..g.bn * 8 {
                        let at = x_base + g24::x_smem((i / 8) as u32, (i % 8) as u32) as usize;
                        let src = match g24::x_src(m0, i, kt, m, k) {
                            Some(e) => p.x[e..][..8].to_vec(),
                            None => vec![0; 8],
                        };
                        put16(&mut img, at, &src);
                    }
                    for i in 0..g.bm / 16 * 8 {
                        for q in 0..4 {
                            let word =
                                g24::meta_src(n0, i, kt, n, pairs).map_or(0, |w| p.meta[w + q]);
                            let at = e_base + 16 * i + 4 * q;
                            img[at..at + 4].copy_from_slice(&word.to_le_bytes());
                        }
                    }
                    for warp in 0..warps {
                        let (wm, wn) = (warp % g.warps_m, warp / g.warps_m);
                        let e: Vec<[u32; 32]> = (0..mt)
                            .map(|i| {
                                std::array::from_fn(|lane| {
                                    let at = e_base + 4 * ((wm * mt + i) * 32 + lane);
                                    u32::from_le_bytes(img[at..at + 4].try_into().unwrap())
                                })
                            })
                            .collect();
                        for s in 0..2u32 {
                            if s == 1 && 2 * kt + 1 >= steps {
                                break;
                            }
                            let mut a = Vec::new();
                            for i in 0..mt {
                                let addr = std::array::from_fn(|lane| {
                                    let (r, c) = g24::ldsm_a(lane as u32, s);
                                    g24::w_smem(((wm * mt + i) * 16) as u32 + r, c)
                                });
                                a.push(mma_emu::ldmatrix_x4(&img, &addr)?);
                            }
                            let mut b = Vec::new();
                            for j in 0..nt {
                                let addr = std::array::from_fn(|lane| {
                                    let (r, c) = g24::ldsm_b(lane as u32, s);
                                    x_base as u32 + g24::x_smem(((wn * nt + j) * 8) as u32 + r, c)
                                });
                                b.push(mma_emu::ldmatrix_x4(&img, &addr)?);
                            }
                            for i in 0..mt {
                                if n0 + (wm * mt + i) * 16 >= n {
                                    continue;
                                }
                                for j in 0..nt {
                                    let slot = &mut acc[(warp * mt + i) * nt + j];
                                    *slot = mma_emu::mma_sp_m16n8k32(
                                        &a[i], &b[j], slot, &e[i], s as usize, dec,
                                    )?;
                                }
                            }
                        }
                    }
                }
                for warp in 0..warps {
                    let (wm, wn) = (warp % g.warps_m, warp / g.warps_m);
                    for i in 0..mt {
                        for j in 0..nt {
                            for (lane, regs) in acc[(warp * mt + i) * nt + j].iter().enumerate() {
                                for (q, &v) in regs.iter().enumerate() {
                                    let (r, c) = g24::c_pos(lane as u32, q as u32);
                                    let feat = (wm * mt + i) * 16 + r as usize;
                                    let tok = (wn * nt + j) * 8 + c as usize;
                                    let (mm, nn) = (m0 + tok, n0 + feat);
                                    if mm < m && nn < n {
                                        partial[z * m * n + mm * n + nn] = v as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok((0..m * n)
        .map(|i| {
            let mut s = (0..splits).map(|z| partial[z * m * n + i]).sum::<f64>();
            if bias {
                s += p.bias[i % n] as f64;
            }
            if act {
                gelu(s)
            } else {
                s
            }
        })
        .collect())
}

#[test]
fn configurations_fit_the_hardware_and_cover_their_tiles() {
    for cfg in CONFIGS {
        let g = cfg.geometry();
        assert_eq!(g.bm % (16 * g.warps_m), 0, "{cfg:?}");
        assert_eq!(g.bn % (8 * g.warps_n), 0, "{cfg:?}");
        assert_eq!(g.threads, 32 * g.warps_m * g.warps_n);
        // Fits an A100's 163 KiB opt-in limit with room for a second CTA on the large tiles.
        assert!(g.smem <= 96 * 1024, "{cfg:?}: {} B", g.smem);
        let pipe = g.stages * (g.bm * 64 + g.bn * 128 + g.bm / 16 * 128);
        assert!(g.smem >= pipe && g.smem >= g.bn * (g.bm + 4) * 4, "{cfg:?}");
    }
}

/// Every chunk of a stage lands at its own 16-byte slot of its own row, and the eight rows one
/// ldmatrix phase reads (lanes 8q .. 8q + 7) sit in eight different bank groups: no shared
/// memory bank conflicts on the fragment loads.
#[test]
fn swizzles_are_bijective_and_ldmatrix_phases_are_conflict_free() {
    let mut seen = std::collections::HashSet::new();
    for r in 0..128u32 {
        for c in 0..4 {
            let o = g24::w_smem(r, c);
            assert!(
                o / 64 == r && o.is_multiple_of(16) && seen.insert(o),
                "W row {r} chunk {c}"
            );
        }
    }
    seen.clear();
    for t in 0..128u32 {
        for c in 0..8 {
            let o = g24::x_smem(t, c);
            assert!(
                o / 128 == t && o.is_multiple_of(16) && seen.insert(o),
                "X row {t} chunk {c}"
            );
        }
    }
    for s in 0..2 {
        for tile in [0u32, 16, 48] {
            for q in 0..4 {
                let groups: std::collections::HashSet<u32> = (8 * q..8 * q + 8)
                    .map(|lane| {
                        let (r, c) = g24::ldsm_a(lane, s);
                        (g24::w_smem(tile + r, c) / 16) % 8
                    })
                    .collect();
                assert_eq!(groups.len(), 8, "A step {s} tile {tile} matrix {q}");
                let groups: std::collections::HashSet<u32> = (8 * q..8 * q + 8)
                    .map(|lane| {
                        let (r, c) = g24::ldsm_b(lane, s);
                        (g24::x_smem(tile / 2 + r, c) / 16) % 8
                    })
                    .collect();
                assert_eq!(groups.len(), 8, "B step {s} tile {tile} matrix {q}");
            }
        }
    }
}

/// ldmatrix with the kernel's addresses delivers exactly the mma.sp fragments of
/// kernels/gemm24.cuh (asa_mma_sp_a_pos / asa_mma_sp_b_pos), which the ISA emulator ties to a
/// plain matmul in tests/gemm24.rs.
#[test]
fn ldmatrix_addressing_delivers_the_mma_sp_fragments() {
    let mut rng = Rng::new(31);
    let rows = 32usize; // two 16-row tiles of W, 16 tokens of X (two 8-token tiles)
    let wv: Vec<u16> = (0..rows * 32).map(|_| rng.below(65536) as u16).collect();
    let xv: Vec<u16> = (0..16 * 64).map(|_| rng.below(65536) as u16).collect();
    let mut wimg = vec![0u8; rows * 64];
    let mut ximg = vec![0u8; 16 * 128];
    for r in 0..rows {
        for c in 0..4 {
            let at = g24::w_smem(r as u32, c as u32) as usize;
            put16(&mut wimg, at, &wv[r * 32 + 8 * c..][..8]);
        }
    }
    for t in 0..16 {
        for c in 0..8 {
            let at = g24::x_smem(t as u32, c as u32) as usize;
            put16(&mut ximg, at, &xv[t * 64 + 8 * c..][..8]);
        }
    }
    for s in 0..2u32 {
        for tile in 0..2u32 {
            let addr = std::array::from_fn(|lane| {
                let (r, c) = g24::ldsm_a(lane as u32, s);
                g24::w_smem(16 * tile + r, c)
            });
            let a = mma_emu::ldmatrix_x4(&wimg, &addr).unwrap();
            let addr = std::array::from_fn(|lane| {
                let (t, c) = g24::ldsm_b(lane as u32, s);
                g24::x_smem(8 * tile + t, c)
            });
            let b = mma_emu::ldmatrix_x4(&ximg, &addr).unwrap();
            for lane in 0..32u32 {
                for j in 0..4u32 {
                    for h in 0..2u32 {
                        let (row, ccol) = g24::a_pos(lane, j, h);
                        let want = wv[(16 * tile + row) as usize * 32 + (16 * s + ccol) as usize];
                        let got = (a[lane as usize][j as usize] >> (16 * h)) as u16;
                        assert_eq!(got, want, "A step {s} tile {tile} lane {lane} reg {j}.{h}");
                        let (kk, nn) = g24::b_pos(lane, j, h);
                        let want = xv[(8 * tile + nn) as usize * 64 + (32 * s + kk) as usize];
                        let got = (b[lane as usize][j as usize] >> (16 * h)) as u16;
                        assert_eq!(got, want, "B step {s} tile {tile} lane {lane} reg {j}.{h}");
                    }
                }
            }
        }
    }
}

#[test]
fn ldmatrix_emulator_rejects_bad_addresses() {
    let img = vec![0u8; 256];
    let mut addr = [0u32; 32];
    addr[5] = 8;
    assert!(mma_emu::ldmatrix_x4(&img, &addr)
        .unwrap_err()
        .contains("lane 5"));
    addr[5] = 256;
    assert!(mma_emu::ldmatrix_x4(&img, &addr).is_err());
}

/// The emulator's forms agree with each other the way the ISA says: .x2 is the first two
/// matrices of .x4 (lanes 16..31 ignored), and .trans on a matrix equals the plain load of its
/// transpose (lane l: column l/4, rows 2(l%4) and 2(l%4)+1).
#[test]
fn ldmatrix_emulator_forms_are_consistent() {
    let mut rng = Rng::new(41);
    // Four 8×8 matrices of distinct u16 values, row-major, 16 bytes per row, 512 bytes.
    let vals: Vec<u16> = (0..256).map(|_| rng.below(65536) as u16).collect();
    let mut img = vec![0u8; 512];
    put16(&mut img, 0, &vals);
    let mut timg = vec![0u8; 512];
    let tvals: Vec<u16> = (0..256)
        .map(|i| {
            let (m, r, c) = (i / 64, (i / 8) % 8, i % 8);
            vals[m * 64 + c * 8 + r]
        })
        .collect();
    put16(&mut timg, 0, &tvals);
    let addr: [u32; 32] = std::array::from_fn(|l| 16 * l as u32);
    let x4 = mma_emu::ldmatrix(&img, &addr, 4, false).unwrap();
    assert_eq!(x4, mma_emu::ldmatrix_x4(&img, &addr).unwrap());
    let mut half_addr = addr;
    for a in &mut half_addr[16..] {
        *a = 7; // ignored by .x2: even a misaligned address
    }
    let x2 = mma_emu::ldmatrix(&img, &half_addr, 2, false).unwrap();
    for lane in 0..32 {
        assert_eq!(x2[lane][..2], x4[lane][..2]);
        assert_eq!(x2[lane][2..], [0, 0]);
    }
    let x4t = mma_emu::ldmatrix(&img, &addr, 4, true).unwrap();
    assert_eq!(x4t, mma_emu::ldmatrix(&timg, &addr, 4, false).unwrap());
    // One element by hand: lane 9 (column 2, rows 2 and 3), matrix 1.
    assert_eq!(
        x4t[9][1],
        vals[64 + 2 * 8 + 2] as u32 | (vals[64 + 3 * 8 + 2] as u32) << 16
    );
    assert!(mma_emu::ldmatrix(&img, &addr, 3, false).is_err());
}

#[test]
fn split_k_ranges_cover_every_pair_once() {
    for pairs in [1u32, 2, 7, 64, 172] {
        for splits in 1..=8u32 {
            let mut next = 0;
            for z in 0..splits {
                let (a, b) = g24::split_range(pairs, splits, z);
                assert_eq!(a, next, "pairs {pairs} splits {splits} z {z}");
                assert!(b >= a && b - a <= pairs.div_ceil(splits));
                next = b;
            }
            assert_eq!(next, pairs);
        }
    }
}

#[test]
fn plans_pick_small_tiles_and_split_k_for_few_tokens() {
    let p = Gemm24Plan::choose(16, 4096, 4096, 132);
    assert_eq!(p.config, TileConfig::Small);
    assert!(p.splits > 1, "{p:?}");
    assert_eq!(p.workspace_len(16, 4096), p.splits * 16 * 4096);
    let p = Gemm24Plan::choose(8192, 4096, 4096, 132);
    assert_eq!(
        p,
        Gemm24Plan {
            config: TileConfig::Large,
            splits: 1
        }
    );
    assert_eq!(p.workspace_len(8192, 4096), 0);
    // A short K never splits below 4 pairs per split.
    assert_eq!(Gemm24Plan::choose(1, 16, 64, 132).splits, 1);
}

/// Whole CTAs of both configurations on the emulators: tails in M (not a multiple of BN), N
/// not a multiple of BM, K/32 odd (a pair with one step), split-K, bias and GELU.
#[test]
fn tuned_kernel_emulated_end_to_end_matches_a_dense_reference() {
    let mut rng = Rng::new(32);
    let cases = [
        // (config, splits, dtype, m, n, k, bias, gelu)
        (TileConfig::Large, 1, Half::F16, 130, 144, 96, true, true),
        (TileConfig::Large, 2, Half::Bf16, 40, 16, 256, true, false),
        (TileConfig::Small, 1, Half::Bf16, 33, 48, 64, true, false),
        (TileConfig::Small, 3, Half::F16, 5, 48, 416, false, false),
        (TileConfig::Small, 2, Half::Bf16, 1, 16, 160, true, true),
    ];
    for (config, splits, dtype, m, n, k, bias, act) in cases {
        let p = Problem::new(&mut rng, dtype, m, n, k);
        let plan = Gemm24Plan { config, splits };
        let got = emulate_tuned(&p, dtype, plan, bias, act)
            .unwrap_or_else(|e| panic!("{plan:?} m={m} n={n} k={k}: {e}"));
        assert!(
            got.iter().all(|v| v.is_finite()),
            "{plan:?}: NaN (unwritten chunk?)"
        );
        let want = p.reference(bias, act);
        let err = common::rel_l2(&got, &want);
        assert!(
            err < 1e-5,
            "{plan:?} {dtype:?} m={m} n={n} k={k}: rel L2 {err}"
        );
    }
}

/// The Hopper kernel (kernels/gemm24_sm90.cu) on the wgmma emulator: stages built with its
/// core-matrix offsets, its own descriptors, its accumulator layout; 2 CTAs in N, M and K
/// tails (K/32 odd), bias and GELU.
fn emulate_hopper(p: &Problem, bias: bool, act: bool) -> Result<Vec<f64>, String> {
    let (m, n, k) = (p.m, p.n, p.k);
    let g = g24::hopper_geometry();
    let (steps, pairs) = (k / 32, k.div_ceil(64));
    let (x_base, e_base) = (g.bm * 64, g.bm * 64 + g.bn * 128);
    assert_eq!(e_base + g.bm / 16 * 128, g.stage_bytes);
    let dec = decoder(Half::Bf16);
    let mut y = vec![f64::NAN; m * n];
    for bx in 0..n / g.bm {
        for by in 0..m.div_ceil(g.bn) {
            let (n0, m0) = (bx * g.bm, by * g.bn);
            let mut d = vec![vec![0.0f32; g.bn / 2]; g.threads];
            for kt in 0..pairs {
                let mut img = vec![0xFFu8; g.stage_bytes];
                for i in 0..g.bm * 4 {
                    let at = g24::hopper_smem((i / 4) as u32, (i % 4) as u32, g.w_sbo) as usize;
                    let src = match g24::w_src(n0, i, kt, n, k) {
                        Some(byte) => p.vals[byte / 2..][..8].to_vec(),
                        None => vec![0; 8],
                    };
                    put16(&mut img, at, &src);
                }
                for i in 0..g.bn * 8 {
                    let (r, c) = ((i / 8) as u32, (i % 8) as u32);
                    let at = x_base + g24::hopper_smem(r, c, g.x_sbo) as usize;
                    let src = match g24::x_src(m0, i, kt, m, k) {
                        Some(e) => p.x[e..][..8].to_vec(),
                        None => vec![0; 8],
                    };
                    put16(&mut img, at, &src);
                }
                for i in 0..g.bm / 16 * 8 {
                    let w = g24::meta_src(n0, i, kt, n, pairs).expect("N % 64 == 0");
                    for q in 0..4 {
                        let at = e_base + 16 * i + 4 * q;
                        img[at..at + 4].copy_from_slice(&p.meta[w + q].to_le_bytes());
                    }
                }
                let e: [u32; 128] = std::array::from_fn(|tid| {
                    let at = e_base + 4 * tid;
                    u32::from_le_bytes(img[at..at + 4].try_into().unwrap())
                });
                for s in 0..2u32 {
                    if s == 1 && 2 * kt + 1 >= steps {
                        break;
                    }
                    let (da, db) = g24::hopper_step_desc(0, x_base as u32, s);
                    mma_emu::wgmma_sp_m64nnk32(&img, da, db, &e, s as usize, g.bn, &mut d, dec)?;
                }
            }
            for (tid, regs) in d.iter().enumerate() {
                for (i, &v) in regs.iter().enumerate() {
                    let (r, c) = g24::hopper_d_pos(tid as u32, i as u32);
                    let (mm, nn) = (m0 + c as usize, n0 + r as usize);
                    if mm < m {
                        let mut s = v as f64;
                        if bias {
                            s += p.bias[nn] as f64;
                        }
                        y[mm * n + nn] = if act { gelu(s) } else { s };
                    }
                }
            }
        }
    }
    Ok(y)
}

#[test]
fn hopper_kernel_emulated_end_to_end_matches_a_dense_reference() {
    let g = g24::hopper_geometry();
    assert!(g.smem >= g.bn * (g.bm + 4) * 4, "epilogue staging must fit");
    let mut rng = Rng::new(36);
    for (m, n, k, bias, act) in [(130, 128, 96, true, true), (7, 64, 256, false, false)] {
        let p = Problem::new(&mut rng, Half::Bf16, m, n, k);
        let got = emulate_hopper(&p, bias, act).unwrap_or_else(|e| panic!("m={m} n={n}: {e}"));
        assert!(
            got.iter().all(|v| v.is_finite()),
            "unwritten output or chunk"
        );
        let err = common::rel_l2(&got, &p.reference(bias, act));
        assert!(err < 1e-5, "m={m} n={n} k={k}: rel L2 {err}");
    }
}

#[test]
fn wgmma_descriptor_fields_round_trip() {
    let d = g24::hopper_desc(0x1_2340, 128, 1024);
    assert_eq!(mma_emu::wgmma_desc_fields(d), (0x1_2340, 128, 1024, 0, 0));
    // Addresses are 18 bits of shared memory in 16-byte units: nothing spills into the LBO.
    let d = g24::hopper_desc(0x3_FFF0, 16, 16);
    assert_eq!(mma_emu::wgmma_desc_fields(d), (0x3_FFF0, 16, 16, 0, 0));
}

// ---- GPU ----

fn upload_problem(
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
    p: &Problem,
    dtype: Half,
) -> g24::DeviceSparse24 {
    match dtype {
        Half::Bf16 => {
            let v: Vec<bf16> = p.vals.iter().map(|&b| bf16::from_bits(b)).collect();
            let c = Sparse24::from_parts(p.n, p.k, v, p.canon.clone()).unwrap();
            g24::DeviceSparse24::upload(stream, &c).unwrap()
        }
        Half::F16 => {
            let v: Vec<f16> = p.vals.iter().map(|&b| f16::from_bits(b)).collect();
            let c = Sparse24::from_parts(p.n, p.k, v, p.canon.clone()).unwrap();
            g24::DeviceSparse24::upload(stream, &c).unwrap()
        }
    }
}

/// The tuned kernels on a GPU against the CPU twin and the dense reference: both tile
/// configurations, split-K, tails, bias and GELU, bf16 and f16; output poisoned first.
#[test]
fn gpu_gemm24_tuned_matches_the_cpu_twin() {
    let Some(gpu) = common::gpu("gpu_gemm24_tuned_matches_the_cpu_twin") else {
        return;
    };
    let (stream, module) = (&gpu.stream, &gpu.module);
    let mut rng = Rng::new(33);
    let shapes = [
        (1, 16, 32),
        (5, 48, 416),
        (77, 160, 4096),
        (130, 144, 96),
        (513, 256, 1024),
    ];
    for (m, n, k) in shapes {
        for dtype in [Half::Bf16, Half::F16] {
            let p = Problem::new(&mut rng, dtype, m, n, k);
            let dw = upload_problem(stream, &p, dtype);
            let xd = stream.clone_htod(&p.x).unwrap();
            let bd = stream.clone_htod(&p.bias).unwrap();
            // The CPU twin on the same bits (f32 operands decoded from them).
            let dec = decoder(dtype);
            let xf: Vec<f32> = p.x.iter().map(|&b| dec(b)).collect();
            let vf: Vec<f32> = p.vals.iter().map(|&b| dec(b)).collect();
            let twin_w = Sparse24::from_parts(n, k, vf, p.canon.clone()).unwrap();
            let mut twin = vec![0.0f32; m * n];
            gemm24(&mut twin, &xf, &twin_w, Some(&p.bias), m).unwrap();
            for config in CONFIGS {
                for splits in [1usize, 3] {
                    for act in [false, true] {
                        let plan = Gemm24Plan { config, splits };
                        let mut ws = stream
                            .clone_htod(&vec![f32::NAN; plan.workspace_len(m, n).max(1)])
                            .unwrap();
                        let mut yd = stream.clone_htod(&vec![f32::NAN; m * n]).unwrap();
                        g24::launch_gemm24(
                            module,
                            stream,
                            dtype,
                            &mut yd,
                            &xd,
                            &dw,
                            Some(&bd),
                            act,
                            m,
                            plan,
                            Some(&mut ws),
                        )
                        .unwrap();
                        let got: Vec<f64> = stream
                            .clone_dtoh(&yd)
                            .unwrap()
                            .iter()
                            .map(|&v| v as f64)
                            .collect();
                        let want = p.reference(true, act);
                        let err = common::rel_l2(&got, &want);
                        let ctx = format!("{plan:?} {dtype:?} gelu={act} m={m} n={n} k={k}");
                        assert!(
                            got.iter().all(|v| v.is_finite()),
                            "{ctx}: non-finite output"
                        );
                        assert!(err < 1e-4, "{ctx}: rel L2 {err} vs the f64 reference");
                        if !act {
                            let tw: Vec<f64> = twin.iter().map(|&v| v as f64).collect();
                            let err = common::rel_l2(&got, &tw);
                            assert!(err < 1e-4, "{ctx}: rel L2 {err} vs the CPU twin");
                        }
                    }
                }
            }
            // Split-K is deterministic: the same call twice gives the same bits.
            let plan = Gemm24Plan {
                config: TileConfig::Small,
                splits: 3,
            };
            let mut runs = Vec::new();
            for _ in 0..2 {
                let mut ws = stream
                    .clone_htod(&vec![0.0f32; plan.workspace_len(m, n)])
                    .unwrap();
                let mut yd = stream.clone_htod(&vec![f32::NAN; m * n]).unwrap();
                g24::launch_gemm24(
                    module,
                    stream,
                    dtype,
                    &mut yd,
                    &xd,
                    &dw,
                    None,
                    false,
                    m,
                    plan,
                    Some(&mut ws),
                )
                .unwrap();
                runs.push(stream.clone_dtoh(&yd).unwrap());
            }
            assert!(
                runs[0]
                    .iter()
                    .zip(&runs[1])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "split-K m={m} n={n} k={k} is not bit-reproducible"
            );
        }
    }
}

/// Bad launches are clear errors before anything runs: a missing split-K workspace.
#[test]
fn gpu_gemm24_tuned_rejects_a_missing_workspace() {
    let Some(gpu) = common::gpu("gpu_gemm24_tuned_rejects_a_missing_workspace") else {
        return;
    };
    let stream = &gpu.stream;
    let mut rng = Rng::new(34);
    let p = Problem::new(&mut rng, Half::Bf16, 4, 16, 512);
    let dw = upload_problem(stream, &p, Half::Bf16);
    let xd = stream.clone_htod(&p.x).unwrap();
    let mut yd = stream.clone_htod(&vec![0.0f32; 4 * 16]).unwrap();
    let plan = Gemm24Plan {
        config: TileConfig::Small,
        splits: 2,
    };
    let err = g24::launch_gemm24(
        &gpu.module,
        stream,
        Half::Bf16,
        &mut yd,
        &xd,
        &dw,
        None,
        false,
        4,
        plan,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("workspace"), "{err}");
}

/// The ldmatrix half of the layout probe (PTX-FACTS.md, last section): every u16 of the image
/// is distinct, so each destination half names the element that reached it; the lanes'
/// addresses are permuted rows (as the kernels' swizzles produce).
#[test]
fn gpu_ldmatrix_probe_matches_the_emulator() {
    let Some(gpu) = common::gpu("gpu_ldmatrix_probe_matches_the_emulator") else {
        return;
    };
    let src: [u16; 256] = std::array::from_fn(|i| (i as u16).wrapping_mul(257) ^ 0x5A5A);
    let mut rng = Rng::new(35);
    let mut rows: Vec<u32> = (0..32).collect();
    for i in (1..32).rev() {
        rows.swap(i, rng.below(i + 1));
    }
    let offsets: [u32; 32] = std::array::from_fn(|l| rows[l] * 16);
    let mut img = vec![0u8; 512];
    put16(&mut img, 0, &src);
    // Every form the kernels use: gemm24 .x4; attention .x4, .x2 and .x2.trans; and .x4.trans.
    for (num, trans) in [(4, false), (2, false), (2, true), (4, true)] {
        let got =
            g24::run_ldmatrix_probe(&gpu.module, &gpu.stream, &src, &offsets, num, trans).unwrap();
        let want = mma_emu::ldmatrix(&img, &offsets, num, trans).unwrap();
        assert_eq!(got, want, "ldmatrix .x{num} trans={trans}");
    }
}

/// The experimental Hopper kernel against the f64 reference (sm_90 only; other GPUs print why
/// they skip).
#[test]
fn gpu_gemm24_wgmma_matches_the_reference() {
    let Some(gpu) = common::gpu("gpu_gemm24_wgmma_matches_the_reference") else {
        return;
    };
    let (stream, module) = (&gpu.stream, &gpu.module);
    let mut rng = Rng::new(37);
    for (m, n, k) in [(1, 64, 32), (130, 128, 96), (1000, 256, 4096)] {
        let p = Problem::new(&mut rng, Half::Bf16, m, n, k);
        let dw = upload_problem(stream, &p, Half::Bf16);
        let xd = stream.clone_htod(&p.x).unwrap();
        let bd = stream.clone_htod(&p.bias).unwrap();
        for act in [false, true] {
            let mut yd = stream.clone_htod(&vec![f32::NAN; m * n]).unwrap();
            match g24::launch_gemm24_wgmma(module, stream, &mut yd, &xd, &dw, Some(&bd), act, m) {
                Err(e) if e.to_string().contains("compute capability") => {
                    println!("SKIP gpu_gemm24_wgmma_matches_the_reference: {e}");
                    return;
                }
                r => r.unwrap(),
            }
            let got: Vec<f64> = stream
                .clone_dtoh(&yd)
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect();
            assert!(
                got.iter().all(|v| v.is_finite()),
                "m={m} n={n} k={k}: non-finite"
            );
            let err = common::rel_l2(&got, &p.reference(true, act));
            assert!(err < 1e-4, "m={m} n={n} k={k} gelu={act}: rel L2 {err}");
        }
    }
}

/// The wgmma.sp layout probe: one m64n128k32 on the GPU against the emulator, both selectors,
/// random small integers (exact in bf16 and in the sums) and a one-hot B (each output column
/// then reads out one column of the decompressed A, which isolates the metadata layout from
/// B's). sm_90 only; other GPUs print why they skip.
#[test]
fn gpu_wgmma_sp_probe_matches_the_emulator() {
    let Some(gpu) = common::gpu("gpu_wgmma_sp_probe_matches_the_emulator") else {
        return;
    };
    const NIBBLES: [u32; 6] = [0b0100, 0b1000, 0b1001, 0b1100, 0b1101, 0b1110];
    let g = g24::hopper_geometry();
    let mut rng = Rng::new(38);
    let dec = decoder(Half::Bf16);
    // A: 64 rows x 16 packed halves at 0 (SBO 256: two K-cores per row group); B: 128 rows x 32
    // halves at 2048 (SBO 512: four K-cores).
    let (a_sbo, b_off, b_sbo) = (256u32, 2048u32, 512u32);
    for one_hot in [false, true] {
        for selector in 0..2u32 {
            let mut img = vec![0u8; 2048 + 128 * 64];
            for r in 0..64 {
                for kk in 0..16 {
                    let at = mma_emu::wgmma_kmajor_addr(g24::hopper_desc(0, g.lbo, a_sbo), r, kk)
                        .unwrap();
                    let v = encode(Half::Bf16, rng.below(7) as f32 - 3.0);
                    img[at..at + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
            for col in 0..128 {
                for kk in 0..32 {
                    let v = if one_hot {
                        (col % 32 == kk) as u32 as f32
                    } else {
                        rng.below(5) as f32 - 2.0
                    };
                    let desc = g24::hopper_desc(b_off, g.lbo, b_sbo);
                    let at = mma_emu::wgmma_kmajor_addr(desc, col, kk).unwrap();
                    img[at..at + 2].copy_from_slice(&encode(Half::Bf16, v).to_le_bytes());
                }
            }
            let e: [u32; 128] = std::array::from_fn(|_| {
                (0..8).fold(0u32, |w, q| w | (NIBBLES[rng.below(6)] << (4 * q)))
            });
            let got = match g24::run_wgmma_sp_probe(
                &gpu.module,
                &gpu.stream,
                &img,
                (0, a_sbo),
                (b_off, b_sbo),
                &e,
                selector,
            ) {
                Err(err) if err.to_string().contains("compute capability") => {
                    println!("SKIP gpu_wgmma_sp_probe_matches_the_emulator: {err}");
                    return;
                }
                r => r.unwrap(),
            };
            let mut want = vec![vec![0.0f32; 64]; 128];
            mma_emu::wgmma_sp_m64nnk32(
                &img,
                g24::hopper_desc(0, g.lbo, a_sbo),
                g24::hopper_desc(b_off, g.lbo, b_sbo),
                &e,
                selector as usize,
                128,
                &mut want,
                dec,
            )
            .unwrap();
            for tid in 0..128 {
                for i in 0..64 {
                    assert_eq!(
                        got[tid][i], want[tid][i],
                        "one_hot {one_hot} selector {selector} thread {tid} register {i}"
                    );
                }
            }
        }
    }
}

/// The tuned kernels' own CUDA source run on the CPU (SIMT emulation,
/// src/backend/cuda/simt.rs) with the launcher's grids, shared memory and split-K reduce:
/// every thread's cp.async chunks, ldmatrix fragments and mma.sp (the Rust ISA emulator),
/// tails in M, N and K, both tile configurations, split-K, bias and GELU, against the f64
/// reference; split-K bit-identical across thread interleavings.
#[test]
fn emulated_tuned_kernels_match_the_reference() {
    use asa_lth::backend::cuda::simt::{self, EmuConfig};
    let mut rng = Rng::new(91);
    let shapes = [(1, 16, 32), (5, 48, 416), (77, 160, 256), (130, 144, 96)];
    for (i, (m, n, k)) in shapes.into_iter().enumerate() {
        let dtype = if i % 2 == 0 { Half::Bf16 } else { Half::F16 };
        let p = Problem::new(&mut rng, dtype, m, n, k);
        let values: Vec<u32> = p
            .vals
            .chunks_exact(2)
            .map(|v| v[0] as u32 | (v[1] as u32) << 16)
            .collect();
        for config in CONFIGS {
            for splits in [1usize, 3] {
                let act = (splits == 3) ^ (config == TileConfig::Small);
                let plan = Gemm24Plan { config, splits };
                let mut runs = Vec::new();
                for eager in [false, true] {
                    simt::configure(EmuConfig {
                        eager_copies: eager,
                        seed: 1 + runs.len() as u64 + 10 * i as u64,
                    });
                    let mut y = vec![f32::NAN; m * n];
                    simt::gemm24(
                        dtype,
                        &mut y,
                        &p.x,
                        &values,
                        &p.meta,
                        n,
                        k,
                        Some(&p.bias),
                        act,
                        m,
                        plan,
                    )
                    .unwrap();
                    let got: Vec<f64> = y.iter().map(|&v| v as f64).collect();
                    let ctx = format!("emulated {plan:?} {dtype:?} gelu={act} m={m} n={n} k={k}");
                    assert!(got.iter().all(|v| v.is_finite()), "{ctx}: non-finite");
                    let err = common::rel_l2(&got, &p.reference(true, act));
                    assert!(err < 1e-4, "{ctx}: rel L2 {err} vs the f64 reference");
                    runs.push(y);
                }
                assert!(
                    runs[0] == runs[1],
                    "{plan:?} m={m}: bits differ between runs"
                );
            }
        }
    }
}
