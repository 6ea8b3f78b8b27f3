/* A program that links no CUDA library and loads a library under NCCL's file name into a scope
 * of its own (RTLD_LOCAL), as PyTorch's NCCL is, where dlsym(RTLD_NEXT) from the preloaded
 * library does not look: the call through the hook must still reach it. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: local local LIBRARY\n"); return 2; }
    void *lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "FAIL dlopen %s: %s\n", argv[2], dlerror()); return 1; }
    typedef int (*group_t)(void);
    group_t hook = (group_t)dlsym(RTLD_DEFAULT, "ncclGroupStart");
    if (!hook) { fprintf(stderr, "FAIL the preloaded library does not export ncclGroupStart\n"); return 1; }
    int rc = hook();
    if (rc != 43) { fprintf(stderr, "FAIL the call through the hook returned %d, not the local library's 43\n", rc); return 1; }
    /* the library's own handle hands out our hook too, which reaches it as well */
    group_t looked_up = (group_t)dlsym(lib, "ncclGroupStart");
    if (looked_up != hook) { fprintf(stderr, "FAIL dlsym on the library's handle gave %p, not the hook %p\n", (void *)looked_up, (void *)hook); return 1; }
    if (looked_up() != 43) { fprintf(stderr, "FAIL the looked-up pointer did not reach the library\n"); return 1; }
    printf("did local ok\n");
    return 0;
}
