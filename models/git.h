/* GIT (GitForCausalLM, microsoft/git-base-coco): the text decoder block,
 * a BERT-style post-LN transformer over [image tokens; text tokens] with
 * GIT's mask (image tokens see image tokens only; text tokens see every
 * image token and earlier text), word + position embeddings with a layer
 * norm, and the `output` Linear to the vocabulary. The image tokens' keys
 * and values are computed once per caption (set_encoder); a decode step
 * then costs only the text tokens. The family wiring (CLIP tower + visual
 * projection + this decoder) is models/git.c's nr_family_git. */
#ifndef NR_MODELS_GIT_H
#define NR_MODELS_GIT_H

#include <stddef.h>

#include "models/backend.h"
#include "models/config.h"
#include "models/decoder.h"
#include "models/io/checkpoint.h"

typedef struct nr_git_decoder nr_git_decoder_t;

/* Loads git.embeddings.*, git.encoder.layer.N.* and output.* (output.weight
 * is git.embeddings.word_embeddings.weight when cfg->tie_word_embeddings).
 * Returns 0, NR_EMODEL (tensor named), NR_ENOMEM. */
int nr_git_decoder_load(const nr_git_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be,
                        nr_git_decoder_t **out, char *err, size_t errlen);
void nr_git_decoder_destroy(nr_git_decoder_t **m);

/* The decoder for models/generate.h: enc is the projected image tokens
 * [n_enc, enc_len, hidden_size]; set_encoder needs every encoder output
 * used by at least one row (NR_EINVAL otherwise); vocab_size,
 * max_position_embeddings (text tokens). */
nr_decoder_t nr_git_decoder(const nr_git_decoder_t *m);

#endif
