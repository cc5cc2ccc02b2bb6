/* Unit tests of broker/metrics (registry, histogram buckets, the Prometheus
 * text format) and broker/metrics_http (the /metrics listener, driven in
 * this process over real loopback sockets). The integration check against a
 * real broker is tests/test_metrics_it.c. */
#include "broker/broker_metrics.h"
#include "common/metrics.h"
#include "broker/metrics_http.h"
#include "common/error.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- buckets and numbers ---- */

Test(metrics, bucket_index_boundaries) {
    const double b[] = {0.1, 0.5, 1, 10};
    cr_assert_eq(nr_metrics_bucket_index(b, 4, -1), 0);
    cr_assert_eq(nr_metrics_bucket_index(b, 4, 0), 0);
    cr_assert_eq(nr_metrics_bucket_index(b, 4, 0.1), 0, "a value equal to a bound is in it (le)");
    cr_assert_eq(nr_metrics_bucket_index(b, 4, 0.1000001), 1);
    cr_assert_eq(nr_metrics_bucket_index(b, 4, 0.5), 1);
    cr_assert_eq(nr_metrics_bucket_index(b, 4, 1), 2);
    cr_assert_eq(nr_metrics_bucket_index(b, 4, 9.99), 3);
    cr_assert_eq(nr_metrics_bucket_index(b, 4, 10), 3);
    cr_assert_eq(nr_metrics_bucket_index(b, 4, 10.5), 4, "past the last bound: +Inf");
    cr_assert_eq(nr_metrics_bucket_index(b, 4, INFINITY), 4);
}

