// LT-Block kernels: one CTA of LTB_THREADS threads per 64 KiB block; many blocks, from many
// buffers, in one launch. Byte-identical with the CPU reference (ltblock/): docs/FORMAT.md.
//   ltb_pack_blocks:   encodes a buffer in one pass: each CTA stages its block in shared memory,
//                      analyses it (the codec the CPU encoder would choose), finds its offset by
//                      a prefix sum of the block sizes (decoupled look-back), encodes it
//   ltb_pack_head:     then the buffer header and the index's checksum
//   ltb_decode_blocks: decodes blocks anywhere in device memory, verifying checksums
// expf (the lossless float codec) lives in expf.cuh, dispatched beside the others per CTA.
// Passes over a block take a thread's 16 vectors of 16 bytes into registers a few at a time
// (for_each_vector). The dtype is a template argument below each kernel's dispatch, so no
// per-element branch on it remains.
// Compiled with --fmad=false so that no multiply-add is contracted (the reference does none).
#include "common.cuh"

#define MAX_WORDS 2048    // mask words of a 64 KiB u8 block
#define MAX_GROUPS 2048   // int8g groups of a block (ltblock int8g::MAX_GROUPS)
#define VPT 16            // 16-byte vectors per thread in a 64 KiB block
#define HV 8              // of which zvc's compaction holds this many in registers at a time
#define HA 4              // and the staging and int8g passes (fewer live registers)
#define STAGE_VECS 2040   // zvc decode: staged packed bytes (static shared memory stays < 48 KiB)
#define CHUNK_VECS 2032   // output vectors per staged chunk (a multiple of 8; packed bytes fit)

// stage_copy<true> commits each thread's copies in STAGE_GROUPS groups of STAGE_VPG vectors
// (its vectors k = 0..VPT-1 in order), so a pass can start on the first while the rest load.
#define STAGE_GROUPS 4
#define STAGE_VPG (VPT / STAGE_GROUPS)

// Waits until this thread's copies of group `g` and those before it have landed (visible to
// this thread only: other threads' vectors need a barrier after stage_wait(STAGE_GROUPS - 1)).
__device__ __forceinline__ void stage_wait(int g) {
    switch (STAGE_GROUPS - 1 - g) {  // cp.async.wait_group takes its count as an immediate
        case 0: asm volatile("cp.async.wait_group 0;" ::: "memory"); break;
        case 1: asm volatile("cp.async.wait_group 1;" ::: "memory"); break;
        case 2: asm volatile("cp.async.wait_group 2;" ::: "memory"); break;
        default: asm volatile("cp.async.wait_group 3;" ::: "memory"); break;
    }
}

__device__ __forceinline__ u32 vec_terms(uint4 q, u32 v) {
    return ltsum_term(q.x, 4 * v) + ltsum_term(q.y, 4 * v + 1) + ltsum_term(q.z, 4 * v + 2) + ltsum_term(q.w, 4 * v + 3);
}

// Calls f(x, v, valid) for each of this thread's vectors of a block (v = threadIdx.x +
// k * LTB_THREADS), N held in registers at a time: a round's N loads are all issued before any
// call; SYNC: a barrier between a round's loads and its calls, for f that writes over vectors
// already read; STAGED: `in` is the stage that stage_copy<true> is still filling, so each round
// first waits for this thread's own copies of its vectors. Every thread calls f for every k,
// valid or not (x is zero past the end), so f may use warp shuffles.
template <int N, bool SYNC, bool STAGED = false, typename F>
__device__ __forceinline__ void for_each_vector(const u8* in, u32 nvec, F f) {
    static_assert(!STAGED || STAGE_VPG % N == 0, "a round's vectors are in one copy group");
#pragma unroll 1
    for (int h = 0; h < VPT / N; h++) {
        if (STAGED && (h * N) % STAGE_VPG == 0) stage_wait(h * N / STAGE_VPG);
        uint4 x[N];
#pragma unroll
        for (int k = 0; k < N; k++) {
            u32 v = threadIdx.x + (h * N + k) * LTB_THREADS;
            x[k] = v < nvec ? ((const uint4*)in)[v] : make_uint4(0, 0, 0, 0);
        }
        if (SYNC) __syncthreads();
#pragma unroll
        for (int k = 0; k < N; k++) {
            u32 v = threadIdx.x + (h * N + k) * LTB_THREADS;
            f(x[k], v, v < nvec);
        }
    }
}

#include "expf.cuh"

struct EncodeParams {
    const u8* input;     // the buffer's bytes (16-byte aligned)
    u64 len;             // its length
    u32 block_size;      // 65536 (VPT vectors a thread)
    int dtype;
    int lossy;
    u32 group;
    float max_rel_l2;
    u32 max_groups;      // int8g groups a block may have (<= MAX_GROUPS): shared memory is sized for them
};

struct BlockChoice {
    u32 codec;
    u32 payload_len;
    float rel_l2;
    u32 pad;
};

// ---- int8g ----
// Element index -> group without a division: in a block i < 2^16 and G < 2^16, so
// __umulhi(i, ceil(2^32 / G)) is exactly i / G (its excess stays below 2^-16 <= 1/G).
struct Groups {
    u32 G;
    u32 m;  // ceil(2^32 / G); 0 for G = 1
    __device__ __forceinline__ u32 of(u32 i) const { return m ? __umulhi(i, m) : i; }
};
__device__ __forceinline__ Groups make_groups(u32 G) {
    Groups g;
    g.G = G;
    g.m = G > 1 ? (u32)((0x100000000ull + G - 1) / G) : 0;
    return g;
}

// One 16-byte vector starting at element i0: its q bytes (E/4 words), its decoded vector, and
// the f32 error terms added in element order. s0, inv0: the scale and inverse of i0's group;
// gs, ginv: every group's, for a vector that crosses into the next. PV: the vector lies in one
// group (G % E == 0).
template <typename T, int dt, bool PV>
__device__ __forceinline__ void int8g_vector(uint4 in, Groups gr, float s0, float inv0, const float* gs, const float* ginv, u32 i0,
                                             u32* qw, uint4* dec, float* e2, float* r2) {
    const u32 E = 16 / sizeof(T);
    union { uint4 q; u32 w[4]; } u, d;
    u.q = in;
    u32 G = gr.G, g = gr.of(i0), rem = i0 - g * G;
    float s = s0, inv = inv0;
#pragma unroll
    for (u32 j = 0; j < (E + 3) / 4; j++) qw[j] = 0;
#pragma unroll
    for (u32 j = 0; j < E; j += 2) {  // a pair at a time (fewer live registers), in order
        float x[2], dx[2], back[2];  // back: the decoded value read back as f32
        if constexpr (sizeof(T) == 2) { x[0] = lo_f32<dt>(u.w[j / 2]); x[1] = hi_f32<dt>(u.w[j / 2]); }
        else { x[0] = __uint_as_float(u.w[j]); x[1] = __uint_as_float(u.w[j + 1]); }
#pragma unroll
        for (u32 k = 0; k < 2; k++) {
            float t = int8g_biased(x[k], inv);
            qw[(j + k) / 4] |= (__float_as_uint(t) & 0xffu) << (8 * ((j + k) % 4));
            dx[k] = (t - INT8G_MAGIC) * s;
            if (!PV && ++rem == G && j + k + 1 < E) { rem = 0; g++; s = gs[g]; inv = ginv[g]; }
        }
        if constexpr (sizeof(T) == 2) {
            u32 w = to_bits2<dt>(dx[0], dx[1]);
            d.w[j / 2] = w;
            back[0] = lo_f32<dt>(w); back[1] = hi_f32<dt>(w);
        } else {
            d.w[j] = __float_as_uint(dx[0]); d.w[j + 1] = __float_as_uint(dx[1]);
            back[0] = dx[0]; back[1] = dx[1];
        }
#pragma unroll
        for (u32 k = 0; k < 2; k++) {
            float df = back[k] - x[k];
            *e2 += df * df;
            *r2 += x[k] * x[k];
        }
    }
    *dec = d.q;
}

