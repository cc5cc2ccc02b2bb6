/* Captioner: a Hugging Face checkpoint folder of any registered family
 * (models/family.h, picked by config.json's model_type: ViT-GPT2's
 * vision-encoder-decoder, ...) loaded once, then
 *   vision stage: pixels (or image bytes) -> encoder states (-> states frame
 *                 naming the family, models/states.h)
 *   text stage:   encoder states (or frame) -> token ids (-> caption text)
 * Every entry point takes a batch of n images / captions; n = 1 is the
 * plain case. The captioner is read-only after load: several threads may
 * call it at once (each call has its own scratch memory). */
#ifndef NR_MODELS_CAPTIONER_H
#define NR_MODELS_CAPTIONER_H

#include <stddef.h>
#include <stdint.h>

#include "models/config.h"
#include "models/image.h"

typedef struct nr_captioner nr_captioner_t;

typedef struct {
    const char *device; /* "cpu" (default) or "cuda:N" */
    int num_threads;    /* CPU threads; <= 0 all cores (default 0) */
    int load_encoder;   /* load the vision side (default 1; a text-only worker sets 0) */
    int load_decoder;   /* load the decoder + tokenizer (default 1; a vision-only worker sets 0) */
    size_t max_image_bytes;  /* encode_images: largest image input (0 = the image module's default) */
    uint64_t max_image_pixels; /* encode_images: width*height limit (0 = the image module's default) */
} nr_captioner_params_t;

nr_captioner_params_t nr_captioner_default_params(void);

/* Loads dir/config.json, generation_config.json (optional), the weights
 * in whichever form the folder holds them (nr_checkpoint_open_dir:
 * safetensors, sharded or not, else pytorch_model.bin) and, for the
 * decoder, the tokenizer files. Returns 0 and *out, or NR_EMODEL (file and
 * tensor named in err), NR_EDEVICE, NR_ENOMEM, NR_EINVAL. */
int nr_captioner_load(const char *dir, const nr_captioner_params_t *params, nr_captioner_t **out, char *err,
                      size_t errlen);
void nr_captioner_destroy(nr_captioner_t **c);

/* Model name for results ("vit-gpt2-image-captioning": the folder's base name). */
const char *nr_captioner_name(const nr_captioner_t *c);
const nr_model_config_t *nr_captioner_config(const nr_captioner_t *c);
/* The family's registry name ("vit-gpt2"): what states frames carry. */
const char *nr_captioner_family(const nr_captioner_t *c);
/* The decoder's position limit: the largest max_length it takes. */
int nr_captioner_max_positions(const nr_captioner_t *c);
/* Generation settings from the checkpoint (generation_config.json over
 * config.json over transformers' defaults): copy, change fields, pass on. */
nr_gen_config_t nr_captioner_gen_defaults(const nr_captioner_t *c);
/* Vision stage output shape per image: seq and hidden ([197, 768] for ViT-B/16). */
void nr_captioner_states_shape(const nr_captioner_t *c, int *seq, int *hidden);
/* Input shape per image: channels, height, width (3, 224, 224). */
void nr_captioner_pixels_shape(const nr_captioner_t *c, int *channels, int *height, int *width);

/* Vision: pixels [n, C, H, W] (host floats, already preprocessed) ->
 * states [n, seq, hidden] (host). Returns 0, NR_EINVAL, NR_EUNSUPPORTED
 * (encoder not loaded), NR_ENOMEM, NR_EDEVICE. */
int nr_captioner_encode(const nr_captioner_t *c, const float *pixels, int n, float *states, char *err,
                        size_t errlen);

/* Vision from image bytes (JPEG/PNG/WebP): decode + preprocess with the
 * checkpoint's preprocessor_config.json, then encode, for n images at once.
 * status[i] gets 0 or the image's own error (NR_ENOTIMAGE, NR_EIMAGE,
 * NR_EIMAGEBOMB ...); states of failed images are left zero. Returns 0 when
 * the batch ran (check status[]), else an error for the whole call
 * (NR_EUNSUPPORTED when built without the image module). */
int nr_captioner_encode_images(const nr_captioner_t *c, const void *const *bytes, const size_t *sizes, int n,
                               float *states, int *status, char *err, size_t errlen);
/* The same with pages[i] the page of image i (a multi-page TIFF; 0 = the
 * first, what every other format has); pages NULL: all 0. */
int nr_captioner_encode_pages(const nr_captioner_t *c, const void *const *bytes, const size_t *sizes,
                              const int *pages, int n, float *states, int *status, char *err, size_t errlen);

/* The same, calling seen(arg, i, img) with image i once it is decoded
 * (upright RGB, models/image.h), before preprocessing: the vision worker
 * makes its thumbnail there without decoding twice. seen may be NULL. */
typedef void (*nr_captioner_seen_fn)(void *arg, int i, const nr_image_t *img);
int nr_captioner_encode_seen(const nr_captioner_t *c, const void *const *bytes, const size_t *sizes,
                             const int *pages, int n, nr_captioner_seen_fn seen, void *arg, float *states,
                             int *status, char *err, size_t errlen);

