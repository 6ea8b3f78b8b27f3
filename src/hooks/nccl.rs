//! NCCL. A collective's kernels read and write its buffers through NCCL's own device-side
//! work descriptors, never naming them in a launch we can read, so the call itself is the use:
//! its send buffer (read) and receive buffer (written) are made resident before the real call
//! and counted as used on its stream, so a later pack waits for the collective's kernels. Inside
//! `ncclGroupStart` .. `ncclGroupEnd` the kernels are only launched at the group's end: packing
//! is held off while any group is open. A collective captured into a graph flags its buffers
//! `CAPTURED` (a replay's NCCL kernels name them nowhere). A buffer registered with a communicator
//! (`ncclCommRegister`) is flagged `EXPORTED` and never packed. NCCL's own memory
//! (`ncclMemAlloc`, its internal buffers) is mapped by NCCL with cuMem* calls, which the VMM hooks
//! already record as program-mapped and never packed.
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{collect, collect_reads, mark, with_resident_as};
use crate::cuda_abi::*;
use crate::registry::{flag, Path};

/// `ncclInternalError`, when the real function cannot be found.
pub const MISSING: i32 = 3;
pub const PRIMITIVE: bool = false;
pub const EVEN_IN_PASSTHROUGH: bool = false;

/// `ncclUnhandledCudaError`: what a call gets when a buffer of ours could not come back.
const UNHANDLED_CUDA_ERROR: i32 = 1;

/// Groups opened and not yet ended, over all threads.
static GROUPS: AtomicUsize = AtomicUsize::new(0);

/// Collectives made while a group was open, since the last group ended.
static IN_GROUPS: AtomicUsize = AtomicUsize::new(0);

/// Packing waits while a group is open: its collectives' kernels are not launched yet.
pub fn group_under_way() -> bool {
    GROUPS.load(Ordering::SeqCst) > 0
}

/// A call that reads `send` and writes `recv` (either may be null) on `stream`.
fn collective(hook: &'static str, send: *const c_void, recv: *mut c_void, stream: Handle, real: impl FnOnce() -> i32) -> i32 {
    with_resident_as(
        hook,
        Path::Nccl,
        stream,
        |u| {
            // captured into a graph: its replays reach these buffers with no node naming them
            if super::graph::is_capturing(stream) {
                for p in [send as u64, recv as u64] {
                    if p != 0 {
                        mark(p, flag::CAPTURED);
                    }
                }
            }
            if !send.is_null() && send as *const c_void != recv as *const c_void {
                collect_reads(u, &[send as u64]);
            }
            if !recv.is_null() {
                collect(u, &[recv as u64], true);
                if group_under_way() {
                    IN_GROUPS.fetch_add(1, Ordering::SeqCst);
                }
            }
        },
        real,
        |_| UNHANDLED_CUDA_ERROR,
    )
}

pub unsafe fn ncclAllReduce(call: &impl Fn(*const c_void, *mut c_void, usize, c_int, c_int, Handle, Handle) -> i32, send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, op: c_int, comm: Handle, stream: Handle) -> i32 {
    collective("ncclAllReduce", send, recv, stream, || call(send, recv, count, dtype, op, comm, stream))
}

pub unsafe fn ncclBroadcast(call: &impl Fn(*const c_void, *mut c_void, usize, c_int, c_int, Handle, Handle) -> i32, send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, root: c_int, comm: Handle, stream: Handle) -> i32 {
    collective("ncclBroadcast", send, recv, stream, || call(send, recv, count, dtype, root, comm, stream))
}

pub unsafe fn ncclReduce(call: &impl Fn(*const c_void, *mut c_void, usize, c_int, c_int, c_int, Handle, Handle) -> i32, send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, op: c_int, root: c_int, comm: Handle, stream: Handle) -> i32 {
    collective("ncclReduce", send, recv, stream, || call(send, recv, count, dtype, op, root, comm, stream))
}

pub unsafe fn ncclAllGather(call: &impl Fn(*const c_void, *mut c_void, usize, c_int, Handle, Handle) -> i32, send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, comm: Handle, stream: Handle) -> i32 {
    collective("ncclAllGather", send, recv, stream, || call(send, recv, count, dtype, comm, stream))
}

pub unsafe fn ncclReduceScatter(call: &impl Fn(*const c_void, *mut c_void, usize, c_int, c_int, Handle, Handle) -> i32, send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, op: c_int, comm: Handle, stream: Handle) -> i32 {
    collective("ncclReduceScatter", send, recv, stream, || call(send, recv, count, dtype, op, comm, stream))
}

pub unsafe fn ncclSend(call: &impl Fn(*const c_void, usize, c_int, c_int, Handle, Handle) -> i32, send: *const c_void, count: usize, dtype: c_int, peer: c_int, comm: Handle, stream: Handle) -> i32 {
    collective("ncclSend", send, std::ptr::null_mut(), stream, || call(send, count, dtype, peer, comm, stream))
}

pub unsafe fn ncclRecv(call: &impl Fn(*mut c_void, usize, c_int, c_int, Handle, Handle) -> i32, recv: *mut c_void, count: usize, dtype: c_int, peer: c_int, comm: Handle, stream: Handle) -> i32 {
    collective("ncclRecv", std::ptr::null(), recv, stream, || call(recv, count, dtype, peer, comm, stream))
}

pub unsafe fn ncclGroupStart(call: &impl Fn() -> i32) -> i32 {
    GROUPS.fetch_add(1, Ordering::SeqCst);
    call()
}

/// The group's kernels are launched by the real call: packing resumes once it returned. Its
/// receive buffers are written only now, after their collectives' hooks marked them, so what
/// a GEMM read whole meanwhile no longer holds (the write epoch moves for every buffer, once
/// a group with a collective ended).
pub unsafe fn ncclGroupEnd(call: &impl Fn() -> i32) -> i32 {
    let rc = call();
    if IN_GROUPS.swap(0, Ordering::SeqCst) > 0 {
        crate::registry::anything_may_be_written();
    }
    let _ = GROUPS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(1)));
    rc
}

/// A registered buffer: NCCL (and the network or NVLink under it) may reach it at any time.
pub unsafe fn ncclCommRegister(call: &impl Fn(Handle, *mut c_void, usize, *mut *mut c_void) -> i32, comm: Handle, buff: *mut c_void, size: usize, handle: *mut *mut c_void) -> i32 {
    super::observe("ncclCommRegister", || mark(buff as u64, flag::EXPORTED));
    // resident for the registration itself (NCCL asks the driver about its range)
    collective("ncclCommRegister", std::ptr::null(), buff, std::ptr::null_mut(), || call(comm, buff, size, handle))
}
