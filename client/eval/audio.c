/* PCM WAV reading and windowed-sinc resampling for the listener. */
#include "client/eval/audio.h"
#include "client/eval/file.h"
#include "common/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_ZEROS 32    /* zero crossings of the sinc on each side */
#define S_BETA 8.0    /* Kaiser window shape: about 80 dB stop band */
#define S_CUTOFF 0.95 /* of the lower Nyquist frequency */

void nr_audio_clear(nr_audio_t *self) {
    free(self->x);
    memset(self, 0, sizeof *self);
}

static uint32_t s_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t s_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

int nr_audio_parse_wav(const uint8_t *buf, size_t size, nr_audio_t *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (size < 12 || memcmp(buf, "RIFF", 4) || memcmp(buf + 8, "WAVE", 4))
        return nr_seterr(err, errlen, NR_EINVAL, "not a WAV file (no RIFF/WAVE header)");
    const uint8_t *fmt = NULL, *data = NULL;
    size_t data_size = 0;
    uint32_t fmt_len = 0;
    for (size_t off = 12; off + 8 <= size;) {
        uint32_t len = s_u32(buf + off + 4);
        if (len > size - off - 8) {
            if (!memcmp(buf + off, "data", 4)) len = (uint32_t)(size - off - 8); /* streamed: size unknown */
            else return nr_seterr(err, errlen, NR_EINVAL, "WAV chunk runs past the end of the file");
        }
        if (!memcmp(buf + off, "fmt ", 4) && len >= 16) fmt = buf + off + 8, fmt_len = len;
        if (!memcmp(buf + off, "data", 4)) {
            data = buf + off + 8;
            data_size = len;
            break;
        }
        off += 8 + (size_t)len + (len & 1);
    }
    if (!fmt || !data) return nr_seterr(err, errlen, NR_EINVAL, "WAV file without a fmt or data chunk");
    uint16_t format = s_u16(fmt), channels = s_u16(fmt + 2), bits = s_u16(fmt + 14);
    uint32_t rate = s_u32(fmt + 4);
    if (format == 0xFFFE && fmt_len >= 40) format = s_u16(fmt + 24); /* WAVE_FORMAT_EXTENSIBLE: its sub-format */
    int pcm = format == 1 && (bits == 8 || bits == 16), flt = format == 3 && bits == 32;
    if ((!pcm && !flt) || channels < 1 || channels > 2)
        return nr_seterr(err, errlen, NR_EINVAL,
                         "unsupported WAV format (%u, %u bits, %u channels): 8 or 16-bit PCM or 32-bit float, "
                         "mono or stereo", format, bits, channels);
    if (rate < NR_AUDIO_MIN_RATE || rate > NR_AUDIO_MAX_RATE)
        return nr_seterr(err, errlen, NR_EINVAL, "unsupported WAV sample rate %u Hz (%d..%d)", rate,
                         NR_AUDIO_MIN_RATE, NR_AUDIO_MAX_RATE);
    size_t frame = (size_t)channels * bits / 8, n = data_size / frame;
    if (n > (size_t)rate * NR_AUDIO_MAX_SECONDS)
        return nr_seterr(err, errlen, NR_ETOOBIG, "WAV audio longer than %d s", NR_AUDIO_MAX_SECONDS);
    out->x = malloc((n ? n : 1) * sizeof *out->x);
    if (!out->x) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        float sum = 0;
        for (uint16_t c = 0; c < channels; c++) {
            const uint8_t *p = data + i * frame + (size_t)c * bits / 8;
            if (bits == 8) {
                sum += ((float)p[0] - 128.0f) / 128.0f;
            } else if (bits == 16) {
                sum += (float)(int16_t)s_u16(p) / 32768.0f;
            } else {
                uint32_t u = s_u32(p);
                float v;
                memcpy(&v, &u, sizeof v);
                sum += v >= -1.0f && v <= 1.0f ? v : v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : 0.0f; /* NaN: 0 */
            }
        }
        out->x[i] = sum / channels;
    }
    out->n = n;
    out->rate = rate;
    return 0;
}

