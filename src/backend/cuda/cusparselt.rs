//! NVIDIA cuSPARSELt, loaded at run time: the library the 2:4 GEMM benchmark compares its own
//! kernel with (`asa-lth bench gemm24`, src/bench/gemm24_cases.rs). Nothing else uses it, and
//! nothing needs it to build or run: when the library cannot be loaded, [`CuSparseLt::load`]
//! says why (every place it looked) and the benchmark skips its cuSPARSELt cases.
//!
//! # Where the library is looked for
//! In order ([`candidates`]): `$ASA_LTH_CUSPARSELT` (the library file, or a directory holding
//! `libcusparseLt.so.0`); `libcusparseLt.so.0` by the dynamic loader's own search
//! (`LD_LIBRARY_PATH`, ldconfig: e.g. the `libcusparselt0` package); `$CUDA_HOME/lib64` and
//! `/usr/local/cuda/lib64`; then `nvidia/cusparselt/lib/` under every Python site-packages
//! directory found (virtualenv, conda, user and system prefixes, `$PYTHONPATH`, and what
//! `python3` itself reports) — where the `nvidia-cusparselt-cu12` wheel, a dependency of the
//! PyTorch CUDA wheels, puts it.
//!
//! # The declared API
//! The handful of entry points a bf16 2:4 matmul needs, declared by hand from the cuSPARSELt
//! 0.7.1–0.8.1 API (as NVIDIA's nvmath-python bindings, generated from those headers, declare
//! it: `nvmath/bindings/cycusparseLt.pxd`); cuSPARSELt 0.6 has the same signatures for these
//! (the four-argument `cusparseLtMatmulPlanInit`, `cusparseLtMatmulGetWorkspace` taking the
//! plan, and `cusparseLtSpMMACompressedSize2`/`cusparseLtSpMMACompress2` with the compression
//! buffer), which is why a library older than [`MIN_VERSION`] is refused: 0.1–0.4 had other
//! signatures and another `cusparseComputeType` numbering, so calling them through these
//! declarations would be undefined behaviour.
//!
//! The opaque structs (`cusparseLtHandle_t`, `cusparseLtMatDescriptor_t`,
//! `cusparseLtMatmulDescriptor_t`, `cusparseLtMatmulAlgSelection_t`, `cusparseLtMatmulPlan_t`)
//! are `struct { uint8_t data[N]; }` filled in by the library: N = 512 in the 0.7.1–0.8.1
//! headers, 1024 in 0.1.0's, larger (11024) in some releases between. Each lives here in a
//! heap block of [`OPAQUE_BYTES`] (16 KiB, 16-byte aligned) that never moves, so any of those
//! sizes fits.
//!
//! Enum values (C enums are `int`): `cusparseStatus_t` (cusparse.h: SUCCESS 0 … NOT_SUPPORTED
//! 10, INSUFFICIENT_RESOURCES 11), `cusparseOrder_t` (COL 1, ROW 2), `cusparseOperation_t`
//! (NON_TRANSPOSE 0, TRANSPOSE 1), `cudaDataType` (CUDA_R_32F 0, CUDA_R_16BF 14),
//! `cusparseComputeType` (0.5+: 32I 0, 16F 1, 32F 2), `CUSPARSELT_SPARSITY_50_PERCENT` 0,
//! `CUSPARSELT_MATMUL_ALG_DEFAULT` 0, `libraryPropertyType` (MAJOR_VERSION 0, MINOR_VERSION 1,
//! PATCH_LEVEL 2).
//!
//! # The product
//! [`LtMatmul`] computes `Y (M×N, row-major) = X (M×K, row-major bf16) · Wᵀ` with `W` (N×K,
//! row-major bf16, 2:4 along K) compressed by cuSPARSELt ([`LtSparseWeight`]), f32 compute.
//! In cuSPARSELt's terms (`D = op(A)·op(B)`): A = W, structured, ROW N×K, `op(A) = N`; B = X
//! as stored, ROW M×K, `op(B) = T`; C = D, COL N×M with ld N — i.e. `Yᵀ` column-major, which
//! is `Y` row-major, byte for byte. This is the layout PyTorch's cuSPARSELt path uses for
//! `F.linear` with its fused transpose. D is f32 when cuSPARSELt accepts bf16 operands with an
//! f32 output, else bf16 ([`LtMatmul::out`] says which).
//!
//! Status: written against the API above and checked only for the "library not found" path;
//! it has not run against a real libcusparseLt yet.