// Element i alone (the elements past the last whole vector): q byte, decoded bits, error terms.
__device__ __forceinline__ u32 int8g_scalar(float x, int dt, float s, float inv, u8* q, float* e2, float* r2) {
    float t = int8g_biased(x, inv);
    *q = (u8)(__float_as_uint(t) & 0xffu);
    u32 bits = to_bits(dt, (t - INT8G_MAGIC) * s);
    float df = round_to(dt, (t - INT8G_MAGIC) * s) - x;
    *e2 += df * df;
    *r2 += x * x;
    return bits;
}

// ---- the buffer header and index (FORMAT.md) ----
struct BufferHead {
    u8* out;     // the packed buffer (16-byte aligned), allocated for the largest result
    u64* total;  // the packed length, for the host
    u64 len;
    u32 count;
    u32 block_size;
    int dtype;
    int lossy;
};

__device__ __forceinline__ u64 first_block_offset(u32 count) { return (40 + 8 * ((u64)count + 1) + 15) / 16 * 16; }

// Once every block's index entry is in place: the index's end entry, the padding after the
// index, the 40-byte header and its checksum (header bytes 0..32, then the whole index). One CTA.
__device__ void write_buffer_head(const BufferHead& p, u64 end, u32* scratch) {
    u64 index_end = 40 + 8 * ((u64)p.count + 1);
    u64* index = (u64*)(p.out + 40);
    if (threadIdx.x == 0) {
        index[p.count] = end;
        if (first_block_offset(p.count) > index_end) *(u64*)(p.out + index_end) = 0;
        *p.total = end;
    }
    __syncthreads();
    u32 sum = 0;
    for (u32 i = threadIdx.x; i <= p.count; i += LTB_THREADS) {
        u64 o = __ldcg((const unsigned long long*)index + i);  // written by other CTAs: from L2
        sum += ltsum_term((u32)o, 8 + 2 * i) + ltsum_term((u32)(o >> 32), 9 + 2 * i);
    }
    u32 head[8] = {'L' | ('T' << 8) | ('B' << 16) | ((u32)'F' << 24), 1u | ((u32)p.dtype << 16) | ((u32)p.lossy << 24),
                   p.block_size, p.count, (u32)p.len, (u32)(p.len >> 32), 0, 0};  // no lossless prefix on the GPU
    if (threadIdx.x == 0)
        for (u32 i = 0; i < 8; i++) sum += ltsum_term(head[i], i);
    u32 check = ltsum_final(block_sum_u32(sum, scratch), 32 + 8 * (p.count + 1));
    if (threadIdx.x == 0) {
        u32* h = (u32*)p.out;
        for (u32 i = 0; i < 8; i++) h[i] = head[i];
        h[8] = check; h[9] = 0;
    }
}

// ---- the prefix sum of block sizes: decoupled look-back ----
// lookback[b] is 0 until block b publishes its own size (LB_AGGREGATE), then the sum of the
// sizes up to and including it (LB_INCLUSIVE), both in one 64-bit word.
#define LB_AGGREGATE (1ull << 62)
#define LB_INCLUSIVE (1ull << 63)
#define LB_VALUE (LB_AGGREGATE - 1)

// Block b's size, published as soon as it is known (lane 0): a successor never waits on b's
// look-back, only on this.
__device__ __forceinline__ void lookback_publish(volatile u64* lb, u32 b, u64 size) {
    if (threadIdx.x % 32 == 0) lb[b] = (b == 0 ? LB_INCLUSIVE : LB_AGGREGATE) | size;
}

// The sizes of the blocks before b, by one warp of b's CTA (all its lanes call), after b
// published its own. b's predecessors took their tickets earlier, so they are running and
// will publish. The warp reads 32 predecessors at a time and stops at the nearest that knows
// its inclusive sum; then b's inclusive sum is published.
__device__ u64 lookback_prefix(volatile u64* lb, u32 b, u64 size) {
    if (b == 0) return 0;
    u32 lane = threadIdx.x % 32;
    u64 before = 0;
    for (int newest = (int)b - 1;; newest -= 32) {
        int k = newest - (int)lane;
        u64 w;
        do w = k >= 0 ? lb[k] : LB_INCLUSIVE;  // before block 0: an inclusive sum of 0
        while (!__all_sync(FULL_MASK, w != 0));
        u32 inclusive = __ballot_sync(FULL_MASK, (w & LB_INCLUSIVE) != 0);
        u32 upto = inclusive ? __ffs(inclusive) - 1 : 31;
        u64 part = lane <= upto ? (w & LB_VALUE) : 0;
        for (int off = 16; off > 0; off >>= 1) part += __shfl_xor_sync(FULL_MASK, part, off);
        before += part;
        if (inclusive) break;
    }
    if (lane == 0) lb[b] = LB_INCLUSIVE | (before + size);
    return before;
}

// ---- the encoder's shared memory ----
// Dynamic, laid out by pack_smem (the host sizes it the same way, ltgpu pack_shared_bytes):
// the staged block (64 KiB), the zvc mask words of a whole block, then a region that int8g
// uses first (each group's max |x|, scale and inverse) and zvc's prefix sums after.
struct PackSmem {
    uint4* stage;
    u32* maskw;
    u32* prefix;  // the same words as gmax: used only once int8g is out of the running
    u32* gmax;
    float* gs;
    float* ginv;
};

__device__ __forceinline__ PackSmem pack_smem(uint4* dyn, u32 block_size, int dtype, u32 max_groups) {
    u32 words = block_size / dtype_width(dtype) / 32;
    PackSmem s;
    s.stage = dyn;
    s.maskw = (u32*)(dyn + block_size / 16);
    s.prefix = s.gmax = s.maskw + words;
    s.gs = (float*)(s.gmax + max_groups);
    s.ginv = s.gs + max_groups;
    return s;
}

struct PackShared {
    u32 scratch[3 * LTB_WARPS];
    ExpfShared expf;  // the expf code's range and bases, from analysis to write-out
    u8 tail_q[16];  // int8g's q bytes of the elements past the last whole vector
    u32 ticket;
    u64 offset;
};

