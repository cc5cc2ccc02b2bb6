/* Kokoro-82M: loading config.json, kokoro-v1_0.pth and the voice packs,
 * and the public API (see kokoro.h). The forward pass is in kokoro_net.c
 * and istftnet.c. */
#include "models/speech/kokoro.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/utf8.h"
#include "models/io/checkpoint.h"
#include "models/io/torchzip.h"
#include "models/speech/kokoro_internal.h"
#include "models/speech/kokoro_net.h"

#define S_MAX_CONFIG (1 << 20)
#define S_MAX_VOICES 1024
#define S_SEED 0x4b6f6b6f726fULL /* production seed of the sine source */

typedef struct {
    uint32_t cp;
    int id;
} s_sym_t;

struct nr_kokoro {
    nr_ko_net_t net;
    s_sym_t *vocab;
    size_t n_vocab;
    char **voice_names;
    float **voices; /* (rows, 2*style) each */
    int *voice_rows;
    size_t n_voices;
    int max_phonemes;
    float **owned;
    size_t n_owned, cap_owned;
    const nr_checkpoint_t *ck; /* only while loading */
    char ckname[64];
};

nr_kokoro_params_t nr_kokoro_default_params(void) {
    nr_kokoro_params_t p = {"cpu", 0};
    return p;
}

/* ---------------------------------------------------------------- weights */

static int s_own(nr_kokoro_t *k, float *p) {
    if (k->n_owned == k->cap_owned) {
        size_t nc = k->cap_owned ? 2 * k->cap_owned : 256;
        float **q = realloc(k->owned, nc * sizeof(*q));
        if (!q) return NR_ENOMEM;
        k->owned = q;
        k->cap_owned = nc;
    }
    k->owned[k->n_owned++] = p;
    return 0;
}

/* The tensor "top.module.name" (the published form) or "top.name". */
static const nr_named_tensor_t *s_find(const nr_kokoro_t *k, const char *name, char *full, size_t fl) {
    const char *dot = strchr(name, '.');
    if (dot) {
        snprintf(full, fl, "%.*s.module.%s", (int)(dot - name), name, dot + 1);
        const nr_named_tensor_t *t = nr_checkpoint_find(k->ck, full);
        if (t) return t;
    }
    snprintf(full, fl, "%s", name);
    return nr_checkpoint_find(k->ck, full);
}

/* Loads `name` with the given shape (ndim ints follow) as owned F32. */
static int s_get(nr_kokoro_t *k, float **out, char *err, size_t errlen, const char *name, int ndim, ...) {
    int64_t shape[4];
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++) shape[i] = va_arg(ap, int);
    va_end(ap);
    char full[256];
    const nr_named_tensor_t *t = s_find(k, name, full, sizeof full);
    if (!t)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor %s missing (looked for %s)", nr_checkpoint_path(k->ck),
                         name, full);
    int rc = nr_named_tensor_to_f32(t, nr_checkpoint_path(k->ck), ndim, shape, out, err, errlen);
    if (rc) return rc;
    if (s_own(k, *out)) {
        free(*out);
        return nr_seterr(err, errlen, NR_ENOMEM, "kokoro: out of memory");
    }
    return 0;
}

static int s_has(const nr_kokoro_t *k, const char *name) {
    char full[256];
    return s_find(k, name, full, sizeof full) != NULL;
}

/* A weight_norm'd weight (prefix.weight_g, prefix.weight_v: w = g * v /
 * |v|, the norm over all dims but the first) or a plain prefix.weight.
 * Shape (d0, d1, d2). */
static int s_wn(nr_kokoro_t *k, float **out, char *err, size_t errlen, const char *prefix, int d0, int d1, int d2) {
    char n1[256], n2[256];
    snprintf(n1, sizeof n1, "%s.weight_g", prefix);
    if (!s_has(k, n1)) {
        snprintf(n1, sizeof n1, "%s.weight", prefix);
        return s_get(k, out, err, errlen, n1, 3, d0, d1, d2);
    }
    snprintf(n2, sizeof n2, "%s.weight_v", prefix);
    float *g, *v;
    int rc;
    if ((rc = s_get(k, &g, err, errlen, n1, 3, d0, 1, 1)) || (rc = s_get(k, &v, err, errlen, n2, 3, d0, d1, d2)))
        return rc;
    size_t row = (size_t)d1 * d2;
    for (int i = 0; i < d0; i++) {
        double ss = 0;
        for (size_t j = 0; j < row; j++) ss += (double)v[i * row + j] * v[i * row + j];
        float f = g[i] / (float)sqrt(ss);
        for (size_t j = 0; j < row; j++) v[i * row + j] *= f;
    }
    *out = v;
    return 0;
}

static int s_linear(nr_kokoro_t *k, nr_ko_linear_t *l, const char *prefix, int out, int in, int bias, char *err,
                    size_t errlen) {
    char n[256];
    int rc;
    l->out = out;
    l->in = in;
    l->b = NULL;
    snprintf(n, sizeof n, "%s.weight", prefix);
    if ((rc = s_get(k, &l->w, err, errlen, n, 2, out, in))) return rc;
    snprintf(n, sizeof n, "%s.bias", prefix);
    return bias ? s_get(k, &l->b, err, errlen, n, 1, out) : 0;
}

