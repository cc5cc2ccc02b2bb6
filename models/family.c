/* The family registry (see family.h): one row per family, picked by
 * config.json's model_type. */
#include "models/family.h"

#include <string.h>

static const nr_family_ops_t *const s_families[] = {&nr_family_vit_gpt2, &nr_family_git, &nr_family_blip,
                                                   &nr_family_paligemma};
#define S_NFAMILIES (sizeof s_families / sizeof *s_families)

const nr_family_ops_t *nr_family_find(const char *model_type) {
    if (!model_type) return NULL;
    for (size_t i = 0; i < S_NFAMILIES; i++)
        if (strcmp(s_families[i]->model_type, model_type) == 0) return s_families[i];
    return NULL;
}

const nr_family_ops_t *nr_family_by_name(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < S_NFAMILIES; i++)
        if (strcmp(s_families[i]->name, name) == 0) return s_families[i];
    return NULL;
}

const char *nr_family_model_types(void) { return "vision-encoder-decoder, git, blip, paligemma"; }
