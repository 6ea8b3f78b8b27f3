// LT-Block kernels: one CTA of LTB_THREADS threads per 64 KiB block; many blocks, from many
// buffers, in one launch. Byte-identical with the CPU reference (ltblock/): docs/FORMAT.md.
//   ltb_analyze_blocks: per block, the codec the CPU encoder would choose and its payload size
//   ltb_scan_blocks:    prefix sum of the blocks' sizes: the buffer header and index
//   ltb_encode_blocks:  writes each block (header, payload, zero padding) at its indexed offset
//   ltb_decode_blocks:  decodes blocks anywhere in device memory, verifying checksums
// Analyse and encode take a thread's 16 vectors of 16 bytes into registers a few at a time with
// all those loads in flight at once, so each input byte comes from DRAM once per kernel
// (second passes re-read from L2). The dtype is a template argument below each kernel's
// dispatch, so no per-element branch on it remains.
// Compiled with --fmad=false so that no multiply-add is contracted (the reference does none).
#include "common.cuh"

#define MAX_WORDS 2048    // mask words of a 64 KiB u8 block
#define MAX_GROUPS 2048   // int8g groups of a block (ltblock int8g::MAX_GROUPS)
#define VPT 16            // 16-byte vectors per thread in a 64 KiB block
#define HV 8              // of which encode holds this many in registers at a time
#define HA 4              // and analyse (more CTAs an SM instead: its work is mostly arithmetic)
#define STAGE_VECS 2040   // zvc decode: staged packed bytes (static shared memory stays < 48 KiB)
#define CHUNK_VECS 2032   // output vectors per staged chunk (a multiple of 8; packed bytes fit)

__device__ __forceinline__ u32 vec_terms(uint4 q, u32 v) {
    return ltsum_term(q.x, 4 * v) + ltsum_term(q.y, 4 * v + 1) + ltsum_term(q.z, 4 * v + 2) + ltsum_term(q.w, 4 * v + 3);
}

// Calls f(x, v, valid) for each of this thread's vectors of a block (v = threadIdx.x +
// k * LTB_THREADS), N held in registers at a time: a round's N loads are all issued before any
// call. Every thread calls f for every k, valid or not (x is zero past the end), so f may use
// warp shuffles.
template <int N, typename F>
__device__ __forceinline__ void for_each_vector(const u8* in, u32 nvec, F f) {
#pragma unroll 1
    for (int h = 0; h < VPT / N; h++) {
        uint4 x[N];
#pragma unroll
        for (int k = 0; k < N; k++) {
            u32 v = threadIdx.x + (h * N + k) * LTB_THREADS;
            x[k] = v < nvec ? ((const uint4*)in)[v] : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int k = 0; k < N; k++) {
            u32 v = threadIdx.x + (h * N + k) * LTB_THREADS;
            f(x[k], v, v < nvec);
        }
    }
}

struct EncodeParams {
    const u8* input;     // the buffer's bytes (16-byte aligned)
    u64 len;             // its length
    u32 block_size;      // 65536 (VPT vectors a thread)
    int dtype;
    int lossy;
    u32 group;
    float max_rel_l2;
    float* amax;         // scratch: max_groups f32 per block, each group's max |x|, from analyse
    u32 max_groups;
};

struct BlockChoice {
    u32 codec;
    u32 payload_len;
    float rel_l2;
    u32 pad;
};

