//! Benchmark cases of the 2:4 GEMM (issue 8, kernel family `gemm24`): `Y = X·Wᵀ` with W
//! (N×K) 2:4-sparse along K, against the dense GEMM on the same (decompressed) weight, at the
//! LLM shapes (K, N) = (4096, 4096), (4096, 11008), (11008, 4096), M swept.
//!
//! **Work** is counted as the dense GEMM's `2·M·N·K` FLOPs for every variant, so throughputs
//! compare directly as speed-ups (a 2:4 kernel at twice the dense FLOP/s is 2× faster).
//!
//! **Names**: `gemm24/{variant}/m{M}_n{N}_k{K}`.
//! - CPU (`device = cpu`): `sparse_f32` the CPU twin ([`crate::sparse::gemm24()`]), `dense_f32`
//!   the dense CPU GEMM ([`matmul::matmul_fwd`]) on the decompressed weight. M in 1, 16, 64,
//!   512 (`asa-lth bench gemm24`: [`Gemm24Sweep::cpu`]); `cargo bench` (criterion) runs the
//!   [`Gemm24Sweep::cpu_quick`] subset — M 16 and 512 at 4096×4096 and M 16 at the two 11008
//!   shapes, about half a minute on 2 cores — unless `ASA_LTH_BENCH_GEMM24=full`
//!   (`=quick` gives the subset to `asa-lth bench` too). `ASA_LTH_BENCH_GEMM24_MAX_M` caps M in
//!   every sweep (M = 512 at K = 11008 is ~0.3 s a call on 2 cores).
//! - GPU (`device = cuda:0`, when [`CudaOps::new(0)`](CudaOps::new) succeeds), bf16 operands,
//!   f32 accumulation, M in 16, 64, 256, 1024, 4096, 16384 ([`Gemm24Sweep::gpu`], same cap),
//!   timed with CUDA events on the backend's stream: `sparse_bf16` our tuned `mma.sp` kernels
//!   with the plan `CudaOps` uses (`Gemm24Plan::choose`: tile configuration, split-K; launched
//!   only in `launch_sparse` below), f32 output; `wgmma_bf16` the experimental Hopper
//!   `wgmma.sp` kernel, on compute capability 9.0 only; `dense_bf16` cuBLASLt on
//!   the decompressed bf16 weight (bf16 A/B, f32 compute and output: the backend's matmul
//!   configuration, src/backend/cuda/blas.rs), through its own cuBLASLt handle so no f32→bf16
//!   cast is timed; `cusparselt_bf16` NVIDIA cuSPARSELt when its library loads at run time
//!   (src/backend/cuda/cusparselt.rs; otherwise one line says why those cases are skipped),
//!   with the algorithm chosen by `cusparseLtMatmulSearch` once per shape (set
//!   `ASA_LTH_CUSPARSELT_SEARCH=0` for the default algorithm) and f32 output when cuSPARSELt
//!   offers it for bf16 operands, else bf16 (the summary says which).
//!
//! **Summary** ([`summary`]): per 2:4 case, its FLOP/s, % of the card's sparse bf16 peak (from
//! [`sparse_peak_flops`]; the column is left out when the card is not in the table), the
//! speed-up over the dense GEMM and over cuSPARSELt, cuSPARSELt's own speed-up over dense, and
//! the DESIGN.md §7 target where one applies ([`target_speedup`]).
//!
//! The PyTorch peer (benches/peers/torch_gemm24.py) writes the same names, so
//! `asa-lth bench gemm24 --baseline <peer report>` compares case by case.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{sys, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::attention_cases::DeviceCase;
use super::cases::{BenchCase, Unit};
use super::report::Figure;
use crate::backend::cpu::matmul;
use crate::backend::cuda::blas::{self, BlasLt, GemmKind, Operand};
use crate::backend::cuda::cusparselt::{
    CuSparseLt, LtHandle, LtMatmul, LtOut, LtOutBuf, LtSparseWeight,
};
use crate::backend::cuda::drv;
use crate::backend::cuda::gemm24::{
    launch_gemm24, launch_gemm24_wgmma, DeviceSparse24, Gemm24Plan, Half,
};
use crate::backend::cuda::kernels::KernelModule;
use crate::backend::cuda::ops::CudaOps;
use crate::backend::{MatmulShape, Ops};
use crate::rng::Rng;
use crate::sparse::{gemm24, Sparse24};
use crate::{Error, Result};