use std::ffi::{c_char, c_int, c_void, CStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cudarc::driver::{sys, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use libloading::Library;

use super::drv;
use crate::{Error, Result};

/// The library's file name (its soname).
pub const LIB_NAME: &str = "libcusparseLt.so.0";
/// Environment variable naming the library file (or its directory).
pub const ENV_VAR: &str = "ASA_LTH_CUSPARSELT";
/// Oldest `(major, minor)` whose API matches the declarations here.
pub const MIN_VERSION: (i32, i32) = (0, 6);
/// Bytes reserved for each opaque cuSPARSELt struct (module docs).
pub const OPAQUE_BYTES: usize = 16 * 1024;

type Status = c_int;
const STATUS_SUCCESS: Status = 0;
const ORDER_COL: c_int = 1;
const ORDER_ROW: c_int = 2;
const OP_N: c_int = 0;
const OP_T: c_int = 1;
const CUDA_R_32F: c_int = 0;
const CUDA_R_16BF: c_int = 14;
const COMPUTE_32F: c_int = 2;
const SPARSITY_50_PERCENT: c_int = 0;
const MATMUL_ALG_DEFAULT: c_int = 0;
const PROP_MAJOR: c_int = 0;
const PROP_MINOR: c_int = 1;
const PROP_PATCH: c_int = 2;
/// Byte alignment promised for every matrix (cudaMalloc gives 256).
const ALIGNMENT: u32 = 16;

/// Storage of one opaque cuSPARSELt struct (see [`OPAQUE_BYTES`]).
#[repr(C, align(16))]
struct Opaque([u8; OPAQUE_BYTES]);

impl Opaque {
    fn boxed() -> Box<Opaque> {
        Box::new(Opaque([0; OPAQUE_BYTES]))
    }
}

type P = *const Opaque;
type PM = *mut Opaque;
type FnInit = unsafe extern "C" fn(PM) -> Status;
type FnDestroy = unsafe extern "C" fn(P) -> Status;
type FnGetProperty = unsafe extern "C" fn(c_int, *mut c_int) -> Status;
type FnErrorString = unsafe extern "C" fn(Status) -> *const c_char;
type FnDenseInit = unsafe extern "C" fn(P, PM, i64, i64, i64, u32, c_int, c_int) -> Status;
type FnStructuredInit =
    unsafe extern "C" fn(P, PM, i64, i64, i64, u32, c_int, c_int, c_int) -> Status;
type FnMatmulDescInit = unsafe extern "C" fn(P, PM, c_int, c_int, P, P, P, P, c_int) -> Status;
type FnAlgSelInit = unsafe extern "C" fn(P, PM, P, c_int) -> Status;
type FnPlanInit = unsafe extern "C" fn(P, PM, P, P) -> Status;
type FnGetWorkspace = unsafe extern "C" fn(P, P, *mut usize) -> Status;
type FnCompressedSize2 = unsafe extern "C" fn(P, P, *mut usize, *mut usize) -> Status;
type FnCompress2 = unsafe extern "C" fn(
    P,
    P,
    c_int,
    c_int,
    *const c_void,
    *mut c_void,
    *mut c_void,
    sys::CUstream,
) -> Status;
type FnPruneCheck2 =
    unsafe extern "C" fn(P, P, c_int, c_int, *const c_void, *mut c_int, sys::CUstream) -> Status;
type FnMatmul = unsafe extern "C" fn(
    P,
    P,
    *const c_void,
    *const c_void,
    *const c_void,
    *const c_void,
    *const c_void,
    *mut c_void,
    *mut c_void,
    *mut sys::CUstream,
    i32,
) -> Status;
type FnSearch = unsafe extern "C" fn(
    P,
    PM,
    *const c_void,
    *const c_void,
    *const c_void,
    *const c_void,
    *const c_void,
    *mut c_void,
    *mut c_void,
    *mut sys::CUstream,
    i32,
) -> Status;

/// The entry points (plain function pointers into `CuSparseLt::_lib`).
struct Fns {
    init: FnInit,
    destroy: FnDestroy,
    dense_init: FnDenseInit,
    structured_init: FnStructuredInit,
    mat_destroy: FnDestroy,
    matmul_desc_init: FnMatmulDescInit,
    alg_sel_init: FnAlgSelInit,
    plan_init: FnPlanInit,
    plan_destroy: FnDestroy,
    get_workspace: FnGetWorkspace,
    compressed_size2: FnCompressedSize2,
    compress2: FnCompress2,
    matmul: FnMatmul,
    // Optional: absent in some releases (AlgSelectionDestroy is 0.8+; GetErrorString 0.7+).
    search: Option<FnSearch>,
    prune_check2: Option<FnPruneCheck2>,
    alg_sel_destroy: Option<FnDestroy>,
    error_string: Option<FnErrorString>,
}

/// A loaded libcusparseLt of a supported version.
pub struct CuSparseLt {
    fns: Fns,
    path: PathBuf,
    version: (i32, i32, i32),
    // Last field: dropped after nothing can call through `fns` any more (every user holds an
    // `Arc<CuSparseLt>`).
    _lib: Library,
}

/// Name of a `cusparseStatus_t` (cusparse.h).
pub fn status_name(s: i32) -> &'static str {
    match s {
        0 => "CUSPARSE_STATUS_SUCCESS",
        1 => "CUSPARSE_STATUS_NOT_INITIALIZED",
        2 => "CUSPARSE_STATUS_ALLOC_FAILED",
        3 => "CUSPARSE_STATUS_INVALID_VALUE",
        4 => "CUSPARSE_STATUS_ARCH_MISMATCH",
        5 => "CUSPARSE_STATUS_MAPPING_ERROR",
        6 => "CUSPARSE_STATUS_EXECUTION_FAILED",
        7 => "CUSPARSE_STATUS_INTERNAL_ERROR",
        8 => "CUSPARSE_STATUS_MATRIX_TYPE_NOT_SUPPORTED",
        9 => "CUSPARSE_STATUS_ZERO_PIVOT",
        10 => "CUSPARSE_STATUS_NOT_SUPPORTED",
        11 => "CUSPARSE_STATUS_INSUFFICIENT_RESOURCES",
        _ => "unknown cusparseStatus_t",
    }
}

/// Python site-packages directories that may hold the `nvidia-cusparselt-cu12` wheel: those
/// under the usual prefixes, `$PYTHONPATH`, and what `python3` reports (if it runs).
pub fn python_site_dirs() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            prefixes.push(PathBuf::from(v));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        prefixes.push(Path::new(&home).join(".local"));
    }
    prefixes.extend(["/usr/local", "/usr"].map(PathBuf::from));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in prefixes {
        let Ok(entries) = std::fs::read_dir(p.join("lib")) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("python3") {
                for sub in ["site-packages", "dist-packages"] {
                    dirs.push(e.path().join(sub));
                }
            }
        }
    }
    if let Some(pp) = std::env::var_os("PYTHONPATH") {
        dirs.extend(std::env::split_paths(&pp));
    }
    // The interpreter on PATH knows its own (pyenv, a system Python in an odd place).
    let probe = "import site, sys; print('\\n'.join(site.getsitepackages() + \
                 [site.getusersitepackages()] + sys.path))";
    if let Ok(out) = std::process::Command::new("python3")
        .args(["-c", probe])
        .stderr(std::process::Stdio::null())
        .output()
    {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            dirs.extend(text.lines().filter(|l| !l.is_empty()).map(PathBuf::from));
        }
    }
    dirs
}

