/* Reduced-precision matmuls for the CPU backend: packed BF16 weights (AMX
 * tiles in amx.c, AVX-512 BF16 vdpbf16ps, or a plain C loop) and INT8
 * weights with per-output-channel scales (AVX-512F widening, or plain C),
 * each chosen by the kernel path (dispatch.h). The AVX-512 functions carry
 * target attributes, so they are compiled whatever the build's target and
 * run only on paths that have them. */
#include "models/cpu/lowp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/cpu/dispatch.h"
#include "models/cpu/kernels.h"
#include "models/tensor.h"

#if defined(__x86_64__)
#define S_X86 1
#include <immintrin.h>

#include "models/cpu/amx.h"
#define S_T_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define S_T_512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define S_T_AVX2 __attribute__((target("avx2,fma")))
#else
#define S_X86 0
#endif

/* Round to nearest even, as vcvtneps2bf16 (activations are never NaN here). */
static inline uint32_t s_bf16_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    x += 0x7fffu + ((x >> 16) & 1u);
    return x >> 16;
}
static inline float s_bf16_f32(uint32_t h) {
    uint32_t x = h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* W(k, n) from either layout. */
static inline float s_w(const float *w, nr_wlayout_t layout, int N, int K, int k, int n) {
    return layout == NR_W_IN_OUT ? w[(size_t)k * N + n] : w[(size_t)n * K + k];
}

int nr_cpu_bf16w_make(nr_cpu_bf16w_t *out, const float *w, nr_wlayout_t layout, int N, int K) {
    memset(out, 0, sizeof(*out));
    const int P = (K + 31) / 32 * 16, panels = (N + 31) / 32;
    uint16_t *d = nr_aligned_alloc((size_t)panels * P * 64 * sizeof(uint16_t));
    if (!d) return NR_ENOMEM;
    for (int pn = 0; pn < panels; pn++)
        for (int j = 0; j < 32; j++) {
            const int n = pn * 32 + j;
            uint16_t *col = d + (size_t)pn * P * 64 + (j / 16) * 32 + 2 * (j % 16);
            for (int k = 0; k < 2 * P; k++) {
                float v = (n < N && k < K) ? s_w(w, layout, N, K, k, n) : 0.0f;
                col[(size_t)(k / 2) * 64 + (k & 1)] = nr_f32_to_bf16(v);
            }
        }
    out->N = N;
    out->K = K;
    out->P = P;
    out->panels = panels;
    out->w = d;
    return 0;
}

void nr_cpu_bf16w_free(nr_cpu_bf16w_t *w) {
    free(w->w);
    memset(w, 0, sizeof(*w));
}

int nr_cpu_i8w_make(nr_cpu_i8w_t *out, const float *w, nr_wlayout_t layout, int N, int K) {
    memset(out, 0, sizeof(*out));
    const int panels = (N + 63) / 64;
    int8_t *q = nr_aligned_alloc((size_t)panels * K * 64);
    float *sc = nr_aligned_alloc((size_t)panels * 64 * sizeof(float));
    if (!q || !sc) {
        free(q);
        free(sc);
        return NR_ENOMEM;
    }
    for (int n = 0; n < panels * 64; n++) {
        float mx = 0.0f;
        for (int k = 0; n < N && k < K; k++) {
            float a = fabsf(s_w(w, layout, N, K, k, n));
            mx = a > mx ? a : mx;
        }
        const float s = mx > 0.0f ? mx / 127.0f : 1.0f, inv = 1.0f / s;
        sc[n] = s;
        int8_t *col = q + (size_t)(n / 64) * K * 64 + (n % 64);
        for (int k = 0; k < K; k++) {
            float v = n < N ? s_w(w, layout, N, K, k, n) * inv : 0.0f;
            long r = lrintf(v);
            col[(size_t)k * 64] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
        }
    }
    out->N = N;
    out->K = K;
    out->panels = panels;
    out->q = q;
    out->scale = sc;
    return 0;
}

void nr_cpu_i8w_free(nr_cpu_i8w_t *w) {
    free(w->q);
    free(w->scale);
    memset(w, 0, sizeof(*w));
}

/* ---- BF16 ---- */

typedef struct {
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    uint32_t *ap; /* [mpanels][P][8] bf16 pairs */
    const nr_cpu_bf16w_t *w;
    int M, acc;
    nr_cpu_path_t path;
} s_bf_t;

/* Packs x rows into 8-row panels of BF16 pairs; part of the m panels. */
static void s_bf_pack(void *arg, int part, int nparts) {
    const s_bf_t *a = arg;
    const int P = a->w->P, K = a->w->K, mp = (a->M + 7) / 8;
    const int q0 = (int)((long)mp * part / nparts), q1 = (int)((long)mp * (part + 1) / nparts);
    for (int q = q0; q < q1; q++) {
        uint32_t *dst = a->ap + (size_t)q * P * 8;
        if (q * 8 + 8 <= a->M && K % 2 == 0) {
            const float *r[8];
            for (int i = 0; i < 8; i++) r[i] = a->x + (size_t)(q * 8 + i) * a->ldx;
            for (int p = 0; p < K / 2; p++)
                for (int i = 0; i < 8; i++)
                    dst[(size_t)p * 8 + i] = s_bf16_bits(r[i][2 * p]) | (s_bf16_bits(r[i][2 * p + 1]) << 16);
            memset(dst + (size_t)(K / 2) * 8, 0, (size_t)(P - K / 2) * 8 * sizeof(uint32_t));
            continue;
        }
        for (int i = 0; i < 8; i++) {
            const int m = q * 8 + i;
            int p = 0;
            if (m < a->M) {
                const float *xr = a->x + (size_t)m * a->ldx;
                for (; 2 * p + 1 < K; p++)
                    dst[(size_t)p * 8 + i] = s_bf16_bits(xr[2 * p]) | (s_bf16_bits(xr[2 * p + 1]) << 16);
                if (2 * p < K) {
                    dst[(size_t)p * 8 + i] = s_bf16_bits(xr[2 * p]);
                    p++;
                }
            }
            for (; p < P; p++) dst[(size_t)p * 8 + i] = 0; /* past K, or a row past M */
        }
    }
}

/* Stores an accumulator tile (rows mv, valid columns nv of 32). */
static void s_store(float *y, size_t ldy, const float *c, int mv, int nv, int acc) {
    for (int i = 0; i < mv; i++)
        for (int j = 0; j < nv; j++) y[(size_t)i * ldy + j] = acc ? y[(size_t)i * ldy + j] + c[i * 32 + j] : c[i * 32 + j];
}

#if S_X86
static inline __attribute__((always_inline)) S_T_BF16 void s_bf_kern(const uint32_t *ap, const uint16_t *bp, int P,
                                                                      const int MR, __m512 c[8][2]) {
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < P; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(bp + (size_t)p * 64));
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(bp + (size_t)p * 64 + 32));
        for (int i = 0; i < MR; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[(size_t)p * 8 + i]);
            c[i][0] = _mm512_dpbf16_ps(c[i][0], av, b0);
            c[i][1] = _mm512_dpbf16_ps(c[i][1], av, b1);
        }
    }
}

