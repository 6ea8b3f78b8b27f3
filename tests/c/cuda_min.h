/* The few CUDA declarations the test programs need, written against the C ABI (the test
 * machines have no CUDA headers). They link the host-memory double as libcuda.so.1. */
#include <stddef.h>
#include <stdint.h>
typedef void *Handle;
typedef struct { unsigned x, y, z; } dim3;
typedef uint64_t CUdeviceptr;

int cudaMalloc(void **p, size_t n);
int cudaFree(void *p);
int cudaMallocAsync(void **p, size_t n, Handle s);
int cudaFreeAsync(void *p, Handle s);
int cuMemAlloc_v2(CUdeviceptr *p, size_t n);
int cuMemFree_v2(CUdeviceptr p);
int cudaMemGetInfo(size_t *f, size_t *t);
int cuMemGetInfo_v2(size_t *f, size_t *t);
int cudaIpcGetMemHandle(void *h, void *p);
int cuPointerGetAttribute(void *data, int attr, CUdeviceptr p);
int cuPointerGetAttributes(unsigned n, int *attrs, void **data, CUdeviceptr p);
typedef struct { int type; int device; void *devicePointer; void *hostPointer; } cudaPointerAttributes;
int cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p);
int cuMemGetAddressRange_v2(CUdeviceptr *base, size_t *size, CUdeviceptr p);
int cudaMemcpy(void *d, const void *s, size_t n, int kind);
int cudaSetDevice(int device);
int cudaDeviceEnablePeerAccess(int peer, unsigned flags);
int cuDevicePrimaryCtxRetain(Handle *ctx, int device);
int cuCtxPushCurrent_v2(Handle ctx);
int cuCtxPopCurrent_v2(Handle *ctx);
int cuCtxEnablePeerAccess(Handle peer, unsigned flags);
int ncclAllReduce(const void *send, void *recv, size_t count, int dtype, int op, Handle comm, Handle stream);
int ncclSend(const void *send, size_t count, int dtype, int peer, Handle comm, Handle stream);
int ncclRecv(void *recv, size_t count, int dtype, int peer, Handle comm, Handle stream);
int ncclGroupStart(void);
int ncclGroupEnd(void);
int ncclCommRegister(Handle comm, void *buff, size_t size, void **handle);
int cudaMemcpyAsync(void *d, const void *s, size_t n, int kind, Handle st);
int cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h, int kind, Handle st);
int cudaMemset(void *d, int v, size_t n);
int cudaMemsetAsync(void *d, int v, size_t n, Handle st);
int cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n);
int cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n);
int cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n);
int cuMemcpyAsync(CUdeviceptr d, CUdeviceptr s, size_t n, Handle st);
int cuMemsetD32_v2(CUdeviceptr d, unsigned v, size_t n);
int cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, Handle st);
int __cudaLaunchKernel(Handle k, dim3 g, dim3 b, void **args, size_t sm, Handle s);
int cudaLaunchKernel(const void *f, dim3 g, dim3 b, void **args, size_t sm, Handle s);
typedef struct { dim3 grid, block; size_t smem; Handle stream; void *attrs; unsigned nattrs; } cudaLaunchConfig_t;
int cudaLaunchKernelExC(const cudaLaunchConfig_t *c, const void *f, void **args);
int cudaLaunchCooperativeKernel(const void *f, dim3 g, dim3 b, void **args, size_t sm, Handle s);
int cudaGetLastError(void);
int cudaPeekAtLastError(void);
typedef struct { unsigned gx, gy, gz, bx, by, bz, smem; Handle stream; void *attrs; unsigned nattrs; } CUlaunchConfig;
typedef struct { unsigned id; unsigned pad; uint64_t value[8]; } CUlaunchAttribute;
int cudaStreamBeginCapture(Handle s, int mode);
int cudaStreamEndCapture(Handle s, Handle *g);
int cudaGraphInstantiate(Handle *e, Handle g, unsigned long long flags);
int cudaGraphLaunch(Handle e, Handle s);
int cudaGraphExecDestroy(Handle e);
int cuGetProcAddress_v2(const char *sym, void **pfn, int ver, uint64_t flags, int *status);
int cudaGetDriverEntryPoint(const char *sym, void **pfn, unsigned long long flags, int *status);
int cuMemAddressReserve(CUdeviceptr *p, size_t n, size_t a, CUdeviceptr addr, uint64_t f);
int cuMemCreate(uint64_t *h, size_t n, const void *prop, uint64_t f);
int cuMemMap(CUdeviceptr p, size_t n, size_t off, uint64_t h, uint64_t f);
int cuMemSetAccess(CUdeviceptr p, size_t n, const void *d, size_t c);
int cuMemUnmap(CUdeviceptr p, size_t n);
int cuMemRelease(uint64_t h);
int cuMemAddressFree(CUdeviceptr p, size_t n);
int cublasSgemm_v2(Handle h, int ta, int tb, int m, int n, int k, const float *al, const float *a, int lda, const float *b, int ldb, const float *be, float *c, int ldc);
int cublasGemmEx(Handle h, int ta, int tb, int m, int n, int k, const void *al, const void *a, int at, int lda, const void *b, int bt, int ldb, const void *be, void *c, int ct, int ldc, int comp, int algo);
int cublasLtMatrixLayoutCreate(Handle *desc, uint32_t type, uint64_t rows, uint64_t cols, int64_t ld);
int cublasLtMatrixLayoutSetAttribute(Handle desc, int attr, const void *buf, size_t size);
int cublasLtMatrixLayoutDestroy(Handle desc);
int cublasLtMatmul(Handle h, Handle d, const void *al, const void *a, Handle ad, const void *b, Handle bd, const void *be, const void *c, Handle cd, void *dd, Handle ddesc, const void *algo, void *ws, size_t wss, Handle s);
int cudnnBackendExecute(Handle h, Handle plan, Handle pack);
int cudnnBackendCreateDescriptor(int kind, Handle *desc);
int cudnnBackendSetAttribute(Handle desc, int name, int kind, int64_t count, const void *elements);
int cudnnBackendDestroyDescriptor(Handle desc);

typedef struct { void *ptr; size_t pitch, xsize, ysize; } cudaPitchedPtr;
typedef struct { size_t width, height, depth; } cudaExtent;
int cudaMemset3D(cudaPitchedPtr p, int value, cudaExtent e);

/* double-only helpers */
Handle dbl_register_kernel(void (*run)(void **), size_t n, const size_t *sizes, int hide_layout);
Handle dbl_variant_pack(const uint64_t *ptrs, size_t n, uint64_t ws);
void dbl_last_launch_attr(unsigned *id, uint64_t *value, unsigned *gx);
