/* CPU kernels, compiled once per instruction set (dispatch.h): layer norm,
 * GELU (erf and tanh forms), softmax, attention, ViT patch embedding, and
 * matmul (a streaming kernel for a few rows; above that the own AVX-512
 * GEMM in the AVX-512 build, OpenBLAS sgemm in the others, which picks its
 * own kernels at run time). CMake builds this file as generic (the
 * compiler's baseline), avx2 (-march=x86-64-v3) and avx512
 * (-march=x86-64-v4) with NR_CPU_ISA set to that name; each build exports
 * only its table, nr_cpu_kernels_<name>. Plain loops are written so that
 * the compiler vectorizes them for the target; the AVX-512 intrinsics are
 * compiled only where __AVX512F__ says the target has them.
 *
 * Threads: one process-wide pool (pool.h: nr_cpu_pool_init, sized by the
 * first CPU backend) runs the larger matmuls (lowp.c's too, through nr_cpu_run),
 * attention over (batch, head) pairs (decode steps: large ones, over
 * (rows sharing a K/V, head)) and the element-wise ops
 * over large activations; small work stays on the caller. The pool runs
 * one job at a time: a caller that finds it busy runs its job on its own
 * thread. Work is split by output element, so a result is the same bit for
 * bit whichever threads computed it.
 *
 * Concurrent callers are allowed: any number of threads may call these
 * kernels at once (tests/test_kernels_mt.c checks that 4 callers get the
 * single-thread results bit for bit). Temporary buffers are the calling
 * thread's own scratch (nr_cpu_scratch, kernels.h), kept between calls and
 * freed when the thread exits; the pool's threads write only into the
 * scratch of the caller whose job they run. The tuning globals
 * nr_cpu_skinny_max and nr_cpu_gemm_own must not change while kernels run. */
#ifndef NR_CPU_ISA
#error "kernels_isa.c is compiled with -DNR_CPU_ISA=generic|avx2|avx512 (models/CMakeLists.txt)"
#endif
#include "models/cpu/kernels.h"
#include "models/cpu/dispatch.h"

#include <cblas.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/fastmath.h"
#include "models/tensor.h"

/* erf(x): Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7). */
static inline float s_erf(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    float y = 1.0f - p * t * nr_fast_expf(-ax * ax);
    return x < 0 ? -y : y;
}

static inline float s_tanh(float x) {
    float ax = fabsf(x);
    ax = ax > 9.0f ? 9.0f : ax;
    float e = nr_fast_expf(2.0f * ax);
    float y = 1.0f - 2.0f / (e + 1.0f);
    return x < 0 ? -y : y;
}

/* Element-wise ops over the ViT's activations (197 x 3072 floats per image)
 * run on the pool; a decode step's few rows stay on the caller. */
#define S_POOL_MIN_ELEMS 65536

static void s_gelu_range(float *x, size_t n, int tanh_form) {
    if (tanh_form == 2) { /* quick_gelu: x * sigmoid(1.702 x), as torch computes it */
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            x[i] = v * (1.0f / (1.0f + expf(-1.702f * v)));
        }
    } else if (tanh_form) {
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

typedef struct {
    float *x;
    size_t n;
    int tanh_form;
} s_gelu_t;

static void s_gelu_part(void *p, int part, int nparts) {
    const s_gelu_t *g = p;
    const size_t i0 = g->n * (size_t)part / (size_t)nparts, i1 = g->n * (size_t)(part + 1) / (size_t)nparts;
    s_gelu_range(g->x + i0, i1 - i0, g->tanh_form);
}

static void s_gelu(float *x, size_t n, int tanh_form) {
    s_gelu_t g = {x, n, tanh_form};
    if (n >= S_POOL_MIN_ELEMS) nr_cpu_run(s_gelu_part, &g);
    else s_gelu_range(x, n, tanh_form);
}

typedef struct {
    float *y;
    const float *x, *g, *b;
    int M, N;
    float eps;
} s_rows_t;

/* Sum of x[i] (sq 0) or of (x[i] - mean)^2 (sq 1) in 16 interleaved
 * partial sums, added pairwise at the end: the loop vectorizes on every
 * target with the same result (one running sum cannot, float addition not
 * being reassociated, and its 4-cycle chain made layer norm 10% of the
 * BF16 encoder's time). */
static float s_row_sum(const float *x, int n, float mean, int sq) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) {
            const float d = x[i + j] - mean;
            acc[j] += sq ? d * d : x[i + j];
        }
    for (; i < n; i++) {
        const float d = x[i] - mean;
        acc[i % 16] += sq ? d * d : x[i];
    }
    for (int w = 8; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

static void s_layernorm_part(void *p, int part, int nparts) {
    const s_rows_t *a = p;
    const int N = a->N, m0 = (int)((long)a->M * part / nparts), m1 = (int)((long)a->M * (part + 1) / nparts);
    for (int m = m0; m < m1; m++) {
        const float *xr = a->x + (size_t)m * N;
        float *yr = a->y + (size_t)m * N;
        const float mean = s_row_sum(xr, N, 0.0f, 0) / (float)N;
        const float var = s_row_sum(xr, N, mean, 1) / (float)N;
        float rs = 1.0f / sqrtf(var + a->eps);
        for (int i = 0; i < N; i++) yr[i] = (xr[i] - mean) * rs * a->g[i] + a->b[i];
    }
}

static void s_layernorm(float *y, const float *x, const float *g, const float *b, int M, int N, float eps) {
    s_rows_t a = {y, x, g, b, M, N, eps};
    if ((size_t)M * N >= S_POOL_MIN_ELEMS) nr_cpu_run(s_layernorm_part, &a);
    else s_layernorm_part(&a, 0, 1);
}

/* One row's max, exp(x - max) in place and their sum, over 16 lanes and
 * then the lanes, so that the exponentials vectorize (a single running sum
 * kept the loop scalar: a fifth of the ViT's attention time). */
static float s_softmax_row(float *p, int n) {
    float mx16[16], s16[16];
    for (int l = 0; l < 16; l++) mx16[l] = -INFINITY, s16[l] = 0.0f;
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) mx16[l] = p[j + l] > mx16[l] ? p[j + l] : mx16[l];
    float mx = -INFINITY;
    for (int l = 0; l < 16; l++) mx = mx16[l] > mx ? mx16[l] : mx;
    for (; j < n; j++) mx = p[j] > mx ? p[j] : mx;
    j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) {
            p[j + l] = nr_fast_expf(p[j + l] - mx);
            s16[l] += p[j + l];
        }
    float s = 0.0f;
    for (; j < n; j++) s += p[j] = nr_fast_expf(p[j] - mx);
    for (int l = 0; l < 16; l++) s += s16[l];
    return s;
}

