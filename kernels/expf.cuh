// expf on the GPU (ltblock/src/codec/expf.rs, docs/FORMAT.md): the exponents Huffman-coded in
// 256 streams, stream t holding the symbols of the vectors thread t owns (v = t + 256k), so a
// CTA decodes a block with each thread walking its own stream through a 4096-entry table in
// shared memory while its stores stay those of the other codecs (a warp writes 512 contiguous
// bytes). Included by ltblock.cu after its helpers (vec_terms, for_each_vector).
#pragma once

#define EXPF_L 12
#define EXPF_TABLE (1 << EXPF_L)
#define EXPF_STREAMS 256
#define EXPF_MAX_STREAM_BYTES 32512

// ---- symbols and rest (the table in FORMAT.md) ----
template <int dt>
__device__ __forceinline__ u32 expf_sym(u32 bits) {
    if (dt == DT_F16) { u32 hi = (bits >> 8) & 0xffu; return ((hi << 1) | (hi >> 7)) & 0xffu; }
    if (dt == DT_BF16) return (bits >> 7) & 0xffu;
    return (bits >> 23) & 0xffu;
}
template <int dt>
__device__ __forceinline__ u32 expf_rest(u32 bits) {
    if (dt == DT_F16) return bits & 0xffu;
    if (dt == DT_BF16) return (bits & 0x7fu) | ((bits >> 8) & 0x80u);
    return (bits & 0x7fffffu) | ((bits >> 8) & 0x800000u);
}
// The decoder's table entry of a symbol: the output bits the symbol stands for, already in
// their place (bf16: the exponent, sym << 7; f16: the high byte, hi << 8; f32: sym << 4, moved
// by the join), with the code length in the low 4 bits, which the join masks off. The join
// then ORs the entry into the rest's bits without taking the symbol apart.
template <int dt>
__device__ __forceinline__ u32 expf_entry(u32 sym, u32 l) {
    if (dt == DT_F16) return ((((sym >> 1) | (sym << 7)) & 0xffu) << 8) | l;
    if (dt == DT_BF16) return (sym << 7) | l;
    return (sym << 4) | l;
}
template <int dt>
__device__ __forceinline__ u32 expf_join(u32 e, u32 rest) {
    if (dt == DT_F16) return (e & 0xff00u) | (rest & 0xffu);
    if (dt == DT_BF16) return ((rest & 0x80u) << 8) | (e & 0x7f80u) | (rest & 0x7fu);
    return ((rest & 0x800000u) << 8) | ((e >> 4) << 23) | (rest & 0x7fffffu);
}
// Two 16-bit elements, one output word: rest bytes k and k + 1 of `rest` (sel = 0x4140 for
// k = 0, 0x4342 for k = 2 puts them at bytes 0 and 2) joined with their entries.
template <int dt>
__device__ __forceinline__ u32 expf_join2(u32 e0, u32 e1, u32 rest, u32 sel) {
    u32 x = __byte_perm(rest, 0, sel);
    if (dt == DT_F16) return x | (e0 & 0xff00u) | ((e1 & 0xff00u) << 16);
    return (x & 0x007f007fu) | ((x & 0x00800080u) << 8) | (e0 & 0x7f80u) | ((e1 & 0x7f80u) << 16);
}
template <typename T>
__device__ __forceinline__ u32 expf_rest_width() { return sizeof(T) == 4 ? 3 : 1; }

// Element j of a 16-byte vector (E = 16 / sizeof(T) elements), zero-extended.
template <typename T>
__device__ __forceinline__ u32 vec_elem(const uint4& x, u32 j) {
    const u32 w[4] = {x.x, x.y, x.z, x.w};
    if (sizeof(T) == 4) return w[j];
    return (w[j / 2] >> (16 * (j % 2))) & 0xffffu;
}

// Symbols in stream t of a block of n elements (ltblock expf::stream_count).
template <typename T>
__device__ __forceinline__ u32 expf_stream_count(u32 n, u32 t) {
    const u32 E = 16 / sizeof(T);
    u32 vecs = (n + E - 1) / E;
    if (t >= vecs) return 0;
    u32 mine = (vecs - 1 - t) / EXPF_STREAMS + 1, last = t + (mine - 1) * EXPF_STREAMS;
    return (mine - 1) * E + min(n - last * E, E);
}

// ---- the encoder ----
// Its tables live in the pack kernel's region (PackSmem::prefix, >= EXPF_REGION_WORDS words,
// free until zvc's compaction, which never runs for an expf block):
//   phase 1: per-warp histograms, 8 x 128 words (two 16-bit counts a word, s at word s % 128,
//            half s / 128: a warp counts at most 4096 + 7 elements);
//   after:   keys[256] (the present symbols' sort keys) | hf[256] (Huffman work; then
//            ce[s] = code << 4 | length) | hs[256] (u8, sorted symbols) | ln[256] (u8) |
//            tb[256] (stream byte offsets) | warp_count[8] | len_count[8][EXPF_L + 1]
#define EXPF_REGION_WORDS 1024
struct ExpfTables {
    u32* hist;
    u32* keys;
    u32* hf;
    u32* ce;
    u8* hs;
    u8* ln;
    u32* tb;
    u32* warp_count;
    u32* len_count;
};
__device__ __forceinline__ ExpfTables expf_tables(u32* region) {
    ExpfTables x;
    x.hist = region;
    x.keys = region;
    x.hf = region + 256;
    x.ce = region + 256;
    x.hs = (u8*)(region + 512);
    x.ln = (u8*)(region + 576);
    x.tb = region + 640;
    x.warp_count = region + 896;
    x.len_count = region + 904;  // to 904 + 8 * 13 = 1008 <= EXPF_REGION_WORDS
    return x;
}

