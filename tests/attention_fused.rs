//! The fused masked attention kernels (kernels/attention.cu): their lane-layout helpers on the
//! PTX-ISA warp emulator, their tile classification and lists against src/mask/tiles.rs, their
//! launch geometry — all on the host — and, when a GPU is present, forward and backward against
//! a dense f64 reference (skipped with a printed reason otherwise).

mod common;

use asa_lth::backend::cpu::attention::TILE as CPU_TILE;
use asa_lth::backend::cuda::attention::{self as at, BwdMode, KernelKind, TileListsDev};
use asa_lth::backend::cuda::mma_dense_emu as emu;
use asa_lth::backend::{AttnShape, MaskRef};
use asa_lth::mask::{BitMask, TileClass, TileMap};
use asa_lth::rng::Rng;
use half::bf16;

fn bf(x: u16) -> f32 {
    bf16::from_bits(x).to_f32()
}

/// Random bf16 bits (values in ±[0.1, 1], never zero).
fn rand_bf16(rng: &mut Rng, n: usize) -> Vec<u16> {
    common::rand_vec_f32(rng, n)
        .into_iter()
        .map(|x| bf16::from_f32(x).to_bits())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Host: constants and fragment layouts.

#[test]
fn constants_match_the_cpu_twin_and_tile_classes() {
    let c = at::constants();
    assert_eq!(c[0] as usize, CPU_TILE, "device tile = CPU twin tile");
    assert_eq!(c[0] as usize, at::TILE);
    assert_eq!(c[2], at::THREADS);
    assert_eq!(c[1] * 32, c[2]);
    assert_eq!(
        [c[4], c[5], c[6]],
        [
            TileClass::Empty as u32,
            TileClass::Full as u32,
            TileClass::Partial as u32
        ]
    );
}

#[test]
fn helper_tables_match_the_isa() {
    for lane in 0..32u32 {
        for e in 0..8u32 {
            let (r, c) = at::a_pos(lane, e / 2, e % 2);
            assert_eq!(
                (r as usize, c as usize),
                emu::a_elem(lane as usize, e as usize),
                "A lane {lane} a{e}"
            );
        }
        for e in 0..4u32 {
            let (k, n) = at::b_pos(lane, e / 2, e % 2);
            assert_eq!(
                (k as usize, n as usize),
                emu::b_elem(lane as usize, e as usize),
                "B lane {lane} b{e}"
            );
            let (r, c) = at::c_pos(lane, e);
            assert_eq!(
                (r as usize, c as usize),
                emu::c_elem(lane as usize, e as usize),
                "C lane {lane} c{e}"
            );
        }
    }
}

/// Checks every accumulator of a warp, placed by the kernel's `c_pos`, against `want`.
fn assert_acc(d: &emu::Regs<f32, 4>, want: impl Fn(usize, usize) -> f64, what: &str) {
    for (lane, regs) in d.iter().enumerate() {
        for (i, &got) in regs.iter().enumerate() {
            let (r, c) = at::c_pos(lane as u32, i as u32);
            let w = want(r as usize, c as usize);
            assert!(
                (got as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what}: lane {lane} acc {i} (row {r}, col {c}): {got} vs {w}"
            );
        }
    }
}

/// S = Q·Kᵀ exactly as the forward kernel does it: Q and K row-major bf16 tiles with the
/// kernel's padded leading dimension, fragments from the kernel's loaders at the kernel's
/// offsets, two k-steps accumulated, on the emulator; vs a plain matmul.
#[test]
fn qk_fragments_on_the_emulator_match_a_matmul() {
    let mut rng = Rng::new(11);
    const D: usize = 64;
    const LD: usize = D + 8;
    let q = rand_bf16(&mut rng, 64 * LD);
    let k = rand_bf16(&mut rng, 64 * LD);
    // Warp 2 (rows 32..48), n-tile 3 (keys 24..32), k-steps 1 and 2 (dims 16..48).
    let (row0, key0) = (32, 24);
    let mut d = [[0.0f32; 4]; 32];
    for ks in 1..3 {
        let mut a = [[0u32; 4]; 32];
        let mut b = [[0u32; 2]; 32];
        for lane in 0..32 {
            a[lane] = at::frag_a(&q[row0 * LD + ks * 16..], LD, lane as u32).unwrap();
            b[lane] = at::frag_b_nk(&k[key0 * LD + ks * 16..], LD, lane as u32).unwrap();
        }
        d = emu::mma_m16n8k16(&a, &b, &d, bf);
    }
    assert_acc(
        &d,
        |r, c| {
            (16..48)
                .map(|x| bf(q[(row0 + r) * LD + x]) as f64 * bf(k[(key0 + c) * LD + x]) as f64)
                .sum()
        },
        "S = Q·Kᵀ",
    );
}

/// The kernels' fragment loads are ldmatrix at the `asa_attn_ldsm_*_off` addresses: on the
/// ldmatrix emulator (src/sparse/mma_emu.rs), over a byte image of padded shared tiles, they
/// must deliver exactly the registers of the scalar loaders — which the tests above hold to
/// the mma emulator — at every tile offset the kernels use, for both head dims and the dS tile.
#[test]
fn ldmatrix_addresses_deliver_the_scalar_fragments() {
    use asa_lth::sparse::mma_emu;
    let mut rng = Rng::new(17);
    for ld in [64 + 8, 128 + 8] {
        let tile = rand_bf16(&mut rng, 64 * ld);
        let img: Vec<u8> = tile.iter().flat_map(|x| x.to_le_bytes()).collect();
        for r0 in (0..64).step_by(8) {
            for c0 in (0..ld - 8).step_by(8) {
                let base = r0 * ld + c0;
                let addr = |f: at::LdsmFrag| -> [u32; 32] {
                    std::array::from_fn(|l| {
                        2 * (base as u32 + at::ldsm_offset(f, l as u32, ld as u32))
                    })
                };
                // A (16 × 16 from (r0, c0)) needs 16 rows and 16 columns.
                if r0 + 16 <= 64 && c0 + 16 <= ld - 8 {
                    let got = mma_emu::ldmatrix(&img, &addr(at::LdsmFrag::A), 4, false).unwrap();
                    for (lane, g) in got.iter().enumerate() {
                        let want = at::frag_a(&tile[base..], ld, lane as u32).unwrap();
                        assert_eq!(*g, want, "A ld={ld} ({r0}, {c0}) lane {lane}");
                    }
                    // B, k-major (V for P·V, K for dS·K): 16 k-rows × 8 n-columns.
                    let got = mma_emu::ldmatrix(&img, &addr(at::LdsmFrag::BKn), 2, true).unwrap();
                    for (lane, g) in got.iter().enumerate() {
                        let want = at::frag_b_kn(&tile[base..], ld, lane as u32).unwrap();
                        assert_eq!(g[..2], want, "B_kn ld={ld} ({r0}, {c0}) lane {lane}");
                    }
                }
                // B, n-major (K for Q·Kᵀ): 8 n-rows × 16 k-columns.
                if c0 + 16 <= ld - 8 {
                    let got = mma_emu::ldmatrix(&img, &addr(at::LdsmFrag::BNk), 2, false).unwrap();
                    for (lane, g) in got.iter().enumerate() {
                        let want = at::frag_b_nk(&tile[base..], ld, lane as u32).unwrap();
                        assert_eq!(g[..2], want, "B_nk ld={ld} ({r0}, {c0}) lane {lane}");
                    }
                }
            }
        }
    }
}

/// Rows of an ldmatrix phase (8 lanes) fall in 8 distinct 16-byte bank groups with the padded
/// leading dimensions, so the fragment loads are free of bank conflicts.
#[test]
fn ldmatrix_phases_are_conflict_free() {
    for ld in [64u32 + 8, 128 + 8] {
        for f in [at::LdsmFrag::A, at::LdsmFrag::BNk, at::LdsmFrag::BKn] {
            let phases = if f == at::LdsmFrag::A { 4 } else { 2 };
            for p in 0..phases {
                let mut groups: Vec<u32> = (8 * p..8 * p + 8)
                    .map(|l| (2 * at::ldsm_offset(f, l, ld) / 16) % 8)
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                assert_eq!(groups.len(), 8, "{f:?} ld={ld} phase {p}");
            }
        }
    }
}

/// The cp.async chunk map covers every element of a 64 × D tile exactly once, in 16-byte
/// aligned pieces inside the padded rows, with the same work for every thread.
#[test]
fn tile_copy_chunks_cover_the_tile_once() {
    for d in [64usize, 128] {
        let ld = d + 8;
        let chunks = 64 * d / 8;
        assert_eq!(chunks % at::THREADS as usize, 0);
        let mut seen = vec![0u8; 64 * ld];
        for c in 0..chunks as u32 {
            let (row, col) = at::chunk(d, c);
            assert!(
                row < 64 && (col as usize) + 8 <= d,
                "chunk {c}: ({row}, {col})"
            );
            let at = row as usize * ld + col as usize;
            assert_eq!((2 * at) % 16, 0, "chunk {c} misaligned");
            for x in &mut seen[at..at + 8] {
                *x += 1;
            }
        }
        for r in 0..64 {
            assert!(
                seen[r * ld..r * ld + d].iter().all(|&x| x == 1),
                "D={d} row {r}"
            );
            assert!(
                seen[r * ld + d..(r + 1) * ld].iter().all(|&x| x == 0),
                "padding"
            );
        }
    }
}

/// The accumulator → A-operand reuse (P·V) and the k-major B loader (V row-major), chained:
/// S (16 × 16, two n-tiles) → bf16 P fragments → O = P·V (+ C), vs a matmul of bf16(S)·V.
#[test]
fn accumulators_feed_the_next_mma() {
    let mut rng = Rng::new(12);
    const LD: usize = 24;
    let a_mat = rand_bf16(&mut rng, 16 * LD); // 16 × 16, row-major
    let b_mat = rand_bf16(&mut rng, 16 * LD); // 16 (n) × 16 (k), n-major
    let v_mat = rand_bf16(&mut rng, 16 * LD); // 16 (k) × 8.. (n), k-major
    let c0: Vec<f32> = common::rand_vec_f32(&mut rng, 128);
    let mut a = [[0u32; 4]; 32];
    let mut b0 = [[0u32; 2]; 32];
    let mut b1 = [[0u32; 2]; 32];
    let mut bv = [[0u32; 2]; 32];
    for lane in 0..32u32 {
        let l = lane as usize;
        a[l] = at::frag_a(&a_mat, LD, lane).unwrap();
        b0[l] = at::frag_b_nk(&b_mat, LD, lane).unwrap();
        b1[l] = at::frag_b_nk(&b_mat[8 * LD..], LD, lane).unwrap();
        bv[l] = at::frag_b_kn(&v_mat, LD, lane).unwrap();
    }
    let zero = [[0.0f32; 4]; 32];
    let s0 = emu::mma_m16n8k16(&a, &b0, &zero, bf);
    let s1 = emu::mma_m16n8k16(&a, &b1, &zero, bf);
    // The full S from the emulator's own table, rounded to bf16 independently (half crate).
    let mut s = [[0.0f32; 16]; 16];
    for lane in 0..32 {
        for i in 0..4 {
            let (r, c) = emu::c_elem(lane, i);
            s[r][c] = bf16::from_f32(s0[lane][i]).to_f32();
            s[r][c + 8] = bf16::from_f32(s1[lane][i]).to_f32();
        }
    }
    let mut pa = [[0u32; 4]; 32];
    for lane in 0..32 {
        pa[lane] = at::acc_to_frag_a(&s0[lane], &s1[lane]);
    }
    let mut c = [[0.0f32; 4]; 32];
    for lane in 0..32 {
        c[lane].copy_from_slice(&c0[lane * 4..lane * 4 + 4]);
    }
    let o = emu::mma_m16n8k16(&pa, &bv, &c, bf);
    let cd = emu::c_dense(&c);
    assert_acc(
        &o,
        |r, n| {
            cd[r][n] as f64
                + (0..16)
                    .map(|x| s[r][x] as f64 * bf(v_mat[x * LD + n]) as f64)
                    .sum::<f64>()
        },
        "O = P·V",
    );
}

#[test]
fn bf16_rounding_matches_the_half_crate() {
    let mut rng = Rng::new(13);
    let mut xs: Vec<f32> = (0..20000)
        .map(|_| f32::from_bits(rng.next_u64() as u32))
        .collect();
    xs.extend([
        0.0,
        -0.0,
        1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        1e-40,
        f32::from_bits(0x3f80_8000), // tie, even below
        f32::from_bits(0x3f81_8000), // tie, odd below
        f32::MAX,
    ]);
    for x in xs {
        let got = at::bf16_rn(x);
        let want = bf16::from_f32(x).to_bits();
        if x.is_nan() {
            assert!(bf16::from_bits(got).is_nan(), "{x:e}");
        } else {
            assert_eq!(got, want, "{x:e} ({:#010x})", x.to_bits());
        }
    }
}

#[test]
fn element_test_is_mask_and_causal() {
    let bits = 0b1011u64 | 1 << 63;
    assert!(at::allowed(bits, 64, 100, 64));
    assert!(at::allowed(bits, 64, 100, 65));
    assert!(!at::allowed(bits, 64, 100, 66));
    assert!(at::allowed(bits, 64, 127, 127));
    assert!(!at::allowed(bits, 64, 126, 127), "j > i is never allowed");
    // Full interior blocks skip the test; partial ones and the last, short k-tile do not.
    assert!(!at::needs_test(false, 0, 128));
    assert!(!at::needs_test(false, 1, 128));
    assert!(at::needs_test(true, 0, 128));
    assert!(at::needs_test(false, 1, 65));
    assert!(!at::needs_test(false, 0, 65));
}

// ---------------------------------------------------------------------------------------------
// Host: tile classification and lists vs src/mask/tiles.rs.

/// Mask kinds used by the tile and GPU tests.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Density(f64),
    /// ASA-like: a random tag per token and a random tag-compatibility matrix (rows attend to
    /// keys whose tag pair is compatible), plus the diagonal.
    AsaLike,
    /// Density 0.3 with every 7th row (and row 0) fully masked.
    HolesRows,
}

