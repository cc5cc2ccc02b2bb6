/* The speech worker's Kokoro engine on the tiny random checkpoint
 * (tests/fixtures/kokoro-tiny: voices af_test, bm_test): through the
 * engine interface (G2P, chunking, WAV, voices, speed), then through real
 * processes (redis-server, narrator-broker, narrator-worker-speech --engine
 * kokoro): a job gives a 24 kHz WAV and a record naming the engine and the
 * voice, an unknown voice fails the job with the list, STATS lists the
 * voices. Without espeak-ng (NR_ESPEAK=OFF) the engine must refuse to start
 * and say why; the rest is skipped. */
#include <criterion/criterion.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "common/error.h"
#include "models/speech/g2p.h"
#include "tests/harness.h"
#include "workers/speech/engine.h"
#include "workers/speech/wav.h"

#define S_WAIT_MS 120000

static char *s_model(void) {
    char *m = nr_harness_source_path("tests/fixtures/kokoro-tiny");
    cr_assert_not_null(m, "%s", nr_harness_error());
    return m;
}

static nr_speech_engine_t *s_engine(char *model) {
    nr_speech_engine_params_t p = nr_speech_engine_default_params();
    snprintf(p.engine, sizeof p.engine, "kokoro");
    p.model_dir = model;
    p.num_threads = 1;
    char err[512] = "";
    nr_speech_engine_t *e = nr_speech_engine_new(&p, err, sizeof err);
    if (!nr_g2p_available()) {
        cr_assert_null(e);
        cr_assert(strstr(err, "espeak-ng") && strstr(err, "flite"), "%s", err);
        free(model);
        cr_skip_test("built without espeak-ng: the kokoro engine refuses to start (checked)");
    }
    cr_assert_not_null(e, "%s", err);
    return e;
}