static void s_softmax(float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *p = x + (size_t)r * cols;
        const float inv = 1.0f / s_softmax_row(p, cols);
        for (int i = 0; i < cols; i++) p[i] *= inv;
    }
}

static void s_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void s_add_bias_part(void *p, int part, int nparts) {
    const s_rows_t *a = p;
    const int N = a->N, m0 = (int)((long)a->M * part / nparts), m1 = (int)((long)a->M * (part + 1) / nparts);
    for (int m = m0; m < m1; m++) {
        float *yr = a->y + (size_t)m * N;
        for (int i = 0; i < N; i++) yr[i] += a->b[i];
    }
}

static void s_add_bias(float *y, const float *b, int M, int N) {
    s_rows_t a = {y, NULL, NULL, b, M, N, 0.0f};
    if ((size_t)M * N >= S_POOL_MIN_ELEMS) nr_cpu_run(s_add_bias_part, &a);
    else s_add_bias_part(&a, 0, 1);
}

/* Skinny matmuls (decode steps: M = rows of a batch, 1..32): stream each
 * weight once instead of packing it as sgemm does (packing a 2304 x 768
 * matrix to multiply one row costs more than the multiply). */
#define S_SKINNY_MAX 8
#define S_NB 64

static inline __attribute__((always_inline)) void s_skinny_in_out(float *y, size_t ldy, const float *x, size_t ldx,
                                                                  const float *w, int M, int N, int K, size_t ldw,
                                                                  int acc) {
    for (int n0 = 0; n0 < N; n0 += S_NB) {
        const int nb = N - n0 < S_NB ? N - n0 : S_NB;
        float a[S_SKINNY_MAX][S_NB];
        for (int m = 0; m < M; m++)
            for (int j = 0; j < S_NB; j++) a[m][j] = (acc && j < nb) ? y[m * ldy + n0 + j] : 0.0f;
        if (nb == S_NB) {
            for (int k = 0; k < K; k++) {
                const float *wr = w + (size_t)k * ldw + n0;
                for (int m = 0; m < M; m++) {
                    const float xm = x[m * ldx + k];
                    for (int j = 0; j < S_NB; j++) a[m][j] += xm * wr[j];
                }
            }
        } else {
            for (int k = 0; k < K; k++) {
                const float *wr = w + (size_t)k * ldw + n0;
                for (int m = 0; m < M; m++) {
                    const float xm = x[m * ldx + k];
                    for (int j = 0; j < nb; j++) a[m][j] += xm * wr[j];
                }
            }
        }
        for (int m = 0; m < M; m++)
            for (int j = 0; j < nb; j++) y[m * ldy + n0 + j] = a[m][j];
    }
}

static inline __attribute__((always_inline)) void s_skinny_out_in(float *y, size_t ldy, const float *x, size_t ldx,
                                                                  const float *w, int M, int N, int K, int acc) {
    for (int n = 0; n < N; n++) {
        const float *wr = w + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            const float *xr = x + m * ldx;
            float s[16] = {0};
            int k = 0;
            for (; k + 16 <= K; k += 16)
                for (int j = 0; j < 16; j++) s[j] += xr[k + j] * wr[k + j];
            float t = 0.0f;
            for (; k < K; k++) t += xr[k] * wr[k];
            for (int j = 0; j < 16; j++) t += s[j];
            y[m * ldy + n] = acc ? y[m * ldy + n] + t : t;
        }
    }
}

#define S_SKINNY_CASE(MM)                                                                          \
    case MM:                                                                                       \
        if (layout == NR_W_IN_OUT) s_skinny_in_out(y, ldy, x, ldx, w, MM, N, K, ldw, accumulate);      \
        else s_skinny_out_in(y, ldy, x, ldx, w, MM, N, K, accumulate);                            \
        return 1

/* 1 when handled; ldw is the IN_OUT weight row stride. */
static int s_skinny_ldw(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M,
                        int N, int K, size_t ldw, int accumulate) {
    switch (M) {
        S_SKINNY_CASE(1);
        S_SKINNY_CASE(2);
        S_SKINNY_CASE(3);
        S_SKINNY_CASE(4);
        S_SKINNY_CASE(5);
        S_SKINNY_CASE(6);
        S_SKINNY_CASE(7);
        S_SKINNY_CASE(8);
    default: return 0;
    }
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* Skinny matmul, weights [N][K] (torch's Linear layout), AVX-512: 4
 * weight rows x up to 4 activation rows per pass, 16 accumulators, each
 * loaded weight vector serving every activation row; the 4 x 4 dot
 * products are reduced together at the end. The plain-C kernel above
 * reduced every output's 16 lanes one float at a time, which made a beam
 * step (4 rows) compute-bound. An output's sum runs in the same order
 * whichever rows share its pass. */
static inline __attribute__((always_inline)) __m128 s_sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)); /* (a, b, c, d) sums */
}

