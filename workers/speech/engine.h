/* The speech worker's engines behind one interface: Flite (built in, the
 * default: five English voices, 8 or 16 kHz) or Kokoro (a model folder,
 * 24 kHz, the voice packs it holds). The job handler reads the job options
 * "voice" and "speed", synthesizes with the engine, and returns the WAV
 * with results engine, voice, sample_rate, duration_ms and speed. */
#ifndef NR_SPEECH_ENGINE_H
#define NR_SPEECH_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"
#include "workers/speech/speech.h"

typedef struct nr_speech_engine nr_speech_engine_t;

typedef struct {
    char engine[16];           /* "flite" (default) or "kokoro" */
    const char *model_dir;     /* kokoro: the model folder */
    const char *default_voice; /* "" = the engine's default (slt, af_heart) */
    size_t max_text_bytes;     /* longest text (default 4000) */
    int num_threads;           /* kokoro engine threads; <= 0 = all cores */
} nr_speech_engine_params_t;

nr_speech_engine_params_t nr_speech_engine_default_params(void);

/* Starts the engine. Returns NULL with a message in err (unknown engine,
 * missing model, Kokoro without espeak-ng, unknown default voice). */
nr_speech_engine_t *nr_speech_engine_new(const nr_speech_engine_params_t *params, char *err, size_t errlen);
void nr_speech_engine_destroy(nr_speech_engine_t **self_p);

const char *nr_speech_engine_name(const nr_speech_engine_t *self);
size_t nr_speech_engine_voice_count(const nr_speech_engine_t *self);
const char *nr_speech_engine_voice_name(const nr_speech_engine_t *self, size_t i);

int nr_speech_engine_synthesize(nr_speech_engine_t *self, const uint8_t *text, size_t len, const char *voice,
                                float speed, uint8_t **wav, size_t *wav_size, nr_speech_info_t *info, char *err,
                                size_t errlen);

/* The worker handler (nr_worker_run_fn): ctx is an nr_speech_engine_t,
 * input frame 0 is the text, job options "voice" and "speed"; output frame
 * 0 is the WAV. Thread-safe. */
int nr_speech_engine_run_job(void *ctx, const nr_msg_t *job, nr_msg_t *result, char *err, size_t errlen);

#endif