/// Where to look for the library, in order (module docs): `env` (the value of
/// [`ENV_VAR`]: a file, or a directory holding [`LIB_NAME`]), the bare name, the CUDA
/// toolkit's lib64, then `nvidia/cusparselt/lib/` under each of `site_dirs`. Without
/// duplicates; paths that do not exist are kept (the error lists them as tried).
pub fn candidates(env: Option<OsString>, site_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(v) = env.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        push(if p.is_dir() { p.join(LIB_NAME) } else { p });
    }
    push(PathBuf::from(LIB_NAME));
    if let Some(cuda) = std::env::var_os("CUDA_HOME").or_else(|| std::env::var_os("CUDA_PATH")) {
        push(Path::new(&cuda).join("lib64").join(LIB_NAME));
    }
    push(Path::new("/usr/local/cuda/lib64").join(LIB_NAME));
    for d in site_dirs {
        let p = d
            .join("nvidia")
            .join("cusparselt")
            .join("lib")
            .join(LIB_NAME);
        // Only existing wheel paths: the list of site dirs is long and mostly unrelated.
        if p.exists() {
            push(p);
        }
    }
    out
}

/// Look up `name` in `lib` as a `T` (a function pointer type).
///
/// # Safety
/// `T` must be the symbol's true type (its C signature).
unsafe fn sym<T: Copy>(lib: &Library, name: &str) -> std::result::Result<T, String> {
    // SAFETY: forwarded to the caller; the pointer is copied out of the Symbol, and the caller
    // keeps `lib` alive as long as it is used (CuSparseLt owns both).
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("{name}: {e}"))
}

impl CuSparseLt {
    /// Load the library from the first of [`candidates`] that loads and has a supported version.
    pub fn load() -> Result<Arc<CuSparseLt>> {
        let sites = python_site_dirs();
        Self::load_from(&candidates(std::env::var_os(ENV_VAR), &sites))
    }

    /// Load the first of `paths` that loads, has every required entry point, and reports a
    /// version ≥ [`MIN_VERSION`]. The error lists each path with why it failed.
    pub fn load_from(paths: &[PathBuf]) -> Result<Arc<CuSparseLt>> {
        let mut tried = Vec::new();
        for p in paths {
            match Self::open(p) {
                Ok(lt) => return Ok(Arc::new(lt)),
                Err(why) => tried.push(format!("  {}: {why}", p.display())),
            }
        }
        Err(Error::Device(format!(
            "cuSPARSELt not found (needs {LIB_NAME} >= {}.{}); tried:\n{}\ninstall it (e.g. `pip \
             install nvidia-cusparselt-cu12`, which PyTorch's CUDA wheels already pull in) or \
             set {ENV_VAR} to the library file",
            MIN_VERSION.0,
            MIN_VERSION.1,
            tried.join("\n")
        )))
    }

