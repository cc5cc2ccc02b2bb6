/* Model configuration: config.json / generation_config.json via cJSON. */
#include "models/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define S_JSON_MAX ((size_t)16 << 20) /* config.json, generation_config.json */

nr_gen_config_t nr_gen_config_default(void) {
    nr_gen_config_t g = {.max_length = 20,
                         .num_beams = 1,
                         .length_penalty = 1.0f,
                         .early_stopping = 0,
                         .decoder_start_token_id = -1,
                         .bos_token_id = -1,
                         .eos_token_id = -1,
                         .pad_token_id = -1};
    return g;
}

char *nr_model_read_file(const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int e = 0;
    for (;;) {
        if (cap - n < 2) {
            size_t nc = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, nc);
            if (!nb) {
                e = ENOMEM;
                break;
            }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (n > max) {
            e = EFBIG;
            break;
        }
        if (r == 0) {
            if (ferror(f)) e = EIO;
            break;
        }
    }
    fclose(f);
    if (e) {
        free(buf);
        errno = e;
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* Integer key: returns 1 when present and valid, 0 when absent, -1 when bad. */
static int s_int(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9) return -1;
    *out = (int)v->valuedouble;
    return 1;
}

static int s_float(const cJSON *o, const char *key, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > FLT_MAX) return -1;
    *out = (float)v->valuedouble;
    return 1;
}

static int s_bool(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return 1;
    }
    return -1;
}

static int s_act(const char *name, nr_act_t *out) {
    if (!name) return -1;
    if (strcmp(name, "gelu") == 0) *out = NR_ACT_GELU;
    else if (strcmp(name, "gelu_new") == 0 || strcmp(name, "gelu_pytorch_tanh") == 0 || strcmp(name, "gelu_fast") == 0)
        *out = NR_ACT_GELU_TANH;
    else if (strcmp(name, "quick_gelu") == 0)
        *out = NR_ACT_QUICK_GELU;
    else
        return -1;
    return 0;
}

/* An activation name under `key` (absent keeps *out): 0, or -1 when it is
 * not one s_act knows. */
static int s_act_key(const cJSON *o, const char *key, nr_act_t *out) {
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, key);
    return act ? s_act(cJSON_IsString(act) ? act->valuestring : NULL, out) : 0;
}

#define REQ_INT(obj, key, field, what)                                                                      \
    do {                                                                                                    \
        int r_ = s_int(obj, key, &(field));                                                                 \
        if (r_ <= 0 || (field) <= 0)                                                                        \
            return nr_seterr(err, errlen, NR_EMODEL, "%s: %s.%s %s", src, what, key,                        \
                             r_ == 0 ? "is missing" : "must be a positive integer");                        \
    } while (0)

#define OPT_INT(obj, key, field, what)                                                                      \
    do {                                                                                                    \
        if (s_int(obj, key, &(field)) < 0)                                                                  \
            return nr_seterr(err, errlen, NR_EMODEL, "%s: %s.%s must be an integer", src, what, key);      \
    } while (0)

static int s_vit(const cJSON *e, const char *src, nr_vit_config_t *v, char *err, size_t errlen) {
    const char *what = "encoder";
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(e, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "vit") != 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: encoder model_type \"%s\" is not supported (vit is)", src,
                         mt->valuestring);
    memset(v, 0, sizeof(*v));
    REQ_INT(e, "hidden_size", v->hidden_size, what);
    REQ_INT(e, "num_hidden_layers", v->num_hidden_layers, what);
    REQ_INT(e, "num_attention_heads", v->num_attention_heads, what);
    REQ_INT(e, "intermediate_size", v->intermediate_size, what);
    REQ_INT(e, "image_size", v->image_size, what);
    REQ_INT(e, "patch_size", v->patch_size, what);
    v->num_channels = 3;
    OPT_INT(e, "num_channels", v->num_channels, what);
    v->layer_norm_eps = 1e-12f;
    if (s_float(e, "layer_norm_eps", &v->layer_norm_eps) < 0 || v->layer_norm_eps < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: encoder.layer_norm_eps must be a number >= 0", src);
    v->hidden_act = NR_ACT_GELU;
    if (s_act_key(e, "hidden_act", &v->hidden_act) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: encoder.hidden_act must be gelu, gelu_new or gelu_pytorch_tanh", src);
    v->qkv_bias = 1;
    if (s_bool(e, "qkv_bias", &v->qkv_bias) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: encoder.qkv_bias must be true or false", src);
    if (v->hidden_size % v->num_attention_heads)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: encoder.hidden_size %d is not divisible by num_attention_heads %d",
                         src, v->hidden_size, v->num_attention_heads);
    if (v->image_size % v->patch_size)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: encoder.image_size %d is not divisible by patch_size %d", src,
                         v->image_size, v->patch_size);
    if (v->num_channels <= 0 || v->image_size > 4096)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: encoder.num_channels / image_size out of range", src);
    return 0;
}

