//! GPU timing with CUDA events (issue 6 "Timing"): events created with timing enabled
//! (`CU_EVENT_DEFAULT`; cudarc's default disables timing), recorded on the backend's stream,
//! so a measured interval covers exactly the device work enqueued between `start` and `stop`
//! — what criterion's `iter_custom` and the training loop's tokens/s need.
//!
//! ```ignore
//! let timer = ops.timer()?;
//! timer.start()?;
//! model.forward(..)?; model.backward(..)?;
//! timer.stop()?;
//! let ms = timer.elapsed_ms()?; // waits for the stop event
//! ```

use std::sync::Arc;

use cudarc::driver::{sys, CudaEvent, CudaStream};

use super::drv;
use crate::Result;

/// A start/stop pair of timing events on one stream.
#[derive(Debug)]
pub struct GpuTimer {
    stream: Arc<CudaStream>,
    start: CudaEvent,
    stop: CudaEvent,
}

impl GpuTimer {
    /// Two timing-enabled events on `stream`'s context.
    pub fn new(stream: &Arc<CudaStream>) -> Result<Self> {
        let ctx = stream.context();
        let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = ctx
            .new_event(flags)
            .map_err(|e| drv("create timing event", e))?;
        let stop = ctx
            .new_event(flags)
            .map_err(|e| drv("create timing event", e))?;
        Ok(GpuTimer {
            stream: stream.clone(),
            start,
            stop,
        })
    }

    /// Record the start event (everything enqueued after this is timed).
    pub fn start(&self) -> Result<()> {
        self.start
            .record(&self.stream)
            .map_err(|e| drv("record start event", e))
    }

    /// Record the stop event.
    pub fn stop(&self) -> Result<()> {
        self.stop
            .record(&self.stream)
            .map_err(|e| drv("record stop event", e))
    }

    /// Milliseconds of device time between the last `start` and `stop` (blocks until the stop
    /// event has completed).
    pub fn elapsed_ms(&self) -> Result<f32> {
        self.start
            .elapsed_ms(&self.stop)
            .map_err(|e| drv("cuEventElapsedTime", e))
    }

    /// [`elapsed_ms`](Self::elapsed_ms) as a [`std::time::Duration`] (for criterion's
    /// `iter_custom`).
    pub fn elapsed(&self) -> Result<std::time::Duration> {
        let ms = self.elapsed_ms()?;
        Ok(std::time::Duration::from_secs_f64(
            f64::from(ms.max(0.0)) / 1e3,
        ))
    }
}
