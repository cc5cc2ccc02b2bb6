/* BF16 matmul on AMX tiles (Intel AMX-BF16, Sapphire Rapids and later),
 * written from Intel's intrinsics guide and the Linux kernel's AMX notes
 * (the tile state needs the per-process permission dispatch.c requests).
 *
 * The packed weight of lowp.h is already the layout a B tile wants: in a
 * 32-column panel, one K pair for 16 columns is 64 bytes (column j's two
 * BF16 values side by side, "VNNI" order) and the next pair is 128 bytes
 * on. x is rounded to BF16 in tile order, each 16 rows x 32 values of K
 * one contiguous KiB (Mp = M rounded up to 16; zero rows past M, zero
 * columns past K; 2P is a multiple of 32), so a tile load reads 1 KiB in a
 * row instead of 16 lines 2P apart. Each 16 x 64 block of y (two weight
 * panels) is four 16 x 16 F32 accumulator tiles (0-3) fed, 32 values of K
 * at a time, by one A tile (4: 16 rows x 32 BF16) and four B tiles (5, 6,
 * 7, 5: 16 K pairs x 16 columns): the A tile, which comes from L2, serves
 * four products. Every tile is 16 rows of 64 bytes, so one configuration,
 * loaded once per thread, serves every call (nothing else in the process
 * uses the tiles). Work is split over the pool by pairs of column panels,
 * and rows are walked in chunks whose packed BF16 rows fit in L2 while the
 * part's weight panels stream past them, in K blocks that stay in L1
 * (S_KB). */
#include "models/cpu/amx.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "models/cpu/kernels.h"
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

/* K pairs per block of two weight panels: the block (32 KiB) stays in L1
 * while the chunk's row groups pass, their partial sums kept in memory
 * between blocks; meanwhile the next block is prefetched into L2, a few
 * lines per step (the weights come from memory: 4.7 MB for the ViT MLP).
 * Measured at 32-256: 128 is best (one thread, 197 rows). */
#define S_KB 128
#define S_PF_LINES 4

typedef struct {
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    uint16_t *ap; /* [Mp / 16][2P / 32][16][32] BF16: tile order */
    float *cpart; /* per part: [chunk][64] partial sums over K blocks */
    const nr_cpu_bf16w_t *w;
    int M, Mp, chunk, acc;
    const float *bias; /* NULL: none */
    int act;           /* -1, or the GELU form */
} s_amx_t;

/* Rounds rows of x to BF16 (round to nearest even, as the other BF16
 * kernels); part of the 16-row groups. */
static void s_pack_part(void *arg, int part, int nparts) {
    const s_amx_t *a = arg;
    const int K = a->w->K, kp = 2 * a->w->P, groups = a->Mp / 16;
    const int g0 = (int)((long)groups * part / nparts), g1 = (int)((long)groups * (part + 1) / nparts);
    for (int m = g0 * 16; m < g1 * 16; m++) {
        /* tile order: 16-row groups, in each one 1 KiB tile per 32 values of K */
        uint16_t *dst = a->ap + (size_t)(m / 16) * 16 * kp + (size_t)(m % 16) * 32;
        if (m >= a->M) {
            for (int k0 = 0; k0 < kp; k0 += 32)
                _mm512_storeu_si512((void *)(dst + (size_t)k0 * 16), _mm512_setzero_si512());
            continue;
        }
        const float *src = a->x + (size_t)m * a->ldx;
        for (int k0 = 0; k0 < kp; k0 += 32) {
            const int lo = K - k0, hi = K - k0 - 16;
            const __mmask16 ml = (__mmask16)(lo >= 16 ? 0xffff : lo > 0 ? (1u << lo) - 1 : 0);
            const __mmask16 mh = (__mmask16)(hi >= 16 ? 0xffff : hi > 0 ? (1u << hi) - 1 : 0);
            const __m512 vl = _mm512_maskz_loadu_ps(ml, src + k0), vh = _mm512_maskz_loadu_ps(mh, src + k0 + 16);
            _mm512_storeu_si512((void *)(dst + (size_t)k0 * 16), (__m512i)_mm512_cvtne2ps_pbh(vh, vl));
        }
    }
}

