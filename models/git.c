/* GIT: the decoder block (git.h) and the family "git" (model_type git):
 * GitVisionModel (models/clip.h) + GitProjection (Linear + LayerNorm with
 * the vision config's eps) on the vision side, so the states frame carries
 * the projected image tokens; the decoder on the text side. Follows
 * transformers' models/git/modeling_git.py (GitEmbeddings, GitSelfAttention,
 * GitSelfOutput, GitIntermediate, GitOutput, GitModel.create_attention_mask,
 * GitForCausalLM); there the image tokens go through every layer again at
 * each step with the same result, here their keys/values are cached. */
#include "models/git.h"

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
    nr_bert_attn_t att;   /* attention.self.query|key|value (fused), attention.output.* */
    nr_bert_ffn_t ffn;    /* intermediate.dense, output.dense, output.LayerNorm */
} s_layer_t;

struct nr_git_decoder {
    nr_git_config_t cfg;
    nr_backend_t *be;
    nr_wstore_t ws;
    float *wte;           /* (V, D) word_embeddings */
    float *wpe;           /* (max_position_embeddings, D) */
    float *emb_g, *emb_b; /* (D) embeddings.LayerNorm */
    float *out_w, *out_b; /* (V, D), (V): output */
    s_layer_t *layers;
};

int nr_git_decoder_load(const nr_git_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be,
                        nr_git_decoder_t **out, char *err, size_t errlen) {
    *out = NULL;
    nr_git_decoder_t *m = calloc(1, sizeof(*m));
    if (!m) return nr_seterr(err, errlen, NR_ENOMEM, "git: out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->ws = (nr_wstore_t){.be = be, .ck = ck, .prefix = ""};
    nr_wstore_t *ws = &m->ws;
    const int D = cfg->hidden_size, V = cfg->vocab_size, I = cfg->intermediate_size;
    int rc;
    if ((rc = nr_wstore_get(ws, "git.embeddings.word_embeddings.weight", &m->wte, err, errlen, 2, I64(V), I64(D))) ||
        (rc = nr_wstore_get(ws, "git.embeddings.position_embeddings.weight", &m->wpe, err, errlen, 2,
                            I64(cfg->max_position_embeddings), I64(D))) ||
        (rc = nr_wstore_get(ws, "git.embeddings.LayerNorm.weight", &m->emb_g, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "git.embeddings.LayerNorm.bias", &m->emb_b, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "output.bias", &m->out_b, err, errlen, 1, I64(V))))
        goto fail;
    if (cfg->tie_word_embeddings) m->out_w = m->wte; /* read as floats by the embedding: its F32 copy */
    else if ((rc = nr_wstore_get_matmul(ws, "output.weight", &m->out_w, err, errlen, I64(V), I64(D), 1))) goto fail;
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof(s_layer_t));
    if (!m->layers) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "git: out of memory");
        goto fail;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        s_layer_t *L = &m->layers[l];
        char pre[96];
        snprintf(pre, sizeof pre, "git.encoder.layer.%d.attention.", l);
        if ((rc = nr_bert_attn_load(ws, pre, D, 0, &L->att, err, errlen))) goto fail;
        snprintf(pre, sizeof pre, "git.encoder.layer.%d.", l);
        if ((rc = nr_bert_ffn_load(ws, pre, D, I, &L->ffn, err, errlen))) goto fail;
    }
    if (cfg->tie_word_embeddings && (rc = nr_backend_prepare_matmul(be, m->out_w, NR_W_OUT_IN, V, D, 1))) {
        nr_seterr(err, errlen, rc, "git: cannot convert output for the backend");
        goto fail;
    }
    *out = m;
    return 0;
fail:
    nr_git_decoder_destroy(&m);
    return rc;
}

void nr_git_decoder_destroy(nr_git_decoder_t **pm) {
    if (!pm || !*pm) return;
    nr_wstore_free(&(*pm)->ws);
    free((*pm)->layers);
    free(*pm);
    *pm = NULL;
}

