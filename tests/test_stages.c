/* Stage tests: the vision and text stage programs in a real cluster (a real
 * redis-server, narrator-broker, narrator-worker-vision, -text and -speech)
 * with the tiny checkpoint tests/fixtures/vit-gpt2-tiny and the real images
 * in tests/fixtures/images, driven by the real `narrate` CLI and by the
 * client library.
 *
 * The reference for every caption is the engine itself, called in-process
 * (nr_captioner): the distributed route image -> vision worker -> NRS1
 * frame -> text worker must give exactly the caption the library gives for
 * the same image and generation settings. Bad inputs (images, options,
 * states frames) fail their own job for good, and the workers keep serving.
 * A worker with a missing or corrupt model folder exits non-zero at start
 * with a message naming the file. Nothing asserts a time. */
#include "client/client.h"
#include "common/error.h"
#include "models/captioner.h"
#include "models/states.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAX_PROCS 8
#define S_WAIT_MS 120000
#define S_MODEL_NAME "vit-gpt2-tiny"

typedef struct {
    nr_harness_cluster_t cl; /* redis, broker, workers, folder */
    char *broker_bin, *vision_bin, *text_bin, *speech_bin, *narrate_bin;
    char *model_dir, *images_dir;
    nr_client_t *client;
    nr_captioner_t *cap; /* the library, in-process: the reference */
    size_t states_floats;
} s_cluster_t;

static s_cluster_t C; /* Criterion runs each test in its own process */

/* ---- diagnostics ---- */

static void s_dump_logs(void) {
    if (!C.cl.dir) return;
    char *log = nr_harness_path(C.cl.dir, "broker.log");
    nr_harness_dump_log(log, 4000);
    free(log);
    for (int i = 0; i < C.cl.n_workers; i++) {
        log = nr_harness_path(C.cl.dir, "worker-%d.log", i);
        nr_harness_dump_log(log, 3000);
        free(log);
    }
    log = nr_harness_path(C.cl.dir, "narrate.log");
    nr_harness_dump_log(log, 3000);
    free(log);
}

#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump_logs, cond, __VA_ARGS__)

/* ---- programs and the cluster ---- */

static void s_programs(void) {
    C.broker_bin = nr_harness_program("narrator-broker");
    C.vision_bin = nr_harness_program("narrator-worker-vision");
    C.text_bin = nr_harness_program("narrator-worker-text");
    C.speech_bin = nr_harness_program("narrator-worker-speech");
    C.narrate_bin = nr_harness_program("narrate");
    C.model_dir = nr_harness_source_path("tests/fixtures/vit-gpt2-tiny");
    C.images_dir = nr_harness_source_path("tests/fixtures/images");
    if (!C.model_dir || !C.images_dir) cr_skip_test("tests/fixtures is missing (NR_SOURCE_DIR)");
}

static void s_setup(void) {
    memset(&C, 0, sizeof C);
    s_programs();
    if (!C.broker_bin || !C.vision_bin || !C.text_bin || !C.speech_bin || !C.narrate_bin)
        cr_skip_test("a program is not built (broker, vision, text, speech worker, narrate): %s",
                     nr_harness_error());
    char err[512] = "";
    /* One CPU thread here and in the workers (--threads 1): the same
     * arithmetic order, so the same bits (a different split of the work
     * changes the last bits of the states). */
    nr_captioner_params_t params = nr_captioner_default_params();
    params.num_threads = 1;
    cr_assert_eq(nr_captioner_load(C.model_dir, &params, &C.cap, err, sizeof err), 0, "%s", err);
    int seq = 0, hidden = 0;
    nr_captioner_states_shape(C.cap, &seq, &hidden);
    C.states_floats = (size_t)seq * hidden;
    nr_harness_redis_params_t rp;
    nr_harness_redis_default_params(&rp);
    rp.appendonly = 0;
    cr_assert_eq(nr_harness_cluster_start(&C.cl, "stages", &rp), 0, "%s", nr_harness_error());
    static const char *const worker_args[] = {"--heartbeat-ms", "250", "--log-level", "debug", NULL};
    C.cl.worker_args = worker_args;
    const char *broker_args[] = {"--heartbeat-ms", "250", "--log-level", "debug", NULL};
    s_require(nr_harness_cluster_spawn_broker(&C.cl, C.broker_bin, "broker.log", broker_args) == 0,
              "%s", nr_harness_error());
    C.client = nr_client_new(C.cl.client_ep, 5000);
    cr_assert_not_null(C.client);
    nr_client_set_busy_wait(C.client, 60000);
}

static void s_teardown(void) {
    nr_client_destroy(&C.client);
    nr_harness_cluster_stop(&C.cl);
    nr_captioner_destroy(&C.cap);
    free(C.broker_bin);
    free(C.vision_bin);
    free(C.text_bin);
    free(C.speech_bin);
    free(C.narrate_bin);
    free(C.model_dir);
    free(C.images_dir);
    memset(&C, 0, sizeof C);
}

/* Starts a worker program with the common flags plus `extra` (NULL-ended). */
static int s_worker_start(const char *bin, const char *name, const char *const *extra) {
    cr_assert_lt(C.cl.n_workers, S_MAX_PROCS);
    int index = nr_harness_cluster_spawn_worker(&C.cl, bin, name, extra);
    s_require(index >= 0, "%s", nr_harness_error());
    return index;
}

/* Waits until STATS reports at least n live workers for stage. */
static void s_wait_workers(const char *stage, long n) {
    long have = nr_harness_wait_workers(C.client, stage, n, S_WAIT_MS);
    s_require(have >= n, "stage %s has %ld live workers, wanted %ld", stage, have, n);
}

/* The three stage workers; batch > 1 turns on the batch handlers of vision
 * and text (capacity = batch, a long batch wait so batches fill). */
static void s_stage_workers(int batch) {
    char b[16];
    snprintf(b, sizeof b, "%d", batch);
    const char *vision[] = {"--model", C.model_dir, "--threads", "1", "--batch-size", b, "--batch-wait-ms", "200",
                            NULL};
    const char *text[] = {"--model", C.model_dir, "--threads", "1", "--batch-size", b, "--batch-wait-ms", "200", NULL};
    s_worker_start(C.vision_bin, "vision-1", vision);
    s_worker_start(C.text_bin, "text-1", text);
    s_worker_start(C.speech_bin, "speech-1", NULL);
    s_wait_workers("vision", 1);
    s_wait_workers("text", 1);
    s_wait_workers("speech", 1);
}

/* ---- the library reference ---- */

static char *s_image_path(const char *name) { return nr_harness_path(C.images_dir, "%s", name); }

/* Encoder states of one image file, in-process; NULL when it fails. */
static float *s_lib_states(const char *name) {
    char *path = s_image_path(name);
    size_t size = 0;
    char *bytes = nr_harness_read_file(path, &size);
    free(path);
    cr_assert_not_null(bytes, "cannot read %s", name);
    float *states = malloc(C.states_floats * sizeof(float));
    cr_assert_not_null(states);
    const void *in[1] = {bytes};
    int status = 0;
    char err[512] = "";
    int rc = nr_captioner_encode_images(C.cap, in, &size, 1, states, &status, err, sizeof err);
    free(bytes);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(status, 0, "library cannot encode %s: %s", name, err);
    return states;
}

/* The library's caption for states with num_beams / max_length (0 = the
 * checkpoint's default). */
static char *s_lib_caption_states(const float *states, int num_beams, int max_length) {
    nr_gen_config_t g = nr_captioner_gen_defaults(C.cap);
    if (num_beams) g.num_beams = num_beams;
    if (max_length) g.max_length = max_length;
    char *caption = NULL;
    char err[512] = "";
    int rc = nr_captioner_caption(C.cap, states, 1, &g, &caption, NULL, err, sizeof err);
    cr_assert_eq(rc, 0, "library caption: %s", err);
    return caption;
}

