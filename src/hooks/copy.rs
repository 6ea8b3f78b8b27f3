//! Copy and set hooks: every buffer a copy or set reaches (both ends, the whole range) is made
//! resident before the real call and counted as used by it. Host memory copied to the device
//! is scanned for words that point into live buffers: that is how programs build pointer
//! arrays (batched GEMM, nested structs), and a buffer whose address sits in device memory can
//! be reached by kernels we cannot see, so it is flagged `POINTED_FROM_DEVICE` and stays
//! resident.
use std::os::raw::{c_int, c_uint, c_void};

use super::{collect_range, collect_range_read, is_host, mark, with_resident};
use crate::cuda_abi::*;
use crate::registry::{flag, Path, REGISTRY};
use crate::residency::Uses;
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;
pub const EVEN_IN_PASSTHROUGH: bool = false;

const SYNC: Handle = std::ptr::null_mut();

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

/// Host source known from the runtime's copy kind (None: ask).
fn host_src_of(kind: c_int) -> Option<bool> {
    match kind {
        MEMCPY_HOST_TO_DEVICE => Some(true),
        MEMCPY_DEFAULT => None,
        _ => Some(false),
    }
}

/// A 1-D copy of `count` bytes on `stream`: both ranges resident, a host source scanned.
fn copy_1d(hook: &'static str, stream: Handle, dst: u64, src: u64, count: usize, src_is_host: Option<bool>, real: impl FnOnce() -> i32) -> i32 {
    with_resident(
        hook,
        Path::Copy,
        stream,
        |u| {
            collect_range(u, dst, count as u64);
            collect_range_read(u, src, count as u64);
            if src != 0 && count >= 8 && src_is_host.unwrap_or_else(|| is_host(src)) {
                // SAFETY: the program hands this host range to a copy that reads it.
                unsafe { scan_host(src as *const u8, count, 1, count) };
            }
        },
        real,
    )
}

/// A 2-D copy or set: `rows` rows `pitch` apart, the whole span resident.
fn span(u: &mut Uses, base: u64, pitch: usize, width: usize, rows: usize) {
    span_as(u, base, pitch, width, rows, collect_range)
}

/// `span`, collected with `collect` (a source: `collect_range_read`).
fn span_as(u: &mut Uses, base: u64, pitch: usize, width: usize, rows: usize, collect: fn(&mut Uses, u64, u64)) {
    if rows > 0 {
        collect(u, base, ((rows - 1) * pitch + width) as u64);
    }
}

fn set_1d(hook: &'static str, stream: Handle, dst: u64, bytes: usize, real: impl FnOnce() -> i32) -> i32 {
    with_resident(hook, Path::Set, stream, |u| collect_range(u, dst, bytes as u64), real)
}

pub unsafe fn cudaMemcpy(call: &impl Fn(*mut c_void, *const c_void, usize, c_int) -> i32, dst: *mut c_void, src: *const c_void, count: usize, kind: c_int) -> i32 {
    copy_1d("cudaMemcpy", SYNC, dst as u64, src as u64, count, host_src_of(kind), || call(dst, src, count, kind))
}

pub unsafe fn cudaMemcpyAsync(call: &impl Fn(*mut c_void, *const c_void, usize, c_int, Handle) -> i32, dst: *mut c_void, src: *const c_void, count: usize, kind: c_int, stream: Handle) -> i32 {
    copy_1d("cudaMemcpyAsync", stream, dst as u64, src as u64, count, host_src_of(kind), || call(dst, src, count, kind, stream))
}

/// A runtime 2-D copy: both spans resident, a host source scanned.
fn copy_2d(hook: &'static str, stream: Handle, dst: *mut c_void, dpitch: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: c_int, real: impl FnOnce() -> i32) -> i32 {
    with_resident(
        hook,
        Path::Copy,
        stream,
        |u| {
            span(u, dst as u64, dpitch, width, height);
            span_as(u, src as u64, spitch, width, height, collect_range_read);
            if !src.is_null() && host_src_of(kind).unwrap_or_else(|| is_host(src as u64)) {
                // SAFETY: the copy reads these rows of host memory.
                unsafe { scan_host(src as *const u8, width, height, spitch) };
            }
        },
        real,
    )
}

pub unsafe fn cudaMemcpy2DAsync(
    call: &impl Fn(*mut c_void, usize, *const c_void, usize, usize, usize, c_int, Handle) -> i32,
    dst: *mut c_void, dpitch: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: c_int, stream: Handle,
) -> i32 {
    copy_2d("cudaMemcpy2DAsync", stream, dst, dpitch, src, spitch, width, height, kind, || call(dst, dpitch, src, spitch, width, height, kind, stream))
}

