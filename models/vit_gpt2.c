/* The ViT-GPT2 family (model_type vision-encoder-decoder: a ViT encoder, a
 * GPT-2 decoder with cross-attention, VisionEncoderDecoderModel's optional
 * enc_to_dec_proj): models/vit.h + models/gpt2.h wired as
 * transformers' modeling_vision_encoder_decoder.py does. The states frame
 * carries the encoder's own states; the projection belongs to the text side. */
#include <stdint.h>
#include <stdlib.h>

#include "common/error.h"
#include "models/family.h"
#include "models/gpt2.h"
#include "models/vit.h"
#include "models/weights.h"

typedef struct {
    nr_model_config_t cfg;
    nr_backend_t *be;
    nr_vit_t *vit;           /* encoder side */
    nr_gpt2_t *gpt2;         /* decoder side */
    nr_wstore_t pws;         /* enc_to_dec_proj's weights, when the checkpoint has it */
    float *proj_w, *proj_b;  /* (Dd, De) torch Linear, (Dd) */
} s_vit_gpt2_t;

static void s_destroy(void **self) {
    s_vit_gpt2_t *f = *self;
    if (!f) return;
    nr_vit_destroy(&f->vit);
    nr_gpt2_destroy(&f->gpt2);
    if (f->pws.be) nr_wstore_free(&f->pws);
    free(f);
    *self = NULL;
}

static int s_load(const nr_model_config_t *cfg, const nr_checkpoint_t *ck, nr_backend_t *be, int load_encoder,
                  int load_decoder, void **out, char *err, size_t errlen) {
    *out = NULL;
    s_vit_gpt2_t *f = calloc(1, sizeof(*f));
    if (!f) return nr_seterr(err, errlen, NR_ENOMEM, "vit-gpt2: out of memory");
    f->cfg = *cfg;
    f->be = be;
    void *self = f;
    int rc = 0;
    if (load_encoder && (rc = nr_vit_load(&cfg->vit, ck, "encoder.", be, &f->vit, err, errlen))) goto fail;
    if (load_decoder && (rc = nr_gpt2_load(&cfg->gpt2, ck, "decoder.", be, &f->gpt2, err, errlen))) goto fail;
    if (load_decoder && cfg->enc_to_dec_proj) { /* part of the text side: the frame carries encoder states */
        const int De = cfg->vit.hidden_size, Dd = cfg->gpt2.n_embd;
        f->pws = (nr_wstore_t){.be = be, .ck = ck, .prefix = ""};
        if ((rc = nr_wstore_get_matmul(&f->pws, "enc_to_dec_proj.weight", &f->proj_w, err, errlen, (int64_t)Dd,
                                       (int64_t)De, cfg->states_seq)) ||
            (rc = nr_wstore_get(&f->pws, "enc_to_dec_proj.bias", &f->proj_b, err, errlen, 1, (int64_t)Dd)))
            goto fail;
    }
    *out = f;
    return 0;
fail:
    s_destroy(&self);
    return rc;
}

static int s_encode(const void *self, const float *pixels, int n, float *states) {
    const s_vit_gpt2_t *f = self;
    if (!f->vit) return NR_EUNSUPPORTED;
    return nr_vit_forward(f->vit, pixels, n, states);
}

/* enc_to_dec_proj (torch Linear) over n encoder outputs. */
static int s_decoder_input(const void *self, const float *states, int n, float **out) {
    const s_vit_gpt2_t *f = self;
    *out = NULL;
    if (!f->gpt2) return NR_EUNSUPPORTED;
    if (!f->proj_w) return 0;
    const int De = f->cfg.vit.hidden_size, Dd = f->cfg.gpt2.n_embd, M = n * f->cfg.states_seq;
    float *y = f->be->ops->alloc(f->be->ctx, (size_t)M * Dd * sizeof(float));
    if (!y) return NR_ENOMEM;
    int rc = f->be->ops->matmul(f->be->ctx, y, Dd, states, De, f->proj_w, NR_W_OUT_IN, M, Dd, De, 0);
    if (rc == 0) rc = f->be->ops->add_bias(f->be->ctx, y, f->proj_b, M, Dd);
    if (rc) {
        f->be->ops->free(f->be->ctx, y);
        return rc;
    }
    *out = y;
    return 0;
}

static nr_decoder_t s_decoder(const void *self) {
    const s_vit_gpt2_t *f = self;
    nr_decoder_t d = {0};
    if (f->gpt2) d = nr_gpt2_decoder(f->gpt2);
    return d;
}

const nr_family_ops_t nr_family_vit_gpt2 = {.name = "vit-gpt2",
                                            .model_type = "vision-encoder-decoder",
                                            .load = s_load,
                                            .destroy = s_destroy,
                                            .encode = s_encode,
                                            .decoder_input = s_decoder_input,
                                            .decoder = s_decoder};
