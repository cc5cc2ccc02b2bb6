/* The HTTP gateway: libmicrohttpd request handling in front of nr_client.
 *
 * One request goes through s_access() several times: first with its headers
 * (the route, method, options and declared size are checked here and most
 * errors answered at once, before any body is read), then once per chunk of
 * body (bounded by max_body_bytes as it arrives), then a last time to
 * answer. s_completed() records the metrics and frees the request state. */
#include "client/gateway/gateway.h"
#include "client/client.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/utf8.h"
#include "proto/proto.h"
#include "proto/secure.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_ROUTE_IMAGE "vision,text,speech"
#define S_ROUTE_SPEECH "speech"
#define S_VOICE_MAX NR_CLIENT_VOICE_MAX
#define S_BEAMS_MAX NR_CLIENT_BEAMS_MAX
#define S_LENGTH_MAX NR_CLIENT_LENGTH_MAX
#define S_FIELD_MAX 64              /* bytes in a small multipart field */
#define S_NAME_MAX 128              /* bytes of an uploaded file name kept in the ring */
#define S_STATIC_MAX (8u << 20)     /* largest static file served */
#define S_DRAIN_MAX (16u << 20)     /* body bytes read and dropped past the limit */
#define S_PP_BUFFER 65536           /* MHD post processor buffer */
#define S_STATUS_SLOTS 512          /* (route, method, status) counters */
#define S_RETRY_AFTER "1"
#define S_RATE_CLIENTS 65536 /* client IPs tracked by the rate limit at once */
#define S_PROBE_MAX_MS 1000         /* longest handshake probe after an unreachable broker */
#define S_PROBE_KEEP_MS 2000        /* a probe's outcome is reused this long */

/* ---- routes and methods (metric labels) ---- */

typedef enum {
    S_R_PAGE = 0, /* static files, "/" */
    S_R_JOBS,
    S_R_JOB,
    S_R_AUDIO,
    S_R_CAPTION,
    S_R_SPEAK,
    S_R_HEALTHZ,
    S_R_READYZ,
    S_R_METRICS,
    S_R_UNKNOWN,
    S_R_COUNT
} s_route_t;

static const char *const s_route_names[S_R_COUNT] = {
    "static", "/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/audio", "/v1/jobs/{id}/caption",
    "/v1/speak", "/healthz", "/readyz", "/metrics", "unknown"};

typedef enum { S_M_GET = 0, S_M_HEAD, S_M_POST, S_M_DELETE, S_M_OTHER, S_M_COUNT } s_method_t;

static const char *const s_method_names[S_M_COUNT] = {"GET", "HEAD", "POST", "DELETE", "other"};

static const double s_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,  0.5,   1.0,  2.5,   5.0,  10.0};
#define S_NBUCKETS (sizeof s_buckets / sizeof s_buckets[0])

/* ---- the gateway ---- */

typedef struct {
    char id[NR_PROTO_ID_MAX + 1];
    char route[32];
    char name[S_NAME_MAX]; /* uploaded file name, or "" */
    size_t bytes;
    long long submitted_ms;
    int existing;
} s_recent_t;

typedef struct {
    unsigned short route, method, status;
    unsigned long long count;
} s_status_count_t;

typedef struct {
    pthread_mutex_t lock;
    s_status_count_t statuses[S_STATUS_SLOTS];
    size_t n_statuses;
    unsigned long long hist[S_R_COUNT][S_NBUCKETS]; /* per bucket, not cumulative */
    unsigned long long hist_count[S_R_COUNT];
    double hist_sum[S_R_COUNT];
    unsigned long long bytes_in, bytes_out;
    unsigned long long broker_errors[-NR_ERRNO_MIN + 1]; /* by -code */
    unsigned long long broker_requests;
} s_metrics_t;

struct nr_gateway_t {
    nr_gateway_params_t params;
    struct MHD_Daemon *daemon;
    int port;
    long long started_ms;
    pthread_mutex_t lock; /* clients and the recent ring */
    nr_client_t **clients;
    size_t n_clients, cap_clients;
    s_recent_t *recent; /* oldest first */
    size_t n_recent;
    s_metrics_t metrics;
    int locks_ready;
    int curve;                               /* CURVE settings given */
    char curve_public[NR_SECURE_KEY_Z85 + 1]; /* this gateway's public key, for messages */
    nr_gateway_probe_t probe;                /* last handshake probe (under lock) */
    int probe_detail;
    long long probe_ms;                      /* when it ran (monotonic), 0: never */
    nr_ratelimit_t *limit;                   /* POSTs per client IP; NULL: no limit */
};

/* ---- one request ---- */

typedef enum { S_BODY_NONE = 0, S_BODY_RAW, S_BODY_MULTIPART, S_BODY_TEXT } s_body_kind_t;

typedef struct {
    char voice[S_VOICE_MAX + 1];
    long beams, max_length; /* 0: not given */
} s_opts_t;

typedef struct {
    nr_gateway_t *gw;
    s_route_t route;
    s_method_t method;
    char method_text[16]; /* as sent, for messages */
    char id[NR_PROTO_ID_MAX + 1];
    int64_t start_ns; /* monotonic */
    int responded; /* a response is queued */
    int deferred;  /* not a body-taking POST: answered when the request is complete */
    unsigned status;
    size_t bytes_out;
    unsigned long long bytes_in;
    /* body */
    s_body_kind_t body_kind;
    uint8_t *body;
    size_t size, cap;
    int too_big;            /* past max_body_bytes: the rest is dropped */
    unsigned long long dropped;
    s_opts_t opts;
    int opt_status;         /* an option error found while reading the form */
    int opt_code;
    char opt_error[256];
    /* multipart */
    struct MHD_PostProcessor *pp;
    int pp_failed;
    int have_image;
    int image_part_bad_type;
    char image_type[96];
    char name[S_NAME_MAX];
    char field_key[S_FIELD_MAX];
    char field[S_FIELD_MAX + 1];
    size_t field_len;
} s_req_t;

/* ---- small helpers ---- */

static const char *s_or(const char *s, const char *fallback) { return s ? s : fallback; }


/* The HTTP client's IP address as text (the key of its rate limit). */
static const char *s_client_ip(struct MHD_Connection *conn, char *out, size_t size) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = info ? info->client_addr : NULL;
    out[0] = '\0';
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, (socklen_t)size);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, (socklen_t)size);
    if (!out[0]) snprintf(out, size, "unknown");
    return out;
}

