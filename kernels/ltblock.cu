// LT-Block kernels: one CTA of LTB_THREADS threads per 64 KiB block; many blocks, from many
// buffers, in one launch. Byte-identical with the CPU reference (ltblock/): docs/FORMAT.md.
//   ltb_analyze_blocks: per block, the codec the CPU encoder would choose and its payload size
//   ltb_encode_blocks:  writes each block (header, payload, zero padding) at its offset
//   ltb_decode_blocks:  decodes blocks anywhere in device memory, verifying checksums
// Compiled with --fmad=false so that no multiply-add is contracted (the reference does none).
#include "common.cuh"

#define MAX_WORDS 2048   // mask words of a 64 KiB u8 block
#define MAX_GROUPS 1024  // int8g groups of a 64 KiB block (G >= 16 for f32)

__device__ __forceinline__ u32 vec_terms(uint4 q, u32 v) {
    return ltsum_term(q.x, 4 * v) + ltsum_term(q.y, 4 * v + 1) + ltsum_term(q.z, 4 * v + 2) + ltsum_term(q.w, 4 * v + 3);
}

struct EncodeParams {
    const u8* input;     // the buffer's bytes
    u64 len;             // its length
    u32 block_size;
    int dtype;
    int lossy;
    u32 group;
    float max_rel_l2;
    float* scales;       // scratch: max_groups f32 per block, written by analyse for int8g blocks
    u32 max_groups;
};

struct BlockChoice {
    u32 codec;
    u32 payload_len;
    float rel_l2;
    u32 pad;
};

// ---- int8g: the block's scales and error, in the reference's order ----
// Returns the relative L2 error (INFINITY when the block holds NaN/Inf); fills scales[g].
__device__ float int8g_measure(const u8* in, int dt, u32 n, u32 G, float* scales, double* e2, double* r2, int* nonfinite) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    u32 groups = (n + G - 1) / G;
    if (threadIdx.x == 0) *nonfinite = 0;
    __syncthreads();
    for (u32 g = warp; g < groups; g += LTB_WARPS) {
        u32 start = g * G, glen = min(G, n - start);
        float amax = 0.0f;
        int bad = 0;
        for (u32 j = lane; j < glen; j += 32) {
            float v = load_elem(in, dt, start + j);
            if (!isfinite(v)) bad = 1;
            amax = fmaxf(amax, fabsf(v));
        }
        for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(FULL_MASK, amax, off));
        bad = __any_sync(FULL_MASK, bad);
        float s = amax / 127.0f;
        double e = 0.0, r = 0.0;
        for (u32 j = lane; j < glen; j += 32) {
            float v = load_elem(in, dt, start + j);
            int q = int8g_q(v, s);
            float d = round_to(dt, (float)q * s);
            double diff = (double)d - (double)v;
            e = __dadd_rn(e, __dmul_rn(diff, diff));
            r = __dadd_rn(r, __dmul_rn((double)v, (double)v));
        }
        for (int off = 16; off > 0; off >>= 1) {
            e = __dadd_rn(e, __shfl_xor_sync(FULL_MASK, e, off));
            r = __dadd_rn(r, __shfl_xor_sync(FULL_MASK, r, off));
        }
        if (lane == 0) { scales[g] = s; e2[g] = e; r2[g] = r; if (bad) *nonfinite = 1; }
    }
    __syncthreads();
    __shared__ float result;
    if (threadIdx.x == 0) {
        double err2 = 0.0, ref2 = 0.0;
        for (u32 g = 0; g < groups; g++) { err2 = __dadd_rn(err2, e2[g]); ref2 = __dadd_rn(ref2, r2[g]); }
        float rel = ref2 > 0.0 ? (float)sqrt(__ddiv_rn(err2, ref2)) : (err2 > 0.0 ? __int_as_float(0x7f800000) : 0.0f);
        result = *nonfinite ? __int_as_float(0x7f800000) : rel;
    }
    __syncthreads();
    return result;
}

