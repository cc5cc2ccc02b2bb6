/* CPU kernels: layer norm, GELU (erf and tanh forms), softmax, attention,
 * ViT patch embedding, and the sgemm wrapper. Single-threaded by design:
 * the heavy work is OpenBLAS sgemm (threaded by OpenBLAS itself), and
 * large attention goes through sgemm too, so no second thread pool competes
 * with OpenBLAS's for the cores. */
#include "models/cpu/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* exp(x) for x in float range: Cephes-style range reduction + degree-6
 * polynomial, relative error ~1e-7; branch-free so loops vectorize. */
static inline float s_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    float e = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return e * scale;
}

float nr_cpu_expf(float x) { return s_exp(x); }

/* erf(x): Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7). */
static inline float s_erf(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    float y = 1.0f - p * t * s_exp(-ax * ax);
    return x < 0 ? -y : y;
}

static inline float s_tanh(float x) {
    float ax = fabsf(x);
    ax = ax > 9.0f ? 9.0f : ax;
    float e = s_exp(2.0f * ax);
    float y = 1.0f - 2.0f / (e + 1.0f);
    return x < 0 ? -y : y;
}

void nr_cpu_gelu(float *x, size_t n, int tanh_form) {
    if (tanh_form) {
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            x[i] = 0.5f * v * (1.0f + s_tanh(k * (v + 0.044715f * v * v * v)));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            x[i] = 0.5f * v * (1.0f + s_erf(v * 0.7071067811865476f));
        }
    }
}

void nr_cpu_layernorm(float *y, const float *x, const float *g, const float *b, int M, int N, float eps) {
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * N;
        float *yr = y + (size_t)m * N;
        float sum = 0.0f;
        for (int i = 0; i < N; i++) sum += xr[i];
        float mean = sum / (float)N;
        float var = 0.0f;
        for (int i = 0; i < N; i++) {
            float d = xr[i] - mean;
            var += d * d;
        }
        var /= (float)N;
        float rs = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < N; i++) yr[i] = (xr[i] - mean) * rs * g[i] + b[i];
    }
}

void nr_cpu_softmax(float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *p = x + (size_t)r * cols;
        float mx = p[0];
        for (int i = 1; i < cols; i++) mx = p[i] > mx ? p[i] : mx;
        float s = 0.0f;
        for (int i = 0; i < cols; i++) {
            p[i] = s_exp(p[i] - mx);
            s += p[i];
        }
        float inv = 1.0f / s;
        for (int i = 0; i < cols; i++) p[i] *= inv;
    }
}

void nr_cpu_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void nr_cpu_add_bias(float *y, const float *b, int M, int N) {
    for (int m = 0; m < M; m++) {
        float *yr = y + (size_t)m * N;
        for (int i = 0; i < N; i++) yr[i] += b[i];
    }
}

void nr_cpu_matmul(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M, int N,
                   int K, int accumulate) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    if (layout == NR_W_OUT_IN)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, (int)ldx, w, K, accumulate ? 1.0f : 0.0f,
                    y, (int)ldy);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, x, (int)ldx, w, N,
                    accumulate ? 1.0f : 0.0f, y, (int)ldy);
}

/* Direct attention: one query row at a time (decode steps, short prefills,
 * causal masks). scores has room for n_kv floats. */
static void s_attn_direct(const nr_attn_args_t *a, int b, int h, float *scores) {
    int kb = a->kv_index ? a->kv_index[b] : b;
    const float *kbase = a->k + (size_t)kb * a->kv_bstride + (size_t)h * a->head_dim;
    const float *vbase = a->v + (size_t)kb * a->kv_bstride + (size_t)h * a->head_dim;
    const int hd = a->head_dim;
    for (int i = 0; i < a->n_q; i++) {
        const float *q = a->q + (size_t)b * a->q_bstride + (size_t)i * a->q_rstride + (size_t)h * hd;
        float *o = a->out + (size_t)b * a->o_bstride + (size_t)i * a->o_rstride + (size_t)h * hd;
        int lim = a->n_kv;
        if (a->causal && a->q_pos0 + i + 1 < lim) lim = a->q_pos0 + i + 1;
        float mx = -INFINITY;
        for (int j = 0; j < lim; j++) {
            const float *k = kbase + (size_t)j * a->kv_rstride;
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += q[d] * k[d];
            s *= a->scale;
            scores[j] = s;
            mx = s > mx ? s : mx;
        }
        float sum = 0.0f;
        for (int j = 0; j < lim; j++) {
            scores[j] = s_exp(scores[j] - mx);
            sum += scores[j];
        }
        float inv = 1.0f / sum;
        for (int d = 0; d < hd; d++) o[d] = 0.0f;
        for (int j = 0; j < lim; j++) {
            const float *v = vbase + (size_t)j * a->kv_rstride;
            float p = scores[j] * inv;
            for (int d = 0; d < hd; d++) o[d] += p * v[d];
        }
    }
}

