/* All caption metrics of a set of images at once: BLEU-1..4 (corpus:
 * counts summed), ROUGE-L (mean), CIDEr-D (mean, document frequencies over
 * this set's references), for the corpus and per image. */
#ifndef NR_CLIENT_EVAL_SCORE_H
#define NR_CLIENT_EVAL_SCORE_H

#include "client/eval/bleu.h"
#include "client/eval/tokenize.h"

typedef struct {
    double bleu[NR_BLEU_N], rouge_l, cider_d;
} nr_evmetrics_t;

/* Scores cands[i] against refs[i][0..nrefs[i]-1], i < n (n >= 1, every
 * nrefs >= 1). per_image may be NULL. 0, NR_EINVAL or NR_ENOMEM. */
int nr_evscore(const nr_evsent_t *cands, nr_evsent_t *const *refs, const size_t *nrefs, size_t n,
               nr_evmetrics_t *corpus, nr_evmetrics_t *per_image);

#endif
