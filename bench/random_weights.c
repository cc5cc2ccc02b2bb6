/* The benchmarks' random checkpoints: ViT-B/16 + GPT-2, GIT-base and BLIP-base (see
 * random_weights.h). */
#include "bench/random_weights.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/io/safetensors.h"
#include "models/tensor.h"

#define S_D 768
#define S_I 3072
#define S_L 12
#define S_V 50257
#define S_SEQ 197

static const char s_config[] =
    "{\"model_type\":\"vision-encoder-decoder\",\"decoder_start_token_id\":50256,\"eos_token_id\":50256,"
    "\"encoder\":{\"model_type\":\"vit\",\"hidden_size\":768,\"num_hidden_layers\":12,\"num_attention_heads\":12,"
    "\"intermediate_size\":3072,\"image_size\":224,\"patch_size\":16,\"num_channels\":3,\"layer_norm_eps\":1e-12,"
    "\"hidden_act\":\"gelu\"},"
    "\"decoder\":{\"model_type\":\"gpt2\",\"n_embd\":768,\"n_layer\":12,\"n_head\":12,\"n_positions\":1024,"
    "\"vocab_size\":50257,\"layer_norm_epsilon\":1e-5,\"activation_function\":\"gelu_new\","
    "\"add_cross_attention\":true}}";


/* microsoft/git-base-coco's config.json, the keys narrator reads (the rest
 * are GitConfig's defaults, which git-base-coco keeps): CLIP ViT-B/16 at
 * 224 px, a 6-layer BERT-base-like decoder, vocab 30522. */
static const char s_git_config[] =
    "{\"model_type\":\"git\",\"hidden_size\":768,\"num_hidden_layers\":6,\"num_attention_heads\":12,"
    "\"intermediate_size\":3072,\"max_position_embeddings\":1024,\"vocab_size\":30522,\"layer_norm_eps\":1e-12,"
    "\"hidden_act\":\"gelu\",\"tie_word_embeddings\":false,\"bos_token_id\":101,\"eos_token_id\":102,"
    "\"pad_token_id\":0,\"vision_config\":{\"hidden_size\":768,\"num_hidden_layers\":12,"
    "\"num_attention_heads\":12,\"intermediate_size\":3072,\"image_size\":224,\"patch_size\":16,"
    "\"num_channels\":3,\"layer_norm_eps\":1e-5,\"hidden_act\":\"quick_gelu\"}}";

/* Salesforce/blip-image-captioning-base's config.json, the keys narrator
 * reads (text_config sets 12 heads over BlipTextConfig's 8): ViT-B/16 at
 * 384 px (577 tokens), BERT-base text decoder with cross-attention in
 * every layer, vocab 30524. */
static const char s_blip_config[] =
    "{\"model_type\":\"blip\",\"vision_config\":{\"hidden_size\":768,\"num_hidden_layers\":12,"
    "\"num_attention_heads\":12,\"intermediate_size\":3072,\"image_size\":384,\"patch_size\":16,"
    "\"num_channels\":3,\"layer_norm_eps\":1e-5,\"hidden_act\":\"gelu\"},"
    "\"text_config\":{\"hidden_size\":768,\"num_hidden_layers\":12,\"num_attention_heads\":12,"
    "\"intermediate_size\":3072,\"max_position_embeddings\":512,\"vocab_size\":30524,"
    "\"encoder_hidden_size\":768,\"layer_norm_eps\":1e-12,\"hidden_act\":\"gelu\",\"is_decoder\":true,"
    "\"bos_token_id\":30522,\"sep_token_id\":102,\"pad_token_id\":0}}";

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
    float fill; /* 0: random, std about 0.02; else this constant */
} s_spec_t;

typedef struct {
    s_spec_t *v;
    size_t n, cap;
} s_specs_t;

static uint64_t s_rng = 0x9E3779B97F4A7C15ull;

float nr_bench_rand(void) {
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return ((float)(s_rng >> 40) * (1.0f / 16777216.0f) - 0.5f) * 0.07f; /* std ~0.02 */
}

