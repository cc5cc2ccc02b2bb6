/* The CPU backend: OpenBLAS cblas_sgemm for matmul, the project's own
 * kernels (AVX-512 where the compiler targets it) for the rest. */
#ifndef NR_MODELS_CPU_H
#define NR_MODELS_CPU_H

#include "models/backend.h"

/* Weight precision of the matmuls. F32 (default): the F32 kernels, bit for
 * bit. BF16: every matmul weight packed once (on its first use) to BF16,
 * activations rounded to BF16 per call, F32 accumulation (AVX-512 BF16
 * vdpbf16ps when cpuid has it, else plain C). INT8: decode-sized matmuls
 * (M <= 64 rows) read INT8 weights with one F32 scale per output channel
 * (F32 activations and sums); larger ones (the ViT, cross-attention K/V)
 * stay F32. */
typedef enum { NR_CPU_F32 = 0, NR_CPU_BF16 = 1, NR_CPU_INT8 = 2 } nr_cpu_precision_t;

/* "f32", "bf16", "int8" -> the precision; -1 when unknown. */
int nr_cpu_precision_from_name(const char *name);
const char *nr_cpu_precision_name(nr_cpu_precision_t p);
/* A new CPU backend using num_threads threads (<= 0: all online cores) and
 * the given weight precision. OpenBLAS gets the same thread count; the own
 * kernels run on a small pthread pool of the same size, used only between
 * BLAS calls so the two never compete for cores. Converted weight copies
 * are kept per weight pointer until the backend is destroyed. NULL on
 * failure. */
nr_backend_t *nr_cpu_backend_new_precision(int num_threads, nr_cpu_precision_t precision);

#endif
