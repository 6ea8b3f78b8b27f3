/* Packing scenarios against the CUDA double, run under LD_PRELOAD=libltshim.so with a tiny
 * LTSHIM_DEVICE_LIMIT. Each checks its own results (exit 1 with a message on a wrong value) and
 * prints `did NAME COUNT` lines. On the double device memory is host memory and a packed
 * buffer's range is PROT_NONE: touching it without the library restoring it first faults. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cuda_min.h"

#define CHECK(x) do { int rc_ = (x); if (rc_ != 0) { fprintf(stderr, "FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #x, rc_); exit(1); } } while (0)
#define EXPECT(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } } while (0)

#define MIB (1u << 20)
static const dim3 ONE = {1, 1, 1};

/* inc(uint32_t *p, size_t n): p[i] += 1 */
static void inc_kernel(void **args) {
    uint32_t *p = *(uint32_t **)args[0];
    size_t n = *(size_t *)args[1];
    for (size_t i = 0; i < n; i++) p[i] += 1;
}
static const size_t INC_SIZES[] = {8, 8};

/* deref(uint32_t **table, uint32_t *out): out[0] = table[0][0] (a pointer held in device memory) */
static void deref_kernel(void **args) {
    uint32_t **table = *(uint32_t ***)args[0];
    uint32_t *out = *(uint32_t **)args[1];
    out[0] = table[0][0];
}
static const size_t DEREF_SIZES[] = {8, 8};

/* readsum(const uint32_t *p, size_t n): reads every word (a kernel that leaves its buffer as it is) */
static volatile uint32_t READSUM;
static void readsum_kernel(void **args) {
    const uint32_t *p = *(const uint32_t **)args[0];
    size_t n = *(size_t *)args[1];
    uint32_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= p[i];
    READSUM = x;
}

static Handle INC, DEREF, HIDDEN_INC, READSUM_K;
static void setup(void) {
    INC = dbl_register_kernel(inc_kernel, 2, INC_SIZES, 0);
    HIDDEN_INC = dbl_register_kernel(inc_kernel, 2, INC_SIZES, 1);
    READSUM_K = dbl_register_kernel(readsum_kernel, 2, INC_SIZES, 0);
    DEREF = dbl_register_kernel(deref_kernel, 2, DEREF_SIZES, 0);
}

/* Compressible contents: word i of buffer k is (i % 64 == 0) ? k * 1000003 + i : 0. */
static uint32_t pattern(int k, size_t i) { return (i % 64 == 0) ? (uint32_t)(k * 1000003u + i) : 0u; }

static void fill(uint32_t *dev, int k, size_t words) {
    uint32_t *h = malloc(words * 4);
    for (size_t i = 0; i < words; i++) h[i] = pattern(k, i);
    CHECK(cudaMemcpy(dev, h, words * 4, 1));
    free(h);
}

static void verify(uint32_t *dev, int k, size_t words, uint32_t add, const char *what) {
    uint32_t *h = malloc(words * 4);
    CHECK(cudaMemcpy(h, dev, words * 4, 2));
    for (size_t i = 0; i < words; i++) EXPECT(h[i] == pattern(k, i) + add, "%s: buffer %d word %zu = %u, expected %u", what, k, i, h[i], pattern(k, i) + add);
    free(h);
}

typedef int64_t (*count_fn)(void);
static int64_t control(const char *name) {
    count_fn f = (count_fn)dlsym(RTLD_DEFAULT, name);
    EXPECT(f != NULL, "%s is not exported", name);
    return f();
}

/* A limit of 16 MiB, six compressible buffers of 4 MiB: they all fit because cold ones are
 * packed; every path that names a packed buffer finds it restored; contents stay exact.
 * Then incompressible buffers until the out-of-memory code; nothing packed is lost. */
static int limit(void) {
    setup();
    enum { K = 6 };
    size_t words = 4 * MIB / 4;
    uint32_t *buf[K];
    for (int k = 0; k < K; k++) {
        CHECK(cudaMalloc((void **)&buf[k], words * 4));
        fill(buf[k], k, words);
    }
    size_t fr = 0, tot = 0;
    CHECK(cudaMemGetInfo(&fr, &tot));
    EXPECT(tot == 16 * MIB, "cudaMemGetInfo total %zu, expected the limit", tot);
    EXPECT(fr <= tot, "free %zu above total", fr);
    printf("did mem_get_info_total %zu\n", tot);
    /* buffer 0 is the coldest: packed by now. A launch, a copy and a set find it restored. */
    void *args0[] = {&buf[0], &words};
    CHECK(__cudaLaunchKernel(INC, ONE, ONE, args0, 0, NULL));
    verify(buf[0], 0, words, 1, "after a launch");
    CHECK(cudaMemset(buf[1], 0, 64));  /* the first 16 words */
    uint32_t head[16];
    CHECK(cudaMemcpy(head, buf[1], 64, 2));
    for (int i = 0; i < 16; i++) EXPECT(head[i] == 0, "memset word %d = %u", i, head[i]);
    CHECK(cudaMemcpy(buf[1], (void *)0, 0, 1)); /* an empty copy is fine */
    fill(buf[1], 1, words);
    for (int k = 2; k < K; k++) verify(buf[k], k, words, 0, "after packing");
    verify(buf[0], 0, words, 1, "again");
    /* incompressible data: random words, until the limit says no */
    uint32_t *rnd[8];
    int got = 0, rc = 0;
    uint32_t *h = malloc(words * 4);
    srand(7);
    for (; got < 8; got++) {
        rc = cudaMalloc((void **)&rnd[got], words * 4);
        if (rc != 0) break;
        for (size_t i = 0; i < words; i++) h[i] = (uint32_t)rand() * 2654435761u ^ (uint32_t)rand();
        CHECK(cudaMemcpy(rnd[got], h, words * 4, 1));
    }
    free(h);
    EXPECT(rc == 2, "incompressible allocations past the limit: got %d, expected out of memory (2)", rc);
    printf("did incompressible_allocated %d\n", got);
    /* the random buffers hold the whole limit now: give them back, then nothing packed was lost */
    for (int i = 0; i < got; i++) CHECK(cudaFree(rnd[i]));
    verify(buf[0], 0, words, 1, "after the out-of-memory");
    for (int k = 1; k < K; k++) verify(buf[k], k, words, 0, "after the out-of-memory");
    for (int k = 0; k < K; k++) CHECK(cudaFree(buf[k]));
    printf("did buffers %d\n", K);
    return 0;
}

/* A restored buffer that only reads named since drops again without a check (its kept copy is
 * what it holds); a kernel launch, a set or a write by a kernel make the next pack check or
 * re-encode, and every value read back is the one last written. */
static int clean(void) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *a, *sink;
    CHECK(cudaMalloc((void **)&a, words * 4));
    CHECK(cudaMalloc((void **)&sink, words * 4));
    fill(a, 3, words);
    EXPECT(control("ltshim_pack_cold") >= 1, "nothing packed");
    CHECK(cudaMemcpy(sink, a, words * 4, 3)); /* restored; read only as a copy's source */
    EXPECT(control("ltshim_pack_cold") >= 1, "the clean buffer was not packed again");
    void *ra[] = {&a, &words};
    CHECK(__cudaLaunchKernel(READSUM_K, ONE, ONE, ra, 0, NULL)); /* a launch may write: checked */
    EXPECT(control("ltshim_pack_cold") >= 1, "not packed after a reading launch");
    CHECK(cudaMemset(a, 0, 64)); /* written: re-encoded */
    EXPECT(control("ltshim_pack_cold") >= 1, "not packed after a set");
    uint32_t head[16];
    CHECK(cudaMemcpy(head, a, 64, 2));
    for (int i = 0; i < 16; i++) EXPECT(head[i] == 0, "set word %d = %u", i, head[i]);
    fill(a, 3, words);
    EXPECT(control("ltshim_pack_cold") >= 1, "not packed after the refill");
    CHECK(__cudaLaunchKernel(INC, ONE, ONE, ra, 0, NULL)); /* written by a kernel */
    EXPECT(control("ltshim_pack_cold") >= 1, "not packed after a writing launch");
    verify(a, 3, words, 1, "after a writing launch and a pack");
    verify(sink, 3, words, 0, "the copy");
    CHECK(cudaFree(a));
    CHECK(cudaFree(sink));
    printf("did clean_ok 1\n");
    return 0;
}

/* A bf16 GEMM whose A is the whole of `w` (`n` elements, a multiple of 512: 512 x n/512,
 * column-major), B `x` (n/512 x 2) and C `out` (512 x 2): the library takes a buffer as floats
 * only when an operand spans all of it (a caching allocator's segment may hold integers beside
 * a weight). The double checks only that the pointers are device memory. */
#define GEMM_WHOLE(w, n) cublasGemmEx(NULL, 0, 0, 512, 2, (int)((n) / 512), &one, w, 14, 512, x, 14, (int)((n) / 512), &zero, out, 14, 512, 68, -1)

