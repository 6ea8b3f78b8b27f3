// Times cuMemAllocFromPoolAsync / cuMemFreeAsync / cuStreamSynchronize of 43 MB chunks from a
// pool with release threshold 0 (as ltgpu's) and with a large one; and cuMemCreate/Map/SetAccess/
// Unmap/Release of 64 MiB for comparison.
#include <cuda.h>
#include <chrono>
#include <cstdio>
#define CK(x) do { CUresult r = (x); if (r != CUDA_SUCCESS) { printf("FAIL %s %d\n", #x, r); return 1; } } while (0)
static double now() { return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main() {
  CK(cuInit(0)); CUdevice dev; CK(cuDeviceGet(&dev, 0)); CUcontext ctx; CK(cuDevicePrimaryCtxRetain(&ctx, dev)); CK(cuCtxSetCurrent(ctx));
  CUstream s; CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  for (int thr = 0; thr < 2; thr++) {
    CUmemPoolProps p = {}; p.allocType = CU_MEM_ALLOCATION_TYPE_PINNED; p.location.type = CU_MEM_LOCATION_TYPE_DEVICE; p.location.id = 0;
    CUmemoryPool pool; CK(cuMemPoolCreate(&pool, &p));
    cuuint64_t t = thr ? (1ull << 40) : 0; CK(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &t));
    double ta = 0, tf = 0, ts = 0, ts2 = 0; int n = 24;
    for (int i = 0; i < n; i++) {
      CUdeviceptr d; double a = now(); CK(cuMemAllocFromPoolAsync(&d, 43u << 20, pool, s)); double b = now();
      CK(cuMemsetD8Async(d, 1, 43u << 20, s)); CK(cuStreamSynchronize(s)); double c = now();
      CK(cuMemFreeAsync(d, s)); double e = now(); CK(cuStreamSynchronize(s)); double f = now();
      if (i >= 4) { ta += b - a; ts += c - b; tf += e - c; ts2 += f - e; }
    }
    n -= 4;
    printf("pool threshold %s: alloc %.0f us, memset+sync %.0f us, free %.0f us, sync after free %.0f us (means of %d)\n", thr ? "1 TiB" : "0", ta / n, ts / n, tf / n, ts2 / n, n);
    CK(cuMemPoolDestroy(pool));
  }
  CUmemAllocationProp ap = {}; ap.type = CU_MEM_ALLOCATION_TYPE_PINNED; ap.location.type = CU_MEM_LOCATION_TYPE_DEVICE; ap.location.id = 0;
  size_t sz = 64u << 20; CUdeviceptr va; CK(cuMemAddressReserve(&va, sz, 0, 0, 0));
  CUmemAccessDesc ad = {}; ad.location = ap.location; ad.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  double c1 = 0, c2 = 0, c3 = 0, c4 = 0, c5 = 0; int m = 20;
  for (int i = 0; i < m + 4; i++) {
    CUmemGenericAllocationHandle h; double a = now(); CK(cuMemCreate(&h, sz, &ap, 0)); double b = now(); CK(cuMemMap(va, sz, 0, h, 0)); double c = now();
    CK(cuMemSetAccess(va, sz, &ad, 1)); double d = now(); CK(cuMemUnmap(va, sz)); double e = now(); CK(cuMemRelease(h)); double f = now();
    if (i >= 4) { c1 += b - a; c2 += c - b; c3 += d - c; c4 += e - d; c5 += f - e; }
  }
  printf("64 MiB VMM: create %.0f, map %.0f, access %.0f, unmap %.0f, release %.0f us (means of %d)\n", c1 / m, c2 / m, c3 / m, c4 / m, c5 / m, m);
  return 0;
}
