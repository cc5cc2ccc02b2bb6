/* Gemma decoder with PaliGemma's prefix-LM mask and a KV cache (see
 * gemma.h). Follows transformers v4.46 models/gemma/modeling_gemma.py
 * (GemmaRMSNorm, GemmaRotaryEmbedding, apply_rotary_pos_emb, GemmaMLP,
 * GemmaAttention with repeat_kv, GemmaDecoderLayer, GemmaModel's
 * normalizer) and models/paligemma/modeling_paligemma.py
 * (_update_causal_mask outside training, 1-indexed position_ids). */
#include "models/gemma.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/tensor.h"
#include "models/weights.h"

#define I64(x) ((int64_t)(x))

typedef struct {
    float *ln1;          /* (D) input_layernorm */
    float *wq, *wk, *wv; /* (H*hd, D), (KV*hd, D), (KV*hd, D) */
    float *wo;           /* (D, H*hd) */
    float *ln2;          /* (D) post_attention_layernorm */
    float *wg, *wu;      /* (I, D) gate_proj, up_proj */
    float *wd;           /* (D, I) down_proj */
} s_layer_t;

struct nr_gemma {
    nr_paligemma_config_t cfg;
    nr_backend_t *be;
    nr_wstore_t ws;
    float *wte;  /* (V, D) embed_tokens, also the lm_head (a matmul key when wte16) */
    const uint16_t *wte16; /* the same in the mapping when BF16 and adopted, else NULL */
    float *norm; /* (D) */
    s_layer_t *layers;
};

int nr_gemma_load(const nr_paligemma_config_t *cfg, const nr_checkpoint_t *ck, const char *prefix, nr_backend_t *be,
                  nr_gemma_t **out, char *err, size_t errlen) {
    *out = NULL;
    nr_gemma_t *m = calloc(1, sizeof(*m));
    if (!m) return nr_seterr(err, errlen, NR_ENOMEM, "gemma: out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->ws = (nr_wstore_t){.be = be, .ck = ck, .prefix = prefix ? prefix : ""};
    nr_wstore_t *ws = &m->ws;
    const int D = cfg->hidden_size, V = cfg->vocab_size, I = cfg->intermediate_size;
    const int QW = cfg->num_attention_heads * cfg->head_dim, KW = cfg->num_key_value_heads * cfg->head_dim;
    int rc;
    /* the embeddings as the lm_head's weight: a BF16 file keeps them mapped */
    if ((rc = nr_wstore_get_matmul(ws, "model.embed_tokens.weight", &m->wte, err, errlen, I64(V), I64(D), 1)) ||
        (rc = nr_wstore_get(ws, "model.norm.weight", &m->norm, err, errlen, 1, I64(D))))
        goto fail;
    char full[512];
    snprintf(full, sizeof full, "%smodel.embed_tokens.weight", ws->prefix);
    const nr_named_tensor_t *te = nr_checkpoint_find(ck, full);
    if (te && te->dtype == NR_DTYPE_BF16 && te->data == (const void *)m->wte) m->wte16 = te->data;
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof(s_layer_t));
    if (!m->layers) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "gemma: out of memory");
        goto fail;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        s_layer_t *L = &m->layers[l];
        char nm[160];
#define W(field, suffix, nd, ...)                                                                 \
    do {                                                                                          \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                 \
        if ((rc = nr_wstore_get(ws, nm, &L->field, err, errlen, nd, __VA_ARGS__))) goto fail;     \
    } while (0)
/* matmul weights, made ready for decode steps (one row at a time): a BF16
 * file keeps them in the mapping */