// ---- int8g ----
// One 16-byte vector starting at element i0: its q bytes (E/4 words), its decoded vector, and
// the f32 error terms added in element order. PV: the vector lies in one group (G % E == 0).
template <typename T, int dt, bool PV>
__device__ __forceinline__ void int8g_vector(uint4 in, u32 G, const float* gs, const float* ginv, u32 i0,
                                             u32* qw, uint4* dec, float* e2, float* r2) {
    const u32 E = 16 / sizeof(T);
    union { uint4 q; T e[E]; u32 w[4]; } u, d;
    u.q = in;
    u32 g = i0 / G, rem = i0 - g * G;
    float s = gs[g], inv = ginv[g], x[E], dx[E];
#pragma unroll
    for (u32 j = 0; j < (E + 3) / 4; j++) qw[j] = 0;
#pragma unroll
    for (u32 j = 0; j < E; j++) {
        x[j] = elem_f32<T>(u.e[j], dt);
        float t = int8g_biased(x[j], inv);
        qw[j / 4] |= (__float_as_uint(t) & 0xffu) << (8 * (j % 4));
        dx[j] = (t - INT8G_MAGIC) * s;
        if (!PV && ++rem == G && j + 1 < E) { rem = 0; g++; s = gs[g]; inv = ginv[g]; }
    }
#pragma unroll
    for (u32 j = 0; j < E; j += 2) {
        if constexpr (sizeof(T) == 2) d.w[j / 2] = to_bits2<dt>(dx[j], dx[j + 1]);
        else { d.e[j] = (T)__float_as_uint(dx[j]); d.e[j + 1] = (T)__float_as_uint(dx[j + 1]); }
    }
#pragma unroll
    for (u32 j = 0; j < E; j++) {
        float df = elem_f32<T>(d.e[j], dt) - x[j];
        *e2 += df * df;
        *r2 += x[j] * x[j];
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

struct AnalyzeShared {
    u32 scratch[LTB_WARPS];
    float fscratch[LTB_WARPS];
    u32 gmax[MAX_GROUPS];
    float gs[MAX_GROUPS], ginv[MAX_GROUPS];
};

// The max |x| (as bits) of each group that vector v meets, into sh.gmax (zeroed before);
// returns the vector's largest. Inf and NaN compare above every finite value.
template <typename T, int dt>
__device__ __forceinline__ u32 int8g_vector_max(uint4 x, u32 v, bool valid, u32 G, bool per_vector, bool shuffle, AnalyzeShared& sh) {
    const u32 E = 16 / sizeof(T);
    union { uint4 q; T e[E]; } u;
    u.q = x;
    u32 am = 0;
    if (per_vector) {
#pragma unroll
        for (u32 j = 0; j < E; j++) am = max(am, abs_bits<T>(u.e[j], dt));
        u32 V = G / E, group_max = am;
        if (shuffle) {
            // the V vectors of a group are V aligned lanes of one warp
            for (u32 off = 1; off < V; off <<= 1) group_max = max(group_max, __shfl_xor_sync(FULL_MASK, group_max, off));
            if (valid && v % V == 0) sh.gmax[v * E / G] = group_max;
        } else if (valid) {
            atomicMax(&sh.gmax[v * E / G], am);
        }
    } else if (valid) {
        u32 i0 = v * E, g = i0 / G, rem = i0 - g * G;
#pragma unroll
        for (u32 j = 0; j < E; j++) {
            u32 a = abs_bits<T>(u.e[j], dt);
            am = max(am, a);
            atomicMax(&sh.gmax[g], a);
            if (++rem == G) { rem = 0; g++; }
        }
    }
    return am;
}

// The block's relative L2 error under int8g (scales in sh.gs / sh.ginv), in the reference's
// order; the block is read again (from L2: analyse read it just before).
template <typename T, int dt, bool PV>
__device__ float int8g_error(const u8* in, u32 n, u32 nvec, u32 G, AnalyzeShared& sh) {
    const u32 E = 16 / sizeof(T);
    float e2 = 0.0f, r2 = 0.0f;
    for_each_vector<HA>(in, nvec, [&](uint4 x, u32 v, bool valid) {
        if (valid) {
            u32 qw[(E + 3) / 4];
            uint4 dec;
            int8g_vector<T, dt, PV>(x, G, sh.gs, sh.ginv, v * E, qw, &dec, &e2, &r2);
        }
    });
    if (threadIdx.x == 0)
        for (u32 i = nvec * E; i < n; i++) {
            u8 q;
            u32 g = i / G;
            int8g_scalar(elem_f32<T>(((const T*)in)[i], dt), dt, sh.gs[g], sh.ginv[g], &q, &e2, &r2);
        }
    float err2 = block_sum_f32(e2, sh.fscratch), ref2 = block_sum_f32(r2, sh.fscratch);
    return ref2 > 0.0f ? sqrtf(err2 / ref2) : (err2 > 0.0f ? __int_as_float(0x7f800000) : 0.0f);
}

// One pass over the block counts its non-zero elements and, when int8g may be tried, each
// group's max |x|; the error pass follows only when int8g would be the smallest.
template <typename T, int dt>
__device__ void analyze_block(const EncodeParams& p, u64 b, const u8* in, u32 len, BlockChoice* out, AnalyzeShared& sh) {
    const u32 E = 16 / sizeof(T);
    u32 n = len / sizeof(T), tail = len - n * sizeof(T), nvec = len / 16;
    u32 G = p.group, groups = G ? (n + G - 1) / G : 0;
    bool maybe_int8g = sizeof(T) >= 2 && p.lossy && G > 0 && groups <= MAX_GROUPS;
    bool per_vector = maybe_int8g && G % E == 0;
    u32 V = maybe_int8g ? G / E : 0;
    bool shuffle = per_vector && V <= 32 && (V & (V - 1)) == 0;
    if (maybe_int8g) {
        for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) sh.gmax[g] = 0;
        __syncthreads();
    }
    u32 nz = 0, mine = 0;
    for_each_vector<HA>(in, nvec, [&](uint4 x, u32 v, bool valid) {
        union { uint4 q; T e[E]; } u;
        u.q = x;
#pragma unroll
        for (u32 j = 0; j < E; j++) nz += u.e[j] != 0;
        if constexpr (sizeof(T) >= 2)
            if (maybe_int8g) mine = max(mine, int8g_vector_max<T, dt>(x, v, valid, G, per_vector, shuffle, sh));
    });
    if (threadIdx.x == 0)
        for (u32 i = nvec * E; i < n; i++) {
            T e = ((const T*)in)[i];
            nz += e != 0;
            if (maybe_int8g) {
                u32 a = abs_bits<T>(e, dt);
                mine = max(mine, a);
            }
        }
    u32 nnz = block_sum_u32(nz, sh.scratch);  // synchronises: gmax is complete but for the tail
    u32 best_codec = CODEC_RAW, best = len;
    float err = 0.0f;
    u32 zvc = ((n + 31) / 32) * 4 + nnz * sizeof(T) + tail;
    if (zvc < best) { best = zvc; best_codec = CODEC_ZVC; }
    u32 int8g_size = groups * 4 + n + tail;
    if constexpr (sizeof(T) >= 2) {
        if (maybe_int8g && int8g_size < best) {
            if (threadIdx.x == 0)
                for (u32 i = nvec * E; i < n; i++) atomicMax(&sh.gmax[i / G], abs_bits<T>(((const T*)in)[i], dt));
            u32 bmax = block_max_u32(mine, sh.scratch);
            for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) int8g_scale(__uint_as_float(sh.gmax[g]), &sh.gs[g], &sh.ginv[g]);
            __syncthreads();
            // finite, and 0 or within [2^-40, 2^40] (ltblock int8g.rs)
            if (bmax == 0 || (bmax >= (87u << 23) && bmax <= (167u << 23))) {
                float rel = per_vector ? int8g_error<T, dt, true>(in, n, nvec, G, sh) : int8g_error<T, dt, false>(in, n, nvec, G, sh);
                if (rel <= p.max_rel_l2) {
                    best = int8g_size; best_codec = CODEC_INT8G; err = rel;
                    for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) p.amax[b * p.max_groups + g] = __uint_as_float(sh.gmax[g]);
                }
            }
        }
    }
    if (threadIdx.x == 0) { out[b].codec = best_codec; out[b].payload_len = best; out[b].rel_l2 = err; out[b].pad = 0; }
}

