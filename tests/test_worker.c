/* Tests of workers/: the WAV encoder, the strict UTF-8 validator, Flite
 * synthesis and the speech handler, and the worker runtime against a real
 * ZeroMQ ROUTER socket in the test acting as the broker (nr_proto_* only,
 * except where a test sends malformed frames on purpose). */
#include <criterion/criterion.h>

#include "common/error.h"
#include "proto/proto.h"
#include "tests/harness.h"
#include "models/speech/g2p.h"
#include "workers/speech/engine.h"
#include "workers/speech/speech.h"
#include "common/utf8.h"
#include "workers/speech/wav.h"
#include "workers/worker.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* ======================================================================
 * WAV
 * ====================================================================== */

static uint32_t s_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint16_t s_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

Test(wav, header_fields_for_several_lengths) {
    const size_t lengths[] = {0, 1, 2, 3, 1000, 16001};
    const uint32_t rates[] = {16000, 8000, 22050, 44100, 16000, 48000};
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        size_t n = lengths[k];
        int16_t *s = malloc((n ? n : 1) * sizeof *s);
        for (size_t i = 0; i < n; i++) s[i] = (int16_t)((int)(i * 7919 % 65536) - 32768);
        uint8_t *wav = NULL;
        size_t size = 0;
        cr_assert_eq(nr_wav_encode(s, n, rates[k], &wav, &size), 0);
        cr_assert_eq(size, 44 + 2 * n);
        cr_assert(!memcmp(wav, "RIFF", 4));
        cr_assert_eq(s_le32(wav + 4), 36 + 2 * n, "RIFF size for n=%zu", n);
        cr_assert(!memcmp(wav + 8, "WAVEfmt ", 8));
        cr_assert_eq(s_le32(wav + 16), 16);
        cr_assert_eq(s_le16(wav + 20), 1, "PCM");
        cr_assert_eq(s_le16(wav + 22), 1, "mono");
        cr_assert_eq(s_le32(wav + 24), rates[k]);
        cr_assert_eq(s_le32(wav + 28), rates[k] * 2, "byte rate");
        cr_assert_eq(s_le16(wav + 32), 2, "block align");
        cr_assert_eq(s_le16(wav + 34), 16, "bits");
        cr_assert(!memcmp(wav + 36, "data", 4));
        cr_assert_eq(s_le32(wav + 40), 2 * n);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq((int16_t)s_le16(wav + 44 + 2 * i), s[i], "sample %zu little-endian", i);
        nr_wav_info_t info;
        cr_assert_eq(nr_wav_parse(wav, size, &info), 0);
        cr_assert_eq(info.sample_rate, rates[k]);
        cr_assert_eq(info.channels, 1);
        cr_assert_eq(info.bits_per_sample, 16);
        cr_assert_eq(info.num_samples, n);
        cr_assert_eq(info.data, wav + 44);
        free(wav);
        free(s);
    }
}

Test(wav, negative_samples_and_bad_arguments) {
    int16_t s[2] = {-2, 32767};
    uint8_t *wav = NULL;
    size_t size = 0;
    cr_assert_eq(nr_wav_encode(s, 2, 16000, &wav, &size), 0);
    cr_assert_eq(wav[44], 0xFE);
    cr_assert_eq(wav[45], 0xFF);
    cr_assert_eq(wav[46], 0xFF);
    cr_assert_eq(wav[47], 0x7F);
    /* A truncated or resized buffer no longer parses. */
    nr_wav_info_t info;
    cr_assert_eq(nr_wav_parse(wav, size - 1, &info), NR_EINVAL);
    wav[40] = 6; /* data size larger than the file */
    cr_assert_eq(nr_wav_parse(wav, size, &info), NR_EINVAL);
    free(wav);
    cr_assert_eq(nr_wav_encode(s, 2, 0, &wav, &size), NR_EINVAL);
    cr_assert_eq(nr_wav_encode(NULL, 2, 16000, &wav, &size), NR_EINVAL);
    cr_assert_eq(nr_wav_parse((const uint8_t *)"RIFX", 4, &info), NR_EINVAL);
}

/* ======================================================================
 * UTF-8
 * ====================================================================== */

static int s_valid(const char *s, size_t n, size_t *bad) {
    return nr_utf8_validate((const uint8_t *)s, n, bad);
}

Test(utf8, accepts_valid_text) {
    const char *ok[] = {"", "hello", "caf\xC3\xA9", "\xE2\x82\xAC 5", "\xF0\x9F\x98\x80",
                        "\xF4\x8F\xBF\xBF" /* U+10FFFF */, "\xED\x9F\xBF" /* U+D7FF */,
                        "\xEE\x80\x80" /* U+E000 */, "\xC2\x80" /* U+0080 */,
                        "\xE0\xA0\x80" /* U+0800 */, "\xF0\x90\x80\x80" /* U+10000 */,
                        "\xEF\xBF\xBF" /* U+FFFF */};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_assert_eq(s_valid(ok[i], strlen(ok[i]), NULL), 0, "case %zu", i);
    uint32_t cp = 0;
    cr_assert_eq(nr_utf8_decode((const uint8_t *)"\xF0\x9F\x98\x80", 4, &cp, NULL), 4);
    cr_assert_eq(cp, 0x1F600);
    cr_assert_eq(nr_utf8_decode((const uint8_t *)"\xF4\x8F\xBF\xBF", 4, &cp, NULL), 4);
    cr_assert_eq(cp, 0x10FFFF);
}

