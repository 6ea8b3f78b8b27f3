// Helpers shared by the LT-Block kernels: the LTSUM32 checksum, the float conversions of
// ltblock/src/dtype.rs (bit for bit but a NaN's payload, see f16_to_f32), and block-wide
// reductions. Compiled by NVRTC at run time (no host headers): fixed-width types are spelled
// out here.
#pragma once

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define LTB_THREADS 256
#define LTB_WARPS (LTB_THREADS / 32)
#define FULL_MASK 0xffffffffu

enum { CODEC_RAW = 0, CODEC_ZVC = 1, CODEC_INT8G = 2, CODEC_EXPF = 3 };
enum { DT_U8 = 0, DT_F16 = 1, DT_BF16 = 2, DT_F32 = 3 };
enum { ST_OK = 0, ST_MAGIC = 1, ST_CODEC = 2, ST_LENGTH = 3, ST_CHECKSUM = 4, ST_DTYPE = 5, ST_ALIGN = 6 };

__device__ __forceinline__ u32 fmix32(u32 h) {
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
    return h;
}

__device__ __forceinline__ u32 ltsum_term(u32 word, u32 index) { return fmix32(word ^ (index * 0x9E3779B9u)); }
__device__ __forceinline__ u32 ltsum_final(u32 sum, u32 len) { return fmix32(sum ^ (len * 0x27d4eb2fu)); }

__device__ __forceinline__ int dtype_width(int dt) { return dt == DT_U8 ? 1 : (dt == DT_F32 ? 4 : 2); }

// ---- conversions, identical to ltblock/src/dtype.rs ----
__device__ __forceinline__ u16 f32_to_bf16(float v) {
    u32 b = __float_as_uint(v);
    if (v != v) return (u16)(b >> 16) | 0x40;
    u32 rounding = 0x7fffu + ((b >> 16) & 1u);
    return (u16)((b + rounding) >> 16);
}
__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }

// By the hardware conversion: exact, as dtype.rs is, for every f16 but NaN, whose payload may
// differ. Only int8g's encoder reads f16 as f32, and a block holding NaN is never int8g (NaN
// still compares above every finite magnitude, so the block is refused either way).
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ u16 f32_to_f16(float v) {
    u32 b = __float_as_uint(v);
    u16 sign = (u16)((b >> 16) & 0x8000u);
    int exp = (int)((b >> 23) & 0xff);
    u32 man = b & 0x7fffffu;
    if (exp == 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
    int e = exp - 127 + 15;
    if (e >= 0x1f) return sign | 0x7c00;
    if (e <= 0) {
        if (e < -10) return sign;
        u32 m = man | 0x800000u;
        u32 shift = (u32)(14 - e);
        u32 half = 1u << (shift - 1);
        u32 rest = m & ((1u << shift) - 1);
        u32 r = m >> shift;
        if (rest > half || (rest == half && (r & 1u))) r += 1;
        return sign | (u16)r;
    }
    u32 r = ((u32)e << 10) | (man >> 13);
    u32 rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) r += 1;
    return sign | (u16)r;
}

// The bits of x in a float dtype (rounded to nearest even for the narrow ones).
__device__ __forceinline__ u32 to_bits(int dt, float x) {
    if (dt == DT_F32) return __float_as_uint(x);
    return dt == DT_BF16 ? f32_to_bf16(x) : f32_to_f16(x);
}