static char *s_lib_caption(const char *name, int num_beams, int max_length) {
    float *states = s_lib_states(name);
    char *caption = s_lib_caption_states(states, num_beams, max_length);
    free(states);
    return caption;
}

/* The library's states frame for an image (what the vision stage must send). */
static unsigned char *s_lib_frame(const char *name, size_t *len) {
    float *states = s_lib_states(name);
    unsigned char *frame = NULL;
    cr_assert_eq(nr_captioner_states_to_frame(C.cap, states, &frame, len), 0);
    free(states);
    return frame;
}

/* ---- narrate ---- */

/* Copies fixture images into a fresh folder under the test dir. */
static char *s_input_dir(const char *tag, const char *const *names) {
    char *dir = nr_harness_path(C.cl.dir, "in-%s", tag);
    cr_assert_eq(mkdir(dir, 0755), 0);
    for (int i = 0; names[i]; i++) {
        char *src = s_image_path(names[i]);
        size_t size = 0;
        char *data = nr_harness_read_file(src, &size);
        cr_assert_not_null(data, "cannot read %s", src);
        char *dst = nr_harness_path(dir, "%s", names[i]);
        cr_assert_eq(nr_harness_write_file(dst, data, size), 0);
        free(dst);
        free(data);
        free(src);
    }
    return dir;
}

/* Runs `narrate --broker EP submit IN -o OUT [extra...]`; returns its exit code. */
static int s_narrate_submit(const char *in, const char *out, const char *const *extra) {
    char *log = nr_harness_path(C.cl.dir, "narrate.log");
    const char *argv[32];
    int n = 0;
    argv[n++] = C.narrate_bin;
    argv[n++] = "--broker";
    argv[n++] = C.cl.client_ep;
    argv[n++] = "--timeout";
    argv[n++] = "60";
    argv[n++] = "submit";
    argv[n++] = in;
    argv[n++] = "-o";
    argv[n++] = out;
    for (int i = 0; extra && extra[i] && n < 31; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    int status = 0;
    int rc = nr_harness_run(argv, NULL, log, S_WAIT_MS, &status);
    free(log);
    s_require(rc == 0, "narrate did not finish: %s", nr_harness_error());
    return nr_harness_exit_code(status);
}

/* The output name narrate uses for a fixture name: the whole name, so
 * DIR/<name>.txt, .wav, .json. */
static void s_stem(const char *name, char *out, size_t size) { snprintf(out, size, "%s", name); }

static char *s_out_file(const char *out, const char *name, const char *ext, size_t *size) {
    char stem[256];
    s_stem(name, stem, sizeof stem);
    char *path = nr_harness_path(out, "%s.%s", stem, ext);
    char *data = nr_harness_read_file(path, size);
    free(path);
    return data;
}

/* ---- WAV ---- */

static uint32_t s_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t s_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* NULL when `wav` is a 16-bit PCM mono WAV with real sound, else what is wrong. */
static const char *s_check_wav(const uint8_t *wav, size_t size, char *why, size_t whylen) {
    if (size < 44 || memcmp(wav, "RIFF", 4) || memcmp(wav + 8, "WAVE", 4)) return "not RIFF/WAVE";
    if (s_le32(wav + 4) != size - 8) return "RIFF size does not match the file";
    size_t pos = 12;
    int have_fmt = 0;
    while (pos + 8 <= size) {
        uint32_t len = s_le32(wav + pos + 4);
        const uint8_t *body = wav + pos + 8;
        if (len > size - pos - 8) return "chunk runs past the end of the file";
        if (!memcmp(wav + pos, "fmt ", 4)) {
            if (len < 16 || s_le16(body) != 1 || s_le16(body + 2) != 1 || s_le16(body + 14) != 16)
                return "not 16-bit PCM mono";
            have_fmt = 1;
        } else if (!memcmp(wav + pos, "data", 4)) {
            if (!have_fmt) return "data before fmt";
            if (len < 2 || len % 2) return "empty or odd data chunk";
            size_t n = len / 2, loud = 0;
            int peak = 0;
            for (size_t i = 0; i < n; i++) {
                int v = (int16_t)s_le16(body + 2 * i);
                if (v < 0) v = -v;
                if (v > peak) peak = v;
                if (v > 500) loud++;
            }
            if (peak < 1000 || loud < n / 100) {
                snprintf(why, whylen, "silent: peak %d, %zu of %zu samples above 500", peak, loud, n);
                return why;
            }
            return NULL;
        }
        pos += 8 + len + (len & 1);
    }
    return "no data chunk";
}

/* ---- checks on narrate's outputs ---- */

static const char *s_json_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A finished image: .txt is the library caption plus a newline, .wav is
 * valid and not silent, .json is the done record with models, timings and
 * attempts of all three stages. Prints the per-stage timings (information). */
static void s_check_done(const char *out, const char *name, const char *want_caption) {
    size_t size = 0;
    char *txt = s_out_file(out, name, "txt", &size);
    s_require(txt != NULL, "%s: no .txt written", name);
    size_t wl = strlen(want_caption);
    s_require(size == wl + 1 && memcmp(txt, want_caption, wl) == 0 && txt[wl] == '\n',
              "%s: caption through the cluster \"%s\" differs from the library's \"%s\"", name, txt, want_caption);
    free(txt);

    char *wav = s_out_file(out, name, "wav", &size);
    s_require(wav != NULL, "%s: no .wav written", name);
    char why[128];
    const char *bad = s_check_wav((const uint8_t *)wav, size, why, sizeof why);
    s_require(bad == NULL, "%s: bad WAV: %s", name, bad);
    free(wav);

    char *json = s_out_file(out, name, "json", &size);
    s_require(json != NULL, "%s: no .json written", name);
    cJSON *rec = cJSON_Parse(json);
    s_require(rec != NULL, "%s: .json does not parse: %s", name, json);
    const char *state = s_json_str(rec, "state");
    s_require(state && !strcmp(state, "done"), "%s: state %s", name, state ? state : "(none)");
    const char *caption = s_json_str(rec, "caption");
    s_require(caption && !strcmp(caption, want_caption), "%s: record caption %s", name, caption ? caption : "(none)");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(rec, "model");
    const char *mv = s_json_str(model, "vision"), *mt = s_json_str(model, "text");
    s_require(mv && mt && !strcmp(mv, S_MODEL_NAME) && !strcmp(mt, S_MODEL_NAME), "%s: model %s / %s", name,
              mv ? mv : "(none)", mt ? mt : "(none)");
    const cJSON *timings = cJSON_GetObjectItemCaseSensitive(rec, "timings_ms");
    const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(rec, "attempts");
    const char *stages[] = {"vision", "text", "speech"};
    double ms[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(timings, stages[i]);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(attempts, stages[i]);
        s_require(cJSON_IsNumber(t) && t->valuedouble >= 0, "%s: no timing for %s: %s", name, stages[i], json);
        s_require(cJSON_IsNumber(a) && a->valueint == 1, "%s: attempts of %s not 1: %s", name, stages[i], json);
        ms[i] = t->valuedouble;
    }
    fprintf(stderr, "stages: %s: vision %.0f ms, text %.0f ms, speech %.0f ms; caption \"%s\"\n", name, ms[0], ms[1],
            ms[2], want_caption);
    cJSON_Delete(rec);
    free(json);
}

/* A failed image: no .txt/.wav, a .json record with this error at vision. */
static void s_check_failed(const char *out, const char *name, const char *error) {
    size_t size = 0;
    char *txt = s_out_file(out, name, "txt", &size);
    s_require(txt == NULL, "%s: a .txt was written for a failed image", name);
    char *json = s_out_file(out, name, "json", &size);
    s_require(json != NULL, "%s: no .json written for a failed image", name);
    cJSON *rec = cJSON_Parse(json);
    s_require(rec != NULL, "%s: .json does not parse", name);
    const char *state = s_json_str(rec, "state"), *err = s_json_str(rec, "error");
    const char *stage = s_json_str(rec, "stage"), *msg = s_json_str(rec, "error_message");
    s_require(state && !strcmp(state, "failed"), "%s: state %s", name, state ? state : "(none)");
    s_require(stage && !strcmp(stage, "vision"), "%s: failed at %s", name, stage ? stage : "(none)");
    s_require(err && !strcmp(err, error), "%s: error %s, wanted %s", name, err ? err : "(none)", error);
    s_require(msg && msg[0], "%s: no error message", name);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, "attempts"), "vision");
    s_require(cJSON_IsNumber(a) && a->valueint == 1, "%s: a final error was retried: %s", name, json);
    cJSON_Delete(rec);
    free(json);
}

