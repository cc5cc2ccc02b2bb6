/* Unit tests for the listener of `narrate eval` (client/eval/audio.c,
 * listen.c): the WAV reader's checks, the windowed-sinc resampler against
 * analytic sines (pass band kept, content above the new Nyquist frequency
 * removed rather than aliased), and pocketsphinx transcribing English
 * sentences that Flite speaks (8 and 16 kHz voices, and audio resampled to
 * Kokoro's 24 kHz first). */
#include "client/eval/audio.h"
#include "client/eval/listen.h"
#include "client/eval/tokenize.h"
#include "client/eval/wer.h"
#include "common/error.h"
#include "workers/speech/speech.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nr_audio_t s_sine(uint32_t rate, double hz, double seconds) {
    nr_audio_t a = {malloc(sizeof(float) * (size_t)(rate * seconds)), (size_t)(rate * seconds), rate};
    for (size_t i = 0; i < a.n; i++) a.x[i] = (float)(0.5 * sin(2 * M_PI * hz * (double)i / rate));
    return a;
}

/* Largest error against the sine in the middle (away from the edges). */
static double s_max_err(const nr_audio_t *a, double hz, double amp) {
    double worst = 0;
    for (size_t i = a->n / 4; i < a->n * 3 / 4; i++)
        worst = fmax(worst, fabs(a->x[i] - amp * sin(2 * M_PI * hz * (double)i / a->rate)));
    return worst;
}

static double s_rms_mid(const nr_audio_t *a) {
    double sum = 0;
    size_t n = 0;
    for (size_t i = a->n / 4; i < a->n * 3 / 4; i++, n++) sum += (double)a->x[i] * a->x[i];
    return sqrt(sum / (double)n);
}

Test(listen, resample_keeps_the_pass_band) {
    const struct { uint32_t from, to; double hz; } cases[] = {
        {24000, 16000, 1000}, {8000, 16000, 1000}, {22050, 16000, 3000}, {44100, 16000, 5000}, {16000, 16000, 440},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nr_audio_t in = s_sine(cases[c].from, cases[c].hz, 0.5), out;
        cr_assert_eq(nr_audio_resample(&in, cases[c].to, &out), 0);
        cr_expect_eq(out.rate, cases[c].to);
        cr_expect_eq(out.n, (size_t)((uint64_t)in.n * cases[c].to / cases[c].from));
        double err = s_max_err(&out, cases[c].hz, 0.5);
        cr_expect_lt(err, 2e-3, "%u -> %u Hz, %g Hz sine: max error %g", cases[c].from, cases[c].to, cases[c].hz, err);
        nr_audio_clear(&in);
        nr_audio_clear(&out);
    }
}

Test(listen, resample_removes_what_the_new_rate_cannot_hold) {
    /* 10 kHz at 24 kHz has no place at 16 kHz (Nyquist 8 kHz): nearest-
     * sample or linear interpolation would fold it to 6 kHz at about full
     * amplitude; the filter leaves less than -60 dB. */
    nr_audio_t in = s_sine(24000, 10000, 0.5), out;
    cr_assert_eq(nr_audio_resample(&in, 16000, &out), 0);
    cr_expect_lt(s_rms_mid(&out), 0.5 / sqrt(2) * 1e-3, "rms %g", s_rms_mid(&out));
    nr_audio_clear(&in);
    nr_audio_clear(&out);
    nr_audio_t bad = {NULL, 0, 100};
    cr_expect_eq(nr_audio_resample(&bad, 16000, &out), NR_EINVAL);
}

