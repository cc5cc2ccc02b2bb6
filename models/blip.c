/* BLIP: the decoder block (blip.h) and the family "blip" (model_type blip):
 * BlipVisionModel (models/clip.h, NR_VISION_BLIP) on the vision side, whose
 * last_hidden_state the states frame carries; the text decoder on the text
 * side. Follows transformers' models/blip/modeling_blip.py
 * (BlipForConditionalGeneration, BlipVisionModel) and modeling_blip_text.py
 * (BlipTextEmbeddings, BlipTextLayer, BlipTextLMPredictionHead,
 * BlipTextLMHeadModel), v4.46 semantics. */
#include "models/blip.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/bert.h"
#include "models/clip.h"
#include "models/family.h"
#include "models/nn/dec_state.h"
#include "models/weights.h"

#define I64(x) ((int64_t)(x))

typedef struct {
    nr_bert_attn_t self;  /* attention.*: causal, Q|K|V fused */
    nr_bert_attn_t cross; /* crossattention.*: query (D, D), key|value (2D, Dv) */
    nr_bert_ffn_t ffn;    /* intermediate.dense, output.dense, output.LayerNorm */
} s_layer_t;

struct nr_blip_decoder {
    nr_blip_config_t cfg;
    nr_backend_t *be;
    nr_wstore_t ws;       /* prefix "text_decoder." */
    float *wte;           /* (V, D) bert.embeddings.word_embeddings */
    float *wpe;           /* (max_position_embeddings, D) bert.embeddings.position_embeddings */
    float *emb_g, *emb_b; /* (D) bert.embeddings.LayerNorm */
    float *tr_w, *tr_b;   /* (D, D), (D) cls.predictions.transform.dense */
    float *tr_g, *tr_lb;  /* (D) cls.predictions.transform.LayerNorm */
    float *dec_w, *dec_b; /* (V, D) cls.predictions.decoder.weight (or wte), (V) cls.predictions.bias */
    s_layer_t *layers;
};

int nr_blip_decoder_load(const nr_blip_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be,
                         nr_blip_decoder_t **out, char *err, size_t errlen) {
    *out = NULL;
    nr_blip_decoder_t *m = calloc(1, sizeof(*m));
    if (!m) return nr_seterr(err, errlen, NR_ENOMEM, "blip: out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->ws = (nr_wstore_t){.be = be, .ck = ck, .prefix = "text_decoder."};
    nr_wstore_t *ws = &m->ws;
    const int D = cfg->hidden_size, V = cfg->vocab_size, I = cfg->intermediate_size, Dv = cfg->vision.hidden_size;
    int rc;
    if ((rc = nr_wstore_get(ws, "bert.embeddings.word_embeddings.weight", &m->wte, err, errlen, 2, I64(V), I64(D))) ||
        (rc = nr_wstore_get(ws, "bert.embeddings.position_embeddings.weight", &m->wpe, err, errlen, 2,
                            I64(cfg->max_position_embeddings), I64(D))) ||
        (rc = nr_wstore_get(ws, "bert.embeddings.LayerNorm.weight", &m->emb_g, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "bert.embeddings.LayerNorm.bias", &m->emb_b, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get_matmul(ws, "cls.predictions.transform.dense.weight", &m->tr_w, err, errlen, I64(D),
                                   I64(D), 1)) ||
        (rc = nr_wstore_get(ws, "cls.predictions.transform.dense.bias", &m->tr_b, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "cls.predictions.transform.LayerNorm.weight", &m->tr_g, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "cls.predictions.transform.LayerNorm.bias", &m->tr_lb, err, errlen, 1, I64(D))))
        goto fail;
    /* BlipTextLMPredictionHead: decoder.bias is the head's `bias` Parameter
     * (tied); the decoder weight is the word embeddings' (tied) when a
     * converted file dropped the shared copy. */
    const char *bname = nr_wstore_has(ws, "cls.predictions.bias") ? "cls.predictions.bias"
                                                                   : "cls.predictions.decoder.bias";
    if ((rc = nr_wstore_get(ws, bname, &m->dec_b, err, errlen, 1, I64(V)))) goto fail;
    if (nr_wstore_has(ws, "cls.predictions.decoder.weight") || !cfg->tie_word_embeddings) {
        if ((rc = nr_wstore_get_matmul(ws, "cls.predictions.decoder.weight", &m->dec_w, err, errlen, I64(V), I64(D),
                                       1)))
            goto fail;
    } else { /* read as floats by the embedding too: an F32 copy */
        m->dec_w = m->wte;
        if ((rc = nr_backend_prepare_matmul(be, m->dec_w, NR_W_OUT_IN, V, D, 1))) {
            nr_seterr(err, errlen, rc, "blip: cannot convert the prediction head for the backend");
            goto fail;
        }
    }
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof(s_layer_t));
    if (!m->layers) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "blip: out of memory");
        goto fail;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        s_layer_t *L = &m->layers[l];
        char pre[96];
        snprintf(pre, sizeof pre, "bert.encoder.layer.%d.attention.", l);
        if ((rc = nr_bert_attn_load(ws, pre, D, 0, &L->self, err, errlen))) goto fail;
        snprintf(pre, sizeof pre, "bert.encoder.layer.%d.crossattention.", l);
        if ((rc = nr_bert_attn_load(ws, pre, D, Dv, &L->cross, err, errlen))) goto fail;
        snprintf(pre, sizeof pre, "bert.encoder.layer.%d.", l);
        if ((rc = nr_bert_ffn_load(ws, pre, D, I, &L->ffn, err, errlen))) goto fail;
    }
    *out = m;
    return 0;