/* ---- client jobs ---- */

/* Submits a job with a random id; options "k", "v", ..., NULL. */
static void s_submit(const char *route, const char *const *options, const void *input, size_t size, char *id_out) {
    nr_kv_t kv[16];
    size_t n = 0;
    for (size_t i = 0; options && options[i] && options[i + 1] && n < 16; i += 2, n++) {
        kv[n].key = (char *)options[i];
        kv[n].value = (char *)options[i + 1];
    }
    char id[NR_CLIENT_ID_HEX + 1];
    cr_assert_eq(nr_client_random_id(id), 0);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_submit(C.client, id, route, kv, n, input, size, &reply);
    s_require(rc == 0, "submit: %s (%s)", nr_strerror(rc), nr_client_error(C.client));
    snprintf(id_out, NR_PROTO_ID_MAX + 1, "%s", id);
    nr_proto_msg_clear(&reply);
}

/* Waits for a final state; the record is left in *record. */
static void s_wait_final(const char *id, nr_msg_t *record) {
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    while (nr_harness_now_ms() < end) {
        int rc = nr_client_status(C.client, id, record);
        s_require(rc == 0, "status %s: %s (%s)", id, nr_strerror(rc), nr_client_error(C.client));
        if (nr_harness_job_final(nr_harness_kv(record, "state"))) return;
        nr_harness_sleep_ms(20);
    }
    s_require(0, "job %s is still %s", id, nr_harness_kv(record, "state"));
}

/* Submits a job and asserts it fails at `stage` with `error`, first attempt. */
static void s_expect_fail(const char *route, const char *const *options, const void *input, size_t size,
                          const char *stage, const char *error, const char *what) {
    char id[NR_PROTO_ID_MAX + 1];
    s_submit(route, options, input, size, id);
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    s_wait_final(id, &rec);
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "failed"), "%s: state %s", what, nr_harness_kv(&rec, "state"));
    s_require(!strcmp(nr_harness_kv(&rec, "stage"), stage), "%s: failed at %s", what, nr_harness_kv(&rec, "stage"));
    s_require(!strcmp(nr_harness_kv(&rec, "error"), error), "%s: error %s (%s), wanted %s", what,
              nr_harness_kv(&rec, "error"), nr_harness_kv(&rec, "error_message"), error);
    s_require(nr_harness_kv(&rec, "error_message")[0] != '\0', "%s: no error message", what);
    s_require(nr_harness_kv_long(&rec, "attempts") == 1, "%s: a final error took %s attempts", what,
              nr_harness_kv(&rec, "attempts"));
    fprintf(stderr, "stages: %s -> %s: %s\n", what, error, nr_harness_kv(&rec, "error_message"));
    nr_proto_msg_clear(&rec);
}

/* Submits a text job and returns its caption (the stage's output frame),
 * asserting it is done and the kv caption matches the frame. */
static char *s_text_caption(const void *frame, size_t len, const char *const *options) {
    char id[NR_PROTO_ID_MAX + 1];
    s_submit("text", options, frame, len, id);
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    s_wait_final(id, &rec);
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "text job %s (%s: %s)", nr_harness_kv(&rec, "state"),
              nr_harness_kv(&rec, "error"), nr_harness_kv(&rec, "error_message"));
    char *kv_caption = strdup(nr_harness_kv(&rec, "text.caption"));
    s_require(!strcmp(nr_harness_kv(&rec, "text.model"), nr_captioner_name(C.cap)), "text.model %s",
              nr_harness_kv(&rec, "text.model"));
    s_require(nr_harness_kv_long(&rec, "text.tokens") >= 0, "no text.tokens");
    nr_proto_msg_clear(&rec);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    cr_assert_eq(nr_client_fetch(C.client, id, "text", &reply), 0, "%s", nr_client_error(C.client));
    cr_assert_eq(reply.frames_len, 1);
    char *caption = strndup((const char *)reply.frames[0].data, reply.frames[0].size);
    nr_proto_msg_clear(&reply);
    s_require(!strcmp(caption, kv_caption), "frame caption \"%s\" != kv caption \"%s\"", caption, kv_caption);
    free(kv_caption);
    return caption;
}

/* ---- tests with a cluster ---- */

TestSuite(stages, .init = s_setup, .fini = s_teardown, .timeout = 280);

static const char *const s_good[] = {"chelsea_317x211.jpg", "rocket_223x225.jpg", "astronaut_50x40_up.jpg",
                                     "coffee_la.png", "astronaut_rgba_webp.webp", NULL};

/* `narrate submit` of a folder of real photos (JPEG, PNG, WebP): exit 0,
 * and per image the library's caption, a sounding WAV and the record. */
Test(stages, narrate_submit_captions_equal_library) {
    s_stage_workers(1);
    char *in = s_input_dir("good", s_good);
    char *out = nr_harness_path(C.cl.dir, "out");
    int code = s_narrate_submit(in, out, NULL);
    s_require(code == 0, "narrate submit exited %d", code);
    for (int i = 0; s_good[i]; i++) {
        char *want = s_lib_caption(s_good[i], 0, 0);
        s_check_done(out, s_good[i], want);
        free(want);
    }
    free(in);
    free(out);
}

/* Corrupt, non-image and oversized images among good ones: each fails
 * alone with its own code, the good ones finish, the worker keeps serving. */
Test(stages, bad_images_fail_alone) {
    s_stage_workers(1);
    const char *names[] = {"chelsea_317x211.jpg", "bad_truncated.jpg", "rocket_223x225.jpg", "bad_garbage.jpg",
                           "bomb_60000x60000.jpg", "bad_truncated.png", NULL};
    char *in = s_input_dir("mixed", names);
    char *out = nr_harness_path(C.cl.dir, "out");
    int code = s_narrate_submit(in, out, NULL);
    s_require(code == 1, "narrate submit with failing images exited %d, wanted 1", code);
    for (int i = 0; i < 3; i += 2) {
        char *want = s_lib_caption(names[i], 0, 0);
        s_check_done(out, names[i], want);
        free(want);
    }
    s_check_failed(out, "bad_truncated.jpg", "bad_image");
    s_check_failed(out, "bad_garbage.jpg", "not_an_image");
    s_check_failed(out, "bomb_60000x60000.jpg", "image_too_large");
    s_check_failed(out, "bad_truncated.png", "bad_image");
    s_require(nr_harness_proc_running(C.cl.workers[0]), "the vision worker died");
    /* and it still serves: a good image after the bad ones */
    const char *again[] = {"astronaut_50x40_up.jpg", NULL};
    char *in2 = s_input_dir("again", again);
    s_require(s_narrate_submit(in2, out, NULL) == 0, "a good image after bad ones failed");
    char *want = s_lib_caption(again[0], 0, 0);
    s_check_done(out, again[0], want);
    free(want);
    free(in);
    free(in2);
    free(out);
}

/* Greedy (--beams 1), beam 4 and a shorter max_length through the route
 * equal the library's captions with the same settings. */