static inline __m512 s_exp16(__m512 x) { /* nr_fast_expf (fastmath.h), 16 lanes */
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(e, _mm512_castsi512_ps(bits));
}

/* 1 / d: rcp14 and one Newton step (about 2^-28 relative). */
static inline __m512 s_rcp16(__m512 d) {
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

/* The GELU forms of the F32 kernels (kernels_isa.c s_gelu_range, nr_act_t
 * order: 0 erf by Abramowitz & Stegun 7.1.26, 1 tanh, 2 quick_gelu), 16
 * lanes, with a reciprocal in place of each division. */
static inline __m512 s_gelu16(__m512 v, int form) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    if (form == 2)
        return _mm512_mul_ps(v, s_rcp16(_mm512_add_ps(one, s_exp16(_mm512_mul_ps(v, _mm512_set1_ps(-1.702f))))));
    if (form == 1) {
        const __m512 u = _mm512_mul_ps(
            _mm512_set1_ps(0.7978845608028654f),
            _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), v), _mm512_mul_ps(v, v), v));
        const __m512 au = _mm512_min_ps(_mm512_abs_ps(u), _mm512_set1_ps(9.0f));
        const __m512 e = s_exp16(_mm512_add_ps(au, au));
        __m512 t = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), s_rcp16(_mm512_add_ps(e, one)), one);
        t = _mm512_mask_sub_ps(t, _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps(), t);
        return _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, t));
    }
    const __m512 x = _mm512_mul_ps(v, _mm512_set1_ps(0.7071067811865476f)), ax = _mm512_abs_ps(x);
    const __m512 t = s_rcp16(_mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), ax, one));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    __m512 y = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), s_exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), ax), ax)), one);
    y = _mm512_mask_sub_ps(y, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps(), y);
    return _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, y));
}

/* y rows m0.. (at most `rows`, fewer past M) and columns n0.. (valid nv of
 * 32) from the F32 block c (rows ldc floats apart): + bias, GELU, + y (the
 * epilogue of a linear layer, done while the block is in L1). */
static void s_store(const s_amx_t *a, const float *c, int ldc, int rows, int m0, int n0, int nv) {
    const int mv = a->M - m0 < rows ? a->M - m0 : rows;
    const __mmask16 k0 = (__mmask16)(nv >= 16 ? 0xffff : (1u << nv) - 1);
    const __mmask16 k1 = (__mmask16)(nv >= 32 ? 0xffff : nv > 16 ? (1u << (nv - 16)) - 1 : 0);
    const __m512 b0 = a->bias ? _mm512_maskz_loadu_ps(k0, a->bias + n0) : _mm512_setzero_ps();
    const __m512 b1 = a->bias ? _mm512_maskz_loadu_ps(k1, a->bias + n0 + 16) : _mm512_setzero_ps();
    for (int i = 0; i < mv; i++) {
        float *yr = a->y + (size_t)(m0 + i) * a->ldy + n0;
        __m512 r0 = _mm512_load_ps(c + (size_t)ldc * i), r1 = _mm512_load_ps(c + (size_t)ldc * i + 16);
        if (a->bias) {
            r0 = _mm512_add_ps(r0, b0);
            r1 = _mm512_add_ps(r1, b1);
        }
        if (a->act >= 0) {
            r0 = s_gelu16(r0, a->act);
            r1 = s_gelu16(r1, a->act);
        }
        if (a->acc) {
            r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(k0, yr));
            r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(k1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, k0, r0);
        _mm512_mask_storeu_ps(yr + 16, k1, r1);
    }
}

