/* The library's cost a launch on the CPU, against the CUDA double (tests/cudadouble): a
 * cuBLAS-like kernel (one 1088-byte parameter struct, 136 words: 12 pointers into 4 buffers,
 * 9 words inside the registry's address range but in no buffer (freed ones), the rest small
 * integers) through
 * cuLaunchKernelEx, and a 3-pointer kernel through __cudaLaunchKernel, among 64 buffers of
 * 2 MiB. ns a launch, the best of 5 loops of N launches. Run by scripts/bench_launch.sh, which
 * builds it and runs it natively and under the library in observe and lossless. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cuda_min.h"

int cuLaunchKernelEx(const CUlaunchConfig *c, Handle f, void **params, void **extra);

static void nothing(void **args) { (void)args; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

#define WORDS 136
struct big { uint64_t w[WORDS]; };

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    void *bufs[64];
    for (int i = 0; i < 64; i++)
        if (cudaMalloc(&bufs[i], 2 << 20)) { fprintf(stderr, "cudaMalloc failed\n"); return 1; }
    static const size_t big_sizes[] = {sizeof(struct big), 4};
    static const size_t three_sizes[] = {8, 8, 8, 4};
    Handle big = dbl_register_kernel(nothing, 2, big_sizes, 0);
    Handle three = dbl_register_kernel(nothing, 4, three_sizes, 0);
    struct big p;
    for (int i = 0; i < WORDS; i++) p.w[i] = (uint64_t)(i * 7 + 1);
    /* 12 pointers into 4 buffers, in runs as a GEMM's operand descriptors hold them */
    char *ops[4] = {bufs[3], bufs[17], bufs[41], bufs[63]};
    for (int i = 0; i < 12; i++) p.w[8 + i * 3] = (uint64_t)(ops[i / 3] + 4096 * (i % 3));
    /* 9 words inside the registry's range but in no buffer: into buffers freed below (as
     * pointers into memory the library does not track fall between the ones it does) */
    for (int i = 0; i < 9; i++) p.w[60 + i * 5] = (uint64_t)((char *)bufs[20 + 2 * i] + 512);
    int count = 1 << 20;
    void *big_args[] = {&p, &count};
    CUlaunchConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gx = cfg.gy = cfg.gz = cfg.bx = cfg.by = cfg.bz = 1;
    for (int i = 0; i < 9; i++) { cudaFree(bufs[20 + 2 * i]); bufs[20 + 2 * i] = NULL; }
    void *a = bufs[5], *b = bufs[6], *c = bufs[7];
    void *three_args[] = {&a, &b, &c, &count};
    dim3 one = {1, 1, 1};
    double best_big = 1e30, best_three = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        for (long i = 0; i < n; i++)
            if (cuLaunchKernelEx(&cfg, big, big_args, NULL)) { fprintf(stderr, "launch failed\n"); return 1; }
        double t1 = now();
        for (long i = 0; i < n; i++)
            if (__cudaLaunchKernel(three, one, one, three_args, 0, NULL)) { fprintf(stderr, "launch failed\n"); return 1; }
        double t2 = now();
        if ((t1 - t0) / n < best_big) best_big = (t1 - t0) / n;
        if ((t2 - t1) / n < best_three) best_three = (t2 - t1) / n;
    }
    printf("cuLaunchKernelEx, 136 words, 12 pointers: %.1f ns a launch; __cudaLaunchKernel, 3 pointers: %.1f ns\n", best_big, best_three);
    for (int i = 0; i < 64; i++) if (bufs[i]) cudaFree(bufs[i]);
    return 0;
}