int nr_cpu_attention(const nr_attn_args_t *a) {
    if (a->batch <= 0 || a->n_head <= 0 || a->head_dim <= 0 || a->n_q <= 0 || a->n_kv <= 0) return NR_EINVAL;
    int use_gemm = !a->causal && a->n_q >= 16;
    size_t scratch = use_gemm ? (size_t)a->n_q * a->n_kv : (size_t)a->n_kv;
    float *s = malloc(scratch * sizeof(float));
    if (!s) return NR_ENOMEM;
    for (int b = 0; b < a->batch; b++) {
        for (int h = 0; h < a->n_head; h++) {
            if (!use_gemm) {
                s_attn_direct(a, b, h, s);
                continue;
            }
            int kb = a->kv_index ? a->kv_index[b] : b;
            const float *q = a->q + (size_t)b * a->q_bstride + (size_t)h * a->head_dim;
            const float *k = a->k + (size_t)kb * a->kv_bstride + (size_t)h * a->head_dim;
            const float *v = a->v + (size_t)kb * a->kv_bstride + (size_t)h * a->head_dim;
            float *o = a->out + (size_t)b * a->o_bstride + (size_t)h * a->head_dim;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->n_q, a->n_kv, a->head_dim, a->scale, q,
                        (int)a->q_rstride, k, (int)a->kv_rstride, 0.0f, s, a->n_kv);
            nr_cpu_softmax(s, a->n_q, a->n_kv);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->n_q, a->head_dim, a->n_kv, 1.0f, s, a->n_kv, v,
                        (int)a->kv_rstride, 0.0f, o, (int)a->o_rstride);
        }
    }
    free(s);
    return 0;
}

int nr_cpu_patch_embed(const nr_patch_args_t *a) {
    const int C = a->channels, H = a->height, W = a->width, P = a->patch, D = a->dim;
    if (a->batch <= 0 || P <= 0 || H % P || W % P || C <= 0 || D <= 0) return NR_EINVAL;
    const int gh = H / P, gw = W / P, np = gh * gw, kk = C * P * P;
    float *col = malloc((size_t)np * kk * sizeof(float));
    if (!col) return NR_ENOMEM;
    for (int b = 0; b < a->batch; b++) {
        const float *img = a->pixels + (size_t)b * C * H * W;
        /* im2col: row (py*gw+px), column (c*P + ky)*P + kx, matching the
         * conv weight layout [D, C, P, P]. */
        for (int py = 0; py < gh; py++)
            for (int px = 0; px < gw; px++) {
                float *row = col + (size_t)(py * gw + px) * kk;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < P; ky++)
                        memcpy(row + (c * P + ky) * P, img + ((size_t)c * H + py * P + ky) * W + px * P,
                               (size_t)P * sizeof(float));
            }
        float *out = a->out + (size_t)b * (np + 1) * D;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, np, D, kk, 1.0f, col, kk, a->w, kk, 0.0f, out + D, D);
        for (int d = 0; d < D; d++) out[d] = a->cls[d] + a->pos[d];
        for (int r = 1; r <= np; r++) {
            float *o = out + (size_t)r * D;
            const float *p = a->pos + (size_t)r * D;
            for (int d = 0; d < D; d++) o[d] = (o[d] + a->b[d]) + p[d];
        }
    }
    free(col);
    return 0;
}