struct ExpfShared {
    u32 lo, nsyms, ok, total;
    u32 base[EXPF_L + 1];  // base[l]: 12-bit position where codes of length l start
};

// Moffat and Katajainen's in-place minimum-redundancy lengths of a[0..n) (ascending
// frequencies, n >= 2), then limited to EXPF_L and given back by frequency, into ln[] and
// base[] (ltblock expf::{minimum_redundancy, limit_lengths, code_lengths}: the same lengths).
// All lanes of one warp call; returns false (on every lane) when the lengths cannot be limited.
// The CTA waits while one warp does this, and a trained f16 block has 116-155 symbols (normal
// weights ~92), so each pass is cut to what cannot be spread (docs/PERF.md P84-P85):
// - the tree's merge stays sequential (lane 0), but the heads of its two queues are kept in
//   registers and loaded a place ahead, so a step waits for no load;
// - the internal nodes' depths come by pointer jumping over the warp (at most eight rounds for
//   at most 255 nodes), not by a walk down the n - 1 parent links one load after another;
// - the leaves at depth d are 2 I(d-1) - I(d) for I(d) internal nodes at depth d (each internal
//   node has two children): I(d) for d < EXPF_L from byte counters summed over the warp;
// - the limit's rounds that split a leaf of length EXPF_L - 1 run as one step (each moves one
//   leaf from EXPF_L - 1 to EXPF_L, as the CPU's rounds do one at a time).
__device__ bool expf_huffman(u32* a, const u8* hs, u32 n, u8* ln, u32* base) {
    static_assert(EXPF_L <= 12, "I(d) for d < EXPF_L fits three words of byte counters");
    u32 lane = threadIdx.x % 32;
    if (lane == 0) {
        // The two queues' heads in registers (frequencies are at most 32768, so NONE marks an
        // empty place): r0, r1 the next unconsumed internal nodes root, root + 1 (finished ones
        // only: nodes below next), l0, l1 the leaves leaf, leaf + 1. A pick shifts its queue and
        // loads the place behind, which no pick of this step waits for; the new node joins the
        // internal queue from its register. Leaves at and past `leaf` are never written (leaf
        // > next), so their loads need no order; "leaf >= n ||" and "root < next &&" of the
        // CPU's picks are the NONE compares.
        const u32 NONE = 0xffffffffu;
        a[0] += a[1];
        u32 root = 0, leaf = 2;
        u32 r0 = a[0], r1 = NONE, l0 = n > 2 ? a[2] : NONE, l1 = n > 3 ? a[3] : NONE;
        for (u32 next = 1; next < n - 1; next++) {
            u32 f = 0;
#pragma unroll
            for (u32 pick = 0; pick < 2; pick++) {
                if (r0 < l0) {
                    f += r0; a[root] = next; root++;
                    r0 = r1; r1 = root + 1 < next ? a[root + 1] : NONE;
                } else {
                    f += l0; leaf++;
                    l0 = l1; l1 = leaf + 1 < n ? a[leaf + 1] : NONE;
                }
            }
            a[next] = f;
            if (root == next) r0 = f;
            else if (root + 1 == next) r1 = f;
        }
    }
    __syncwarp();
    // depths: a[i] (i < n - 2) is node i's parent, n - 2 the root; lane holds nodes lane + 32k,
    // each as depth << 16 | parent (one register a node: the kernel runs at its register cap)
    // (slots: the warp's nodes a lane, uniform, so a block of few symbols does only its own)
    const u32 m = n - 1, R = n - 2, slots = (m + 31) / 32;
    u32 pd[8];
#pragma unroll
    for (u32 k = 0; k < 8; k++) {
        u32 i = lane + 32 * k;
        pd[k] = i < R ? 1u << 16 | a[i] : R;
    }
    __syncwarp();  // every parent read before the first round writes
    for (;;) {
        bool more = false;
#pragma unroll
        for (u32 k = 0; k < 8; k++) more |= k < slots && lane + 32 * k < m && (pd[k] & 0xffffu) != R;
        if (!__any_sync(FULL_MASK, more)) break;
#pragma unroll
        for (u32 k = 0; k < 8; k++) {
            if (k == slots) break;
            if (lane + 32 * k < m) a[lane + 32 * k] = pd[k];
        }
        __syncwarp();
#pragma unroll
        for (u32 k = 0; k < 8; k++) {
            if (k == slots) break;
            if (lane + 32 * k < m) { u32 q = a[pd[k] & 0xffffu]; pd[k] = ((pd[k] & 0xffff0000u) + (q & 0xffff0000u)) | (q & 0xffffu); }
        }
        __syncwarp();
    }
    u32 c[3] = {0, 0, 0};  // I(d) for d < 12, a byte each (I(d) <= n - 1 <= 255)
#pragma unroll
    for (u32 k = 0; k < 8; k++) {
        u32 d = pd[k] >> 16, inc = 1u << (8 * (d % 4));
        bool in = lane + 32 * k < m;
#pragma unroll
        for (u32 w = 0; w < 3; w++) c[w] += in && d - 4 * w < 4 ? inc : 0;
    }
#pragma unroll
    for (u32 w = 0; w < 3; w++)
        for (u32 off = 16; off > 0; off >>= 1) c[w] += __shfl_xor_sync(FULL_MASK, c[w], off);
    // lane d <= EXPF_L: I(d), then bl[d], the leaves of length d (those deeper: EXPF_L)
    u32 internal = lane < EXPF_L ? ((lane < 4 ? c[0] : lane < 8 ? c[1] : c[2]) >> (8 * (lane % 4))) & 0xffu : 0;
    u32 above = __shfl_up_sync(FULL_MASK, internal, 1);
    u32 bl = lane >= 1 && lane < EXPF_L ? 2 * above - internal : 0;
    u32 shorter = bl;
    for (u32 off = 16; off > 0; off >>= 1) shorter += __shfl_xor_sync(FULL_MASK, shorter, off);
    if (lane == EXPF_L) bl = n - shorter;
    auto weight = [&](u32 b) { return lane >= 1 && lane <= EXPF_L ? b << (EXPF_L - lane) : 0u; };
    u32 total = weight(bl);
    for (u32 off = 16; off > 0; off >>= 1) total += __shfl_xor_sync(FULL_MASK, total, off);
    while (total > (1u << EXPF_L)) {  // uniform: as the CPU's rounds, k of them at once
        if (__shfl_sync(FULL_MASK, bl, EXPF_L) == 0) return false;
        u32 has = __ballot_sync(FULL_MASK, lane >= 1 && lane < EXPF_L && bl > 0);
        if (has == 0) return false;
        u32 d = 31 - __clz(has);
        // a round at d = EXPF_L - 1 leaves the rounds after it at d again (one leaf fewer there,
        // one more at EXPF_L), so they run together while leaves and excess last
        u32 k = d == EXPF_L - 1 ? min(__shfl_sync(FULL_MASK, bl, d), total - (1u << EXPF_L)) : 1;
        if (lane == EXPF_L) bl -= k;
        if (lane == d) bl -= k;
        if (lane == d + 1) bl += 2 * k;
        total -= k;
    }
    // base[d]: where codes of length d start; cum: the leaves of length <= d
    u32 w = weight(bl), start = w, cum = bl;
    for (u32 off = 1; off < 32; off <<= 1) {
        u32 s = __shfl_up_sync(FULL_MASK, start, off), c = __shfl_up_sync(FULL_MASK, cum, off);
        if (lane >= off) { start += s; cum += c; }
    }
    if (lane >= 1 && lane <= EXPF_L) base[lane] = start - w;
    u32 upto[EXPF_L + 1];
#pragma unroll
    for (u32 d = 1; d <= EXPF_L; d++) upto[d] = __shfl_sync(FULL_MASK, cum, d);
    // the symbol of rank k (ascending frequency) is the (n-1-k)th most frequent: the most
    // frequent take the shortest codes
    for (u32 k = lane; k < n; k += 32) {
        u32 p = n - 1 - k, d = 1;
#pragma unroll
        for (u32 e = 1; e < EXPF_L; e++) d += upto[e] <= p;
        ln[hs[k]] = (u8)d;
    }
    return true;
}

