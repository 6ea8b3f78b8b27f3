//! THE list of hooked symbols: one line per exported function.
//!
//! Everything else is generated from it: the table of real functions (`crate::real`), the
//! exported stubs (`crate::hooks`), the per-hook call counters (`crate::stats`), the answers of
//! the lookup hooks (`dlsym`, `cuGetProcAddress`, `cudaGetDriverEntryPoint*`) and, through
//! `build.rs`, the linker version script. Adding a hook is one line here plus its body in the
//! family module. `build.rs` reads the `fn NAME(` lines of this file, so keep one per line.
//!
//! Each line: `family fn name(args) -> status;`. The family names the module under `hooks/`
//! that holds the body, a function of the same name taking the real call first.
//! `dlsym` is exported by hand (it needs its caller's address): see `hooks::lookup`.

/// Invokes `$m!` with every hooked symbol.
#[macro_export]
#[doc(hidden)]
macro_rules! for_each_hook {
    ($m:ident) => {
        $m! {
            // lookup paths
            lookup fn cuGetProcAddress(symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_int, flags: u64) -> CUresult;
            lookup fn cuGetProcAddress_v2(symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_int, flags: u64, status: *mut c_int) -> CUresult;
            lookup fn cudaGetDriverEntryPoint(symbol: *const c_char, pfn: *mut *mut c_void, flags: u64, status: *mut c_int) -> cudaError_t;
            lookup fn cudaGetDriverEntryPointByVersion(symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_uint, flags: u64, status: *mut c_int) -> cudaError_t;
            // allocation
            alloc fn cudaMalloc(dev_ptr: *mut *mut c_void, size: usize) -> cudaError_t;
            alloc fn cudaFree(ptr: *mut c_void) -> cudaError_t;
            alloc fn cudaMallocAsync(dev_ptr: *mut *mut c_void, size: usize, stream: Handle) -> cudaError_t;
            alloc fn cudaFreeAsync(ptr: *mut c_void, stream: Handle) -> cudaError_t;
            alloc fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, size: usize) -> CUresult;
            alloc fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult;
            alloc fn cuMemAllocAsync(dptr: *mut CUdeviceptr, size: usize, stream: Handle) -> CUresult;
            alloc fn cuMemFreeAsync(dptr: CUdeviceptr, stream: Handle) -> CUresult;
            alloc fn cudaIpcGetMemHandle(handle: *mut c_void, ptr: *mut c_void) -> cudaError_t;
            alloc fn cuIpcGetMemHandle(handle: *mut c_void, dptr: CUdeviceptr) -> CUresult;
            alloc fn cuMulticastBindAddr(mc_handle: u64, mc_offset: usize, memptr: CUdeviceptr, size: usize, flags: u64) -> CUresult;
            // memory the program maps itself (PyTorch's expandable segments)
            vmm fn cuMemCreate(handle: *mut u64, size: usize, prop: *const c_void, flags: u64) -> CUresult;
            vmm fn cuMemRelease(handle: u64) -> CUresult;
            vmm fn cuMemAddressReserve(ptr: *mut CUdeviceptr, size: usize, alignment: usize, addr: CUdeviceptr, flags: u64) -> CUresult;
            vmm fn cuMemAddressFree(ptr: CUdeviceptr, size: usize) -> CUresult;
            vmm fn cuMemMap(ptr: CUdeviceptr, size: usize, offset: usize, handle: u64, flags: u64) -> CUresult;
            vmm fn cuMemUnmap(ptr: CUdeviceptr, size: usize) -> CUresult;
            vmm fn cuMemSetAccess(ptr: CUdeviceptr, size: usize, desc: *const c_void, count: usize) -> CUresult;
            // peer access (the engine's VMM buffers let the peer in too)
            peer fn cudaDeviceEnablePeerAccess(peer_device: c_int, flags: c_uint) -> cudaError_t;
            peer fn cuCtxEnablePeerAccess(peer_ctx: Handle, flags: c_uint) -> CUresult;
            // pointer queries (a packed buffer's range is unmapped: made resident first)
            query fn cuPointerGetAttribute(data: *mut c_void, attribute: c_int, ptr: CUdeviceptr) -> CUresult;
            query fn cuPointerGetAttributes(count: c_uint, attributes: *mut c_int, data: *mut *mut c_void, ptr: CUdeviceptr) -> CUresult;
            query fn cudaPointerGetAttributes(attributes: *mut c_void, ptr: *const c_void) -> cudaError_t;
            query fn cuMemGetAddressRange_v2(base: *mut CUdeviceptr, size: *mut usize, ptr: CUdeviceptr) -> CUresult;
            // memory information
            info fn cudaMemGetInfo(free: *mut usize, total: *mut usize) -> cudaError_t;
            info fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult;
            // copies and sets, runtime
            copy fn cudaMemcpy(dst: *mut c_void, src: *const c_void, count: usize, kind: c_int) -> cudaError_t;
            copy fn cudaMemcpyAsync(dst: *mut c_void, src: *const c_void, count: usize, kind: c_int, stream: Handle) -> cudaError_t;
            copy fn cudaMemcpy2DAsync(dst: *mut c_void, dpitch: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: c_int, stream: Handle) -> cudaError_t;
            copy fn cudaMemcpyPeerAsync(dst: *mut c_void, dst_device: c_int, src: *const c_void, src_device: c_int, count: usize, stream: Handle) -> cudaError_t;
            copy fn cudaMemset(ptr: *mut c_void, value: c_int, count: usize) -> cudaError_t;
            copy fn cudaMemsetAsync(ptr: *mut c_void, value: c_int, count: usize, stream: Handle) -> cudaError_t;
            // copies and sets, driver
            copy fn cuMemcpy(dst: CUdeviceptr, src: CUdeviceptr, count: usize) -> CUresult;
            copy fn cuMemcpyAsync(dst: CUdeviceptr, src: CUdeviceptr, count: usize, stream: Handle) -> CUresult;
            copy fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, count: usize) -> CUresult;
            copy fn cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, count: usize, stream: Handle) -> CUresult;
            copy fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, count: usize) -> CUresult;
            copy fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, count: usize, stream: Handle) -> CUresult;
            copy fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, count: usize) -> CUresult;
            copy fn cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, count: usize, stream: Handle) -> CUresult;
            copy fn cuMemcpy2DAsync_v2(copy: *const CUDA_MEMCPY2D, stream: Handle) -> CUresult;
            copy fn cuMemcpyPeerAsync(dst: CUdeviceptr, dst_ctx: Handle, src: CUdeviceptr, src_ctx: Handle, count: usize, stream: Handle) -> CUresult;
            copy fn cuMemsetD8_v2(dst: CUdeviceptr, value: u8, count: usize) -> CUresult;
            copy fn cuMemsetD8Async(dst: CUdeviceptr, value: u8, count: usize, stream: Handle) -> CUresult;
            copy fn cuMemsetD16_v2(dst: CUdeviceptr, value: u16, count: usize) -> CUresult;
            copy fn cuMemsetD16Async(dst: CUdeviceptr, value: u16, count: usize, stream: Handle) -> CUresult;
            copy fn cuMemsetD32_v2(dst: CUdeviceptr, value: c_uint, count: usize) -> CUresult;
            copy fn cuMemsetD32Async(dst: CUdeviceptr, value: c_uint, count: usize, stream: Handle) -> CUresult;
            copy fn cuMemcpy2D_v2(copy: *const CUDA_MEMCPY2D) -> CUresult;
            copy fn cuMemcpy2DUnaligned_v2(copy: *const CUDA_MEMCPY2D) -> CUresult;
            copy fn cuMemsetD2D8_v2(dst: CUdeviceptr, pitch: usize, value: u8, width: usize, height: usize) -> CUresult;
            copy fn cuMemsetD2D32_v2(dst: CUdeviceptr, pitch: usize, value: c_uint, width: usize, height: usize) -> CUresult;
            copy fn cuStreamWriteValue32_v2(stream: Handle, addr: CUdeviceptr, value: c_uint, flags: c_uint) -> CUresult;
            copy fn cuStreamWriteValue64_v2(stream: Handle, addr: CUdeviceptr, value: u64, flags: c_uint) -> CUresult;
            copy fn cuStreamWaitValue32_v2(stream: Handle, addr: CUdeviceptr, value: c_uint, flags: c_uint) -> CUresult;
            copy fn cuStreamBatchMemOp_v2(stream: Handle, count: c_uint, ops: *mut c_void, flags: c_uint) -> CUresult;
            // copies and sets, runtime, more shapes
            copy fn cudaMemcpy2D(dst: *mut c_void, dpitch: usize, src: *const c_void, spitch: usize, width: usize, height: usize, kind: c_int) -> cudaError_t;
            copy fn cudaMemcpyToSymbol(symbol: *const c_void, src: *const c_void, count: usize, offset: usize, kind: c_int) -> cudaError_t;
            copy fn cudaMemcpyToSymbolAsync(symbol: *const c_void, src: *const c_void, count: usize, offset: usize, kind: c_int, stream: Handle) -> cudaError_t;
            copy fn cudaMemcpyFromSymbol(dst: *mut c_void, symbol: *const c_void, count: usize, offset: usize, kind: c_int) -> cudaError_t;
            copy fn cudaMemcpyFromSymbolAsync(dst: *mut c_void, symbol: *const c_void, count: usize, offset: usize, kind: c_int, stream: Handle) -> cudaError_t;
            copy fn cudaMemset2D(ptr: *mut c_void, pitch: usize, value: c_int, width: usize, height: usize) -> cudaError_t;
            copy fn cudaMemset2DAsync(ptr: *mut c_void, pitch: usize, value: c_int, width: usize, height: usize, stream: Handle) -> cudaError_t;
            copy fn cudaMemcpy3D(params: *const c_void) -> cudaError_t;
            copy fn cudaMemcpy3DAsync(params: *const c_void, stream: Handle) -> cudaError_t;
            copy fn cuMemcpy3D_v2(params: *const CUDA_MEMCPY3D) -> CUresult;
            copy fn cuMemcpy3DAsync_v2(params: *const CUDA_MEMCPY3D, stream: Handle) -> CUresult;
            copy fn cudaMemset3D(ptr: PitchedPtr, value: c_int, extent: Extent) -> cudaError_t;
            copy fn cudaMemset3DAsync(ptr: PitchedPtr, value: c_int, extent: Extent, stream: Handle) -> cudaError_t;
            copy fn cudaMemcpy_ptds(dst: *mut c_void, src: *const c_void, count: usize, kind: c_int) -> cudaError_t;
            copy fn cudaMemcpyAsync_ptsz(dst: *mut c_void, src: *const c_void, count: usize, kind: c_int, stream: Handle) -> cudaError_t;
            copy fn cudaMemset_ptds(ptr: *mut c_void, value: c_int, count: usize) -> cudaError_t;
            copy fn cudaMemsetAsync_ptsz(ptr: *mut c_void, value: c_int, count: usize, stream: Handle) -> cudaError_t;
            // kernel launches, runtime
            launch fn __cudaLaunchKernel(kernel: Handle, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> cudaError_t;
            launch fn __cudaLaunchKernel_ptsz(kernel: Handle, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> cudaError_t;
            launch fn cudaLaunchKernel(func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> cudaError_t;
            launch fn cudaLaunchKernel_ptsz(func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> cudaError_t;
            launch fn cudaLaunchKernelExC(config: *const cudaLaunchConfig_t, func: *const c_void, args: *mut *mut c_void) -> cudaError_t;
            launch fn cudaLaunchKernelExC_ptsz(config: *const cudaLaunchConfig_t, func: *const c_void, args: *mut *mut c_void) -> cudaError_t;
            launch fn cudaLaunchCooperativeKernel(func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> cudaError_t;
            launch fn cudaLaunchCooperativeKernel_ptsz(func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> cudaError_t;
            // kernel launches, driver
            launch fn cuLaunchKernel(f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> CUresult;
            launch fn cuLaunchKernel_ptsz(f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> CUresult;
            launch fn cuLaunchKernelEx(config: *const CUlaunchConfig, f: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> CUresult;
            launch fn cuLaunchKernelEx_ptsz(config: *const CUlaunchConfig, f: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> CUresult;
            launch fn cuLaunchCooperativeKernel(f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void) -> CUresult;
            launch fn cuLaunchCooperativeKernel_ptsz(f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void) -> CUresult;
            // stream capture (so that captured launches are not counted as executed)
            graph fn cudaStreamBeginCapture(stream: Handle, mode: c_int) -> cudaError_t;
            graph fn cudaStreamEndCapture(stream: Handle, graph: *mut Handle) -> cudaError_t;
            graph fn cuStreamBeginCapture_v2(stream: Handle, mode: c_int) -> CUresult;
            graph fn cuStreamEndCapture(stream: Handle, graph: *mut Handle) -> CUresult;
            // graphs
            graph fn cudaGraphInstantiate(exec: *mut Handle, graph: Handle, flags: u64) -> cudaError_t;
            graph fn cudaGraphInstantiateWithFlags(exec: *mut Handle, graph: Handle, flags: u64) -> cudaError_t;
            graph fn cudaGraphInstantiateWithParams(exec: *mut Handle, graph: Handle, params: *mut c_void) -> cudaError_t;
            graph fn cuGraphInstantiateWithFlags(exec: *mut Handle, graph: Handle, flags: u64) -> CUresult;
            graph fn cuGraphInstantiateWithParams(exec: *mut Handle, graph: Handle, params: *mut c_void) -> CUresult;
            graph fn cudaGraphExecUpdate(exec: Handle, graph: Handle, info: *mut c_void) -> cudaError_t;
            graph fn cuGraphExecUpdate_v2(exec: Handle, graph: Handle, info: *mut c_void) -> CUresult;
            graph fn cudaGraphExecDestroy(exec: Handle) -> cudaError_t;
            graph fn cuGraphExecDestroy(exec: Handle) -> CUresult;
            graph fn cudaGraphLaunch(exec: Handle, stream: Handle) -> cudaError_t;
            graph fn cuGraphLaunch(exec: Handle, stream: Handle) -> CUresult;
            // cuBLAS / cuBLASLt
            blas fn cublasSetStream_v2(handle: Handle, stream: Handle) -> cublasStatus_t;
            blas fn cublasSetWorkspace_v2(handle: Handle, workspace: *mut c_void, size: usize) -> cublasStatus_t;
            blas fn cublasLtMatmul(handle: Handle, desc: Handle, alpha: *const c_void, a: *const c_void, a_desc: Handle, b: *const c_void, b_desc: Handle, beta: *const c_void, c: *const c_void, c_desc: Handle, d: *mut c_void, d_desc: Handle, algo: *const c_void, workspace: *mut c_void, workspace_size: usize, stream: Handle) -> cublasStatus_t;
            blas fn cublasGemmEx(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, a_type: c_int, lda: c_int, b: *const c_void, b_type: c_int, ldb: c_int, beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, compute: c_int, algo: c_int) -> cublasStatus_t;
            blas fn cublasGemmStridedBatchedEx(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, a_type: c_int, lda: c_int, stride_a: i64, b: *const c_void, b_type: c_int, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, stride_c: i64, batch: c_int, compute: c_int, algo: c_int) -> cublasStatus_t;
            blas fn cublasSgemm_v2(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, b: *const c_void, ldb: c_int, beta: *const c_void, c: *mut c_void, ldc: c_int) -> cublasStatus_t;
            blas fn cublasDgemm_v2(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, b: *const c_void, ldb: c_int, beta: *const c_void, c: *mut c_void, ldc: c_int) -> cublasStatus_t;
            blas fn cublasCgemm_v2(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, b: *const c_void, ldb: c_int, beta: *const c_void, c: *mut c_void, ldc: c_int) -> cublasStatus_t;
            blas fn cublasZgemm_v2(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, b: *const c_void, ldb: c_int, beta: *const c_void, c: *mut c_void, ldc: c_int) -> cublasStatus_t;
            blas fn cublasSgemmStridedBatched(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, stride_a: i64, b: *const c_void, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, ldc: c_int, stride_c: i64, batch: c_int) -> cublasStatus_t;
            blas fn cublasDgemmStridedBatched(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, stride_a: i64, b: *const c_void, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, ldc: c_int, stride_c: i64, batch: c_int) -> cublasStatus_t;
            blas fn cublasCgemmStridedBatched(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, stride_a: i64, b: *const c_void, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, ldc: c_int, stride_c: i64, batch: c_int) -> cublasStatus_t;
            blas fn cublasZgemmStridedBatched(handle: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void, a: *const c_void, lda: c_int, stride_a: i64, b: *const c_void, ldb: c_int, stride_b: i64, beta: *const c_void, c: *mut c_void, ldc: c_int, stride_c: i64, batch: c_int) -> cublasStatus_t;
            // cuDNN (its kernels are visible at no other level)
            dnn fn cudnnBackendSetAttribute(desc: Handle, name: c_int, kind: c_int, count: i64, elements: *const c_void) -> cudnnStatus_t;
            dnn fn cudnnBackendDestroyDescriptor(desc: Handle) -> cudnnStatus_t;
            dnn fn cudnnBackendExecute(handle: Handle, plan: Handle, variant_pack: Handle) -> cudnnStatus_t;
            dnn fn cudnnSetStream(handle: Handle, stream: Handle) -> cudnnStatus_t;
            // NCCL (its kernels reach its buffers through its own descriptors: the call is the use)
            nccl fn ncclAllReduce(send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, op: c_int, comm: Handle, stream: Handle) -> ncclResult_t;
            nccl fn ncclBroadcast(send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, root: c_int, comm: Handle, stream: Handle) -> ncclResult_t;
            nccl fn ncclReduce(send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, op: c_int, root: c_int, comm: Handle, stream: Handle) -> ncclResult_t;
            nccl fn ncclAllGather(send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, comm: Handle, stream: Handle) -> ncclResult_t;
            nccl fn ncclReduceScatter(send: *const c_void, recv: *mut c_void, count: usize, dtype: c_int, op: c_int, comm: Handle, stream: Handle) -> ncclResult_t;
            nccl fn ncclSend(send: *const c_void, count: usize, dtype: c_int, peer: c_int, comm: Handle, stream: Handle) -> ncclResult_t;
            nccl fn ncclRecv(recv: *mut c_void, count: usize, dtype: c_int, peer: c_int, comm: Handle, stream: Handle) -> ncclResult_t;
            nccl fn ncclGroupStart() -> ncclResult_t;
            nccl fn ncclGroupEnd() -> ncclResult_t;
            nccl fn ncclCommRegister(comm: Handle, buff: *mut c_void, size: usize, handle: *mut *mut c_void) -> ncclResult_t;
            // streams (a pack waits for the streams that used a buffer: one destroyed is drained first)
            graph fn cudaStreamDestroy(stream: Handle) -> cudaError_t;
            graph fn cuStreamDestroy_v2(stream: Handle) -> CUresult;
        }
    };
}
