/* Gemma (transformers' GemmaForCausalLM, as PaliGemma's language_model):
 * the text decoder of the PaliGemma family as an nr_decoder_t. Embeddings
 * scaled by sqrt(hidden_size); per layer RMSNorm (x * (1 + w)) ->
 * grouped-query self-attention with rotary embeddings (rotate-half, the
 * config's theta, 1-indexed positions as PaliGemma counts them) -> residual,
 * RMSNorm -> GeGLU MLP (down(gelu_tanh(gate(x)) * up(x))) -> residual;
 * final RMSNorm; lm_head tied to the embeddings.
 *
 * PaliGemma's prefix-LM: the image tokens and the first step's tokens
 * (<bos>, the prompt, "\n": what models/generate.h feeds at once) attend
 * to each other in both directions; every later token attends causally.
 * The image tokens are set_encoder's `enc`: the image features of
 * get_image_features [n_enc, image_seq_length, hidden_size] (backend
 * memory, kept alive by the caller until the state is reset or freed). */
#ifndef NR_MODELS_GEMMA_H
#define NR_MODELS_GEMMA_H

#include <stddef.h>

#include "models/backend.h"
#include "models/config.h"
#include "models/decoder.h"
#include "models/io/checkpoint.h"

typedef struct nr_gemma nr_gemma_t;

/* Loads prefix + "model.embed_tokens.weight", "model.layers.N.*",
 * "model.norm.weight" with cfg's text sizes (prefix "language_model." in a
 * PaliGemma checkpoint). Returns 0, NR_EMODEL (tensor named), NR_ENOMEM. */
int nr_gemma_load(const nr_paligemma_config_t *cfg, const nr_checkpoint_t *ck, const char *prefix, nr_backend_t *be,
                  nr_gemma_t **out, char *err, size_t errlen);
void nr_gemma_destroy(nr_gemma_t **m);

/* The decoder for models/generate.h: enc_len must be cfg->image_seq_length;
 * max_positions = max_position_embeddings - image_seq_length text tokens. */
nr_decoder_t nr_gemma_decoder(const nr_gemma_t *m);

#endif
