//! The driver calls of the library's own work, as typed results: the current device, the
//! primary context pushed around our work (never replacing the caller's), events that order
//! our stream after the program's, relaxed capture mode while we work, the card's size.
use std::os::raw::{c_int, c_uint};

use crate::cuda_abi::*;
use crate::real::{RealSlot, USES};

/// A failed driver call of ours: which one, and its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverError {
    pub call: &'static str,
    pub code: c_int,
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed with CUDA error {}", self.call, self.code)
    }
}

impl DriverError {
    pub fn is_out_of_memory(&self) -> bool {
        self.code == CUDA_ERROR_OUT_OF_MEMORY
    }
}

pub type Result<T> = std::result::Result<T, DriverError>;

/// The real function in `slot`, or a "not found" error naming it.
pub fn real<F: Copy>(call: &'static str, slot: &RealSlot<F>) -> Result<F> {
    slot.get().ok_or(DriverError { call, code: CUDA_ERROR_NOT_FOUND })
}

pub fn check(call: &'static str, rc: c_int) -> Result<()> {
    if rc == CUDA_SUCCESS {
        Ok(())
    } else {
        Err(DriverError { call, code: rc })
    }
}

/// The device of the calling thread's current context, None when it has none.
pub fn current_device() -> Option<c_int> {
    let get_ctx = USES.cuCtxGetCurrent.get()?;
    let get_dev = USES.cuCtxGetDevice.get()?;
    let mut ctx: Handle = std::ptr::null_mut();
    // SAFETY: a query with a valid out-parameter.
    if unsafe { get_ctx(&mut ctx) } != CUDA_SUCCESS || ctx.is_null() {
        return None;
    }
    let mut dev: c_int = -1;
    // SAFETY: as above.
    (unsafe { get_dev(&mut dev) } == CUDA_SUCCESS).then_some(dev)
}

/// The device of context `ctx`: pushed, asked, popped (the caller's current context is as
/// it was after).
pub fn device_of(ctx: Handle) -> Option<c_int> {
    let push = USES.cuCtxPushCurrent_v2.get()?;
    let pop = USES.cuCtxPopCurrent_v2.get()?;
    let get_dev = USES.cuCtxGetDevice.get()?;
    // SAFETY: ctx is the program's context, passed to a call of its own; pushed once, popped once.
    if unsafe { push(ctx) } != CUDA_SUCCESS {
        return None;
    }
    let mut dev: c_int = -1;
    // SAFETY: a query with a valid out-parameter.
    let rc = unsafe { get_dev(&mut dev) };
    let mut popped: Handle = std::ptr::null_mut();
    // SAFETY: pops what was pushed above.
    unsafe { pop(&mut popped) };
    (rc == CUDA_SUCCESS).then_some(dev)
}

pub fn primary_context(dev: c_int) -> Result<Handle> {
    let retain = real("cuDevicePrimaryCtxRetain", &USES.cuDevicePrimaryCtxRetain)?;
    let mut ctx: Handle = std::ptr::null_mut();
    // SAFETY: a valid device ordinal and out-parameter; the retain lasts the process.
    check("cuDevicePrimaryCtxRetain", unsafe { retain(&mut ctx, dev) })?;
    Ok(ctx)
}

pub fn total_memory(dev: c_int) -> Result<u64> {
    let f = real("cuDeviceTotalMem_v2", &USES.cuDeviceTotalMem_v2)?;
    let mut bytes = 0usize;
    // SAFETY: valid out-parameter.
    check("cuDeviceTotalMem_v2", unsafe { f(&mut bytes, dev) })?;
    Ok(bytes as u64)
}

/// The current context's device memory as the driver sees it: (free, total) bytes.
pub fn memory_info() -> Result<(u64, u64)> {
    let f = real("cuMemGetInfo_v2", &USES.cuMemGetInfo_v2)?;
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: valid out-parameters.
    check("cuMemGetInfo_v2", unsafe { f(&mut free, &mut total) })?;
    Ok((free as u64, total as u64))
}

/// Our work's scope on the program's thread: the primary context pushed (and popped on drop,
/// so the caller's current context is what it was) and the thread's capture mode relaxed (so
/// that our calls are legal while another thread captures a graph, and restored after).
pub struct WorkScope {
    pushed: bool,
    mode: Option<c_int>,
}

impl WorkScope {
    pub fn enter(ctx: Handle) -> WorkScope {
        let pushed = match USES.cuCtxPushCurrent_v2.get() {
            // SAFETY: ctx is the retained primary context.
            Some(push) => (unsafe { push(ctx) }) == CUDA_SUCCESS,
            None => false,
        };
        let mode = USES.cuThreadExchangeStreamCaptureMode.get().and_then(|f| {
            let mut m = CU_STREAM_CAPTURE_MODE_RELAXED;
            // SAFETY: exchanges this thread's mode; the old one comes back in m.
            (unsafe { f(&mut m) } == CUDA_SUCCESS).then_some(m)
        });
        WorkScope { pushed, mode }
    }
}