Test(utf8, rejects_overlongs_surrogates_and_out_of_range) {
    struct {
        const char *s;
        size_t bad_at;
    } bad[] = {
        {"\xC0\x80", 0},             /* overlong NUL */
        {"\xC1\xBF", 0},             /* overlong U+007F */
        {"ab\xE0\x80\x80", 2},       /* overlong 3-byte */
        {"\xE0\x9F\xBF", 0},         /* overlong U+07FF */
        {"\xF0\x80\x80\x80", 0},     /* overlong 4-byte */
        {"\xF0\x8F\xBF\xBF", 0},     /* overlong U+FFFF */
        {"x\xED\xA0\x80", 1},        /* surrogate U+D800 */
        {"\xED\xBF\xBF", 0},         /* surrogate U+DFFF */
        {"\xF4\x90\x80\x80", 0},     /* U+110000 */
        {"\xF5\x80\x80\x80", 0},     /* lead byte past F4 */
        {"\xFF", 0}, {"\xFE", 0},
        {"abc\x80", 3},              /* stray continuation */
        {"\xC3", 0},                 /* truncated */
        {"ok\xE2\x82", 2},           /* truncated 3-byte */
        {"\xF0\x9F\x98", 0},         /* truncated 4-byte */
        {"a\xC3(", 1},               /* bad continuation */
        {"\xE2\x28\xA1", 0},
        {"\xF0\x9F\x28\x80", 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t at = 999;
        cr_assert_eq(s_valid(bad[i].s, strlen(bad[i].s), &at), NR_ETEXT, "case %zu", i);
        cr_assert_eq(at, bad[i].bad_at, "case %zu: bad byte at %zu", i, at);
    }
}

/* ======================================================================
 * Speech (Flite)
 * ====================================================================== */

static nr_speech_t *s_speech(void) {
    char err[256] = "";
    nr_speech_params_t p = nr_speech_default_params();
    nr_speech_t *sp = nr_speech_new(&p, err, sizeof err);
    cr_assert_not_null(sp, "%s", err);
    return sp;
}

/* RMS and peak of the WAV's samples. */
static void s_wav_levels(const uint8_t *wav, size_t size, double *rms, int *peak) {
    nr_wav_info_t info;
    cr_assert_eq(nr_wav_parse(wav, size, &info), 0);
    double sum = 0;
    int pk = 0;
    for (size_t i = 0; i < info.num_samples; i++) {
        int v = (int16_t)s_le16(info.data + 2 * i);
        sum += (double)v * v;
        if (abs(v) > pk) pk = abs(v);
    }
    *rms = info.num_samples ? sqrt(sum / (double)info.num_samples) : 0;
    *peak = pk;
}

static const char s_sentence[] = "A cat is sitting on a couch next to another cat.";

Test(speech, sentence_gives_audible_audio_of_plausible_length) {
    nr_speech_t *sp = s_speech();
    uint8_t *wav = NULL;
    size_t size = 0;
    nr_speech_info_t info;
    char err[256] = "";
    int rc = nr_speech_synthesize(sp, (const uint8_t *)s_sentence, strlen(s_sentence), NULL, 0, &wav,
                                  &size, &info, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(info.voice, "slt");
    cr_assert_eq(info.sample_rate, 16000);
    /* Eleven words: between one and eight seconds of speech. */
    cr_assert(info.duration_ms > 1000 && info.duration_ms < 8000, "duration %llu ms",
              (unsigned long long)info.duration_ms);
    nr_wav_info_t w;
    cr_assert_eq(nr_wav_parse(wav, size, &w), 0);
    cr_assert_eq(w.num_samples, info.num_samples);
    cr_assert_eq(w.sample_rate, 16000);
    double rms;
    int peak;
    s_wav_levels(wav, size, &rms, &peak);
    cr_assert(rms > 200.0, "rms %.1f: audio is silent", rms);
    cr_assert(peak > 2000, "peak %d", peak);
    free(wav);
    /* A longer text gives longer audio. */
    const char *longer = "A cat is sitting on a couch next to another cat. Two dogs are running "
                         "across a green field under a blue sky.";
    nr_speech_info_t info2;
    cr_assert_eq(nr_speech_synthesize(sp, (const uint8_t *)longer, strlen(longer), "slt", 0, &wav,
                                      &size, &info2, err, sizeof err), 0, "%s", err);
    cr_assert_gt(info2.duration_ms, info.duration_ms + 1000);
    free(wav);
    nr_speech_destroy(&sp);
    nr_speech_destroy(&sp);
}

Test(speech, every_voice_works) {
    nr_speech_t *sp = s_speech();
    const struct {
        const char *name;
        const char *short_name;
        uint32_t rate;
    } voices[] = {{"slt", "slt", 16000}, {"kal", "kal", 8000}, {"kal16", "kal16", 16000},
                  {"awb", "awb", 16000}, {"rms", "rms", 16000}, {"cmu_us_rms", "rms", 16000}};
    for (size_t i = 0; i < sizeof voices / sizeof voices[0]; i++) {
        uint8_t *wav = NULL;
        size_t size = 0;
        nr_speech_info_t info;
        char err[256] = "";
        cr_assert_eq(nr_speech_synthesize(sp, (const uint8_t *)s_sentence, strlen(s_sentence),
                                          voices[i].name, 0, &wav, &size, &info, err, sizeof err),
                     0, "voice %s: %s", voices[i].name, err);
        cr_assert_str_eq(info.voice, voices[i].short_name);
        cr_assert_eq(info.sample_rate, voices[i].rate, "voice %s", voices[i].name);
        cr_assert(info.duration_ms > 1000 && info.duration_ms < 8000, "voice %s: %llu ms",
                  voices[i].name, (unsigned long long)info.duration_ms);
        double rms;
        int peak;
        s_wav_levels(wav, size, &rms, &peak);
        cr_assert(rms > 100.0, "voice %s: rms %.1f", voices[i].name, rms);
        free(wav);
    }
    nr_speech_destroy(&sp);
}

static int s_synth_code(nr_speech_t *sp, const char *text, size_t len, const char *voice, char *err,
                        size_t errlen) {
    uint8_t *wav = NULL;
    size_t size = 0;
    nr_speech_info_t info;
    err[0] = '\0';
    int rc = nr_speech_synthesize(sp, (const uint8_t *)text, len, voice, 0, &wav, &size, &info, err,
                                  errlen);
    free(wav);
    if (rc) cr_assert_null(wav == NULL ? NULL : wav);
    return rc;
}

Test(speech, bad_inputs_are_rejected_with_the_right_code) {
    nr_speech_t *sp = s_speech();
    char err[512];
    cr_assert_eq(s_synth_code(sp, "", 0, NULL, err, sizeof err), NR_ETEXT);
    cr_assert(strstr(err, "empty"), "%s", err);
    char *big = malloc(4001);
    memset(big, 'a', 4001);
    for (int i = 5; i < 4001; i += 6) big[i] = ' ';
    cr_assert_eq(s_synth_code(sp, big, 4001, NULL, err, sizeof err), NR_ETEXT);
    cr_assert(strstr(err, "4000"), "%s", err);
    free(big);
    cr_assert_eq(s_synth_code(sp, "bad \xC0\x80 text", 11, NULL, err, sizeof err), NR_ETEXT);
    cr_assert(strstr(err, "UTF-8"), "%s", err);
    cr_assert_eq(s_synth_code(sp, "surrogate \xED\xA0\x80", 13, NULL, err, sizeof err), NR_ETEXT);
    cr_assert_eq(s_synth_code(sp, "nul\0byte", 8, NULL, err, sizeof err), NR_ETEXT);
    cr_assert_eq(s_synth_code(sp, "\xE6\x97\xA5\xE6\x9C\xAC  !!", 10, NULL, err, sizeof err), NR_ETEXT);
    cr_assert(strstr(err, "speak"), "%s", err);
    cr_assert_eq(s_synth_code(sp, "hello", 5, "hal9000", err, sizeof err), NR_EVOICE);
    cr_assert(strstr(err, "hal9000") && strstr(err, "slt") && strstr(err, "kal16") &&
                  strstr(err, "awb") && strstr(err, "rms"),
              "%s", err);
    /* Each code is final for the runtime. */
    cr_assert_eq(nr_worker_retryable(NR_ETEXT), 0);
    cr_assert_eq(nr_worker_retryable(NR_EVOICE), 0);
    nr_speech_destroy(&sp);

    nr_speech_params_t p = nr_speech_default_params();
    snprintf(p.default_voice, sizeof p.default_voice, "nope");
    cr_assert_null(nr_speech_new(&p, err, sizeof err));
    p = nr_speech_default_params();
    p.max_text_bytes = 10;
    sp = nr_speech_new(&p, err, sizeof err);
    cr_assert_eq(s_synth_code(sp, "hello world", 11, NULL, err, sizeof err), NR_ETEXT);
    cr_assert_eq(s_synth_code(sp, "hello", 5, NULL, err, sizeof err), 0, "%s", err);
    nr_speech_destroy(&sp);
}

Test(speech, non_ascii_is_folded_and_still_spoken) {
    const char *in = "caf\xC3\xA9 \xE2\x80\x9Cna\xC3\xAFve\xE2\x80\x9D \xE2\x80\x94 ok\xE2\x80\xA6 "
                     "\xE6\x97\xA5 Stra\xC3\x9F" "e";
    char *out = nr_speech_fold_ascii((const uint8_t *)in, strlen(in));
    cr_assert_str_eq(out, "cafe \"naive\" - ok...   Strasse");
    free(out);
    nr_speech_t *sp = s_speech();
    char err[256];
    cr_assert_eq(s_synth_code(sp, in, strlen(in), "kal", err, sizeof err), 0, "%s", err);
    nr_speech_destroy(&sp);
}

Test(speech, job_handler_fills_results_and_output_frame) {
    char err[256] = "";
    nr_speech_engine_params_t ep = nr_speech_engine_default_params();
    nr_speech_engine_t *sp = nr_speech_engine_new(&ep, err, sizeof err);
    cr_assert_not_null(sp, "%s", err);
    cr_assert_str_eq(nr_speech_engine_name(sp), "flite");
    cr_assert_eq(nr_speech_engine_voice_count(sp), 5);
    nr_msg_t job, result;
    nr_proto_msg_init(&job);
    nr_proto_msg_init(&result);
    job.cmd = NR_CMD_JOB;
    snprintf(job.id, sizeof job.id, "j1");
    snprintf(job.stage, sizeof job.stage, "speech");
    cr_assert_eq(nr_proto_kv_add(&job, "voice", "kal"), 0);
    cr_assert_eq(nr_proto_frame_add(&job, s_sentence, strlen(s_sentence)), 0);
    cr_assert_eq(nr_speech_engine_run_job(sp, &job, &result, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(nr_proto_kv_get(&result, "engine"), "flite");
    cr_assert_str_eq(nr_proto_kv_get(&result, "voice"), "kal");
    cr_assert_str_eq(nr_proto_kv_get(&result, "sample_rate"), "8000");
    cr_assert_str_eq(nr_proto_kv_get(&result, "speed"), "1");
    long ms = atol(nr_proto_kv_get(&result, "duration_ms"));
    cr_assert(ms > 1000, "duration_ms %ld", ms);
    cr_assert_eq(result.frames_len, 1);
    nr_wav_info_t w;
    cr_assert_eq(nr_wav_parse(result.frames[0].data, result.frames[0].size, &w), 0);
    cr_assert_eq(w.sample_rate, 8000);
    cr_assert_eq((long)(w.num_samples * 1000 / 8000), ms);
    nr_proto_msg_clear(&result);

    /* speed 2 gives clearly shorter audio (Flite's duration_stretch). */
    cr_assert_eq(nr_proto_kv_add(&job, "speed", "2.0"), 0);
    cr_assert_eq(nr_speech_engine_run_job(sp, &job, &result, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(nr_proto_kv_get(&result, "speed"), "2");
    long fast = atol(nr_proto_kv_get(&result, "duration_ms"));
    cr_assert(fast < ms * 3 / 4, "speed 2: %ld ms against %ld ms", fast, ms);
    nr_proto_msg_clear(&result);
    const char *bad_speeds[] = {"0.4", "2.01", "fast", "1e0x", "-1", "nan", "inf", " 1", "01234567890123456"};
    for (size_t i = 0; i < sizeof bad_speeds / sizeof bad_speeds[0]; i++) {
        cr_assert_eq(nr_proto_kv_add(&job, "speed", bad_speeds[i]), 0);
        cr_assert_eq(nr_speech_engine_run_job(sp, &job, &result, err, sizeof err), NR_EOPTION, "%s", bad_speeds[i]);
        cr_assert(strstr(err, "0.5") && strstr(err, "2.0"), "%s", err);
        nr_proto_msg_clear(&result);
    }

    /* No frame and an unknown voice: final errors; the message lists the voices. */
    nr_proto_msg_clear(&job);
    job.cmd = NR_CMD_JOB;
    cr_assert_eq(nr_speech_engine_run_job(sp, &job, &result, err, sizeof err), NR_ETEXT);
    cr_assert_eq(nr_proto_kv_add(&job, "voice", "zz"), 0);
    cr_assert_eq(nr_proto_frame_add(&job, "hi", 2), 0);
    cr_assert_eq(nr_speech_engine_run_job(sp, &job, &result, err, sizeof err), NR_EVOICE);
    cr_assert(strstr(err, "zz") && strstr(err, "slt, kal, kal16, awb, rms"), "%s", err);
    nr_proto_msg_clear(&job);
    nr_proto_msg_clear(&result);
    nr_speech_engine_destroy(&sp);
    nr_speech_engine_destroy(&sp);

    /* Engines that cannot start say why. */
    snprintf(ep.engine, sizeof ep.engine, "festival");
    cr_assert_null(nr_speech_engine_new(&ep, err, sizeof err));
    cr_assert(strstr(err, "flite, kokoro"), "%s", err);
    snprintf(ep.engine, sizeof ep.engine, "kokoro");
    ep.model_dir = "/nonexistent/kokoro";
    cr_assert_null(nr_speech_engine_new(&ep, err, sizeof err));
    cr_assert(strstr(err, nr_g2p_available() ? "/nonexistent/kokoro" : "espeak-ng"), "%s", err);
}

/* ======================================================================
 * Runtime: a fake broker on a real ROUTER socket
 * ====================================================================== */

Test(runtime, retry_rule) {
    const int final[] = {NR_ENOTIMAGE, NR_EIMAGE, NR_EIMAGEBOMB, NR_ETEXT,
                         NR_EVOICE,    NR_EOPTION, NR_ETOOBIG,   NR_EPROTO};
    for (size_t i = 0; i < sizeof final / sizeof final[0]; i++)
        cr_assert_eq(nr_worker_retryable(final[i]), 0, "%s", nr_errname(final[i]));
    const int retry[] = {NR_EINTERNAL, NR_ENOMEM, NR_EIO, NR_EDEVICE, NR_EMODEL, NR_ETIMEDOUT};
    for (size_t i = 0; i < sizeof retry / sizeof retry[0]; i++)
        cr_assert_eq(nr_worker_retryable(retry[i]), 1, "%s", nr_errname(retry[i]));
}

typedef struct {
    void *zctx;
    void *router;
    char endpoint[256];
    uint8_t identity[256]; /* of the worker's last message */
    size_t identity_size;
    int heartbeats;        /* HEARTBEATs seen by s_expect */
} s_broker_t;

static void s_broker_open(s_broker_t *b) {
    memset(b, 0, sizeof *b);
    b->zctx = zmq_ctx_new();
    b->router = zmq_socket(b->zctx, ZMQ_ROUTER);
    int linger = 0, timeo = 200;
    zmq_setsockopt(b->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(b->router, ZMQ_RCVTIMEO, &timeo, sizeof timeo);
    cr_assert_eq(zmq_bind(b->router, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof b->endpoint;
    zmq_getsockopt(b->router, ZMQ_LAST_ENDPOINT, b->endpoint, &len);
}

static void s_broker_close(s_broker_t *b) {
    zmq_close(b->router);
    zmq_ctx_term(b->zctx);
}

/* Waits (up to 10 s) for a message of command `cmd` from the worker (with
 * NR_CMD_NONE: the next RESULT or FAIL, whichever comes), counting
 * HEARTBEATs and answering each with one of ours when `beat`. */
static void s_expect(s_broker_t *b, nr_cmd_t cmd, nr_msg_t *msg, int beat) {
    long long until = nr_harness_now_ms() + 10000;
    for (;;) {
        cr_assert_lt(nr_harness_now_ms(), until, "no %s from the worker", nr_proto_cmd_name(cmd));
        char err[256] = "";
        nr_proto_msg_clear(msg);
        size_t idlen = sizeof b->identity;
        int rc = nr_proto_recv(b->router, b->identity, &idlen, msg, err, sizeof err);
        if (rc == NR_ETIMEDOUT || (rc == NR_EIO && errno == EAGAIN)) continue;
        cr_assert_eq(rc, 0, "worker sent a bad message: %s", err);
        b->identity_size = idlen;
        if (msg->cmd == cmd) return;
        if (cmd == NR_CMD_NONE && (msg->cmd == NR_CMD_RESULT || msg->cmd == NR_CMD_FAIL)) return;
        if (msg->cmd == NR_CMD_HEARTBEAT) {
            b->heartbeats++;
            if (beat) {
                nr_msg_t hb;
                nr_proto_msg_init(&hb);
                hb.cmd = NR_CMD_HEARTBEAT;
                nr_proto_send(b->router, b->identity, b->identity_size, &hb, err, sizeof err);
            }
            continue;
        }
        cr_assert_fail("expected %s, got %s", nr_proto_cmd_name(cmd), nr_proto_cmd_name(msg->cmd));
    }
}

static void s_send_job_within(s_broker_t *b, const char *id, const char *stage, uint32_t attempt,
                              const char *behave, const char *input, uint32_t deadline_ms) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_JOB;
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.stage, sizeof m.stage, "%s", stage);
    m.attempt = attempt;
    m.deadline_ms = deadline_ms;
    if (behave) cr_assert_eq(nr_proto_kv_add(&m, "behave", behave), 0);
    cr_assert_eq(nr_proto_frame_add(&m, input, strlen(input)), 0);
    char err[256] = "";
    cr_assert_eq(nr_proto_send(b->router, b->identity, b->identity_size, &m, err, sizeof err), 0,
                 "%s", err);
    nr_proto_msg_clear(&m);
}

static void s_send_job(s_broker_t *b, const char *id, const char *stage, uint32_t attempt,
                       const char *behave, const char *input) {
    s_send_job_within(b, id, stage, attempt, behave, input, 60000);
}

/* The in-process test stage. */
static atomic_int s_started;
static atomic_int s_max_batch;
static atomic_int s_running, s_max_running; /* handler calls inside sleep:<ms> */

static void s_atomic_max(atomic_int *m, int v) {
    int cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v)) {
    }
}

static int s_test_run(void *ctx, const nr_msg_t *job, nr_msg_t *result, char *err, size_t errlen) {
    (void)ctx;
    atomic_fetch_add(&s_started, 1);
    const char *behave = nr_proto_kv_get(job, "behave");
    if (!behave) behave = "echo";
    if (!strncmp(behave, "sleep:", 6)) {
        s_atomic_max(&s_max_running, atomic_fetch_add(&s_running, 1) + 1);
        nr_harness_sleep_ms(atoi(behave + 6));
        atomic_fetch_sub(&s_running, 1);
    }
    else if (!strcmp(behave, "fail")) return nr_seterr(err, errlen, NR_EINTERNAL, "asked to fail");
    else if (!strcmp(behave, "fail-final")) return nr_seterr(err, errlen, NR_EOPTION, "asked to fail for good");
    else if (!strcmp(behave, "bad-code")) return 42; /* not an NR_E* code */
    else if (!strcmp(behave, "big-kv")) {
        /* Each value fits, the body (> NR_PROTO_BODY_MAX) does not. */
        char *v = malloc(16001);
        memset(v, 'v', 16000);
        v[16000] = '\0';
        for (int i = 0; i < 20; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", i);
            nr_proto_kv_add(result, key, v);
        }
        free(v);
        return 0;
    }
    nr_proto_kv_add(result, "echo", "1");
    if (job->frames_len) nr_proto_frame_add(result, job->frames[0].data, job->frames[0].size);
    return 0;
}

static void s_test_run_batch(void *ctx, const nr_msg_t *const *jobs, size_t n,
                             nr_msg_t *const *results, int *codes, char *const *errs, size_t errlen) {
    s_atomic_max(&s_max_batch, (int)n);
    for (size_t i = 0; i < n; i++) codes[i] = s_test_run(ctx, jobs[i], results[i], errs[i], errlen);
}

typedef struct {
    nr_worker_t *w;
    pthread_t thread;
    int rc;
} s_worker_t;

static void *s_worker_thread(void *arg) {
    s_worker_t *t = arg;
    t->rc = nr_worker_run(t->w);
    return NULL;
}

static nr_worker_settings_t s_settings(const s_broker_t *b) {
    nr_worker_settings_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.broker, sizeof s.broker, "%s", b->endpoint);
    s.capacity = 2;
    s.heartbeat_ms = 100;
    s.heartbeat_liveness = 50; /* tests that want a reconnect lower it */
    s.reconnect_ms = 50;
    s.reconnect_max_ms = 400;
    s.grace_ms = 10000;
    s.batch_size = 1;
    s.batch_wait_ms = 0;
    snprintf(s.device, sizeof s.device, "cpu");
    snprintf(s.log_level, sizeof s.log_level, "warn");
    return s;
}

static void s_worker_spawn(s_worker_t *t, const nr_worker_stage_t *stage,
                           const nr_worker_settings_t *s) {
    char err[256] = "";
    t->w = nr_worker_new(stage, s, err, sizeof err);
    cr_assert_not_null(t->w, "%s", err);
    cr_assert_eq(pthread_create(&t->thread, NULL, s_worker_thread, t), 0);
}

static void s_worker_start(s_worker_t *t, const nr_worker_settings_t *s, int batch) {
    nr_worker_stage_t stage = nr_worker_stage_default();
    stage.name = "test";
    stage.run = s_test_run;
    if (batch) stage.run_batch = s_test_run_batch;
    stage.model = "echo-model";
    s_worker_spawn(t, &stage, s);
}

static int s_worker_finish(s_worker_t *t) {
    nr_worker_stop(t->w);
    pthread_join(t->thread, NULL);
    nr_worker_destroy(&t->w);
    nr_worker_destroy(&t->w); /* safe twice, as worker.h promises */
    return t->rc;
}

/* Inits `ready` and waits for the worker's READY into it, answering
 * heartbeats; `ready` is then the test's to check, reuse and clear. */
static void s_expect_ready(s_broker_t *b, nr_msg_t *ready) {
    nr_proto_msg_init(ready);
    s_expect(b, NR_CMD_READY, ready, 1);
}

/* The usual start: the test stage (no batch handler) in a thread, READY read. */
static void s_worker_up(s_broker_t *b, s_worker_t *t, const nr_worker_settings_t *s,
                        nr_msg_t *ready) {
    s_worker_start(t, s, 0);
    s_expect_ready(b, ready);
}

/* The usual end: the worker stops cleanly (run returned 0), then the broker closes. */
static void s_worker_down(s_broker_t *b, s_worker_t *t, nr_msg_t *m) {
    nr_proto_msg_clear(m);
    cr_assert_eq(s_worker_finish(t), 0);
    s_broker_close(b);
}

Test(runtime, ready_announces_stage_capacity_and_kv) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 3;
    snprintf(s.name, sizeof s.name, "unit-worker-1");
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    cr_assert_str_eq(m.stage, "test");
    cr_assert_eq(m.capacity, 3);
    cr_assert_str_eq(m.name, "unit-worker-1");
    cr_assert_str_eq(nr_proto_kv_get(&m, "model"), "echo-model");
    cr_assert_str_eq(nr_proto_kv_get(&m, "device"), "cpu");
    cr_assert_not_null(nr_proto_kv_get(&m, "version"));
    s_worker_down(&b, &t, &m);
}

Test(runtime, default_name_and_capacity) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 0; /* the stage's default: 1 */
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    cr_assert_eq(m.capacity, 1);
    cr_assert(!strncmp(m.name, "test-", 5), "name %s", m.name);
    s_worker_down(&b, &t, &m);
}

Test(runtime, job_gets_result_with_attempt_echoed) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    s_send_job(&b, "job-1", "test", 7, "echo", "hello frames");
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "job-1");
    cr_assert_str_eq(m.stage, "test");
    cr_assert_eq(m.attempt, 7);
    cr_assert_str_eq(nr_proto_kv_get(&m, "echo"), "1");
    cr_assert_not_null(nr_proto_kv_get(&m, "ms"), "runtime adds ms");
    cr_assert_eq(m.frames_len, 1);
    cr_assert_eq(m.frames[0].size, 12);
    cr_assert(!memcmp(m.frames[0].data, "hello frames", 12));
    s_worker_down(&b, &t, &m);
}

