// A host emulation of the CUDA subset kernels/expf.cuh uses (one std::thread per CUDA thread of a
// CTA, std::barrier for __syncthreads and warp exchanges), so that CI without a GPU runs the
// expf device code itself against the CPU reference (ltgpu/tests/expf_emulated.rs). Only what
// expf.cuh and the common.cuh helpers it calls need; not a general CUDA emulator.
#pragma once
#include <barrier>
#include <thread>
#include <vector>
#include <cstring>
#include <cstdint>
#include <cmath>
#include <functional>
#include <algorithm>
#define __device__
#define __forceinline__ inline
#define __global__
struct Dim3 { unsigned x, y, z; };
inline thread_local Dim3 threadIdx;
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
inline std::barrier<>* g_cta;
inline std::barrier<>* g_warp[8];
inline uint64_t g_slot[8][32];
inline void __syncthreads() { g_cta->arrive_and_wait(); }
template <class T> inline uint64_t tobits(T v) { uint64_t b = 0; std::memcpy(&b, &v, sizeof(T)); return b; }
template <class T> inline T frombits(uint64_t b) { T v; std::memcpy(&v, &b, sizeof(T)); return v; }
inline uint64_t* exchange(uint64_t v) {
    unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    g_slot[w][l] = v;
    g_warp[w]->arrive_and_wait();
    static thread_local uint64_t copy[32];
    std::memcpy(copy, g_slot[w], sizeof(copy));
    g_warp[w]->arrive_and_wait();
    return copy;
}
template <class T> T __shfl_xor_sync(unsigned, T v, int off) { auto c = exchange(tobits(v)); return frombits<T>(c[(threadIdx.x % 32) ^ off]); }
template <class T> T __shfl_sync(unsigned, T v, int src) { auto c = exchange(tobits(v)); return frombits<T>(c[src % 32]); }
inline void __syncwarp() { (void)exchange(0u); }
template <class T> T __shfl_up_sync(unsigned, T v, int off) { auto c = exchange(tobits(v)); int l = threadIdx.x % 32; return l - off >= 0 ? frombits<T>(c[l - off]) : v; }
inline unsigned __ballot_sync(unsigned, int p) { auto c = exchange(p != 0); unsigned r = 0; for (int i = 0; i < 32; i++) r |= (c[i] ? 1u : 0u) << i; return r; }
inline bool __all_sync(unsigned, int p) { return __ballot_sync(0, p) == 0xffffffffu; }
inline bool __any_sync(unsigned, int p) { return __ballot_sync(0, p) != 0u; }
inline unsigned __match_any_sync(unsigned, unsigned v) { auto c = exchange(v); unsigned r = 0; for (int i = 0; i < 32; i++) r |= (c[i] == v ? 1u : 0u) << i; return r; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicOr(unsigned* p, unsigned v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicMax(unsigned* p, unsigned v) { unsigned o = __atomic_load_n(p, __ATOMIC_SEQ_CST); while (o < v && !__atomic_compare_exchange_n(p, &o, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {} return o; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
template <class T> inline T __ldg(const T* p) { return *p; }
inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }
inline int __ffs(unsigned x) { return __builtin_ffs(x); }
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint8_t b[8]; std::memcpy(b, &x, 4); std::memcpy(b + 4, &y, 4);
    unsigned r = 0; for (int k = 0; k < 4; k++) r |= (unsigned)b[(s >> (4 * k)) & 7] << (8 * k);
    return r;
}
inline unsigned __vcmpeq4(unsigned a, unsigned b) {  // 0xff in each byte where a's and b's are equal
    unsigned r = 0; for (int k = 0; k < 4; k++) r |= (((a >> (8 * k)) & 0xffu) == ((b >> (8 * k)) & 0xffu) ? 0xffu : 0u) << (8 * k);
    return r;
}
inline float __uint_as_float(unsigned u) { return frombits<float>(u); }
inline float __int_as_float(int u) { return frombits<float>((unsigned)u); }
inline unsigned __float_as_uint(float f) { return (unsigned)tobits(f); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
template <class A, class B> inline auto min(A a, B b) { using C = std::common_type_t<A, B>; return (C)a < (C)b ? (C)a : (C)b; }
template <class A, class B> inline auto max(A a, B b) { using C = std::common_type_t<A, B>; return (C)a > (C)b ? (C)a : (C)b; }
// runs f on 256 threads as one CTA
inline void run_cta(const std::function<void()>& f) {
    std::barrier<> cta(256);
    std::vector<std::barrier<>*> wb;
    for (int w = 0; w < 8; w++) { wb.push_back(new std::barrier<>(32)); g_warp[w] = wb.back(); }
    g_cta = &cta;
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < 256; t++) ts.emplace_back([t, &f] { threadIdx.x = t; f(); });
    for (auto& t : ts) t.join();
    for (auto b : wb) delete b;
}
// For the whole kernels (ltblock.cu): the CTA's index, its dynamic shared memory, L2 loads,
// and f16 to f32 (the hardware's cvt, as dtype.rs converts; a NaN comes back quiet).
inline thread_local Dim3 blockIdx;
inline uint4* g_dyn;
template <class T> inline T emu_ldcg(const T* p) { return *(const volatile T*)p; }
inline float emu_f16_to_f32(unsigned short h) {
    unsigned sign = ((unsigned)h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0 && m == 0) return __uint_as_float(sign);
    if (e == 0) { float v = m * (1.0f / 16777216.0f); return sign ? -v : v; }
    if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0));
    return __uint_as_float(sign | ((e + 112) << 23) | (m << 13));
}
