/* The benchmarks' models: a random checkpoint with the sizes of
 * nlpconnect/vit-gpt2-image-captioning (ViT-B/16 encoder, GPT-2 decoder
 * with cross-attention), built in memory as safetensors bytes, all F32
 * (no file, no download). Shared by bench_models and bench_cuda. */
#ifndef NR_BENCH_RANDOM_WEIGHTS_H
#define NR_BENCH_RANDOM_WEIGHTS_H

#include <stddef.h>

#include "models/config.h"
#include "models/io/checkpoint.h"

/* The next number of the process's one random sequence (xorshift64,
 * uniform with std about 0.02): the weights take the first ones, so a
 * program that draws its inputs after them gets the same inputs each run. */
float nr_bench_rand(void);

/* Parses the checkpoint's config into *cfg, builds the random weights in
 * *buf (*size bytes; the caller frees it after closing *ck) and opens them
 * as *ck. Returns 0, or an NR_E* code with a message in err. */
int nr_bench_random_vit_gpt2(nr_model_config_t *cfg, unsigned char **buf, size_t *size, nr_checkpoint_t **ck,
                             char *err, size_t errlen);

/* The same for microsoft/git-base-coco's sizes (model_type git: CLIP
 * ViT-B/16 at 224 px, visual projection, 6-layer BERT-style decoder over
 * [197 image tokens; text], vocab 30522; 708 MB F32) with its tensor names. */
int nr_bench_random_git(nr_model_config_t *cfg, unsigned char **buf, size_t *size, nr_checkpoint_t **ck, char *err,
                        size_t errlen);

/* The same for Salesforce/blip-image-captioning-base's sizes (model_type
 * blip: ViT-B/16 at 384 px, 577 tokens; BERT-base text decoder, 12 layers
 * with cross-attention, vocab 30524; about 0.99 GB F32 with the head's
 * decoder weight stored) with the tensor names models/blip.c reads. */
int nr_bench_random_blip(nr_model_config_t *cfg, unsigned char **buf, size_t *size, nr_checkpoint_t **ck, char *err,
                         size_t errlen);

/* Writes the GIT-base (family "git") or BLIP-base ("blip") checkpoint
 * above to dir as one published in bfloat16: config.json and
 * model.safetensors with every tensor rounded to BF16. For measuring what
 * a BF16 checkpoint keeps resident (bench_git --write-bf16, --dir). */
int nr_bench_write_bf16(const char *family, const char *dir, char *err, size_t errlen);

/* The same for google/paligemma-3b-mix-224's shapes (SigLIP-So400m/14 at
 * 224 px: 27 layers of 1152, 256 image tokens; projector to 2048; Gemma-2B
 * layers: hidden 2048, 8 heads of 256, 1 KV head, MLP 16384) with
 * text_layers of Gemma's 18 layers and a vocabulary of `vocab` (257216 in
 * the model): 1.7 GB for the tower plus 0.44 GB per text layer, F32. */
int nr_bench_random_paligemma(int text_layers, int vocab, nr_model_config_t *cfg, unsigned char **buf, size_t *size,
                              nr_checkpoint_t **ck, char *err, size_t errlen);

/* A /proc/self/status field in MB (VmRSS, RssFile, VmHWM), -1 when unknown:
 * what the benchmarks report as the memory a model holds. */
long nr_bench_status_mb(const char *key);

#endif