static void *s_state_new(const void *model, int rows, int max_len, int n_enc, int enc_len) {
    const nr_git_decoder_t *m = model;
    if (!m) return NULL;
    const nr_dec_dims_t dims = {.n_layer = m->cfg.num_hidden_layers,
                                .d_model = m->cfg.hidden_size,
                                .d_ff = m->cfg.intermediate_size,
                                .vocab = m->cfg.vocab_size,
                                .max_positions = m->cfg.max_position_embeddings,
                                .image_prefix = 1};
    return nr_dec_state_new(m->be, &dims, rows, max_len, n_enc, enc_len);
}

#define CK(call)                                                                                  \
    do {                                                                                          \
        if ((rc = (call)) != 0) goto out;                                                         \
    } while (0)

/* The image tokens through the layers (attending to image tokens only):
 * each layer's q|k|v in one matmul by the fused weight as a whole (a
 * mapped BF16 weight has no F32 rows to point into), keys and values
 * copied into the cache of the first row using that encoder output, then
 * to the other rows. */
static int s_set_encoder(const void *model, void *state, const float *enc, const int *enc_index) {
    const nr_git_decoder_t *m = model;
    nr_dec_state_t *s = state;
    if (!m || !s || !enc) return NR_EINVAL;
    const nr_git_config_t *c = &m->cfg;
    const int D = c->hidden_size, H = c->num_attention_heads, hd = D / H, I = c->intermediate_size;
    const int Si = s->enc_len, M = s->n_enc * Si;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    s->len = 0;
    int rc = nr_dec_state_bind(s, enc_index);
    if (rc) return rc;
    int *first = malloc((size_t)s->n_enc * sizeof(int));
    if (!first) return NR_ENOMEM;
    for (int e = 0; e < s->n_enc; e++) first[e] = -1;
    for (int r = 0; r < s->rows; r++)
        if (first[s->enc_index[r]] < 0) first[s->enc_index[r]] = r;
    for (int e = 0; e < s->n_enc; e++)
        if (first[e] < 0) {
            free(first);
            return NR_EINVAL;
        }
    float *x = o->alloc(ctx, (size_t)M * D * sizeof(float));
    float *qkv = o->alloc(ctx, (size_t)M * 3 * D * sizeof(float));
    float *att = o->alloc(ctx, (size_t)M * D * sizeof(float));
    float *mlp = o->alloc(ctx, (size_t)M * I * sizeof(float));
    if (!x || !qkv || !att || !mlp) {
        rc = NR_ENOMEM;
        goto out;
    }
    CK(o->copy(ctx, x, enc, (size_t)M * D * sizeof(float)));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const s_layer_t *L = &m->layers[l];
        CK(o->matmul(ctx, qkv, 3 * D, x, D, L->att.wq, NR_W_OUT_IN, M, 3 * D, D, 0));
        CK(o->add_bias(ctx, qkv, L->att.bq, M, 3 * D));
        for (int e = 0; e < s->n_enc; e++)
            for (int i = 0; i < Si; i++) {
                const float *src = qkv + ((size_t)e * Si + i) * 3 * D;
                const size_t at = (size_t)first[e] * s->rs + (size_t)i * D;
                CK(o->copy(ctx, s->kc[l] + at, src + D, (size_t)D * sizeof(float)));
                CK(o->copy(ctx, s->vc[l] + at, src + 2 * D, (size_t)D * sizeof(float)));
            }
        if (l == c->num_hidden_layers - 1) break; /* the last layer's image outputs feed nothing */
        nr_attn_args_t aa = {.batch = s->n_enc,
                             .n_head = H,
                             .head_dim = hd,
                             .n_q = Si,
                             .n_kv = Si,
                             .causal = 0,
                             .scale = 1.0f / sqrtf((float)hd),
                             .q = qkv,
                             .k = s->kc[l],
                             .v = s->vc[l],
                             .out = att,
                             .q_bstride = (size_t)Si * 3 * D,
                             .q_rstride = (size_t)3 * D,
                             .kv_bstride = s->rs,
                             .kv_rstride = (size_t)D,
                             .o_bstride = (size_t)Si * D,
                             .o_rstride = (size_t)D,
                             .kv_index = first};
        CK(o->attention(ctx, &aa));
        CK(nr_bert_attn_output(m->be, &L->att, x, att, M, D, c->layer_norm_eps));
        CK(nr_bert_ffn(m->be, &L->ffn, x, mlp, M, D, I, (int)c->hidden_act, c->layer_norm_eps));
    }
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int r = 0; r < s->rows; r++) {
            int r0 = first[s->enc_index[r]];
            if (r0 == r) continue;
            const size_t bytes = (size_t)Si * D * sizeof(float);
            CK(o->copy(ctx, s->kc[l] + (size_t)r * s->rs, s->kc[l] + (size_t)r0 * s->rs, bytes));
            CK(o->copy(ctx, s->vc[l] + (size_t)r * s->rs, s->vc[l] + (size_t)r0 * s->rs, bytes));
        }
    rc = o->synchronize(ctx);
