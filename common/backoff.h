/* Retry backoff: a delay that doubles on each failure up to a cap, and the
 * jitter that spreads retries of many peers apart. Not thread-safe: a
 * nr_backoff_t belongs to one loop; the free functions have no state. */
#ifndef NR_COMMON_BACKOFF_H
#define NR_COMMON_BACKOFF_H

#include <stdint.h>

typedef struct {
    int64_t first_ms; /* delay after the first failure */
    int64_t max_ms;   /* the doubling stops here */
    int64_t delay_ms; /* the delay nr_backoff_next hands out next */
} nr_backoff_t;

/* Starts at first_ms; max_ms below first_ms counts as first_ms. */
void nr_backoff_init(nr_backoff_t *self, int64_t first_ms, int64_t max_ms);
/* Back to first_ms (after a success). */
void nr_backoff_reset(nr_backoff_t *self);
/* Returns the delay to wait now and doubles the next one, capped. */
int64_t nr_backoff_next(nr_backoff_t *self);

/* The delay before attempt n + 1 with no state: first_ms * 2^(n-1), capped
 * at max_ms (n 0 and 1 give first_ms). */
int64_t nr_backoff_nth(int64_t first_ms, int64_t max_ms, uint32_t n);
/* Full delay d jittered into [d/2, d], using `random` (any uniform 32 bits)
 * as the source; d <= 1 is returned as it is. */
int64_t nr_backoff_jitter(int64_t d, uint32_t random);

#endif