__device__ u32 count_nonzero(const u8* in, int w, u32 n) {
    __shared__ u32 scratch[LTB_WARPS];
    u32 c = 0;
    for (u32 i = threadIdx.x; i < n; i += LTB_THREADS) {
        bool nz = w == 1 ? in[i] != 0 : (w == 2 ? ((const u16*)in)[i] != 0 : ((const u32*)in)[i] != 0);
        c += nz;
    }
    return block_sum_u32(c, scratch);
}

extern "C" __global__ void __launch_bounds__(LTB_THREADS) ltb_analyze_blocks(EncodeParams p, BlockChoice* out) {
    __shared__ float scales[MAX_GROUPS];
    __shared__ double e2[MAX_GROUPS], r2[MAX_GROUPS];
    __shared__ int nonfinite;
    u64 b = blockIdx.x;
    u64 start = b * p.block_size;
    u32 len = (u32)min((u64)p.block_size, p.len - start);
    const u8* in = p.input + start;
    int w = dtype_width(p.dtype);
    u32 n = len / w, tail = len - n * w;
    u32 best_codec = CODEC_RAW, best = len;
    float err = 0.0f;
    u32 nnz = count_nonzero(in, w, n);
    u32 zvc = ((n + 31) / 32) * 4 + nnz * w + tail;
    if (zvc < best) { best = zvc; best_codec = CODEC_ZVC; }
    u32 int8g_size = p.group ? ((n + p.group - 1) / p.group) * 4 + n + tail : 0;
    // measuring the int8g error only matters when int8g would be the smallest
    if (p.lossy && p.dtype != DT_U8 && p.group > 0 && (n + p.group - 1) / p.group <= MAX_GROUPS && int8g_size < best) {
        float rel = int8g_measure(in, p.dtype, n, p.group, scales, e2, r2, &nonfinite);
        if (rel <= p.max_rel_l2) { best = int8g_size; best_codec = CODEC_INT8G; err = rel; }
        u32 groups = (n + p.group - 1) / p.group;
        if (best_codec == CODEC_INT8G && groups <= p.max_groups)
            for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) p.scales[b * p.max_groups + g] = scales[g];
    }
    if (threadIdx.x == 0) { out[b].codec = best_codec; out[b].payload_len = best; out[b].rel_l2 = err; out[b].pad = 0; }
}

struct EncodeTarget {
    u8* out;              // the packed buffer
    const u64* offsets;   // block b's header at out + offsets[b]
    const BlockChoice* choice;
};

