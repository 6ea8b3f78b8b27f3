//! cuBLAS and cuBLASLt GEMM hooks: the matrices and workspace they name are uses of their
//! buffers. The kernels cuBLAS launches are seen separately, through the driver launch hooks
//! (cuBLAS fetches `cuLaunchKernelEx` with `dlsym`), so a call is not a kernel here.
//! `alpha`/`beta` are usually host scalars: they are touched when they are device memory but
//! never counted as missing.
use std::os::raw::{c_int, c_void};

use super::{observe, touch_if_device, touch_pointers};
use crate::cuda_abi::*;
use crate::registry::Path;
use crate::stats;

pub const MISSING: i32 = CUBLAS_STATUS_NOT_INITIALIZED;
pub const PRIMITIVE: bool = false;

fn gemm<const M: usize>(hook: &'static str, matrices: [*const c_void; M], scalars: [*const c_void; 2]) {
    observe(hook, || {
        stats::add(&stats::C.cublas_calls, 1);
        touch_pointers(Path::Cublas, &matrices.map(|p| p as u64));
        touch_if_device(Path::Cublas, &scalars.map(|p| p as u64));
    });
}

pub unsafe fn cublasLtMatmul(
    call: &impl Fn(Handle, Handle, *const c_void, *const c_void, Handle, *const c_void, Handle, *const c_void, *const c_void, Handle, *mut c_void, Handle, *const c_void, *mut c_void, usize, Handle) -> i32,
    handle: Handle, desc: Handle, alpha: *const c_void, a: *const c_void, a_desc: Handle, b: *const c_void, b_desc: Handle, beta: *const c_void,
    c: *const c_void, c_desc: Handle, d: *mut c_void, d_desc: Handle, algo: *const c_void, workspace: *mut c_void, workspace_size: usize, stream: Handle,
) -> i32 {
    let ws = if workspace_size > 0 { workspace as *const c_void } else { std::ptr::null() };
    gemm("cublasLtMatmul", [a, b, c, d as *const c_void, ws], [alpha, beta]);
    call(handle, desc, alpha, a, a_desc, b, b_desc, beta, c, c_desc, d, d_desc, algo, workspace, workspace_size, stream)
}

pub unsafe fn cublasGemmEx(
    call: &impl Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, c_int, *const c_void, c_int, c_int, *const c_void, *mut c_void, c_int, c_int, c_int, c_int) -> i32,
    handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, a_type: c_int, lda: c_int,
    b: *const c_void, b_type: c_int, ldb: c_int, beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, compute: c_int, algo: c_int,
) -> i32 {
    gemm("cublasGemmEx", [a, b, c as *const c_void], [alpha, beta]);
    call(handle, ta, tb, m, n, k, alpha, a, a_type, lda, b, b_type, ldb, beta, c, c_type, ldc, compute, algo)
}

pub unsafe fn cublasGemmStridedBatchedEx(
    call: &impl Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, c_int, i64, *const c_void, c_int, c_int, i64, *const c_void, *mut c_void, c_int, c_int, i64, c_int, c_int, c_int) -> i32,
    handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, a_type: c_int, lda: c_int, stride_a: i64,
    b: *const c_void, b_type: c_int, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, stride_c: i64,
    batch: c_int, compute: c_int, algo: c_int,
) -> i32 {
    gemm("cublasGemmStridedBatchedEx", [a, b, c as *const c_void], [alpha, beta]);
    call(handle, ta, tb, m, n, k, alpha, a, a_type, lda, stride_a, b, b_type, ldb, stride_b, beta, c, c_type, ldc, stride_c, batch, compute, algo)
}

type Gemm<'a> = dyn Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, *const c_void, c_int, *const c_void, *mut c_void, c_int) -> i32 + 'a;

unsafe fn typed_gemm(
    hook: &'static str, call: &Gemm<'_>, handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void,
    lda: c_int, b: *const c_void, ldb: c_int, beta: *const c_void, c: *mut c_void, ldc: c_int,
) -> i32 {
    gemm(hook, [a, b, c as *const c_void], [alpha, beta]);
    call(handle, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
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
            gemm(stringify!($name), [a, b, c as *const c_void], [alpha, beta]);
            call(handle, ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch)
        }
    )*};
}
strided_gemms!(cublasSgemmStridedBatched, cublasDgemmStridedBatched, cublasCgemmStridedBatched, cublasZgemmStridedBatched);
