//! Copy and set hooks: the buffers they touch are used (last-use time), and host memory
//! copied to the device is scanned for words that point into live buffers: that is how
//! programs build pointer arrays (batched GEMM, nested structs), and a buffer whose address
//! sits in device memory can be reached by kernels we cannot see, so it is flagged
//! `POINTED_FROM_DEVICE` and stays resident.
use std::os::raw::{c_int, c_uint, c_void};

use super::{is_host, mark, observe, touch_if_device};
use crate::cuda_abi::*;
use crate::registry::{flag, Path, REGISTRY};
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;

/// Scans `rows` rows of `width` bytes, `pitch` apart, of host memory for pointer words.
///
/// # Safety
/// The rows are readable host memory (the copy itself reads them).
unsafe fn scan_host(src: *const u8, width: usize, rows: usize, pitch: usize) {
    let mut hits = 0u64;
    for r in 0..rows {
        // SAFETY: per the contract, row r lies at src + r*pitch and holds width bytes.
        unsafe {
            crate::scan::words(src.add(r * pitch), width, |w| {
                if REGISTRY.may_contain(w) && mark(w, flag::POINTED_FROM_DEVICE) {
                    hits += 1;
                }
            })
        };
    }
    stats::add(&stats::C.h2d_bytes_scanned, (width * rows) as u64);
    stats::add(&stats::C.h2d_pointer_words, hits);
}

/// A 1-D copy of `count` bytes: touch both ends, scan a host source headed for the device.
fn observe_copy(hook: &'static str, dst: u64, src: u64, count: usize, src_is_host: Option<bool>) {
    observe(hook, || {
        touch_if_device(Path::Copy, &[dst, src]);
        let host_src = src_is_host.unwrap_or_else(|| is_host(src));
        if host_src && src != 0 && count >= 8 {
            // SAFETY: the program hands this host range to a copy that reads it.
            unsafe { scan_host(src as *const u8, count, 1, count) };
        }
    });
}

/// Host source known from the runtime's copy kind (None: ask).
fn host_src_of(kind: c_int) -> Option<bool> {
    match kind {
        MEMCPY_HOST_TO_DEVICE => Some(true),
        MEMCPY_DEFAULT => None,
        _ => Some(false),
    }
}

fn observe_set(hook: &'static str, dst: u64) {
    observe(hook, || touch_if_device(Path::Set, &[dst]));
}

pub unsafe fn cudaMemcpy(call: &impl Fn(*mut c_void, *const c_void, usize, c_int) -> i32, dst: *mut c_void, src: *const c_void, count: usize, kind: c_int) -> i32 {
    observe_copy("cudaMemcpy", dst as u64, src as u64, count, host_src_of(kind));
    call(dst, src, count, kind)
}

pub unsafe fn cudaMemcpyAsync(call: &impl Fn(*mut c_void, *const c_void, usize, c_int, Handle) -> i32, dst: *mut c_void, src: *const c_void, count: usize, kind: c_int, stream: Handle) -> i32 {
    observe_copy("cudaMemcpyAsync", dst as u64, src as u64, count, host_src_of(kind));
    call(dst, src, count, kind, stream)
}

pub unsafe fn cudaMemcpy2DAsync(
    call: &impl Fn(*mut c_void, usize, *const c_void, usize, usize, usize, c_int, Handle) -> i32,
    dst: *mut c_void, dpitch: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: c_int, stream: Handle,
) -> i32 {
    observe("cudaMemcpy2DAsync", || {
        touch_if_device(Path::Copy, &[dst as u64, src as u64]);
        if host_src_of(kind).unwrap_or_else(|| is_host(src as u64)) && !src.is_null() {
            // SAFETY: the copy reads these rows of host memory.
            unsafe { scan_host(src as *const u8, width, height, spitch) };
        }
    });
    call(dst, dpitch, src, spitch, width, height, kind, stream)
}

pub unsafe fn cudaMemcpyPeerAsync(call: &impl Fn(*mut c_void, c_int, *const c_void, c_int, usize, Handle) -> i32, dst: *mut c_void, dst_device: c_int, src: *const c_void, src_device: c_int, count: usize, stream: Handle) -> i32 {
    observe_copy("cudaMemcpyPeerAsync", dst as u64, src as u64, count, Some(false));
    call(dst, dst_device, src, src_device, count, stream)
}

pub unsafe fn cudaMemset(call: &impl Fn(*mut c_void, c_int, usize) -> i32, ptr: *mut c_void, value: c_int, count: usize) -> i32 {
    observe_set("cudaMemset", ptr as u64);
    call(ptr, value, count)
}

pub unsafe fn cudaMemsetAsync(call: &impl Fn(*mut c_void, c_int, usize, Handle) -> i32, ptr: *mut c_void, value: c_int, count: usize, stream: Handle) -> i32 {
    observe_set("cudaMemsetAsync", ptr as u64);
    call(ptr, value, count, stream)
}

pub unsafe fn cuMemcpy(call: &impl Fn(CUdeviceptr, CUdeviceptr, usize) -> i32, dst: CUdeviceptr, src: CUdeviceptr, count: usize) -> i32 {
    observe_copy("cuMemcpy", dst, src, count, None);
    call(dst, src, count)
}

pub unsafe fn cuMemcpyAsync(call: &impl Fn(CUdeviceptr, CUdeviceptr, usize, Handle) -> i32, dst: CUdeviceptr, src: CUdeviceptr, count: usize, stream: Handle) -> i32 {
    observe_copy("cuMemcpyAsync", dst, src, count, None);
    call(dst, src, count, stream)
}