/* "image/png; x=y" -> "image/png" into out (lower case). */
static void s_media_type(const char *header, char *out, size_t size) {
    size_t n = 0;
    if (header)
        for (const char *p = header; *p && *p != ';' && n + 1 < size; p++)
            if (*p != ' ' && *p != '\t') out[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    out[n] = '\0';
}

/* JPEG, PNG or WebP magic bytes. */
static int s_sniff_image(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return 1;
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return 1;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return 1;
    return 0;
}

/* Text to speak: valid UTF-8 without a NUL byte. */
static int s_utf8_valid(const uint8_t *s, size_t n) {
    return !memchr(s, 0, n) && nr_utf8_validate(s, n, NULL) == 0;
}

/* ---- metrics ---- */

static void s_metric_status(nr_gateway_t *gw, s_route_t route, s_method_t method, unsigned status,
                            double seconds, unsigned long long in, size_t out) {
    s_metrics_t *m = &gw->metrics;
    pthread_mutex_lock(&m->lock);
    size_t i = 0;
    for (; i < m->n_statuses; i++)
        if (m->statuses[i].route == route && m->statuses[i].method == method &&
            m->statuses[i].status == status)
            break;
    if (i == m->n_statuses && m->n_statuses < S_STATUS_SLOTS) {
        m->statuses[i] = (s_status_count_t){(unsigned short)route, (unsigned short)method,
                                            (unsigned short)status, 0};
        m->n_statuses++;
    }
    if (i < m->n_statuses) m->statuses[i].count++;
    size_t b = 0;
    while (b < S_NBUCKETS && seconds > s_buckets[b]) b++;
    if (b < S_NBUCKETS) m->hist[route][b]++;
    m->hist_count[route]++;
    m->hist_sum[route] += seconds;
    m->bytes_in += in;
    m->bytes_out += out;
    pthread_mutex_unlock(&m->lock);
}

/* Counts a broker request and, when it failed for a reason other than an
 * ordinary answer about the job (not found, wrong state), its error. */
static void s_metric_broker(nr_gateway_t *gw, int rc) {
    s_metrics_t *m = &gw->metrics;
    pthread_mutex_lock(&m->lock);
    m->broker_requests++;
    if (rc < 0 && rc >= NR_ERRNO_MIN && rc != NR_ENOTFOUND && rc != NR_ESTATE) m->broker_errors[-rc]++;
    pthread_mutex_unlock(&m->lock);
}

static char *s_metrics_text(nr_gateway_t *gw, size_t *size) {
    s_metrics_t *m = &gw->metrics;
    nr_buf_t t = {0};
    pthread_mutex_lock(&m->lock);
    nr_buf_printf(&t, "# HELP narrator_gateway_requests_total HTTP requests answered, by route, method "
                   "and status code.\n# TYPE narrator_gateway_requests_total counter\n");
    for (size_t i = 0; i < m->n_statuses; i++)
        nr_buf_printf(&t, "narrator_gateway_requests_total{route=\"%s\",method=\"%s\",code=\"%u\"} %llu\n",
                   s_route_names[m->statuses[i].route], s_method_names[m->statuses[i].method],
                   m->statuses[i].status, m->statuses[i].count);
    nr_buf_printf(&t, "# HELP narrator_gateway_request_duration_seconds Time from request headers to "
                   "the end of the response, by route.\n"
                   "# TYPE narrator_gateway_request_duration_seconds histogram\n");
    for (int r = 0; r < S_R_COUNT; r++) {
        if (!m->hist_count[r]) continue;
        unsigned long long cum = 0;
        for (size_t b = 0; b < S_NBUCKETS; b++) {
            cum += m->hist[r][b];
            nr_buf_printf(&t, "narrator_gateway_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                       s_route_names[r], s_buckets[b], cum);
        }
        nr_buf_printf(&t, "narrator_gateway_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                   s_route_names[r], m->hist_count[r]);
        nr_buf_printf(&t, "narrator_gateway_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                   s_route_names[r], m->hist_sum[r]);
        nr_buf_printf(&t, "narrator_gateway_request_duration_seconds_count{route=\"%s\"} %llu\n",
                   s_route_names[r], m->hist_count[r]);
    }
    nr_buf_printf(&t, "# HELP narrator_gateway_request_bytes_total Request body bytes received.\n"
                   "# TYPE narrator_gateway_request_bytes_total counter\n"
                   "narrator_gateway_request_bytes_total %llu\n",
               m->bytes_in);
    nr_buf_printf(&t, "# HELP narrator_gateway_response_bytes_total Response body bytes sent.\n"
                   "# TYPE narrator_gateway_response_bytes_total counter\n"
                   "narrator_gateway_response_bytes_total %llu\n",
               m->bytes_out);
    nr_buf_printf(&t, "# HELP narrator_gateway_broker_requests_total Requests sent to narrator-broker.\n"
                   "# TYPE narrator_gateway_broker_requests_total counter\n"
                   "narrator_gateway_broker_requests_total %llu\n",
               m->broker_requests);
    nr_buf_printf(&t, "# HELP narrator_gateway_broker_errors_total Broker requests that failed "
                   "(unreachable, timed_out, busy, ...), by error.\n"
                   "# TYPE narrator_gateway_broker_errors_total counter\n");
    static const int shown[] = {NR_ECONNECT, NR_ETIMEDOUT, NR_EBUSY};
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) /* always present, even at 0 */
        nr_buf_printf(&t, "narrator_gateway_broker_errors_total{error=\"%s\"} %llu\n",
                   nr_errname(shown[i]), m->broker_errors[-shown[i]]);
    for (int c = 1; c <= -NR_ERRNO_MIN; c++) {
        if (c == -NR_ECONNECT || c == -NR_ETIMEDOUT || c == -NR_EBUSY || !m->broker_errors[c]) continue;
        nr_buf_printf(&t, "narrator_gateway_broker_errors_total{error=\"%s\"} %llu\n", nr_errname(-c),
                   m->broker_errors[c]);
    }
    pthread_mutex_unlock(&m->lock);
    nr_buf_printf(&t, "# HELP narrator_gateway_rate_limited_total POSTs refused with 429 because their "
                   "client was over client-rate.\n"
                   "# TYPE narrator_gateway_rate_limited_total counter\n"
                   "narrator_gateway_rate_limited_total %ld\n",
               nr_ratelimit_refused(gw->limit));
    pthread_mutex_lock(&gw->lock);
    size_t recent = gw->n_recent;
    pthread_mutex_unlock(&gw->lock);
    nr_buf_printf(&t, "# HELP narrator_gateway_recent_jobs Jobs held in the recent-jobs ring.\n"
                   "# TYPE narrator_gateway_recent_jobs gauge\nnarrator_gateway_recent_jobs %zu\n",
               recent);
    nr_buf_printf(&t, "# HELP narrator_gateway_start_time_seconds Unix time the gateway started.\n"
                   "# TYPE narrator_gateway_start_time_seconds gauge\n"
                   "narrator_gateway_start_time_seconds %lld.%03lld\n",
               gw->started_ms / 1000, gw->started_ms % 1000);
    return nr_buf_take(&t, size);
}

/* ---- per-thread broker clients ---- */

static _Thread_local nr_client_t *s_tls_client;
static _Thread_local const nr_gateway_t *s_tls_owner;
static _Thread_local char s_tls_client_err[600]; /* why this thread has no client */
static _Thread_local int s_tls_client_code;       /* and its code */

/* This thread's client, made on first use with the gateway's CURVE
 * settings; NULL when none can be made (the reason in s_tls_client_err). */
static nr_client_t *s_client(nr_gateway_t *gw) {
    if (s_tls_client && s_tls_owner == gw) return s_tls_client;
    snprintf(s_tls_client_err, sizeof s_tls_client_err, "out of memory");
    s_tls_client_code = NR_ENOMEM;
    nr_client_t *c = nr_client_new(gw->params.broker_endpoint, gw->params.request_timeout_ms);
    if (!c) return NULL;
    if (gw->curve &&
        nr_client_set_curve(c, gw->params.curve_server_key, gw->params.curve_secret_key_file) != 0) {
        /* The keys were checked at start: a key file changed since. */
        snprintf(s_tls_client_err, sizeof s_tls_client_err, "CURVE settings: %s", nr_client_error(c));
        s_tls_client_code = NR_EINVAL;
        nr_log(NR_LOG_ERROR, "cannot make a broker client: %s", s_tls_client_err);
        nr_client_destroy(&c);
        return NULL;
    }
    pthread_mutex_lock(&gw->lock);
    if (gw->n_clients == gw->cap_clients) {
        size_t cap = gw->cap_clients ? gw->cap_clients * 2 : 8;
        nr_client_t **p = realloc(gw->clients, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&gw->lock);
            nr_client_destroy(&c);
            return NULL;
        }
        gw->clients = p;
        gw->cap_clients = cap;
    }
    gw->clients[gw->n_clients++] = c;
    pthread_mutex_unlock(&gw->lock);
    s_tls_client = c;
    s_tls_owner = gw;
    return c;
}

/* ---- the recent-jobs ring ---- */

static void s_recent_add(nr_gateway_t *gw, const char *id, const char *route, const char *name,
                         size_t bytes, int existing) {
    size_t max = (size_t)gw->params.recent_jobs;
    pthread_mutex_lock(&gw->lock);
    for (size_t i = 0; i < gw->n_recent; i++)
        if (!strcmp(gw->recent[i].id, id)) { /* resubmitted: move it to the newest end */
            memmove(&gw->recent[i], &gw->recent[i + 1], (gw->n_recent - i - 1) * sizeof *gw->recent);
            gw->n_recent--;
            break;
        }
    if (gw->n_recent == max) {
        memmove(&gw->recent[0], &gw->recent[1], (max - 1) * sizeof *gw->recent);
        gw->n_recent--;
    }
    s_recent_t *e = &gw->recent[gw->n_recent++];
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", id);
    snprintf(e->route, sizeof e->route, "%s", route);
    snprintf(e->name, sizeof e->name, "%s", name ? name : "");
    e->bytes = bytes;
    e->submitted_ms = nr_clock_wall_ms();
    e->existing = existing;
    pthread_mutex_unlock(&gw->lock);
}

/* ---- responses ---- */

static void s_add_common_headers(struct MHD_Response *r) {
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
}

/* Queues `data` (malloc'd; taken, also on failure) with status and type. */
static enum MHD_Result s_send(struct MHD_Connection *conn, s_req_t *req, unsigned status,
                              const char *type, void *data, size_t size, const char *const *headers) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(size, data ? data : (void *)"", data ? MHD_RESPMEM_MUST_FREE
                                                                            : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    if (type) MHD_add_response_header(r, "Content-Type", type);
    s_add_common_headers(r);
    for (int i = 0; headers && headers[i] && headers[i + 1]; i += 2)
        MHD_add_response_header(r, headers[i], headers[i + 1]);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    if (rc == MHD_YES) {
        req->responded = 1;
        req->status = status;
        req->bytes_out = size;
    }
    return rc;
}

static enum MHD_Result s_send_json(struct MHD_Connection *conn, s_req_t *req, unsigned status,
                                   cJSON *json, const char *const *headers) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text) return MHD_NO;
    size_t n = strlen(text);
    char *body = realloc(text, n + 2);
    if (!body) {
        free(text);
        return MHD_NO;
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    return s_send(conn, req, status, "application/json", body, n + 1, headers);
}

/* {"error": wire name of code, "message": ...} with the given status. */
static enum MHD_Result s_send_error(struct MHD_Connection *conn, s_req_t *req, unsigned status,
                                    int code, const char *const *headers, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result s_send_error(struct MHD_Connection *conn, s_req_t *req, unsigned status,
                                    int code, const char *const *headers, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject();
    if (!j) return MHD_NO;
    if (req->route == S_R_READYZ) cJSON_AddBoolToObject(j, "ready", 0); /* for probes that read it */
    cJSON_AddStringToObject(j, "error", nr_errname(code));
    cJSON_AddStringToObject(j, "message", msg);
    if (status >= 500) nr_log(NR_LOG_WARN, "%u %s: %s", status, nr_errname(code), msg);
    else nr_log(NR_LOG_DEBUG, "%u %s: %s", status, nr_errname(code), msg);
    return s_send_json(conn, req, status, j, headers);
}

/* 503 when this thread could not make its broker client. */
static enum MHD_Result s_no_client(struct MHD_Connection *conn, s_req_t *req) {
    return s_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE,
                        s_tls_client_code ? s_tls_client_code : NR_ENOMEM, NULL,
                        "cannot make a broker client: %s", s_tls_client_err);
}

/* The reason an unreachable broker is unreachable, as a sentence for the
 * 503 (see nr_gateway_probe). The probe's outcome is kept S_PROBE_KEEP_MS,
 * so a burst of failing requests probes once. */
static void s_unreachable_message(nr_gateway_t *gw, char *msg, size_t size) {
    const nr_gateway_params_t *p = &gw->params;
    long long now = nr_clock_mono_ms();
    pthread_mutex_lock(&gw->lock);
    int fresh = gw->probe_ms && now - gw->probe_ms < S_PROBE_KEEP_MS;
    nr_gateway_probe_t probe = gw->probe;
    int detail = gw->probe_detail;
    pthread_mutex_unlock(&gw->lock);
    if (!fresh) {
        int ms = p->request_timeout_ms < S_PROBE_MAX_MS ? p->request_timeout_ms : S_PROBE_MAX_MS;
        probe = nr_gateway_probe(p->broker_endpoint, p->curve_server_key, p->curve_secret_key_file, ms,
                                 &detail);
        pthread_mutex_lock(&gw->lock);
        gw->probe = probe;
        gw->probe_detail = detail;
        gw->probe_ms = nr_clock_mono_ms();
        pthread_mutex_unlock(&gw->lock);
    }
    switch (probe) {
    case NR_GATEWAY_PROBE_REFUSED:
        snprintf(msg, size,
                 "narrator-broker at %s refused this gateway's CURVE key %s (ZAP status %d): put the "
                 "gateway's .pub file in the broker's curve-allow-dir",
                 p->broker_endpoint, gw->curve_public, detail);
        break;
    case NR_GATEWAY_PROBE_MECHANISM:
        if (gw->curve)
            snprintf(msg, size,
                     "narrator-broker at %s refused this gateway's CURVE handshake: the broker does "
                     "not use CURVE (start it with curve-secret-key-file and curve-allow-dir, or "
                     "unset the gateway's curve settings)",
                     p->broker_endpoint);
        else
            snprintf(msg, size,
                     "narrator-broker at %s refused this gateway: the broker requires CURVE (set the "
                     "gateway's curve-server-key and curve-secret-key-file; see SECURITY.md)",
                     p->broker_endpoint);
        break;
    case NR_GATEWAY_PROBE_HANDSHAKE:
        if (gw->curve)
            snprintf(msg, size,
                     "narrator-broker at %s closed the connection during the CURVE handshake: is "
                     "curve-server-key (%s) the broker's public key?",
                     p->broker_endpoint, p->curve_server_key);
        else
            snprintf(msg, size,
                     "narrator-broker at %s closed the connection during the handshake: does it "
                     "require CURVE (curve-server-key, curve-secret-key-file)?",
                     p->broker_endpoint);
        break;
    default:
        snprintf(msg, size, "cannot reach narrator-broker at %s: is it running?", p->broker_endpoint);
        break;
    }
}

/* Answers a failed broker request: the HTTP status that fits its code. */
static enum MHD_Result s_send_broker_error(struct MHD_Connection *conn, s_req_t *req, int rc,
                                           const char *what) {
    nr_gateway_t *gw = req->gw;
    static const char *const retry[] = {"Retry-After", S_RETRY_AFTER, NULL};
    nr_client_t *c = s_tls_owner == gw ? s_tls_client : NULL;
    const char *detail = c ? nr_client_error(c) : "";
    switch (rc) {
    case NR_ECONNECT: {
        char msg[1024];
        s_unreachable_message(gw, msg, sizeof msg);
        return s_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, rc, retry, "%s", msg);
    }
    case NR_ETIMEDOUT:
        return s_send_error(conn, req, MHD_HTTP_GATEWAY_TIMEOUT, rc, NULL,
                            "narrator-broker at %s did not answer %s within %d ms: is it running "
                            "and not overloaded?",
                            gw->params.broker_endpoint, what, gw->params.request_timeout_ms);
    case NR_EBUSY:
        return s_send_error(conn, req, MHD_HTTP_TOO_MANY_REQUESTS, rc, retry,
                            "the queue is full, retry later: %s", detail);
    case NR_EREDIS:
        return s_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, rc, retry,
                            "narrator-broker cannot reach its Redis: %s", detail);
    case NR_ENOTFOUND:
        return s_send_error(conn, req, MHD_HTTP_NOT_FOUND, rc, NULL, "no job '%s'", req->id);
    case NR_ESTATE:
        return s_send_error(conn, req, MHD_HTTP_CONFLICT, rc, NULL, "%s", detail);
    case NR_EINVAL:
    case NR_EOPTION:
        return s_send_error(conn, req, MHD_HTTP_BAD_REQUEST, rc, NULL, "%s", detail);
    case NR_ETOOBIG:
        return s_send_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, rc, NULL, "%s", detail);
    case NR_ENOMEM:
        return s_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, rc, retry,
                            "out of memory while asking the broker (%s)", what);
    default:
        return s_send_error(conn, req, MHD_HTTP_BAD_GATEWAY, rc, NULL,
                            "narrator-broker at %s answered %s with an error: %s",
                            gw->params.broker_endpoint, what, *detail ? detail : nr_strerror(rc));
    }
}