Test(runtime, heartbeats_keep_coming_while_a_slow_job_runs) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.heartbeat_ms = 50;
    s.capacity = 1;
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    b.heartbeats = 0;
    s_send_job(&b, "slow", "test", 1, "sleep:1000", "x");
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "slow");
    /* A 1 s job at a 50 ms period: far more than 3 heartbeats, none missed
     * for long. Only a lower bound, so a loaded machine cannot fail it. */
    cr_assert_geq(b.heartbeats, 4, "only %d heartbeats during a 1 s job", b.heartbeats);
    s_worker_down(&b, &t, &m);
}

Test(runtime, handler_errors_fail_the_job_with_the_right_retry_flag) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);

    s_send_job(&b, "f1", "test", 2, "fail", "x");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_str_eq(m.id, "f1");
    cr_assert_eq(m.attempt, 2);
    cr_assert_eq(m.code, NR_EINTERNAL);
    cr_assert_eq(m.retry, 1);
    cr_assert(strstr(m.message, "asked to fail"), "%s", m.message);

    s_send_job(&b, "f2", "test", 3, "fail-final", "x");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_str_eq(m.id, "f2");
    cr_assert_eq(m.attempt, 3);
    cr_assert_eq(m.code, NR_EOPTION);
    cr_assert_eq(m.retry, 0);

    s_send_job(&b, "f3", "test", 1, "bad-code", "x");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_eq(m.code, NR_EINTERNAL, "a code outside NR_E* becomes internal_error");

    /* A result too big to encode becomes a final FAIL. */
    s_send_job(&b, "big", "test", 1, "big-kv", "x");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_str_eq(m.id, "big");
    cr_assert_eq(m.code, NR_ETOOBIG);
    cr_assert_eq(m.retry, 0);

    /* A job for another stage is refused, retryably. */
    s_send_job(&b, "f4", "vision", 1, "echo", "x");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_str_eq(m.id, "f4");
    cr_assert_eq(m.retry, 1);

    /* And the worker keeps serving. */
    s_send_job(&b, "ok", "test", 1, "echo", "still here");
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "ok");
    cr_assert_eq(nr_worker_jobs_done(t.w), 6);
    s_worker_down(&b, &t, &m);
}

