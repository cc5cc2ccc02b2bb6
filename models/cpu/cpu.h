/* The CPU backend: OpenBLAS cblas_sgemm for matmul, the project's own
 * kernels (AVX-512 where the compiler targets it) for the rest. */
#ifndef NR_MODELS_CPU_H
#define NR_MODELS_CPU_H

#include "models/backend.h"

/* A new CPU backend using num_threads threads (<= 0: all online cores).
 * OpenBLAS gets the same thread count; the own kernels run on a small
 * pthread pool of the same size, used only between BLAS calls so the two
 * never compete for cores. NULL on failure. */
nr_backend_t *nr_cpu_backend_new(int num_threads);

#endif
