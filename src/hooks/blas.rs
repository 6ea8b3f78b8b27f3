//! cuBLAS and cuBLASLt GEMM hooks: the matrices and workspace they name are uses of their
//! buffers. The kernels cuBLAS launches are seen separately, through the driver launch hooks
//! (cuBLAS fetches `cuLaunchKernelEx` with `dlsym`), so a call is not a kernel here.
//! `alpha`/`beta` are usually host scalars: they are touched when they are device memory but
//! never counted as missing.
use std::os::raw::{c_int, c_void};

use std::collections::HashMap;

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

/// Bytes of an element of a float `cudaDataType` (0: not one we pack).
fn float_width(cuda_type: c_int) -> u64 {
    match cuda_type {
        0 => 4,
        2 | 14 => 2,
        _ => 0,
    }
}

/// An A or B operand as a GEMM reads it: its `cudaDataType` (-1: unknown) and the bytes it
/// spans from its pointer (None: unknown).
#[derive(Clone, Copy)]
struct Operand {
    ty: c_int,
    bytes: Option<u64>,
}

impl Operand {
    const UNKNOWN: Operand = Operand { ty: -1, bytes: None };

    /// A column-major matrix of `rows` x `cols` (as stored) with leading dimension `ld`,
    /// `batch` of them `stride` elements apart.
    fn matrix(ty: c_int, rows: i64, cols: i64, ld: i64, batch: i64, stride: i64) -> Operand {
        let w = float_width(ty) as i64;
        let one = if rows > 0 && cols > 0 { ld.checked_mul(cols - 1).and_then(|x| x.checked_add(rows)) } else { Some(0) };
        let all = one.and_then(|e| stride.checked_mul(batch.max(1) - 1).and_then(|s| s.checked_add(e))).and_then(|e| e.checked_mul(w));
        Operand { ty, bytes: all.filter(|&b| b >= 0).map(|b| b as u64) }
    }

    /// A GEMM's A (`m` x `k` untransposed) or B (`k` x `n`): `trans` 0 is N.
    fn of_gemm(ty: c_int, trans: c_int, rows: c_int, cols: c_int, ld: c_int, batch: i64, stride: i64) -> Operand {
        let (r, c) = if trans == 0 { (rows, cols) } else { (cols, rows) };
        Operand::matrix(ty, r as i64, c as i64, ld as i64, batch, stride)
    }
}

/// A buffer's uncovered tail that may still hold other data: PyTorch's caching allocator
/// splits a large block only when more than 1 MiB would remain, so a tensor that leaves less
/// of its segment unused is alone in it.
const SHARED_TAIL: u64 = 1 << 20;

/// Marks the buffer an operand reads as floats of its type, the only buffers that may go
/// lossy, when the operand is the whole buffer: it starts at the buffer's start and leaves
/// less than `SHARED_TAIL` of it uncovered. A segment of the caching allocator may hold
/// other tensors beside a weight (integers, masks), which int8 would corrupt, so an operand
/// inside a larger buffer marks nothing (a missed saving, never a wrong result).
fn hint_float(p: u64, op: Operand) {
    let hint = float_hint(op.ty);
    let (Some(bytes), true) = (op.bytes, hint != 0) else { return };
    if let Some(b) = REGISTRY.find(p) {
        if b.start == p && bytes + SHARED_TAIL > b.size {
            b.read_whole_as_floats(hint);
        }
    }
}

/// A GEMM (`matrices` starts with A and B): its matrices (and device scalars) resident for
/// the call; A and B remember the float type they were read as (`hint_float`).
fn gemm<const M: usize>(hook: &'static str, stream: Handle, matrices: [*const c_void; M], scalars: [*const c_void; 2], ab: [Operand; 2], real: impl FnOnce() -> i32) -> i32 {
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
            if crate::residency::packing() {
                for (p, op) in ptrs.iter().zip(ab) {
                    hint_float(*p, op);
                }
            }
        },
        || crate::residency::as_known_call(real),
        // a buffer that could not come back: the library's own status, not a CUDA one
        |rc| if rc == CUDA_ERROR_OUT_OF_MEMORY { CUBLAS_STATUS_ALLOC_FAILED } else { CUBLAS_STATUS_EXECUTION_FAILED },
    )
}

/// A cuBLASLt matrix layout attribute of type T (None when it cannot be read).
fn layout_attr<T: Default + Copy>(desc: Handle, attr: c_int) -> Option<T> {
    if desc.is_null() {
        return None; // (cuBLASLt would refuse the call anyway)
    }
    let get = crate::real::USES.cublasLtMatrixLayoutGetAttribute.get()?;
    let (mut v, mut written): (T, usize) = (T::default(), 0);
    let size = std::mem::size_of::<T>();
    // SAFETY: `v` is a valid out-buffer of `size` bytes, the attribute's type (cublasLt.h).
    let rc = unsafe { get(desc, attr, &mut v as *mut T as *mut c_void, size, &mut written) };
    (rc == 0 && written == size).then_some(v)
}