static int s_add(s_specs_t *s, const char *name, float fill, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 512;
        s_spec_t *nv = realloc(s->v, nc * sizeof(*nv));
        if (!nv) return NR_ENOMEM;
        s->v = nv;
        s->cap = nc;
    }
    s_spec_t *p = &s->v[s->n++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = a;
    p->shape[1] = b;
    p->shape[2] = c;
    p->shape[3] = d;
    p->fill = fill;
    return 0;
}

/* The encoder layers of a CLIP or SigLIP vision tower under prefix vm:
 * separate q/k/v/out projections and fc1/fc2 with biases, two layer norms. */
static int s_add_vision_layers(s_specs_t *s, const char *vm, int L, int64_t D, int64_t I) {
    char n[192];
    int rc = 0;
    const char *vl[][3] = {{"self_attn.q_proj", "D", "D"}, {"self_attn.k_proj", "D", "D"},
                           {"self_attn.v_proj", "D", "D"}, {"self_attn.out_proj", "D", "D"},
                           {"mlp.fc1", "I", "D"},          {"mlp.fc2", "D", "I"}};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 6; k++) {
            int64_t o = vl[k][1][0] == 'I' ? I : D, in = vl[k][2][0] == 'I' ? I : D;
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s.weight", vm, l, vl[k][0]);
            rc |= s_add(s, n, 0, 2, o, in, 0, 0);
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s.bias", vm, l, vl[k][0]);
            rc |= s_add(s, n, 0, 1, o, 0, 0, 0);
        }
        const char *lns[] = {"layer_norm1", "layer_norm2"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s.weight", vm, l, lns[k]);
            rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s.bias", vm, l, lns[k]);
            rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
        }
    }
    return rc;
}

/* Every tensor of the checkpoint, with HF names, in file order. */
static int s_specs_vit_gpt2(s_specs_t *s) {
    const int D = S_D, I = S_I;
    char n[160];
    int rc = 0;
    rc |= s_add(s, "encoder.embeddings.patch_embeddings.projection.weight", 0, 4, D, 3, 16, 16);
    rc |= s_add(s, "encoder.embeddings.patch_embeddings.projection.bias", 0, 1, D, 0, 0, 0);
    rc |= s_add(s, "encoder.embeddings.cls_token", 0, 3, 1, 1, D, 0);
    rc |= s_add(s, "encoder.embeddings.position_embeddings", 0, 3, 1, S_SEQ, D, 0);
    rc |= s_add(s, "encoder.layernorm.weight", 1, 1, D, 0, 0, 0);
    rc |= s_add(s, "encoder.layernorm.bias", 0, 1, D, 0, 0, 0);
    const char *vl[][3] = {{"attention.attention.query", "D", "D"}, {"attention.attention.key", "D", "D"},
                           {"attention.attention.value", "D", "D"}, {"attention.output.dense", "D", "D"},
                           {"intermediate.dense", "I", "D"},         {"output.dense", "D", "I"}};
    for (int l = 0; l < S_L; l++) {
        for (int k = 0; k < 6; k++) {
            int64_t o = vl[k][1][0] == 'I' ? I : D, in = vl[k][2][0] == 'I' ? I : D;
            snprintf(n, sizeof n, "encoder.encoder.layer.%d.%s.weight", l, vl[k][0]);
            rc |= s_add(s, n, 0, 2, o, in, 0, 0);
            snprintf(n, sizeof n, "encoder.encoder.layer.%d.%s.bias", l, vl[k][0]);
            rc |= s_add(s, n, 0, 1, o, 0, 0, 0);
        }
        const char *lns[] = {"layernorm_before", "layernorm_after"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "encoder.encoder.layer.%d.%s.weight", l, lns[k]);
            rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "encoder.encoder.layer.%d.%s.bias", l, lns[k]);
            rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
        }
    }
    rc |= s_add(s, "decoder.transformer.wte.weight", 0, 2, S_V, D, 0, 0);
    rc |= s_add(s, "decoder.transformer.wpe.weight", 0, 2, 1024, D, 0, 0);
    rc |= s_add(s, "decoder.transformer.ln_f.weight", 1, 1, D, 0, 0, 0);
    rc |= s_add(s, "decoder.transformer.ln_f.bias", 0, 1, D, 0, 0, 0);
    struct {
        const char *n;
        int64_t in, out;
    } gl[] = {{"attn.c_attn", D, 3 * D},           {"attn.c_proj", D, D},           {"crossattention.q_attn", D, D},
              {"crossattention.c_attn", D, 2 * D}, {"crossattention.c_proj", D, D}, {"mlp.c_fc", D, I},
              {"mlp.c_proj", I, D}};
    for (int l = 0; l < S_L; l++) {
        for (int k = 0; k < 7; k++) {
            snprintf(n, sizeof n, "decoder.transformer.h.%d.%s.weight", l, gl[k].n);
            rc |= s_add(s, n, 0, 2, gl[k].in, gl[k].out, 0, 0);
            snprintf(n, sizeof n, "decoder.transformer.h.%d.%s.bias", l, gl[k].n);
            rc |= s_add(s, n, 0, 1, gl[k].out, 0, 0, 0);
        }
        const char *lns[] = {"ln_1", "ln_cross_attn", "ln_2"};
        for (int k = 0; k < 3; k++) {
            snprintf(n, sizeof n, "decoder.transformer.h.%d.%s.weight", l, lns[k]);
            rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "decoder.transformer.h.%d.%s.bias", l, lns[k]);
            rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
        }
    }
    return rc ? NR_ENOMEM : 0;
}