/* 16 weights from w + k (F32, or BF16 widened exactly: its bits are the
 * float's upper half), the lanes of mask m only. */
static inline __attribute__((always_inline)) __m512 s_wload(const void *w, int bf16, size_t k, __mmask16 m) {
    if (bf16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k)), 16));
    return _mm512_maskz_loadu_ps(m, (const float *)w + k);
}

/* bf16 is a constant at each call: one copy of the loop per weight type,
 * the same sums in the same order. */
static inline __attribute__((always_inline)) void s_skinny_oi512_any(float *y, size_t ldy, const float *x, size_t ldx,
                                                                     const void *w, int bf16, int M, int N, int K,
                                                                     int acc) {
    const int kt = K % 16;
    const __mmask16 km = (__mmask16)((1u << kt) - 1);
    const size_t esz = bf16 ? sizeof(uint16_t) : sizeof(float);
    for (int n0 = 0; n0 < N; n0 += 4) {
        const int nv = N - n0 < 4 ? N - n0 : 4;
        const char *wr[4];
        for (int j = 0; j < 4; j++) wr[j] = (const char *)w + (size_t)(n0 + (j < nv ? j : 0)) * K * esz;
        for (int m0 = 0; m0 < M; m0 += 4) {
            const int mv = M - m0 < 4 ? M - m0 : 4;
            const float *xr[4];
            for (int i = 0; i < 4; i++) xr[i] = x + (size_t)(m0 + (i < mv ? i : 0)) * ldx;
            __m512 c[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) c[i][j] = _mm512_setzero_ps();
            int k = 0;
            for (; k + 16 <= K; k += 16) {
                __m512 wv[4];
                for (int j = 0; j < 4; j++) wv[j] = s_wload(wr[j], bf16, (size_t)k, 0xffff);
                for (int i = 0; i < mv; i++) {
                    const __m512 xv = _mm512_loadu_ps(xr[i] + k);
                    for (int j = 0; j < 4; j++) c[i][j] = _mm512_fmadd_ps(xv, wv[j], c[i][j]);
                }
            }
            if (kt) {
                __m512 wv[4];
                for (int j = 0; j < 4; j++) wv[j] = s_wload(wr[j], bf16, (size_t)k, km);
                for (int i = 0; i < mv; i++) {
                    const __m512 xv = _mm512_maskz_loadu_ps(km, xr[i] + k);
                    for (int j = 0; j < 4; j++) c[i][j] = _mm512_fmadd_ps(xv, wv[j], c[i][j]);
                }
            }
            for (int i = 0; i < mv; i++) {
                float s[4], *yr = y + (size_t)(m0 + i) * ldy + n0;
                _mm_storeu_ps(s, s_sum4(c[i][0], c[i][1], c[i][2], c[i][3]));
                for (int j = 0; j < nv; j++) yr[j] = acc ? yr[j] + s[j] : s[j];
            }
        }
    }
}

static void s_skinny_oi512(float *y, size_t ldy, const float *x, size_t ldx, const float *w, int M, int N, int K,
                           int acc) {
    s_skinny_oi512_any(y, ldy, x, ldx, w, 0, M, N, K, acc);
}
static void s_skinny_oi512_bf16(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int M, int N,
                                int K, int acc) {
    s_skinny_oi512_any(y, ldy, x, ldx, w, 1, M, N, K, acc);
}
#endif

static int s_skinny(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M,
                    int N, int K, int accumulate) {
#if defined(__AVX512F__)
    if (layout == NR_W_OUT_IN && M <= S_SKINNY_MAX) {
        s_skinny_oi512(y, ldy, x, ldx, w, M, N, K, accumulate);
        return 1;
    }
#endif
    return s_skinny_ldw(y, ldy, x, ldx, w, layout, M, N, K, (size_t)N, accumulate);
}

static void s_skinny_strided(float *y, size_t ldy, const float *x, size_t ldx, const float *w, int M, int N, int K,
                             size_t ldw, int acc) {
    s_skinny_ldw(y, ldy, x, ldx, w, NR_W_IN_OUT, M, N, K, ldw, acc);
}

typedef struct {
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    const float *w;
    const uint16_t *wb; /* instead of w: BF16 (N, K) (AVX-512 only) */
    nr_wlayout_t layout;
    int M, N, K, acc;
} s_mm_t;

static int s_skinny(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M,
                    int N, int K, int accumulate);

static void s_mm_part(void *p, int part, int nparts) {
    const s_mm_t *a = p;
    /* split N in multiples of S_NB; within a part, walk S_NB-column blocks
     * and run every group of up to 8 rows on a block while it is in cache */
    int chunks = (a->N + S_NB - 1) / S_NB;
    int c0 = (int)((long)chunks * part / nparts), c1 = (int)((long)chunks * (part + 1) / nparts);
    for (int c = c0; c < c1; c++) {
        int n0 = c * S_NB, nb = a->N - n0 < S_NB ? a->N - n0 : S_NB;
        for (int m0 = 0; m0 < a->M; m0 += S_SKINNY_MAX) {
            int mb = a->M - m0 < S_SKINNY_MAX ? a->M - m0 : S_SKINNY_MAX;
            const float *x = a->x + (size_t)m0 * a->ldx;
            float *y = a->y + (size_t)m0 * a->ldy + n0;
#if defined(__AVX512F__)
            if (a->wb)
                s_skinny_oi512_bf16(y, a->ldy, x, a->ldx, a->wb + (size_t)n0 * a->K, mb, nb, a->K, a->acc);
            else
#endif
            if (a->layout == NR_W_IN_OUT)
                s_skinny_strided(y, a->ldy, x, a->ldx, a->w + n0, mb, nb, a->K, a->N, a->acc);
            else
                s_skinny(y, a->ldy, x, a->ldx, a->w + (size_t)n0 * a->K, NR_W_OUT_IN, mb, nb, a->K, a->acc);
        }
    }
}