/* Conv1d (transposed: ConvTranspose1d, w (cin, cout/groups, k)). */
static int s_conv(nr_kokoro_t *k, nr_ko_conv_t *c, const char *prefix, int cout, int cin, int ks, int transposed,
                  int groups, int bias, char *err, size_t errlen) {
    char n[256];
    int rc;
    c->cout = cout;
    c->cin = cin;
    c->k = ks;
    c->b = NULL;
    if (transposed) rc = s_wn(k, &c->w, err, errlen, prefix, cin, cout / groups, ks);
    else rc = s_wn(k, &c->w, err, errlen, prefix, cout, cin / groups, ks);
    if (rc) return rc;
    snprintf(n, sizeof n, "%s.bias", prefix);
    return bias ? s_get(k, &c->b, err, errlen, n, 1, cout) : 0;
}

static int s_lstm(nr_kokoro_t *k, nr_ko_lstm_t *l, const char *prefix, int in, int h, char *err, size_t errlen) {
    char n[256];
    int rc;
    l->l.in = in;
    l->l.hidden = h;
    for (int d = 0; d < 2; d++) {
        const char *sfx = d ? "_reverse" : "";
        float *bi, *bh, *wi, *wh;
        snprintf(n, sizeof n, "%s.weight_ih_l0%s", prefix, sfx);
        if ((rc = s_get(k, &wi, err, errlen, n, 2, 4 * h, in))) return rc;
        snprintf(n, sizeof n, "%s.weight_hh_l0%s", prefix, sfx);
        if ((rc = s_get(k, &wh, err, errlen, n, 2, 4 * h, h))) return rc;
        snprintf(n, sizeof n, "%s.bias_ih_l0%s", prefix, sfx);
        if ((rc = s_get(k, &bi, err, errlen, n, 1, 4 * h))) return rc;
        snprintf(n, sizeof n, "%s.bias_hh_l0%s", prefix, sfx);
        if ((rc = s_get(k, &bh, err, errlen, n, 1, 4 * h))) return rc;
        for (int i = 0; i < 4 * h; i++) bi[i] += bh[i];
        l->l.wih[d] = wi;
        l->l.whh[d] = wh;
        l->l.bias[d] = bi;
    }
    return 0;
}

static int s_adain(nr_kokoro_t *k, nr_ko_adain_t *a, const char *prefix, int c, int S, char *err, size_t errlen) {
    char n[256];
    int rc;
    a->c = c;
    a->nw = a->nb = NULL;
    snprintf(n, sizeof n, "%s.fc", prefix);
    if ((rc = s_linear(k, &a->fc, n, 2 * c, S, 1, err, errlen))) return rc;
    snprintf(n, sizeof n, "%s.norm.weight", prefix); /* absent from the published file */
    if (s_has(k, n)) {
        if ((rc = s_get(k, &a->nw, err, errlen, n, 1, c))) return rc;
        snprintf(n, sizeof n, "%s.norm.bias", prefix);
        if ((rc = s_get(k, &a->nb, err, errlen, n, 1, c))) return rc;
    }
    return 0;
}

static int s_resblk(nr_kokoro_t *k, nr_ko_resblk_t *b, const char *prefix, int din, int dout, int up, int S,
                    char *err, size_t errlen) {
    char n[256];
    int rc;
    b->din = din;
    b->dout = dout;
    b->up = up;
    memset(&b->conv1x1, 0, sizeof b->conv1x1);
    memset(&b->pool, 0, sizeof b->pool);
#define S_SUB(what) (snprintf(n, sizeof n, "%s.%s", prefix, what), n)
    if ((rc = s_adain(k, &b->norm1, S_SUB("norm1"), din, S, err, errlen))) return rc;
    if ((rc = s_adain(k, &b->norm2, S_SUB("norm2"), dout, S, err, errlen))) return rc;
    if ((rc = s_conv(k, &b->conv1, S_SUB("conv1"), dout, din, 3, 0, 1, 1, err, errlen))) return rc;
    if ((rc = s_conv(k, &b->conv2, S_SUB("conv2"), dout, dout, 3, 0, 1, 1, err, errlen))) return rc;
    if (din != dout && (rc = s_conv(k, &b->conv1x1, S_SUB("conv1x1"), dout, din, 1, 0, 1, 0, err, errlen))) return rc;
    if (up && (rc = s_conv(k, &b->pool, S_SUB("pool"), din, din, 3, 1, din, 1, err, errlen))) return rc;
#undef S_SUB
    return 0;
}

