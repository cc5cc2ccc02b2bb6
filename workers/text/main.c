/* narrator-worker-text: the text stage; encoder states (a states frame from
 * the vision stage, models/states.h) in, the caption as UTF-8 bytes out.
 * Serves any captioner family (models/family.h); a frame from another
 * family or of another shape fails its job with the reason.
 *
 * The checkpoint folder (--model) is loaded once at start, decoder and
 * tokenizer only. Job options num_beams (1..16) and max_length (1..1024)
 * override the checkpoint's generation defaults; prompt (1..256 bytes of
 * UTF-8) starts the caption with that text, for a family that takes one
 * (blip: nr_captioner_prompt_ids), and the caption comes back with the
 * prompt at its front, as transformers decodes it; PaliGemma's prompt is
 * "caption <language>" from the language option (default en) unless the
 * job gives a whole prompt, and its caption is what follows the prompt.
 * A bad option (a prompt or language for a family without them included)
 * or a frame that is malformed or
 * of another model's shape fails the job for good. With --batch-size B > 1
 * up to B jobs are decoded together, grouped by their generation settings
 * and prompt (one nr_captioner_caption call per group). */
#include "common/error.h"
#include "common/log.h"
#include "models/captioner.h"
#include "workers/model.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BEAMS_MAX 16
#define S_LENGTH_MAX 1024
#define S_PROMPT_MAX 256     /* bytes of the prompt option (NR_CLIENT_PROMPT_MAX) */
#define S_CAPTION_KV_MAX 16000 /* kv values are capped at NR_PROTO_VALUE_MAX; the frame has it all */

typedef struct {
    nr_worker_settings_t worker;
    char model[1024];
    long threads;
    long num_beams;
    long max_length;
} s_settings_t;

static const nr_config_option_t s_options[] = {
    NR_WORKER_CONFIG_OPTIONS(s_settings_t, worker),
    {"model", NR_CONFIG_STRING, 0, 0, "", offsetof(s_settings_t, model), sizeof(((s_settings_t *)0)->model),
     "checkpoint folder (Hugging Face layout of a supported family; required)"},
    {"threads", NR_CONFIG_INT, 0, 1024, "0", offsetof(s_settings_t, threads), 0,
     "CPU threads for the decoder (0 = all cores)"},
    {"num-beams", NR_CONFIG_INT, 0, S_BEAMS_MAX, "0", offsetof(s_settings_t, num_beams), 0,
     "default beam width when a job gives none (0 = the checkpoint's generation_config)"},
    {"max-length", NR_CONFIG_INT, 0, S_LENGTH_MAX, "0", offsetof(s_settings_t, max_length), 0,
     "default max_length (tokens, start token included) when a job gives none (0 = the checkpoint's)"},
    NR_CONFIG_END};

static const char s_usage[] =
    "Text stage worker: decodes each job's encoder states (input frame 0, a states frame\n"
    "from the vision stage) into a caption with the checkpoint's decoder, whatever its\n"
    "family (greedy or beam search), and writes it as UTF-8 (output frame 0). Job options:\n"
    "num_beams (1..16), max_length (1..1024, start token and prompt included; at most the\n"
    "model's position limit); unset ones come from the checkpoint's generation settings;\n"
    "prompt (1..256 bytes of UTF-8; blip: the caption starts with it, as transformers\n"
    "decodes it, \"a picture of a dog\"; paligemma: the whole prompt, \"caption es\");\n"
    "language (paligemma: \"caption <language>\", default en; a code such as es, pt-BR).\n"
    "Results: caption, model (the checkpoint folder's name), family, tokens, num_beams,\n"
    "max_length, prompt (when one was used). A bad option (bad_option; a prompt or\n"
    "language for a family that takes none, \"the git captioner takes no language\") or\n"
    "a states frame that is malformed, from another family or of another shape\n"
    "(malformed_message) fails its job for good. --model DIR is required (or\n"
    "NARRATOR_WORKER_MODEL). With --batch-size B > 1 up to B captions with the same\n"
    "settings and prompt are decoded together (capacity defaults to B).";

typedef struct {
    nr_captioner_t *cap;
    nr_gen_config_t defaults; /* checkpoint defaults with this worker's --num-beams / --max-length */
    size_t states_floats;     /* seq * hidden per caption */
} s_text_t;

