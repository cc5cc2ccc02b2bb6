/* CLIP-style vision towers: follows transformers' GitVisionEmbeddings /
 * GitVisionEncoderLayer / GitVisionTransformer (models/git/modeling_git.py,
 * copied there from models/clip/modeling_clip.py) and BlipVisionEmbeddings /
 * BlipAttention / BlipEncoderLayer / BlipVisionModel
 * (models/blip/modeling_blip.py), which differ only in names, the patch
 * bias and the missing pre-layernorm. */
#include "models/clip.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/weights.h"

#define I64(x) ((int64_t)(x))

typedef struct {
    float *ln1_g, *ln1_b; /* (D) layer_norm1 */
    float *wqkv, *bqkv;   /* (3D, D), (3D): q_proj|k_proj|v_proj */
    float *wo, *bo;       /* (D, D), (D): out_proj */
    float *ln2_g, *ln2_b; /* (D) layer_norm2 */
    float *w1, *b1;       /* (I, D), (I): mlp.fc1 */
    float *w2, *b2;       /* (D, I), (D): mlp.fc2 */
} s_layer_t;

struct nr_clip_vision {
    nr_vit_config_t cfg;
    nr_backend_t *be;
    nr_wstore_t ws;
    nr_vision_layout_t layout;
    float *patch_w;           /* (D, C, P, P) */
    float *patch_b;           /* (D): BLIP's patch_embedding.bias, or zeros (CLIP has none; the op adds one) */
    float *zero_b;            /* the zeros above, owned */
    float *cls;               /* (D) class_embedding */
    float *pos;               /* (S, D) position_embedding.weight */
    float *pre_g, *pre_b;     /* (D) pre_layrnorm (CLIP only) */
    float *post_g, *post_b;   /* (D) post_layernorm */
    s_layer_t *layers;
    int seq;
};

int nr_clip_vision_load(const nr_vit_config_t *cfg, const nr_checkpoint_t *ck, const char *prefix,
                        nr_vision_layout_t layout, nr_backend_t *be, nr_clip_vision_t **out, char *err,
                        size_t errlen) {
    *out = NULL;
    nr_clip_vision_t *m = calloc(1, sizeof(*m));
    if (!m) return nr_seterr(err, errlen, NR_ENOMEM, "clip: out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->layout = layout;
    m->ws = (nr_wstore_t){.be = be, .ck = ck, .prefix = prefix ? prefix : ""};
    const int blip = layout == NR_VISION_BLIP;
    const int D = cfg->hidden_size, C = cfg->num_channels, P = cfg->patch_size, I = cfg->intermediate_size;
    const int g = cfg->image_size / P;
    m->seq = 1 + g * g;
    int rc;
    nr_wstore_t *ws = &m->ws;
    if ((rc = nr_wstore_get(ws, "embeddings.patch_embedding.weight", &m->patch_w, err, errlen, 4, I64(D), I64(C),
                            I64(P), I64(P))) ||
        /* CLIP: class_embedding (D), position_embedding an Embedding (S, D);
         * BLIP: both Parameters, (1, 1, D) and (1, S, D), no ".weight" */
        (!blip && (rc = nr_wstore_get(ws, "embeddings.class_embedding", &m->cls, err, errlen, 1, I64(D)))) ||
        (!blip && (rc = nr_wstore_get(ws, "embeddings.position_embedding.weight", &m->pos, err, errlen, 2,
                                      I64(m->seq), I64(D)))) ||
        (blip && (rc = nr_wstore_get(ws, "embeddings.class_embedding", &m->cls, err, errlen, 3, I64(1), I64(1),
                                     I64(D)))) ||
        (blip && (rc = nr_wstore_get(ws, "embeddings.position_embedding", &m->pos, err, errlen, 3, I64(1),
                                     I64(m->seq), I64(D)))) ||
        (!blip && (rc = nr_wstore_get(ws, "pre_layrnorm.weight", &m->pre_g, err, errlen, 1, I64(D)))) ||
        (!blip && (rc = nr_wstore_get(ws, "pre_layrnorm.bias", &m->pre_b, err, errlen, 1, I64(D)))) ||
        (blip && (rc = nr_wstore_get(ws, "embeddings.patch_embedding.bias", &m->patch_b, err, errlen, 1, I64(D)))) ||
        (rc = nr_wstore_get(ws, "post_layernorm.weight", &m->post_g, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "post_layernorm.bias", &m->post_b, err, errlen, 1, I64(D))))
        goto fail;
    if (!blip) {
        float *zeros = calloc((size_t)D, sizeof(float));
        m->zero_b = m->patch_b = zeros ? nr_backend_upload_new(be, zeros, (size_t)D * sizeof(float)) : NULL;
        free(zeros);
    }
    m->layers = calloc((size_t)cfg->num_hidden_layers, sizeof(s_layer_t));
    if (!m->patch_b || !m->layers) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "clip: out of memory");
        goto fail;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        s_layer_t *L = &m->layers[l];
        char n[6][160];
        const char *base = "encoder.layers.%d.%s";
        char nm[160];
        if (blip) { /* BlipAttention.qkv: one Linear (3D, D), rows query|key|value */
            snprintf(nm, sizeof nm, "encoder.layers.%d.self_attn.qkv.weight", l);
            if ((rc = nr_wstore_get(ws, nm, &L->wqkv, err, errlen, 2, I64(3 * D), I64(D)))) goto fail;
            snprintf(nm, sizeof nm, "encoder.layers.%d.self_attn.qkv.bias", l);
            if ((rc = nr_wstore_get(ws, nm, &L->bqkv, err, errlen, 1, I64(3 * D)))) goto fail;
        } else {
            const char *proj[3] = {"q_proj", "k_proj", "v_proj"};
            for (int k = 0; k < 3; k++) {
                snprintf(n[k], sizeof n[k], "encoder.layers.%d.self_attn.%s.weight", l, proj[k]);
                snprintf(n[3 + k], sizeof n[3 + k], "encoder.layers.%d.self_attn.%s.bias", l, proj[k]);
            }
            const char *wn[3] = {n[0], n[1], n[2]}, *bn[3] = {n[3], n[4], n[5]};
            int64_t rows[3] = {D, D, D};
            if ((rc = nr_wstore_concat_rows(ws, wn, rows, 3, D, &L->wqkv, err, errlen)) ||
                (rc = nr_wstore_concat_rows(ws, bn, rows, 3, 1, &L->bqkv, err, errlen)))
                goto fail;
        }
        const char *oname = blip ? "self_attn.projection.weight" : "self_attn.out_proj.weight";
        const char *obname = blip ? "self_attn.projection.bias" : "self_attn.out_proj.bias";
#define W(field, suffix, nd, ...)                                                                 \
    do {                                                                                          \
        snprintf(nm, sizeof nm, base, l, suffix);                                                 \
        if ((rc = nr_wstore_get(ws, nm, &L->field, err, errlen, nd, __VA_ARGS__))) goto fail;     \
    } while (0)
        W(ln1_g, "layer_norm1.weight", 1, I64(D));
        W(ln1_b, "layer_norm1.bias", 1, I64(D));
        W(wo, oname, 2, I64(D), I64(D));
        W(bo, obname, 1, I64(D));
        W(ln2_g, "layer_norm2.weight", 1, I64(D));
        W(ln2_b, "layer_norm2.bias", 1, I64(D));
        W(w1, "mlp.fc1.weight", 2, I64(I), I64(D));
        W(b1, "mlp.fc1.bias", 1, I64(I));
        W(w2, "mlp.fc2.weight", 2, I64(D), I64(I));
        W(b2, "mlp.fc2.bias", 1, I64(D));
#undef W
        if (be->ops->prepare_matmul &&
            ((rc = be->ops->prepare_matmul(be->ctx, L->wqkv, NR_W_OUT_IN, 3 * D, D, m->seq)) ||
             (rc = be->ops->prepare_matmul(be->ctx, L->wo, NR_W_OUT_IN, D, D, m->seq)) ||
             (rc = be->ops->prepare_matmul(be->ctx, L->w1, NR_W_OUT_IN, I, D, m->seq)) ||
             (rc = be->ops->prepare_matmul(be->ctx, L->w2, NR_W_OUT_IN, D, I, m->seq)))) {
            nr_seterr(err, errlen, rc, "clip: layer %d: cannot convert weights for the backend", l);
            goto fail;
        }
    }
    *out = m;
    return 0;
