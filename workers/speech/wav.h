/* WAV (RIFF/WAVE) encoding of 16-bit PCM mono audio, and a strict reader
 * of the same layout for tests and clients. */
#ifndef NR_SPEECH_WAV_H
#define NR_SPEECH_WAV_H

#include <stddef.h>
#include <stdint.h>

#define NR_WAV_HEADER_SIZE 44

typedef struct {
    uint32_t sample_rate;
    uint16_t channels;
    uint16_t bits_per_sample;
    size_t num_samples;      /* per channel */
    const uint8_t *data;     /* little-endian PCM inside the buffer given to nr_wav_parse */
    size_t data_size;        /* bytes */
} nr_wav_info_t;

/* Encodes n samples as a 44-byte header + little-endian PCM into a malloc'd
 * buffer the caller frees. Returns 0, NR_EINVAL (bad rate), NR_ETOOBIG (the
 * RIFF size would not fit 32 bits) or NR_ENOMEM. */
int nr_wav_encode(const int16_t *samples, size_t n, uint32_t sample_rate, uint8_t **out,
                  size_t *out_size);

/* Reads a canonical PCM WAV (RIFF, "fmt " chunk with format 1, "data"
 * chunk; other chunks between are skipped). Returns 0 or NR_EINVAL when the
 * buffer is not such a file or its sizes disagree. */
int nr_wav_parse(const uint8_t *buf, size_t size, nr_wav_info_t *info);

#endif
