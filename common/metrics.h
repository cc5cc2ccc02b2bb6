/* Prometheus metrics: a small registry of counters, gauges and histograms
 * with labels, rendered in the Prometheus text exposition format 0.0.4.
 * No sockets here (broker/metrics_http.h serves the broker's; the gateway
 * answers GET /metrics itself). Not thread-safe: one thread at a time (the
 * broker is single-threaded; the gateway holds a lock around every call).
 * broker/METRICS.md and client/gateway/API.md list the metrics exported.
 *
 * Every function takes a NULL registry and then does nothing, so a caller
 * can write one-line hooks whether metrics are on or off. Labels are given
 * as name, value pairs ended by NULL:
 *
 *     nr_metrics_add(m, "narrator_failures_total", 1, "stage", "text", "code", "bad_image", NULL);
 */
#ifndef NR_COMMON_METRICS_H
#define NR_COMMON_METRICS_H

#include <stddef.h>

typedef enum { NR_METRIC_COUNTER, NR_METRIC_GAUGE, NR_METRIC_HISTOGRAM } nr_metric_type_t;

#define NR_METRICS_BUCKETS_MAX 32
#define NR_METRICS_LABELS_MAX 4

typedef struct nr_metrics nr_metrics_t;

/* New empty registry, or NULL (out of memory). */
nr_metrics_t *nr_metrics_new(void);
void nr_metrics_destroy(nr_metrics_t **p);

/* Declares a family. name: [a-zA-Z_:][a-zA-Z0-9_:]*; help: one line.
 * Histograms need 1..NR_METRICS_BUCKETS_MAX strictly increasing finite
 * upper bounds (+Inf is implied); others pass NULL, 0. Returns 0,
 * NR_EINVAL (bad name, bad buckets, name taken) or NR_ENOMEM. */
int nr_metrics_define(nr_metrics_t *self, const char *name, nr_metric_type_t type,
                      const char *help, const double *buckets, size_t nbuckets);

/* Counter: adds v (>= 0). Gauge: adds v (any sign). Creates the series
 * (labels ..., NULL) at 0 first. Returns 0, NR_EINVAL (unknown family,
 * wrong type, negative counter increment, bad or too many labels) or
 * NR_ENOMEM. */
int nr_metrics_add(nr_metrics_t *self, const char *name, double v, ...);
/* Gauge only: sets the series to v. */
int nr_metrics_set(nr_metrics_t *self, const char *name, double v, ...);
/* Histogram only: one observation (NaN is refused with NR_EINVAL). */
int nr_metrics_observe(nr_metrics_t *self, const char *name, double v, ...);
/* Drops every series of a family (a gauge refilled on each scrape, so a
 * label set that is gone disappears). Returns 0 or NR_EINVAL. */
int nr_metrics_clear(nr_metrics_t *self, const char *name);

/* Value of one series (counter or gauge; a histogram's count), or NaN when
 * it does not exist. For tests and logs. */
double nr_metrics_value(const nr_metrics_t *self, const char *name, ...);

/* Index of the bucket an observation v falls in: the first i with
 * v <= bounds[i], or n for +Inf. */
size_t nr_metrics_bucket_index(const double *bounds, size_t n, double v);

/* Formats v as Prometheus writes numbers: integers without a fraction,
 * others in the shortest form that reads back exactly, "+Inf", "-Inf",
 * "NaN". Returns the length (buf is always NUL-terminated). */
int nr_metrics_format_double(char *buf, size_t size, double v);

/* Renders every family in definition order: # HELP, # TYPE, then each
 * series (histograms as cumulative _bucket{le=...}, _sum, _count). Returns
 * a malloc'd NUL-terminated text (the caller frees it) and its length in
 * *len, or NULL (out of memory). */
char *nr_metrics_render(const nr_metrics_t *self, size_t *len);

/* Content-Type of the rendered text. */
#define NR_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
