/* Kokoro in the speech worker: G2P, chunking, synthesis per chunk, WAV. */
#include "workers/speech/kokoro_voice.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/utf8.h"
#include "models/speech/g2p.h"
#include "models/speech/kokoro.h"
#include "workers/speech/wav.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The voice list in error messages stops near this many bytes ("... and N
 * more"), so that it fits a FAIL message. */
#define S_LIST_BYTES 360

struct nr_speech_kokoro {
    nr_kokoro_t *model;
    size_t max_text_bytes;
    const char **voices; /* borrowed from model: the usable ones */
    size_t n_voices;
    char default_voice[64];
    char *list; /* "af_heart, am_michael, ..." */
};

static int s_lang_ok(const char *voice) { return voice && nr_g2p_espeak_voice(voice[0]) != NULL; }

static const char *s_find(const nr_speech_kokoro_t *self, const char *voice) {
    for (size_t i = 0; i < self->n_voices; i++)
        if (!strcmp(self->voices[i], voice)) return self->voices[i];
    return NULL;
}

nr_speech_kokoro_t *nr_speech_kokoro_new(const nr_speech_kokoro_params_t *params, char *err, size_t errlen) {
    if (!params || !params->model_dir || !*params->model_dir) {
        nr_seterr(err, errlen, NR_EINVAL, "kokoro: no model folder (--model DIR)");
        return NULL;
    }
    if (!nr_g2p_available()) {
        nr_seterr(err, errlen, NR_EUNSUPPORTED,
                  "kokoro needs espeak-ng to turn text into phonemes, and this build has none "
                  "(NR_ESPEAK=OFF); use --engine flite");
        return NULL;
    }
    nr_speech_kokoro_t *self = calloc(1, sizeof *self);
    if (!self) {
        nr_seterr(err, errlen, NR_ENOMEM, "kokoro");
        return NULL;
    }
    self->max_text_bytes = params->max_text_bytes ? params->max_text_bytes : 4000;
    nr_kokoro_params_t kp = nr_kokoro_default_params();
    kp.num_threads = params->num_threads;
    int rc = nr_kokoro_load(params->model_dir, &kp, &self->model, err, errlen);
    if (rc) goto fail;
    size_t n = nr_kokoro_voice_count(self->model);
    self->voices = calloc(n ? n : 1, sizeof *self->voices);
    if (!self->voices) {
        nr_seterr(err, errlen, NR_ENOMEM, "kokoro");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v = nr_kokoro_voice_name(self->model, i);
        if (s_lang_ok(v)) self->voices[self->n_voices++] = v;
        else nr_log(NR_LOG_WARN, "kokoro voice %s left out: no G2P for its language '%c'", v, v ? v[0] : '?');
    }
    if (!self->n_voices) {
        nr_seterr(err, errlen, NR_EMODEL, "%s/voices holds no usable voice pack (<name>.pt, name starting with "
                  "a, b, e, f, h, i or p)", params->model_dir);
        goto fail;
    }
    const char *dv = params->default_voice && *params->default_voice ? params->default_voice : NULL;
    if (!dv) dv = s_find(self, "af_heart") ? "af_heart" : self->voices[0];
    nr_buf_t b = {0};
    for (size_t i = 0; i < self->n_voices; i++) {
        if (b.len > S_LIST_BYTES) {
            nr_buf_printf(&b, " and %zu more", self->n_voices - i);
            break;
        }
        nr_buf_printf(&b, "%s%s", i ? ", " : "", self->voices[i]);
    }
    self->list = nr_buf_take(&b, NULL);
    if (!self->list) {
        nr_seterr(err, errlen, NR_ENOMEM, "kokoro");
        goto fail;
    }
    if (!s_find(self, dv)) {
        nr_seterr(err, errlen, NR_EVOICE, "unknown default voice '%.64s' (voices: %s)", dv, self->list);
        goto fail;
    }
    snprintf(self->default_voice, sizeof self->default_voice, "%s", dv);
    return self;
fail:
    nr_speech_kokoro_destroy(&self);
    return NULL;
}

void nr_speech_kokoro_destroy(nr_speech_kokoro_t **self_p) {
    if (!self_p || !*self_p) return;
    nr_speech_kokoro_t *self = *self_p;
    nr_kokoro_destroy(&self->model);
    free(self->voices);
    free(self->list);
    free(self);
    *self_p = NULL;
}

size_t nr_speech_kokoro_voice_count(const nr_speech_kokoro_t *self) { return self ? self->n_voices : 0; }

const char *nr_speech_kokoro_voice_name(const nr_speech_kokoro_t *self, size_t i) {
    return self && i < self->n_voices ? self->voices[i] : NULL;
}

