/* Exercises every interception path of libltshim against the CUDA double. Each scenario is a
 * subcommand; it checks its own results (exit 1 with a message on a wrong value) and prints
 * `did NAME COUNT` lines: what the program itself did, which the Rust test compares with the
 * library's stats report. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cuda_min.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ != 0) { fprintf(stderr, "FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #x, rc_); exit(1); } } while (0)
#define EXPECT(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } } while (0)

enum { N = 1024 };
static const dim3 ONE = {1, 1, 1};

/* add(float *out, const float *a, const float *b, int n) */
static void add_kernel(void **args) {
    float *out = *(float **)args[0];
    const float *a = *(const float **)args[1], *b = *(const float **)args[2];
    int n = *(int *)args[3];
    for (int i = 0; i < n; i++) out[i] = a[i] + b[i];
}
static const size_t ADD_SIZES[] = {8, 8, 8, 4};

/* A struct parameter holding two pointers: scale(struct {float *dst; float *src;} p, float f) */
struct pair { float *dst; float *src; };
static void scale_kernel(void **args) {
    struct pair p = *(struct pair *)args[0];
    float f = *(float *)args[1];
    for (int i = 0; i < N; i++) p.dst[i] = p.src[i] * f;
}
static const size_t SCALE_SIZES[] = {16, 4};

static Handle ADD, SCALE, HIDDEN;
static void setup(void) {
    ADD = dbl_register_kernel(add_kernel, 4, ADD_SIZES, 0);
    SCALE = dbl_register_kernel(scale_kernel, 2, SCALE_SIZES, 0);
    HIDDEN = dbl_register_kernel(add_kernel, 4, ADD_SIZES, 1);
}

static float host_a[N], host_b[N], host_out[N];
static void fill(void) { for (int i = 0; i < N; i++) { host_a[i] = (float)i; host_b[i] = 0.5f * i; } }
static void check_sum(const char *what) {
    for (int i = 0; i < N; i++) EXPECT(host_out[i] == host_a[i] + host_b[i], "%s: out[%d]=%f", what, i, host_out[i]);
}

typedef int (*cuLaunchKernel_t)(Handle, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, Handle, void **, void **);
typedef int (*cuLaunchKernelEx_t)(const CUlaunchConfig *, Handle, void **, void **);

