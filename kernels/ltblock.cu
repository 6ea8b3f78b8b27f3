// LT-Block kernels: one CTA of LTB_THREADS threads per 64 KiB block; many blocks, from many
// buffers, in one launch. Byte-identical with the CPU reference (ltblock/): docs/FORMAT.md.
//   ltb_analyze_blocks: per block, the codec the CPU encoder would choose and its payload size
//   ltb_encode_blocks:  writes each block (header, payload, zero padding) at its offset
//   ltb_decode_blocks:  decodes blocks anywhere in device memory, verifying checksums
// Compiled with --fmad=false so that no multiply-add is contracted (the reference does none).
#include "common.cuh"

#define MAX_WORDS 2048   // mask words of a 64 KiB u8 block
#define MAX_GROUPS 1024  // int8g groups of a 64 KiB block (G >= 16 for f32)

struct EncodeParams {
    const u8* input;     // the buffer's bytes
    u64 len;             // its length
    u32 block_size;
    int dtype;
    int lossy;
    u32 group;
    float max_rel_l2;
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
            int q = s > 0.0f ? (int)fmaxf(-127.0f, fminf(127.0f, roundf(v / s))) : 0;
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

extern "C" __global__ void ltb_analyze_blocks(EncodeParams p, BlockChoice* out) {
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
    if (p.lossy && p.dtype != DT_U8 && p.group > 0 && (n + p.group - 1) / p.group <= MAX_GROUPS) {
        float rel = int8g_measure(in, p.dtype, n, p.group, scales, e2, r2, &nonfinite);
        u32 size = ((n + p.group - 1) / p.group) * 4 + n + tail;
        if (rel <= p.max_rel_l2 && size < best) { best = size; best_codec = CODEC_INT8G; err = rel; }
    }
    if (threadIdx.x == 0) { out[b].codec = best_codec; out[b].payload_len = best; out[b].rel_l2 = err; out[b].pad = 0; }
}

// ---- zvc, both directions: a warp per mask word, lanes per element ----
template <typename T>
__device__ void zvc_encode(const T* in, u32 n, u8* payload, u32* prefix, u32* scratch) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    u32 words = (n + 31) / 32;
    u32* mask = (u32*)payload;
    for (u32 wd = warp; wd < words; wd += LTB_WARPS) {
        u32 i = wd * 32 + lane;
        bool nz = i < n && in[i] != 0;
        u32 m = __ballot_sync(FULL_MASK, nz);
        if (lane == 0) { mask[wd] = m; prefix[wd] = __popc(m); }
    }
    __syncthreads();
    block_exclusive_scan(prefix, words, scratch);
    T* packed = (T*)(payload + words * 4);
    for (u32 wd = warp; wd < words; wd += LTB_WARPS) {
        u32 i = wd * 32 + lane;
        T v = i < n ? in[i] : (T)0;
        u32 m = __ballot_sync(FULL_MASK, v != 0);
        if (v != 0) packed[prefix[wd] + __popc(m & ((1u << lane) - 1))] = v;
    }
}

template <typename T>
__device__ int zvc_decode(const u8* payload, u32 payload_len, u32 n, u32 tail, T* out, u32* prefix, u32* scratch) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    u32 words = (n + 31) / 32;
    if ((u64)words * 4 > payload_len) return ST_LENGTH;
    const u32* mask = (const u32*)payload;
    __shared__ int bad;
    if (threadIdx.x == 0) bad = 0;
    __syncthreads();
    for (u32 wd = threadIdx.x; wd < words; wd += LTB_THREADS) {
        u32 m = mask[wd];
        u32 valid = (wd + 1) * 32 <= n ? FULL_MASK : ((1u << (n - wd * 32)) - 1);
        if (m & ~valid) bad = 1;
        prefix[wd] = __popc(m);
    }
    __syncthreads();
    u32 ones = block_exclusive_scan(prefix, words, scratch);
    if (bad || (u64)words * 4 + (u64)ones * sizeof(T) + tail != payload_len) return ST_LENGTH;
    const T* packed = (const T*)(payload + words * 4);
    for (u32 wd = warp; wd < words; wd += LTB_WARPS) {
        u32 m = mask[wd];
        u32 i = wd * 32 + lane;
        if (i < n) out[i] = (m >> lane) & 1u ? packed[prefix[wd] + __popc(m & ((1u << lane) - 1))] : (T)0;
    }
    return ST_OK;
}

struct EncodeTarget {
    u8* out;              // the packed buffer
    const u64* offsets;   // block b's header at out + offsets[b]
    const BlockChoice* choice;
};