pub unsafe fn cudaMemcpyPeerAsync(call: &impl Fn(*mut c_void, c_int, *const c_void, c_int, usize, Handle) -> i32, dst: *mut c_void, dst_device: c_int, src: *const c_void, src_device: c_int, count: usize, stream: Handle) -> i32 {
    copy_1d("cudaMemcpyPeerAsync", stream, dst as u64, src as u64, count, Some(false), || call(dst, dst_device, src, src_device, count, stream))
}

pub unsafe fn cudaMemset(call: &impl Fn(*mut c_void, c_int, usize) -> i32, ptr: *mut c_void, value: c_int, count: usize) -> i32 {
    set_1d("cudaMemset", SYNC, ptr as u64, count, || call(ptr, value, count))
}

pub unsafe fn cudaMemsetAsync(call: &impl Fn(*mut c_void, c_int, usize, Handle) -> i32, ptr: *mut c_void, value: c_int, count: usize, stream: Handle) -> i32 {
    set_1d("cudaMemsetAsync", stream, ptr as u64, count, || call(ptr, value, count, stream))
}

pub unsafe fn cuMemcpy(call: &impl Fn(CUdeviceptr, CUdeviceptr, usize) -> i32, dst: CUdeviceptr, src: CUdeviceptr, count: usize) -> i32 {
    copy_1d("cuMemcpy", SYNC, dst, src, count, None, || call(dst, src, count))
}

pub unsafe fn cuMemcpyAsync(call: &impl Fn(CUdeviceptr, CUdeviceptr, usize, Handle) -> i32, dst: CUdeviceptr, src: CUdeviceptr, count: usize, stream: Handle) -> i32 {
    copy_1d("cuMemcpyAsync", stream, dst, src, count, None, || call(dst, src, count, stream))
}

pub unsafe fn cuMemcpyHtoD_v2(call: &impl Fn(CUdeviceptr, *const c_void, usize) -> i32, dst: CUdeviceptr, src: *const c_void, count: usize) -> i32 {
    copy_1d("cuMemcpyHtoD_v2", SYNC, dst, src as u64, count, Some(true), || call(dst, src, count))
}

pub unsafe fn cuMemcpyHtoDAsync_v2(call: &impl Fn(CUdeviceptr, *const c_void, usize, Handle) -> i32, dst: CUdeviceptr, src: *const c_void, count: usize, stream: Handle) -> i32 {
    copy_1d("cuMemcpyHtoDAsync_v2", stream, dst, src as u64, count, Some(true), || call(dst, src, count, stream))
}

pub unsafe fn cuMemcpyDtoH_v2(call: &impl Fn(*mut c_void, CUdeviceptr, usize) -> i32, dst: *mut c_void, src: CUdeviceptr, count: usize) -> i32 {
    copy_1d("cuMemcpyDtoH_v2", SYNC, dst as u64, src, count, Some(false), || call(dst, src, count))
}

pub unsafe fn cuMemcpyDtoHAsync_v2(call: &impl Fn(*mut c_void, CUdeviceptr, usize, Handle) -> i32, dst: *mut c_void, src: CUdeviceptr, count: usize, stream: Handle) -> i32 {
    copy_1d("cuMemcpyDtoHAsync_v2", stream, dst as u64, src, count, Some(false), || call(dst, src, count, stream))
}

pub unsafe fn cuMemcpyDtoD_v2(call: &impl Fn(CUdeviceptr, CUdeviceptr, usize) -> i32, dst: CUdeviceptr, src: CUdeviceptr, count: usize) -> i32 {
    copy_1d("cuMemcpyDtoD_v2", SYNC, dst, src, count, Some(false), || call(dst, src, count))
}

pub unsafe fn cuMemcpyDtoDAsync_v2(call: &impl Fn(CUdeviceptr, CUdeviceptr, usize, Handle) -> i32, dst: CUdeviceptr, src: CUdeviceptr, count: usize, stream: Handle) -> i32 {
    copy_1d("cuMemcpyDtoDAsync_v2", stream, dst, src, count, Some(false), || call(dst, src, count, stream))
}

