// The kernel the preload library's packer adds to the codecs of ltblock.cu: is a resident
// buffer still what its packed copy decodes to? One CTA a 64 KiB block takes the LTSUM32 of the
// resident bytes and compares it with the block header's checksum of the decoded bytes
// (docs/FORMAT.md, offset 20). Re-packing a buffer that did not change then costs one read.
// Appended to ltblock.cu's translation unit (common.cuh is already in it).

// `packed`: a packed buffer written by ltb_pack_blocks (trusted: it was verified when made);
// `data`: `len` resident bytes, 16-byte aligned; `changed[0]` is set to 1 by any block whose
// checksum differs (the caller zeroes it first).
extern "C" __global__ void __launch_bounds__(LTB_THREADS) ltb_unchanged(const u8* packed, const u8* data, u64 len, u32* changed) {
    __shared__ u32 scratch[LTB_WARPS];
    const u32 block_size = *(const u32*)(packed + 8);
    const u32 count = *(const u32*)(packed + 12);
    const u32 b = blockIdx.x;
    if (b >= count) return;
    const u64* index = (const u64*)(packed + 40);
    const u8* head = packed + index[b];
    const u64 start = (u64)b * block_size;
    const u32 n = (u32)min((u64)block_size, len - start);
    const u8* src = data + start;
    const u32 words = n / 4;
    u32 sum = 0;
    for (u32 w = threadIdx.x; w < words; w += LTB_THREADS) sum += ltsum_term(*(const u32*)(src + 4 * w), w);
    if (threadIdx.x == 0 && (n & 3)) {
        u32 last = 0;
        for (u32 k = 0; k < (n & 3); ++k) last |= (u32)src[4 * words + k] << (8 * k);
        sum += ltsum_term(last, words);
    }
    sum = block_sum_u32(sum, scratch);
    if (threadIdx.x == 0 && ltsum_final(sum, n) != *(const u32*)(head + 20)) atomicExch(changed, 1u);
}