/// `(K, N)` of the sweep: an attention projection, the FFN up- and down-projection of a
/// 7B-class model.
pub const SHAPES: &[(usize, usize)] = &[(4096, 4096), (4096, 11008), (11008, 4096)];
/// Rows of X on the CPU.
pub const CPU_ROWS: &[usize] = &[1, 16, 64, 512];
/// Rows of X on the GPU.
pub const GPU_ROWS: &[usize] = &[16, 64, 256, 1024, 4096, 16384];

/// One GEMM shape: `Y (M×N) = X (M×K) · Wᵀ`, W N×K.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl GemmShape {
    /// `m16_n4096_k4096`.
    pub fn label(&self) -> String {
        format!("m{}_n{}_k{}", self.m, self.n, self.k)
    }
    /// The dense GEMM's FLOPs, `2·M·N·K` (counted for every variant).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// `gemm24/{variant}/m{M}_n{N}_k{K}`.
pub fn case_name(variant: &str, s: GemmShape) -> String {
    format!("gemm24/{variant}/{}", s.label())
}

/// The `(variant, shape)` of a [`case_name`], if `name` is one.
pub fn parse_name(name: &str) -> Option<(&str, GemmShape)> {
    let mut it = name.splitn(3, '/');
    if it.next()? != "gemm24" {
        return None;
    }
    let variant = it.next()?;
    let mut dims = it.next()?.split('_');
    let mut dim = |p: char| -> Option<usize> { dims.next()?.strip_prefix(p)?.parse().ok() };
    let s = GemmShape {
        m: dim('m')?,
        n: dim('n')?,
        k: dim('k')?,
    };
    dims.next().is_none().then_some((variant, s))
}

/// Which shapes to build, in order (grouped by weight, so one weight is alive at a time).
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm24Sweep {
    pub shapes: Vec<GemmShape>,
}

