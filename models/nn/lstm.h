/* One bidirectional LSTM layer as torch.nn.LSTM(batch_first,
 * bidirectional) computes it for a batch of one (gates i, f, g, o; zero
 * initial state): the input projections of all steps in one sgemm, then
 * one sgemv per step and direction. */
#ifndef NR_MODELS_NN_LSTM_H
#define NR_MODELS_NN_LSTM_H

typedef struct {
    int in, hidden;
    const float *wih[2]; /* (4*hidden, in): forward, reverse */
    const float *whh[2]; /* (4*hidden, hidden) */
    float *bias[2];      /* (4*hidden): bias_ih + bias_hh, owned by the caller */
} nr_lstm_t;

/* y[t][0..h) forward, y[t][h..2h) reverse, for x[t][in], t < T.
 * Returns 0 or NR_ENOMEM. */
int nr_lstm_bidir(const nr_lstm_t *l, const float *x, int T, float *y);

#endif