/* One 16-row group against two weight panels (64 columns): four
 * accumulator tiles (0-3) fed by one A tile (4) and four B tiles (5, 6, 7,
 * then 5 again), so each A tile, the part streamed from L2, serves four
 * products. np: panels here (2, or 1 for a part's odd last panel). */
static void s_mm_part(void *arg, int part, int nparts) {
    const s_amx_t *a = arg;
    const nr_cpu_bf16w_t *w = a->w;
    const int P = w->P, kp = 2 * P, pairs = (w->panels + 1) / 2;
    const int q0 = (int)((long)pairs * part / nparts), q1 = (int)((long)pairs * (part + 1) / nparts);
    if (q1 <= q0) return;
    s_configure();
    float c[16 * 64] __attribute__((aligned(64)));
    float *cp = a->cpart + (size_t)part * a->chunk * 64; /* partial sums, [chunk][64] */
    for (int mc = 0; mc < a->Mp; mc += a->chunk) {
        const int mend = a->Mp - mc < a->chunk ? a->Mp : mc + a->chunk;
        for (int q = q0; q < q1; q++) {
            const int pn = 2 * q, np = pn + 1 < w->panels ? 2 : 1;
            const uint16_t *b0 = w->w + (size_t)pn * P * 64, *b1 = b0 + (size_t)P * 64;
            for (int kb = 0; kb < P; kb += S_KB) {
                const int ke = P - kb < S_KB ? P : kb + S_KB;
                /* the block after this one, of these panels or the next two */
                const char *pf0 = (const char *)(ke < P ? b0 + (size_t)ke * 64 : b0 + (size_t)2 * P * 64);
                const char *pf1 = (const char *)(ke < P ? b1 + (size_t)ke * 64 : b1 + (size_t)2 * P * 64);
                int pf_lines = ke < P || q + 1 < q1 ? 2 * (S_KB < P ? S_KB : P) : 0;
                for (int m0 = mc; m0 < mend; m0 += 16) {
                    const uint16_t *a0 = a->ap + (size_t)m0 * kp;
                    float *cm = cp + (size_t)(m0 - mc) * 64;
                    if (kb == 0) {
                        _tile_zero(0);
                        _tile_zero(1);
                        _tile_zero(2);
                        _tile_zero(3);
                    } else {
                        _tile_loadd(0, cm, 256);
                        _tile_loadd(1, cm + 16, 256);
                        _tile_loadd(2, cm + 32, 256);
                        _tile_loadd(3, cm + 48, 256);
                    }
                    for (int p = kb; p < ke; p += 16) {
                        for (int l = 0; l < S_PF_LINES && pf_lines > 0; l++, pf_lines--, pf0 += 64, pf1 += 64) {
                            _mm_prefetch(pf0, _MM_HINT_T1);
                            _mm_prefetch(pf1, _MM_HINT_T1);
                        }
                        _tile_loadd(4, a0 + 32 * p, 64);
                        _tile_loadd(5, b0 + (size_t)p * 64, 128);
                        _tile_dpbf16ps(0, 4, 5);
                        _tile_loadd(6, b0 + (size_t)p * 64 + 32, 128);
                        _tile_dpbf16ps(1, 4, 6);
                        if (np == 2) {
                            _tile_loadd(7, b1 + (size_t)p * 64, 128);
                            _tile_dpbf16ps(2, 4, 7);
                            _tile_loadd(5, b1 + (size_t)p * 64 + 32, 128);
                            _tile_dpbf16ps(3, 4, 5);
                        }
                    }
                    float *dst = ke == P ? c : cm;
                    _tile_stored(0, dst, 256);
                    _tile_stored(1, dst + 16, 256);
                    _tile_stored(2, dst + 32, 256);
                    _tile_stored(3, dst + 48, 256);
                    if (ke == P && m0 < a->M)
                        for (int t = 0; t < np; t++) {
                            const int n0 = (pn + t) * 32;
                            s_store(a, c + 32 * t, 64, 16, m0, n0, w->N - n0 < 32 ? w->N - n0 : 32);
                        }
                }
            }
        }
    }
}