// The largest |x| of a vector of a float dtype, as bits (Inf and NaN compare above every
// finite value).
template <typename T, int dt>
__device__ __forceinline__ u32 vector_abs_max(uint4 x) {
    union { uint4 q; u32 w[4]; } u;
    u.q = x;
    u32 am = 0;
#pragma unroll
    for (u32 j = 0; j < 4; j++) {
        if constexpr (sizeof(T) == 2) am = max(am, max(__float_as_uint(lo_f32<dt>(u.w[j])) & 0x7fffffffu, __float_as_uint(hi_f32<dt>(u.w[j])) & 0x7fffffffu));
        else am = max(am, u.w[j] & 0x7fffffffu);
    }
    return am;
}

// The largest of `am` over the V aligned lanes of a warp that hold one group's vectors (V a
// power of two, at most 32). All lanes call.
__device__ __forceinline__ u32 group_max_in_warp(u32 am, u32 V) {
#pragma unroll
    for (u32 off = 1; off < 32; off <<= 1)
        if (off < V) am = max(am, __shfl_xor_sync(FULL_MASK, am, off));
    return am;
}

// The max |x| (as bits) of each group that vector v meets, into gmax (zeroed before); returns
// the vector's largest.
template <typename T, int dt>
__device__ __forceinline__ u32 int8g_vector_max(uint4 x, u32 v, bool valid, Groups gr, bool per_vector, bool shuffle, u32* gmax) {
    const u32 E = 16 / sizeof(T);
    u32 am = 0;
    if (per_vector) {
        am = vector_abs_max<T, dt>(x);
        u32 V = gr.G / E;
        if (shuffle) {
            u32 group_max = group_max_in_warp(am, V);
            if (valid && (v & (V - 1)) == 0) gmax[gr.of(v * E)] = group_max;
        } else if (valid) {
            atomicMax(&gmax[gr.of(v * E)], am);
        }
    } else if (valid) {
        union { uint4 q; T e[E]; } u;
        u.q = x;
        u32 i0 = v * E, G = gr.G, g = gr.of(i0), rem = i0 - g * G;
#pragma unroll
        for (u32 j = 0; j < E; j++) {
            u32 a = abs_bits<T>(u.e[j], dt);
            am = max(am, a);
            atomicMax(&gmax[g], a);
            if (++rem == G) { rem = 0; g++; }
        }
    }
    return am;
}

// Copies the block into the stage with every 16-byte vector in flight at once (cp.async,
// sm_80+), and its last bytes (at most 15) plainly; `overlap` runs while the copies are in
// flight. Synchronises; PIPELINED: without waiting for the copies, which land in
// STAGE_GROUPS groups for the first pass over the block to wait on (for_each_vector STAGED).
template <bool PIPELINED, typename F>
__device__ __forceinline__ void stage_copy(uint4* stage, const u8* src, u32 len, F overlap) {
    u32 nvec = len / 16, start = nvec * 16;
    auto copy = [&](u32 v) {
        u32 dst = (u32)__cvta_generic_to_shared(stage + v);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src + 16 * v) : "memory");
    };
    if constexpr (PIPELINED) {
#pragma unroll
        for (u32 k = 0; k < VPT; k++) {
            if (threadIdx.x + k * LTB_THREADS < nvec) copy(threadIdx.x + k * LTB_THREADS);
            if (k % STAGE_VPG == STAGE_VPG - 1) asm volatile("cp.async.commit_group;" ::: "memory");
        }
    } else {
        for (u32 v = threadIdx.x; v < nvec; v += LTB_THREADS) copy(v);
    }
    if (threadIdx.x < len - start) ((u8*)stage)[start + threadIdx.x] = src[start + threadIdx.x];
    overlap();
    if (!PIPELINED) asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
}

// What the staging pass learns of a block.
struct BlockScan {
    u32 sum;      // checksum of the original bytes (final)
    u32 nnz;      // non-zero elements
    u32 bmax;     // the largest |x| as bits (when int8g may be tried)
    u32 sum_dec;  // FUSED: checksum of the int8g-decoded bytes (final)
    float rel;    // FUSED: int8g's relative L2 error
};

// int8g of vector v (sc, inv: its first group's scale and inverse; the rest in s.gs, s.ginv):
// its q bytes written over the first E bytes of its own slot in the stage (so no other thread
// can still need them), its error terms added to e2 and r2 in element order, its decoded
// bytes' checksum terms returned.
template <typename T, int dt, bool PV>
__device__ __forceinline__ u32 int8g_vector_to_stage(uint4 x, u32 v, Groups gr, float sc, float inv, const PackSmem& s, float* e2, float* r2) {
    const u32 E = 16 / sizeof(T);
    u32 qw[E / 4];
    uint4 dec;
    int8g_vector<T, dt, PV>(x, gr, sc, inv, s.gs, s.ginv, v * E, qw, &dec, e2, r2);
    if constexpr (E == 8) ((uint2*)s.stage)[2 * v] = make_uint2(qw[0], qw[1]);
    else ((u32*)s.stage)[4 * v] = qw[0];
    return vec_terms(dec, v);
}

// Bit j set when element j of the vector is not zero (all its bits).
template <typename T>
__device__ __forceinline__ u32 nonzero_bits(uint4 x) {
    const u32 E = 16 / sizeof(T);
    union { uint4 q; T e[E]; } u;
    u.q = x;
    u32 bits = 0;
#pragma unroll
    for (u32 j = 0; j < E; j++) bits |= (u32)(u.e[j] != 0) << j;
    return bits;
}

// The vector's elements that are not zero (all their bits). For 16-bit ones, without a
// compare each: (h & 0x7fff) + 0x7fff carries into bit 15 unless h is 0 or -0, and or-ing h
// adds -0; the four words' flags are shifted apart and counted at once.
template <typename T>
__device__ __forceinline__ u32 nonzero_count(uint4 x) {
    if constexpr (sizeof(T) == 2) {
        union { uint4 q; u32 w[4]; } u;
        u.q = x;
        u32 flags = 0;
#pragma unroll
        for (u32 j = 0; j < 4; j++) flags |= ((((u.w[j] & 0x7fff7fffu) + 0x7fff7fffu) | u.w[j]) & 0x80008000u) >> j;
        return __popc(flags);
    } else {
        return __popc(nonzero_bits<T>(x));
    }
}

// Vector v's bits of the zvc mask, put together across the lanes that share a mask word and
// stored by the first; returns the vector's count of non-zero elements (0 past the end). All
// lanes of the warp call.
template <typename T>
__device__ __forceinline__ u32 zvc_mask_vector(uint4 x, u32 v, bool valid, u32* maskw) {
    const u32 E = 16 / sizeof(T);
    u32 bits = nonzero_bits<T>(x);
    u32 contrib = bits << ((v * E) % 32);
    for (u32 off = 1; off < 32 / E; off <<= 1) contrib |= __shfl_xor_sync(FULL_MASK, contrib, off);
    if (valid && (v * E) % 32 == 0) maskw[v * E / 32] = contrib;
    return __popc(bits);
}

// The relative L2 error from the block's sums (ltblock int8g.rs).
__device__ __forceinline__ float rel_l2(float e2, float r2) { return r2 > 0.0f ? sqrtf(e2 / r2) : (e2 > 0.0f ? __int_as_float(0x7f800000) : 0.0f); }

