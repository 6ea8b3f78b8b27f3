//! Memory information. With `LTSHIM_DEVICE_LIMIT` set, the packing modes report the emulated
//! card: total = the limit, free = the limit minus what the process holds through the library.
//! Otherwise the driver's own answer (which sees the memory packing gave back).
use crate::cuda_abi::*;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;
pub const EVEN_IN_PASSTHROUGH: bool = false;

fn emulated(free: *mut usize, total: *mut usize, real: impl FnOnce() -> i32) -> i32 {
    // the current device's engine: each device has its own limit
    let budget = crate::engine::current().map(|e| e.budget).filter(|b| b.explicit.load(std::sync::atomic::Ordering::Relaxed));
    let Some(budget) = budget.filter(|_| !free.is_null() && !total.is_null()) else { return real() };
    let rc = real(); // keeps the call's own checks (a context must exist) and error codes
    if rc == CUDA_SUCCESS {
        let limit = budget.limit();
        // SAFETY: the program's out-parameters, written by the real call just now.
        unsafe {
            *total = limit as usize;
            *free = limit.saturating_sub(budget.held()).min(*free as u64) as usize;
        }
    }
    rc
}

pub unsafe fn cudaMemGetInfo(call: &impl Fn(*mut usize, *mut usize) -> i32, free: *mut usize, total: *mut usize) -> i32 {
    emulated(free, total, || call(free, total))
}

pub unsafe fn cuMemGetInfo_v2(call: &impl Fn(*mut usize, *mut usize) -> i32, free: *mut usize, total: *mut usize) -> i32 {
    emulated(free, total, || call(free, total))
}
