/* BLEU-1..4 as pycocoevalcap's bleu_scorer.py computes it: clipped n-gram
 * counts per image, summed over the corpus, the "closest" reference
 * length, and its small constants (1e-9 added to denominators, 1e-15 to
 * numerators). */
#ifndef NR_CLIENT_EVAL_BLEU_H
#define NR_CLIENT_EVAL_BLEU_H

#include "client/eval/tokenize.h"

#define NR_BLEU_N 4

/* What one image contributes; add them up for a corpus. */
typedef struct {
    double testlen, reflen;
    double guess[NR_BLEU_N], correct[NR_BLEU_N];
} nr_bleu_stats_t;

/* The stats of candidate `cand` against refs[0..nrefs-1] (nrefs >= 1).
 * reflen is the length of the reference closest to the candidate's
 * (the shorter one on a tie). 0, NR_EINVAL or NR_ENOMEM. */
int nr_bleu_stats(const nr_evsent_t *cand, const nr_evsent_t *refs, size_t nrefs, nr_bleu_stats_t *out);
/* Adds b into a. */
void nr_bleu_accumulate(nr_bleu_stats_t *a, const nr_bleu_stats_t *b);
/* BLEU-1..4 from stats (one image's or a corpus sum). */
void nr_bleu_score(const nr_bleu_stats_t *stats, double bleu[NR_BLEU_N]);

#endif