extern "C" __global__ void __launch_bounds__(LTB_THREADS, 4) ltb_analyze_blocks(EncodeParams p, BlockChoice* out) {
    __shared__ AnalyzeShared sh;
    u64 b = blockIdx.x;
    u64 start = b * p.block_size;
    u32 len = (u32)min((u64)p.block_size, p.len - start);
    const u8* in = p.input + start;
    switch (p.dtype) {  // the dtype as a template argument: no per-element branches on it
        case DT_U8: analyze_block<u8, DT_U8>(p, b, in, len, out, sh); break;
        case DT_F16: analyze_block<u16, DT_F16>(p, b, in, len, out, sh); break;
        case DT_BF16: analyze_block<u16, DT_BF16>(p, b, in, len, out, sh); break;
        default: analyze_block<u32, DT_F32>(p, b, in, len, out, sh); break;
    }
}

// ---- the prefix sum of block sizes: buffer header and index (FORMAT.md), in one CTA ----
struct ScanParams {
    u8* out;                    // the packed buffer (16-byte aligned), large enough for any choice
    const BlockChoice* choice;
    u64* total;                 // the packed length, for the host
    u64 len;
    u32 count;
    u32 block_size;
    int dtype;
    int lossy;
};

extern "C" __global__ void __launch_bounds__(LTB_THREADS) ltb_scan_blocks(ScanParams p) {
    __shared__ u64 run[LTB_THREADS];
    __shared__ u32 scratch[LTB_WARPS];
    u32 per = (p.count + LTB_THREADS - 1) / LTB_THREADS;
    u32 lo = min(threadIdx.x * per, p.count), hi = min(lo + per, p.count);
    u64 mine = 0;
    for (u32 b = lo; b < hi; b++) mine += 32 + (p.choice[b].payload_len + 15) / 16 * 16;
    run[threadIdx.x] = mine;
    __syncthreads();
    for (u32 off = 1; off < LTB_THREADS; off <<= 1) {
        u64 add = threadIdx.x >= off ? run[threadIdx.x - off] : 0;
        __syncthreads();
        run[threadIdx.x] += add;
        __syncthreads();
    }
    u64 index_end = 40 + 8 * ((u64)p.count + 1), first = (index_end + 15) / 16 * 16;
    u64* index = (u64*)(p.out + 40);
    u64 off = first + run[threadIdx.x] - mine;
    // the checksum covers header bytes 0..32 (words 0..7), then the index (words 8, 9, ...)
    u32 sum = 0;
    for (u32 b = lo; b < hi; b++) {
        index[b] = off;
        sum += ltsum_term((u32)off, 8 + 2 * b) + ltsum_term((u32)(off >> 32), 9 + 2 * b);
        off += 32 + (p.choice[b].payload_len + 15) / 16 * 16;
    }
    u32 head[8];
    if (threadIdx.x == 0) {
        u64 end = first + run[LTB_THREADS - 1];
        index[p.count] = end;
        sum += ltsum_term((u32)end, 8 + 2 * p.count) + ltsum_term((u32)(end >> 32), 9 + 2 * p.count);
        if (first > index_end) *(u64*)(p.out + index_end) = 0;
        *p.total = end;
        head[0] = 'L' | ('T' << 8) | ('B' << 16) | ((u32)'F' << 24);
        head[1] = 1u | ((u32)p.dtype << 16) | ((u32)p.lossy << 24);
        head[2] = p.block_size; head[3] = p.count;
        head[4] = (u32)p.len; head[5] = (u32)(p.len >> 32);
        head[6] = 0; head[7] = 0;  // no lossless prefix on the GPU
        for (u32 i = 0; i < 8; i++) sum += ltsum_term(head[i], i);
    }
    u32 check = ltsum_final(block_sum_u32(sum, scratch), 32 + 8 * (p.count + 1));
    if (threadIdx.x == 0) {
        u32* h = (u32*)p.out;
        for (u32 i = 0; i < 8; i++) h[i] = head[i];
        h[8] = check; h[9] = 0;
    }
}