fn make_mask(rng: &mut Rng, kind: Kind, b: usize, heads: usize, t: usize) -> BitMask {
    let tags: Vec<usize> = (0..b * t).map(|_| rng.below(17)).collect();
    let compat: Vec<bool> = (0..heads * 17 * 17).map(|_| rng.bernoulli(0.35)).collect();
    let coins: Vec<bool> = (0..b * heads * t * t)
        .map(|_| match kind {
            Kind::Density(p) => rng.bernoulli(p),
            _ => rng.bernoulli(0.3),
        })
        .collect();
    BitMask::from_fn(b, heads, t, |bi, h, i, j| match kind {
        Kind::Density(_) => coins[((bi * heads + h) * t + i) * t + j],
        Kind::AsaLike => i == j || compat[(h * 17 + tags[bi * t + i]) * 17 + tags[bi * t + j]],
        Kind::HolesRows => i % 7 != 0 && coins[((bi * heads + h) * t + i) * t + j],
    })
}

const KINDS: [Kind; 6] = [
    Kind::Density(0.0),
    Kind::Density(0.05),
    Kind::Density(0.3),
    Kind::Density(1.0),
    Kind::AsaLike,
    Kind::HolesRows,
];

#[test]
fn host_build_of_the_tile_kernels_matches_tile_map() {
    let mut rng = Rng::new(21);
    for t in [
        1, 2, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 191, 200, 257,
    ] {
        for heads in [1, 3] {
            for kind in KINDS {
                let b = 2;
                let m = make_mask(&mut rng, kind, b, heads, t);
                let map = TileMap::from_words(m.words(), b, heads, t, CPU_TILE).unwrap();
                let want = TileListsDev::from_tile_map(&map).unwrap();
                let got = TileListsDev::from_helpers(Some(m.words()), b * heads, t).unwrap();
                assert!(
                    got.same_lists(&want),
                    "T={t} heads={heads} {kind:?}: helpers' tiles differ from TileMap"
                );
            }
        }
        let map = TileMap::causal(2, t, CPU_TILE).unwrap();
        let want = TileListsDev::from_tile_map(&map).unwrap();
        let got = TileListsDev::from_helpers(None, 2, t).unwrap();
        assert!(got.same_lists(&want), "T={t}: causal tiles differ");
    }
}

