/* Kokoro's forward pass up to the vocoder: ALBERT and its projection, the
 * prosody predictor (duration encoder, durations, alignment, F0 and
 * energy), the text encoder and the decoder's AdaIN blocks, as
 * hexgrad/kokoro's KModel.forward_with_tokens computes them. */
#include "models/speech/kokoro_net.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/nn/conv1d.h"

/* Frames of audio one call may make (25 ms each): 2 minutes. Scratch
 * grows by about 0.5 MB a frame at Kokoro-82M's sizes (2.5 GB here). */
#define S_MAX_FRAMES 4800

static float s_leaky(float x, float a) { return x > 0.f ? x : x * a; }

/* y[t][out] = x[t][in] W^T + b. */
static void s_linear(const nr_ko_linear_t *l, const float *x, int T, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, l->out, l->in, 1.f, x, l->in, l->w, l->in, 0.f, y, l->out);
    if (l->b)
        for (int t = 0; t < T; t++)
            for (int o = 0; o < l->out; o++) y[(size_t)t * l->out + o] += l->b[o];
}

/* LayerNorm over the last axis of x[T][C], in place; w, b may be NULL. */
static void s_layernorm(float *x, int T, int C, const float *w, const float *b, float eps) {
    for (int t = 0; t < T; t++) {
        float *r = x + (size_t)t * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += r[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (r[c] - m) * (r[c] - m);
        float inv = (float)(1.0 / sqrt(v / C + eps));
        for (int c = 0; c < C; c++) {
            float y = (float)(r[c] - m) * inv;
            r[c] = w ? y * w[c] + b[c] : y;
        }
    }
}

static void s_transpose(const float *x, int rows, int cols, float *y) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) y[(size_t)c * rows + r] = x[(size_t)r * cols + c];
}

int nr_ko_conv(const nr_ko_conv_t *c, const float *x, int T, int stride, int pad, int dil, float *y) {
    return nr_conv1d(x, c->cin, T, c->w, c->b, c->cout, c->k, stride, pad, dil, y);
}

int nr_ko_adain(const nr_ko_adain_t *a, const float *s, const float *x, int T, float *y) {
    int C = a->c;
    float *h = malloc(2 * (size_t)C * sizeof(float));
    if (!h) return NR_ENOMEM;
    s_linear(&a->fc, s, 1, h);
    for (int c = 0; c < C; c++) {
        const float *xr = x + (size_t)c * T;
        float *yr = y + (size_t)c * T;
        double m = 0, v = 0;
        for (int t = 0; t < T; t++) m += xr[t];
        m /= T;
        for (int t = 0; t < T; t++) v += (xr[t] - m) * (xr[t] - m);
        float inv = (float)(1.0 / sqrt(v / T + 1e-5)), g = 1.f + h[c], be = h[C + c];
        float nw = a->nw ? a->nw[c] : 1.f, nb = a->nb ? a->nb[c] : 0.f;
        for (int t = 0; t < T; t++) yr[t] = g * (((float)(xr[t] - m) * inv) * nw + nb) + be;
    }
    free(h);
    return 0;
}

int nr_ko_resblk(const nr_ko_resblk_t *b, const float *s, const float *x, int T, float *y) {
    int T2 = b->up ? 2 * T : T, rc = NR_ENOMEM;
    size_t big = (size_t)(b->din > b->dout ? b->din : b->dout) * T2;
    float *r = malloc(big * sizeof(float)), *u = malloc(big * sizeof(float)), *sc = malloc(big * sizeof(float));
    if (!r || !u || !sc) goto out;
    if ((rc = nr_ko_adain(&b->norm1, s, x, T, r))) goto out;
    for (size_t i = 0; i < (size_t)b->din * T; i++) r[i] = s_leaky(r[i], 0.2f);
    const float *cin = r;
    if (b->up) {
        nr_conv_transpose1d_dw(r, b->din, T, b->pool.w, b->pool.b, 3, 2, 1, 1, u);
        cin = u;
    }
    if ((rc = nr_ko_conv(&b->conv1, cin, T2, 1, 1, 1, sc))) goto out;
    if ((rc = nr_ko_adain(&b->norm2, s, sc, T2, r))) goto out;
    for (size_t i = 0; i < (size_t)b->dout * T2; i++) r[i] = s_leaky(r[i], 0.2f);
    if ((rc = nr_ko_conv(&b->conv2, r, T2, 1, 1, 1, y))) goto out;
    const float *short_in = x;
    if (b->up) { /* nearest upsampling by 2 */
        for (int c = 0; c < b->din; c++)
            for (int t = 0; t < T2; t++) u[(size_t)c * T2 + t] = x[(size_t)c * T + t / 2];
        short_in = u;
    }
    if (b->conv1x1.w) {
        if ((rc = nr_ko_conv(&b->conv1x1, short_in, T2, 1, 0, 1, sc))) goto out;
        short_in = sc;
    }
    const float rs2 = 0.70710677f; /* torch.rsqrt(torch.tensor(2)) */
    for (size_t i = 0; i < (size_t)b->dout * T2; i++) y[i] = (y[i] + short_in[i]) * rs2;
    rc = 0;
out:
    free(r);
    free(u);
    free(sc);
    return rc;
}

