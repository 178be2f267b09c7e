//! The CUDA side: what the build embedded (kernel fatbin, arches, nvcc version), a probe of the
//! driver and devices that never panics, the host build of the kernels' device-math helpers,
//! and the module loader and kernel launchers (DESIGN.md §5).
//!
//! cudarc loads libcuda at run time (`dynamic-loading`) and panics on the first driver call if
//! the library is missing, so every path here checks
//! [`is_culib_present`](cudarc::driver::sys::is_culib_present) first ([`probe`] does; code
//! that creates a context should call [`probe`] or [`libcuda_present`] before it).

pub mod attention;
pub mod blas;
pub mod compress24;
pub mod cusparselt;
pub mod gemm24;
pub mod host;
pub mod kernels;
pub mod memory;
pub mod mma_dense_emu;
pub mod ops;
pub mod simt;
pub mod timing;
pub mod topk;

use std::fmt::Write as _;
use std::sync::OnceLock;

use cudarc::driver::{result, sys, DriverError};

/// Bytes of the fatbin, aligned for the driver (cuModuleLoadData reads it in place).
#[cfg(asa_cuda_kernels)]
#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

#[cfg(asa_cuda_kernels)]
const FATBIN: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin")));

/// The kernels fatbin embedded at build time (all `kernels/*.cu`, one module), or `None` when
/// the crate was built without nvcc.
#[cfg(asa_cuda_kernels)]
pub static KERNELS_FATBIN: Option<&[u8]> = Some(&FATBIN.0);
/// The kernels fatbin embedded at build time (all `kernels/*.cu`, one module), or `None` when
/// the crate was built without nvcc.
#[cfg(not(asa_cuda_kernels))]
pub static KERNELS_FATBIN: Option<&[u8]> = None;

/// The first four bytes of every fatbin (0xBA55ED50, little-endian).
pub const FATBIN_MAGIC: u32 = 0xBA55_ED50;

/// Whether build.rs found nvcc and embedded the kernels.
pub fn kernels_built() -> bool {
    KERNELS_FATBIN.is_some()
}

/// SASS arches in the fatbin (e.g. `["sm_80", "sm_86", "sm_89", "sm_90"]`); empty when built
/// without kernels.
pub fn kernel_archs() -> &'static [&'static str] {
    static ARCHS: OnceLock<Vec<&'static str>> = OnceLock::new();
    ARCHS.get_or_init(|| {
        env!("ASA_LTH_KERNEL_ARCHS")
            .split(',')
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// The PTX target embedded for forward compatibility (e.g. `compute_90`), if any.
pub fn kernel_ptx() -> Option<&'static str> {
    Some(env!("ASA_LTH_KERNEL_PTX")).filter(|s| !s.is_empty())
}

/// The version of the nvcc that built the kernels (e.g. `13.0.88`), if any.
pub fn nvcc_version() -> Option<&'static str> {
    Some(env!("ASA_LTH_NVCC_VERSION")).filter(|s| !s.is_empty())
}

/// `(major, minor)` of the build toolkit, from [`nvcc_version`].
pub fn toolkit_version() -> Option<(u32, u32)> {
    parse_major_minor(nvcc_version()?)
}

fn parse_major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether the CUDA driver library can be loaded. Must be true before any other CUDA call.
pub fn libcuda_present() -> bool {
    // SAFETY: only tries to dlopen the driver library by its usual names and closes it again;
    // calls no CUDA function, so it is safe with or without a driver installed.
    unsafe { sys::is_culib_present() }
}

/// A driver error with its name and description, for [`crate::Error::Device`].
pub(crate) fn drv(what: &str, e: DriverError) -> crate::Error {
    crate::Error::Device(format!("{what}: {}", driver_error_text(&e)))
}

fn driver_error_text(e: &DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned());
    let desc = e.error_string().map(|s| s.to_string_lossy().into_owned());
    match (name, desc) {
        (Ok(n), Ok(d)) => format!("{n} ({d})"),
        (Ok(n), Err(_)) => n,
        _ => format!("CUresult {}", e.0 as i32),
    }
}

