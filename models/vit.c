/* ViT encoder: patch embedding + CLS + positions, pre-LN transformer
 * blocks (fused Q|K|V, exact GELU MLP), final layer norm. Follows
 * transformers' models/vit/modeling_vit.py. */
#include "models/vit.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/weights.h"

#define I64(x) ((int64_t)(x))

typedef struct {
    float *ln1_g, *ln1_b; /* (D) layernorm_before */
    float *wqkv, *bqkv;   /* (3D, D), (3D): query|key|value fused */
    float *wo, *bo;       /* (D, D), (D): attention.output.dense */
    float *ln2_g, *ln2_b; /* (D) layernorm_after */
    float *w1, *b1;       /* (I, D), (I): intermediate.dense */
    float *w2, *b2;       /* (D, I), (D): output.dense */
} s_layer_t;

struct nr_vit {
    nr_vit_config_t cfg;
    nr_backend_t *be;
    nr_wstore_t ws;
    float *patch_w, *patch_b; /* (D, C, P, P), (D) */
    float *cls;               /* (1, 1, D) */
    float *pos;               /* (1, S, D) */
    float *lnf_g, *lnf_b;     /* (D) */
    s_layer_t *layers;
    int seq;
};

int nr_vit_load(const nr_vit_config_t *cfg, const nr_checkpoint_t *ck, const char *prefix, nr_backend_t *be,
                nr_vit_t **out, char *err, size_t errlen) {
    *out = NULL;
    nr_vit_t *m = calloc(1, sizeof(*m));
    if (!m) return nr_seterr(err, errlen, NR_ENOMEM, "vit: out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->ws = (nr_wstore_t){.be = be, .ck = ck, .prefix = prefix ? prefix : ""};
    const int D = cfg->hidden_size, C = cfg->num_channels, P = cfg->patch_size, I = cfg->intermediate_size;
    const int g = cfg->image_size / P;
    m->seq = 1 + g * g;
    int rc;
    nr_wstore_t *ws = &m->ws;
    if ((rc = nr_wstore_get(ws, "embeddings.patch_embeddings.projection.weight", &m->patch_w, err, errlen, 4, I64(D),
                            I64(C), I64(P), I64(P))) ||
        (rc = nr_wstore_get(ws, "embeddings.patch_embeddings.projection.bias", &m->patch_b, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "embeddings.cls_token", &m->cls, err, errlen, 3, I64(1), I64(1), I64(D))) ||
        (rc = nr_wstore_get(ws, "embeddings.position_embeddings", &m->pos, err, errlen, 3, I64(1), I64(m->seq),
                            I64(D))) ||
        (rc = nr_wstore_get(ws, "layernorm.weight", &m->lnf_g, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "layernorm.bias", &m->lnf_b, err, errlen, 1, I64(D))))
        goto fail;
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof(s_layer_t));
    if (!m->layers) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "vit: out of memory");
        goto fail;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        s_layer_t *L = &m->layers[l];
        char n[8][160];
        const char *base = "encoder.layer.%d.%s";
        snprintf(n[0], sizeof n[0], base, l, "attention.attention.query.weight");
        snprintf(n[1], sizeof n[1], base, l, "attention.attention.key.weight");
        snprintf(n[2], sizeof n[2], base, l, "attention.attention.value.weight");
        snprintf(n[3], sizeof n[3], base, l, "attention.attention.query.bias");
        snprintf(n[4], sizeof n[4], base, l, "attention.attention.key.bias");
        snprintf(n[5], sizeof n[5], base, l, "attention.attention.value.bias");
        const char *wn[3] = {n[0], n[1], n[2]}, *bn[3] = {n[3], n[4], n[5]};
        int64_t rows[3] = {D, D, D};
        if ((rc = nr_wstore_concat_rows(ws, wn, rows, 3, D, &L->wqkv, err, errlen))) goto fail;
        if (cfg->qkv_bias) {
            if ((rc = nr_wstore_concat_rows(ws, bn, rows, 3, 1, &L->bqkv, err, errlen))) goto fail;
        } else {
            L->bqkv = NULL;
        }
        char nm[160];
#define W(field, suffix, nd, ...)                                                                 \
    do {                                                                                          \
        snprintf(nm, sizeof nm, base, l, suffix);                                                 \
        if ((rc = nr_wstore_get(ws, nm, &L->field, err, errlen, nd, __VA_ARGS__))) goto fail;     \
    } while (0)
        W(ln1_g, "layernorm_before.weight", 1, I64(D));
        W(ln1_b, "layernorm_before.bias", 1, I64(D));
        W(wo, "attention.output.dense.weight", 2, I64(D), I64(D));
        W(bo, "attention.output.dense.bias", 1, I64(D));
        W(ln2_g, "layernorm_after.weight", 1, I64(D));
        W(ln2_b, "layernorm_after.bias", 1, I64(D));
        W(w1, "intermediate.dense.weight", 2, I64(I), I64(D));
        W(b1, "intermediate.dense.bias", 1, I64(I));
        W(w2, "output.dense.weight", 2, I64(D), I64(I));
        W(b2, "output.dense.bias", 1, I64(D));
