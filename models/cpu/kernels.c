/* The CPU kernels' entry points: each calls the kernel of the path in use
 * (dispatch.h; the kernels themselves are in kernels_isa.c, compiled once
 * per instruction set). */
#include "models/cpu/kernels.h"

#include "models/cpu/dispatch.h"
#include "models/fastmath.h"

int nr_cpu_skinny_max = 32;
int nr_cpu_gemm_own = 1;

float nr_cpu_expf(float x) { return nr_fast_expf(x); }

void nr_cpu_layernorm(float *y, const float *x, const float *g, const float *b, int M, int N, float eps) {
    nr_cpu_kernels()->layernorm(y, x, g, b, M, N, eps);
}
void nr_cpu_gelu(float *x, size_t n, int tanh_form) { nr_cpu_kernels()->gelu(x, n, tanh_form); }
void nr_cpu_softmax(float *x, int rows, int cols) { nr_cpu_kernels()->softmax(x, rows, cols); }
void nr_cpu_add(float *y, const float *x, size_t n) { nr_cpu_kernels()->add(y, x, n); }
void nr_cpu_add_bias(float *y, const float *b, int M, int N) { nr_cpu_kernels()->add_bias(y, b, M, N); }
int nr_cpu_attention(const nr_attn_args_t *a) { return nr_cpu_kernels()->attention(a); }
int nr_cpu_patch_embed(const nr_patch_args_t *a) { return nr_cpu_kernels()->patch_embed(a); }
void nr_cpu_matmul(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M, int N,
                   int K, int accumulate) {
    nr_cpu_kernels()->matmul(y, ldy, x, ldx, w, layout, M, N, K, accumulate);
}