int nr_cpu_amx_matmul_bf16(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_bf16w_t *w, int M,
                           int accumulate) {
    return nr_cpu_amx_linear_bf16(y, ldy, x, ldx, w, M, NULL, -1, accumulate);
}

int nr_cpu_amx_linear_bf16(float *y, size_t ldy, const float *x, size_t ldx, const nr_cpu_bf16w_t *w, int M,
                           const float *bias, int act, int accumulate) {
    if (M <= 0 || w->N <= 0 || w->K <= 0) return 0;
    const int Mp = (M + 15) / 16 * 16, kp = 2 * w->P;
    /* rows per chunk: about 1.5 MiB of packed activations (in L2) */
    int chunk = (int)((3u << 19) / ((size_t)kp * sizeof(uint16_t))) / 16 * 16;
    chunk = chunk < 16 ? 16 : chunk > Mp ? Mp : chunk;
    const size_t abytes = (size_t)Mp * kp * sizeof(uint16_t);
    unsigned char *buf =
        nr_cpu_scratch(NR_CPU_SCRATCH_BF16_A, abytes + (size_t)nr_cpu_pool_size() * chunk * 64 * sizeof(float));
    if (!buf) return NR_ENOMEM;
    s_amx_t a = {y, ldy, x, ldx, (uint16_t *)(void *)buf, (float *)(void *)(buf + abytes), w, M, Mp, chunk, accumulate,
                 bias, act};
    if (Mp >= 64) nr_cpu_run(s_pack_part, &a);
    else s_pack_part(&a, 0, 1);
    nr_cpu_run(s_mm_part, &a);
    return 0;
}

/* ---- attention on tiles ----
 * Non-causal attention for cpu:bf16 (the vision towers), as torch runs it
 * under autocast: Q, K, V and the softmax's probabilities rounded to BF16,
 * scores, softmax and sums in F32. Per (batch, head) pair: K^T and V are
 * packed once into B-tile order (K pairs: kt[p][j] holds K[j][2p], K[j][2p+1];
 * key pairs: vp[p][c] holds V[2p][c], V[2p+1][c]), then 16 query rows at
 * a time: scores on tiles, softmax on AVX-512, P V on tiles, and the row
 * sums' reciprocals applied at the end. Head size padded to 32 (the K of a
 * tile product) for Q K^T and to 16 for the output; keys padded to 32. */
typedef struct {
    const nr_attn_args_t *a;
    unsigned char *scratch;
    size_t per_part;
    int hdp, hd16, nkvp;
} s_att_t;

/* n floats (n <= 32, the rest zero) as 16 BF16 pairs. */
static inline __m512i s_bf16x32(const float *src, int n) {
    const __mmask16 ml = (__mmask16)(n >= 16 ? 0xffff : n > 0 ? (1u << n) - 1 : 0);
    const __mmask16 mh = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(mh, src + 16), _mm512_maskz_loadu_ps(ml, src));
}