pub unsafe fn cuMemcpyHtoD_v2(call: &impl Fn(CUdeviceptr, *const c_void, usize) -> i32, dst: CUdeviceptr, src: *const c_void, count: usize) -> i32 {
    observe_copy("cuMemcpyHtoD_v2", dst, src as u64, count, Some(true));
    call(dst, src, count)
}

pub unsafe fn cuMemcpyHtoDAsync_v2(call: &impl Fn(CUdeviceptr, *const c_void, usize, Handle) -> i32, dst: CUdeviceptr, src: *const c_void, count: usize, stream: Handle) -> i32 {
    observe_copy("cuMemcpyHtoDAsync_v2", dst, src as u64, count, Some(true));
    call(dst, src, count, stream)
}

pub unsafe fn cuMemcpyDtoH_v2(call: &impl Fn(*mut c_void, CUdeviceptr, usize) -> i32, dst: *mut c_void, src: CUdeviceptr, count: usize) -> i32 {
    observe_copy("cuMemcpyDtoH_v2", dst as u64, src, count, Some(false));
    call(dst, src, count)
}

pub unsafe fn cuMemcpyDtoHAsync_v2(call: &impl Fn(*mut c_void, CUdeviceptr, usize, Handle) -> i32, dst: *mut c_void, src: CUdeviceptr, count: usize, stream: Handle) -> i32 {
    observe_copy("cuMemcpyDtoHAsync_v2", dst as u64, src, count, Some(false));
    call(dst, src, count, stream)
}

pub unsafe fn cuMemcpyDtoD_v2(call: &impl Fn(CUdeviceptr, CUdeviceptr, usize) -> i32, dst: CUdeviceptr, src: CUdeviceptr, count: usize) -> i32 {
    observe_copy("cuMemcpyDtoD_v2", dst, src, count, Some(false));
    call(dst, src, count)
}

pub unsafe fn cuMemcpyDtoDAsync_v2(call: &impl Fn(CUdeviceptr, CUdeviceptr, usize, Handle) -> i32, dst: CUdeviceptr, src: CUdeviceptr, count: usize, stream: Handle) -> i32 {
    observe_copy("cuMemcpyDtoDAsync_v2", dst, src, count, Some(false));
    call(dst, src, count, stream)
}

pub unsafe fn cuMemcpy2DAsync_v2(call: &impl Fn(*const CUDA_MEMCPY2D, Handle) -> i32, copy: *const CUDA_MEMCPY2D, stream: Handle) -> i32 {
    observe("cuMemcpy2DAsync_v2", || {
        if copy.is_null() {
            return;
        }
        // SAFETY: the program passes a valid CUDA_MEMCPY2D to the real call.
        let c = unsafe { &*copy };
        let device_end = |t: c_uint, dev: u64| if t == CU_MEMORYTYPE_DEVICE || t == CU_MEMORYTYPE_UNIFIED { dev } else { 0 };
        touch_if_device(Path::Copy, &[device_end(c.dstMemoryType, c.dstDevice), device_end(c.srcMemoryType, c.srcDevice)]);
        if c.srcMemoryType == CU_MEMORYTYPE_HOST && !c.srcHost.is_null() {
            // SAFETY: the copy reads these rows of host memory.
            unsafe { scan_host((c.srcHost as *const u8).add(c.srcY * c.srcPitch + c.srcXInBytes), c.WidthInBytes, c.Height, c.srcPitch) };
        }
    });
    call(copy, stream)
}

pub unsafe fn cuMemcpyPeerAsync(call: &impl Fn(CUdeviceptr, Handle, CUdeviceptr, Handle, usize, Handle) -> i32, dst: CUdeviceptr, dst_ctx: Handle, src: CUdeviceptr, src_ctx: Handle, count: usize, stream: Handle) -> i32 {
    observe_copy("cuMemcpyPeerAsync", dst, src, count, Some(false));
    call(dst, dst_ctx, src, src_ctx, count, stream)
}

pub unsafe fn cuMemsetD8_v2(call: &impl Fn(CUdeviceptr, u8, usize) -> i32, dst: CUdeviceptr, value: u8, count: usize) -> i32 {
    observe_set("cuMemsetD8_v2", dst);
    call(dst, value, count)
}

pub unsafe fn cuMemsetD8Async(call: &impl Fn(CUdeviceptr, u8, usize, Handle) -> i32, dst: CUdeviceptr, value: u8, count: usize, stream: Handle) -> i32 {
    observe_set("cuMemsetD8Async", dst);
    call(dst, value, count, stream)
}

pub unsafe fn cuMemsetD16_v2(call: &impl Fn(CUdeviceptr, u16, usize) -> i32, dst: CUdeviceptr, value: u16, count: usize) -> i32 {
    observe_set("cuMemsetD16_v2", dst);
    call(dst, value, count)
}

pub unsafe fn cuMemsetD16Async(call: &impl Fn(CUdeviceptr, u16, usize, Handle) -> i32, dst: CUdeviceptr, value: u16, count: usize, stream: Handle) -> i32 {
    observe_set("cuMemsetD16Async", dst);
    call(dst, value, count, stream)
}

pub unsafe fn cuMemsetD32_v2(call: &impl Fn(CUdeviceptr, c_uint, usize) -> i32, dst: CUdeviceptr, value: c_uint, count: usize) -> i32 {
    observe_set("cuMemsetD32_v2", dst);
    call(dst, value, count)
}

pub unsafe fn cuMemsetD32Async(call: &impl Fn(CUdeviceptr, c_uint, usize, Handle) -> i32, dst: CUdeviceptr, value: c_uint, count: usize, stream: Handle) -> i32 {
    observe_set("cuMemsetD32Async", dst);
    call(dst, value, count, stream)
}