Test(metrics, format_double) {
    char buf[64];
    struct {
        double v;
        const char *want;
    } cases[] = {{0, "0"},          {1, "1"},        {-3, "-3"},    {42, "42"},
                 {0.1, "0.1"},      {2.5, "2.5"},    {0.005, "0.005"}, {1e-3, "0.001"},
                 {1.0 / 3, "0.333333333333333"}, {INFINITY, "+Inf"}, {-INFINITY, "-Inf"},
                 {NAN, "NaN"},      {1e20, "1e+20"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nr_metrics_format_double(buf, sizeof buf, cases[i].v);
        if (!strcmp(cases[i].want, "0.333333333333333")) {
            /* Shortest exact form: reads back to the same double. */
            cr_assert_eq(strtod(buf, NULL), cases[i].v, "%s does not read back", buf);
            continue;
        }
        cr_assert_str_eq(buf, cases[i].want, "format(%.17g)", cases[i].v);
    }
    /* Too small a buffer: cut, NUL-terminated. */
    int n = nr_metrics_format_double(buf, 3, 12345);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(buf, "12");
}

/* ---- registry and text format ---- */

Test(metrics, render_exact_text) {
    nr_metrics_t *m = nr_metrics_new();
    cr_assert_not_null(m);
    const double b[] = {0.5, 1};
    cr_assert_eq(nr_metrics_define(m, "t_total", NR_METRIC_COUNTER, "Things done", NULL, 0), 0);
    cr_assert_eq(nr_metrics_define(m, "t_gauge", NR_METRIC_GAUGE, "A level\nwith \\ newline", NULL, 0), 0);
    cr_assert_eq(nr_metrics_define(m, "t_seconds", NR_METRIC_HISTOGRAM, "Durations", b, 2), 0);
    cr_assert_eq(nr_metrics_add(m, "t_total", 1, "stage", "a", NULL), 0);
    cr_assert_eq(nr_metrics_add(m, "t_total", 2, "stage", "a", NULL), 0);
    cr_assert_eq(nr_metrics_add(m, "t_total", 1, "stage", "b\"q\\\n", NULL), 0);
    cr_assert_eq(nr_metrics_set(m, "t_gauge", 7, NULL), 0);
    cr_assert_eq(nr_metrics_add(m, "t_gauge", -2.5, NULL), 0);
    cr_assert_eq(nr_metrics_observe(m, "t_seconds", 0.25, "stage", "a", NULL), 0);
    cr_assert_eq(nr_metrics_observe(m, "t_seconds", 0.5, "stage", "a", NULL), 0);
    cr_assert_eq(nr_metrics_observe(m, "t_seconds", 0.75, "stage", "a", NULL), 0);
    cr_assert_eq(nr_metrics_observe(m, "t_seconds", 3, "stage", "a", NULL), 0);
    size_t len = 0;
    char *text = nr_metrics_render(m, &len);
    cr_assert_not_null(text);
    const char *want =
        "# HELP t_total Things done\n"
        "# TYPE t_total counter\n"
        "t_total{stage=\"a\"} 3\n"
        "t_total{stage=\"b\\\"q\\\\\\n\"} 1\n"
        "# HELP t_gauge A level\\nwith \\\\ newline\n"
        "# TYPE t_gauge gauge\n"
        "t_gauge 4.5\n"
        "# HELP t_seconds Durations\n"
        "# TYPE t_seconds histogram\n"
        "t_seconds_bucket{stage=\"a\",le=\"0.5\"} 2\n"
        "t_seconds_bucket{stage=\"a\",le=\"1\"} 3\n"
        "t_seconds_bucket{stage=\"a\",le=\"+Inf\"} 4\n"
        "t_seconds_sum{stage=\"a\"} 4.5\n"
        "t_seconds_count{stage=\"a\"} 4\n";
    cr_assert_str_eq(text, want);
    cr_assert_eq(len, strlen(want));
    free(text);
    cr_assert_eq(nr_metrics_value(m, "t_total", "stage", "a", NULL), 3);
    cr_assert_eq(nr_metrics_value(m, "t_seconds", "stage", "a", NULL), 4, "histogram: its count");
    cr_assert(isnan(nr_metrics_value(m, "t_total", "stage", "zzz", NULL)));
    cr_assert(isnan(nr_metrics_value(m, "nope", NULL)));
    nr_metrics_destroy(&m);
    nr_metrics_destroy(&m); /* safe twice */
    cr_assert_null(m);
}

Test(metrics, histogram_without_labels_and_two_series) {
    nr_metrics_t *m = nr_metrics_new();
    const double b[] = {1};
    cr_assert_eq(nr_metrics_define(m, "h", NR_METRIC_HISTOGRAM, "h", b, 1), 0);
    nr_metrics_observe(m, "h", 1, NULL);
    nr_metrics_observe(m, "h", 2, NULL);
    char *text = nr_metrics_render(m, NULL);
    cr_assert_str_eq(text, "# HELP h h\n# TYPE h histogram\n"
                           "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n");
    free(text);
    nr_metrics_destroy(&m);
}

Test(metrics, clear_drops_series) {
    nr_metrics_t *m = nr_metrics_new();
    nr_metrics_define(m, "g", NR_METRIC_GAUGE, "g", NULL, 0);
    nr_metrics_set(m, "g", 1, "stage", "a", NULL);
    nr_metrics_set(m, "g", 2, "stage", "b", NULL);
    cr_assert_eq(nr_metrics_clear(m, "g"), 0);
    nr_metrics_set(m, "g", 5, "stage", "b", NULL);
    char *text = nr_metrics_render(m, NULL);
    cr_assert_str_eq(text, "# HELP g g\n# TYPE g gauge\ng{stage=\"b\"} 5\n");
    free(text);
    cr_assert_eq(nr_metrics_clear(m, "missing"), NR_EINVAL);
    nr_metrics_destroy(&m);
}

Test(metrics, bad_use_is_refused) {
    nr_metrics_t *m = nr_metrics_new();
    const double b[] = {1, 2}, bad[] = {2, 1}, dup[] = {1, 1};
    cr_assert_eq(nr_metrics_define(m, "1abc", NR_METRIC_COUNTER, "x", NULL, 0), NR_EINVAL);
    cr_assert_eq(nr_metrics_define(m, "a-b", NR_METRIC_COUNTER, "x", NULL, 0), NR_EINVAL);
    cr_assert_eq(nr_metrics_define(m, "", NR_METRIC_COUNTER, "x", NULL, 0), NR_EINVAL);
    cr_assert_eq(nr_metrics_define(m, "h", NR_METRIC_HISTOGRAM, "x", bad, 2), NR_EINVAL);
    cr_assert_eq(nr_metrics_define(m, "h", NR_METRIC_HISTOGRAM, "x", dup, 2), NR_EINVAL);
    cr_assert_eq(nr_metrics_define(m, "h", NR_METRIC_HISTOGRAM, "x", NULL, 0), NR_EINVAL);
    cr_assert_eq(nr_metrics_define(m, "c", NR_METRIC_COUNTER, "x", b, 2), NR_EINVAL);
    cr_assert_eq(nr_metrics_define(m, "c", NR_METRIC_COUNTER, "x", NULL, 0), 0);
    cr_assert_eq(nr_metrics_define(m, "c", NR_METRIC_GAUGE, "x", NULL, 0), NR_EINVAL, "taken");
    cr_assert_eq(nr_metrics_define(m, "h", NR_METRIC_HISTOGRAM, "x", b, 2), 0);
    cr_assert_eq(nr_metrics_add(m, "c", -1, NULL), NR_EINVAL, "counters only go up");
    cr_assert_eq(nr_metrics_add(m, "c", NAN, NULL), NR_EINVAL);
    cr_assert_eq(nr_metrics_set(m, "c", 1, NULL), NR_EINVAL, "set is for gauges");
    cr_assert_eq(nr_metrics_observe(m, "c", 1, NULL), NR_EINVAL);
    cr_assert_eq(nr_metrics_add(m, "h", 1, NULL), NR_EINVAL);
    cr_assert_eq(nr_metrics_observe(m, "h", 1, "le", "x", NULL), NR_EINVAL, "le is reserved");
    cr_assert_eq(nr_metrics_add(m, "c", 1, "bad-label", "x", NULL), NR_EINVAL);
    cr_assert_eq(nr_metrics_add(m, "c", 1, "__x", "x", NULL), NR_EINVAL);
    cr_assert_eq(nr_metrics_add(m, "c", 1, "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", NULL),
                 NR_EINVAL, "too many labels");
    cr_assert_eq(nr_metrics_add(m, "unknown", 1, NULL), NR_EINVAL);
    /* Nothing was created by the refused calls. */
    char *text = nr_metrics_render(m, NULL);
    cr_assert_str_eq(text, "# HELP c x\n# TYPE c counter\n# HELP h x\n# TYPE h histogram\n");
    free(text);
    nr_metrics_destroy(&m);
    /* A NULL registry is a no-op everywhere (metrics off). */
    cr_assert_eq(nr_metrics_add(NULL, "c", 1, NULL), 0);
    cr_assert_eq(nr_metrics_observe(NULL, "h", 1, NULL), 0);
    cr_assert_eq(nr_metrics_define(NULL, "c", NR_METRIC_COUNTER, "x", NULL, 0), 0);
}

Test(metrics, broker_families_defined) {
    nr_metrics_t *m = nr_metrics_new();
    cr_assert_eq(nr_broker_metrics_define(m), 0);
    cr_assert_eq(nr_broker_metrics_define(m), NR_EINVAL, "defining twice is refused");
    char *text = nr_metrics_render(m, NULL);
    const char *families[] = {"narrator_jobs gauge", "narrator_queue_depth gauge",
                              "narrator_queue_wait_seconds histogram",
                              "narrator_stage_duration_seconds histogram",
                              "narrator_workers gauge", "narrator_retries_total counter",
                              "narrator_failures_total counter",
                              "narrator_redis_errors_total counter",
                              "narrator_messages_rejected_total counter",
                              "narrator_jobs_submitted_total counter", "narrator_redis_up gauge"};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "# TYPE %s\n", families[i]);
        cr_assert_not_null(strstr(text, line), "missing %s", line);
    }
    cr_assert_not_null(strstr(text, "narrator_messages_rejected_total{socket=\"clients\"} 0\n"));
    cr_assert_not_null(strstr(text, "narrator_jobs_submitted_total 0\n"));
    free(text);
    nr_metrics_destroy(&m);
}

