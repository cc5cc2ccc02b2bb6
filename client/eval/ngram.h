/* Counts of word n-grams (n = 1..NR_NGRAM_MAX) keyed by word ids: the one
 * table BLEU and CIDEr-D count, clip and weight with. */
#ifndef NR_CLIENT_EVAL_NGRAM_H
#define NR_CLIENT_EVAL_NGRAM_H

#include <stddef.h>
#include <stdint.h>

#define NR_NGRAM_MAX 4

typedef struct {
    uint32_t w[NR_NGRAM_MAX];
    uint32_t n; /* 0: an empty slot */
    double v;
} nr_ngram_entry_t;

/* Open addressing; zero-initialise to start ({0}). */
typedef struct {
    nr_ngram_entry_t *slots;
    size_t cap, len;
} nr_ngram_map_t;

void nr_ngram_clear(nr_ngram_map_t *self);
/* Adds v to the value of n-gram w[0..n-1] (1 <= n <= NR_NGRAM_MAX), creating
 * it at 0 first. 0 or NR_ENOMEM. */
int nr_ngram_add(nr_ngram_map_t *self, const uint32_t *w, uint32_t n, double v);
/* Sets the value to max(value, v). 0 or NR_ENOMEM. */
int nr_ngram_max(nr_ngram_map_t *self, const uint32_t *w, uint32_t n, double v);
/* The value, 0 when absent. */
double nr_ngram_get(const nr_ngram_map_t *self, const uint32_t *w, uint32_t n);
/* Counts every k-gram of words[0..len-1], k = 1..maxn, into self (+1 each),
 * as pycocoevalcap's precook does. 0 or NR_ENOMEM. */
int nr_ngram_count(nr_ngram_map_t *self, const uint32_t *words, size_t len, uint32_t maxn);

#endif
