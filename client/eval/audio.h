/* Audio for the listener: a bounded reader of WAV files (8/16-bit PCM or
 * 32-bit float, mono or stereo, mixed down to mono) and a windowed-sinc resampler to the
 * 16 kHz the recogniser's acoustic model was trained on. */
#ifndef NR_CLIENT_EVAL_AUDIO_H
#define NR_CLIENT_EVAL_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#define NR_AUDIO_MAX_BYTES (64u << 20) /* largest WAV file read */
#define NR_AUDIO_MAX_SECONDS 600       /* longest audio listened to */
#define NR_AUDIO_MIN_RATE 4000
#define NR_AUDIO_MAX_RATE 192000

/* Mono samples in [-1, 1]. Zero-initialise; free with nr_audio_clear. */
typedef struct {
    float *x;
    size_t n;
    uint32_t rate;
} nr_audio_t;

void nr_audio_clear(nr_audio_t *self);

/* Parses a RIFF/WAVE buffer: format 1 (PCM) with 8 or 16 bits or format 3
 * (IEEE float, clamped to [-1, 1], NaN as 0) with 32 bits, also inside
 * WAVE_FORMAT_EXTENSIBLE; 1 or 2 channels, rate NR_AUDIO_MIN_RATE..NR_AUDIO_MAX_RATE, at most
 * NR_AUDIO_MAX_SECONDS; chunks other than "fmt " and "data" are skipped.
 * 0, NR_EINVAL with a message in err (not such a file, sizes that
 * disagree, unsupported format), NR_ETOOBIG (too long) or NR_ENOMEM. */
int nr_audio_parse_wav(const uint8_t *buf, size_t size, nr_audio_t *out, char *err, size_t errlen);
/* Reads and parses a WAV file (at most NR_AUDIO_MAX_BYTES; a regular file). */
int nr_audio_read_wav(const char *path, nr_audio_t *out, char *err, size_t errlen);

/* Resamples in to `rate` into *out: band-limited interpolation with a
 * Kaiser-windowed sinc (cutoff 0.95 of the lower Nyquist frequency, 32
 * zero crossings, beta 8), so content above the new Nyquist frequency is
 * removed rather than folded back. The same rate copies. 0, NR_EINVAL or
 * NR_ENOMEM. */
int nr_audio_resample(const nr_audio_t *in, uint32_t rate, nr_audio_t *out);

#endif