// ---------------------------------------------------------------------------------------------
// Host: launch geometry.

#[test]
fn plan_validates_shapes_and_sizes_launches() {
    let s = |b, t, h, d| AttnShape { b, t, h, d };
    let err = at::plan(&s(2, 100, 4, 32)).unwrap_err().to_string();
    assert!(
        err.contains("D = 32") && err.contains("64 and 128"),
        "{err}"
    );
    assert!(at::plan(&s(1, 10, 1, 96)).is_err());
    assert!(at::plan(&s(70000, 10, 1, 64)).is_err(), "B past grid z");
    assert!(at::plan(&s(1, 10, 70000, 64)).is_err(), "H past grid y");
    let p = at::plan(&s(3, 130, 5, 64)).unwrap();
    assert_eq!(p.nt, 3);
    assert_eq!(p.grid, (3, 5, 3));
    assert_eq!(p.di_grid, (3 * 5 * 130u32).div_ceil(4));
    assert_eq!(
        (p.fwd, p.dq, p.dkdv),
        ("attn_fwd_d64", "attn_bwd_dq_d64", "attn_bwd_dkdv_d64")
    );
    assert_eq!(p.n_act, 3 * 130 * 5 * 64);
    assert_eq!(p.n_rows, 3 * 130 * 5);
    let p = at::plan(&s(1, 64, 1, 128)).unwrap();
    assert_eq!(p.fwd, "attn_fwd_d128");
    // Shared memory: 64-row bf16 tiles with 8 elements of padding per row; the streamed operand
    // tiles double-buffered in the forward always and in the backward at D = 64.
    for d in [64usize, 128] {
        let tile = 64 * (d + 8) * 2;
        let st = |k| at::stages(k, d) as usize;
        assert_eq!(st(KernelKind::Fwd), 2);
        assert_eq!(st(KernelKind::BwdDq), if d == 64 { 2 } else { 1 });
        assert_eq!(st(KernelKind::BwdDkdv), if d == 64 { 2 } else { 1 });
        assert_eq!(at::smem_bytes(KernelKind::Fwd, d) as usize, 4 * tile);
        assert_eq!(
            at::smem_bytes(KernelKind::BwdDq, d) as usize,
            (2 + 2 * st(KernelKind::BwdDq)) * tile
        );
        assert_eq!(
            at::smem_bytes(KernelKind::BwdDkdv, d) as usize,
            (2 + 2 * st(KernelKind::BwdDkdv)) * tile + 64 * 72 * 2 + 64 * 2 * 4 + 2 * 64 * 4
        );
        // Two blocks of every kernel fit an A100's 164 KiB per SM (1 KiB reserved per block).
        for k in [KernelKind::Fwd, KernelKind::BwdDq, KernelKind::BwdDkdv] {
            let b = at::smem_bytes(k, d) as usize;
            assert!(2 * (b + 1024) <= 164 * 1024, "{k:?} D={d}: {b} B");
        }
    }
    let p = at::plan(&s(0, 0, 1, 64)).unwrap();
    assert_eq!(p.n_rows, 0);
}