const char *nr_speech_kokoro_default_voice(const nr_speech_kokoro_t *self) { return self->default_voice; }

/* The chunk with every symbol outside the model's vocabulary dropped
 * (newlines kept as spaces); NULL when out of memory. */
static char *s_in_vocab(const nr_kokoro_t *model, const char *chunk) {
    nr_buf_t b = {0};
    nr_buf_putn(&b, "", 0);
    size_t n = strlen(chunk);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = nr_utf8_decode((const uint8_t *)chunk + i, n - i, &cp, NULL);
        if (!k) k = 1;
        const char *sym = chunk[i] == '\n' ? " " : chunk + i;
        size_t sl = chunk[i] == '\n' ? 1 : k;
        if (nr_kokoro_phonemes_valid(model, sym, sl)) nr_buf_putn(&b, sym, sl);
        i += k;
    }
    return nr_buf_take(&b, NULL);
}

int nr_speech_kokoro_synthesize(nr_speech_kokoro_t *self, const uint8_t *text, size_t len, const char *voice,
                                float speed, uint8_t **wav, size_t *wav_size, nr_speech_info_t *info, char *err,
                                size_t errlen) {
    if (!self || !wav || !wav_size || (len && !text))
        return nr_seterr(err, errlen, NR_EINVAL, "speech: missing argument");
    if (!voice || !*voice) voice = self->default_voice;
    const char *v = s_find(self, voice);
    if (!v) return nr_seterr(err, errlen, NR_EVOICE, "unknown voice '%.64s' (voices: %s)", voice, self->list);
    if (speed == 0.0f) speed = 1.0f;
    if (!(speed >= NR_SPEECH_SPEED_MIN && speed <= NR_SPEECH_SPEED_MAX))
        return nr_seterr(err, errlen, NR_EOPTION, "speed must be %.1f..%.1f", NR_SPEECH_SPEED_MIN,
                         NR_SPEECH_SPEED_MAX);
    int rc = nr_speech_check_text(text, len, self->max_text_bytes, err, errlen);
    if (rc) return rc;

    char *ps = NULL, **chunks = NULL;
    size_t n_chunks = 0, n_pcm = 0;
    int16_t *pcm = NULL;
    rc = nr_g2p_phonemize(v[0], (const char *)text, len, &ps, err, errlen);
    if (rc) return rc;
    rc = nr_g2p_split(ps, (size_t)nr_kokoro_max_phonemes(self->model), &chunks, &n_chunks);
    if (rc) {
        free(ps);
        return nr_seterr(err, errlen, rc, "kokoro: splitting the phonemes");
    }
    for (size_t c = 0; c < n_chunks && !rc; c++) {
        char *sym = s_in_vocab(self->model, chunks[c]);
        if (!sym) {
            rc = nr_seterr(err, errlen, NR_ENOMEM, "kokoro");
            break;
        }
        if (!sym[strspn(sym, " ")]) { /* nothing the model can say */
            free(sym);
            continue;
        }
        float *audio = NULL;
        size_t n = 0;
        rc = nr_kokoro_synthesize(self->model, sym, strlen(sym), v, speed, &audio, &n, err, errlen);
        free(sym);
        if (rc) break;
        int16_t *grown = n ? realloc(pcm, (n_pcm + n) * sizeof *pcm) : pcm;
        if (n && !grown) {
            rc = nr_seterr(err, errlen, NR_ENOMEM, "kokoro: joining audio");
        } else {
            pcm = grown;
            for (size_t i = 0; i < n; i++) {
                float x = isfinite(audio[i]) ? audio[i] * 32767.0f : 0.0f;
                pcm[n_pcm + i] = (int16_t)(x > 32767.0f ? 32767 : x < -32768.0f ? -32768 : lrintf(x));
            }
            n_pcm += n;
        }
        free(audio);
    }
    nr_g2p_free_list(chunks, n_chunks);
    free(ps);
    if (!rc && n_pcm == 0) rc = nr_seterr(err, errlen, NR_ETEXT, "text gives nothing Kokoro can speak");
    uint32_t rate = (uint32_t)nr_kokoro_sample_rate(self->model);
    if (!rc) {
        rc = nr_wav_encode(pcm, n_pcm, rate, wav, wav_size);
        if (rc) nr_seterr(err, errlen, rc, "wav encoding failed");
    }
    free(pcm);
    if (rc) return rc;
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->voice, sizeof info->voice, "%s", v);
        info->sample_rate = rate;
        info->num_samples = n_pcm;
        info->duration_ms = (uint64_t)n_pcm * 1000u / rate;
    }
    return 0;
}