/* One 16-row block of query rows i0..: scores, softmax into pb, P V, out. */
static void s_att_block(const s_att_t *t, const float *q, const uint32_t *kt, const uint32_t *vp, uint16_t *qb,
                        float *sc, uint16_t *pb, float *ob, float *o, int i0) {
    const nr_attn_args_t *a = t->a;
    const int hd = a->head_dim, nkv = a->n_kv, hdp = t->hdp, hd16 = t->hd16, nkvp = t->nkvp;
    const int rows = a->n_q - i0 < 16 ? a->n_q - i0 : 16;
    for (int r = 0; r < 16; r++)
        for (int d = 0; d < hdp; d += 32)
            _mm512_storeu_si512((void *)(qb + (size_t)r * hdp + d),
                                r < rows ? s_bf16x32(q + (size_t)(i0 + r) * a->q_rstride + d, hd - d)
                                         : _mm512_setzero_si512());
    const size_t ldq = (size_t)hdp * 2, ldk = (size_t)nkvp * 4;
    for (int jb = 0; jb < nkvp / 16; jb += 4) { /* nkvp / 16 is even: 2 or 4 key blocks here */
        const int nj = nkvp / 16 - jb < 4 ? nkvp / 16 - jb : 4;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int p = 0; p < hdp / 2; p += 16) {
            const uint32_t *kp = kt + (size_t)p * nkvp + (size_t)jb * 16;
            _tile_loadd(4, qb + 2 * p, ldq);
            _tile_loadd(5, kp, ldk);
            _tile_dpbf16ps(0, 4, 5);
            _tile_loadd(6, kp + 16, ldk);
            _tile_dpbf16ps(1, 4, 6);
            if (nj > 2) {
                _tile_loadd(7, kp + 32, ldk);
                _tile_dpbf16ps(2, 4, 7);
                _tile_loadd(5, kp + 48, ldk);
                _tile_dpbf16ps(3, 4, 5);
            }
        }
        _tile_stored(0, sc + (size_t)jb * 16, ldk);
        _tile_stored(1, sc + (size_t)jb * 16 + 16, ldk);
        if (nj > 2) {
            _tile_stored(2, sc + (size_t)jb * 16 + 32, ldk);
            _tile_stored(3, sc + (size_t)jb * 16 + 48, ldk);
        }
    }
    float inv[16];
    const __m512 scale = _mm512_set1_ps(a->scale);
    for (int r = 0; r < 16; r++) {
        float *s = sc + (size_t)r * nkvp;
        uint16_t *pr = pb + (size_t)r * nkvp;
        if (r >= rows) {
            memset(pr, 0, (size_t)nkvp * sizeof(uint16_t));
            continue;
        }
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < nkvp; j += 16) {
            const __mmask16 m = (__mmask16)(nkv - j >= 16 ? 0xffff : nkv - j > 0 ? (1u << (nkv - j)) - 1 : 0);
            const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(s + j), scale);
            _mm512_storeu_ps(s + j, v);
            mx = _mm512_mask_max_ps(mx, m, mx, v);
        }
        const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < nkvp; j += 16) {
            const __mmask16 m = (__mmask16)(nkv - j >= 16 ? 0xffff : nkv - j > 0 ? (1u << (nkv - j)) - 1 : 0);
            const __m512 e = _mm512_maskz_mov_ps(m, s_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), vmx)));
            _mm512_storeu_ps(s + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        inv[r] = 1.0f / _mm512_reduce_add_ps(sum);
        for (int j = 0; j < nkvp; j += 32)
            _mm512_storeu_si512((void *)(pr + j), (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + j + 16),
                                                                                 _mm512_loadu_ps(s + j)));
    }
    const size_t ldp = (size_t)nkvp * 2, ldv = (size_t)hd16 * 4, ldo = (size_t)hd16 * 4;
    for (int cb = 0; cb < hd16 / 16; cb += 4) {
        const int nc = hd16 / 16 - cb < 4 ? hd16 / 16 - cb : 4;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int p = 0; p < nkvp / 2; p += 16) {
            const uint32_t *vb = vp + (size_t)p * hd16 + (size_t)cb * 16;
            _tile_loadd(4, pb + 2 * p, ldp);
            _tile_loadd(5, vb, ldv);
            _tile_dpbf16ps(0, 4, 5);
            if (nc > 1) {
                _tile_loadd(6, vb + 16, ldv);
                _tile_dpbf16ps(1, 4, 6);
            }
            if (nc > 2) {
                _tile_loadd(7, vb + 32, ldv);
                _tile_dpbf16ps(2, 4, 7);
            }
            if (nc > 3) {
                _tile_loadd(5, vb + 48, ldv);
                _tile_dpbf16ps(3, 4, 5);
            }
        }
        _tile_stored(0, ob + (size_t)cb * 16, ldo);
        if (nc > 1) _tile_stored(1, ob + (size_t)cb * 16 + 16, ldo);
        if (nc > 2) _tile_stored(2, ob + (size_t)cb * 16 + 32, ldo);
        if (nc > 3) _tile_stored(3, ob + (size_t)cb * 16 + 48, ldo);
    }
    for (int r = 0; r < rows; r++) {
        float *orow = o + (size_t)(i0 + r) * a->o_rstride;
        const __m512 s = _mm512_set1_ps(inv[r]);
        for (int d = 0; d < hd; d += 16) {
            const __mmask16 m = (__mmask16)(hd - d >= 16 ? 0xffff : (1u << (hd - d)) - 1);
            _mm512_mask_storeu_ps(orow + d, m, _mm512_mul_ps(_mm512_loadu_ps(ob + (size_t)r * hd16 + d), s));
        }
    }
}