/// The device ends of a `CUDA_MEMCPY2D`, resident; a host source scanned.
///
/// # Safety
/// `copy` is null or the program's valid descriptor.
unsafe fn memcpy2d(hook: &'static str, copy: *const CUDA_MEMCPY2D, stream: Handle, real: impl FnOnce() -> i32) -> i32 {
    if copy.is_null() {
        return real();
    }
    // SAFETY: the program passes a valid CUDA_MEMCPY2D to the real call.
    let c = unsafe { &*copy };
    let device = |t: c_uint| t == CU_MEMORYTYPE_DEVICE || t == CU_MEMORYTYPE_UNIFIED;
    with_resident(
        hook,
        Path::Copy,
        stream,
        |u| {
            if device(c.dstMemoryType) {
                span(u, c.dstDevice + (c.dstY * c.dstPitch + c.dstXInBytes) as u64, c.dstPitch, c.WidthInBytes, c.Height);
            }
            if device(c.srcMemoryType) {
                span(u, c.srcDevice + (c.srcY * c.srcPitch + c.srcXInBytes) as u64, c.srcPitch, c.WidthInBytes, c.Height);
            }
            if c.srcMemoryType == CU_MEMORYTYPE_HOST && !c.srcHost.is_null() {
                // SAFETY: the copy reads these rows of host memory.
                unsafe { scan_host((c.srcHost as *const u8).add(c.srcY * c.srcPitch + c.srcXInBytes), c.WidthInBytes, c.Height, c.srcPitch) };
            }
        },
        real,
    )
}

pub unsafe fn cuMemcpy2DAsync_v2(call: &impl Fn(*const CUDA_MEMCPY2D, Handle) -> i32, copy: *const CUDA_MEMCPY2D, stream: Handle) -> i32 {
    // SAFETY: forwarded.
    unsafe { memcpy2d("cuMemcpy2DAsync_v2", copy, stream, || call(copy, stream)) }
}

pub unsafe fn cuMemcpy2D_v2(call: &impl Fn(*const CUDA_MEMCPY2D) -> i32, copy: *const CUDA_MEMCPY2D) -> i32 {
    // SAFETY: forwarded.
    unsafe { memcpy2d("cuMemcpy2D_v2", copy, SYNC, || call(copy)) }
}

pub unsafe fn cuMemcpy2DUnaligned_v2(call: &impl Fn(*const CUDA_MEMCPY2D) -> i32, copy: *const CUDA_MEMCPY2D) -> i32 {
    // SAFETY: forwarded.
    unsafe { memcpy2d("cuMemcpy2DUnaligned_v2", copy, SYNC, || call(copy)) }
}

pub unsafe fn cudaMemcpy2D(call: &impl Fn(*mut c_void, usize, *const c_void, usize, usize, usize, c_int) -> i32, dst: *mut c_void, dpitch: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: c_int) -> i32 {
    copy_2d("cudaMemcpy2D", SYNC, dst, dpitch, src, spitch, width, height, kind, || call(dst, dpitch, src, spitch, width, height, kind))
}

pub unsafe fn cuMemcpyPeerAsync(call: &impl Fn(CUdeviceptr, Handle, CUdeviceptr, Handle, usize, Handle) -> i32, dst: CUdeviceptr, dst_ctx: Handle, src: CUdeviceptr, src_ctx: Handle, count: usize, stream: Handle) -> i32 {
    copy_1d("cuMemcpyPeerAsync", stream, dst, src, count, Some(false), || call(dst, dst_ctx, src, src_ctx, count, stream))
}

/// Copies to and from a `__device__` symbol: the symbol is module memory (never a buffer of
/// ours), the other end may be one.
pub unsafe fn cudaMemcpyToSymbol(call: &impl Fn(*const c_void, *const c_void, usize, usize, c_int) -> i32, symbol: *const c_void, src: *const c_void, count: usize, offset: usize, kind: c_int) -> i32 {
    copy_1d("cudaMemcpyToSymbol", SYNC, 0, src as u64, count, host_src_of(kind), || call(symbol, src, count, offset, kind))
}

pub unsafe fn cudaMemcpyToSymbolAsync(call: &impl Fn(*const c_void, *const c_void, usize, usize, c_int, Handle) -> i32, symbol: *const c_void, src: *const c_void, count: usize, offset: usize, kind: c_int, stream: Handle) -> i32 {
    copy_1d("cudaMemcpyToSymbolAsync", stream, 0, src as u64, count, host_src_of(kind), || call(symbol, src, count, offset, kind, stream))
}

pub unsafe fn cudaMemcpyFromSymbol(call: &impl Fn(*mut c_void, *const c_void, usize, usize, c_int) -> i32, dst: *mut c_void, symbol: *const c_void, count: usize, offset: usize, kind: c_int) -> i32 {
    copy_1d("cudaMemcpyFromSymbol", SYNC, dst as u64, 0, count, Some(false), || call(dst, symbol, count, offset, kind))
}

