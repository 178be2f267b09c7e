//! The matmuls of [`Ops::matmul_fwd`](crate::backend::Ops::matmul_fwd) /
//! [`matmul_bwd`](crate::backend::Ops::matmul_bwd) through cuBLASLt: bf16 operands, f32
//! accumulation (`CUBLAS_COMPUTE_32F`), f32 C/D (DESIGN.md §3 precision).
//!
//! # Row-major products as column-major cuBLAS calls
//!
//! cuBLAS(Lt) is column-major: a matrix stored with leading dimension `ld` has element
//! `(i, j)` at `i + j·ld`, and it computes `D (m×n) = α·op(A) (m×k) · op(B) (k×n) + β·C`.
//! Our tensors are row-major: an `r×c` row-major array (element `(i, j)` at `i·c + j`) is, byte
//! for byte, the column-major `c×r` array with `ld = c` — its transpose. So a row-major
//! product `Y = P·Q` is computed as the column-major product `Yᵀ = Qᵀ·Pᵀ`, where each
//! transpose is free (it is just the other reading of the same memory) and a further `op = T`
//! undoes it when the row-major formula itself needs a transpose. With shape `(n, k, oc)`: X is
//! `n×k`, W `oc×k`, dout/Y `n×oc` (all row-major):
//!
//! - **forward** `Y = X·Wᵀ`  ⇔  `Yᵀ (oc×n) = W (oc×k) · Xᵀ (k×n)`. In memory, W is the
//!   column-major `k×oc` array Wᵀ (ld k), so A = W with `op(A) = T`; X is the column-major
//!   `k×n` array Xᵀ (ld k), so B = X with `op = N`; D = Y read as column-major `oc×n`
//!   (ld oc). `m = oc, n = n, k = k`.
//! - **input gradient** `dX = dY·W`  ⇔  `dXᵀ (k×n) = Wᵀ (k×oc) · dYᵀ (oc×n)`: A = W as stored
//!   (`op = N`, ld k), B = dY as stored (`op = N`, ld oc), D = dX (ld k). `m = k, n = n,
//!   k = oc`; β = 1 accumulates.
//! - **weight gradient** `dW = dYᵀ·X`  ⇔  `dWᵀ (k×oc) = Xᵀ (k×n) · dY (n×oc)`: A = X as stored
//!   (`op = N`, ld k), B = dY stored as the column-major `oc×n` array dYᵀ (ld oc) with `op = T`,
//!   D = dW (ld k). `m = k, n = oc, k = n`; β = 1 accumulates.
//!
//! [`plan`] returns exactly these arguments, and [`emulate`] interprets them the way cuBLAS
//! does, so host tests check the mapping against a plain row-major matmul without a GPU.

use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::size_of;
use std::sync::{Arc, Mutex};

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys as lts;
use cudarc::driver::{sys, CudaStream, DevicePtr};

use super::memory::{alloc, DeviceBuffer, MemLedger};
use crate::backend::MatmulShape;
use crate::{Error, Result};

/// Which row-major product of a linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKind {
    /// `Y = X·Wᵀ`.
    Forward,
    /// `dX (+)= dY·W`.
    InputGrad,
    /// `dW (+)= dYᵀ·X`.
    WeightGrad,
}

/// The buffer that plays a cuBLAS operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// X (`n×k`), the layer input.
    Input,
    /// W (`oc×k`), the weight (masked).
    Weight,
    /// dY (`n×oc`), the output gradient.
    OutGrad,
}

/// Column-major cuBLAS arguments: `D (m×n, ld ldd) = op(A)·op(B) (+ β·D)`; A is stored
/// `a_rows×a_cols` with leading dimension `lda` (`a_rows = k, a_cols = m` when `transa`, else
/// `m×k`), B likewise (`k×n`, or `n×k` stored when `transb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ColMajorGemm {
    pub a: Operand,
    pub b: Operand,
    pub transa: bool,
    pub transb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldd: usize,
}