static void s_snake(float *x, int C, int T, const float *alpha) {
    for (int c = 0; c < C; c++) {
        float a = alpha[c], ia = 1.f / a;
        float *r = x + (size_t)c * T;
        for (int t = 0; t < T; t++) {
            float sn = sinf(a * r[t]);
            r[t] = r[t] + ia * (sn * sn);
        }
    }
}

int nr_ko_resblock1(const nr_ko_resblock1_t *b, const float *s, const float *x, int T, float *y) {
    size_t n = (size_t)b->ch * T;
    float *t1 = malloc(n * sizeof(float)), *t2 = malloc(n * sizeof(float));
    int rc = NR_ENOMEM;
    if (!t1 || !t2) goto out;
    memcpy(y, x, n * sizeof(float));
    for (int j = 0; j < 3; j++) {
        int d = b->dil[j];
        if ((rc = nr_ko_adain(&b->a1[j], s, y, T, t1))) goto out;
        s_snake(t1, b->ch, T, b->alpha1[j]);
        if ((rc = nr_ko_conv(&b->c1[j], t1, T, 1, (b->k * d - d) / 2, d, t2))) goto out;
        if ((rc = nr_ko_adain(&b->a2[j], s, t2, T, t1))) goto out;
        s_snake(t1, b->ch, T, b->alpha2[j]);
        if ((rc = nr_ko_conv(&b->c2[j], t1, T, 1, (b->k - 1) / 2, 1, t2))) goto out;
        for (size_t i = 0; i < n; i++) y[i] += t2[i];
    }
    rc = 0;
out:
    free(t1);
    free(t2);
    return rc;
}

/* ALBERT (transformers' AlbertModel, last_hidden_state; no padding, so the
 * attention mask adds nothing): ids[T] -> out[T][Hb]. */
static int s_albert(const nr_ko_net_t *m, const int *ids, int T, float *out) {
    int E = m->b_emb, H = m->b_hidden, nh = m->b_heads, hd = H / nh, In = m->b_inter;
    size_t need = (size_t)T * E + 4 * (size_t)T * H + (size_t)T * In + (size_t)T * T;
    float *buf = malloc(need * sizeof(float));
    if (!buf) return NR_ENOMEM;
    float *e = buf, *q = e + (size_t)T * E, *k = q + (size_t)T * H, *v = k + (size_t)T * H, *a = v + (size_t)T * H,
          *f = a + (size_t)T * H, *p = f + (size_t)T * In;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < E; c++)
            e[(size_t)t * E + c] = m->word_emb[(size_t)ids[t] * E + c] + m->type_emb[c] + m->pos_emb[(size_t)t * E + c];
    s_layernorm(e, T, E, m->emb_ln_w, m->emb_ln_b, 1e-12f);
    s_linear(&m->map_in, e, T, out);
    float scale = 1.f / sqrtf((float)hd);
    for (int layer = 0; layer < m->b_layers; layer++) {
        s_linear(&m->q, out, T, q);
        s_linear(&m->k, out, T, k);
        s_linear(&m->v, out, T, v);
        for (int h = 0; h < nh; h++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q + h * hd, H, k + h * hd, H, 0.f, p,
                        T);
            for (int i = 0; i < T; i++) {
                float *r = p + (size_t)i * T, mx = r[0], sum = 0.f;
                for (int j = 1; j < T; j++) mx = r[j] > mx ? r[j] : mx;
                for (int j = 0; j < T; j++) sum += (r[j] = expf(r[j] - mx));
                for (int j = 0; j < T; j++) r[j] /= sum;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.f, p, T, v + h * hd, H, 0.f, a + h * hd,
                        H);
        }
        s_linear(&m->dense, a, T, q);
        for (size_t i = 0; i < (size_t)T * H; i++) q[i] += out[i];
        s_layernorm(q, T, H, m->att_ln_w, m->att_ln_b, 1e-12f);
        s_linear(&m->ffn, q, T, f);
        for (size_t i = 0; i < (size_t)T * In; i++) { /* gelu_new */
            float x = f[i];
            f[i] = 0.5f * x * (1.f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
        }
        s_linear(&m->ffn_out, f, T, out);
        for (size_t i = 0; i < (size_t)T * H; i++) out[i] += q[i];
        s_layernorm(out, T, H, m->full_ln_w, m->full_ln_b, 1e-12f);
    }
    free(buf);
    return 0;
}