/* ---- own AVX-512 sgemm for M > 32 rows (ViT, cross-attention K/V) ----
 * OpenBLAS 0.3.21 runs its AVX2 kernels on AMD Zen 4/5 (and the dev VM pins
 * OPENBLAS_CORETYPE=Haswell), leaving half of the FMA width unused. This is
 * a plain packed GEMM: A (activations) packed once per call into 8-row
 * panels, blocks of 32-column panels of W packed on the fly (from either layout),
 * an 8x32 register-blocked microkernel (16 zmm accumulators), column panels
 * split over the pool. In the AVX-512 build only; the others call sgemm. */

#if defined(__AVX512F__)
#include <immintrin.h>
#define S_MR 8
#define S_NR 32
#define S_KC 512
#define S_NPB 8 /* weight panels packed together: 8 x 512 x 32 floats = 512 KiB */
#define S_BLOCK ((size_t)S_NPB * S_KC * S_NR)

static inline __attribute__((always_inline)) void s_kern(const float *ap, const float *bp, int kc, __m512 c[S_MR][2]) {
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(bp + (size_t)k * S_NR), b1 = _mm512_loadu_ps(bp + (size_t)k * S_NR + 16);
        for (int i = 0; i < S_MR; i++) {
            __m512 a = _mm512_set1_ps(ap[(size_t)k * S_MR + i]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
    }
}

typedef struct {
    float *y;
    size_t ldy;
    const float *ap; /* packed A: [mp/8][K][8] */
    const float *w;
    nr_wlayout_t layout;
    int M, N, K, acc;
    float *bp;       /* per part: S_NPB packed weight panels (S_BLOCK floats) */
} s_gemm_t;

/* Packs W[k0:k0+kc, n0:n0+32] as [kc][32], zero-padded past N. */
static void s_wpack(float *bp, const s_gemm_t *g, int n0, int k0, int kc) {
    const int N = g->N, K = g->K, nv = N - n0 < S_NR ? N - n0 : S_NR;
    if (g->layout == NR_W_IN_OUT) {
        for (int k = 0; k < kc; k++) {
            const float *src = g->w + (size_t)(k0 + k) * N + n0;
            float *dst = bp + (size_t)k * S_NR;
            int j = 0;
            for (; j < nv; j++) dst[j] = src[j];
            for (; j < S_NR; j++) dst[j] = 0.0f;
        }
    } else {
        /* transposed: 16 weight rows gathered per k (a scalar copy wrote a
         * cache line per float, a fifth of the ViT's GEMM time) */
        const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(K));
        for (int h = 0; h < S_NR; h += 16) {
            const __mmask16 m = (__mmask16)(nv - h >= 16 ? 0xffff : nv > h ? (1u << (nv - h)) - 1 : 0);
            const float *src = g->w + (size_t)(n0 + (m ? h : 0)) * K + k0;
            for (int k = 0; k < kc; k++)
                _mm512_storeu_ps(bp + (size_t)k * S_NR + h,
                                 _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, src + k, 4));
        }
    }
}

/* Loop order (GotoBLAS-like): S_NPB weight panels x S_KC rows of K are packed
 * into one block that stays in L2 (512 KiB), then every 8-row panel of A
 * runs against all of them while it sits in L1. Packing one panel at a time
 * streamed all of A from L3 once per 32 columns, which made the 1576-row
 * (8-image) encoder slower per image than one image. The summation order
 * per output is unchanged (k in order within a block, blocks added in
 * order), so results are bit-identical. */
static void s_gemm_part(void *p, int part, int nparts) {
    const s_gemm_t *g = p;
    const int K = g->K, N = g->N, M = g->M;
    const int panels = (N + S_NR - 1) / S_NR;
    const int p0 = (int)((long)panels * part / nparts), p1 = (int)((long)panels * (part + 1) / nparts);
    if (p1 <= p0) return;
    float *bp = g->bp + (size_t)part * S_BLOCK;
    for (int pb = p0; pb < p1; pb += S_NPB) {
        const int nb = p1 - pb < S_NPB ? p1 - pb : S_NPB;
        for (int k0 = 0; k0 < K; k0 += S_KC) {
            const int kc = K - k0 < S_KC ? K - k0 : S_KC;
            for (int q = 0; q < nb; q++) s_wpack(bp + (size_t)q * S_KC * S_NR, g, (pb + q) * S_NR, k0, kc);
            const int first = k0 == 0;
            for (int m0 = 0; m0 < M; m0 += S_MR) {
                const int mv = M - m0 < S_MR ? M - m0 : S_MR;
                const float *ap = g->ap + ((size_t)(m0 / S_MR) * K + k0) * S_MR;
                for (int q = 0; q < nb; q++) {
                    const int n0 = (pb + q) * S_NR, nv = N - n0 < S_NR ? N - n0 : S_NR;
                    __m512 c[S_MR][2];
                    for (int i = 0; i < S_MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
                    s_kern(ap, bp + (size_t)q * S_KC * S_NR, kc, c);
                    /* y = (acc or not first block ? y : 0) + c, valid part only */
                    __mmask16 m0k = (__mmask16)(nv >= 16 ? 0xffff : (1u << nv) - 1);
                    __mmask16 m1k = (__mmask16)(nv >= 32 ? 0xffff : nv > 16 ? (1u << (nv - 16)) - 1 : 0);
                    for (int i = 0; i < mv; i++) {
                        float *yr = g->y + (size_t)(m0 + i) * g->ldy + n0;
                        __m512 r0 = c[i][0], r1 = c[i][1];
                        if (g->acc || !first) {
                            r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0k, yr));
                            r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(m1k, yr + 16));
                        }
                        _mm512_mask_storeu_ps(yr, m0k, r0);
                        _mm512_mask_storeu_ps(yr + 16, m1k, r1);
                    }
                }
            }
        }
    }
}