// The symbols of stream t (thread t), in order, from the staged block: `pair(s0, s1)` for each
// two of a whole vector (E is even), `one(s)` for each of the partial vector's whole elements.
template <typename T, int dt, typename P, typename O>
__device__ __forceinline__ void expf_each_symbol(const u8* stage, u32 n, P pair, O one) {
    const u32 E = 16 / sizeof(T);
    u32 nvec = n / E;  // whole vectors of whole elements
#pragma unroll 2
    for (u32 v = threadIdx.x; v < nvec; v += EXPF_STREAMS) {
        uint4 x = ((const uint4*)stage)[v];
#pragma unroll
        for (u32 j = 0; j < E; j += 2) pair(expf_sym<dt>(vec_elem<T>(x, j)), expf_sym<dt>(vec_elem<T>(x, j + 1)));
    }
    if (nvec * E < n && threadIdx.x == nvec % EXPF_STREAMS)
        for (u32 i = nvec * E; i < n; i++) one(expf_sym<dt>((u32)((const T*)stage)[i]));
}

// Adds the block's symbols to this warp's histogram (two 16-bit counts a word: symbol s in
// the half s / 128 of word s % 128, so that neighbours, which f16's sign bit makes of every
// value's two signs, never share a word; with s / 2 its encode ran at 17.5% of copy, now 19.5%:
// docs/PERF.md P34). bf16 and f32:
// the exponents of a block are concentrated (for normal weights the four most common hold 85%
// of it), so shared-memory atomics, one a symbol, queue the lanes of a warp on the same words
// (and a warp match to add once a symbol cost 22 instructions an element, a third of the
// encode: docs/PERF.md P27). Each thread counts in registers instead: eight 8-bit counters
// (a thread holds at most VPT * 8 = 128 symbols) for the window of symbols [top - 7, top],
// top one above the largest exponent of its first vector (so the window holds 98% of normal
// weights), with an atomic only for a symbol outside it, and adds the counters at the end.
// f16's symbols hold the sign and two mantissa bits too, so a window of eight would hold a
// quarter of them: one atomic a symbol, which lanes seldom share.
template <typename T, int dt>
__device__ __forceinline__ void expf_count(const u8* stage, u32 n, u32* mine) {
    const u32 E = 16 / sizeof(T);
    static_assert(VPT * 16 / sizeof(T) < 256, "a thread's count of one symbol fits 8 bits");
    u32 nvec = n / E;
    auto add = [&](u32 sy, u32 c) { atomicAdd(&mine[sy % 128], c << (16 * (sy / 128))); };
    if (dt == DT_F16) {
        for (u32 v = threadIdx.x; v < nvec; v += EXPF_STREAMS) {
            uint4 x = ((const uint4*)stage)[v];
#pragma unroll
            for (u32 j = 0; j < E; j++) add(expf_sym<dt>(vec_elem<T>(x, j)), 1);
        }
    } else if (threadIdx.x < nvec) {
        uint4 x0 = ((const uint4*)stage)[threadIdx.x];
        u32 top = 0;
#pragma unroll
        for (u32 j = 0; j < E; j++) top = max(top, expf_sym<dt>(vec_elem<T>(x0, j)));
        top = min(max(top + 1, 7u), 255u);
        u32 lo = 0, hi = 0;  // the counts of top - 0..3 and top - 4..7, a byte each
#pragma unroll 2
        for (u32 v = threadIdx.x; v < nvec; v += EXPF_STREAMS) {
            uint4 x = ((const uint4*)stage)[v];
#pragma unroll
            for (u32 j = 0; j < E; j++) {
                u32 sy = expf_sym<dt>(vec_elem<T>(x, j)), d = top - sy;  // above top: d wraps, out
                u32 inc = 1u << ((d & 3) * 8);
                lo += d < 4 ? inc : 0;
                hi += d - 4 < 4 ? inc : 0;
                if (d >= 8) add(sy, 1);
            }
        }
#pragma unroll
        for (u32 d = 0; d < 8; d++) {
            u32 c = ((d < 4 ? lo : hi) >> (8 * (d % 4))) & 0xffu;
            if (c) add(top - d, c);
        }
    }
    if (nvec * E < n && threadIdx.x == nvec % EXPF_STREAMS)  // the partial vector's whole elements
        for (u32 i = nvec * E; i < n; i++) add(expf_sym<dt>((u32)((const T*)stage)[i]), 1);
}

