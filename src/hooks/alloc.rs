//! Allocation hooks. In `observe` every buffer the program allocates enters the registry and
//! every free leaves it. In the packing modes a runtime `cudaMalloc` of at least
//! `LTSHIM_MIN_BYTES` is answered by the engine itself (a VMM range it can pack); smaller,
//! stream-ordered and driver-API allocations go to the real call and are counted against the
//! device limit; frees of the engine's buffers
//! go to the engine, also after the library has fallen back to passthrough (a VMM range freed
//! by the real `cudaFree` would fail). IPC export marks a buffer as never ours to remap.
use std::os::raw::{c_int, c_void};

use super::{mark, observe};
use crate::cuda_abi::*;
use crate::engine::{self, budget::Part};
use crate::registry::{flag, Backing, Buffer, Origin, REGISTRY};
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;
/// Frees of the engine's buffers must reach it even in passthrough.
pub const EVEN_IN_PASSTHROUGH: bool = true;

/// Registers a buffer the real call allocated; `charged`: counted against the limit of that
/// engine's device.
fn allocated(hook: &'static str, rc: i32, addr: u64, size: usize, origin: Origin, charged: Option<&'static engine::Engine>) {
    if rc != CUDA_SUCCESS || addr == 0 {
        return;
    }
    observe(hook, || {
        let b = Buffer::new(addr, size as u64, origin, Backing::Foreign, if charged.is_some() { flag::CHARGED } else { 0 });
        if let Some(e) = charged {
            b.device.store(e.device(), std::sync::atomic::Ordering::Relaxed);
        }
        if REGISTRY.insert_buffer(b).is_some() {
            stats::allocated(size as u64);
        } else if let Some(e) = charged {
            e.budget.give(Part::Passthrough, size as u64);
        }
    });
}

/// A free: the engine's own buffers go to it; others leave the registry *before* the real
/// free, so that another thread whose allocation reuses the address at once never finds the
/// old entry still there; if the real free fails, the entry comes back.
fn free_with(hook: &'static str, addr: u64, real_free: impl FnOnce() -> i32) -> i32 {
    if addr == 0 {
        return real_free();
    }
    let ours = observe(hook, || REGISTRY.find(addr).filter(|b| b.is_vmm()).and_then(|b| engine::of_buffer(&b))).flatten();
    if let Some(e) = ours {
        if let Some(rc) = observe(hook, || e.free(addr)).flatten() {
            return rc;
        }
    }
    if !crate::state::is_active() {
        return real_free();
    }
    let gone = observe(hook, || REGISTRY.remove(addr)).flatten();
    let rc = real_free();
    observe(hook, || match (&gone, rc == CUDA_SUCCESS) {
        (Some(b), true) => {
            stats::freed(b.size);
            if let (true, Some(e)) = (b.has_flag(flag::CHARGED), engine::of_buffer(b)) {
                e.budget.give(Part::Passthrough, b.size);
            }
        }
        (Some(b), false) => {
            REGISTRY.restore(b.clone());
        }
        (None, true) => stats::add(&stats::C.frees_unknown, 1),
        (None, false) => {}
    });
    rc
}

/// Reads an out-parameter the real call just wrote.
///
/// # Safety
/// `p` is null or valid for reads.
unsafe fn out<T: Copy + Default>(p: *const T) -> T {
    if p.is_null() {
        T::default()
    } else {
        // SAFETY: per the contract.
        unsafe { *p }
    }
}

/// The engine, for an allocation of `size` bytes it should answer itself (packing mode, large
/// enough, the library active); first the runtime creates its context (its cudaMalloc would),
/// so that there is a device to allocate on.
fn engine_for(size: usize) -> Option<&'static engine::Engine> {
    if !crate::state::is_active() || !crate::residency::packing() {
        return None;
    }
    let min = crate::state::config()?.min_bytes;
    if (size as u64) < min {
        return None;
    }
    if crate::gpu::driver::current_device().is_none() {
        if let Some(free) = super::REAL.cudaFree.get() {
            // SAFETY: cudaFree(NULL) only initialises the runtime's context.
            unsafe { free(std::ptr::null_mut()) };
        }
    }
    engine::get()
}

/// A VMM allocation by the engine: Some(status) when it answered.
fn allocate_vmm(hook: &'static str, size: usize, out_ptr: *mut u64) -> Option<i32> {
    let result = observe(hook, || engine_for(size).and_then(|e| e.allocate(size as u64))).flatten()?;
    match result {
        Ok(va) => {
            // SAFETY: the program's out-parameter (checked non-null by the caller).
            unsafe { *out_ptr = va };
            Some(CUDA_SUCCESS)
        }
        Err(rc) => Some(rc),
    }
}

/// A pass-through allocation in a packing mode: charged against the limit of the current
/// device first (packing to make room), and retried after packing when the card itself is out
/// of memory. The status, and the engine the bytes were charged to.
fn allocate_passthrough(hook: &'static str, size: usize, real: impl Fn() -> i32) -> (i32, Option<&'static engine::Engine>) {
    let e = if crate::state::is_active() && crate::residency::packing() { observe(hook, engine::current).flatten() } else { None };
    let Some(e) = e else { return (real(), None) };
    match observe(hook, || e.charge_passthrough(size as u64)) {
        Some(false) => return (CUDA_ERROR_OUT_OF_MEMORY, None),
        None => return (real(), None),
        Some(true) => {}
    }
    let mut rc = real();
    while rc == CUDA_ERROR_OUT_OF_MEMORY && observe(hook, || e.pack_for_card()).unwrap_or(false) {
        rc = real();
    }
    if rc != CUDA_SUCCESS {
        e.budget.give(Part::Passthrough, size as u64);
    }
    (rc, (rc == CUDA_SUCCESS).then_some(e))
}