// Two floats in a 16-bit float dtype, packed (lo in bits 0..15), in one instruction. cvt.rn
// rounds to nearest even, as f32_to_bf16 / f32_to_f16 do, for every value but NaN (whose
// payload bits may differ); int8g's q * scale is never NaN unless a payload is corrupt, and then
// the block's checksum fails whatever the bits.
template <int dt>
__device__ __forceinline__ u32 to_bits2(float lo, float hi) {
    u32 r;
    if (dt == DT_BF16) asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    else asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// ---- int8g (ltblock/src/codec/int8g.rs) ----
// x / 127 correctly rounded without a division: a multiply by RN(1/127) and one FMA step. It
// equals the IEEE quotient for every positive finite f32 (ltgpu's unit test checks a sample
// in CI and all 2^31 - 2^23 of them when run with --ignored).
__device__ __forceinline__ float div127(float x) {
    const float y = 1.0f / 127.0f;
    float q0 = __fmul_rn(x, y);
    return __fmaf_rn(__fmaf_rn(-q0, 127.0f, x), y, q0);
}
// A group's scale and inverse from its largest magnitude (both 0 below 2^-120), without a
// branch: below 2^-120 the quotients are computed and then not taken.
__device__ __forceinline__ void int8g_scale(float amax, float* s, float* inv) {
    bool tiny = amax < 7.52316384526264e-37f;
    float sc = div127(amax), iv = 127.0f / amax;
    *s = tiny ? 0.0f : sc;
    *inv = tiny ? 0.0f : iv;
}
// rint(x * inv) plus 1.5 * 2^23: adding the constant rounds to the nearest even integer, and
// the low byte of the sum's bits is q as an i8. The reference clamps rint(x * inv) to +-127;
// that never acts here: |x| <= amax of its group, and fl(x * fl(127 / amax)) is at most
// 127 * (1 + 2^-24)^2 < 127.5 (inv = 0 below 2^-120; blocks holding NaN or Inf, or values past
// 2^40, are never int8g), so the sum rounds to within +-127 of the constant.
#define INT8G_MAGIC 12582912.0f
__device__ __forceinline__ float int8g_biased(float x, float inv) {
    return x * inv + INT8G_MAGIC;  // two roundings: --fmad=false keeps them apart
}
// Byte k of a word of q values as a float, without a conversion instruction: (q ^ 0x80) is
// q + 128 in 0..255, placed in the low mantissa bits of 1.5 * 2^23.
__device__ __forceinline__ float int8g_byte(u32 flipped_word, u32 k) {
    return __uint_as_float(__byte_perm(flipped_word, 0x4B400000u, 0x7640u | k)) - (INT8G_MAGIC + 128.0f);
}

// An element's bits (of a w-byte dtype) as f32, and its magnitude as u32 bits (ordered like
// the magnitudes; Inf and NaN compare above every finite value).
template <typename T>
__device__ __forceinline__ float elem_f32(T bits, int dt) {
    if (sizeof(T) == 4) return __uint_as_float((u32)bits);
    if (sizeof(T) == 2) return dt == DT_BF16 ? bf16_to_f32((u16)bits) : f16_to_f32((u16)bits);
    return (float)bits;
}
template <typename T>
__device__ __forceinline__ u32 abs_bits(T bits, int dt) { return __float_as_uint(elem_f32<T>(bits, dt)) & 0x7fffffffu; }

// The low and high element of a word of a 16-bit float dtype, as f32.
template <int dt>
__device__ __forceinline__ float lo_f32(u32 w) { return dt == DT_BF16 ? __uint_as_float(w << 16) : f16_to_f32((u16)w); }
template <int dt>
__device__ __forceinline__ float hi_f32(u32 w) { return dt == DT_BF16 ? __uint_as_float(w & 0xffff0000u) : f16_to_f32((u16)(w >> 16)); }

// x rounded to the dtype and read back (what decode yields).
__device__ __forceinline__ float round_to(int dt, float x) {
    if (dt == DT_F32) return x;
    return dt == DT_BF16 ? bf16_to_f32(f32_to_bf16(x)) : f16_to_f32(f32_to_f16(x));
}
// ---- reductions over the CTA (all threads must call) ----
// An xor butterfly in each warp, then the warps' values combined in order from `identity`: a
// fixed order, which int8g's f32 error sums rely on (ltblock's int8g::block_sum).
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, T identity, T* scratch, Op op) {
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(FULL_MASK, v, off));
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T total = identity;
    for (int w = 0; w < LTB_WARPS; w++) total = op(total, scratch[w]);
    __syncthreads();
    return total;
}
__device__ __forceinline__ u32 add_u32(u32 x, u32 y) { return x + y; }
__device__ __forceinline__ float add_f32(float x, float y) { return x + y; }
__device__ __forceinline__ u32 max_u32(u32 x, u32 y) { return max(x, y); }
__device__ __forceinline__ u32 block_sum_u32(u32 v, u32* scratch) { return block_reduce<u32>(v, 0u, scratch, add_u32); }

// Three reductions over the CTA behind one set of barriers (scratch: 3 * LTB_WARPS words),
// each in block_reduce's order; values of 32 bits (u32 or f32), identity 0.
template <typename A, typename B, typename C, typename OA, typename OB, typename OC>
__device__ __forceinline__ void block_reduce3(A& a, B& b, C& c, OA oa, OB ob, OC oc, u32* scratch) {
    static_assert(sizeof(A) == 4 && sizeof(B) == 4 && sizeof(C) == 4, "32-bit values");
    for (int off = 16; off > 0; off >>= 1) {
        a = oa(a, __shfl_xor_sync(FULL_MASK, a, off));
        b = ob(b, __shfl_xor_sync(FULL_MASK, b, off));
        c = oc(c, __shfl_xor_sync(FULL_MASK, c, off));
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    A* sa = (A*)scratch;
    B* sb = (B*)(scratch + LTB_WARPS);
    C* sc = (C*)(scratch + 2 * LTB_WARPS);
    __syncthreads();
    if (lane == 0) { sa[warp] = a; sb[warp] = b; sc[warp] = c; }
    __syncthreads();
    a = 0; b = 0; c = 0;
    for (int w = 0; w < LTB_WARPS; w++) { a = oa(a, sa[w]); b = ob(b, sb[w]); c = oc(c, sc[w]); }
    __syncthreads();
}

// Exclusive scan of `count` u32 values in shared memory, in place; returns the total.
__device__ __forceinline__ u32 block_exclusive_scan(u32* vals, u32 count, u32* scratch) {
    u32 per = (count + LTB_THREADS - 1) / LTB_THREADS;
    u32 lo = threadIdx.x * per, hi = min(lo + per, count);
    u32 mine = 0;
    for (u32 k = lo; k < hi; k++) mine += vals[k];
    // inclusive scan of the per-thread totals
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    u32 x = mine;
    for (int off = 1; off < 32; off <<= 1) {
        u32 y = __shfl_up_sync(FULL_MASK, x, off);
        if (lane >= off) x += y;
    }
    __syncthreads();
    if (lane == 31) scratch[warp] = x;
    __syncthreads();
    u32 warp_base = 0, total = 0;
    for (int w = 0; w < LTB_WARPS; w++) { if (w < warp) warp_base += scratch[w]; total += scratch[w]; }
    u32 run = warp_base + x - mine;
    for (u32 k = lo; k < hi; k++) { u32 c = vals[k]; vals[k] = run; run += c; }
    __syncthreads();
    return total;
}

__device__ __forceinline__ u32 get_u32(const u8* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | ((u32)p[3] << 24); }
