/* The captioner families and their registry. A family is one kind of
 * checkpoint (config.json's model_type) wired from the engine's blocks in
 * models/<family>.c: its config (models/config.h), its weights and its run
 * state. The captioner (models/captioner.h) picks the family by model_type
 * and calls only this table, so the workers and the broker do not change
 * when a family is added: write models/<family>.c, parse its config.json in
 * models/config.c, add it to s_families in models/family.c.
 *
 * Stages, for every family:
 *   vision: pixels [n, C, H, W] -> states [n, states_seq, states_hidden]
 *           (what the vision worker sends in a states frame that names the
 *           family and the shape: models/states.h)
 *   text:   states -> the decoder's input (decoder_input) -> nr_decoder_t
 *           (models/decoder.h) run by models/generate.h.
 * Sizes come from nr_model_config_t's family-neutral fields. All pointers
 * to activations are backend memory; errors are negative NR_E* codes. */
#ifndef NR_MODELS_FAMILY_H
#define NR_MODELS_FAMILY_H

#include <stddef.h>

#include "models/backend.h"
#include "models/config.h"
#include "models/decoder.h"
#include "models/io/checkpoint.h"

typedef struct nr_family_ops {
    const char *name;       /* "vit-gpt2", "git", "blip", "paligemma": in states frames, logs and docs */
    const char *model_type; /* config.json's model_type it serves */
    /* Loads the encoder side and/or the decoder side from ck into *out (the
     * family's own struct). Returns 0, NR_EMODEL (tensor named in err),
     * NR_ENOMEM. The checkpoint and backend must outlive the family. */
    int (*load)(const nr_model_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be, int load_encoder,
                int load_decoder, void **out, char *err, size_t errlen);
    void (*destroy)(void **self);
    /* Vision: pixels [n, C, H, W] -> states [n, S, D]. NR_EUNSUPPORTED when
     * the encoder side is not loaded. Thread-safe. */
    int (*encode)(const void *self, const float *pixels, int n, float *states);
    /* Text: states [n, S, D] -> what the decoder reads, [n, S, Dd] in a new
     * backend buffer (*out), or *out NULL when the decoder reads the states
     * as they are. NR_EUNSUPPORTED when the decoder is not loaded. */
    int (*decoder_input)(const void *self, const float *states, int n, float **out);
    /* The decoder for models/generate.h; .ops NULL when not loaded. */
    nr_decoder_t (*decoder)(const void *self);
} nr_family_ops_t;

/* The families, each defined in its models/<family>.c. */
extern const nr_family_ops_t nr_family_vit_gpt2; /* vision-encoder-decoder: models/vit_gpt2.c */
extern const nr_family_ops_t nr_family_git;      /* git: models/git.c */
extern const nr_family_ops_t nr_family_blip;     /* blip: models/blip.c */
extern const nr_family_ops_t nr_family_paligemma; /* paligemma: models/paligemma.c */

/* The family serving a config.json model_type, or NULL. */
const nr_family_ops_t *nr_family_find(const char *model_type);
/* The family of a registry name ("vit-gpt2", "git", "blip"), or NULL. */
const nr_family_ops_t *nr_family_by_name(const char *name);
/* The registered model_types, comma-separated, for messages. */
const char *nr_family_model_types(void);

#endif