// The smallest payload expf could have (every symbol one bit): ltblock expf::min_payload_len.
template <typename T>
__device__ __forceinline__ u32 expf_min_len(u32 n, u32 tail, u32* scratch) {
    u32 bytes = (expf_stream_count<T>(n, threadIdx.x) + 7) / 8;
    return n * expf_rest_width<T>() + 4 + 1 + EXPF_STREAMS + block_sum_u32(bytes, scratch) + tail;
}

// The expf payload length of the staged block (0xffffffff when expf does not apply), its
// code left in the tables for expf_write. All threads call.
template <typename T, int dt>
__device__ u32 expf_analyse(u32 len, const u8* stage, u32* region, ExpfShared& xs, u32* scratch) {
    const u32 w = sizeof(T);
    u32 n = len / w, tail = len - n * w;
    ExpfTables x = expf_tables(region);
    u32 warp = threadIdx.x / 32;
    for (u32 i = threadIdx.x; i < EXPF_REGION_WORDS; i += LTB_THREADS) x.hist[i] = 0;
    __syncthreads();
    u32* mine = x.hist + warp * 128;
    expf_count<T, dt>(stage, n, mine);
    __syncthreads();
    u32 s = threadIdx.x, c = 0;
    for (u32 wp = 0; wp < LTB_WARPS; wp++) c += (x.hist[wp * 128 + s % 128] >> (16 * (s / 128))) & 0xffffu;
    __syncthreads();
    // the symbol's sort key, count then symbol (a count is at most 32768, so 24 bits), 0 when
    // absent: its rank among the present symbols is the number of smaller non-zero keys, which
    // (key - 1 < mine - 1) counts with one compare (an absent key wraps past every present one)
    u32 key = c ? (c << 8) | s : 0;
    x.ln[s] = 0;
    // the present keys packed to the front of x.keys (a thread's place: the present symbols
    // below it, in its warp by ballot and in the warps before by their counts), so that a
    // rank compares against the present keys only (f16's symbols hold two mantissa bits and
    // the sign, so they spread over ~200 values of which a trained block uses 116-155)
    u32 lane = threadIdx.x % 32, below = (1u << lane) - 1;
    u32 have = __ballot_sync(FULL_MASK, c != 0);
    if (lane == 0) x.warp_count[warp] = __popc(have);
    for (u32 i = threadIdx.x; i < LTB_WARPS * (EXPF_L + 1); i += LTB_THREADS) x.len_count[i] = 0;
    u32 lo_inv = c ? 256 - s : 0, hi1 = c ? s + 1 : 0, present = c ? 1 : 0;
    block_reduce3(lo_inv, hi1, present, max_u32, max_u32, add_u32, scratch);  // synchronises
    u32 lo = 256 - lo_inv, hi = hi1 - 1;
    auto before_warp = [&](const u32* counts, u32 stride) {
        u32 r = 0;
        for (u32 wp = 0; wp < warp; wp++) r += counts[wp * stride];
        return r;
    };
    if (c) x.keys[before_warp(x.warp_count, 1) + __popc(have & below)] = key;
    if (threadIdx.x < 3) x.keys[present + threadIdx.x] = 0;  // to a whole uint4
    __syncthreads();
    if (c) {  // rank by (count, symbol) among the present symbols, four keys a load
        u32 rank = 0, mine = key - 1;
        for (u32 o = 0; o < (present + 3) / 4; o++) {
            uint4 k = ((const uint4*)x.keys)[o];
            rank += (k.x - 1 < mine) + (k.y - 1 < mine) + (k.z - 1 < mine) + (k.w - 1 < mine);
        }
        x.hf[rank] = c;
        x.hs[rank] = (u8)s;
    }
    __syncthreads();
    if (threadIdx.x < 32) {  // warp 0
        bool ok = true;
        if (present == 1) {
            if (threadIdx.x == 0) { x.ln[x.hs[0]] = 1; xs.base[1] = 0; }
        } else {
            ok = expf_huffman(x.hf, x.hs, present, x.ln, xs.base);
        }
        if (threadIdx.x == 0) { xs.lo = lo; xs.nsyms = hi - lo + 1; xs.ok = ok; }
    }
    __syncthreads();
    // canonical codes: base of the length, plus the rank among the lower symbols of that
    // length (in the warp: those of its lanes below with the same length; before it: the
    // warps' counts of each length)
    u32 l = x.ln[s];
    u32 same = __match_any_sync(FULL_MASK, l);
    if (l && (same & below) == 0) x.len_count[warp * (EXPF_L + 1) + l] = __popc(same);
    __syncthreads();
    if (l) {
        u32 r = before_warp(x.len_count + l, EXPF_L + 1) + __popc(same & below);
        x.ce[s] = (((xs.base[l] >> (EXPF_L - l)) + r) << 4) | l;
    }
    __syncthreads();
    u32 bits = 0;
    auto one = [&](u32 sy) { bits += x.ce[sy] & 15u; };
    expf_each_symbol<T, dt>(stage, n, [&](u32 s0, u32 s1) { one(s0); one(s1); }, one);
    u32 bytes = (bits + 7) / 8;
    x.tb[threadIdx.x] = bytes;
    __syncthreads();
    u32 total = block_exclusive_scan(x.tb, EXPF_STREAMS, scratch);  // synchronises
    if (threadIdx.x == 0) xs.total = total;
    bool ok = xs.ok && total <= EXPF_MAX_STREAM_BYTES;
    return ok ? n * expf_rest_width<T>() + 4 + (xs.nsyms + 1) / 2 + EXPF_STREAMS + total + tail : 0xffffffffu;
}