static int s_resblock1(nr_kokoro_t *k, nr_ko_resblock1_t *b, const char *prefix, int ch, int ks, const int *dil,
                       int S, char *err, size_t errlen) {
    char n[256];
    int rc;
    b->ch = ch;
    b->k = ks;
    for (int j = 0; j < 3; j++) {
        b->dil[j] = dil[j];
        snprintf(n, sizeof n, "%s.convs1.%d", prefix, j);
        if ((rc = s_conv(k, &b->c1[j], n, ch, ch, ks, 0, 1, 1, err, errlen))) return rc;
        snprintf(n, sizeof n, "%s.convs2.%d", prefix, j);
        if ((rc = s_conv(k, &b->c2[j], n, ch, ch, ks, 0, 1, 1, err, errlen))) return rc;
        snprintf(n, sizeof n, "%s.adain1.%d", prefix, j);
        if ((rc = s_adain(k, &b->a1[j], n, ch, S, err, errlen))) return rc;
        snprintf(n, sizeof n, "%s.adain2.%d", prefix, j);
        if ((rc = s_adain(k, &b->a2[j], n, ch, S, err, errlen))) return rc;
        snprintf(n, sizeof n, "%s.alpha1.%d", prefix, j);
        if ((rc = s_get(k, &b->alpha1[j], err, errlen, n, 3, 1, ch, 1))) return rc;
        snprintf(n, sizeof n, "%s.alpha2.%d", prefix, j);
        if ((rc = s_get(k, &b->alpha2[j], err, errlen, n, 3, 1, ch, 1))) return rc;
    }
    return 0;
}

/* Output channels of a weight_norm'd conv (its v or weight), 0 when absent. */
static int s_dim0(const nr_kokoro_t *k, const char *prefix) {
    char n[256], full[256];
    snprintf(n, sizeof n, "%s.weight_v", prefix);
    const nr_named_tensor_t *t = s_find(k, n, full, sizeof full);
    if (!t) {
        snprintf(n, sizeof n, "%s.weight", prefix);
        t = s_find(k, n, full, sizeof full);
    }
    return t && t->ndim >= 1 && t->shape[0] > 0 && t->shape[0] < 65536 ? (int)t->shape[0] : 0;
}