pub unsafe fn cudaMemcpyFromSymbolAsync(call: &impl Fn(*mut c_void, *const c_void, usize, usize, c_int, Handle) -> i32, dst: *mut c_void, symbol: *const c_void, count: usize, offset: usize, kind: c_int, stream: Handle) -> i32 {
    copy_1d("cudaMemcpyFromSymbolAsync", stream, dst as u64, 0, count, Some(false), || call(dst, symbol, count, offset, kind, stream))
}

pub unsafe fn cudaMemset2D(call: &impl Fn(*mut c_void, usize, c_int, usize, usize) -> i32, ptr: *mut c_void, pitch: usize, value: c_int, width: usize, height: usize) -> i32 {
    with_resident("cudaMemset2D", Path::Set, SYNC, |u| span(u, ptr as u64, pitch, width, height), || call(ptr, pitch, value, width, height))
}

pub unsafe fn cudaMemset2DAsync(call: &impl Fn(*mut c_void, usize, c_int, usize, usize, Handle) -> i32, ptr: *mut c_void, pitch: usize, value: c_int, width: usize, height: usize, stream: Handle) -> i32 {
    with_resident("cudaMemset2DAsync", Path::Set, stream, |u| span(u, ptr as u64, pitch, width, height), || call(ptr, pitch, value, width, height, stream))
}

pub unsafe fn cuMemsetD8_v2(call: &impl Fn(CUdeviceptr, u8, usize) -> i32, dst: CUdeviceptr, value: u8, count: usize) -> i32 {
    set_1d("cuMemsetD8_v2", SYNC, dst, count, || call(dst, value, count))
}

pub unsafe fn cuMemsetD8Async(call: &impl Fn(CUdeviceptr, u8, usize, Handle) -> i32, dst: CUdeviceptr, value: u8, count: usize, stream: Handle) -> i32 {
    set_1d("cuMemsetD8Async", stream, dst, count, || call(dst, value, count, stream))
}

pub unsafe fn cuMemsetD16_v2(call: &impl Fn(CUdeviceptr, u16, usize) -> i32, dst: CUdeviceptr, value: u16, count: usize) -> i32 {
    set_1d("cuMemsetD16_v2", SYNC, dst, 2 * count, || call(dst, value, count))
}

pub unsafe fn cuMemsetD16Async(call: &impl Fn(CUdeviceptr, u16, usize, Handle) -> i32, dst: CUdeviceptr, value: u16, count: usize, stream: Handle) -> i32 {
    set_1d("cuMemsetD16Async", stream, dst, 2 * count, || call(dst, value, count, stream))
}

pub unsafe fn cuMemsetD32_v2(call: &impl Fn(CUdeviceptr, c_uint, usize) -> i32, dst: CUdeviceptr, value: c_uint, count: usize) -> i32 {
    set_1d("cuMemsetD32_v2", SYNC, dst, 4 * count, || call(dst, value, count))
}

pub unsafe fn cuMemsetD32Async(call: &impl Fn(CUdeviceptr, c_uint, usize, Handle) -> i32, dst: CUdeviceptr, value: c_uint, count: usize, stream: Handle) -> i32 {
    set_1d("cuMemsetD32Async", stream, dst, 4 * count, || call(dst, value, count, stream))
}

pub unsafe fn cuMemsetD2D8_v2(call: &impl Fn(CUdeviceptr, usize, u8, usize, usize) -> i32, dst: CUdeviceptr, pitch: usize, value: u8, width: usize, height: usize) -> i32 {
    with_resident("cuMemsetD2D8_v2", Path::Set, SYNC, |u| span(u, dst, pitch, width, height), || call(dst, pitch, value, width, height))
}

pub unsafe fn cuMemsetD2D32_v2(call: &impl Fn(CUdeviceptr, usize, c_uint, usize, usize) -> i32, dst: CUdeviceptr, pitch: usize, value: c_uint, width: usize, height: usize) -> i32 {
    with_resident("cuMemsetD2D32_v2", Path::Set, SYNC, |u| span(u, dst, pitch, 4 * width, height), || call(dst, pitch, value, width, height))
}

/// `cuStreamWriteValue*` writes a word at a device address from the stream.
pub unsafe fn cuStreamWriteValue32_v2(call: &impl Fn(Handle, CUdeviceptr, c_uint, c_uint) -> i32, stream: Handle, addr: CUdeviceptr, value: c_uint, flags: c_uint) -> i32 {
    set_1d("cuStreamWriteValue32_v2", stream, addr, 4, || call(stream, addr, value, flags))
}

pub unsafe fn cuStreamWriteValue64_v2(call: &impl Fn(Handle, CUdeviceptr, u64, c_uint) -> i32, stream: Handle, addr: CUdeviceptr, value: u64, flags: c_uint) -> i32 {
    set_1d("cuStreamWriteValue64_v2", stream, addr, 8, || call(stream, addr, value, flags))
}