    fn open(path: &Path) -> std::result::Result<CuSparseLt, String> {
        // SAFETY: loading runs the library's initialisers; libcusparseLt's only set up its
        // own state. Any other library named by ASA_LTH_CUSPARSELT is the user's choice.
        let lib = unsafe { Library::new(path) }.map_err(|e| e.to_string())?;
        // SAFETY: each type below is the C signature of that entry point in the 0.6–0.8 API
        // (module docs); `lib` is moved into the returned struct next to the pointers.
        let fns = unsafe {
            Fns {
                init: sym(&lib, "cusparseLtInit")?,
                destroy: sym(&lib, "cusparseLtDestroy")?,
                dense_init: sym(&lib, "cusparseLtDenseDescriptorInit")?,
                structured_init: sym(&lib, "cusparseLtStructuredDescriptorInit")?,
                mat_destroy: sym(&lib, "cusparseLtMatDescriptorDestroy")?,
                matmul_desc_init: sym(&lib, "cusparseLtMatmulDescriptorInit")?,
                alg_sel_init: sym(&lib, "cusparseLtMatmulAlgSelectionInit")?,
                plan_init: sym(&lib, "cusparseLtMatmulPlanInit")?,
                plan_destroy: sym(&lib, "cusparseLtMatmulPlanDestroy")?,
                get_workspace: sym(&lib, "cusparseLtMatmulGetWorkspace")?,
                compressed_size2: sym(&lib, "cusparseLtSpMMACompressedSize2")?,
                compress2: sym(&lib, "cusparseLtSpMMACompress2")?,
                matmul: sym(&lib, "cusparseLtMatmul")?,
                search: sym(&lib, "cusparseLtMatmulSearch").ok(),
                prune_check2: sym(&lib, "cusparseLtSpMMAPruneCheck2").ok(),
                alg_sel_destroy: sym(&lib, "cusparseLtMatmulAlgSelectionDestroy").ok(),
                error_string: sym(&lib, "cusparseLtGetErrorString").ok(),
            }
        };
        // SAFETY: cusparseLtGetProperty(libraryPropertyType, int*) (0.4+, no handle needed).
        let get_property: FnGetProperty = unsafe { sym(&lib, "cusparseLtGetProperty") }
            .map_err(|e| format!("{e} (a cuSPARSELt older than 0.4?)"))?;
        let mut v = [0 as c_int; 3];
        for (slot, prop) in v.iter_mut().zip([PROP_MAJOR, PROP_MINOR, PROP_PATCH]) {
            // SAFETY: writes one int through a live exclusive reference.
            let st = unsafe { get_property(prop, slot) };
            if st != STATUS_SUCCESS {
                return Err(format!("cusparseLtGetProperty: {}", status_name(st)));
            }
        }
        if (v[0], v[1]) < MIN_VERSION {
            return Err(format!(
                "version {}.{}.{} is older than {}.{}, whose API this binding declares",
                v[0], v[1], v[2], MIN_VERSION.0, MIN_VERSION.1
            ));
        }
        Ok(CuSparseLt {
            fns,
            path: path.to_path_buf(),
            version: (v[0], v[1], v[2]),
            _lib: lib,
        })
    }

    /// The file it was loaded from (as given: a bare name means the loader's search).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(major, minor, patch)`.
    pub fn version(&self) -> (i32, i32, i32) {
        self.version
    }

    /// `Ok` on success, else an error naming the call, the status and its description.
    fn check(&self, call: &str, st: Status) -> Result<()> {
        if st == STATUS_SUCCESS {
            return Ok(());
        }
        let desc = self
            .fns
            .error_string
            .map(|f| {
                // SAFETY: cusparseLtGetErrorString returns a static NUL-terminated string (or
                // null for unknown codes, handled).
                let p = unsafe { f(st) };
                if p.is_null() {
                    String::new()
                } else {
                    // SAFETY: non-null, NUL-terminated, static (see above).
                    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy();
                    format!(": {s}")
                }
            })
            .unwrap_or_default();
        Err(Error::Device(format!(
            "cuSPARSELt {call} failed: {} ({st}){desc}",
            status_name(st)
        )))
    }
}

/// A cuSPARSELt library handle (bound to the device of the stream it was made for).
pub struct LtHandle {
    lt: Arc<CuSparseLt>,
    raw: Box<Opaque>,
}

impl LtHandle {
    /// `cusparseLtInit` with `stream`'s context current.
    pub fn new(lt: &Arc<CuSparseLt>, stream: &Arc<CudaStream>) -> Result<Arc<LtHandle>> {
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| drv("bind context", e))?;
        let mut raw = Opaque::boxed();
        // SAFETY: `raw` is a writable block larger than any release's cusparseLtHandle_t.
        let st = unsafe { (lt.fns.init)(&mut *raw) };
        lt.check("cusparseLtInit", st)?;
        Ok(Arc::new(LtHandle {
            lt: lt.clone(),
            raw,
        }))
    }

    fn ptr(&self) -> P {
        &*self.raw
    }
}

