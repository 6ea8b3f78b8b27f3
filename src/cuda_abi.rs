//! The C types of the CUDA runtime, driver, cuBLAS and cuDNN that our hooks see.
//!
//! Written by hand (not generated) because we need only the few dozen signatures we hook, and
//! every struct here is read in place from the caller's memory, so its layout must match the
//! CUDA 12/13 headers exactly. Handles are opaque pointers; status codes are plain `c_int`
//! because we never interpret them, only pass them back.
#![allow(non_camel_case_types, non_snake_case, dead_code)]

use std::os::raw::{c_int, c_uint, c_void};

pub type CUresult = c_int;
pub type cudaError_t = c_int;
pub type cublasStatus_t = c_int;
pub type cudnnStatus_t = c_int;
pub type ncclResult_t = c_int;

pub type CUdeviceptr = u64;
pub type Handle = *mut c_void;

pub const CUDA_SUCCESS: CUresult = 0;
/// `CUDA_ERROR_NOT_FOUND` (driver) and `cudaErrorSymbolNotFound` (runtime) are both 500.
pub const CUDA_ERROR_NOT_FOUND: c_int = 500;
pub const CUDA_ERROR_INVALID_CONTEXT: c_int = 201;
pub const CUBLAS_STATUS_NOT_INITIALIZED: c_int = 1;
pub const CUBLAS_STATUS_ALLOC_FAILED: c_int = 3;
pub const CUBLAS_STATUS_EXECUTION_FAILED: c_int = 13;
pub const CUDNN_STATUS_NOT_INITIALIZED: c_int = 1001;
/// cuDNN 9's category of execution failures (its sub-codes add to it).
pub const CUDNN_STATUS_EXECUTION_FAILED: c_int = 5000;

/// `cudaMemcpyKind`.
pub const MEMCPY_HOST_TO_DEVICE: c_int = 1;
pub const MEMCPY_DEVICE_TO_HOST: c_int = 2;
pub const MEMCPY_DEFAULT: c_int = 4;

/// `CUmemorytype`.
pub const CU_MEMORYTYPE_HOST: c_uint = 1;
pub const CU_MEMORYTYPE_DEVICE: c_uint = 2;
pub const CU_MEMORYTYPE_UNIFIED: c_uint = 4;
/// `CU_POINTER_ATTRIBUTE_MEMORY_TYPE`.
pub const CU_POINTER_ATTRIBUTE_MEMORY_TYPE: c_int = 2;

/// `CU_LAUNCH_PARAM_*` markers of the `extra` array of a driver launch.
pub const CU_LAUNCH_PARAM_END: usize = 0;
pub const CU_LAUNCH_PARAM_BUFFER_POINTER: usize = 1;
pub const CU_LAUNCH_PARAM_BUFFER_SIZE: usize = 2;
/// `CU_LAUNCH_PARAM_END_AS_INT` etc. are the same values; extra arrays are short.
pub const EXTRA_MAX_ENTRIES: usize = 16;

/// `CUgraphNodeType`.
pub const CU_GRAPH_NODE_TYPE_KERNEL: c_int = 0;
pub const CU_GRAPH_NODE_TYPE_MEMCPY: c_int = 1;
pub const CU_GRAPH_NODE_TYPE_MEMSET: c_int = 2;
pub const CU_GRAPH_NODE_TYPE_GRAPH: c_int = 4;

/// `cudnnBackendAttributeName_t` values of a variant pack, and `CUDNN_TYPE_VOID_PTR`.
pub const CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS: c_int = 1001;
pub const CUDNN_ATTR_VARIANT_PACK_WORKSPACE: c_int = 1003;
pub const CUDNN_TYPE_VOID_PTR: c_int = 6;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dim3 {
    pub x: c_uint,
    pub y: c_uint,
    pub z: c_uint,
}

/// `CUlaunchConfig`.
#[repr(C)]
pub struct CUlaunchConfig {
    pub gridDimX: c_uint,
    pub gridDimY: c_uint,
    pub gridDimZ: c_uint,
    pub blockDimX: c_uint,
    pub blockDimY: c_uint,
    pub blockDimZ: c_uint,
    pub sharedMemBytes: c_uint,
    pub hStream: Handle,
    pub attrs: *mut c_void,
    pub numAttrs: c_uint,
}

/// `cudaLaunchConfig_t`.
#[repr(C)]
pub struct cudaLaunchConfig_t {
    pub gridDim: Dim3,
    pub blockDim: Dim3,
    pub dynamicSmemBytes: usize,
    pub stream: Handle,
    pub attrs: *mut c_void,
    pub numAttrs: c_uint,
}

