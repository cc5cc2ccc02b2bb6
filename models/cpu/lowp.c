/* Reduced-precision matmuls for the CPU backend: packed BF16 weights (AMX
 * tiles in amx.c, AVX-512 BF16 vdpbf16ps, or a plain C loop) and INT8
 * weights with per-output-channel scales (AVX-512F widening, or plain C),
 * each chosen by the kernel path (dispatch.h). The AVX-512 functions carry
 * target attributes, so they are compiled whatever the build's target and
 * run only on paths that have them. */
#include "models/cpu/lowp.h"

#include <math.h>
#include <stdatomic.h>
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

/* ---- packing ----
 * A weight's source: F32 in either layout, or BF16 (N, K) read in place
 * (an adopted checkpoint weight). The packed copies are the same whatever
 * the source: a BF16 value widens to F32 exactly. Packing runs on the
 * kernels' pool, each part its own panels, so every core packs and the
 * result does not depend on the number of parts. */
typedef struct s_pack {
    const float *f;    /* F32 source, or NULL */
    const uint16_t *h; /* BF16 source (N, K), or NULL */
    nr_wlayout_t layout;
    int N, K;
    int8_t *q;   /* INT8: q and scale; BF16: d */
    float *scale;
    uint16_t *d;
    int P, panels;
    _Atomic int rc;
    void (*panel)(const struct s_pack *a, int pn, float *col); /* packs panel pn; col: K floats of scratch */
} s_pack_t;

/* Column n of W (W(k, n), k < K) into col, as F32. */
static void s_column(const s_pack_t *a, int n, float *col) {
    if (a->h) {
        const uint16_t *r = a->h + (size_t)n * a->K;
        for (int k = 0; k < a->K; k++) col[k] = s_bf16_f32(r[k]);
    } else if (a->layout == NR_W_IN_OUT) {
        for (int k = 0; k < a->K; k++) col[k] = a->f[(size_t)k * a->N + n];
    } else {
        memcpy(col, a->f + (size_t)n * a->K, (size_t)a->K * sizeof(float));
    }
}

