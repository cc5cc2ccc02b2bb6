/* ROUGE-L, following pycocoevalcap's rouge.py (my_lcs, calc_score). */
#include "client/eval/rouge.h"
#include "common/error.h"

#include <stdlib.h>

long nr_rouge_lcs(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    if (na < nb) {
        const uint32_t *t = a;
        a = b;
        b = t;
        size_t tn = na;
        na = nb;
        nb = tn;
    }
    /* Two rows over the shorter list. */
    long *prev = calloc(nb + 1, sizeof *prev), *cur = calloc(nb + 1, sizeof *cur);
    if (!prev || !cur) {
        free(prev);
        free(cur);
        return -1;
    }
    for (size_t i = 1; i <= na; i++) {
        for (size_t j = 1; j <= nb; j++)
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
        long *t = prev;
        prev = cur;
        cur = t;
    }
    long n = prev[nb];
    free(prev);
    free(cur);
    return n;
}

int nr_rouge_l(const nr_evsent_t *cand, const nr_evsent_t *refs, size_t nrefs, double *score) {
    *score = 0;
    if (!cand || !refs || nrefs == 0) return NR_EINVAL;
    double prec_max = 0, rec_max = 0;
    for (size_t r = 0; r < nrefs; r++) {
        long lcs;
        if (cand->n == 0 || refs[r].n == 0) lcs = cand->n == refs[r].n; /* "" == "" */
        else lcs = nr_rouge_lcs(refs[r].w, refs[r].n, cand->w, cand->n);
        if (lcs < 0) return NR_ENOMEM;
        double prec = (double)lcs / (double)(cand->n ? cand->n : 1);
        double rec = (double)lcs / (double)(refs[r].n ? refs[r].n : 1);
        if (prec > prec_max) prec_max = prec;
        if (rec > rec_max) rec_max = rec;
    }
    const double b2 = NR_ROUGE_BETA * NR_ROUGE_BETA;
    if (prec_max != 0 && rec_max != 0) *score = ((1 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max);
    return 0;
}
