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
#include "models/nn/encoder.h"
#include "models/weights.h"

#define I64(x) ((int64_t)(x))

struct nr_vit {
    nr_vit_config_t cfg;
    nr_backend_t *be;
    nr_wstore_t ws;
    nr_enc_tower_t t; /* cls (1, 1, D), pos (1, S, D), post_g/b: layernorm; no pre-layernorm */
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
    m->t.seq = 1 + g * g;
    int rc;
    nr_wstore_t *ws = &m->ws;
    if ((rc = nr_wstore_get(ws, "embeddings.patch_embeddings.projection.weight", &m->t.patch_w, err, errlen, 4, I64(D),
                            I64(C), I64(P), I64(P))) ||
        (rc = nr_wstore_get(ws, "embeddings.patch_embeddings.projection.bias", &m->t.patch_b, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "embeddings.cls_token", &m->t.cls, err, errlen, 3, I64(1), I64(1), I64(D))) ||
        (rc = nr_wstore_get(ws, "embeddings.position_embeddings", &m->t.pos, err, errlen, 3, I64(1), I64(m->t.seq),
                            I64(D))) ||
        (rc = nr_wstore_get(ws, "layernorm.weight", &m->t.post_g, err, errlen, 1, I64(D))) ||
        (rc = nr_wstore_get(ws, "layernorm.bias", &m->t.post_b, err, errlen, 1, I64(D))))
        goto fail;
    m->t.gelu_form = (int)cfg->hidden_act; /* the gelu op's forms follow nr_act_t */
    m->t.layers = calloc((size_t)cfg->num_hidden_layers, sizeof(nr_enc_layer_t));
    if (!m->t.layers) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "vit: out of memory");
        goto fail;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        nr_enc_layer_t *L = &m->t.layers[l];
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
        /* matmul weights: a BF16 checkpoint's stay mapped (weights.h) */
        if ((rc = nr_wstore_concat_matmul(ws, wn, rows, 3, D, m->t.seq, &L->wqkv, err, errlen))) goto fail;
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
#define WM(field, suffix, n, k)                                                                       \
    do {                                                                                          \
        snprintf(nm, sizeof nm, base, l, suffix);                                                 \
        if ((rc = nr_wstore_get_matmul(ws, nm, &L->field, err, errlen, n, k, m->t.seq))) goto fail; \
    } while (0)
        W(ln1_g, "layernorm_before.weight", 1, I64(D));
        W(ln1_b, "layernorm_before.bias", 1, I64(D));
        WM(wo, "attention.output.dense.weight", I64(D), I64(D));
        W(bo, "attention.output.dense.bias", 1, I64(D));
        W(ln2_g, "layernorm_after.weight", 1, I64(D));
        W(ln2_b, "layernorm_after.bias", 1, I64(D));
        WM(w1, "intermediate.dense.weight", I64(I), I64(D));
        W(b1, "intermediate.dense.bias", 1, I64(I));
        WM(w2, "output.dense.weight", I64(D), I64(I));
        W(b2, "output.dense.bias", 1, I64(D));
#undef W
#undef WM
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
    free((*pm)->t.layers);
    free(*pm);
    *pm = NULL;
}

int nr_vit_forward(const nr_vit_t *m, const float *pixels, int batch, float *out) {
    return m ? nr_enc_tower_forward(m->be, &m->cfg, &m->t, pixels, batch, out) : NR_EINVAL;
}