/* GitForCausalLM's tensors with microsoft/git-base-coco's names. */
static int s_specs_git(s_specs_t *s) {
    const int D = S_D, I = S_I, V = 30522;
    char n[192];
    int rc = 0;
    const char *vm = "git.image_encoder.vision_model.";
    snprintf(n, sizeof n, "%sembeddings.class_embedding", vm);
    rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
    snprintf(n, sizeof n, "%sembeddings.patch_embedding.weight", vm);
    rc |= s_add(s, n, 0, 4, D, 3, 16, 16);
    snprintf(n, sizeof n, "%sembeddings.position_embedding.weight", vm);
    rc |= s_add(s, n, 0, 2, S_SEQ, D, 0, 0);
    const char *vln[] = {"pre_layrnorm", "post_layernorm"};
    for (int k = 0; k < 2; k++) {
        snprintf(n, sizeof n, "%s%s.weight", vm, vln[k]);
        rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
        snprintf(n, sizeof n, "%s%s.bias", vm, vln[k]);
        rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
    }
    rc |= s_add_vision_layers(s, vm, S_L, D, I);
    rc |= s_add(s, "git.visual_projection.visual_projection.0.weight", 0, 2, D, D, 0, 0);
    rc |= s_add(s, "git.visual_projection.visual_projection.0.bias", 0, 1, D, 0, 0, 0);
    rc |= s_add(s, "git.visual_projection.visual_projection.1.weight", 1, 1, D, 0, 0, 0);
    rc |= s_add(s, "git.visual_projection.visual_projection.1.bias", 0, 1, D, 0, 0, 0);
    rc |= s_add(s, "git.embeddings.word_embeddings.weight", 0, 2, V, D, 0, 0);
    rc |= s_add(s, "git.embeddings.position_embeddings.weight", 0, 2, 1024, D, 0, 0);
    rc |= s_add(s, "git.embeddings.LayerNorm.weight", 1, 1, D, 0, 0, 0);
    rc |= s_add(s, "git.embeddings.LayerNorm.bias", 0, 1, D, 0, 0, 0);
    const char *tl[][3] = {{"attention.self.query", "D", "D"}, {"attention.self.key", "D", "D"},
                           {"attention.self.value", "D", "D"}, {"attention.output.dense", "D", "D"},
                           {"intermediate.dense", "I", "D"},   {"output.dense", "D", "I"}};
    for (int l = 0; l < 6; l++) {
        for (int k = 0; k < 6; k++) {
            int64_t o = tl[k][1][0] == 'I' ? I : D, in = tl[k][2][0] == 'I' ? I : D;
            snprintf(n, sizeof n, "git.encoder.layer.%d.%s.weight", l, tl[k][0]);
            rc |= s_add(s, n, 0, 2, o, in, 0, 0);
            snprintf(n, sizeof n, "git.encoder.layer.%d.%s.bias", l, tl[k][0]);
            rc |= s_add(s, n, 0, 1, o, 0, 0, 0);
        }
        const char *lns[] = {"attention.output.LayerNorm", "output.LayerNorm"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "git.encoder.layer.%d.%s.weight", l, lns[k]);
            rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "git.encoder.layer.%d.%s.bias", l, lns[k]);
            rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
        }
    }
    rc |= s_add(s, "output.weight", 0, 2, V, D, 0, 0);
    rc |= s_add(s, "output.bias", 0, 1, V, 0, 0, 0);
    return rc ? NR_ENOMEM : 0;
}