static S_T_BF16 void s_bf_tile_avx(float *y, size_t ldy, const uint32_t *ap, const uint16_t *bp, int P, int mv, int nv,
                                   int acc) {
    __m512 c[8][2];
    if (mv == 1) s_bf_kern(ap, bp, P, 1, c);
    else if (mv == 2) s_bf_kern(ap, bp, P, 2, c);
    else if (mv <= 4) s_bf_kern(ap, bp, P, 4, c);
    else s_bf_kern(ap, bp, P, 8, c);
    __mmask16 k0 = (__mmask16)(nv >= 16 ? 0xffff : (1u << nv) - 1);
    __mmask16 k1 = (__mmask16)(nv >= 32 ? 0xffff : nv > 16 ? (1u << (nv - 16)) - 1 : 0);
    for (int i = 0; i < mv; i++) {
        float *yr = y + (size_t)i * ldy;
        __m512 r0 = c[i][0], r1 = c[i][1];
        if (acc) {
            r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(k0, yr));
            r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(k1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, k0, r0);
        _mm512_mask_storeu_ps(yr + 16, k1, r1);
    }
}
#endif

/* Plain C: the same products (BF16 x BF16, F32 sums) in a different order;
 * compiled for the baseline and, on x86, again for AVX2 + FMA. */
static inline __attribute__((always_inline)) void s_bf_tile_c(float *y, size_t ldy, const uint32_t *ap,
                                                              const uint16_t *bp, int P, int mv, int nv, int acc) {
    float c[8 * 32];
    for (int i = 0; i < mv; i++) {
        float *ci = c + i * 32;
        for (int j = 0; j < 32; j++) ci[j] = 0.0f;
        for (int p = 0; p < P; p++) {
            const uint32_t a = ap[(size_t)p * 8 + i];
            const float a0 = s_bf16_f32(a & 0xffffu), a1 = s_bf16_f32(a >> 16);
            const uint16_t *b = bp + (size_t)p * 64;
            for (int j = 0; j < 32; j++) ci[j] += a0 * s_bf16_f32(b[2 * j]) + a1 * s_bf16_f32(b[2 * j + 1]);
        }
    }
    s_store(y, ldy, c, mv, nv, acc);
}