// ---------------------------------------------------------------------------------------------
// GPU tests (skipped without a GPU; ASA_LTH_REQUIRE_GPU=1 makes that a failure).

#[test]
#[allow(clippy::needless_range_loop)] // lanes index several per-lane arrays at once
fn gpu_mma_probe_matches_the_emulator() {
    let Some(g) = common::gpu("gpu_mma_probe_matches_the_emulator") else {
        return;
    };
    let mut rng = Rng::new(31);
    // Distinct powers of two per element so a misplaced element cannot cancel out.
    let mut a = [[0u32; 4]; 32];
    let mut b = [[0u32; 2]; 32];
    let mut c = [[0.0f32; 4]; 32];
    let p2 = |e: usize, sign: bool| {
        let x = (2.0f32).powi((e % 13) as i32 - 6) * if sign { -1.0 } else { 1.0 };
        bf16::from_f32(x).to_bits() as u32
    };
    for lane in 0..32 {
        for j in 0..4 {
            a[lane][j] = p2(lane * 8 + 2 * j, rng.bernoulli(0.5))
                | p2(lane * 8 + 2 * j + 1, rng.bernoulli(0.5)) << 16;
            c[lane][j] = rng.uniform() as f32;
        }
        for j in 0..2 {
            b[lane][j] = p2(lane * 5 + 2 * j, rng.bernoulli(0.5))
                | p2(lane * 5 + 2 * j + 3, rng.bernoulli(0.5)) << 16;
        }
    }
    let got = at::run_mma_probe(&g.module, &g.stream, &a, &b, &c).unwrap();
    let want = emu::mma_m16n8k16(&a, &b, &c, bf);
    for lane in 0..32 {
        for i in 0..4 {
            let (x, y) = (got[lane][i] as f64, want[lane][i] as f64);
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "lane {lane} d{i}: GPU {x} vs emulator {y}"
            );
        }
    }
}