Test(stages, greedy_and_beam4_equal_library) {
    s_stage_workers(1);
    const char *names[] = {"chelsea_317x211.jpg", "rocket_223x225.jpg", NULL};
    char *in = s_input_dir("beams", names);
    struct {
        const char *beams, *length;
        int nb, ml;
    } cases[] = {{"1", NULL, 1, 0}, {"4", NULL, 4, 0}, {"1", "8", 1, 8}, {"3", "12", 3, 12}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *out = nr_harness_path(C.cl.dir, "out-%zu", c);
        const char *extra[] = {"--beams", cases[c].beams, cases[c].length ? "--max-length" : NULL, cases[c].length,
                               NULL};
        int code = s_narrate_submit(in, out, extra);
        s_require(code == 0, "narrate submit --beams %s exited %d", cases[c].beams, code);
        for (int i = 0; names[i]; i++) {
            char *want = s_lib_caption(names[i], cases[c].nb, cases[c].ml);
            s_check_done(out, names[i], want);
            free(want);
        }
        free(out);
    }
    /* greedy and beam search really differ on this model for at least one image */
    int differ = 0;
    for (int i = 0; names[i]; i++) {
        char *g = s_lib_caption(names[i], 1, 0), *b = s_lib_caption(names[i], 4, 0);
        differ |= strcmp(g, b) != 0;
        free(g);
        free(b);
    }
    cr_expect(differ, "greedy and beam 4 give the same captions here: the beam check proves little");
    free(in);
}

/* The vision stage's output frame is byte for byte the library's NRS1
 * frame; the text stage turns it into the library's caption. */
Test(stages, vision_frame_and_text_caption_equal_library) {
    s_stage_workers(1);
    const char *name = "chelsea_317x211.jpg";
    char *path = s_image_path(name);
    size_t size = 0;
    char *bytes = nr_harness_read_file(path, &size);
    cr_assert_not_null(bytes);
    char id[NR_PROTO_ID_MAX + 1];
    s_submit("vision", NULL, bytes, size, id);
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    s_wait_final(id, &rec);
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "vision job %s (%s)", nr_harness_kv(&rec, "state"),
              nr_harness_kv(&rec, "error_message"));
    s_require(!strcmp(nr_harness_kv(&rec, "vision.model"), S_MODEL_NAME), "vision.model %s",
              nr_harness_kv(&rec, "vision.model"));
    s_require(nr_harness_kv_long(&rec, "vision.image_bytes") == (long)size, "vision.image_bytes %s",
              nr_harness_kv(&rec, "vision.image_bytes"));
    nr_proto_msg_clear(&rec);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    cr_assert_eq(nr_client_fetch(C.client, id, "vision", &reply), 0, "%s", nr_client_error(C.client));
    size_t want_len = 0;
    unsigned char *want = s_lib_frame(name, &want_len);
    cr_assert_eq(reply.frames_len, 1);
    s_require(reply.frames[0].size == want_len, "vision frame is %zu bytes, the library's %zu",
              (size_t)reply.frames[0].size, want_len);
    if (memcmp(reply.frames[0].data, want, want_len) != 0) {
        float *got = malloc(C.states_floats * sizeof(float)), *lib = malloc(C.states_floats * sizeof(float));
        char err[256] = "";
        cr_assert_eq(nr_captioner_frame_to_states(C.cap, reply.frames[0].data, want_len, got, err, sizeof err), 0);
        cr_assert_eq(nr_captioner_frame_to_states(C.cap, want, want_len, lib, err, sizeof err), 0);
        double d = 0;
        for (size_t i = 0; i < C.states_floats; i++) d = fmax(d, fabs((double)got[i] - lib[i]));
        s_require(0, "vision frame differs from the library's: max abs difference %g", d);
    }
    nr_proto_msg_clear(&reply);
    const char *opts[] = {"num_beams", "2", NULL};
    char *caption = s_text_caption(want, want_len, opts);
    char *lib = s_lib_caption(name, 2, 0);
    s_require(!strcmp(caption, lib), "text stage \"%s\" != library \"%s\"", caption, lib);
    free(caption);
    free(lib);
    free(want);
    free(bytes);
    free(path);
}

/* Bad generation options fail the text job for good (bad_option). */
Test(stages, text_bad_options_fail) {
    s_stage_workers(1);
    size_t len = 0;
    unsigned char *frame = s_lib_frame("rocket_223x225.jpg", &len);
    const char *o1[] = {"num_beams", "0", NULL};
    const char *o2[] = {"num_beams", "17", NULL};
    const char *o3[] = {"num_beams", "two", NULL};
    const char *o4[] = {"max_length", "0", NULL};
    const char *o5[] = {"max_length", "1025", NULL};
    const char *o6[] = {"max_length", "100", NULL}; /* more than the tiny model's n_positions 64 */
    const char *o7[] = {"num_beams", "4", "max_length", "", NULL};
    const char *o8[] = {"num_beams", " 4", NULL};
    const char *o9[] = {"max_length", "1", NULL}; /* the start token alone: the engine wants 2 or more */
    s_expect_fail("text", o1, frame, len, "text", "bad_option", "num_beams=0");
    s_expect_fail("text", o2, frame, len, "text", "bad_option", "num_beams=17");
    s_expect_fail("text", o3, frame, len, "text", "bad_option", "num_beams=two");
    s_expect_fail("text", o4, frame, len, "text", "bad_option", "max_length=0");
    s_expect_fail("text", o5, frame, len, "text", "bad_option", "max_length=1025");
    s_expect_fail("text", o6, frame, len, "text", "bad_option", "max_length=100");
    s_expect_fail("text", o7, frame, len, "text", "bad_option", "max_length=''");
    s_expect_fail("text", o8, frame, len, "text", "bad_option", "num_beams=' 4'");
    s_expect_fail("text", o9, frame, len, "text", "bad_option", "max_length=1");
    /* the whole route: vision passes, text refuses */
    char *path = s_image_path("rocket_223x225.jpg");
    size_t size = 0;
    char *bytes = nr_harness_read_file(path, &size);
    s_expect_fail("vision,text,speech", o1, bytes, size, "text", "bad_option", "route with num_beams=0");
    /* and the worker still serves */
    const char *ok[] = {"num_beams", "1", "max_length", "10", NULL};
    char *caption = s_text_caption(frame, len, ok);
    char *lib = s_lib_caption("rocket_223x225.jpg", 1, 10);
    s_require(!strcmp(caption, lib), "text stage \"%s\" != library \"%s\"", caption, lib);
    free(caption);
    free(lib);
    free(bytes);
    free(path);
    free(frame);
}

/* Forged states frames fail cleanly (malformed_message, final); the text
 * worker keeps serving. */
Test(stages, forged_states_frames_fail) {
    s_stage_workers(1);
    size_t len = 0;
    unsigned char *frame = s_lib_frame("chelsea_317x211.jpg", &len);
    s_expect_fail("text", NULL, "hello", 5, "text", "malformed_message", "garbage frame");
    s_expect_fail("text", NULL, frame, len - 1, "text", "malformed_message", "truncated frame");
    s_expect_fail("text", NULL, frame, 16, "text", "malformed_message", "header only");
    unsigned char *forged = malloc(len + 4);
    cr_assert_not_null(forged);
    memcpy(forged, frame, len);
    memset(forged + len, 0, 4);
    s_expect_fail("text", NULL, forged, len + 4, "text", "malformed_message", "trailing bytes");
    memcpy(forged, frame, len);
    forged[4] = 7; /* NRS2 family name length */
    s_expect_fail("text", NULL, forged, len, "text", "malformed_message", "bad family length");
    memcpy(forged, frame, len);
    forged[0] = 'X'; /* magic */
    s_expect_fail("text", NULL, forged, len, "text", "malformed_message", "bad magic");
    /* a well-formed frame of another model's shape */
    int64_t shape[2] = {196, 32};
    float *states = calloc(196 * 32, sizeof(float));
    unsigned char *other = NULL;
    size_t other_len = 0;
    cr_assert_eq(nr_states_encode(states, 2, shape, NR_DTYPE_F32, &other, &other_len), 0);
    s_expect_fail("text", NULL, other, other_len, "text", "malformed_message", "shape [196, 32]");
    /* huge declared shape, tiny frame */
    memcpy(forged, frame, len);
    memset(forged + 12 + 12, 0xff, 8); /* after "NRS2", the family fields (4 + 8) and dtype, ndim */
    s_expect_fail("text", NULL, forged, len, "text", "malformed_message", "huge shape");
    s_require(nr_harness_proc_running(C.cl.workers[1]), "the text worker died");
    char *caption = s_text_caption(frame, len, NULL);
    char *lib = s_lib_caption("chelsea_317x211.jpg", 0, 0);
    s_require(!strcmp(caption, lib), "text stage \"%s\" != library \"%s\"", caption, lib);
    free(caption);
    free(lib);
    free(states);
    free(other);
    free(forged);
    free(frame);
}

