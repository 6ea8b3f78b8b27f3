// The expf device code (kernels/expf.cuh with the common.cuh helpers it uses, assembled by
// expf_emulated.rs) run on the host as one CTA: encode must equal the CPU reference's payload,
// decode its input and checksum; corrupted payloads must never read out of bounds (ASAN when
// available) nor decode to wrong bytes unnoticed. Records come from expf_emulated.rs.
#include "kernels.h"
#include <cstdio>
#include <cstdlib>
static uint32_t ltsum_host(const uint8_t* b, size_t len) {
    auto fm = [](uint32_t h) { h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16; return h; };
    uint32_t s = 0; size_t i = 0;
    for (; i + 4 <= len; i += 4) { uint32_t w; std::memcpy(&w, b + i, 4); s += fm(w ^ ((uint32_t)(i / 4) * 0x9E3779B9u)); }
    if (i < len) { uint32_t w = 0; std::memcpy(&w, b + i, len - i); s += fm(w ^ ((uint32_t)(i / 4) * 0x9E3779B9u)); }
    return fm(s ^ ((uint32_t)len * 0x27d4eb2fu));
}
static uint8_t* aligned(size_t n) { size_t m = (n + 15) / 16 * 16; uint8_t* p = (uint8_t*)aligned_alloc(16, m ? m : 16); std::memset(p, 0xCD, m ? m : 16); return p; }

template <typename T, int dt>
static bool encode_block(const std::vector<uint8_t>& in, std::vector<uint8_t>& out) {
    uint32_t len = in.size();
    uint8_t* stage = aligned(65536); std::memcpy(stage, in.data(), len);
    std::vector<uint32_t> region(1024, 0xdeadbeef);
    ExpfShared xs; uint32_t scratch[3 * 8]; uint32_t e = 0;
    run_cta([&] { uint32_t r = expf_analyse<T, dt>(len, stage, region.data(), xs, scratch); if (threadIdx.x == 0) e = r; });
    if (e == 0xffffffffu) { free(stage); return false; }
    uint8_t* p = aligned(e + 16); std::memset(p, 0xAB, (e + 15) / 16 * 16);
    run_cta([&] { expf_write<T, dt>(p, len, stage, region.data(), xs); });
    out.assign(p, p + e);
    free(stage); free(p);
    return true;
}

// returns status; out gets the decoded bytes; sum the checksum
template <typename T, int dt>
static int decode_block(const std::vector<uint8_t>& payload, uint32_t len, std::vector<uint8_t>& out, uint32_t& check) {
    uint32_t plen = payload.size();
    uint8_t* p = aligned(plen); std::memcpy(p, payload.data(), plen);  // exactly the padded extent
    std::vector<uint16_t> table(4096); std::vector<uint32_t> aux(2048); std::vector<uint4> stage(2040);
    uint32_t scratch[8]; int bad = 0; int status = -1;
    uint8_t* o = aligned(len); 
    run_cta([&] {
        uint32_t sum = 0;
        int st = expf_block<T, dt>(p, plen, len, table.data(), aux.data(), stage.data(), 2040, scratch, &bad, o, &sum);
        __syncthreads();
        if (st == ST_OK && bad) st = ST_LENGTH;
        uint32_t total = block_sum_u32(sum, scratch);
        if (threadIdx.x == 0) { status = st; check = ltsum_final(total, len); }
    });
    out.assign(o, o + len);
    free(p); free(o);
    return status;
}

template <typename T, int dt>
static int run_case(const std::vector<uint8_t>& in, const std::vector<uint8_t>& cpu, uint32_t sum, int corrupt) {
    int fails = 0;
    std::vector<uint8_t> gpu;
    if (!encode_block<T, dt>(in, gpu)) { printf("  encode: expf refused\n"); return 1; }
    if (gpu != cpu) {
        size_t k = 0; while (k < gpu.size() && k < cpu.size() && gpu[k] == cpu[k]) k++;
        printf("  encode DIFFERS: %zu vs %zu bytes, first difference at %zu\n", gpu.size(), cpu.size(), k); fails++;
    }
    std::vector<uint8_t> out; uint32_t check = 0;
    int st = decode_block<T, dt>(cpu, in.size(), out, check);
    if (st != 0 || out != in || check != sum) { printf("  decode: status %d, bytes %s, checksum %s\n", st, out == in ? "same" : "DIFFER", check == sum ? "ok" : "BAD"); fails++; }
    // corruptions: must never crash (ASAN) and never report ok with wrong bytes
    uint32_t x = 12345;
    for (int c = 0; c < corrupt; c++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        std::vector<uint8_t> bad = cpu;
        size_t at = x % bad.size();
        if (c % 3 == 0) at = in.size() / sizeof(T) * expf_rest_width<T>() + (x >> 8) % 300;  // the code and stream lengths
        if (at >= bad.size()) at = bad.size() - 1;
        bad[at] ^= 1u << (x >> 24) % 8;
        std::vector<uint8_t> o2; uint32_t ch = 0;
        int s2 = decode_block<T, dt>(bad, in.size(), o2, ch);
        if (s2 == 0 && ch == sum && o2 != in) { printf("  corruption at %zu decoded wrong bytes with a good checksum\n", at); fails++; }
        if (s2 == 0 && o2 == in) { printf("  corruption at %zu went unnoticed\n", at); fails++; }
    }
    return fails;
}

int main(int argc, char** argv) {
    int corrupt = argc > 1 ? atoi(argv[1]) : 0;
    if (argc < 3) return 2;
    FILE* f = fopen(argv[2], "rb");
    if (!f) return 2;
    int fails = 0, cases = 0;
    for (;;) {
        uint32_t dt, len, plen, sum;
        if (fread(&dt, 4, 1, f) != 1) break;
        fread(&len, 4, 1, f);
        std::vector<uint8_t> in(len); fread(in.data(), 1, len, f);
        fread(&plen, 4, 1, f);
        std::vector<uint8_t> cpu(plen); fread(cpu.data(), 1, plen, f);
        fread(&sum, 4, 1, f);
        printf("case dtype %u len %u payload %u\n", dt, len, plen); fflush(stdout);
        cases++;
        if (dt == 1) fails += run_case<uint16_t, DT_F16>(in, cpu, sum, corrupt);
        else if (dt == 2) fails += run_case<uint16_t, DT_BF16>(in, cpu, sum, corrupt);
        else fails += run_case<uint32_t, DT_F32>(in, cpu, sum, corrupt);
    }
    printf("%d cases, %d failures\n", cases, fails);
    return fails != 0;
}