static uint16_t bf16_of(float f) { uint32_t u; memcpy(&u, &f, 4); return (uint16_t)(u >> 16); }
static float float_of(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
/* A weight's element: normal-ish bf16 around 0 (`sparse`: three in four zero). */
static uint16_t cycle_weight(size_t i, uint32_t *seed, int sparse) {
    *seed = *seed * 1664525u + 1013904223u;
    if (sparse && i % 4 != 0) return 0;
    return bf16_of(((float)(*seed >> 8) / 16777216.0f - 0.5f) * 0.04f);
}

/* A bf16 weight of `n` elements (cycle_weight's from `seed`) uploaded into a new buffer `*w`;
 * returns the host copy. */
static uint16_t *upload_weight(uint16_t **w, size_t n, uint32_t seed) {
    uint16_t *hw = malloc(n * 2);
    for (size_t i = 0; i < n; i++) hw[i] = cycle_weight(i, &seed, 0);
    if (cudaMalloc((void **)w, n * 2) || cudaMemcpy(*w, hw, n * 2, 1)) {
        fprintf(stderr, "FAIL: the weight's upload\n");
        exit(1);
    }
    return hw;
}
/* GEMM_WHOLE's B (16 KiB: up to 4 MiB weights) and C (4 KiB). */
static void gemm_operands(uint16_t **x, uint16_t **out) {
    if (cudaMalloc((void **)x, 16384) || cudaMalloc((void **)out, 4096)) {
        fprintf(stderr, "FAIL: the GEMM's operands\n");
        exit(1);
    }
}
/* Lossy mode: a buffer goes lossy only once it was decoded and then only read (a weight named
 * as a GEMM's A); one a call writes (an activation) stays lossless, bit-exact. */
static int lossy_weights(void) {
    size_t n = 2 * MIB; /* bf16 elements: 4 MiB */
    uint16_t *w, *x, *out, *hw = malloc(n * 2), *hx = malloc(n * 2), *back = malloc(n * 2);
    uint32_t seed = 12345;
    for (size_t i = 0; i < n; i++) {
        hw[i] = cycle_weight(i, &seed, 0);
        hx[i] = (i % 4 == 0) ? bf16_of((float)(i % 1000) * 0.5f) : 0;
    }
    CHECK(cudaMalloc((void **)&w, n * 2));
    CHECK(cudaMalloc((void **)&x, n * 2));
    CHECK(cudaMalloc((void **)&out, n * 2));
    CHECK(cudaMemcpy(w, hw, n * 2, 1));
    CHECK(cudaMemcpy(x, hx, n * 2, 1));
    float one = 1, zero = 0;
    CHECK(GEMM_WHOLE(w, n));
    EXPECT(control("ltshim_pack_cold") >= 2, "the first pack");
    /* both come back for a GEMM that reads them; x is then written by a set */
    CHECK(GEMM_WHOLE(w, n));
    CHECK(cudaMemset(x, 0x3f, 2));
    hx[0] = 0x3f3f;
    EXPECT(control("ltshim_pack_cold") >= 2, "the second pack");
    CHECK(cudaMemcpy(back, x, n * 2, 2));
    EXPECT(memcmp(back, hx, n * 2) == 0, "the written buffer is not exact");
    CHECK(cudaMemcpy(back, w, n * 2, 2));
    double err = 0, norm = 0;
    int differ = 0;
    for (size_t i = 0; i < n; i++) {
        double a = float_of(hw[i]), b = float_of(back[i]);
        err += (a - b) * (a - b);
        norm += a * a;
        differ += hw[i] != back[i];
    }
    EXPECT(differ > 0, "the read-only weight did not go lossy");
    EXPECT(err <= norm * 1e-4, "lossy error %g of %g over the 1%% bound", err, norm);
    printf("did lossy_weights_ok 1\n");
    return 0;
}

/* Lossy mode, a training step: a weight read by a GEMM goes lossy at its second pack, then an
 * update writes it (the optimizer), and from then on it packs lossless only: quantizing the
 * updated bytes again would add a new error to the one already in them at every step (on the
 * H200 a training run did that and ended with a NaN loss). So after the update its bytes
 * come back exact, however often it cycles. */
static int train_step(void) {
    size_t n = 2 * MIB; /* bf16 elements: 4 MiB */
    uint16_t *w, *x, *out, *snap = malloc(n * 2), *back = malloc(n * 2);
    gemm_operands(&x, &out);
    uint16_t *hw = upload_weight(&w, n, 4242);
    float one = 1, zero = 0;
    CHECK(GEMM_WHOLE(w, n));
    EXPECT(control("ltshim_pack_cold") >= 1, "the first pack (lossless: the upload wrote it)");
    CHECK(GEMM_WHOLE(w, n));
    EXPECT(control("ltshim_pack_cold") >= 1, "the second pack (lossy: only read since its restore)");
    CHECK(GEMM_WHOLE(w, n));
    /* the update: a few elements of the lossy-decoded weight change */
    uint16_t upd[64];
    for (int i = 0; i < 64; i++) upd[i] = bf16_of(0.5f + (float)i / 64.0f);
    CHECK(cudaMemcpy(w + 1000, upd, sizeof upd, 1));
    CHECK(cudaMemcpy(snap, w, n * 2, 2));
    for (int cycle = 0; cycle < 4; cycle++) {
        EXPECT(control("ltshim_pack_cold") >= 1, "pack %d after the update", cycle);
        CHECK(GEMM_WHOLE(w, n));
    }
    CHECK(cudaMemcpy(back, w, n * 2, 2));
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += snap[i] != back[i];
    EXPECT(differ == 0, "%zu elements of the updated weight changed over its later cycles", differ);
    free(hw);
    free(snap);
    free(back);
    printf("did train_step_ok 1\n");
    return 0;
}

/* Lossy mode, GEMM operands that are not the whole of their buffer: a weight followed by other
 * data in one allocation (a caching allocator's segment), read by GEMMs as the first half and
 * as the second half. Neither half marks the buffer as floats, so it never goes lossy: every
 * byte comes back exact (int8 on the integers beside a weight would be a wrong result). */
static int partial_operand(void) {
    size_t n = 2 * MIB; /* bf16 elements: 4 MiB */
    uint16_t *w, *x, *out, *back = malloc(n * 2);
    gemm_operands(&x, &out);
    uint16_t *hw = upload_weight(&w, n, 99);
    float one = 1, zero = 0;
    for (int cycle = 0; cycle < 4; cycle++) {
        CHECK(GEMM_WHOLE(w, n / 2));
        CHECK(GEMM_WHOLE(w + n / 2, n / 2));
        EXPECT(control("ltshim_pack_cold") >= 1, "pack %d", cycle);
    }
    CHECK(cudaMemcpy(back, w, n * 2, 2));
    EXPECT(memcmp(back, hw, n * 2) == 0, "a buffer no operand spans went lossy");
    free(hw);
    free(back);
    printf("did partial_operand_ok 1\n");
    return 0;
}

/* Lossy mode, a segment reused for other data (a caching allocator's): a GEMM reads `w` whole
 * as bf16, then the program puts other data there (a host copy writes it) that is only ever
 * read after: by a GEMM as its first half, and as a copy's source. The float type the first
 * GEMM saw belongs to bytes that are gone (no GEMM read the new ones whole, and they may be
 * several tensors, or integers), so the buffer must never go lossy: every byte comes back
 * exact. Before, the type outlived the write, and the new bytes were quantized once a restore
 * had made them clean. */
static int reused_segment(void) {
    size_t n = 2 * MIB; /* bf16 elements: 4 MiB */
    uint16_t *w, *x, *out, *other = malloc(n * 2), *back = malloc(n * 2);
    gemm_operands(&x, &out);
    uint16_t *hw = upload_weight(&w, n, 7);
    float one = 1, zero = 0;
    CHECK(GEMM_WHOLE(w, n));
    /* the new tensors: bf16 values (finite in any view, so int8g would take them) */
    uint32_t seed = 99;
    for (size_t i = 0; i < n; i++) other[i] = cycle_weight(i, &seed, 0);
    CHECK(cudaMemcpy(w, other, n * 2, 1));
    EXPECT(control("ltshim_pack_cold") >= 1, "the first pack (lossless: written)");
    for (int cycle = 0; cycle < 4; cycle++) {
        CHECK(GEMM_WHOLE(w, n / 2));
        CHECK(cudaMemcpy(x, w, 4096, 3));
        EXPECT(control("ltshim_pack_cold") >= 1, "pack %d", cycle);
    }
    CHECK(cudaMemcpy(back, w, n * 2, 2));
    EXPECT(memcmp(back, other, n * 2) == 0, "the segment's new bytes went lossy under the old tensor's float type");
    free(hw);
    free(other);
    free(back);
    printf("did reused_segment_ok 1\n");
    return 0;
}

/* Lossy mode: a weight read whole by a GEMM, then a call the library cannot read (a 3-D set of
 * another buffer, which might write anything), then only read: the GEMM's read no longer says
 * what the weight holds, so it never goes lossy and comes back exact. */
static int opaque_outdates(void) {
    size_t n = 2 * MIB; /* bf16 elements: 4 MiB */
    uint16_t *w, *x, *out, *other, *back = malloc(n * 2);
    gemm_operands(&x, &out);
    uint16_t *hw = upload_weight(&w, n, 5);
    CHECK(cudaMalloc((void **)&other, 4 * MIB));
    float one = 1, zero = 0;
    CHECK(GEMM_WHOLE(w, n));
    cudaPitchedPtr p = {other, 4096, 4096, 4};
    cudaExtent e = {64, 4, 2};
    CHECK(cudaMemset3D(p, 0, e));
    EXPECT(control("ltshim_pack_cold") >= 1, "the first pack");
    for (int cycle = 0; cycle < 3; cycle++) {
        CHECK(cudaMemcpy(x, w, 4096, 3)); /* read only, as a copy's source */
        EXPECT(control("ltshim_pack_cold") >= 1, "pack %d", cycle);
    }
    CHECK(cudaMemcpy(back, w, n * 2, 2));
    EXPECT(memcmp(back, hw, n * 2) == 0, "a weight went lossy under a GEMM's read from before an opaque call");
    free(hw);
    free(back);
    printf("did opaque_outdates_ok 1\n");
    return 0;
}

/* Lossy mode through cuBLASLt: the operands' extents come from their layouts. Weight `a` is
 * read as the whole of it (column-major 512 x n/512), weight `b` as the whole of it through a
 * row-major layout (n/512 rows of 512, ld 512), weight `c` as its first half only: a and b go
 * lossy at their second pack, c never does and comes back exact. */
static int lt_layouts(void) {
    size_t n = 2 * MIB; /* bf16 elements: 4 MiB each */
    uint16_t *a, *b, *c, *x, *out, *back = malloc(n * 2);
    gemm_operands(&x, &out);
    uint16_t *ha = upload_weight(&a, n, 1), *hb = upload_weight(&b, n, 2), *hc = upload_weight(&c, n, 3);
    Handle whole, rows, half, small;
    int32_t row_major = 1;
    CHECK(cublasLtMatrixLayoutCreate(&whole, 14, 512, n / 512, 512));
    CHECK(cublasLtMatrixLayoutCreate(&rows, 14, n / 512, 512, 512));
    CHECK(cublasLtMatrixLayoutSetAttribute(rows, 1, &row_major, 4));
    CHECK(cublasLtMatrixLayoutCreate(&half, 14, 512, n / 1024, 512));
    CHECK(cublasLtMatrixLayoutCreate(&small, 14, 2, 2, 2));
    float one = 1, zero = 0;
    for (int pass = 0; pass < 3; pass++) {
        CHECK(cublasLtMatmul(NULL, NULL, &one, a, whole, x, small, &zero, out, small, out, small, NULL, NULL, 0, NULL));
        CHECK(cublasLtMatmul(NULL, NULL, &one, b, rows, x, small, &zero, out, small, out, small, NULL, NULL, 0, NULL));
        CHECK(cublasLtMatmul(NULL, NULL, &one, c, half, x, small, &zero, out, small, out, small, NULL, NULL, 0, NULL));
        EXPECT(control("ltshim_pack_cold") >= 3, "pack %d", pass);
    }
    CHECK(cudaMemcpy(back, c, n * 2, 2));
    EXPECT(memcmp(back, hc, n * 2) == 0, "the weight read as half of it went lossy");
    CHECK(cudaMemcpy(back, a, n * 2, 2));
    EXPECT(memcmp(back, ha, n * 2) != 0, "the weight read whole did not go lossy");
    CHECK(cudaMemcpy(back, b, n * 2, 2));
    EXPECT(memcmp(back, hb, n * 2) != 0, "the weight read whole through a row-major layout did not go lossy");
    cublasLtMatrixLayoutDestroy(whole);
    cublasLtMatrixLayoutDestroy(rows);
    cublasLtMatrixLayoutDestroy(half);
    cublasLtMatrixLayoutDestroy(small);
    free(ha);
    free(hb);
    free(hc);
    free(back);
    printf("did lt_layouts_ok 1\n");
    return 0;
}

/* Lossy mode, weights read by GEMMs in a loop under a limit (the decode loop of a model that
 * does not fit): each weight's first copy is lossless (the upload wrote it), and once it was
 * only read since a restore, its next pack makes it lossy. Every weight reads back within the
 * 1% bound. `sparse`: three elements in four are zero, so no block is worth int8g (zvc's copy
 * is smaller) and the lossy encode makes a lossless copy again: those weights read back exact. */
static int cycle_gemm(int sparse) {
    enum { K = 12 };
    size_t n = MIB / 2; /* bf16 elements: 1 MiB */
    uint16_t *w[K], *x, *out, *hw = malloc(n * 2), *back = malloc(n * 2);
    CHECK(cudaMalloc((void **)&x, 4096));
    CHECK(cudaMalloc((void **)&out, 4096));
    for (int k = 0; k < K; k++) {
        uint32_t seed = 777u + (uint32_t)k;
        for (size_t i = 0; i < n; i++) hw[i] = cycle_weight(i, &seed, sparse);
        CHECK(cudaMalloc((void **)&w[k], n * 2));
        CHECK(cudaMemcpy(w[k], hw, n * 2, 1));
    }
    float one = 1, zero = 0;
    for (int pass = 0; pass < 8; pass++)
        for (int k = 0; k < K; k++) {
            CHECK(GEMM_WHOLE(w[k], n));
            usleep(1000); /* the program computes meanwhile */
        }
    for (int k = 0; k < K; k++) {
        uint32_t seed = 777u + (uint32_t)k;
        double err = 0, norm = 0;
        CHECK(cudaMemcpy(back, w[k], n * 2, 2));
        for (size_t i = 0; i < n; i++) {
            uint16_t want = cycle_weight(i, &seed, sparse);
            double a = float_of(want), b = float_of(back[i]);
            EXPECT(!sparse || back[i] == want, "sparse weight %d element %zu = %#x, expected %#x", k, i, back[i], want);
            err += (a - b) * (a - b);
            norm += a * a;
        }
        EXPECT(err <= norm * 1e-4, "weight %d: lossy error %g of %g over the 1%% bound", k, err, norm);
    }
    free(hw);
    free(back);
    printf("did cycle_gemm_ok 1\n");
    return 0;
}

/* Peer access: once device 1 may reach device 0's memory (the runtime's or the driver's
 * call), every buffer the library mapped on device 0 lets device 1 in, and so does every
 * mapping made later: a new buffer, and a packed buffer at its restore. The double records
 * the devices each mapped range lets in (dbl_access_devices: a bit each). */
typedef uint32_t (*access_fn)(uint64_t);
static int peer_access(int driver) {
    access_fn access = (access_fn)dlsym(RTLD_DEFAULT, "dbl_access_devices");
    EXPECT(access != NULL, "the double has no dbl_access_devices");
    size_t words = 4 * MIB / 4;
    uint32_t *a, *b;
    CHECK(cudaMalloc((void **)&a, words * 4));
    fill(a, 1, words);
    EXPECT(access((uint64_t)a) == 1u, "before: device 0 only, got %#x", access((uint64_t)a));
    if (driver) {
        Handle c0, c1, popped;
        CHECK(cuDevicePrimaryCtxRetain(&c0, 0));
        CHECK(cuDevicePrimaryCtxRetain(&c1, 1));
        CHECK(cuCtxPushCurrent_v2(c1));
        CHECK(cuCtxEnablePeerAccess(c0, 0));
        CHECK(cuCtxPopCurrent_v2(&popped));
    } else {
        CHECK(cudaSetDevice(1));
        CHECK(cudaDeviceEnablePeerAccess(0, 0));
        CHECK(cudaSetDevice(0));
    }
    EXPECT(access((uint64_t)a) == 3u, "a buffer mapped before: devices 0 and 1, got %#x", access((uint64_t)a));
    CHECK(cudaMalloc((void **)&b, words * 4));
    fill(b, 2, words);
    EXPECT(access((uint64_t)b) == 3u, "a buffer mapped after: devices 0 and 1, got %#x", access((uint64_t)b));
    EXPECT(control("ltshim_pack_cold") >= 2, "both packed");
    EXPECT(access((uint64_t)a) == 0u, "a packed buffer is unmapped");
    verify(a, 1, words, 0, "a after its restore");
    EXPECT(access((uint64_t)a) == 3u, "a restored buffer: devices 0 and 1, got %#x", access((uint64_t)a));
    verify(b, 2, words, 0, "b after its restore");
    printf("did peer_access_ok 1\n");
    return 0;
}

/* NCCL, one rank on the double: a collective restores its send and receive buffers first
 * (its kernels reach them through NCCL's own descriptors, which no launch names), packing is
 * held off inside a group until its end (the group's kernels start there), a collective
 * captured into a graph keeps its buffers resident, and a registered buffer is never packed. */
static int nccl_calls(void) {
    access_fn mapped = (access_fn)dlsym(RTLD_DEFAULT, "dbl_access_devices");
    EXPECT(mapped != NULL, "the double has no dbl_access_devices");
    size_t words = 4 * MIB / 4;
    uint32_t *a, *b, *c;
    CHECK(cudaMalloc((void **)&a, words * 4));
    CHECK(cudaMalloc((void **)&b, words * 4));
    CHECK(cudaMalloc((void **)&c, words * 4));
    fill(a, 1, words);
    fill(b, 2, words);
    fill(c, 3, words);
    Handle comm = (Handle)0x77;
    EXPECT(control("ltshim_pack_cold") >= 3, "all three packed");
    CHECK(ncclAllReduce(a, b, words, 3 /* ncclUint32 */, 0 /* ncclSum */, comm, NULL));
    verify(b, 1, words, 0, "the receive buffer after the all-reduce");
    verify(a, 1, words, 0, "the send buffer after the all-reduce");
    EXPECT(control("ltshim_pack_cold") >= 2, "packed again");
    CHECK(ncclGroupStart());
    CHECK(ncclSend(a, words, 3, 0, comm, NULL));
    EXPECT(control("ltshim_pack_cold") <= 0, "something was packed inside a group");
    EXPECT(mapped((uint64_t)a) != 0, "the send buffer of a grouped call was packed before the group's end");
    CHECK(ncclGroupEnd());
    EXPECT(control("ltshim_pack_cold") >= 1, "packing did not resume at the group's end");
    /* captured into a graph: its replays reach d through no node we read */
    uint32_t *d;
    Handle s = (Handle)0x5300, g = NULL;
    CHECK(cudaMalloc((void **)&d, words * 4));
    fill(d, 4, words);
    CHECK(cudaStreamBeginCapture(s, 0));
    CHECK(ncclAllReduce(d, d, words, 3, 0, comm, s));
    CHECK(cudaStreamEndCapture(s, &g));
    void *h;
    CHECK(ncclCommRegister(comm, c, words * 4, &h));
    control("ltshim_pack_cold");
    EXPECT(mapped((uint64_t)c) != 0, "a registered buffer was packed");
    verify(c, 3, words, 0, "the registered buffer");
    printf("did nccl_calls_ok 1\n");
    return 0;
}

/* An EndCapture that fails because its stream was not capturing ends no capture: packing
 * stays off until the capture that is under way ends. (The double takes any handle as a
 * stream.) */
static int capture_count(void) {
    Handle s1 = (Handle)0x5100, s2 = (Handle)0x5200, g = NULL;
    uint32_t *a;
    CHECK(cudaMalloc((void **)&a, 4 * MIB));
    fill(a, 1, MIB);
    CHECK(cudaStreamBeginCapture(s1, 0));
    EXPECT(cudaStreamEndCapture(s2, &g) != 0, "ending a capture that never began succeeded");
    EXPECT(control("ltshim_pack_cold") == -1, "something was packed while a capture was under way");
    CHECK(cudaStreamEndCapture(s1, &g));
    EXPECT(control("ltshim_pack_cold") >= 1, "nothing packed once the capture ended");
    verify(a, 1, MIB, 0, "after the capture");
    printf("did capture_count_ok 1\n");
    return 0;
}

/* When no victim's copy fits beside it under the limit, the smallest copy passes the limit for
 * its moment, not the coldest (here the largest) buffer's: 24 MiB limit, one 8 MiB buffer and
 * eight of 2 MiB, half their words random (they pack to ~53%), then one more of 2 MiB. */
static void fill_half(uint32_t *dev, size_t words, uint32_t seed) {
    uint32_t *h = malloc(words * 4);
    for (size_t i = 0; i < words; i++) { seed = seed * 1664525u + 1013904223u; h[i] = (i & 1) ? seed | 1 : 0; }
    CHECK(cudaMemcpy(dev, h, words * 4, 1));
    free(h);
}
static int limit_smallest(void) {
    uint32_t *big, *small[8], *more;
    CHECK(cudaMalloc((void **)&big, 8 * MIB));
    fill_half(big, 2 * MIB, 1);
    for (int i = 0; i < 8; i++) {
        CHECK(cudaMalloc((void **)&small[i], 2 * MIB));
        fill_half(small[i], MIB / 2, 10 + i);
    }
    CHECK(cudaMalloc((void **)&more, 2 * MIB));
    fill_half(more, MIB / 2, 99);
    printf("did limit_smallest_ok 1\n");
    return 0;
}

/* A number of the stats report (the first key of that name). */
static long stat_num(const char *key) {
    typedef size_t (*stats_fn)(char *, size_t);
    stats_fn f = (stats_fn)dlsym(RTLD_DEFAULT, "ltshim_stats_json");
    static char json[1 << 20];
    EXPECT(f && f(json, sizeof json) > 0, "the stats");
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *at = strstr(json, pat);
    return at ? atol(at + strlen(pat)) : -1;
}

/* One 16 MiB buffer (half zeros: its copy ~8.8 MiB) under 24 MiB, then 8 MiB more: no room
 * holds its whole copy; it is packed piece by piece, and it reads back exact. */
static int limit_large_copy(void) {
    uint32_t *big, *more;
    size_t words = 4 * MIB;
    CHECK(cudaMalloc((void **)&big, words * 4));
    fill_half(big, words, 7);
    uint32_t *h = malloc(words * 4);
    CHECK(cudaMemcpy(h, big, words * 4, 2));
    /* uses of another (small, pass-through) buffer: the big one is no longer among the last
     * calls' buffers, so it may be a victim */
    void *small;
    CHECK(cudaMalloc(&small, 64 << 10));
    for (int i = 0; i < 4; i++) CHECK(cudaMemset(small, i, 64 << 10));
    CHECK(cudaMalloc((void **)&more, 8 * MIB));
    CHECK(cudaMemset(more, 1, 8 * MIB));
    /* the most held so far, the pack included (the read-back below restores it beside its
     * copy, over the limit: the other buffer is among the last calls') */
    long peak = stat_num("held_peak_bytes");
    EXPECT(peak >= 0, "no held peak in the stats");
    printf("did limit_large_copy_peak_kib %ld\n", peak >> 10);
    uint32_t *back = malloc(words * 4);
    CHECK(cudaMemcpy(back, big, words * 4, 2));
    EXPECT(memcmp(h, back, words * 4) == 0, "the buffer packed past the limit did not read back exact");
    free(h);
    free(back);
    printf("did limit_large_copy_ok 1\n");
    return 0;
}

/* A 16 MiB buffer (1 MiB pieces on the double) packed to ~9 MiB under a 24 MiB limit, then
 * read back: there is no room for all of it beside its copy (25 MiB), so it comes back a piece
 * at a time from its end, each chunk's copy given back once decoded, and the limit holds. */
static int restore_pieces(void) {
    uint32_t *big;
    size_t words = 4 * MIB;
    CHECK(cudaMalloc((void **)&big, words * 4));
    fill_half(big, words, 11);
    uint32_t *h = malloc(words * 4);
    CHECK(cudaMemcpy(h, big, words * 4, 2));
    void *small;
    CHECK(cudaMalloc(&small, 64 << 10));
    for (int i = 0; i < 4; i++) CHECK(cudaMemset(small, i, 64 << 10));
    EXPECT(control("ltshim_pack_cold") >= 1, "the big buffer was not packed");
    uint32_t *back = malloc(words * 4);
    CHECK(cudaMemcpy(back, big, words * 4, 2));
    EXPECT(memcmp(h, back, words * 4) == 0, "the buffer restored in pieces did not read back exact");
    /* and once more: packed again (its copy went with the restore: encoded anew), and its
     * restore finds no memory for its second piece: the call gets the out-of-memory code, the
     * buffer stays packed (its last piece encoded again), and the next read has it all */
    for (int i = 0; i < 4; i++) CHECK(cudaMemset(small, i, 64 << 10));
    EXPECT(control("ltshim_pack_cold") >= 1, "the big buffer was not packed again");
    typedef int (*fail_fn)(int);
    fail_fn fail = (fail_fn)dlsym(RTLD_DEFAULT, "ltshim_debug_fail_next_pack");
    EXPECT(fail && fail(2) == 0, "ltshim_debug_fail_next_pack(2)");
    memset(back, 0, words * 4);
    int rc = cudaMemcpy(back, big, words * 4, 2);
    EXPECT(rc == 2, "a restore that found no memory midway: %d, expected out of memory (2)", rc);
    CHECK(cudaMemcpy(back, big, words * 4, 2));
    EXPECT(memcmp(h, back, words * 4) == 0, "the second restore in pieces did not read back exact");
    free(h);
    free(back);
    printf("did restore_pieces_ok 1\n");
    return 0;
}

/* readten(p0, ..., p9, n): reads ten buffers in one launch */
static void readten_kernel(void **args) {
    size_t n = *(size_t *)args[10];
    uint32_t x = 0;
    for (int b = 0; b < 10; b++) {
        const uint32_t *p = *(const uint32_t **)args[b];
        for (size_t i = 0; i < n; i++) x ^= p[i];
    }
    READSUM = x;
}
static const size_t READTEN_SIZES[] = {8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};

/* Fourteen half-random buffers of 2 MiB (copies of ~1.1 MiB) under a limit of 24 MiB, then
 * one launch that names ten of them (20 MiB): beside the other four's copies (~4.6 MiB) they
 * pass the limit, with nothing left to pack (every other buffer is packed, every kept copy
 * gone). Each buffer reads back exact afterwards, the four from wherever their copies went. */
static int host_copies(int again) {
    setup();
    enum { K = 14 };
    size_t words = 2 * MIB / 4;
    uint32_t *buf[K], *want[K];
    for (int k = 0; k < K; k++) {
        CHECK(cudaMalloc((void **)&buf[k], words * 4));
        fill_half(buf[k], words, 100 + k);
        want[k] = malloc(words * 4);
        uint32_t seed = 100 + k;
        for (size_t i = 0; i < words; i++) { seed = seed * 1664525u + 1013904223u; want[k][i] = (i & 1) ? seed | 1 : 0; }
    }
    Handle readten = dbl_register_kernel(readten_kernel, 11, READTEN_SIZES, 0);
    /* the two calls before it name buffers of the ten: the other four may go */
    for (int k = 0; k < 2; k++) {
        void *one[] = {&buf[k], &words};
        CHECK(__cudaLaunchKernel(READSUM_K, ONE, ONE, one, 0, NULL));
    }
    void *ten[11];
    for (int b = 0; b < 10; b++) ten[b] = &buf[b];
    ten[10] = &words;
    CHECK(__cudaLaunchKernel(readten, ONE, ONE, ten, 0, NULL));
    uint32_t *h = malloc(words * 4);
    for (int k = K - 1; k >= 0; k--) {
        CHECK(cudaMemcpy(h, buf[k], words * 4, 2));
        EXPECT(memcmp(h, want[k], words * 4) == 0, "buffer %d did not read back exact", k);
    }
    /* host_room_reclaimed: then one that names the other ten. Those whose copies went to host
     * memory come back with their copies kept there; now the first four's copies need the
     * room, and with little host memory only those kept copies give it */
    if (again) {
        for (int b = 0; b < 10; b++) ten[b] = &buf[K - 1 - b];
        CHECK(__cudaLaunchKernel(readten, ONE, ONE, ten, 0, NULL));
        for (int k = 0; k < K; k++) {
            CHECK(cudaMemcpy(h, buf[k], words * 4, 2));
            EXPECT(memcmp(h, want[k], words * 4) == 0, "buffer %d did not read back exact after the second launch", k);
        }
    }
    free(h);
    for (int k = 0; k < K; k++) {
        CHECK(cudaFree(buf[k]));
        free(want[k]);
    }
    printf("did host_copies_ok 1\n");
    return 0;
}

/* ltshim_restore_all packs nothing, also when a restore in pieces finds the card itself full
 * (a direct cuMemCreate leaves room for 9 of the big buffer's 16 pieces): it fails instead. */
static int restore_all_card_full(void) {
    setup();
    uint32_t *big, *c;
    size_t words = 4 * MIB;
    CHECK(cudaMalloc((void **)&big, words * 4));
    fill_half(big, words, 11);
    void *small;
    CHECK(cudaMalloc(&small, 64 << 10));
    for (int i = 0; i < 4; i++) CHECK(cudaMemset(small, i, 64 << 10));
    EXPECT(control("ltshim_pack_cold") >= 1, "the big buffer was not packed");
    CHECK(cudaMalloc((void **)&c, 8 * MIB));
    fill(c, 5, 2 * MIB);
    for (int i = 0; i < 8; i++) CHECK(cudaMemset(small, i, 64 << 10)); /* c is no longer recent */
    typedef size_t (*used_fn)(void);
    used_fn used = (used_fn)dlsym(RTLD_DEFAULT, "dbl_used_bytes");
    uint64_t filler;
    CHECK(cuMemCreate(&filler, ((size_t)16 << 30) - used() - 9 * MIB, NULL, 0));
    long packs = stat_num("packs");
    int64_t n = control("ltshim_restore_all");
    printf("did restore_all_result %lld\n", (long long)(n < 0 ? 1 : 0));
    printf("did packs_during_restore_all %ld\n", stat_num("packs") - packs);
    verify(c, 5, 2 * MIB, 0, "the buffer restore_all must not have packed");
    return 0;
}

/* Launches over triples of 1 MiB buffers in a loop, each launch preceded (`query`) or not by
 * a pointer query of each of its pointers, as Triton's launchers do: the restores of passes
 * 3-10. */
static void readsum3_kernel(void **args) {
    size_t n = *(size_t *)args[3];
    uint32_t x = 0;
    for (int a = 0; a < 3; a++) {
        const uint32_t *p = *(const uint32_t **)args[a];
        for (size_t i = 0; i < n; i++) x ^= p[i];
    }
    READSUM = x;
}
static const size_t READSUM3_SIZES[] = {8, 8, 8, 8};
static int query_loop(int query) {
    Handle k3 = dbl_register_kernel(readsum3_kernel, 4, READSUM3_SIZES, 0);
    size_t words = 1 * MIB / 4;
    enum { K = 9 };
    uint32_t *b[K];
    for (int k = 0; k < K; k++) {
        CHECK(cudaMalloc((void **)&b[k], words * 4));
        fill(b[k], k, words);
    }
    long first = 0;
    for (int pass = 0; pass < 10; pass++) {
        if (pass == 2) first = stat_num("restores");
        for (int g = 0; g < K / 3; g++) {
            if (query)
                for (int a = 0; a < 3; a++) {
                    CUdeviceptr dp = 0;
                    CHECK(cuPointerGetAttribute(&dp, 3, (CUdeviceptr)b[3 * g + a]));
                }
            void *ra[] = {&b[3 * g], &b[3 * g + 1], &b[3 * g + 2], &words};
            CHECK(__cudaLaunchKernel(k3, ONE, ONE, ra, 0, NULL));
        }
    }
    printf("did loop_restores %ld\n", stat_num("restores") - first);
    for (int k = 0; k < K; k++) verify(b[k], k, words, 0, "after the loop");
    return 0;
}

/* Read-only buffers in a loop over more than fit (copies out of them, checked): each is
 * encoded once, later cycles drop and decode its kept copy. */
static int cycle_read(void) {
    size_t words = 1 * MIB / 4;
    enum { K = 12 };
    uint32_t *b[K], *h = malloc(words * 4);
    for (int k = 0; k < K; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    for (int pass = 0; pass < 6; pass++) {
        for (int k = 0; k < K; k++) {
            CHECK(cudaMemcpy(h, b[k], words * 4, 2));
            for (size_t i = 0; i < words; i += 61) EXPECT(h[i] == pattern(k, i), "pass %d buffer %d word %zu = %u", pass, k, i, h[i]);
            usleep(1000); /* the program computes meanwhile */
        }
    }
    free(h);
    printf("did cycle_read_ok 1\n");
    return 0;
}

/* The same loop read by kernel launches, which may write (so each leaves its buffer dirty,
 * though it only reads), after each buffer was rewritten once since its first pack (so a check
 * found it changed). The copies of such buffers are thrown away first when room is needed, as
 * likely stale; one check after that must clear the suspicion, or every pass would encode
 * every buffer again (on the H200 a 3B model's weights, read by launches in decode, were
 * encoded again every step: 65 encodes a step). */
static int cycle_launch(void) {
    setup();
    size_t words = 1 * MIB / 4;
    enum { K = 12 };
    uint32_t *b[K], *h = malloc(words * 4);
    for (int k = 0; k < K; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    EXPECT(control("ltshim_pack_cold") >= 1, "the first packs");
    for (int k = 0; k < K; k++) fill(b[k], k + 100, words); /* rewritten: the next pack's check finds them changed */
    EXPECT(control("ltshim_pack_cold") >= 1, "the second packs");
    for (int k = 0; k < K; k++) fill(b[k], k, words);
    for (int pass = 0; pass < 6; pass++) {
        for (int k = 0; k < K; k++) {
            void *ra[] = {&b[k], &words};
            CHECK(__cudaLaunchKernel(READSUM_K, ONE, ONE, ra, 0, NULL));
            CHECK(cudaMemcpy(h, b[k], words * 4, 2));
            for (size_t i = 0; i < words; i += 61) EXPECT(h[i] == pattern(k, i), "pass %d buffer %d word %zu = %u", pass, k, i, h[i]);
        }
    }
    free(h);
    printf("did cycle_launch_ok 1\n");
    return 0;
}

/* The loop again, each buffer rewritten before it is read (activations): every pack of a
 * written buffer encodes, and a check is paid only every other time (a copy thrown away as
 * likely stale is not checked; the one made next is), never a check a pack. */
static int cycle_write(void) {
    size_t words = 1 * MIB / 4;
    enum { K = 12 };
    uint32_t *b[K];
    for (int k = 0; k < K; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    for (int pass = 1; pass <= 6; pass++) {
        for (int k = 0; k < K; k++) {
            fill(b[k], k + 100 * pass, words);
            verify(b[k], k + 100 * pass, words, 0, "a rewritten buffer");
        }
    }
    printf("did cycle_write_ok 1\n");
    return 0;
}

/* A training loop in small: each step writes eight activations of 1 MiB (the forward), reads
 * them back in reverse (the backward), then reads and rewrites two optimizer states of 2 MiB,
 * used nowhere else. Every buffer is dense (three words in four random: copies at ~78% of the
 * bytes, as fp32 training buffers pack to ~84%). Under the limit the states, packed while the
 * activations are in use, are the buffers needed furthest off: with host copies allowed their
 * copies go to host memory instead of the activations being encoded again and again. */
static uint32_t dense_word(uint32_t seed, size_t i) {
    uint32_t x = seed * 2654435761u + (uint32_t)i * 40503u;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return i % 4 == 3 ? 0 : x | 1;
}
static void fill_dense(uint32_t *dev, uint32_t seed, size_t words) {
    uint32_t *h = malloc(words * 4);
    for (size_t i = 0; i < words; i++) h[i] = dense_word(seed, i);
    CHECK(cudaMemcpy(dev, h, words * 4, 1));
    free(h);
}
static void verify_dense(uint32_t *dev, uint32_t seed, size_t words, const char *what) {
    uint32_t *h = malloc(words * 4);
    CHECK(cudaMemcpy(h, dev, words * 4, 2));
    size_t wrong = 0;
    for (size_t i = 0; i < words; i++) wrong += h[i] != dense_word(seed, i);
    EXPECT(wrong == 0, "%s: %zu of %zu words wrong", what, wrong, words);
    free(h);
}
static int train_loop(void) {
    setup();
    enum { A = 8, S = 2, STEPS = 6 };
    size_t aw = MIB / 4, sw = 2 * MIB / 4;
    uint32_t *act[A], *st[S];
    for (int j = 0; j < S; j++) { CHECK(cudaMalloc((void **)&st[j], sw * 4)); fill_dense(st[j], 7000 + j, sw); }
    for (int step = 0; step < STEPS; step++) {
        for (int k = 0; k < A; k++) {
            if (step == 0) CHECK(cudaMalloc((void **)&act[k], aw * 4));
            fill_dense(act[k], 100 * step + k, aw);
        }
        for (int k = A - 1; k >= 0; k--) verify_dense(act[k], 100 * step + k, aw, "an activation in the backward");
        for (int j = 0; j < S; j++) {
            verify_dense(st[j], 7000 + 10 * step + j, sw, "an optimizer state");
            fill_dense(st[j], 7000 + 10 * (step + 1) + j, sw);
        }
    }
    for (int k = 0; k < A; k++) CHECK(cudaFree(act[k]));
    for (int j = 0; j < S; j++) CHECK(cudaFree(st[j]));
    printf("did train_loop_ok 1\n");
    return 0;
}

/* A buffer whose address was copied into device memory stays resident (a kernel reaches it
 * through the table, naming only the table); `touch` then reads a buffer the library packed
 * straight from the host, which must fault: packing really unmaps. */
static int pointer_table(int touch) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *target, *table_buf, *out;
    CHECK(cudaMalloc((void **)&target, words * 4));
    fill(target, 9, words);
    CHECK(cudaMalloc((void **)&table_buf, 4 * MIB));
    CHECK(cudaMemcpy(table_buf, &target, sizeof target, 1)); /* a pointer array built on the host */
    CHECK(cudaMalloc((void **)&out, 4 * MIB));
    uint32_t *other;
    CHECK(cudaMalloc((void **)&other, words * 4));
    fill(other, 3, words);
    /* pressure: more compressible buffers than the limit holds */
    uint32_t *more[6];
    for (int k = 0; k < 6; k++) {
        CHECK(cudaMalloc((void **)&more[k], words * 4));
        fill(more[k], 20 + k, words);
    }
    int64_t packed = control("ltshim_pack_cold");
    EXPECT(packed > 0, "ltshim_pack_cold packed %lld", (long long)packed);
    if (touch) {
        /* `other` is cold and unflagged: packed, so a direct read faults */
        volatile uint32_t x = other[0];
        printf("read %u: the packed buffer was still mapped\n", x);
        return 0;
    }
    void *args[] = {&table_buf, &out};
    CHECK(__cudaLaunchKernel(DEREF, ONE, ONE, args, 0, NULL));
    uint32_t got = 0;
    CHECK(cudaMemcpy(&got, out, 4, 2));
    EXPECT(got == pattern(9, 0), "through the pointer table: %u, expected %u", got, pattern(9, 0));
    verify(other, 3, words, 0, "restored");
    printf("did pointer_table_ok 1\n");
    return 0;
}

/* Pointer queries name packed buffers too: Triton's launchers ask
 * cuPointerGetAttribute(DEVICE_POINTER) of every pointer argument before each launch, and the
 * driver knows no allocation in a packed (unmapped) range. Each query form, on a buffer packed
 * just before, answers as for a resident buffer, and the contents come back exact. */
static int pointer_query(void) {
    setup();
    enum { K = 8 };
    size_t words = 4 * MIB / 4;
    uint32_t *buf[K];
    for (int k = 0; k < K; k++) {
        CHECK(cudaMalloc((void **)&buf[k], words * 4));
        fill(buf[k], 40 + k, words);
    }
    for (int q = 0; q < 4; q++) {
        EXPECT(control("ltshim_pack_cold") > 0, "query %d: nothing was packed", q);
        uint32_t *p = buf[q] + 1000; /* an address inside, not the start */
        if (q == 0) {
            CUdeviceptr dp = 0;
            CHECK(cuPointerGetAttribute(&dp, 3 /* DEVICE_POINTER */, (CUdeviceptr)p));
            EXPECT(dp == (CUdeviceptr)p, "device pointer %llx, expected %p", (unsigned long long)dp, (void *)p);
            size_t range = 0; /* the whole buffer, not the 1 MiB piece mapped there */
            CHECK(cuPointerGetAttribute(&range, 12 /* RANGE_SIZE */, (CUdeviceptr)p));
            EXPECT(range >= words * 4, "range size %zu, expected the buffer's %zu", range, words * 4);
        } else if (q == 1) {
            unsigned type = 0;
            CUdeviceptr dp = 0;
            int attrs[2] = {2 /* MEMORY_TYPE */, 3};
            void *data[2] = {&type, &dp};
            CHECK(cuPointerGetAttributes(2, attrs, data, (CUdeviceptr)p));
            EXPECT(type == 2 && dp == (CUdeviceptr)p, "cuPointerGetAttributes: type %u pointer %llx", type, (unsigned long long)dp);
        } else if (q == 2) {
            cudaPointerAttributes a = {0};
            CHECK(cudaPointerGetAttributes(&a, p));
            EXPECT(a.type == 2 && a.devicePointer == (void *)p, "cudaPointerGetAttributes: type %d pointer %p", a.type, a.devicePointer);
        } else {
            CUdeviceptr base = 0;
            size_t size = 0;
            CHECK(cuMemGetAddressRange_v2(&base, &size, (CUdeviceptr)p));
            EXPECT(base == (CUdeviceptr)buf[q] && size >= words * 4, "cuMemGetAddressRange: %llx + %zu", (unsigned long long)base, size);
        }
        printf("did query_answered 1\n");
    }
    /* host memory still answers as host memory */
    cudaPointerAttributes h = {0};
    CHECK(cudaPointerGetAttributes(&h, &h));
    EXPECT(h.type == 0, "a host address reads as type %d", h.type);
    for (int k = 0; k < K; k++) verify(buf[k], 40 + k, words, 0, "after the queries");
    return 0;
}

/* A flipped bit in a packed copy is found at restore: the call fails, nothing is handed over. */
static int corrupt(void) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *a;
    CHECK(cudaMalloc((void **)&a, words * 4));
    fill(a, 5, words);
    EXPECT(control("ltshim_pack_cold") >= 1, "nothing packed");
    typedef int (*corrupt_fn)(const void *);
    corrupt_fn f = (corrupt_fn)dlsym(RTLD_DEFAULT, "ltshim_debug_corrupt_packed");
    EXPECT(f && f(a) == 0, "could not corrupt the packed copy");
    uint32_t h[4] = {0};
    int rc = cudaMemcpy(h, a, sizeof h, 2);
    EXPECT(rc != 0, "a copy from a corrupt buffer succeeded");
    printf("did corrupt_copy_rc %d\n", rc);
    void *args[] = {&a, &words};
    rc = __cudaLaunchKernel(INC, ONE, ONE, args, 0, NULL);
    EXPECT(rc != 0, "a launch on a corrupt buffer succeeded");
    EXPECT(cudaGetLastError() != 0, "the runtime's last error does not show the failed launch");
    printf("did corrupt_launch_rc %d\n", rc);
    float one = 1, zero = 0;
    rc = cublasGemmEx(NULL, 0, 0, 2, 2, 2, &one, a, 0, 2, a, 0, 2, &zero, a, 0, 2, 68, -1);
    EXPECT(rc == 13, "a GEMM on a corrupt buffer returned %d, not CUBLAS_STATUS_EXECUTION_FAILED", rc);
    printf("did corrupt_gemm_rc %d\n", rc);
    return 0;
}

/* An injected failure of our own work: everything packed comes back, packing stops, the
 * program's data is intact and its calls keep working. */
static int drain(void) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *b[3];
    for (int k = 0; k < 3; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    EXPECT(control("ltshim_pack_cold") == 3, "three buffers packed");
    CHECK(control("ltshim_restore_all") == 3 ? 0 : 1);
    typedef int (*fail_fn)(int);
    fail_fn f = (fail_fn)dlsym(RTLD_DEFAULT, "ltshim_debug_fail_next_pack");
    EXPECT(f && f(0) == 0, "no fault injection");
    EXPECT(control("ltshim_pack_cold") == 0, "a pack succeeded despite the injected failure");
    EXPECT(control("ltshim_pack_cold") == -1, "packing goes on after a failure");
    for (int k = 0; k < 3; k++) verify(b[k], k, words, 0, "after the drain");
    for (int k = 0; k < 3; k++) CHECK(cudaFree(b[k]));
    printf("did drained 1\n");
    return 0;
}

/* A buffer backed in pieces (4 MiB, four 1 MiB pieces) whose first piece packs (a fifth of
 * its 16-bit values zero) and whose others are random: the first piece goes once it is in the
 * copy, so the pack ends, its copy larger than the margin allows (counted); it reads back exact. */
static int past_margin(void) {
    size_t words = 4 * MIB / 4;
    uint32_t *b, *h = malloc(words * 4), *back = malloc(words * 4), seed = 12345;
    for (size_t i = 0; i < words; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = seed | 0x00010001u;
        if (i < MIB / 4 && i % 5 == 0) h[i] = 0;
    }
    CHECK(cudaMalloc((void **)&b, words * 4));
    CHECK(cudaMemcpy(b, h, words * 4, 1));
    EXPECT(control("ltshim_pack_cold") == 1, "the buffer was not packed");
    CHECK(cudaMemcpy(back, b, words * 4, 2));
    EXPECT(memcmp(h, back, words * 4) == 0, "the buffer packed past its margin did not read back exact");
    free(h);
    free(back);
    printf("did past_margin_ok 1\n");
    return 0;
}

/* A kept copy shortened for room: an 8 MiB buffer (half zeros: its copy ~4.5 MiB in eight
 * 1 MiB chunks) packed and read back, its copy kept beside it (12.5 MiB held of 16, 2 kept
 * for copies); then 2 MiB more, with the buffer among the last calls' (no victim): only the
 * copy's last chunk goes. Its next pack encodes that last MiB alone, and it reads back exact. */
static int kept_partial(void) {
    size_t words = 8 * MIB / 4;
    uint32_t *a, *b, *h = malloc(words * 4), *back = malloc(words * 4);
    CHECK(cudaMalloc((void **)&a, words * 4));
    fill_half(a, words, 3);
    CHECK(cudaMemcpy(h, a, words * 4, 2));
    EXPECT(control("ltshim_pack_cold") == 1, "the buffer was not packed");
    CHECK(cudaMemcpy(back, a, words * 4, 2));
    CHECK(cudaMalloc((void **)&b, 2 * MIB));
    EXPECT(control("ltshim_pack_cold") >= 1, "the buffer was not packed again");
    CHECK(cudaMemcpy(back, a, words * 4, 2));
    EXPECT(memcmp(h, back, words * 4) == 0, "the buffer packed from a shortened copy did not read back exact");
    free(h);
    free(back);
    printf("did kept_partial_ok 1\n");
    return 0;
}

/* Two devices, each under its own 16 MiB limit: three 4 MiB buffers on device 0 fit there and
 * stay resident while device 1 holds five (20 MiB: some of them packed), each device's
 * cudaMemGetInfo reports its own limit and what it holds, and every buffer reads back exact,
 * device 0's read while device 1 is current. */
static int two_devices(void) {
    size_t words = 4 * MIB / 4, fr, tot;
    uint32_t *on0[3], *on1[5];
    CHECK(cudaSetDevice(0));
    for (int k = 0; k < 3; k++) { CHECK(cudaMalloc((void **)&on0[k], words * 4)); fill(on0[k], k, words); }
    CHECK(cudaSetDevice(1));
    for (int k = 0; k < 5; k++) { CHECK(cudaMalloc((void **)&on1[k], words * 4)); fill(on1[k], 10 + k, words); }
    CHECK(cudaMemGetInfo(&fr, &tot));
    EXPECT(tot == 16 * MIB, "device 1: cudaMemGetInfo total %zu, expected its limit", tot);
    printf("did two_devices_free1_mib %zu\n", fr / MIB);
    for (int k = 0; k < 3; k++) verify(on0[k], k, words, 0, "device 0, read from device 1");
    for (int k = 0; k < 5; k++) verify(on1[k], 10 + k, words, 0, "device 1");
    CHECK(cudaSetDevice(0));
    CHECK(cudaMemGetInfo(&fr, &tot));
    EXPECT(tot == 16 * MIB, "device 0: cudaMemGetInfo total %zu, expected its limit", tot);
    printf("did two_devices_free0_mib %zu\n", fr / MIB);
    for (int k = 0; k < 3; k++) CHECK(cudaFree(on0[k]));
    for (int k = 0; k < 5; k++) CHECK(cudaFree(on1[k]));
    printf("did two_devices_ok 1\n");
    return 0;
}

/* Buffers bound to a multicast object (cuMulticastBindAddr over a range that starts inside one
 * and ends inside the next) are flagged and never packed, also when they were packed before
 * the bind; a third buffer, outside the range, packs as usual. The double has no multicast:
 * the call fails there, after the buffers were flagged. */
static int multicast(void) {
    size_t words = 4 * MIB / 4;
    uint32_t *b[3];
    for (int k = 0; k < 3; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    EXPECT(control("ltshim_pack_cold") == 3, "three buffers packed first");
    typedef int (*bind_fn)(uint64_t, size_t, uint64_t, size_t, uint64_t);
    bind_fn bind = (bind_fn)dlsym(RTLD_DEFAULT, "cuMulticastBindAddr");
    EXPECT(bind != NULL, "cuMulticastBindAddr is not exported");
    /* the two lowest buffers in address order (where the third lies varies from run to run:
     * between b[0] and b[1] it was bound too, and nothing packed again) */
    uint64_t a[3] = {(uint64_t)b[0], (uint64_t)b[1], (uint64_t)b[2]};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2 - i; j++)
            if (a[j] > a[j + 1]) { uint64_t t = a[j]; a[j] = a[j + 1]; a[j + 1] = t; }
    uint64_t lo = a[0], hi = a[1];
    /* from the middle of the lower buffer to the middle of the higher: both */
    int rc = bind(0, 0, lo + MIB, (size_t)(hi - lo), 0);
    printf("did multicast_rc %d\n", rc);
    for (int k = 0; k < 3; k++) verify(b[k], k, words, 0, "after the bind");
    printf("did multicast_repacked %lld\n", (long long)control("ltshim_pack_cold"));
    for (int k = 0; k < 3; k++) CHECK(cudaFree(b[k]));
    printf("did multicast_ok 1\n");
    return 0;
}

/* cudaMemGetInfo as the first call on a device, before anything is allocated there (as
 * accelerate's device map asks of every GPU before it loads a weight): the emulated card. */
static int info_first(void) {
    size_t f = 0, t = 0;
    CHECK(cudaMemGetInfo(&f, &t));
    printf("did info_first_total0_mib %zu\n", t >> 20);
    printf("did info_first_free0_mib %zu\n", f >> 20);
    CHECK(cudaSetDevice(1));
    CHECK(cudaMemGetInfo(&f, &t));
    printf("did info_first_total1_mib %zu\n", t >> 20);
    CHECK(cudaSetDevice(0));
    printf("did info_first_ok 1\n");
    return 0;
}

/* The same failure in the middle of a pack of a buffer backed in pieces (4 MiB: four of the
 * CPU codec's 1 MiB chunks), once its first piece was given back: that piece comes back with
 * its bytes, the buffer stays resident and exact, and so do the others. */
static int drain_midway(void) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *b[3];
    for (int k = 0; k < 3; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    typedef int (*fail_fn)(int);
    fail_fn f = (fail_fn)dlsym(RTLD_DEFAULT, "ltshim_debug_fail_next_pack");
    EXPECT(f && f(1) == 0, "no fault injection");
    int64_t packed = control("ltshim_pack_cold");
    EXPECT(packed < 3, "every buffer packed despite the injected failure (%lld)", (long long)packed);
    EXPECT(control("ltshim_pack_cold") == -1, "packing goes on after a failure");
    for (int k = 0; k < 3; k++) verify(b[k], k, words, 0, "after a failure midway");
    for (int k = 0; k < 3; k++) CHECK(cudaFree(b[k]));
    printf("did drained_midway 1\n");
    return 0;
}

/* A kernel whose parameter layout the driver will not tell may touch any buffer: every packed
 * buffer is made resident before it, under a limit too small for all of them (they come back
 * over it, none is packed to make room while the call runs). */
static int opaque(void) {
    setup();
    size_t words = 4 * MIB / 4;
    enum { K = 6 };
    uint32_t *b[K];
    for (int k = 0; k < K; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    EXPECT(control("ltshim_pack_cold") >= 1, "the buffers were not packed");
    for (int k = 0; k < K; k++) {
        void *args[] = {&b[k], &words};
        CHECK(__cudaLaunchKernel(HIDDEN_INC, ONE, ONE, args, 0, NULL));
    }
    for (int k = 0; k < K; k++) verify(b[k], k, words, 1, "after kernels of unknown layout");
    printf("did opaque_launches %d\n", K);
    return 0;
}

/* A 3-D set (a shape the library does not parse) over packed buffers: every packed buffer is
 * restored before it, so the set reaches mapped memory, and the data is exact after. */
static int three_d(void) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *b[3];
    for (int k = 0; k < 3; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    EXPECT(control("ltshim_pack_cold") == 3, "three buffers packed");
    cudaPitchedPtr p = {b[1], 4096, 4096, 4};
    cudaExtent e = {64, 4, 2};  /* 2 slices of 4 rows of 64 bytes, rows 4 KiB apart */
    CHECK(cudaMemset3D(p, 0, e));
    uint32_t *h = malloc(words * 4);
    CHECK(cudaMemcpy(h, b[1], words * 4, 2));
    for (size_t i = 0; i < words; i++) {
        size_t byte = i * 4, row = byte / 4096, col = byte % 4096;
        uint32_t want = (row < 8 && col < 64) ? 0 : pattern(1, i);
        EXPECT(h[i] == want, "3-D set: word %zu = %u, expected %u", i, h[i], want);
    }
    free(h);
    verify(b[0], 0, words, 0, "beside the 3-D set");
    verify(b[2], 2, words, 0, "beside the 3-D set");
    printf("did three_d 1\n");
    return 0;
}

/* A loop over more buffers than fit, with ltshim_step after each pass: the stats count
 * restores per step, and the policy keeps a stable set resident (fewer restores than buffers). */
static int steps(void) {
    setup();
    size_t words = 1 * MIB / 4;
    enum { K = 12 };
    uint32_t *b[K];
    for (int k = 0; k < K; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    typedef void (*step_fn)(void);
    step_fn step = (step_fn)dlsym(RTLD_DEFAULT, "ltshim_step");
    EXPECT(step != NULL, "ltshim_step is not exported");
    for (int s = 0; s < 4; s++) {
        for (int k = 0; k < K; k++) {
            void *args[] = {&b[k], &words};
            CHECK(__cudaLaunchKernel(READSUM_K, ONE, ONE, args, 0, NULL));
        }
        step();
    }
    for (int k = 0; k < K; k++) verify(b[k], k, words, 0, "after four passes");
    printf("did steps 4\n");
    return 0;
}

/* A loop over more buffers than fit beside their copies, as a decode step over a model's weights:
 * 24 buffers of 2 MiB, half their words random (copies ~56%), all packed first, then read by
 * launches in the same order, with ltshim_step after each pass; every word is checked at the
 * end. The stats say how many restores each step took (the test compares them with what the
 * limit allows). */
static void expect_half(uint32_t *dev, size_t words, uint32_t seed, const char *what) {
    uint32_t *h = malloc(words * 4);
    CHECK(cudaMemcpy(h, dev, words * 4, 2));
    for (size_t i = 0; i < words; i++) {
        seed = seed * 1664525u + 1013904223u;
        uint32_t want = (i & 1) ? seed | 1 : 0;
        EXPECT(h[i] == want, "%s: word %zu = %u, expected %u", what, i, h[i], want);
    }
    free(h);
}
static int survivors(void) {
    setup();
    enum { K = 24, STEPS = 10 };
    size_t words = 2 * MIB / 4;
    uint32_t *b[K];
    for (int k = 0; k < K; k++) {
        CHECK(cudaMalloc((void **)&b[k], words * 4));
        fill_half(b[k], words, 100 + k);
    }
    /* every buffer starts packed, with a copy (as a model's weights do when its loading packed
     * them): the stable set must be made from buffers that have one */
    EXPECT(control("ltshim_pack_cold") >= 1, "nothing packed");
    typedef void (*step_fn)(void);
    step_fn step = (step_fn)dlsym(RTLD_DEFAULT, "ltshim_step");
    EXPECT(step != NULL, "ltshim_step is not exported");
    for (int s = 0; s < STEPS; s++) {
        for (int k = 0; k < K; k++) {
            void *args[] = {&b[k], &words};
            CHECK(__cudaLaunchKernel(READSUM_K, ONE, ONE, args, 0, NULL));
        }
        step();
    }
    for (int k = 0; k < K; k++) expect_half(b[k], words, 100 + k, "after the loop");
    for (int k = 0; k < K; k++) CHECK(cudaFree(b[k]));
    printf("did survivors_ok 1\n");
    return 0;
}

/* Idle packing: the program goes quiet; the library's thread packs its cold buffers; the next
 * call finds them restored. */
static int idle(void) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *b[2];
    for (int k = 0; k < 2; k++) { CHECK(cudaMalloc((void **)&b[k], words * 4)); fill(b[k], k, words); }
    usleep(1500 * 1000);  /* LTSHIM_IDLE_MS=200, LTSHIM_COLD_MS=300 in the test */
    for (int k = 0; k < 2; k++) verify(b[k], k, words, 0, "after sleeping");
    printf("did idle 1\n");
    return 0;
}

/* 8 threads, random allocate / copy / launch / set / free under the limit, each buffer's
 * contents checked against a shadow copy on the host. */
enum { THREADS = 8, SLOTS = 6 };
static int OPS = 12500;
struct slot { uint32_t *dev; uint32_t *shadow; size_t words; };
static void *worker(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 1;
    struct slot s[SLOTS] = {{0}};
    for (int op = 0; op < OPS; op++) {
        int k = rand_r(&seed) % SLOTS;
        struct slot *x = &s[k];
        int what = rand_r(&seed) % 6;
        if (!x->dev) {
            x->words = (size_t)(1 + rand_r(&seed) % 3) * 64 * 1024 / 4; /* 64, 128 or 192 KiB */
            if (cudaMalloc((void **)&x->dev, x->words * 4) != 0) { x->dev = NULL; continue; }
            x->shadow = calloc(x->words, 4);
            for (size_t i = 0; i < x->words; i += 97) x->shadow[i] = rand_r(&seed);
            CHECK(cudaMemcpy(x->dev, x->shadow, x->words * 4, 1));
            continue;
        }
        switch (what) {
        case 0: { /* launch */
            void *args[] = {&x->dev, &x->words};
            CHECK(__cudaLaunchKernel(INC, ONE, ONE, args, 0, NULL));
            for (size_t i = 0; i < x->words; i++) x->shadow[i] += 1;
            break;
        }
        case 1: { /* set a range */
            size_t at = rand_r(&seed) % x->words, n = 1 + rand_r(&seed) % 512;
            if (at + n > x->words) n = x->words - at;
            CHECK(cudaMemset(x->dev + at, 0, n * 4));
            memset(x->shadow + at, 0, n * 4);
            break;
        }
        case 2: { /* read back and compare a range */
            size_t at = rand_r(&seed) % x->words, n = 1 + rand_r(&seed) % 1024;
            if (at + n > x->words) n = x->words - at;
            uint32_t *h = malloc(n * 4);
            CHECK(cudaMemcpy(h, x->dev + at, n * 4, 2));
            for (size_t i = 0; i < n; i++) EXPECT(h[i] == x->shadow[at + i], "thread word %zu: %u vs %u", at + i, h[i], x->shadow[at + i]);
            free(h);
            break;
        }
        case 3: { /* device to device copy from another slot */
            struct slot *y = &s[(k + 1) % SLOTS];
            if (!y->dev) break;
            size_t n = (x->words < y->words ? x->words : y->words) / 2;
            CHECK(cudaMemcpy(x->dev, y->dev, n * 4, 3));
            memcpy(x->shadow, y->shadow, n * 4);
            break;
        }
        case 4: /* free */
            CHECK(cudaFree(x->dev));
            free(x->shadow);
            x->dev = NULL;
            break;
        default: /* write a word from the host */
        {
            size_t at = rand_r(&seed) % x->words;
            uint32_t v = rand_r(&seed);
            CHECK(cudaMemcpy(x->dev + at, &v, 4, 1));
            x->shadow[at] = v;
        }
        }
    }
    for (int k = 0; k < SLOTS; k++) if (s[k].dev) {
        uint32_t *h = malloc(s[k].words * 4);
        CHECK(cudaMemcpy(h, s[k].dev, s[k].words * 4, 2));
        EXPECT(memcmp(h, s[k].shadow, s[k].words * 4) == 0, "final contents differ");
        free(h); free(s[k].shadow);
        CHECK(cudaFree(s[k].dev));
    }
    return NULL;
}
static int threads(void) {
    setup();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("did operations %d\n", THREADS * OPS);
    return 0;
}

/* A captured graph replays with its buffers restored first; its buffers are then never packed. */
static int graph(void) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *a;
    CHECK(cudaMalloc((void **)&a, words * 4));
    fill(a, 4, words);
    EXPECT(control("ltshim_pack_cold") >= 1, "nothing packed");
    Handle s = (Handle)0x5, g = NULL, e = NULL;
    CHECK(cudaStreamBeginCapture(s, 0)); /* restores everything first */
    void *args[] = {&a, &words};
    CHECK(__cudaLaunchKernel(INC, ONE, ONE, args, 0, s));
    CHECK(cudaStreamEndCapture(s, &g));
    CHECK(cudaGraphInstantiate(&e, g, 0));
    EXPECT(control("ltshim_pack_cold") == 0, "a graph's buffer was packed");
    CHECK(cudaGraphLaunch(e, s));
    CHECK(cudaGraphLaunch(e, s));
    verify(a, 4, words, 2, "after two replays");
    CHECK(cudaGraphExecDestroy(e));
    printf("did graph_replays 2\n");
    return 0;
}

/* Threads instantiating and destroying executable graphs at once, each of its own buffer:
 * every thread keeps its last graph alive, so every buffer must end flagged GRAPH. The double
 * hands a destroyed handle out again at once, from any thread (a destroy must forget its graph
 * before the handle can come back as another thread's). */
enum { RACE_THREADS = 6 };
static Handle RACE_GRAPH[RACE_THREADS];
static void *graph_churn(void *arg) {
    Handle graph = RACE_GRAPH[(intptr_t)arg], prev = NULL;
    for (int i = 0; i < 3000; i++) {
        Handle e = NULL;
        CHECK(cudaGraphInstantiate(&e, graph, 0));
        if (prev) CHECK(cudaGraphExecDestroy(prev));
        prev = e;
    }
    return prev;
}
static int graph_race(void) {
    setup();
    size_t words = MIB / 4;
    uint32_t *a[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        CHECK(cudaMalloc((void **)&a[i], 4 * MIB));
        Handle s = (Handle)(intptr_t)(0x60 + i);
        CHECK(cudaStreamBeginCapture(s, 0));
        void *args[] = {&a[i], &words};
        CHECK(__cudaLaunchKernel(INC, ONE, ONE, args, 0, s));
        CHECK(cudaStreamEndCapture(s, &RACE_GRAPH[i]));
    }
    pthread_t t[RACE_THREADS];
    for (intptr_t i = 0; i < RACE_THREADS; i++) pthread_create(&t[i], NULL, graph_churn, (void *)i);
    for (int i = 0; i < RACE_THREADS; i++) pthread_join(t[i], NULL);
    printf("did graph_race_buffers %d\n", RACE_THREADS);
    return 0;
}

/* A child of fork passes everything through; the parent's buffers are untouched. */
static int forked(void) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t *a;
    CHECK(cudaMalloc((void **)&a, words * 4));
    fill(a, 2, words);
    EXPECT(control("ltshim_pack_cold") >= 1, "nothing packed");
    pid_t pid = fork();
    if (pid == 0) {
        uint32_t *c;
        _exit(cudaMalloc((void **)&c, 4 * MIB) == 0 && control("ltshim_pack_cold") == -1 ? 0 : 3);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    verify(a, 2, words, 0, "in the parent after the fork");
    printf("did fork 1\n");
    return 0;
}

/* No limit set, the card (CUDADOUBLE_TOTAL_MIB) smaller than what the program allocates: each
 * compressible buffer is filled and read by a kernel as it is made, as a model's weights are;
 * when the card is full, cold ones are packed and the allocations go on; then every buffer
 * reads back exact, twice, in the order they were made. */
static int card_full(int k_count) {
    setup();
    size_t words = 4 * MIB / 4;
    uint32_t **buf = calloc(k_count, sizeof *buf);
    for (int k = 0; k < k_count; k++) {
        int rc = cudaMalloc((void **)&buf[k], words * 4);
        EXPECT(rc == 0, "allocation %d of %d failed with %d: the card was full and nothing was packed", k, k_count, rc);
        fill(buf[k], k, words);
        void *args[] = {&buf[k], &words};
        CHECK(__cudaLaunchKernel(READSUM_K, ONE, ONE, args, 0, NULL));
    }
    printf("did allocated %d\n", k_count);
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < k_count; k++) verify(buf[k], k, words, 0, "beyond the card");
    printf("did verified %d\n", k_count);
    for (int k = 0; k < k_count; k++) CHECK(cudaFree(buf[k]));
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *what = argc > 1 ? argv[1] : "";
    if (argc > 2) OPS = atoi(argv[2]);
    if (!strcmp(what, "limit")) return limit();
    if (!strcmp(what, "card_full")) return card_full(argc > 2 ? atoi(argv[2]) : 24);
    if (!strcmp(what, "pointer_table")) return pointer_table(0);
    if (!strcmp(what, "touch_packed")) return pointer_table(1);
    if (!strcmp(what, "corrupt")) return corrupt();
    if (!strcmp(what, "pointer_query")) return pointer_query();
    if (!strcmp(what, "drain")) return drain();
    if (!strcmp(what, "threads")) return threads();
    if (!strcmp(what, "opaque")) return opaque();
    if (!strcmp(what, "three_d")) return three_d();
    if (!strcmp(what, "idle")) return idle();
    if (!strcmp(what, "steps")) return steps();
    if (!strcmp(what, "survivors")) return survivors();
    if (!strcmp(what, "clean")) return clean();
    if (!strcmp(what, "lossy_weights")) return lossy_weights();
    if (!strcmp(what, "capture_count")) return capture_count();
    if (!strcmp(what, "limit_smallest")) return limit_smallest();
    if (!strcmp(what, "limit_large_copy")) return limit_large_copy();
    if (!strcmp(what, "restore_pieces")) return restore_pieces();
    if (!strcmp(what, "host_copies")) return host_copies(0);
    if (!strcmp(what, "host_room_reclaimed")) return host_copies(1);
    if (!strcmp(what, "restore_all_card_full")) return restore_all_card_full();
    if (!strcmp(what, "query_loop")) return query_loop(0);
    if (!strcmp(what, "query_loop_queried")) return query_loop(1);
    if (!strcmp(what, "drain_midway")) return drain_midway();
    if (!strcmp(what, "past_margin")) return past_margin();
    if (!strcmp(what, "kept_partial")) return kept_partial();
    if (!strcmp(what, "two_devices")) return two_devices();
    if (!strcmp(what, "multicast")) return multicast();
    if (!strcmp(what, "info_first")) return info_first();
    if (!strcmp(what, "cycle_read")) return cycle_read();
    if (!strcmp(what, "cycle_gemm")) return cycle_gemm(0);
    if (!strcmp(what, "train_step")) return train_step();
    if (!strcmp(what, "train_loop")) return train_loop();
    if (!strcmp(what, "partial_operand")) return partial_operand();
    if (!strcmp(what, "reused_segment")) return reused_segment();
    if (!strcmp(what, "opaque_outdates")) return opaque_outdates();
    if (!strcmp(what, "cycle_launch")) return cycle_launch();
    if (!strcmp(what, "cycle_write")) return cycle_write();
    if (!strcmp(what, "lt_layouts")) return lt_layouts();
    if (!strcmp(what, "cycle_gemm_sparse")) return cycle_gemm(1);
    if (!strcmp(what, "peer_access")) return peer_access(0);
    if (!strcmp(what, "peer_access_driver")) return peer_access(1);
    if (!strcmp(what, "nccl_calls")) return nccl_calls();
    if (!strcmp(what, "graph_race")) return graph_race();
    if (!strcmp(what, "graph")) return graph();
    if (!strcmp(what, "fork")) return forked();
    fprintf(stderr, "usage: packing limit|pointer_table|touch_packed|corrupt|drain|threads|graph|fork\n");
    return 2;
}
