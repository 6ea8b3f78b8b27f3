//! Memory the program maps itself (cuMemCreate/cuMemMap: PyTorch's expandable segments).
//!
//! Such ranges are registered (so that launches and library calls find their pointers) but
//! flagged `USER_MAPPED`: the mapping is the program's, so the library never remaps it. The
//! first map prints one warning saying so.
use std::os::raw::c_void;

use super::observe;
use crate::cuda_abi::*;
use crate::registry::{flag, Origin, REGISTRY};
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;
pub const EVEN_IN_PASSTHROUGH: bool = false;

pub unsafe fn cuMemCreate(call: &impl Fn(*mut u64, usize, *const c_void, u64) -> i32, handle: *mut u64, size: usize, prop: *const c_void, flags: u64) -> i32 {
    call(handle, size, prop, flags)
}

pub unsafe fn cuMemRelease(call: &impl Fn(u64) -> i32, handle: u64) -> i32 {
    call(handle)
}

pub unsafe fn cuMemAddressReserve(call: &impl Fn(*mut CUdeviceptr, usize, usize, CUdeviceptr, u64) -> i32, ptr: *mut CUdeviceptr, size: usize, alignment: usize, addr: CUdeviceptr, flags: u64) -> i32 {
    call(ptr, size, alignment, addr, flags)
}

pub unsafe fn cuMemAddressFree(call: &impl Fn(CUdeviceptr, usize) -> i32, ptr: CUdeviceptr, size: usize) -> i32 {
    call(ptr, size)
}

pub unsafe fn cuMemMap(call: &impl Fn(CUdeviceptr, usize, usize, u64, u64) -> i32, ptr: CUdeviceptr, size: usize, offset: usize, handle: u64, flags: u64) -> i32 {
    let rc = call(ptr, size, offset, handle, flags);
    if rc == CUDA_SUCCESS {
        observe("cuMemMap", || {
            crate::warn_once!(
                "the program maps device memory itself (cuMemMap; PyTorch does this with \
                 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True): those buffers are observed but never packed"
            );
            stats::fallback(stats::Fallback::UserMappedMemory);
            stats::add(&stats::C.user_maps, 1);
            if REGISTRY.insert(ptr, size as u64, Origin::UserMapped, flag::USER_MAPPED) {
                stats::flagged(flag::USER_MAPPED);
            }
        });
    }
    rc
}

pub unsafe fn cuMemUnmap(call: &impl Fn(CUdeviceptr, usize) -> i32, ptr: CUdeviceptr, size: usize) -> i32 {
    let rc = call(ptr, size);
    if rc == CUDA_SUCCESS {
        observe("cuMemUnmap", || {
            stats::add(&stats::C.user_unmaps, 1);
            REGISTRY.remove_range(ptr, size as u64);
        });
    }
    rc
}

pub unsafe fn cuMemSetAccess(call: &impl Fn(CUdeviceptr, usize, *const c_void, usize) -> i32, ptr: CUdeviceptr, size: usize, desc: *const c_void, count: usize) -> i32 {
    call(ptr, size, desc, count)
}