pub unsafe fn cudaMalloc(call: &impl Fn(*mut *mut c_void, usize) -> i32, dev_ptr: *mut *mut c_void, size: usize) -> i32 {
    if !dev_ptr.is_null() {
        if let Some(rc) = allocate_vmm("cudaMalloc", size, dev_ptr as *mut u64) {
            return rc;
        }
    }
    let (rc, charged) = allocate_passthrough("cudaMalloc", size, || call(dev_ptr, size));
    // SAFETY: dev_ptr is the out-parameter the runtime wrote on success.
    let addr = unsafe { out(dev_ptr as *const usize) } as u64;
    allocated("cudaMalloc", rc, addr, size, Origin::Runtime, charged);
    rc
}

pub unsafe fn cudaFree(call: &impl Fn(*mut c_void) -> i32, ptr: *mut c_void) -> i32 {
    free_with("cudaFree", ptr as u64, || call(ptr))
}

pub unsafe fn cudaMallocAsync(call: &impl Fn(*mut *mut c_void, usize, Handle) -> i32, dev_ptr: *mut *mut c_void, size: usize, stream: Handle) -> i32 {
    let (rc, charged) = allocate_passthrough("cudaMallocAsync", size, || call(dev_ptr, size, stream));
    // SAFETY: as in cudaMalloc.
    let addr = unsafe { out(dev_ptr as *const usize) } as u64;
    allocated("cudaMallocAsync", rc, addr, size, Origin::StreamOrdered, charged);
    rc
}

pub unsafe fn cudaFreeAsync(call: &impl Fn(*mut c_void, Handle) -> i32, ptr: *mut c_void, stream: Handle) -> i32 {
    free_with("cudaFreeAsync", ptr as u64, || call(ptr, stream))
}

/// Driver allocations pass through in every mode: besides programs of the driver API, they are
/// what libraries with a static runtime (cuBLAS, cuDNN, cuFFT, NCCL) allocate for themselves,
/// and use from their kernels without naming it in any call we see.
pub unsafe fn cuMemAlloc_v2(call: &impl Fn(*mut CUdeviceptr, usize) -> i32, dptr: *mut CUdeviceptr, size: usize) -> i32 {
    let (rc, charged) = allocate_passthrough("cuMemAlloc_v2", size, || call(dptr, size));
    // SAFETY: dptr is the out-parameter the driver wrote on success.
    allocated("cuMemAlloc_v2", rc, unsafe { out(dptr) }, size, Origin::Driver, charged);
    rc
}

pub unsafe fn cuMemFree_v2(call: &impl Fn(CUdeviceptr) -> i32, dptr: CUdeviceptr) -> i32 {
    free_with("cuMemFree_v2", dptr, || call(dptr))
}

pub unsafe fn cuMemAllocAsync(call: &impl Fn(*mut CUdeviceptr, usize, Handle) -> i32, dptr: *mut CUdeviceptr, size: usize, stream: Handle) -> i32 {
    let (rc, charged) = allocate_passthrough("cuMemAllocAsync", size, || call(dptr, size, stream));
    // SAFETY: as in cuMemAlloc_v2.
    allocated("cuMemAllocAsync", rc, unsafe { out(dptr) }, size, Origin::StreamOrdered, charged);
    rc
}

pub unsafe fn cuMemFreeAsync(call: &impl Fn(CUdeviceptr, Handle) -> i32, dptr: CUdeviceptr, stream: Handle) -> i32 {
    free_with("cuMemFreeAsync", dptr, || call(dptr, stream))
}

/// IPC export: the buffer is never remapped; on an engine buffer (VMM memory, which the
/// runtime cannot export) the failure is explained in one line.
fn exported(hook: &'static str, addr: u64, rc: c_int) -> c_int {
    observe(hook, || {
        mark(addr, flag::EXPORTED);
        if rc != CUDA_SUCCESS && REGISTRY.find(addr).is_some_and(|b| b.is_vmm()) {
            crate::warn_once!(
                "{hook} failed with error {rc}: the buffer is VMM memory that ltshim allocated to be able to pack it, which CUDA IPC cannot share; run with LTSHIM_MODE=observe (or LTSHIM_MIN_BYTES above the buffer's size) to share buffers between processes"
            );
        }
    });
    rc
}

pub unsafe fn cudaIpcGetMemHandle(call: &impl Fn(*mut c_void, *mut c_void) -> i32, handle: *mut c_void, ptr: *mut c_void) -> i32 {
    exported("cudaIpcGetMemHandle", ptr as u64, call(handle, ptr))
}

pub unsafe fn cuIpcGetMemHandle(call: &impl Fn(*mut c_void, CUdeviceptr) -> i32, handle: *mut c_void, dptr: CUdeviceptr) -> i32 {
    exported("cuIpcGetMemHandle", dptr, call(handle, dptr))
}

/// Memory bound to a multicast object (NVLink multicast: NVLS in NCCL, PyTorch's symmetric
/// memory) is reached by every GPU of the team through the object, not through any call we
/// see: every buffer in the range is flagged exported, and so made resident, before the real
/// call binds it, and is never packed again.
pub unsafe fn cuMulticastBindAddr(call: &impl Fn(u64, usize, CUdeviceptr, usize, u64) -> i32, mc_handle: u64, mc_offset: usize, memptr: CUdeviceptr, size: usize, flags: u64) -> i32 {
    observe("cuMulticastBindAddr", || {
        for b in REGISTRY.overlapping(memptr, size as u64) {
            mark(b.start, flag::EXPORTED);
        }
    });
    call(mc_handle, mc_offset, memptr, size, flags)
}