/* x[T][C] -> y[T][C + S] with the style appended to every row. */
static void s_cat_style(const float *x, int T, int C, const float *s, int S, float *y) {
    for (int t = 0; t < T; t++) {
        memcpy(y + (size_t)t * (C + S), x + (size_t)t * C, C * sizeof(float));
        memcpy(y + (size_t)t * (C + S) + C, s, S * sizeof(float));
    }
}

/* The duration encoder: d_en[T][H] -> d[T][H+S]. */
static int s_duration_encoder(const nr_ko_net_t *m, const float *d_en, int T, const float *s, float *d) {
    int H = m->hidden, S = m->style;
    float *h = malloc((size_t)T * H * sizeof(float)), *g = malloc(2 * (size_t)H * sizeof(float));
    if (!h || !g) {
        free(h);
        free(g);
        return NR_ENOMEM;
    }
    s_cat_style(d_en, T, H, s, S, d);
    int rc = 0;
    for (int l = 0; l < m->n_layer && !rc; l++) {
        if ((rc = nr_lstm_bidir(&m->dur_lstm[l].l, d, T, h))) break;
        s_linear(&m->dur_adaln[l], s, 1, g);
        s_layernorm(h, T, H, NULL, NULL, 1e-5f);
        for (int t = 0; t < T; t++)
            for (int c = 0; c < H; c++) h[(size_t)t * H + c] = (1.f + g[c]) * h[(size_t)t * H + c] + g[H + c];
        s_cat_style(h, T, H, s, S, d);
    }
    free(h);
    free(g);
    return rc;
}

/* The F0 or energy branch: x[H][F] (channel-major) -> out[2F]. */
static int s_prosody_branch(const nr_ko_net_t *m, const nr_ko_resblk_t *blk, const nr_ko_conv_t *proj, const float *x,
                            int F, const float *s, float *out) {
    int H = m->hidden;
    float *a = malloc((size_t)H * 2 * F * sizeof(float)), *b = malloc((size_t)H * 2 * F * sizeof(float));
    int rc = NR_ENOMEM;
    if (!a || !b) goto out;
    if ((rc = nr_ko_resblk(&blk[0], s, x, F, a))) goto out;
    if ((rc = nr_ko_resblk(&blk[1], s, a, F, b))) goto out;
    if ((rc = nr_ko_resblk(&blk[2], s, b, 2 * F, a))) goto out;
    rc = nr_ko_conv(proj, a, 2 * F, 1, 0, 1, out);
out:
    free(a);
    free(b);
    return rc;
}

