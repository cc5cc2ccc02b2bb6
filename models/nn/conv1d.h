/* 1-D convolutions over channel-major signals (x[c][t]), as torch's
 * Conv1d and ConvTranspose1d compute them (zero padding, batch of one),
 * on the CPU with OpenBLAS sgemm (im2col in chunks of time, so the scratch
 * stays bounded). Used by the speech models (models/speech/). */
#ifndef NR_MODELS_NN_CONV1D_H
#define NR_MODELS_NN_CONV1D_H

#include <stddef.h>

/* Output length of a Conv1d; <= 0 when the input is too short. */
int nr_conv1d_out_len(int t, int k, int stride, int pad, int dil);

/* y[cout][tout] = conv(x[cin][t], w[cout][cin][k]) + b (b may be NULL).
 * Returns 0 or NR_ENOMEM (scratch). */
int nr_conv1d(const float *x, int cin, int t, const float *w, const float *b, int cout, int k, int stride, int pad,
              int dil, float *y);

/* ConvTranspose1d (groups 1): w[cin][cout][k]; tout = (t-1)*stride -
 * 2*pad + k + opad. Returns 0 or NR_ENOMEM. */
int nr_conv_transpose1d(const float *x, int cin, int t, const float *w, const float *b, int cout, int k, int stride,
                        int pad, int opad, float *y);

/* Depthwise ConvTranspose1d (groups = channels): w[c][1][k]. */
void nr_conv_transpose1d_dw(const float *x, int c, int t, const float *w, const float *b, int k, int stride, int pad,
                            int opad, float *y);

#endif