/* A WAV header + data for the parser tests. */
static size_t s_wav(uint8_t *buf, uint16_t format, uint16_t channels, uint32_t rate, uint16_t bits,
                    const void *data, uint32_t size) {
    uint32_t riff = 36 + size, fmt_len = 16, byte_rate = rate * channels * bits / 8;
    uint16_t align = (uint16_t)(channels * bits / 8);
    memcpy(buf, "RIFF", 4), memcpy(buf + 4, &riff, 4), memcpy(buf + 8, "WAVEfmt ", 8);
    memcpy(buf + 16, &fmt_len, 4), memcpy(buf + 20, &format, 2), memcpy(buf + 22, &channels, 2);
    memcpy(buf + 24, &rate, 4), memcpy(buf + 28, &byte_rate, 4), memcpy(buf + 32, &align, 2);
    memcpy(buf + 34, &bits, 2), memcpy(buf + 36, "data", 4), memcpy(buf + 40, &size, 4);
    memcpy(buf + 44, data, size);
    return 44 + size;
}

Test(listen, wav_reader_mixes_to_mono_and_refuses_what_it_cannot_read) {
    uint8_t buf[256];
    char err[256];
    nr_audio_t a;
    int16_t stereo[4] = {16384, 0, -32768, -32768};
    size_t n = s_wav(buf, 1, 2, 16000, 16, stereo, sizeof stereo);
    cr_assert_eq(nr_audio_parse_wav(buf, n, &a, err, sizeof err), 0, "%s", err);
    cr_expect_eq(a.n, 2);
    cr_expect_float_eq(a.x[0], 0.25f, 1e-6);
    cr_expect_float_eq(a.x[1], -1.0f, 1e-6);
    nr_audio_clear(&a);
    uint8_t u8[2] = {128, 255};
    n = s_wav(buf, 1, 1, 8000, 8, u8, 2);
    cr_assert_eq(nr_audio_parse_wav(buf, n, &a, err, sizeof err), 0, "%s", err);
    cr_expect_float_eq(a.x[0], 0.0f, 1e-6);
    cr_expect_float_eq(a.x[1], 127.0f / 128.0f, 1e-6);
    nr_audio_clear(&a);

    cr_expect_eq(nr_audio_parse_wav((const uint8_t *)"hello world, not audio", 22, &a, err, sizeof err), NR_EINVAL);
    cr_expect(strstr(err, "not a WAV file"), "%s", err);
    float fl[3] = {0.5f, 2.0f, NAN};
    n = s_wav(buf, 3, 1, 24000, 32, fl, sizeof fl);
    cr_assert_eq(nr_audio_parse_wav(buf, n, &a, err, sizeof err), 0, "%s", err);
    cr_expect_float_eq(a.x[0], 0.5f, 1e-6);
    cr_expect_float_eq(a.x[1], 1.0f, 1e-6);
    cr_expect_float_eq(a.x[2], 0.0f, 1e-6);
    nr_audio_clear(&a);
    n = s_wav(buf, 3, 1, 16000, 24, stereo, 6);
    cr_expect_eq(nr_audio_parse_wav(buf, n, &a, err, sizeof err), NR_EINVAL);
    cr_expect(strstr(err, "unsupported WAV format"), "%s", err);
    n = s_wav(buf, 1, 1, 1000, 16, stereo, sizeof stereo);
    cr_expect_eq(nr_audio_parse_wav(buf, n, &a, err, sizeof err), NR_EINVAL);
    cr_expect(strstr(err, "sample rate"), "%s", err);
    n = s_wav(buf, 1, 1, 16000, 16, stereo, sizeof stereo);
    uint32_t huge = 0x7FFFFFF0u; /* a fmt chunk claiming more bytes than the file has */
    memcpy(buf + 16, &huge, 4);
    cr_expect_eq(nr_audio_parse_wav(buf, n, &a, err, sizeof err), NR_EINVAL);
    cr_expect(strstr(err, "past the end"), "%s", err);
    /* Longer than NR_AUDIO_MAX_SECONDS at 4 kHz: refused before any allocation of it. */
    size_t bytes = (size_t)4000 * 2 * (NR_AUDIO_MAX_SECONDS + 1);
    uint8_t *data = calloc(1, bytes);
    uint8_t *wav = malloc(44 + bytes);
    n = s_wav(wav, 1, 1, 4000, 16, data, (uint32_t)bytes);
    cr_expect_eq(nr_audio_parse_wav(wav, n, &a, err, sizeof err), NR_ETOOBIG);
    free(data), free(wav);
    cr_expect_neq(nr_audio_read_wav("/nonexistent.wav", &a, err, sizeof err), 0);
    cr_expect_neq(nr_audio_read_wav("/dev/null", &a, err, sizeof err), 0);
    cr_expect(strstr(err, "not a regular file"), "%s", err);
}