// Encode reads each block as 16-byte vectors: thread t owns input bytes [16v, 16v + 16).
// The original bytes' checksum terms come from those loads; bytes past the last whole vector
// (at most 15) are thread 0's.
template <typename T>
__device__ void encode_vectors(const EncodeParams& p, const u8* in, u32 len, u32 n, u32 codec, const float* scales,
                               u8* payload, u32* maskw, u32* prefix, u32* scratch, u32* sum_orig, u32* sum_dec) {
    const u32 E = 16 / sizeof(T);
    u32 nvec = len / 16, so = 0, sd = 0;
    u32 words = (n + 31) / 32, groups = p.group ? (n + p.group - 1) / p.group : 0;
    if (codec == CODEC_ZVC) {
        for (u32 wd = threadIdx.x; wd < words; wd += LTB_THREADS) maskw[wd] = 0;
        __syncthreads();
    }
    // pass A: checksums; zvc mask words; int8g q bytes and the decoded checksum
    for (u32 base = 0; base < nvec; base += LTB_THREADS) {
        u32 v = base + threadIdx.x;
        bool valid = v < nvec;
        union { uint4 q; T e[E]; u32 w[4]; } u;
        u.q = valid ? ((const uint4*)in)[v] : make_uint4(0, 0, 0, 0);
        if (valid) so += vec_terms(u.q, v);
        if (codec == CODEC_RAW) {
            if (valid) ((uint4*)payload)[v] = u.q;
        } else if (codec == CODEC_ZVC) {
            u32 bits = 0;
#pragma unroll
            for (u32 k = 0; k < E; k++) bits |= (u32)(u.e[k] != 0) << k;
            u32 contrib = bits << ((v * E) % 32);
            for (u32 off = 1; off < 32 / E; off <<= 1) contrib |= __shfl_xor_sync(FULL_MASK, contrib, off);
            if (valid && (v * E) % 32 == 0) maskw[v * E / 32] = contrib;
        } else if (valid) {
            union { uint4 q; T e[E]; u32 w[4]; } dq;
            u32 qw[E / 4 > 0 ? E / 4 : 1];
#pragma unroll
            for (u32 k = 0; k < E / 4; k++) qw[k] = 0;
#pragma unroll
            for (u32 k = 0; k < E; k++) {
                u32 i = v * E + k;
                float sc = scales[i / p.group];
                float x = load_elem((const u8*)&u.q, p.dtype, k);
                int q = int8g_q(x, sc);
                qw[k / 4] |= ((u32)(u8)(i8)q) << (8 * (k % 4));
                float dx = (float)q * sc;
                dq.e[k] = (T)to_bits(p.dtype, dx);
            }
            u32* qout = (u32*)(payload + groups * 4) + v * E / 4;
#pragma unroll
            for (u32 k = 0; k < E / 4; k++) qout[k] = qw[k];
            sd += vec_terms(dq.q, v);
        }
    }
    if (codec == CODEC_ZVC) {
        __syncthreads();
        // the elements past the last whole vector
        if (threadIdx.x == 0)
            for (u32 i = nvec * E; i < n; i++) if (((const T*)in)[i] != 0) maskw[i / 32] |= 1u << (i % 32);
        __syncthreads();
        for (u32 wd = threadIdx.x; wd < words; wd += LTB_THREADS) { prefix[wd] = __popc(maskw[wd]); ((u32*)payload)[wd] = maskw[wd]; }
        __syncthreads();
        block_exclusive_scan(prefix, words, scratch);
        T* packed = (T*)(payload + words * 4);
        // pass B: the non-zero elements to their places (the block is hot in L1/L2)
        for (u32 v = threadIdx.x; v < nvec; v += LTB_THREADS) {
            union { uint4 q; T e[E]; } u;
            u.q = ((const uint4*)in)[v];
            u32 w = v * E / 32, sh = (v * E) % 32;
            u32 dst = prefix[w] + __popc(maskw[w] & ((1u << sh) - 1));
#pragma unroll
            for (u32 k = 0; k < E; k++) if (u.e[k] != 0) packed[dst++] = u.e[k];
        }
        if (threadIdx.x == 0)
            for (u32 i = nvec * E; i < n; i++) {
                T x = ((const T*)in)[i];
                if (x != 0) packed[prefix[i / 32] + __popc(maskw[i / 32] & ((1u << (i % 32)) - 1))] = x;
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
                    if (at >= n * sizeof(T)) { bits = 0; for (u32 z = 0; at + z < len && z < 4 - k; z++) bits |= (u32)in[at + z] << (8 * z); dword |= bits << (8 * k); break; }
                    u32 i = at / sizeof(T);
                    float sc = scales[i / p.group];
                    float x = load_elem(in, p.dtype, i);
                    int q = int8g_q(x, sc);
                    ((i8*)(payload + groups * 4))[i] = (i8)q;
                    float dx = (float)q * sc;
                    bits = to_bits(p.dtype, dx);
                    dword |= bits << (8 * k);
                }
                sd += ltsum_term(dword, pos / 4);
            }
        }
        if (codec == CODEC_RAW) for (u32 pos = start; pos < len; pos++) payload[pos] = in[pos];
    }
    *sum_orig = ltsum_final(block_sum_u32(so, scratch), len);
    *sum_dec = codec == CODEC_INT8G ? ltsum_final(block_sum_u32(sd, scratch), len) : *sum_orig;
}

