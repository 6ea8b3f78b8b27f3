// Does a thread cycling VMM mappings (create, map, set access, unmap, release of 48 MiB) slow
// another thread's kernel launches? Times 20000 launches of an empty kernel on one stream,
// alone and while the other thread cycles.
#include <cuda.h>
#include <cuda_runtime.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#define CK(x) do { CUresult r = (x); if (r != CUDA_SUCCESS) { printf("FAIL %s %d\n", #x, r); exit(1); } } while (0)
__global__ void empty(float *p) { if (p && threadIdx.x == 1234567) p[0] = 1; }
static double now() { return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
std::atomic<bool> stop{false};
std::atomic<long> cycles{0};
void cycler(CUcontext ctx) {
  CK(cuCtxSetCurrent(ctx));
  CUmemAllocationProp ap = {}; ap.type = CU_MEM_ALLOCATION_TYPE_PINNED; ap.location.type = CU_MEM_LOCATION_TYPE_DEVICE; ap.location.id = 0;
  size_t sz = 48u << 20; CUdeviceptr va; CK(cuMemAddressReserve(&va, sz, 0, 0, 0));
  CUmemAccessDesc ad = {}; ad.location = ap.location; ad.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  while (!stop) {
    CUmemGenericAllocationHandle h; CK(cuMemCreate(&h, sz, &ap, 0)); CK(cuMemMap(va, sz, 0, h, 0));
    CK(cuMemSetAccess(va, sz, &ad, 1)); CK(cuMemUnmap(va, sz)); CK(cuMemRelease(h)); cycles++;
  }
}
int main() {
  cudaFree(0); CUcontext ctx; CK(cuCtxGetCurrent(&ctx));
  cudaStream_t s; cudaStreamCreate(&s);
  for (int i = 0; i < 1000; i++) empty<<<1, 32, 0, s>>>(nullptr);
  cudaStreamSynchronize(s);
  for (int round = 0; round < 3; round++) {
    for (int with = 0; with < 2; with++) {
      std::thread t;
      if (with) { stop = false; cycles = 0; t = std::thread(cycler, ctx); std::this_thread::sleep_for(std::chrono::milliseconds(20)); }
      double a = now();
      for (int i = 0; i < 20000; i++) empty<<<1, 32, 0, s>>>(nullptr);
      double b = now();
      cudaStreamSynchronize(s);
      double c = now();
      if (with) { stop = true; t.join(); }
      printf("round %d %s: %.2f us a launch (host), %.2f us with the sync; %ld VMM cycles meanwhile\n", round, with ? "with VMM cycling" : "alone          ", (b - a) / 20000, (c - a) / 20000, with ? (long)cycles : 0L);
    }
  }
  return 0;
}
