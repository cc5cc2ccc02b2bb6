/* CIDEr-D as pycocoevalcap's cider_scorer.py computes it: n = 1..4,
 * tf-idf vectors with document frequencies counted over the references of
 * the images evaluated together, log(number of images) as the reference
 * length, clipping of candidate weights by reference weights, a Gaussian
 * length penalty with sigma 6 (on the bigram counts, as the upstream code
 * does), the mean over n and over references, times 10. */
#ifndef NR_CLIENT_EVAL_CIDER_H
#define NR_CLIENT_EVAL_CIDER_H

#include "client/eval/tokenize.h"

#define NR_CIDER_N 4
#define NR_CIDER_SIGMA 6.0

/* One image: its candidate and its references. */
typedef struct {
    const nr_evsent_t *cand;
    const nr_evsent_t *refs;
    size_t nrefs; /* >= 1 */
} nr_cider_image_t;

/* Scores images[0..n-1] as one corpus: scores[i] per image (may be NULL)
 * and *mean (may be NULL). 0, NR_EINVAL (n == 0, an image without
 * references) or NR_ENOMEM. */
int nr_cider_score(const nr_cider_image_t *images, size_t n, double *scores, double *mean);

#endif
