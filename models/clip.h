/* CLIP-style pre-LN vision towers, in two tensor layouts:
 *   NR_VISION_CLIP: transformers' CLIPVisionTransformer, as GIT's image
 *     encoder GitVisionModel uses it: class embedding + patch conv without
 *     bias + position embedding, pre_layrnorm, pre-LN layers (layer_norm1,
 *     self_attn q_proj/k_proj/v_proj/out_proj, layer_norm2, mlp fc1 ->
 *     activation -> fc2), post_layernorm over every position;
 *   NR_VISION_BLIP: BlipVisionModel (models/blip/modeling_blip.py): the same
 *     layers without pre_layrnorm, the patch conv with a bias, attention as
 *     one fused `self_attn.qkv` Linear and `self_attn.projection`;
 *   NR_VISION_SIGLIP: SiglipVisionTransformer (models/siglip/modeling_siglip.py,
 *     PaliGemma's vision_tower): CLIP's layer names, the patch conv with a
 *     bias, no class token (one position per patch), no pre_layrnorm; the
 *     pooling head is not loaded (PaliGemma reads last_hidden_state).
 * The model is shared and read-only. */
#ifndef NR_MODELS_CLIP_H
#define NR_MODELS_CLIP_H

#include <stddef.h>

#include "models/backend.h"
#include "models/config.h"
#include "models/io/checkpoint.h"

typedef struct nr_clip_vision nr_clip_vision_t;

typedef enum { NR_VISION_CLIP = 0, NR_VISION_BLIP = 1, NR_VISION_SIGLIP = 2 } nr_vision_layout_t;

/* Loads prefix + the layout's names ("git.image_encoder.vision_model." in a
 * GIT checkpoint, "vision_model." in a BLIP one), checking shapes against
 * cfg (qkv_bias is ignored: both always have biases). Returns 0, NR_EMODEL
 * (tensor named), NR_ENOMEM. */
int nr_clip_vision_load(const nr_vit_config_t *cfg, const nr_checkpoint_t *ck, const char *prefix,
                        nr_vision_layout_t layout, nr_backend_t *be, nr_clip_vision_t **out, char *err,
                        size_t errlen);
void nr_clip_vision_destroy(nr_clip_vision_t **m);

/* pixels [batch, C, H, W] -> out [batch, 1 + (H/P)^2, D] (last_hidden_state,
 * post_layernorm applied), both backend memory. Returns 0, NR_EINVAL,
 * NR_ENOMEM or a backend error. Thread-safe (scratch per call). */
int nr_clip_vision_forward(const nr_clip_vision_t *m, const float *pixels, int batch, float *out);

#endif
