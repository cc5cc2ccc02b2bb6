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
#include "models/nn/encoder.h"
#include "models/weights.h"

#define I64(x) ((int64_t)(x))

struct nr_clip_vision {
    nr_vit_config_t cfg;
    nr_backend_t *be;
    nr_wstore_t ws;
    nr_vision_layout_t layout;
    /* patch_b: BLIP's patch_embedding.bias, or zeros (CLIP has none; the op
     * adds one); cls: class_embedding; pos: position_embedding(.weight);
     * pre_g/b: pre_layrnorm (CLIP only); post_g/b: post_layernorm */
    nr_enc_tower_t t;
    float *zero_b; /* the zeros above, owned */
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
    const int blip = layout == NR_VISION_BLIP, siglip = layout == NR_VISION_SIGLIP, clip = layout == NR_VISION_CLIP;
    const int D = cfg->hidden_size, C = cfg->num_channels, P = cfg->patch_size, I = cfg->intermediate_size;
    const int g = cfg->image_size / P;
    m->t.seq = (siglip ? 0 : 1) + g * g;
    int rc;
    nr_wstore_t *ws = &m->ws;
    if ((rc = nr_wstore_get(ws, "embeddings.patch_embedding.weight", &m->t.patch_w, err, errlen, 4, I64(D), I64(C),
                            I64(P), I64(P))) ||
        /* CLIP: class_embedding (D), position_embedding an Embedding (S, D);
         * BLIP: both Parameters, (1, 1, D) and (1, S, D), no ".weight" */
        (clip && (rc = nr_wstore_get(ws, "embeddings.class_embedding", &m->t.cls, err, errlen, 1, I64(D)))) ||
        (!blip && (rc = nr_wstore_get(ws, "embeddings.position_embedding.weight", &m->t.pos, err, errlen, 2,
                                      I64(m->t.seq), I64(D)))) ||
        (blip && (rc = nr_wstore_get(ws, "embeddings.class_embedding", &m->t.cls, err, errlen, 3, I64(1), I64(1),
                                     I64(D)))) ||
        (blip && (rc = nr_wstore_get(ws, "embeddings.position_embedding", &m->t.pos, err, errlen, 3, I64(1),
                                     I64(m->t.seq), I64(D)))) ||
        (clip && (rc = nr_wstore_get(ws, "pre_layrnorm.weight", &m->t.pre_g, err, errlen, 1, I64(D)))) ||
        (clip && (rc = nr_wstore_get(ws, "pre_layrnorm.bias", &m->t.pre_b, err, errlen, 1, I64(D)))) ||
        (!clip && (rc = nr_wstore_get(ws, "embeddings.patch_embedding.bias", &m->t.patch_b, err, errlen, 1, I64(D)))) ||
        (rc = nr_wstore_get(ws, "post_layernorm.weight", &m->t.post_g, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "post_layernorm.bias", &m->t.post_b, err, errlen, 1, I64(D))))
        goto fail;
    if (clip) {
        float *zeros = calloc((size_t)D, sizeof(float));
        m->zero_b = m->t.patch_b = zeros ? nr_backend_upload_new(be, zeros, (size_t)D * sizeof(float)) : NULL;
        free(zeros);
    }
    m->t.gelu_form = (int)cfg->hidden_act;
    m->t.layers = calloc((size_t)cfg->num_hidden_layers, sizeof(nr_enc_layer_t));
    if (!m->t.patch_b || !m->t.layers) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "clip: out of memory");
        goto fail;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        nr_enc_layer_t *L = &m->t.layers[l];
        char n[6][160];
        const char *base = "encoder.layers.%d.%s";
        char nm[160];
        if (blip) { /* BlipAttention.qkv: one Linear (3D, D), rows query|key|value */
            snprintf(nm, sizeof nm, "encoder.layers.%d.self_attn.qkv.weight", l);
            if ((rc = nr_wstore_get_matmul(ws, nm, &L->wqkv, err, errlen, I64(3 * D), I64(D), m->t.seq))) goto fail;
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
            if ((rc = nr_wstore_concat_matmul(ws, wn, rows, 3, D, m->t.seq, &L->wqkv, err, errlen)) ||
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
/* matmul weights: a BF16 checkpoint's stay mapped (weights.h) */
#define WM(field, suffix, n, k)                                                                             \
    do {                                                                                                    \
        snprintf(nm, sizeof nm, base, l, suffix);                                                           \
        if ((rc = nr_wstore_get_matmul(ws, nm, &L->field, err, errlen, n, k, m->t.seq))) goto fail;         \
    } while (0)
        W(ln1_g, "layer_norm1.weight", 1, I64(D));
        W(ln1_b, "layer_norm1.bias", 1, I64(D));
        WM(wo, oname, I64(D), I64(D));
        W(bo, obname, 1, I64(D));
        W(ln2_g, "layer_norm2.weight", 1, I64(D));
        W(ln2_b, "layer_norm2.bias", 1, I64(D));
        WM(w1, "mlp.fc1.weight", I64(I), I64(D));
        W(b1, "mlp.fc1.bias", 1, I64(I));
        WM(w2, "mlp.fc2.weight", I64(D), I64(I));
        W(b2, "mlp.fc2.bias", 1, I64(D));
#undef W
#undef WM
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
    free(m->t.layers);
    free(m);
    *pm = NULL;
}

int nr_clip_vision_forward(const nr_clip_vision_t *m, const float *pixels, int batch, float *out) {
    return m ? nr_enc_tower_forward(m->be, &m->cfg, &m->t, pixels, batch, out) : NR_EINVAL;
}