/* Reads an integer job option in [lo, hi]; absent leaves *out. NR_EOPTION. */
static int s_option(const nr_msg_t *job, const char *key, long lo, long hi, int *out, char *err, size_t errlen) {
    const char *v = nr_proto_kv_get(job, key);
    if (!v) return 0;
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!((v[0] >= '0' && v[0] <= '9') || v[0] == '-') || *end || errno) /* strtol would skip spaces, '+' */
        return nr_seterr(err, errlen, NR_EOPTION, "option %s=\"%.64s\" is not an integer", key, v);
    if (x < lo || x > hi) return nr_seterr(err, errlen, NR_EOPTION, "option %s=%ld outside %ld..%ld", key, x, lo, hi);
    *out = (int)x;
    return 0;
}

/* The job's prompt text (nr_captioner_job_prompt: its prompt option, else
 * "caption <language>" for a family with languages) into out; "" when none.
 * NR_EOPTION with the reason: a language for a family without languages
 * (the family named), a language that is no code, an oversized prompt. */
static int s_prompt_text(const s_text_t *t, const nr_msg_t *job, char *out, size_t outlen, char *err,
                         size_t errlen) {
    const char *v = nr_proto_kv_get(job, "prompt"), *lang = nr_proto_kv_get(job, "language");
    size_t len = v ? strlen(v) : 0;
    if (len > S_PROMPT_MAX)
        return nr_seterr(err, errlen, NR_EOPTION, "option prompt is %zu bytes, at most %d", len, S_PROMPT_MAX);
    char detail[256] = "";
    int rc = nr_captioner_job_prompt(t->cap, v, lang, out, outlen, detail, sizeof detail);
    if (rc == NR_EUNSUPPORTED)
        return nr_seterr(err, errlen, NR_EOPTION, "%s: submit without the language option", detail);
    if (rc) return nr_seterr(err, errlen, NR_EOPTION, "option language: %s", detail);
    return 0;
}

/* The job's prompt -> gen->prompt_ids (new, the caller frees) and
 * prompt_len; none leaves none. NR_EOPTION with the reason: a family that
 * takes no prompt, a prompt too long or not UTF-8, a bad language. */
static int s_prompt(const s_text_t *t, const nr_msg_t *job, nr_gen_config_t *gen, char *err, size_t errlen) {
    char v[S_PROMPT_MAX + 1];
    int rc = s_prompt_text(t, job, v, sizeof v, err, errlen);
    if (rc || !v[0]) return rc;
    int *ids = NULL, n = 0;
    char detail[256] = "";
    rc = nr_captioner_prompt_ids(t->cap, v, &ids, &n, detail, sizeof detail);
    if (rc == NR_EUNSUPPORTED)
        return nr_seterr(err, errlen, NR_EOPTION,
                         "the %s captioner takes no prompt (model %s; only the blip and paligemma families do): "
                         "submit without the prompt option",
                         nr_captioner_family(t->cap), nr_captioner_name(t->cap));
    if (rc) return nr_seterr(err, errlen, NR_EOPTION, "option prompt: %s", detail);
    gen->prompt_ids = ids;
    gen->prompt_len = n;
    return 0;
}

/* A job's generation settings: the defaults with its options over them.
 * gen->prompt_ids is new when set (the caller frees it, on error too). */
static int s_settings(const s_text_t *t, const nr_msg_t *job, nr_gen_config_t *gen, char *err, size_t errlen) {
    *gen = t->defaults;
    int rc = s_option(job, "num_beams", 1, S_BEAMS_MAX, &gen->num_beams, err, errlen);
    if (rc == 0) rc = s_option(job, "max_length", 1, S_LENGTH_MAX, &gen->max_length, err, errlen);
    if (rc == 0) {
        int limit = nr_captioner_max_positions(t->cap);
        if (gen->max_length > limit)
            rc = nr_seterr(err, errlen, NR_EOPTION, "max_length %d is more than this model's position limit %d",
                           gen->max_length, limit);
    }
    if (rc == 0) rc = s_prompt(t, job, gen, err, errlen);
    if (rc == 0 && gen->prompt_len > 0 && gen->max_length <= 1 + gen->prompt_len)
        rc = nr_seterr(err, errlen, NR_EOPTION,
                       "max_length %d leaves no room for a caption after the start token and the prompt's %d "
                       "tokens (give max_length %d or more)",
                       gen->max_length, gen->prompt_len, gen->prompt_len + 2);
    return rc;
}