static void s_bf_tile_plain(float *y, size_t ldy, const uint32_t *ap, const uint16_t *bp, int P, int mv, int nv,
                            int acc) {
    s_bf_tile_c(y, ldy, ap, bp, P, mv, nv, acc);
}

#if S_X86
static S_T_AVX2 void s_bf_tile_avx2(float *y, size_t ldy, const uint32_t *ap, const uint16_t *bp, int P, int mv,
                                    int nv, int acc) {
    s_bf_tile_c(y, ldy, ap, bp, P, mv, nv, acc);
}
#endif

static void s_bf_part(void *arg, int part, int nparts) {
    const s_bf_t *a = arg;
    const nr_cpu_bf16w_t *w = a->w;
    const int p0 = (int)((long)w->panels * part / nparts), p1 = (int)((long)w->panels * (part + 1) / nparts);
    /* 64-row blocks of x stay in L2 while this part's weight panels stream
     * past them (a weight panel is reused by the 8 row panels of a block) */
    for (int mb = 0; mb < a->M; mb += 64)
    for (int pn = p0; pn < p1; pn++) {
        const int n0 = pn * 32, nv = w->N - n0 < 32 ? w->N - n0 : 32;
        const uint16_t *bp = w->w + (size_t)pn * w->P * 64;
        const int mend = a->M - mb < 64 ? a->M : mb + 64;
        for (int m0 = mb; m0 < mend; m0 += 8) {
            const int mv = mend - m0 < 8 ? mend - m0 : 8;
            const uint32_t *ap = a->ap + (size_t)(m0 / 8) * w->P * 8;
            float *y = a->y + (size_t)m0 * a->ldy + n0;
#if S_X86
            if (a->path >= NR_CPU_PATH_AVX512BF16) {
                s_bf_tile_avx(y, a->ldy, ap, bp, w->P, mv, nv, a->acc);
                continue;
            }
            if (a->path >= NR_CPU_PATH_AVX2) {
                s_bf_tile_avx2(y, a->ldy, ap, bp, w->P, mv, nv, a->acc);
                continue;
            }
#endif
            s_bf_tile_plain(y, a->ldy, ap, bp, w->P, mv, nv, a->acc);
        }
    }
}

int nr_cpu_matmul_bf16(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_bf16w_t *w, int M,
                       int accumulate) {
    if (M <= 0 || w->N <= 0 || w->K <= 0) return 0;
    const nr_cpu_path_t path = nr_cpu_path();
#if S_X86
    if (path == NR_CPU_PATH_AMX && M >= NR_CPU_AMX_MIN_ROWS)
        return nr_cpu_amx_matmul_bf16(y, ldy, x, ldx, w, M, accumulate);
#endif
    const int mp = (M + 7) / 8;
    uint32_t *ap = nr_cpu_scratch(NR_CPU_SCRATCH_BF16_A, (size_t)mp * w->P * 8 * sizeof(uint32_t));
    if (!ap) return NR_ENOMEM;
    s_bf_t a = {y, ldy, x, ldx, ap, w, M, accumulate, path};
    const int big = (size_t)w->N * w->K >= 65536;
    if (big && mp > 8) nr_cpu_run(s_bf_pack, &a);
    else s_bf_pack(&a, 0, 1);
    if (big) nr_cpu_run(s_bf_part, &a);
    else s_bf_part(&a, 0, 1);
    return 0;
}

/* ---- INT8 ---- */

typedef struct {
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    const nr_cpu_i8w_t *w;
    int M, acc;
    nr_cpu_path_t path;
} s_i8_t;

#if S_X86
static inline __attribute__((always_inline)) S_T_512 void s_i8_kern(const float *x, size_t ldx, const int8_t *q,
                                                                     int K, const int MR, __m512 c[4][4]) {
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = c[i][2] = c[i][3] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const int8_t *qk = q + (size_t)k * 64;
        __m512 wv[4];
        for (int t = 0; t < 4; t++)
            wv[t] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(qk + 16 * t))));
        for (int i = 0; i < MR; i++) {
            const __m512 xv = _mm512_set1_ps(x[(size_t)i * ldx + k]);
            for (int t = 0; t < 4; t++) c[i][t] = _mm512_fmadd_ps(xv, wv[t], c[i][t]);
        }
    }
}

