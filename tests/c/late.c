/* A hooked symbol defined by a library the test program loads late (as frameworks dlopen
 * cuBLAS when first needed). Returns a value no other code returns. */
int cublasZgemmStridedBatched(void) { return 42; }