impl ColMajorGemm {
    /// Stored `(rows, cols)` of A (column-major, before `op`).
    pub fn a_dims(&self) -> (usize, usize) {
        if self.transa {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        }
    }
    /// Stored `(rows, cols)` of B.
    pub fn b_dims(&self) -> (usize, usize) {
        if self.transb {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        }
    }
}

/// The cuBLAS arguments of `kind` for a layer of shape `s` (derivation in the module docs).
pub fn plan(kind: GemmKind, s: MatmulShape) -> ColMajorGemm {
    let MatmulShape { n, k, oc } = s;
    match kind {
        GemmKind::Forward => ColMajorGemm {
            a: Operand::Weight,
            b: Operand::Input,
            transa: true,
            transb: false,
            m: oc,
            n,
            k,
            lda: k,
            ldb: k,
            ldd: oc,
        },
        GemmKind::InputGrad => ColMajorGemm {
            a: Operand::Weight,
            b: Operand::OutGrad,
            transa: false,
            transb: false,
            m: k,
            n,
            k: oc,
            lda: k,
            ldb: oc,
            ldd: k,
        },
        GemmKind::WeightGrad => ColMajorGemm {
            a: Operand::Input,
            b: Operand::OutGrad,
            transa: false,
            transb: true,
            m: k,
            n: oc,
            k: n,
            lda: k,
            ldb: oc,
            ldd: k,
        },
    }
}

/// `d = α·op(a)·op(b) + β·d` computed on the host exactly as cuBLAS interprets `g` (column-
/// major, f64 accumulation). For tests of [`plan`]; `a`, `b`, `d` must cover the stored
/// extents.
pub fn emulate(g: &ColMajorGemm, a: &[f32], b: &[f32], d: &mut [f32], alpha: f32, beta: f32) {
    let at = |i: usize, p: usize| {
        if g.transa {
            a[p + i * g.lda]
        } else {
            a[i + p * g.lda]
        }
    };
    let bt = |p: usize, j: usize| {
        if g.transb {
            b[j + p * g.ldb]
        } else {
            b[p + j * g.ldb]
        }
    };
    for j in 0..g.n {
        for i in 0..g.m {
            let acc: f64 = (0..g.k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum();
            let di = &mut d[i + j * g.ldd];
            // As in cuBLAS, β = 0 means D is not read (it may hold NaN).
            let old = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * *di as f64
            };
            *di = (alpha as f64 * acc + old) as f32;
        }
    }
}

/// `CUBLAS_OP_N` / `CUBLAS_OP_T` (cublasOperation_t is a C enum, i.e. an int; cudarc's cublasLt
/// bindings do not re-export it).
const OP_N: i32 = 0;
const OP_T: i32 = 1;

/// Descriptors and the chosen algorithm for one [`ColMajorGemm`], created once and reused.
struct Plan {
    desc: lts::cublasLtMatmulDesc_t,
    a: lts::cublasLtMatrixLayout_t,
    b: lts::cublasLtMatrixLayout_t,
    d: lts::cublasLtMatrixLayout_t,
    algo: lts::cublasLtMatmulAlgo_t,
}

