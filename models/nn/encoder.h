/* The pre-LN transformer encoder of the vision towers, shared by ViT
 * (models/vit.c) and the CLIP / BLIP towers (models/clip.c), which differ
 * only in tensor names, the patch bias and CLIP's pre-layernorm:
 *   x = patch_embed(pixels) (+ class token, positions); x = LN_pre(x) if any;
 *   per layer: x += Wo attn(Wqkv LN1(x) + bqkv) + bo;
 *              x += W2 act(W1 LN2(x) + b1) + b2;
 *   out = LN_post(x).
 * Weights are backend memory, loaded by the family file under its names. */
#ifndef NR_MODELS_NN_ENCODER_H
#define NR_MODELS_NN_ENCODER_H

#include "models/backend.h"
#include "models/config.h"

typedef struct {
    float *ln1_g, *ln1_b; /* (D) layer norm before attention */
    float *wqkv, *bqkv;   /* (3D, D), (3D) query|key|value fused; bqkv NULL: no bias */
    float *wo, *bo;       /* (D, D), (D) attention output */
    float *ln2_g, *ln2_b; /* (D) layer norm before the MLP */
    float *w1, *b1;       /* (I, D), (I) */
    float *w2, *b2;       /* (D, I), (D) */
} nr_enc_layer_t;

typedef struct {
    float *patch_w, *patch_b; /* (D, C, P, P), (D) */
    float *cls;               /* (D) class token */
    float *pos;               /* (S, D) */
    float *pre_g, *pre_b;     /* (D) layer norm after the embeddings; NULL: none */
    float *post_g, *post_b;   /* (D) final layer norm */
    nr_enc_layer_t *layers;   /* (cfg->num_hidden_layers), owned by the family */
    int seq;                  /* S = 1 + (image_size / patch_size)^2 */
    int gelu_form;            /* the backend gelu op's form for the MLP */
} nr_enc_tower_t;

/* pixels [batch, C, H, W] -> out [batch, S, D] (both backend memory) with
 * cfg's sizes and layer_norm_eps. 0, NR_EINVAL, NR_ENOMEM or a backend
 * error. Thread-safe (scratch per call). */
int nr_enc_tower_forward(const nr_backend_t *be, const nr_vit_config_t *cfg, const nr_enc_tower_t *t,
                         const float *pixels, int batch, float *out);

#endif