#[test]
fn gpu_tile_lists_match_tile_map() {
    let Some(g) = common::gpu("gpu_tile_lists_match_tile_map") else {
        return;
    };
    let mut rng = Rng::new(32);
    for t in [1, 33, 64, 65, 200, 257] {
        for per_head in [false, true] {
            for kind in KINDS {
                let (b, h) = (2, 3);
                let heads = if per_head { h } else { 1 };
                let m = make_mask(&mut rng, kind, b, heads, t);
                let bits = g.stream.clone_htod(m.words()).unwrap();
                let s = AttnShape { b, t, h, d: 64 };
                let tiles = at::build_tiles(
                    &g.module,
                    &g.stream,
                    MaskRef {
                        bits: &bits,
                        per_head,
                    },
                    s,
                )
                .unwrap();
                let got = tiles.download(&g.stream).unwrap();
                let map = TileMap::from_words(m.words(), b, heads, t, CPU_TILE).unwrap();
                let want = TileListsDev::from_tile_map(&map).unwrap();
                assert!(got.same_lists(&want), "T={t} per_head={per_head} {kind:?}");
            }
        }
    }
}

/// Dense f64 reference: `(out, lse, dq, dk, dv)`; fully masked rows: out 0, lse +∞, no grads.
#[allow(clippy::type_complexity)]
fn reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dout: &[f32],
    mask: Option<&BitMask>,
    s: AttnShape,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let AttnShape { b, t, h, d } = s;
    let c = h * d;
    let scale = 1.0 / (d as f64).sqrt();
    let n = b * t * c;
    let (mut out, mut lse) = (vec![0.0; n], vec![0.0; b * h * t]);
    let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let wpr = t.div_ceil(32);
    for bi in 0..b {
        for hi in 0..h {
            let hm = mask.map_or(0, |m| if m.per_head() { hi } else { 0 });
            let at = |x: &[f32], i: usize, e: usize| x[(bi * t + i) * c + hi * d + e] as f64;
            for i in 0..t {
                let ok = |j: usize| {
                    j <= i
                        && mask.is_none_or(|m| {
                            let heads = m.heads();
                            let w = m.words()[((bi * heads + hm) * t + i) * wpr + j / 32];
                            (w >> (j % 32)) & 1 == 1
                        })
                };
                let js: Vec<usize> = (0..t).filter(|&j| ok(j)).collect();
                let li = (bi * h + hi) * t + i;
                if js.is_empty() {
                    lse[li] = f64::INFINITY;
                    continue;
                }
                let sc: Vec<f64> = js
                    .iter()
                    .map(|&j| scale * (0..d).map(|e| at(q, i, e) * at(k, j, e)).sum::<f64>())
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let p: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                let l: f64 = p.iter().sum();
                lse[li] = m + l.ln();
                let p: Vec<f64> = p.iter().map(|x| x / l).collect();
                let orow: Vec<f64> = (0..d)
                    .map(|e| js.iter().zip(&p).map(|(&j, &pj)| pj * at(v, j, e)).sum())
                    .collect();
                let dp: Vec<f64> = js
                    .iter()
                    .map(|&j| (0..d).map(|e| at(dout, i, e) * at(v, j, e)).sum())
                    .collect();
                let di: f64 = (0..d).map(|e| at(dout, i, e) * orow[e]).sum();
                for (x, &j) in js.iter().enumerate() {
                    let ds = p[x] * (dp[x] - di) * scale;
                    for e in 0..d {
                        dq[(bi * t + i) * c + hi * d + e] += ds * at(k, j, e);
                        dk[(bi * t + j) * c + hi * d + e] += ds * at(q, i, e);
                        dv[(bi * t + j) * c + hi * d + e] += p[x] * at(dout, i, e);
                    }
                }
                out[(bi * t + i) * c + hi * d..][..d].copy_from_slice(&orow);
            }
        }
    }
    (out, lse, dq, dk, dv)
}