fail:
    nr_clip_vision_destroy(&m);
    return rc;
}

void nr_clip_vision_destroy(nr_clip_vision_t **pm) {
    if (!pm || !*pm) return;
    nr_clip_vision_t *m = *pm;
    if (m->zero_b) m->be->ops->free(m->be->ctx, m->zero_b);
    nr_wstore_free(&m->ws);
    free(m->layers);
    free(m);
    *pm = NULL;
}

#define CK(call)                                                                                  \
    do {                                                                                          \
        if ((rc = (call)) != 0) goto out;                                                         \
    } while (0)

int nr_clip_vision_forward(const nr_clip_vision_t *m, const float *pixels, int batch, float *out) {
    if (!m || !pixels || !out || batch <= 0) return NR_EINVAL;
    const nr_vit_config_t *c = &m->cfg;
    const nr_backend_ops_t *o = m->be->ops;
    void *ctx = m->be->ctx;
    const int D = c->hidden_size, S = m->seq, I = c->intermediate_size, H = c->num_attention_heads;
    const int M = batch * S, hd = D / H;
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
    if (m->pre_g) CK(o->layernorm(ctx, x, x, m->pre_g, m->pre_b, M, D, c->layer_norm_eps));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const s_layer_t *L = &m->layers[l];
        CK(o->layernorm(ctx, h, x, L->ln1_g, L->ln1_b, M, D, c->layer_norm_eps));
        CK(o->matmul(ctx, qkv, 3 * D, h, D, L->wqkv, NR_W_OUT_IN, M, 3 * D, D, 0));
        CK(o->add_bias(ctx, qkv, L->bqkv, M, 3 * D));
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
        CK(o->gelu(ctx, mlp, (size_t)M * I, (int)c->hidden_act));
        CK(o->matmul(ctx, x, D, mlp, I, L->w2, NR_W_OUT_IN, M, D, I, 1));
        CK(o->add_bias(ctx, x, L->b2, M, D));
    }
    CK(o->layernorm(ctx, x, x, m->post_g, m->post_b, M, D, c->layer_norm_eps));
    CK(o->synchronize(ctx));
out:
    if (h) o->free(ctx, h);
    if (qkv) o->free(ctx, qkv);
    if (att) o->free(ctx, att);
    if (mlp) o->free(ctx, mlp);
    return rc;
}
