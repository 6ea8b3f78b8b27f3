//! cuBLAS and cuBLASLt GEMM hooks: the matrices and workspace they name are uses of their
//! buffers. The kernels cuBLAS launches are seen separately, through the driver launch hooks
//! (cuBLAS fetches `cuLaunchKernelEx` with `dlsym`), so a call is not a kernel here.
//! `alpha`/`beta` are usually host scalars: they are touched when they are device memory but
//! never counted as missing.
use std::os::raw::{c_int, c_void};

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use once_cell::sync::Lazy;
use parking_lot::Mutex;

use super::{collect, collect_reads, with_resident_as};
use crate::cuda_abi::*;
use crate::registry::{Path, REGISTRY};
use crate::stats;

pub const MISSING: i32 = CUBLAS_STATUS_NOT_INITIALIZED;
pub const PRIMITIVE: bool = false;
pub const EVEN_IN_PASSTHROUGH: bool = false;

/// The stream each cuBLAS handle was given (`cublasSetStream_v2`); 0, the legacy default
/// stream, otherwise, as in cuBLAS.
static STREAMS: Lazy<Mutex<HashMap<usize, usize>>> = Lazy::new(|| Mutex::new(HashMap::new()));

fn stream_of(handle: Handle) -> Handle {
    STREAMS.lock().get(&(handle as usize)).copied().unwrap_or(0) as Handle
}

pub unsafe fn cublasSetStream_v2(call: &impl Fn(Handle, Handle) -> i32, handle: Handle, stream: Handle) -> i32 {
    let rc = call(handle, stream);
    if rc == 0 {
        STREAMS.lock().insert(handle as usize, stream as usize);
    }
    rc
}

/// A workspace cuBLAS keeps for a handle: its kernels use it without any call naming it, so it
/// is never packed (`OPAQUE`).
pub unsafe fn cublasSetWorkspace_v2(call: &impl Fn(Handle, *mut c_void, usize) -> i32, handle: Handle, workspace: *mut c_void, size: usize) -> i32 {
    super::observe("cublasSetWorkspace_v2", || super::mark(workspace as u64, crate::registry::flag::OPAQUE));
    call(handle, workspace, size)
}

/// `cudaDataType` of a float operand, as `ltblock::DType`'s id + 1 (0: not a float we pack).
fn float_hint(cuda_type: c_int) -> u8 {
    match cuda_type {
        0 => ltblock::DType::F32.id() + 1,  // CUDA_R_32F
        2 => ltblock::DType::F16.id() + 1,  // CUDA_R_16F
        14 => ltblock::DType::BF16.id() + 1, // CUDA_R_16BF
        _ => 0,
    }
}

/// A GEMM (`matrices` starts with A and B): its matrices (and device scalars) resident for
/// the call; A and B remember the float type they were read as (the only buffers that may go
/// lossy).
fn gemm<const M: usize>(hook: &'static str, stream: Handle, matrices: [*const c_void; M], scalars: [*const c_void; 2], ab_type: [c_int; 2], real: impl FnOnce() -> i32) -> i32 {
    with_resident_as(
        hook,
        Path::Cublas,
        stream,
        |u| {
            stats::add(&stats::C.cublas_calls, 1);
            // A and B are read; C (read and written) and the rest may be written
            let ptrs = matrices.map(|p| p as u64);
            collect_reads(u, &ptrs[..2]);
            collect(u, &ptrs[2..], true);
            collect(u, &scalars.map(|p| p as u64), false);
            for (p, t) in matrices.iter().zip(ab_type).filter(|_| crate::residency::packing()) {
                let hint = float_hint(t);
                if hint != 0 {
                    if let Some(b) = REGISTRY.find(*p as u64) {
                        b.float_hint.store(hint, Ordering::Relaxed);
                    }
                }
            }
        },
        || crate::residency::as_known_call(real),
        // a buffer that could not come back: the library's own status, not a CUDA one
        |rc| if rc == CUDA_ERROR_OUT_OF_MEMORY { CUBLAS_STATUS_ALLOC_FAILED } else { CUBLAS_STATUS_EXECUTION_FAILED },
    )
}

/// The element type of a cuBLASLt matrix layout (-1 when it cannot be read).
fn layout_type(desc: Handle) -> c_int {
    let Some(get) = crate::real::USES.cublasLtMatrixLayoutGetAttribute.get() else { return -1 };
    let (mut t, mut written): (u32, usize) = (0, 0);
    // SAFETY: CUBLASLT_MATRIX_LAYOUT_TYPE (0) is a uint32_t; a valid out-buffer of 4 bytes.
    let rc = unsafe { get(desc, 0, &mut t as *mut u32 as *mut c_void, 4, &mut written) };
    if rc == 0 && written == 4 { t as c_int } else { -1 }
}