extern "C" __global__ void __launch_bounds__(LTB_THREADS, 4) ltb_encode_blocks(EncodeParams p, EncodeTarget t) {
    __shared__ u32 maskw[MAX_WORDS];
    __shared__ u32 prefix[MAX_WORDS];
    __shared__ u32 scratch[LTB_WARPS];
    __shared__ float scales[MAX_GROUPS];
    u64 b = blockIdx.x;
    u64 start = b * p.block_size;
    u32 len = (u32)min((u64)p.block_size, p.len - start);
    const u8* in = p.input + start;
    u8* hdr = t.out + t.offsets[b];
    u8* payload = hdr + 32;
    BlockChoice c = t.choice[b];
    int w = dtype_width(p.dtype);
    u32 n = len / w, tail = len - n * w, body = n * w;
    if (c.codec == CODEC_INT8G) {
        u32 groups = (n + p.group - 1) / p.group;
        for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) { float s = p.scales[b * p.max_groups + g]; scales[g] = s; ((float*)payload)[g] = s; }
        __syncthreads();
        if (threadIdx.x < tail) payload[groups * 4 + n + threadIdx.x] = in[body + threadIdx.x];
    }
    if (c.codec == CODEC_ZVC && threadIdx.x < tail) payload[c.payload_len - tail + threadIdx.x] = in[body + threadIdx.x];
    u32 sum, decoded_sum;
    if (w == 1) encode_vectors<u8>(p, in, len, n, c.codec, scales, payload, maskw, prefix, scratch, &sum, &decoded_sum);
    else if (w == 2) encode_vectors<u16>(p, in, len, n, c.codec, scales, payload, maskw, prefix, scratch, &sum, &decoded_sum);
    else encode_vectors<u32>(p, in, len, n, c.codec, scales, payload, maskw, prefix, scratch, &sum, &decoded_sum);
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

struct DecodeDesc {
    const u8* block;  // the block's header
    u8* out;          // where its bytes go (16-byte aligned)
};

// Decode writes 16-byte vectors: thread t owns output bytes [16v, 16v + 16) for v = t, t + 256,
// ... and folds those four words into the checksum in registers, so the output is never
// read back. Bytes past the last whole vector (at most 15) are thread 0's.
struct DecodeCtx {
    const u8* payload;
    int dt, w;
    u32 codec, n, len, groups, group;
};

// Element i (a w-byte value, zero-extended) of the decoded block; `src` is the zvc packed index.
__device__ __forceinline__ u32 int8g_elem_bits(const DecodeCtx& c, u32 i) {
    const float* scales = (const float*)c.payload;
    const i8* q = (const i8*)(c.payload + c.groups * 4);
    return to_bits(c.dt, (float)q[i] * scales[i / c.group]);
}

template <typename T>
__device__ __forceinline__ uint4 zvc_vector(const u32* mask, const u32* prefix, const T* packed, u32 v) {
    const u32 E = 16 / sizeof(T);
    u32 base = v * E, word = base / 32, sh = base % 32;
    u32 m = mask[word];
    u32 bits = (m >> sh) & (E == 32 ? FULL_MASK : ((1u << E) - 1));
    u32 src = prefix[word] + __popc(m & ((1u << sh) - 1));
    union { uint4 q; T e[E]; } u;
#pragma unroll
    for (u32 k = 0; k < E; k++) u.e[k] = (bits >> k) & 1u ? packed[src++] : (T)0;
    return u.q;
}

template <typename T>
__device__ __forceinline__ uint4 int8g_vector(const DecodeCtx& c, u32 v, bool whole_groups) {
    const u32 E = 16 / sizeof(T);
    union { uint4 q; T e[E]; } u;
    if (whole_groups && sizeof(T) >= 2) {
        // G is a multiple of E: one scale for the vector, its E int8 values in 4-byte loads
        float s = ((const float*)c.payload)[(v * E) / c.group];
        const u32* q32 = (const u32*)(c.payload + c.groups * 4) + v * E / 4;
#pragma unroll
        for (u32 k = 0; k < E / 4; k++) {
            u32 qs = q32[k];
#pragma unroll
            for (u32 j = 0; j < 4; j++) {
                float x = (float)(i8)(qs >> (8 * j)) * s;
                u.e[4 * k + j] = (T)to_bits(c.dt, x);
            }
        }
        return u.q;
    }
#pragma unroll
    for (u32 k = 0; k < E; k++) u.e[k] = (T)int8g_elem_bits(c, v * E + k);
    return u.q;
}