static S_T_512 void s_i8_tile_avx(float *y, size_t ldy, const float *x, size_t ldx, const int8_t *q, const float *sc,
                                  int K, int mv, int nv, int acc) {
    __m512 c[4][4];
    if (mv == 1) s_i8_kern(x, ldx, q, K, 1, c);
    else if (mv == 2) s_i8_kern(x, ldx, q, K, 2, c);
    else if (mv == 3) s_i8_kern(x, ldx, q, K, 3, c);
    else s_i8_kern(x, ldx, q, K, 4, c);
    for (int t = 0; t < 4; t++) {
        const int lo = 16 * t, cnt = nv - lo;
        if (cnt <= 0) break;
        const __mmask16 km = (__mmask16)(cnt >= 16 ? 0xffff : (1u << cnt) - 1);
        const __m512 s = _mm512_loadu_ps(sc + lo);
        for (int i = 0; i < mv; i++) {
            float *yr = y + (size_t)i * ldy + lo;
            __m512 r = _mm512_mul_ps(c[i][t], s);
            if (acc) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(km, yr));
            _mm512_mask_storeu_ps(yr, km, r);
        }
    }
}
#endif

/* Plain C, compiled for the baseline and, on x86, again for AVX2 + FMA. */
static inline __attribute__((always_inline)) void s_i8_tile_c(float *y, size_t ldy, const float *x, size_t ldx,
                                                              const int8_t *q, const float *sc, int K, int mv, int nv,
                                                              int acc) {
    float c[4 * 64];
    for (int i = 0; i < mv; i++) {
        float *ci = c + i * 64;
        for (int j = 0; j < 64; j++) ci[j] = 0.0f;
        const float *xr = x + (size_t)i * ldx;
        for (int k = 0; k < K; k++) {
            const float xv = xr[k];
            const int8_t *qk = q + (size_t)k * 64;
            for (int j = 0; j < 64; j++) ci[j] += xv * (float)qk[j];
        }
        for (int j = 0; j < nv; j++) {
            float v = ci[j] * sc[j];
            y[(size_t)i * ldy + j] = acc ? y[(size_t)i * ldy + j] + v : v;
        }
    }
}

static void s_i8_tile_plain(float *y, size_t ldy, const float *x, size_t ldx, const int8_t *q, const float *sc, int K,
                            int mv, int nv, int acc) {
    s_i8_tile_c(y, ldy, x, ldx, q, sc, K, mv, nv, acc);
}

#if S_X86
static S_T_AVX2 void s_i8_tile_avx2(float *y, size_t ldy, const float *x, size_t ldx, const int8_t *q, const float *sc,
                                    int K, int mv, int nv, int acc) {
    s_i8_tile_c(y, ldy, x, ldx, q, sc, K, mv, nv, acc);
}
#endif

static void s_i8_part(void *arg, int part, int nparts) {
    const s_i8_t *a = arg;
    const nr_cpu_i8w_t *w = a->w;
    const int p0 = (int)((long)w->panels * part / nparts), p1 = (int)((long)w->panels * (part + 1) / nparts);
    for (int pn = p0; pn < p1; pn++) {
        const int n0 = pn * 64, nv = w->N - n0 < 64 ? w->N - n0 : 64;
        const int8_t *q = w->q + (size_t)pn * w->K * 64;
        const float *sc = w->scale + n0;
        for (int m0 = 0; m0 < a->M; m0 += 4) {
            const int mv = a->M - m0 < 4 ? a->M - m0 : 4;
            const float *x = a->x + (size_t)m0 * a->ldx;
            float *y = a->y + (size_t)m0 * a->ldy + n0;
#if S_X86
            if (a->path >= NR_CPU_PATH_AVX512) {
                s_i8_tile_avx(y, a->ldy, x, a->ldx, q, sc, w->K, mv, nv, a->acc);
                continue;
            }
            if (a->path >= NR_CPU_PATH_AVX2) {
                s_i8_tile_avx2(y, a->ldy, x, a->ldx, q, sc, w->K, mv, nv, a->acc);
                continue;
            }
#endif
            s_i8_tile_plain(y, a->ldy, x, a->ldx, q, sc, w->K, mv, nv, a->acc);
        }
    }
}

int nr_cpu_matmul_i8(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_i8w_t *w, int M, int accumulate) {
    if (M <= 0 || w->N <= 0 || w->K <= 0) return 0;
    s_i8_t a = {y, ldy, x, ldx, w, M, accumulate, nr_cpu_path()};
    if ((size_t)w->N * w->K >= 65536) nr_cpu_run(s_i8_part, &a);
    else s_i8_part(&a, 0, 1);
    return 0;
}