// Pass 1, over the staged block: the checksum terms, the zvc mask words (zeroed before) and,
// when int8g may be tried, each group's max |x| (zeroed before). Bytes past the last whole
// vector (at most 15) are thread 0's.
// FUSED (int8g with each group V aligned lanes of a warp, V a power of two, and no bytes past
// the last whole vector): the group's max, scale and inverse are found in the warp, and int8g
// is done in the same pass, its q bytes written over the stage as int8g_pass does; no gmax,
// and no mask words (the non-zero count only: the mask is made later if zvc wins). One
// vector in registers at a time: the int8g arithmetic needs the rest.
template <typename T, int dt, bool FUSED, u32 VT = 0>
__device__ BlockScan scan_block(u32 len, const PackSmem& s, bool want_max, Groups gr, bool per_vector, bool shuffle, PackShared& sh) {
    const u32 E = 16 / sizeof(T);
    u32 n = len / sizeof(T), nvec = len / 16;
    const u8* stage = (const u8*)s.stage;
    u32 so = 0, nz = 0, mine = 0, sd = 0;
    float e2 = 0.0f, r2 = 0.0f;
    u32 V = VT ? VT : gr.G / E, v_shift = 31 - __clz(max(V, 1u));  // FUSED: vector v is in group v >> v_shift
    for_each_vector<FUSED ? 1 : HA, false, FUSED>(stage, nvec, [&](uint4 x, u32 v, bool valid) {
        if (valid) so += vec_terms(x, v);
        if constexpr (FUSED) nz += nonzero_count<T>(x);  // x is zero past the end
        else nz += zvc_mask_vector<T>(x, v, valid, s.maskw);
        if constexpr (sizeof(T) >= 2 && FUSED) {
            u32 am = vector_abs_max<T, dt>(x), gm = group_max_in_warp(am, V);
            mine = max(mine, am);
            float sc, inv;  // every lane of the group: a warp runs the divisions once either way
            int8g_scale(__uint_as_float(gm), &sc, &inv);
            if (valid && (v & (V - 1)) == 0) s.gs[v >> v_shift] = sc;  // for the payload
            if (valid) sd += int8g_vector_to_stage<T, dt, true>(x, v, gr, sc, inv, s, &e2, &r2);
        } else if constexpr (sizeof(T) >= 2) {
            if (want_max) mine = max(mine, int8g_vector_max<T, dt>(x, v, valid, gr, per_vector, shuffle, s.gmax));
        }
    });
    __syncthreads();  // the mask words and group maxima of whole vectors are in place
    if (threadIdx.x == 0) {
        for (u32 pos = nvec * 16; pos < len; pos += 4) {
            u32 word = 0;
            for (u32 k = 0; k < 4 && pos + k < len; k++) word |= (u32)stage[pos + k] << (8 * k);
            so += ltsum_term(word, pos / 4);
        }
        for (u32 i = nvec * E; i < n; i++) {
            T e = ((const T*)stage)[i];
            if (e != 0) { nz++; s.maskw[i / 32] |= 1u << (i % 32); }
            if (want_max) {
                u32 a = abs_bits<T>(e, dt);
                mine = max(mine, a);
                atomicMax(&s.gmax[gr.of(i)], a);
            }
        }
    }
    block_reduce3(so, nz, mine, add_u32, add_u32, max_u32, sh.scratch);  // synchronises
    BlockScan r;
    r.sum = ltsum_final(so, len);
    r.nnz = nz;
    r.bmax = mine;
    if constexpr (FUSED) {
        block_reduce3(sd, e2, r2, add_u32, add_f32, add_f32, sh.scratch);
        r.sum_dec = ltsum_final(sd, len);
        r.rel = rel_l2(e2, r2);
    }
    return r;
}

// Element i alone (past the last whole vector): q byte, decoded bits, error terms.
template <typename T, int dt>
__device__ __forceinline__ u32 int8g_tail_elem(T e, u32 i, Groups gr, const PackSmem& s, u8* q, float* e2, float* r2) {
    u32 g = gr.of(i);
    return int8g_scalar(elem_f32<T>(e, dt), dt, s.gs[g], s.ginv[g], q, e2, r2);
}

// int8g's pass over the staged block (scales in s.gs, s.ginv): the block's relative L2 error in
// the reference's order (each thread its vectors in order, then thread 0 the tail), the
// decoded bytes' checksum, and the q bytes: each whole vector's over its own slot, the
// tail's in sh.tail_q (copy_q_out gathers them).
template <typename T, int dt, bool PV>
__device__ float int8g_pass(u32 len, Groups gr, const PackSmem& s, PackShared& sh, u32* sum_dec) {
    const u32 E = 16 / sizeof(T);
    u32 n = len / sizeof(T), nvec = len / 16;
    u8* stage = (u8*)s.stage;
    float e2 = 0.0f, r2 = 0.0f;
    u32 sd = 0;
    for_each_vector<HA, false>(stage, nvec, [&](uint4 x, u32 v, bool valid) {
        if (valid) {
            u32 g = gr.of(v * E);
            sd += int8g_vector_to_stage<T, dt, PV>(x, v, gr, s.gs[g], s.ginv[g], s, &e2, &r2);
        }
    });
    if (threadIdx.x == 0) {
        for (u32 pos = nvec * 16; pos < len; pos += 4) {
            u32 word = 0, dword = 0;
            for (u32 k = 0; k < 4 && pos + k < len; k++) word |= (u32)stage[pos + k] << (8 * k);
            for (u32 k = 0; k < 4 && pos + k < len; k += sizeof(T)) {
                u32 at = pos + k;
                if (at >= n * sizeof(T)) { dword |= (word >> (8 * k)) << (8 * k); break; }  // the partial element, raw
                u8 q;
                T e = (T)(word >> (8 * k));
                dword |= int8g_tail_elem<T, dt>(e, at / sizeof(T), gr, s, &q, &e2, &r2) << (8 * k);
                sh.tail_q[at / sizeof(T) - nvec * E] = q;
            }
            sd += ltsum_term(dword, pos / 4);
        }
    }
    block_reduce3(sd, e2, r2, add_u32, add_f32, add_f32, sh.scratch);
    *sum_dec = ltsum_final(sd, len);
    return rel_l2(e2, r2);
}

