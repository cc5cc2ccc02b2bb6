/* Word error rate: the Levenshtein distance between a hypothesis and a
 * reference word list (substitutions + deletions + insertions), over the
 * number of reference words. */
#ifndef NR_CLIENT_EVAL_WER_H
#define NR_CLIENT_EVAL_WER_H

#include <stddef.h>
#include <stdint.h>

/* Edit distance between hyp and ref (each edit counts 1); -1 when out of
 * memory. */
long nr_wer_edits(const uint32_t *hyp, size_t nhyp, const uint32_t *ref, size_t nref);
/* edits / reference words; with no reference words, 0 for an empty
 * hypothesis and 1 otherwise. */
double nr_wer_rate(long edits, size_t nref, size_t nhyp);

#endif