/* ---- job records as JSON ---- */

static int s_is_number_key(const char *key) {
    static const char *const keys[] = {"attempts", "created_ms", "updated_ms", "stage_workers",
                                       "ms", "duration_ms", "sample_rate", "tokens", NULL};
    for (int i = 0; keys[i]; i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

static void s_add_value(cJSON *obj, const char *key, const char *value) {
    if (s_is_number_key(key)) {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (!errno && end != value && *end == '\0') {
            cJSON_AddNumberToObject(obj, key, (double)v);
            return;
        }
    }
    cJSON_AddStringToObject(obj, key, value);
}

static cJSON *s_child(cJSON *parent, const char *key) {
    cJSON *c = cJSON_GetObjectItemCaseSensitive(parent, key);
    if (!c) c = cJSON_AddObjectToObject(parent, key);
    return c;
}

static long long s_kv_ll(const nr_msg_t *m, const char *key) {
    const char *v = nr_proto_kv_get(m, key);
    return v ? strtoll(v, NULL, 10) : -1;
}

/* The job record of a broker REPLY as the API's JSON object. */
static cJSON *s_record_json(const nr_msg_t *rec, const char *fallback_id) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    nr_client_record_t r;
    nr_client_record(rec, &r);
    const char *id = r.id && *r.id ? r.id : fallback_id;
    const char *state = r.state, *route = r.route, *error = r.error;
    const char *error_message = r.error_message, *caption = r.caption;
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "state", state ? state : "unknown");
    if (r.stage) cJSON_AddStringToObject(j, "stage", r.stage);
    cJSON *stages_list = cJSON_AddArrayToObject(j, "route");
    if (route && stages_list) {
        char buf[300];
        snprintf(buf, sizeof buf, "%s", route);
        for (char *save = NULL, *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save))
            cJSON_AddItemToArray(stages_list, cJSON_CreateString(s));
    }
    if (nr_proto_kv_get(rec, "existing")) cJSON_AddBoolToObject(j, "existing", r.existing);
    if (error && *error) cJSON_AddStringToObject(j, "error", error);
    else cJSON_AddNullToObject(j, "error");
    if (error_message && *error_message) cJSON_AddStringToObject(j, "error_message", error_message);
    else cJSON_AddNullToObject(j, "error_message");
    if (caption) cJSON_AddStringToObject(j, "caption", caption);
    else cJSON_AddNullToObject(j, "caption");
    cJSON *options = cJSON_AddObjectToObject(j, "options");
    cJSON *stages = cJSON_AddObjectToObject(j, "stages");
    for (uint32_t i = 0; i < rec->kv_len; i++) {
        const char *k = rec->kv[i].key, *v = rec->kv[i].value;
        const char *dot = strchr(k, '.');
        if (!strcmp(k, "id") || !strcmp(k, "state") || !strcmp(k, "route") || !strcmp(k, "error") ||
            !strcmp(k, "error_message") || !strcmp(k, "existing") || !strcmp(k, "stage"))
            continue;
        if (!strncmp(k, "opt.", 4)) {
            if (options) cJSON_AddStringToObject(options, k + 4, v);
        } else if (dot && dot != k && dot[1]) {
            char name[NR_PROTO_KEY_MAX + 1];
            size_t n = (size_t)(dot - k);
            memcpy(name, k, n);
            name[n] = '\0';
            cJSON *s = stages ? s_child(stages, name) : NULL;
            if (s) s_add_value(s, dot + 1, v);
        } else {
            s_add_value(j, k, v);
        }
    }
    /* Timings: each stage's worker-side ms, and the wall time of a final job. */
    cJSON *timings = cJSON_AddObjectToObject(j, "timings");
    if (timings && route) {
        char buf[300];
        snprintf(buf, sizeof buf, "%s", route);
        for (char *save = NULL, *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            char key[NR_PROTO_KEY_MAX + 8], name[NR_PROTO_KEY_MAX + 8];
            snprintf(key, sizeof key, "%s.ms", s);
            long long ms = s_kv_ll(rec, key);
            snprintf(name, sizeof name, "%s_ms", s);
            if (ms >= 0) cJSON_AddNumberToObject(timings, name, (double)ms);
        }
        if (r.created_ms > 0 && r.updated_ms >= r.created_ms && r.final)
            cJSON_AddNumberToObject(timings, "total_ms", (double)(r.updated_ms - r.created_ms));
    }
    cJSON *links = cJSON_AddObjectToObject(j, "links");
    if (links) {
        char url[128];
        snprintf(url, sizeof url, "/v1/jobs/%s", id);
        cJSON_AddStringToObject(links, "self", url);
        if (route && strstr(route, "speech")) {
            snprintf(url, sizeof url, "/v1/jobs/%s/audio", id);
            cJSON_AddStringToObject(links, "audio", url);
        }
        if (route && strstr(route, "text")) {
            snprintf(url, sizeof url, "/v1/jobs/%s/caption", id);
            cJSON_AddStringToObject(links, "caption", url);
        }
    }
    return j;
}

