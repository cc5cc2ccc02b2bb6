/* ViT encoder (google/vit-base-patch16-224-in21k family, as the encoder of a
 * Hugging Face VisionEncoderDecoder): pixels -> hidden states after the final
 * layer norm. The model (config + weights) is shared and read-only. */
#ifndef NR_MODELS_VIT_H
#define NR_MODELS_VIT_H

#include <stddef.h>

#include "models/backend.h"
#include "models/config.h"
#include "models/io/checkpoint.h"

typedef struct nr_vit nr_vit_t;

/* Loads weights named prefix + HF ViT names ("encoder." in a
 * VisionEncoderDecoder file, "" or "vit." alone), checking every shape
 * against cfg. Weights go to backend memory (zero-copy from the mapping for
 * aligned F32 on the CPU; `ck` must then outlive the model). Returns 0,
 * NR_EMODEL (tensor named), NR_ENOMEM. */
int nr_vit_load(const nr_vit_config_t *cfg, const nr_checkpoint_t *ck, const char *prefix, nr_backend_t *be,
                nr_vit_t **out, char *err, size_t errlen);
void nr_vit_destroy(nr_vit_t **m);


/* pixels [batch, C, H, W] and out [batch, seq, D], both in backend memory.
 * Returns 0, NR_EINVAL, NR_ENOMEM or a backend error. Thread-safe for
 * concurrent calls on one model (all scratch is per call). */
int nr_vit_forward(const nr_vit_t *m, const float *pixels, int batch, float *out);

#endif