static int s_load_weights(nr_kokoro_t *k, char *err, size_t errlen) {
    nr_ko_net_t *m = &k->net;
    int H = m->hidden, S = m->style, Hb = m->b_hidden, rc;
    char n[128];
    /* ALBERT */
    if ((rc = s_get(k, &m->word_emb, err, errlen, "bert.embeddings.word_embeddings.weight", 2, m->n_token, m->b_emb)) ||
        (rc = s_get(k, &m->pos_emb, err, errlen, "bert.embeddings.position_embeddings.weight", 2, m->b_maxpos,
                    m->b_emb)) ||
        (rc = s_get(k, &m->type_emb, err, errlen, "bert.embeddings.token_type_embeddings.weight", 2, 2, m->b_emb)) ||
        (rc = s_get(k, &m->emb_ln_w, err, errlen, "bert.embeddings.LayerNorm.weight", 1, m->b_emb)) ||
        (rc = s_get(k, &m->emb_ln_b, err, errlen, "bert.embeddings.LayerNorm.bias", 1, m->b_emb)) ||
        (rc = s_linear(k, &m->map_in, "bert.encoder.embedding_hidden_mapping_in", Hb, m->b_emb, 1, err, errlen)))
        return rc;
#define S_AL "bert.encoder.albert_layer_groups.0.albert_layers.0."
    if ((rc = s_linear(k, &m->q, S_AL "attention.query", Hb, Hb, 1, err, errlen)) ||
        (rc = s_linear(k, &m->k, S_AL "attention.key", Hb, Hb, 1, err, errlen)) ||
        (rc = s_linear(k, &m->v, S_AL "attention.value", Hb, Hb, 1, err, errlen)) ||
        (rc = s_linear(k, &m->dense, S_AL "attention.dense", Hb, Hb, 1, err, errlen)) ||
        (rc = s_get(k, &m->att_ln_w, err, errlen, S_AL "attention.LayerNorm.weight", 1, Hb)) ||
        (rc = s_get(k, &m->att_ln_b, err, errlen, S_AL "attention.LayerNorm.bias", 1, Hb)) ||
        (rc = s_linear(k, &m->ffn, S_AL "ffn", m->b_inter, Hb, 1, err, errlen)) ||
        (rc = s_linear(k, &m->ffn_out, S_AL "ffn_output", Hb, m->b_inter, 1, err, errlen)) ||
        (rc = s_get(k, &m->full_ln_w, err, errlen, S_AL "full_layer_layer_norm.weight", 1, Hb)) ||
        (rc = s_get(k, &m->full_ln_b, err, errlen, S_AL "full_layer_layer_norm.bias", 1, Hb)) ||
        (rc = s_linear(k, &m->bert_encoder, "bert_encoder", H, Hb, 1, err, errlen)))
        return rc;
    /* prosody predictor */
    for (int l = 0; l < m->n_layer; l++) {
        snprintf(n, sizeof n, "predictor.text_encoder.lstms.%d", 2 * l);
        if ((rc = s_lstm(k, &m->dur_lstm[l], n, H + S, H / 2, err, errlen))) return rc;
        snprintf(n, sizeof n, "predictor.text_encoder.lstms.%d.fc", 2 * l + 1);
        if ((rc = s_linear(k, &m->dur_adaln[l], n, 2 * H, S, 1, err, errlen))) return rc;
    }
    if ((rc = s_lstm(k, &m->pred_lstm, "predictor.lstm", H + S, H / 2, err, errlen)) ||
        (rc = s_linear(k, &m->dur_proj, "predictor.duration_proj.linear_layer", m->max_dur, H, 1, err, errlen)) ||
        (rc = s_lstm(k, &m->shared, "predictor.shared", H + S, H / 2, err, errlen)))
        return rc;
    for (int i = 0; i < 3; i++) {
        int din = i == 0 ? H : i == 1 ? H : H / 2, dout = i == 0 ? H : H / 2;
        snprintf(n, sizeof n, "predictor.F0.%d", i);
        if ((rc = s_resblk(k, &m->f0[i], n, din, dout, i == 1, S, err, errlen))) return rc;
        snprintf(n, sizeof n, "predictor.N.%d", i);
        if ((rc = s_resblk(k, &m->nb[i], n, din, dout, i == 1, S, err, errlen))) return rc;
    }
    if ((rc = s_conv(k, &m->f0_proj, "predictor.F0_proj", 1, H / 2, 1, 0, 1, 1, err, errlen)) ||
        (rc = s_conv(k, &m->n_proj, "predictor.N_proj", 1, H / 2, 1, 0, 1, 1, err, errlen)))
        return rc;
    /* text encoder */
    if ((rc = s_get(k, &m->te_emb, err, errlen, "text_encoder.embedding.weight", 2, m->n_token, H))) return rc;
    for (int l = 0; l < m->n_layer; l++) {
        snprintf(n, sizeof n, "text_encoder.cnn.%d.0", l);
        if ((rc = s_conv(k, &m->te_conv[l], n, H, H, m->te_kernel, 0, 1, 1, err, errlen))) return rc;
        snprintf(n, sizeof n, "text_encoder.cnn.%d.1.gamma", l);
        if ((rc = s_get(k, &m->te_gamma[l], err, errlen, n, 1, H))) return rc;
        snprintf(n, sizeof n, "text_encoder.cnn.%d.1.beta", l);
        if ((rc = s_get(k, &m->te_beta[l], err, errlen, n, 1, H))) return rc;
    }
    if ((rc = s_lstm(k, &m->te_lstm, "text_encoder.lstm", H, H / 2, err, errlen))) return rc;
    /* decoder: its widths (1024 and 64 upstream) come from the weights */
    m->enc_dim = s_dim0(k, "decoder.encode.conv1");
    m->asr_dim = s_dim0(k, "decoder.asr_res.0");
    if (!m->enc_dim || !m->asr_dim)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: tensor decoder.encode.conv1 or decoder.asr_res.0 missing",
                         nr_checkpoint_path(k->ck));
    int E = m->enc_dim, A = m->asr_dim, U = m->up_init;
    if ((rc = s_resblk(k, &m->encode, "decoder.encode", H + 2, E, 0, S, err, errlen))) return rc;
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "decoder.decode.%d", i);
        if ((rc = s_resblk(k, &m->decode[i], n, E + 2 + A, i < 3 ? E : U, i == 3, S, err, errlen))) return rc;
    }
    if ((rc = s_conv(k, &m->f0_conv, "decoder.F0_conv", 1, 1, 3, 0, 1, 1, err, errlen)) ||
        (rc = s_conv(k, &m->n_conv, "decoder.N_conv", 1, 1, 3, 0, 1, 1, err, errlen)) ||
        (rc = s_conv(k, &m->asr_res, "decoder.asr_res.0", A, H, 1, 0, 1, 1, err, errlen)) ||
        (rc = s_linear(k, &m->src_linear, "decoder.generator.m_source.l_linear", 1, 9, 1, err, errlen)))
        return rc;
    static const int noise_dil[3] = {1, 3, 5};
    for (int i = 0; i < m->n_ups; i++) {
        int cin = U >> i, ch = U >> (i + 1);
        snprintf(n, sizeof n, "decoder.generator.ups.%d", i);
        if ((rc = s_conv(k, &m->ups[i], n, ch, cin, m->ups_k[i], 1, 1, 1, err, errlen))) return rc;
        int last = i + 1 == m->n_ups, sf = 1;
        for (int j = i + 1; j < m->n_ups; j++) sf *= m->ups_rate[j];
        snprintf(n, sizeof n, "decoder.generator.noise_convs.%d", i);
        if ((rc = s_conv(k, &m->noise_convs[i], n, ch, m->n_fft + 2, last ? 1 : 2 * sf, 0, 1, 1, err, errlen)))
            return rc;
        snprintf(n, sizeof n, "decoder.generator.noise_res.%d", i);
        if ((rc = s_resblock1(k, &m->noise_res[i], n, ch, last ? 11 : 7, noise_dil, S, err, errlen))) return rc;
        for (int j = 0; j < m->n_kernels; j++) {
            snprintf(n, sizeof n, "decoder.generator.resblocks.%d", i * m->n_kernels + j);
            if ((rc = s_resblock1(k, &m->resblocks[i * m->n_kernels + j], n, ch, m->rk[j], m->rd[j], S, err, errlen)))
                return rc;
        }
    }
    return s_conv(k, &m->conv_post, "decoder.generator.conv_post", m->n_fft + 2, U >> m->n_ups, 7, 0, 1, 1, err,
                  errlen);
}