/* ---- options ---- */

/* Parses one option (query argument or form field). 0, or an HTTP status
 * with the message in req->opt_error. */
static int s_option(s_req_t *req, const char *key, const char *value, int allow_image_opts) {
    s_opts_t *o = &req->opts;
    if (!value) value = "";
    if (!strcmp(key, "voice")) {
        if (!nr_client_voice_valid(value)) {
            snprintf(req->opt_error, sizeof req->opt_error,
                     "option 'voice' must be 1..%d letters, digits, '_', '-' or '.'", S_VOICE_MAX);
            return MHD_HTTP_BAD_REQUEST;
        }
        snprintf(o->voice, sizeof o->voice, "%s", value);
        return 0;
    }
    long *target = NULL, max = 0;
    if (allow_image_opts && !strcmp(key, "beams")) target = &o->beams, max = S_BEAMS_MAX;
    else if (allow_image_opts && !strcmp(key, "max_length")) target = &o->max_length, max = S_LENGTH_MAX;
    if (!target) {
        snprintf(req->opt_error, sizeof req->opt_error, "unknown option '%.64s' (known: %s)", key,
                 allow_image_opts ? "voice, beams, max_length" : "voice");
        return MHD_HTTP_BAD_REQUEST;
    }
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < 1 || v > max) {
        snprintf(req->opt_error, sizeof req->opt_error,
                 "option '%s' must be a whole number in 1..%ld, got '%.32s'", key, max, value);
        return MHD_HTTP_BAD_REQUEST;
    }
    *target = v;
    return 0;
}

static enum MHD_Result s_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    (void)kind;
    s_req_t *req = cls;
    if (req->opt_status) return MHD_NO;
    req->opt_status = s_option(req, key, value, req->route == S_R_JOBS);
    return req->opt_status ? MHD_NO : MHD_YES;
}

/* ---- request bodies ---- */

/* Appends to the body buffer; past max_body_bytes sets too_big instead. */
static int s_body_append(s_req_t *req, const char *data, size_t size) {
    size_t max = req->gw->params.max_body_bytes;
    if (req->too_big || size > max - req->size) {
        req->too_big = 1;
        return 0;
    }
    if (req->size + size > req->cap) {
        size_t cap = req->cap ? req->cap : 65536;
        while (cap < req->size + size) cap *= 2;
        if (cap > max) cap = max;
        uint8_t *p = realloc(req->body, cap);
        if (!p) return NR_ENOMEM;
        req->body = p;
        req->cap = cap;
    }
    memcpy(req->body + req->size, data, size);
    req->size += size;
    return 0;
}

/* Parses the small form field gathered so far, if any. 0 or an HTTP status. */
static int s_flush_field(s_req_t *req) {
    if (!req->field_key[0]) return 0;
    req->field[req->field_len] = '\0';
    int st = s_option(req, req->field_key, req->field, 1);
    req->field_key[0] = '\0';
    req->field_len = 0;
    return st;
}

