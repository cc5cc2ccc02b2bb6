/* Token buckets in an open-addressing hash table (linear probing,
 * backward-shift deletion), so a take is O(1) whatever the client count. */
#include "common/ratelimit.h"
#include "common/hash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define S_KEY_MAX 127

typedef struct {
    char key[S_KEY_MAX + 1]; /* "" = empty slot */
    double tokens;
    int64_t last_ms;
} s_bucket_t;

struct nr_ratelimit {
    pthread_mutex_t lock;
    double rate, burst;
    size_t max_clients, used, mask;
    s_bucket_t *slots;
    long refused;
};

nr_ratelimit_t *nr_ratelimit_new(double rate, double burst, size_t max_clients) {
    nr_ratelimit_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    if (max_clients < 1) max_clients = 1;
    size_t size = 2;
    while (size < 2 * max_clients) size *= 2; /* load factor <= 1/2 */
    self->slots = calloc(size, sizeof *self->slots);
    if (!self->slots || pthread_mutex_init(&self->lock, NULL) != 0) {
        free(self->slots);
        free(self);
        return NULL;
    }
    self->rate = rate > 0 ? rate : 0;
    self->burst = burst < 1 ? 1 : burst;
    self->max_clients = max_clients;
    self->mask = size - 1;
    return self;
}

void nr_ratelimit_destroy(nr_ratelimit_t **self) {
    if (!self || !*self) return;
    pthread_mutex_destroy(&(*self)->lock);
    free((*self)->slots);
    free(*self);
    *self = NULL;
}

/* Empties slot i and shifts later entries of its probe run back, so every
 * key stays reachable from its home slot without tombstones. */
static void s_remove(nr_ratelimit_t *self, size_t i) {
    size_t j = i;
    for (;;) {
        self->slots[i].key[0] = '\0';
        for (;;) {
            j = (j + 1) & self->mask;
            if (!self->slots[j].key[0]) {
                self->used--;
                return;
            }
            size_t home = nr_hash_str(self->slots[j].key) & self->mask;
            /* j's entry may move to i only if its home is not in (i, j]. */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) break;
        }
        self->slots[i] = self->slots[j];
        i = j;
    }
}

/* Forgets the client idle longest, to make room for a new one. */
static void s_evict_oldest(nr_ratelimit_t *self) {
    size_t oldest = 0;
    int found = 0;
    for (size_t i = 0; i <= self->mask; i++) {
        if (!self->slots[i].key[0]) continue;
        if (!found || self->slots[i].last_ms < self->slots[oldest].last_ms) oldest = i;
        found = 1;
    }
    if (found) s_remove(self, oldest);
}

static s_bucket_t *s_find_or_add(nr_ratelimit_t *self, const char *key, int64_t now_ms) {
    size_t i = nr_hash_str(key) & self->mask;
    while (self->slots[i].key[0]) {
        if (!strcmp(self->slots[i].key, key)) return &self->slots[i];
        i = (i + 1) & self->mask;
    }
    if (self->used >= self->max_clients) {
        s_evict_oldest(self);
        return s_find_or_add(self, key, now_ms); /* the probe run may have moved */
    }
    s_bucket_t *b = &self->slots[i];
    memcpy(b->key, key, strlen(key) + 1);
    b->tokens = self->burst;
    b->last_ms = now_ms;
    self->used++;
    return b;
}

int nr_ratelimit_take(nr_ratelimit_t *self, const char *client, int64_t now_ms, int64_t *retry_ms) {
    if (retry_ms) *retry_ms = 0;
    if (!self || self->rate <= 0) return 1;
    char key[S_KEY_MAX + 1];
    size_t n = client ? strlen(client) : 0;
    if (n > S_KEY_MAX) n = S_KEY_MAX;
    if (n == 0) memcpy(key, "?", 2), n = 1; /* unknown peers share one bucket */
    else memcpy(key, client, n), key[n] = '\0';

    pthread_mutex_lock(&self->lock);
    s_bucket_t *b = s_find_or_add(self, key, now_ms);
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * self->rate / 1000.0;
        if (b->tokens > self->burst) b->tokens = self->burst;
        b->last_ms = now_ms;
    }
    int allowed = b->tokens >= 1.0;
    if (allowed) {
        b->tokens -= 1.0;
    } else {
        self->refused++;
        if (retry_ms) *retry_ms = (int64_t)((1.0 - b->tokens) * 1000.0 / self->rate) + 1;
    }
    pthread_mutex_unlock(&self->lock);
    return allowed;
}

long nr_ratelimit_refused(nr_ratelimit_t *self) {
    if (!self) return 0;
    pthread_mutex_lock(&self->lock);
    long n = self->refused;
    pthread_mutex_unlock(&self->lock);
    return n;
}