/* ---------------------------------------------------------------- config */

static int s_int(const cJSON *o, const char *key, int lo, int hi, int def, int *out, const char *path, char *err,
                 size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (def >= lo) {
            *out = def;
            return 0;
        }
        return nr_seterr(err, errlen, NR_EMODEL, "%s: \"%s\" missing", path, key);
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: \"%s\" must be an integer in [%d, %d]", path, key, lo, hi);
    *out = (int)v->valuedouble;
    return 0;
}

static int s_int_list(const cJSON *o, const char *key, int *out, int max, int lo, int hi, int *n, const char *path,
                      char *err, size_t errlen) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    int c = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    if (c < 1 || c > max)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: \"%s\" must be a list of 1 to %d integers", path, key, max);
    for (int i = 0; i < c; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: \"%s\"[%d] must be an integer in [%d, %d]", path, key, i, lo,
                             hi);
        out[i] = (int)v->valuedouble;
    }
    *n = c;
    return 0;
}

static int s_sym_cmp(const void *a, const void *b) {
    uint32_t x = ((const s_sym_t *)a)->cp, y = ((const s_sym_t *)b)->cp;
    return x < y ? -1 : x > y;
}

/* Decodes one UTF-8 code point at s[*i] (valid UTF-8 assumed). */
static uint32_t s_cp(const unsigned char *s, size_t *i) {
    uint32_t c = s[*i];
    int n = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    c = n == 0 ? c : n == 1 ? c & 0x1F : n == 2 ? c & 0x0F : c & 0x07;
    for (int j = 1; j <= n; j++) c = (c << 6) | (s[*i + j] & 0x3F);
    *i += (size_t)n + 1;
    return c;
}