impl Drop for LtHandle {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`; every descriptor and plan using it holds an Arc to it,
        // so they are gone. Errors cannot be reported from drop.
        let _ = unsafe { (self.lt.fns.destroy)(self.ptr()) };
    }
}

/// An initialised matrix descriptor, destroyed on drop.
struct MatDesc {
    lt: Arc<CuSparseLt>,
    raw: Box<Opaque>,
}

impl MatDesc {
    fn ptr(&self) -> P {
        &*self.raw
    }
}

impl Drop for MatDesc {
    fn drop(&mut self) {
        // SAFETY: only constructed after a successful Dense/StructuredDescriptorInit.
        let _ = unsafe { (self.lt.fns.mat_destroy)(self.ptr()) };
    }
}

/// `cusparseLtDenseDescriptorInit` (`order` ROW or COL).
fn dense_desc(
    h: &LtHandle,
    rows: usize,
    cols: usize,
    ld: usize,
    dtype: c_int,
    order: c_int,
) -> Result<MatDesc> {
    let mut raw = Opaque::boxed();
    // SAFETY: the handle is initialised; `raw` is writable and large enough (module docs).
    let st = unsafe {
        (h.lt.fns.dense_init)(
            h.ptr(),
            &mut *raw,
            rows as i64,
            cols as i64,
            ld as i64,
            ALIGNMENT,
            dtype,
            order,
        )
    };
    h.lt.check(
        &format!("cusparseLtDenseDescriptorInit ({rows} x {cols}, ld {ld})"),
        st,
    )?;
    Ok(MatDesc {
        lt: h.lt.clone(),
        raw,
    })
}

/// A 2:4 bf16 weight `W` (N×K row-major) compressed by cuSPARSELt, on the device.
pub struct LtSparseWeight {
    desc: MatDesc,
    compressed: CudaSlice<u8>,
    n: usize,
    k: usize,
    // Last: the handle is destroyed after the descriptor made with it.
    handle: Arc<LtHandle>,
}

impl LtSparseWeight {
    /// Compress `w` (N×K row-major bf16 bits, 2:4 along K, on `stream`'s device). When the
    /// library has `cusparseLtSpMMAPruneCheck2`, first checks that `w` is 2:4 the way
    /// cuSPARSELt reads it (an error otherwise).
    pub fn compress_bf16(
        handle: &Arc<LtHandle>,
        stream: &Arc<CudaStream>,
        w: &CudaSlice<u16>,
        n: usize,
        k: usize,
    ) -> Result<LtSparseWeight> {
        if w.len() != n * k || n == 0 || k == 0 {
            return Err(Error::Config(format!(
                "cuSPARSELt weight: {} elements for N x K = {n} x {k}",
                w.len()
            )));
        }
        let lt = &handle.lt;
        let mut raw = Opaque::boxed();
        // SAFETY: the handle is initialised; `raw` is writable and large enough.
        let st = unsafe {
            (lt.fns.structured_init)(
                handle.ptr(),
                &mut *raw,
                n as i64,
                k as i64,
                k as i64,
                ALIGNMENT,
                CUDA_R_16BF,
                ORDER_ROW,
                SPARSITY_50_PERCENT,
            )
        };
        lt.check(
            &format!("cusparseLtStructuredDescriptorInit (N {n}, K {k}, bf16, row-major)"),
            st,
        )?;
        let desc = MatDesc {
            lt: lt.clone(),
            raw,
        };
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| drv("bind context", e))?;
        let cu = stream.cu_stream();
        let (wp, _gw) = w.device_ptr(stream);
        if let Some(check) = lt.fns.prune_check2 {
            let mut valid = stream
                .alloc_zeros::<i32>(1)
                .map_err(|e| drv("allocate the cuSPARSELt prune-check flag", e))?;
            {
                let (vp, _gv) = valid.device_ptr_mut(stream);
                // SAFETY: descriptor and handle initialised; `wp` holds N·K bf16 (checked),
                // `vp` one int, both live device memory of this context ordered on `cu`.
                let st = unsafe {
                    check(
                        handle.ptr(),
                        desc.ptr(),
                        1,
                        OP_N,
                        wp as *const c_void,
                        vp as *mut c_int,
                        cu,
                    )
                };
                lt.check("cusparseLtSpMMAPruneCheck2", st)?;
            }
            let v = stream
                .clone_dtoh(&valid)
                .map_err(|e| drv("read the cuSPARSELt prune-check flag", e))?;
            if v.first().copied().unwrap_or(1) != 0 {
                return Err(Error::Device(format!(
                    "cuSPARSELt: the {n} x {k} weight is not 2:4 along K as cuSPARSELt reads it \
                     (cusparseLtSpMMAPruneCheck2)"
                )));
            }
        }
        let (mut size, mut buf_size) = (0usize, 0usize);
        // SAFETY: handle and descriptor initialised; two writable size_t.
        let st = unsafe {
            (lt.fns.compressed_size2)(handle.ptr(), desc.ptr(), &mut size, &mut buf_size)
        };
        lt.check("cusparseLtSpMMACompressedSize2", st)?;
        let alloc = |bytes: usize, what: &str| {
            stream
                .alloc_zeros::<u8>(bytes.max(1))
                .map_err(|e| drv(&format!("allocate {what} ({bytes} bytes)"), e))
        };
        let mut compressed = alloc(size, "the cuSPARSELt compressed weight")?;
        let mut buffer = alloc(buf_size, "the cuSPARSELt compression buffer")?;
        {
            let (cp, _gc) = compressed.device_ptr_mut(stream);
            let (bp, _gb) = buffer.device_ptr_mut(stream);
            // SAFETY: sizes are what cuSPARSELt asked for; `wp` holds the dense N·K bf16 the
            // descriptor describes; all buffers are live on this context, ordered on `cu`.
            let st = unsafe {
                (lt.fns.compress2)(
                    handle.ptr(),
                    desc.ptr(),
                    1,
                    OP_N,
                    wp as *const c_void,
                    cp as *mut c_void,
                    bp as *mut c_void,
                    cu,
                )
            };
            lt.check("cusparseLtSpMMACompress2", st)?;
        }
        stream
            .synchronize()
            .map_err(|e| drv("synchronize after cuSPARSELt compression", e))?;
        drop(buffer);
        Ok(LtSparseWeight {
            desc,
            compressed,
            n,
            k,
            handle: handle.clone(),
        })
    }

    /// `(N, K)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Device bytes of the compressed form.
    pub fn compressed_bytes(&self) -> usize {
        self.compressed.len()
    }
}