static int paths(void) {
    setup(); fill();
    float *a, *b, *out;
    CHECK(cudaMalloc((void **)&a, N * 4));
    CHECK(cuMemAlloc_v2((CUdeviceptr *)&b, N * 4));
    CHECK(cudaMallocAsync((void **)&out, N * 4, NULL));
    printf("did alloc 3\n");
    CHECK(cudaMemcpy(a, host_a, N * 4, 1));
    CHECK(cuMemcpyHtoD_v2((CUdeviceptr)b, host_b, N * 4));
    int n = N;
    void *args[] = {&out, &a, &b, &n};

    /* runtime launches: 4 forms */
    CHECK(__cudaLaunchKernel(ADD, ONE, ONE, args, 0, NULL));
    CHECK(cudaLaunchKernel(ADD, ONE, ONE, args, 0, NULL));
    cudaLaunchConfig_t rc = {ONE, ONE, 0, NULL, NULL, 0};
    CHECK(cudaLaunchKernelExC(&rc, ADD, args));
    CHECK(cudaLaunchCooperativeKernel(ADD, ONE, ONE, args, 0, NULL));
    printf("did runtime_launch 4\n");
    CHECK(cudaMemcpyAsync(host_out, out, N * 4, 2, NULL));
    check_sum("runtime launch");

    /* driver launches through every lookup path */
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    EXPECT(lib, "libcuda.so.1 not loaded");
    cuLaunchKernel_t by_dlsym = (cuLaunchKernel_t)dlsym(lib, "cuLaunchKernel");
    cuLaunchKernelEx_t by_proc = NULL, by_entry = NULL;
    int st = -1;
    CHECK(cuGetProcAddress_v2("cuLaunchKernelEx", (void **)&by_proc, 12000, 0, &st));
    CHECK(cudaGetDriverEntryPoint("cuLaunchKernelEx", (void **)&by_entry, 0, &st));
    CHECK(cudaMemset(out, 0, N * 4));
    CHECK(by_dlsym(ADD, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL));
    /* the extra form: one packed buffer laid out as the kernel's parameters */
    unsigned char buf[32]; memcpy(buf, &out, 8); memcpy(buf + 8, &a, 8); memcpy(buf + 16, &b, 8); memcpy(buf + 24, &n, 4);
    size_t bufsize = 28;
    void *extra[] = {(void *)1, buf, (void *)2, &bufsize, (void *)0};
    CHECK(by_dlsym(ADD, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, extra));
    CUlaunchAttribute attr = {7, 0, {0x1234, 0, 0, 0, 0, 0, 0, 0}};
    CUlaunchConfig cfg = {3, 1, 1, 1, 1, 1, 0, NULL, &attr, 1};
    CHECK(by_proc(&cfg, ADD, args, NULL));
    unsigned id = 0, gx = 0; uint64_t value = 0;
    dbl_last_launch_attr(&id, &value, &gx);
    EXPECT(id == 7 && value == 0x1234 && gx == 3, "launch attribute not forwarded: id %u value %llx gx %u", id, (unsigned long long)value, gx);
    CHECK(by_entry(&cfg, ADD, args, NULL));
    printf("did driver_launch 4\n");
    CHECK(cuMemcpyDtoH_v2(host_out, (CUdeviceptr)out, N * 4));
    check_sum("driver launch");

    /* a struct parameter holding pointers */
    struct pair p = {out, a}; float f = 2.0f;
    void *sargs[] = {&p, &f};
    CHECK(__cudaLaunchKernel(SCALE, ONE, ONE, sargs, 0, NULL));
    printf("did runtime_launch 1\n");
    CHECK(cudaMemcpy(host_out, out, N * 4, 4));
    for (int i = 0; i < N; i++) EXPECT(host_out[i] == 2.0f * host_a[i], "scale out[%d]", i);

    /* copies and sets, assorted */
    CHECK(cuMemcpyDtoD_v2((CUdeviceptr)out, (CUdeviceptr)a, N * 4));
    CHECK(cuMemcpyAsync((CUdeviceptr)out, (CUdeviceptr)b, N * 4, NULL));
    CHECK(cudaMemcpy2DAsync(out, 16, host_a, 16, 16, 4, 1, NULL));
    CHECK(cuMemsetD32_v2((CUdeviceptr)out, 0, N));
    CHECK(cuMemsetD8Async((CUdeviceptr)out, 0, N * 4, NULL));
    CHECK(cudaMemsetAsync(out, 0, N * 4, NULL));

    /* a captured graph replayed 3 times: 2 kernels + 1 memset per replay */
    Handle stream = (Handle)0x5000, graph = NULL, exec = NULL;
    CHECK(cudaStreamBeginCapture(stream, 0));
    CHECK(cudaMemsetAsync(out, 0, N * 4, stream));
    CHECK(__cudaLaunchKernel(ADD, ONE, ONE, args, 0, stream));
    CHECK(by_dlsym(ADD, 1, 1, 1, 1, 1, 1, 0, stream, args, NULL));
    CHECK(cudaStreamEndCapture(stream, &graph));
    printf("did captured 2\n");
    CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 3; i++) CHECK(cudaGraphLaunch(exec, stream));
    printf("did graph_launch 3\ndid graph_kernels 6\n");
    CHECK(cudaMemcpy(host_out, out, N * 4, 2));
    check_sum("graph replay");
    CHECK(cudaGraphExecDestroy(exec));

    /* cuBLAS: a real sgemm on the double, and pointer checks */
    float *m1, *m2, *m3; float one = 1.0f, zero = 0.0f;
    CHECK(cudaMalloc((void **)&m1, 16)); CHECK(cudaMalloc((void **)&m2, 16)); CHECK(cudaMalloc((void **)&m3, 16));
    float h1[4] = {1, 2, 3, 4}, h2[4] = {1, 0, 0, 1}, h3[4];
    CHECK(cudaMemcpy(m1, h1, 16, 1)); CHECK(cudaMemcpy(m2, h2, 16, 1));
    CHECK(cublasSgemm_v2(NULL, 0, 0, 2, 2, 2, &one, m1, 2, m2, 2, &zero, m3, 2));
    CHECK(cudaMemcpy(h3, m3, 16, 2));
    for (int i = 0; i < 4; i++) EXPECT(h3[i] == h1[i], "sgemm[%d]=%f", i, h3[i]);
    CHECK(cublasGemmEx(NULL, 0, 0, 2, 2, 2, &one, m1, 0, 2, m2, 0, 2, &zero, m3, 0, 2, 68, -1));
    CHECK(cublasLtMatmul(NULL, NULL, &one, m1, NULL, m2, NULL, &zero, m3, NULL, m3, NULL, NULL, out, 64, NULL));
    printf("did cublas 3\ndid cublas_pointers 11\n");

    /* cuDNN: a variant pack of 3 pointers + workspace */
    uint64_t ptrs[3] = {(uint64_t)m1, (uint64_t)m2, (uint64_t)m3};
    Handle pack = dbl_variant_pack(ptrs, 3, (uint64_t)out);
    CHECK(cudnnBackendExecute(NULL, NULL, pack));
    CHECK(cudaMemcpy(h3, m3, 16, 2));
    EXPECT(h3[0] == 0.0f, "cudnn execute did not run");
    CHECK(cudaMemcpy(m3, h2, 16, 1));
    /* ... and one built the way cudnn-frontend builds it: attributes set on a descriptor */
    Handle vp = NULL; int64_t uids[3] = {1, 2, 3}; uint64_t ws = (uint64_t)out;
    CHECK(cudnnBackendCreateDescriptor(26, &vp));
    CHECK(cudnnBackendSetAttribute(vp, 1000, 3, 3, uids));
    CHECK(cudnnBackendSetAttribute(vp, 1001, 6, 3, ptrs));
    CHECK(cudnnBackendSetAttribute(vp, 1003, 6, 1, &ws));
    CHECK(cudnnBackendExecute(NULL, NULL, vp));
    CHECK(cudnnBackendDestroyDescriptor(vp));
    printf("did cudnn 2\ndid cudnn_pointers 8\n");

    /* IPC export */
    char ipc[64];
    CHECK(cudaIpcGetMemHandle(ipc, m1));
    printf("did exported 1\n");

    /* memory the program maps itself */
    CUdeviceptr va; uint64_t h;
    CHECK(cuMemAddressReserve(&va, 1 << 21, 0, 0, 0));
    CHECK(cuMemCreate(&h, 1 << 21, NULL, 0));
    CHECK(cuMemMap(va, 1 << 21, 0, h, 0));
    CHECK(cuMemSetAccess(va, 1 << 21, NULL, 1));
    void *vargs[] = {&va, &a, &b, &n};
    CHECK(__cudaLaunchKernel(ADD, ONE, ONE, vargs, 0, NULL));
    printf("did runtime_launch 1\ndid user_maps 1\n");
    CHECK(cuMemUnmap(va, 1 << 21));
    CHECK(cuMemRelease(h));
    CHECK(cuMemAddressFree(va, 1 << 21));

    size_t fr, tot;
    CHECK(cudaMemGetInfo(&fr, &tot)); CHECK(cuMemGetInfo_v2(&fr, &tot));
    CHECK(cudaFree(a)); CHECK(cuMemFree_v2((CUdeviceptr)b)); CHECK(cudaFreeAsync(out, NULL));
    CHECK(cudaFree(m1)); CHECK(cudaFree(m2)); CHECK(cudaFree(m3));
    printf("did alloc 3\ndid free 6\n");
    return 0;
}