// Writes thread t's stream to global memory from byte address p on, MSB first: whole words
// where they lie inside the stream, bytes at its two ends (the neighbours' streams share
// those words).
struct ExpfBitWriter {
    u8* p;       // the stream's first byte
    u32* base;   // the aligned word holding it
    u32 pre;     // bytes of that word before the stream
    u64 acc;
    u32 nacc;    // bits in acc (the first word counts its `pre` bytes as bits already there)
    u32 word;    // words emitted
    __device__ __forceinline__ void init(u8* start) {
        p = start;
        pre = (u32)((size_t)start & 3);
        base = (u32*)(start - pre);
        acc = 0; nacc = 8 * pre; word = 0;
    }
    __device__ __forceinline__ void bytes_of(u32 w, u32 from, u32 to) {
        for (u32 k = from; k < to; k++) ((u8*)base)[4 * word + k] = (u8)(w >> (24 - 8 * k));
    }
    __device__ __forceinline__ void put(u32 code, u32 len) {
        acc = (acc << len) | code;
        nacc += len;
        if (nacc >= 32) {
            u32 w = (u32)(acc >> (nacc - 32));
            if (word == 0 && pre) bytes_of(w, pre, 4);
            else base[word] = __byte_perm(w, 0, 0x0123);
            word++;
            nacc -= 32;
        }
    }
    __device__ __forceinline__ void finish() {
        if (nacc == 0) return;
        u32 w = (u32)(acc << (32 - nacc));
        bytes_of(w, word == 0 ? pre : 0, (nacc + 7) / 8);
    }
};

