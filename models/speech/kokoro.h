/* Kokoro-82M (hexgrad/Kokoro-82M, Apache-2.0): text-to-speech from
 * phonemes, computed as hexgrad/kokoro's KModel does (ALBERT text encoder
 * and projection, prosody predictor, CNN + BiLSTM text encoder, iSTFTNet
 * decoder) on the CPU with OpenBLAS. Phonemes come from a G2P outside this
 * module (models/speech/ G2P over espeak-ng). The model is read-only after
 * load, so one nr_kokoro_t serves several threads. */
#ifndef NR_MODELS_SPEECH_KOKORO_H
#define NR_MODELS_SPEECH_KOKORO_H

#include <stddef.h>
#include <stdint.h>

typedef struct nr_kokoro nr_kokoro_t;

typedef struct {
    const char *device; /* "cpu" (the only device for now) */
    int num_threads;    /* OpenBLAS threads, set process-wide at load; <= 0: leave OpenBLAS's setting (all cores) */
} nr_kokoro_params_t;

nr_kokoro_params_t nr_kokoro_default_params(void);

/* dir holds config.json (with "vocab", "n_token", the istftnet settings
 * ...), the weights (kokoro-v1_0.pth, or any single *.pth) and
 * voices/<name>.pt (each one tensor [510, 1, 256]). Returns 0 and *out, or
 * NR_EMODEL (file/tensor named in err), NR_ENOMEM, NR_EINVAL. */
int nr_kokoro_load(const char *dir, const nr_kokoro_params_t *params, nr_kokoro_t **out, char *err, size_t errlen);
/* Frees; sets *self to NULL; safe twice. */
void nr_kokoro_destroy(nr_kokoro_t **self);

int nr_kokoro_sample_rate(const nr_kokoro_t *k);  /* 24000 */
int nr_kokoro_max_phonemes(const nr_kokoro_t *k); /* 510: context_length - 2 */
/* Voices found in dir/voices, sorted by name. */
size_t nr_kokoro_voice_count(const nr_kokoro_t *k);
const char *nr_kokoro_voice_name(const nr_kokoro_t *k, size_t i); /* "af_heart"; NULL when out of range */

/* 1 when every UTF-8 code point of phonemes is in config.json's vocab
 * (and the bytes are valid UTF-8), else 0. */
int nr_kokoro_phonemes_valid(const nr_kokoro_t *k, const char *phonemes, size_t len);

/* Synthesizes phonemes (Kokoro's symbol vocabulary, UTF-8, at most
 * max_phonemes symbols) with a voice pack and speed (0.5..2.0) into *pcm
 * (new float array, free(), samples in [-1, 1] as KModel returns) at
 * sample_rate. Returns 0, NR_EVOICE (unknown voice: err lists the voices),
 * NR_ETEXT (empty/too long/symbol not in vocab), NR_EOPTION (speed),
 * NR_ENOMEM. Thread-safe (read-only model). The harmonic source's random
 * draws come from a generator seeded per call, so one input always gives
 * the same audio. */
int nr_kokoro_synthesize(const nr_kokoro_t *k, const char *phonemes, size_t len, const char *voice, float speed,
                         float **pcm, size_t *n_samples, char *err, size_t errlen);

#endif