// The codec the CPU encoder would choose for the block, and its payload size; for int8g also
// the error and the decoded checksum, and then the stage holds the q bytes. When int8g was
// tried and lost the stage is loaded again from src.
template <typename T, int dt>
__device__ BlockChoice choose_codec(const EncodeParams& p, const u8* src, u32 len, const PackSmem& s, PackShared& sh, u32* sum, u32* sum_dec) {
    const u32 E = 16 / sizeof(T);
    u32 n = len / sizeof(T), tail = len - n * sizeof(T);
    u32 G = p.group, groups = G ? (n + G - 1) / G : 0;
    bool maybe_int8g = sizeof(T) >= 2 && p.lossy && G > 0 && groups <= p.max_groups;
    bool per_vector = maybe_int8g && G % E == 0;
    u32 V = maybe_int8g ? G / E : 0;
    bool shuffle = per_vector && V <= 32 && (V & (V - 1)) == 0;
    Groups gr = make_groups(G);
    auto zero_tables = [&] {
        for (u32 w = threadIdx.x; w < (n + 31) / 32; w += LTB_THREADS) s.maskw[w] = 0;
        if (maybe_int8g)
            for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) s.gmax[g] = 0;
    };
    // the fused pass starts on each thread's first vectors while the rest load; the other
    // passes wait for the whole block (pipelined too, zvc encode measured 1-2 points slower:
    // docs/PERF.md, run 46)
    bool fused = shuffle && len % 16 == 0;
    if (fused) stage_copy<true>(s.stage, src, len, zero_tables);
    else stage_copy<false>(s.stage, src, len, zero_tables);
    BlockScan scan;
    if (!fused) scan = scan_block<T, dt, false>(len, s, maybe_int8g, gr, per_vector, shuffle, sh);
    // G = 128 (the default) and 16 (the accurate one): the group max's shuffles unrolled
    else if (V == 8 * sizeof(T)) scan = scan_block<T, dt, true, 8 * sizeof(T)>(len, s, maybe_int8g, gr, per_vector, shuffle, sh);
    else if (V == sizeof(T)) scan = scan_block<T, dt, true, sizeof(T)>(len, s, maybe_int8g, gr, per_vector, shuffle, sh);
    else scan = scan_block<T, dt, true>(len, s, maybe_int8g, gr, per_vector, shuffle, sh);
    *sum = *sum_dec = scan.sum;
    BlockChoice c = {CODEC_RAW, len, 0.0f, 0};
    u32 zvc = ((n + 31) / 32) * 4 + scan.nnz * sizeof(T) + tail;
    if (zvc < c.payload_len) { c.codec = CODEC_ZVC; c.payload_len = zvc; }
    u32 int8g_size = groups * 4 + n + tail;
    // finite, and 0 or within [2^-40, 2^40] (ltblock int8g.rs)
    bool in_range = scan.bmax == 0 || (scan.bmax >= (87u << 23) && scan.bmax <= (167u << 23));
    if constexpr (sizeof(T) >= 2) {
        if (fused) {  // int8g was done in pass 1
            if (int8g_size < c.payload_len && in_range && scan.rel <= p.max_rel_l2) {
                c.codec = CODEC_INT8G; c.payload_len = int8g_size; c.rel_l2 = scan.rel;
                *sum_dec = scan.sum_dec;
                return c;
            }
            stage_copy<false>(s.stage, src, len, [] {});  // not int8g: the q bytes go, the block comes back
            if (c.codec == CODEC_ZVC) {  // and its mask words, which pass 1 left out (maskw is zero)
                for_each_vector<HA, false>((const u8*)s.stage, len / 16, [&](uint4 x, u32 v, bool valid) { zvc_mask_vector<T>(x, v, valid, s.maskw); });
                __syncthreads();
            }
        } else if (maybe_int8g && int8g_size < c.payload_len && in_range) {
            for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) int8g_scale(__uint_as_float(s.gmax[g]), &s.gs[g], &s.ginv[g]);
            __syncthreads();
            u32 dec;
            float rel = per_vector ? int8g_pass<T, dt, true>(len, gr, s, sh, &dec) : int8g_pass<T, dt, false>(len, gr, s, sh, &dec);
            if (rel <= p.max_rel_l2) {
                c.codec = CODEC_INT8G; c.payload_len = int8g_size; c.rel_l2 = rel;
                *sum_dec = dec;
                return c;
            }
            // rejected: the q bytes go, the block comes back (rare: the error bound failed)
            stage_copy<false>(s.stage, src, len, [] {});
        }
        // expf competes with raw and zvc (a block int8g took returned above); the stage holds
        // the block again here
        if (expf_min_len<T>(n, tail, sh.scratch) < c.payload_len) {
            u32 e = expf_analyse<T, dt>(len, (const u8*)s.stage, s.prefix, sh.expf, sh.scratch);
            if (e < c.payload_len) { c.codec = CODEC_EXPF; c.payload_len = e; }
        }
    }
    return c;
}

// zvc, before the block's offset is known: the prefix sums of the mask words, and the
// non-zero elements moved to the front of the stage in order. An element only moves down (to
// the count of non-zeros before it), into vectors already read: a barrier between each round's
// loads and its stores keeps that safe.
template <typename T>
__device__ void zvc_compact(u32 len, const PackSmem& s, PackShared& sh) {
    const u32 E = 16 / sizeof(T);
    u32 n = len / sizeof(T), nvec = len / 16, words = (n + 31) / 32;
    T* stage = (T*)s.stage;
    for (u32 wd = threadIdx.x; wd < words; wd += LTB_THREADS) s.prefix[wd] = __popc(s.maskw[wd]);
    __syncthreads();
    block_exclusive_scan(s.prefix, words, sh.scratch);
    for_each_vector<HV, true>((const u8*)stage, nvec, [&](uint4 x, u32 v, bool valid) {
        if (valid) {
            union { uint4 q; T e[E]; } u;
            u.q = x;
            u32 w = v * E / 32, below = (v * E) % 32;
            u32 dst = s.prefix[w] + __popc(s.maskw[w] & ((1u << below) - 1));
#pragma unroll
            for (u32 j = 0; j < E; j++) if (u.e[j] != 0) stage[dst++] = u.e[j];
        }
    });
    if (threadIdx.x == 0)  // in order: each element is read before anything is written over it
        for (u32 i = nvec * E; i < n; i++) {
            T e = stage[i];
            if (e != 0) stage[s.prefix[i / 32] + __popc(s.maskw[i / 32] & ((1u << (i % 32)) - 1))] = e;
        }
    __syncthreads();
}

// Copies `len` bytes from shared to global memory, 16 bytes a store where dst allows.
__device__ void copy_out(u8* dst, const u8* src, u32 len) {
    u32 head = 0;
    if (((size_t)dst & 15) == 0) {
        for (u32 v = threadIdx.x; v < len / 16; v += LTB_THREADS) ((uint4*)dst)[v] = ((const uint4*)src)[v];
        head = len / 16 * 16;
    } else if (((size_t)dst & 3) == 0) {
        for (u32 v = threadIdx.x; v < len / 4; v += LTB_THREADS) ((u32*)dst)[v] = ((const u32*)src)[v];
        head = len / 4 * 4;
    }
    for (u32 i = head + threadIdx.x; i < len; i += LTB_THREADS) dst[i] = src[i];
}

// int8g's q bytes to dst: element i's is byte i % E of stage slot i / E, or past the whole
// vectors in tail_q; 16 bytes a store where dst allows (else 4: dst follows 4-byte scales).
template <typename T>
__device__ void copy_q_out(u8* dst, const PackSmem& s, const u8* tail_q, u32 n) {
    const u32 E = 16 / sizeof(T);
    const u32* words = (const u32*)s.stage;
    u32 body = n / E * E, done;
    auto qword = [&](u32 w) { return words[4 * w / E * 4 + 4 * w % E / 4]; };  // q bytes 4w..4w+3
    if (((size_t)dst & 15) == 0) {
        for (u32 c = threadIdx.x; c < body / 16; c += LTB_THREADS)
            ((uint4*)dst)[c] = make_uint4(qword(4 * c), qword(4 * c + 1), qword(4 * c + 2), qword(4 * c + 3));
        done = body / 16 * 16;
    } else {
        for (u32 w = threadIdx.x; w < body / 4; w += LTB_THREADS) ((u32*)dst)[w] = qword(w);
        done = body / 4 * 4;
    }
    for (u32 i = done + threadIdx.x; i < n; i += LTB_THREADS) dst[i] = i < body ? ((const u8*)s.stage)[i / E * 16 + i % E] : tail_q[i - body];
}

