/* GPT-2 decoder with cross-attention and a KV cache. Follows transformers'
 * models/gpt2/modeling_gpt2.py (Conv1D weights [in, out]: y = x W + b). */
#include "models/gpt2.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/nn/dec_state.h"
#include "models/weights.h"

#define I64(x) ((int64_t)(x))

typedef struct {
    float *ln1_g, *ln1_b;       /* (D) */
    float *attn_w, *attn_b;     /* (D, 3D), (3D): c_attn Q|K|V */
    float *aproj_w, *aproj_b;   /* (D, D), (D) */
    float *lnx_g, *lnx_b;       /* (D) ln_cross_attn */
    float *xq_w, *xq_b;         /* (D, D), (D): crossattention.q_attn */
    float *xkv_w, *xkv_b;       /* (D, 2D), (2D): crossattention.c_attn K|V */
    float *xproj_w, *xproj_b;   /* (D, D), (D) */
    float *ln2_g, *ln2_b;       /* (D) */
    float *fc_w, *fc_b;         /* (D, I), (I) */
    float *mproj_w, *mproj_b;   /* (I, D), (D) */
} s_layer_t;

struct nr_gpt2 {
    nr_gpt2_config_t cfg;
    nr_backend_t *be;
    nr_wstore_t ws;
    float *wte;            /* (V, D) */
    float *wpe;            /* (n_positions, D) */
    float *lnf_g, *lnf_b;  /* (D) */
    float *lm_head;        /* (V, D): wte when tied */
    s_layer_t *layers;
};

int nr_gpt2_load(const nr_gpt2_config_t *cfg, const nr_checkpoint_t *ck, const char *prefix, nr_backend_t *be,
                 nr_gpt2_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (!cfg->add_cross_attention)
        return nr_seterr(err, errlen, NR_EMODEL, "decoder config: add_cross_attention must be true for captioning");
    nr_gpt2_t *m = calloc(1, sizeof(*m));
    if (!m) return nr_seterr(err, errlen, NR_ENOMEM, "gpt2: out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->ws = (nr_wstore_t){.be = be, .ck = ck, .prefix = prefix ? prefix : ""};
    nr_wstore_t *ws = &m->ws;
    const int D = cfg->n_embd, V = cfg->vocab_size, I = cfg->n_inner;
    int rc;
    if ((rc = nr_wstore_get(ws, "transformer.wte.weight", &m->wte, err, errlen, 2, I64(V), I64(D))) ||
        (rc = nr_wstore_get(ws, "transformer.wpe.weight", &m->wpe, err, errlen, 2, I64(cfg->n_positions), I64(D))) ||
        (rc = nr_wstore_get(ws, "transformer.ln_f.weight", &m->lnf_g, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "transformer.ln_f.bias", &m->lnf_b, err, errlen, 1, I64(D))))
        goto fail;
    /* Tied as transformers ties them: the file's lm_head (if any) is not
     * read, and the Hub's safetensors conversion drops it anyway. */
    if (cfg->tie_word_embeddings)
        m->lm_head = m->wte;
    else if ((rc = nr_wstore_get(ws, "lm_head.weight", &m->lm_head, err, errlen, 2, I64(V), I64(D))))
        goto fail;
    m->layers = calloc((size_t)cfg->n_layer, sizeof(s_layer_t));
    if (!m->layers) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "gpt2: out of memory");
        goto fail;
    }
    for (int l = 0; l < cfg->n_layer; l++) {
        s_layer_t *L = &m->layers[l];
        char nm[160];
#define W(field, suffix, nd, ...)                                                                 \
    do {                                                                                          \
        snprintf(nm, sizeof nm, "transformer.h.%d.%s", l, suffix);                                \
        if ((rc = nr_wstore_get(ws, nm, &L->field, err, errlen, nd, __VA_ARGS__))) goto fail;     \
    } while (0)
        W(ln1_g, "ln_1.weight", 1, I64(D));
        W(ln1_b, "ln_1.bias", 1, I64(D));
        W(attn_w, "attn.c_attn.weight", 2, I64(D), I64(3 * D));
        W(attn_b, "attn.c_attn.bias", 1, I64(3 * D));
        W(aproj_w, "attn.c_proj.weight", 2, I64(D), I64(D));
        W(aproj_b, "attn.c_proj.bias", 1, I64(D));
        W(lnx_g, "ln_cross_attn.weight", 1, I64(D));
        W(lnx_b, "ln_cross_attn.bias", 1, I64(D));
        W(xq_w, "crossattention.q_attn.weight", 2, I64(D), I64(D));
        W(xq_b, "crossattention.q_attn.bias", 1, I64(D));
        W(xkv_w, "crossattention.c_attn.weight", 2, I64(D), I64(2 * D));
        W(xkv_b, "crossattention.c_attn.bias", 1, I64(2 * D));
        W(xproj_w, "crossattention.c_proj.weight", 2, I64(D), I64(D));
        W(xproj_b, "crossattention.c_proj.bias", 1, I64(D));
        W(ln2_g, "ln_2.weight", 1, I64(D));
        W(ln2_b, "ln_2.bias", 1, I64(D));
        W(fc_w, "mlp.c_fc.weight", 2, I64(D), I64(I));
        W(fc_b, "mlp.c_fc.bias", 1, I64(I));
        W(mproj_w, "mlp.c_proj.weight", 2, I64(I), I64(D));
        W(mproj_b, "mlp.c_proj.bias", 1, I64(D));
#undef W
        /* decode-step weights see a few rows; cross-attention K/V the encoder's sequence */
        if ((rc = nr_backend_prepare_matmul(be, L->attn_w, NR_W_IN_OUT, 3 * D, D, 1)) ||
            (rc = nr_backend_prepare_matmul(be, L->aproj_w, NR_W_IN_OUT, D, D, 1)) ||
            (rc = nr_backend_prepare_matmul(be, L->xq_w, NR_W_IN_OUT, D, D, 1)) ||
            (rc = nr_backend_prepare_matmul(be, L->xkv_w, NR_W_IN_OUT, 2 * D, D, 1 << 20)) ||
            (rc = nr_backend_prepare_matmul(be, L->xproj_w, NR_W_IN_OUT, D, D, 1)) ||
            (rc = nr_backend_prepare_matmul(be, L->fc_w, NR_W_IN_OUT, I, D, 1)) ||
            (rc = nr_backend_prepare_matmul(be, L->mproj_w, NR_W_IN_OUT, D, I, 1))) {
            nr_seterr(err, errlen, rc, "gpt2: layer %d: cannot convert weights for the backend", l);
            goto fail;
        }
    }
    if ((rc = nr_backend_prepare_matmul(be, m->lm_head, NR_W_OUT_IN, V, D, 1))) {
        nr_seterr(err, errlen, rc, "gpt2: cannot convert lm_head for the backend");
        goto fail;
    }
    *out = m;
    return 0;