pub unsafe fn cuStreamWaitValue32_v2(call: &impl Fn(Handle, CUdeviceptr, c_uint, c_uint) -> i32, stream: Handle, addr: CUdeviceptr, value: c_uint, flags: c_uint) -> i32 {
    set_1d("cuStreamWaitValue32_v2", stream, addr, 4, || call(stream, addr, value, flags))
}

/// A batch of stream memory operations: an array we do not parse. Every buffer becomes
/// resident first and the stream is waited for by every later pack (an opaque call).
pub unsafe fn cuStreamBatchMemOp_v2(call: &impl Fn(Handle, c_uint, *mut c_void, c_uint) -> i32, stream: Handle, count: c_uint, ops: *mut c_void, flags: c_uint) -> i32 {
    super::opaque_call("cuStreamBatchMemOp_v2", Path::Set, stream, || call(stream, count, ops, flags))
}

// The per-thread-default-stream variants (`nvcc --default-stream per-thread`): same bodies.
pub unsafe fn cudaMemcpy_ptds(call: &impl Fn(*mut c_void, *const c_void, usize, c_int) -> i32, dst: *mut c_void, src: *const c_void, count: usize, kind: c_int) -> i32 {
    copy_1d("cudaMemcpy_ptds", SYNC, dst as u64, src as u64, count, host_src_of(kind), || call(dst, src, count, kind))
}

pub unsafe fn cudaMemcpyAsync_ptsz(call: &impl Fn(*mut c_void, *const c_void, usize, c_int, Handle) -> i32, dst: *mut c_void, src: *const c_void, count: usize, kind: c_int, stream: Handle) -> i32 {
    copy_1d("cudaMemcpyAsync_ptsz", stream, dst as u64, src as u64, count, host_src_of(kind), || call(dst, src, count, kind, stream))
}

pub unsafe fn cudaMemset_ptds(call: &impl Fn(*mut c_void, c_int, usize) -> i32, ptr: *mut c_void, value: c_int, count: usize) -> i32 {
    set_1d("cudaMemset_ptds", SYNC, ptr as u64, count, || call(ptr, value, count))
}

pub unsafe fn cudaMemsetAsync_ptsz(call: &impl Fn(*mut c_void, c_int, usize, Handle) -> i32, ptr: *mut c_void, value: c_int, count: usize, stream: Handle) -> i32 {
    set_1d("cudaMemsetAsync_ptsz", stream, ptr as u64, count, || call(ptr, value, count, stream))
}

// 3-D copies and sets: shapes (arrays, pitched volumes) we do not parse. Opaque calls: every
// packed buffer resident first, nothing packed while they run.
pub unsafe fn cudaMemcpy3D(call: &impl Fn(*const c_void) -> i32, params: *const c_void) -> i32 {
    super::opaque_call("cudaMemcpy3D", Path::Copy, SYNC, || call(params))
}

pub unsafe fn cudaMemcpy3DAsync(call: &impl Fn(*const c_void, Handle) -> i32, params: *const c_void, stream: Handle) -> i32 {
    super::opaque_call("cudaMemcpy3DAsync", Path::Copy, stream, || call(params, stream))
}

pub unsafe fn cuMemcpy3D_v2(call: &impl Fn(*const CUDA_MEMCPY3D) -> i32, params: *const CUDA_MEMCPY3D) -> i32 {
    super::opaque_call("cuMemcpy3D_v2", Path::Copy, SYNC, || call(params))
}

pub unsafe fn cuMemcpy3DAsync_v2(call: &impl Fn(*const CUDA_MEMCPY3D, Handle) -> i32, params: *const CUDA_MEMCPY3D, stream: Handle) -> i32 {
    super::opaque_call("cuMemcpy3DAsync_v2", Path::Copy, stream, || call(params, stream))
}

pub unsafe fn cudaMemset3D(call: &impl Fn(PitchedPtr, c_int, Extent) -> i32, ptr: PitchedPtr, value: c_int, extent: Extent) -> i32 {
    super::opaque_call("cudaMemset3D", Path::Set, SYNC, || call(ptr, value, extent))
}

pub unsafe fn cudaMemset3DAsync(call: &impl Fn(PitchedPtr, c_int, Extent, Handle) -> i32, ptr: PitchedPtr, value: c_int, extent: Extent, stream: Handle) -> i32 {
    super::opaque_call("cudaMemset3DAsync", Path::Set, stream, || call(ptr, value, extent, stream))
}