// The expf payload of the staged block (its code from expf_analyse) at `payload`.
template <typename T, int dt>
__device__ void expf_write(u8* payload, u32 len, const u8* stage, u32* region, const ExpfShared& xs) {
    const u32 E = 16 / sizeof(T), w = sizeof(T), r = expf_rest_width<T>();
    u32 n = len / w, tail = len - n * w, nvec = n / E;
    ExpfTables x = expf_tables(region);
    u32 A = n * r, nib = A + 4, lens_at = nib + (xs.nsyms + 1) / 2, streams_at = lens_at + EXPF_STREAMS;
    // the rest plane: E rest values a vector, one store (16-bit dtypes) or three (f32)
    for (u32 v = threadIdx.x; v < nvec; v += LTB_THREADS) {
        uint4 q = ((const uint4*)stage)[v];
        if constexpr (sizeof(T) == 2) {
            u32 b[8];
#pragma unroll
            for (u32 j = 0; j < 8; j++) b[j] = expf_rest<dt>(vec_elem<T>(q, j));
            ((uint2*)payload)[v] = make_uint2(b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24), b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24));
        } else {
            u32 b[4];
#pragma unroll
            for (u32 j = 0; j < 4; j++) b[j] = expf_rest<dt>(vec_elem<T>(q, j));
            u32* o = (u32*)(payload + 12 * v);
            o[0] = b[0] | (b[1] << 24);
            o[1] = (b[1] >> 8) | (b[2] << 16);
            o[2] = (b[2] >> 16) | (b[3] << 8);
        }
    }
    for (u32 i = nvec * E + threadIdx.x; i < n; i += LTB_THREADS) {
        u32 rest = expf_rest<dt>((u32)((const T*)stage)[i]);
        for (u32 k = 0; k < r; k++) payload[i * r + k] = (u8)(rest >> (8 * k));
    }
    // the code header, its lengths, the stream lengths
    if (threadIdx.x == 0) { payload[A] = (u8)xs.lo; payload[A + 1] = (u8)(xs.nsyms - 1); payload[A + 2] = 0; payload[A + 3] = 0; }
    for (u32 j = threadIdx.x; j < (xs.nsyms + 1) / 2; j += LTB_THREADS) {
        u32 s0 = xs.lo + 2 * j, lo4 = x.ln[s0], hi4 = 2 * j + 1 < xs.nsyms ? x.ln[s0 + 1] : 0;
        payload[nib + j] = (u8)(lo4 | (hi4 << 4));
    }
    u32 t = threadIdx.x;
    u32 off = x.tb[t], end = t + 1 < EXPF_STREAMS ? x.tb[t + 1] : xs.total;
    payload[lens_at + t] = (u8)(end - off);
    // thread t's stream
    ExpfBitWriter bw;
    bw.init(payload + streams_at + off);
    // two codes a put (at most 24 bits): half the checks for a whole word, which some lane of
    // a warp has at almost every symbol (a third of the encode's instructions went to the
    // writer with one code a put, docs/PERF.md P27)
    auto pair = [&](u32 s0, u32 s1) {
        u32 e0 = x.ce[s0], e1 = x.ce[s1], l1 = e1 & 15u;
        bw.put(((e0 >> 4) << l1) | (e1 >> 4), (e0 & 15u) + l1);
    };
    expf_each_symbol<T, dt>(stage, n, pair, [&](u32 sy) { u32 e = x.ce[sy]; bw.put(e >> 4, e & 15u); });
    bw.finish();
    if (t < tail) payload[streams_at + xs.total + t] = stage[n * w + t];
}

// A vector's rest bytes in the payload's rest plane: 8 (16-bit dtypes) or 12 (f32), read
// once (the non-coherent path: nothing writes the payload during a decode).
#ifndef EXPF_AHEAD
#define EXPF_AHEAD 4
#endif
template <typename T>
struct ExpfRest { u32 w[sizeof(T) == 2 ? 2 : 3]; };
template <typename T>
__device__ __forceinline__ ExpfRest<T> expf_load_rest(const u8* payload, u32 v) {
    ExpfRest<T> r;
    if constexpr (sizeof(T) == 2) { uint2 q = __ldg((const uint2*)payload + v); r.w[0] = q.x; r.w[1] = q.y; }
    else { const u32* q = (const u32*)(payload + 12 * v); r.w[0] = __ldg(q); r.w[1] = __ldg(q + 1); r.w[2] = __ldg(q + 2); }
    return r;
}

// ---- the decoder ----
// Shared memory (ltb_decode_blocks's arrays, reused): the table (4096 u16) in `prefix`;
// stream offsets, interval starts and entries, lengths and per-warp counts in `maskw`; the
// streams in `stage`.
struct ExpfDecode {
    u32 nib, lens_at, streams_at, total;  // payload offsets of the code lengths, stream lengths, streams; stream bytes
    u32 stage_from_off;                   // the stage holds the payload from this offset on
    u32 zero_word;                                          // a zero word after the staged streams
};