int nr_audio_read_wav(const char *path, nr_audio_t *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t size;
    int rc;
    char *buf = nr_ev_read_file(path, NR_AUDIO_MAX_BYTES, 0, "", &size, &rc, err, errlen);
    if (!buf) return rc;
    rc = nr_audio_parse_wav((const uint8_t *)buf, size, out, err, errlen);
    if (rc) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", err);
        nr_seterr(err, errlen, rc, "%s: %s", path, detail);
    }
    free(buf);
    return rc;
}

/* Modified Bessel function of the first kind, order 0 (its power series). */
static double s_i0(double x) {
    double sum = 1, term = 1, q = x * x / 4;
    for (int k = 1; k < 64 && term > 1e-12 * sum; k++) {
        term *= q / ((double)k * k);
        sum += term;
    }
    return sum;
}

/* The filter tap for an input sample t input samples away. */
static double s_tap(double t, double fc, double half, double i0b) {
    if (fabs(t) > half) return 0;
    double r = t / half, a = M_PI * fc * t;
    double w = s_i0(S_BETA * sqrt(fmax(0.0, 1 - r * r))) / i0b;
    return fc * (fabs(a) < 1e-9 ? 1.0 : sin(a) / a) * w;
}

static uint64_t s_gcd(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int nr_audio_resample(const nr_audio_t *in, uint32_t rate, nr_audio_t *out) {
    memset(out, 0, sizeof *out);
    if (!in || in->rate < NR_AUDIO_MIN_RATE || in->rate > NR_AUDIO_MAX_RATE || rate < NR_AUDIO_MIN_RATE ||
        rate > NR_AUDIO_MAX_RATE)
        return NR_EINVAL;
    /* Output sample m sits at input position m * up / down (exact, integers). */
    uint64_t g = s_gcd(in->rate, rate), up = in->rate / g, down = rate / g;
    size_t n = (size_t)((uint64_t)in->n * down / up);
    out->x = malloc((n ? n : 1) * sizeof *out->x);
    if (!out->x) return NR_ENOMEM;
    out->n = n;
    out->rate = rate;
    if (in->rate == rate) {
        memcpy(out->x, in->x, n * sizeof *out->x);
        return 0;
    }
    /* h(t) = fc sinc(fc t) w(t), t in input samples, fc the cutoff as a
     * fraction of the input Nyquist rate, Kaiser window over |t| <= half.
     * The taps depend only on the phase (m * up) % down: one table row per
     * phase (polyphase), computed once. */
    double fc = S_CUTOFF * (rate < in->rate ? (double)rate / in->rate : 1.0);
    double half = S_ZEROS / fc, i0b = s_i0(S_BETA);
    long J = (long)ceil(half) + 1, width = 2 * J + 1;
    if ((uint64_t)width * down > (1u << 24)) { /* rates too awkward for a table (e.g. 192000 to 4001) */
        nr_audio_clear(out);
        return NR_EINVAL;
    }
    float *table = malloc((size_t)down * (size_t)width * sizeof *table);
    if (!table) {
        nr_audio_clear(out);
        return NR_ENOMEM;
    }
    for (uint64_t p = 0; p < down; p++)
        for (long j = -J; j <= J; j++)
            table[p * (uint64_t)width + (uint64_t)(j + J)] = (float)s_tap((double)p / down - j, fc, half, i0b);
    for (size_t m = 0; m < n; m++) {
        uint64_t pos = (uint64_t)m * up;
        long base = (long)(pos / down);
        const float *row = table + (pos % down) * (uint64_t)width;
        double acc = 0;
        for (long j = -J; j <= J; j++) {
            long k = base + j;
            if (k >= 0 && k < (long)in->n) acc += in->x[k] * row[j + J];
        }
        out->x[m] = (float)acc;
    }
    free(table);
    return 0;
}