/* BlipForConditionalGeneration's tensors with blip-image-captioning-base's
 * names, the ones models/blip.c and models/clip.c (NR_VISION_BLIP) read;
 * the head's decoder weight stored as its own tensor, as the published
 * file does. */
static int s_specs_blip(s_specs_t *s) {
    const int D = S_D, I = S_I, V = 30524, SEQ = 577;
    char n[192];
    int rc = 0;
    const char *vm = "vision_model.";
    snprintf(n, sizeof n, "%sembeddings.class_embedding", vm);
    rc |= s_add(s, n, 0, 3, 1, 1, D, 0);
    snprintf(n, sizeof n, "%sembeddings.patch_embedding.weight", vm);
    rc |= s_add(s, n, 0, 4, D, 3, 16, 16);
    snprintf(n, sizeof n, "%sembeddings.patch_embedding.bias", vm);
    rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
    snprintf(n, sizeof n, "%sembeddings.position_embedding", vm);
    rc |= s_add(s, n, 0, 3, 1, SEQ, D, 0);
    const char *vl[][3] = {{"self_attn.qkv", "Q", "D"}, {"self_attn.projection", "D", "D"},
                           {"mlp.fc1", "I", "D"},       {"mlp.fc2", "D", "I"}};
    for (int l = 0; l < S_L; l++) {
        for (int k = 0; k < 4; k++) {
            int64_t o = vl[k][1][0] == 'I' ? I : vl[k][1][0] == 'Q' ? 3 * D : D, in = vl[k][2][0] == 'I' ? I : D;
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s.weight", vm, l, vl[k][0]);
            rc |= s_add(s, n, 0, 2, o, in, 0, 0);
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s.bias", vm, l, vl[k][0]);
            rc |= s_add(s, n, 0, 1, o, 0, 0, 0);
        }
        const char *lns[] = {"layer_norm1", "layer_norm2"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s.weight", vm, l, lns[k]);
            rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "%sencoder.layers.%d.%s.bias", vm, l, lns[k]);
            rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
        }
    }
    snprintf(n, sizeof n, "%spost_layernorm.weight", vm);
    rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
    snprintf(n, sizeof n, "%spost_layernorm.bias", vm);
    rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
    const char *tb = "text_decoder.bert.";
    snprintf(n, sizeof n, "%sembeddings.word_embeddings.weight", tb);
    rc |= s_add(s, n, 0, 2, V, D, 0, 0);
    snprintf(n, sizeof n, "%sembeddings.position_embeddings.weight", tb);
    rc |= s_add(s, n, 0, 2, 512, D, 0, 0);
    snprintf(n, sizeof n, "%sembeddings.LayerNorm.weight", tb);
    rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
    snprintf(n, sizeof n, "%sembeddings.LayerNorm.bias", tb);
    rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
    const char *tl[][3] = {{"attention.self.query", "D", "D"},      {"attention.self.key", "D", "D"},
                           {"attention.self.value", "D", "D"},      {"attention.output.dense", "D", "D"},
                           {"crossattention.self.query", "D", "D"}, {"crossattention.self.key", "D", "D"},
                           {"crossattention.self.value", "D", "D"}, {"crossattention.output.dense", "D", "D"},
                           {"intermediate.dense", "I", "D"},        {"output.dense", "D", "I"}};
    for (int l = 0; l < S_L; l++) {
        for (int k = 0; k < 10; k++) {
            int64_t o = tl[k][1][0] == 'I' ? I : D, in = tl[k][2][0] == 'I' ? I : D;
            snprintf(n, sizeof n, "%sencoder.layer.%d.%s.weight", tb, l, tl[k][0]);
            rc |= s_add(s, n, 0, 2, o, in, 0, 0);
            snprintf(n, sizeof n, "%sencoder.layer.%d.%s.bias", tb, l, tl[k][0]);
            rc |= s_add(s, n, 0, 1, o, 0, 0, 0);
        }
        const char *lns[] = {"attention.output.LayerNorm", "crossattention.output.LayerNorm", "output.LayerNorm"};
        for (int k = 0; k < 3; k++) {
            snprintf(n, sizeof n, "%sencoder.layer.%d.%s.weight", tb, l, lns[k]);
            rc |= s_add(s, n, 1, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "%sencoder.layer.%d.%s.bias", tb, l, lns[k]);
            rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
        }
    }
    rc |= s_add(s, "text_decoder.cls.predictions.transform.dense.weight", 0, 2, D, D, 0, 0);
    rc |= s_add(s, "text_decoder.cls.predictions.transform.dense.bias", 0, 1, D, 0, 0, 0);
    rc |= s_add(s, "text_decoder.cls.predictions.transform.LayerNorm.weight", 1, 1, D, 0, 0, 0);
    rc |= s_add(s, "text_decoder.cls.predictions.transform.LayerNorm.bias", 0, 1, D, 0, 0, 0);
    rc |= s_add(s, "text_decoder.cls.predictions.decoder.weight", 0, 2, V, D, 0, 0);
    rc |= s_add(s, "text_decoder.cls.predictions.bias", 0, 1, V, 0, 0, 0);
    return rc ? NR_ENOMEM : 0;
}

