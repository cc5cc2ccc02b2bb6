/* A text decoder's run state (see dec_state.h): caches, encoder index and
 * scratch, shared by the GPT-2, GIT and BLIP decoders. */
#include "models/nn/dec_state.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

void nr_dec_state_destroy(nr_dec_state_t **ps) {
    if (!ps || !*ps) return;
    nr_dec_state_t *s = *ps;
    const nr_backend_t *be = s->be;
    for (int l = 0; l < s->dims.n_layer; l++) {
        if (s->kc) nr_backend_free(be, s->kc[l]);
        if (s->vc) nr_backend_free(be, s->vc[l]);
        if (s->xkv) nr_backend_free(be, s->xkv[l]);
    }
    free(s->kc);
    free(s->vc);
    free(s->xkv);
    free(s->enc_index);
    free(s->tmp_index);
    float *bufs[] = {s->x, s->h, s->qkv, s->att, s->mlp, s->logits, s->tmp_cache};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) nr_backend_free(be, bufs[i]);
    free(s);
    *ps = NULL;
}

void nr_dec_state_release(void **ps) {
    nr_dec_state_t *s = ps ? *ps : NULL;
    nr_dec_state_destroy(&s);
    if (ps) *ps = NULL;
}

int nr_dec_state_scratch(nr_dec_state_t *s, int tokens) {
    if (s->cap_tok >= tokens) return 0;
    const nr_backend_t *be = s->be;
    const size_t T = (size_t)tokens, D = (size_t)s->dims.d_model;
    float **bufs[] = {&s->x, &s->h, &s->qkv, &s->att, &s->mlp, &s->logits};
    const size_t width[] = {D, D, 3 * D, D, (size_t)s->dims.d_ff, (size_t)s->dims.vocab};
    int ok = 1;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) nr_backend_free(be, *bufs[i]);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i] = be->ops->alloc(be->ctx, T * width[i] * sizeof(float));
        if (!*bufs[i]) ok = 0;
    }
    if (!ok) {
        s->cap_tok = 0;
        return NR_ENOMEM;
    }
    s->cap_tok = tokens;
    return 0;
}

nr_dec_state_t *nr_dec_state_new(const nr_backend_t *be, const nr_dec_dims_t *dims, int rows, int max_len, int n_enc,
                                 int enc_len) {
    if (!be || !dims || rows <= 0 || max_len <= 0 || max_len > dims->max_positions || n_enc <= 0 || enc_len <= 0)
        return NULL;
    nr_dec_state_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->be = be;
    s->dims = *dims;
    s->rows = s->max_rows = rows;
    s->max_len = max_len;
    s->n_enc = n_enc;
    s->enc_len = enc_len;
    s->prefix = dims->image_prefix ? enc_len : 0;
    const size_t D = (size_t)dims->d_model, Lr = (size_t)dims->n_layer;
    s->rs = (size_t)(s->prefix + max_len) * D;
    void *ctx = be->ctx;
    const nr_backend_ops_t *o = be->ops;
    s->kc = calloc(Lr, sizeof(float *));
    s->vc = calloc(Lr, sizeof(float *));
    s->xkv = dims->cross ? calloc(Lr, sizeof(float *)) : NULL;
    s->enc_index = calloc((size_t)rows, sizeof(int));
    s->tmp_index = calloc((size_t)rows, sizeof(int));
    if (!s->kc || !s->vc || (dims->cross && !s->xkv) || !s->enc_index || !s->tmp_index) goto fail;
    for (size_t l = 0; l < Lr; l++) {
        s->kc[l] = o->alloc(ctx, (size_t)rows * s->rs * sizeof(float));
        s->vc[l] = o->alloc(ctx, (size_t)rows * s->rs * sizeof(float));
        if (s->xkv) s->xkv[l] = o->alloc(ctx, (size_t)n_enc * enc_len * 2 * D * sizeof(float));
        if (!s->kc[l] || !s->vc[l] || (s->xkv && !s->xkv[l])) goto fail;
    }
    s->tmp_cache = o->alloc(ctx, (size_t)rows * s->rs * sizeof(float));
    if (!s->tmp_cache || nr_dec_state_scratch(s, rows) != 0) goto fail;
    for (int r = 0; r < rows; r++) s->enc_index[r] = r < n_enc ? r : 0;
    return s;
fail:
    nr_dec_state_destroy(&s);
    return NULL;
}

int nr_dec_state_bind(nr_dec_state_t *s, const int *enc_index) {
    s->rows = s->max_rows;
    for (int r = 0; r < s->rows; r++) {
        int e = enc_index ? enc_index[r] : r;
        if (e < 0 || e >= s->n_enc) return NR_EINVAL;
        s->enc_index[r] = e;
    }
    return 0;
}

int nr_dec_state_embed(nr_dec_state_t *s, const float *wte, const float *wpe, const int *ids, int n_tok,
                       int n_positions) {
    const int M = s->rows * n_tok;
    int *pos = malloc((size_t)M * sizeof(int));
    if (!pos) return NR_ENOMEM;
    for (int i = 0; i < M; i++) pos[i] = s->len + i % n_tok; /* text positions start at 0 after any prefix */
    int rc = s->be->ops->embed(s->be->ctx, s->x, wte, wpe, ids, pos, M, s->dims.d_model, s->dims.vocab, n_positions);
    free(pos);
    return rc;
}

