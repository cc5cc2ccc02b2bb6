/* GPT-2 decoder with cross-attention (the decoder of a Hugging Face
 * VisionEncoderDecoder): causal self-attention with a KV cache,
 * cross-attention to encoder states (K/V computed once per caption), MLP,
 * final layer norm, lm_head tied to wte unless tie_word_embeddings is false. The model is shared and
 * read-only; a state holds one batch of sequences (rows) being decoded. */
#ifndef NR_MODELS_GPT2_H
#define NR_MODELS_GPT2_H

#include <stddef.h>

#include "models/backend.h"
#include "models/config.h"
#include "models/decoder.h"
#include "models/io/checkpoint.h"

typedef struct nr_gpt2 nr_gpt2_t;
typedef struct nr_dec_state nr_gpt2_state_t; /* models/nn/dec_state.h */

/* Loads prefix + HF GPT-2 names ("decoder." in a VisionEncoderDecoder),
 * checking shapes against cfg; attn.bias / masked_bias buffers are ignored;
 * lm_head is wte when cfg->tie_word_embeddings (the file's copy, if any, is
 * not read, as transformers ties them after loading), else prefix +
 * "lm_head.weight", which must then be present. Returns 0,
 * NR_EMODEL (tensor named), NR_ENOMEM. */
int nr_gpt2_load(const nr_gpt2_config_t *cfg, const nr_checkpoint_t *ck, const char *prefix, nr_backend_t *be,
                 nr_gpt2_t **out, char *err, size_t errlen);
void nr_gpt2_destroy(nr_gpt2_t **m);
const nr_gpt2_config_t *nr_gpt2_config(const nr_gpt2_t *m);

/* A decoding state for `rows` sequences of up to max_len tokens, attending
 * to n_enc encoder outputs of enc_len positions each. NULL on failure
 * (max_len > n_positions, no memory). */
nr_gpt2_state_t *nr_gpt2_state_new(const nr_gpt2_t *m, int rows, int max_len, int n_enc, int enc_len);
void nr_gpt2_state_destroy(nr_gpt2_state_t **s);

/* Computes every layer's cross-attention K/V from enc [n_enc, enc_len, D]
 * (backend memory) and sets which encoder output each row attends to
 * (enc_index[rows], host; NULL: row r uses r). Resets the cache length to 0
 * and the batch to all rows. */
int nr_gpt2_set_encoder(const nr_gpt2_t *m, nr_gpt2_state_t *s, const float *enc, const int *enc_index);

/* Runs n_tok new tokens per row (ids [rows, n_tok], host) at positions
 * len .. len+n_tok-1, appends them to the cache, and writes logits to the
 * host buffer `logits`: [rows, n_tok, vocab] when all_logits, else only the
 * last token's [rows, vocab]. Returns 0, NR_EINVAL (bad id, cache full). */
int nr_gpt2_step(const nr_gpt2_t *m, nr_gpt2_state_t *s, const int *ids, int n_tok, float *logits, int all_logits);

/* Beam reordering and shrinking: keeps new_rows rows (new_rows <= rows),
 * row r becoming old row src[r] (host array) with its encoder index; the
 * state then has new_rows rows, so finished captions leave the batch. */
int nr_gpt2_select(const nr_gpt2_t *m, nr_gpt2_state_t *s, const int *src, int new_rows);

/* The model as a decoder for models/generate.h (vocab_size, n_positions). */
nr_decoder_t nr_gpt2_decoder(const nr_gpt2_t *m);

#endif