static void s_send_raw(s_broker_t *b, const void *const *parts, const size_t *sizes, int n) {
    zmq_send(b->router, b->identity, b->identity_size, ZMQ_SNDMORE);
    for (int i = 0; i < n; i++) zmq_send(b->router, parts[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

Test(runtime, malformed_messages_are_dropped) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);

    /* Garbage body, an empty body, a MessagePack non-map, a map without
     * version, a JOB missing its id, too many frames. */
    const void *p1[] = {"garbage!"};
    size_t z1[] = {8};
    s_send_raw(&b, p1, z1, 1);
    const void *p2[] = {""};
    size_t z2[] = {0};
    s_send_raw(&b, p2, z2, 1);
    const void *p3[] = {"\x93\x01\x02\x03"};
    size_t z3[] = {4};
    s_send_raw(&b, p3, z3, 1);
    const void *p4[] = {"\x81\xa3" "cmd\xa3JOB"};
    size_t z4[] = {9};
    s_send_raw(&b, p4, z4, 1);
    const void *p5[] = {"\x82\xa1v\x01\xa3" "cmd\xa3JOB"};
    size_t z5[] = {12};
    s_send_raw(&b, p5, z5, 1);
    /* A valid JOB body followed by more frames than allowed. */
    nr_msg_t job;
    nr_proto_msg_init(&job);
    job.cmd = NR_CMD_JOB;
    snprintf(job.id, sizeof job.id, "too-many");
    snprintf(job.stage, sizeof job.stage, "test");
    job.attempt = 1;
    uint8_t *body = NULL;
    size_t body_size = 0;
    char err[256];
    cr_assert_eq(nr_proto_encode(&job, &body, &body_size, err, sizeof err), 0, "%s", err);
    const void *p6[] = {body, "a", "b", "c", "d", "e", "f"};
    size_t z6[] = {body_size, 1, 1, 1, 1, 1, 1};
    s_send_raw(&b, p6, z6, 7);
    free(body);
    nr_proto_msg_clear(&job);
    /* A well-formed message the worker does not expect (READY from the broker). */
    nr_msg_t odd;
    nr_proto_msg_init(&odd);
    odd.cmd = NR_CMD_READY;
    snprintf(odd.stage, sizeof odd.stage, "test");
    snprintf(odd.name, sizeof odd.name, "x");
    odd.capacity = 1;
    nr_proto_send(b.router, b.identity, b.identity_size, &odd, err, sizeof err);

    /* The worker answers none of them and serves the next job. */
    s_send_job(&b, "after", "test", 4, "echo", "fine");
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "after", "a malformed message got an answer");
    cr_assert_eq(m.attempt, 4);
    cr_assert_eq(nr_worker_jobs_done(t.w), 1);
    s_worker_down(&b, &t, &m);
}