/* Synthesizes and returns the duration in ms (asserting a 24 kHz WAV with sound). */
static long s_speak(nr_speech_engine_t *e, const char *text, const char *voice, float speed) {
    uint8_t *wav = NULL;
    size_t size = 0;
    nr_speech_info_t info;
    char err[512] = "";
    int rc = nr_speech_engine_synthesize(e, (const uint8_t *)text, strlen(text), voice, speed, &wav, &size, &info,
                                         err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", text, err);
    nr_wav_info_t w;
    cr_assert_eq(nr_wav_parse(wav, size, &w), 0);
    cr_assert_eq(w.sample_rate, 24000);
    cr_assert_eq(info.sample_rate, 24000);
    cr_assert_eq(w.num_samples, info.num_samples);
    cr_assert_gt(w.num_samples, 2400, "at least 0.1 s of audio");
    size_t nonzero = 0;
    for (size_t i = 0; i < w.num_samples; i++) nonzero += w.data[2 * i] || w.data[2 * i + 1];
    cr_assert_gt(nonzero, w.num_samples / 2, "the audio is mostly silent");
    free(wav);
    return (long)info.duration_ms;
}

Test(kokoro_engine, speaks_at_24khz_with_its_voices_and_speed) {
    char *model = s_model();
    nr_speech_engine_t *e = s_engine(model);
    cr_assert_str_eq(nr_speech_engine_name(e), "kokoro");
    cr_assert_eq(nr_speech_engine_voice_count(e), 2);
    cr_assert_str_eq(nr_speech_engine_voice_name(e, 0), "af_test");
    cr_assert_str_eq(nr_speech_engine_voice_name(e, 1), "bm_test");
    const char *text = "A cat sits on the mat, and looks at me.";
    long normal = s_speak(e, text, NULL, 0); /* default voice: the first, af_test */
    long fast = s_speak(e, text, "af_test", 2.0f);
    long slow = s_speak(e, text, "af_test", 0.5f);
    cr_assert_lt(fast, normal, "speed 2: %ld ms, speed 1: %ld ms", fast, normal);
    cr_assert_gt(slow, normal, "speed 0.5: %ld ms, speed 1: %ld ms", slow, normal);
    s_speak(e, text, "bm_test", 1.0f); /* en-gb G2P */
    nr_speech_engine_destroy(&e);
    free(model);
}

/* A caption over the model's 510 phonemes is split at sentence ends and
 * the chunks' audio joined. */
Test(kokoro_engine, long_text_is_split_and_joined) {
    char *model = s_model();
    nr_speech_engine_t *e = s_engine(model);
    const char *one = "The small boat sails across the quiet bay at dawn. ";
    char text[2048] = "";
    for (int i = 0; i < 14; i++) strcat(text, one);
    char *ps = NULL, err[256];
    cr_assert_eq(nr_g2p_phonemize('a', text, strlen(text), &ps, err, sizeof err), 0, "%s", err);
    size_t cps = 0;
    for (const char *p = ps; *p; p++) cps += ((unsigned char)*p & 0xC0) != 0x80;
    cr_assert_gt(cps, 510, "the text must need more than one chunk (%zu phonemes)", cps);
    free(ps);
    long single = s_speak(e, one, "af_test", 1.0f);
    long all = s_speak(e, text, "af_test", 1.0f);
    cr_assert_gt(all, 10 * single, "14 sentences: %ld ms, one: %ld ms", all, single);
    nr_speech_engine_destroy(&e);
    free(model);
}

Test(kokoro_engine, unknown_voice_bad_speed_and_bad_text_fail_clearly) {
    char *model = s_model();
    nr_speech_engine_t *e = s_engine(model);
    uint8_t *wav = NULL;
    size_t size = 0;
    nr_speech_info_t info;
    char err[512] = "";
    cr_assert_eq(nr_speech_engine_synthesize(e, (const uint8_t *)"hello", 5, "af_heart", 1, &wav, &size, &info, err,
                                             sizeof err), NR_EVOICE);
    cr_assert(strstr(err, "af_heart") && strstr(err, "af_test, bm_test"), "%s", err);
    cr_assert_eq(nr_speech_engine_synthesize(e, (const uint8_t *)"hello", 5, "af_test", 2.5f, &wav, &size, &info,
                                             err, sizeof err), NR_EOPTION);
    cr_assert_eq(nr_speech_engine_synthesize(e, (const uint8_t *)"bad \xC0\x80", 6, NULL, 1, &wav, &size, &info, err,
                                             sizeof err), NR_ETEXT);
    cr_assert_eq(nr_speech_engine_synthesize(e, (const uint8_t *)"", 0, NULL, 1, &wav, &size, &info, err, sizeof err),
                 NR_ETEXT);
    cr_assert_null(wav);
    nr_speech_engine_destroy(&e);
    /* A default voice the folder does not have stops the start. */
    nr_speech_engine_params_t p = nr_speech_engine_default_params();
    snprintf(p.engine, sizeof p.engine, "kokoro");
    p.model_dir = model;
    p.default_voice = "jf_alpha";
    cr_assert_null(nr_speech_engine_new(&p, err, sizeof err));
    cr_assert(strstr(err, "jf_alpha") && strstr(err, "af_test"), "%s", err);
    free(model);
}

/* ---- through real processes ---- */

static nr_harness_cluster_t C;
static nr_client_t *s_client;

static void s_dump(void) {
    if (!C.dir) return;
    const char *names[] = {"broker.log", "worker-0.log"};
    nr_harness_dump_logs(C.dir, names, 4000);
}
#define s_require(cond, ...) NR_HARNESS_REQUIRE(s_dump, cond, __VA_ARGS__)

static void s_stop(void) {
    nr_client_destroy(&s_client);
    nr_harness_cluster_stop(&C);
}

/* Submits text to the speech route with options (key, value, ..., NULL)
 * and waits for a final state; the record is left in *record. */
static void s_job(const char *text, const char *const *opts, nr_msg_t *record) {
    nr_kv_t kv[4];
    size_t n = 0;
    for (; opts && opts[2 * n]; n++) kv[n] = (nr_kv_t){(char *)opts[2 * n], (char *)opts[2 * n + 1]};
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_submit(s_client, NULL, "speech", kv, n, text, strlen(text), &reply);
    s_require(rc == 0, "submit: %s", nr_client_error(s_client));
    char id[NR_PROTO_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", nr_harness_kv(&reply, "id"));
    nr_proto_msg_clear(&reply);
    long long end = nr_harness_now_ms() + S_WAIT_MS;
    while (nr_harness_now_ms() < end) {
        nr_proto_msg_clear(record);
        s_require(nr_client_status(s_client, id, record) == 0, "status: %s", nr_client_error(s_client));
        if (nr_harness_job_final(nr_harness_kv(record, "state"))) return;
        nr_harness_sleep_ms(50);
    }
    s_require(0, "job %s is still %s", id, nr_harness_kv(record, "state"));
}

Test(kokoro_worker, job_gives_24khz_wav_and_a_record_naming_engine_and_voice, .fini = s_stop) {
    char *model = s_model();
    char *speech = nr_harness_program("narrator-worker-speech");
    char *broker = nr_harness_program("narrator-broker");
    if (!speech || !broker) cr_skip_test("narrator-worker-speech or narrator-broker is not built");
    cr_assert_eq(nr_harness_cluster_start(&C, "kokoro", NULL), 0, "%s", nr_harness_error());
    const char *bargs[] = {"--max-attempts", "2", NULL};
    s_require(nr_harness_cluster_spawn_broker(&C, broker, "broker.log", bargs) == 0, "%s", nr_harness_error());
    const char *wargs[] = {"--engine", "kokoro", "--model", model, "--threads", "1", NULL};
    s_require(nr_harness_cluster_spawn_worker(&C, speech, "kokoro-1", wargs) >= 0, "%s", nr_harness_error());
    s_client = nr_client_new(C.client_ep, 5000);
    cr_assert_not_null(s_client);
    if (!nr_g2p_available()) {
        int status = 0;
        s_require(nr_harness_proc_wait(C.workers[0], 20000, &status) == 0, "the worker did not exit");
        s_require(nr_harness_exit_code(status) == 2, "exit status %d", nr_harness_exit_code(status));
        char *log = nr_harness_path(C.dir, "worker-0.log");
        char *text = nr_harness_read_file(log, NULL);
        s_require(text && strstr(text, "espeak-ng"), "the worker does not say why it stopped");
        free(text), free(log), free(model), free(speech), free(broker);
        cr_skip_test("built without espeak-ng: narrator-worker-speech --engine kokoro refuses to start (checked)");
    }
    long have = nr_harness_wait_workers(s_client, "speech", 1, S_WAIT_MS);
    s_require(have >= 1, "no live kokoro worker");

    /* The broker reports the worker's voices. */
    nr_msg_t stats;
    nr_proto_msg_init(&stats);
    s_require(nr_client_stats(s_client, &stats) == 0, "stats: %s", nr_client_error(s_client));
    s_require(!strcmp(nr_harness_kv(&stats, "voices.speech"), "af_test,bm_test"), "voices.speech = '%s'",
              nr_harness_kv(&stats, "voices.speech"));
    nr_proto_msg_clear(&stats);

    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    const char *good[] = {"voice", "bm_test", "speed", "1.25", NULL};
    s_job("Two dogs run across a green field.", good, &rec);
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "done"), "state %s: %s", nr_harness_kv(&rec, "state"),
              nr_harness_kv(&rec, "error_message"));
    s_require(!strcmp(nr_harness_kv(&rec, "speech.engine"), "kokoro"), "engine %s", nr_harness_kv(&rec, "speech.engine"));
    s_require(!strcmp(nr_harness_kv(&rec, "speech.voice"), "bm_test"), "voice %s", nr_harness_kv(&rec, "speech.voice"));
    s_require(nr_harness_kv_long(&rec, "speech.sample_rate") == 24000, "rate %s", nr_harness_kv(&rec, "speech.sample_rate"));
    s_require(!strcmp(nr_harness_kv(&rec, "speech.speed"), "1.25"), "speed %s", nr_harness_kv(&rec, "speech.speed"));
    long ms = nr_harness_kv_long(&rec, "speech.duration_ms");
    char id[NR_PROTO_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", nr_harness_kv(&rec, "id"));
    nr_msg_t out;
    nr_proto_msg_init(&out);
    s_require(nr_client_fetch(s_client, id, "speech", &out) == 0, "fetch: %s", nr_client_error(s_client));
    s_require(out.frames_len == 1, "%u frames", out.frames_len);
    nr_wav_info_t w;
    s_require(nr_wav_parse(out.frames[0].data, out.frames[0].size, &w) == 0, "not a WAV");
    s_require(w.sample_rate == 24000, "WAV at %u Hz", w.sample_rate);
    s_require((long)(w.num_samples * 1000 / 24000) == ms, "WAV %zu samples, record %ld ms", w.num_samples, ms);
    nr_proto_msg_clear(&out);

    /* A voice the worker does not have: failed at once, with the list. */
    const char *unknown[] = {"voice", "af_heart", NULL};
    s_job("Hello there.", unknown, &rec);
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "failed"), "state %s", nr_harness_kv(&rec, "state"));
    s_require(strstr(nr_harness_kv(&rec, "error"), "unknown_voice"), "error %s", nr_harness_kv(&rec, "error"));
    s_require(strstr(nr_harness_kv(&rec, "error_message"), "af_test, bm_test"), "message %s",
              nr_harness_kv(&rec, "error_message"));
    const char *fast[] = {"speed", "3", NULL};
    s_job("Hello there.", fast, &rec);
    s_require(!strcmp(nr_harness_kv(&rec, "state"), "failed"), "state %s", nr_harness_kv(&rec, "state"));
    s_require(strstr(nr_harness_kv(&rec, "error"), "bad_option"), "error %s", nr_harness_kv(&rec, "error"));
    nr_proto_msg_clear(&rec);
    s_require(nr_harness_proc_running(C.workers[0]), "the kokoro worker died");
    free(model), free(speech), free(broker);
}