static int s_config(nr_kokoro_t *k, const char *dir, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return nr_seterr(err, errlen, NR_EMODEL, "%s: cannot open", path);
    char *text = malloc(S_MAX_CONFIG + 1);
    size_t n = text ? fread(text, 1, S_MAX_CONFIG + 1, f) : 0;
    fclose(f);
    if (!text) return nr_seterr(err, errlen, NR_ENOMEM, "kokoro: out of memory");
    if (n > S_MAX_CONFIG) {
        free(text);
        return nr_seterr(err, errlen, NR_EMODEL, "%s: larger than %d bytes", path, S_MAX_CONFIG);
    }
    text[n] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a JSON object", path);
    }
    nr_ko_net_t *m = &k->net;
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(root, "plbert"),
                *is = cJSON_GetObjectItemCaseSensitive(root, "istftnet"),
                *vocab = cJSON_GetObjectItemCaseSensitive(root, "vocab");
    int rc = 0, nk = 0, nd = 0;
    if (!cJSON_IsObject(pl) || !cJSON_IsObject(is) || !cJSON_IsObject(vocab)) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: \"plbert\", \"istftnet\" and \"vocab\" objects required", path);
        goto out;
    }
    if ((rc = s_int(root, "n_token", 1, 65536, -1, &m->n_token, path, err, errlen)) ||
        (rc = s_int(root, "hidden_dim", 2, 4096, -1, &m->hidden, path, err, errlen)) ||
        (rc = s_int(root, "style_dim", 1, 4096, -1, &m->style, path, err, errlen)) ||
        (rc = s_int(root, "n_layer", 1, 8, -1, &m->n_layer, path, err, errlen)) ||
        (rc = s_int(root, "max_dur", 1, 1000, -1, &m->max_dur, path, err, errlen)) ||
        (rc = s_int(root, "text_encoder_kernel_size", 1, 31, -1, &m->te_kernel, path, err, errlen)) ||
        (rc = s_int(pl, "hidden_size", 1, 8192, -1, &m->b_hidden, path, err, errlen)) ||
        (rc = s_int(pl, "num_attention_heads", 1, 128, -1, &m->b_heads, path, err, errlen)) ||
        (rc = s_int(pl, "intermediate_size", 1, 65536, -1, &m->b_inter, path, err, errlen)) ||
        (rc = s_int(pl, "max_position_embeddings", 3, 8192, -1, &m->b_maxpos, path, err, errlen)) ||
        (rc = s_int(pl, "num_hidden_layers", 1, 64, -1, &m->b_layers, path, err, errlen)) ||
        (rc = s_int(pl, "embedding_size", 1, 8192, 128, &m->b_emb, path, err, errlen)) ||
        (rc = s_int(is, "upsample_initial_channel", 2, 8192, -1, &m->up_init, path, err, errlen)) ||
        (rc = s_int(is, "gen_istft_n_fft", 2, 62, -1, &m->n_fft, path, err, errlen)) ||
        (rc = s_int(is, "gen_istft_hop_size", 1, 62, -1, &m->hop, path, err, errlen)) ||
        (rc = s_int_list(is, "upsample_rates", m->ups_rate, 4, 1, 64, &m->n_ups, path, err, errlen)) ||
        (rc = s_int_list(is, "upsample_kernel_sizes", m->ups_k, 4, 1, 128, &nk, path, err, errlen)) ||
        (rc = s_int_list(is, "resblock_kernel_sizes", m->rk, 4, 1, 63, &m->n_kernels, path, err, errlen)))
        goto out;
    const cJSON *dl = cJSON_GetObjectItemCaseSensitive(is, "resblock_dilation_sizes");
    nd = cJSON_IsArray(dl) ? cJSON_GetArraySize(dl) : -1;
    if (nk != m->n_ups || nd != m->n_kernels || m->b_hidden % m->b_heads || m->hidden % 2 || m->n_fft % 2 ||
        (m->up_init >> m->n_ups) < 1 || m->te_kernel % 2 == 0 || !nr_ko_generator_sizes_ok(m)) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: inconsistent sizes (upsample lists, resblock lists, heads, an even text encoder kernel, istftnet lengths)", path);
        goto out;
    }
    for (int i = 0; i < m->n_kernels; i++)
        if (m->rk[i] % 2 == 0) { /* "same" padding needs odd kernels */
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: resblock_kernel_sizes must be odd", path);
            goto out;
        }
    for (int i = 0; i < nd; i++) {
        const cJSON *e = cJSON_GetArrayItem(dl, i);
        int c = cJSON_IsArray(e) ? cJSON_GetArraySize(e) : -1;
        for (int j = 0; j < c && j < 3; j++) {
            const cJSON *v = cJSON_GetArrayItem(e, j);
            m->rd[i][j] = cJSON_IsNumber(v) ? (int)v->valuedouble : 0;
        }
        for (int j = 0; j < 3; j++)
            if (c != 3 || m->rd[i][j] < 1 || m->rd[i][j] > 64) {
                rc = nr_seterr(err, errlen, NR_EMODEL, "%s: resblock_dilation_sizes[%d] must hold 3 integers in [1, 64]",
                               path, i);
                goto out;
            }
    }
    int nv = cJSON_GetArraySize(vocab);
    if (nv < 1 || !(k->vocab = calloc((size_t)nv, sizeof(s_sym_t)))) {
        rc = nv < 1 ? nr_seterr(err, errlen, NR_EMODEL, "%s: empty vocab", path)
                    : nr_seterr(err, errlen, NR_ENOMEM, "kokoro: out of memory");
        goto out;
    }
    for (const cJSON *e = vocab->child; e; e = e->next) {
        const unsigned char *key = (const unsigned char *)e->string;
        size_t kl = strlen(e->string), i = 0;
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= m->n_token ||
            e->valuedouble != floor(e->valuedouble)) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: vocab id of '%.16s' is not an integer in [0, n_token)", path,
                           e->string);
            goto out;
        }
        if (kl == 0 || nr_utf8_validate((const uint8_t *)e->string, kl, NULL) != 0) continue;
        uint32_t cp = s_cp(key, &i);
        if (i != kl) continue; /* KModel maps one character at a time: longer keys never match */
        k->vocab[k->n_vocab].cp = cp;
        k->vocab[k->n_vocab++].id = (int)e->valuedouble;
    }
    qsort(k->vocab, k->n_vocab, sizeof(s_sym_t), s_sym_cmp);
    k->max_phonemes = m->b_maxpos - 2;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- voices */

