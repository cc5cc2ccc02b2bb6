/* Speech recognition for `narrate eval` with pocketsphinx's C API
 * (ps_init, ps_start_utt, ps_process_raw, ps_end_utt, ps_get_hyp). */
#include "client/eval/listen.h"
#include "common/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef NR_POCKETSPHINX_MODELDIR
#define NR_POCKETSPHINX_MODELDIR "/usr/share/pocketsphinx/model"
#endif

const char *nr_listen_default_model(void) { return NR_POCKETSPHINX_MODELDIR; }

#ifdef NR_HAVE_POCKETSPHINX
#include <pocketsphinx.h>

struct nr_listen {
    cmd_ln_t *config;
    ps_decoder_t *ps;
};

int nr_listen_available(void) { return 1; }

nr_listen_t *nr_listen_new(const char *model_dir, char *err, size_t errlen) {
    if (!model_dir) model_dir = NR_POCKETSPHINX_MODELDIR;
    char hmm[4096], lm[4096], dict[4096];
    snprintf(hmm, sizeof hmm, "%s/en-us/en-us", model_dir);
    snprintf(lm, sizeof lm, "%s/en-us/en-us.lm.bin", model_dir);
    snprintf(dict, sizeof dict, "%s/en-us/cmudict-en-us.dict", model_dir);
    struct stat st;
    if (stat(hmm, &st) != 0 || stat(lm, &st) != 0 || stat(dict, &st) != 0) {
        /* Or model_dir is that en-us/ folder itself. */
        snprintf(hmm, sizeof hmm, "%s/en-us", model_dir);
        snprintf(lm, sizeof lm, "%s/en-us.lm.bin", model_dir);
        snprintf(dict, sizeof dict, "%s/cmudict-en-us.dict", model_dir);
        if (stat(hmm, &st) != 0 || stat(lm, &st) != 0 || stat(dict, &st) != 0) {
            nr_seterr(err, errlen, NR_EMODEL,
                      "no pocketsphinx US English model in %s (install pocketsphinx-en-us, or give "
                      "--listener-model DIR holding en-us/{en-us/, en-us.lm.bin, cmudict-en-us.dict})",
                      model_dir);
            return NULL;
        }
    }
    nr_listen_t *self = calloc(1, sizeof *self);
    if (!self) {
        nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        return NULL;
    }
    self->config = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", hmm, "-lm", lm, "-dict", dict, "-logfn",
                               "/dev/null", "-samprate", "16000", NULL);
    if (self->config) self->ps = ps_init(self->config);
    if (!self->ps) {
        nr_seterr(err, errlen, NR_EMODEL, "pocketsphinx could not load the model in %s", model_dir);
        nr_listen_destroy(&self);
    }
    return self;
}

void nr_listen_destroy(nr_listen_t **self) {
    if (!self || !*self) return;
    if ((*self)->ps) ps_free((*self)->ps);
    if ((*self)->config) cmd_ln_free_r((*self)->config);
    free(*self);
    *self = NULL;
}

int nr_listen_audio(nr_listen_t *self, const nr_audio_t *audio, char **text, char *err, size_t errlen) {
    *text = NULL;
    if (!self || !audio) return nr_seterr(err, errlen, NR_EINVAL, "no audio");
    nr_audio_t r;
    int rc = nr_audio_resample(audio, NR_LISTEN_RATE, &r);
    if (rc) return nr_seterr(err, errlen, rc, "cannot resample %u Hz audio to 16 kHz", audio->rate);
    int16_t *pcm = malloc((r.n ? r.n : 1) * sizeof *pcm);
    if (!pcm) {
        nr_audio_clear(&r);
        return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < r.n; i++) {
        float v = r.x[i] * 32767.0f;
        pcm[i] = (int16_t)lrintf(v > 32767.0f ? 32767.0f : v < -32768.0f ? -32768.0f : v);
    }
    size_t n = r.n;
    nr_audio_clear(&r);
    const char *hyp = NULL;
    int32 score;
    if (ps_start_utt(self->ps) < 0) {
        rc = nr_seterr(err, errlen, NR_EINTERNAL, "pocketsphinx could not start an utterance");
    } else {
        if (ps_process_raw(self->ps, pcm, n, FALSE, TRUE) < 0)
            rc = nr_seterr(err, errlen, NR_EINTERNAL, "pocketsphinx could not decode the audio");
        ps_end_utt(self->ps);
        if (!rc) hyp = ps_get_hyp(self->ps, &score);
    }
    free(pcm);
    if (rc) return rc;
    *text = strdup(hyp ? hyp : "");
    return *text ? 0 : nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
}

#else

int nr_listen_available(void) { return 0; }

nr_listen_t *nr_listen_new(const char *model_dir, char *err, size_t errlen) {
    (void)model_dir;
    nr_seterr(err, errlen, NR_EUNSUPPORTED,
              "this narrate was built without pocketsphinx (install libpocketsphinx-dev and "
              "pocketsphinx-en-us, then rebuild), or use --listener none");
    return NULL;
}

void nr_listen_destroy(nr_listen_t **self) { (void)self; }

int nr_listen_audio(nr_listen_t *self, const nr_audio_t *audio, char **text, char *err, size_t errlen) {
    (void)self, (void)audio;
    *text = NULL;
    return nr_seterr(err, errlen, NR_EUNSUPPORTED, "no listener in this build");
}

#endif
