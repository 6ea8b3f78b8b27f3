//! cuDNN: its convolution kernels are visible at no other level, so `cudnnBackendExecute` is
//! where we see what they touch: every data pointer of the variant pack, and its workspace.
//! A variant pack we cannot read leaves the call opaque: counted, and (once packing exists)
//! every buffer must be resident before such a call.
use std::os::raw::c_void;

use super::{observe, touch_pointers};
use crate::cuda_abi::*;
use crate::real::USES;
use crate::registry::Path;
use crate::stats;

pub const MISSING: i32 = CUDNN_STATUS_NOT_INITIALIZED;
pub const PRIMITIVE: bool = false;

/// Largest variant pack we read (cuDNN graphs have a handful of tensors).
const MAX_POINTERS: usize = 1024;

fn variant_pack_pointers(pack: Handle) -> Option<Vec<u64>> {
    let get = USES.cudnnBackendGetAttribute.get()?;
    let mut count: i64 = 0;
    let mut ptrs: Vec<u64> = vec![0; MAX_POINTERS];
    // SAFETY: asks for up to MAX_POINTERS void* into an array of that many; cuDNN writes the
    // number it returned into `count`.
    let rc = unsafe { get(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, MAX_POINTERS as i64, &mut count, ptrs.as_mut_ptr() as *mut c_void) };
    if rc != 0 || count < 0 || count as usize > MAX_POINTERS {
        return None;
    }
    ptrs.truncate(count as usize);
    let mut ws: u64 = 0;
    let mut n: i64 = 0;
    // SAFETY: one void* out-value.
    let rc = unsafe { get(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &mut n, &mut ws as *mut u64 as *mut c_void) };
    if rc == 0 && n == 1 {
        ptrs.push(ws);
    }
    Some(ptrs)
}

pub unsafe fn cudnnBackendExecute(call: &impl Fn(Handle, Handle, Handle) -> i32, handle: Handle, plan: Handle, variant_pack: Handle) -> i32 {
    observe("cudnnBackendExecute", || {
        stats::add(&stats::C.cudnn_calls, 1);
        match variant_pack_pointers(variant_pack) {
            Some(ptrs) => {
                stats::add(&stats::C.cudnn_pointers, ptrs.iter().filter(|p| **p != 0).count() as u64);
                touch_pointers(Path::Cudnn, &ptrs);
            }
            None => stats::fallback(stats::Fallback::CudnnPackUnreadable),
        }
    });
    call(handle, plan, variant_pack)
}