/// A cuBLASLt operand from its layout: type (0), order (1: 0 column-major, 1 row-major),
/// rows (2) and cols (3) as uint64, ld (4) as int64, batch count (5) as int32 and the strided
/// batch offset (6) as int64. Unknown when any cannot be read, or for other orders.
fn layout_operand(desc: Handle) -> Operand {
    let Some(ty) = layout_attr::<u32>(desc, 0) else { return Operand::UNKNOWN };
    let ty = ty as c_int;
    let shape = (|| {
        let order = layout_attr::<i32>(desc, 1)?;
        let (rows, cols, ld) = (layout_attr::<u64>(desc, 2)? as i64, layout_attr::<u64>(desc, 3)? as i64, layout_attr::<i64>(desc, 4)?);
        let (batch, stride) = (layout_attr::<i32>(desc, 5).unwrap_or(1) as i64, layout_attr::<i64>(desc, 6).unwrap_or(0));
        match order {
            0 => Some(Operand::matrix(ty, rows, cols, ld, batch, stride)),
            1 => Some(Operand::matrix(ty, cols, rows, ld, batch, stride)),
            _ => None,
        }
    })();
    shape.unwrap_or(Operand { ty, bytes: None })
}

pub unsafe fn cublasLtMatmul(
    call: &impl Fn(Handle, Handle, *const c_void, *const c_void, Handle, *const c_void, Handle, *const c_void, *const c_void, Handle, *mut c_void, Handle, *const c_void, *mut c_void, usize, Handle) -> i32,
    handle: Handle, desc: Handle, alpha: *const c_void, a: *const c_void, a_desc: Handle, b: *const c_void, b_desc: Handle, beta: *const c_void,
    c: *const c_void, c_desc: Handle, d: *mut c_void, d_desc: Handle, algo: *const c_void, workspace: *mut c_void, workspace_size: usize, stream: Handle,
) -> i32 {
    let ws = if workspace_size > 0 { workspace as *const c_void } else { std::ptr::null() };
    let ab = if crate::residency::packing() { [layout_operand(a_desc), layout_operand(b_desc)] } else { [Operand::UNKNOWN; 2] };
    gemm("cublasLtMatmul", stream, [a, b, c, d as *const c_void, ws], [alpha, beta], ab, || {
        call(handle, desc, alpha, a, a_desc, b, b_desc, beta, c, c_desc, d, d_desc, algo, workspace, workspace_size, stream)
    })
}

pub unsafe fn cublasGemmEx(
    call: &impl Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, c_int, *const c_void, c_int, c_int, *const c_void, *mut c_void, c_int, c_int, c_int, c_int) -> i32,
    handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, a_type: c_int, lda: c_int,
    b: *const c_void, b_type: c_int, ldb: c_int, beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, compute: c_int, algo: c_int,
) -> i32 {
    let ab = [Operand::of_gemm(a_type, ta, m, k, lda, 1, 0), Operand::of_gemm(b_type, tb, k, n, ldb, 1, 0)];
    gemm("cublasGemmEx", stream_of(handle), [a, b, c as *const c_void], [alpha, beta], ab, || {
        call(handle, ta, tb, m, n, k, alpha, a, a_type, lda, b, b_type, ldb, beta, c, c_type, ldc, compute, algo)
    })
}

pub unsafe fn cublasGemmStridedBatchedEx(
    call: &impl Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, c_int, i64, *const c_void, c_int, c_int, i64, *const c_void, *mut c_void, c_int, c_int, i64, c_int, c_int, c_int) -> i32,
    handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, a_type: c_int, lda: c_int, stride_a: i64,
    b: *const c_void, b_type: c_int, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, stride_c: i64,
    batch: c_int, compute: c_int, algo: c_int,
) -> i32 {
    let ab = [Operand::of_gemm(a_type, ta, m, k, lda, batch as i64, stride_a), Operand::of_gemm(b_type, tb, k, n, ldb, batch as i64, stride_b)];
    gemm("cublasGemmStridedBatchedEx", stream_of(handle), [a, b, c as *const c_void], [alpha, beta], ab, || {
        call(handle, ta, tb, m, n, k, alpha, a, a_type, lda, stride_a, b, b_type, ldb, stride_b, beta, c, c_type, ldc, stride_c, batch, compute, algo)
    })
}

type Gemm<'a> = dyn Fn(Handle, c_int, c_int, c_int, c_int, c_int, *const c_void, *const c_void, c_int, *const c_void, c_int, *const c_void, *mut c_void, c_int) -> i32 + 'a;

unsafe fn typed_gemm(
    hook: &'static str, call: &Gemm<'_>, handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void,
    lda: c_int, b: *const c_void, ldb: c_int, beta: *const c_void, c: *mut c_void, ldc: c_int,
) -> i32 {
    let t = if hook == "cublasSgemm_v2" { 0 } else { -1 };
    let ab = [Operand::of_gemm(t, ta, m, k, lda, 1, 0), Operand::of_gemm(t, tb, k, n, ldb, 1, 0)];
    gemm(hook, stream_of(handle), [a, b, c as *const c_void], [alpha, beta], ab, || call(handle, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
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
            let ab = [Operand::of_gemm(t, ta, m, k, lda, batch as i64, stride_a), Operand::of_gemm(t, tb, k, n, ldb, batch as i64, stride_b)];
            gemm(stringify!($name), stream_of(handle), [a, b, c as *const c_void], [alpha, beta], ab, || {
                call(handle, ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch)
            })
        }
    )*};
}
strided_gemms!(cublasSgemmStridedBatched, cublasDgemmStridedBatched, cublasCgemmStridedBatched, cublasZgemmStridedBatched);