/// The output type of an [`LtMatmul`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LtOut {
    F32,
    Bf16,
}

impl LtOut {
    fn cuda_type(self) -> c_int {
        match self {
            LtOut::F32 => CUDA_R_32F,
            LtOut::Bf16 => CUDA_R_16BF,
        }
    }
    /// `f32` / `bf16`.
    pub fn label(self) -> &'static str {
        match self {
            LtOut::F32 => "f32",
            LtOut::Bf16 => "bf16",
        }
    }
}

/// The output buffer of an [`LtMatmul`] (M·N elements of its [`LtOut`] type).
pub enum LtOutBuf {
    F32(CudaSlice<f32>),
    Bf16(CudaSlice<u16>),
}

impl LtOutBuf {
    /// A zeroed M·N buffer of type `out` on `stream`.
    pub fn zeros(stream: &Arc<CudaStream>, out: LtOut, len: usize) -> Result<LtOutBuf> {
        let e = |e| {
            drv(
                &format!("allocate the cuSPARSELt output ({len} elements)"),
                e,
            )
        };
        Ok(match out {
            LtOut::F32 => LtOutBuf::F32(stream.alloc_zeros::<f32>(len.max(1)).map_err(e)?),
            LtOut::Bf16 => LtOutBuf::Bf16(stream.alloc_zeros::<u16>(len.max(1)).map_err(e)?),
        })
    }
    fn out(&self) -> LtOut {
        match self {
            LtOutBuf::F32(_) => LtOut::F32,
            LtOutBuf::Bf16(_) => LtOut::Bf16,
        }
    }
    fn len(&self) -> usize {
        match self {
            LtOutBuf::F32(b) => b.len(),
            LtOutBuf::Bf16(b) => b.len(),
        }
    }
}

/// A cuSPARSELt plan for `Y = X·Wᵀ` at one M (module docs for the layout).
pub struct LtMatmul {
    // `Drop` destroys the plan and the algorithm selection; the descriptors then drop in
    // field order, and the weight (with the handle) last.
    plan: Box<Opaque>,
    alg: Box<Opaque>,
    _matmul: Box<Opaque>,
    _b: MatDesc,
    _cd: MatDesc,
    workspace: Option<CudaSlice<u8>>,
    out: LtOut,
    m: usize,
    weight: Arc<LtSparseWeight>,
}