template <typename T>
__device__ u32 decode_vectors(const DecodeCtx& c, const u32* mask, const u32* prefix, u8* out) {
    u32 nvec = c.len / 16, sum = 0;
    const T* packed = (const T*)(c.payload + ((c.n + 31) / 32) * 4);
    bool whole_groups = c.codec == CODEC_INT8G && c.group % (16 / sizeof(T)) == 0;
#pragma unroll 2
    for (u32 v = threadIdx.x; v < nvec; v += LTB_THREADS) {
        uint4 q;
        if (c.codec == CODEC_RAW) q = ((const uint4*)c.payload)[v];
        else if (c.codec == CODEC_ZVC) q = zvc_vector<T>(mask, prefix, packed, v);
        else q = int8g_vector<T>(c, v, whole_groups);
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

extern "C" __global__ void __launch_bounds__(LTB_THREADS) ltb_decode_blocks(const DecodeDesc* descs, u32* status) {
    __shared__ u32 prefix[MAX_WORDS];
    __shared__ u32 maskw[MAX_WORDS];  // the mask words, read once from global memory
    __shared__ u32 scratch[LTB_WARPS];
    __shared__ int bad;
    DecodeDesc d = descs[blockIdx.x];
    const u8* h = d.block;
    DecodeCtx c;
    c.payload = h + 32;
    c.codec = h[5]; c.dt = h[6]; c.len = get_u32(h + 8);
    u32 plen = get_u32(h + 12);
    c.group = h[28] | (h[29] << 8);
    u32 want = c.codec == CODEC_INT8G ? get_u32(h + 20) : get_u32(h + 16);
    int st = ST_OK;
    if (h[0] != 'L' || h[1] != 'T' || h[2] != 'B' || h[3] != 'K' || h[4] != 1) st = ST_MAGIC;
    else if (c.dt > DT_F32) st = ST_DTYPE;
    else if (c.codec > CODEC_INT8G) st = ST_CODEC;
    c.w = st == ST_OK ? dtype_width(c.dt) : 1;
    c.n = c.len / c.w;
    u32 tail = c.len - c.n * c.w, words = (c.n + 31) / 32, tail_at = 0;
    c.groups = c.group ? (c.n + c.group - 1) / c.group : 0;
    const u32* mask = (const u32*)c.payload;
    if (st == ST_OK && c.codec == CODEC_RAW && plen != c.len) st = ST_LENGTH;
    if (st == ST_OK && c.codec == CODEC_INT8G && (c.dt == DT_U8 || c.group == 0 || plen != c.groups * 4 + c.n + tail)) st = ST_LENGTH;
    if (st == ST_OK && c.codec == CODEC_INT8G) tail_at = c.groups * 4 + c.n;
    if (st == ST_OK && c.codec == CODEC_RAW) tail_at = c.n * c.w;
    if (st == ST_OK && c.codec == CODEC_ZVC) {
        if ((u64)words * 4 > plen || words > MAX_WORDS) st = ST_LENGTH;
        else {
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
            u32 ones = block_exclusive_scan(prefix, words, scratch);
            if (bad || (u64)words * 4 + (u64)ones * c.w + tail != plen) st = ST_LENGTH;
            tail_at = plen - tail;
        }
    }
    u32 sum = 0;
    if (c.codec == CODEC_ZVC) mask = maskw;
    if (st == ST_OK) {
        if (c.w == 1) sum = decode_vectors<u8>(c, mask, prefix, d.out);
        else if (c.w == 2) sum = decode_vectors<u16>(c, mask, prefix, d.out);
        else sum = decode_vectors<u32>(c, mask, prefix, d.out);
        if (threadIdx.x == 0) sum += decode_rest(c, mask, prefix, tail_at, d.out);
    }
    __syncthreads();
    if (st == ST_OK && ltsum_final(block_sum_u32(sum, scratch), c.len) != want) st = ST_CHECKSUM;
    if (threadIdx.x == 0) status[blockIdx.x] = st;
}
