/* Hooked symbols defined by a library the test program loads late (as frameworks dlopen
 * cuBLAS when first needed), or into a local scope (as PyTorch's NCCL). Each returns a value
 * no other code returns. */
int cublasZgemmStridedBatched(void) { return 42; }
int ncclGroupStart(void) { return 43; }
