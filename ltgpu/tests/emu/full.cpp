// The whole LT-Block kernels (kernels/ltblock.cu, assembled for the host by expf_emulated.rs:
// cp.async as plain copies, shared memory as statics, the conversions' cvt as dtype.rs's) run
// CTA by CTA in ticket order: ltb_pack_blocks and ltb_pack_head must give the CPU reference's
// buffer byte for byte, ltb_decode_blocks its decode. Records come from expf_emulated.rs.
#include "full.h"
#include <cstdio>
#include <cstdlib>
static uint8_t* aligned(size_t n) { size_t m = (n + 15) / 16 * 16; if (!m) m = 16; uint8_t* p = (uint8_t*)aligned_alloc(16, m); std::memset(p, 0xCD, m); return p; }
int main(int argc, char** argv) {
    if (argc < 2) return 2;
    FILE* f = fopen(argv[1], "rb");
    if (!f) return 2;
    int cases = 0, fails = 0;
    g_dyn = (uint4*)aligned(96 * 1024 + 1024);
    for (;;) {
        uint32_t dt, lossy, group, len, clen, dlen;
        if (fread(&dt, 4, 1, f) != 1) break;
        fread(&lossy, 4, 1, f); fread(&group, 4, 1, f); fread(&len, 4, 1, f);
        std::vector<uint8_t> in(len); fread(in.data(), 1, len, f);
        fread(&clen, 4, 1, f); std::vector<uint8_t> cpu(clen); fread(cpu.data(), 1, clen, f);
        fread(&dlen, 4, 1, f); std::vector<uint8_t> dec(dlen); fread(dec.data(), 1, dlen, f);
        cases++;
        uint32_t w = dt == 3 ? 4 : dt == 0 ? 1 : 2, count = (len + 65535) / 65536;
        uint8_t* input = aligned(len); std::memcpy(input, in.data(), len);
        size_t maxlen = (40 + 8 * (count + 1) + 15) / 16 * 16 + count * 32 + (len / 65536) * 65536 + (len % 65536 + 15) / 16 * 16;
        uint8_t* out = aligned(maxlen);
        std::vector<u64> lb(count + 1, 0); u32 ticket = 0; std::vector<BlockChoice> choice(count); u64 total = 0;
        u32 maxg = (lossy && group && w >= 2) ? std::min<u32>((65536 / w + group - 1) / group, 2048) : 0;
        EncodeParams p{input, len, 65536, (int)dt, (int)lossy, group, 0.01f, maxg};
        PackState st{&ticket, lb.data(), choice.data()};
        BufferHead head{out, &total, len, count, 65536, (int)dt, (int)lossy};
        for (u32 b = 0; b < count; b++) { blockIdx.x = b; run_cta([&] { blockIdx.x = b; ltb_pack_blocks(p, st, head); }); }
        run_cta([&] { ltb_pack_head(st, head); });
        bool same = total == clen && std::memcmp(out, cpu.data(), clen) == 0;
        std::vector<DecodeDesc> descs(count); std::vector<u32> status(count, 99);
        uint8_t* dout = aligned(count * 65536);
        for (u32 b = 0; b < count; b++) {
            u64 o0, o1; std::memcpy(&o0, cpu.data() + 40 + 8 * b, 8); std::memcpy(&o1, cpu.data() + 48 + 8 * b, 8);
            descs[b] = DecodeDesc{out + o0, dout + (u64)b * 65536, o1 - o0};
        }
        // decode the CPU's bytes (they are in `out` when same; else decode the CPU copy)
        if (!same) std::memcpy(out, cpu.data(), clen);
        for (u32 b = 0; b < count; b++) run_cta([&] { blockIdx.x = b; ltb_decode_blocks(descs.data(), status.data()); });
        bool st_ok = true; for (auto s : status) st_ok &= s == 0;
        bool dec_ok = std::memcmp(dout, dec.data(), len) == 0;
        size_t k = 0; if (!same) while (k < clen && k < total && out[k] == cpu[k]) k++;
        printf("dtype %u lossy %u G %u len %u: packed %s (%llu vs %u B%s), decode status %s, bytes %s\n", dt, lossy, group, len, same ? "same" : "DIFFERS",
               (unsigned long long)total, clen, same ? "" : (" first diff at " + std::to_string(k)).c_str(), st_ok ? "ok" : "BAD", dec_ok ? "same" : "DIFFER");
        fflush(stdout);
        fails += !same + !st_ok + !dec_ok;
        free(input); free(out); free(dout);
    }
    printf("%d cases, %d failures\n", cases, fails);
    return fails != 0;
}