out:
    free(first);
    nr_backend_free(m->be, x);
    nr_backend_free(m->be, qkv);
    nr_backend_free(m->be, att);
    nr_backend_free(m->be, mlp);
    return rc;
}

static int s_step(const void *model, void *state, const int *ids, int n_tok, float *logits, int all_logits) {
    const nr_git_decoder_t *m = model;
    nr_dec_state_t *s = state;
    if (!m || !s || !ids || !logits || n_tok <= 0) return NR_EINVAL;
    if (s->len + n_tok > s->max_len) return NR_EINVAL;
    const nr_git_config_t *c = &m->cfg;
    const int D = c->hidden_size, H = c->num_attention_heads, hd = D / H, I = c->intermediate_size;
    const int V = c->vocab_size, M = s->rows * n_tok;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const float eps = c->layer_norm_eps;
    int rc;
    CK(nr_dec_state_scratch(s, M));
    CK(nr_dec_state_embed(s, m->wte, m->wpe, ids, n_tok, c->max_position_embeddings));
    CK(o->layernorm(ctx, s->x, s->x, m->emb_g, m->emb_b, M, D, eps));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const s_layer_t *L = &m->layers[l];
        CK(o->matmul(ctx, s->qkv, 3 * D, s->x, D, L->att.wq, NR_W_OUT_IN, M, 3 * D, D, 0));
        CK(o->add_bias(ctx, s->qkv, L->att.bq, M, 3 * D));
        CK(nr_dec_state_self_attention(s, l, n_tok, H, 1.0f / sqrtf((float)hd)));
        CK(nr_bert_attn_output(m->be, &L->att, s->x, s->att, M, D, eps));
        CK(nr_bert_ffn(m->be, &L->ffn, s->x, s->mlp, M, D, I, (int)c->hidden_act, eps));
    }
    s->len += n_tok;
    const float *hs;
    int out_rows;
    CK(nr_dec_state_last_tokens(s, n_tok, all_logits, &hs, &out_rows));
    CK(o->matmul(ctx, s->logits, V, hs, D, m->out_w, NR_W_OUT_IN, out_rows, V, D, 0));
    CK(o->add_bias(ctx, s->logits, m->out_b, out_rows, V));
    CK(o->download(ctx, logits, s->logits, (size_t)out_rows * V * sizeof(float)));
    rc = o->synchronize(ctx);
out:
    return rc;
}

/* Rows keeping their caption copy only the text part of the cache; a row
 * taking another caption's place copies the image part too. */
static int s_select(const void *model, void *state, const int *src, int new_rows) {
    return model ? nr_dec_state_select(state, src, new_rows) : NR_EINVAL;
}

static const nr_decoder_ops_t s_decoder_ops = {.name = "git",
                                               .state_new = s_state_new,
                                               .state_destroy = nr_dec_state_release,
                                               .set_encoder = s_set_encoder,
                                               .step = s_step,
                                               .select = s_select};

nr_decoder_t nr_git_decoder(const nr_git_decoder_t *m) {
    nr_decoder_t d = {.ops = &s_decoder_ops, .model = m, .vocab_size = m->cfg.vocab_size,
                      .max_positions = m->cfg.max_position_embeddings};
    return d;
}

/* ---- the family ---- */

typedef struct {
    nr_model_config_t cfg;
    nr_backend_t *be;
    nr_clip_vision_t *clip;   /* vision side: git.image_encoder.vision_model */
    nr_wstore_t pws;          /* git.visual_projection.visual_projection.{0,1} */
    float *proj_w, *proj_b;   /* (D, Dv), (D) Linear */
    float *pln_g, *pln_b;     /* (D) LayerNorm, eps = vision layer_norm_eps */
    nr_git_decoder_t *dec;    /* text side */
} s_git_t;