/* Packs x into 8-row panels [mp/8][K][8] (zero rows past M); part of the
 * panels, so the pool shares the packing. Values are copied, not changed. */
typedef struct {
    float *ap;
    const float *x;
    size_t ldx;
    int M, K;
} s_apack_t;

static void s_apack_part(void *p, int part, int nparts) {
    const s_apack_t *a = p;
    const int panels = (a->M + S_MR - 1) / S_MR, K = a->K;
    const int q0 = (int)((long)panels * part / nparts), q1 = (int)((long)panels * (part + 1) / nparts);
    for (int q = q0; q < q1; q++) {
        float *dst = a->ap + (size_t)q * K * S_MR;
        const int m0 = q * S_MR;
        if (m0 + S_MR <= a->M) {
            const float *r[S_MR];
            for (int i = 0; i < S_MR; i++) r[i] = a->x + (size_t)(m0 + i) * a->ldx;
            for (int k = 0; k < K; k++)
                for (int i = 0; i < S_MR; i++) dst[(size_t)k * S_MR + i] = r[i][k];
            continue;
        }
        for (int i = 0; i < S_MR; i++) {
            if (m0 + i < a->M) {
                const float *src = a->x + (size_t)(m0 + i) * a->ldx;
                for (int k = 0; k < K; k++) dst[(size_t)k * S_MR + i] = src[k];
            } else {
                for (int k = 0; k < K; k++) dst[(size_t)k * S_MR + i] = 0.0f;
            }
        }
    }
}

/* 1 when done; 0 to fall back to sgemm (no memory). The packed buffers
 * are the calling thread's scratch, reused from call to call. */
static int s_gemm_own(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M,
                      int N, int K, int accumulate) {
    const int mp = (M + S_MR - 1) / S_MR * S_MR;
    const int parts = nr_cpu_pool_size(); /* at least 1 */
    float *ap = nr_cpu_scratch(NR_CPU_SCRATCH_GEMM_A, (size_t)mp * K * sizeof(float));
    float *bp = nr_cpu_scratch(NR_CPU_SCRATCH_GEMM_B, (size_t)parts * S_BLOCK * sizeof(float));
    if (!ap || !bp) return 0;
    s_apack_t pk = {ap, x, ldx, M, K};
    if (mp >= 8 * S_MR) nr_cpu_run(s_apack_part, &pk);
    else s_apack_part(&pk, 0, 1);
    s_gemm_t g = {y, ldy, ap, w, layout, M, N, K, accumulate, bp};
    nr_cpu_run(s_gemm_part, &g);
    return 1;
}
#endif

/* A skinny matmul: on the pool when the weight is large enough to pay. */
static void s_mm_run(s_mm_t *a) {
    if ((size_t)a->N * a->K >= 65536) nr_cpu_run(s_mm_part, a);
    else s_mm_part(a, 0, 1);
}

static void s_matmul(float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout, int M, int N,
                   int K, int accumulate) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    if (M <= nr_cpu_skinny_max && M <= 4 * S_SKINNY_MAX) {
        s_mm_run(&(s_mm_t){y, ldy, x, ldx, w, NULL, layout, M, N, K, accumulate});
        return;
    }
#if defined(__AVX512F__)
    if (nr_cpu_gemm_own && s_gemm_own(y, ldy, x, ldx, w, layout, M, N, K, accumulate)) return;
#endif
    if (layout == NR_W_OUT_IN)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, (int)ldx, w, K, accumulate ? 1.0f : 0.0f,
                    y, (int)ldy);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, x, (int)ldx, w, N,
                    accumulate ? 1.0f : 0.0f, y, (int)ldy);
}

/* The skinny matmul reading BF16 weights where they are (decode steps on
 * a BF16 checkpoint at F32): half the bytes of an F32 copy, widened in
 * registers; the same parts and sums as s_matmul's, so bit for bit its
 * result on the widened weights. */
static int s_matmul_bf16w(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int M, int N, int K,
                          int accumulate) {
#if defined(__AVX512F__)
    if (M <= 0 || N <= 0 || K <= 0 || M > nr_cpu_skinny_max || M > 4 * S_SKINNY_MAX) return 0;
    s_mm_run(&(s_mm_t){y, ldy, x, ldx, NULL, w, NR_W_OUT_IN, M, N, K, accumulate});
    return 1;
#else
    (void)y, (void)ldy, (void)x, (void)ldx, (void)w, (void)M, (void)N, (void)K, (void)accumulate;
    return 0;
#endif
}

/* The key/value head query head h reads (grouped-query attention). */
static inline int s_kv_head(const nr_attn_args_t *a, int h) {
    return a->n_kv_head > 0 ? h / (a->n_head / a->n_kv_head) : h;
}

/* Attention for a few query rows per K/V (decode steps, short prefills,
 * causal masks): one job per (group, head), spread over the pool when the
 * step is large (cross-attention to 577 image tokens). A group is a run of
 * batch rows reading the same K/V (cross-attention: the beams of one
 * image, through kv_index), so each key and value row is loaded once for
 * up to S_FEW_R query rows; causal rows are each their own group. A
 * query row's result does not depend on which rows share its group or
 * which thread computes it: the same operations in the same order. */
#define S_FEW_R 4
#define S_FEW_POOL_MIN 65536 /* multiply-adds of Q K^T below which the caller runs it alone */

typedef struct {
    const nr_attn_args_t *a;
    const int *start; /* group g: batch rows start[g] .. start[g + 1] - 1 */
    int n_groups;
    float *scores;    /* per part: S_FEW_R x n_kv */
} s_few_t;

/* Query rows q[r] (r < R) against keys 0..lim-1 of one head: sc[r][j] =
 * scale * q[r].k[j] for j < lim[r]. */