fail:
    nr_gpt2_destroy(&m);
    return rc;
}

void nr_gpt2_destroy(nr_gpt2_t **pm) {
    if (!pm || !*pm) return;
    nr_wstore_free(&(*pm)->ws);
    free((*pm)->layers);
    free(*pm);
    *pm = NULL;
}

const nr_gpt2_config_t *nr_gpt2_config(const nr_gpt2_t *m) { return &m->cfg; }

void nr_gpt2_state_destroy(nr_gpt2_state_t **ps) { nr_dec_state_destroy(ps); }

nr_gpt2_state_t *nr_gpt2_state_new(const nr_gpt2_t *m, int rows, int max_len, int n_enc, int enc_len) {
    if (!m) return NULL;
    const nr_dec_dims_t dims = {.n_layer = m->cfg.n_layer,
                                .d_model = m->cfg.n_embd,
                                .d_ff = m->cfg.n_inner,
                                .vocab = m->cfg.vocab_size,
                                .max_positions = m->cfg.n_positions,
                                .cross = 1};
    return nr_dec_state_new(m->be, &dims, rows, max_len, n_enc, enc_len);
}

#define CK(call)                                                                                  \
    do {                                                                                          \
        if ((rc = (call)) != 0) return rc;                                                        \
    } while (0)

int nr_gpt2_set_encoder(const nr_gpt2_t *m, nr_gpt2_state_t *s, const float *enc, const int *enc_index) {
    if (!m || !s || !enc) return NR_EINVAL;
    const int D = m->cfg.n_embd;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    int rc;
    if ((rc = nr_dec_state_bind(s, enc_index))) return rc;
    const int M = s->n_enc * s->enc_len;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const s_layer_t *L = &m->layers[l];
        CK(o->matmul(ctx, s->xkv[l], 2 * D, enc, D, L->xkv_w, NR_W_IN_OUT, M, 2 * D, D, 0));
        CK(o->add_bias(ctx, s->xkv[l], L->xkv_b, M, 2 * D));
    }
    s->len = 0;
    return 0;
}