/* An array of device pointers copied from the host: its targets become pointed-from-device. */
static int pointer_array(void) {
    void *bufs[4], *table;
    for (int i = 0; i < 4; i++) CHECK(cudaMalloc(&bufs[i], 4096));
    CHECK(cudaMalloc(&table, sizeof bufs));
    CHECK(cudaMemcpy(table, bufs, sizeof bufs, 1));
    printf("did pointed 4\n");
    return 0;
}

/* A kernel whose layout the driver will not tell: counted, and no error left behind. */
static int layout_unknown(void) {
    setup(); fill();
    float *a, *b, *out;
    CHECK(cudaMalloc((void **)&a, N * 4)); CHECK(cudaMalloc((void **)&b, N * 4)); CHECK(cudaMalloc((void **)&out, N * 4));
    CHECK(cudaMemcpy(a, host_a, N * 4, 1)); CHECK(cudaMemcpy(b, host_b, N * 4, 1));
    int n = N; void *args[] = {&out, &a, &b, &n};
    CHECK(cudaLaunchKernel(HIDDEN, ONE, ONE, args, 0, NULL));
    EXPECT(cudaGetLastError() == 0, "an error was left in the runtime's last-error slot");
    CHECK(cudaMemcpy(host_out, out, N * 4, 2));
    check_sum("hidden-layout launch");
    return 0;
}

/* The lookup hooks hand out wrappers only for hooked functions. */
static int lookups(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    EXPECT(lib, "libcuda.so.1 not loaded");
    Dl_info info;
    void *hooked = dlsym(lib, "cuLaunchKernel");
    EXPECT(dladdr(hooked, &info) && strstr(info.dli_fname, "libltshim"), "cuLaunchKernel from dlsym should be ltshim's, is in %s", info.dli_fname);
    void *plain = dlsym(lib, "cuDriverGetVersion");
    EXPECT(dladdr(plain, &info) && strstr(info.dli_fname, "libcuda"), "cuDriverGetVersion should be the real one, is in %s", info.dli_fname);
    void *p = NULL; int st;
    CHECK(cuGetProcAddress_v2("cuDriverGetVersion", &p, 12000, 0, &st));
    EXPECT(p == plain, "cuGetProcAddress changed an unhooked function");
    CHECK(cuGetProcAddress_v2("cuMemAlloc", &p, 12000, 0, &st));
    EXPECT(dladdr(p, &info) && strstr(info.dli_fname, "libltshim"), "cuMemAlloc (v2) should be wrapped");
    CHECK(cuGetProcAddress_v2("cuLaunchKernel", &p, 12000, 2, &st));
    void *ptsz = dlsym(RTLD_DEFAULT, "cuLaunchKernel_ptsz");
    EXPECT(p == ptsz, "per-thread variant must map to ltshim's cuLaunchKernel_ptsz");
    EXPECT(dlsym(RTLD_DEFAULT, "no_such_symbol_anywhere") == NULL, "missing symbol");
    /* dlsym(RTLD_NEXT) still means "after this program", not "after libltshim". */
    void *next_malloc = dlsym(RTLD_NEXT, "malloc");
    EXPECT(next_malloc != NULL && dladdr(next_malloc, &info) && strstr(info.dli_fname, "libc"), "RTLD_NEXT malloc from %s", next_malloc ? info.dli_fname : "(null)");
    printf("did lookups ok\n");
    return 0;
}