static void s_destroy(void **self) {
    s_git_t *f = *self;
    if (!f) return;
    nr_clip_vision_destroy(&f->clip);
    if (f->pws.be) nr_wstore_free(&f->pws);
    nr_git_decoder_destroy(&f->dec);
    free(f);
    *self = NULL;
}

static int s_load(const nr_model_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be, int load_encoder,
                  int load_decoder, void **out, char *err, size_t errlen) {
    *out = NULL;
    s_git_t *f = calloc(1, sizeof(*f));
    if (!f) return nr_seterr(err, errlen, NR_ENOMEM, "git: out of memory");
    f->cfg = *cfg;
    f->be = be;
    void *self = f;
    int rc = 0;
    const int Dv = cfg->git.vision.hidden_size, D = cfg->git.hidden_size;
    if (load_encoder) {
        if ((rc = nr_clip_vision_load(&cfg->git.vision, ck, "git.image_encoder.vision_model.", NR_VISION_CLIP, be,
                                      &f->clip, err, errlen)))
            goto fail;
        f->pws = (nr_wstore_t){.be = be, .ck = ck, .prefix = "git.visual_projection.visual_projection."};
        if ((rc = nr_wstore_get_matmul(&f->pws, "0.weight", &f->proj_w, err, errlen, I64(D), I64(Dv),
                                       cfg->states_seq)) ||
            (rc = nr_wstore_get(&f->pws, "0.bias", &f->proj_b, err, errlen, 1, I64(D))) ||
            (rc = nr_wstore_get(&f->pws, "1.weight", &f->pln_g, err, errlen, 1, I64(D))) ||
            (rc = nr_wstore_get(&f->pws, "1.bias", &f->pln_b, err, errlen, 1, I64(D))))
            goto fail;
    }
    if (load_decoder && (rc = nr_git_decoder_load(&cfg->git, ck, be, &f->dec, err, errlen))) goto fail;
    *out = f;
    return 0;
fail:
    s_destroy(&self);
    return rc;
}

/* GitVisionModel, then GitProjection: the projected image tokens. */
static int s_encode(const void *self, const float *pixels, int n, float *states) {
    const s_git_t *f = self;
    if (!f->clip) return NR_EUNSUPPORTED;
    const nr_backend_ops_t *o = f->be->ops;
    void *ctx = f->be->ctx;
    const int Dv = f->cfg.git.vision.hidden_size, D = f->cfg.git.hidden_size, M = n * f->cfg.states_seq;
    float *vis = o->alloc(ctx, (size_t)M * Dv * sizeof(float));
    if (!vis) return NR_ENOMEM;
    int rc = nr_clip_vision_forward(f->clip, pixels, n, vis);
    if (rc == 0) rc = o->matmul(ctx, states, D, vis, Dv, f->proj_w, NR_W_OUT_IN, M, D, Dv, 0);
    if (rc == 0) rc = o->add_bias(ctx, states, f->proj_b, M, D);
    if (rc == 0) rc = o->layernorm(ctx, states, states, f->pln_g, f->pln_b, M, D, f->cfg.git.vision.layer_norm_eps);
    if (rc == 0) rc = o->synchronize(ctx);
    o->free(ctx, vis);
    return rc;
}

static int s_decoder_input(const void *self, const float *states, int n, float **out) {
    const s_git_t *f = self;
    (void)states;
    (void)n;
    *out = NULL; /* the frame already holds the projected image tokens */
    return f->dec ? 0 : NR_EUNSUPPORTED;
}

static nr_decoder_t s_decoder(const void *self) {
    const s_git_t *f = self;
    nr_decoder_t d = {0};
    if (f->dec) d = nr_git_decoder(f->dec);
    return d;
}

const nr_family_ops_t nr_family_git = {.name = "git",
                                       .model_type = "git",
                                       .load = s_load,
                                       .destroy = s_destroy,
                                       .encode = s_encode,
                                       .decoder_input = s_decoder_input,
                                       .decoder = s_decoder};