static void s_few_scores(const nr_attn_args_t *a, const float *const *q, const int *lim, int R, int maxlim,
                         const float *k, float *sc) {
    const int hd = a->head_dim, nkv = a->n_kv;
#if defined(__AVX512F__)
    if (hd % 16 == 0 && hd <= 128) {
        const int nv = hd / 16;
        for (int j = 0; j < maxlim; j++) {
            const float *kj = k + (size_t)j * a->kv_rstride;
            __m512 acc[S_FEW_R];
            for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
            for (int c = 0; c < nv; c++) {
                const __m512 kc = _mm512_loadu_ps(kj + 16 * c);
                for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q[r] + 16 * c), kc, acc[r]);
            }
            for (int r = 0; r < R; r++)
                if (j < lim[r]) sc[(size_t)r * nkv + j] = _mm512_reduce_add_ps(acc[r]) * a->scale;
        }
        return;
    }
#endif
    for (int j = 0; j < maxlim; j++) {
        const float *kj = k + (size_t)j * a->kv_rstride;
        for (int r = 0; r < R; r++) {
            if (j >= lim[r]) continue;
            float acc[16] = {0};
            int d = 0;
            for (; d + 16 <= hd; d += 16)
                for (int l = 0; l < 16; l++) acc[l] += q[r][d + l] * kj[d + l];
            float t = 0.0f;
            for (; d < hd; d++) t += q[r][d] * kj[d];
            for (int l = 0; l < 16; l++) t += acc[l];
            sc[(size_t)r * nkv + j] = t * a->scale;
        }
    }
}

/* o[r] = sum_j p[r][j] v[j] over j < lim[r], p already normalised. */
static void s_few_values(const nr_attn_args_t *a, float *const *o, const int *lim, int R, int maxlim, const float *v,
                         const float *p) {
    const int hd = a->head_dim, nkv = a->n_kv;
#if defined(__AVX512F__)
    if (hd % 16 == 0 && hd <= 128) {
        for (int d0 = 0; d0 < hd; d0 += 64) { /* 4 rows x 4 vectors of accumulators */
            const int nv = hd - d0 < 64 ? (hd - d0) / 16 : 4;
            __m512 acc[S_FEW_R][4];
            for (int r = 0; r < R; r++)
                for (int c = 0; c < nv; c++) acc[r][c] = _mm512_setzero_ps();
            for (int j = 0; j < maxlim; j++) {
                const float *vj = v + (size_t)j * a->kv_rstride + d0;
                __m512 vc[4];
                for (int c = 0; c < nv; c++) vc[c] = _mm512_loadu_ps(vj + 16 * c);
                for (int r = 0; r < R; r++) {
                    if (j >= lim[r]) continue;
                    const __m512 pj = _mm512_set1_ps(p[(size_t)r * nkv + j]);
                    for (int c = 0; c < nv; c++) acc[r][c] = _mm512_fmadd_ps(pj, vc[c], acc[r][c]);
                }
            }
            for (int r = 0; r < R; r++)
                for (int c = 0; c < nv; c++) _mm512_storeu_ps(o[r] + d0 + 16 * c, acc[r][c]);
        }
        return;
    }
#endif
    for (int r = 0; r < R; r++)
        for (int d = 0; d < hd; d++) o[r][d] = 0.0f;
    for (int j = 0; j < maxlim; j++) {
        const float *vj = v + (size_t)j * a->kv_rstride;
        for (int r = 0; r < R; r++) {
            if (j >= lim[r]) continue;
            const float pj = p[(size_t)r * nkv + j];
            for (int d = 0; d < hd; d++) o[r][d] += pj * vj[d];
        }
    }
}

static void s_few_part(void *p, int part, int nparts) {
    const s_few_t *t = p;
    const nr_attn_args_t *a = t->a;
    const int hd = a->head_dim, total = t->n_groups * a->n_head;
    float *sc = t->scores + (size_t)part * S_FEW_R * a->n_kv;
    const int first = (int)((long)total * part / nparts), last = (int)((long)total * (part + 1) / nparts);
    for (int gh = first; gh < last; gh++) {
        const int g = gh / a->n_head, h = gh % a->n_head, b0 = t->start[g], b1 = t->start[g + 1];
        const int kb = a->kv_index ? a->kv_index[b0] : b0, kvh = s_kv_head(a, h);
        const float *k = a->k + (size_t)kb * a->kv_bstride + (size_t)kvh * hd;
        const float *v = a->v + (size_t)kb * a->kv_bstride + (size_t)kvh * hd;
        const float *q[S_FEW_R];
        float *o[S_FEW_R];
        int lim[S_FEW_R], R = 0, maxlim = 0;
        /* query rows (b, i) of the group in order, S_FEW_R at a time */
        for (int b = b0; b < b1; b++)
            for (int i = 0; i < a->n_q; i++) {
                q[R] = a->q + (size_t)b * a->q_bstride + (size_t)i * a->q_rstride + (size_t)h * hd;
                o[R] = a->out + (size_t)b * a->o_bstride + (size_t)i * a->o_rstride + (size_t)h * hd;
                lim[R] = a->causal && a->q_pos0 + i + 1 < a->n_kv ? a->q_pos0 + i + 1 : a->n_kv;
                maxlim = lim[R] > maxlim ? lim[R] : maxlim;
                if (++R < S_FEW_R && !(b == b1 - 1 && i == a->n_q - 1)) continue;
                s_few_scores(a, q, lim, R, maxlim, k, sc);
                for (int r = 0; r < R; r++) {
                    float *pr = sc + (size_t)r * a->n_kv;
                    const float inv = 1.0f / s_softmax_row(pr, lim[r]);
                    for (int j = 0; j < lim[r]; j++) pr[j] *= inv;
                }
                s_few_values(a, o, lim, R, maxlim, v, sc);
                R = maxlim = 0;
            }
    }
}

