//! Allocation hooks: every buffer the program allocates enters the registry, every free
//! leaves it. IPC export marks a buffer as never ours to remap.
use std::os::raw::c_void;

use super::{mark, observe};
use crate::cuda_abi::*;
use crate::registry::{flag, Origin, REGISTRY};
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;

fn allocated(hook: &'static str, rc: i32, addr: u64, size: usize, origin: Origin) {
    if rc != CUDA_SUCCESS || addr == 0 {
        return;
    }
    observe(hook, || {
        if REGISTRY.insert(addr, size as u64, origin, 0) {
            stats::allocated(size as u64);
        }
    });
}

/// A free: the buffer leaves the registry *before* the real free, so that another thread
/// whose allocation reuses the address at once never finds the old entry still there; if the
/// real free fails, the entry comes back.
fn free_with(hook: &'static str, addr: u64, real_free: impl FnOnce() -> i32) -> i32 {
    if addr == 0 {
        return real_free();
    }
    let gone = observe(hook, || REGISTRY.remove(addr)).flatten();
    let rc = real_free();
    observe(hook, || match (&gone, rc == CUDA_SUCCESS) {
        (Some(b), true) => stats::freed(b.size),
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

pub unsafe fn cudaMalloc(call: &impl Fn(*mut *mut c_void, usize) -> i32, dev_ptr: *mut *mut c_void, size: usize) -> i32 {
    let rc = call(dev_ptr, size);
    // SAFETY: dev_ptr is the out-parameter the runtime wrote on success.
    let addr = unsafe { out(dev_ptr as *const usize) } as u64;
    allocated("cudaMalloc", rc, addr, size, Origin::Runtime);
    rc
}

pub unsafe fn cudaFree(call: &impl Fn(*mut c_void) -> i32, ptr: *mut c_void) -> i32 {
    free_with("cudaFree", ptr as u64, || call(ptr))
}

pub unsafe fn cudaMallocAsync(call: &impl Fn(*mut *mut c_void, usize, Handle) -> i32, dev_ptr: *mut *mut c_void, size: usize, stream: Handle) -> i32 {
    let rc = call(dev_ptr, size, stream);
    // SAFETY: as in cudaMalloc.
    let addr = unsafe { out(dev_ptr as *const usize) } as u64;
    allocated("cudaMallocAsync", rc, addr, size, Origin::StreamOrdered);
    rc
}

pub unsafe fn cudaFreeAsync(call: &impl Fn(*mut c_void, Handle) -> i32, ptr: *mut c_void, stream: Handle) -> i32 {
    free_with("cudaFreeAsync", ptr as u64, || call(ptr, stream))
}

pub unsafe fn cuMemAlloc_v2(call: &impl Fn(*mut CUdeviceptr, usize) -> i32, dptr: *mut CUdeviceptr, size: usize) -> i32 {
    let rc = call(dptr, size);
    // SAFETY: dptr is the out-parameter the driver wrote on success.
    allocated("cuMemAlloc_v2", rc, unsafe { out(dptr) }, size, Origin::Driver);
    rc
}

pub unsafe fn cuMemFree_v2(call: &impl Fn(CUdeviceptr) -> i32, dptr: CUdeviceptr) -> i32 {
    free_with("cuMemFree_v2", dptr, || call(dptr))
}

pub unsafe fn cuMemAllocAsync(call: &impl Fn(*mut CUdeviceptr, usize, Handle) -> i32, dptr: *mut CUdeviceptr, size: usize, stream: Handle) -> i32 {
    let rc = call(dptr, size, stream);
    // SAFETY: as in cuMemAlloc_v2.
    allocated("cuMemAllocAsync", rc, unsafe { out(dptr) }, size, Origin::StreamOrdered);
    rc
}

pub unsafe fn cuMemFreeAsync(call: &impl Fn(CUdeviceptr, Handle) -> i32, dptr: CUdeviceptr, stream: Handle) -> i32 {
    free_with("cuMemFreeAsync", dptr, || call(dptr, stream))
}

pub unsafe fn cudaIpcGetMemHandle(call: &impl Fn(*mut c_void, *mut c_void) -> i32, handle: *mut c_void, ptr: *mut c_void) -> i32 {
    observe("cudaIpcGetMemHandle", || mark(ptr as u64, flag::EXPORTED));
    call(handle, ptr)
}

pub unsafe fn cuIpcGetMemHandle(call: &impl Fn(*mut c_void, CUdeviceptr) -> i32, handle: *mut c_void, dptr: CUdeviceptr) -> i32 {
    observe("cuIpcGetMemHandle", || mark(dptr, flag::EXPORTED));
    call(handle, dptr)
}
