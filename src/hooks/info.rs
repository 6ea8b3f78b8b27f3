//! Memory information. Passed through unchanged (and counted); once packing exists, the free
//! memory it frees will be visible here because the driver itself reports it.
use crate::cuda_abi::*;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;

pub unsafe fn cudaMemGetInfo(call: &impl Fn(*mut usize, *mut usize) -> i32, free: *mut usize, total: *mut usize) -> i32 {
    call(free, total)
}

pub unsafe fn cuMemGetInfo_v2(call: &impl Fn(*mut usize, *mut usize) -> i32, free: *mut usize, total: *mut usize) -> i32 {
    call(free, total)
}
