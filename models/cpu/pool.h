/* The CPU kernels' thread pool and per-thread scratch. One process-wide
 * pool runs one job at a time; a caller that finds it busy runs its job on
 * its own thread. Thread-safe: any number of threads may call these. */
#ifndef NR_MODELS_CPU_POOL_H
#define NR_MODELS_CPU_POOL_H

#include <stddef.h>

/* Starts the kernel thread pool once (threads including the caller). */
void nr_cpu_pool_init(int threads);
/* Runs fn(arg, part, nparts) once for each part 0..nparts-1 (nparts =
 * nr_cpu_pool_size()) and returns when all are done; the caller and the
 * pool's threads take the parts in any order (the caller may run them
 * all), so a part must not depend on which thread runs it (per-part
 * scratch is indexed by part). A caller that finds the pool busy runs
 * fn(arg, 0, 1). */
typedef void (*nr_cpu_task_fn)(void *arg, int part, int nparts);
void nr_cpu_run(nr_cpu_task_fn fn, void *arg);
/* Threads of the pool, the caller included (1 before nr_cpu_pool_init). */
int nr_cpu_pool_size(void);

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
    NR_CPU_SCRATCH_GEMM_B, /* own GEMM: packed weight blocks, one per part */
    NR_CPU_SCRATCH_ATTN,   /* attention: transposed K and scores */
    NR_CPU_SCRATCH_COL,    /* patch embedding: im2col */
    NR_CPU_SCRATCH_BF16_A, /* BF16 matmul: packed BF16 activations */
    NR_CPU_SCRATCH_WIDEN,  /* a mapped BF16 weight's block widened to F32 (cpu.c) */
    NR_CPU_SCRATCH_PACK,   /* packing a weight: one column as F32 (lowp.c) */
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