Test(runtime, silent_broker_means_reconnect_and_ready_again) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.heartbeat_ms = 50;
    s.heartbeat_liveness = 3;
    s_worker_t t;
    s_worker_start(&t, &s, 0);
    nr_msg_t m;
    nr_proto_msg_init(&m);
    s_expect(&b, NR_CMD_READY, &m, 0); /* and never answer */
    uint8_t first[256];
    size_t first_size = b.identity_size;
    memcpy(first, b.identity, first_size);
    s_expect(&b, NR_CMD_READY, &m, 0);
    cr_assert_str_eq(m.stage, "test");
    cr_assert(b.identity_size != first_size || memcmp(first, b.identity, first_size) != 0,
              "the worker reconnects with a fresh socket");
    /* Now the broker answers: the worker stays, and jobs work. */
    s_send_job(&b, "after-reconnect", "test", 1, "echo", "hi");
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "after-reconnect");
    s_worker_down(&b, &t, &m);
}

Test(runtime, broker_disconnect_means_ready_again) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    nr_msg_t d;
    nr_proto_msg_init(&d);
    d.cmd = NR_CMD_DISCONNECT;
    char err[256];
    cr_assert_eq(nr_proto_send(b.router, b.identity, b.identity_size, &d, err, sizeof err), 0);
    s_expect(&b, NR_CMD_READY, &m, 1);
    s_worker_down(&b, &t, &m);
}