/// `CUDA_MEMCPY2D`.
#[repr(C)]
pub struct CUDA_MEMCPY2D {
    pub srcXInBytes: usize,
    pub srcY: usize,
    pub srcMemoryType: c_uint,
    pub srcHost: *const c_void,
    pub srcDevice: CUdeviceptr,
    pub srcArray: Handle,
    pub srcPitch: usize,
    pub dstXInBytes: usize,
    pub dstY: usize,
    pub dstMemoryType: c_uint,
    pub dstHost: *mut c_void,
    pub dstDevice: CUdeviceptr,
    pub dstArray: Handle,
    pub dstPitch: usize,
    pub WidthInBytes: usize,
    pub Height: usize,
}

/// `CUDA_MEMCPY3D` (graph memcpy nodes).
#[repr(C)]
pub struct CUDA_MEMCPY3D {
    pub srcXInBytes: usize,
    pub srcY: usize,
    pub srcZ: usize,
    pub srcLOD: usize,
    pub srcMemoryType: c_uint,
    pub srcHost: *const c_void,
    pub srcDevice: CUdeviceptr,
    pub srcArray: Handle,
    pub reserved0: *mut c_void,
    pub srcPitch: usize,
    pub srcHeight: usize,
    pub dstXInBytes: usize,
    pub dstY: usize,
    pub dstZ: usize,
    pub dstLOD: usize,
    pub dstMemoryType: c_uint,
    pub dstHost: *mut c_void,
    pub dstDevice: CUdeviceptr,
    pub dstArray: Handle,
    pub reserved1: *mut c_void,
    pub dstPitch: usize,
    pub dstHeight: usize,
    pub WidthInBytes: usize,
    pub Height: usize,
    pub Depth: usize,
}

/// `CUDA_MEMSET_NODE_PARAMS`.
#[repr(C)]
pub struct CUDA_MEMSET_NODE_PARAMS {
    pub dst: CUdeviceptr,
    pub pitch: usize,
    pub value: c_uint,
    pub elementSize: c_uint,
    pub width: usize,
    pub height: usize,
}

/// `CUDA_KERNEL_NODE_PARAMS_v2`.
#[repr(C)]
pub struct CUDA_KERNEL_NODE_PARAMS {
    pub func: Handle,
    pub gridDimX: c_uint,
    pub gridDimY: c_uint,
    pub gridDimZ: c_uint,
    pub blockDimX: c_uint,
    pub blockDimY: c_uint,
    pub blockDimZ: c_uint,
    pub sharedMemBytes: c_uint,
    pub kernelParams: *mut *mut c_void,
    pub extra: *mut *mut c_void,
    pub kern: Handle,
    pub ctx: Handle,
}

/// `cudaPitchedPtr` (passed by value to the 3-D sets).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PitchedPtr {
    pub ptr: *mut c_void,
    pub pitch: usize,
    pub xsize: usize,
    pub ysize: usize,
}

/// `cudaExtent`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Extent {
    pub width: usize,
    pub height: usize,
    pub depth: usize,
}

/// `CUmemAllocationProp` (VMM).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CUmemAllocationProp {
    pub kind: c_int,
    pub requested_handle_types: c_int,
    pub location_type: c_int,
    pub location_id: c_int,
    pub win32_meta: *mut c_void,
    pub compression_type: u8,
    pub rdma_capable: u8,
    pub usage: u16,
    pub reserved: [u8; 4],
}

/// `CUmemAccessDesc`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CUmemAccessDesc {
    pub location_type: c_int,
    pub location_id: c_int,
    pub flags: c_int,
}

pub const CU_MEM_ALLOCATION_TYPE_PINNED: c_int = 1;
pub const CU_MEM_LOCATION_TYPE_DEVICE: c_int = 1;
pub const CU_MEM_ACCESS_FLAGS_PROT_READWRITE: c_int = 3;
pub const CU_MEM_ALLOC_GRANULARITY_MINIMUM: c_int = 0;
pub const CUDA_ERROR_OUT_OF_MEMORY: c_int = 2;
pub const CUDA_ERROR_INVALID_VALUE: c_int = 1;
/// `CUDA_ERROR_ILLEGAL_ADDRESS`: what the program's call gets when a packed block is corrupt
/// (its data cannot be handed over).
pub const CUDA_ERROR_DATA_CORRUPT: c_int = 700;
/// `CU_STREAM_CAPTURE_MODE_RELAXED`.
pub const CU_STREAM_CAPTURE_MODE_RELAXED: c_int = 2;
pub const CU_EVENT_DISABLE_TIMING: c_uint = 2;

/// Plain C structs that the driver fills in: all-zero is a valid starting value.
pub trait ZeroInit: Sized {
    fn zeroed() -> Self {
        // SAFETY: only used for the repr(C) structs above, made of integers and raw pointers,
        // for which all-zero bytes are a valid value.
        unsafe { std::mem::zeroed() }
    }
}

impl ZeroInit for CUDA_MEMCPY3D {}
impl ZeroInit for CUDA_MEMSET_NODE_PARAMS {}
impl ZeroInit for CUDA_KERNEL_NODE_PARAMS {}