extern "C" __global__ void ltb_encode_blocks(EncodeParams p, EncodeTarget t) {
    __shared__ u32 prefix[MAX_WORDS];
    __shared__ u32 scratch[LTB_WARPS];
    __shared__ float scales[MAX_GROUPS];
    __shared__ double e2[MAX_GROUPS], r2[MAX_GROUPS];
    __shared__ int nonfinite;
    u64 b = blockIdx.x;
    u64 start = b * p.block_size;
    u32 len = (u32)min((u64)p.block_size, p.len - start);
    const u8* in = p.input + start;
    u8* hdr = t.out + t.offsets[b];
    u8* payload = hdr + 32;
    BlockChoice c = t.choice[b];
    int w = dtype_width(p.dtype);
    u32 n = len / w, tail = len - n * w, body = n * w;
    u32 sum = block_ltsum(in, len, scratch), decoded_sum = sum;
    if (c.codec == CODEC_RAW) {
        for (u32 i = threadIdx.x; i < len / 16; i += LTB_THREADS) ((uint4*)payload)[i] = ((const uint4*)in)[i];
        for (u32 i = (len / 16) * 16 + threadIdx.x; i < len; i += LTB_THREADS) payload[i] = in[i];
    } else if (c.codec == CODEC_ZVC) {
        if (w == 1) zvc_encode<u8>(in, n, payload, prefix, scratch);
        else if (w == 2) zvc_encode<u16>((const u16*)in, n, payload, prefix, scratch);
        else zvc_encode<u32>((const u32*)in, n, payload, prefix, scratch);
        if (threadIdx.x < tail) payload[c.payload_len - tail + threadIdx.x] = in[body + threadIdx.x];
    } else {
        u32 G = p.group, groups = (n + G - 1) / G;
        int8g_measure(in, p.dtype, n, G, scales, e2, r2, &nonfinite);
        for (u32 g = threadIdx.x; g < groups; g += LTB_THREADS) ((float*)payload)[g] = scales[g];
        i8* q = (i8*)(payload + groups * 4);
        u32 dsum = 0;
        for (u32 i = threadIdx.x; i < n; i += LTB_THREADS) {
            float s = scales[i / G];
            float v = load_elem(in, p.dtype, i);
            q[i] = s > 0.0f ? (i8)(int)fmaxf(-127.0f, fminf(127.0f, roundf(v / s))) : (i8)0;
        }
        if (threadIdx.x < tail) payload[groups * 4 + n + threadIdx.x] = in[body + threadIdx.x];
        // checksum of the decoded block, word by word
        u32 words = (len + 3) / 4;
        for (u32 k = threadIdx.x; k < words; k += LTB_THREADS) {
            u32 word = 0;
            for (u32 byte = 0; byte < 4 && 4 * k + byte < len; byte += w) {
                u32 pos = 4 * k + byte;
                u32 bits;
                if (pos >= body) { bits = 0; for (u32 z = 0; z < 4 - byte && pos + z < len; z++) bits |= (u32)in[pos + z] << (8 * z); word |= bits << (8 * byte); break; }
                u32 i = pos / w;
                float s = scales[i / G];
                float v = load_elem(in, p.dtype, i);
                int qq = s > 0.0f ? (int)fmaxf(-127.0f, fminf(127.0f, roundf(v / s))) : 0;
                float x = (float)qq * s;
                if (p.dtype == DT_F32) bits = __float_as_uint(x);
                else bits = p.dtype == DT_BF16 ? f32_to_bf16(x) : f32_to_f16(x);
                word |= bits << (8 * byte);
            }
            dsum += ltsum_term(word, k);
        }
        decoded_sum = ltsum_final(block_sum_u32(dsum, scratch), len);
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

struct DecodeDesc {
    const u8* block;  // the block's header
    u8* out;          // where its bytes go (4-byte aligned)
};

extern "C" __global__ void ltb_decode_blocks(const DecodeDesc* descs, u32* status) {
    __shared__ u32 prefix[MAX_WORDS];
    __shared__ u32 scratch[LTB_WARPS];
    DecodeDesc d = descs[blockIdx.x];
    const u8* h = d.block;
    const u8* payload = h + 32;
    int st = ST_OK;
    u32 codec = h[5], dt = h[6], len = get_u32(h + 8), plen = get_u32(h + 12), group = h[28] | (h[29] << 8);
    u32 want = codec == CODEC_INT8G ? get_u32(h + 20) : get_u32(h + 16);
    if (h[0] != 'L' || h[1] != 'T' || h[2] != 'B' || h[3] != 'K' || h[4] != 1) st = ST_MAGIC;
    else if (dt > DT_F32) st = ST_DTYPE;
    else if (codec > CODEC_INT8G) st = ST_CODEC;
    if (st == ST_OK) {
        int w = dtype_width(dt);
        u32 n = len / w, tail = len - n * w;
        if (codec == CODEC_RAW) {
            if (plen != len) st = ST_LENGTH;
            else {
                for (u32 i = threadIdx.x; i < len / 16; i += LTB_THREADS) ((uint4*)d.out)[i] = ((const uint4*)payload)[i];
                for (u32 i = (len / 16) * 16 + threadIdx.x; i < len; i += LTB_THREADS) d.out[i] = payload[i];
            }
        } else if (codec == CODEC_ZVC) {
            if (w == 1) st = zvc_decode<u8>(payload, plen, n, tail, d.out, prefix, scratch);
            else if (w == 2) st = zvc_decode<u16>(payload, plen, n, tail, (u16*)d.out, prefix, scratch);
            else st = zvc_decode<u32>(payload, plen, n, tail, (u32*)d.out, prefix, scratch);
            if (st == ST_OK && threadIdx.x < tail) d.out[n * w + threadIdx.x] = payload[plen - tail + threadIdx.x];
        } else {
            u32 groups = group ? (n + group - 1) / group : 0;
            if (dt == DT_U8 || group == 0 || plen != groups * 4 + n + tail) st = ST_LENGTH;
            else {
                const float* scales = (const float*)payload;
                const i8* q = (const i8*)(payload + groups * 4);
                for (u32 i = threadIdx.x; i < n; i += LTB_THREADS) store_elem(d.out, dt, i, (float)q[i] * scales[i / group]);
                if (threadIdx.x < tail) d.out[n * w + threadIdx.x] = payload[groups * 4 + n + threadIdx.x];
            }
        }
    }
    __syncthreads();
    if (st == ST_OK && block_ltsum(d.out, len, scratch) != want) st = ST_CHECKSUM;
    if (threadIdx.x == 0) status[blockIdx.x] = st;
}
