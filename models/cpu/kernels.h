/* CPU kernels shared by the CPU backend and its op-level tests; each call
 * runs the kernel of the instruction-set path in use (dispatch.h). Plain
 * loops written so that gcc/clang vectorize them (no libm calls in hot
 * loops: exp/erf/tanh are polynomial approximations with relative error
 * < 2e-7). */
#ifndef NR_MODELS_CPU_KERNELS_H
#define NR_MODELS_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "models/backend.h"
#include "models/cpu/pool.h"

float nr_cpu_expf(float x);
void nr_cpu_layernorm(float *y, const float *x, const float *g, const float *b, int M, int N, float eps);
void nr_cpu_gelu(float *x, size_t n, int tanh_form);
void nr_cpu_softmax(float *x, int rows, int cols);
void nr_cpu_add(float *y, const float *x, size_t n);
void nr_cpu_add_bias(float *y, const float *b, int M, int N);
int nr_cpu_attention(const nr_attn_args_t *a);
int nr_cpu_patch_embed(const nr_patch_args_t *a);
/* im2col of one C x H x W image into P x P patches: row py*(W/P)+px,
 * column (c*P + ky)*P + kx, the conv weight's [D, C, P, P] order. */
void nr_cpu_im2col_patches(float *col, const float *img, int C, int H, int W, int P);
/* Gemma RMSNorm (backend.h's rmsnorm op) and rotary embeddings (rotary op). */
void nr_cpu_rmsnorm(float *y, const float *x, const float *g, int M, int N, float eps);
int nr_cpu_rotary(const nr_rotary_args_t *a);
/* Rows up to which matmul uses the streaming kernel instead of sgemm
 * (default 32; 0 = always sgemm; for tests and benchmarks). */
extern int nr_cpu_skinny_max;
/* 1 (default): matmuls above the streaming size use the own AVX-512 GEMM
 * on the AVX-512 paths; 0: OpenBLAS sgemm (for tests and benchmarks). */
extern int nr_cpu_gemm_own;
void nr_cpu_matmul(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M, int N,
                   int K, int accumulate);
/* nr_cpu_matmul for W (N, K) in BF16 and at most nr_cpu_skinny_max rows,
 * read in place: 1 when done (bit for bit nr_cpu_matmul on W widened to
 * F32), 0 when the path has no such kernel (the caller widens W itself). */
int nr_cpu_matmul_bf16w(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int M, int N, int K,
                        int accumulate);

#endif