fail:
    nr_blip_decoder_destroy(&m);
    return rc;
}

void nr_blip_decoder_destroy(nr_blip_decoder_t **pm) {
    if (!pm || !*pm) return;
    nr_wstore_free(&(*pm)->ws);
    free((*pm)->layers);
    free(*pm);
    *pm = NULL;
}

static void *s_state_new(const void *model, int rows, int max_len, int n_enc, int enc_len) {
    const nr_blip_decoder_t *m = model;
    if (!m) return NULL;
    const nr_dec_dims_t dims = {.n_layer = m->cfg.num_hidden_layers,
                                .d_model = m->cfg.hidden_size,
                                .d_ff = m->cfg.intermediate_size,
                                .vocab = m->cfg.vocab_size,
                                .max_positions = m->cfg.max_position_embeddings,
                                .cross = 1};
    return nr_dec_state_new(m->be, &dims, rows, max_len, n_enc, enc_len);
}

#define CK(call)                                                                                  \
    do {                                                                                          \
        if ((rc = (call)) != 0) return rc;                                                        \
    } while (0)

/* Cross-attention keys|values of every layer from the image states, once. */
static int s_set_encoder(const void *model, void *state, const float *enc, const int *enc_index) {
    const nr_blip_decoder_t *m = model;
    nr_dec_state_t *s = state;
    if (!m || !s || !enc) return NR_EINVAL;
    const int D = m->cfg.hidden_size, Dv = m->cfg.vision.hidden_size, M = s->n_enc * s->enc_len;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    int rc = nr_dec_state_bind(s, enc_index);
    if (rc) return rc;
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        const nr_bert_attn_t *X = &m->layers[l].cross;
        CK(o->matmul(ctx, s->xkv[l], 2 * D, enc, Dv, X->wkv, NR_W_OUT_IN, M, 2 * D, Dv, 0));
        CK(o->add_bias(ctx, s->xkv[l], X->bkv, M, 2 * D));
    }
    s->len = 0;
    return o->synchronize(ctx);
}

static int s_step(const void *model, void *state, const int *ids, int n_tok, float *logits, int all_logits) {
    const nr_blip_decoder_t *m = model;
    nr_dec_state_t *s = state;
    if (!m || !s || !ids || !logits || n_tok <= 0) return NR_EINVAL;
    if (s->len + n_tok > s->max_len) return NR_EINVAL;
    const nr_blip_config_t *c = &m->cfg;
    const int D = c->hidden_size, H = c->num_attention_heads, hd = D / H, I = c->intermediate_size;
    const int V = c->vocab_size, M = s->rows * n_tok;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const float eps = c->layer_norm_eps, scale = 1.0f / sqrtf((float)hd);
    int rc;
    CK(nr_dec_state_scratch(s, M));
    CK(nr_dec_state_embed(s, m->wte, m->wpe, ids, n_tok, c->max_position_embeddings));
    CK(o->layernorm(ctx, s->x, s->x, m->emb_g, m->emb_b, M, D, eps));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const s_layer_t *L = &m->layers[l];
        /* causal self-attention through the cache */
        CK(o->matmul(ctx, s->qkv, 3 * D, s->x, D, L->self.wq, NR_W_OUT_IN, M, 3 * D, D, 0));
        CK(o->add_bias(ctx, s->qkv, L->self.bq, M, 3 * D));
        CK(nr_dec_state_self_attention(s, l, n_tok, H, scale));
        CK(nr_bert_attn_output(m->be, &L->self, s->x, s->att, M, D, eps));
        /* cross-attention to the image states (every image token) */
        CK(o->matmul(ctx, s->h, D, s->x, D, L->cross.wq, NR_W_OUT_IN, M, D, D, 0));
        CK(o->add_bias(ctx, s->h, L->cross.bq, M, D));
        CK(nr_dec_state_cross_attention(s, l, s->h, n_tok, H, scale));
        CK(nr_bert_attn_output(m->be, &L->cross, s->x, s->att, M, D, eps));
        CK(nr_bert_ffn(m->be, &L->ffn, s->x, s->mlp, M, D, I, (int)c->hidden_act, eps));
    }
    s->len += n_tok;
    const float *hs;
    int out_rows;
    CK(nr_dec_state_last_tokens(s, n_tok, all_logits, &hs, &out_rows));
    CK(o->matmul(ctx, s->att, D, hs, D, m->tr_w, NR_W_OUT_IN, out_rows, D, D, 0));
    CK(o->add_bias(ctx, s->att, m->tr_b, out_rows, D));
    CK(o->gelu(ctx, s->att, (size_t)out_rows * D, (int)c->hidden_act));
    CK(o->layernorm(ctx, s->att, s->att, m->tr_g, m->tr_lb, out_rows, D, eps));
    CK(o->matmul(ctx, s->logits, V, s->att, D, m->dec_w, NR_W_OUT_IN, out_rows, V, D, 0));
    CK(o->add_bias(ctx, s->logits, m->dec_b, out_rows, V));
    CK(o->download(ctx, logits, s->logits, (size_t)out_rows * V * sizeof(float)));
    return o->synchronize(ctx);
}

