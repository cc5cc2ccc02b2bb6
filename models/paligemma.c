/* PaliGemma (model_type paligemma, google/paligemma-3b-*): the family
 * "paligemma". Vision side: SigLIP's vision tower (models/clip.h,
 * NR_VISION_SIGLIP) and multi_modal_projector.linear, divided by
 * sqrt(text hidden_size) as get_image_features does in transformers v4.46,
 * so the states frame carries the image features [image_seq_length,
 * hidden_size] (what replaces the <image> tokens' embeddings). Text side:
 * the Gemma decoder (models/gemma.h) over those features, <bos>, the
 * prompt and "\n" (PaliGemmaProcessor's input), then the caption. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/error.h"
#include "models/clip.h"
#include "models/family.h"
#include "models/gemma.h"
#include "models/weights.h"

#define I64(x) ((int64_t)(x))

typedef struct {
    nr_model_config_t cfg;
    nr_backend_t *be;
    nr_clip_vision_t *siglip; /* vision_tower.vision_model */
    nr_wstore_t pws;          /* multi_modal_projector.linear */
    float *proj_w, *proj_b;   /* (D, Dv) (a matmul key when mapped BF16), (D) */
    nr_gemma_t *dec;          /* language_model */
} s_pali_t;

static void s_destroy(void **self) {
    s_pali_t *f = *self;
    if (!f) return;
    nr_clip_vision_destroy(&f->siglip);
    if (f->pws.be) nr_wstore_free(&f->pws);
    nr_gemma_destroy(&f->dec);
    free(f);
    *self = NULL;
}

static int s_load(const nr_model_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be, int load_encoder,
                  int load_decoder, void **out, char *err, size_t errlen) {
    *out = NULL;
    s_pali_t *f = calloc(1, sizeof(*f));
    if (!f) return nr_seterr(err, errlen, NR_ENOMEM, "paligemma: out of memory");
    f->cfg = *cfg;
    f->be = be;
    void *self = f;
    int rc = 0;
    const nr_paligemma_config_t *p = &cfg->paligemma;
    const int Dv = p->vision.hidden_size, D = p->hidden_size;
    if (load_encoder) {
        if ((rc = nr_clip_vision_load(&p->vision, ck, "vision_tower.vision_model.", NR_VISION_SIGLIP, be, &f->siglip,
                                      err, errlen)))
            goto fail;
        f->pws = (nr_wstore_t){.be = be, .ck = ck, .prefix = "multi_modal_projector.linear."};
        if ((rc = nr_wstore_get_matmul(&f->pws, "weight", &f->proj_w, err, errlen, I64(D), I64(Dv), cfg->states_seq)) ||
            (rc = nr_wstore_get(&f->pws, "bias", &f->proj_b, err, errlen, 1, I64(D))))
            goto fail;
    }
    if (load_decoder && (rc = nr_gemma_load(p, ck, "language_model.", be, &f->dec, err, errlen))) goto fail;
    *out = f;
    return 0;
fail:
    s_destroy(&self);
    return rc;
}

/* SigLIP's last_hidden_state -> projector -> / sqrt(hidden_size). */
static int s_encode(const void *self, const float *pixels, int n, float *states) {
    const s_pali_t *f = self;
    if (!f->siglip) return NR_EUNSUPPORTED;
    const nr_backend_ops_t *o = f->be->ops;
    void *ctx = f->be->ctx;
    const int Dv = f->cfg.paligemma.vision.hidden_size, D = f->cfg.paligemma.hidden_size, M = n * f->cfg.states_seq;
    float *vis = o->alloc(ctx, (size_t)M * Dv * sizeof(float));
    if (!vis) return NR_ENOMEM;
    int rc = nr_clip_vision_forward(f->siglip, pixels, n, vis);
    if (rc == 0) rc = o->matmul(ctx, states, D, vis, Dv, f->proj_w, NR_W_OUT_IN, M, D, Dv, 0);
    if (rc == 0) rc = o->add_bias(ctx, states, f->proj_b, M, D);
    /* v4.46 divides by hidden_size ** 0.5: a multiplication by the inverse here (within an ulp) */
    if (rc == 0) rc = o->scale(ctx, states, (size_t)M * D, (float)(1.0 / sqrt((double)D)));
    if (rc == 0) rc = o->synchronize(ctx);
    o->free(ctx, vis);
    return rc;
}

static int s_decoder_input(const void *self, const float *states, int n, float **out) {
    const s_pali_t *f = self;
    (void)states;
    (void)n;
    *out = NULL; /* the frame already holds the image features */
    return f->dec ? 0 : NR_EUNSUPPORTED;
}

static nr_decoder_t s_decoder(const void *self) {
    const s_pali_t *f = self;
    nr_decoder_t d = {0};
    if (f->dec) d = nr_gemma_decoder(f->dec);
    return d;
}

const nr_family_ops_t nr_family_paligemma = {.name = "paligemma",
                                             .model_type = "paligemma",
                                             .load = s_load,
                                             .destroy = s_destroy,
                                             .encode = s_encode,
                                             .decoder_input = s_decoder_input,
                                             .decoder = s_decoder};
