/* Greedy and beam search over a decoder (models/decoder.h), following transformers'
 * generate() as of v4.46: GreedySearch, and BeamSearchScorer +
 * BeamHypotheses with early_stopping True / False / "never". */
#include "models/generate.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/fastmath.h"

int nr_generate_check(const nr_decoder_t *d, const nr_gen_config_t *g, char *err, size_t errlen) {
    if (g->max_length < 2 || g->max_length > d->max_positions)
        return nr_seterr(err, errlen, NR_EOPTION, "max_length %d outside 2..%d", g->max_length, d->max_positions);
    if (g->num_beams < 1 || g->num_beams > 64)
        return nr_seterr(err, errlen, NR_EOPTION, "num_beams %d outside 1..64", g->num_beams);
    if (g->decoder_start_token_id < 0 || g->decoder_start_token_id >= d->vocab_size)
        return nr_seterr(err, errlen, NR_EOPTION, "decoder_start_token_id %d outside the vocabulary",
                         g->decoder_start_token_id);
    if (g->eos_token_id >= d->vocab_size || g->pad_token_id >= d->vocab_size)
        return nr_seterr(err, errlen, NR_EOPTION, "eos/pad token id outside the vocabulary");
    if (!isfinite(g->length_penalty))
        return nr_seterr(err, errlen, NR_EOPTION, "length_penalty must be finite");
    if (g->prompt_len < 0 || (g->prompt_len > 0 && !g->prompt_ids))
        return nr_seterr(err, errlen, NR_EOPTION, "prompt: %d ids without an array", g->prompt_len);
    for (int i = 0; i < g->prompt_len; i++)
        if (g->prompt_ids[i] < 0 || g->prompt_ids[i] >= d->vocab_size)
            return nr_seterr(err, errlen, NR_EOPTION, "prompt id %d outside the vocabulary", g->prompt_ids[i]);
    if (g->max_length <= 1 + g->prompt_len)
        return nr_seterr(err, errlen, NR_EOPTION, "max_length %d leaves no room after the start token and a prompt of %d",
                         g->max_length, g->prompt_len);
    return 0;
}

/* The first tokens of every row: the start token, then the prompt. */
static int *s_prefix(const nr_gen_config_t *g, int rows) {
    const int P = 1 + g->prompt_len;
    int *p = malloc((size_t)rows * P * sizeof(int));
    if (!p) return NULL;
    for (int r = 0; r < rows; r++) {
        p[(size_t)r * P] = g->decoder_start_token_id;
        for (int i = 1; i < P; i++) p[(size_t)r * P + i] = g->prompt_ids[i - 1];
    }
    return p;
}

/* ---- greedy ---- */

static int s_greedy(const nr_decoder_t *d, const float *enc, int n, int enc_len, const nr_gen_config_t *g, int *ids,
                    int *lens) {
    const int V = d->vocab_size, T = g->max_length, P = 1 + g->prompt_len;
    void *s = d->ops->state_new(d->model, n, T, n, enc_len);
    float *logits = malloc((size_t)n * V * sizeof(float));
    int *cur = malloc((size_t)n * sizeof(int));
    int *cap = malloc((size_t)n * sizeof(int)); /* caption of each row */
    int *keep = malloc((size_t)n * sizeof(int));
    int *pre = s_prefix(g, n);
    int rc = (!s || !logits || !cur || !cap || !keep || !pre) ? NR_ENOMEM : 0;
    if (rc) goto out;
    if ((rc = d->ops->set_encoder(d->model, s, enc, NULL))) goto out;
    for (int i = 0; i < n; i++) {
        memcpy(ids + (size_t)i * T, pre + (size_t)i * P, (size_t)P * sizeof(int));
        lens[i] = P;
        cap[i] = i;
    }
    int rows = n;
    for (int len = P; len < T && rows > 0; len++) {
        /* the first step reads the start token and the prompt at once */
        if ((rc = d->ops->step(d->model, s, len == P ? pre : cur, len == P ? P : 1, logits, 0))) goto out;
        int kept = 0;
        for (int r = 0; r < rows; r++) {
            const float *lr = logits + (size_t)r * V;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (lr[v] > lr[best]) best = v;
            int i = cap[r];
            ids[(size_t)i * T + len] = best;
            lens[i] = len + 1;
            if (best != g->eos_token_id) { /* still running: stays in the batch */
                keep[kept] = r;
                cur[kept] = best;
                cap[kept] = i;
                kept++;
            }
        }
        /* finished captions leave the batch (transformers keeps stepping them
         * with pad tokens; their results are the same) */
        if (kept > 0 && kept < rows && (rc = d->ops->select(d->model, s, keep, kept))) goto out;
        rows = kept;
    }
out:
    if (s) d->ops->state_destroy(&s);
    free(logits);
    free(cur);
    free(cap);
    free(keep);
    free(pre);
    return rc;
}