static int s_name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int s_voices(nr_kokoro_t *k, const char *dir, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/voices", dir);
    DIR *d = opendir(path);
    if (!d) return nr_seterr(err, errlen, NR_EMODEL, "%s: no voices folder", path);
    struct dirent *de;
    size_t cap = 0;
    int rc = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 4 || l > 67 || strcmp(de->d_name + l - 3, ".pt") || de->d_name[0] == '.') continue;
        if (k->n_voices == S_MAX_VOICES) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: more than %d voices", path, S_MAX_VOICES);
            break;
        }
        if (k->n_voices == cap) {
            cap = cap ? 2 * cap : 16;
            char **q = realloc(k->voice_names, cap * sizeof(char *));
            if (!q) {
                rc = nr_seterr(err, errlen, NR_ENOMEM, "kokoro: out of memory");
                break;
            }
            k->voice_names = q;
        }
        if (!(k->voice_names[k->n_voices] = strndup(de->d_name, l - 3))) {
            rc = nr_seterr(err, errlen, NR_ENOMEM, "kokoro: out of memory");
            break;
        }
        k->n_voices++;
    }
    closedir(d);
    if (rc) return rc;
    if (!k->n_voices) return nr_seterr(err, errlen, NR_EMODEL, "%s: no voice packs (*.pt)", path);
    qsort(k->voice_names, k->n_voices, sizeof(char *), s_name_cmp);
    if (!(k->voices = calloc(k->n_voices, sizeof(float *))) || !(k->voice_rows = calloc(k->n_voices, sizeof(int))))
        return nr_seterr(err, errlen, NR_ENOMEM, "kokoro: out of memory");
    int S2 = 2 * k->net.style;
    for (size_t i = 0; i < k->n_voices; i++) {
        char vp[4096];
        snprintf(vp, sizeof vp, "%s/%s.pt", path, k->voice_names[i]);
        nr_torchzip_t *tz = NULL;
        if ((rc = nr_torchzip_open(vp, &tz, err, errlen))) return rc == NR_EIO ? NR_EMODEL : rc;
        const nr_named_tensor_t *t = nr_torchzip_find(tz, "");
        int ok = t && ((t->ndim == 3 && t->shape[1] == 1 && t->shape[2] == S2) || (t->ndim == 2 && t->shape[1] == S2)) &&
                 t->shape[0] >= 1 && t->shape[0] <= 65536;
        if (!ok) {
            nr_torchzip_close(&tz);
            return nr_seterr(err, errlen, NR_EMODEL, "%s: not one tensor [rows, 1, %d] (a voice pack)", vp, S2);
        }
        k->voice_rows[i] = (int)t->shape[0];
        rc = nr_named_tensor_to_f32(t, vp, -1, NULL, &k->voices[i], err, errlen);
        nr_torchzip_close(&tz);
        if (rc) return rc;
        if (k->voice_rows[i] < k->max_phonemes) k->max_phonemes = k->voice_rows[i];
    }
    return 0;
}

/* ---------------------------------------------------------------- API */

static int s_find_pth(const char *dir, char *out, size_t ol, char *err, size_t errlen) {
    snprintf(out, ol, "%s/kokoro-v1_0.pth", dir);
    struct stat st;
    if (stat(out, &st) == 0) return 0;
    DIR *d = opendir(dir);
    if (!d) return nr_seterr(err, errlen, NR_EMODEL, "%s: cannot open the folder", dir);
    struct dirent *de;
    int found = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".pth") == 0) {
            if (found++) break;
            snprintf(out, ol, "%s/%s", dir, de->d_name);
        }
    }
    closedir(d);
    if (found == 1) return 0;
    return nr_seterr(err, errlen, NR_EMODEL, "%s: %s", dir,
                     found ? "several *.pth files and no kokoro-v1_0.pth" : "no kokoro-v1_0.pth (or other *.pth)");
}

int nr_kokoro_load(const char *dir, const nr_kokoro_params_t *params, nr_kokoro_t **out, char *err, size_t errlen) {
    if (out) *out = NULL;
    if (!dir || !out) return nr_seterr(err, errlen, NR_EINVAL, "kokoro: no model folder");
    if (params && params->device && strcmp(params->device, "cpu") != 0)
        return nr_seterr(err, errlen, NR_EINVAL, "kokoro: device '%s' not supported (cpu only)", params->device);
    nr_kokoro_t *k = calloc(1, sizeof *k);
    if (!k) return nr_seterr(err, errlen, NR_ENOMEM, "kokoro: out of memory");
    if (params && params->num_threads > 0) openblas_set_num_threads(params->num_threads);
    char pth[4096];
    nr_checkpoint_t *ck = NULL;
    int rc = s_config(k, dir, err, errlen);
    if (!rc && k->net.n_layer > 8) rc = nr_seterr(err, errlen, NR_EMODEL, "%s: n_layer over 8", dir);
    if (!rc) rc = s_find_pth(dir, pth, sizeof pth, err, errlen);
    if (!rc) rc = nr_checkpoint_open_file(pth, &ck, err, errlen);
    if (rc == NR_EIO) rc = NR_EMODEL;
    if (!rc) {
        k->ck = ck;
        rc = s_load_weights(k, err, errlen);
        k->ck = NULL;
        nr_checkpoint_close(&ck);
    }
    if (!rc) rc = s_voices(k, dir, err, errlen);
    if (rc) {
        nr_kokoro_destroy(&k);
        return rc;
    }
    *out = k;
    return 0;
}

void nr_kokoro_destroy(nr_kokoro_t **self) {
    if (!self || !*self) return;
    nr_kokoro_t *k = *self;
    for (size_t i = 0; i < k->n_owned; i++) free(k->owned[i]);
    free(k->owned);
    for (size_t i = 0; i < k->n_voices; i++) {
        free(k->voice_names[i]);
        if (k->voices) free(k->voices[i]);
    }
    free(k->voice_names);
    free(k->voices);
    free(k->voice_rows);
    free(k->vocab);
    free(k);
    *self = NULL;
}

