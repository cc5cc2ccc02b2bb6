/* The metrics of a set of images, as pycocoevalcap's eval.py combines them. */
#include "client/eval/score.h"
#include "client/eval/cider.h"
#include "client/eval/rouge.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

int nr_evscore(const nr_evsent_t *cands, nr_evsent_t *const *refs, const size_t *nrefs, size_t n,
               nr_evmetrics_t *corpus, nr_evmetrics_t *per_image) {
    memset(corpus, 0, sizeof *corpus);
    if (n == 0) return NR_EINVAL;
    nr_cider_image_t *im = calloc(n, sizeof *im);
    double *cider = calloc(n, sizeof *cider);
    int rc = im && cider ? 0 : NR_ENOMEM;
    nr_bleu_stats_t total = {0}, one;
    double rouge_sum = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        double rouge;
        rc = nr_bleu_stats(&cands[i], refs[i], nrefs[i], &one);
        if (!rc) rc = nr_rouge_l(&cands[i], refs[i], nrefs[i], &rouge);
        if (rc) break;
        nr_bleu_accumulate(&total, &one);
        rouge_sum += rouge;
        if (per_image) {
            nr_bleu_score(&one, per_image[i].bleu);
            per_image[i].rouge_l = rouge;
        }
        im[i] = (nr_cider_image_t){&cands[i], refs[i], nrefs[i]};
    }
    if (!rc) rc = nr_cider_score(im, n, cider, &corpus->cider_d);
    if (!rc) {
        nr_bleu_score(&total, corpus->bleu);
        corpus->rouge_l = rouge_sum / (double)n;
        for (size_t i = 0; per_image && i < n; i++) per_image[i].cider_d = cider[i];
    }
    free(im);
    free(cider);
    return rc;
}