// ---- encode ----
struct EncodeTarget {
    u8* out;              // the packed buffer, its header and index written by ltb_scan_blocks
    const BlockChoice* choice;
};

struct EncodeShared {
    u32 maskw[MAX_WORDS];
    u32 prefix[MAX_WORDS];
    u32 scratch[LTB_WARPS];
    float gs[MAX_GROUPS], ginv[MAX_GROUPS];
};

// Thread t owns input bytes [16v, 16v + 16) for its VPT vectors, HV at a time in registers;
// the original bytes' checksum terms come from those registers; bytes past the last whole
// vector (at most 15) are thread 0's.
template <typename T, int dt>
__device__ void encode_vectors(const EncodeParams& p, const u8* in, u32 len, u32 n, u32 codec, u8* payload, EncodeShared& sh,
                               u32* sum_orig, u32* sum_dec) {
    const u32 E = 16 / sizeof(T);
    u32 nvec = len / 16, so = 0, sd = 0, G = p.group;
    u32 words = (n + 31) / 32, groups = G ? (n + G - 1) / G : 0;
    if (codec == CODEC_ZVC) {
        for (u32 wd = threadIdx.x; wd < words; wd += LTB_THREADS) sh.maskw[wd] = 0;
        __syncthreads();
    }
    // pass A: checksum terms; raw payload; zvc mask words; int8g q bytes and decoded checksum
    u32* qout = (u32*)(payload + groups * 4);
    bool q_wide = (groups * 4) % 8 == 0;
    float e2 = 0.0f, r2 = 0.0f;  // int8g's error terms: not needed here
    for_each_vector<HV>(in, nvec, [&](uint4 x, u32 v, bool valid) {
        if (valid) so += vec_terms(x, v);
        if (codec == CODEC_RAW) {
            if (valid) ((uint4*)payload)[v] = x;
        } else if (codec == CODEC_ZVC) {
            union { uint4 q; T e[E]; } u;
            u.q = x;
            u32 bits = 0;
#pragma unroll
            for (u32 j = 0; j < E; j++) bits |= (u32)(u.e[j] != 0) << j;
            u32 contrib = bits << ((v * E) % 32);
            for (u32 off = 1; off < 32 / E; off <<= 1) contrib |= __shfl_xor_sync(FULL_MASK, contrib, off);
            if (valid && (v * E) % 32 == 0) sh.maskw[v * E / 32] = contrib;
        } else if constexpr (sizeof(T) >= 2) {
            if (valid) {
                u32 qw[E / 4];
                uint4 dec;
                if (G % E == 0) int8g_vector<T, dt, true>(x, G, sh.gs, sh.ginv, v * E, qw, &dec, &e2, &r2);
                else int8g_vector<T, dt, false>(x, G, sh.gs, sh.ginv, v * E, qw, &dec, &e2, &r2);
                if (E == 8 && q_wide) ((uint2*)qout)[v] = make_uint2(qw[0], qw[E / 8]);  // a warp: 256 contiguous bytes
                else
#pragma unroll
                    for (u32 j = 0; j < E / 4; j++) qout[v * E / 4 + j] = qw[j];
                sd += vec_terms(dec, v);
            }
        }
    });
    if (codec == CODEC_ZVC) {
        __syncthreads();
        if (threadIdx.x == 0)
            for (u32 i = nvec * E; i < n; i++) if (((const T*)in)[i] != 0) sh.maskw[i / 32] |= 1u << (i % 32);
        __syncthreads();
        for (u32 wd = threadIdx.x; wd < words; wd += LTB_THREADS) { sh.prefix[wd] = __popc(sh.maskw[wd]); ((u32*)payload)[wd] = sh.maskw[wd]; }
        __syncthreads();
        block_exclusive_scan(sh.prefix, words, sh.scratch);
        T* packed = (T*)(payload + words * 4);
        // pass B: the non-zero elements to their places (the block is read again, from L2)
        for_each_vector<HV>(in, nvec, [&](uint4 x, u32 v, bool valid) {
            if (valid) {
                union { uint4 q; T e[E]; } u;
                u.q = x;
                u32 w = v * E / 32, below = (v * E) % 32;
                u32 dst = sh.prefix[w] + __popc(sh.maskw[w] & ((1u << below) - 1));
#pragma unroll
                for (u32 j = 0; j < E; j++) if (u.e[j] != 0) packed[dst++] = u.e[j];
            }
        });
        if (threadIdx.x == 0)
            for (u32 i = nvec * E; i < n; i++) {
                T v = ((const T*)in)[i];
                if (v != 0) packed[sh.prefix[i / 32] + __popc(sh.maskw[i / 32] & ((1u << (i % 32)) - 1))] = v;
            }
    }
    // the bytes past the last whole vector: raw copy / int8g q values, and their checksum terms
    if (threadIdx.x == 0) {
        u32 start = nvec * 16;
        for (u32 pos = start; pos < len; pos += 4) {
            u32 word = 0, dword = 0;
            for (u32 k = 0; k < 4 && pos + k < len; k++) word |= (u32)in[pos + k] << (8 * k);
            so += ltsum_term(word, pos / 4);
            if (codec == CODEC_INT8G) {
                for (u32 k = 0; k < 4 && pos + k < len; k += sizeof(T)) {
                    u32 at = pos + k, bits;
                    if (at >= n * sizeof(T)) {  // the partial element's raw bytes
                        bits = 0;
                        for (u32 z = 0; at + z < len && z < 4 - k; z++) bits |= (u32)in[at + z] << (8 * z);
                        dword |= bits << (8 * k);
                        break;
                    }
                    u32 i = at / sizeof(T), g = i / G;
                    float e2 = 0.0f, r2 = 0.0f;
                    u8 q;
                    bits = int8g_scalar(load_elem(in, dt, i), dt, sh.gs[g], sh.ginv[g], &q, &e2, &r2);
                    payload[groups * 4 + i] = q;
                    dword |= bits << (8 * k);
                }
                sd += ltsum_term(dword, pos / 4);
            }
        }
        if (codec == CODEC_RAW) for (u32 pos = start; pos < len; pos++) payload[pos] = in[pos];
    }
    *sum_orig = ltsum_final(block_sum_u32(so, sh.scratch), len);
    *sum_dec = codec == CODEC_INT8G ? ltsum_final(block_sum_u32(sd, sh.scratch), len) : *sum_orig;
}