impl LtMatmul {
    /// The plan for M rows of X, with the first output type of `prefer` for which cuSPARSELt
    /// builds a plan with bf16 operands and f32 compute (the error lists every attempt).
    pub fn new(
        weight: &Arc<LtSparseWeight>,
        stream: &Arc<CudaStream>,
        m: usize,
        prefer: &[LtOut],
    ) -> Result<LtMatmul> {
        if m == 0 {
            return Err(Error::Config("cuSPARSELt matmul with M = 0".into()));
        }
        let mut tried = Vec::new();
        for &out in prefer {
            match Self::build(weight, m, out) {
                Ok(mut mm) => {
                    mm.size_workspace(stream)?;
                    return Ok(mm);
                }
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(Error::Device(format!(
            "cuSPARSELt has no plan for bf16 M {m}, N {}, K {}: {}",
            weight.n,
            weight.k,
            tried.join("; ")
        )))
    }

    /// Descriptors, algorithm selection and plan for output type `out` (no workspace yet).
    /// Every struct is built in its own heap block and never moves: the library keeps
    /// pointers between them (plan → matmul descriptor → matrix descriptors).
    fn build(weight: &Arc<LtSparseWeight>, m: usize, out: LtOut) -> Result<LtMatmul> {
        let h = &*weight.handle;
        let lt = &h.lt;
        let (n, k) = (weight.n, weight.k);
        let what = |call: &str| format!("{call} (M {m}, N {n}, K {k}, bf16 -> {})", out.label());
        // B: X as stored, M×K row-major, op T. C = D: N×M column-major, ld N (= Y row-major).
        let b = dense_desc(h, m, k, k, CUDA_R_16BF, ORDER_ROW)?;
        let cd = dense_desc(h, n, m, n, out.cuda_type(), ORDER_COL)?;
        let mut matmul = Opaque::boxed();
        // SAFETY: handle and the three descriptors are initialised; `matmul` is writable.
        let st = unsafe {
            (lt.fns.matmul_desc_init)(
                h.ptr(),
                &mut *matmul,
                OP_N,
                OP_T,
                weight.desc.ptr(),
                b.ptr(),
                cd.ptr(),
                cd.ptr(),
                COMPUTE_32F,
            )
        };
        lt.check(&what("cusparseLtMatmulDescriptorInit"), st)?;
        let mut alg = Opaque::boxed();
        // SAFETY: handle and matmul descriptor initialised; `alg` writable.
        let st = unsafe { (lt.fns.alg_sel_init)(h.ptr(), &mut *alg, &*matmul, MATMUL_ALG_DEFAULT) };
        lt.check(&what("cusparseLtMatmulAlgSelectionInit"), st)?;
        let mut plan = Opaque::boxed();
        // SAFETY: handle, matmul descriptor and algorithm selection initialised.
        let st = unsafe { (lt.fns.plan_init)(h.ptr(), &mut *plan, &*matmul, &*alg) };
        if let Err(e) = lt.check(&what("cusparseLtMatmulPlanInit"), st) {
            if let Some(d) = lt.fns.alg_sel_destroy {
                // SAFETY: initialised above, destroyed once (no plan was created from it).
                let _ = unsafe { d(&*alg) };
            }
            return Err(e);
        }
        Ok(LtMatmul {
            plan,
            alg,
            _matmul: matmul,
            _b: b,
            _cd: cd,
            workspace: None,
            out,
            m,
            weight: weight.clone(),
        })
    }

    /// (Re)allocate the workspace the plan asks for, when it asks for more than held.
    fn size_workspace(&mut self, stream: &Arc<CudaStream>) -> Result<()> {
        let h = &*self.weight.handle;
        let mut bytes = 0usize;
        // SAFETY: handle and plan initialised; one writable size_t.
        let st = unsafe { (h.lt.fns.get_workspace)(h.ptr(), &*self.plan, &mut bytes) };
        h.lt.check("cusparseLtMatmulGetWorkspace", st)?;
        if bytes > self.workspace.as_ref().map_or(0, |w| w.len()) {
            self.workspace =
                Some(stream.alloc_zeros::<u8>(bytes).map_err(|e| {
                    drv(&format!("allocate the cuSPARSELt workspace ({bytes} B)"), e)
                })?);
        }
        Ok(())
    }

    /// The output type this plan writes.
    pub fn out(&self) -> LtOut {
        self.out
    }

    fn check_bufs(&self, x: &CudaSlice<u16>, y: &LtOutBuf) -> Result<()> {
        let (n, k, m) = (self.weight.n, self.weight.k, self.m);
        if x.len() != m * k || y.len() != m * n || y.out() != self.out {
            return Err(Error::Config(format!(
                "cuSPARSELt matmul (M {m}, N {n}, K {k}, out {}): x has {} elements, y {} of {}",
                self.out.label(),
                x.len(),
                y.len(),
                y.out().label()
            )));
        }
        Ok(())
    }

    /// Pointers of (x, y, workspace) for a call on `stream`.
    fn ptrs(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<u16>,
        y: &mut LtOutBuf,
    ) -> (sys::CUdeviceptr, sys::CUdeviceptr, sys::CUdeviceptr) {
        // The guards are dropped at once: the backend's context has per-buffer event tracking
        // off (CudaOps::new), so they record nothing, and the buffers outlive the call.
        let xp = x.device_ptr(stream).0;
        let yp = match y {
            LtOutBuf::F32(b) => b.device_ptr_mut(stream).0,
            LtOutBuf::Bf16(b) => b.device_ptr_mut(stream).0,
        };
        let wsp = self
            .workspace
            .as_ref()
            .map_or(0, |w| w.device_ptr(stream).0);
        (xp, yp, wsp)
    }

    /// Let cuSPARSELt time its algorithms on these buffers and keep the fastest in the plan
    /// (`cusparseLtMatmulSearch`; a no-op when the library lacks it). Synchronises.
    pub fn search(
        &mut self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<u16>,
        y: &mut LtOutBuf,
    ) -> Result<()> {
        self.check_bufs(x, y)?;
        let h = self.weight.handle.clone();
        let Some(search) = h.lt.fns.search else {
            return Ok(());
        };
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| drv("bind context", e))?;
        let (xp, yp, wsp) = self.ptrs(stream, x, y);
        let wp = self.weight.compressed.device_ptr(stream).0;
        let (alpha, beta) = (1.0f32, 0.0f32);
        let mut cu = stream.cu_stream();
        // SAFETY: as in `run`; the plan is mutable here (search updates its algorithm).
        let st = unsafe {
            search(
                h.ptr(),
                &mut *self.plan,
                (&alpha) as *const f32 as *const c_void,
                wp as *const c_void,
                xp as *const c_void,
                (&beta) as *const f32 as *const c_void,
                yp as *const c_void,
                yp as *mut c_void,
                wsp as *mut c_void,
                &mut cu,
                1,
            )
        };
        h.lt.check("cusparseLtMatmulSearch", st)?;
        stream
            .synchronize()
            .map_err(|e| drv("synchronize after cusparseLtMatmulSearch", e))?;
        // The chosen algorithm (e.g. split-K) may need more workspace.
        self.size_workspace(stream)
    }

    /// Enqueue `Y = X·Wᵀ` on `stream` (x: M×K bf16 bits, y: M×N of [`out`](Self::out)).
    pub fn run(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<u16>,
        y: &mut LtOutBuf,
    ) -> Result<()> {
        self.check_bufs(x, y)?;
        let h = &*self.weight.handle;
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| drv("bind context", e))?;
        let (xp, yp, wsp) = self.ptrs(stream, x, y);
        let wp = self.weight.compressed.device_ptr(stream).0;
        let (alpha, beta) = (1.0f32, 0.0f32);
        let mut cu = stream.cu_stream();
        // SAFETY: handle and plan initialised for exactly these shapes and types; the
        // compressed weight, x (M·K bf16) and y (M·N of the plan's output type) were checked
        // or made for them; C = D = y with β = 0; the workspace has the size the plan asked
        // for (null when 0); α/β are host f32 (compute 32F) living across the call; one
        // stream, the CUstream of our context (cudaStream_t is the same handle).
        let st = unsafe {
            (h.lt.fns.matmul)(
                h.ptr(),
                &*self.plan,
                (&alpha) as *const f32 as *const c_void,
                wp as *const c_void,
                xp as *const c_void,
                (&beta) as *const f32 as *const c_void,
                yp as *const c_void,
                yp as *mut c_void,
                wsp as *mut c_void,
                &mut cu,
                1,
            )
        };
        h.lt.check("cusparseLtMatmul", st)
    }
}

