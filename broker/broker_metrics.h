/* The broker's Prometheus metrics (broker/METRICS.md documents each):
 * family names, their definitions, the hooks broker.c calls and the
 * scrape-time collection of gauges. The registry itself is common/metrics.h;
 * the broker's hooks into it are in broker.h (nr_broker_set_metrics). */
#ifndef NR_BROKER_BROKER_METRICS_H
#define NR_BROKER_BROKER_METRICS_H

#include "broker/broker.h"
#include "common/metrics.h"

#include <stddef.h>
#include <stdint.h>


#define NR_BM_JOBS "narrator_jobs"
#define NR_BM_QUEUE_DEPTH "narrator_queue_depth"
#define NR_BM_QUEUE_WAIT "narrator_queue_wait_seconds"
#define NR_BM_STAGE_DURATION "narrator_stage_duration_seconds"
#define NR_BM_WORKERS "narrator_workers"
#define NR_BM_RETRIES "narrator_retries_total"
#define NR_BM_FAILURES "narrator_failures_total"
#define NR_BM_REDIS_ERRORS "narrator_redis_errors_total"
#define NR_BM_REJECTED "narrator_messages_rejected_total"
#define NR_BM_SUBMITTED "narrator_jobs_submitted_total"
#define NR_BM_REDIS_UP "narrator_redis_up"
#define NR_BM_RATE_LIMITED "narrator_rate_limited_total"
#define NR_BM_WORKERS_SET_ASIDE "narrator_workers_set_aside_total"

/* Defines every family above in an empty registry. 0 or a negative code. */
int nr_broker_metrics_define(nr_metrics_t *metrics);

/* Refreshes the gauges before a scrape: jobs by state (queued and running
 * from memory; done, failed, cancelled from the store's counters, or the
 * broker's own counts since start while Redis is down), queue depth and
 * live workers per stage, Redis errors and whether Redis is up. */
void nr_broker_metrics_collect(nr_broker_t *broker, nr_store_t *store, nr_metrics_t *metrics);

#endif