/// One CUDA device as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability `(major, minor)`.
    pub compute_capability: (i32, i32),
    pub total_memory_bytes: usize,
    pub multiprocessors: i32,
}

impl DeviceInfo {
    /// `sm_90` style name of the compute capability.
    pub fn sm(&self) -> String {
        format!(
            "sm_{}{}",
            self.compute_capability.0, self.compute_capability.1
        )
    }
}

/// What the driver said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverStatus {
    /// libcuda could not be loaded (no NVIDIA driver on this machine).
    NoLibrary,
    /// libcuda loaded but a call failed (e.g. cuInit: no device, or a driver/kernel mismatch).
    Failed { call: String, error: String },
    /// The driver works; `devices` may be empty.
    Ready {
        /// `cuDriverGetVersion`, e.g. 12080 for CUDA 12.8.
        version: i32,
        devices: Vec<DeviceInfo>,
    },
}

/// What this build and machine can do with CUDA. From [`probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaProbe {
    pub kernels_built: bool,
    pub kernel_archs: Vec<String>,
    pub kernel_ptx: Option<String>,
    pub nvcc_version: Option<String>,
    pub fatbin_bytes: usize,
    pub driver: DriverStatus,
    /// Problems that stop or slow the GPU path (driver older than the toolkit, a GPU the
    /// fatbin has no code for, ...), one sentence each.
    pub warnings: Vec<String>,
}

/// `(major, minor)` of a `cuDriverGetVersion` number (12080 → (12, 8)).
pub fn split_cuda_version(v: i32) -> (i32, i32) {
    (v / 1000, (v % 1000) / 10)
}

impl CudaProbe {
    /// Devices the driver reported (empty without a working driver).
    pub fn devices(&self) -> &[DeviceInfo] {
        match &self.driver {
            DriverStatus::Ready { devices, .. } => devices,
            _ => &[],
        }
    }

    /// At least one device is usable by the driver.
    pub fn has_gpu(&self) -> bool {
        !self.devices().is_empty()
    }

    /// At least one device and the kernels to run on it.
    pub fn gpu_ready(&self) -> bool {
        self.has_gpu() && self.kernels_built
    }

    /// The driver's CUDA version as `(major, minor)`, when the driver works.
    pub fn driver_version(&self) -> Option<(i32, i32)> {
        match &self.driver {
            DriverStatus::Ready { version, .. } => Some(split_cuda_version(*version)),
            _ => None,
        }
    }

    /// The driver's CUDA major version is older than the toolkit that built the fatbin, so the
    /// driver cannot load it (CUDA's compatibility across versions is minor-version only).
    pub fn driver_too_old(&self) -> bool {
        let toolkit = self.nvcc_version.as_deref().and_then(parse_major_minor);
        match (self.driver_version(), toolkit) {
            (Some((dmaj, _)), Some((tmaj, _))) => dmaj < tmaj as i32,
            _ => false,
        }
    }

    fn kernels_text(&self) -> String {
        if !self.kernels_built {
            return "built without CUDA kernels".into();
        }
        let mut s = format!("CUDA kernels for {}", self.kernel_archs.join(","));
        if let Some(ptx) = &self.kernel_ptx {
            let _ = write!(s, " + {ptx} PTX");
        }
        if let Some(v) = &self.nvcc_version {
            let _ = write!(s, " (nvcc {v})");
        }
        s
    }