int nr_kokoro_sample_rate(const nr_kokoro_t *k) {
    (void)k;
    return 24000;
}

int nr_kokoro_max_phonemes(const nr_kokoro_t *k) { return k ? k->max_phonemes : 0; }

size_t nr_kokoro_voice_count(const nr_kokoro_t *k) { return k ? k->n_voices : 0; }

const char *nr_kokoro_voice_name(const nr_kokoro_t *k, size_t i) {
    return k && i < k->n_voices ? k->voice_names[i] : NULL;
}

/* Token ids for phonemes: ids[0] and ids[n+1] are the 0 pads. Returns the
 * phoneme count, or -1 (bad UTF-8, symbol not in vocab: *bad_at set) */
static int s_ids(const nr_kokoro_t *k, const char *ph, size_t len, int *ids, int max, size_t *bad_at) {
    size_t i = 0;
    int n = 0;
    *bad_at = 0;
    if (nr_utf8_validate((const uint8_t *)ph, len, bad_at) != 0) return -1;
    while (i < len) {
        size_t at = i;
        s_sym_t key = {s_cp((const unsigned char *)ph, &i), 0};
        const s_sym_t *s = bsearch(&key, k->vocab, k->n_vocab, sizeof key, s_sym_cmp);
        if (!s) {
            *bad_at = at;
            return -1;
        }
        if (ids && n < max) ids[n + 1] = s->id;
        n++;
    }
    return n;
}

int nr_kokoro_phonemes_valid(const nr_kokoro_t *k, const char *phonemes, size_t len) {
    size_t bad;
    return k && (phonemes || !len) && s_ids(k, phonemes, len, NULL, 0, &bad) >= 0;
}

const nr_ko_net_t *nr_kokoro_net(const nr_kokoro_t *k) { return &k->net; }

const float *nr_kokoro_style(const nr_kokoro_t *k, const char *voice, int n) {
    for (size_t i = 0; voice && i < k->n_voices; i++)
        if (strcmp(k->voice_names[i], voice) == 0)
            return n >= 1 && n <= k->voice_rows[i] ? k->voices[i] + (size_t)(n - 1) * 2 * k->net.style : NULL;
    return NULL;
}

int nr_kokoro_synthesize_ex(const nr_kokoro_t *k, const char *phonemes, size_t len, const char *voice, float speed,
                            uint64_t seed, float **pcm, size_t *n_samples, nr_ko_trace_t *trace, char *err,
                            size_t errlen) {
    if (pcm) *pcm = NULL;
    if (n_samples) *n_samples = 0;
    if (!k || !pcm || !n_samples) return nr_seterr(err, errlen, NR_EINVAL, "kokoro: missing argument");
    if (!(speed >= 0.5f && speed <= 2.0f))
        return nr_seterr(err, errlen, NR_EOPTION, "kokoro: speed %g outside [0.5, 2]", (double)speed);
    size_t vi = k->n_voices;
    for (size_t i = 0; voice && i < k->n_voices; i++)
        if (strcmp(k->voice_names[i], voice) == 0) vi = i;
    if (vi == k->n_voices) {
        size_t o = (size_t)snprintf(err, errlen, "kokoro: unknown voice '%.64s'; voices:", voice ? voice : "(null)");
        for (size_t i = 0; err && i < k->n_voices && o < errlen; i++)
            o += (size_t)snprintf(err + o, errlen - o, "%s%s", i ? ", " : " ", k->voice_names[i]);
        return NR_EVOICE;
    }
    if (!phonemes || !len) return nr_seterr(err, errlen, NR_ETEXT, "kokoro: no phonemes");
    size_t bad;
    int n = s_ids(k, phonemes, len, NULL, 0, &bad);
    if (n < 0)
        return nr_seterr(err, errlen, NR_ETEXT, "kokoro: phonemes at byte %zu: not UTF-8 or a symbol not in the vocab",
                         bad);
    if (n > k->max_phonemes)
        return nr_seterr(err, errlen, NR_ETEXT, "kokoro: %d phonemes, over the limit of %d", n, k->max_phonemes);
    int *ids = calloc((size_t)n + 2, sizeof(int));
    if (!ids) return nr_seterr(err, errlen, NR_ENOMEM, "kokoro: out of memory");
    s_ids(k, phonemes, len, ids, n, &bad);
    /* KPipeline's style: the pack row for the phoneme count. */
    const float *ref_s = k->voices[vi] + (size_t)(n - 1) * 2 * k->net.style;
    int rc = nr_ko_forward(&k->net, ids, n + 2, ref_s, speed, seed, pcm, n_samples, trace, err, errlen);
    free(ids);
    return rc;
}

int nr_kokoro_synthesize(const nr_kokoro_t *k, const char *phonemes, size_t len, const char *voice, float speed,
                         float **pcm, size_t *n_samples, char *err, size_t errlen) {
    return nr_kokoro_synthesize_ex(k, phonemes, len, voice, speed, S_SEED, pcm, n_samples, NULL, err, errlen);
}
