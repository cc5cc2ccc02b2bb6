/* 1-D convolutions with OpenBLAS (see conv1d.h). */
#include "models/nn/conv1d.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* Columns of im2col per sgemm: bounds the scratch to cin*k*S_CHUNK floats. */
#define S_CHUNK 2048

int nr_conv1d_out_len(int t, int k, int stride, int pad, int dil) {
    long n = (long)t + 2L * pad - (long)dil * (k - 1) - 1;
    return n < 0 ? 0 : (int)(n / stride + 1);
}

int nr_conv1d(const float *x, int cin, int t, const float *w, const float *b, int cout, int k, int stride, int pad,
              int dil, float *y) {
    int tout = nr_conv1d_out_len(t, k, stride, pad, dil);
    if (tout <= 0) return 0;
    if (k == 1 && stride == 1 && pad == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, tout, cin, 1.f, w, cin, x, t, 0.f, y, tout);
    } else {
        int chunk = tout < S_CHUNK ? tout : S_CHUNK;
        float *col = malloc((size_t)cin * k * chunk * sizeof(float));
        if (!col) return NR_ENOMEM;
        for (int t0 = 0; t0 < tout; t0 += chunk) {
            int n = tout - t0 < chunk ? tout - t0 : chunk;
            for (int c = 0; c < cin; c++)
                for (int j = 0; j < k; j++) {
                    float *row = col + ((size_t)c * k + j) * n;
                    const float *xc = x + (size_t)c * t;
                    long off = (long)t0 * stride - pad + (long)j * dil; /* source of column 0 */
                    if (stride == 1) { /* one contiguous run inside x, zeros around it */
                        long lo = off < 0 ? -off : 0, hi = t - off;
                        if (lo > n) lo = n;
                        if (hi > n) hi = n;
                        if (hi < lo) hi = lo;
                        memset(row, 0, (size_t)lo * sizeof(float));
                        if (hi > lo) memcpy(row + lo, xc + off + lo, (size_t)(hi - lo) * sizeof(float));
                        memset(row + hi, 0, (size_t)(n - hi) * sizeof(float));
                    } else {
                        for (int o = 0; o < n; o++) {
                            long src = off + (long)o * stride;
                            row[o] = src >= 0 && src < t ? xc[src] : 0.f;
                        }
                    }
                }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, n, cin * k, 1.f, w, cin * k, col, n, 0.f,
                        y + t0, tout);
        }
        free(col);
    }
    if (b)
        for (int c = 0; c < cout; c++)
            for (int o = 0; o < tout; o++) y[(size_t)c * tout + o] += b[c];
    return 0;
}

int nr_conv_transpose1d(const float *x, int cin, int t, const float *w, const float *b, int cout, int k, int stride,
                        int pad, int opad, float *y) {
    int tout = (t - 1) * stride - 2 * pad + k + opad;
    if (tout <= 0) return 0;
    /* col[cout*k][t] = w^T x, then each column scatters into y. */
    float *col = malloc((size_t)cout * k * t * sizeof(float));
    if (!col) return NR_ENOMEM;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cout * k, t, cin, 1.f, w, cout * k, x, t, 0.f, col, t);
    for (int c = 0; c < cout; c++) {
        float *yc = y + (size_t)c * tout;
        for (int o = 0; o < tout; o++) yc[o] = b ? b[c] : 0.f;
        for (int j = 0; j < k; j++) {
            const float *row = col + ((size_t)c * k + j) * t;
            for (int i = 0; i < t; i++) {
                long o = (long)i * stride - pad + j;
                if (o >= 0 && o < tout) yc[o] += row[i];
            }
        }
    }
    free(col);
    return 0;
}

void nr_conv_transpose1d_dw(const float *x, int c, int t, const float *w, const float *b, int k, int stride, int pad,
                            int opad, float *y) {
    int tout = (t - 1) * stride - 2 * pad + k + opad;
    for (int ch = 0; ch < c; ch++) {
        float *yc = y + (size_t)ch * tout;
        const float *xc = x + (size_t)ch * t, *wc = w + (size_t)ch * k;
        for (int o = 0; o < tout; o++) yc[o] = b ? b[ch] : 0.f;
        for (int i = 0; i < t; i++)
            for (int j = 0; j < k; j++) {
                long o = (long)i * stride - pad + j;
                if (o >= 0 && o < tout) yc[o] += wc[j] * xc[i];
            }
    }
}