/* Checks a job's input and settings; fills states (states_floats floats). */
static int s_prepare(const s_text_t *t, const nr_msg_t *job, nr_gen_config_t *gen, float *states, char *err,
                     size_t errlen) {
    int rc = s_settings(t, job, gen, err, errlen);
    if (rc) return rc;
    if (job->frames_len < 1)
        return nr_seterr(err, errlen, NR_EPROTO, "no input frame (expected encoder states from the vision stage)");
    char detail[512] = "";
    rc = nr_captioner_frame_to_states(t->cap, job->frames[0].data, job->frames[0].size, states, detail, sizeof detail);
    if (rc) return nr_seterr(err, errlen, rc, "bad encoder states frame: %s", detail);
    return 0;
}

/* Fills a result with a caption: frame 0 and the kv. */
static int s_result(const s_text_t *t, const nr_msg_t *job, const nr_gen_config_t *gen, const char *caption,
                    int tokens, nr_msg_t *result, char *err, size_t errlen) {
    /* the record names the prompt the caption came from ("caption es");
     * the language is there as the submitted option (a RESULT keeps at
     * most NR_BROKER_RESULT_KV_MAX kv, the runtime's ms included) */
    char prompt[S_PROMPT_MAX + 1] = "";
    s_prompt_text(t, job, prompt, sizeof prompt, NULL, 0); /* checked in s_prepare */
    size_t len = strlen(caption);
    size_t kvlen = len;
    if (kvlen > S_CAPTION_KV_MAX) { /* cut at a UTF-8 character boundary */
        kvlen = S_CAPTION_KV_MAX;
        while (kvlen > 0 && ((unsigned char)caption[kvlen] & 0xC0) == 0x80) kvlen--;
    }
    char *kv = malloc(kvlen + 1);
    if (!kv) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    memcpy(kv, caption, kvlen);
    kv[kvlen] = 0;
    char ntok[24], beams[24], length[24];
    snprintf(ntok, sizeof ntok, "%d", tokens);
    snprintf(beams, sizeof beams, "%d", gen->num_beams);
    snprintf(length, sizeof length, "%d", gen->max_length);
    int rc = nr_proto_kv_add(result, "caption", kv);
    if (rc == 0) rc = nr_proto_kv_add(result, "model", nr_captioner_name(t->cap));
    if (rc == 0) rc = nr_proto_kv_add(result, "family", nr_captioner_family(t->cap));
    if (rc == 0) rc = nr_proto_kv_add(result, "tokens", ntok);
    if (rc == 0) rc = nr_proto_kv_add(result, "num_beams", beams);
    if (rc == 0) rc = nr_proto_kv_add(result, "max_length", length);
    if (rc == 0 && prompt[0]) rc = nr_proto_kv_add(result, "prompt", prompt);
    if (rc == 0) rc = nr_proto_frame_add(result, caption, len);
    free(kv);
    if (rc) return nr_seterr(err, errlen, rc, "cannot build the result");
    return 0;
}

static int s_run(void *ctx, const nr_msg_t *job, nr_msg_t *result, char *err, size_t errlen) {
    const s_text_t *t = ctx;
    float *states = malloc(t->states_floats * sizeof(float));
    if (!states) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    nr_gen_config_t gen = t->defaults;
    int rc = s_prepare(t, job, &gen, states, err, errlen);
    if (rc == 0) {
        char *caption = NULL;
        int tokens = 0;
        char detail[512] = "";
        rc = nr_captioner_caption(t->cap, states, 1, &gen, &caption, &tokens, detail, sizeof detail);
        if (rc)
            nr_seterr(err, errlen, rc, "%s", detail);
        else
            rc = s_result(t, job, &gen, caption, tokens, result, err, errlen);
        free(caption);
    }
    free((void *)gen.prompt_ids);
    free(states);
    return rc;
}

/* Whether two jobs decode in one call: the same settings and prompt. */
static int s_same(const nr_gen_config_t *a, const nr_gen_config_t *b) {
    return a->num_beams == b->num_beams && a->max_length == b->max_length && a->prompt_len == b->prompt_len &&
           (a->prompt_len == 0 || !memcmp(a->prompt_ids, b->prompt_ids, (size_t)a->prompt_len * sizeof(int)));
}

