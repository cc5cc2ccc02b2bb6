/* The decoder interface generation runs over: a small table of functions
 * plus the model they act on, so greedy and beam search (models/generate.h)
 * serve every family's decoder (GPT-2 with cross-attention, GIT's BERT-style
 * decoder over [image tokens; text], BLIP's BERT LM ...). A family's decoder
 * fills one nr_decoder_t (nr_gpt2_decoder, nr_git_decoder); the model stays
 * shared and read-only, a state holds one batch of sequences (rows).
 *
 * What a decoder sees of the encoder: `enc` [n_enc, enc_len, D] in backend
 * memory, the family's own decoder input (encoder states for cross-attention,
 * projected image tokens for a prefix decoder). Every function returns 0 or a
 * negative NR_E* code (NR_EINVAL for bad arguments, NR_ENOMEM, backend
 * errors); state_new returns NULL on failure. */
#ifndef NR_MODELS_DECODER_H
#define NR_MODELS_DECODER_H

#include <stddef.h>

typedef struct nr_decoder_ops {
    const char *name; /* "gpt2", "git" */
    /* A state for `rows` sequences of up to max_len tokens each (the
     * generated ones, start token included), attending to n_enc encoder
     * outputs of enc_len positions. NULL when max_len is over the model's
     * limit, or no memory. */
    void *(*state_new)(const void *model, int rows, int max_len, int n_enc, int enc_len);
    void (*state_destroy)(void **state);
    /* Computes what every row needs from the encoder (cross-attention K/V,
     * or the image prefix's keys and values through every layer) from enc
     * and sets which encoder output each row uses (enc_index[rows], host;
     * NULL: row r uses r). Resets the state to all rows and no tokens. */
    int (*set_encoder)(const void *model, void *state, const float *enc, const int *enc_index);
    /* n_tok new tokens per row (ids [rows, n_tok], host) at the next
     * positions; logits to host memory: [rows, n_tok, vocab] when all_logits,
     * else the last token's [rows, vocab]. NR_EINVAL for a bad id or when the
     * state is full. */
    int (*step)(const void *model, void *state, const int *ids, int n_tok, float *logits, int all_logits);
    /* Keeps new_rows rows, row r becoming old row src[r] (host), caches and
     * encoder index included: beam reordering and finished captions leaving. */
    int (*select)(const void *model, void *state, const int *src, int new_rows);
} nr_decoder_ops_t;

typedef struct {
    const nr_decoder_ops_t *ops;
    const void *model;
    int vocab_size;    /* logits per token */
    int max_positions; /* most tokens a sequence may hold (max_length limit) */
} nr_decoder_t;

#endif