// Block b, its choice made and its stage ready: header, payload and zero padding at hdr.
template <typename T, int dt>
__device__ void write_block(const EncodeParams& p, u32 len, BlockChoice c, u32 sum, u32 sum_dec, const PackSmem& s, u8* hdr, PackShared& sh) {
    u8* payload = hdr + 32;
    const u8* stage = (const u8*)s.stage;
    u32 n = len / sizeof(T), tail = len - n * sizeof(T);
    if (c.codec == CODEC_RAW) copy_out(payload, stage, len);
    else if (c.codec == CODEC_ZVC) {  // the mask words, the compacted elements, the partial element
        u32 words = (n + 31) / 32;
        copy_out(payload, (const u8*)s.maskw, words * 4);
        copy_out(payload + words * 4, stage, c.payload_len - words * 4 - tail);
        if (threadIdx.x < tail) payload[c.payload_len - tail + threadIdx.x] = stage[n * sizeof(T) + threadIdx.x];
    } else if (c.codec == CODEC_EXPF) {
        if constexpr (sizeof(T) >= 2) expf_write<T, dt>(payload, len, stage, s.prefix, sh.expf);
    } else {
        u32 groups = (n + p.group - 1) / p.group;
        for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) ((float*)payload)[g] = s.gs[g];
        copy_q_out<T>(payload + groups * 4, s, sh.tail_q, n);
        if (threadIdx.x < tail) payload[groups * 4 + n + threadIdx.x] = stage[n * sizeof(T) + threadIdx.x];
    }
    u32 padded = (c.payload_len + 15) / 16 * 16;
    if (threadIdx.x < padded - c.payload_len) payload[c.payload_len + threadIdx.x] = 0;
    if (threadIdx.x == 0) {  // FORMAT.md's block header, little-endian words
        u32 g = c.codec == CODEC_INT8G ? p.group : 0;
        ((uint4*)hdr)[0] = make_uint4('L' | ('T' << 8) | ('B' << 16) | ((u32)'K' << 24),
                                      1u | (c.codec << 8) | ((u32)p.dtype << 16) | ((u32)(c.codec == CODEC_INT8G) << 24), len, c.payload_len);
        ((uint4*)hdr)[1] = make_uint4(sum, sum_dec, __float_as_uint(c.rel_l2), g & 0xffffu);
    }
}

// ---- the encoder: one CTA a block, in one launch ----
struct PackState {
    u32* ticket;          // tickets taken: zeroed before the launch
    u64* lookback;        // per block, zeroed before the launch
    BlockChoice* choice;  // per block, for the host's report
};

template <typename T, int dt>
__device__ void pack_block(const EncodeParams& p, const PackState& st, const BufferHead& head, u32 b, const PackSmem& s, PackShared& sh) {
    u64 start = (u64)b * p.block_size;
    u32 len = (u32)min((u64)p.block_size, p.len - start);
    u32 sum, sum_dec;
    BlockChoice c = choose_codec<T, dt>(p, p.input + start, len, s, sh, &sum, &sum_dec);
    u64 size = 32 + (c.payload_len + 15) / 16 * 16;
    if (threadIdx.x < 32) lookback_publish(st.lookback, b, size);
    if (c.codec == CODEC_ZVC) zvc_compact<T>(len, s, sh);  // work that needs no offset, first
    if (threadIdx.x < 32) {
        u64 before = lookback_prefix(st.lookback, b, size);
        if (threadIdx.x == 0) {
            st.choice[b] = c;
            sh.offset = first_block_offset(head.count) + before;
            ((u64*)(head.out + 40))[b] = sh.offset;
        }
    }
    __syncthreads();
    write_block<T, dt>(p, len, c, sum, sum_dec, s, head.out + sh.offset, sh);
}

// Each CTA: stages its block in shared memory, chooses its codec as the CPU encoder would,
// finds its offset by a decoupled look-back over the sizes of the blocks before it, writes
// its index entry and its block. Blocks are taken by ticket, not blockIdx, so a CTA's
// predecessors are always running. ltb_pack_head, launched after it, writes the buffer header.
extern "C" __global__ void __launch_bounds__(LTB_THREADS, 3) ltb_pack_blocks(EncodeParams p, PackState st, BufferHead head) {
    extern __shared__ uint4 dyn[];
    __shared__ PackShared sh;
    if (threadIdx.x == 0) sh.ticket = atomicAdd(st.ticket, 1u);
    __syncthreads();
    u32 b = sh.ticket;
    PackSmem s = pack_smem(dyn, p.block_size, p.dtype, p.max_groups);
    switch (p.dtype) {  // the dtype as a template argument: no per-element branches on it
        case DT_U8: pack_block<u8, DT_U8>(p, st, head, b, s, sh); break;
        case DT_F16: pack_block<u16, DT_F16>(p, st, head, b, s, sh); break;
        case DT_BF16: pack_block<u16, DT_BF16>(p, st, head, b, s, sh); break;
        default: pack_block<u32, DT_F32>(p, st, head, b, s, sh); break;
    }
}

// The buffer header, once every block is in place (the launch after ltb_pack_blocks): one CTA.
extern "C" __global__ void __launch_bounds__(LTB_THREADS) ltb_pack_head(PackState st, BufferHead head) {
    __shared__ u32 scratch[LTB_WARPS];
    u64 blocks = head.count ? st.lookback[head.count - 1] & LB_VALUE : 0;
    write_buffer_head(head, first_block_offset(head.count) + blocks, scratch);
}

// ---- decode ----
struct DecodeDesc {
    const u8* block;  // the block's header (16-byte aligned)
    u8* out;          // where its bytes go (16-byte aligned)
    u64 extent;       // bytes readable from `block` on: the header's lengths are checked against it
};

// Decode writes 16-byte vectors: thread t owns output bytes [16v, 16v + 16) and folds those
// four words into the checksum in registers, so the output is never read back. Bytes past the
// last whole vector (at most 15) are thread 0's.
struct DecodeCtx {
    const u8* payload;
    int dt, w;
    u32 codec, n, len, groups, group, ones;
    bool prestaged;  // zvc: all packed bytes were staged with the mask words
    u64 stage_from;  // zvc: the 16-byte boundary the staged bytes start at
};

// Element i (a w-byte value, zero-extended) of an int8g block.
__device__ __forceinline__ u32 int8g_elem_bits(const DecodeCtx& c, u32 i) {
    const float* scales = (const float*)c.payload;
    const i8* q = (const i8*)(c.payload + c.groups * 4);
    return to_bits(c.dt, (float)q[i] * scales[i / c.group]);
}

// Output vector v of a zvc block; `packed` holds the packed elements from index `base` on.
template <typename T>
__device__ __forceinline__ uint4 zvc_vector(const u32* mask, const u32* prefix, const T* packed, u32 base, u32 v) {
    const u32 E = 16 / sizeof(T);
    u32 first = v * E, word = first / 32, sh = first % 32;
    u32 m = mask[word];
    u32 bits = (m >> sh) & ((1u << E) - 1);
    u32 src = prefix[word] + __popc(m & ((1u << sh) - 1)) - base;
    union { uint4 q; T e[E]; } u;
#pragma unroll
    for (u32 k = 0; k < E; k++) u.e[k] = (bits >> k) & 1u ? packed[src++] : (T)0;
    return u.q;
}

