//! Pointer queries. A packed buffer's range is reserved but unmapped, so the driver knows no
//! allocation there: `cuPointerGetAttribute` fails with "invalid value", `cuMemGetAddressRange`
//! finds nothing, and `cuPointerGetAttributes` / `cudaPointerGetAttributes` answer "not device
//! memory". Programs ask just before they use a pointer (Triton's launchers and inductor's
//! static launcher check every pointer argument with `CU_POINTER_ATTRIBUTE_DEVICE_POINTER`
//! and raise on a failure), so a query that names an address inside a packed buffer makes it
//! resident first, as a use would. It is not a use of the data: no stream is recorded for it
//! and none is made to wait. In observe mode, and for addresses outside every buffer, the
//! query goes straight through.
use std::os::raw::{c_int, c_uint, c_void};

use super::{collect_range_read, with_resident};
use crate::cuda_abi::*;
use crate::registry::{Path, REGISTRY};

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;
pub const EVEN_IN_PASSTHROUGH: bool = false;

/// The real query, after the buffer holding `ptr` (if any) is resident. A buffer that cannot
/// come back makes the query fail with the restore's status, as the use that follows would.
fn resident_for(hook: &'static str, ptr: u64, real: impl FnOnce() -> i32) -> i32 {
    if !crate::residency::packing() || !REGISTRY.may_contain(ptr) {
        return real();
    }
    with_resident(hook, Path::Query, crate::residency::NO_STREAM as usize as Handle, |u| collect_range_read(u, ptr, 1), real)
}

/// `CU_POINTER_ATTRIBUTE_RANGE_START_ADDR` and `_RANGE_SIZE`.
const RANGE_START: c_int = 11;
const RANGE_SIZE: c_int = 12;

/// The whole VMM buffer of ours holding `ptr`: the driver answers ranges by the physical
/// allocation mapped there, and a large buffer of ours is mapped in pieces (one a codec
/// chunk), while the program allocated it whole.
fn our_range(ptr: u64) -> Option<(u64, u64)> {
    if !crate::residency::packing() {
        return None;
    }
    REGISTRY.find(ptr).filter(|b| b.is_vmm()).map(|b| (b.start, b.size))
}

/// Writes the answer to a range attribute of our buffer over the driver's.
///
/// # Safety
/// `data` is the out-parameter the program passed for `attribute`, written by the real call.
unsafe fn whole_range(attribute: c_int, data: *mut c_void, range: (u64, u64)) {
    if data.is_null() {
        return;
    }
    // SAFETY: per the contract; a range start is a CUdeviceptr, a range size a size_t.
    unsafe {
        match attribute {
            RANGE_START => *(data as *mut CUdeviceptr) = range.0,
            RANGE_SIZE => *(data as *mut usize) = range.1 as usize,
            _ => {}
        }
    }
}

pub unsafe fn cuPointerGetAttribute(call: &impl Fn(*mut c_void, c_int, CUdeviceptr) -> i32, data: *mut c_void, attribute: c_int, ptr: CUdeviceptr) -> i32 {
    let rc = resident_for("cuPointerGetAttribute", ptr, || call(data, attribute, ptr));
    if rc == CUDA_SUCCESS && matches!(attribute, RANGE_START | RANGE_SIZE) {
        if let Some(range) = our_range(ptr) {
            // SAFETY: the program's out-parameter for this attribute, written just now.
            unsafe { whole_range(attribute, data, range) };
        }
    }
    rc
}

pub unsafe fn cuPointerGetAttributes(
    call: &impl Fn(c_uint, *mut c_int, *mut *mut c_void, CUdeviceptr) -> i32,
    count: c_uint,
    attributes: *mut c_int,
    data: *mut *mut c_void,
    ptr: CUdeviceptr,
) -> i32 {
    let rc = resident_for("cuPointerGetAttributes", ptr, || call(count, attributes, data, ptr));
    // SAFETY: the program's array of `count` attributes.
    let asks_range = || (0..count as usize).any(|i| matches!(unsafe { *attributes.add(i) }, RANGE_START | RANGE_SIZE));
    if rc == CUDA_SUCCESS && !attributes.is_null() && !data.is_null() && asks_range() {
        if let Some(range) = our_range(ptr) {
            for i in 0..count as usize {
                // SAFETY: the program's arrays of `count` attributes and out-parameters.
                unsafe { whole_range(*attributes.add(i), *data.add(i), range) };
            }
        }
    }
    rc
}

pub unsafe fn cudaPointerGetAttributes(call: &impl Fn(*mut c_void, *const c_void) -> i32, attributes: *mut c_void, ptr: *const c_void) -> i32 {
    resident_for("cudaPointerGetAttributes", ptr as u64, || call(attributes, ptr))
}

/// For our VMM buffers the answer is the whole buffer (`our_range`).
pub unsafe fn cuMemGetAddressRange_v2(call: &impl Fn(*mut CUdeviceptr, *mut usize, CUdeviceptr) -> i32, base: *mut CUdeviceptr, size: *mut usize, ptr: CUdeviceptr) -> i32 {
    let rc = resident_for("cuMemGetAddressRange_v2", ptr, || call(base, size, ptr));
    if rc == CUDA_SUCCESS {
        if let Some((start, len)) = our_range(ptr) {
            // SAFETY: the program's out-parameters (each may be null), written by the real call.
            unsafe {
                if !base.is_null() {
                    *base = start;
                }
                if !size.is_null() {
                    *size = len as usize;
                }
            }
        }
    }
    rc
}