Test(runtime, stop_finishes_running_job_then_disconnects) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 1;
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    atomic_store(&s_started, 0);
    s_send_job(&b, "running", "test", 1, "sleep:500", "x");
    s_send_job(&b, "queued", "test", 1, "echo", "y"); /* capacity 1: waits behind it */
    while (atomic_load(&s_started) == 0) nr_harness_sleep_ms(5);
    nr_worker_stop(t.w);
    /* The queued job is handed back (retryable), the running one finishes. */
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_str_eq(m.id, "queued");
    cr_assert_eq(m.code, NR_EBUSY);
    cr_assert_eq(m.retry, 1);
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "running");
    s_expect(&b, NR_CMD_DISCONNECT, &m, 1);
    pthread_join(t.thread, NULL);
    cr_assert_eq(t.rc, 0);
    nr_worker_destroy(&t.w);
    nr_proto_msg_clear(&m);
    s_broker_close(&b);
}

Test(runtime, grace_period_bounds_the_stop) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 1;
    s.grace_ms = 100;
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    atomic_store(&s_started, 0);
    s_send_job(&b, "long", "test", 1, "sleep:3000", "x");
    while (atomic_load(&s_started) == 0) nr_harness_sleep_ms(5);
    nr_worker_stop(t.w);
    s_expect(&b, NR_CMD_DISCONNECT, &m, 1);
    pthread_join(t.thread, NULL);
    cr_assert_eq(t.rc, NR_ETIMEDOUT);
    nr_worker_destroy(&t.w); /* leaves the busy handler thread alone */
    nr_proto_msg_clear(&m);
    s_broker_close(&b);
    nr_harness_sleep_ms(3100); /* let the handler end before the process does */
}

Test(runtime, batch_handler_gets_several_jobs) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 4;
    s.batch_size = 4;
    s.batch_wait_ms = 500;
    s_worker_t t;
    atomic_store(&s_max_batch, 0);
    s_worker_start(&t, &s, 1);
    nr_msg_t m;
    s_expect_ready(&b, &m);
    cr_assert_str_eq(nr_proto_kv_get(&m, "batch_size"), "4");
    const char *ids[] = {"b0", "b1", "b2", "b3"};
    for (int i = 0; i < 4; i++) s_send_job(&b, ids[i], "test", (uint32_t)i + 1, i == 2 ? "fail-final" : "echo", ids[i]);
    int seen = 0;
    for (int k = 0; k < 4; k++) {
        s_expect(&b, NR_CMD_NONE, &m, 1);
        int i = m.id[1] - '0';
        cr_assert_eq(m.attempt, (uint32_t)i + 1);
        if (i == 2) {
            cr_assert_eq(m.cmd, NR_CMD_FAIL, "one bad job fails only itself");
            cr_assert_eq(m.retry, 0);
        } else {
            cr_assert_eq(m.cmd, NR_CMD_RESULT);
            cr_assert_eq(m.frames[0].size, 2);
            cr_assert(!memcmp(m.frames[0].data, ids[i], 2));
        }
        seen |= 1 << i;
    }
    cr_assert_eq(seen, 15);
    cr_assert_gt(atomic_load(&s_max_batch), 1, "jobs sent together were batched");
    s_worker_down(&b, &t, &m);
}

/* Capacity 4: four 200 ms jobs sent at once; returns how many ran at once
 * and checks that all four came back. */
static int s_most_running(int concurrency) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 4;
    s.concurrency = concurrency;
    s_worker_t t;
    atomic_store(&s_max_running, 0);
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    cr_assert_eq(m.capacity, 4, "the credit is the capacity, whatever the concurrency");
    const char *ids[] = {"c0", "c1", "c2", "c3"};
    for (int i = 0; i < 4; i++) s_send_job(&b, ids[i], "test", 1, "sleep:200", ids[i]);
    int seen = 0;
    for (int k = 0; k < 4; k++) {
        s_expect(&b, NR_CMD_RESULT, &m, 1); /* clears m first */
        seen |= 1 << (m.id[1] - '0');
    }
    cr_assert_eq(seen, 15, "every held job ran");
    s_worker_down(&b, &t, &m);
    return atomic_load(&s_max_running);
}

Test(runtime, concurrency_bounds_the_jobs_running_not_the_jobs_held) {
    cr_assert_eq(s_most_running(1), 1, "concurrency 1: one job at a time");
    cr_assert_eq(s_most_running(2), 2);
    cr_assert_eq(s_most_running(0), 4, "concurrency 0: one handler per capacity slot");
}

/* A held job's deadline runs while it waits in the worker; one that passed
 * before a handler was free is answered without being started. */
Test(runtime, held_job_past_its_deadline_is_answered_not_started) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 3;
    s.concurrency = 1;
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    atomic_store(&s_started, 0);
    s_send_job_within(&b, "busy", "test", 1, "sleep:400", "x", 60000);
    s_send_job_within(&b, "stale", "test", 2, "echo", "x", 150); /* waits ~400 ms */
    s_send_job_within(&b, "fresh", "test", 1, "echo", "x", 60000);
    /* One handler takes them in order: busy runs, stale is answered when
     * busy ends, then fresh runs. */
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "busy");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_str_eq(m.id, "stale");
    cr_assert_eq(m.code, NR_EDEADLINE);
    cr_assert_eq(m.retry, 1, "the broker leases it again");
    cr_assert_eq(m.attempt, 2);
    cr_assert(strstr(m.message, "not started"), "%s", m.message);
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "fresh");
    cr_assert_eq(atomic_load(&s_started), 2, "the stale job never reached the handler");
    s_worker_down(&b, &t, &m);
}

/* The same when the handler gathers batches: the stale job is answered,
 * the others run. */
Test(runtime, batch_handler_skips_held_jobs_past_their_deadline) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 4;
    s.batch_size = 2;
    s.batch_wait_ms = 50;
    s.concurrency = 1;
    s_worker_t t;
    s_worker_start(&t, &s, 1);
    nr_msg_t m;
    s_expect_ready(&b, &m);
    atomic_store(&s_started, 0);
    /* The first batch holds b0 and perhaps b1 (2 at most) and runs 400 ms;
     * b2 is never in it, so it has waited past its 150 ms when taken. */
    s_send_job_within(&b, "b0", "test", 1, "sleep:400", "x", 60000);
    s_send_job_within(&b, "b1", "test", 1, "echo", "x", 60000);
    s_send_job_within(&b, "b2", "test", 1, "echo", "x", 150);
    s_send_job_within(&b, "b3", "test", 1, "echo", "x", 60000);
    int seen = 0;
    for (int k = 0; k < 4; k++) {
        s_expect(&b, NR_CMD_NONE, &m, 1);
        int i = m.id[1] - '0';
        if (i == 2) {
            cr_assert_eq(m.cmd, NR_CMD_FAIL);
            cr_assert_eq(m.code, NR_EDEADLINE);
            cr_assert_eq(m.retry, 1);
        } else {
            cr_assert_eq(m.cmd, NR_CMD_RESULT, "%s: %s", m.id, m.message);
        }
        seen |= 1 << i;
    }
    cr_assert_eq(seen, 15);
    cr_assert_eq(atomic_load(&s_started), 3, "the stale job never reached the batch handler");
    s_worker_down(&b, &t, &m);
}

