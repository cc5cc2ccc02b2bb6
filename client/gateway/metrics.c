/* The gateway's Prometheus families (client/gateway/API.md lists them), in
 * a common/metrics.h registry under gw->metrics_lock. Counters that other
 * parts keep (rate-limit refusals, the ring's size) are brought in when
 * GET /metrics renders. */
#include "client/gateway/internal.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>

#define S_REQUESTS "narrator_gateway_requests_total"
#define S_DURATION "narrator_gateway_request_duration_seconds"
#define S_BYTES_IN "narrator_gateway_request_bytes_total"
#define S_BYTES_OUT "narrator_gateway_response_bytes_total"
#define S_BROKER_REQUESTS "narrator_gateway_broker_requests_total"
#define S_BROKER_ERRORS "narrator_gateway_broker_errors_total"
#define S_RATE_LIMITED "narrator_gateway_rate_limited_total"
#define S_RECENT "narrator_gateway_recent_jobs"
#define S_BUFFERED "narrator_gateway_buffered_bytes"
#define S_HEAD_TIMEOUTS "narrator_gateway_head_timeouts_total"
#define S_START_TIME "narrator_gateway_start_time_seconds"

static const double s_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,  0.5,   1.0,  2.5,   5.0,  10.0};

int nr_gw_metrics_init(nr_gateway_t *gw) {
    nr_metrics_t *m = nr_metrics_new();
    if (!m) return NR_ENOMEM;
    int rc = 0;
#define S_DEF(name, type, help, b, n)                                                             \
    if (!rc) rc = nr_metrics_define(m, name, type, help, b, n)
    S_DEF(S_REQUESTS, NR_METRIC_COUNTER,
          "HTTP requests answered, by route, method and status code.", NULL, 0);
    S_DEF(S_DURATION, NR_METRIC_HISTOGRAM,
          "Time from request headers to the end of the response, by route.", s_buckets,
          sizeof s_buckets / sizeof s_buckets[0]);
    S_DEF(S_BYTES_IN, NR_METRIC_COUNTER, "Request body bytes received.", NULL, 0);
    S_DEF(S_BYTES_OUT, NR_METRIC_COUNTER, "Response body bytes sent.", NULL, 0);
    S_DEF(S_BROKER_REQUESTS, NR_METRIC_COUNTER, "Requests sent to narrator-broker.", NULL, 0);
    S_DEF(S_BROKER_ERRORS, NR_METRIC_COUNTER,
          "Broker requests that failed (unreachable, timed_out, busy, ...), by error.", NULL, 0);
    S_DEF(S_RATE_LIMITED, NR_METRIC_COUNTER,
          "POSTs refused with 429 because their client was over client-rate.", NULL, 0);
    S_DEF(S_RECENT, NR_METRIC_GAUGE, "Jobs held in the recent-jobs ring.", NULL, 0);
    S_DEF(S_BUFFERED, NR_METRIC_GAUGE,
          "Request body bytes reserved now by all connections (at most max-buffered-bytes).", NULL, 0);
    S_DEF(S_HEAD_TIMEOUTS, NR_METRIC_COUNTER,
          "Connections closed because their request head took longer than head-timeout-s.", NULL, 0);
    S_DEF(S_START_TIME, NR_METRIC_GAUGE, "Unix time the gateway started.", NULL, 0);
#undef S_DEF
    if (rc) {
        nr_metrics_destroy(&m);
        return rc;
    }
    /* Series that exist from the start, so rate() and alerts see a zero. */
    nr_metrics_add(m, S_BYTES_IN, 0, NULL);
    nr_metrics_add(m, S_BYTES_OUT, 0, NULL);
    nr_metrics_add(m, S_BROKER_REQUESTS, 0, NULL);
    static const int shown[] = {NR_ECONNECT, NR_ETIMEDOUT, NR_EBUSY};
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
        nr_metrics_add(m, S_BROKER_ERRORS, 0, "error", nr_errname(shown[i]), NULL);
    nr_metrics_add(m, S_RATE_LIMITED, 0, NULL);
    nr_metrics_add(m, S_HEAD_TIMEOUTS, 0, NULL);
    nr_metrics_set(m, S_START_TIME, (double)gw->started_ms / 1000.0, NULL);
    gw->metrics = m;
    return 0;
}

void nr_gw_metrics_request(nr_gateway_t *gw, nr_gw_route_t route, nr_gw_method_t method,
                           unsigned status, double seconds, unsigned long long in, size_t out) {
    char code[16];
    snprintf(code, sizeof code, "%u", status);
    const char *r = nr_gw_route_names[route];
    pthread_mutex_lock(&gw->metrics_lock);
    nr_metrics_add(gw->metrics, S_REQUESTS, 1, "route", r, "method", nr_gw_method_names[method],
                   "code", code, NULL);
    nr_metrics_observe(gw->metrics, S_DURATION, seconds, "route", r, NULL);
    nr_metrics_add(gw->metrics, S_BYTES_IN, (double)in, NULL);
    nr_metrics_add(gw->metrics, S_BYTES_OUT, (double)out, NULL);
    pthread_mutex_unlock(&gw->metrics_lock);
}

void nr_gw_metrics_broker(nr_gateway_t *gw, int rc) {
    pthread_mutex_lock(&gw->metrics_lock);
    nr_metrics_add(gw->metrics, S_BROKER_REQUESTS, 1, NULL);
    if (rc < 0 && rc >= NR_ERRNO_MIN && rc != NR_ENOTFOUND && rc != NR_ESTATE)
        nr_metrics_add(gw->metrics, S_BROKER_ERRORS, 1, "error", nr_errname(rc), NULL);
    pthread_mutex_unlock(&gw->metrics_lock);
}

enum MHD_Result nr_gw_handle_metrics(struct MHD_Connection *conn, nr_gw_req_t *req) {
    nr_gateway_t *gw = req->gw;
    double refused = (double)nr_ratelimit_refused(gw->limit);
    double recent = (double)nr_gw_recent_count(gw);
    double buffered = (double)nr_gw_budget_used(gw);
    double head_timeouts = (double)nr_gw_conns_head_timeouts(gw);
    size_t size = 0;
    pthread_mutex_lock(&gw->metrics_lock);
    double have = nr_metrics_value(gw->metrics, S_RATE_LIMITED, NULL);
    if (refused > have) nr_metrics_add(gw->metrics, S_RATE_LIMITED, refused - have, NULL);
    have = nr_metrics_value(gw->metrics, S_HEAD_TIMEOUTS, NULL);
    if (head_timeouts > have) nr_metrics_add(gw->metrics, S_HEAD_TIMEOUTS, head_timeouts - have, NULL);
    nr_metrics_set(gw->metrics, S_BUFFERED, buffered, NULL);
    nr_metrics_set(gw->metrics, S_RECENT, recent, NULL);
    char *text = nr_metrics_render(gw->metrics, &size);
    pthread_mutex_unlock(&gw->metrics_lock);
    if (!text) return MHD_NO;
    return nr_gw_send(conn, req, MHD_HTTP_OK, NR_METRICS_CONTENT_TYPE, text, size, NULL);
}
