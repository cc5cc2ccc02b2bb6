/* Reduced-precision weights for the CPU backend: BF16 weights (F32
 * accumulation; activations rounded to BF16 per call; AMX tiles or AVX-512
 * BF16 vdpbf16ps where the kernel path has them, dispatch.h, else plain C)
 * and INT8 weights with one F32 scale per output channel (F32 activations,
 * F32 accumulation; AVX-512 or plain C; for the memory-bound decode
 * matmuls). Weights are converted once into packed copies; the kernels
 * follow the path chosen at run time, so one binary runs on every CPU. */
#ifndef NR_MODELS_CPU_LOWP_H
#define NR_MODELS_CPU_LOWP_H

#include <stddef.h>
#include <stdint.h>

#include "models/backend.h"

/* BF16 weight of y[M,N] = x[M,K] W: 32-column panels, K in pairs:
 * w[((panel * P + p) * 2 + half) * 32 + 2 * j + t] = W(k = 2p + t, n = 32 panel + 16 half + j)
 * with P = ceil(K / 32) * 16 (whole AMX B tiles of 16 pairs); padding is
 * zero. */
typedef struct {
    int N, K, P, panels;
    uint16_t *w;
} nr_cpu_bf16w_t;

/* INT8 weight: 64-column panels, q[(panel * K + k) * 64 + j] = round(W(k, 64 panel + j) / scale[n]),
 * scale[n] = max_k |W(k, n)| / 127 (1 for an all-zero column). */
typedef struct {
    int N, K, panels;
    int8_t *q;
    float *scale; /* [panels * 64] */
} nr_cpu_i8w_t;

/* Rows from which BF16 matmuls use the AMX tiles on the amx path (fewer:
 * vdpbf16ps, the weight streamed once either way). */
#define NR_CPU_AMX_MIN_ROWS 16

/* Packs W (either layout, [N,K] or [K,N] floats) once, on the kernels'
 * pool (pool.h; the same copy whatever the number of threads); NR_ENOMEM.
 * The _bf16 forms pack a BF16 (N, K) weight read in place: the same copy
 * as packing its F32 values, without them. */
int nr_cpu_bf16w_make(nr_cpu_bf16w_t *out, const float *w, nr_wlayout_t layout, int N, int K);
int nr_cpu_bf16w_make_bf16(nr_cpu_bf16w_t *out, const uint16_t *w, int N, int K);
void nr_cpu_bf16w_free(nr_cpu_bf16w_t *w);
int nr_cpu_i8w_make(nr_cpu_i8w_t *out, const float *w, nr_wlayout_t layout, int N, int K);
int nr_cpu_i8w_make_bf16(nr_cpu_i8w_t *out, const uint16_t *w, int N, int K);
void nr_cpu_i8w_free(nr_cpu_i8w_t *w);

/* y[M,N] = x[M,K] W (+ y when accumulate). 0 or NR_ENOMEM. Any M. The BF16
 * matmul packs x into the calling thread's kernel scratch (kernels.h). */
int nr_cpu_matmul_bf16(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_bf16w_t *w, int M,
                       int accumulate);
int nr_cpu_matmul_i8(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_i8w_t *w, int M, int accumulate);

#endif
