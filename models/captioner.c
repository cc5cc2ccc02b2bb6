/* Captioner: one checkpoint folder of any registered family, loaded once;
 * the vision and text stages' entry points (see captioner.h). Everything
 * family-specific goes through the family's table (models/family.h). */
#include "models/captioner.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/log.h"
#include "models/backend.h"
#include "models/family.h"
#include "models/generate.h"
#include "models/io/checkpoint.h"
#include "models/states.h"
#include "models/text/gemma_tokenizer.h"
#include "models/text/wordpiece.h"
#ifdef NR_HAVE_TOKENIZER
#include "models/tokenizer.h"
#endif
#ifdef NR_HAVE_IMAGE
#include "models/image.h"
#include "models/preprocess.h"
#endif

/* Images per encoder call: bounds the activation memory of a big batch. */
#define S_ENCODE_CHUNK 8

struct nr_captioner {
    char *dir;
    char name[256];
    nr_model_config_t cfg;
    nr_backend_t *be;
    nr_checkpoint_t *ck;
    const nr_family_ops_t *fam;
    void *fm;            /* the family's loaded model */
    int has_encoder, has_decoder;
    nr_wordpiece_t *wp; /* BERT WordPiece (cfg.wordpiece: GIT), else gtok or tok below */
    nr_gemma_tokenizer_t *gtok; /* cfg.gemma_tokenizer: PaliGemma's tokenizer.json */
#ifdef NR_HAVE_TOKENIZER
    nr_tokenizer_t *tok;
#endif
#ifdef NR_HAVE_IMAGE
    nr_preprocess_params_t pp;
    nr_image_params_t ip; /* decode limits (params max_image_bytes / max_image_pixels) */
#endif
};

nr_captioner_params_t nr_captioner_default_params(void) {
    nr_captioner_params_t p = {.device = "cpu", .num_threads = 0, .load_encoder = 1, .load_decoder = 1};
    return p;
}

static int s_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The process's resident memory (VmRSS) and the part of it that is pages
 * of mapped files (RssFile: weights read in place) in MiB, -1 when
 * unknown: logged at load, where a 3B-parameter checkpoint's weights land. */
static void s_resident_mib(long *rss, long *file) {
    *rss = *file = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    long kib;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) *rss = kib / 1024;
        if (sscanf(line, "RssFile: %ld kB", &kib) == 1) *file = kib / 1024;
    }
    fclose(f);
}

int nr_captioner_load(const char *dir, const nr_captioner_params_t *params, nr_captioner_t **out, char *err,
                      size_t errlen) {
    if (!out || !dir) return nr_seterr(err, errlen, NR_EINVAL, "captioner: no checkpoint folder");
    *out = NULL;
    nr_captioner_params_t p = params ? *params : nr_captioner_default_params();
    nr_captioner_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return nr_seterr(err, errlen, NR_ENOMEM, "captioner: out of memory");
    }
    /* name = base name of the folder, without trailing slashes */
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    size_t b = dl;
    while (b > 0 && dir[b - 1] != '/') b--;
    snprintf(c->name, sizeof c->name, "%.*s", (int)(dl - b), dir + b);
    int rc;
    char path[4096];
    if ((rc = nr_model_config_load(dir, &c->cfg, err, errlen))) goto fail;
    if ((rc = nr_checkpoint_open_dir(dir, &c->ck, err, errlen))) goto fail;
    c->be = nr_backend_new(p.device, p.num_threads, err, errlen);
    if (!c->be) {
        rc = NR_EDEVICE;
        goto fail;
    }
    c->fam = nr_family_by_name(c->cfg.family);
    if (!c->fam) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s/config.json: no family \"%s\" in this build", dir, c->cfg.family);
        goto fail;
    }
    c->has_encoder = p.load_encoder != 0;
    c->has_decoder = p.load_decoder != 0;
    if ((rc = c->fam->load(&c->cfg, c->ck, c->be, c->has_encoder, c->has_decoder, &c->fm, err, errlen))) goto fail;
    if (p.load_decoder && c->cfg.wordpiece && (rc = nr_wordpiece_load(dir, &c->wp, err, errlen))) goto fail;
    if (p.load_decoder && c->cfg.gemma_tokenizer) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if ((rc = nr_gemma_tokenizer_load(path, &c->gtok, err, errlen))) goto fail;
        if (nr_gemma_tokenizer_vocab_size(c->gtok) > c->cfg.vocab_size ||
            nr_gemma_tokenizer_token_id(c->gtok, "\n") < 0) {
            rc = nr_seterr(err, errlen, NR_EMODEL, "%s: %d ids (the model has %d) or no \"\\n\" token", path,
                           nr_gemma_tokenizer_vocab_size(c->gtok), c->cfg.vocab_size);
            goto fail;
        }
    }
