/* Kokoro's iSTFTNet generator (hexgrad/kokoro istftnet.py Generator): the
 * harmonic source from F0 (SineGen: 9 harmonics, phase built at frame rate
 * and interpolated back, noise), its STFT, two upsampling stages with
 * AdaIN residual blocks, and the inverse STFT. The float operations of the
 * phase follow torch's order (cumsum in double, linear interpolation with
 * torch's source index), because sin() of a large phase amplifies any
 * rounding difference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/nn/conv1d.h"
#include "models/speech/kokoro_net.h"

#define S_HARM 9         /* harmonic_num 8, plus the fundamental */
#define S_RATE 24000.f   /* SineGen's sampling rate */
#define S_VOICED 10.f    /* voiced_threshold */
#define S_SINE_AMP 0.1f
#define S_NOISE_STD 0.003f

static uint64_t s_next(nr_ko_rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

float nr_ko_rng_uniform(nr_ko_rng_t *r) { return (float)((double)(s_next(r) >> 40) * (1.0 / 16777216.0)); }

float nr_ko_rng_normal(nr_ko_rng_t *r) {
    double u1 = (double)((s_next(r) >> 40) + 1) * (1.0 / 16777216.0);
    double u2 = (double)(s_next(r) >> 40) * (1.0 / 16777216.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* torch's linear interpolation (align_corners False) from n_in to n_out
 * points with the given scale factor, as torch 1.13's upsample_linear1d
 * computes it on the CPU: a float ratio, the source index in double, the
 * weight rounded to float, and fma(x0, w0, x1 * w1). */
static void s_interp_linear(const float *x, int n_in, float *y, int n_out, double scale_factor) {
    float ratio = (float)(1.0 / scale_factor);
    for (int o = 0; o < n_out; o++) {
        double src = (double)ratio * (o + 0.5) - 0.5;
        if (src < 0.0) src = 0.0;
        int i0 = (int)src;
        if (i0 > n_in - 1) i0 = n_in - 1;
        int i1 = i0 + (i0 < n_in - 1 ? 1 : 0);
        double f = src - i0;
        float l1 = (float)(f < 0.0 ? 0.0 : f > 1.0 ? 1.0 : f), l0 = 1.f - l1;
        float t1 = x[i1] * l1;
        y[o] = fmaf(x[i0], l0, t1);
    }
}

/* SourceModuleHnNSF: f0 (T2 frames) -> the merged harmonic source (L). */
static int s_source(const nr_ko_net_t *m, const float *f0, int T2, int scale, uint64_t seed, float *har, size_t L) {
    int nd = (int)((double)L * (1.0 / scale)); /* torch's output size for scale_factor 1/scale */
    float *rad = malloc(L * S_HARM * sizeof(float)), *col = malloc(L * sizeof(float)),
          *low = malloc((size_t)nd * sizeof(float)), *ph = malloc(L * S_HARM * sizeof(float));
    int rc = NR_ENOMEM;
    if (!rad || !col || !low || !ph) goto out;
    nr_ko_rng_t rng = {seed};
    float ini[S_HARM];
    for (int h = 0; h < S_HARM; h++) ini[h] = nr_ko_rng_uniform(&rng);
    ini[0] = 0.f;
    for (size_t j = 0; j < L; j++) {
        float f = f0[j / (size_t)scale]; /* nearest upsampling */
        for (int h = 0; h < S_HARM; h++) {
            float r = fmodf(f * (float)(h + 1) / S_RATE, 1.f);
            if (r < 0.f) r += 1.f;
            rad[j * S_HARM + h] = r;
        }
    }
    for (int h = 0; h < S_HARM; h++) rad[h] += ini[h];
    for (int h = 0; h < S_HARM; h++) {
        for (size_t j = 0; j < L; j++) col[j] = rad[j * S_HARM + h];
        s_interp_linear(col, (int)L, low, nd, 1.0 / scale);
        double acc = 0.0;
        for (int i = 0; i < nd; i++) {
            acc += low[i];
            low[i] = (float)acc * 2.f * (float)M_PI * (float)scale;
        }
        s_interp_linear(low, nd, col, (int)L, (double)scale);
        for (size_t j = 0; j < L; j++) ph[j * S_HARM + h] = sinf(col[j]) * S_SINE_AMP;
    }
    const float *w = m->src_linear.w;
    float b = m->src_linear.b ? m->src_linear.b[0] : 0.f;
    for (size_t j = 0; j < L; j++) {
        float f = f0[j / (size_t)scale], uv = f > S_VOICED ? 1.f : 0.f;
        float amp = uv * S_NOISE_STD + (1.f - uv) * S_SINE_AMP / 3.f, acc = 0.f;
        for (int h = 0; h < S_HARM; h++) {
            float v = ph[j * S_HARM + h] * uv + amp * nr_ko_rng_normal(&rng);
            acc += w[h] * v;
        }
        har[j] = tanhf(acc + b);
    }
    rc = 0;
out:
    free(rad);
    free(col);
    free(low);
    free(ph);
    return rc;
}

/* torch.hann_window(n, periodic=True) in float. */
static void s_hann(float *w, int n) {
    float step = (float)(M_PI * 2.0 / n);
    for (int i = 0; i < n; i++) w[i] = 0.5f + -0.5f * cosf((float)i * step);
}

/* cos and sin of 2 pi k n / nfft, k <= nfft/2, n < nfft (nfft <= 62). */
typedef struct {
    double c[32][64], s[32][64];
} s_twiddle_t;

static void s_twiddles(s_twiddle_t *tw, int nfft) {
    for (int k = 0; k <= nfft / 2; k++)
        for (int n = 0; n < nfft; n++) {
            double a = 2.0 * M_PI * (double)k * n / nfft;
            tw->c[k][n] = cos(a);
            tw->s[k][n] = sin(a);
        }
}

/* torch.stft(center, reflect padding, onesided) -> out[(nfft+2)][frames]:
 * magnitudes then angles. */
static void s_stft(const float *x, size_t L, int nfft, int hop, const float *win, const s_twiddle_t *tw, float *out,
                   int frames) {
    int half = nfft / 2, bins = half + 1;
    double seg[64];
    for (int f = 0; f < frames; f++) {
        for (int n = 0; n < nfft; n++) {
            long p = (long)f * hop + n - half; /* reflect */
            if (p < 0) p = -p;
            if (p >= (long)L) p = 2 * ((long)L - 1) - p;
            seg[n] = (double)x[p] * win[n];
        }
        for (int k = 0; k < bins; k++) {
            double re = 0, im = 0;
            for (int n = 0; n < nfft; n++) {
                re += seg[n] * tw->c[k][n];
                im -= seg[n] * tw->s[k][n];
            }
            if (k == 0 || k == half) im = 0.0; /* exactly real, as an FFT gives */
            float fr = (float)re, fi = (float)im;
            out[(size_t)k * frames + f] = hypotf(fr, fi);
            out[(size_t)(bins + k) * frames + f] = atan2f(fi, fr);
        }
    }
}

/* torch.istft(center) of mag * exp(i * phase), mag/phase [(nfft/2+1)][frames]. */
static int s_istft(const float *mag, const float *phase, int frames, int nfft, int hop, const float *win,
                   const s_twiddle_t *tw, float *y) {
    int half = nfft / 2, bins = half + 1;
    size_t total = (size_t)nfft + (size_t)hop * (frames - 1);
    double *buf = calloc(total * 2, sizeof(double));
    if (!buf) return NR_ENOMEM;
    double *env = buf + total, re[32], im[32];
    for (int f = 0; f < frames; f++) {
        for (int k = 0; k < bins; k++) {
            float mg = mag[(size_t)k * frames + f], p = phase[(size_t)k * frames + f];
            re[k] = (double)(mg * cosf(p));
            im[k] = (double)(mg * sinf(p));
        }
        for (int n = 0; n < nfft; n++) {
            double acc = re[0] + re[half] * tw->c[half][n]; /* c2r ignores their imaginary parts */
            for (int k = 1; k < half; k++) acc += 2.0 * (re[k] * tw->c[k][n] - im[k] * tw->s[k][n]);
            float fr = (float)(acc / nfft);
            buf[(size_t)f * hop + n] += (double)(fr * win[n]);
            env[(size_t)f * hop + n] += (double)(win[n] * win[n]);
        }
    }
    size_t out = (size_t)hop * (frames - 1);
    for (size_t i = 0; i < out; i++) {
        double e = env[i + half];
        y[i] = (float)(e > 1e-11 ? buf[i + half] / e : 0.0);
    }
    free(buf);
    return 0;
}

int nr_ko_generator_sizes_ok(const nr_ko_net_t *m) {
    int scale = m->hop;
    for (int i = 0; i < m->n_ups; i++) {
        if (m->ups_k[i] < m->ups_rate[i] || (m->ups_k[i] - m->ups_rate[i]) % 2) return 0;
        scale *= m->ups_rate[i];
    }
    /* The STFT's reflect padding needs more samples than n_fft / 2 (two
     * frames give 2 * scale), and the iSTFT's frames must overlap. */
    if (2 * scale <= m->n_fft / 2 || m->hop > m->n_fft) return 0;
    for (int T2 = 2; T2 <= 5; T2++) {
        int hframes = T2 * scale / m->hop + 1, T = T2;
        for (int i = 0; i < m->n_ups; i++) {
            int last = i == m->n_ups - 1, sf = 1, Tn = T * m->ups_rate[i] + last;
            for (int j = i + 1; j < m->n_ups; j++) sf *= m->ups_rate[j];
            if ((last ? hframes : nr_conv1d_out_len(hframes, 2 * sf, sf, (sf + 1) / 2, 1)) != Tn) return 0;
            T = Tn;
        }
    }
    return 1;
}

int nr_ko_generator(const nr_ko_net_t *m, const float *x_in, int T2, const float *s, const float *f0, uint64_t seed,
                    float **pcm, size_t *n_samples, float **har_out, float **spec_out) {
    int scale = m->hop, nfft = m->n_fft, rc = NR_ENOMEM;
    for (int i = 0; i < m->n_ups; i++) scale *= m->ups_rate[i];
    size_t L = (size_t)T2 * scale;
    int hframes = (int)(L / m->hop) + 1;
    /* Length after every upsampling stage; the last one adds the reflected sample. */
    int Tf = T2;
    for (int i = 0; i < m->n_ups; i++) Tf *= m->ups_rate[i];
    Tf += 1;
    size_t cap = (size_t)m->up_init * T2;
    {
        int t = T2;
        for (int i = 0; i < m->n_ups; i++) {
            t *= m->ups_rate[i];
            size_t c = (size_t)(m->up_init >> (i + 1)) * (t + 1);
            if (c > cap) cap = c;
        }
        if ((size_t)(nfft + 2) * Tf > cap) cap = (size_t)(nfft + 2) * Tf;
    }
    float win[64];
    s_twiddle_t *tw = malloc(sizeof *tw);
    float *har_src = malloc(L * sizeof(float)), *har = malloc((size_t)(nfft + 2) * hframes * sizeof(float));
    float *x = malloc(cap * sizeof(float)), *xs = malloc(cap * sizeof(float)), *ns = malloc(cap * sizeof(float)),
          *acc = malloc(cap * sizeof(float)), *out = NULL;
    if (!tw || !har_src || !har || !x || !xs || !ns || !acc) goto done;
    s_twiddles(tw, nfft);
    if ((rc = s_source(m, f0, T2, scale, seed, har_src, L))) goto done;
    s_hann(win, nfft);
    s_stft(har_src, L, nfft, m->hop, win, tw, har, hframes);
    int T = T2, C = m->up_init;
    memcpy(x, x_in, (size_t)C * T * sizeof(float));
    for (int i = 0; i < m->n_ups; i++) {
        int Co = C / 2, u = m->ups_rate[i], k = m->ups_k[i], last = i == m->n_ups - 1;
        for (size_t j = 0; j < (size_t)C * T; j++) x[j] = x[j] > 0.f ? x[j] : x[j] * 0.1f;
        int To = (T - 1) * u - 2 * ((k - u) / 2) + k;
        /* noise branch: har -> (Co, To (+1 on the last stage)) */
        const nr_ko_conv_t *nc = &m->noise_convs[i];
        int Tn = To + (last ? 1 : 0);
        if (!last) {
            int sf = 1;
            for (int j = i + 1; j < m->n_ups; j++) sf *= m->ups_rate[j];
            if (nr_conv1d_out_len(hframes, nc->k, sf, (sf + 1) / 2, 1) != Tn) {
                rc = NR_EINTERNAL;
                goto done;
            }
            if ((rc = nr_ko_conv(nc, har, hframes, sf, (sf + 1) / 2, 1, ns))) goto done;
        } else {
            if (hframes != Tn) {
                rc = NR_EINTERNAL;
                goto done;
            }
            if ((rc = nr_ko_conv(nc, har, hframes, 1, 0, 1, ns))) goto done;
        }
        if ((rc = nr_ko_resblock1(&m->noise_res[i], s, ns, Tn, xs))) goto done;
        if ((rc = nr_conv_transpose1d(x, C, T, m->ups[i].w, m->ups[i].b, Co, k, u, (k - u) / 2, 0, acc))) goto done;
        if (last) { /* ReflectionPad1d((1, 0)) */
            for (int c = 0; c < Co; c++) {
                float *dst = ns + (size_t)c * Tn;
                const float *src = acc + (size_t)c * To;
                dst[0] = src[1];
                memcpy(dst + 1, src, (size_t)To * sizeof(float));
            }
            memcpy(acc, ns, (size_t)Co * Tn * sizeof(float));
        }
        for (size_t j = 0; j < (size_t)Co * Tn; j++) acc[j] += xs[j];
        /* x = mean of the resblocks over acc */
        for (int r = 0; r < m->n_kernels; r++) {
            if ((rc = nr_ko_resblock1(&m->resblocks[i * m->n_kernels + r], s, acc, Tn, ns))) goto done;
            if (r == 0) memcpy(x, ns, (size_t)Co * Tn * sizeof(float));
            else
                for (size_t j = 0; j < (size_t)Co * Tn; j++) x[j] += ns[j];
        }
        for (size_t j = 0; j < (size_t)Co * Tn; j++) x[j] /= (float)m->n_kernels;
        C = Co;
        T = Tn;
    }
    for (size_t j = 0; j < (size_t)C * T; j++) x[j] = x[j] > 0.f ? x[j] : x[j] * 0.01f;
    if ((rc = nr_ko_conv(&m->conv_post, x, T, 1, 3, 1, ns))) goto done;
    int bins = nfft / 2 + 1;
    for (size_t j = 0; j < (size_t)bins * T; j++) ns[j] = expf(ns[j]);
    for (size_t j = (size_t)bins * T; j < (size_t)2 * bins * T; j++) ns[j] = sinf(ns[j]);
    size_t n_out = (size_t)m->hop * (T - 1);
    if (!(out = malloc((n_out ? n_out : 1) * sizeof(float)))) {
        rc = NR_ENOMEM;
        goto done;
    }
    if ((rc = s_istft(ns, ns + (size_t)bins * T, T, nfft, m->hop, win, tw, out))) goto done;
    *pcm = out;
    *n_samples = n_out;
    out = NULL;
    if (har_out) {
        *har_out = har_src;
        har_src = NULL;
    }
    if (spec_out) {
        *spec_out = har;
        har = NULL;
    }
done:
    free(tw);
    free(out);
    free(har_src);
    free(har);
    free(x);
    free(xs);
    free(ns);
    free(acc);
    return rc;
}