/* Vision jobs fed directly: each image error keeps its own code. */
Test(stages, vision_job_errors) {
    s_stage_workers(1);
    s_expect_fail("vision", NULL, "GIF89a....", 10, "vision", "bad_image", "truncated GIF header");
    s_expect_fail("vision", NULL, "%PDF-1.7\n%", 10, "vision", "not_an_image", "PDF header");
    s_expect_fail("vision", NULL, "", 0, "vision", "not_an_image", "empty input");
    const struct {
        const char *name, *error;
    } cases[] = {{"bad_truncated_header.jpg", "bad_image"}, {"bad_zero_width.png", "bad_image"},
                 {"bomb_16384x16384.webp", "image_too_large"}, {"bad_text.png", "not_an_image"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = s_image_path(cases[i].name);
        size_t size = 0;
        char *bytes = nr_harness_read_file(path, &size);
        cr_assert_not_null(bytes, "%s", path);
        s_expect_fail("vision", NULL, bytes, size, "vision", cases[i].error, cases[i].name);
        free(bytes);
        free(path);
    }
    /* The page option (narrate submit --all-pages): not a page number is
     * bad_option, a page the image does not have is bad_image. */
    char *path = s_image_path("chelsea_317x211.jpg");
    size_t size = 0;
    char *bytes = nr_harness_read_file(path, &size);
    cr_assert_not_null(bytes, "%s", path);
    const char *bad_page[] = {"page", "two", NULL}, *no_page[] = {"page", "1", NULL};
    s_expect_fail("vision", bad_page, bytes, size, "vision", "bad_option", "page=two");
    s_expect_fail("vision", no_page, bytes, size, "vision", "bad_image", "page 1 of a JPEG");
    free(bytes);
    free(path);
    s_require(nr_harness_proc_running(C.cl.workers[0]), "the vision worker died");
}

/* --max-pixels and --max-input-bytes reach the image decoder. */
Test(stages, vision_limits) {
    const char *vision[] = {"--model", C.model_dir, "--max-pixels", "10000", "--max-input-bytes", "10000", NULL};
    s_worker_start(C.vision_bin, "vision-small", vision);
    s_wait_workers("vision", 1);
    const struct {
        const char *name, *error;
    } cases[] = {{"chelsea_317x211.jpg", "too_large"},      /* 21690 bytes */
                 {"rocket_223x225.jpg", "image_too_large"}, /* 4625 bytes, 50175 pixels */
                 {"astronaut_50x40_up.jpg", NULL}};         /* 1706 bytes, 2000 pixels */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = s_image_path(cases[i].name);
        size_t size = 0;
        char *bytes = nr_harness_read_file(path, &size);
        cr_assert_not_null(bytes, "%s", path);
        if (cases[i].error) {
            s_expect_fail("vision", NULL, bytes, size, "vision", cases[i].error, cases[i].name);
        } else {
            char id[NR_PROTO_ID_MAX + 1];
            s_submit("vision", NULL, bytes, size, id);
            nr_msg_t rec;
            nr_proto_msg_init(&rec);
            s_wait_final(id, &rec);
            s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "%s: %s (%s)", cases[i].name,
                      nr_harness_kv(&rec, "state"), nr_harness_kv(&rec, "error_message"));
            nr_proto_msg_clear(&rec);
        }
        free(bytes);
        free(path);
    }
}

/* Batch handlers on (--batch-size 4): images encoded together, captions
 * with mixed settings decoded in groups, a bad image failing alone; every
 * caption equals the library's. */
Test(stages, batched_workers_equal_library) {
    s_stage_workers(4);
    const char *names[] = {"chelsea_317x211.jpg", "rocket_223x225.jpg", "bad_truncated.jpg", "astronaut_50x40_up.jpg",
                           "coffee_la.png",       "rocket_grey.jpg",    "chelsea_444_optimized.jpg",
                           "rocket_progressive.jpg"};
    const int n = (int)(sizeof names / sizeof names[0]);
    char ids[8][NR_PROTO_ID_MAX + 1];
    for (int i = 0; i < n; i++) {
        char *path = s_image_path(names[i]);
        size_t size = 0;
        char *bytes = nr_harness_read_file(path, &size);
        cr_assert_not_null(bytes, "%s", path);
        const char *opts[] = {"num_beams", i % 2 ? "1" : "4", NULL};
        s_submit("vision,text", opts, bytes, size, ids[i]);
        free(bytes);
        free(path);
    }
    for (int i = 0; i < n; i++) {
        nr_msg_t rec;
        nr_proto_msg_init(&rec);
        s_wait_final(ids[i], &rec);
        if (!strcmp(names[i], "bad_truncated.jpg")) {
            s_require(!strcmp(nr_harness_kv(&rec, "state"), "failed") &&
                          !strcmp(nr_harness_kv(&rec, "error"), "bad_image"),
                      "%s: %s %s", names[i], nr_harness_kv(&rec, "state"), nr_harness_kv(&rec, "error"));
            s_require(nr_harness_kv(&rec, "error_message")[0] != '\0', "no message for the bad image in a batch");
        } else {
            s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "%s: %s (%s)", names[i],
                      nr_harness_kv(&rec, "state"), nr_harness_kv(&rec, "error_message"));
            char *want = s_lib_caption(names[i], i % 2 ? 1 : 4, 0);
            s_require(!strcmp(nr_harness_kv(&rec, "text.caption"), want),
                      "%s: batched caption \"%s\" != library \"%s\"", names[i], nr_harness_kv(&rec, "text.caption"),
                      want);
            free(want);
        }
        nr_proto_msg_clear(&rec);
    }
    /* the batch handlers ran (batch sizes themselves depend on timing) */
    for (int w = 0; w < 2; w++) {
        char *log = nr_harness_read_file(nr_harness_proc_log(C.cl.workers[w]), NULL);
        cr_assert_not_null(log);
        s_require(strstr(log, "batch 4)") != NULL, "worker %d did not announce batch 4", w);
        s_require(strstr(log, w == 0 ? "encoded together" : "decoded together") != NULL,
                  "worker %d never ran its batch handler", w);
        free(log);
    }
}

/* --capacity 3 without batching: three handler threads share one loaded
 * model; every caption still equals the library's. */
Test(stages, concurrent_handlers_equal_library) {
    const char *vision[] = {"--model", C.model_dir, "--threads", "1", "--capacity", "3", NULL};
    const char *text[] = {"--model", C.model_dir, "--threads", "1", "--capacity", "3", NULL};
    s_worker_start(C.vision_bin, "vision-c3", vision);
    s_worker_start(C.text_bin, "text-c3", text);
    s_wait_workers("vision", 1);
    s_wait_workers("text", 1);
    const char *names[] = {"chelsea_317x211.jpg", "rocket_223x225.jpg", "astronaut_50x40_up.jpg", "coffee_la.png",
                           "rocket_grey.jpg",     "chelsea_grey.png",   "rocket_cmyk.jpg",        "exif_o6.jpg",
                           "chelsea_palette.png"};
    const int n = (int)(sizeof names / sizeof names[0]);
    char ids[9][NR_PROTO_ID_MAX + 1];
    for (int i = 0; i < n; i++) {
        char *path = s_image_path(names[i]);
        size_t size = 0;
        char *bytes = nr_harness_read_file(path, &size);
        cr_assert_not_null(bytes, "%s", path);
        const char *opts[] = {"num_beams", i % 3 ? "4" : "1", NULL};
        s_submit("vision,text", opts, bytes, size, ids[i]);
        free(bytes);
        free(path);
    }
    for (int i = 0; i < n; i++) {
        nr_msg_t rec;
        nr_proto_msg_init(&rec);
        s_wait_final(ids[i], &rec);
        s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "%s: %s (%s)", names[i], nr_harness_kv(&rec, "state"),
                  nr_harness_kv(&rec, "error_message"));
        char *want = s_lib_caption(names[i], i % 3 ? 4 : 1, 0);
        s_require(!strcmp(nr_harness_kv(&rec, "text.caption"), want), "%s: caption \"%s\" != library \"%s\"", names[i],
                  nr_harness_kv(&rec, "text.caption"), want);
        free(want);
        nr_proto_msg_clear(&rec);
    }
}