/* nr_f32_to_bf16, inline: round to nearest even, a NaN kept quiet. */
static inline uint16_t s_bf16_round(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* The same of a BF16 value's widening: itself, a NaN made quiet. */
static inline uint32_t s_bf16_keep(uint32_t h) { return (h & 0x7fffu) > 0x7f80u ? h | 0x40u : h; }

/* One 32-column panel. A whole panel of a BF16 source with K even is a
 * transpose of 32-bit pairs: pair p of column j goes to d + 64 p + 2 j. */
static void s_bf_pack_panel(const s_pack_t *a, int pn, float *col) {
    uint16_t *d = a->d + (size_t)pn * a->P * 64;
    if (a->h && pn * 32 + 32 <= a->N && a->K % 2 == 0) {
        const int half = a->K / 2;
        const uint16_t *r = a->h + (size_t)pn * 32 * a->K;
        for (int j = 0; j < 32; j++, r += a->K)
            for (int p = 0; p < half; p++) {
                const uint32_t v = s_bf16_keep(r[2 * p]) | s_bf16_keep(r[2 * p + 1]) << 16;
                memcpy(d + (size_t)p * 64 + 2 * j, &v, sizeof v);
            }
        memset(d + (size_t)half * 64, 0, (size_t)(a->P - half) * 64 * sizeof(uint16_t));
        return;
    }
    for (int j = 0; j < 32; j++) {
        const int n = pn * 32 + j;
        if (n < a->N) s_column(a, n, col);
        uint16_t *o = d + (j / 16) * 32 + 2 * (j % 16);
        for (int k = 0; k < 2 * a->P; k++)
            o[(size_t)(k / 2) * 64 + (k & 1)] = n < a->N && k < a->K ? s_bf16_round(col[k]) : 0;
    }
}

/* Part of a weight's panels, by a->panel (on the kernels' pool). */
static void s_make_part(void *arg, int part, int nparts) {
    s_pack_t *a = arg;
    const int p0 = (int)((long)a->panels * part / nparts), p1 = (int)((long)a->panels * (part + 1) / nparts);
    float *col = p0 < p1 ? nr_cpu_scratch(NR_CPU_SCRATCH_PACK, (size_t)a->K * sizeof(float)) : NULL;
    if (p0 < p1 && !col) atomic_store(&a->rc, NR_ENOMEM);
    for (int pn = p0; col && pn < p1; pn++) a->panel(a, pn, col);
}

static int s_bf16w_make(nr_cpu_bf16w_t *out, s_pack_t *a) {
    memset(out, 0, sizeof(*out));
    a->P = (a->K + 31) / 32 * 16;
    a->panels = (a->N + 31) / 32;
    a->d = nr_aligned_alloc((size_t)a->panels * a->P * 64 * sizeof(uint16_t));
    if (!a->d) return NR_ENOMEM;
    atomic_init(&a->rc, 0);
    a->panel = s_bf_pack_panel;
    nr_cpu_run(s_make_part, a);
    if (atomic_load(&a->rc)) {
        free(a->d);
        return NR_ENOMEM;
    }
    *out = (nr_cpu_bf16w_t){.N = a->N, .K = a->K, .P = a->P, .panels = a->panels, .w = a->d};
    return 0;
}

int nr_cpu_bf16w_make(nr_cpu_bf16w_t *out, const float *w, nr_wlayout_t layout, int N, int K) {
    s_pack_t a = {.f = w, .layout = layout, .N = N, .K = K};
    return s_bf16w_make(out, &a);
}

int nr_cpu_bf16w_make_bf16(nr_cpu_bf16w_t *out, const uint16_t *w, int N, int K) {
    s_pack_t a = {.h = w, .layout = NR_W_OUT_IN, .N = N, .K = K};
    return s_bf16w_make(out, &a);
}

void nr_cpu_bf16w_free(nr_cpu_bf16w_t *w) {
    free(w->w);
    memset(w, 0, sizeof(*w));
}

/* max |col[k]|, NaNs skipped as `v > mx ? v : mx` skips them (the order
 * does not matter: eight running maxima for speed). */
static float s_absmax(const float *col, int K) {
    float m[8] = {0};
    int k = 0;
    for (; k + 8 <= K; k += 8)
        for (int i = 0; i < 8; i++) {
            const float v = fabsf(col[k + i]);
            m[i] = v > m[i] ? v : m[i];
        }
    for (; k < K; k++) m[0] = fabsf(col[k]) > m[0] ? fabsf(col[k]) : m[0];
    for (int i = 1; i < 8; i++) m[0] = m[i] > m[0] ? m[i] : m[0];
    return m[0];
}

/* One 64-column panel, column by column: the scale, then the values. */
static void s_i8_pack_panel(const s_pack_t *a, int pn, float *col) {
    int8_t *q = a->q + (size_t)pn * a->K * 64;
    for (int j = 0; j < 64; j++) {
        const int n = pn * 64 + j;
        float mx = 0.0f;
        if (n < a->N) {
            s_column(a, n, col);
            mx = s_absmax(col, a->K);
        }
        const float s = mx > 0.0f ? mx / 127.0f : 1.0f, inv = 1.0f / s;
        a->scale[n] = s;
        int8_t *qc = q + j;
        if (n >= a->N) {
            for (int k = 0; k < a->K; k++) qc[(size_t)k * 64] = 0;
        } else if (s >= 0x1p-126f && mx <= 0x1p127f) {
            /* |col[k] * inv| <= 127 (+ rounding): lrintf's round to nearest
             * even is exactly the magic-number sum (|v| < 2^22), the
             * clamp is the same (a NaN among finite values takes lrintf) */
            for (int k = 0; k < a->K; k++) {
                const float v = col[k] * inv;
                const long r = v == v ? (long)((v + 0x1.8p23f) - 0x1.8p23f) : lrintf(v);
                qc[(size_t)k * 64] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
            }
        } else {
            for (int k = 0; k < a->K; k++) {
                const long r = lrintf(col[k] * inv);
                qc[(size_t)k * 64] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
            }
        }
    }
}


static int s_i8w_make(nr_cpu_i8w_t *out, s_pack_t *a) {
    memset(out, 0, sizeof(*out));
    a->panels = (a->N + 63) / 64;
    a->q = nr_aligned_alloc((size_t)a->panels * a->K * 64);
    a->scale = nr_aligned_alloc((size_t)a->panels * 64 * sizeof(float));
    atomic_init(&a->rc, a->q && a->scale ? 0 : NR_ENOMEM);
    a->panel = s_i8_pack_panel;
    if (!atomic_load(&a->rc)) nr_cpu_run(s_make_part, a);
    if (atomic_load(&a->rc)) {
        free(a->q);
        free(a->scale);
        return NR_ENOMEM;
    }
    *out = (nr_cpu_i8w_t){.N = a->N, .K = a->K, .panels = a->panels, .q = a->q, .scale = a->scale};
    return 0;
}

int nr_cpu_i8w_make(nr_cpu_i8w_t *out, const float *w, nr_wlayout_t layout, int N, int K) {
    s_pack_t a = {.f = w, .layout = layout, .N = N, .K = K};
    return s_i8w_make(out, &a);
}

int nr_cpu_i8w_make_bf16(nr_cpu_i8w_t *out, const uint16_t *w, int N, int K) {
    s_pack_t a = {.h = w, .layout = NR_W_OUT_IN, .N = N, .K = K};
    return s_i8w_make(out, &a);
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
