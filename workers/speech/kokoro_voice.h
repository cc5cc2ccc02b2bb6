/* The Kokoro engine of the speech worker: UTF-8 text -> phonemes
 * (models/speech/g2p, espeak-ng) -> chunks under the model's 510 phonemes,
 * split at sentence ends -> Kokoro audio for each chunk, joined -> 16-bit
 * PCM mono WAV at 24 kHz.
 *
 * Voices are the packs in the model folder's voices/ whose language the
 * G2P speaks (first letter a, b, e, f, h, i or p); Japanese (j) and
 * Mandarin (z) packs are left out with a warning. Needs espeak-ng: built
 * without it (NR_ESPEAK=OFF), nr_speech_kokoro_new() fails with
 * NR_EUNSUPPORTED and says so. Thread-safe (the model is read-only, the
 * G2P serializes espeak-ng). */
#ifndef NR_SPEECH_KOKORO_VOICE_H
#define NR_SPEECH_KOKORO_VOICE_H

#include <stddef.h>
#include <stdint.h>

#include "workers/speech/speech.h"

typedef struct nr_speech_kokoro nr_speech_kokoro_t;

typedef struct {
    const char *model_dir;     /* config.json, *.pth, voices/<name>.pt */
    const char *default_voice; /* "" = af_heart when present, else the first voice */
    size_t max_text_bytes;     /* as nr_speech_params_t */
    int num_threads;           /* engine threads; <= 0 = all cores */
} nr_speech_kokoro_params_t;

/* Loads the model and checks the default voice. Returns NULL with a
 * message in err (NR_EUNSUPPORTED without espeak-ng, NR_EMODEL ...). */
nr_speech_kokoro_t *nr_speech_kokoro_new(const nr_speech_kokoro_params_t *params, char *err, size_t errlen);
void nr_speech_kokoro_destroy(nr_speech_kokoro_t **self_p);

size_t nr_speech_kokoro_voice_count(const nr_speech_kokoro_t *self);
const char *nr_speech_kokoro_voice_name(const nr_speech_kokoro_t *self, size_t i);
const char *nr_speech_kokoro_default_voice(const nr_speech_kokoro_t *self);

/* As nr_speech_synthesize (same codes; NR_EVOICE lists the voices). */
int nr_speech_kokoro_synthesize(nr_speech_kokoro_t *self, const uint8_t *text, size_t len, const char *voice,
                                float speed, uint8_t **wav, size_t *wav_size, nr_speech_info_t *info, char *err,
                                size_t errlen);

#endif