/* ---- start-up failures (no cluster) ---- */

static void s_start_setup(void) {
    memset(&C, 0, sizeof C);
    s_programs();
    if (!C.vision_bin || !C.text_bin) cr_skip_test("the stage programs are not built: %s", nr_harness_error());
    C.cl.dir = nr_harness_tempdir("stages-start");
    cr_assert_not_null(C.cl.dir);
}

static void s_start_teardown(void) {
    nr_harness_cluster_stop(&C.cl); /* only its folder was made */
    free(C.broker_bin);
    free(C.vision_bin);
    free(C.text_bin);
    free(C.speech_bin);
    free(C.narrate_bin);
    free(C.model_dir);
    free(C.images_dir);
    memset(&C, 0, sizeof C);
}

/* Runs a stage program with args; asserts it exits with a code != 0 (not a
 * signal) and that its output holds `needle`. */
static void s_expect_start_failure(const char *bin, const char *const *args, const char *needle) {
    char *log = nr_harness_path(C.cl.dir, "start.log");
    unlink(log);
    const char *argv[16];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int status = 0;
    /* an unreachable broker: the program must fail before connecting */
    const char *env[] = {"NARRATOR_WORKER_BROKER=tcp://127.0.0.1:1", "NARRATOR_WORKER_MODEL", NULL};
    cr_assert_eq(nr_harness_run(argv, env, log, 60000, &status), 0, "%s did not exit: %s", bin, nr_harness_error());
    char *text = nr_harness_read_file(log, NULL);
    cr_assert_eq(nr_harness_exit_signal(status), 0, "%s crashed (signal %d): %s", bin, nr_harness_exit_signal(status),
                 text ? text : "");
    cr_assert_neq(nr_harness_exit_code(status), 0, "%s exited 0: %s", bin, text ? text : "");
    cr_assert(text && strstr(text, needle), "%s said \"%s\", wanted a mention of \"%s\"", bin, text ? text : "",
              needle);
    fprintf(stderr, "stages: start failure: %s", text);
    free(text);
    free(log);
}

TestSuite(stages_start, .init = s_start_setup, .fini = s_start_teardown, .timeout = 120);

Test(stages_start, missing_model_folder) {
    char *missing = nr_harness_path(C.cl.dir, "no-such-model");
    const char *args[] = {"--model", missing, NULL};
    s_expect_start_failure(C.vision_bin, args, "config.json");
    s_expect_start_failure(C.text_bin, args, "config.json");
    const char *none[] = {NULL};
    s_expect_start_failure(C.vision_bin, none, "--model");
    s_expect_start_failure(C.text_bin, none, "--model");
    free(missing);
}

#define S_TRUNCATE ((const char *)1) /* s_broken_model: keep the first 1000 bytes */

/* A copy of the tiny checkpoint with one file replaced by content (NULL:
 * removed; S_TRUNCATE: cut to its first 1000 bytes). */
static char *s_broken_model(const char *tag, const char *file, const char *content) {
    char *dir = nr_harness_path(C.cl.dir, "model-%s", tag);
    cr_assert_eq(mkdir(dir, 0755), 0);
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
                           "preprocessor_config.json", NULL};
    for (int i = 0; files[i]; i++) {
        char *src = nr_harness_path(C.model_dir, "%s", files[i]);
        char *dst = nr_harness_path(dir, "%s", files[i]);
        size_t size = 0;
        char *data = nr_harness_read_file(src, &size);
        cr_assert_not_null(data, "%s", src);
        if (!strcmp(files[i], file)) {
            if (content == S_TRUNCATE)
                cr_assert_eq(nr_harness_write_file(dst, data, size < 1000 ? size : 1000), 0);
            else if (content)
                cr_assert_eq(nr_harness_write_file(dst, content, strlen(content)), 0);
        } else {
            cr_assert_eq(nr_harness_write_file(dst, data, size), 0);
        }
        free(data);
        free(src);
        free(dst);
    }
    return dir;
}

Test(stages_start, corrupt_model_files) {
    char *trunc = s_broken_model("trunc", "model.safetensors", S_TRUNCATE);
    const char *a1[] = {"--model", trunc, NULL};
    s_expect_start_failure(C.vision_bin, a1, "model.safetensors");
    s_expect_start_failure(C.text_bin, a1, "model.safetensors");
    char *cfg = s_broken_model("cfg", "config.json", "{\"model_type\": ");
    const char *a2[] = {"--model", cfg, NULL};
    s_expect_start_failure(C.vision_bin, a2, "config.json");
    s_expect_start_failure(C.text_bin, a2, "config.json");
    char *vocab = s_broken_model("vocab", "vocab.json", NULL);
    const char *a3[] = {"--model", vocab, NULL};
    s_expect_start_failure(C.text_bin, a3, "vocab.json");
    char *nost = s_broken_model("nost", "model.safetensors", NULL);
    const char *a4[] = {"--model", nost, NULL};
    s_expect_start_failure(C.vision_bin, a4, "model.safetensors");
    free(trunc);
    free(cfg);
    free(vocab);
    free(nost);
}

Test(stages_start, help_and_bad_flags) {
    const char *bins[] = {C.vision_bin, C.text_bin};
    for (int b = 0; b < 2; b++) {
        char *log = nr_harness_path(C.cl.dir, "help.log");
        const char *argv[] = {bins[b], "--help", NULL};
        int status = 0;
        cr_assert_eq(nr_harness_run(argv, NULL, log, 30000, &status), 0);
        cr_assert_eq(nr_harness_exit_code(status), 0);
        char *text = nr_harness_read_file(log, NULL);
        cr_assert(text && strstr(text, "--model") && strstr(text, "--batch-size"), "%s", text ? text : "");
        free(text);
        unlink(log);
        free(log);
    }
    const char *a1[] = {"--model", C.model_dir, "--num-beams", "17", NULL};
    s_expect_start_failure(C.text_bin, a1, "num-beams");
    const char *a2[] = {"--model", C.model_dir, "--max-length", "100", NULL};
    s_expect_start_failure(C.text_bin, a2, "max_length");
    const char *a3[] = {"--model", C.model_dir, "--max-pixels", "0", NULL};
    s_expect_start_failure(C.vision_bin, a3, "max-pixels");
}

/* ---- GIT: the same workers serve another family ---- */

/* The cluster with the git-tiny checkpoint (family git) in the workers and
 * the in-process reference. */
static void s_setup_git(void) {
    s_setup();
    free(C.model_dir);
    C.model_dir = nr_harness_source_path("tests/fixtures/git-tiny");
    nr_captioner_destroy(&C.cap);
    char err[512] = "";
    nr_captioner_params_t params = nr_captioner_default_params();
    params.num_threads = 1;
    cr_assert_eq(nr_captioner_load(C.model_dir, &params, &C.cap, err, sizeof err), 0, "%s", err);
    int seq = 0, hidden = 0;
    nr_captioner_states_shape(C.cap, &seq, &hidden);
    C.states_floats = (size_t)seq * hidden;
}

TestSuite(stages_git, .init = s_setup_git, .fini = s_teardown, .timeout = 280);