int nr_gpt2_step(const nr_gpt2_t *m, nr_gpt2_state_t *s, const int *ids, int n_tok, float *logits, int all_logits) {
    if (!m || !s || !ids || !logits || n_tok <= 0) return NR_EINVAL;
    if (s->len + n_tok > s->max_len) return NR_EINVAL;
    const nr_gpt2_config_t *c = &m->cfg;
    const int D = c->n_embd, H = c->n_head, hd = D / H, I = c->n_inner, V = c->vocab_size, R = s->rows;
    const int M = R * n_tok;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    int rc;
    CK(nr_dec_state_scratch(s, M));
    CK(nr_dec_state_embed(s, m->wte, m->wpe, ids, n_tok, c->n_positions));
    const float scale = c->scale_attn_weights ? 1.0f / sqrtf((float)hd) : 1.0f;
    const int tanh_form = c->activation_function == NR_ACT_GELU_TANH;
    const float eps = c->layer_norm_epsilon;
    for (int l = 0; l < c->n_layer; l++) {
        const s_layer_t *L = &m->layers[l];
        /* Causal self-attention with the cache. */
        CK(o->layernorm(ctx, s->h, s->x, L->ln1_g, L->ln1_b, M, D, eps));
        CK(o->matmul(ctx, s->qkv, 3 * D, s->h, D, L->attn_w, NR_W_IN_OUT, M, 3 * D, D, 0));
        CK(o->add_bias(ctx, s->qkv, L->attn_b, M, 3 * D));
        CK(nr_dec_state_self_attention(s, l, n_tok, H, scale));
        CK(o->matmul(ctx, s->x, D, s->att, D, L->aproj_w, NR_W_IN_OUT, M, D, D, 1));
        CK(o->add_bias(ctx, s->x, L->aproj_b, M, D));
        /* Cross-attention to the encoder states. */
        CK(o->layernorm(ctx, s->h, s->x, L->lnx_g, L->lnx_b, M, D, eps));
        CK(o->matmul(ctx, s->qkv, D, s->h, D, L->xq_w, NR_W_IN_OUT, M, D, D, 0));
        CK(o->add_bias(ctx, s->qkv, L->xq_b, M, D));
        CK(nr_dec_state_cross_attention(s, l, s->qkv, n_tok, H, scale));
        CK(o->matmul(ctx, s->x, D, s->att, D, L->xproj_w, NR_W_IN_OUT, M, D, D, 1));
        CK(o->add_bias(ctx, s->x, L->xproj_b, M, D));
        /* MLP. */
        CK(o->layernorm(ctx, s->h, s->x, L->ln2_g, L->ln2_b, M, D, eps));
        CK(o->matmul(ctx, s->mlp, I, s->h, D, L->fc_w, NR_W_IN_OUT, M, I, D, 0));
        CK(o->add_bias(ctx, s->mlp, L->fc_b, M, I));
        CK(o->gelu(ctx, s->mlp, (size_t)M * I, tanh_form));
        CK(o->matmul(ctx, s->x, D, s->mlp, I, L->mproj_w, NR_W_IN_OUT, M, D, I, 1));
        CK(o->add_bias(ctx, s->x, L->mproj_b, M, D));
    }
    s->len += n_tok;
    int out_rows;
    if (all_logits || n_tok == 1) {
        CK(o->layernorm(ctx, s->h, s->x, m->lnf_g, m->lnf_b, M, D, eps));
        out_rows = M;
    } else {
        for (int r = 0; r < R; r++)
            CK(o->layernorm(ctx, s->h + (size_t)r * D, s->x + (size_t)(r * n_tok + n_tok - 1) * D, m->lnf_g, m->lnf_b,
                            1, D, eps));
        out_rows = R;
    }
    CK(o->matmul(ctx, s->logits, V, s->h, D, m->lm_head, NR_W_OUT_IN, out_rows, V, D, 0));
    CK(o->download(ctx, logits, s->logits, (size_t)out_rows * V * sizeof(float)));
    return o->synchronize(ctx);
}

int nr_gpt2_select(const nr_gpt2_t *m, nr_gpt2_state_t *s, const int *src, int new_rows) {
    return m ? nr_dec_state_select(s, src, new_rows) : NR_EINVAL;
}

/* ---- the decoder interface (models/decoder.h) ---- */

static void *s_dec_state_new(const void *m, int rows, int max_len, int n_enc, int enc_len) {
    return nr_gpt2_state_new(m, rows, max_len, n_enc, enc_len);
}
static int s_dec_set_encoder(const void *m, void *s, const float *enc, const int *enc_index) {
    return nr_gpt2_set_encoder(m, s, enc, enc_index);
}
static int s_dec_step(const void *m, void *s, const int *ids, int n_tok, float *logits, int all_logits) {
    return nr_gpt2_step(m, s, ids, n_tok, logits, all_logits);
}
static int s_dec_select(const void *m, void *s, const int *src, int new_rows) {
    return nr_gpt2_select(m, s, src, new_rows);
}

static const nr_decoder_ops_t s_decoder_ops = {.name = "gpt2",
                                               .state_new = s_dec_state_new,
                                               .state_destroy = nr_dec_state_release,
                                               .set_encoder = s_dec_set_encoder,
                                               .step = s_dec_step,
                                               .select = s_dec_select};

nr_decoder_t nr_gpt2_decoder(const nr_gpt2_t *m) {
    nr_decoder_t d = {.ops = &s_decoder_ops, .model = m, .vocab_size = m->cfg.vocab_size,
                      .max_positions = m->cfg.n_positions};
    return d;
}