static size_t s_numel(const s_spec_t *s) {
    size_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
    return n;
}

/* The safetensors bytes; the header is padded so the data starts 64-byte
 * aligned. NULL on no memory. */
static unsigned char *s_build(const s_specs_t *s, size_t *size) {
    size_t hcap = 1 << 20, hl = 0, off = 0;
    char *h = malloc(hcap);
    if (!h) return NULL;
    hl += (size_t)snprintf(h + hl, hcap - hl, "{");
    for (size_t i = 0; i < s->n && hl < hcap; i++) {
        size_t n = s_numel(&s->v[i]);
        hl += (size_t)snprintf(h + hl, hcap - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "",
                               s->v[i].name);
        for (int d = 0; d < s->v[i].ndim; d++)
            hl += (size_t)snprintf(h + hl, hcap - hl, "%s%lld", d ? "," : "", (long long)s->v[i].shape[d]);
        hl += (size_t)snprintf(h + hl, hcap - hl, "],\"data_offsets\":[%zu,%zu]}", off, off + 4 * n);
        off += 4 * n;
    }
    hl += (size_t)snprintf(h + hl, hcap - hl, "}");
    size_t padded = ((8 + hl + 63) & ~(size_t)63) - 8;
    *size = 8 + padded + off;
    unsigned char *buf = nr_aligned_alloc(*size);
    if (!buf) {
        free(h);
        return NULL;
    }
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, h, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    float *data = (float *)(buf + 8 + padded);
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t n = s_numel(&s->v[i]);
        for (size_t j = 0; j < n; j++) data[k++] = s->v[i].fill != 0 ? s->v[i].fill : nr_bench_rand();
    }
    free(h);
    return buf;
}