static enum MHD_Result s_post_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data, uint64_t off,
                                    size_t size) {
    (void)kind;
    (void)transfer_encoding;
    s_req_t *req = cls;
    if (!key) return MHD_YES;
    if (!strcmp(key, "image")) {
        if ((req->opt_status = s_flush_field(req))) return MHD_NO;
        if (off == 0 && (req->size == 0 && !req->have_image)) {
            req->have_image = 1;
            s_media_type(content_type, req->image_type, sizeof req->image_type);
            if (filename) {
                size_t n = 0;
                for (const char *p = filename; *p && n + 1 < sizeof req->name; p++)
                    req->name[n++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '_' : *p;
                req->name[n] = '\0';
            }
        } else if (off == 0 && req->have_image && size > 0 && req->size > 0) {
            req->opt_status = MHD_HTTP_BAD_REQUEST;
            req->opt_code = NR_EINVAL;
            snprintf(req->opt_error, sizeof req->opt_error, "the form has more than one 'image' field");
            return MHD_NO;
        }
        if (size && s_body_append(req, data, size)) return MHD_NO;
        return MHD_YES;
    }
    /* A small option field: gather its value, parse it when the next field starts. */
    if (strcmp(key, req->field_key)) {
        if ((req->opt_status = s_flush_field(req))) return MHD_NO;
        if (strcmp(key, "voice") && strcmp(key, "beams") && strcmp(key, "max_length")) {
            req->opt_status = MHD_HTTP_BAD_REQUEST;
            snprintf(req->opt_error, sizeof req->opt_error,
                     "unknown form field '%.64s' (known: image, voice, beams, max_length)", key);
            return MHD_NO;
        }
        snprintf(req->field_key, sizeof req->field_key, "%s", key);
        req->field_len = 0;
    }
    if (size > S_FIELD_MAX - req->field_len) {
        req->opt_status = MHD_HTTP_BAD_REQUEST;
        snprintf(req->opt_error, sizeof req->opt_error, "form field '%.64s' is longer than %d bytes",
                 key, S_FIELD_MAX);
        return MHD_NO;
    }
    memcpy(req->field + req->field_len, data, size);
    req->field_len += size;
    return MHD_YES;
}

/* ---- handlers ---- */

static enum MHD_Result s_allow(struct MHD_Connection *conn, s_req_t *req, const char *allow) {
    const char *const h[] = {"Allow", allow, NULL};
    return s_send_error(conn, req, MHD_HTTP_METHOD_NOT_ALLOWED, NR_EUNSUPPORTED, h,
                        "method %s is not allowed on %s (allowed: %s)", req->method_text,
                        s_route_names[req->route], allow);
}

static enum MHD_Result s_handle_healthz(struct MHD_Connection *conn, s_req_t *req) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return MHD_NO;
    cJSON_AddStringToObject(j, "status", "ok");
    cJSON_AddStringToObject(j, "broker", req->gw->params.broker_endpoint);
    cJSON_AddNumberToObject(j, "max_body_bytes", (double)req->gw->params.max_body_bytes);
    cJSON_AddNumberToObject(j, "uptime_s", (double)((nr_clock_wall_ms() - req->gw->started_ms) / 1000));
    return s_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

static enum MHD_Result s_handle_readyz(struct MHD_Connection *conn, s_req_t *req) {
    nr_client_t *c = s_client(req->gw);
    if (!c) return s_no_client(conn, req);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_stats(c, &reply);
    s_metric_broker(req->gw, rc);
    if (rc) {
        nr_proto_msg_clear(&reply);
        return s_send_broker_error(conn, req, rc, "STATS");
    }
    cJSON *j = cJSON_CreateObject();
    if (!j) {
        nr_proto_msg_clear(&reply);
        return MHD_NO;
    }
    cJSON_AddBoolToObject(j, "ready", 1);
    cJSON_AddStringToObject(j, "broker", req->gw->params.broker_endpoint);
    cJSON *workers = cJSON_AddObjectToObject(j, "workers");
    cJSON *queues = cJSON_AddObjectToObject(j, "queues");
    cJSON *jobs = cJSON_AddObjectToObject(j, "jobs");
    static const char *const known[] = {"vision", "text", "speech"};
    for (int i = 0; i < 3; i++) { /* the stages of the gateway's routes, even when 0 */
        char key[64];
        snprintf(key, sizeof key, "workers.%s", known[i]);
        cJSON_AddNumberToObject(workers, known[i], (double)(s_kv_ll(&reply, key) > 0 ? s_kv_ll(&reply, key) : 0));
    }
    for (uint32_t i = 0; i < reply.kv_len; i++) {
        const char *k = reply.kv[i].key, *v = reply.kv[i].value;
        cJSON *into = !strncmp(k, "workers.", 8) ? workers
                      : !strncmp(k, "queue.", 6) ? queues
                      : !strncmp(k, "jobs.", 5)  ? jobs
                                                 : NULL;
        if (!into) continue;
        const char *name = strchr(k, '.') + 1;
        cJSON_DeleteItemFromObjectCaseSensitive(into, name);
        cJSON_AddNumberToObject(into, name, (double)strtoll(v, NULL, 10));
    }
    cJSON *missing = cJSON_AddArrayToObject(j, "stages_without_workers");
    for (int i = 0; i < 3; i++) {
        cJSON *n = cJSON_GetObjectItemCaseSensitive(workers, known[i]);
        if (!n || n->valuedouble <= 0) cJSON_AddItemToArray(missing, cJSON_CreateString(known[i]));
    }
    nr_proto_msg_clear(&reply);
    return s_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

static enum MHD_Result s_handle_metrics(struct MHD_Connection *conn, s_req_t *req) {
    size_t size = 0;
    char *text = s_metrics_text(req->gw, &size);
    if (!text) return MHD_NO;
    return s_send(conn, req, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, size,
                  NULL);
}

static enum MHD_Result s_handle_list(struct MHD_Connection *conn, s_req_t *req) {
    nr_gateway_t *gw = req->gw;
    cJSON *j = cJSON_CreateObject();
    if (!j) return MHD_NO;
    cJSON *arr = cJSON_AddArrayToObject(j, "jobs");
    pthread_mutex_lock(&gw->lock);
    for (size_t i = gw->n_recent; i-- > 0;) { /* newest first */
        const s_recent_t *e = &gw->recent[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        char url[96];
        cJSON_AddStringToObject(o, "id", e->id);
        cJSON_AddStringToObject(o, "route", e->route);
        if (e->name[0]) cJSON_AddStringToObject(o, "name", e->name);
        cJSON_AddNumberToObject(o, "bytes", (double)e->bytes);
        cJSON_AddNumberToObject(o, "submitted_ms", (double)e->submitted_ms);
        cJSON_AddBoolToObject(o, "existing", e->existing);
        snprintf(url, sizeof url, "/v1/jobs/%s", e->id);
        cJSON_AddStringToObject(o, "url", url);
        cJSON_AddItemToArray(arr, o);
    }
    pthread_mutex_unlock(&gw->lock);
    cJSON_AddNumberToObject(j, "limit", gw->params.recent_jobs);
    cJSON_AddStringToObject(j, "note", "jobs submitted through this gateway process, newest first; "
                                       "an in-memory ring, emptied when the gateway restarts");
    return s_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

static enum MHD_Result s_handle_status(struct MHD_Connection *conn, s_req_t *req) {
    nr_client_t *c = s_client(req->gw);
    if (!c) return s_no_client(conn, req);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = req->method == S_M_DELETE ? nr_client_cancel(c, req->id, &reply)
                                       : nr_client_status(c, req->id, &reply);
    s_metric_broker(req->gw, rc);
    if (rc == NR_ESTATE) {
        char state[32];
        snprintf(state, sizeof state, "%s", s_or(nr_proto_kv_get(&reply, "state"), "final"));
        nr_proto_msg_clear(&reply);
        return s_send_error(conn, req, MHD_HTTP_CONFLICT, rc, NULL,
                            "job '%s' is already %s and cannot be cancelled", req->id, state);
    }
    if (rc) {
        nr_proto_msg_clear(&reply);
        return s_send_broker_error(conn, req, rc, req->method == S_M_DELETE ? "CANCEL" : "STATUS");
    }
    cJSON *j = s_record_json(&reply, req->id);
    nr_proto_msg_clear(&reply);
    return s_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

/* 409 for a job that is not done (yet): says what state it is in. */
static enum MHD_Result s_not_done(struct MHD_Connection *conn, s_req_t *req, const nr_msg_t *rec,
                                  const char *what) {
    nr_client_record_t r;
    nr_client_record(rec, &r);
    const char *state = r.state, *error = r.error, *msg = r.error_message, *stage = r.stage;
    if (state && (!strcmp(state, "failed") || !strcmp(state, "cancelled")))
        return s_send_error(conn, req, MHD_HTTP_CONFLICT, NR_ESTATE, NULL,
                            "job '%s' is %s (%s%s%s): it has no %s", req->id, state,
                            error && *error ? error : state, msg && *msg ? ": " : "", msg ? msg : "",
                            what);
    static const char *const retry[] = {"Retry-After", S_RETRY_AFTER, NULL};
    return s_send_error(conn, req, MHD_HTTP_CONFLICT, NR_ESTATE, retry,
                        "job '%s' is %s (stage %s): its %s is ready when the job is done", req->id,
                        state ? state : "unknown", stage ? stage : "?", what);
}

/* A Range header of one byte range over `size` bytes: 1 with the inclusive
 * [*first, *last], 0 when there is none or it is not one we serve (several
 * ranges, another unit, malformed: the whole file is sent), -1 when it is
 * unsatisfiable (starts past the end). */
static int s_parse_range(const char *header, size_t size, size_t *first, size_t *last) {
    if (!header || strncmp(header, "bytes=", 6) || strchr(header, ',')) return 0;
    const char *p = header + 6;
    char *end;
    if (*p == '-') { /* the last N bytes */
        errno = 0;
        unsigned long long n = strtoull(p + 1, &end, 10);
        if (errno || end == p + 1 || *end) return 0;
        if (n == 0 || size == 0) return -1;
        *first = n >= size ? 0 : size - (size_t)n;
        *last = size - 1;
        return 1;
    }
    if (*p < '0' || *p > '9') return 0;
    errno = 0;
    unsigned long long a = strtoull(p, &end, 10);
    if (errno || *end != '-') return 0;
    p = end + 1;
    unsigned long long b = (unsigned long long)size - 1;
    if (*p) {
        b = strtoull(p, &end, 10);
        if (errno || *end || b < a) return 0;
    }
    if (a >= size) return -1;
    if (b >= size) b = size - 1;
    *first = (size_t)a;
    *last = (size_t)b;
    return 1;
}

/* STATUS of req->id into *reply (initialized here). Returns the client, or
 * NULL when there is none or the broker said no: then the error response is
 * already queued in *ret and *reply is cleared. */
static nr_client_t *s_job_status(struct MHD_Connection *conn, s_req_t *req, nr_msg_t *reply,
                                 enum MHD_Result *ret) {
    nr_proto_msg_init(reply);
    nr_client_t *c = s_client(req->gw);
    if (!c) {
        *ret = s_no_client(conn, req);
        return NULL;
    }
    int rc = nr_client_status(c, req->id, reply);
    s_metric_broker(req->gw, rc);
    if (rc) {
        nr_proto_msg_clear(reply);
        *ret = s_send_broker_error(conn, req, rc, "STATUS");
        return NULL;
    }
    return c;
}

static enum MHD_Result s_handle_audio(struct MHD_Connection *conn, s_req_t *req) {
    nr_msg_t reply;
    enum MHD_Result ret;
    nr_client_t *c = s_job_status(conn, req, &reply, &ret);
    if (!c) return ret;
    const char *route = nr_proto_kv_get(&reply, "route");
    const char *state = nr_proto_kv_get(&reply, "state");
    if (route && !strstr(route, "speech")) {
        ret = s_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL,
                           "job '%s' has no speech stage (route %s)", req->id, route);
    } else if (!state || strcmp(state, "done")) {
        ret = s_not_done(conn, req, &reply, "audio");
    } else {
        int rc = nr_client_fetch(c, req->id, "speech", &reply);
        s_metric_broker(req->gw, rc);
        if (rc) {
            ret = rc == NR_ENOTFOUND
                      ? s_send_error(conn, req, MHD_HTTP_GONE, NR_ENOTFOUND, NULL,
                                     "the audio of job '%s' is no longer stored (retention "
                                     "passed): submit it again",
                                     req->id)
                      : s_send_broker_error(conn, req, rc, "FETCH");
        } else if (reply.frames_len == 0) {
            ret = s_send_error(conn, req, MHD_HTTP_BAD_GATEWAY, NR_EPROTO, NULL,
                               "the broker sent no audio for job '%s'", req->id);
        } else {
            uint8_t *wav = reply.frames[0].data;
            size_t size = reply.frames[0].size;
            reply.frames[0].data = NULL; /* the response owns it now */
            reply.frames[0].size = 0;
            char disposition[160], content_range[96];
            snprintf(disposition, sizeof disposition, "inline; filename=\"%s.wav\"", req->id);
            size_t first = 0, last = 0;
            int range = s_parse_range(
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE), size,
                &first, &last);
            if (range < 0) {
                free(wav);
                snprintf(content_range, sizeof content_range, "bytes */%zu", size);
                const char *const h[] = {"Content-Range", content_range, NULL};
                ret = s_send_error(conn, req, MHD_HTTP_RANGE_NOT_SATISFIABLE, NR_EINVAL, h,
                                   "the audio of job '%s' has %zu bytes: the range asked for is "
                                   "outside it",
                                   req->id, size);
            } else if (range > 0) {
                /* One byte range (what media elements ask for): 206 with that slice. */
                size_t n = last - first + 1;
                memmove(wav, wav + first, n);
                snprintf(content_range, sizeof content_range, "bytes %zu-%zu/%zu", first, last, size);
                const char *const h[] = {"Content-Disposition", disposition, "Accept-Ranges", "bytes",
                                         "Content-Range", content_range, NULL};
                ret = s_send(conn, req, MHD_HTTP_PARTIAL_CONTENT, "audio/wav", wav, n, h);
            } else {
                const char *const h[] = {"Content-Disposition", disposition, "Accept-Ranges", "bytes",
                                         NULL};
                ret = s_send(conn, req, MHD_HTTP_OK, "audio/wav", wav, size, h);
            }
        }
    }
    nr_proto_msg_clear(&reply);
    return ret;
}

static enum MHD_Result s_handle_caption(struct MHD_Connection *conn, s_req_t *req) {
    nr_msg_t reply;
    enum MHD_Result ret;
    if (!s_job_status(conn, req, &reply, &ret)) return ret;
    const char *route = nr_proto_kv_get(&reply, "route");
    const char *caption = nr_proto_kv_get(&reply, "text.caption");
    if (caption) {
        size_t n = strlen(caption);
        char *body = malloc(n + 2);
        if (!body) {
            ret = MHD_NO;
        } else {
            memcpy(body, caption, n);
            body[n] = '\n';
            body[n + 1] = '\0';
            ret = s_send(conn, req, MHD_HTTP_OK, "text/plain; charset=utf-8", body, n + 1, NULL);
        }
    } else if (route && !strstr(route, "text")) {
        ret = s_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL,
                           "job '%s' has no text stage (route %s), so no caption", req->id, route);
    } else {
        ret = s_not_done(conn, req, &reply, "caption");
    }
    nr_proto_msg_clear(&reply);
    return ret;
}

/* SUBMIT of the gathered body: POST /v1/jobs and POST /v1/speak. */
static enum MHD_Result s_handle_submit(struct MHD_Connection *conn, s_req_t *req) {
    nr_gateway_t *gw = req->gw;
    const char *route = req->route == S_R_SPEAK ? S_ROUTE_SPEECH : S_ROUTE_IMAGE;
    if (req->size == 0)
        return s_send_error(conn, req, MHD_HTTP_BAD_REQUEST,
                            req->route == S_R_SPEAK ? NR_ETEXT : NR_EINVAL, NULL,
                            req->route == S_R_SPEAK ? "the text to speak is empty"
                                                    : "the request has no image bytes");
    if (req->route == S_R_SPEAK && !s_utf8_valid(req->body, req->size))
        return s_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_ETEXT, NULL,
                            "the text to speak is not valid UTF-8 (or holds a NUL byte)");
    nr_client_options_t opts;
    nr_client_options(&opts, req->opts.beams, req->opts.max_length, req->opts.voice);
    char id[NR_CLIENT_ID_HEX + 1];
    int rc = nr_client_content_id(req->body, req->size, route, opts.kv, opts.n, id);
    if (rc) return s_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, rc, NULL,
                                "cannot make a job id: %s", nr_strerror(rc));
    snprintf(req->id, sizeof req->id, "%s", id);
    nr_client_t *c = s_client(gw);
    if (!c) return s_no_client(conn, req);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    rc = nr_client_submit(c, id, route, opts.kv, opts.n, req->body, req->size, &reply);
    s_metric_broker(gw, rc);
    if (rc) {
        nr_proto_msg_clear(&reply);
        return s_send_broker_error(conn, req, rc, "SUBMIT");
    }
    nr_client_record_t rec;
    nr_client_record(&reply, &rec);
    int is_existing = rec.existing;
    s_recent_add(gw, id, route, req->name, req->size, is_existing);
    cJSON *j = cJSON_CreateObject();
    if (!j) {
        nr_proto_msg_clear(&reply);
        return MHD_NO;
    }
    const char *state = rec.state, *stage = rec.stage;
    char url[96];
    snprintf(url, sizeof url, "/v1/jobs/%s", id);
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "state", state ? state : "queued");
    if (stage) cJSON_AddStringToObject(j, "stage", stage);
    cJSON_AddStringToObject(j, "route", route);
    cJSON_AddBoolToObject(j, "existing", is_existing);
    cJSON_AddStringToObject(j, "url", url);
    nr_log(NR_LOG_INFO, "submitted job %s (route %s, %zu bytes%s)", id, route, req->size,
           is_existing ? ", existing" : "");
    nr_proto_msg_clear(&reply);
    const char *const h[] = {"Location", url, NULL};
    return s_send_json(conn, req, MHD_HTTP_ACCEPTED, j, h);
}