#ifdef NR_HAVE_TOKENIZER
    if (p.load_decoder && !c->cfg.wordpiece && !c->cfg.gemma_tokenizer &&
        (rc = nr_tokenizer_load(dir, &c->tok, err, errlen)))
        goto fail;
#endif
#ifdef NR_HAVE_IMAGE
    c->ip = nr_image_default_params();
    if (p.max_image_bytes) c->ip.max_bytes = p.max_image_bytes;
    if (p.max_image_pixels) c->ip.max_pixels = p.max_image_pixels;
    c->pp = nr_preprocess_default_params();
    c->pp.width = c->pp.height = c->cfg.image_size;
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    if (p.load_encoder && s_exists(path) && (rc = nr_preprocess_load_config(path, &c->pp, err, errlen))) goto fail;
    int pw = 0, ph = 0;
    if (p.load_encoder && (nr_preprocess_fixed_size(&c->pp, &pw, &ph) != 0 || pw != c->cfg.image_size ||
                           ph != c->cfg.image_size)) {
        rc = nr_seterr(err, errlen, NR_EMODEL, "%s: output size %dx%d does not match the encoder's image_size %d "
                       "(a size that follows the image is not supported)", path, pw, ph, c->cfg.image_size);
        goto fail;
    }
#endif
    long rss, file;
    s_resident_mib(&rss, &file);
    nr_log(NR_LOG_INFO,
           "models: loaded %s (family %s, states [%d, %d], vocabulary %d, device %s, resident %ld MiB, "
           "%ld MiB of it mapped files)",
           c->name, c->fam->name, c->cfg.states_seq, c->cfg.states_hidden, c->cfg.vocab_size,
           p.device ? p.device : "cpu", rss, file);
    *out = c;
    return 0;
fail:
    nr_captioner_destroy(&c);
    return rc;
}

void nr_captioner_destroy(nr_captioner_t **pc) {
    if (!pc || !*pc) return;
    nr_captioner_t *c = *pc;
    if (c->fam && c->fm) c->fam->destroy(&c->fm);
    nr_wordpiece_destroy(&c->wp);
    nr_gemma_tokenizer_destroy(&c->gtok);
#ifdef NR_HAVE_TOKENIZER
    nr_tokenizer_destroy(&c->tok);
#endif
    nr_backend_destroy(&c->be);
    nr_checkpoint_close(&c->ck);
    free(c->dir);
    free(c);
    *pc = NULL;
}

const char *nr_captioner_name(const nr_captioner_t *c) { return c->name; }
const nr_model_config_t *nr_captioner_config(const nr_captioner_t *c) { return &c->cfg; }
nr_gen_config_t nr_captioner_gen_defaults(const nr_captioner_t *c) { return c->cfg.gen; }

const char *nr_captioner_family(const nr_captioner_t *c) { return c->fam->name; }
int nr_captioner_max_positions(const nr_captioner_t *c) { return c->cfg.max_positions; }

void nr_captioner_states_shape(const nr_captioner_t *c, int *seq, int *hidden) {
    if (seq) *seq = c->cfg.states_seq;
    if (hidden) *hidden = c->cfg.states_hidden;
}

void nr_captioner_pixels_shape(const nr_captioner_t *c, int *channels, int *height, int *width) {
    if (channels) *channels = c->cfg.num_channels;
    if (height) *height = c->cfg.image_size;
    if (width) *width = c->cfg.image_size;
}

/* Host buffer -> backend buffer (the same pointer on a host-memory backend). */
static float *s_to_backend(const nr_captioner_t *c, const float *host, size_t floats) {
    if (c->be->host_memory) return (float *)(uintptr_t)host;
    return nr_backend_upload_new(c->be, host, floats * sizeof(float));
}
static void s_release(const nr_captioner_t *c, const float *host, float *dev) {
    if (dev && dev != host) c->be->ops->free(c->be->ctx, dev);
}