static int s_gpt2(const cJSON *d, const char *src, nr_gpt2_config_t *g, char *err, size_t errlen) {
    const char *what = "decoder";
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(d, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "gpt2") != 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: decoder model_type \"%s\" is not supported (gpt2 is)", src,
                         mt->valuestring);
    memset(g, 0, sizeof(*g));
    REQ_INT(d, "n_embd", g->n_embd, what);
    REQ_INT(d, "n_layer", g->n_layer, what);
    REQ_INT(d, "n_head", g->n_head, what);
    REQ_INT(d, "n_positions", g->n_positions, what);
    REQ_INT(d, "vocab_size", g->vocab_size, what);
    g->n_inner = 0;
    OPT_INT(d, "n_inner", g->n_inner, what);
    if (g->n_inner <= 0) g->n_inner = 4 * g->n_embd;
    g->layer_norm_epsilon = 1e-5f;
    if (s_float(d, "layer_norm_epsilon", &g->layer_norm_epsilon) < 0 || g->layer_norm_epsilon < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: decoder.layer_norm_epsilon must be a number >= 0", src);
    g->activation_function = NR_ACT_GELU_TANH;
    if (s_act_key(d, "activation_function", &g->activation_function) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: decoder.activation_function must be gelu_new, gelu or gelu_pytorch_tanh",
                         src);
    g->add_cross_attention = 0;
    if (s_bool(d, "add_cross_attention", &g->add_cross_attention) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: decoder.add_cross_attention must be true or false", src);
    g->scale_attn_weights = 1;
    if (s_bool(d, "scale_attn_weights", &g->scale_attn_weights) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: decoder.scale_attn_weights must be true or false", src);
    g->tie_word_embeddings = 1; /* PretrainedConfig's default */
    if (s_bool(d, "tie_word_embeddings", &g->tie_word_embeddings) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: decoder.tie_word_embeddings must be true or false", src);
    if (g->n_embd % g->n_head)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: decoder.n_embd %d is not divisible by n_head %d", src, g->n_embd,
                         g->n_head);
    int by_layer = 0;
    if (s_bool(d, "scale_attn_by_inverse_layer_idx", &by_layer) < 0 || by_layer)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: decoder.scale_attn_by_inverse_layer_idx true is not supported",
                         src);
    return 0;
}

/* Generation keys from one JSON object over *gen. */
static int s_gen(const cJSON *o, const char *src, nr_gen_config_t *gen, char *err, size_t errlen) {
    const char *what = "generation";
    OPT_INT(o, "max_length", gen->max_length, what);
    OPT_INT(o, "num_beams", gen->num_beams, what);
    OPT_INT(o, "decoder_start_token_id", gen->decoder_start_token_id, what);
    OPT_INT(o, "bos_token_id", gen->bos_token_id, what);
    OPT_INT(o, "pad_token_id", gen->pad_token_id, what);
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(o, "eos_token_id");
    if (cJSON_IsArray(eos) && cJSON_GetArraySize(eos) > 0) eos = eos->child; /* first of a list */
    if (eos && !cJSON_IsNull(eos)) {
        /* Range-checked before the cast (found by tests/fuzz/fuzz_config: 5e119). */
        if (!cJSON_IsNumber(eos) || eos->valuedouble != floor(eos->valuedouble) || fabs(eos->valuedouble) > 1e9)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: eos_token_id must be an integer", src);
        gen->eos_token_id = (int)eos->valuedouble;
    }
    if (s_float(o, "length_penalty", &gen->length_penalty) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: length_penalty must be a number", src);
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(o, "early_stopping");
    if (cJSON_IsBool(es)) gen->early_stopping = cJSON_IsTrue(es);
    else if (cJSON_IsString(es) && strcmp(es->valuestring, "never") == 0) gen->early_stopping = -1;
    else if (es && !cJSON_IsNull(es))
        return nr_seterr(err, errlen, NR_EMODEL, "%s: early_stopping must be true, false or \"never\"", src);
    return 0;
}

/* Integer with a default (GitConfig / GitVisionConfig's): absent keeps *v,
 * present must be positive. */
#define DEF_INT(obj, key, field, what)                                                                      \
    do {                                                                                                    \
        if (s_int(obj, key, &(field)) < 0 || (field) <= 0)                                                  \
            return nr_seterr(err, errlen, NR_EMODEL, "%s: %s%s must be a positive integer", src, what, key); \
    } while (0)

/* The keys GitVisionConfig and BlipVisionConfig share, over v's defaults
 * (vc NULL or not an object: the defaults as they are), then the checks
 * that the sizes divide. */
static int s_vision_config(const cJSON *vc, const char *src, nr_vit_config_t *v, char *err, size_t errlen) {
    if (cJSON_IsObject(vc)) {
        const char *w = "vision_config.";
        DEF_INT(vc, "hidden_size", v->hidden_size, w);
        DEF_INT(vc, "num_hidden_layers", v->num_hidden_layers, w);
        DEF_INT(vc, "num_attention_heads", v->num_attention_heads, w);
        DEF_INT(vc, "intermediate_size", v->intermediate_size, w);
        DEF_INT(vc, "image_size", v->image_size, w);
        DEF_INT(vc, "patch_size", v->patch_size, w);
        DEF_INT(vc, "num_channels", v->num_channels, w);
        if (s_float(vc, "layer_norm_eps", &v->layer_norm_eps) < 0 || v->layer_norm_eps < 0)
            return nr_seterr(err, errlen, NR_EMODEL, "%s: vision_config.layer_norm_eps must be a number >= 0", src);
        if (s_act_key(vc, "hidden_act", &v->hidden_act) < 0)
            return nr_seterr(err, errlen, NR_EMODEL,
                             "%s: vision_config.hidden_act must be gelu, gelu_new, gelu_pytorch_tanh or quick_gelu", src);
    }
    if (v->hidden_size % v->num_attention_heads || v->image_size % v->patch_size || v->image_size > 4096)
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: vision_config: hidden_size %d / num_attention_heads %d or image_size %d / patch_size %d "
                         "do not divide", src, v->hidden_size, v->num_attention_heads, v->image_size, v->patch_size);
    return 0;
}

/* The BERT-style text settings GitConfig and BlipTextConfig share, as
 * pointers into either config (S_TEXT_FIELDS). */
typedef struct {
    int *hidden_size, *num_hidden_layers, *num_attention_heads, *intermediate_size, *max_position_embeddings,
        *vocab_size;
    float *layer_norm_eps;
    nr_act_t *hidden_act;
    int *tie_word_embeddings;
} s_text_fields_t;

#define S_TEXT_FIELDS(c)                                                                                    \
    {&(c)->hidden_size, &(c)->num_hidden_layers, &(c)->num_attention_heads, &(c)->intermediate_size,         \
     &(c)->max_position_embeddings, &(c)->vocab_size, &(c)->layer_norm_eps, &(c)->hidden_act,                \
     &(c)->tie_word_embeddings}

/* Those keys under `o` (w: their prefix in messages, "" or "text_config."),
 * over the defaults in place; then hidden_size must divide into the heads
 * and position_embedding_type be absolute. */
static int s_text_config(const cJSON *o, const char *w, const char *src, const s_text_fields_t *t, char *err,
                         size_t errlen) {
    DEF_INT(o, "hidden_size", *t->hidden_size, w);
    DEF_INT(o, "num_hidden_layers", *t->num_hidden_layers, w);
    DEF_INT(o, "num_attention_heads", *t->num_attention_heads, w);
    DEF_INT(o, "intermediate_size", *t->intermediate_size, w);
    DEF_INT(o, "max_position_embeddings", *t->max_position_embeddings, w);
    DEF_INT(o, "vocab_size", *t->vocab_size, w);
    if (s_float(o, "layer_norm_eps", t->layer_norm_eps) < 0 || *t->layer_norm_eps < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: %slayer_norm_eps must be a number >= 0", src, w);
    if (s_act_key(o, "hidden_act", t->hidden_act) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: %shidden_act must be gelu, gelu_new, gelu_pytorch_tanh or quick_gelu",
                         src, w);
    if (s_bool(o, "tie_word_embeddings", t->tie_word_embeddings) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: %stie_word_embeddings must be true or false", src, w);
    if (*t->hidden_size % *t->num_attention_heads)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: %shidden_size %d is not divisible by num_attention_heads %d", src,
                         w, *t->hidden_size, *t->num_attention_heads);
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(o, "position_embedding_type");
    if (pe && !cJSON_IsNull(pe) && !(cJSON_IsString(pe) && strcmp(pe->valuestring, "absolute") == 0))
        return nr_seterr(err, errlen, NR_EMODEL, "%s: %sposition_embedding_type other than absolute is not supported",
                         src, w);
    return 0;
}

/* What a GIT or BLIP config says of the family beside its own settings:
 * the name, WordPiece, and the image and states sizes of its vision tower. */
static void s_wordpiece_family(nr_model_config_t *cfg, const char *family, const nr_vit_config_t *v) {
    int g1 = v->image_size / v->patch_size;
    snprintf(cfg->family, sizeof cfg->family, "%s", family);
    cfg->wordpiece = 1;
    cfg->num_channels = v->num_channels;
    cfg->image_size = v->image_size;
    cfg->states_seq = 1 + g1 * g1;
}

/* model_type git (transformers' configuration_git.py: GitConfig with a
 * GitVisionConfig under vision_config, each key defaulting as there). */
static int s_git(const cJSON *root, const char *src, nr_model_config_t *cfg, char *err, size_t errlen) {
    nr_git_config_t *g = &cfg->git;
    nr_vit_config_t *v = &g->vision;
    *v = (nr_vit_config_t){.hidden_size = 768, .num_hidden_layers = 12, .num_attention_heads = 12,
                           .intermediate_size = 3072, .image_size = 224, .patch_size = 16, .num_channels = 3,
                           .layer_norm_eps = 1e-5f, .hidden_act = NR_ACT_QUICK_GELU, .qkv_bias = 1};
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if (vc && !cJSON_IsNull(vc) && !cJSON_IsObject(vc))
        return nr_seterr(err, errlen, NR_EMODEL, "%s: vision_config must be an object", src);
    int rc = s_vision_config(vc, src, v, err, errlen);
    if (rc) return rc;
    g->hidden_size = 768;
    g->num_hidden_layers = 6;
    g->num_attention_heads = 12;
    g->intermediate_size = 3072;
    g->max_position_embeddings = 1024;
    g->vocab_size = 30522;
    g->layer_norm_eps = 1e-12f;
    g->hidden_act = NR_ACT_GELU;
    g->tie_word_embeddings = 0;
    const s_text_fields_t tf = S_TEXT_FIELDS(g);
    if ((rc = s_text_config(root, "", src, &tf, err, errlen))) return rc;
    const cJSON *ni = cJSON_GetObjectItemCaseSensitive(root, "num_image_with_embedding");
    if (ni && !cJSON_IsNull(ni))
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: num_image_with_embedding (video GIT) is not supported: one image per caption", src);
    s_wordpiece_family(cfg, "git", v);
    cfg->states_hidden = g->hidden_size; /* the vision stage sends the projected image tokens */
    cfg->dec_hidden = g->hidden_size;
    cfg->max_positions = g->max_position_embeddings;
    cfg->vocab_size = g->vocab_size;
    /* GitConfig's token ids: bos [CLS] 101, eos [SEP] 102, pad 0; the
     * prompt of a caption is [bos] (the decoder-only start token). */
    cfg->gen.bos_token_id = 101;
    cfg->gen.eos_token_id = 102;
    cfg->gen.pad_token_id = 0;
    return 0;
}

/* model_type blip (transformers' configuration_blip.py: BlipConfig with a
 * BlipVisionConfig under vision_config and a BlipTextConfig under
 * text_config, each key defaulting as there). BlipConfig sets the text
 * side's encoder_hidden_size to the vision hidden_size, so the
 * cross-attention reads the vision states as they are. Generation:
 * BlipForConditionalGeneration.generate() calls text_decoder.generate()
 * with eos = text_config.sep_token_id, pad = text_config.pad_token_id and
 * input_ids starting with text_config.bos_token_id; the other settings
 * (max_length, num_beams ...) are the text decoder's, from text_config. */
static int s_blip(const cJSON *root, const char *src, nr_model_config_t *cfg, char *err, size_t errlen) {
    nr_blip_config_t *b = &cfg->blip;
    nr_vit_config_t *v = &b->vision;
    *v = (nr_vit_config_t){.hidden_size = 768, .num_hidden_layers = 12, .num_attention_heads = 12,
                           .intermediate_size = 3072, .image_size = 384, .patch_size = 16, .num_channels = 3,
                           .layer_norm_eps = 1e-5f, .hidden_act = NR_ACT_GELU, .qkv_bias = 1};
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if ((vc && !cJSON_IsNull(vc) && !cJSON_IsObject(vc)) || (tc && !cJSON_IsNull(tc) && !cJSON_IsObject(tc)))
        return nr_seterr(err, errlen, NR_EMODEL, "%s: vision_config and text_config must be objects", src);
    int rc = s_vision_config(vc, src, v, err, errlen);
    if (rc) return rc;
    *b = (nr_blip_config_t){.vision = *v, .hidden_size = 768, .num_hidden_layers = 12, .num_attention_heads = 8,
                            .intermediate_size = 3072, .max_position_embeddings = 512, .vocab_size = 30524,
                            .layer_norm_eps = 1e-12f, .hidden_act = NR_ACT_GELU, .tie_word_embeddings = 1,
                            .bos_token_id = 30522, .sep_token_id = 102, .pad_token_id = 0};
    static const cJSON s_empty = {0};
    const cJSON *t = cJSON_IsObject(tc) ? tc : &s_empty;
    const s_text_fields_t tf = S_TEXT_FIELDS(b);
    if ((rc = s_text_config(t, "text_config.", src, &tf, err, errlen))) return rc;
    if (s_int(t, "bos_token_id", &b->bos_token_id) < 0 || s_int(t, "sep_token_id", &b->sep_token_id) < 0 ||
        s_int(t, "pad_token_id", &b->pad_token_id) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: text_config bos/sep/pad_token_id must be integers", src);
    int isdec = 1;
    if (s_bool(t, "is_decoder", &isdec) < 0 || !isdec)
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: text_config.is_decoder must be true (a captioner's text side is the decoder)", src);
    if (b->bos_token_id < 0 || b->bos_token_id >= b->vocab_size || b->sep_token_id < 0 ||
        b->sep_token_id >= b->vocab_size || b->pad_token_id < 0 || b->pad_token_id >= b->vocab_size)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: text_config bos/sep/pad_token_id outside the vocabulary", src);
    s_wordpiece_family(cfg, "blip", v);
    cfg->states_hidden = v->hidden_size; /* the vision model's last_hidden_state */
    cfg->dec_hidden = v->hidden_size;    /* the cross-attention reads it as it is */
    cfg->max_positions = b->max_position_embeddings;
    cfg->vocab_size = b->vocab_size;
    if ((rc = s_gen(t, src, &cfg->gen, err, errlen))) return rc;
    cfg->gen.decoder_start_token_id = b->bos_token_id;
    cfg->gen.bos_token_id = b->bos_token_id;
    cfg->gen.eos_token_id = b->sep_token_id;
    cfg->gen.pad_token_id = b->pad_token_id;
    return 0;
}

/* model_type paligemma (transformers v4.46 configuration_paligemma.py):
 * PaliGemmaConfig builds a SiglipVisionConfig from vision_config and a
 * GemmaConfig from text_config, each key defaulting as there. The vision
 * stage sends get_image_features' output: the projected image tokens,
 * [image_seq_length, text hidden_size]. Lengths in this engine count the
 * text only (<bos>, prompt, "\n", caption): a max_length from the files
 * counts the image tokens too, as transformers' generate() does, and loses
 * them here. */
static int s_paligemma(const cJSON *root, const char *gen_json, const char *src, nr_model_config_t *cfg, char *err,
                       size_t errlen) {
    nr_paligemma_config_t *p = &cfg->paligemma;
    nr_vit_config_t *v = &p->vision;
    *v = (nr_vit_config_t){.hidden_size = 768, .num_hidden_layers = 12, .num_attention_heads = 12,
                           .intermediate_size = 3072, .image_size = 224, .patch_size = 16, .num_channels = 3,
                           .layer_norm_eps = 1e-6f, .hidden_act = NR_ACT_GELU_TANH, .qkv_bias = 1};
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(vc) || !cJSON_IsObject(tc))
        return nr_seterr(err, errlen, NR_EMODEL, "%s: vision_config and text_config must be objects", src);
    int rc = s_vision_config(vc, src, v, err, errlen);
    if (rc) return rc;
    const char *w = "text_config.";
    p->hidden_size = 3072;
    p->num_hidden_layers = 28;
    p->num_attention_heads = 16;
    p->num_key_value_heads = 16;
    p->head_dim = 256;
    p->intermediate_size = 24576;
    p->max_position_embeddings = 8192;
    p->vocab_size = 256000;
    p->rms_norm_eps = 1e-6f;
    p->rope_theta = 10000.0f;
    p->hidden_act = NR_ACT_GELU_TANH;
    p->image_token_index = 256000;
    DEF_INT(tc, "hidden_size", p->hidden_size, w);
    DEF_INT(tc, "num_hidden_layers", p->num_hidden_layers, w);
    DEF_INT(tc, "num_attention_heads", p->num_attention_heads, w);
    DEF_INT(tc, "num_key_value_heads", p->num_key_value_heads, w);
    DEF_INT(tc, "head_dim", p->head_dim, w);
    DEF_INT(tc, "intermediate_size", p->intermediate_size, w);
    DEF_INT(tc, "max_position_embeddings", p->max_position_embeddings, w);
    DEF_INT(tc, "vocab_size", p->vocab_size, w);
    if (s_float(tc, "rms_norm_eps", &p->rms_norm_eps) < 0 || p->rms_norm_eps < 0 ||
        s_float(tc, "rope_theta", &p->rope_theta) < 0 || !(p->rope_theta > 1.0f))
        return nr_seterr(err, errlen, NR_EMODEL, "%s: text_config.rms_norm_eps must be >= 0 and rope_theta > 1", src);
    if (s_act_key(tc, "hidden_activation", &p->hidden_act) < 0)
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: text_config.hidden_activation must be gelu, gelu_new, gelu_pytorch_tanh or quick_gelu",
                         src);
    int tie = 1, bias = 0;
    if (s_bool(tc, "tie_word_embeddings", &tie) < 0 || s_bool(tc, "attention_bias", &bias) < 0 || !tie || bias)
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: text_config: only tie_word_embeddings true and attention_bias false are supported", src);
    if (p->num_attention_heads % p->num_key_value_heads || p->head_dim % 2 || p->head_dim > 2048)
        return nr_seterr(err, errlen, NR_EMODEL,
                         "%s: text_config: num_key_value_heads %d must divide num_attention_heads %d and head_dim %d "
                         "be even (at most 2048)", src, p->num_key_value_heads, p->num_attention_heads, p->head_dim);
    if (s_int(root, "image_token_index", &p->image_token_index) < 0)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: image_token_index must be an integer", src);
    int pd = p->hidden_size;
    if (s_int(vc, "projection_dim", &pd) < 0 || pd != p->hidden_size)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: vision_config.projection_dim must equal text_config.hidden_size %d",
                         src, p->hidden_size);
    const int g1 = v->image_size / v->patch_size;
    p->image_seq_length = g1 * g1;
    if (p->max_position_embeddings <= p->image_seq_length + 2)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: text_config.max_position_embeddings %d leaves no room after %d "
                         "image tokens", src, p->max_position_embeddings, p->image_seq_length);
    snprintf(cfg->family, sizeof cfg->family, "paligemma");
    cfg->gemma_tokenizer = 1;
    cfg->num_channels = v->num_channels;
    cfg->image_size = v->image_size;
    cfg->states_seq = p->image_seq_length;
    cfg->states_hidden = p->hidden_size; /* get_image_features: projected and scaled */
    cfg->dec_hidden = p->hidden_size;
    cfg->max_positions = p->max_position_embeddings - p->image_seq_length;
    cfg->vocab_size = p->vocab_size;
    /* PaliGemmaConfig / GemmaConfig token ids: pad 0, eos 1, bos 2 */
    cfg->gen.bos_token_id = 2;
    cfg->gen.eos_token_id = 1;
    cfg->gen.pad_token_id = 0;
    cfg->gen.max_length = -1; /* unset: see below */
    if ((rc = s_gen(root, src, &cfg->gen, err, errlen))) return rc;
    if (gen_json) {
        cJSON *g = cJSON_Parse(gen_json);
        rc = cJSON_IsObject(g) ? s_gen(g, src, &cfg->gen, err, errlen)
                               : nr_seterr(err, errlen, NR_EMODEL, "%s: generation_config.json is not a JSON object",
                                           src);
        cJSON_Delete(g);
        if (rc) return rc;
    }
    /* transformers' default max_length 20 leaves no room after the image
     * tokens; without one in the files, 32 text tokens */
    if (cfg->gen.max_length < 0) cfg->gen.max_length = 32;
    else cfg->gen.max_length -= p->image_seq_length;
    if (cfg->gen.max_length < 2 || cfg->gen.max_length > cfg->max_positions)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: max_length leaves %d text tokens after %d image tokens (2..%d)",
                         src, cfg->gen.max_length, p->image_seq_length, cfg->max_positions);
    cfg->gen.decoder_start_token_id = cfg->gen.bos_token_id;
    if (cfg->gen.bos_token_id < 0 || cfg->gen.bos_token_id >= p->vocab_size || cfg->gen.eos_token_id >= p->vocab_size)
        return nr_seterr(err, errlen, NR_EMODEL, "%s: bos/eos_token_id outside the vocabulary", src);
    return 0;
}

