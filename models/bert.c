/* BERT-style post-LN blocks (see bert.h): transformers'
 * models/bert/modeling_bert.py BertSelfAttention, BertSelfOutput,
 * BertIntermediate and BertOutput, which GIT and BLIP's text model copy. */
#include "models/bert.h"

#include <stdint.h>
#include <stdio.h>

#include "common/error.h"

#define I64(x) ((int64_t)(x))

int nr_bert_attn_load(nr_wstore_t *ws, const char *prefix, int D, int kv_dim, nr_bert_attn_t *a, char *err,
                      size_t errlen) {
    char n[6][200], nm[200];
    const char *proj[3] = {"query", "key", "value"};
    for (int k = 0; k < 3; k++) {
        snprintf(n[k], sizeof n[k], "%sself.%s.weight", prefix, proj[k]);
        snprintf(n[3 + k], sizeof n[3 + k], "%sself.%s.bias", prefix, proj[k]);
    }
    int rc;
    *a = (nr_bert_attn_t){0};
    if (kv_dim <= 0) {
        const char *wn[3] = {n[0], n[1], n[2]}, *bn[3] = {n[3], n[4], n[5]};
        int64_t rows[3] = {D, D, D};
        if ((rc = nr_wstore_concat_matmul(ws, wn, rows, 3, D, 1, &a->wq, err, errlen)) ||
            (rc = nr_wstore_concat_rows(ws, bn, rows, 3, 1, &a->bq, err, errlen)))
            return rc;
    } else {
        const char *wn[2] = {n[1], n[2]}, *bn[2] = {n[4], n[5]};
        int64_t rows[2] = {D, D};
        if ((rc = nr_wstore_get_matmul(ws, n[0], &a->wq, err, errlen, I64(D), I64(D), 1)) ||
            (rc = nr_wstore_get(ws, n[3], &a->bq, err, errlen, 1, I64(D))) ||
            (rc = nr_wstore_concat_matmul(ws, wn, rows, 2, kv_dim, 1 << 20, &a->wkv, err, errlen)) ||
            (rc = nr_wstore_concat_rows(ws, bn, rows, 2, 1, &a->bkv, err, errlen)))
            return rc;
    }
    snprintf(nm, sizeof nm, "%soutput.dense.weight", prefix);
    if ((rc = nr_wstore_get_matmul(ws, nm, &a->wo, err, errlen, I64(D), I64(D), 1))) return rc;
    snprintf(nm, sizeof nm, "%soutput.dense.bias", prefix);
    if ((rc = nr_wstore_get(ws, nm, &a->bo, err, errlen, 1, I64(D)))) return rc;
    snprintf(nm, sizeof nm, "%soutput.LayerNorm.weight", prefix);
    if ((rc = nr_wstore_get(ws, nm, &a->ln_g, err, errlen, 1, I64(D)))) return rc;
    snprintf(nm, sizeof nm, "%soutput.LayerNorm.bias", prefix);
    if ((rc = nr_wstore_get(ws, nm, &a->ln_b, err, errlen, 1, I64(D)))) return rc;
    return 0;
}

int nr_bert_ffn_load(nr_wstore_t *ws, const char *prefix, int D, int I, nr_bert_ffn_t *f, char *err, size_t errlen) {
    char nm[200];
    int rc;
    *f = (nr_bert_ffn_t){0};
#define W(field, suffix, nd, ...)                                                                 \
    do {                                                                                          \
        snprintf(nm, sizeof nm, "%s%s", prefix, suffix);                                          \
        if ((rc = nr_wstore_get(ws, nm, &f->field, err, errlen, nd, __VA_ARGS__))) return rc;     \
    } while (0)
    W(b1, "intermediate.dense.bias", 1, I64(I));
    W(b2, "output.dense.bias", 1, I64(D));
    W(ln_g, "output.LayerNorm.weight", 1, I64(D));
    W(ln_b, "output.LayerNorm.bias", 1, I64(D));
#undef W
    snprintf(nm, sizeof nm, "%sintermediate.dense.weight", prefix);
    if ((rc = nr_wstore_get_matmul(ws, nm, &f->w1, err, errlen, I64(I), I64(D), 1))) return rc;
    snprintf(nm, sizeof nm, "%soutput.dense.weight", prefix);
    return nr_wstore_get_matmul(ws, nm, &f->w2, err, errlen, I64(D), I64(I), 1);
}

int nr_bert_attn_output(const nr_backend_t *be, const nr_bert_attn_t *a, float *x, const float *att, int M, int D,
                        float eps) {
    const nr_backend_ops_t *o = be->ops;
    int rc;
    if ((rc = o->matmul(be->ctx, x, D, att, D, a->wo, NR_W_OUT_IN, M, D, D, 1)) ||
        (rc = o->add_bias(be->ctx, x, a->bo, M, D)))
        return rc;
    return o->layernorm(be->ctx, x, x, a->ln_g, a->ln_b, M, D, eps);
}

int nr_bert_ffn(const nr_backend_t *be, const nr_bert_ffn_t *f, float *x, float *mlp, int M, int D, int I, int act,
                float eps) {
    const nr_backend_ops_t *o = be->ops;
    void *ctx = be->ctx;
    int rc;
    if ((rc = o->matmul(ctx, mlp, I, x, D, f->w1, NR_W_OUT_IN, M, I, D, 0)) ||
        (rc = o->add_bias(ctx, mlp, f->b1, M, I)) || (rc = o->gelu(ctx, mlp, (size_t)M * I, act)) ||
        (rc = o->matmul(ctx, x, D, mlp, I, f->w2, NR_W_OUT_IN, M, D, I, 1)) || (rc = o->add_bias(ctx, x, f->b2, M, D)))
        return rc;
    return o->layernorm(ctx, x, x, f->ln_g, f->ln_b, M, D, eps);
}