// SAFETY: cuBLASLt descriptors are plain host objects with no thread affinity; a Plan is only
// used while the BlasLt's mutex is held.
unsafe impl Send for Plan {}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each non-null handle was created in `BlasLt::make_plan` and is destroyed
        // exactly once here (a layout is null when plan creation failed before it). Errors cannot be reported from drop and leave nothing to clean up.
        unsafe {
            for l in [self.a, self.b, self.d] {
                if !l.is_null() {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

fn blas_err(what: &str, g: &ColMajorGemm, e: lt::CublasError) -> Error {
    Error::Device(format!(
        "cuBLASLt {what} (m {}, n {}, k {}, op(A) {}, op(B) {}): {e}",
        g.m,
        g.n,
        g.k,
        if g.transa { "T" } else { "N" },
        if g.transb { "T" } else { "N" }
    ))
}

/// A cuBLASLt handle bound to one stream, its workspace, and a cache of per-shape plans.
pub struct BlasLt {
    handle: lts::cublasLtHandle_t,
    workspace: DeviceBuffer<u8>,
    stream: Arc<CudaStream>,
    /// `None`: cuBLASLt has no algorithm for this shape (the caller falls back).
    plans: Mutex<HashMap<ColMajorGemm, Option<Plan>>>,
}

// SAFETY: a cublasLt handle may be used from any thread; `matmul` serialises plan creation and
// use through the mutex, and the handle is destroyed only in Drop.
unsafe impl Send for BlasLt {}
// SAFETY: as above; no method mutates the handle itself.
unsafe impl Sync for BlasLt {}

impl BlasLt {
    /// Whether libcublasLt can be loaded (must be true before [`BlasLt::new`]; cudarc panics
    /// on the first call otherwise).
    pub fn library_present() -> bool {
        // SAFETY: only tries to dlopen the library by its usual names and closes it again.
        unsafe { lts::is_culib_present() }
    }

    /// A handle on `stream`'s device with the workspace NVIDIA recommends (32 MiB on Hopper,
    /// 4 MiB otherwise), charged to `ledger`.
    pub fn new(stream: &Arc<CudaStream>, ledger: &Arc<MemLedger>, major: i32) -> Result<Self> {
        if !Self::library_present() {
            return Err(Error::Device(
                "libcublasLt not found (install the CUDA toolkit's cuBLAS, e.g. the \
                 nvidia-cublas wheel, and put it on LD_LIBRARY_PATH)"
                    .into(),
            ));
        }
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| super::drv("bind context", e))?;
        let handle = lt::create_handle()
            .map_err(|e| Error::Device(format!("cublasLtCreate failed: {e}")))?;
        let ws_bytes = if major >= 9 { 32 << 20 } else { 4 << 20 };
        let workspace = match alloc::<u8>(stream, ledger, ws_bytes, "the cuBLASLt workspace") {
            Ok(w) => w,
            Err(e) => {
                // SAFETY: created just above and not shared yet.
                let _ = unsafe { lt::destroy_handle(handle) };
                return Err(e);
            }
        };
        Ok(BlasLt {
            handle,
            workspace,
            stream: stream.clone(),
            plans: Mutex::new(HashMap::new()),
        })
    }

    fn make_plan(&self, g: &ColMajorGemm) -> Result<Option<Plan>> {
        let e = |what: &'static str| move |err| blas_err(what, g, err);
        let bf16 = lts::cudaDataType_t::CUDA_R_16BF;
        let f32t = lts::cudaDataType_t::CUDA_R_32F;
        let (ar, ac) = g.a_dims();
        let (br, bc) = g.b_dims();
        let desc = lt::create_matmul_desc(lts::cublasComputeType_t::CUBLAS_COMPUTE_32F, f32t)
            .map_err(e("create matmul desc"))?;
        // From here on, `plan` owns what was created and destroys it on any early return.
        let mut plan = Plan {
            desc,
            a: std::ptr::null_mut(),
            b: std::ptr::null_mut(),
            d: std::ptr::null_mut(),
            algo: lts::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        for (attr, op) in [
            (
                lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                g.transa,
            ),
            (
                lts::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
                g.transb,
            ),
        ] {
            let v: i32 = if op { OP_T } else { OP_N };
            // SAFETY: `plan.desc` is live; the attribute takes a cublasOperation_t (a 4-byte
            // C enum) and we pass a pointer to a live i32 with its size.
            unsafe {
                lt::set_matmul_desc_attribute(
                    plan.desc,
                    attr,
                    (&v) as *const i32 as *const c_void,
                    size_of::<i32>(),
                )
            }
            .map_err(e("set transpose"))?;
        }
        let ld = |x: usize| x as i64;
        plan.a = lt::create_matrix_layout(bf16, ar as u64, ac as u64, ld(g.lda))
            .map_err(e("create A layout"))?;
        plan.b = lt::create_matrix_layout(bf16, br as u64, bc as u64, ld(g.ldb))
            .map_err(e("create B layout"))?;
        plan.d = lt::create_matrix_layout(f32t, g.m as u64, g.n as u64, ld(g.ldd))
            .map_err(e("create D layout"))?;
        let pref = lt::create_matmul_pref().map_err(e("create preference"))?;
        let ws = self.workspace.len();
        // SAFETY: `pref` is live; the attribute is a u64 (size_t) byte count.
        let set = unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                lts::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws) as *const usize as *const c_void,
                size_of::<usize>(),
            )
        };
        // SAFETY: every descriptor is live (created above); C and D share the f32 layout.
        let heur = set.and_then(|_| unsafe {
            lt::get_matmul_algo_heuristic(
                self.handle,
                plan.desc,
                plan.a,
                plan.b,
                plan.d,
                plan.d,
                pref,
            )
        });
        // SAFETY: created above, destroyed once; the heuristic result is a copy.
        let _ = unsafe { lt::destroy_matmul_pref(pref) };
        let heur = match heur {
            Err(lt::CublasError(lts::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED)) => {
                return Ok(None)
            }
            other => other.map_err(e("find an algorithm (bf16 A/B, f32 C/D, compute 32F)"))?,
        };
        if heur.workspaceSize > ws {
            return Ok(None);
        }
        plan.algo = heur.algo;
        Ok(Some(plan))
    }

    /// Enqueue `D = op(A)·op(B) + β·D` on the stream: A, B device pointers to bf16 (u16 bits)
    /// arrays of the stored extents of `g`, D to f32 (`ldd × n`). Returns `Ok(false)`, having
    /// enqueued nothing, when cuBLASLt has no algorithm for the shape.
    ///
    /// # Safety
    /// `a`, `b`, `d` must be live device allocations of this stream's context holding at least
    /// `lda·a_cols` / `ldb·b_cols` bf16 and `ldd·n` f32 elements, stay alive until the GEMM has
    /// run (stream order), and `d` must not overlap `a` or `b`.
    pub unsafe fn matmul(
        &self,
        g: &ColMajorGemm,
        a: sys::CUdeviceptr,
        b: sys::CUdeviceptr,
        d: sys::CUdeviceptr,
        beta: f32,
    ) -> Result<bool> {
        if g.m == 0 || g.n == 0 {
            return Ok(true);
        }
        if g.k == 0 {
            return Err(Error::Device(
                "cuBLASLt GEMM with k = 0 (the caller handles empty reductions)".into(),
            ));
        }
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| Error::Device("cuBLASLt plan cache poisoned".into()))?;
        if !plans.contains_key(g) {
            let p = self.make_plan(g)?;
            plans.insert(*g, p);
        }
        let Some(plan) = plans
            .get(g)
            .ok_or_else(|| Error::Device("cuBLASLt plan cache lost an entry".into()))?
        else {
            return Ok(false);
        };
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| super::drv("bind context", e))?;
        let alpha = 1.0f32;
        let (ws, _guard) = self.workspace.slice().device_ptr(&self.stream);
        // SAFETY: descriptors and algorithm come from `make_plan` for exactly `g`; the pointer
        // contract is the caller's (see above); alpha/beta are host f32 (the default pointer
        // mode) that live across the call; the workspace is this handle's own, used only on
        // this stream; cublasLt's cudaStream_t is the same CUstream handle under another name.
        unsafe {
            lt::matmul(
                self.handle,
                plan.desc,
                (&alpha) as *const f32 as *const c_void,
                (&beta) as *const f32 as *const c_void,
                a as *const c_void,
                plan.a,
                b as *const c_void,
                plan.b,
                d as *const c_void,
                plan.d,
                d as *mut c_void,
                plan.d,
                (&plan.algo) as *const lts::cublasLtMatmulAlgo_t,
                ws as *mut c_void,
                self.workspace.len(),
                self.stream.cu_stream() as lts::cudaStream_t,
            )
        }
        .map_err(|e| blas_err("matmul", g, e))?;
        Ok(true)
    }
}

