//! Device memory accounting for the CUDA backend (issue 6 "Memory"): every allocation that
//! [`CudaOps`](super::ops::CudaOps) makes — tensors, operand scratch, the cuBLASLt workspace,
//! 2:4 weights — goes through [`alloc`], which charges a [`MemLedger`] (current and peak
//! bytes) and turns a driver out-of-memory into an [`Error::Device`] naming the tensor or op,
//! the bytes asked, what this process holds, and the driver's free/total memory.
//!
//! A [`DeviceBuffer`] gives its bytes back to the ledger when dropped. Zero-length buffers
//! occupy one element on the device (drivers reject 0-byte allocations inconsistently) but
//! report length 0 and are never read or written.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{sys, CudaSlice, CudaStream, DeviceRepr, DriverError};

use super::drv;
use crate::{Error, Result};

/// Current and peak bytes of device memory held through one [`CudaOps`](super::ops::CudaOps).
#[derive(Debug, Default)]
pub struct MemLedger {
    current: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicUsize,
    /// Free text appended to out-of-memory errors (e.g. the run's config), see
    /// [`MemLedger::set_context`].
    context: Mutex<String>,
}

impl MemLedger {
    /// Bytes held now.
    pub fn current_bytes(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }
    /// The most bytes held at once since creation or the last [`reset_peak`](Self::reset_peak).
    pub fn peak_bytes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
    /// Live allocations.
    pub fn allocations(&self) -> usize {
        self.allocations.load(Ordering::Relaxed)
    }
    /// Restart peak tracking from the current usage (e.g. after model setup).
    pub fn reset_peak(&self) {
        self.peak.store(self.current_bytes(), Ordering::Relaxed);
    }
    /// Text added to every out-of-memory error from now on, e.g. `config small, b=16 t=256`
    /// (the Ops interface does not know the run's configuration; the caller does).
    pub fn set_context(&self, text: impl Into<String>) {
        if let Ok(mut c) = self.context.lock() {
            *c = text.into();
        }
    }
    fn context(&self) -> String {
        self.context.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn charge(&self, bytes: usize) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        self.allocations.fetch_add(1, Ordering::Relaxed);
    }

    fn release(&self, bytes: usize) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
        self.allocations.fetch_sub(1, Ordering::Relaxed);
    }

    /// The error for a failed allocation of `bytes` for `what`.
    pub(crate) fn alloc_error(
        &self,
        stream: &CudaStream,
        what: &str,
        bytes: usize,
        e: DriverError,
    ) -> Error {
        if e.0 != sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            return drv(&format!("allocate {what} ({bytes} bytes)"), e);
        }
        let info = match stream.context().mem_get_info() {
            Ok((free, total)) => format!("; the driver reports {free} bytes free of {total}"),
            Err(_) => String::new(),
        };
        let ctx = self.context();
        let ctx = if ctx.is_empty() {
            String::new()
        } else {
            format!(" [{ctx}]")
        };
        Error::Device(format!(
            "out of GPU memory allocating {what}: {bytes} bytes asked, {} bytes already held \
             by this process in {} allocations (peak {}){info}{ctx}",
            self.current_bytes(),
            self.allocations(),
            self.peak_bytes(),
        ))
    }
}

/// A device buffer of `T` charged to a [`MemLedger`].
#[derive(Debug)]
pub struct DeviceBuffer<T> {
    slice: CudaSlice<T>,
    len: usize,
    bytes: usize,
    ledger: Arc<MemLedger>,
}

impl<T> DeviceBuffer<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes charged to the ledger (at least one element's worth).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The underlying cudarc slice (`max(len, 1)` elements).
    pub fn slice(&self) -> &CudaSlice<T> {
        &self.slice
    }
    /// The underlying cudarc slice, mutably.
    pub fn slice_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.slice
    }
}

impl<T> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        // The CudaSlice frees itself (stream-ordered) right after this.
        self.ledger.release(self.bytes);
    }
}

/// Bytes for `len` elements of `T`, or an error naming `what` on overflow.
pub fn bytes_for<T>(len: usize, what: &str) -> Result<usize> {
    len.max(1)
        .checked_mul(std::mem::size_of::<T>())
        .ok_or_else(|| Error::Device(format!("{what}: {len} elements overflow the address space")))
}

/// Allocate `len` uninitialised elements on `stream`, charged to `ledger`.
///
/// The contents are undefined: callers must write every element they later read (every
/// caller in this backend fills, uploads into, or fully overwrites the buffer with a kernel
/// before reading it).
pub fn alloc<T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    ledger: &Arc<MemLedger>,
    len: usize,
    what: &str,
) -> Result<DeviceBuffer<T>> {
    let bytes = bytes_for::<T>(len, what)?;
    // SAFETY: the memory is uninitialised, which is sound for the plain-old-data `DeviceRepr`
    // types used here as long as nothing reads it before it is written (the contract above).
    let slice = unsafe { stream.alloc::<T>(len.max(1)) }
        .map_err(|e| ledger.alloc_error(stream, what, bytes, e))?;
    ledger.charge(bytes);
    Ok(DeviceBuffer {
        slice,
        len,
        bytes,
        ledger: ledger.clone(),
    })
}

/// A charge for memory allocated outside [`alloc`] (e.g. by a helper that returns cudarc
/// slices); released when dropped.
#[derive(Debug)]
pub struct Charge {
    bytes: usize,
    ledger: Arc<MemLedger>,
}

impl Charge {
    /// Charge `bytes` to `ledger`.
    pub fn new(ledger: &Arc<MemLedger>, bytes: usize) -> Self {
        ledger.charge(bytes);
        Charge {
            bytes,
            ledger: ledger.clone(),
        }
    }
    /// Bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.ledger.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_tracks_current_and_peak() {
        let l = Arc::new(MemLedger::default());
        let a = Charge::new(&l, 100);
        let b = Charge::new(&l, 50);
        assert_eq!(
            (l.current_bytes(), l.peak_bytes(), l.allocations()),
            (150, 150, 2)
        );
        drop(a);
        assert_eq!(
            (l.current_bytes(), l.peak_bytes(), l.allocations()),
            (50, 150, 1)
        );
        l.reset_peak();
        assert_eq!(l.peak_bytes(), 50);
        drop(b);
        assert_eq!((l.current_bytes(), l.allocations()), (0, 0));
    }

    #[test]
    fn byte_counts_round_zero_up_and_catch_overflow() {
        assert_eq!(bytes_for::<f32>(0, "x").unwrap(), 4);
        assert_eq!(bytes_for::<u16>(10, "x").unwrap(), 20);
        let e = bytes_for::<f32>(usize::MAX, "blocks.0.w").unwrap_err();
        assert!(e.to_string().contains("blocks.0.w"), "{e}");
    }
}