int nr_captioner_encode(const nr_captioner_t *c, const float *pixels, int n, float *states, char *err,
                        size_t errlen) {
    if (!c || !pixels || !states || n <= 0) return nr_seterr(err, errlen, NR_EINVAL, "encode: bad arguments");
    if (!c->has_encoder) return nr_seterr(err, errlen, NR_EUNSUPPORTED, "encode: the encoder is not loaded");
    int C, H, W, S, D;
    nr_captioner_pixels_shape(c, &C, &H, &W);
    nr_captioner_states_shape(c, &S, &D);
    const size_t in1 = (size_t)C * H * W, out1 = (size_t)S * D;
    for (int i0 = 0; i0 < n; i0 += S_ENCODE_CHUNK) {
        int k = n - i0 < S_ENCODE_CHUNK ? n - i0 : S_ENCODE_CHUNK;
        const float *px = pixels + (size_t)i0 * in1;
        float *dpx = s_to_backend(c, px, (size_t)k * in1);
        float *dout = c->be->host_memory ? states + (size_t)i0 * out1
                                         : c->be->ops->alloc(c->be->ctx, (size_t)k * out1 * sizeof(float));
        int rc = (!dpx || !dout) ? NR_ENOMEM : c->fam->encode(c->fm, dpx, k, dout);
        if (rc == 0 && !c->be->host_memory)
            rc = c->be->ops->download(c->be->ctx, states + (size_t)i0 * out1, dout, (size_t)k * out1 * sizeof(float));
        s_release(c, px, dpx);
        if (!c->be->host_memory && dout) c->be->ops->free(c->be->ctx, dout);
        if (rc) return nr_seterr(err, errlen, rc == NR_ENOMEM ? NR_ENOMEM : NR_EDEVICE, "encode: %s", nr_strerror(rc));
    }
    return 0;
}

int nr_captioner_encode_images(const nr_captioner_t *c, const void *const *bytes, const size_t *sizes, int n,
                               float *states, int *status, char *err, size_t errlen) {
    return nr_captioner_encode_pages(c, bytes, sizes, NULL, n, states, status, err, errlen);
}

int nr_captioner_encode_pages(const nr_captioner_t *c, const void *const *bytes, const size_t *sizes,
                              const int *pages, int n, float *states, int *status, char *err, size_t errlen) {
    return nr_captioner_encode_seen(c, bytes, sizes, pages, n, NULL, NULL, states, status, err, errlen);
}

int nr_captioner_encode_seen(const nr_captioner_t *c, const void *const *bytes, const size_t *sizes,
                             const int *pages, int n, nr_captioner_seen_fn seen, void *arg, float *states,
                             int *status, char *err, size_t errlen) {
#ifndef NR_HAVE_IMAGE
    (void)pages;
    (void)seen;
    (void)arg;
    (void)c;
    (void)bytes;
    (void)sizes;
    (void)n;
    (void)states;
    (void)status;
    return nr_seterr(err, errlen, NR_EUNSUPPORTED, "encode_images: built without the image module");
#else
    if (!c || !bytes || !sizes || !states || !status || n <= 0)
        return nr_seterr(err, errlen, NR_EINVAL, "encode_images: bad arguments");
    if (!c->has_encoder) return nr_seterr(err, errlen, NR_EUNSUPPORTED, "encode_images: the encoder is not loaded");
    int C, H, W, S, D;
    nr_captioner_pixels_shape(c, &C, &H, &W);
    nr_captioner_states_shape(c, &S, &D);
    const size_t in1 = (size_t)C * H * W, out1 = (size_t)S * D;
    float *px = calloc((size_t)n * in1, sizeof(float));
    int *idx = malloc((size_t)n * sizeof(int));
    if (!px || !idx) {
        free(px);
        free(idx);
        return nr_seterr(err, errlen, NR_ENOMEM, "encode_images: out of memory");
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        nr_image_t *img = NULL;
        char ierr[256] = "";
        nr_image_params_t ip = c->ip;
        ip.page = pages ? pages[i] : 0;
        status[i] = nr_image_decode(bytes[i], sizes[i], &ip, &img, ierr, sizeof ierr);
        if (status[i] == 0 && seen) seen(arg, i, img);
        if (status[i] == 0) status[i] = nr_preprocess_image(img, &c->pp, px + (size_t)ok * in1, in1);
        nr_image_destroy(&img);
        memset(states + (size_t)i * out1, 0, out1 * sizeof(float));
        if (status[i] == 0) idx[ok++] = i;
        else if (n == 1)
            nr_seterr(err, errlen, status[i], "%s", ierr);
    }
    int rc = 0;
    if (ok > 0) {
        float *tmp = malloc((size_t)ok * out1 * sizeof(float));
        rc = tmp ? nr_captioner_encode(c, px, ok, tmp, err, errlen) : NR_ENOMEM;
        if (rc == 0)
            for (int j = 0; j < ok; j++)
                memcpy(states + (size_t)idx[j] * out1, tmp + (size_t)j * out1, out1 * sizeof(float));
        free(tmp);
    }
    free(px);
    free(idx);
    return rc;
#endif
}