#define WM(field, suffix, n, k)                                                                      \
    do {                                                                                             \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                    \
        if ((rc = nr_wstore_get_matmul(ws, nm, &L->field, err, errlen, I64(n), I64(k), 1))) goto fail; \
    } while (0)
        W(ln1, "input_layernorm.weight", 1, I64(D));
        WM(wq, "self_attn.q_proj.weight", QW, D);
        WM(wk, "self_attn.k_proj.weight", KW, D);
        WM(wv, "self_attn.v_proj.weight", KW, D);
        WM(wo, "self_attn.o_proj.weight", D, QW);
        W(ln2, "post_attention_layernorm.weight", 1, I64(D));
        WM(wg, "mlp.gate_proj.weight", I, D);
        WM(wu, "mlp.up_proj.weight", I, D);
        WM(wd, "mlp.down_proj.weight", D, I);
#undef W
#undef WM
    }
    *out = m;
    return 0;
fail:
    nr_gemma_destroy(&m);
    return rc;
}

void nr_gemma_destroy(nr_gemma_t **pm) {
    if (!pm || !*pm) return;
    nr_wstore_free(&(*pm)->ws);
    free((*pm)->layers);
    free(*pm);
    *pm = NULL;
}

/* ---- run state ---- */

typedef struct {
    const nr_backend_t *be;
    int n_layer, rows, max_rows, max_len, n_enc, enc_len;
    int len;               /* text tokens in the caches (after the enc_len image positions) */
    const float *enc;      /* set_encoder's image features, borrowed */
    size_t rs;             /* floats per row of a layer's cache: (enc_len + max_len) * KW */
    float **kc, **vc;      /* per layer (rows, enc_len + max_len, KW), keys after rotary */
    int *enc_index;        /* (rows) host */
    int *uniq;             /* (rows) host: first step's distinct rows */
    int cap_tok, cap_out;  /* tokens / logit rows the scratch holds */
    float *x, *h, *q, *att, *g, *u; /* (T, D) (T, D) (T, QW) (T, QW) (T, I) (T, I) */
    float *logits;         /* (cap_out, V) */
    float *tmp;            /* (rows, rs): staging for select */
} s_state_t;

static void s_state_free(void **ps) {
    s_state_t *s = ps ? *ps : NULL;
    if (!s) return;
    for (int l = 0; l < s->n_layer; l++) {
        if (s->kc) nr_backend_free(s->be, s->kc[l]);
        if (s->vc) nr_backend_free(s->be, s->vc[l]);
    }
    free(s->kc);
    free(s->vc);
    free(s->enc_index);
    free(s->uniq);
    float *bufs[] = {s->x, s->h, s->q, s->att, s->g, s->u, s->logits, s->tmp};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) nr_backend_free(s->be, bufs[i]);
    free(s);
    *ps = NULL;
}

static void *s_state_new(const void *model, int rows, int max_len, int n_enc, int enc_len) {
    const nr_gemma_t *m = model;
    if (!m || rows <= 0 || max_len <= 0 || n_enc <= 0 || enc_len != m->cfg.image_seq_length ||
        max_len > m->cfg.max_position_embeddings - enc_len)
        return NULL;
    s_state_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    void *self = s;
    const nr_backend_ops_t *o = m->be->ops;
    s->be = m->be;
    s->n_layer = m->cfg.num_hidden_layers;
    s->rows = s->max_rows = rows;
    s->max_len = max_len;
    s->n_enc = n_enc;
    s->enc_len = enc_len;
    s->rs = (size_t)(enc_len + max_len) * m->cfg.num_key_value_heads * m->cfg.head_dim;
    s->kc = calloc((size_t)s->n_layer, sizeof(float *));
    s->vc = calloc((size_t)s->n_layer, sizeof(float *));
    s->enc_index = calloc((size_t)rows, sizeof(int));
    s->uniq = calloc((size_t)rows, sizeof(int));
    s->tmp = o->alloc(m->be->ctx, (size_t)rows * s->rs * sizeof(float));
    if (!s->kc || !s->vc || !s->enc_index || !s->uniq || !s->tmp) goto fail;
    for (int l = 0; l < s->n_layer; l++) {
        s->kc[l] = o->alloc(m->be->ctx, (size_t)rows * s->rs * sizeof(float));
        s->vc[l] = o->alloc(m->be->ctx, (size_t)rows * s->rs * sizeof(float));
        if (!s->kc[l] || !s->vc[l]) goto fail;
    }
    for (int r = 0; r < rows; r++) s->enc_index[r] = r < n_enc ? r : 0;
    return s;
fail:
    s_state_free(&self);
    return NULL;
}