/// Relative L2 error of a gradient, the denominator floored at an RMS of 0.1. Gradients of
/// these inputs have RMS 0.1–1 wherever a row attends to more than one key; where the exact
/// gradient vanishes (dQ of a row with a single allowed key, e.g. T = 1: P = 1 and dP = Di),
/// what remains is the bf16 rounding of dP − Di (RMS ~1e-3), which a plain relative error
/// would divide by zero.
fn grad_err(got: &[f64], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = want.iter().map(|y| y * y).sum();
    if got.iter().any(|x| x.is_nan()) {
        return f64::INFINITY;
    }
    (num / den.max(0.01 * want.len() as f64)).sqrt()
}

/// Forward outputs against the f64 reference: finite, relative L2 ≤ 1e-2, lse within 2e-2,
/// and fully masked rows exactly out 0 and lse +∞.
fn check_forward(what: &str, out: &[f32], lse: &[f32], r_out: &[f64], r_lse: &[f64], s: AttnShape) {
    assert!(out.iter().all(|x| x.is_finite()), "{what}: non-finite out");
    let e = common::rel_l2(&f64s(out), r_out);
    assert!(e <= 1e-2, "{what}: out rel L2 {e}");
    for (i, (&x, &y)) in lse.iter().zip(r_lse).enumerate() {
        if y.is_infinite() {
            assert_eq!(x, f32::INFINITY, "{what}: lse[{i}] of a fully masked row");
            let (bi, rem) = (i / (s.h * s.t), i % (s.h * s.t));
            let (hi, ti) = (rem / s.t, rem % s.t);
            let row = &out[(bi * s.t + ti) * s.c() + hi * s.d..][..s.d];
            assert!(
                row.iter().all(|&o| o == 0.0),
                "{what}: out of masked row {i}"
            );
        } else {
            assert!(
                (x as f64 - y).abs() <= 2e-2 * (1.0 + y.abs()),
                "{what}: lse[{i}] {x} vs {y}"
            );
        }
    }
}

/// Accumulated gradients (`got` = `init` + gradient) against the f64 reference ([`grad_err`]
/// ≤ 1e-2 for each of dq, dk, dv).
fn check_grads(what: &str, got: [&[f32]; 3], want: [&[f64]; 3], init: &[f32]) {
    let n = got[0].len();
    for (name, ((g, w), base)) in ["dq", "dk", "dv"]
        .iter()
        .zip(got.iter().zip(want).zip(init.chunks_exact(n)))
    {
        assert!(g.iter().all(|x| x.is_finite()), "{what}: non-finite {name}");
        let delta: Vec<f64> = g
            .iter()
            .zip(base)
            .map(|(&a, &b)| a as f64 - b as f64)
            .collect();
        let e = grad_err(&delta, w);
        assert!(e <= 1e-2, "{what}: {name} rel L2 {e}");
    }
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&y| y as f64).collect()
}

/// One GPU case: forward, both backward modes (accumulating onto random gradients), checks.
fn gpu_case(g: &common::Gpu, rng: &mut Rng, s: AttnShape, kind: Option<Kind>, per_head: bool) {
    let what = format!("{s:?} {kind:?} per_head={per_head}");
    let n = s.b * s.t * s.c();
    let (q, k, v, dout) = (
        common::rand_vec_f32(rng, n),
        common::rand_vec_f32(rng, n),
        common::rand_vec_f32(rng, n),
        common::rand_vec_f32(rng, n),
    );
    let heads = if per_head { s.h } else { 1 };
    let mask = kind.map(|kd| make_mask(rng, kd, s.b, heads, s.t));
    let (r_out, r_lse, r_dq, r_dk, r_dv) = reference(&q, &k, &v, &dout, mask.as_ref(), s);

    let st = &g.stream;
    let up = |x: &[f32]| st.clone_htod(x).unwrap();
    let (dq_, dk_, dv_, dout_) = (up(&q), up(&k), up(&v), up(&dout));
    let mut out = st.alloc_zeros::<f32>(n).unwrap();
    let mut lse = st.alloc_zeros::<f32>(s.b * s.h * s.t).unwrap();
    let bits = mask.as_ref().map(|m| st.clone_htod(m.words()).unwrap());
    let tiles = bits
        .as_ref()
        .map(|bits| at::build_tiles(&g.module, st, MaskRef { bits, per_head }, s).unwrap());
    let am = bits
        .as_ref()
        .zip(tiles.as_ref())
        .map(|(bits, tiles)| at::AttnMask {
            bits,
            per_head,
            tiles,
        });
    at::attention_fwd(&g.module, st, &mut out, &mut lse, &dq_, &dk_, &dv_, am, s).unwrap();
    let g_out = st.clone_dtoh(&out).unwrap();
    let g_lse = st.clone_dtoh(&lse).unwrap();
    check_forward(&what, &g_out, &g_lse, &r_out, &r_lse, s);

    let init: Vec<f32> = common::rand_vec_f32(rng, 3 * n);
    let mut runs = Vec::new();
    for mode in [
        BwdMode::Deterministic,
        BwdMode::Deterministic,
        BwdMode::Atomic,
    ] {
        let mut gq = up(&init[..n]);
        let mut gk = up(&init[n..2 * n]);
        let mut gv = up(&init[2 * n..]);
        at::attention_bwd(
            &g.module, st, &mut gq, &mut gk, &mut gv, &dout_, &dq_, &dk_, &dv_, &out, &lse, am, s,
            mode,
        )
        .unwrap();
        let res: Vec<Vec<f32>> = [&gq, &gk, &gv]
            .iter()
            .map(|x| st.clone_dtoh(*x).unwrap())
            .collect();
        check_grads(
            &format!("{what} {mode:?}"),
            [&res[0], &res[1], &res[2]],
            [&r_dq, &r_dk, &r_dv],
            &init,
        );
        runs.push(res);
    }
    assert!(
        runs[0] == runs[1],
        "{what}: deterministic backward differs between two runs"
    );
}