static int s_random(const char *config, int (*specs_fn)(s_specs_t *), nr_model_config_t *cfg, unsigned char **buf,
                    size_t *size, nr_checkpoint_t **ck, char *err, size_t errlen) {
    *buf = NULL;
    *ck = NULL;
    int rc = nr_model_config_parse(config, NULL, "bench", cfg, err, errlen);
    if (rc) return rc;
    s_specs_t specs = {0};
    if (specs_fn(&specs) == 0) *buf = s_build(&specs, size);
    free(specs.v);
    if (!*buf) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    rc = nr_checkpoint_open_memory(*buf, *size, "random-weights", ck, err, errlen);
    if (rc) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

int nr_bench_random_vit_gpt2(nr_model_config_t *cfg, unsigned char **buf, size_t *size, nr_checkpoint_t **ck,
                             char *err, size_t errlen) {
    return s_random(s_config, s_specs_vit_gpt2, cfg, buf, size, ck, err, errlen);
}

int nr_bench_random_git(nr_model_config_t *cfg, unsigned char **buf, size_t *size, nr_checkpoint_t **ck, char *err,
                        size_t errlen) {
    return s_random(s_git_config, s_specs_git, cfg, buf, size, ck, err, errlen);
}

int nr_bench_random_blip(nr_model_config_t *cfg, unsigned char **buf, size_t *size, nr_checkpoint_t **ck, char *err,
                         size_t errlen) {
    return s_random(s_blip_config, s_specs_blip, cfg, buf, size, ck, err, errlen);
}

int nr_bench_write_bf16(const char *family, const char *dir, char *err, size_t errlen) {
    const int blip = !strcmp(family, "blip");
    if (!blip && strcmp(family, "git")) return nr_seterr(err, errlen, NR_EINVAL, "family must be git or blip");
    nr_model_config_t cfg;
    unsigned char *buf = NULL;
    size_t size;
    nr_checkpoint_t *ck = NULL;
    int rc = (blip ? nr_bench_random_blip : nr_bench_random_git)(&cfg, &buf, &size, &ck, err, errlen);
    if (rc) return rc;
    nr_checkpoint_close(&ck);
    nr_safetensors_t *st = NULL;
    nr_named_tensor_t *t = NULL;
    size_t n = 0;
    if ((rc = nr_safetensors_open_memory(buf, size, "random-weights", &st, err, errlen))) goto out;
    n = nr_safetensors_count(st);
    if (!(t = calloc(n, sizeof(*t)))) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        t[i] = *nr_safetensors_at(st, i);
        const size_t count = t[i].nbytes / sizeof(float);
        uint16_t *h = malloc(count * sizeof(uint16_t));
        if (!h) {
            rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            goto out;
        }
        const float *f = t[i].data;
        for (size_t j = 0; j < count; j++) h[j] = nr_f32_to_bf16(f[j]);
        t[i] = (nr_named_tensor_t){.name = t[i].name, .dtype = NR_DTYPE_BF16, .ndim = t[i].ndim, .data = h,
                                   .nbytes = count * sizeof(uint16_t)};
        memcpy(t[i].shape, nr_safetensors_at(st, i)->shape, sizeof t[i].shape);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    int ok = fp && fputs(blip ? s_blip_config : s_git_config, fp) >= 0;
    if (fp && fclose(fp) != 0) ok = 0;
    if (!ok) {
        rc = nr_seterr(err, errlen, NR_EIO, "%s: cannot write", path);
        goto out;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rc = nr_safetensors_write(path, t, n, err, errlen);
out:
    for (size_t i = 0; t && i < n; i++)
        if (t[i].dtype == NR_DTYPE_BF16) free((void *)t[i].data);
    free(t);
    nr_safetensors_close(&st);
    free(buf);
    return rc;
}

/* ---- PaliGemma (google/paligemma-3b-*-224 shapes, text layers and
 * vocabulary as asked) ---- */

static struct {
    int text_layers, vocab;
} s_pg;

static int s_specs_paligemma(s_specs_t *s) {
    const int Dv = 1152, Iv = 4304, Lv = 27, S = 256, D = 2048, I = 16384, QW = 8 * 256, KW = 256;
    char n[192];
    int rc = 0;
    const char *vm = "vision_tower.vision_model.";
    snprintf(n, sizeof n, "%sembeddings.patch_embedding.weight", vm);
    rc |= s_add(s, n, 0, 4, Dv, 3, 14, 14);
    snprintf(n, sizeof n, "%sembeddings.patch_embedding.bias", vm);
    rc |= s_add(s, n, 0, 1, Dv, 0, 0, 0);
    snprintf(n, sizeof n, "%sembeddings.position_embedding.weight", vm);
    rc |= s_add(s, n, 0, 2, S, Dv, 0, 0);
    snprintf(n, sizeof n, "%spost_layernorm.weight", vm);
    rc |= s_add(s, n, 1, 1, Dv, 0, 0, 0);
    snprintf(n, sizeof n, "%spost_layernorm.bias", vm);
    rc |= s_add(s, n, 0, 1, Dv, 0, 0, 0);
    rc |= s_add_vision_layers(s, vm, Lv, Dv, Iv);
    rc |= s_add(s, "multi_modal_projector.linear.weight", 0, 2, D, Dv, 0, 0);
    rc |= s_add(s, "multi_modal_projector.linear.bias", 0, 1, D, 0, 0, 0);
    rc |= s_add(s, "language_model.model.embed_tokens.weight", 0, 2, s_pg.vocab, D, 0, 0);
    rc |= s_add(s, "language_model.model.norm.weight", 0, 1, D, 0, 0, 0);
    const char *tl[][2] = {{"self_attn.q_proj", "QD"}, {"self_attn.k_proj", "KD"}, {"self_attn.v_proj", "KD"},
                           {"self_attn.o_proj", "DQ"}, {"mlp.gate_proj", "ID"},    {"mlp.up_proj", "ID"},
                           {"mlp.down_proj", "DI"}};
    for (int l = 0; l < s_pg.text_layers; l++) {
        for (int k = 0; k < 7; k++) {
            int64_t dims[2];
            for (int j = 0; j < 2; j++) {
                char c = tl[k][1][j];
                dims[j] = c == 'Q' ? QW : c == 'K' ? KW : c == 'I' ? I : D;
            }
            snprintf(n, sizeof n, "language_model.model.layers.%d.%s.weight", l, tl[k][0]);
            rc |= s_add(s, n, 0, 2, dims[0], dims[1], 0, 0);
        }
        snprintf(n, sizeof n, "language_model.model.layers.%d.input_layernorm.weight", l);
        rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
        snprintf(n, sizeof n, "language_model.model.layers.%d.post_attention_layernorm.weight", l);
        rc |= s_add(s, n, 0, 1, D, 0, 0, 0);
    }
    return rc ? NR_ENOMEM : 0;
}

int nr_bench_random_paligemma(int text_layers, int vocab, nr_model_config_t *cfg, unsigned char **buf, size_t *size,
                              nr_checkpoint_t **ck, char *err, size_t errlen) {
    if (text_layers < 1 || text_layers > 18 || vocab < 300 || vocab > 257216)
        return nr_seterr(err, errlen, NR_EINVAL, "text layers 1..18, vocabulary 300..257216");
    s_pg.text_layers = text_layers;
    s_pg.vocab = vocab;
    char config[1024];
    snprintf(config, sizeof config,
             "{\"model_type\":\"paligemma\",\"bos_token_id\":2,\"eos_token_id\":1,\"pad_token_id\":0,"
             "\"image_token_index\":%d,\"projection_dim\":2048,\"text_config\":{\"hidden_size\":2048,"
             "\"intermediate_size\":16384,\"model_type\":\"gemma\",\"num_attention_heads\":8,"
             "\"num_hidden_layers\":%d,\"num_key_value_heads\":1,\"vocab_size\":%d},\"vision_config\":{"
             "\"hidden_size\":1152,\"intermediate_size\":4304,\"model_type\":\"siglip_vision_model\","
             "\"num_attention_heads\":16,\"num_hidden_layers\":27,\"patch_size\":14,\"projection_dim\":2048,"
             "\"vision_use_head\":false}}",
             vocab - 1, text_layers, vocab);
    return s_random(config, s_specs_paligemma, cfg, buf, size, ck, err, errlen);
}

long nr_bench_status_mb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    const size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, "%ld", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}