// zvc: the packed elements are staged in shared memory with 16-byte loads, then gathered from
// there. When they fit (up to 32 KiB: blocks of at least half zeros in 16-bit dtypes) they were
// loaded beside the mask words; otherwise in chunks of CHUNK_VECS output vectors, whose packed
// elements are one contiguous range each.
template <typename T>
__device__ u32 zvc_decode(const DecodeCtx& c, const u32* mask, const u32* prefix, uint4* stage, u8* out) {
    const u32 E = 16 / sizeof(T);
    u32 nvec = c.len / 16, words = (c.n + 31) / 32, sum = 0;
    const u8* packed = c.payload + words * 4;
    if (c.prestaged) {
        const T* staged = (const T*)((const u8*)stage + ((u64)packed - c.stage_from));
#pragma unroll 4
        for (u32 v = threadIdx.x; v < nvec; v += LTB_THREADS) {
            uint4 q = zvc_vector<T>(mask, prefix, staged, 0, v);
            ((uint4*)out)[v] = q;
            sum += vec_terms(q, v);
        }
        return sum;
    }
    for (u32 v0 = 0; v0 < nvec; v0 += CHUNK_VECS) {
        u32 v1 = min(v0 + CHUNK_VECS, nvec);
        u32 e0 = v0 * E, e1 = v1 * E;  // e0 is a multiple of 32
        u32 p0 = prefix[e0 / 32];
        u32 p1 = e1 / 32 >= words ? c.ones : prefix[e1 / 32] + __popc(mask[e1 / 32] & ((1u << (e1 % 32)) - 1));
        u64 a = (u64)(packed + (u64)p0 * sizeof(T)), z = (u64)(packed + (u64)p1 * sizeof(T));
        u64 from = a & ~(u64)15;
        u32 nv = (u32)((z - from + 15) / 16);
        for (u32 i = threadIdx.x; i < nv; i += LTB_THREADS) stage[i] = ((const uint4*)from)[i];
        __syncthreads();
        const T* staged = (const T*)((const u8*)stage + (a - from));
#pragma unroll 4
        for (u32 v = v0 + threadIdx.x; v < v1; v += LTB_THREADS) {
            uint4 q = zvc_vector<T>(mask, prefix, staged, p0, v);
            ((uint4*)out)[v] = q;
            sum += vec_terms(q, v);
        }
        __syncthreads();
    }
    return sum;
}

// int8g with G a multiple of the elements per output vector (E = 8 for 16-bit dtypes, 4 for
// f32): thread t makes output vectors t, t + 256, ... (a warp stores 512 contiguous bytes),
// each from E q bytes (one 8- or 4-byte load) and one scale, QV vectors at a time with all the
// loads issued first.
template <typename T, int dt>
__device__ u32 int8g_decode(const DecodeCtx& c, u8* out, u32* done_vecs) {
    const u32 E = 16 / sizeof(T);
    const u32 QV = 6;
    u32 nfull = c.n / E, sum = 0;  // output vectors made of whole elements
    const u8* qbase = c.payload + c.groups * 4;
    const float* scales = (const float*)c.payload;
    bool wide = E == 4 || (c.groups * 4) % 8 == 0;  // q of a vector loads as one 8-byte word
    u32 vpg = c.group / E;                          // output vectors per group
    for (u32 v0 = 0; v0 < nfull; v0 += QV * LTB_THREADS) {
        uint2 q[QV];
        float s[QV];
#pragma unroll
        for (u32 k = 0; k < QV; k++) {
            u32 v = v0 + threadIdx.x + k * LTB_THREADS;
            if (v < nfull) {
                if (E == 4) q[k] = make_uint2(((const u32*)qbase)[v], 0);
                else if (wide) q[k] = ((const uint2*)qbase)[v];
                else q[k] = make_uint2(((const u32*)qbase)[2 * v], ((const u32*)qbase)[2 * v + 1]);
                s[k] = scales[v / vpg];
            }
        }
#pragma unroll
        for (u32 k = 0; k < QV; k++) {
            u32 v = v0 + threadIdx.x + k * LTB_THREADS;
            if (v < nfull) {
                u32 w0 = q[k].x ^ 0x80808080u, w1 = q[k].y ^ 0x80808080u;
                union { uint4 v; u32 w[4]; } u;
                if constexpr (sizeof(T) == 2) {
                    u.w[0] = to_bits2<dt>(int8g_byte(w0, 0) * s[k], int8g_byte(w0, 1) * s[k]);
                    u.w[1] = to_bits2<dt>(int8g_byte(w0, 2) * s[k], int8g_byte(w0, 3) * s[k]);
                    u.w[2] = to_bits2<dt>(int8g_byte(w1, 0) * s[k], int8g_byte(w1, 1) * s[k]);
                    u.w[3] = to_bits2<dt>(int8g_byte(w1, 2) * s[k], int8g_byte(w1, 3) * s[k]);
                } else {
#pragma unroll
                    for (u32 e = 0; e < 4; e++) u.w[e] = __float_as_uint(int8g_byte(w0, e) * s[k]);
                }
                ((uint4*)out)[v] = u.v;
                sum += vec_terms(u.v, v);
            }
        }
    }
    *done_vecs = nfull;
    return sum;
}

// The output vectors from `from` on, one element at a time (raw, and int8g's other group sizes).
template <typename T>
__device__ u32 decode_vectors(const DecodeCtx& c, u32 from, u8* out) {
    const u32 E = 16 / sizeof(T);
    u32 nvec = c.len / 16, sum = 0;
#pragma unroll 4
    for (u32 v = from + threadIdx.x; v < nvec; v += LTB_THREADS) {
        uint4 q;
        if (c.codec == CODEC_RAW) q = ((const uint4*)c.payload)[v];
        else {
            union { uint4 q; T e[E]; } u;
#pragma unroll
            for (u32 k = 0; k < E; k++) u.e[k] = (T)int8g_elem_bits(c, v * E + k);
            q = u.q;
        }
        ((uint4*)out)[v] = q;
        sum += vec_terms(q, v);
    }
    return sum;
}

// The last (len mod 16) bytes, by thread 0: elements one by one, then the raw tail.
__device__ u32 decode_rest(const DecodeCtx& c, const u32* mask, const u32* prefix, u32 tail_at, u8* out) {
    u32 start = c.len / 16 * 16, body = c.n * c.w;
    u8 bytes[16];
    for (u32 p = start; p < c.len; p++) {
        u8 b;
        if (p >= body) b = c.payload[tail_at + (p - body)];
        else {
            u32 i = p / c.w, bits;
            if (c.codec == CODEC_RAW) bits = 0, b = c.payload[p];
            else {
                if (c.codec == CODEC_ZVC) {
                    u32 word = i / 32, m = mask[word];
                    const u8* packed = c.payload + ((c.n + 31) / 32) * 4;
                    u32 src = prefix[word] + __popc(m & ((1u << (i % 32)) - 1));
                    bits = 0;
                    if ((m >> (i % 32)) & 1u) for (int k = 0; k < c.w; k++) bits |= (u32)packed[src * c.w + k] << (8 * k);
                } else bits = int8g_elem_bits(c, i);
                b = (u8)(bits >> (8 * (p % c.w)));
            }
        }
        bytes[p - start] = b;
        out[p] = b;
    }
    u32 sum = 0;
    for (u32 p = start; p < c.len; p += 4) {
        u32 word = 0;
        for (u32 k = 0; k < 4 && p + k < c.len; k++) word |= (u32)bytes[p - start + k] << (8 * k);
        sum += ltsum_term(word, p / 4);
    }
    return sum;
}

