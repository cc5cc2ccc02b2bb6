/* Kokoro-82M: placeholder until the engine lands (see kokoro.h). */
#include "models/speech/kokoro.h"

#include <stdio.h>

#include "common/error.h"

nr_kokoro_params_t nr_kokoro_default_params(void)
{
    nr_kokoro_params_t p = {"cpu", 0};
    return p;
}

int nr_kokoro_load(const char *dir, const nr_kokoro_params_t *params, nr_kokoro_t **out, char *err, size_t errlen)
{
    (void)params;
    if (out) *out = NULL;
    if (err && errlen) snprintf(err, errlen, "%s: the Kokoro engine is not built yet", dir ? dir : "(null)");
    return NR_EUNSUPPORTED;
}

void nr_kokoro_destroy(nr_kokoro_t **self)
{
    if (self) *self = NULL;
}

int nr_kokoro_sample_rate(const nr_kokoro_t *k) { (void)k; return 24000; }
int nr_kokoro_max_phonemes(const nr_kokoro_t *k) { (void)k; return 510; }
size_t nr_kokoro_voice_count(const nr_kokoro_t *k) { (void)k; return 0; }
const char *nr_kokoro_voice_name(const nr_kokoro_t *k, size_t i) { (void)k; (void)i; return NULL; }
int nr_kokoro_phonemes_valid(const nr_kokoro_t *k, const char *phonemes, size_t len)
{
    (void)k; (void)phonemes; (void)len;
    return 0;
}

int nr_kokoro_synthesize(const nr_kokoro_t *k, const char *phonemes, size_t len, const char *voice, float speed,
                         float **pcm, size_t *n_samples, char *err, size_t errlen)
{
    (void)k; (void)phonemes; (void)len; (void)voice; (void)speed;
    if (pcm) *pcm = NULL;
    if (n_samples) *n_samples = 0;
    if (err && errlen) snprintf(err, errlen, "the Kokoro engine is not built yet");
    return NR_EUNSUPPORTED;
}