fn max_m_from_env() -> usize {
    std::env::var("ASA_LTH_BENCH_GEMM24_MAX_M")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

impl Gemm24Sweep {
    fn product(rows: &[usize]) -> Self {
        let cap = max_m_from_env();
        let shapes = SHAPES
            .iter()
            .flat_map(|&(k, n)| rows.iter().map(move |&m| GemmShape { m, n, k }))
            .filter(|s| s.m <= cap)
            .collect();
        Gemm24Sweep { shapes }
    }

    /// The CPU sweep of `asa-lth bench gemm24`: [`CPU_ROWS`] × [`SHAPES`] (M ≤
    /// `ASA_LTH_BENCH_GEMM24_MAX_M`).
    pub fn cpu() -> Self {
        Self::product(CPU_ROWS)
    }

    /// The criterion subset: M 16 and 512 at 4096×4096, M 16 at the two 11008 shapes (same cap).
    pub fn cpu_quick() -> Self {
        let cap = max_m_from_env();
        let shapes = [
            (16, 4096, 4096),
            (512, 4096, 4096),
            (16, 4096, 11008),
            (16, 11008, 4096),
        ]
        .into_iter()
        .map(|(m, k, n)| GemmShape { m, n, k })
        .filter(|s| s.m <= cap)
        .collect();
        Gemm24Sweep { shapes }
    }

    /// The GPU sweep: [`GPU_ROWS`] × [`SHAPES`] (same cap).
    pub fn gpu() -> Self {
        Self::product(GPU_ROWS)
    }

    /// [`cpu`](Self::cpu) when `ASA_LTH_BENCH_GEMM24=full`, [`cpu_quick`](Self::cpu_quick)
    /// when it is `quick`, otherwise `default`.
    pub fn cpu_from_env(default: Gemm24Sweep) -> Self {
        match std::env::var("ASA_LTH_BENCH_GEMM24").as_deref() {
            Ok("full") => Self::cpu(),
            Ok("quick") => Self::cpu_quick(),
            _ => default,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU cases.

/// A 2:4 weight and its decompressed dense copy (f32), built on first use.
struct CpuWeight {
    sparse: Sparse24<f32>,
    dense: Vec<f32>,
}

fn cpu_weight(k: usize, n: usize) -> CpuWeight {
    let w = Rng::new(24 ^ ((k as u64) << 20) ^ n as u64).normal_vec(n * k, 0.02);
    let sparse = Sparse24::compress("w", &w, n, k).expect("the sweep's K is a multiple of 16");
    let dense = sparse.decompress();
    CpuWeight { sparse, dense }
}

type Lazy<T> = Arc<OnceLock<T>>;

/// The CPU cases of `sweep` (twin and dense per shape), if `want("gemm24")`. Weights and
/// inputs are made on a case's first call and shared by the cases of the same shape, so
/// building the list is cheap and a weight is freed with the last case using it.
pub fn cpu_cases(want: &dyn Fn(&str) -> bool, sweep: &Gemm24Sweep) -> Vec<BenchCase> {
    if !want("gemm24") {
        return vec![];
    }
    let mut weights: BTreeMap<(usize, usize), Lazy<CpuWeight>> = BTreeMap::new();
    let mut cases = Vec::new();
    for &s in &sweep.shapes {
        let GemmShape { m, n, k } = s;
        let w = weights.entry((k, n)).or_default().clone();
        let x: Lazy<Vec<f32>> = Lazy::default();
        let seed = (m * 31 + k) as u64;
        let (ws, xs) = (w.clone(), x.clone());
        let mut y = Vec::new();
        cases.push(BenchCase {
            kernel: "gemm24",
            name: case_name("sparse_f32", s),
            device: "cpu".into(),
            unit: Unit::Flops,
            work: s.flops(),
            run: Box::new(move || {
                let w = ws.get_or_init(|| cpu_weight(k, n));
                let x = xs.get_or_init(|| Rng::new(seed).normal_vec(m * k, 1.0));
                y.resize(m * n, 0.0);
                gemm24(&mut y, x, &w.sparse, None, m).expect("fixed shapes")
            }),
        });
        let mut y = Vec::new();
        let shape = MatmulShape { n: m, k, oc: n };
        cases.push(BenchCase {
            kernel: "gemm24",
            name: case_name("dense_f32", s),
            device: "cpu".into(),
            unit: Unit::Flops,
            work: s.flops(),
            run: Box::new(move || {
                let w = w.get_or_init(|| cpu_weight(k, n));
                let x = x.get_or_init(|| Rng::new(seed).normal_vec(m * k, 1.0));
                y.resize(m * n, 0.0);
                matmul::matmul_fwd(&mut y, x, &w.dense, None, None, shape).expect("fixed shapes")
            }),
        });
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// GPU cases.

/// The 2:4 kernel the `sparse_bf16` cases time: the tuned kernels with the plan `CudaOps`
/// uses (`Gemm24Plan::choose`); a split-K workspace is made on the first (warm-up) call and
/// kept in the case's state.
fn launch_sparse(
    module: &KernelModule,
    stream: &Arc<CudaStream>,
    y: &mut CudaSlice<f32>,
    x: &CudaSlice<u16>,
    w: &DeviceSparse24,
    m: usize,
    ws: &mut Option<CudaSlice<f32>>,
) -> Result<()> {
    let sms = module
        .context()
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(|e| drv("query multiprocessor count", e))?;
    let plan = Gemm24Plan::choose(m, w.n, w.k, sms.max(1) as usize);
    let need = plan.workspace_len(m, w.n);
    if need > ws.as_ref().map_or(0, |b| b.len()) {
        *ws = Some(
            stream
                .alloc_zeros::<f32>(need)
                .map_err(|e| drv("split-K workspace", e))?,
        );
    }
    launch_gemm24(
        module,
        stream,
        Half::Bf16,
        y,
        x,
        w,
        None,
        false,
        m,
        plan,
        ws.as_mut(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Sparse,
    Dense,
    CuSparseLt,
    /// The experimental Hopper wgmma.sp kernel (compute capability 9.0 only).
    Wgmma,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Sparse => "sparse_bf16",
            Variant::Dense => "dense_bf16",
            Variant::CuSparseLt => "cusparselt_bf16",
            Variant::Wgmma => "wgmma_bf16",
        }
    }
}

/// One weight on the device: ours (compressed, reordered metadata), the decompressed bf16
/// copy (cuBLASLt's operand, and cuSPARSELt's input to its own compression), and cuSPARSELt's
/// compressed form once a cuSPARSELt case needs it (an error is kept, not retried).
struct GpuWeight {
    sparse: DeviceSparse24,
    dense: CudaSlice<u16>,
    lt: Option<std::result::Result<Arc<LtSparseWeight>, String>>,
}

/// X, Y, our kernel's workspace (if its launcher needs one) and the cuSPARSELt plan and
/// output of one `(shape, M)`.
struct GpuRows {
    x: CudaSlice<u16>,
    y: CudaSlice<f32>,
    ws: Option<CudaSlice<f32>>,
    lt: Option<(LtMatmul, LtOutBuf)>,
}

type Shared<T> = Rc<RefCell<Option<T>>>;

/// bf16 bits of `len` N(0, 1) values: a block of 65521 seeded values repeated (the values do
/// not change the timing; generating hundreds of MB one by one would).
fn bf16_bits(len: usize, seed: u64) -> Vec<u16> {
    let block: Vec<u16> = Rng::new(seed)
        .normal_vec(65521.min(len.max(1)), 1.0)
        .into_iter()
        .map(|v| half::bf16::from_f32(v).to_bits())
        .collect();
    block.iter().copied().cycle().take(len).collect()
}

fn gpu_weight(stream: &Arc<CudaStream>, k: usize, n: usize) -> Result<GpuWeight> {
    let w = Rng::new(24 ^ ((k as u64) << 20) ^ n as u64).normal_vec(n * k, 0.02);
    let c = Sparse24::<f32>::compress("w", &w, n, k)?;
    drop(w);
    let vals: Vec<half::bf16> = c
        .values()
        .iter()
        .map(|&v| half::bf16::from_f32(v))
        .collect();
    let c16 = Sparse24::from_parts(n, k, vals, c.meta().to_vec())?;
    let sparse = DeviceSparse24::upload(stream, &c16)?;
    let bits: Vec<u16> = c16.decompress().iter().map(|v| v.to_bits()).collect();
    let dense = stream
        .clone_htod(&bits)
        .map_err(|e| drv("upload the dense bf16 weight", e))?;
    Ok(GpuWeight {
        sparse,
        dense,
        lt: None,
    })
}

fn gpu_rows(stream: &Arc<CudaStream>, s: GemmShape) -> Result<GpuRows> {
    let x = stream
        .clone_htod(&bf16_bits(s.m * s.k, (s.m * 7 + s.k) as u64))
        .map_err(|e| drv("upload X", e))?;
    let y = stream
        .alloc_zeros::<f32>(s.m * s.n)
        .map_err(|e| drv("allocate Y", e))?;
    Ok(GpuRows {
        x,
        y,
        ws: None,
        lt: None,
    })
}

/// `calls` calls of `f` timed by `ops`'s CUDA events; device seconds.
fn timed(ops: &CudaOps, calls: u64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let timer = ops.start_timer()?;
    for _ in 0..calls {
        f()?;
    }
    timer.stop()
}

/// What the cases of one run share.
struct Gpu {
    ops: CudaOps,
    blas: Option<BlasLt>,
    lt: Option<Arc<LtHandle>>,
    search: bool,
}

/// One call batch of `variant` at `s` (see [`gpu_cases`]).
fn run_variant(
    g: &Gpu,
    variant: Variant,
    s: GemmShape,
    weight: &Shared<GpuWeight>,
    rows: &Shared<GpuRows>,
    calls: u64,
) -> Result<f64> {
    let st = g.ops.stream();
    let mut wg = weight.borrow_mut();
    if wg.is_none() {
        *wg = Some(gpu_weight(st, s.k, s.n)?);
    }
    let w = wg.as_mut().expect("initialised above");
    let mut rg = rows.borrow_mut();
    if rg.is_none() {
        *rg = Some(gpu_rows(st, s)?);
    }
    let GpuRows { x, y, ws, lt } = rg.as_mut().expect("initialised above");
    match variant {
        Variant::Sparse => timed(&g.ops, calls, || {
            launch_sparse(g.ops.module(), st, y, x, &w.sparse, s.m, ws)
        }),
        Variant::Wgmma => timed(&g.ops, calls, || {
            launch_gemm24_wgmma(g.ops.module(), st, y, x, &w.sparse, None, false, s.m)
        }),
        Variant::Dense => {
            let blas = g
                .blas
                .as_ref()
                .ok_or_else(|| Error::Device("no cuBLASLt handle".into()))?;
            let plan = blas::plan(
                GemmKind::Forward,
                MatmulShape {
                    n: s.m,
                    k: s.k,
                    oc: s.n,
                },
            );
            // Event tracking is off in the backend's context: the guards record nothing, and
            // every buffer outlives the calls.
            let wp = w.dense.device_ptr(st).0;
            let xp = x.device_ptr(st).0;
            let yp = y.device_ptr_mut(st).0;
            let pick = |o: Operand| match o {
                Operand::Weight => Ok(wp),
                Operand::Input => Ok(xp),
                Operand::OutGrad => Err(Error::Device("forward plan reads dY".into())),
            };
            let (a, b) = (pick(plan.a)?, pick(plan.b)?);
            timed(&g.ops, calls, || {
                // SAFETY: `blas::plan(Forward, (M, K, N))` maps Y = X·Wᵀ onto A = W (N·K
                // bf16), B = X (M·K bf16), D = Y (M·N f32), exactly these buffers' lengths;
                // all live on the backend's context, ordered on its stream; Y overlaps neither.
                if unsafe { blas.matmul(&plan, a, b, yp, 0.0) }? {
                    Ok(())
                } else {
                    Err(Error::Device(format!(
                        "cuBLASLt has no bf16 algorithm for {}",
                        s.label()
                    )))
                }
            })
        }
        Variant::CuSparseLt => {
            let handle =
                g.lt.as_ref()
                    .ok_or_else(|| Error::Device("no cuSPARSELt handle".into()))?;
            if w.lt.is_none() {
                w.lt = Some(
                    LtSparseWeight::compress_bf16(handle, st, &w.dense, s.n, s.k)
                        .map(Arc::new)
                        .map_err(|e| e.to_string()),
                );
            }
            let lw = match w.lt.as_ref().expect("set above") {
                Ok(lw) => lw.clone(),
                Err(e) => return Err(Error::Device(e.clone())),
            };
            if lt.is_none() {
                let mut mm = LtMatmul::new(&lw, st, s.m, &[LtOut::F32, LtOut::Bf16])?;
                let mut out = LtOutBuf::zeros(st, mm.out(), s.m * s.n)?;
                if g.search {
                    mm.search(st, x, &mut out)?;
                }
                register_note(format!(
                    "cuSPARSELt cases write {} output{}",
                    mm.out().label(),
                    if g.search {
                        " (algorithm from cusparseLtMatmulSearch)"
                    } else {
                        " (default algorithm)"
                    }
                ));
                *lt = Some((mm, out));
            }
            let (mm, out) = lt.as_mut().expect("set above");
            timed(&g.ops, calls, || mm.run(st, x, out))
        }
    }
}

/// The GPU cases and the lines to print about what was skipped or how it ran.
pub struct GpuCases {
    pub cases: Vec<DeviceCase>,
    pub notes: Vec<String>,
}

/// The GPU cases of `sweep` on `cuda:0` (if `want("gemm24")`), or why there are none. Each
/// `(shape, M)` has a `sparse_bf16` case, a `dense_bf16` case when libcublasLt is present, and
/// a `cusparselt_bf16` case when cuSPARSELt loads; a missing library is a note, not an error.
/// Device buffers are made on a case's first call and freed with the last case using them.
pub fn gpu_cases(
    want: &dyn Fn(&str) -> bool,
    sweep: &Gemm24Sweep,
) -> std::result::Result<GpuCases, String> {
    if !want("gemm24") {
        return Ok(GpuCases {
            cases: vec![],
            notes: vec![],
        });
    }
    let ops = CudaOps::new(0).map_err(|e| e.to_string())?;
    let device = "cuda:0";
    register_device(device, ops.device_name());
    let mut notes = Vec::new();
    let blas = if BlasLt::library_present() {
        match BlasLt::new(ops.stream(), ops.ledger(), ops.compute_capability().0) {
            Ok(b) => Some(b),
            Err(e) => {
                notes.push(format!(
                    "GPU gemm24 dense_bf16 (cuBLASLt) cases skipped: {e}"
                ));
                None
            }
        }
    } else {
        notes.push("GPU gemm24 dense_bf16 cases skipped: libcublasLt not found".into());
        None
    };
    let lt = match CuSparseLt::load().and_then(|lt| {
        let v = lt.version();
        let h = LtHandle::new(&lt, ops.stream())?;
        notes.push(format!(
            "cuSPARSELt {}.{}.{} from {}",
            v.0,
            v.1,
            v.2,
            lt.path().display()
        ));
        Ok(h)
    }) {
        Ok(h) => Some(h),
        Err(e) => {
            notes.push(format!("GPU gemm24 cusparselt_bf16 cases skipped: {e}"));
            None
        }
    };
    let search = std::env::var("ASA_LTH_CUSPARSELT_SEARCH").as_deref() != Ok("0");
    let mut variants = vec![Variant::Sparse];
    if is_hopper(&ops) {
        variants.push(Variant::Wgmma);
    } else {
        notes.push(
            "GPU gemm24 wgmma_bf16 cases skipped: wgmma.sp needs compute capability 9.0".into(),
        );
    }
    if blas.is_some() {
        variants.push(Variant::Dense);
    }
    if lt.is_some() {
        variants.push(Variant::CuSparseLt);
    }
    let g = Rc::new(Gpu {
        ops,
        blas,
        lt,
        search,
    });
    let mut weights: BTreeMap<(usize, usize), Shared<GpuWeight>> = BTreeMap::new();
    let mut cases = Vec::new();
    for &s in &sweep.shapes {
        let weight = weights.entry((s.k, s.n)).or_default().clone();
        let rows: Shared<GpuRows> = Shared::default();
        for &variant in &variants {
            let (g, weight, rows) = (g.clone(), weight.clone(), rows.clone());
            cases.push(DeviceCase {
                kernel: "gemm24",
                name: case_name(variant.label(), s),
                device: device.to_string(),
                unit: Unit::Flops,
                work: s.flops(),
                run: Box::new(move |calls| run_variant(&g, variant, s, &weight, &rows, calls)),
            });
        }
    }
    Ok(GpuCases { cases, notes })
}

/// Whether the backend's device runs the sm_90a kernels (compute capability 9.0).
fn is_hopper(ops: &CudaOps) -> bool {
    ops.compute_capability() == (9, 0)
}

// ---------------------------------------------------------------------------------------------
// Device names, peaks, targets and the summary.

fn devices() -> &'static Mutex<BTreeMap<String, String>> {
    static D: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    D.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn notes() -> &'static Mutex<BTreeSet<String>> {
    static N: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    N.get_or_init(|| Mutex::new(BTreeSet::new()))
}

/// Record the driver's name of the card behind a device label (`cuda:0`), for the summary's
/// peak and target columns. [`gpu_cases`] does this.
pub fn register_device(label: &str, name: &str) {
    if let Ok(mut d) = devices().lock() {
        d.insert(label.to_string(), name.to_string());
    }
}

fn register_note(note: String) {
    if let Ok(mut n) = notes().lock() {
        n.insert(note);
    }
}

fn device_name(label: &str) -> Option<String> {
    devices().lock().ok()?.get(label).cloned()
}

/// The card's 2:4-sparse bf16 tensor-core peak in FLOP/s (twice its dense peak), from the
/// driver's device name: A100 (SXM or PCIe) 624 T, H100 SXM 1979 T, H100 PCIe 1513 T, H200
/// (and GH200) 1979 T. `None` for any other card.
pub fn sparse_peak_flops(name: &str) -> Option<f64> {
    let n = name.to_ascii_uppercase();
    let tflops = if n.contains("A100") {
        624.0
    } else if n.contains("H200") {
        1979.0
    } else if n.contains("H100") && n.contains("PCIE") {
        1513.0
    } else if n.contains("H100") && (n.contains("SXM") || n.contains("HBM3")) {
        1979.0
    } else {
        return None;
    };
    Some(tflops * 1e12)
}

/// The DESIGN.md §7 speed-up of the 2:4 GEMM over the dense one at `s` on `device` (`cpu`,
/// or a card's driver name): CPU ≥ 1.5× for M ≤ 16 (weight-bandwidth bound) and ≥ 0.8× for
/// M ≥ 512 (compute bound); A100 ≥ 1.5× and Hopper (H100, H200) ≥ 1.4× for M ≥ 4096.
pub fn target_speedup(device: &str, s: GemmShape) -> Option<f64> {
    if device == "cpu" {
        return if s.m <= 16 {
            Some(1.5)
        } else if s.m >= 512 {
            Some(0.8)
        } else {
            None
        };
    }
    let n = device.to_ascii_uppercase();
    if s.m < 4096 {
        None
    } else if n.contains("A100") {
        Some(1.5)
    } else if n.contains("H100") || n.contains("H200") {
        Some(1.4)
    } else {
        None
    }
}

fn rate(flops: f64) -> String {
    if flops >= 1e12 {
        format!("{:.1} T", flops / 1e12)
    } else {
        format!("{:.1} G", flops / 1e9)
    }
}

/// Lines of the 2:4 GEMM table for `figures` (empty when no `gemm24/sparse_*` figure ran):
/// per 2:4 case, FLOP/s (2·M·N·K), % of the card's sparse peak, and the speed-ups over the
/// dense GEMM and cuSPARSELt of the same run, with the DESIGN.md §7 target.
pub fn summary(figures: &[Figure]) -> Vec<String> {
    let find = |device: &str, variant: &str, s: GemmShape| {
        figures
            .iter()
            .find(|f| f.device == device && parse_name(&f.name) == Some((variant, s)))
    };
    let sparse: Vec<(&Figure, &str, GemmShape)> = figures
        .iter()
        .filter_map(|f| {
            let (v, s) = parse_name(&f.name)?;
            Some((f, v.strip_prefix("sparse_")?, s))
        })
        .collect();
    if sparse.is_empty() {
        return vec![];
    }
    let peak = |device: &str| device_name(device).and_then(|n| sparse_peak_flops(&n));
    let any_peak = sparse.iter().any(|(f, _, _)| peak(&f.device).is_some());
    let mut lines = vec![
        "gemm24: FLOP/s counted as the dense 2*M*N*K for every variant (ratios are speed-ups); \
         vs dense/cuSPARSELt = this 2:4 case's speed-up over them; target = DESIGN.md §7"
            .to_string(),
    ];
    let mut seen = BTreeSet::new();
    for (f, _, _) in &sparse {
        if f.device == "cpu" || !seen.insert(f.device.clone()) {
            continue;
        }
        let name = device_name(&f.device).unwrap_or_else(|| "unknown card".into());
        lines.push(match peak(&f.device) {
            Some(p) => format!(
                "{}: {name}, sparse bf16 peak {:.0} TFLOP/s",
                f.device,
                p / 1e12
            ),
            None => format!(
                "{}: {name}: sparse peak not in the table, no % of peak",
                f.device
            ),
        });
    }
    if let Ok(n) = notes().lock() {
        lines.extend(n.iter().cloned());
    }
    let peak_head = if any_peak { "  %peak" } else { "" };
    lines.push(format!(
        "{:<26} {:>7} {:>10}{peak_head} {:>9} {:>10} {:>10} {:>12}",
        "2:4 case", "device", "FLOP/s", "vs dense", "vs cuSPLt", "cuSPLt/dn", "target"
    ));
    for (f, dtype, s) in sparse {
        let dense = find(&f.device, &format!("dense_{dtype}"), s);
        let lt = find(&f.device, "cusparselt_bf16", s);
        let ratio = |b: Option<&Figure>| {
            b.map(|b| format!("{:.2}x", f.throughput / b.throughput))
                .unwrap_or_else(|| "-".into())
        };
        let lt_dense = match (lt, dense) {
            (Some(l), Some(d)) => format!("{:.2}x", l.throughput / d.throughput),
            _ => "-".into(),
        };
        let pct = if any_peak {
            peak(&f.device)
                .map(|p| format!(" {:>6.1}%", 100.0 * f.throughput / p))
                .unwrap_or_else(|| format!(" {:>7}", "-"))
        } else {
            String::new()
        };
        let card = if f.device == "cpu" {
            Some("cpu".to_string())
        } else {
            device_name(&f.device)
        };
        let target = match (card.and_then(|c| target_speedup(&c, s)), dense) {
            (Some(t), Some(d)) => {
                let ok = f.throughput / d.throughput >= t;
                format!(">={t:.1}x {}", if ok { "ok" } else { "MISS" })
            }
            (Some(t), None) => format!(">={t:.1}x ?"),
            (None, _) => "-".into(),
        };
        lines.push(format!(
            "{:<26} {:>7} {:>10}{pct} {:>9} {:>10} {:>10} {:>12}",
            s.label(),
            f.device,
            rate(f.throughput),
            ratio(dense),
            ratio(lt),
            lt_dense,
            target
        ));
    }
    lines
}