int nr_model_config_parse(const char *config_json, const char *gen_json, const char *what, nr_model_config_t *cfg,
                          char *err, size_t errlen) {
    char src[512];
    snprintf(src, sizeof src, "%s/config.json", what ? what : ".");
    memset(cfg, 0, sizeof(*cfg));
    cfg->gen = nr_gen_config_default();
    cJSON *root = config_json ? cJSON_Parse(config_json) : NULL;
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nr_seterr(err, errlen, NR_EMODEL, "%s: not a JSON object", src);
    }
    int rc = 0;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *enc = cJSON_GetObjectItemCaseSensitive(root, "encoder");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "git") == 0) {
        if ((rc = s_git(root, src, cfg, err, errlen)) != 0) goto out;
        if ((rc = s_gen(root, src, &cfg->gen, err, errlen)) != 0) goto out;
        goto generation;
    }
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "paligemma") == 0) {
        rc = s_paligemma(root, gen_json, src, cfg, err, errlen);
        goto out;
    }
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "blip") == 0) {
        /* no generation_config.json: text_decoder.generate() uses text_config's settings */
        rc = s_blip(root, src, cfg, err, errlen);
        goto out;
    }
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "vision-encoder-decoder") != 0 || !cJSON_IsObject(enc) ||
        !cJSON_IsObject(dec)) {
        rc = nr_seterr(err, errlen, NR_EMODEL,
                       "%s: model_type must be vision-encoder-decoder (with encoder and decoder objects), git, blip "
                       "or paligemma",
                       src);
        goto out;
    }
    if ((rc = s_vit(enc, src, &cfg->vit, err, errlen)) != 0) goto out;
    if ((rc = s_gpt2(dec, src, &cfg->gpt2, err, errlen)) != 0) goto out;
    /* VisionEncoderDecoderModel (modeling_vision_encoder_decoder.py): a
     * decoder cross_attention_hidden_size must equal the encoder's
     * hidden_size, and without one the encoder states go through
     * enc_to_dec_proj when the two hidden sizes differ. GPT-2 ignores the
     * key (its cross-attention c_attn is [n_embd, 2 n_embd]), so a width
     * other than n_embd cannot run, in transformers either. */
    int xa = 0, rx = s_int(dec, "cross_attention_hidden_size", &xa);
    if (rx < 0 || (rx > 0 && xa <= 0)) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: decoder.cross_attention_hidden_size must be a positive integer",
                       src);
        goto out;
    }
    if (rx > 0 && (xa != cfg->vit.hidden_size || xa != cfg->gpt2.n_embd)) {
        rc = nr_seterr(err, errlen, NR_EMODEL,
                       "%s: decoder.cross_attention_hidden_size %d must equal encoder.hidden_size %d (transformers) and "
                       "decoder.n_embd %d (GPT-2's cross-attention reads n_embd-wide states)",
                       src, xa, cfg->vit.hidden_size, cfg->gpt2.n_embd);
        goto out;
    }
    cfg->enc_to_dec_proj = rx == 0 && cfg->vit.hidden_size != cfg->gpt2.n_embd;
    snprintf(cfg->family, sizeof cfg->family, "vit-gpt2");
    cfg->num_channels = cfg->vit.num_channels;
    cfg->image_size = cfg->vit.image_size;
    cfg->states_seq = 1 + (cfg->vit.image_size / cfg->vit.patch_size) * (cfg->vit.image_size / cfg->vit.patch_size);
    cfg->states_hidden = cfg->vit.hidden_size;
    cfg->dec_hidden = cfg->gpt2.n_embd;
    cfg->max_positions = cfg->gpt2.n_positions;
    cfg->vocab_size = cfg->gpt2.vocab_size;
    /* Generation defaults: decoder config, then top-level config, then generation_config.json. */
    if ((rc = s_gen(dec, src, &cfg->gen, err, errlen)) != 0) goto out;
    if ((rc = s_gen(root, src, &cfg->gen, err, errlen)) != 0) goto out;
