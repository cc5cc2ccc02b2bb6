/* CPU kernels shared by the CPU backend and its op-level tests. Plain loops
 * written so that gcc/clang vectorize them (no libm calls in hot loops:
 * exp/erf/tanh are polynomial approximations with relative error < 2e-7). */
#ifndef NR_MODELS_CPU_KERNELS_H
#define NR_MODELS_CPU_KERNELS_H

#include <stddef.h>

#include "models/backend.h"

float nr_cpu_expf(float x);
void nr_cpu_layernorm(float *y, const float *x, const float *g, const float *b, int M, int N, float eps);
void nr_cpu_gelu(float *x, size_t n, int tanh_form);
void nr_cpu_softmax(float *x, int rows, int cols);
void nr_cpu_add(float *y, const float *x, size_t n);
void nr_cpu_add_bias(float *y, const float *b, int M, int N);
int nr_cpu_attention(const nr_attn_args_t *a);
int nr_cpu_patch_embed(const nr_patch_args_t *a);
/* Rows up to which matmul uses the streaming kernel instead of sgemm
 * (default 32; 0 = always sgemm; for tests and benchmarks). */
extern int nr_cpu_skinny_max;
/* 1 (default): matmuls above the streaming size use the own AVX-512 GEMM
 * when compiled for AVX-512; 0: OpenBLAS sgemm (for tests and benchmarks). */
extern int nr_cpu_gemm_own;
/* Starts the kernel thread pool once (threads including the caller). */
void nr_cpu_pool_init(int threads);
/* Runs fn(arg, part, nparts) on the pool (parts 0..nparts-1, the caller
 * takes part 0); a caller that finds the pool busy runs fn(arg, 0, 1). */
typedef void (*nr_cpu_task_fn)(void *arg, int part, int nparts);
void nr_cpu_run(nr_cpu_task_fn fn, void *arg);
void nr_cpu_matmul(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M, int N,
                   int K, int accumulate);

/* Per-thread scratch memory for the kernels, kept between calls so that a
 * hot loop does not allocate (a fresh multi-MB buffer is an mmap, page
 * faults and kernel zeroing on every call). Each calling thread has its
 * own buffer per slot, so concurrent callers never share one; the pool's
 * threads only write into the buffer of the caller whose job they run,
 * which waits for them. A buffer grows (contents not kept) and is freed
 * when its thread exits or calls nr_cpu_scratch_free(). Slots let one
 * kernel call another that needs scratch too (patch embedding -> matmul). */
typedef enum {
    NR_CPU_SCRATCH_GEMM_A, /* own GEMM: packed activations */
    NR_CPU_SCRATCH_GEMM_B, /* own GEMM: packed weight blocks, one per pool part */
    NR_CPU_SCRATCH_ATTN,   /* attention: transposed K and scores */
    NR_CPU_SCRATCH_COL,    /* patch embedding: im2col */
    NR_CPU_SCRATCH_BF16_A, /* BF16 matmul: packed BF16 activations */
    NR_CPU_SCRATCH_COUNT
} nr_cpu_scratch_slot_t;
/* At least bytes of 64-byte-aligned memory, the calling thread's for slot,
 * valid until its next call with the same slot. NULL when out of memory
 * (the slot is then empty) or for a bad slot or bytes == 0. */
void *nr_cpu_scratch(nr_cpu_scratch_slot_t slot, size_t bytes);
/* Frees the calling thread's scratch buffers (safe to call any time the
 * thread is not inside a kernel). */
void nr_cpu_scratch_free(void);

#endif