template <typename T, int dt>
__device__ u32 decode_block(const DecodeCtx& c, const u32* mask, const u32* prefix, uint4* stage, u8* out) {
    if (c.codec == CODEC_ZVC) return zvc_decode<T>(c, mask, prefix, stage, out);
    u32 from = 0, sum = 0;
    if constexpr (sizeof(T) >= 2)
        if (c.codec == CODEC_INT8G && c.group % (16 / sizeof(T)) == 0) sum = int8g_decode<T, dt>(c, out, &from);
    return sum + decode_vectors<T>(c, from, out);
}

extern "C" __global__ void __launch_bounds__(LTB_THREADS, 4) ltb_decode_blocks(const DecodeDesc* descs, u32* status) {
    __shared__ u32 prefix[MAX_WORDS];
    __shared__ u32 maskw[MAX_WORDS];  // the mask words, read once from global memory
    __shared__ uint4 stage[STAGE_VECS];
    __shared__ u32 scratch[LTB_WARPS];
    __shared__ int bad;
    DecodeDesc d = descs[blockIdx.x];
    const u8* h = d.block;
    int st = ST_OK;
    if ((((u64)h) | (u64)d.out) & 15 || d.extent < 32) {
        if (threadIdx.x == 0) status[blockIdx.x] = d.extent < 32 ? ST_LENGTH : ST_ALIGN;
        return;
    }
    DecodeCtx c;
    c.payload = h + 32;
    c.codec = h[5]; c.dt = h[6]; c.len = get_u32(h + 8);
    u32 plen = get_u32(h + 12);
    c.group = h[28] | (h[29] << 8);
    u32 want = c.codec == CODEC_INT8G ? get_u32(h + 20) : get_u32(h + 16);
    if (h[0] != 'L' || h[1] != 'T' || h[2] != 'B' || h[3] != 'K' || h[4] != 1) st = ST_MAGIC;
    else if (c.dt > DT_F32) st = ST_DTYPE;
    else if (c.codec > CODEC_EXPF) st = ST_CODEC;
    c.w = st == ST_OK ? dtype_width(c.dt) : 1;
    c.n = c.len / c.w;
    c.ones = 0;
    c.prestaged = false;
    c.stage_from = 0;
    u32 tail = c.len - c.n * c.w, words = (c.n + 31) / 32, tail_at = 0;
    c.groups = c.group ? (c.n + c.group - 1) / c.group : 0;
    const u32* mask = (const u32*)c.payload;
    // nothing past the block's extent is ever read: the payload and its padding must fit
    if (st == ST_OK && (c.len > 65536 || 32 + ((u64)plen + 15) / 16 * 16 > d.extent)) st = ST_LENGTH;
    if (st == ST_OK && c.codec == CODEC_RAW && plen != c.len) st = ST_LENGTH;
    if (st == ST_OK && c.codec == CODEC_INT8G && (c.dt == DT_U8 || c.group == 0 || plen != c.groups * 4 + c.n + tail)) st = ST_LENGTH;
    if (st == ST_OK && c.codec == CODEC_INT8G) tail_at = c.groups * 4 + c.n;
    if (st == ST_OK && c.codec == CODEC_RAW) tail_at = c.n * c.w;
    if (st == ST_OK && c.codec == CODEC_ZVC) {
        if ((u64)words * 4 + tail > plen || words > MAX_WORDS) st = ST_LENGTH;
        else {
            // the packed bytes (as the header's length says; checked against the mask below)
            u64 packed = (u64)(c.payload + words * 4), packed_end = (u64)(c.payload + plen - tail);
            c.stage_from = packed & ~(u64)15;
            u32 nv = (u32)((packed_end - c.stage_from + 15) / 16);
            c.prestaged = nv <= STAGE_VECS;
            if (c.prestaged)
                for (u32 i = threadIdx.x; i < nv; i += LTB_THREADS) stage[i] = ((const uint4*)c.stage_from)[i];
            if (threadIdx.x == 0) bad = 0;
            __syncthreads();
            for (u32 wd = threadIdx.x; wd < words; wd += LTB_THREADS) {
                u32 m = mask[wd];
                maskw[wd] = m;
                u32 valid = (wd + 1) * 32 <= c.n ? FULL_MASK : ((1u << (c.n - wd * 32)) - 1);
                if (m & ~valid) bad = 1;
                prefix[wd] = __popc(m);
            }
            __syncthreads();
            c.ones = block_exclusive_scan(prefix, words, scratch);
            if (bad || (u64)words * 4 + (u64)c.ones * c.w + tail != plen) st = ST_LENGTH;
            tail_at = plen - tail;
        }
    }
    u32 sum = 0;
    if (c.codec == CODEC_ZVC) mask = maskw;
    if (st == ST_OK && c.codec == CODEC_EXPF) {  // the code's table (in prefix), the staged streams, the decode
        u16* table = (u16*)prefix;
        switch (c.dt) {
            case DT_U8: st = ST_LENGTH; break;
            case DT_F16: st = expf_block<u16, DT_F16>(c.payload, plen, c.len, table, maskw, stage, STAGE_VECS, scratch, &bad, d.out, &sum); break;
            case DT_BF16: st = expf_block<u16, DT_BF16>(c.payload, plen, c.len, table, maskw, stage, STAGE_VECS, scratch, &bad, d.out, &sum); break;
            default: st = expf_block<u32, DT_F32>(c.payload, plen, c.len, table, maskw, stage, STAGE_VECS, scratch, &bad, d.out, &sum); break;
        }
    } else if (st == ST_OK) {  // uniform over the CTA
        switch (c.dt) {
            case DT_U8: sum = decode_block<u8, DT_U8>(c, mask, prefix, stage, d.out); break;
            case DT_F16: sum = decode_block<u16, DT_F16>(c, mask, prefix, stage, d.out); break;
            case DT_BF16: sum = decode_block<u16, DT_BF16>(c, mask, prefix, stage, d.out); break;
            default: sum = decode_block<u32, DT_F32>(c, mask, prefix, stage, d.out); break;
        }
        if (threadIdx.x == 0) sum += decode_rest(c, mask, prefix, tail_at, d.out);
    }
    __syncthreads();
    if (st == ST_OK && c.codec == CODEC_EXPF && bad) st = ST_LENGTH;  // a stream that did not decode as its length says
    if (st == ST_OK && ltsum_final(block_sum_u32(sum, scratch), c.len) != want) st = ST_CHECKSUM;
    if (threadIdx.x == 0) status[blockIdx.x] = st;
}