extern "C" __global__ void __launch_bounds__(LTB_THREADS, 3) ltb_encode_blocks(EncodeParams p, EncodeTarget t) {
    __shared__ EncodeShared sh;
    u64 b = blockIdx.x;
    u64 start = b * p.block_size;
    u32 len = (u32)min((u64)p.block_size, p.len - start);
    const u8* in = p.input + start;
    u8* hdr = t.out + ((const u64*)(t.out + 40))[b];
    u8* payload = hdr + 32;
    BlockChoice c = t.choice[b];
    int w = dtype_width(p.dtype);
    u32 n = len / w, tail = len - n * w, body = n * w;
    if (c.codec == CODEC_INT8G) {
        u32 groups = (n + p.group - 1) / p.group;
        for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) {
            int8g_scale(p.amax[b * p.max_groups + g], &sh.gs[g], &sh.ginv[g]);
            ((float*)payload)[g] = sh.gs[g];
        }
        __syncthreads();
        if (threadIdx.x < tail) payload[groups * 4 + n + threadIdx.x] = in[body + threadIdx.x];
    }
    if (c.codec == CODEC_ZVC && threadIdx.x < tail) payload[c.payload_len - tail + threadIdx.x] = in[body + threadIdx.x];
    u32 sum, decoded_sum;
    switch (p.dtype) {
        case DT_U8: encode_vectors<u8, DT_U8>(p, in, len, n, c.codec, payload, sh, &sum, &decoded_sum); break;
        case DT_F16: encode_vectors<u16, DT_F16>(p, in, len, n, c.codec, payload, sh, &sum, &decoded_sum); break;
        case DT_BF16: encode_vectors<u16, DT_BF16>(p, in, len, n, c.codec, payload, sh, &sum, &decoded_sum); break;
        default: encode_vectors<u32, DT_F32>(p, in, len, n, c.codec, payload, sh, &sum, &decoded_sum); break;
    }
    // zero padding up to the next 16-byte boundary
    u32 padded = (c.payload_len + 15) / 16 * 16;
    if (threadIdx.x < padded - c.payload_len) payload[c.payload_len + threadIdx.x] = 0;
    if (threadIdx.x == 0) {
        hdr[0] = 'L'; hdr[1] = 'T'; hdr[2] = 'B'; hdr[3] = 'K';
        hdr[4] = 1; hdr[5] = (u8)c.codec; hdr[6] = (u8)p.dtype; hdr[7] = c.codec == CODEC_INT8G;
        put_u32(hdr + 8, len); put_u32(hdr + 12, c.payload_len);
        put_u32(hdr + 16, sum); put_u32(hdr + 20, decoded_sum);
        put_u32(hdr + 24, __float_as_uint(c.rel_l2));
        u32 g = c.codec == CODEC_INT8G ? p.group : 0;
        hdr[28] = g; hdr[29] = g >> 8; hdr[30] = 0; hdr[31] = 0;
    }
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
    else if (c.codec > CODEC_INT8G) st = ST_CODEC;
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
    if (st == ST_OK) {  // uniform over the CTA
        switch (c.dt) {
            case DT_U8: sum = decode_block<u8, DT_U8>(c, mask, prefix, stage, d.out); break;
            case DT_F16: sum = decode_block<u16, DT_F16>(c, mask, prefix, stage, d.out); break;
            case DT_BF16: sum = decode_block<u16, DT_BF16>(c, mask, prefix, stage, d.out); break;
            default: sum = decode_block<u32, DT_F32>(c, mask, prefix, stage, d.out); break;
        }
        if (threadIdx.x == 0) sum += decode_rest(c, mask, prefix, tail_at, d.out);
    }
    __syncthreads();
    if (st == ST_OK && ltsum_final(block_sum_u32(sum, scratch), c.len) != want) st = ST_CHECKSUM;
    if (threadIdx.x == 0) status[blockIdx.x] = st;
}