static int s_attn_few(const nr_attn_args_t *a) {
    const int parts = nr_cpu_pool_size(); /* at least 1 */
    const size_t ints = ((size_t)a->batch + 1 + 15) / 16 * 16; /* group starts, then the scores */
    float *scratch = nr_cpu_scratch(NR_CPU_SCRATCH_ATTN,
                                    (ints + (size_t)parts * S_FEW_R * a->n_kv) * sizeof(float));
    if (!scratch) return NR_ENOMEM;
    int *start = (int *)scratch;
    int n_groups = 0;
    for (int b = 0; b < a->batch; b++) /* a run of rows on one K/V (never for causal rows) */
        if (b == 0 || a->causal || !a->kv_index || a->kv_index[b] != a->kv_index[b - 1]) start[n_groups++] = b;
    start[n_groups] = a->batch;
    s_few_t t = {a, start, n_groups, scratch + ints};
    const double work = (double)a->batch * a->n_q * a->n_head * a->n_kv * a->head_dim;
    if (work >= S_FEW_POOL_MIN && n_groups * a->n_head > 1) nr_cpu_run(s_few_part, &t);
    else s_few_part(&t, 0, 1);
    return 0;
}

/* Non-causal attention over 16 or more query rows (the ViT; decode steps
 * with many rows): (batch, head) pairs are spread over the pool; each head
 * transposes its K once, then computes scores, softmax and the weighted
 * sum of V four query rows at a time with AVX-512 (each loaded K^T or V
 * vector serves four rows), else a row at a time in loops the compiler
 * vectorizes. Calling OpenBLAS here (two small sgemms per head) woke its
 * own threads, which then spun on a core the pool needed for the next
 * GEMM: about 17% of the encoder's CPU samples. */
typedef struct {
    const nr_attn_args_t *a;
    float *scratch; /* per part: [head_dim][n_kv] K transposed + [4][n_kv] scores */
    size_t per_part;
} s_attn_t;

/* One query row: scores against kt ([hd][nkv]), softmax, o = p V. */
static void s_attn_row(const nr_attn_args_t *a, const float *qi, const float *kt, const float *v, float *scores,
                       float *oi) {
    const int nkv = a->n_kv, hd = a->head_dim;
    for (int j = 0; j < nkv; j++) scores[j] = 0.0f;
    for (int d = 0; d < hd; d++) {
        const float qd = qi[d], *ktd = kt + (size_t)d * nkv;
        for (int j = 0; j < nkv; j++) scores[j] += qd * ktd[j];
    }
    for (int j = 0; j < nkv; j++) scores[j] *= a->scale;
    s_softmax(scores, 1, nkv);
    for (int d = 0; d < hd; d++) oi[d] = 0.0f;
    for (int j = 0; j < nkv; j++) {
        const float pj = scores[j], *vj = v + (size_t)j * a->kv_rstride;
        for (int d = 0; d < hd; d++) oi[d] += pj * vj[d];
    }
}

#if defined(__AVX512F__)
/* Four query rows at once, any head_dim: each loaded K^T or V vector serves
 * four rows from registers. */
/* Masks of the NV vectors from 16-float offset 0 with `left` valid floats. */
static inline __attribute__((always_inline)) void s_masks(__mmask16 *m, int nv, int left) {
    for (int c = 0; c < nv; c++, left -= 16) m[c] = (__mmask16)(left >= 16 ? 0xffff : left > 0 ? (1u << left) - 1 : 0);
}

/* Scores of 4 query rows against NV x 16 keys from j0: 4 x NV accumulators. */
static inline __attribute__((always_inline)) void s_scores4(const nr_attn_args_t *a, const float *q, const float *kt,
                                                            float *scores, int j0, const int NV) {
    const int nkv = a->n_kv, hd = a->head_dim;
    const size_t qs = a->q_rstride;
    __mmask16 m[4];
    s_masks(m, NV, nkv - j0);
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < NV; c++) acc[r][c] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        const float *ktd = kt + (size_t)d * nkv + j0;
        __m512 k[4];
        for (int c = 0; c < NV; c++) k[c] = _mm512_maskz_loadu_ps(m[c], ktd + 16 * c);
        for (int r = 0; r < 4; r++) {
            const __m512 qd = _mm512_set1_ps(q[r * qs + d]);
            for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(qd, k[c], acc[r][c]);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < NV; c++)
            _mm512_mask_storeu_ps(scores + (size_t)r * nkv + j0 + 16 * c, m[c],
                                  _mm512_mul_ps(acc[r][c], _mm512_set1_ps(a->scale)));
}

