/* Doubling delays with a cap, and half-jitter. */
#include "common/backoff.h"

void nr_backoff_init(nr_backoff_t *self, int64_t first_ms, int64_t max_ms) {
    self->first_ms = first_ms;
    self->max_ms = max_ms < first_ms ? first_ms : max_ms;
    self->delay_ms = first_ms;
}

void nr_backoff_reset(nr_backoff_t *self) { self->delay_ms = self->first_ms; }

int64_t nr_backoff_next(nr_backoff_t *self) {
    int64_t d = self->delay_ms;
    self->delay_ms = d * 2 > self->max_ms ? self->max_ms : d * 2;
    return d;
}

int64_t nr_backoff_nth(int64_t first_ms, int64_t max_ms, uint32_t n) {
    int64_t d = first_ms;
    for (uint32_t i = 1; i < n && d < max_ms; i++) d *= 2;
    return d > max_ms ? max_ms : d;
}

int64_t nr_backoff_jitter(int64_t d, uint32_t random) {
    if (d <= 1) return d;
    return d / 2 + (int64_t)(random % (uint64_t)(d / 2 + 1));
}
