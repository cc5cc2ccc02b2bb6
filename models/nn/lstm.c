/* Bidirectional LSTM layer (see lstm.h). */
#include "models/nn/lstm.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "common/error.h"

static float s_sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

int nr_lstm_bidir(const nr_lstm_t *l, const float *x, int T, float *y) {
    int h = l->hidden, g4 = 4 * h;
    float *gx = malloc(((size_t)T * g4 + 2 * (size_t)h + g4) * sizeof(float));
    if (!gx) return NR_ENOMEM;
    float *hs = gx + (size_t)T * g4, *cs = hs + h, *g = cs + h;
    for (int dir = 0; dir < 2; dir++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, g4, l->in, 1.f, x, l->in, l->wih[dir], l->in, 0.f, gx,
                    g4);
        for (int i = 0; i < h; i++) hs[i] = cs[i] = 0.f;
        for (int s = 0; s < T; s++) {
            int t = dir ? T - 1 - s : s;
            const float *gt = gx + (size_t)t * g4;
            for (int i = 0; i < g4; i++) g[i] = gt[i] + l->bias[dir][i];
            cblas_sgemv(CblasRowMajor, CblasNoTrans, g4, h, 1.f, l->whh[dir], h, hs, 1, 1.f, g, 1);
            float *yt = y + (size_t)t * 2 * h + (size_t)dir * h;
            for (int i = 0; i < h; i++) {
                float ig = s_sigmoid(g[i]), fg = s_sigmoid(g[h + i]), gg = tanhf(g[2 * h + i]),
                      og = s_sigmoid(g[3 * h + i]);
                cs[i] = fg * cs[i] + ig * gg;
                hs[i] = og * tanhf(cs[i]);
                yt[i] = hs[i];
            }
        }
    }
    free(gx);
    return 0;
}