    /// One line for `asa-lth info`, e.g. `no GPU: libcuda not found (CPU backend will be
    /// used); built without CUDA kernels`.
    pub fn one_line_summary(&self) -> String {
        let no_gpu = |why: String| {
            format!(
                "no GPU: {why} (CPU backend will be used); {}",
                self.kernels_text()
            )
        };
        let mut line = match &self.driver {
            DriverStatus::NoLibrary => no_gpu("libcuda not found".into()),
            DriverStatus::Failed { call, error } => no_gpu(format!("{call} failed: {error}")),
            DriverStatus::Ready { version, devices } if devices.is_empty() => {
                let (a, b) = split_cuda_version(*version);
                no_gpu(format!("CUDA driver {a}.{b} reports no devices"))
            }
            DriverStatus::Ready { version, devices } => {
                let (a, b) = split_cuda_version(*version);
                let d = &devices[0];
                let more = if devices.len() > 1 {
                    format!(" (+{} more)", devices.len() - 1)
                } else {
                    String::new()
                };
                format!(
                    "GPU 0: {} ({}, {:.1} GiB){more}; driver CUDA {a}.{b}; {}",
                    d.name,
                    d.sm(),
                    d.total_memory_bytes as f64 / (1u64 << 30) as f64,
                    self.kernels_text()
                )
            }
        };
        if let Some(first) = self.warnings.first() {
            let _ = write!(line, "; WARNING: {first}");
            if self.warnings.len() > 1 {
                let _ = write!(line, " (+{} more warnings)", self.warnings.len() - 1);
            }
        }
        line
    }