/* ---- pocketsphinx on Flite's voices ---- */

static nr_listen_t *s_ear;
static nr_speech_t *s_voice;

static void s_listen_setup(void) {
    if (!nr_listen_available()) cr_skip_test("built without pocketsphinx (libpocketsphinx-dev)");
    char err[512];
    s_ear = nr_listen_new(NULL, err, sizeof err);
    cr_assert_not_null(s_ear, "%s", err);
    nr_speech_params_t p = nr_speech_default_params();
    s_voice = nr_speech_new(&p, err, sizeof err);
    cr_assert_not_null(s_voice, "%s", err);
}

static void s_listen_teardown(void) {
    nr_listen_destroy(&s_ear);
    nr_speech_destroy(&s_voice);
}

/* Speaks text with voice, optionally resampled to `rate` first, transcribes
 * it and returns the word error rate against the text. */
static double s_say_and_hear(const char *text, const char *voice, uint32_t rate, char **heard) {
    uint8_t *wav;
    size_t size;
    nr_speech_info_t info;
    char err[512];
    cr_assert_eq(nr_speech_synthesize(s_voice, (const uint8_t *)text, strlen(text), voice, 1.0f, &wav, &size, &info,
                                      err, sizeof err), 0, "%s", err);
    nr_audio_t a, r;
    cr_assert_eq(nr_audio_parse_wav(wav, size, &a, err, sizeof err), 0, "%s", err);
    if (rate) {
        cr_assert_eq(nr_audio_resample(&a, rate, &r), 0);
        nr_audio_clear(&a);
        a = r;
    }
    cr_assert_eq(nr_listen_audio(s_ear, &a, heard, err, sizeof err), 0, "%s", err);
    nr_evtok_t *v = nr_evtok_new();
    nr_evsent_t h = {0}, ref = {0};
    cr_assert_eq(nr_evtok_sentence(v, *heard, &h), 0);
    cr_assert_eq(nr_evtok_sentence(v, text, &ref), 0);
    double wer = nr_wer_rate(nr_wer_edits(h.w, h.n, ref.w, ref.n), ref.n, h.n);
    nr_evsent_clear(&h), nr_evsent_clear(&ref);
    nr_evtok_destroy(&v);
    nr_audio_clear(&a);
    free(wav);
    return wer;
}

#define S_SENTENCE "a man is riding a horse on the beach"

Test(listen, pocketsphinx_hears_flite, .init = s_listen_setup, .fini = s_listen_teardown) {
    const struct { const char *voice; uint32_t rate; } cases[] = {
        {"slt", 0}, {"kal", 0}, {"slt", 24000}, {"rms", 22050},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *heard = NULL;
        double wer = s_say_and_hear(S_SENTENCE, cases[c].voice, cases[c].rate, &heard);
        fprintf(stderr, "%s at %u Hz: heard '%s', WER %.3f\n", cases[c].voice, cases[c].rate, heard, wer);
        cr_expect_lt(wer, 0.5, "%s: heard '%s' for '%s'", cases[c].voice, heard, S_SENTENCE);
        free(heard);
    }
}

Test(listen, silence_is_heard_as_nothing, .init = s_listen_setup, .fini = s_listen_teardown) {
    nr_audio_t a = {calloc(16000, sizeof(float)), 16000, 16000};
    char *heard = NULL, err[256];
    cr_assert_eq(nr_listen_audio(s_ear, &a, &heard, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(heard, "");
    free(heard);
    nr_audio_clear(&a);
}
