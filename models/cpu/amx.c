/* BF16 matmul on AMX tiles (Intel AMX-BF16, Sapphire Rapids and later),
 * written from Intel's intrinsics guide and the Linux kernel's AMX notes
 * (the tile state needs the per-process permission dispatch.c requests).
 *
 * The packed weight of lowp.h is already the layout a B tile wants: in a
 * 32-column panel, one K pair for 16 columns is 64 bytes (column j's two
 * BF16 values side by side, "VNNI" order) and the next pair is 128 bytes
 * on. x is rounded to BF16 into row-major [Mp][2P] (Mp = M rounded up to
 * 32; zero rows past M, zero columns past K; 2P is a multiple of 32). Each
 * 32 x 32 block of y is four 16 x 16 F32 accumulator tiles (0-3) fed, 32
 * values of K at a time, by two A tiles (4, 5: 16 rows x 32 BF16) and two
 * B tiles (6, 7: 16 K pairs x 16 columns). Every tile is 16 rows of 64
 * bytes, so one configuration, loaded once per thread, serves every call
 * (nothing else in the process uses the tiles). Work is split over the
 * pool by column panels, and rows are walked in chunks whose packed BF16
 * rows fit in L2 while the part's weight panels stream past them. */
#include "models/cpu/amx.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "models/cpu/pool.h"

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} s_tilecfg_t;

static _Thread_local int s_configured;

static void s_configure(void) {
    if (s_configured) return;
    s_tilecfg_t c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    _tile_loadconfig(&c);
    s_configured = 1;
}

typedef struct {
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    uint16_t *ap; /* [Mp][2P] BF16 */
    const nr_cpu_bf16w_t *w;
    int M, Mp, chunk, acc;
} s_amx_t;

/* Rounds rows of x to BF16 (round to nearest even, as the other BF16
 * kernels); part of the 16-row groups. */
static void s_pack_part(void *arg, int part, int nparts) {
    const s_amx_t *a = arg;
    const int K = a->w->K, kp = 2 * a->w->P, groups = a->Mp / 16;
    const int g0 = (int)((long)groups * part / nparts), g1 = (int)((long)groups * (part + 1) / nparts);
    for (int m = g0 * 16; m < g1 * 16; m++) {
        uint16_t *dst = a->ap + (size_t)m * kp;
        if (m >= a->M) {
            memset(dst, 0, (size_t)kp * sizeof(uint16_t));
            continue;
        }
        const float *src = a->x + (size_t)m * a->ldx;
        for (int k0 = 0; k0 < kp; k0 += 32) {
            const int lo = K - k0, hi = K - k0 - 16;
            const __mmask16 ml = (__mmask16)(lo >= 16 ? 0xffff : lo > 0 ? (1u << lo) - 1 : 0);
            const __mmask16 mh = (__mmask16)(hi >= 16 ? 0xffff : hi > 0 ? (1u << hi) - 1 : 0);
            const __m512 vl = _mm512_maskz_loadu_ps(ml, src + k0), vh = _mm512_maskz_loadu_ps(mh, src + k0 + 16);
            _mm512_storeu_si512((void *)(dst + k0), (__m512i)_mm512_cvtne2ps_pbh(vh, vl));
        }
    }
}

/* y rows m0.. (at most 32, valid mv) and columns n0.. (valid nv) from the
 * 32 x 32 F32 block c. */
static void s_store(const s_amx_t *a, const float *c, int m0, int n0, int nv) {
    const int mv = a->M - m0 < 32 ? a->M - m0 : 32;
    const __mmask16 k0 = (__mmask16)(nv >= 16 ? 0xffff : (1u << nv) - 1);
    const __mmask16 k1 = (__mmask16)(nv >= 32 ? 0xffff : nv > 16 ? (1u << (nv - 16)) - 1 : 0);
    for (int i = 0; i < mv; i++) {
        float *yr = a->y + (size_t)(m0 + i) * a->ldy + n0;
        __m512 r0 = _mm512_load_ps(c + 32 * i), r1 = _mm512_load_ps(c + 32 * i + 16);
        if (a->acc) {
            r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(k0, yr));
            r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(k1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, k0, r0);
        _mm512_mask_storeu_ps(yr + 16, k1, r1);
    }
}

static void s_mm_part(void *arg, int part, int nparts) {
    const s_amx_t *a = arg;
    const nr_cpu_bf16w_t *w = a->w;
    const int P = w->P, kp = 2 * P;
    const int p0 = (int)((long)w->panels * part / nparts), p1 = (int)((long)w->panels * (part + 1) / nparts);
    if (p1 <= p0) return;
    s_configure();
    const size_t lda = (size_t)kp * sizeof(uint16_t);
    float c[32 * 32] __attribute__((aligned(64)));
    for (int mc = 0; mc < a->Mp; mc += a->chunk) {
        const int mend = a->Mp - mc < a->chunk ? a->Mp : mc + a->chunk;
        for (int pn = p0; pn < p1; pn++) {
            const uint16_t *bp = w->w + (size_t)pn * P * 64;
            const int n0 = pn * 32, nv = w->N - n0 < 32 ? w->N - n0 : 32;
            for (int m0 = mc; m0 < mend; m0 += 32) {
                const uint16_t *a0 = a->ap + (size_t)m0 * kp, *a1 = a0 + (size_t)16 * kp;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int p = 0; p < P; p += 16) {
                    _tile_loadd(4, a0 + 2 * p, lda);
                    _tile_loadd(5, a1 + 2 * p, lda);
                    _tile_loadd(6, bp + (size_t)p * 64, 128);
                    _tile_loadd(7, bp + (size_t)p * 64 + 32, 128);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
                _tile_stored(0, c, 128);
                _tile_stored(1, c + 16, 128);
                _tile_stored(2, c + 16 * 32, 128);
                _tile_stored(3, c + 16 * 32 + 16, 128);
                if (m0 < a->M) s_store(a, c, m0, n0, nv);
            }
        }
    }
}

int nr_cpu_amx_matmul_bf16(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_bf16w_t *w, int M,
                           int accumulate) {
    if (M <= 0 || w->N <= 0 || w->K <= 0) return 0;
    const int Mp = (M + 31) / 32 * 32, kp = 2 * w->P;
    uint16_t *ap = nr_cpu_scratch(NR_CPU_SCRATCH_BF16_A, (size_t)Mp * kp * sizeof(uint16_t));
    if (!ap) return NR_ENOMEM;
    /* rows per chunk: about 1 MiB of packed activations */
    int chunk = (int)((1u << 20) / ((size_t)kp * sizeof(uint16_t))) / 32 * 32;
    chunk = chunk < 32 ? 32 : chunk;
    s_amx_t a = {y, ldy, x, ldx, ap, w, M, Mp, chunk, accumulate};
    if (Mp >= 64) nr_cpu_run(s_pack_part, &a);
    else s_pack_part(&a, 0, 1);
    nr_cpu_run(s_mm_part, &a);
    return 0;
}
