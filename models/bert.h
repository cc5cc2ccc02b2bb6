/* BERT-style post-LN blocks, as transformers' BertSelfAttention /
 * BertSelfOutput / BertIntermediate / BertOutput name and compute them,
 * shared by the decoders built from them (GIT's, models/git.c; BLIP's text
 * decoder, models/blip.c):
 *   attention:  PREFIX self.query|key|value, then
 *               x = LayerNorm(x + output.dense(att))   (PREFIX output.*)
 *   feed-forward: x = LayerNorm(x + output.dense(act(intermediate.dense(x))))
 * A self-attention keeps Q|K|V fused ((3D, D) rows: query, key, value); a
 * cross-attention keeps its query (D, D) apart and K|V fused ((2D, Dk),
 * Dk the encoder's width), computed once per caption from the encoder
 * states. Weights live in the caller's nr_wstore_t and are prepared for the
 * backend's matmul precision at load. Every function returns 0 or a
 * negative NR_E* code. */
#ifndef NR_MODELS_BERT_H
#define NR_MODELS_BERT_H

#include <stddef.h>

#include "models/backend.h"
#include "models/weights.h"

typedef struct {
    float *wq, *bq;       /* self: (3D, D), (3D) query|key|value; cross: (D, D), (D) query */
    float *wkv, *bkv;     /* cross only: (2D, Dk), (2D) key|value; NULL for self */
    float *wo, *bo;       /* (D, D), (D): output.dense */
    float *ln_g, *ln_b;   /* (D) output.LayerNorm */
} nr_bert_attn_t;

typedef struct {
    float *w1, *b1;       /* (I, D), (I): intermediate.dense */
    float *w2, *b2;       /* (D, I), (D): output.dense */
    float *ln_g, *ln_b;   /* (D) output.LayerNorm */
} nr_bert_ffn_t;

/* Loads prefix + "self.query.weight" ... + "output.LayerNorm.bias" (prefix
 * e.g. "git.encoder.layer.3.attention."). kv_dim 0: self-attention (Q|K|V
 * fused); kv_dim > 0: cross-attention whose key/value read kv_dim-wide
 * states. Returns 0, NR_EMODEL (tensor named), NR_ENOMEM. */
int nr_bert_attn_load(nr_wstore_t *ws, const char *prefix, int D, int kv_dim, nr_bert_attn_t *a, char *err,
                      size_t errlen);
/* Loads prefix + "intermediate.dense.*", "output.dense.*",
 * "output.LayerNorm.*" (prefix e.g. "git.encoder.layer.3."). */
int nr_bert_ffn_load(nr_wstore_t *ws, const char *prefix, int D, int I, nr_bert_ffn_t *f, char *err, size_t errlen);

/* x [M, D] = LayerNorm(x + att Wo^T + bo): BertSelfOutput. */
int nr_bert_attn_output(const nr_backend_t *be, const nr_bert_attn_t *a, float *x, const float *att, int M, int D,
                        float eps);
/* x [M, D] = LayerNorm(x + W2 act(W1 x + b1) + b2), mlp [M, I] scratch:
 * BertIntermediate + BertOutput. act is the backend gelu form (nr_act_t). */
int nr_bert_ffn(const nr_backend_t *be, const nr_bert_ffn_t *f, float *x, float *mlp, int M, int D, int I, int act,
                float eps);

#endif