/* Text encoder: ids -> t_en[H][T]. */
static int s_text_encoder(const nr_ko_net_t *m, const int *ids, int T, float *t_en) {
    int H = m->hidden, K = m->te_kernel;
    float *a = malloc((size_t)H * T * sizeof(float)), *b = malloc((size_t)H * T * sizeof(float));
    int rc = NR_ENOMEM;
    if (!a || !b) goto out;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < H; c++) a[(size_t)c * T + t] = m->te_emb[(size_t)ids[t] * H + c];
    for (int l = 0; l < m->n_layer; l++) {
        if ((rc = nr_ko_conv(&m->te_conv[l], a, T, 1, (K - 1) / 2, 1, b))) goto out;
        s_transpose(b, H, T, a); /* a[T][H] */
        s_layernorm(a, T, H, m->te_gamma[l], m->te_beta[l], 1e-5f);
        for (size_t i = 0; i < (size_t)T * H; i++) a[i] = s_leaky(a[i], 0.2f);
        s_transpose(a, T, H, b);
        memcpy(a, b, (size_t)H * T * sizeof(float));
    }
    s_transpose(a, H, T, b); /* b[T][H] */
    if ((rc = nr_lstm_bidir(&m->te_lstm.l, b, T, a))) goto out;
    s_transpose(a, T, H, t_en);
out:
    free(a);
    free(b);
    return rc;
}

/* Decoder up to the generator: asr[H][F], f0/n[2F] -> x[up_init][2F]. */
static int s_decoder(const nr_ko_net_t *m, const float *asr, int F, const float *f0, const float *n, const float *s,
                     float *x) {
    int H = m->hidden, E = m->enc_dim, A = m->asr_dim, wide = E + 2 + A;
    size_t cap = (size_t)(wide > H + 2 ? wide : H + 2) * F;
    float *in = malloc(cap * sizeof(float)), *cur = malloc((size_t)E * F * sizeof(float)),
          *ares = malloc((size_t)A * F * sizeof(float)), *fc = malloc(2 * (size_t)F * sizeof(float));
    int rc = NR_ENOMEM;
    if (!in || !cur || !ares || !fc) goto out;
    float *F0 = fc, *N = fc + F;
    if ((rc = nr_ko_conv(&m->f0_conv, f0, 2 * F, 2, 1, 1, F0))) goto out;
    if ((rc = nr_ko_conv(&m->n_conv, n, 2 * F, 2, 1, 1, N))) goto out;
    memcpy(in, asr, (size_t)H * F * sizeof(float));
    memcpy(in + (size_t)H * F, F0, F * sizeof(float));
    memcpy(in + (size_t)(H + 1) * F, N, F * sizeof(float));
    if ((rc = nr_ko_resblk(&m->encode, s, in, F, cur))) goto out;
    if ((rc = nr_ko_conv(&m->asr_res, asr, F, 1, 0, 1, ares))) goto out;
    for (int i = 0; i < 4; i++) {
        memcpy(in, cur, (size_t)E * F * sizeof(float));
        memcpy(in + (size_t)E * F, ares, (size_t)A * F * sizeof(float));
        memcpy(in + (size_t)(E + A) * F, F0, F * sizeof(float));
        memcpy(in + (size_t)(E + A + 1) * F, N, F * sizeof(float));
        if ((rc = nr_ko_resblk(&m->decode[i], s, in, F, i < 3 ? cur : x))) goto out;
    }
out:
    free(in);
    free(cur);
    free(ares);
    free(fc);
    return rc;
}

int nr_ko_decode(const nr_ko_net_t *m, const float *asr, int F, const float *f0, const float *n, const float *s,
                 uint64_t seed, float **pcm, size_t *n_samples, float **har_out, float **spec_out) {
    float *dec = malloc((size_t)m->up_init * 2 * F * sizeof(float));
    if (!dec) return NR_ENOMEM;
    int rc = s_decoder(m, asr, F, f0, n, s, dec);
    if (!rc) rc = nr_ko_generator(m, dec, 2 * F, s, f0, seed, pcm, n_samples, har_out, spec_out);
    free(dec);
    return rc;
}