/* o = p V for 4 rows, NV x 16 of V's columns from c0. */
static inline __attribute__((always_inline)) void s_values4(const nr_attn_args_t *a, const float *v,
                                                            const float *scores, float *o, int c0, const int NV) {
    const int nkv = a->n_kv;
    const size_t os = a->o_rstride;
    __mmask16 m[4];
    s_masks(m, NV, a->head_dim - c0);
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < NV; c++) acc[r][c] = _mm512_setzero_ps();
    for (int j = 0; j < nkv; j++) {
        const float *vj = v + (size_t)j * a->kv_rstride + c0;
        __m512 vv[4];
        for (int c = 0; c < NV; c++) vv[c] = _mm512_maskz_loadu_ps(m[c], vj + 16 * c);
        for (int r = 0; r < 4; r++) {
            const __m512 p = _mm512_set1_ps(scores[(size_t)r * nkv + j]);
            for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(p, vv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < NV; c++) _mm512_mask_storeu_ps(o + r * os + c0 + 16 * c, m[c], acc[r][c]);
}

/* Keys and V's columns go 64 at a time (16 accumulators; with 4 the FMA
 * units waited on their latency half the time), the last block in as few
 * vectors as it needs (BLIP's 577 keys end in one; SigLIP's head_dim 72 is
 * 64 + 8). NV is a constant in each case, so the accumulators stay in
 * registers (indexed by a run-time count they went to the stack). */
static void s_attn_rows4(const nr_attn_args_t *a, const float *q, const float *kt, const float *v, float *scores,
                         float *o) {
    const int nkv = a->n_kv, hd = a->head_dim;
    for (int j0 = 0; j0 < nkv; j0 += 64) switch (nkv - j0 >= 64 ? 4 : (nkv - j0 + 15) / 16) {
        case 1: s_scores4(a, q, kt, scores, j0, 1); break;
        case 2: s_scores4(a, q, kt, scores, j0, 2); break;
        case 3: s_scores4(a, q, kt, scores, j0, 3); break;
        default: s_scores4(a, q, kt, scores, j0, 4); break;
        }
    s_softmax(scores, 4, nkv);
    for (int c0 = 0; c0 < hd; c0 += 64) switch (hd - c0 >= 64 ? 4 : (hd - c0 + 15) / 16) {
        case 1: s_values4(a, v, scores, o, c0, 1); break;
        case 2: s_values4(a, v, scores, o, c0, 2); break;
        case 3: s_values4(a, v, scores, o, c0, 3); break;
        default: s_values4(a, v, scores, o, c0, 4); break;
        }
}
#endif

static void s_attn_heads_part(void *p, int part, int nparts) {
    const s_attn_t *t = p;
    const nr_attn_args_t *a = t->a;
    const int nq = a->n_q, nkv = a->n_kv, hd = a->head_dim, total = a->batch * a->n_head;
    float *kt = t->scratch + (size_t)part * t->per_part, *scores = kt + (size_t)hd * nkv;
    const int first = (int)((long)total * part / nparts), last = (int)((long)total * (part + 1) / nparts);
    for (int bh = first; bh < last; bh++) {
        const int b = bh / a->n_head, h = bh % a->n_head, kb = a->kv_index ? a->kv_index[b] : b;
        const float *q = a->q + (size_t)b * a->q_bstride + (size_t)h * hd;
        const float *k = a->k + (size_t)kb * a->kv_bstride + (size_t)s_kv_head(a, h) * hd;
        const float *v = a->v + (size_t)kb * a->kv_bstride + (size_t)s_kv_head(a, h) * hd;
        float *o = a->out + (size_t)b * a->o_bstride + (size_t)h * hd;
        for (int j = 0; j < nkv; j++)
            for (int d = 0; d < hd; d++) kt[(size_t)d * nkv + j] = k[(size_t)j * a->kv_rstride + d];
        int i = 0;
#if defined(__AVX512F__)
        for (; i + 4 <= nq; i += 4)
            s_attn_rows4(a, q + (size_t)i * a->q_rstride, kt, v, scores, o + (size_t)i * a->o_rstride);
#endif
        for (; i < nq; i++) s_attn_row(a, q + (size_t)i * a->q_rstride, kt, v, scores, o + (size_t)i * a->o_rstride);
    }
}

static int s_attention(const nr_attn_args_t *a) {
    if (a->batch <= 0 || a->n_head <= 0 || a->head_dim <= 0 || a->n_q <= 0 || a->n_kv <= 0) return NR_EINVAL;
    if (a->n_kv_head < 0 || (a->n_kv_head > 0 && a->n_head % a->n_kv_head)) return NR_EINVAL;
    if (a->causal || a->n_q < 16) return s_attn_few(a); /* decode steps: a few rows against the cache */
    const int parts = nr_cpu_pool_size(); /* at least 1 */
    s_attn_t t = {a, NULL, (size_t)a->n_kv * (4 + (size_t)a->head_dim)};
    t.scratch = nr_cpu_scratch(NR_CPU_SCRATCH_ATTN, (size_t)parts * t.per_part * sizeof(float));
    if (!t.scratch) return NR_ENOMEM;
    nr_cpu_run(s_attn_heads_part, &t);
    return 0;
}

static int s_patch_embed(const nr_patch_args_t *a) {
    const int C = a->channels, H = a->height, W = a->width, P = a->patch, D = a->dim;
    if (a->batch <= 0 || P <= 0 || H % P || W % P || C <= 0 || D <= 0) return NR_EINVAL;
    const int np = (H / P) * (W / P), kk = C * P * P;
    float *col = nr_cpu_scratch(NR_CPU_SCRATCH_COL, (size_t)np * kk * sizeof(float));
    if (!col) return NR_ENOMEM;
    for (int b = 0; b < a->batch; b++) {
        nr_cpu_im2col_patches(col, a->pixels + (size_t)b * C * H * W, C, H, W, P);
        const int c0 = a->cls ? 1 : 0; /* SigLIP has no class row */
        float *out = a->out + (size_t)b * (np + c0) * D;
        s_matmul(out + (size_t)c0 * D, D, col, kk, a->w, NR_W_OUT_IN, np, D, kk, 0);
        if (a->cls)
            for (int d = 0; d < D; d++) out[d] = a->cls[d] + a->pos[d];
        for (int r = c0; r < np + c0; r++) {
            float *o = out + (size_t)r * D;
            const float *p = a->pos + (size_t)r * D;
            for (int d = 0; d < D; d++) o[d] = (o[d] + a->b[d]) + p[d];
        }
    }
    return 0;
}

#define S_CAT2(a, b) a##_##b
#define S_CAT(a, b) S_CAT2(a, b)
const nr_cpu_kernels_t S_CAT(nr_cpu_kernels, NR_CPU_ISA) = {
    .layernorm = s_layernorm,
    .gelu = s_gelu,
    .softmax = s_softmax,
    .add = s_add,
    .add_bias = s_add_bias,
    .matmul = s_matmul,
    .matmul_bf16w = s_matmul_bf16w,
    .attention = s_attention,
    .patch_embed = s_patch_embed,
};
