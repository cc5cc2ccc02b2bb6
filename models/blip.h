/* BLIP (BlipForConditionalGeneration, Salesforce/blip-image-captioning-base
 * and -large): the text decoder block, transformers' BlipTextLMHeadModel as
 * a captioner runs it: BERT embeddings (word + position, LayerNorm), post-LN
 * layers of causal self-attention, cross-attention to the image states and
 * a feed-forward (models/bert.h), then the prediction head
 * cls.predictions (transform dense -> act -> LayerNorm, decoder Linear +
 * bias). Self-attention keys/values are cached per row; the cross-attention
 * keys/values are computed once per caption (set_encoder). The family
 * wiring (BLIP's vision tower, models/clip.h NR_VISION_BLIP, + this decoder)
 * is models/blip.c's nr_family_blip. */
#ifndef NR_MODELS_BLIP_H
#define NR_MODELS_BLIP_H

#include <stddef.h>

#include "models/backend.h"
#include "models/config.h"
#include "models/decoder.h"
#include "models/io/checkpoint.h"

typedef struct nr_blip_decoder nr_blip_decoder_t;

/* Loads text_decoder.bert.embeddings.*, text_decoder.bert.encoder.layer.N.*
 * (attention, crossattention with key/value reading cfg->vision.hidden_size
 * wide states, intermediate, output) and text_decoder.cls.predictions.*:
 * decoder.weight, or the word embeddings when the file has none and
 * cfg->tie_word_embeddings; bias, or decoder.bias when the file has only
 * that. Returns 0, NR_EMODEL (tensor named), NR_ENOMEM. */
int nr_blip_decoder_load(const nr_blip_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be,
                         nr_blip_decoder_t **out, char *err, size_t errlen);
void nr_blip_decoder_destroy(nr_blip_decoder_t **m);

/* The decoder for models/generate.h: enc is the vision model's
 * last_hidden_state [n_enc, enc_len, vision hidden_size]; vocab_size,
 * max_position_embeddings (text tokens, [DEC] and any prompt included). */
nr_decoder_t nr_blip_decoder(const nr_blip_decoder_t *m);

#endif
