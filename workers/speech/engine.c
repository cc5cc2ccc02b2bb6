/* One interface over the Flite and Kokoro engines, and the job handler. */
#include "workers/speech/engine.h"

#include "common/error.h"
#include "common/log.h"
#include "workers/speech/kokoro_voice.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nr_speech_engine {
    nr_speech_t *flite;           /* one of the two */
    nr_speech_kokoro_t *kokoro;
};

nr_speech_engine_params_t nr_speech_engine_default_params(void) {
    nr_speech_engine_params_t p;
    memset(&p, 0, sizeof p);
    snprintf(p.engine, sizeof p.engine, "flite");
    p.default_voice = "";
    p.max_text_bytes = 4000;
    return p;
}

nr_speech_engine_t *nr_speech_engine_new(const nr_speech_engine_params_t *params, char *err, size_t errlen) {
    nr_speech_engine_params_t p = params ? *params : nr_speech_engine_default_params();
    nr_speech_engine_t *self = calloc(1, sizeof *self);
    if (!self) {
        nr_seterr(err, errlen, NR_ENOMEM, "speech engine");
        return NULL;
    }
    if (!strcmp(p.engine, "flite")) {
        nr_speech_params_t fp = nr_speech_default_params();
        fp.max_text_bytes = p.max_text_bytes;
        if (p.default_voice && *p.default_voice)
            snprintf(fp.default_voice, sizeof fp.default_voice, "%s", p.default_voice);
        self->flite = nr_speech_new(&fp, err, errlen);
    } else if (!strcmp(p.engine, "kokoro")) {
        nr_speech_kokoro_params_t kp = {p.model_dir, p.default_voice, p.max_text_bytes, p.num_threads};
        self->kokoro = nr_speech_kokoro_new(&kp, err, errlen);
    } else {
        nr_seterr(err, errlen, NR_EINVAL, "unknown engine '%.32s' (engines: flite, kokoro)", p.engine);
    }
    if (!self->flite && !self->kokoro) nr_speech_engine_destroy(&self);
    return self;
}

void nr_speech_engine_destroy(nr_speech_engine_t **self_p) {
    if (!self_p || !*self_p) return;
    nr_speech_destroy(&(*self_p)->flite);
    nr_speech_kokoro_destroy(&(*self_p)->kokoro);
    free(*self_p);
    *self_p = NULL;
}

const char *nr_speech_engine_name(const nr_speech_engine_t *self) { return self->kokoro ? "kokoro" : "flite"; }

size_t nr_speech_engine_voice_count(const nr_speech_engine_t *self) {
    return self->kokoro ? nr_speech_kokoro_voice_count(self->kokoro) : nr_speech_voice_count();
}

const char *nr_speech_engine_voice_name(const nr_speech_engine_t *self, size_t i) {
    return self->kokoro ? nr_speech_kokoro_voice_name(self->kokoro, i) : nr_speech_voice_name(i);
}

int nr_speech_engine_synthesize(nr_speech_engine_t *self, const uint8_t *text, size_t len, const char *voice,
                                float speed, uint8_t **wav, size_t *wav_size, nr_speech_info_t *info, char *err,
                                size_t errlen) {
    if (self->kokoro)
        return nr_speech_kokoro_synthesize(self->kokoro, text, len, voice, speed, wav, wav_size, info, err, errlen);
    return nr_speech_synthesize(self->flite, text, len, voice, speed, wav, wav_size, info, err, errlen);
}

int nr_speech_engine_run_job(void *ctx, const nr_msg_t *job, nr_msg_t *result, char *err, size_t errlen) {
    nr_speech_engine_t *self = ctx;
    if (job->frames_len < 1) return nr_seterr(err, errlen, NR_ETEXT, "job has no text frame");
    float speed;
    int rc = nr_proto_speed_check(nr_proto_kv_get(job, "speed"), &speed, err, errlen);
    if (rc) return rc;
    uint8_t *wav = NULL;
    size_t wav_size = 0;
    nr_speech_info_t info;
    rc = nr_speech_engine_synthesize(self, job->frames[0].data, job->frames[0].size, nr_proto_kv_get(job, "voice"),
                                     speed, &wav, &wav_size, &info, err, errlen);
    if (rc) return rc;
    char rate[16], ms[24], sp[16];
    snprintf(rate, sizeof rate, "%u", (unsigned)info.sample_rate);
    snprintf(ms, sizeof ms, "%llu", (unsigned long long)info.duration_ms);
    snprintf(sp, sizeof sp, "%g", (double)speed);
    if ((rc = nr_proto_kv_add(result, "engine", nr_speech_engine_name(self))) ||
        (rc = nr_proto_kv_add(result, "voice", info.voice)) ||
        (rc = nr_proto_kv_add(result, "sample_rate", rate)) ||
        (rc = nr_proto_kv_add(result, "duration_ms", ms)) ||
        (rc = nr_proto_kv_add(result, "speed", sp)) ||
        (rc = nr_proto_frame_take(result, &wav, wav_size))) {
        free(wav);
        return nr_seterr(err, errlen, rc, "cannot add the result");
    }
    nr_log(NR_LOG_DEBUG, "job %s: %zu bytes of text -> %llu ms of audio (%s %s)", job->id, job->frames[0].size,
           (unsigned long long)info.duration_ms, nr_speech_engine_name(self), info.voice);
    return 0;
}
