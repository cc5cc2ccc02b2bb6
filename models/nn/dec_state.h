/* A text decoder's run state, the part every family's decoder (GPT-2,
 * models/gpt2.c; GIT, models/git.c; BLIP, models/blip.c) keeps the same
 * way: one batch of sequences (rows) with per-layer self-attention K/V
 * caches, optional per-layer cross-attention K|V per encoder output, which
 * encoder output each row reads, and scratch sized by the tokens of a step.
 * The model stays shared and read-only; the family's step composes these
 * helpers with its own layers.
 *
 * A row's self cache holds `prefix` positions ahead of the text (GIT's image
 * tokens, prefix = enc_len; 0 for GPT-2 and BLIP), then up to max_len text
 * tokens. Every function returns 0 or a negative NR_E* code (NR_EINVAL for
 * bad arguments, NR_ENOMEM, backend errors); nr_dec_state_new returns NULL
 * on failure. */
#ifndef NR_MODELS_NN_DEC_STATE_H
#define NR_MODELS_NN_DEC_STATE_H

#include <stddef.h>

#include "models/backend.h"

/* What a state is sized by: the decoder's shape. */
typedef struct {
    int n_layer;
    int d_model;       /* D: K/V and residual width */
    int d_ff;          /* the MLP's inner width (scratch `mlp`) */
    int vocab;         /* logits per token (scratch `logits`) */
    int max_positions; /* most text tokens a row may hold */
    int cross;         /* 1: per-layer cross-attention K|V (xkv) */
    int image_prefix;  /* 1: the self caches start with enc_len image positions (GIT) */
} nr_dec_dims_t;

typedef struct nr_dec_state {
    const nr_backend_t *be;
    nr_dec_dims_t dims;
    int rows, max_rows, max_len, n_enc, enc_len;
    int len;                   /* text tokens in the caches */
    int prefix;                /* positions ahead of the text in a self cache */
    int cap_tok;               /* tokens the scratch holds */
    size_t rs;                 /* floats per row in a self cache: (prefix + max_len) * D */
    float **kc, **vc;          /* per layer (rows, prefix + max_len, D) */
    float **xkv;               /* per layer (n_enc, enc_len, 2D) keys | values; NULL without cross */
    int *enc_index, *tmp_index; /* (rows) host: the encoder output each row reads */
    float *x, *h, *qkv, *att, *mlp, *logits; /* scratch: (T, D), (T, D), (T, 3D), (T, D), (T, d_ff), (T, vocab) */
    float *tmp_cache;          /* (rows, rs): staging for select */
} nr_dec_state_t;

/* A state for `rows` sequences of up to max_len text tokens, attending to
 * n_enc encoder outputs of enc_len positions; row r reads output r (0 past
 * n_enc). NULL when max_len is over dims->max_positions, an argument is not
 * positive, or no memory. */
nr_dec_state_t *nr_dec_state_new(const nr_backend_t *be, const nr_dec_dims_t *dims, int rows, int max_len, int n_enc,
                                 int enc_len);
void nr_dec_state_destroy(nr_dec_state_t **s);
/* nr_dec_state_destroy for nr_decoder_ops_t.state_destroy. */
void nr_dec_state_release(void **s);

/* Scratch for `tokens` activation rows (kept when already that large). */
int nr_dec_state_scratch(nr_dec_state_t *s, int tokens);

/* Back to all rows; row r reads encoder output enc_index[r] (host; NULL:
 * r). NR_EINVAL for an index outside 0..n_enc-1. */
int nr_dec_state_bind(nr_dec_state_t *s, const int *enc_index);

/* The step's input: x [rows * n_tok, D] = wte[ids] + wpe[len + t] (ids
 * [rows, n_tok], host; n_positions the rows of wpe). */
int nr_dec_state_embed(nr_dec_state_t *s, const float *wte, const float *wpe, const int *ids, int n_tok,
                       int n_positions);

/* Layer l's causal self-attention for n_tok new tokens per row: their K and
 * V (from qkv [rows * n_tok, 3D], Q|K|V) go to the cache at prefix + len,
 * then att [rows * n_tok, D] = attention of their Q over the prefix and
 * every text token up to each. */
int nr_dec_state_self_attention(nr_dec_state_t *s, int l, int n_tok, int n_head, float scale);

/* Layer l's cross-attention: att [rows * n_tok, D] = attention of q (rows
 * D floats apart) over xkv[l] of each row's encoder output. */
int nr_dec_state_cross_attention(nr_dec_state_t *s, int l, const float *q, int n_tok, int n_head, float scale);

/* Sets *hs / *out_rows to the hidden states the logits come from: x as it
 * is (every token) when all or n_tok is 1, else each row's last token,
 * copied to h. */
int nr_dec_state_last_tokens(nr_dec_state_t *s, int n_tok, int all, const float **hs, int *out_rows);

/* Keeps new_rows rows (<= rows), row r becoming old row src[r] (host),
 * caches and encoder index included; a row that keeps its encoder output
 * copies only the text part of a prefixed cache. */
int nr_dec_state_select(nr_dec_state_t *s, const int *src, int new_rows);

#endif
