/* Internal to the Kokoro engine and its tests: synthesis with a chosen
 * seed for the sine source's generator and the intermediates a test
 * compares with tests/fixtures/reference_kokoro.py. */
#ifndef NR_MODELS_SPEECH_KOKORO_INTERNAL_H
#define NR_MODELS_SPEECH_KOKORO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "models/speech/kokoro.h"
#include "models/speech/kokoro_net.h"

/* nr_kokoro_synthesize with the generator's seed; trace (may be NULL)
 * receives the intermediates on success (the caller frees each array). */
int nr_kokoro_synthesize_ex(const nr_kokoro_t *k, const char *phonemes, size_t len, const char *voice, float speed,
                            uint64_t seed, float **pcm, size_t *n_samples, nr_ko_trace_t *trace, char *err,
                            size_t errlen);

/* The network, and a voice's style row for n phonemes (2*style floats;
 * NULL for an unknown voice or n out of range), for tests that run one
 * stage on the reference's inputs. */
const nr_ko_net_t *nr_kokoro_net(const nr_kokoro_t *k);
const float *nr_kokoro_style(const nr_kokoro_t *k, const char *voice, int n);

#endif