impl Drop for BlasLt {
    fn drop(&mut self) {
        if let Ok(mut p) = self.plans.lock() {
            p.clear();
        }
        // SAFETY: created in `new`, destroyed exactly once here after every plan.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain row-major reference products, f64 accumulation.
    fn fwd(x: &[f32], w: &[f32], s: MatmulShape) -> Vec<f32> {
        let mut y = vec![0.0; s.n * s.oc];
        for r in 0..s.n {
            for o in 0..s.oc {
                y[r * s.oc + o] = (0..s.k)
                    .map(|p| x[r * s.k + p] as f64 * w[o * s.k + p] as f64)
                    .sum::<f64>() as f32;
            }
        }
        y
    }

    fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97);
                ((h % 1999) as f32 - 999.0) / 500.0 + 0.001
            })
            .collect()
    }

    #[test]
    fn plans_reproduce_the_row_major_products() {
        for s in [
            MatmulShape { n: 5, k: 7, oc: 3 },
            MatmulShape { n: 1, k: 4, oc: 9 },
            MatmulShape { n: 6, k: 1, oc: 2 },
        ] {
            let x = vals(s.n * s.k, 1);
            let w = vals(s.oc * s.k, 2);
            let dy = vals(s.n * s.oc, 3);
            let pick = |o: Operand| match o {
                Operand::Input => &x[..],
                Operand::Weight => &w[..],
                Operand::OutGrad => &dy[..],
            };

            let g = plan(GemmKind::Forward, s);
            let mut y = vec![f32::NAN; s.n * s.oc];
            emulate(&g, pick(g.a), pick(g.b), &mut y, 1.0, 0.0);
            assert_eq!(y, fwd(&x, &w, s), "forward {s:?}");

            // dX += dY·W, starting from a nonzero dX.
            let g = plan(GemmKind::InputGrad, s);
            let start = vals(s.n * s.k, 4);
            let mut dx = start.clone();
            emulate(&g, pick(g.a), pick(g.b), &mut dx, 1.0, 1.0);
            for r in 0..s.n {
                for p in 0..s.k {
                    let want = start[r * s.k + p] as f64
                        + (0..s.oc)
                            .map(|o| dy[r * s.oc + o] as f64 * w[o * s.k + p] as f64)
                            .sum::<f64>();
                    assert_eq!(dx[r * s.k + p], want as f32, "dX {s:?} [{r},{p}]");
                }
            }

            // dW += dYᵀ·X.
            let g = plan(GemmKind::WeightGrad, s);
            let start = vals(s.oc * s.k, 5);
            let mut dw = start.clone();
            emulate(&g, pick(g.a), pick(g.b), &mut dw, 1.0, 1.0);
            for o in 0..s.oc {
                for p in 0..s.k {
                    let want = start[o * s.k + p] as f64
                        + (0..s.n)
                            .map(|r| dy[r * s.oc + o] as f64 * x[r * s.k + p] as f64)
                            .sum::<f64>();
                    assert_eq!(dw[o * s.k + p], want as f32, "dW {s:?} [{o},{p}]");
                }
            }
        }
    }

    #[test]
    fn stored_extents_match_the_buffers() {
        let s = MatmulShape {
            n: 11,
            k: 13,
            oc: 17,
        };
        let len = |o: Operand| match o {
            Operand::Input => s.n * s.k,
            Operand::Weight => s.oc * s.k,
            Operand::OutGrad => s.n * s.oc,
        };
        for kind in [GemmKind::Forward, GemmKind::InputGrad, GemmKind::WeightGrad] {
            let g = plan(kind, s);
            let (ar, ac) = g.a_dims();
            let (br, bc) = g.b_dims();
            // Leading dimensions are exactly the stored row counts (dense, no padding), so
            // each operand's extent is its whole buffer.
            assert_eq!((g.lda, g.ldb), (ar, br), "{kind:?}");
            assert_eq!(ar * ac, len(g.a), "{kind:?} A");
            assert_eq!(br * bc, len(g.b), "{kind:?} B");
            let d_len = match kind {
                GemmKind::Forward => s.n * s.oc,
                GemmKind::InputGrad => s.n * s.k,
                GemmKind::WeightGrad => s.oc * s.k,
            };
            assert_eq!((g.ldd, g.ldd * g.n), (g.m, d_len), "{kind:?} D");
        }
    }
}