/* ---- beam search ---- */

typedef struct {
    float score;
    int len;
    int *tok; /* len ids, start token first, no eos */
} s_hyp_t;

typedef struct {
    s_hyp_t *h; /* up to num_beams + 1 */
    int n;
    float worst;
    int done;
} s_hyps_t;

/* BeamHypotheses.add: score = sum_logprobs / gen_len^length_penalty. */
static void s_hyps_add(s_hyps_t *hs, int K, float lp, const int *tok, int len, float sum_logprobs, int gen_len) {
    float score = sum_logprobs / powf((float)gen_len, lp);
    if (hs->n < K || score > hs->worst) {
        s_hyp_t *h = &hs->h[hs->n++];
        h->score = score;
        h->len = len;
        memcpy(h->tok, tok, (size_t)len * sizeof(int));
        if (hs->n > K) {
            /* drop the worst (first among equals, as Python's sorted()) */
            int wi = 0;
            for (int i = 1; i < hs->n; i++)
                if (hs->h[i].score < hs->h[wi].score) wi = i;
            int *keep = hs->h[wi].tok;
            for (int i = wi; i < hs->n - 1; i++) hs->h[i] = hs->h[i + 1];
            hs->n--;
            hs->h[hs->n].tok = keep;
            float w = INFINITY;
            for (int i = 0; i < hs->n; i++) w = hs->h[i].score < w ? hs->h[i].score : w;
            hs->worst = w;
        } else {
            hs->worst = score < hs->worst ? score : hs->worst;
        }
    }
}

/* BeamHypotheses.is_done after a step (tests/fixtures/README.md, "Beam
 * search rule"; transformers v4.46): best is the raw score of the step's
 * best candidate of all 2K, an eos candidate included (BeamSearchScorer
 * passes next_scores.max(), not the best beam that continues); cur_len
 * counts the start token, the prompt and the token just chosen. */
static int s_hyps_is_done(const s_hyps_t *hs, int K, const nr_gen_config_t *g, float best, int cur_len) {
    if (hs->n < K) return 0;
    if (g->early_stopping == 1) return 1;
    const int prompt = 1 + g->prompt_len; /* decoder_prompt_len */
    float denom;
    if (g->early_stopping == 0 || g->length_penalty <= 0)
        denom = powf((float)(cur_len - prompt), g->length_penalty);
    else
        denom = powf((float)(g->max_length - prompt), g->length_penalty);
    return best / denom <= hs->worst;
}