#undef W
        if (be->ops->prepare_matmul &&
            ((rc = be->ops->prepare_matmul(be->ctx, L->wqkv, NR_W_OUT_IN, 3 * D, D, m->seq)) ||
             (rc = be->ops->prepare_matmul(be->ctx, L->wo, NR_W_OUT_IN, D, D, m->seq)) ||
             (rc = be->ops->prepare_matmul(be->ctx, L->w1, NR_W_OUT_IN, I, D, m->seq)) ||
             (rc = be->ops->prepare_matmul(be->ctx, L->w2, NR_W_OUT_IN, D, I, m->seq)))) {
            nr_seterr(err, errlen, rc, "vit: layer %d: cannot convert weights for the backend", l);
            goto fail;
        }
    }
    *out = m;
    return 0;
fail:
    nr_vit_destroy(&m);
    return rc;
}

void nr_vit_destroy(nr_vit_t **pm) {
    if (!pm || !*pm) return;
    nr_wstore_free(&(*pm)->ws);
    free((*pm)->layers);
    free(*pm);
    *pm = NULL;
}

#define CK(call)                                                                                  \
    do {                                                                                          \
        if ((rc = (call)) != 0) goto out;                                                         \
    } while (0)

int nr_vit_forward(const nr_vit_t *m, const float *pixels, int batch, float *out) {
    if (!m || !pixels || !out || batch <= 0) return NR_EINVAL;
    const nr_vit_config_t *c = &m->cfg;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const int D = c->hidden_size, S = m->seq, I = c->intermediate_size, H = c->num_attention_heads;
    const int M = batch * S;
    int rc = 0;
    float *h = o->alloc(ctx, (size_t)M * D * sizeof(float));
    float *qkv = o->alloc(ctx, (size_t)M * 3 * D * sizeof(float));
    float *att = o->alloc(ctx, (size_t)M * D * sizeof(float));
    float *mlp = o->alloc(ctx, (size_t)M * I * sizeof(float));
    if (!h || !qkv || !att || !mlp) {
        rc = NR_ENOMEM;
        goto out;
    }
    float *x = out; /* the residual stream lives in the output buffer */
    nr_patch_args_t pa = {.batch = batch,
                          .channels = c->num_channels,
                          .height = c->image_size,
                          .width = c->image_size,
                          .patch = c->patch_size,
                          .dim = D,
                          .pixels = pixels,
                          .w = m->patch_w,
                          .b = m->patch_b,
                          .cls = m->cls,
                          .pos = m->pos,
                          .out = x};
    CK(o->patch_embed(ctx, &pa));
    const int hd = D / H;
    const int tanh_form = c->hidden_act == NR_ACT_GELU_TANH;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const s_layer_t *L = &m->layers[l];
        CK(o->layernorm(ctx, h, x, L->ln1_g, L->ln1_b, M, D, c->layer_norm_eps));
        CK(o->matmul(ctx, qkv, 3 * D, h, D, L->wqkv, NR_W_OUT_IN, M, 3 * D, D, 0));
        if (L->bqkv) CK(o->add_bias(ctx, qkv, L->bqkv, M, 3 * D));
        nr_attn_args_t aa = {.batch = batch,
                             .n_head = H,
                             .head_dim = hd,
                             .n_q = S,
                             .n_kv = S,
                             .causal = 0,
                             .scale = 1.0f / sqrtf((float)hd),
                             .q = qkv,
                             .k = qkv + D,
                             .v = qkv + 2 * D,
                             .out = att,
                             .q_bstride = (size_t)S * 3 * D,
                             .q_rstride = (size_t)3 * D,
                             .kv_bstride = (size_t)S * 3 * D,
                             .kv_rstride = (size_t)3 * D,
                             .o_bstride = (size_t)S * D,
                             .o_rstride = (size_t)D};
        CK(o->attention(ctx, &aa));
        CK(o->matmul(ctx, x, D, att, D, L->wo, NR_W_OUT_IN, M, D, D, 1));
        CK(o->add_bias(ctx, x, L->bo, M, D));
        CK(o->layernorm(ctx, h, x, L->ln2_g, L->ln2_b, M, D, c->layer_norm_eps));
        CK(o->matmul(ctx, mlp, I, h, D, L->w1, NR_W_OUT_IN, M, I, D, 0));
        CK(o->add_bias(ctx, mlp, L->b1, M, I));
        CK(o->gelu(ctx, mlp, (size_t)M * I, tanh_form));
        CK(o->matmul(ctx, x, D, mlp, I, L->w2, NR_W_OUT_IN, M, D, I, 1));
        CK(o->add_bias(ctx, x, L->b2, M, D));
    }
    CK(o->layernorm(ctx, x, x, m->lnf_g, m->lnf_b, M, D, c->layer_norm_eps));
    CK(o->synchronize(ctx));
out:
    if (h) o->free(ctx, h);
    if (qkv) o->free(ctx, qkv);
    if (att) o->free(ctx, att);
    if (mlp) o->free(ctx, mlp);
    return rc;
}
