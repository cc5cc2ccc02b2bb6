/* Word n-gram counts: an open-addressing table keyed by (n, word ids). */
#include "client/eval/ngram.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

void nr_ngram_clear(nr_ngram_map_t *self) {
    free(self->slots);
    memset(self, 0, sizeof *self);
}

static uint64_t s_hash(const uint32_t *w, uint32_t n) {
    uint64_t h = 1469598103934665603ULL ^ n;
    for (uint32_t i = 0; i < n; i++) h = (h ^ w[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static nr_ngram_entry_t *s_find(const nr_ngram_map_t *self, const uint32_t *w, uint32_t n) {
    if (!self->cap) return NULL;
    size_t i = (size_t)(s_hash(w, n) & (self->cap - 1));
    for (;;) {
        nr_ngram_entry_t *e = &self->slots[i];
        if (e->n == 0 || (e->n == n && !memcmp(e->w, w, n * sizeof *w))) return e;
        i = (i + 1) & (self->cap - 1);
    }
}

static int s_grow(nr_ngram_map_t *self) {
    size_t cap = self->cap ? self->cap * 2 : 64;
    nr_ngram_map_t bigger = {calloc(cap, sizeof(nr_ngram_entry_t)), cap, 0};
    if (!bigger.slots) return NR_ENOMEM;
    for (size_t i = 0; i < self->cap; i++) {
        const nr_ngram_entry_t *e = &self->slots[i];
        if (!e->n) continue;
        *s_find(&bigger, e->w, e->n) = *e;
        bigger.len++;
    }
    free(self->slots);
    *self = bigger;
    return 0;
}

/* The entry for w, created (value 0) when absent; NULL when out of memory. */
static nr_ngram_entry_t *s_slot(nr_ngram_map_t *self, const uint32_t *w, uint32_t n) {
    if ((self->len + 1) * 2 > self->cap && s_grow(self)) return NULL;
    nr_ngram_entry_t *e = s_find(self, w, n);
    if (!e->n) {
        memset(e, 0, sizeof *e);
        memcpy(e->w, w, n * sizeof *w);
        e->n = n;
        self->len++;
    }
    return e;
}

int nr_ngram_add(nr_ngram_map_t *self, const uint32_t *w, uint32_t n, double v) {
    if (n < 1 || n > NR_NGRAM_MAX) return NR_EINVAL;
    nr_ngram_entry_t *e = s_slot(self, w, n);
    if (!e) return NR_ENOMEM;
    e->v += v;
    return 0;
}

int nr_ngram_max(nr_ngram_map_t *self, const uint32_t *w, uint32_t n, double v) {
    if (n < 1 || n > NR_NGRAM_MAX) return NR_EINVAL;
    nr_ngram_entry_t *e = s_slot(self, w, n);
    if (!e) return NR_ENOMEM;
    if (v > e->v) e->v = v;
    return 0;
}

double nr_ngram_get(const nr_ngram_map_t *self, const uint32_t *w, uint32_t n) {
    if (n < 1 || n > NR_NGRAM_MAX) return 0;
    const nr_ngram_entry_t *e = s_find(self, w, n);
    return e && e->n ? e->v : 0;
}

int nr_ngram_count(nr_ngram_map_t *self, const uint32_t *words, size_t len, uint32_t maxn) {
    for (uint32_t k = 1; k <= maxn && k <= NR_NGRAM_MAX; k++)
        for (size_t i = 0; i + k <= len; i++)
            if (nr_ngram_add(self, words + i, k, 1.0)) return NR_ENOMEM;
    return 0;
}
