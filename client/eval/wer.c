/* Word error rate by Levenshtein distance over word ids. */
#include "client/eval/wer.h"

#include <stdlib.h>

long nr_wer_edits(const uint32_t *hyp, size_t nhyp, const uint32_t *ref, size_t nref) {
    long *prev = malloc((nref + 1) * sizeof *prev), *cur = malloc((nref + 1) * sizeof *cur);
    if (!prev || !cur) {
        free(prev);
        free(cur);
        return -1;
    }
    for (size_t j = 0; j <= nref; j++) prev[j] = (long)j; /* deletions */
    for (size_t i = 1; i <= nhyp; i++) {
        cur[0] = (long)i; /* insertions */
        for (size_t j = 1; j <= nref; j++) {
            long sub = prev[j - 1] + (hyp[i - 1] != ref[j - 1]);
            long ins = prev[j] + 1, del = cur[j - 1] + 1;
            cur[j] = sub < ins ? (sub < del ? sub : del) : (ins < del ? ins : del);
        }
        long *t = prev;
        prev = cur;
        cur = t;
    }
    long d = prev[nref];
    free(prev);
    free(cur);
    return d;
}

double nr_wer_rate(long edits, size_t nref, size_t nhyp) {
    if (nref == 0) return nhyp ? 1.0 : 0.0;
    return (double)edits / (double)nref;
}