pub unsafe fn cublasLtMatmul(
    call: &impl Fn(Handle, Handle, *const c_void, *const c_void, Handle, *const c_void, Handle, *const c_void, *const c_void, Handle, *mut c_void, Handle, *const c_void, *mut c_void, usize, Handle) -> i32,
    handle: Handle, desc: Handle, alpha: *const c_void, a: *const c_void, a_desc: Handle, b: *const c_void, b_desc: Handle, beta: *const c_void,
    c: *const c_void, c_desc: Handle, d: *mut c_void, d_desc: Handle, algo: *const c_void, workspace: *mut c_void, workspace_size: usize, stream: Handle,
) -> i32 {
    let ws = if workspace_size > 0 { workspace as *const c_void } else { std::ptr::null() };
    let types = if crate::residency::packing() { [layout_type(a_desc), layout_type(b_desc)] } else { [-1, -1] };
    gemm("cublasLtMatmul", stream, [a, b, c, d as *const c_void, ws], [alpha, beta], types, || {
        call(handle, desc, alpha, a, a_desc, b, b_desc, beta, c, c_desc, d, d_desc, algo, workspace, workspace_size, stream)
    })
}

pub unsafe fn cublasGemmEx(
    call: &impl Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, c_int, *const c_void, c_int, c_int, *const c_void, *mut c_void, c_int, c_int, c_int, c_int) -> i32,
    handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, a_type: c_int, lda: c_int,
    b: *const c_void, b_type: c_int, ldb: c_int, beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, compute: c_int, algo: c_int,
) -> i32 {
    gemm("cublasGemmEx", stream_of(handle), [a, b, c as *const c_void], [alpha, beta], [a_type, b_type], || {
        call(handle, ta, tb, m, n, k, alpha, a, a_type, lda, b, b_type, ldb, beta, c, c_type, ldc, compute, algo)
    })
}

pub unsafe fn cublasGemmStridedBatchedEx(
    call: &impl Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, c_int, i64, *const c_void, c_int, c_int, i64, *const c_void, *mut c_void, c_int, c_int, i64, c_int, c_int, c_int) -> i32,
    handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, a_type: c_int, lda: c_int, stride_a: i64,
    b: *const c_void, b_type: c_int, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, stride_c: i64,
    batch: c_int, compute: c_int, algo: c_int,
) -> i32 {
    gemm("cublasGemmStridedBatchedEx", stream_of(handle), [a, b, c as *const c_void], [alpha, beta], [a_type, b_type], || {
        call(handle, ta, tb, m, n, k, alpha, a, a_type, lda, stride_a, b, b_type, ldb, stride_b, beta, c, c_type, ldc, stride_c, batch, compute, algo)
    })
}

type Gemm<'a> = dyn Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, *const c_void, c_int, *const c_void, *mut c_void, c_int) -> i32 + 'a;

unsafe fn typed_gemm(
    hook: &'static str, call: &Gemm<'_>, handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void,
    lda: c_int, b: *const c_void, ldb: c_int, beta: *const c_void, c: *mut c_void, ldc: c_int,
) -> i32 {
    let t = if hook == "cublasSgemm_v2" { 0 } else { -1 };
    gemm(hook, stream_of(handle), [a, b, c as *const c_void], [alpha, beta], [t, t], || call(handle, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
}

macro_rules! typed_gemms {
    ($($name:ident),*) => {$(
        pub unsafe fn $name(call: &Gemm<'_>, handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, b: *const c_void, ldb: c_int, beta: *const c_void, c: *mut c_void, ldc: c_int) -> i32 {
            // SAFETY: forwarded.
            unsafe { typed_gemm(stringify!($name), call, handle, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) }
        }
    )*};
}
typed_gemms!(cublasSgemm_v2, cublasDgemm_v2, cublasCgemm_v2, cublasZgemm_v2);

type StridedGemm<'a> = dyn Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, i64, *const c_void, c_int, i64, *const c_void, *mut c_void, c_int, i64, c_int) -> i32 + 'a;

macro_rules! strided_gemms {
    ($($name:ident),*) => {$(
        pub unsafe fn $name(call: &StridedGemm<'_>, handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, stride_a: i64, b: *const c_void, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, ldc: c_int, stride_c: i64, batch: c_int) -> i32 {
            let t = if stringify!($name) == "cublasSgemmStridedBatched" { 0 } else { -1 };
            gemm(stringify!($name), stream_of(handle), [a, b, c as *const c_void], [alpha, beta], [t, t], || {
                call(handle, ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch)
            })
        }
    )*};
}
strided_gemms!(cublasSgemmStridedBatched, cublasDgemmStridedBatched, cublasCgemmStridedBatched, cublasZgemmStridedBatched);