static int s_scratch(const nr_gemma_t *m, s_state_t *s, int tokens, int out_rows) {
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const size_t D = (size_t)m->cfg.hidden_size, QW = (size_t)m->cfg.num_attention_heads * m->cfg.head_dim,
                 I = (size_t)m->cfg.intermediate_size;
    if (tokens > s->cap_tok) {
        float **bufs[] = {&s->x, &s->h, &s->q, &s->att, &s->g, &s->u};
        const size_t width[] = {D, D, QW, QW, I, I};
        s->cap_tok = 0;
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
            nr_backend_free(m->be, *bufs[i]);
            *bufs[i] = o->alloc(ctx, (size_t)tokens * width[i] * sizeof(float));
        }
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
            if (!*bufs[i]) return NR_ENOMEM;
        s->cap_tok = tokens;
    }
    if (out_rows > s->cap_out) {
        nr_backend_free(m->be, s->logits);
        s->cap_out = 0;
        s->logits = o->alloc(ctx, (size_t)out_rows * m->cfg.vocab_size * sizeof(float));
        if (!s->logits) return NR_ENOMEM;
        s->cap_out = out_rows;
    }
    return 0;
}

static int s_set_encoder(const void *model, void *state, const float *enc, const int *enc_index) {
    s_state_t *s = state;
    if (!model || !s || !enc) return NR_EINVAL;
    for (int r = 0; r < s->max_rows; r++) {
        int e = enc_index ? enc_index[r] : r;
        if (e < 0 || e >= s->n_enc) return NR_EINVAL;
        s->enc_index[r] = e;
    }
    s->enc = enc;
    s->rows = s->max_rows;
    s->len = 0;
    return 0;
}

#define CK(call)                                                                                  \
    do {                                                                                          \
        if ((rc = (call)) != 0) goto out;                                                         \
    } while (0)

/* One layer over the step's T = B * n_q tokens in s->x (B sequences of n_q
 * tokens). Their keys/values go to the caches at position p0 of cache rows
 * crow[b] (crow NULL: b); first (the prefix step): the queries attend to
 * all n_q positions both ways, else causally to the cache up to themselves.
 * pos1 is the 1-indexed position of a sequence's first token. */
