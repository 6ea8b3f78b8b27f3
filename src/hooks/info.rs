//! Memory information. With `LTSHIM_DEVICE_LIMIT` set, the packing modes report the emulated
//! card: total = the limit, free = the limit minus what the process holds through the library,
//! on every device, also one where nothing was allocated yet (its engine starts for the
//! question). Otherwise the driver's own answer (which sees the memory packing gave back).
use crate::cuda_abi::*;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;
pub const EVEN_IN_PASSTHROUGH: bool = false;

fn emulated(free: *mut usize, total: *mut usize, real: impl FnOnce() -> i32) -> i32 {
    let rc = real(); // first: it keeps the call's own checks and codes, and makes the context
    if rc != CUDA_SUCCESS || free.is_null() || total.is_null() {
        return rc;
    }
    // the current device's engine (each device has its own limit), started now if need be: a
    // program may ask before it allocates anything there, as accelerate's device map asks of
    // every GPU before it loads a weight, and must see the emulated card then too (without a
    // limit the driver's answer stands, and no engine starts for a question)
    if crate::state::config().is_none_or(|c| c.device_limit == crate::config::Limit::Card) {
        return rc;
    }
    if let Some(budget) = crate::engine::get().map(|e| e.budget) {
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
