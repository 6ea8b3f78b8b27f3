/* A program that links no CUDA library and loads a library under NCCL's file name into a scope
 * of its own (RTLD_LOCAL), as PyTorch's NCCL is, where dlsym(RTLD_NEXT) from the preloaded
 * library does not look: the call through the hook must still reach it. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: local LIBRARY\n"); return 2; }
    if (!dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) { fprintf(stderr, "FAIL dlopen %s: %s\n", argv[1], dlerror()); return 1; }
    typedef int (*group_t)(void);
    group_t hook = (group_t)dlsym(RTLD_DEFAULT, "ncclGroupStart");
    if (!hook) { fprintf(stderr, "FAIL the preloaded library does not export ncclGroupStart\n"); return 1; }
    int rc = hook();
    if (rc != 43) { fprintf(stderr, "FAIL the call through the hook returned %d, not the local library's 43\n", rc); return 1; }
    printf("did local ok\n");
    return 0;
}
