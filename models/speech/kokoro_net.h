/* Internal to the Kokoro engine: its weights (pointers into buffers the
 * model owns, shapes in comments) and the forward passes. Layouts:
 * channel-major x[c][t] for convolutions, time-major x[t][c] for the LSTMs
 * and ALBERT. */
#ifndef NR_MODELS_SPEECH_KOKORO_NET_H
#define NR_MODELS_SPEECH_KOKORO_NET_H

#include <stddef.h>
#include <stdint.h>

#include "models/nn/lstm.h"

typedef struct {
    float *w, *b; /* Linear: (out, in), (out) */
    int out, in;
} nr_ko_linear_t;

typedef struct {
    float *w, *b; /* Conv1d (cout, cin, k); ConvTranspose1d (cin, cout, k); b may be NULL */
    int cout, cin, k;
} nr_ko_conv_t;

typedef struct {
    nr_ko_linear_t fc; /* (2C, style) */
    float *nw, *nb;    /* InstanceNorm affine (C); NULL when absent (1 and 0) */
    int c;
} nr_ko_adain_t;

/* StyleTTS2's AdainResBlk1d. */
typedef struct {
    nr_ko_adain_t norm1, norm2;
    nr_ko_conv_t conv1, conv2, conv1x1, pool; /* conv1x1.w NULL without a learned shortcut; pool.w NULL without upsampling */
    int din, dout, up;
} nr_ko_resblk_t;

/* iSTFTNet's AdaINResBlock1 (three dilated conv pairs with Snake). */
typedef struct {
    nr_ko_conv_t c1[3], c2[3];
    nr_ko_adain_t a1[3], a2[3];
    float *alpha1[3], *alpha2[3]; /* (C) */
    int ch, k, dil[3];
} nr_ko_resblock1_t;

typedef struct {
    nr_lstm_t l;
    float *owned[2]; /* the summed biases */
} nr_ko_lstm_t;

typedef struct {
    /* config */
    int n_token, hidden, style, n_layer, max_dur, te_kernel;
    int b_emb, b_hidden, b_heads, b_inter, b_layers, b_maxpos;
    int enc_dim, asr_dim, up_init, n_ups, ups_rate[4], ups_k[4], n_fft, hop, n_kernels, rk[4], rd[4][3];
    /* ALBERT (one shared layer) */
    float *word_emb, *pos_emb, *type_emb, *emb_ln_w, *emb_ln_b; /* (V,E) (P,E) (2,E) (E) (E) */
    nr_ko_linear_t map_in, q, k, v, dense, ffn, ffn_out;
    float *att_ln_w, *att_ln_b, *full_ln_w, *full_ln_b; /* (Hb) */
    nr_ko_linear_t bert_encoder;                        /* (H, Hb) */
    /* prosody predictor */
    nr_ko_lstm_t dur_lstm[8];
    nr_ko_linear_t dur_adaln[8]; /* (2H, S) */
    nr_ko_lstm_t pred_lstm, shared;
    nr_ko_linear_t dur_proj; /* (max_dur, H) */
    nr_ko_resblk_t f0[3], nb[3];
    nr_ko_conv_t f0_proj, n_proj;
    /* text encoder */
    float *te_emb; /* (V, H) */
    nr_ko_conv_t te_conv[8];
    float *te_gamma[8], *te_beta[8];
    nr_ko_lstm_t te_lstm;
    /* decoder */
    nr_ko_resblk_t encode, decode[4];
    nr_ko_conv_t f0_conv, n_conv, asr_res;
    nr_ko_linear_t src_linear; /* (1, 9) */
    nr_ko_conv_t ups[4], noise_convs[4], conv_post;
    nr_ko_resblock1_t noise_res[4], resblocks[16];
} nr_ko_net_t;

/* What a test compares with the reference (all new arrays, free()). */
typedef struct {
    float *bert;   /* (T, Hb), T = phonemes + 2 */
    float *d;      /* (T, H + S): the duration encoder's output */
    float *t_en;   /* (H, T): the text encoder's output */
    float *f0, *n; /* (2 * frames) */
    float *har;    /* (samples): the harmonic source, tanh(l_linear(sines + noise)) */
    float *har_spec; /* (n_fft + 2, samples / hop + 1): its STFT magnitudes, then angles */
    int64_t *durations; /* (T) */
    int T, frames;
} nr_ko_trace_t;

/* The whole model for token ids (with the two 0 pads), a style row
 * (2*style) and speed; seed starts the sine source's generator. Returns 0
 * or NR_ENOMEM, NR_ETEXT (frames over the bound). */
int nr_ko_forward(const nr_ko_net_t *m, const int *ids, int T, const float *ref_s, float speed, uint64_t seed,
                  float **pcm, size_t *n_samples, nr_ko_trace_t *trace, char *err, size_t errlen);

/* The decoder and generator: asr (H, frames), f0 and n (2 * frames), the
 * decoder's half of the style. har_out and spec_out (may be NULL) receive
 * the harmonic source and its STFT. Returns 0 or NR_ENOMEM. */
int nr_ko_decode(const nr_ko_net_t *m, const float *asr, int frames, const float *f0, const float *n, const float *s,
                 uint64_t seed, float **pcm, size_t *n_samples, float **har_out, float **spec_out);

/* iSTFTNet generator (istftnet.c): x (up_init, T2) and f0 (T2) to audio
 * (T2 * prod(ups) * hop samples). */
int nr_ko_generator(const nr_ko_net_t *m, const float *x, int T2, const float *s, const float *f0, uint64_t seed,
                    float **pcm, size_t *n_samples, float **har_out, float **spec_out);

/* 1 when the istftnet settings give the lengths the generator relies on
 * (each upsampling kernel minus its rate even and not negative, noise
 * convs landing on the upsampled lengths, enough samples for the STFT's
 * padding, hop <= n_fft), else 0. */
int nr_ko_generator_sizes_ok(const nr_ko_net_t *m);

/* Blocks shared by the predictor and the decoder (kokoro_net.c). */
int nr_ko_adain(const nr_ko_adain_t *a, const float *s, const float *x, int T, float *y);
int nr_ko_resblk(const nr_ko_resblk_t *b, const float *s, const float *x, int T, float *y);
int nr_ko_resblock1(const nr_ko_resblock1_t *b, const float *s, const float *x, int T, float *y);
int nr_ko_conv(const nr_ko_conv_t *c, const float *x, int T, int stride, int pad, int dil, float *y);

/* splitmix64, as tests/fixtures/reference_kokoro.py's Rng. */
typedef struct {
    uint64_t s;
} nr_ko_rng_t;
float nr_ko_rng_uniform(nr_ko_rng_t *r);
float nr_ko_rng_normal(nr_ko_rng_t *r);

#endif