// Validates the code and stream lengths, builds the table, stages the streams. Returns a
// status (uniform over the CTA). All threads call.
template <typename T, int dt>
__device__ __forceinline__ int expf_prepare(const u8* payload, u32 plen, u32 len, u16* table, u32* aux, uint4* stage, u32 stage_vecs, u32* scratch, ExpfDecode& xd, int* bad, ExpfRest<T>* ring) {
    const u32 w = sizeof(T), r = expf_rest_width<T>();
    u32 n = len / w, tail = len - n * w, A = n * r;
    u32* off = aux;                       // 256 stream offsets (exclusive scan of the lengths)
    u16* sstart = (u16*)(aux + 256);      // interval start of the k-th code in canonical order
    u16* sentry = (u16*)(aux + 384);      // its table entry
    u8* ln = (u8*)(aux + 512);            // length of symbol lo + j
    u32* cntw = aux + 576;                // [warp][length] counts
    u32* base = aux + 704;                // [length]: first 12-bit position; [EXPF_L + 1 + l]: first rank
    if (n == 0 || (u64)A + 4 > plen) return ST_LENGTH;
    // the rest plane lies inside the payload now: the decode's first rest words load while the
    // code and the table are made (their latency was the decode's first stall)
    const u32 nvec = n / (16 / w);
#pragma unroll
    for (u32 k = 0; k < EXPF_AHEAD; k++)
        if (threadIdx.x + k * LTB_THREADS < nvec) ring[k] = expf_load_rest<T>(payload, threadIdx.x + k * LTB_THREADS);
    u32 lo = payload[A], nsyms = payload[A + 1] + 1u;
    if (lo + nsyms > 256 || payload[A + 2] || payload[A + 3]) return ST_LENGTH;
    u32 nib = A + 4, lens_at = nib + (nsyms + 1) / 2, streams_at = lens_at + EXPF_STREAMS;
    if (streams_at > plen) return ST_LENGTH;
    u32 t = threadIdx.x, warp = t / 32, lane = t % 32;
    if (t == 0) *bad = 0;
    for (u32 i = t; i < 8 * 16; i += LTB_THREADS) cntw[i] = 0;
    u32 l = 0;
    if (t < nsyms) {
        l = (payload[nib + t / 2] >> (4 * (t % 2))) & 15u;
        ln[t] = (u8)l;
    }
    u32 mylen = payload[lens_at + t];
    off[t] = mylen;
    __syncthreads();
    bool wrong = t < nsyms && l > EXPF_L;
    if (t == 0) wrong |= ln[0] == 0 || ln[nsyms - 1] == 0 || ((nsyms & 1) && (payload[nib + nsyms / 2] >> 4));
    // in-warp rank of each symbol among those of its length, and per-warp counts
    u32 same = __match_any_sync(FULL_MASK, t < nsyms ? l : 0xffu);
    u32 rank_in_warp = __popc(same & ((1u << lane) - 1));
    if (t < nsyms && l && rank_in_warp == 0 && l <= EXPF_L) cntw[warp * 16 + l] = __popc(same);
    if (wrong) atomicOr((u32*)bad, 1u);
    u32 total = block_exclusive_scan(off, EXPF_STREAMS, scratch);  // synchronises
    if (t == 0) {
        u32 pos = 0, k = 0;
        for (u32 d = 1; d <= EXPF_L; d++) {
            u32 c = 0;
            for (u32 wp = 0; wp < LTB_WARPS; wp++) c += cntw[wp * 16 + d];
            base[d] = pos;
            base[EXPF_L + 1 + d] = k;
            pos += c << (EXPF_L - d);
            k += c;
        }
        base[0] = pos;  // the end of the last interval (<= 4096 for a code that is not over-full)
        base[EXPF_L + 1] = k;
        if (pos > EXPF_TABLE) *bad = 1;
    }
    __syncthreads();
    if (*bad || total > EXPF_MAX_STREAM_BYTES || (u64)streams_at + total + tail != plen) return ST_LENGTH;
    u32 m = base[EXPF_L + 1];  // codes
    if (t < nsyms && l) {
        u32 before = 0;
        for (u32 wp = 0; wp < warp; wp++) before += cntw[wp * 16 + l];
        u32 rk = before + rank_in_warp;
        u32 k = base[EXPF_L + 1 + l] + rk;
        sstart[k] = (u16)(base[l] + (rk << (EXPF_L - l)));
        sentry[k] = (u16)expf_entry<dt>(lo + t, l);
    }
    // the streams, staged with 16-byte loads from the boundary before them
    u64 from = (u64)(payload + streams_at) & ~(u64)15;
    u32 nv = (u32)(((u64)(payload + streams_at + total) - from + 15) / 16);
    if (nv + 1 > stage_vecs) return ST_LENGTH;  // cannot happen for total <= EXPF_MAX_STREAM_BYTES
    for (u32 i = t; i < nv; i += LTB_THREADS) stage[i] = ((const uint4*)from)[i];
    if (t == 0) stage[nv] = make_uint4(0, 0, 0, 0);
    __syncthreads();
    // the table: thread t fills entries [16t, 16t + 16), finding the interval of the first
    // by a binary search over the starts (ascending in canonical order)
    u32 v0 = t * (EXPF_TABLE / LTB_THREADS);
    u32 a = 0, b = m;  // the last k with sstart[k] <= v0 lies in [a, b)
    while (b - a > 1) { u32 mid = (a + b) / 2; if (sstart[mid] <= v0) a = mid; else b = mid; }
    u32 k = a, end = base[0];
#pragma unroll 4
    for (u32 v = v0; v < v0 + EXPF_TABLE / LTB_THREADS; v++) {
        while (k + 1 < m && sstart[k + 1] <= v) k++;
        table[v] = v < end ? sentry[k] : 0;
    }
    xd.nib = nib; xd.lens_at = lens_at; xd.streams_at = streams_at; xd.total = total;
    xd.stage_from_off = (u32)(from - (u64)payload);  // payload is 16-byte aligned: from >= payload
    xd.zero_word = nv * 4;
    __syncthreads();
    return ST_OK;
}

// One stream's reader over the staged bytes (MSB first, 32-bit words byte-swapped).
struct ExpfReader {
    const u32* words;
    u32 wi, zero_word;
    u64 buf;
    int nb;
    __device__ __forceinline__ u32 next_word() {
        u32 w = words[min(wi, zero_word)];  // never past the zero word after the staged streams
        wi++;
        return __byte_perm(w, 0, 0x0123);
    }
    __device__ __forceinline__ void init(const u8* stage, u32 at, u32 zw) {
        words = (const u32*)stage;
        zero_word = zw;
        wi = at / 4;
        u32 skip = 8 * (at % 4);
        buf = (u64)next_word() << (32 + skip);
        nb = 32 - (int)skip;
    }
    // At least 32 bits in buf afterwards (a word comes in when fewer are there), so the two
    // codes that follow (at most 2 * EXPF_L = 24 bits) need no check of their own. No branch:
    // some lane of a warp needs a word at almost every refill anyway.
    __device__ __forceinline__ void refill() {
        u32 w = __byte_perm(words[min(wi, zero_word)], 0, 0x0123);
        bool in = nb < 32;
        buf |= in ? (u64)w << (32 - nb) : 0ull;
        wi += in;
        nb += in ? 32 : 0;
    }
    // One code (a refill before it): its table entry. A zero length is no code.
    __device__ __forceinline__ u32 take(const u16* table, bool& wrong) {
        u32 e = table[(u32)(buf >> (64 - EXPF_L))];
        u32 l = e & 15u;
        wrong |= l == 0;
        buf <<= l;
        nb -= (int)l;
        return e;
    }
};