/* Static files from params.static_dir: only [A-Za-z0-9._-/] names, no
 * segment starting with '.', no symlinks followed at the last step. */
static enum MHD_Result s_handle_static(struct MHD_Connection *conn, s_req_t *req, const char *url) {
    nr_gateway_t *gw = req->gw;
    if (!gw->params.static_dir[0])
        return s_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL,
                            "no web page is served (static-dir is not set); the API is under /v1/");
    const char *rel = strcmp(url, "/") ? url : "/index.html";
    size_t n = strlen(rel);
    int ok = n > 1 && n < 256 && rel[0] == '/';
    for (size_t i = 0; ok && i < n; i++) {
        char ch = rel[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-' || ch == '/'))
            ok = 0;
        if (ch == '/' && (rel[i + 1] == '.' || rel[i + 1] == '/' || rel[i + 1] == '\0')) ok = 0;
    }
    if (!ok)
        return s_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL, "no such page");
    char path[NR_GATEWAY_PATH_MAX + 260];
    snprintf(path, sizeof path, "%s%s", gw->params.static_dir, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > S_STATIC_MAX) {
        if (fd >= 0) close(fd);
        return s_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL, "no such page or route");
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *data = malloc(size ? size : 1);
    while (data && got < size) {
        ssize_t r = read(fd, data + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!data || got != size) {
        free(data);
        return s_send_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, NR_EIO, NULL,
                            "cannot read the page file");
    }
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"},
                 {".json", "application/json"},
                 {".txt", "text/plain; charset=utf-8"},
                 {".md", "text/plain; charset=utf-8"}};
    const char *type = "application/octet-stream";
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && !strcmp(rel + n - e, types[i].ext)) type = types[i].type;
    }
    const char *const h[] = {
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        "Referrer-Policy", "no-referrer", NULL};
    return s_send(conn, req, MHD_HTTP_OK, type, data, size, h);
}

/* ---- routing ---- */