int nr_captioner_project(const nr_captioner_t *c, const float *states, int n, float *out, char *err, size_t errlen) {
    if (!c || !states || !out || n <= 0) return nr_seterr(err, errlen, NR_EINVAL, "project: bad arguments");
    if (!c->has_decoder) return nr_seterr(err, errlen, NR_EUNSUPPORTED, "project: the decoder is not loaded");
    const size_t in = (size_t)n * c->cfg.states_seq * c->cfg.states_hidden;
    float *dst = s_to_backend(c, states, in), *y = NULL;
    int rc = dst ? c->fam->decoder_input(c->fm, dst, n, &y) : NR_ENOMEM;
    if (rc == 0 && !y) {
        memcpy(out, states, in * sizeof(float));
    } else if (rc == 0) {
        const size_t outn = (size_t)n * c->cfg.states_seq * c->cfg.dec_hidden;
        rc = c->be->ops->download(c->be->ctx, out, y, outn * sizeof(float));
        if (rc == 0) rc = c->be->ops->synchronize(c->be->ctx);
    }
    if (y) c->be->ops->free(c->be->ctx, y);
    s_release(c, states, dst);
    return rc ? nr_seterr(err, errlen, rc, "project: %s", nr_strerror(rc)) : 0;
}

int nr_captioner_generate(const nr_captioner_t *c, const float *states, int n, const nr_gen_config_t *gen, int *ids,
                          int *lens, char *err, size_t errlen) {
    if (!c || !states || !ids || !lens || n <= 0) return nr_seterr(err, errlen, NR_EINVAL, "generate: bad arguments");
    if (!c->has_decoder) return nr_seterr(err, errlen, NR_EUNSUPPORTED, "generate: the decoder is not loaded");
    nr_gen_config_t g = gen ? *gen : c->cfg.gen;
    int S, D;
    nr_captioner_states_shape(c, &S, &D);
    float *dst = s_to_backend(c, states, (size_t)n * S * D), *proj = NULL;
    if (!dst) return nr_seterr(err, errlen, NR_ENOMEM, "generate: out of memory");
    int rc = c->fam->decoder_input(c->fm, dst, n, &proj);
    if (rc) {
        rc = nr_seterr(err, errlen, rc, "generate: decoder input: %s", nr_strerror(rc));
    } else {
        nr_decoder_t d = c->fam->decoder(c->fm);
        rc = nr_generate(&d, proj ? proj : dst, n, S, &g, ids, lens, err, errlen);
    }
    if (proj) c->be->ops->free(c->be->ctx, proj);
    s_release(c, states, dst);
    return rc;
}