// Decodes thread t's vectors of an expf block (prepared) into out; returns its checksum terms.
// The thread that owns the partial vector also writes it and the raw tail, with their terms.
template <typename T, int dt>
__device__ __forceinline__ u32 expf_decode(const u8* payload, u32 len, const u16* table, const u32* off, const u8* stage, const ExpfDecode& xd, u8* out, int* bad, ExpfRest<T>* ring) {
    const u32 E = 16 / sizeof(T), w = sizeof(T);
    u32 n = len / w, nvec = n / E, t = threadIdx.x;
    u32 my_off = off[t], my_len = (t + 1 < EXPF_STREAMS ? off[t + 1] : xd.total) - my_off;
    u32 at = xd.streams_at - xd.stage_from_off + my_off;  // the stream's first byte in the stage
    ExpfReader rd;
    rd.init(stage, at, xd.zero_word);
    u32 wi0 = at / 4, skip = 8 * (at % 4), sum = 0;
    bool wrong = false;
    // The rest bytes come from global memory while the exponents come from the staged
    // streams: EXPF_AHEAD vectors' rest words are loaded ahead in a ring of registers (the
    // first ones by expf_prepare), so their latency hides behind the table walks before them.
#pragma unroll 1
    for (u32 v0 = t; v0 < nvec; v0 += EXPF_AHEAD * LTB_THREADS) {
#pragma unroll
        for (u32 k = 0; k < EXPF_AHEAD; k++) {
            u32 v = v0 + k * LTB_THREADS;
            if (v >= nvec) break;
            ExpfRest<T> rest = ring[k];
            if (v + EXPF_AHEAD * LTB_THREADS < nvec) ring[k] = expf_load_rest<T>(payload, v + EXPF_AHEAD * LTB_THREADS);
            u32 o[4];
            if constexpr (sizeof(T) == 2) {
#pragma unroll
                for (u32 j = 0; j < 4; j++) {  // output word j: elements 2j and 2j + 1
                    rd.refill();
                    u32 e0 = rd.take(table, wrong), e1 = rd.take(table, wrong);
                    o[j] = expf_join2<dt>(e0, e1, rest.w[j / 2], j % 2 ? 0x4342u : 0x4140u);
                }
            } else {
                u32 r24[4] = {rest.w[0] & 0xffffffu, (rest.w[0] >> 24) | ((rest.w[1] & 0xffffu) << 8), (rest.w[1] >> 16) | ((rest.w[2] & 0xffu) << 16), rest.w[2] >> 8};
#pragma unroll
                for (u32 j = 0; j < 4; j += 2) {
                    rd.refill();
                    u32 e0 = rd.take(table, wrong), e1 = rd.take(table, wrong);
                    o[j] = expf_join<dt>(e0, r24[j]);
                    o[j + 1] = expf_join<dt>(e1, r24[j + 1]);
                }
            }
            uint4 q = make_uint4(o[0], o[1], o[2], o[3]);
            ((uint4*)out)[v] = q;
            sum += vec_terms(q, v);
        }
    }
    if (len % 16 && t == (len / 16) % LTB_THREADS) {
        // bytes [16 * (len / 16), len): the partial vector's whole elements (if any), then the raw tail
        u32 start = len / 16 * 16, body = n * w;
        u8 bytes[16];
        for (u32 i = start / w; i < n; i++) {
            u32 rest = 0;
            for (u32 k = 0; k < expf_rest_width<T>(); k++) rest |= (u32)payload[i * expf_rest_width<T>() + k] << (8 * k);
            rd.refill();
            u32 bits = expf_join<dt>(rd.take(table, wrong), rest);
            for (u32 k = 0; k < w; k++) bytes[i * w + k - start] = (u8)(bits >> (8 * k));
        }
        for (u32 p = body; p < len; p++) bytes[p - start] = payload[xd.streams_at + xd.total + (p - body)];
        for (u32 p = start; p < len; p++) out[p] = bytes[p - start];
        for (u32 p = start; p < len; p += 4) {
            u32 word = 0;
            for (u32 k = 0; k < 4 && p + k < len; k++) word |= (u32)bytes[p - start + k] << (8 * k);
            sum += ltsum_term(word, p / 4);
        }
    }
    // the stream ended in its last byte, with zero bits after its last code
    u32 used = (rd.wi - wi0) * 32 - skip - (u32)rd.nb;
    if ((used + 7) / 8 != my_len) wrong = true;
    else if (used % 8 && (stage[at + my_len - 1] & (0xffu >> (used % 8)))) wrong = true;
    if (wrong) atomicOr((u32*)bad, 1u);
    return sum;
}

// An expf block from its payload to `out`: the code, the table and the staged streams, then
// the decode, with the ring of rest words carried from one to the other. Returns a status
// (uniform over the CTA); `sum` gets this thread's checksum terms.
template <typename T, int dt>
__device__ int expf_block(const u8* payload, u32 plen, u32 len, u16* table, u32* aux, uint4* stage, u32 stage_vecs, u32* scratch, int* bad, u8* out, u32* sum) {
    ExpfRest<T> ring[EXPF_AHEAD];
    ExpfDecode xd;
    int st = expf_prepare<T, dt>(payload, plen, len, table, aux, stage, stage_vecs, scratch, xd, bad, ring);
    if (st == ST_OK) *sum = expf_decode<T, dt>(payload, len, table, aux, (const u8*)stage, xd, out, bad, ring);
    return st;
}