/* Sets req->route and req->id from the path. */
static void s_route(s_req_t *req, const char *url) {
    req->route = S_R_UNKNOWN;
    if (!strcmp(url, "/healthz")) req->route = S_R_HEALTHZ;
    else if (!strcmp(url, "/readyz")) req->route = S_R_READYZ;
    else if (!strcmp(url, "/metrics")) req->route = S_R_METRICS;
    else if (!strcmp(url, "/v1/jobs") || !strcmp(url, "/v1/jobs/")) req->route = S_R_JOBS;
    else if (!strcmp(url, "/v1/speak")) req->route = S_R_SPEAK;
    else if (!strncmp(url, "/v1/jobs/", 9)) {
        const char *id = url + 9, *slash = strchr(id, '/');
        size_t n = slash ? (size_t)(slash - id) : strlen(id);
        const char *rest = slash ? slash : "";
        s_route_t r = !*rest                       ? S_R_JOB
                      : !strcmp(rest, "/audio")    ? S_R_AUDIO
                      : !strcmp(rest, "/caption")  ? S_R_CAPTION
                                                   : S_R_UNKNOWN;
        if (r != S_R_UNKNOWN && n > 0 && n <= NR_PROTO_ID_MAX) {
            memcpy(req->id, id, n);
            req->id[n] = '\0';
            req->route = r;
        }
    } else if (strncmp(url, "/v1/", 4) && strcmp(url, "/v1")) {
        req->route = S_R_PAGE;
    }
}

static s_method_t s_method(const char *m) {
    if (!strcmp(m, "GET")) return S_M_GET;
    if (!strcmp(m, "HEAD")) return S_M_HEAD;
    if (!strcmp(m, "POST")) return S_M_POST;
    if (!strcmp(m, "DELETE")) return S_M_DELETE;
    return S_M_OTHER;
}

/* First call of a request: answers what can be answered from the headers.
 * Returns MHD_YES with req->responded 0 when the body is to be read. */
static enum MHD_Result s_begin(struct MHD_Connection *conn, s_req_t *req, const char *url) {
    nr_gateway_t *gw = req->gw;
    int get = req->method == S_M_GET || req->method == S_M_HEAD;
    switch (req->route) {
    case S_R_HEALTHZ:
        return get ? s_handle_healthz(conn, req) : s_allow(conn, req, "GET, HEAD");
    case S_R_READYZ:
        return get ? s_handle_readyz(conn, req) : s_allow(conn, req, "GET, HEAD");
    case S_R_METRICS:
        return get ? s_handle_metrics(conn, req) : s_allow(conn, req, "GET, HEAD");
    case S_R_PAGE:
        return get ? s_handle_static(conn, req, url) : s_allow(conn, req, "GET, HEAD");
    case S_R_UNKNOWN:
        return s_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL,
                            "no route %s (see /v1/jobs, /v1/speak, /healthz, /readyz, /metrics)",
                            url);
    case S_R_JOB:
    case S_R_AUDIO:
    case S_R_CAPTION:
        if (!nr_client_id_valid(req->id))
            return s_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                "bad job id '%s': 1..%d characters of A-Z a-z 0-9 . _ : -",
                                req->id, NR_PROTO_ID_MAX);
        if (req->route == S_R_JOB) {
            if (get || req->method == S_M_DELETE) return s_handle_status(conn, req);
            return s_allow(conn, req, "GET, HEAD, DELETE");
        }
        if (!get) return s_allow(conn, req, "GET, HEAD");
        return req->route == S_R_AUDIO ? s_handle_audio(conn, req) : s_handle_caption(conn, req);
    case S_R_JOBS:
    case S_R_SPEAK:
        break;
    default:
        return MHD_NO;
    }
    if (req->route == S_R_JOBS && get) return s_handle_list(conn, req);
    if (req->method != S_M_POST)
        return s_allow(conn, req, req->route == S_R_JOBS ? "GET, HEAD, POST" : "POST");

    /* POST with a body: the client's rate, options, media type and
     * declared size first, so a refused body is never read. */
    int64_t retry_ms = 0;
    char who[INET6_ADDRSTRLEN] = "";
    if (gw->limit && !nr_ratelimit_take(gw->limit, s_client_ip(conn, who, sizeof who), nr_clock_mono_ms(), &retry_ms)) {
        char after[24];
        snprintf(after, sizeof after, "%lld", (long long)((retry_ms + 999) / 1000));
        const char *const headers[] = {"Retry-After", after, NULL};
        return s_send_error(conn, req, MHD_HTTP_TOO_MANY_REQUESTS, NR_EBUSY, headers,
                            "client %s is over this gateway's limit of %d new jobs per second "
                            "(burst %d, setting client-rate); retry in %lld ms",
                            who, gw->params.client_rate, gw->params.client_burst, (long long)retry_ms);
    }
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, s_query_arg, req);
    if (req->opt_status)
        return s_send_error(conn, req, req->opt_status, NR_EOPTION, NULL, "%s", req->opt_error);
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    char media[96];
    s_media_type(ctype, media, sizeof media);
    if (req->route == S_R_SPEAK) {
        if (media[0] && strncmp(media, "text/", 5))
            return s_send_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NR_EUNSUPPORTED, NULL,
                                "POST /v1/speak takes the text itself (Content-Type text/plain; "
                                "charset=utf-8), not '%s'",
                                media);
        req->body_kind = S_BODY_TEXT;
    } else if (!strncmp(media, "image/", 6)) {
        req->body_kind = S_BODY_RAW;
    } else if (!strcmp(media, "multipart/form-data")) {
        req->body_kind = S_BODY_MULTIPART;
        req->pp = MHD_create_post_processor(conn, S_PP_BUFFER, s_post_field, req);
        if (!req->pp)
            return s_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                "malformed multipart/form-data header (no boundary?)");
    } else {
        return s_send_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NR_ENOTIMAGE, NULL,
                            "POST /v1/jobs takes an image (Content-Type image/jpeg, image/png or "
                            "image/webp) or multipart/form-data with an 'image' field, not '%s'",
                            media[0] ? media : "(none)");
    }
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (clen) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(clen, &end, 10);
        if (errno || end == clen || *end || n > gw->params.max_body_bytes)
            return s_send_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, NR_ETOOBIG, NULL,
                                "the body (%s bytes) is larger than this gateway takes (%zu bytes, "
                                "setting max-body-bytes)",
                                clen, gw->params.max_body_bytes);
        if (req->body_kind != S_BODY_MULTIPART && n > 0) {
            req->body = malloc((size_t)n);
            if (!req->body)
                return s_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, NR_ENOMEM, NULL,
                                    "out of memory for a %llu-byte body", n);
            req->cap = (size_t)n;
        }
    }
    return MHD_YES;
}

/* The whole body is in: check it and submit. */
static enum MHD_Result s_finish(struct MHD_Connection *conn, s_req_t *req) {
    nr_gateway_t *gw = req->gw;
    if (req->too_big)
        return s_send_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, NR_ETOOBIG, NULL,
                            "the body is larger than this gateway takes (%zu bytes, setting "
                            "max-body-bytes)",
                            gw->params.max_body_bytes);
    if (req->body_kind == S_BODY_MULTIPART) {
        if (!req->opt_status) req->opt_status = s_flush_field(req);
        if (req->opt_status)
            return s_send_error(conn, req, req->opt_status, req->opt_code ? req->opt_code : NR_EOPTION,
                                NULL, "%s", req->opt_error);
        enum MHD_Result done = MHD_destroy_post_processor(req->pp);
        req->pp = NULL;
        if (req->pp_failed || done != MHD_YES)
            return s_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                "malformed multipart/form-data body");
        if (!req->have_image)
            return s_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                "the form has no 'image' field (send the file as a part named "
                                "image)");
        int typed = !strncmp(req->image_type, "image/", 6);
        int untyped = !req->image_type[0] || !strcmp(req->image_type, "application/octet-stream");
        if (!typed && !(untyped && s_sniff_image(req->body, req->size)))
            return s_send_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NR_ENOTIMAGE, NULL,
                                "the 'image' part is '%s', not an image (JPEG, PNG or WebP)",
                                req->image_type[0] ? req->image_type : "untyped");
    }
    return s_handle_submit(conn, req);
}