impl Drop for WorkScope {
    fn drop(&mut self) {
        if let (Some(mut m), Some(f)) = (self.mode, USES.cuThreadExchangeStreamCaptureMode.get()) {
            // SAFETY: puts back the mode this thread had.
            unsafe { f(&mut m) };
        }
        if self.pushed {
            if let Some(pop) = USES.cuCtxPopCurrent_v2.get() {
                let mut old: Handle = std::ptr::null_mut();
                // SAFETY: pops the context we pushed.
                unsafe { pop(&mut old) };
            }
        }
    }
}

/// One event, destroyed on drop.
pub struct Event(Handle);

impl Event {
    pub fn new() -> Result<Event> {
        let create = real("cuEventCreate", &USES.cuEventCreate)?;
        let mut e: Handle = std::ptr::null_mut();
        // SAFETY: valid out-parameter; timing disabled (cheaper, we only order by it).
        check("cuEventCreate", unsafe { create(&mut e, CU_EVENT_DISABLE_TIMING as c_uint) })?;
        Ok(Event(e))
    }

    /// Records on `stream` (a handle the program used: its work so far is what we wait for).
    pub fn record(&self, stream: u64) -> Result<()> {
        let record = real("cuEventRecord", &USES.cuEventRecord)?;
        // SAFETY: our event, the program's live stream.
        check("cuEventRecord", unsafe { record(self.0, stream as Handle) })
    }

    pub fn wait(&self) -> Result<()> {
        let sync = real("cuEventSynchronize", &USES.cuEventSynchronize)?;
        // SAFETY: our event.
        check("cuEventSynchronize", unsafe { sync(self.0) })
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Some(destroy) = USES.cuEventDestroy_v2.get() {
            // SAFETY: our event, destroyed once.
            unsafe { destroy(self.0) };
        }
    }
}

/// True when `event` (one of ours) has completed.
pub fn event_done(event: u64) -> bool {
    // SAFETY: an event of ours, never destroyed while the process runs.
    USES.cuEventQuery.get().is_some_and(|q| unsafe { q(event as Handle) } == CUDA_SUCCESS)
}

/// Makes the program's `stream` wait (on the device) for `event`, an event of our stream
/// (a restore's decode). Where the device wait cannot be queued, the host waits instead: the
/// caller's work must never start before the decode it reads.
pub fn stream_wait_event(stream: u64, event: u64) {
    let queued = USES.cuStreamWaitEvent.get().is_some_and(|wait| {
        // SAFETY: the program's live stream (it is about to use it) and an event of ours,
        // never destroyed while the process runs.
        (unsafe { wait(stream as Handle, event as Handle, 0) }) == CUDA_SUCCESS
    });
    if !queued {
        if let Some(sync) = USES.cuEventSynchronize.get() {
            // SAFETY: as above.
            unsafe { sync(event as Handle) };
        }
    }
}

/// Waits on the host for `event` (one of ours).
pub fn wait_event(event: u64) -> Result<()> {
    let sync = real("cuEventSynchronize", &USES.cuEventSynchronize)?;
    // SAFETY: an event of ours, never destroyed while the process runs.
    check("cuEventSynchronize", unsafe { sync(event as Handle) })
}

/// Waits (on the host) until every stream in `streams` has finished the work queued on it so
/// far; `everything`: the whole context (a buffer used on more streams than we track, or on a
/// stream since destroyed).
pub fn wait_for_streams(streams: &[u64], everything: bool) -> Result<()> {
    crate::stats::timed(&crate::stats::C.wait_ns, || wait_untimed(streams, everything))
}

fn wait_untimed(streams: &[u64], everything: bool) -> Result<()> {
    if everything {
        crate::stats::add(&crate::stats::C.context_syncs, 1);
        let sync = real("cuCtxSynchronize", &USES.cuCtxSynchronize)?;
        // SAFETY: no arguments.
        return check("cuCtxSynchronize", unsafe { sync() });
    }
    // an event of ours (created in our context) on each; a stream of another device's context
    // (a peer's kernel used the buffer) cannot take it: that stream is waited for as a whole
    let mut events = Vec::with_capacity(streams.len());
    for &s in streams {
        let e = Event::new()?;
        match e.record(s) {
            Ok(()) => events.push(e),
            Err(_) => synchronize_stream(s)?,
        }
    }
    events.iter().try_for_each(Event::wait)
}

/// Waits on the host for all the work queued on `stream` (of any context).
fn synchronize_stream(stream: u64) -> Result<()> {
    let sync = real("cuStreamSynchronize", &USES.cuStreamSynchronize)?;
    // SAFETY: the program's live stream.
    check("cuStreamSynchronize", unsafe { sync(stream as Handle) })
}

/// The whole context's work, finished (what the runtime's `cudaFree` does before freeing).
pub fn synchronize_context() -> Result<()> {
    wait_for_streams(&[], true)
}

/// True when the process runs on the CUDA double (tests): device memory is host memory.
pub fn on_cuda_double() -> bool {
    // SAFETY: a test-double function without arguments, present only there.
    USES.dbl_is_double.get().is_some_and(|f| unsafe { f() } != 0)
}
