/* BLEU, following pycocoevalcap's bleu_scorer.py (cook_refs, cook_test,
 * compute_score with option "closest"). */
#include "client/eval/bleu.h"
#include "client/eval/ngram.h"
#include "common/error.h"

#include <math.h>
#include <string.h>

int nr_bleu_stats(const nr_evsent_t *cand, const nr_evsent_t *refs, size_t nrefs, nr_bleu_stats_t *out) {
    memset(out, 0, sizeof *out);
    if (!cand || !refs || nrefs == 0) return NR_EINVAL;
    nr_ngram_map_t maxcounts = {0}, one = {0}, counts = {0};
    int rc = 0;
    double testlen = (double)cand->n, best = -1;
    for (size_t r = 0; r < nrefs && !rc; r++) {
        double len = (double)refs[r].n, d = fabs(len - testlen);
        if (best < 0 || d < fabs(best - testlen) || (d == fabs(best - testlen) && len < best)) best = len;
        rc = nr_ngram_count(&one, refs[r].w, refs[r].n, NR_BLEU_N);
        for (size_t i = 0; !rc && i < one.cap; i++)
            if (one.slots[i].n) rc = nr_ngram_max(&maxcounts, one.slots[i].w, one.slots[i].n, one.slots[i].v);
        nr_ngram_clear(&one);
    }
    if (!rc) rc = nr_ngram_count(&counts, cand->w, cand->n, NR_BLEU_N);
    if (!rc) {
        out->testlen = testlen;
        out->reflen = best;
        for (int k = 0; k < NR_BLEU_N; k++) out->guess[k] = testlen - k > 0 ? testlen - k : 0;
        for (size_t i = 0; i < counts.cap; i++) {
            const nr_ngram_entry_t *e = &counts.slots[i];
            if (!e->n) continue;
            double ref = nr_ngram_get(&maxcounts, e->w, e->n);
            out->correct[e->n - 1] += e->v < ref ? e->v : ref;
        }
    }
    nr_ngram_clear(&maxcounts);
    nr_ngram_clear(&counts);
    return rc;
}

void nr_bleu_accumulate(nr_bleu_stats_t *a, const nr_bleu_stats_t *b) {
    a->testlen += b->testlen;
    a->reflen += b->reflen;
    for (int k = 0; k < NR_BLEU_N; k++) {
        a->guess[k] += b->guess[k];
        a->correct[k] += b->correct[k];
    }
}

void nr_bleu_score(const nr_bleu_stats_t *s, double bleu[NR_BLEU_N]) {
    const double small = 1e-9, tiny = 1e-15; /* bleu_scorer.py's: no division by zero */
    double prod = 1.0;
    for (int k = 0; k < NR_BLEU_N; k++) {
        prod *= (s->correct[k] + tiny) / (s->guess[k] + small);
        bleu[k] = pow(prod, 1.0 / (k + 1));
    }
    double ratio = (s->testlen + tiny) / (s->reflen + small);
    if (ratio < 1)
        for (int k = 0; k < NR_BLEU_N; k++) bleu[k] *= exp(1 - 1 / ratio);
}