static int s_beam(const nr_decoder_t *d, const float *enc, int n, int enc_len, const nr_gen_config_t *g, int *ids,
                  int *lens) {
    const int V = d->vocab_size, T = g->max_length, K = g->num_beams, R = n * K, C = 2 * K, P = 1 + g->prompt_len;
    void *s = d->ops->state_new(d->model, R, T, n, enc_len);
    float *logits = malloc((size_t)R * V * sizeof(float));
    float *bscore = malloc((size_t)R * sizeof(float));
    float *nscore = malloc((size_t)R * sizeof(float));
    int *seq = malloc((size_t)R * T * sizeof(int));
    int *nseq = malloc((size_t)R * T * sizeof(int));
    int *cur = malloc((size_t)R * sizeof(int));
    int *src = malloc((size_t)R * sizeof(int));
    int *encix = malloc((size_t)R * sizeof(int));
    float *cs = malloc((size_t)C * sizeof(float));
    int *ct = malloc((size_t)C * sizeof(int));
    s_hyps_t *hyps = calloc((size_t)n, sizeof(s_hyps_t));
    int *tokpool = malloc((size_t)n * (K + 1) * T * sizeof(int));
    int *pre = s_prefix(g, R);
    int rc = (!s || !logits || !bscore || !nscore || !seq || !nseq || !cur || !src || !encix || !cs || !ct || !hyps ||
              !tokpool || !pre)
                 ? NR_ENOMEM
                 : 0;
    if (rc) goto out;
    for (int i = 0; i < n; i++) {
        hyps[i].h = calloc((size_t)K + 1, sizeof(s_hyp_t));
        if (!hyps[i].h) {
            rc = NR_ENOMEM;
            goto out;
        }
        for (int k = 0; k <= K; k++) hyps[i].h[k].tok = tokpool + ((size_t)i * (K + 1) + k) * T;
        hyps[i].worst = 1e9f;
    }
    for (int r = 0; r < R; r++) encix[r] = r / K;
    if ((rc = d->ops->set_encoder(d->model, s, enc, encix))) goto out;
    const int pad = g->pad_token_id >= 0 ? g->pad_token_id : (g->eos_token_id >= 0 ? g->eos_token_id : 0);
    for (int r = 0; r < R; r++) {
        memcpy(seq + (size_t)r * T, pre + (size_t)r * P, (size_t)P * sizeof(int));
        bscore[r] = (r % K == 0) ? 0.0f : -1e9f;
    }
    int *act = malloc((size_t)n * sizeof(int)); /* captions still decoding; row r is act[r / K], beam r % K */
    if (!act) {
        rc = NR_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) act[i] = i;
    int na = n, len = P;
    for (;;) {
        const int rows = na * K;
        /* the first step reads the start token and the prompt at once */
        if ((rc = d->ops->step(d->model, s, len == P ? pre : cur, len == P ? P : 1, logits, 0))) break;
        /* log_softmax per row, plus the beam's running score */
        for (int r = 0; r < rows; r++) {
            float *lr = logits + (size_t)r * V;
            float mx = lr[0];
            for (int v = 1; v < V; v++) mx = lr[v] > mx ? lr[v] : mx;
            float part[16] = {0}, sum = 0.0f;
            int v0 = 0;
            for (; v0 + 16 <= V; v0 += 16)
                for (int j = 0; j < 16; j++) part[j] += nr_fast_expf(lr[v0 + j] - mx);
            for (; v0 < V; v0++) sum += nr_fast_expf(lr[v0] - mx);
            for (int j = 0; j < 16; j++) sum += part[j];
            float lse = logf(sum);
            for (int v = 0; v < V; v++) lr[v] = (lr[v] - mx - lse) + bscore[r];
        }
        for (int j = 0; j < na; j++) {
            s_hyps_t *hs = &hyps[act[j]];
            /* top 2K over (K beams x V tokens), in descending order */
            int nc = 0;
            for (int k = 0; k < K; k++) {
                const float *lr = logits + (size_t)(j * K + k) * V;
                for (int v = 0; v < V; v++) {
                    float x = lr[v];
                    if (nc == C && !(x > cs[C - 1])) continue;
                    int p = nc < C ? nc++ : C - 1;
                    while (p > 0 && x > cs[p - 1]) {
                        cs[p] = cs[p - 1];
                        ct[p] = ct[p - 1];
                        p--;
                    }
                    cs[p] = x;
                    ct[p] = k * V + v;
                }
            }
            int filled = 0;
            for (int c = 0; c < nc && filled < K; c++) {
                int beam = ct[c] / V, tok = ct[c] % V, r = j * K + beam;
                if (g->eos_token_id >= 0 && tok == g->eos_token_id) {
                    if (c >= K) continue; /* not among the top num_beams */
                    s_hyps_add(hs, K, g->length_penalty, seq + (size_t)r * T, len, cs[c], len + 1 - P);
                } else {
                    int dst = j * K + filled++;
                    nscore[dst] = cs[c];
                    cur[dst] = tok;
                    src[dst] = r;
                }
            }
            for (; filled < K; filled++) { /* cannot happen with vocab > 2K; keep rows valid */
                int dst = j * K + filled;
                nscore[dst] = -1e9f;
                cur[dst] = pad;
                src[dst] = j * K;
            }
            hs->done = s_hyps_is_done(hs, K, g, cs[0], len + 1); /* cs[0]: the best of the 2K */
        }
        /* keep the captions still running (finished ones leave the batch:
         * transformers keeps stepping them with pad tokens, which changes no
         * result), reorder sequences and cache, append the chosen tokens */
        int nr = 0, nna = 0;
        for (int j = 0; j < na; j++) {
            if (hyps[act[j]].done) continue;
            for (int k = 0; k < K; k++, nr++) {
                int r = j * K + k;
                memcpy(nseq + (size_t)nr * T, seq + (size_t)src[r] * T, (size_t)len * sizeof(int));
                nseq[(size_t)nr * T + len] = cur[r];
                bscore[nr] = nscore[r];
                cur[nr] = cur[r];
                src[nr] = src[r];
            }
            act[nna++] = act[j];
        }
        int *t = seq;
        seq = nseq;
        nseq = t;
        len++;
        na = nna;
        if (na == 0) break;
        if ((rc = d->ops->select(d->model, s, src, nr))) break;
        if (len >= T) break;
    }
    /* finalize: captions still running take all their beams as hypotheses */
    for (int j = 0; j < na && rc == 0; j++)
        for (int k = 0; k < K; k++) {
            int r = j * K + k;
            s_hyps_add(&hyps[act[j]], K, g->length_penalty, seq + (size_t)r * T, len, bscore[r], len - P);
        }
    free(act);
    if (rc) goto out;
    for (int i = 0; i < n; i++) {
        s_hyps_t *hs = &hyps[i];
        /* best = last of a stable ascending sort: highest score, latest among equals */
        int bi = 0;
        for (int k = 1; k < hs->n; k++)
            if (hs->h[k].score >= hs->h[bi].score) bi = k;
        const s_hyp_t *b = &hs->h[bi];
        memcpy(ids + (size_t)i * T, b->tok, (size_t)b->len * sizeof(int));
        lens[i] = b->len;
        if (b->len < T && g->eos_token_id >= 0) ids[(size_t)i * T + lens[i]++] = g->eos_token_id;
    }
out:
    if (s) d->ops->state_destroy(&s);
    if (hyps)
        for (int i = 0; i < n; i++) free(hyps[i].h);
    free(hyps);
    free(tokpool);
    free(logits);
    free(bscore);
    free(nscore);
    free(seq);
    free(nseq);
    free(cur);
    free(src);
    free(encix);
    free(cs);
    free(ct);
    free(pre);
    return rc;
}

int nr_generate(const nr_decoder_t *d, const float *enc, int n, int enc_len, const nr_gen_config_t *gen, int *ids,
                int *lens, char *err, size_t errlen) {
    if (!d || !d->ops || !d->model || !enc || n <= 0 || enc_len <= 0 || !gen || !ids || !lens)
        return nr_seterr(err, errlen, NR_EINVAL, "generate: bad arguments");
    int rc = nr_generate_check(d, gen, err, errlen);
    if (rc) return rc;
    rc = gen->num_beams == 1 ? s_greedy(d, enc, n, enc_len, gen, ids, lens)
                             : s_beam(d, enc, n, enc_len, gen, ids, lens);
    if (rc) return nr_seterr(err, errlen, rc, "generate: %s", nr_strerror(rc));
    return 0;
}