generation:
    if (gen_json) {
        char gsrc[512];
        snprintf(gsrc, sizeof gsrc, "%s/generation_config.json", what ? what : ".");
        cJSON *g = cJSON_Parse(gen_json);
        if (!g || !cJSON_IsObject(g)) {
            cJSON_Delete(g);
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: not a JSON object", gsrc);
            goto out;
        }
        rc = s_gen(g, gsrc, &cfg->gen, err, errlen);
        cJSON_Delete(g);
        if (rc) goto out;
    }
    if (cfg->gen.decoder_start_token_id < 0) cfg->gen.decoder_start_token_id = cfg->gen.bos_token_id;
    if (cfg->gen.pad_token_id < 0) cfg->gen.pad_token_id = cfg->gen.eos_token_id;
    if (cfg->gen.decoder_start_token_id < 0 || cfg->gen.decoder_start_token_id >= cfg->vocab_size) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: decoder_start_token_id missing or outside the vocabulary", src);
        goto out;
    }
out:
    cJSON_Delete(root);
    return rc;
}

int nr_model_config_load(const char *dir, nr_model_config_t *cfg, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *cj = nr_model_read_file(path, S_JSON_MAX, NULL);
    if (!cj) return nr_seterr(err, errlen, NR_EMODEL, "%s: %s", path, errno == ENOENT ? "missing" : "cannot read");
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    char *gj = nr_model_read_file(path, S_JSON_MAX, NULL);
    int rc = 0;
    if (!gj && errno != ENOENT) rc = nr_seterr(err, errlen, NR_EMODEL, "%s: cannot read", path);
    else rc = nr_model_config_parse(cj, gj, dir, cfg, err, errlen);
    free(cj);
    free(gj);
    return rc;
}
