/* BF16 matmul on Intel AMX tiles (amx.c; x86-64 only, compiled with the
 * AMX flags and called only on the amx path, dispatch.h). */
#ifndef NR_MODELS_CPU_AMX_H
#define NR_MODELS_CPU_AMX_H

#include <stddef.h>

#include "models/backend.h"
#include "models/cpu/lowp.h"

/* y[M,N] = x[M,K] W (+ y when accumulate), BF16 products, F32 sums, as
 * nr_cpu_matmul_bf16. 0 or NR_ENOMEM. */
int nr_cpu_amx_matmul_bf16(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_bf16w_t *w, int M,
                           int accumulate);
/* The same with a linear layer's epilogue on each block as it leaves the
 * tiles: y = act(x W + bias) (+ y when accumulate); bias NULL for none,
 * act -1 for none or a GELU form (nr_act_t: 0 erf, 1 tanh, 2 quick_gelu). */
int nr_cpu_amx_linear_bf16(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_bf16w_t *w, int M,
                           const float *bias, int act, int accumulate);

/* Non-causal attention (nr_attn_args_t, head_dim <= 128) with Q, K, V and
 * the probabilities in BF16 on tiles, softmax in F32: cpu:bf16's attention
 * on the amx path. 0, NR_EINVAL or NR_ENOMEM. */
int nr_cpu_amx_attention(const nr_attn_args_t *a);

/* The ViT patch embedding (nr_patch_args_t) with its matmul on tiles; w is
 * the BF16 copy of a->w ([D, C*P*P]). 0, NR_EINVAL or NR_ENOMEM. */
int nr_cpu_amx_patch_embed(const nr_patch_args_t *a, const nr_cpu_bf16w_t *w);

#endif