int nr_ko_forward(const nr_ko_net_t *m, const int *ids, int T, const float *ref_s, float speed, uint64_t seed,
                  float **pcm, size_t *n_samples, nr_ko_trace_t *trace, char *err, size_t errlen) {
    int H = m->hidden, S = m->style, Hb = m->b_hidden, HS = H + S, F = 0, rc = NR_ENOMEM;
    const float *s_dec = ref_s, *s_pre = ref_s + S;
    float *bert = NULL, *d_en = NULL, *d = NULL, *x = NULL, *dp = NULL, *en = NULL, *sh = NULL, *f0 = NULL,
          *nn = NULL, *t_en = NULL, *asr = NULL;
    int64_t *dur = NULL;
    if (!(bert = malloc((size_t)T * Hb * sizeof(float))) || !(d_en = malloc((size_t)T * H * sizeof(float))) ||
        !(d = malloc((size_t)T * HS * sizeof(float))) || !(x = malloc((size_t)T * H * sizeof(float))) ||
        !(dp = malloc((size_t)T * m->max_dur * sizeof(float))) || !(dur = malloc((size_t)T * sizeof(int64_t))) ||
        !(t_en = malloc((size_t)H * T * sizeof(float))))
        goto out;
    if ((rc = s_albert(m, ids, T, bert))) goto out;
    s_linear(&m->bert_encoder, bert, T, d_en);
    if ((rc = s_duration_encoder(m, d_en, T, s_pre, d))) goto out;
    if ((rc = nr_lstm_bidir(&m->pred_lstm.l, d, T, x))) goto out;
    s_linear(&m->dur_proj, x, T, dp);
    for (int t = 0; t < T; t++) {
        float sum = 0.f;
        for (int j = 0; j < m->max_dur; j++) sum += 1.f / (1.f + expf(-dp[(size_t)t * m->max_dur + j]));
        float r = rintf(sum / speed); /* torch.round: halves to even */
        dur[t] = r < 1.f ? 1 : (int64_t)r;
        F += (int)dur[t];
    }
    if (F > S_MAX_FRAMES) {
        rc = nr_seterr(err, errlen, NR_ETEXT, "kokoro: %d frames of speech over the bound of %d", F, S_MAX_FRAMES);
        goto out;
    }
    /* Alignment: frame f repeats the row of the token it belongs to. */
    rc = NR_ENOMEM;
    if (!(en = malloc((size_t)F * HS * sizeof(float))) || !(sh = malloc((size_t)F * H * sizeof(float) * 2)) ||
        !(f0 = malloc(2 * (size_t)F * sizeof(float))) || !(nn = malloc(2 * (size_t)F * sizeof(float))) ||
        !(asr = malloc((size_t)H * F * sizeof(float))))
        goto out;
    for (int t = 0, f = 0; t < T; t++)
        for (int64_t r = 0; r < dur[t]; r++, f++) memcpy(en + (size_t)f * HS, d + (size_t)t * HS, HS * sizeof(float));
    if ((rc = nr_lstm_bidir(&m->shared.l, en, F, sh))) goto out;
    s_transpose(sh, F, H, sh + (size_t)F * H);
    if ((rc = s_prosody_branch(m, m->f0, &m->f0_proj, sh + (size_t)F * H, F, s_pre, f0))) goto out;
    if ((rc = s_prosody_branch(m, m->nb, &m->n_proj, sh + (size_t)F * H, F, s_pre, nn))) goto out;
    if ((rc = s_text_encoder(m, ids, T, t_en))) goto out;
    for (int c = 0; c < H; c++)
        for (int t = 0, f = 0; t < T; t++)
            for (int64_t r = 0; r < dur[t]; r++, f++) asr[(size_t)c * F + f] = t_en[(size_t)c * T + t];
    if ((rc = nr_ko_decode(m, asr, F, f0, nn, s_dec, seed, pcm, n_samples, trace ? &trace->har : NULL,
                           trace ? &trace->har_spec : NULL))) goto out;
    if (trace) {
        trace->T = T;
        trace->frames = F;
        trace->bert = bert;
        trace->d = d;
        trace->t_en = t_en;
        trace->f0 = f0;
        trace->n = nn;
        trace->durations = dur;
        bert = d = t_en = f0 = nn = NULL;
        dur = NULL;
    }
out:
    if (rc == NR_ENOMEM) nr_seterr(err, errlen, rc, "kokoro: out of memory");
    free(bert);
    free(d_en);
    free(d);
    free(x);
    free(dp);
    free(dur);
    free(en);
    free(sh);
    free(f0);
    free(nn);
    free(t_en);
    free(asr);
    return rc;
}
