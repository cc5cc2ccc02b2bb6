/* ROUGE-L as pycocoevalcap's rouge.py computes it: the longest common
 * subsequence of candidate and each reference, the largest precision and
 * the largest recall over the references (each taken on its own), then
 * F with beta 1.2. */
#ifndef NR_CLIENT_EVAL_ROUGE_H
#define NR_CLIENT_EVAL_ROUGE_H

#include "client/eval/tokenize.h"

#define NR_ROUGE_BETA 1.2

/* ROUGE-L of cand against refs[0..nrefs-1] into *score. An empty caption
 * counts as one empty word, as rouge.py's split(" ") makes it. 0,
 * NR_EINVAL (no references) or NR_ENOMEM. */
int nr_rouge_l(const nr_evsent_t *cand, const nr_evsent_t *refs, size_t nrefs, double *score);
/* Length of the longest common subsequence of two word lists. -1 when out
 * of memory. */
long nr_rouge_lcs(const uint32_t *a, size_t na, const uint32_t *b, size_t nb);

#endif
