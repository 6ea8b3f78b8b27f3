/* ltshim control API: what a program (or a harness, through ctypes) may ask of libltshim while
 * it runs. Link nothing: look the functions up with dlsym(RTLD_DEFAULT, ...) so that a program
 * also runs without the library. */
#ifndef LTSHIM_H
#define LTSHIM_H
#include <stddef.h>
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

#ifdef __cplusplus
}
#endif
#endif