static enum MHD_Result s_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls) {
    (void)version;
    nr_gateway_t *gw = cls;
    s_req_t *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req) return MHD_NO;
        *con_cls = req;
        req->gw = gw;
        req->start_ns = nr_clock_mono_ns();
        req->method = s_method(method);
        snprintf(req->method_text, sizeof req->method_text, "%s", method);
        s_route(req, url);
        /* A POST is checked now, so a refused body is never read. Anything
         * else is answered on the next call, once the request is complete:
         * libmicrohttpd closes the connection after a response queued
         * before that, and pages and pollers want keep-alive. */
        if (req->method == S_M_POST && (req->route == S_R_JOBS || req->route == S_R_SPEAK))
            return s_begin(conn, req, url);
        req->deferred = 1;
        return MHD_YES;
    }
    if (req->responded) { /* answered from the headers: drop any body */
        req->bytes_in += *upload_data_size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t size = *upload_data_size;
        *upload_data_size = 0;
        req->bytes_in += size;
        if (req->bytes_in > gw->params.max_body_bytes) req->too_big = 1; /* whatever the body is */
        if (req->too_big) {
            req->dropped += size;
            return req->dropped > S_DRAIN_MAX ? MHD_NO : MHD_YES; /* hang up on a flood */
        }
        if (req->deferred) return MHD_YES; /* a body where none is taken: dropped */
        if (req->body_kind == S_BODY_MULTIPART) {
            if (req->opt_status || req->pp_failed) return MHD_YES; /* answered at the end */
            if (MHD_post_process(req->pp, upload_data, size) != MHD_YES && !req->opt_status &&
                !req->too_big)
                req->pp_failed = 1;
        } else if (s_body_append(req, upload_data, size)) {
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (req->deferred) {
        req->deferred = 0;
        return s_begin(conn, req, url);
    }
    return s_finish(conn, req);
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe) {
    (void)conn;
    nr_gateway_t *gw = cls;
    s_req_t *req = *con_cls;
    if (!req) return;
    *con_cls = NULL;
    double seconds = (double)(nr_clock_mono_ns() - req->start_ns) / 1e9;
    if (req->responded) {
        s_metric_status(gw, req->route, req->method, req->status, seconds, req->bytes_in,
                        toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? req->bytes_out : 0);
        nr_log(NR_LOG_DEBUG, "%s %s%s%s %u (%.1f ms)", s_method_names[req->method],
               s_route_names[req->route], req->id[0] ? " " : "", req->id, req->status, seconds * 1e3);
    }
    if (req->pp) MHD_destroy_post_processor(req->pp);
    free(req->body);
    free(req);
}

static void s_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    nr_log(NR_LOG_WARN, "libmicrohttpd: %s", line);
}

/* ---- lifecycle ---- */

void nr_gateway_default_params(nr_gateway_params_t *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->listen_address, sizeof p->listen_address, "127.0.0.1");
    p->port = 8080;
    snprintf(p->broker_endpoint, sizeof p->broker_endpoint, "tcp://127.0.0.1:5555");
    p->max_body_bytes = 20u << 20;
    p->request_timeout_ms = 5000;
    p->connection_timeout_s = 30;
    p->threads = 4;
    p->max_connections = 256;
    p->recent_jobs = 200;
    p->client_rate = 0;
    p->client_burst = 20;
}

/* The CURVE settings: both or neither, and keys that read. 0 when off,
 * 1 when on (this gateway's public key in public_z85), or an error. */
static int s_check_curve(const nr_gateway_params_t *p, char public_z85[NR_SECURE_KEY_Z85 + 1],
                         char *err, size_t errlen) {
    nr_secure_settings_t sec;
    memset(&sec, 0, sizeof sec);
    if (strnlen(p->curve_server_key, sizeof p->curve_server_key) >= sizeof sec.server_key ||
        strnlen(p->curve_secret_key_file, sizeof p->curve_secret_key_file) >= sizeof sec.secret_key_file)
        return nr_seterr(err, errlen, NR_EINVAL, "curve settings: a key or path is too long");
    snprintf(sec.server_key, sizeof sec.server_key, "%s", p->curve_server_key);
    snprintf(sec.secret_key_file, sizeof sec.secret_key_file, "%s", p->curve_secret_key_file);
    char why[700];
    int on = nr_secure_enabled(&sec, 0, why, sizeof why);
    if (on < 0) return nr_seterr(err, errlen, on, "%s (set both, or neither for plain text)", why);
    if (!on) return 0;
    if (!nr_secure_available())
        return nr_seterr(err, errlen, NR_EUNSUPPORTED,
                         "curve settings are given but this libzmq cannot do CURVE");
    char server[NR_SECURE_KEY_Z85 + 1];
    int rc = nr_secure_read_keyfile(sec.secret_key_file, public_z85, NULL, why, sizeof why);
    if (rc) return nr_seterr(err, errlen, NR_EINVAL, "curve-secret-key-file: %s", why);
    rc = nr_secure_read_public(sec.server_key, server, why, sizeof why);
    if (rc)
        return nr_seterr(err, errlen, NR_EINVAL,
                         "curve-server-key: %s (give the broker's public key: 40 Z85 characters "
                         "or its .pub file)",
                         why);
    return 1;
}

int nr_gateway_check_params(const nr_gateway_params_t *p, char *err, size_t errlen) {
    if (!p) return nr_seterr(err, errlen, NR_EINVAL, "no params");
    if (p->port < 0 || p->port > 65535 || p->max_body_bytes < 1 ||
        p->max_body_bytes > NR_PROTO_PAYLOAD_MAX || p->request_timeout_ms <= 0 ||
        p->connection_timeout_s < 0 || p->threads < 1 || p->threads > 256 ||
        p->max_connections < 1 || p->recent_jobs < 1 || p->recent_jobs > 1000000 ||
        p->client_rate < 0 || p->client_burst < 1 || !p->broker_endpoint[0])
        return nr_seterr(err, errlen, NR_EINVAL,
                         "bad gateway settings (port 0..65535, max-body-bytes 1..%u, threads 1..256, "
                         "recent-jobs >= 1, client-rate >= 0, client-burst >= 1, a broker endpoint)",
                         NR_PROTO_PAYLOAD_MAX);
    struct in6_addr any;
    if (inet_pton(AF_INET, p->listen_address, &any) != 1 &&
        inet_pton(AF_INET6, p->listen_address, &any) != 1)
        return nr_seterr(err, errlen, NR_EINVAL,
                         "listen-address '%s' is not a numeric IPv4 or IPv6 address",
                         p->listen_address);
    if (p->static_dir[0]) {
        struct stat st;
        if (stat(p->static_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return nr_seterr(err, errlen, NR_EINVAL, "static-dir '%s' is not a folder", p->static_dir);
    }
    char pub[NR_SECURE_KEY_Z85 + 1];
    int rc = s_check_curve(p, pub, err, errlen);
    return rc < 0 ? rc : 0;
}

nr_gateway_t *nr_gateway_new(const nr_gateway_params_t *params, char *err, size_t errlen) {
    if (nr_gateway_check_params(params, err, errlen)) return NULL;
    const nr_gateway_params_t *p = params;
    char curve_public[NR_SECURE_KEY_Z85 + 1] = "";
    int curve = s_check_curve(p, curve_public, err, errlen);
    if (curve < 0) return NULL;
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_AUTO;
    if (inet_pton(AF_INET, p->listen_address, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p->port);
    } else if (inet_pton(AF_INET6, p->listen_address, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p->port);
        flags |= MHD_USE_IPv6;
    } else {
        nr_seterr(err, errlen, NR_EINVAL, "listen-address '%s' is not a numeric IPv4 or IPv6 address",
                  p->listen_address);
        return NULL;
    }
    nr_gateway_t *self = calloc(1, sizeof *self);
    if (!self) {
        nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        return NULL;
    }
    self->params = *p;
    self->curve = curve;
    memcpy(self->curve_public, curve_public, sizeof curve_public);
    self->started_ms = nr_clock_wall_ms();
    self->recent = calloc((size_t)p->recent_jobs, sizeof *self->recent);
    if (!self->recent) goto nomem;
    if (pthread_mutex_init(&self->lock, NULL)) goto nomem;
    if (pthread_mutex_init(&self->metrics.lock, NULL)) {
        pthread_mutex_destroy(&self->lock);
        goto nomem;
    }
    self->locks_ready = 1;
    if (p->client_rate > 0 &&
        !(self->limit = nr_ratelimit_new(p->client_rate, p->client_burst, S_RATE_CLIENTS))) {
        nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        nr_gateway_destroy(&self);
        return NULL;
    }
    self->daemon = MHD_start_daemon(
        flags, (uint16_t)p->port, NULL, NULL, s_access, self, MHD_OPTION_EXTERNAL_LOGGER,
        s_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)p->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)p->connection_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
        MHD_OPTION_END);
    if (!self->daemon) {
        nr_seterr(err, errlen, NR_EIO,
                  "cannot listen on %s port %d (in use, or not an address of this host?)",
                  p->listen_address, p->port);
        nr_gateway_destroy(&self);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : p->port;
    if (curve)
        nr_log(NR_LOG_INFO,
               "CURVE on: broker key %s; this gateway's public key is %s (the broker's "
               "curve-allow-dir must hold it as a .pub file)",
               p->curve_server_key, curve_public);
    return self;
nomem:
    nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    free(self->recent);
    free(self);
    return NULL;
}

void nr_gateway_destroy(nr_gateway_t **self_p) {
    if (!self_p || !*self_p) return;
    nr_gateway_t *self = *self_p;
    if (self->daemon) MHD_stop_daemon(self->daemon); /* joins every pool thread */
    for (size_t i = 0; i < self->n_clients; i++) nr_client_destroy(&self->clients[i]);
    free(self->clients);
    free(self->recent);
    nr_ratelimit_destroy(&self->limit);
    if (self->locks_ready) {
        pthread_mutex_destroy(&self->lock);
        pthread_mutex_destroy(&self->metrics.lock);
    }
    free(self);
    *self_p = NULL;
}

int nr_gateway_port(const nr_gateway_t *self) { return self ? self->port : 0; }