static void s_att_part(void *arg, int part, int nparts) {
    const s_att_t *t = arg;
    const nr_attn_args_t *a = t->a;
    const int total = a->batch * a->n_head;
    const int first = (int)((long)total * part / nparts), last = (int)((long)total * (part + 1) / nparts);
    if (last <= first) return;
    s_configure();
    const int hd = a->head_dim, nkv = a->n_kv, hdp = t->hdp, hd16 = t->hd16, nkvp = t->nkvp;
    unsigned char *buf = t->scratch + (size_t)part * t->per_part;
    uint32_t *kt = (uint32_t *)(void *)buf;                      /* [hdp / 2][nkvp] */
    uint32_t *vp = kt + (size_t)(hdp / 2) * nkvp;                /* [nkvp / 2][hd16] */
    float *sc = (float *)(void *)(vp + (size_t)(nkvp / 2) * hd16); /* [16][nkvp] */
    float *ob = sc + (size_t)16 * nkvp;                          /* [16][hd16] */
    uint16_t *pb = (uint16_t *)(void *)(ob + (size_t)16 * hd16); /* [16][nkvp] */
    uint16_t *qb = pb + (size_t)16 * nkvp;                       /* [16][hdp] */
    uint32_t krow[64];
    for (int bh = first; bh < last; bh++) {
        const int b = bh / a->n_head, h = bh % a->n_head, kb = a->kv_index ? a->kv_index[b] : b;
        const int g = a->n_kv_head > 0 ? h / (a->n_head / a->n_kv_head) : h;
        const float *k = a->k + (size_t)kb * a->kv_bstride + (size_t)g * hd;
        const float *v = a->v + (size_t)kb * a->kv_bstride + (size_t)g * hd;
        for (int j = 0; j < nkvp; j++) {
            if (j + 8 < nkv) /* K rows are 3 D floats apart: fetch ahead */
                for (int d = 0; d < hd; d += 16) _mm_prefetch((const char *)(k + (size_t)(j + 8) * a->kv_rstride + d), _MM_HINT_T0);
            for (int d = 0; d < hdp; d += 32)
                _mm512_storeu_si512((void *)(krow + d / 2), j < nkv ? s_bf16x32(k + (size_t)j * a->kv_rstride + d, hd - d)
                                                                     : _mm512_setzero_si512());
            for (int p = 0; p < hdp / 2; p++) kt[(size_t)p * nkvp + j] = krow[p];
        }
        for (int p = 0; p < nkvp / 2; p++) {
            const float *v0 = v + (size_t)(2 * p) * a->kv_rstride, *v1 = v0 + a->kv_rstride;
            if (2 * p + 9 < nkv)
                for (int d = 0; d < hd; d += 16) {
                    _mm_prefetch((const char *)(v0 + 8 * a->kv_rstride + d), _MM_HINT_T0);
                    _mm_prefetch((const char *)(v1 + 8 * a->kv_rstride + d), _MM_HINT_T0);
                }
            for (int c = 0; c < hd16; c += 16) {
                const __mmask16 m = (__mmask16)(hd - c >= 16 ? 0xffff : (1u << (hd - c)) - 1);
                const __mmask16 m0 = 2 * p < nkv ? m : 0, m1 = 2 * p + 1 < nkv ? m : 0;
                const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m0, v0 + c)));
                const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m1, v1 + c)));
                _mm512_storeu_si512((void *)(vp + (size_t)p * hd16 + c), _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
            }
        }
        const float *q = a->q + (size_t)b * a->q_bstride + (size_t)h * hd;
        float *o = a->out + (size_t)b * a->o_bstride + (size_t)h * hd;
        for (int i0 = 0; i0 < a->n_q; i0 += 16) s_att_block(t, q, kt, vp, qb, sc, pb, ob, o, i0);
    }
}

