/* The CPU kernels' entry points: each calls the kernel of the path in use
 * (dispatch.h; the kernels themselves are in kernels_isa.c, compiled once
 * per instruction set). RMSNorm and rotary embeddings (Gemma) are plain
 * loops here, outside the hot path. */
#include "models/cpu/kernels.h"

#include "models/cpu/dispatch.h"
#include "common/error.h"
#include "models/fastmath.h"

#include <math.h>
#include <string.h>

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
void nr_cpu_im2col_patches(float *col, const float *img, int C, int H, int W, int P) {
    const int gh = H / P, gw = W / P, kk = C * P * P;
    for (int py = 0; py < gh; py++)
        for (int px = 0; px < gw; px++) {
            float *row = col + (size_t)(py * gw + px) * kk;
            for (int c = 0; c < C; c++)
                for (int ky = 0; ky < P; ky++)
                    memcpy(row + (c * P + ky) * P, img + ((size_t)c * H + py * P + ky) * W + px * P,
                           (size_t)P * sizeof(float));
        }
}
void nr_cpu_matmul(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M, int N,
                   int K, int accumulate) {
    nr_cpu_kernels()->matmul(y, ldy, x, ldx, w, layout, M, N, K, accumulate);
}

int nr_cpu_matmul_bf16w(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int M, int N, int K,
                        int accumulate) {
    return nr_cpu_kernels()->matmul_bf16w(y, ldy, x, ldx, w, M, N, K, accumulate);
}

void nr_cpu_rmsnorm(float *y, const float *x, const float *g, int M, int N, float eps) {
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * N;
        float *yr = y + (size_t)m * N;
        double ss = 0.0; /* torch sums in float with pairwise blocks; a double sum is at least as close */
        for (int n = 0; n < N; n++) ss += (double)xr[n] * xr[n];
        const float r = 1.0f / sqrtf((float)(ss / N) + eps);
        for (int n = 0; n < N; n++) yr[n] = (xr[n] * r) * (1.0f + g[n]);
    }
}

int nr_cpu_rotary(const nr_rotary_args_t *a) {
    const int hd = a->head_dim, half = hd / 2;
    if (a->M < 0 || a->n_head <= 0 || hd <= 0 || hd % 2 || a->n_tok <= 0 || half > 1024) return NR_EINVAL;
    float inv[1024], cs[1024], sn[1024];
    /* transformers: inv_freq = 1 / theta ** (arange(0, hd, 2).float() / hd), in float */
    for (int k = 0; k < half; k++) inv[k] = 1.0f / powf(a->theta, (float)(2 * k) / (float)hd);
    for (int i = 0; i < a->M; i++) {
        const float pos = (float)(a->pos0 + i % a->n_tok);
        for (int k = 0; k < half; k++) {
            const float ang = pos * inv[k];
            cs[k] = cosf(ang);
            sn[k] = sinf(ang);
        }
        for (int h = 0; h < a->n_head; h++) {
            float *x = a->x + (size_t)i * a->ld + (size_t)h * hd;
            for (int k = 0; k < half; k++) {
                const float x1 = x[k], x2 = x[k + half];
                x[k] = x1 * cs[k] - x2 * sn[k];
                x[k + half] = x2 * cs[k] + x1 * sn[k];
            }
        }
    }
    return 0;
}