static int s_layer(const nr_gemma_t *m, s_state_t *s, int l, int B, int n_q, const int *crow, int p0, int first) {
    const nr_paligemma_config_t *c = &m->cfg;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const s_layer_t *L = &m->layers[l];
    const int D = c->hidden_size, H = c->num_attention_heads, KV = c->num_key_value_heads, hd = c->head_dim;
    const int QW = H * hd, KW = KV * hd, I = c->intermediate_size, T = B * n_q;
    const int pos1 = 1 + p0; /* PaliGemma's positions are 1-indexed */
    int rc;
    CK(o->rmsnorm(ctx, s->h, s->x, L->ln1, T, D, c->rms_norm_eps));
    CK(o->matmul(ctx, s->q, QW, s->h, D, L->wq, NR_W_OUT_IN, T, QW, D, 0));
    nr_rotary_args_t ra = {.x = s->q, .ld = (size_t)QW, .M = T, .n_head = H, .head_dim = hd, .n_tok = n_q,
                           .pos0 = pos1, .theta = c->rope_theta};
    CK(o->rotary(ctx, &ra));
    if (n_q == 1 && !crow) { /* decode: one token per row, rows rs apart in the cache */
        float *kd = s->kc[l] + (size_t)p0 * KW, *vd = s->vc[l] + (size_t)p0 * KW;
        CK(o->matmul(ctx, kd, s->rs, s->h, D, L->wk, NR_W_OUT_IN, T, KW, D, 0));
        CK(o->matmul(ctx, vd, s->rs, s->h, D, L->wv, NR_W_OUT_IN, T, KW, D, 0));
        nr_rotary_args_t rk = {.x = kd, .ld = s->rs, .M = T, .n_head = KV, .head_dim = hd, .n_tok = 1,
                               .pos0 = pos1, .theta = c->rope_theta};
        CK(o->rotary(ctx, &rk));
    } else {
        for (int b = 0; b < B; b++) {
            const int r = crow ? crow[b] : b;
            float *kd = s->kc[l] + (size_t)r * s->rs + (size_t)p0 * KW, *vd = s->vc[l] + (size_t)r * s->rs + (size_t)p0 * KW;
            const float *hb = s->h + (size_t)b * n_q * D;
            CK(o->matmul(ctx, kd, KW, hb, D, L->wk, NR_W_OUT_IN, n_q, KW, D, 0));
            CK(o->matmul(ctx, vd, KW, hb, D, L->wv, NR_W_OUT_IN, n_q, KW, D, 0));
            nr_rotary_args_t rk = {.x = kd, .ld = (size_t)KW, .M = n_q, .n_head = KV, .head_dim = hd, .n_tok = n_q,
                                   .pos0 = pos1, .theta = c->rope_theta};
            CK(o->rotary(ctx, &rk));
        }
    }
    nr_attn_args_t aa = {.batch = B,
                         .n_head = H,
                         .n_kv_head = KV,
                         .head_dim = hd,
                         .n_q = n_q,
                         .n_kv = p0 + n_q,
                         .causal = !first,
                         .q_pos0 = p0,
                         .scale = 1.0f / sqrtf((float)hd),
                         .q = s->q,
                         .k = s->kc[l],
                         .v = s->vc[l],
                         .out = s->att,
                         .q_bstride = (size_t)n_q * QW,
                         .q_rstride = (size_t)QW,
                         .kv_bstride = s->rs,
                         .kv_rstride = (size_t)KW,
                         .o_bstride = (size_t)n_q * QW,
                         .o_rstride = (size_t)QW,
                         .kv_index = crow};
    CK(o->attention(ctx, &aa));
    CK(o->matmul(ctx, s->x, D, s->att, QW, L->wo, NR_W_OUT_IN, T, D, QW, 1));
    CK(o->rmsnorm(ctx, s->h, s->x, L->ln2, T, D, c->rms_norm_eps));
    CK(o->matmul(ctx, s->g, I, s->h, D, L->wg, NR_W_OUT_IN, T, I, D, 0));
    CK(o->matmul(ctx, s->u, I, s->h, D, L->wu, NR_W_OUT_IN, T, I, D, 0));
    CK(o->gelu(ctx, s->g, (size_t)T * I, (int)c->hidden_act));
    CK(o->mul(ctx, s->g, s->u, (size_t)T * I));
    CK(o->matmul(ctx, s->x, D, s->g, I, L->wd, NR_W_OUT_IN, T, D, I, 1));
out:
    return rc;
}

/* Embedding rows of n ids into out: the backend's op, or from the mapped
 * BF16 table (host memory), widened. */
static int s_embed(const nr_gemma_t *m, float *out, const int *ids, int n) {
    const int D = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (!m->wte16) return m->be->ops->embed(m->be->ctx, out, m->wte, NULL, ids, NULL, n, D, V, 0);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) return NR_EINVAL;
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++) out[(size_t)i * D + d] = nr_bf16_to_f32(m->wte16[(size_t)ids[i] * D + d]);
    return 0;
}

/* Final norm and lm_head over `n` hidden rows (hs may be s->h), to host
 * logits. */
