/* The vision towers' pre-LN encoder (see encoder.h): transformers'
 * ViTLayer / CLIPEncoderLayer / BlipEncoderLayer math. */
#include "models/nn/encoder.h"

#include <math.h>
#include <stddef.h>

#include "common/error.h"

#define CK(call)                                                                                  \
    do {                                                                                          \
        if ((rc = (call)) != 0) goto out;                                                         \
    } while (0)

int nr_enc_tower_forward(const nr_backend_t *be, const nr_vit_config_t *c, const nr_enc_tower_t *t,
                         const float *pixels, int batch, float *out) {
    if (!be || !c || !t || !pixels || !out || batch <= 0) return NR_EINVAL;
    const nr_backend_ops_t *o = be->ops;
    void *ctx = be->ctx;
    const int D = c->hidden_size, S = t->seq, I = c->intermediate_size, H = c->num_attention_heads;
    const int M = batch * S, hd = D / H;
    const float eps = c->layer_norm_eps;
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
                          .w = t->patch_w,
                          .b = t->patch_b,
                          .cls = t->cls,
                          .pos = t->pos,
                          .out = x};
    CK(o->patch_embed(ctx, &pa));
    if (t->pre_g) CK(o->layernorm(ctx, x, x, t->pre_g, t->pre_b, M, D, eps));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const nr_enc_layer_t *L = &t->layers[l];
        CK(o->layernorm(ctx, h, x, L->ln1_g, L->ln1_b, M, D, eps));
        CK(nr_backend_linear(be, qkv, 3 * D, h, D, L->wqkv, NR_W_OUT_IN, L->bqkv, M, 3 * D, D, -1, 0));
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
        CK(nr_backend_linear(be, x, D, att, D, L->wo, NR_W_OUT_IN, L->bo, M, D, D, -1, 1));
        CK(o->layernorm(ctx, h, x, L->ln2_g, L->ln2_b, M, D, eps));
        CK(nr_backend_linear(be, mlp, I, h, D, L->w1, NR_W_OUT_IN, L->b1, M, I, D, t->gelu_form, 0));
        CK(nr_backend_linear(be, x, D, mlp, I, L->w2, NR_W_OUT_IN, L->b2, M, D, I, -1, 1));
    }
    CK(o->layernorm(ctx, x, x, t->post_g, t->post_b, M, D, eps));
    CK(o->synchronize(ctx));
out:
    nr_backend_free(be, h);
    nr_backend_free(be, qkv);
    nr_backend_free(be, att);
    nr_backend_free(be, mlp);
    return rc;
}