/* Text: states [n, seq, hidden] (host) -> ids. ids holds n * gen->max_length
 * ints: caption i at ids + i*max_length, start token first, eos included
 * when generated (as transformers returns them); lens[i] its count.
 * gen NULL: checkpoint defaults. Returns 0, NR_EOPTION (bad settings, text
 * in err), NR_EUNSUPPORTED (decoder not loaded), NR_ENOMEM, NR_EDEVICE. */
int nr_captioner_generate(const nr_captioner_t *c, const float *states, int n, const nr_gen_config_t *gen, int *ids,
                          int *lens, char *err, size_t errlen);

/* What the decoder reads: states [n, seq, hidden] (host, the vision
 * stage's output, as frames carry it) -> out [n, seq, dec_hidden] (host):
 * for ViT-GPT2 through the checkpoint's enc_to_dec_proj (torch Linear), or
 * a copy when it has none or the family has no such step. nr_captioner_generate / _caption apply it themselves; the
 * text side owns it, so frames stay the encoder's states. Returns 0,
 * NR_EINVAL, NR_EUNSUPPORTED (decoder not loaded), NR_ENOMEM, NR_EDEVICE. */
int nr_captioner_project(const nr_captioner_t *c, const float *states, int n, float *out, char *err, size_t errlen);

/* Text with detokenization: captions[i] gets a new UTF-8 string (caller
 * frees with free()), special tokens skipped and spaces cleaned up as
 * transformers' batch_decode(skip_special_tokens=True) then strip();
 * n_tokens[i] (may be NULL) the number of generated tokens. Same errors,
 * plus NR_EUNSUPPORTED when built without the tokenizer module. */
int nr_captioner_caption(const nr_captioner_t *c, const float *states, int n, const nr_gen_config_t *gen,
                         char **captions, int *n_tokens, char *err, size_t errlen);

/* A text prompt for conditional captioning (BLIP: "a picture of") -> the
 * ids that go in nr_gen_config_t.prompt_ids: the checkpoint's WordPiece
 * encoding without [CLS] / [SEP], as BlipForConditionalGeneration.generate()
 * uses the processor's input_ids (its [CLS] becomes the start token [DEC],
 * its [SEP] is dropped). Captions then start with the prompt, as
 * transformers decodes them. PaliGemma ("caption en"): the Gemma
 * tokenizer's encoding of the prompt + "\n" (PaliGemmaProcessor; <bos> is
 * the start token); its captions are the tokens after the prompt, as the
 * model card decodes them. *ids is new (free()), *n its count (0 for an
 * empty prompt: the same as none). Returns 0, NR_EUNSUPPORTED (a family
 * without prompts, or the decoder not loaded), NR_ETEXT (invalid UTF-8),
 * NR_EOPTION (more ids than max_positions - 2), NR_ENOMEM. */
int nr_captioner_prompt_ids(const nr_captioner_t *c, const char *text, int **ids, int *n, char *err, size_t errlen);

/* Languages (PaliGemma's "caption <language>" prompts). A language code
 * here: 2-3 lower-case letters, then "-" subtags of 2-8 letters or digits
 * ("en", "es", "pt-BR", "zh-TW"), at most NR_CAPTIONER_LANGUAGE_MAX bytes. */
#define NR_CAPTIONER_LANGUAGE_MAX 16
/* 1 when the family captions in a language it is asked for (paligemma). */
int nr_captioner_takes_language(const nr_captioner_t *c);
/* 1 when lang is such a code. */
int nr_captioner_language_valid(const char *lang);
/* The prompt text a job decodes with (then nr_captioner_prompt_ids):
 * `prompt` when given (non-empty); else, for a family that takes a
 * language, "caption <language>" ("caption en" without one); else none
 * (out ""). Returns 0, NR_EUNSUPPORTED (a language for a family without
 * languages: the family named in err), NR_EOPTION (a language that is no
 * code, or a prompt of outlen bytes or more). */
int nr_captioner_job_prompt(const nr_captioner_t *c, const char *prompt, const char *language, char *out,
                            size_t outlen, char *err, size_t errlen);

/* One image's states [seq, hidden] -> a new version 2 ("NRS2") frame
 * naming this model's family (models/states.h), F32. Returns 0, NR_ENOMEM. */
int nr_captioner_states_to_frame(const nr_captioner_t *c, const float *states, unsigned char **frame, size_t *len);
/* A frame -> states [seq, hidden] written to `states` (host, seq*hidden
 * floats), checking the frame is valid, names this model's family (a
 * version 1 frame counts as vit-gpt2) and matches its shape ([seq, hidden]
 * or [1, seq, hidden]). Returns 0 or NR_EPROTO (reason in err: the frame's
 * family and this model's, or both shapes). */
int nr_captioner_frame_to_states(const nr_captioner_t *c, const void *frame, size_t len, float *states, char *err,
                                 size_t errlen);

#endif