#[test]
fn gpu_forward_and_backward_match_f64_reference() {
    let Some(g) = common::gpu("gpu_forward_and_backward_match_f64_reference") else {
        return;
    };
    let mut rng = Rng::new(33);
    for d in [64, 128] {
        for t in [1, 50, 64, 100, 129, 200] {
            let s = AttnShape { b: 2, t, h: 2, d };
            gpu_case(&g, &mut rng, s, None, false);
            for kind in KINDS {
                gpu_case(&g, &mut rng, s, Some(kind), false);
            }
            gpu_case(&g, &mut rng, s, Some(Kind::AsaLike), true);
        }
    }
}

#[test]
fn gpu_launchers_reject_bad_shapes() {
    let Some(g) = common::gpu("gpu_launchers_reject_bad_shapes") else {
        return;
    };
    let s = AttnShape {
        b: 1,
        t: 8,
        h: 1,
        d: 32,
    };
    let st = &g.stream;
    let x = st.alloc_zeros::<f32>(8 * 32).unwrap();
    let mut o = st.alloc_zeros::<f32>(8 * 32).unwrap();
    let mut l = st.alloc_zeros::<f32>(8).unwrap();
    let err = at::attention_fwd(&g.module, st, &mut o, &mut l, &x, &x, &x, None, s).unwrap_err();
    assert!(err.to_string().contains("D = 32"), "{err}");
    let s = AttnShape {
        b: 1,
        t: 8,
        h: 1,
        d: 64,
    };
    let err = at::attention_fwd(&g.module, st, &mut o, &mut l, &x, &x, &x, None, s).unwrap_err();
    assert!(err.to_string().contains("`out`"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The kernels' own CUDA source run on the CPU (SIMT emulation, src/backend/cuda/simt.rs): every
// thread, barrier, cp.async group, ldmatrix and mma of the real kernel bodies, no GPU needed.

use asa_lth::backend::cuda::simt::{self, EmuConfig, EmuMask};

/// Forward, the deterministic backward twice (different thread interleavings and cp.async
/// timing: the bits must not change) and the atomic backward, all against the f64 reference.
fn emu_case(rng: &mut Rng, s: AttnShape, kind: Option<Kind>, per_head: bool) {
    let what = format!("emulated {s:?} {kind:?} per_head={per_head}");
    let n = s.b * s.t * s.c();
    let (q, k, v, dout) = (
        common::rand_vec_f32(rng, n),
        common::rand_vec_f32(rng, n),
        common::rand_vec_f32(rng, n),
        common::rand_vec_f32(rng, n),
    );
    let heads = if per_head { s.h } else { 1 };
    let mask = kind.map(|kd| make_mask(rng, kd, s.b, heads, s.t));
    let (r_out, r_lse, r_dq, r_dk, r_dv) = reference(&q, &k, &v, &dout, mask.as_ref(), s);
    let em = mask.as_ref().map(|m| EmuMask {
        words: m.words(),
        per_head,
    });
    let seed = rng.below(1 << 30) as u64 + 1;
    simt::configure(EmuConfig {
        eager_copies: false,
        seed,
    });
    let (mut out, mut lse) = (vec![f32::NAN; n], vec![f32::NAN; s.b * s.h * s.t]);
    simt::attention_fwd(&mut out, &mut lse, &q, &k, &v, em, s).unwrap();
    // Copies landing at issue instead, another interleaving: the same bits.
    simt::configure(EmuConfig {
        eager_copies: true,
        seed: seed + 7,
    });
    let (mut out2, mut lse2) = (vec![f32::NAN; n], vec![f32::NAN; s.b * s.h * s.t]);
    simt::attention_fwd(&mut out2, &mut lse2, &q, &k, &v, em, s).unwrap();
    assert!(
        out == out2
            && lse
                .iter()
                .zip(&lse2)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{what}: forward differs between two interleavings"
    );
    check_forward(&what, &out, &lse, &r_out, &r_lse, s);
    let init: Vec<f32> = common::rand_vec_f32(rng, 3 * n);
    let mut runs = Vec::new();
    for (mode, eager) in [
        (BwdMode::Deterministic, false),
        (BwdMode::Deterministic, true),
        (BwdMode::Atomic, false),
    ] {
        simt::configure(EmuConfig {
            eager_copies: eager,
            seed: seed + runs.len() as u64 + 1,
        });
        let (mut gq, mut gk, mut gv) = (
            init[..n].to_vec(),
            init[n..2 * n].to_vec(),
            init[2 * n..].to_vec(),
        );
        simt::attention_bwd(
            &mut gq, &mut gk, &mut gv, &dout, &q, &k, &v, &out, &lse, em, s, mode,
        )
        .unwrap();
        check_grads(
            &format!("{what} {mode:?}"),
            [&gq, &gk, &gv],
            [&r_dq, &r_dk, &r_dv],
            &init,
        );
        runs.push([gq, gk, gv]);
    }
    assert!(
        runs[0] == runs[1],
        "{what}: deterministic backward differs between two interleavings"
    );
}

#[test]
fn emulated_kernels_match_f64_reference_d64() {
    let mut rng = Rng::new(61);
    let s = |t| AttnShape {
        b: 1,
        t,
        h: 2,
        d: 64,
    };
    emu_case(&mut rng, s(1), None, false);
    emu_case(&mut rng, s(130), None, false);
    emu_case(&mut rng, s(65), Some(Kind::Density(0.3)), false);
    emu_case(&mut rng, s(129), Some(Kind::Density(0.05)), true);
    emu_case(&mut rng, s(100), Some(Kind::Density(0.0)), false);
    emu_case(&mut rng, s(150), Some(Kind::HolesRows), false);
    emu_case(
        &mut rng,
        AttnShape {
            b: 2,
            t: 70,
            h: 1,
            d: 64,
        },
        Some(Kind::AsaLike),
        true,
    );
}

#[test]
fn emulated_kernels_match_f64_reference_d128() {
    let mut rng = Rng::new(62);
    let s = |t| AttnShape {
        b: 1,
        t,
        h: 1,
        d: 128,
    };
    emu_case(&mut rng, s(64), None, false);
    emu_case(&mut rng, s(129), Some(Kind::Density(1.0)), false);
    emu_case(&mut rng, s(100), Some(Kind::AsaLike), false);
}

/// The emulated preprocessing kernels give TileMap's classes and lists.
#[test]
fn emulated_tile_kernels_match_tile_map() {
    let mut rng = Rng::new(63);
    for t in [1, 64, 65, 200] {
        for (kind, per_head) in [
            (Kind::Density(0.0), false),
            (Kind::Density(0.05), true),
            (Kind::AsaLike, false),
            (Kind::Density(1.0), false),
        ] {
            let (b, h) = (2, 3);
            let heads = if per_head { h } else { 1 };
            let m = make_mask(&mut rng, kind, b, heads, t);
            let got = simt::tile_lists(m.words(), b * heads, t).unwrap();
            let map = TileMap::from_words(m.words(), b, heads, t, CPU_TILE).unwrap();
            let want = TileListsDev::from_tile_map(&map).unwrap();
            assert!(got.same_lists(&want), "T={t} {kind:?} per_head={per_head}");
        }
    }
}

/// The C++ emulation's mma (used by every emulated kernel) against the Rust warp emulator:
/// two encodings of the ISA's fragment tables, through the kernels' own probe kernel.
#[test]
fn emulated_mma_probe_matches_the_rust_emulator() {
    let mut rng = Rng::new(64);
    let mut a = [[0u32; 4]; 32];
    let mut b = [[0u32; 2]; 32];
    let mut c = [[0.0f32; 4]; 32];
    let r = |rng: &mut Rng| bf16::from_f32(rng.uniform() as f32 * 2.0 - 1.0).to_bits() as u32;
    for lane in 0..32 {
        for j in 0..4 {
            a[lane][j] = r(&mut rng) | r(&mut rng) << 16;
            c[lane][j] = rng.uniform() as f32;
        }
        for x in b[lane].iter_mut() {
            *x = r(&mut rng) | r(&mut rng) << 16;
        }
    }
    let got = simt::mma_probe(&a, &b, &c).unwrap();
    let want = emu::mma_m16n8k16(&a, &b, &c, bf);
    for (lane, (g, w)) in got.iter().zip(&want).enumerate() {
        for i in 0..4 {
            let (x, y) = (g[i] as f64, w[i] as f64);
            assert!(
                (x - y).abs() <= 1e-6 * (1.0 + y.abs()),
                "lane {lane} d{i}: {x} vs {y}"
            );
        }
    }
}

/// The emulation reports a barrier that not every thread reaches, naming the kernel, instead
/// of hanging.
#[test]
fn emulation_reports_a_divergent_barrier() {
    let err = simt::selftest_divergent_barrier().unwrap_err().to_string();
    assert!(
        err.contains("deadlock") && err.contains("__syncthreads"),
        "{err}"
    );
}