int nr_captioner_caption(const nr_captioner_t *c, const float *states, int n, const nr_gen_config_t *gen,
                         char **captions, int *n_tokens, char *err, size_t errlen) {
#ifndef NR_HAVE_TOKENIZER
    (void)c;
    (void)states;
    (void)n;
    (void)gen;
    (void)captions;
    (void)n_tokens;
    return nr_seterr(err, errlen, NR_EUNSUPPORTED, "caption: built without the tokenizer module");
#else
    if (!c || !captions || n <= 0) return nr_seterr(err, errlen, NR_EINVAL, "caption: bad arguments");
    if (c->has_decoder && !c->wp && !c->gtok && !c->tok)
        return nr_seterr(err, errlen, NR_EUNSUPPORTED, "caption: no tokenizer for %s in this build", c->name);
    nr_gen_config_t g = gen ? *gen : c->cfg.gen;
    for (int i = 0; i < n; i++) captions[i] = NULL;
    int *ids = malloc((size_t)n * (g.max_length > 0 ? g.max_length : 1) * sizeof(int));
    int *lens = malloc((size_t)n * sizeof(int));
    int rc = (!ids || !lens) ? nr_seterr(err, errlen, NR_ENOMEM, "caption: out of memory") : 0;
    if (!rc) rc = nr_captioner_generate(c, states, n, &g, ids, lens, err, errlen);
    for (int i = 0; i < n && rc == 0; i++) {
        char *text = NULL;
        size_t tl = 0;
        if (c->gtok) { /* PaliGemma: the tokens after <bos>, prompt and "\n", decode(skip_special_tokens=True) */
            const int skip = 1 + g.prompt_len < lens[i] ? 1 + g.prompt_len : lens[i];
            rc = nr_gemma_tokenizer_decode(c->gtok, ids + (size_t)i * g.max_length + skip, (size_t)(lens[i] - skip),
                                           NR_GEMMA_TOKENIZER_SKIP_SPECIAL, &text, &tl, err, errlen);
        } else if (c->wp) /* batch_decode(skip_special_tokens=True), clean-up as tokenizer_config.json says */
            rc = nr_wordpiece_decode(c->wp, ids + (size_t)i * g.max_length, (size_t)lens[i],
                                     NR_WORDPIECE_SKIP_SPECIAL |
                                         (nr_wordpiece_cleanup_default(c->wp) ? NR_WORDPIECE_CLEANUP : 0u),
                                     &text, &tl, err, errlen);
        else
            rc = nr_tokenizer_decode(c->tok, ids + (size_t)i * g.max_length, (size_t)lens[i],
                                     NR_TOKENIZER_SKIP_SPECIAL | NR_TOKENIZER_CLEANUP, &text, &tl, err, errlen);
        if (rc) break;
        /* strip(), as the model card's post-processing */
        size_t a = 0;
        while (a < tl && isspace((unsigned char)text[a])) a++;
        while (tl > a && isspace((unsigned char)text[tl - 1])) tl--;
        memmove(text, text + a, tl - a);
        text[tl - a] = 0;
        captions[i] = text;
        if (n_tokens) {
            int k = lens[i] - 1 - g.prompt_len; /* after the start token and the prompt */
            if (k > 0 && ids[(size_t)i * g.max_length + lens[i] - 1] == g.eos_token_id) k--;
            n_tokens[i] = k;
        }
    }
    if (rc)
        for (int i = 0; i < n; i++) {
            free(captions[i]);
            captions[i] = NULL;
        }
    free(ids);
    free(lens);
    return rc;
#endif
}

int nr_captioner_prompt_ids(const nr_captioner_t *c, const char *text, int **ids, int *n, char *err, size_t errlen) {
    if (!c || !text || !ids || !n) return nr_seterr(err, errlen, NR_EINVAL, "prompt: bad arguments");
    *ids = NULL;
    *n = 0;
    size_t k = 0;
    int rc;
    if (c->gtok) { /* PaliGemmaProcessor: <bos> + prompt + "\n", the text encoded as one */
        size_t tl = strlen(text);
        char *t = malloc(tl + 2);
        if (!t) return nr_seterr(err, errlen, NR_ENOMEM, "prompt: out of memory");
        memcpy(t, text, tl);
        t[tl] = '\n';
        t[tl + 1] = 0;
        rc = nr_gemma_tokenizer_encode(c->gtok, t, tl + 1, ids, &k, err, errlen);
        free(t);
    } else if (strcmp(c->fam->name, "blip") == 0 && c->wp) {
        rc = nr_wordpiece_encode(c->wp, text, strlen(text), 0, ids, &k, err, errlen);
    } else {
        return nr_seterr(err, errlen, NR_EUNSUPPORTED, "prompt: %s (%s) takes no text prompt%s", c->name,
                         c->fam->name, c->wp || c->tok ? "" : " or its decoder is not loaded");
    }
    if (rc) return rc;
    if (k > (size_t)c->cfg.max_positions - 2) {
        free(*ids);
        *ids = NULL;
        return nr_seterr(err, errlen, NR_EOPTION, "prompt: %zu tokens, at most %d fit this model", k,
                         c->cfg.max_positions - 2);
    }
    *n = (int)k;
    return 0;
}