/* Beam reordering / finished captions leaving: the used part of each
 * self-attention cache follows its row; cross K/V stay per encoder output. */
static int s_select(const void *model, void *state, const int *src, int new_rows) {
    return model ? nr_dec_state_select(state, src, new_rows) : NR_EINVAL;
}

static const nr_decoder_ops_t s_decoder_ops = {.name = "blip",
                                               .state_new = s_state_new,
                                               .state_destroy = nr_dec_state_release,
                                               .set_encoder = s_set_encoder,
                                               .step = s_step,
                                               .select = s_select};

nr_decoder_t nr_blip_decoder(const nr_blip_decoder_t *m) {
    nr_decoder_t d = {.ops = &s_decoder_ops, .model = m, .vocab_size = m->cfg.vocab_size,
                      .max_positions = m->cfg.max_position_embeddings};
    return d;
}

/* ---- the family ---- */

typedef struct {
    nr_model_config_t cfg;
    nr_clip_vision_t *vision; /* vision side: vision_model.* */
    nr_blip_decoder_t *dec;   /* text side: text_decoder.* */
} s_blip_t;

static void s_destroy(void **self) {
    s_blip_t *f = *self;
    if (!f) return;
    nr_clip_vision_destroy(&f->vision);
    nr_blip_decoder_destroy(&f->dec);
    free(f);
    *self = NULL;
}

static int s_load(const nr_model_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be, int load_encoder,
                  int load_decoder, void **out, char *err, size_t errlen) {
    *out = NULL;
    s_blip_t *f = calloc(1, sizeof(*f));
    if (!f) return nr_seterr(err, errlen, NR_ENOMEM, "blip: out of memory");
    f->cfg = *cfg;
    void *self = f;
    int rc = 0;
    if (load_encoder && (rc = nr_clip_vision_load(&cfg->blip.vision, ck, "vision_model.", NR_VISION_BLIP, be,
                                                  &f->vision, err, errlen)))
        goto fail;
    if (load_decoder && (rc = nr_blip_decoder_load(&cfg->blip, ck, be, &f->dec, err, errlen))) goto fail;
    *out = f;
    return 0;
fail:
    s_destroy(&self);
    return rc;
}

/* BlipVisionModel's last_hidden_state (post_layernorm over every position). */
static int s_encode(const void *self, const float *pixels, int n, float *states) {
    const s_blip_t *f = self;
    if (!f->vision) return NR_EUNSUPPORTED;
    return nr_clip_vision_forward(f->vision, pixels, n, states);
}

static int s_decoder_input(const void *self, const float *states, int n, float **out) {
    const s_blip_t *f = self;
    (void)states;
    (void)n;
    *out = NULL; /* the cross-attention reads the image states as they are */
    return f->dec ? 0 : NR_EUNSUPPORTED;
}

static nr_decoder_t s_decoder(const void *self) {
    const s_blip_t *f = self;
    nr_decoder_t d = {0};
    if (f->dec) d = nr_blip_decoder(f->dec);
    return d;
}

const nr_family_ops_t nr_family_blip = {.name = "blip",
                                        .model_type = "blip",
                                        .load = s_load,
                                        .destroy = s_destroy,
                                        .encode = s_encode,
                                        .decoder_input = s_decoder_input,
                                        .decoder = s_decoder};
