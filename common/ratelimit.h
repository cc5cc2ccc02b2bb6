/* Per-client rate limits: one token bucket per client key (a CURVE key name,
 * a peer address, an HTTP client's IP). A client may burst up to `burst`
 * requests, then `rate` per second. Thread-safe: the gateway's request
 * threads share one limiter. */
#ifndef NR_COMMON_RATELIMIT_H
#define NR_COMMON_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct nr_ratelimit nr_ratelimit_t;

/* rate: requests per second per client (0 turns limiting off: every take
 * succeeds); burst: bucket size (< 1 counts as 1); max_clients: how many
 * clients are tracked at once (the one idle longest is forgotten, which can
 * only give it a full bucket again). NULL when out of memory. */
nr_ratelimit_t *nr_ratelimit_new(double rate, double burst, size_t max_clients);
void nr_ratelimit_destroy(nr_ratelimit_t **self);

/* Takes one request's token from `client`'s bucket at time now_ms (any
 * monotonic milliseconds). Returns 1 when allowed, 0 when over the limit;
 * then *retry_ms (if not NULL) is how long until a token is back. */
int nr_ratelimit_take(nr_ratelimit_t *self, const char *client, int64_t now_ms, int64_t *retry_ms);

/* Requests refused so far (for metrics). */
long nr_ratelimit_refused(nr_ratelimit_t *self);

#endif