int nr_dec_state_self_attention(nr_dec_state_t *s, int l, int n_tok, int n_head, float scale) {
    const nr_backend_ops_t *o = s->be->ops;
    void *ctx = s->be->ctx;
    const int D = s->dims.d_model, at0 = s->prefix + s->len;
    const size_t bytes = (size_t)D * sizeof(float);
    int rc;
    for (int r = 0; r < s->rows; r++)
        for (int t = 0; t < n_tok; t++) {
            const float *src = s->qkv + (size_t)(r * n_tok + t) * 3 * D;
            const size_t at = (size_t)r * s->rs + (size_t)(at0 + t) * D;
            if ((rc = o->copy(ctx, s->kc[l] + at, src + D, bytes)) ||
                (rc = o->copy(ctx, s->vc[l] + at, src + 2 * D, bytes)))
                return rc;
        }
    nr_attn_args_t sa = {.batch = s->rows,
                         .n_head = n_head,
                         .head_dim = D / n_head,
                         .n_q = n_tok,
                         .n_kv = at0 + n_tok,
                         .causal = 1,
                         .q_pos0 = at0,
                         .scale = scale,
                         .q = s->qkv,
                         .k = s->kc[l],
                         .v = s->vc[l],
                         .out = s->att,
                         .q_bstride = (size_t)n_tok * 3 * D,
                         .q_rstride = (size_t)3 * D,
                         .kv_bstride = s->rs,
                         .kv_rstride = (size_t)D,
                         .o_bstride = (size_t)n_tok * D,
                         .o_rstride = (size_t)D};
    return o->attention(ctx, &sa);
}

int nr_dec_state_cross_attention(nr_dec_state_t *s, int l, const float *q, int n_tok, int n_head, float scale) {
    const int D = s->dims.d_model;
    nr_attn_args_t xa = {.batch = s->rows,
                         .n_head = n_head,
                         .head_dim = D / n_head,
                         .n_q = n_tok,
                         .n_kv = s->enc_len,
                         .causal = 0,
                         .scale = scale,
                         .q = q,
                         .k = s->xkv[l],
                         .v = s->xkv[l] + D,
                         .out = s->att,
                         .q_bstride = (size_t)n_tok * D,
                         .q_rstride = (size_t)D,
                         .kv_bstride = (size_t)s->enc_len * 2 * D,
                         .kv_rstride = (size_t)2 * D,
                         .o_bstride = (size_t)n_tok * D,
                         .o_rstride = (size_t)D,
                         .kv_index = s->enc_index};
    return s->be->ops->attention(s->be->ctx, &xa);
}

int nr_dec_state_last_tokens(nr_dec_state_t *s, int n_tok, int all, const float **hs, int *out_rows) {
    const int D = s->dims.d_model;
    *hs = s->x;
    *out_rows = s->rows * n_tok;
    if (all || n_tok == 1) return 0;
    int rc;
    for (int r = 0; r < s->rows; r++)
        if ((rc = s->be->ops->copy(s->be->ctx, s->h + (size_t)r * D, s->x + (size_t)(r * n_tok + n_tok - 1) * D,
                                   (size_t)D * sizeof(float))))
            return rc;
    *hs = s->h;
    *out_rows = s->rows;
    return 0;
}

int nr_dec_state_select(nr_dec_state_t *s, const int *src, int new_rows) {
    if (!s || !src || new_rows <= 0 || new_rows > s->rows) return NR_EINVAL;
    const nr_backend_ops_t *o = s->be->ops;
    void *ctx = s->be->ctx;
    const size_t D = (size_t)s->dims.d_model, P = (size_t)s->prefix * D, rs = s->rs;
    const int R = s->rows;
    int identity = new_rows == R, rc;
    for (int r = 0; r < new_rows; r++) {
        if (src[r] < 0 || src[r] >= R) return NR_EINVAL;
        if (src[r] != r) identity = 0;
    }
    /* Through tmp_cache: every source is read before any row is written. A
     * row that stays put, or holds nothing yet, has nothing to copy. */
    for (int l = 0; !identity && l < s->dims.n_layer; l++) {
        float *caches[2] = {s->kc[l], s->vc[l]};
        for (int k = 0; k < 2; k++)
            for (int pass = 0; pass < 2; pass++)
                for (int r = 0; r < new_rows; r++) {
                    size_t from = s->enc_index[src[r]] == s->enc_index[r] ? P : 0;
                    size_t bytes = (P + (size_t)s->len * D - from) * sizeof(float);
                    if (src[r] == r || bytes == 0) continue;
                    float *cache_row = caches[k] + (size_t)(pass ? r : src[r]) * rs + from;
                    float *tmp_row = s->tmp_cache + (size_t)r * rs + from;
                    if ((rc = pass ? o->copy(ctx, cache_row, tmp_row, bytes) : o->copy(ctx, tmp_row, cache_row, bytes)))
                        return rc;
                }
    }
    for (int r = 0; r < new_rows; r++) s->tmp_index[r] = s->enc_index[src[r]];
    memcpy(s->enc_index, s->tmp_index, (size_t)new_rows * sizeof(int));
    s->rows = new_rows;
    return 0;
}