static int s_logits(const nr_gemma_t *m, s_state_t *s, const float *hs, int n, float *host) {
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const int D = m->cfg.hidden_size, V = m->cfg.vocab_size;
    int rc;
    CK(o->rmsnorm(ctx, s->h, hs, m->norm, n, D, m->cfg.rms_norm_eps));
    CK(o->matmul(ctx, s->logits, V, s->h, D, m->wte, NR_W_OUT_IN, n, V, D, 0));
    CK(o->download(ctx, host, s->logits, (size_t)n * V * sizeof(float)));
    rc = o->synchronize(ctx);
out:
    return rc;
}

/* The first step: image tokens + these n_tok tokens per row, all attending
 * to each other. Rows with the same image and ids (beams) are computed once
 * and their caches copied. */
static int s_prefix_step(const nr_gemma_t *m, s_state_t *s, const int *ids, int n_tok, float *logits, int all) {
    const nr_paligemma_config_t *c = &m->cfg;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const int D = c->hidden_size, S = s->enc_len, L0 = S + n_tok, V = c->vocab_size, R = s->rows;
    const size_t KWL0 = (size_t)L0 * c->num_key_value_heads * c->head_dim;
    int U = 0, rc = 0;
    int *src = malloc((size_t)R * sizeof(int)); /* row -> its distinct row's index in uniq */
    if (!src) return NR_ENOMEM;
    for (int r = 0; r < R; r++) {
        src[r] = -1;
        for (int u = 0; u < U && src[r] < 0; u++) {
            const int q = s->uniq[u];
            if (s->enc_index[q] == s->enc_index[r] && !memcmp(ids + (size_t)q * n_tok, ids + (size_t)r * n_tok,
                                                               (size_t)n_tok * sizeof(int)))
                src[r] = u;
        }
        if (src[r] < 0) {
            s->uniq[U] = r;
            src[r] = U++;
        }
    }
    const int outn = all ? U * n_tok : U;
    CK(s_scratch(m, s, U * L0, outn));
    for (int u = 0; u < U; u++) {
        const int r = s->uniq[u];
        float *xu = s->x + (size_t)u * L0 * D;
        CK(o->copy(ctx, xu, s->enc + (size_t)s->enc_index[r] * S * D, (size_t)S * D * sizeof(float)));
        CK(s_embed(m, xu + (size_t)S * D, ids + (size_t)r * n_tok, n_tok));
    }
    /* GemmaModel: inputs_embeds * sqrt(hidden_size), the image features included */
    CK(o->scale(ctx, s->x, (size_t)U * L0 * D, (float)sqrt((double)D)));
    for (int l = 0; l < c->num_hidden_layers; l++) CK(s_layer(m, s, l, U, L0, s->uniq, 0, 1));
    /* the text tokens' hidden states (all) or each sequence's last one */
    const int per = all ? n_tok : 1;
    for (int u = 0; u < U; u++)
        CK(o->copy(ctx, s->h + (size_t)u * per * D, s->x + ((size_t)u * L0 + L0 - per) * D,
                   (size_t)per * D * sizeof(float)));
    float *host = malloc((size_t)outn * V * sizeof(float));
    if (!host) {
        rc = NR_ENOMEM;
        goto out;
    }
    rc = s_logits(m, s, s->h, outn, host);
    for (int r = 0; r < R && rc == 0; r++)
        memcpy(logits + (size_t)r * per * V, host + (size_t)src[r] * per * V, (size_t)per * V * sizeof(float));
    free(host);
    if (rc) goto out;
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int r = 0; r < R; r++) {
            const int q = s->uniq[src[r]];
            if (q == r) continue;
            CK(o->copy(ctx, s->kc[l] + (size_t)r * s->rs, s->kc[l] + (size_t)q * s->rs, KWL0 * sizeof(float)));
            CK(o->copy(ctx, s->vc[l] + (size_t)r * s->rs, s->vc[l] + (size_t)q * s->rs, KWL0 * sizeof(float)));
        }
    s->len = n_tok;
    rc = o->synchronize(ctx);