impl Drop for LtMatmul {
    fn drop(&mut self) {
        let fns = &self.weight.handle.lt.fns;
        // SAFETY: plan and algorithm selection were initialised in `new` and are destroyed
        // once, before the descriptors (fields drop after this). The matmul descriptor has no
        // destroy function in these releases. Errors cannot be reported from drop.
        unsafe {
            let _ = (fns.plan_destroy)(&*self.plan);
            if let Some(d) = fns.alg_sel_destroy {
                let _ = d(&*self.alg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_clear_error_naming_every_path() {
        let dir =
            std::env::temp_dir().join(format!("asa-lth-no-cusparselt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A file that exists but is no shared library, and one that does not exist.
        let fake = dir.join(LIB_NAME);
        std::fs::write(&fake, b"not an ELF file").unwrap();
        let missing = dir.join("nowhere").join(LIB_NAME);
        let err = match CuSparseLt::load_from(&[fake.clone(), missing.clone()]) {
            Ok(_) => panic!("loaded a fake library"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("cuSPARSELt not found"), "{err}");
        assert!(err.contains(&fake.display().to_string()), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(
            err.contains(ENV_VAR) && err.contains("nvidia-cusparselt"),
            "{err}"
        );
        let err = match CuSparseLt::load_from(&[]) {
            Ok(_) => panic!("loaded nothing"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("cuSPARSELt not found"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn candidates_put_the_override_first_and_the_soname_next() {
        let dir = std::env::temp_dir().join(format!("asa-lth-lt-cand-{}", std::process::id()));
        let wheel = dir
            .join("site")
            .join("nvidia")
            .join("cusparselt")
            .join("lib");
        std::fs::create_dir_all(&wheel).unwrap();
        std::fs::write(wheel.join(LIB_NAME), b"").unwrap();
        // A directory override means the library inside it.
        let c = candidates(Some(dir.clone().into_os_string()), &[dir.join("site")]);
        assert_eq!(c[0], dir.join(LIB_NAME));
        assert_eq!(c[1], PathBuf::from(LIB_NAME));
        assert_eq!(c.last().unwrap(), &wheel.join(LIB_NAME));
        // A file override is used as is; no override: the soname first. Site dirs without the
        // wheel add nothing.
        let c = candidates(Some(OsString::from("/opt/x/libcusparseLt.so.0.7")), &[]);
        assert_eq!(c[0], PathBuf::from("/opt/x/libcusparseLt.so.0.7"));
        let c = candidates(None, &[dir.join("elsewhere")]);
        assert_eq!(c[0], PathBuf::from(LIB_NAME));
        assert!(c.iter().all(|p| !p.starts_with(dir.join("elsewhere"))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn status_names_follow_cusparse_h() {
        assert_eq!(status_name(0), "CUSPARSE_STATUS_SUCCESS");
        assert_eq!(status_name(3), "CUSPARSE_STATUS_INVALID_VALUE");
        assert_eq!(status_name(10), "CUSPARSE_STATUS_NOT_SUPPORTED");
        assert_eq!(status_name(99), "unknown cusparseStatus_t");
    }
}