/* ---- the narrator-worker-test program, as a real process ---- */

static nr_harness_proc_t *s_spawn_test_worker(const s_broker_t *b) {
    char *prog = nr_harness_program("narrator-worker-test");
    cr_assert_not_null(prog, "%s", nr_harness_error());
    const char *argv[] = {prog, "--broker", b->endpoint, "--stage", "echo-stage", "--log-level",
                          "warn", "--capacity", "2", NULL};
    nr_harness_proc_t *p = nr_harness_spawn(argv, NULL, NULL);
    free(prog);
    cr_assert_not_null(p, "%s", nr_harness_error());
    return p;
}

Test(program, sigterm_finishes_then_disconnects_and_exits_0) {
    s_broker_t b;
    s_broker_open(&b);
    nr_harness_proc_t *p = s_spawn_test_worker(&b);
    nr_msg_t m;
    s_expect_ready(&b, &m);
    cr_assert_str_eq(m.stage, "echo-stage");
    cr_assert_eq(m.capacity, 2);
    s_send_job(&b, "e1", "echo-stage", 5, "echo", "abc");
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_eq(m.attempt, 5);
    cr_assert_str_eq(nr_proto_kv_get(&m, "behave"), "echo");
    s_send_job(&b, "e2", "echo-stage", 1, "fail-final", "abc");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_eq(m.retry, 0);
    s_send_job(&b, "e3", "echo-stage", 1, "fail", "abc");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_eq(m.retry, 1);
    s_send_job(&b, "slow", "echo-stage", 1, "sleep:400", "abc");
    nr_harness_sleep_ms(100);
    cr_assert_eq(nr_harness_proc_kill(p, SIGTERM), 0);
    /* Normally the job has started and finishes; if the signal won the race
     * it is handed back retryably. Either way, then DISCONNECT and exit 0. */
    nr_proto_msg_clear(&m);
    long long until = nr_harness_now_ms() + 10000;
    int answered = 0;
    char err[256];
    for (;;) {
        cr_assert_lt(nr_harness_now_ms(), until, "no DISCONNECT");
        size_t idlen = sizeof b.identity;
        int rc = nr_proto_recv(b.router, b.identity, &idlen, &m, err, sizeof err);
        if (rc) continue;
        if (m.cmd == NR_CMD_RESULT || (m.cmd == NR_CMD_FAIL && m.retry == 1 && m.code == NR_EBUSY)) {
            cr_assert_str_eq(m.id, "slow");
            answered = 1;
        } else if (m.cmd == NR_CMD_DISCONNECT) {
            break;
        } else {
            cr_assert_eq(m.cmd, NR_CMD_HEARTBEAT, "unexpected %s", nr_proto_cmd_name(m.cmd));
        }
        nr_proto_msg_clear(&m);
    }
    cr_assert(answered, "the running job was answered before DISCONNECT");
    int status = 0;
    cr_assert_eq(nr_harness_proc_wait(p, 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 0);
    nr_harness_proc_destroy(&p);
    nr_proto_msg_clear(&m);
    s_broker_close(&b);
}

Test(program, crash_behaviour_kills_the_process) {
    s_broker_t b;
    s_broker_open(&b);
    nr_harness_proc_t *p = s_spawn_test_worker(&b);
    nr_msg_t m;
    s_expect_ready(&b, &m);
    s_send_job(&b, "boom", "echo-stage", 1, "crash", "abc");
    int status = 0;
    cr_assert_eq(nr_harness_proc_wait(p, 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_signal(status), SIGKILL);
    nr_harness_proc_destroy(&p);
    nr_proto_msg_clear(&m);
    s_broker_close(&b);
}

Test(program, help_and_bad_flags) {
    char *prog = nr_harness_program("narrator-worker-test");
    cr_assert_not_null(prog);
    int status = 0;
    const char *help[] = {prog, "--help", NULL};
    cr_assert_eq(nr_harness_run(help, NULL, "/dev/null", 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 0);
    const char *bad[] = {prog, "--capacity", "0x", NULL};
    cr_assert_eq(nr_harness_run(bad, NULL, "/dev/null", 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 2);
    free(prog);
}

Test(program, speech_worker_end_to_end) {
    s_broker_t b;
    s_broker_open(&b);
    char *prog = nr_harness_program("narrator-worker-speech");
    cr_assert_not_null(prog, "%s", nr_harness_error());
    const char *argv[] = {prog, "--broker", b.endpoint, "--log-level", "warn", NULL};
    nr_harness_proc_t *p = nr_harness_spawn(argv, NULL, NULL);
    free(prog);
    cr_assert_not_null(p, "%s", nr_harness_error());
    nr_msg_t m;
    s_expect_ready(&b, &m);
    cr_assert_str_eq(m.stage, "speech");
    cr_assert_eq(m.capacity, 1, "Flite is serialized: capacity 1 by default");
    cr_assert_str_eq(nr_proto_kv_get(&m, "model"), "flite");

    nr_msg_t job;
    nr_proto_msg_init(&job);
    job.cmd = NR_CMD_JOB;
    snprintf(job.id, sizeof job.id, "say-1");
    snprintf(job.stage, sizeof job.stage, "speech");
    job.attempt = 2;
    cr_assert_eq(nr_proto_kv_add(&job, "voice", "awb"), 0);
    cr_assert_eq(nr_proto_frame_add(&job, s_sentence, strlen(s_sentence)), 0);
    char err[256];
    cr_assert_eq(nr_proto_send(b.router, b.identity, b.identity_size, &job, err, sizeof err), 0);
    s_expect(&b, NR_CMD_RESULT, &m, 1);
    cr_assert_str_eq(m.id, "say-1");
    cr_assert_eq(m.attempt, 2);
    cr_assert_str_eq(nr_proto_kv_get(&m, "voice"), "awb");
    cr_assert_str_eq(nr_proto_kv_get(&m, "sample_rate"), "16000");
    cr_assert_eq(m.frames_len, 1);
    nr_wav_info_t w;
    cr_assert_eq(nr_wav_parse(m.frames[0].data, m.frames[0].size, &w), 0);
    cr_assert_eq((long)(w.num_samples * 1000 / 16000), atol(nr_proto_kv_get(&m, "duration_ms")));

    /* Not UTF-8: a final failure, and the worker goes on. */
    nr_proto_msg_clear(&job);
    job.cmd = NR_CMD_JOB;
    snprintf(job.id, sizeof job.id, "say-2");
    snprintf(job.stage, sizeof job.stage, "speech");
    job.attempt = 1;
    cr_assert_eq(nr_proto_frame_add(&job, "\xFF\xFE", 2), 0);
    cr_assert_eq(nr_proto_send(b.router, b.identity, b.identity_size, &job, err, sizeof err), 0);
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_str_eq(m.id, "say-2");
    cr_assert_eq(m.code, NR_ETEXT);
    cr_assert_eq(m.retry, 0);
    cr_assert(strstr(m.message, "UTF-8"), "%s", m.message);

    cr_assert_eq(nr_harness_proc_kill(p, SIGTERM), 0);
    s_expect(&b, NR_CMD_DISCONNECT, &m, 1);
    int status = 0;
    cr_assert_eq(nr_harness_proc_wait(p, 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 0);
    nr_harness_proc_destroy(&p);
    nr_proto_msg_clear(&job);
    nr_proto_msg_clear(&m);
    s_broker_close(&b);
}

Test(runtime, bad_endpoint_and_bad_settings_are_reported) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    snprintf(s.broker, sizeof s.broker, "nonsense://here");
    nr_worker_stage_t stage = nr_worker_stage_default();
    stage.name = "test";
    stage.run = s_test_run;
    char err[256] = "";
    nr_worker_t *w = nr_worker_new(&stage, &s, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(nr_worker_run(w), NR_EINVAL);
    nr_worker_destroy(&w);
    s = s_settings(&b);
    snprintf(s.name, sizeof s.name, "Bad Name");
    cr_assert_null(nr_worker_new(&stage, &s, err, sizeof err));
    cr_assert(strstr(err, "Bad Name"), "%s", err);
    s = s_settings(&b);
    stage.run = NULL;
    cr_assert_null(nr_worker_new(&stage, &s, err, sizeof err));
    s_broker_close(&b);
}

/* Per-thread setup: each handler thread gets its own context. */
typedef struct {
    int index;
    char label[16];
} s_thread_state_t;

static atomic_int s_inits, s_finis;

static int s_thread_init(void *ctx, int index, void **thread_ctx, char *err, size_t errlen) {
    if (ctx && !strcmp((const char *)ctx, "fail"))
        return nr_seterr(err, errlen, NR_EDEVICE, "no such device cuda:%d", index);
    s_thread_state_t *st = calloc(1, sizeof *st);
    st->index = index;
    snprintf(st->label, sizeof st->label, "%d", index);
    *thread_ctx = st;
    atomic_fetch_add(&s_inits, 1);
    return 0;
}

static void s_thread_fini(void *ctx, void *thread_ctx) {
    (void)ctx;
    free(thread_ctx);
    atomic_fetch_add(&s_finis, 1);
}

static int s_thread_run(void *tctx, const nr_msg_t *job, nr_msg_t *result, char *err, size_t errlen) {
    s_thread_state_t *st = tctx;
    nr_harness_sleep_ms(200); /* so that jobs overlap and spread over threads */
    (void)job;
    (void)err;
    (void)errlen;
    return nr_proto_kv_add(result, "thread", st->label);
}

Test(runtime, thread_init_gives_each_handler_thread_its_context) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 3;
    nr_worker_stage_t stage = nr_worker_stage_default();
    stage.name = "test";
    stage.run = s_thread_run;
    stage.thread_init = s_thread_init;
    stage.thread_fini = s_thread_fini;
    atomic_store(&s_inits, 0);
    atomic_store(&s_finis, 0);
    s_worker_t t;
    s_worker_spawn(&t, &stage, &s);
    nr_msg_t m;
    s_expect_ready(&b, &m);
    cr_assert_eq(atomic_load(&s_inits), 3, "thread_init ran on all threads before READY");
    const char *ids[] = {"t0", "t1", "t2"};
    for (int i = 0; i < 3; i++) s_send_job(&b, ids[i], "test", 1, NULL, "x");
    for (int i = 0; i < 3; i++) {
        s_expect(&b, NR_CMD_RESULT, &m, 1);
        const char *th = nr_proto_kv_get(&m, "thread");
        cr_assert_not_null(th);
        cr_assert(!strcmp(th, "0") || !strcmp(th, "1") || !strcmp(th, "2"), "thread %s", th);
    }
    nr_proto_msg_clear(&m);
    cr_assert_eq(s_worker_finish(&t), 0);
    cr_assert_eq(atomic_load(&s_finis), 3);
    s_broker_close(&b);
}

Test(runtime, thread_init_failure_stops_before_connecting) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 2;
    nr_worker_stage_t stage = nr_worker_stage_default();
    stage.name = "test";
    stage.run = s_thread_run;
    stage.ctx = "fail";
    stage.thread_init = s_thread_init;
    stage.thread_fini = s_thread_fini;
    char err[256] = "";
    nr_worker_t *w = nr_worker_new(&stage, &s, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(nr_worker_run(w), NR_EDEVICE);
    nr_worker_destroy(&w);
    /* Nothing reached the broker. */
    nr_msg_t m;
    nr_proto_msg_init(&m);
    size_t idlen = sizeof b.identity;
    cr_assert_neq(nr_proto_recv(b.router, b.identity, &idlen, &m, err, sizeof err), 0);
    s_broker_close(&b);
}

Test(runtime, jobs_far_beyond_credit_are_handed_back) {
    s_broker_t b;
    s_broker_open(&b);
    nr_worker_settings_t s = s_settings(&b);
    s.capacity = 1;
    s_worker_t t;
    nr_msg_t m;
    s_worker_up(&b, &t, &s, &m);
    atomic_store(&s_started, 0);
    s_send_job(&b, "run", "test", 1, "sleep:600", "x");
    while (atomic_load(&s_started) == 0) nr_harness_sleep_ms(5);
    /* Capacity 1: two more may wait (a reconnect can overlap), the third not. */
    s_send_job(&b, "w1", "test", 1, "echo", "x");
    s_send_job(&b, "w2", "test", 1, "echo", "x");
    s_send_job(&b, "over", "test", 1, "echo", "x");
    s_expect(&b, NR_CMD_FAIL, &m, 1);
    cr_assert_str_eq(m.id, "over");
    cr_assert_eq(m.code, NR_EBUSY);
    cr_assert_eq(m.retry, 1);
    const char *order[] = {"run", "w1", "w2"};
    for (int i = 0; i < 3; i++) {
        s_expect(&b, NR_CMD_RESULT, &m, 1);
        cr_assert_str_eq(m.id, order[i]);
    }
    s_worker_down(&b, &t, &m);
}

Test(program, settings_from_file_environment_and_flags) {
    s_broker_t b;
    s_broker_open(&b);
    char *dir = nr_harness_tempdir("worker");
    cr_assert_not_null(dir);
    char *conf = nr_harness_path(dir, "worker.conf");
    const char text[] = "# test worker\nstage = from-file\ncapacity = 5\nname = file-name\n";
    cr_assert_eq(nr_harness_write_file(conf, text, sizeof text - 1), 0);
    char *prog = nr_harness_program("narrator-worker-test");
    cr_assert_not_null(prog);
    char env_broker[300];
    snprintf(env_broker, sizeof env_broker, "NARRATOR_WORKER_BROKER=%s", b.endpoint);
    /* file < environment < flags */
    const char *env[] = {env_broker, "NARRATOR_WORKER_CAPACITY=4", "NARRATOR_WORKER_NAME=env-name",
                         "NARRATOR_WORKER_LOG_LEVEL=warn", NULL};
    const char *argv[] = {prog, "--config", conf, "--name", "flag-name", NULL};
    nr_harness_proc_t *p = nr_harness_spawn(argv, env, NULL);
    cr_assert_not_null(p, "%s", nr_harness_error());
    nr_msg_t m;
    s_expect_ready(&b, &m);
    cr_assert_str_eq(m.stage, "from-file");
    cr_assert_eq(m.capacity, 4);
    cr_assert_str_eq(m.name, "flag-name");
    int status = 0;
    cr_assert_eq(nr_harness_proc_stop(p, SIGTERM, 10000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 0);
    nr_harness_proc_destroy(&p);
    nr_harness_rmtree(dir);
    free(dir);
    free(conf);
    free(prog);
    nr_proto_msg_clear(&m);
    s_broker_close(&b);
}