/* 8 threads allocating, copying, launching and freeing at once. */
static void *worker(void *arg) {
    long id = (long)arg;
    float ha[256], hb[256], ho[256];
    for (int it = 0; it < 200; it++) {
        float *a, *b, *o;
        CHECK(cudaMalloc((void **)&a, 1024)); CHECK(cuMemAlloc_v2((CUdeviceptr *)&b, 1024)); CHECK(cudaMalloc((void **)&o, 1024));
        for (int i = 0; i < 256; i++) { ha[i] = (float)(id * 1000 + it); hb[i] = (float)i; }
        CHECK(cudaMemcpy(a, ha, 1024, 1)); CHECK(cudaMemcpy(b, hb, 1024, 1));
        int n = 256; void *args[] = {&o, &a, &b, &n};
        CHECK(__cudaLaunchKernel(ADD, ONE, ONE, args, 0, NULL));
        CHECK(cudaMemcpy(ho, o, 1024, 2));
        for (int i = 0; i < 256; i++) EXPECT(ho[i] == ha[i] + hb[i], "thread %ld iteration %d element %d", id, it, i);
        CHECK(cudaFree(a)); CHECK(cuMemFree_v2((CUdeviceptr)b)); CHECK(cudaFree(o));
    }
    return NULL;
}
static int threads(void) {
    setup();
    pthread_t t[8];
    for (long i = 0; i < 8; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    printf("did alloc 4800\ndid free 4800\ndid runtime_launch 1600\n");
    return 0;
}

/* fork: the child keeps working (in passthrough) and the parent's report is the one written. */
static int forked(void) {
    setup(); fill();
    float *a; CHECK(cudaMalloc((void **)&a, N * 4));
    pid_t pid = fork();
    if (pid == 0) {
        float *b; CHECK(cudaMalloc((void **)&b, N * 4));
        CHECK(cudaMemcpy(b, host_a, N * 4, 1));
        CHECK(cudaMemcpy(host_out, b, N * 4, 2));
        for (int i = 0; i < N; i++) EXPECT(host_out[i] == host_a[i], "child copy");
        _exit(0);
    }
    int status; waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
    CHECK(cudaFree(a));
    printf("did alloc 1\n");
    return 0;
}

/* A library loaded after the lookup hooks ran: its hooked function must still reach it. */
static int late_library(const char *path) {
    void *p = NULL; int st;
    /* an unhooked function: the lookup hook compares its pointer with every hook it may be */
    CHECK(cuGetProcAddress_v2("cuDriverGetVersion", &p, 12000, 0, &st));
    typedef int (*zgemm_t)(void);
    zgemm_t before = (zgemm_t)dlsym(RTLD_DEFAULT, "cublasZgemmStridedBatched");
    EXPECT(before != NULL, "the preloaded library exports the hook");
    /* before the library is there: the hook's own status, and one line saying why */
    int early = before();
    EXPECT(early == 1, "the call before the library was loaded returned %d, not CUBLAS_STATUS_NOT_INITIALIZED", early);
    EXPECT(dlopen(path, RTLD_NOW | RTLD_GLOBAL) != NULL, "dlopen %s: %s", path, dlerror());
    int rc = before();
    EXPECT(rc == 42, "the call through the hook returned %d, not the late library's 42", rc);
    printf("did late ok\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "paths")) return paths();
    if (!strcmp(what, "pointer_array")) return pointer_array();
    if (!strcmp(what, "layout_unknown")) return layout_unknown();
    if (!strcmp(what, "lookups")) return lookups();
    if (!strcmp(what, "threads")) return threads();
    if (!strcmp(what, "fork")) return forked();
    if (!strcmp(what, "late_library") && argc > 2) return late_library(argv[2]);
    fprintf(stderr, "usage: interpose paths|pointer_array|layout_unknown|lookups|threads|fork\n");
    return 2;
}