/* Vision and text worker processes on a GIT checkpoint: the frame is the
 * library's (NRS2, family git), the caption the library's, greedy and
 * beam; a ViT-GPT2 frame of the same shape is refused. */
Test(stages_git, workers_caption_with_git) {
    s_stage_workers(1);
    const char *name = "chelsea_317x211.jpg";
    char *path = s_image_path(name);
    size_t size = 0;
    char *bytes = nr_harness_read_file(path, &size);
    cr_assert_not_null(bytes);
    char id[NR_PROTO_ID_MAX + 1];
    s_submit("vision", NULL, bytes, size, id);
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    s_wait_final(id, &rec);
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "vision job %s (%s)", nr_harness_kv(&rec, "state"),
              nr_harness_kv(&rec, "error_message"));
    s_require(!strcmp(nr_harness_kv(&rec, "vision.model"), "git-tiny"), "vision.model %s",
              nr_harness_kv(&rec, "vision.model"));
    nr_proto_msg_clear(&rec);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    cr_assert_eq(nr_client_fetch(C.client, id, "vision", &reply), 0, "%s", nr_client_error(C.client));
    size_t want_len = 0;
    unsigned char *want = s_lib_frame(name, &want_len);
    cr_assert_eq(reply.frames_len, 1);
    s_require(reply.frames[0].size == want_len && !memcmp(reply.frames[0].data, want, want_len),
              "vision frame (%zu bytes) differs from the library's (%zu)", (size_t)reply.frames[0].size, want_len);
    s_require(!memcmp(want, "NRS2", 4) && !memcmp(want + 8, "git", 3), "frame does not name family git");
    nr_proto_msg_clear(&reply);
    const char *greedy[] = {"num_beams", "1", "max_length", "12", NULL};
    const char *beam[] = {"num_beams", "3", "max_length", "12", NULL};
    char *caption = s_text_caption(want, want_len, greedy);
    char *lib = s_lib_caption(name, 1, 12);
    s_require(!strcmp(caption, lib) && lib[0], "text stage \"%s\" != library \"%s\"", caption, lib);
    free(caption);
    free(lib);
    caption = s_text_caption(want, want_len, beam);
    lib = s_lib_caption(name, 3, 12);
    s_require(!strcmp(caption, lib) && lib[0], "text stage (beam) \"%s\" != library \"%s\"", caption, lib);
    free(caption);
    free(lib);
    /* the whole route through the broker */
    s_submit("vision,text", greedy, bytes, size, id);
    nr_proto_msg_init(&rec);
    s_wait_final(id, &rec);
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "route %s (%s)", nr_harness_kv(&rec, "state"),
              nr_harness_kv(&rec, "error_message"));
    nr_proto_msg_clear(&rec);
    /* a ViT-GPT2 frame (version 1) of git-tiny's shape [17, 36] */
    int64_t shape[2] = {17, 36};
    float *states = calloc(17 * 36, sizeof(float));
    unsigned char *other = NULL;
    size_t other_len = 0;
    cr_assert_eq(nr_states_encode(states, 2, shape, NR_DTYPE_F32, &other, &other_len), 0);
    s_expect_fail("text", NULL, other, other_len, "text", "malformed_message", "vit-gpt2 frame at a git worker");
    free(states);
    free(other);
    free(want);
    free(bytes);
    free(path);
}

/* The library's caption for states with a text prompt (NULL: none), with
 * the checkpoint's generation defaults: the reference for prompt jobs. */
static char *s_lib_caption_prompt(const float *states, const char *prompt) {
    nr_gen_config_t g = nr_captioner_gen_defaults(C.cap);
    int *ids = NULL, n = 0;
    char err[512] = "";
    if (prompt) cr_assert_eq(nr_captioner_prompt_ids(C.cap, prompt, &ids, &n, err, sizeof err), 0, "%s", err);
    g.prompt_ids = ids;
    g.prompt_len = n;
    char *caption = NULL;
    int rc = nr_captioner_caption(C.cap, states, 1, &g, &caption, NULL, err, sizeof err);
    cr_assert_eq(rc, 0, "library caption: %s", err);
    free(ids);
    return caption;
}

/* A prompt job on the git-tiny workers fails for good with bad_option,
 * saying that family takes no prompt; the worker keeps serving. */
Test(stages_git, prompt_job_fails_naming_the_family) {
    s_stage_workers(1);
    size_t len = 0;
    unsigned char *frame = s_lib_frame("chelsea_317x211.jpg", &len);
    const char *opts[] = {"prompt", "a picture of", NULL};
    char id[NR_PROTO_ID_MAX + 1];
    s_submit("text", opts, frame, len, id);
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    s_wait_final(id, &rec);
    const char *message = nr_harness_kv(&rec, "error_message");
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "failed") && !strcmp(nr_harness_kv(&rec, "error"), "bad_option"),
              "prompt at a git worker: %s %s (%s)", nr_harness_kv(&rec, "state"), nr_harness_kv(&rec, "error"),
              message);
    s_require(strstr(message, "the git captioner takes no prompt") != NULL, "message: %s", message);
    s_require(nr_harness_kv_long(&rec, "attempts") == 1, "a final error took %s attempts",
              nr_harness_kv(&rec, "attempts"));
    nr_proto_msg_clear(&rec);
    const char *plain[] = {"num_beams", "1", NULL};
    char *caption = s_text_caption(frame, len, plain);
    s_require(caption[0] != '\0', "no caption after the refused prompt");
    free(caption);
    free(frame);
}

/* A language job on the git-tiny workers fails for good with bad_option
 * naming the family; the worker keeps serving. */
Test(stages_git, language_job_fails_naming_the_family) {
    s_stage_workers(1);
    size_t len = 0;
    unsigned char *frame = s_lib_frame("chelsea_317x211.jpg", &len);
    const char *opts[] = {"language", "es", NULL};
    s_expect_fail("text", opts, frame, len, "text", "bad_option", "language at a git worker");
    char id[NR_PROTO_ID_MAX + 1];
    s_submit("text", opts, frame, len, id);
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    s_wait_final(id, &rec);
    const char *message = nr_harness_kv(&rec, "error_message");
    s_require(strstr(message, "the git captioner takes no language") != NULL, "message: %s", message);
    nr_proto_msg_clear(&rec);
    char *caption = s_text_caption(frame, len, NULL);
    s_require(caption[0] != '\0', "no caption after the refused language");
    free(caption);
    free(frame);
}

/* ---- BLIP: conditional captioning through the workers ---- */

static void s_setup_blip(void) {
    s_setup();
    free(C.model_dir);
    C.model_dir = nr_harness_source_path("tests/fixtures/blip-tiny");
    nr_captioner_destroy(&C.cap);
    char err[512] = "";
    nr_captioner_params_t params = nr_captioner_default_params();
    params.num_threads = 1;
    cr_assert_eq(nr_captioner_load(C.model_dir, &params, &C.cap, err, sizeof err), 0, "%s", err);
    int seq = 0, hidden = 0;
    nr_captioner_states_shape(C.cap, &seq, &hidden);
    C.states_floats = (size_t)seq * hidden;
}

TestSuite(stages_blip, .init = s_setup_blip, .fini = s_teardown, .timeout = 280);

/* `narrate submit --prompt` through vision and text workers on blip-tiny:
 * the caption starts with the prompt and is the library's caption with
 * that prompt, and the .json record names the model and the family. */