/* Every family in broker/METRICS.md and METRICS.md lists every family. */
Test(metrics, metrics_md_documents_every_family) {
    const char *src = getenv("NR_SOURCE_DIR");
    if (!src) cr_skip_test("NR_SOURCE_DIR is not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/broker/METRICS.md", src);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    doc[n] = '\0';
    fclose(f);
    nr_metrics_t *m = nr_metrics_new();
    nr_broker_metrics_define(m);
    char *text = nr_metrics_render(m, NULL);
    for (char *line = strstr(text, "# TYPE "); line; line = strstr(line + 1, "# TYPE ")) {
        char name[128];
        cr_assert_eq(sscanf(line, "# TYPE %127s", name), 1);
        char want[160];
        snprintf(want, sizeof want, "`%s`", name);
        cr_assert_not_null(strstr(doc, want), "METRICS.md does not document %s", name);
    }
    free(text);
    nr_metrics_destroy(&m);
}

/* ---- the HTTP listener ---- */

static int s_renders;

static char *s_render(void *ctx, size_t *len) {
    s_renders++;
    const char *body = ctx;
    *len = strlen(body);
    return strdup(body);
}

static int s_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {0, 20000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends a request and services the listener until the answer is whole. */
static char *s_exchange(nr_metrics_http_t *h, const char *request) {
    int fd = s_connect(nr_metrics_http_port(h));
    cr_assert_eq(send(fd, request, strlen(request), 0), (ssize_t)strlen(request));
    static char buf[65536];
    size_t got = 0;
    for (int i = 0; i < 500; i++) {
        nr_metrics_http_service(h, 0);
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r == 0) break;
        if (r > 0) got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    return buf;
}

Test(metrics_http, answers) {
    char err[256];
    const char *body = "# TYPE x counter\nx 1\n";
    nr_metrics_http_t *h = nr_metrics_http_new("127.0.0.1:0", s_render, (void *)body, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    cr_assert_gt(nr_metrics_http_port(h), 0);

    char *r = s_exchange(h, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    cr_assert_not_null(strstr(r, "Content-Type: " NR_METRICS_CONTENT_TYPE "\r\n"));
    cr_assert_not_null(strstr(r, "Content-Length: 21\r\n"));
    cr_assert_not_null(strstr(r, "\r\n\r\n# TYPE x counter\nx 1\n"));
    cr_assert_eq(s_renders, 1);

    r = s_exchange(h, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "query strings are ignored: %s", r);

    r = s_exchange(h, "HEAD /metrics HTTP/1.1\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17));
    cr_assert_not_null(strstr(r, "Content-Length: 21\r\n"));
    cr_assert(strstr(r, "\r\n\r\n")[4] == '\0', "HEAD has no body");

    r = s_exchange(h, "GET /other HTTP/1.1\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 404 ", 13), "%s", r);
    r = s_exchange(h, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 405 ", 13), "%s", r);
    cr_assert_not_null(strstr(r, "Allow: GET, HEAD\r\n"));
    r = s_exchange(h, "garbage\r\n\r\n");
    cr_assert(!strncmp(r, "HTTP/1.1 400 ", 13), "%s", r);
    cr_assert_eq(nr_metrics_http_served(h), 3);
    cr_assert_eq(nr_metrics_http_busy(h), 0, "every answer closes its connection");
    nr_metrics_http_destroy(&h);
    nr_metrics_http_destroy(&h);
}

Test(metrics_http, oversized_and_slow_requests_are_dropped) {
    char err[256];
    nr_metrics_http_t *h = nr_metrics_http_new("127.0.0.1:0", s_render, (void *)"x", err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    static char big[10000];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "GET /", 5);
    char *r = s_exchange(h, big);
    cr_assert(!strncmp(r, "HTTP/1.1 431 ", 13), "%.40s", r);

    /* Half a request, then silence past the timeout: closed, no answer. */
    int fd = s_connect(nr_metrics_http_port(h));
    send(fd, "GET /metr", 9, 0);
    for (int i = 0; i < 20; i++) nr_metrics_http_service(h, 0);
    cr_assert_eq(nr_metrics_http_busy(h), 1);
    nr_metrics_http_service(h, NR_METRICS_HTTP_TIMEOUT_MS + 1);
    cr_assert_eq(nr_metrics_http_busy(h), 0);
    char c;
    cr_assert_eq(recv(fd, &c, 1, 0), 0, "the peer sees the connection closed");
    close(fd);
    cr_assert_eq(s_renders, 0);
    nr_metrics_http_destroy(&h);
}

Test(metrics_http, too_many_connections_are_closed) {
    char err[256];
    nr_metrics_http_t *h = nr_metrics_http_new("127.0.0.1:0", s_render, (void *)"x", err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    int fds[NR_METRICS_HTTP_CONNS + 2];
    for (int i = 0; i < NR_METRICS_HTTP_CONNS + 2; i++) {
        fds[i] = s_connect(nr_metrics_http_port(h));
        nr_metrics_http_service(h, 0); /* accept as they come (the backlog is short) */
    }
    int fdv[1 + NR_METRICS_HTTP_CONNS], wr[1 + NR_METRICS_HTTP_CONNS];
    cr_assert_eq(nr_metrics_http_fds(h, fdv, wr, 1 + NR_METRICS_HTTP_CONNS),
                 1 + NR_METRICS_HTTP_CONNS, "listener + the most connections at once");
    int closed = 0;
    for (int i = 0; i < NR_METRICS_HTTP_CONNS + 2; i++) {
        char c;
        if (recv(fds[i], &c, 1, 0) == 0) closed++;
        close(fds[i]);
    }
    cr_assert_eq(closed, 2, "the two past the limit are closed at accept");
    nr_metrics_http_destroy(&h);
}

Test(metrics_http, bad_addresses) {
    char err[256];
    cr_assert_null(nr_metrics_http_new("9464", s_render, NULL, err, sizeof err));
    cr_assert_not_null(strstr(err, "host:port"), "%s", err);
    cr_assert_null(nr_metrics_http_new("127.0.0.1:", s_render, NULL, err, sizeof err));
    cr_assert_null(nr_metrics_http_new("127.0.0.1:99999", s_render, NULL, err, sizeof err));
    cr_assert_null(nr_metrics_http_new("[::1:80", s_render, NULL, err, sizeof err));
    cr_assert_null(nr_metrics_http_new("no-such-host.invalid:80", s_render, NULL, err, sizeof err));
    /* A port already taken. */
    nr_metrics_http_t *a = nr_metrics_http_new("127.0.0.1:0", s_render, NULL, err, sizeof err);
    cr_assert_not_null(a);
    char spec[64];
    snprintf(spec, sizeof spec, "127.0.0.1:%d", nr_metrics_http_port(a));
    cr_assert_null(nr_metrics_http_new(spec, s_render, NULL, err, sizeof err));
    cr_assert_not_null(strstr(err, "in use"), "%s", err);
    nr_metrics_http_destroy(&a);
}
