/* WAV encoder: canonical 44-byte RIFF/WAVE header, PCM format 1, 16-bit
 * mono, every field written little-endian whatever the host order. */
#include "workers/speech/wav.h"

#include "common/error.h"

#include <stdlib.h>
#include <string.h>

static void s_put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static void s_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t s_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t s_get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

int nr_wav_encode(const int16_t *samples, size_t n, uint32_t sample_rate, uint8_t **out,
                  size_t *out_size) {
    if (!out || !out_size || (n && !samples) || sample_rate == 0 || sample_rate > 1000000)
        return NR_EINVAL;
    if (n > (UINT32_MAX - 36) / 2) return NR_ETOOBIG;
    uint32_t data_size = (uint32_t)(n * 2);
    uint8_t *buf = malloc(NR_WAV_HEADER_SIZE + (size_t)data_size);
    if (!buf) return NR_ENOMEM;
    memcpy(buf, "RIFF", 4);
    s_put32(buf + 4, 36 + data_size); /* file size minus 8 */
    memcpy(buf + 8, "WAVE", 4);
    memcpy(buf + 12, "fmt ", 4);
    s_put32(buf + 16, 16);              /* fmt chunk size */
    s_put16(buf + 20, 1);               /* PCM */
    s_put16(buf + 22, 1);               /* mono */
    s_put32(buf + 24, sample_rate);
    s_put32(buf + 28, sample_rate * 2); /* byte rate */
    s_put16(buf + 32, 2);               /* block align */
    s_put16(buf + 34, 16);              /* bits per sample */
    memcpy(buf + 36, "data", 4);
    s_put32(buf + 40, data_size);
    uint8_t *p = buf + NR_WAV_HEADER_SIZE;
    for (size_t i = 0; i < n; i++, p += 2) s_put16(p, (uint16_t)samples[i]);
    *out = buf;
    *out_size = NR_WAV_HEADER_SIZE + (size_t)data_size;
    return 0;
}

int nr_wav_parse(const uint8_t *buf, size_t size, nr_wav_info_t *info) {
    if (!buf || !info || size < 12 || memcmp(buf, "RIFF", 4) || memcmp(buf + 8, "WAVE", 4))
        return NR_EINVAL;
    if ((size_t)s_get32(buf + 4) + 8 != size) return NR_EINVAL;
    memset(info, 0, sizeof *info);
    int have_fmt = 0;
    size_t off = 12;
    while (off + 8 <= size) {
        uint32_t len = s_get32(buf + off + 4);
        const uint8_t *body = buf + off + 8;
        if (len > size - off - 8) return NR_EINVAL;
        if (!memcmp(buf + off, "fmt ", 4)) {
            if (len < 16 || s_get16(body) != 1) return NR_EINVAL;
            info->channels = s_get16(body + 2);
            info->sample_rate = s_get32(body + 4);
            info->bits_per_sample = s_get16(body + 14);
            uint16_t align = s_get16(body + 12);
            if (!info->channels || !info->sample_rate || info->bits_per_sample != 16 ||
                align != info->channels * 2 || s_get32(body + 8) != info->sample_rate * align)
                return NR_EINVAL;
            have_fmt = 1;
        } else if (!memcmp(buf + off, "data", 4)) {
            if (!have_fmt || len % (2u * info->channels)) return NR_EINVAL;
            info->data = body;
            info->data_size = len;
            info->num_samples = len / (2u * info->channels);
            return 0;
        }
        off += 8 + (size_t)len + (len & 1);
    }
    return NR_EINVAL;
}