int nr_captioner_takes_language(const nr_captioner_t *c) { return c && c->cfg.gemma_tokenizer; }

int nr_captioner_language_valid(const char *lang) {
    /* a primary subtag of 2-3 lower-case letters, then -subtags of 2-8 letters or digits */
    size_t n = lang ? strlen(lang) : 0, i = 0;
    if (n == 0 || n > NR_CAPTIONER_LANGUAGE_MAX) return 0;
    while (i < n && lang[i] >= 'a' && lang[i] <= 'z') i++;
    if (i < 2 || i > 3) return 0;
    while (i < n) {
        if (lang[i++] != '-') return 0;
        size_t k = 0;
        while (i < n && isalnum((unsigned char)lang[i])) i++, k++;
        if (k < 2 || k > 8) return 0;
    }
    return 1;
}

int nr_captioner_job_prompt(const nr_captioner_t *c, const char *prompt, const char *language, char *out,
                            size_t outlen, char *err, size_t errlen) {
    if (!c || !out || outlen == 0) return nr_seterr(err, errlen, NR_EINVAL, "prompt: bad arguments");
    out[0] = 0;
    if (language && language[0] && !nr_captioner_takes_language(c))
        return nr_seterr(err, errlen, NR_EUNSUPPORTED, "the %s captioner takes no language (model %s; only "
                         "paligemma does)", c->fam->name, c->name);
    if (language && language[0] && !nr_captioner_language_valid(language))
        return nr_seterr(err, errlen, NR_EOPTION, "language \"%.32s\" is not a language code such as en, es, "
                         "pt-BR or zh-TW", language);
    const char *p = prompt && prompt[0] ? prompt : NULL;
    char tmp[64];
    if (!p && nr_captioner_takes_language(c)) { /* PaliGemma's captioning prompt */
        snprintf(tmp, sizeof tmp, "caption %s", language && language[0] ? language : "en");
        p = tmp;
    }
    if (!p) return 0;
    if (strlen(p) >= outlen) return nr_seterr(err, errlen, NR_EOPTION, "prompt: longer than %zu bytes", outlen - 1);
    snprintf(out, outlen, "%s", p);
    return 0;
}

int nr_captioner_states_to_frame(const nr_captioner_t *c, const float *states, unsigned char **frame, size_t *len) {
    int S, D;
    nr_captioner_states_shape(c, &S, &D);
    int64_t shape[2] = {S, D};
    return nr_states_encode_family(c->fam->name, states, 2, shape, NR_DTYPE_F32, frame, len);
}

int nr_captioner_frame_to_states(const nr_captioner_t *c, const void *frame, size_t len, float *states, char *err,
                                 size_t errlen) {
    nr_tensor_t *t = NULL;
    char family[NR_STATES_FAMILY_MAX + 1];
    int rc = nr_states_decode_family(frame, len, &t, family, sizeof family, err, errlen);
    if (rc) return rc;
    int S, D;
    nr_captioner_states_shape(c, &S, &D);
    int ok = (t->ndim == 2 && t->shape[0] == S && t->shape[1] == D) ||
             (t->ndim == 3 && t->shape[0] == 1 && t->shape[1] == S && t->shape[2] == D);
    if (strcmp(family, c->fam->name) != 0) {
        rc = nr_seterr(err, errlen, NR_EPROTO,
                       "encoder states: made by a %s model, this text worker runs %s (%s): route the job to a "
                       "vision worker of the same model", family, c->fam->name, c->name);
    } else if (!ok) {
        char got[96] = "";
        size_t o = 0;
        for (int i = 0; i < t->ndim && o < sizeof got; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        rc = nr_seterr(err, errlen, NR_EPROTO,
                       "encoder states: shape [%s] does not match the model ([%d, %d] expected for %s)", got, S, D,
                       c->name);
    } else {
        memcpy(states, t->data, (size_t)S * D * sizeof(float));
    }
    nr_tensor_destroy(&t);
    return rc;
}