    /// Several lines: build, driver, each device, warnings.
    pub fn details(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "kernels:   {}", self.kernels_text());
        if self.kernels_built {
            let _ = writeln!(s, "fatbin:    {} bytes", self.fatbin_bytes);
        }
        match &self.driver {
            DriverStatus::NoLibrary => {
                let _ = writeln!(s, "driver:    libcuda not found (no NVIDIA driver)");
            }
            DriverStatus::Failed { call, error } => {
                let _ = writeln!(s, "driver:    {call} failed: {error}");
            }
            DriverStatus::Ready { version, devices } => {
                let (a, b) = split_cuda_version(*version);
                let _ = writeln!(s, "driver:    CUDA {a}.{b} ({version})");
                if devices.is_empty() {
                    let _ = writeln!(s, "devices:   none");
                }
                for d in devices {
                    let _ = writeln!(
                        s,
                        "GPU {}:     {}, compute capability {}.{} ({}), {:.1} GiB, {} SMs",
                        d.ordinal,
                        d.name,
                        d.compute_capability.0,
                        d.compute_capability.1,
                        d.sm(),
                        d.total_memory_bytes as f64 / (1u64 << 30) as f64,
                        d.multiprocessors
                    );
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning:   {w}");
        }
        s
    }
}

/// Probe the build and the machine. Never panics: without libcuda it makes no CUDA call.
pub fn probe() -> CudaProbe {
    let driver = if libcuda_present() {
        // cudarc resolves each driver symbol on first use and panics if one is missing (a very
        // old or broken libcuda); catch that rather than take the process down.
        std::panic::catch_unwind(query_driver).unwrap_or_else(|_| DriverStatus::Failed {
            call: "loading libcuda symbols".into(),
            error: "the driver library is missing an expected entry point".into(),
        })
    } else {
        DriverStatus::NoLibrary
    };
    let mut p = CudaProbe {
        kernels_built: kernels_built(),
        kernel_archs: kernel_archs().iter().map(|s| s.to_string()).collect(),
        kernel_ptx: kernel_ptx().map(str::to_string),
        nvcc_version: nvcc_version().map(str::to_string),
        fatbin_bytes: KERNELS_FATBIN.map_or(0, <[u8]>::len),
        driver,
        warnings: Vec::new(),
    };
    p.warnings = compatibility_warnings(&p, toolkit_version());
    p
}

/// Warnings about running this build's kernels on the probed driver and devices.
/// `toolkit` is the build toolkit's `(major, minor)`.
pub fn compatibility_warnings(p: &CudaProbe, toolkit: Option<(u32, u32)>) -> Vec<String> {
    let mut w = Vec::new();
    let DriverStatus::Ready { version, devices } = &p.driver else {
        return w;
    };
    if devices.is_empty() {
        return w;
    }
    if !p.kernels_built {
        w.push(
            "a GPU is present but the crate was built without CUDA kernels: rebuild with nvcc \
             (set NVCC or CUDA_HOME, or run scripts/install-cuda-toolchain.sh)"
                .into(),
        );
        return w;
    }
    let (dmaj, dmin) = split_cuda_version(*version);
    if let Some((tmaj, tmin)) = toolkit {
        let (tmaj, tmin) = (tmaj as i32, tmin as i32);
        if dmaj < tmaj {
            w.push(format!(
                "the driver supports CUDA {dmaj}.{dmin} but the kernels were built by nvcc \
                 {tmaj}.{tmin}: the driver cannot load this fatbin. Update the driver, or \
                 rebuild with a CUDA {dmaj}.x toolkit (NVCC=/path/to/nvcc cargo build)"
            ));
        } else if dmaj == tmaj && dmin < tmin {
            w.push(format!(
                "the driver supports CUDA {dmaj}.{dmin}, older than the build toolkit \
                 {tmaj}.{tmin}: SASS loads through minor-version compatibility, but the PTX \
                 fallback cannot be JIT-compiled; update the driver if loading fails"
            ));
        }
    }
    for d in devices {
        let (maj, min) = d.compute_capability;
        let sm = d.sm();
        if maj < 8 {
            w.push(format!(
                "GPU {} ({}) is {sm}: the kernels need sm_80 or newer",
                d.ordinal, d.name
            ));
        } else if !p
            .kernel_archs
            .iter()
            .any(|a| *a == sm || a.strip_suffix('a') == Some(sm.as_str()))
        {
            let ptx_ok = p.kernel_ptx.as_deref().is_some_and(|ptx| {
                ptx.trim_start_matches("compute_")
                    .parse::<i32>()
                    .is_ok_and(|v| v <= maj * 10 + min)
            });
            w.push(if ptx_ok {
                format!(
                    "GPU {} ({}) is {sm}, which has no SASS in the fatbin: the driver will \
                     JIT-compile the PTX on first load (slower start, untuned code)",
                    d.ordinal, d.name
                )
            } else {
                format!(
                    "GPU {} ({}) is {sm}, which the fatbin has no code for",
                    d.ordinal, d.name
                )
            });
        }
    }
    w
}

fn query_driver() -> DriverStatus {
    let fail = |call: &str, e: DriverError| DriverStatus::Failed {
        call: call.into(),
        error: driver_error_text(&e),
    };
    // Only reached after `libcuda_present()` returned true.
    if let Err(e) = result::init() {
        return fail("cuInit", e);
    }
    let mut version = 0i32;
    // SAFETY: libcuda is loaded and initialised; the out-pointer is a live local i32.
    if let Err(e) = unsafe { sys::cuDriverGetVersion(&mut version).result() } {
        return fail("cuDriverGetVersion", e);
    }
    let count = match result::device::get_count() {
        Ok(c) => c,
        Err(e) => return fail("cuDeviceGetCount", e),
    };
    let mut devices = Vec::new();
    for ordinal in 0..count {
        let dev = match result::device::get(ordinal) {
            Ok(d) => d,
            Err(e) => return fail("cuDeviceGet", e),
        };
        let name = result::device::get_name(dev).unwrap_or_else(|_| "unknown".into());
        use sys::CUdevice_attribute as A;
        // SAFETY: `dev` was returned by cuDeviceGet just above.
        let attr = |a| unsafe { result::device::get_attribute(dev, a) }.unwrap_or(-1);
        let major = attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        let minor = attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        let sms = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        // SAFETY: `dev` was returned by cuDeviceGet just above.
        let mem = unsafe { result::device::total_mem(dev) }.unwrap_or(0);
        devices.push(DeviceInfo {
            ordinal: ordinal as usize,
            name,
            compute_capability: (major, minor),
            total_memory_bytes: mem,
            multiprocessors: sms,
        });
    }
    DriverStatus::Ready { version, devices }
}