out:
    free(src);
    return rc;
}

static int s_step(const void *model, void *state, const int *ids, int n_tok, float *logits, int all_logits) {
    const nr_gemma_t *m = model;
    s_state_t *s = state;
    if (!m || !s || !ids || !logits || n_tok <= 0 || !s->enc) return NR_EINVAL;
    if (s->len + n_tok > s->max_len) return NR_EINVAL;
    const nr_paligemma_config_t *c = &m->cfg;
    for (int i = 0; i < s->rows * n_tok; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size) return NR_EINVAL;
    if (s->len == 0) return s_prefix_step(m, s, ids, n_tok, logits, all_logits);
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const int D = c->hidden_size, R = s->rows, T = R * n_tok, p0 = s->enc_len + s->len;
    const int outn = all_logits ? T : R;
    int rc;
    CK(s_scratch(m, s, T, outn));
    CK(s_embed(m, s->x, ids, T));
    CK(o->scale(ctx, s->x, (size_t)T * D, (float)sqrt((double)D)));
    for (int l = 0; l < c->num_hidden_layers; l++) CK(s_layer(m, s, l, R, n_tok, NULL, p0, 0));
    s->len += n_tok;
    const float *hs = s->x;
    if (!all_logits && n_tok > 1) { /* each row's last token */
        for (int r = 0; r < R; r++)
            CK(o->copy(ctx, s->h + (size_t)r * D, s->x + ((size_t)r * n_tok + n_tok - 1) * D, (size_t)D * sizeof(float)));
        hs = s->h;
    }
    rc = s_logits(m, s, hs, outn, logits);
out:
    return rc;
}

/* Row r becomes old row src[r]: the caches up to the current length, and
 * its image. */
static int s_select(const void *model, void *state, const int *src, int new_rows) {
    const nr_gemma_t *m = model;
    s_state_t *s = state;
    if (!m || !s || !src || new_rows <= 0 || new_rows > s->rows) return NR_EINVAL;
    for (int r = 0; r < new_rows; r++)
        if (src[r] < 0 || src[r] >= s->rows) return NR_EINVAL;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const size_t used = (size_t)(s->enc_len + s->len) * m->cfg.num_key_value_heads * m->cfg.head_dim;
    int rc = 0;
    for (int l = 0; l < s->n_layer; l++) {
        float *caches[2] = {s->kc[l], s->vc[l]};
        for (int k = 0; k < 2; k++) {
            for (int r = 0; r < new_rows; r++)
                CK(o->copy(ctx, s->tmp + (size_t)r * s->rs, caches[k] + (size_t)src[r] * s->rs, used * sizeof(float)));
            for (int r = 0; r < new_rows; r++)
                CK(o->copy(ctx, caches[k] + (size_t)r * s->rs, s->tmp + (size_t)r * s->rs, used * sizeof(float)));
        }
    }
    int *ei = malloc((size_t)new_rows * sizeof(int));
    if (!ei) return NR_ENOMEM;
    for (int r = 0; r < new_rows; r++) ei[r] = s->enc_index[src[r]];
    memcpy(s->enc_index, ei, (size_t)new_rows * sizeof(int));
    free(ei);
    s->rows = new_rows;
    rc = o->synchronize(ctx);
out:
    return rc;
}

static const nr_decoder_ops_t s_decoder_ops = {.name = "gemma",
                                               .state_new = s_state_new,
                                               .state_destroy = s_state_free,
                                               .set_encoder = s_set_encoder,
                                               .step = s_step,
                                               .select = s_select};

nr_decoder_t nr_gemma_decoder(const nr_gemma_t *m) {
    nr_decoder_t d = {.ops = &s_decoder_ops,
                      .model = m,
                      .vocab_size = m->cfg.vocab_size,
                      .max_positions = m->cfg.max_position_embeddings - m->cfg.image_seq_length};
    return d;
}