int nr_cpu_amx_attention(const nr_attn_args_t *a) {
    if (a->batch <= 0 || a->n_head <= 0 || a->head_dim <= 0 || a->head_dim > 128 || a->n_q <= 0 || a->n_kv <= 0 ||
        a->causal)
        return NR_EINVAL;
    if (a->n_kv_head < 0 || (a->n_kv_head > 0 && a->n_head % a->n_kv_head)) return NR_EINVAL;
    s_att_t t = {a, NULL, 0, (a->head_dim + 31) / 32 * 32, (a->head_dim + 15) / 16 * 16, (a->n_kv + 31) / 32 * 32};
    t.per_part = ((size_t)(t.hdp / 2) * t.nkvp * 4 + (size_t)(t.nkvp / 2) * t.hd16 * 4 + (size_t)16 * t.nkvp * 4 +
                  (size_t)16 * t.hd16 * 4 + (size_t)16 * t.nkvp * 2 + (size_t)16 * t.hdp * 2 + 63) / 64 * 64;
    const int parts = nr_cpu_pool_size();
    t.scratch = nr_cpu_scratch(NR_CPU_SCRATCH_ATTN, (size_t)parts * t.per_part);
    if (!t.scratch) return NR_ENOMEM;
    nr_cpu_run(s_att_part, &t);
    return 0;
}

/* ---- patch embedding ----
 * The ViT's patch convolution as kernels_isa.c computes it (im2col, then
 * one matmul per image), with the matmul on tiles and the conv bias in its
 * epilogue; class row and positions added after, in the same order. */
int nr_cpu_amx_patch_embed(const nr_patch_args_t *a, const nr_cpu_bf16w_t *w) {
    const int C = a->channels, H = a->height, W = a->width, P = a->patch, D = a->dim;
    if (a->batch <= 0 || P <= 0 || H % P || W % P || C <= 0 || D <= 0 || w->N != D || w->K != C * P * P)
        return NR_EINVAL;
    const int np = (H / P) * (W / P), kk = C * P * P, c0 = a->cls ? 1 : 0;
    float *col = nr_cpu_scratch(NR_CPU_SCRATCH_COL, (size_t)np * kk * sizeof(float));
    if (!col) return NR_ENOMEM;
    for (int b = 0; b < a->batch; b++) {
        nr_cpu_im2col_patches(col, a->pixels + (size_t)b * C * H * W, C, H, W, P);
        float *out = a->out + (size_t)b * (np + c0) * D;
        const int rc = nr_cpu_amx_linear_bf16(out + (size_t)c0 * D, D, col, kk, w, np, a->b, -1, 0);
        if (rc) return rc;
        if (a->cls)
            for (int d = 0; d < D; d++) out[d] = a->cls[d] + a->pos[d];
        for (int r = c0; r < np + c0; r++) {
            float *o = out + (size_t)r * D;
            const float *p = a->pos + (size_t)r * D;
            for (int d = 0; d < D; d++) o[d] += p[d];
        }
    }
    return 0;
}
