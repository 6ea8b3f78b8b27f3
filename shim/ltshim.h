/* ltshim control API: what a program (or a harness, through ctypes) may ask of libltshim while
 * it runs. Link nothing: look the functions up with dlsym(RTLD_DEFAULT, ...) so that a program
 * also runs without the library. */
#ifndef LTSHIM_H
#define LTSHIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* The library version, e.g. "0.1.0". */
const char *ltshim_version(void);

/* Writes the live stats report (JSON, the same as LTSHIM_STATS at exit) into buf, NUL-terminated
 * when it fits in len bytes, and returns its full length (call with NULL, 0 to size a buffer). */
size_t ltshim_stats_json(char *buf, size_t len);

/* Pins (pinned != 0) or unpins the buffer holding ptr resident: it will never be packed.
 * Returns 0, or -1 when ptr is in no buffer the library knows. */
int ltshim_pin(const void *ptr, int pinned);

/* Packs every buffer that may be packed now (cold, not in use, not kept resident by a safety
 * rule). Returns how many were packed, or -1 when packing is off (LTSHIM_MODE observe/off,
 * passthrough after a fallback, or the kernels not loaded yet). */
int64_t ltshim_pack_cold(void);

/* Makes every packed buffer resident. Returns how many were restored, or -1 when packing is
 * off or a buffer could not be restored. */
int64_t ltshim_restore_all(void);

/* Marks the end of one step of the program: the stats report counts restores per step. */
void ltshim_step(void);

#ifdef __cplusplus
}
#endif
#endif