Test(stages_blip, narrate_prompt_caption_equals_library) {
    s_stage_workers(1);
    const char *prompt = "there is a";
    const char *names[] = {"chelsea_317x211.jpg", "rocket_223x225.jpg", NULL};
    char *in = s_input_dir("blip", names);
    char *out = nr_harness_path(C.cl.dir, "out-blip");
    const char *extra[] = {"--route", "vision,text", "--prompt", prompt, NULL};
    int code = s_narrate_submit(in, out, extra);
    s_require(code == 0, "narrate submit --prompt exited %d", code);
    for (int i = 0; names[i]; i++) {
        float *states = s_lib_states(names[i]);
        char *want = s_lib_caption_prompt(states, prompt);
        char *none = s_lib_caption_prompt(states, NULL);
        free(states);
        s_require(!strncmp(want, "there is a ", strlen("there is a ")), "library caption \"%s\"", want);
        s_require(strcmp(want, none) != 0, "the prompt changed nothing: \"%s\"", want);
        size_t size = 0;
        char *txt = s_out_file(out, names[i], "txt", &size);
        s_require(txt && size == strlen(want) + 1 && !memcmp(txt, want, strlen(want)),
                  "%s: caption \"%s\", library with the prompt \"%s\"", names[i], txt ? txt : "(none)", want);
        free(txt);
        char *json = s_out_file(out, names[i], "json", &size);
        s_require(json != NULL, "%s: no .json", names[i]);
        cJSON *rec = cJSON_Parse(json);
        s_require(rec != NULL, "%s: .json does not parse: %s", names[i], json);
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(rec, "model");
        const cJSON *family = cJSON_GetObjectItemCaseSensitive(rec, "family");
        const cJSON *options = cJSON_GetObjectItemCaseSensitive(rec, "options");
        s_require(s_json_str(model, "text") && !strcmp(s_json_str(model, "text"), "blip-tiny"), "model: %s", json);
        s_require(s_json_str(family, "text") && !strcmp(s_json_str(family, "text"), "blip") &&
                      s_json_str(family, "vision") && !strcmp(s_json_str(family, "vision"), "blip"),
                  "family: %s", json);
        s_require(s_json_str(options, "prompt") && !strcmp(s_json_str(options, "prompt"), prompt), "options: %s",
                  json);
        s_require(!strcmp(s_json_str(rec, "caption"), want), "record caption: %s", json);
        cJSON_Delete(rec);
        free(json);
        free(want);
        free(none);
    }
    free(in);
    free(out);
}

/* Jobs with different prompts (and none) waiting together for a batching
 * text worker: decoded in groups of the same prompt, each caption the
 * library's with its own prompt. */
Test(stages_blip, batch_groups_jobs_by_prompt) {
    const char *names[] = {"chelsea_317x211.jpg", "rocket_223x225.jpg", "coffee_la.png", "astronaut_50x40_up.jpg"};
    const char *prompts[] = {"there is a", "in the", NULL, "there is a"};
    char ids[4][NR_PROTO_ID_MAX + 1];
    for (int i = 0; i < 4; i++) {
        size_t len = 0;
        unsigned char *frame = s_lib_frame(names[i], &len);
        const char *opts[] = {"prompt", prompts[i], NULL};
        s_submit("text", prompts[i] ? opts : NULL, frame, len, ids[i]);
        free(frame);
    }
    /* all four wait; the worker takes them as one batch of 4 */
    const char *text[] = {"--model", C.model_dir, "--threads", "1", "--batch-size", "4", "--batch-wait-ms", "500",
                          NULL};
    int w = s_worker_start(C.text_bin, "text-b4", text);
    for (int i = 0; i < 4; i++) {
        nr_msg_t rec;
        nr_proto_msg_init(&rec);
        s_wait_final(ids[i], &rec);
        s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "%s: %s (%s)", names[i],
                  nr_harness_kv(&rec, "state"), nr_harness_kv(&rec, "error_message"));
        float *states = s_lib_states(names[i]);
        char *want = s_lib_caption_prompt(states, prompts[i]);
        free(states);
        const char *got = nr_harness_kv(&rec, "text.caption");
        s_require(!strcmp(got, want), "%s (prompt %s): caption \"%s\" != library \"%s\"", names[i],
                  prompts[i] ? prompts[i] : "none", got, want);
        if (prompts[i])
            s_require(!strncmp(got, prompts[i], strlen(prompts[i])), "\"%s\" does not start with \"%s\"", got,
                      prompts[i]);
        s_require(!strcmp(nr_harness_kv(&rec, "text.family"), "blip"), "text.family %s",
                  nr_harness_kv(&rec, "text.family"));
        s_require(!strcmp(nr_harness_kv(&rec, "text.model"), "blip-tiny"), "text.model %s",
                  nr_harness_kv(&rec, "text.model"));
        free(want);
        nr_proto_msg_clear(&rec);
    }
    char *log = nr_harness_read_file(nr_harness_proc_log(C.cl.workers[w]), NULL);
    cr_assert_not_null(log);
    s_require(strstr(log, "batch of 4: 2 decoded together") != NULL,
              "the two jobs with the same prompt were not decoded as one group of a batch of 4");
    s_require(strstr(log, "batch of 4: 1 decoded together") != NULL, "no group of one in the batch of 4");
    free(log);
}

/* ---- PaliGemma: captions in a language through the workers ---- */

static void s_setup_paligemma(void) {
    s_setup();
    free(C.model_dir);
    C.model_dir = nr_harness_source_path("tests/fixtures/paligemma-tiny");
    nr_captioner_destroy(&C.cap);
    char err[512] = "";
    nr_captioner_params_t params = nr_captioner_default_params();
    params.num_threads = 1;
    cr_assert_eq(nr_captioner_load(C.model_dir, &params, &C.cap, err, sizeof err), 0, "%s", err);
    int seq = 0, hidden = 0;
    nr_captioner_states_shape(C.cap, &seq, &hidden);
    C.states_floats = (size_t)seq * hidden;
}

TestSuite(stages_paligemma, .init = s_setup_paligemma, .fini = s_teardown, .timeout = 280);

/* `narrate submit --language es` through vision and text workers on
 * paligemma-tiny: the caption is the library's with "caption es", the
 * record names model, prompt and language (as submitted); without a
 * language the prompt is "caption en". */
Test(stages_paligemma, narrate_language_caption_equals_library) {
    s_stage_workers(1);
    const char *names[] = {"chelsea_317x211.jpg", "astronaut_50x40_up.jpg", NULL};
    char *in = s_input_dir("paligemma", names);
    const char *langs[] = {"es", NULL};
    for (int k = 0; k < 2; k++) {
        char *out = nr_harness_path(C.cl.dir, langs[k] ? "out-pali-es" : "out-pali");
        const char *extra[] = {"--route", "vision,text", langs[k] ? "--language" : NULL, langs[k], NULL};
        int code = s_narrate_submit(in, out, extra);
        s_require(code == 0, "narrate submit --language exited %d", code);
        const char *prompt = langs[k] ? "caption es" : "caption en";
        for (int i = 0; names[i]; i++) {
            float *states = s_lib_states(names[i]);
            char *want = s_lib_caption_prompt(states, prompt);
            free(states);
            size_t size = 0;
            char *json = s_out_file(out, names[i], "json", &size);
            s_require(json != NULL, "%s: no .json", names[i]);
            cJSON *rec = cJSON_Parse(json);
            s_require(rec != NULL, "%s: .json does not parse: %s", names[i], json);
            s_require(s_json_str(rec, "caption") && !strcmp(s_json_str(rec, "caption"), want),
                      "%s: record caption, library with \"%s\" \"%s\": %s", names[i], prompt, want, json);
            s_require(s_json_str(rec, "prompt") && !strcmp(s_json_str(rec, "prompt"), prompt), "prompt: %s", json);
            s_require(langs[k] ? s_json_str(rec, "language") && !strcmp(s_json_str(rec, "language"), "es")
                               : !s_json_str(rec, "language"),
                      "language: %s", json);
            const cJSON *model = cJSON_GetObjectItemCaseSensitive(rec, "model");
            const cJSON *family = cJSON_GetObjectItemCaseSensitive(rec, "family");
            s_require(s_json_str(model, "text") && !strcmp(s_json_str(model, "text"), "paligemma-tiny"), "model: %s",
                      json);
            s_require(s_json_str(family, "vision") && !strcmp(s_json_str(family, "vision"), "paligemma"),
                      "family: %s", json);
            cJSON_Delete(rec);
            free(json);
            free(want);
        }
        free(out);
    }
    free(in);
}