static void s_run_batch(void *ctx, const nr_msg_t *const *jobs, size_t n, nr_msg_t *const *results, int *codes,
                        char *const *errs, size_t errlen) {
    const s_text_t *t = ctx;
    nr_gen_config_t *gens = calloc(n, sizeof(*gens));
    float *states = malloc(n * t->states_floats * sizeof(float)); /* job i at slot i */
    float *group = malloc(n * t->states_floats * sizeof(float));  /* one group, packed */
    size_t *members = calloc(n, sizeof(*members));
    int *done = calloc(n, sizeof(*done));
    int *tokens = calloc(n, sizeof(*tokens));
    char **captions = calloc(n, sizeof(*captions));
    if (!gens || !states || !group || !members || !done || !tokens || !captions) {
        for (size_t i = 0; i < n; i++) codes[i] = nr_seterr(errs[i], errlen, NR_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        codes[i] = s_prepare(t, jobs[i], &gens[i], states + i * t->states_floats, errs[i], errlen);
        done[i] = codes[i] != 0;
    }
    for (size_t first = 0; first < n; first++) {
        if (done[first]) continue;
        size_t k = 0;
        for (size_t i = first; i < n; i++) {
            if (done[i] || !s_same(&gens[first], &gens[i])) continue;
            memcpy(group + k * t->states_floats, states + i * t->states_floats, t->states_floats * sizeof(float));
            members[k++] = i;
            done[i] = 1;
        }
        char detail[512] = "";
        int rc = nr_captioner_caption(t->cap, group, (int)k, &gens[first], captions, tokens, detail, sizeof detail);
        for (size_t j = 0; j < k; j++) {
            size_t i = members[j];
            if (rc)
                codes[i] = nr_seterr(errs[i], errlen, rc, "%s", detail);
            else
                codes[i] = s_result(t, jobs[i], &gens[i], captions[j], tokens[j], results[i], errs[i], errlen);
            free(captions[j]);
            captions[j] = NULL;
        }
        nr_log(NR_LOG_DEBUG, "batch of %zu: %zu decoded together (num_beams %d, max_length %d, prompt of %d tokens)",
               n, k, gens[first].num_beams, gens[first].max_length, gens[first].prompt_len);
    }
out:
    for (size_t i = 0; gens && i < n; i++) free((void *)gens[i].prompt_ids);
    free(gens);
    free(states);
    free(group);
    free(members);
    free(done);
    free(tokens);
    free(captions);
}

int main(int argc, char **argv) {
    s_settings_t settings;
    int rc = nr_worker_config_load(s_options, &settings, argc, argv, "narrator-worker-text", s_usage);
    if (rc == 1) return 0;
    if (rc) return 2;
    nr_log_set_component("worker-text");
    nr_captioner_params_t params = nr_captioner_default_params();
    params.load_encoder = 0;
    params.load_decoder = 1;
    s_text_t text = {0};
    if (nr_worker_model_load("text", &settings.worker, settings.model, settings.threads, &params, &text.cap)) return 2;
    text.defaults = nr_captioner_gen_defaults(text.cap);
    if (settings.num_beams > 0) text.defaults.num_beams = (int)settings.num_beams;
    if (settings.max_length > 0) text.defaults.max_length = (int)settings.max_length;
    int seq = 0, hidden = 0;
    nr_captioner_states_shape(text.cap, &seq, &hidden);
    text.states_floats = (size_t)seq * (size_t)hidden;
    int n_positions = nr_captioner_max_positions(text.cap);
    if (text.defaults.max_length < 2 || text.defaults.max_length > n_positions) {
        fprintf(stderr, "narrator-worker-text: max_length %d is outside 2..%d (the model's n_positions)\n",
                text.defaults.max_length, n_positions);
        nr_captioner_destroy(&text.cap);
        return 2;
    }
    nr_log(NR_LOG_INFO, "model %s: states [%d, %d], num_beams %d, max_length %d, device %s",
           nr_captioner_name(text.cap), seq, hidden, text.defaults.num_beams, text.defaults.max_length,
           settings.worker.device);
    return nr_worker_model_run("text", &settings.worker, &text.cap, &text, s_run, s_run_batch);
}
