/* The gateway's insides, shared by its files (not an API: gateway.h is).
 *
 *   gateway.c   lifecycle, libmicrohttpd callbacks, routing
 *   respond.c   answers: bodies, JSON, the API's error object, 405
 *   handlers.c  the job and health route handlers
 *   body.c      options (query and form fields), request bodies, multipart
 *   record.c    a job record as the API's JSON
 *   static.c    the web page's files
 *   pool.c      one broker client per libmicrohttpd thread
 *   recent.c    the ring of recently submitted jobs (GET /v1/jobs)
 *   metrics.c   the gateway's Prometheus families (GET /metrics)
 *   guard.c     a request head's framing, Host and Origin checks
 *   conn.c      connections and the deadline for a request head
 *
 * Threads: libmicrohttpd runs requests on a pool of threads. A request's
 * nr_gw_req_t belongs to the thread serving it; the gateway's shared state
 * is guarded by gw->lock (clients, the ring, the probe, the body budget),
 * gw->metrics_lock (the registry) and gw->conns_lock (the connections). */
#ifndef NR_CLIENT_GATEWAY_INTERNAL_H
#define NR_CLIENT_GATEWAY_INTERNAL_H

#include "client/client.h"
#include "client/gateway/gateway.h"
#include "common/metrics.h"
#include "common/ratelimit.h"
#include "proto/proto.h"
#include "proto/secure.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define NR_GW_VOICE_MAX NR_CLIENT_VOICE_MAX
#define NR_GW_BEAMS_MAX NR_CLIENT_BEAMS_MAX
#define NR_GW_LENGTH_MAX NR_CLIENT_LENGTH_MAX
#define NR_GW_PROMPT_MAX NR_CLIENT_PROMPT_MAX
#define NR_GW_FIELD_MAX NR_GW_PROMPT_MAX /* bytes in a small multipart field (the longest option: prompt) */
#define NR_GW_NAME_MAX 128 /* bytes of an uploaded file name kept in the ring */
#define NR_GW_HOST_MAX 256 /* bytes of a host name in allowed-hosts */
#define NR_GW_ORIGIN_MAX 300 /* bytes of an origin in allowed-origins */

/* Routes (metric labels: nr_gw_route_names). */
typedef enum {
    NR_GW_R_PAGE = 0, /* static files, "/" */
    NR_GW_R_JOBS,
    NR_GW_R_JOB,
    NR_GW_R_AUDIO,
    NR_GW_R_CAPTION,
    NR_GW_R_SPEAK,
    NR_GW_R_HEALTHZ,
    NR_GW_R_READYZ,
    NR_GW_R_METRICS,
    NR_GW_R_VOICES,
    NR_GW_R_RUN,    /* GET /v1/runs/{run}: a page of a run's jobs */
    NR_GW_R_IMAGE,  /* GET /v1/jobs/{id}/image: the submitted image */
    NR_GW_R_REVIEW, /* POST /v1/jobs/{id}/review */
    NR_GW_R_THUMBNAIL, /* GET /v1/jobs/{id}/thumbnail: the vision worker's small JPEG */
    NR_GW_R_UNKNOWN,
    NR_GW_R_COUNT
} nr_gw_route_t;


typedef enum { NR_GW_M_GET = 0, NR_GW_M_HEAD, NR_GW_M_POST, NR_GW_M_DELETE, NR_GW_M_OTHER, NR_GW_M_COUNT } nr_gw_method_t;

/* Route and method names, as metric labels and in messages. */
extern const char *const nr_gw_route_names[NR_GW_R_COUNT];
extern const char *const nr_gw_method_names[NR_GW_M_COUNT];

typedef struct {
    char id[NR_PROTO_ID_MAX + 1];
    char route[32];
    char name[NR_GW_NAME_MAX]; /* uploaded file name, or "" */
    size_t bytes;
    long long submitted_ms;
    int existing;
} nr_gw_recent_t;

typedef struct {
    char host[NR_GW_HOST_MAX]; /* lower case; IPv6 in brackets */
    int port;                  /* 0: any */
} nr_gw_host_t;

typedef struct nr_gw_conn_t nr_gw_conn_t; /* conn.c */

struct nr_gateway_t {
    nr_gateway_params_t params;
    struct MHD_Daemon *daemon;
    int port;
    long long started_ms;      /* wall clock: process_start_time_seconds */
    long long started_mono_ms; /* monotonic: uptime_s */
    pthread_mutex_t lock; /* clients and the recent ring */
    nr_client_t **clients;
    size_t n_clients, cap_clients;
    nr_gw_recent_t *recent; /* oldest first */
    size_t n_recent;
    nr_metrics_t *metrics;   /* the gateway's families (metrics.c) */
    pthread_mutex_t metrics_lock; /* the registry is not thread-safe */
    int locks_ready;
    int curve;                               /* CURVE settings given */
    char curve_public[NR_SECURE_KEY_Z85 + 1]; /* this gateway's public key, for messages */
    nr_gateway_probe_t probe;                /* last handshake probe (under lock) */
    int probe_detail;
    long long probe_ms;                      /* when it ran (monotonic), 0: never */
    nr_ratelimit_t *limit;                   /* POSTs per client IP; NULL: no limit */
    /* guard.c: allowed-hosts and allowed-origins, parsed */
    nr_gw_host_t *hosts;
    size_t n_hosts, cap_hosts;
    int any_host;    /* "*" */
    int any_ip_host; /* listening on every address: any IP literal with the port */
    char (*origins)[NR_GW_ORIGIN_MAX];
    size_t n_origins, cap_origins;
    int any_origin;
    size_t buffered; /* body bytes reserved by all requests (under lock) */
    /* conn.c */
    pthread_mutex_t conns_lock;
    pthread_cond_t reaper_cond;
    nr_gw_conn_t *conns;
    pthread_t reaper;
    int conns_ready, reaper_running, reaper_stop;
    unsigned long long head_timeouts; /* connections closed for a slow head */
};


/* One request, from its headers to its completion. */
typedef enum { NR_GW_BODY_NONE = 0, NR_GW_BODY_RAW, NR_GW_BODY_MULTIPART, NR_GW_BODY_TEXT } nr_gw_body_kind_t;

typedef struct {
    char voice[NR_GW_VOICE_MAX + 1];
    char speed[NR_PROTO_SPEED_BYTES + 1];
    char prompt[NR_GW_PROMPT_MAX + 1]; /* "": not given */
    char language[NR_CLIENT_LANGUAGE_MAX + 1]; /* "": not given */
    long beams, max_length; /* 0: not given */
    unsigned seen;          /* options given so far (bits of body.c's table), to refuse repeats */
} nr_gw_opts_t;

typedef struct {
    nr_gateway_t *gw;
    nr_gw_route_t route;
    nr_gw_method_t method;
    char method_text[16]; /* as sent, for messages */
    char id[NR_PROTO_ID_MAX + 1];
    int64_t start_ns; /* monotonic */
    int started;   /* s_access has seen it (the URI log callback makes it first) */
    int nul_in_target; /* %00 in the path or query as sent */
    int responded; /* a response is queued */
    int deferred;  /* not a body-taking POST: answered when the request is complete */
    unsigned status;
    size_t bytes_out;
    unsigned long long bytes_in;
    /* body */
    nr_gw_body_kind_t body_kind;
    uint8_t *body;
    size_t size, cap;
    int too_big;            /* past max_body_bytes: the rest is dropped */
    int busy;               /* past the body budget (max_buffered_bytes): the rest is dropped */
    size_t reserved;        /* bytes of the body budget this request holds */
    int declared;           /* a Content-Length was given (and reserved up front) */
    unsigned long long dropped;
    nr_gw_opts_t opts;
    int opt_status;         /* an option error found while reading the form */
    int opt_code;
    char opt_error[256];
    /* multipart */
    struct MHD_PostProcessor *pp;
    int pp_failed;
    int have_image;
    int image_part_bad_type;
    char image_type[96];
    char name[NR_GW_NAME_MAX];
    char field_key[NR_GW_FIELD_MAX];
    char field[NR_GW_FIELD_MAX + 1];
    size_t field_len;
} nr_gw_req_t;


/* ---- respond.c ---- */

/* Queues `data` (malloc'd; taken, also on failure) with status and type,
 * and the response headers given as name, value pairs ended by NULL. */
enum MHD_Result nr_gw_send(struct MHD_Connection *conn, nr_gw_req_t *req, unsigned status,
                           const char *type, void *data, size_t size, const char *const *headers);
/* Sends `json` (taken) as the body, with a newline. */
enum MHD_Result nr_gw_send_json(struct MHD_Connection *conn, nr_gw_req_t *req, unsigned status,
                                cJSON *json, const char *const *headers);
/* {"error": wire name of code, "message": ...} with the given status. */
enum MHD_Result nr_gw_send_error(struct MHD_Connection *conn, nr_gw_req_t *req, unsigned status,
                                 int code, const char *const *headers, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* 405 with an Allow header. */
enum MHD_Result nr_gw_allow(struct MHD_Connection *conn, nr_gw_req_t *req, const char *allow);

/* ---- handlers.c: routes ---- */

enum MHD_Result nr_gw_handle_healthz(struct MHD_Connection *conn, nr_gw_req_t *req);
enum MHD_Result nr_gw_handle_readyz(struct MHD_Connection *conn, nr_gw_req_t *req);
enum MHD_Result nr_gw_handle_voices(struct MHD_Connection *conn, nr_gw_req_t *req);
enum MHD_Result nr_gw_handle_status(struct MHD_Connection *conn, nr_gw_req_t *req);
/* 503 when this thread could not make its broker client. */
enum MHD_Result nr_gw_send_no_client(struct MHD_Connection *conn, nr_gw_req_t *req);
/* Answers a failed broker request (what: "STATUS") with the HTTP status
 * that fits its code. */
enum MHD_Result nr_gw_send_broker_error(struct MHD_Connection *conn, nr_gw_req_t *req, int rc, const char *what);
/* review.c: a run's jobs page by page, a job's submitted image and its
 * thumbnail, and a person's review (edited caption spoken again, approval). */
#define NR_GW_REVIEW_BODY_MAX 16384 /* bytes of a review's JSON body */
enum MHD_Result nr_gw_handle_run(struct MHD_Connection *conn, nr_gw_req_t *req);
enum MHD_Result nr_gw_handle_image(struct MHD_Connection *conn, nr_gw_req_t *req);
enum MHD_Result nr_gw_handle_thumbnail(struct MHD_Connection *conn, nr_gw_req_t *req);
enum MHD_Result nr_gw_handle_review(struct MHD_Connection *conn, nr_gw_req_t *req);
enum MHD_Result nr_gw_handle_audio(struct MHD_Connection *conn, nr_gw_req_t *req);
enum MHD_Result nr_gw_handle_caption(struct MHD_Connection *conn, nr_gw_req_t *req);
/* SUBMIT of the gathered body: POST /v1/jobs and POST /v1/speak. */
enum MHD_Result nr_gw_handle_submit(struct MHD_Connection *conn, nr_gw_req_t *req);

/* ---- body.c ---- */

/* MHD_get_connection_values callback: one query argument as an option. */
enum MHD_Result nr_gw_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value);
/* MHD post processor callback: the 'image' part and the option fields. */
enum MHD_Result nr_gw_post_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *content_type,
                                 const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size);
/* Appends to the body buffer, grown as bytes arrive within the request's
 * reservation; past max_body_bytes sets too_big, past what the body
 * budget has left sets busy (the bytes are dropped). 0 or NR_ENOMEM. */
int nr_gw_body_append(nr_gw_req_t *req, const char *data, size_t size);
/* Makes req's share of the body budget at least `bytes`. 0, or NR_EBUSY
 * when the budget (max_buffered_bytes) has not that much left. */
int nr_gw_budget_reserve(nr_gw_req_t *req, size_t bytes);
/* Gives req's share back. */
void nr_gw_budget_release(nr_gw_req_t *req);
/* Bytes reserved by all requests now. */
size_t nr_gw_budget_used(nr_gateway_t *gw);
/* Parses the small form field gathered so far, if any. 0 or an HTTP status. */
int nr_gw_flush_field(nr_gw_req_t *req);
/* "image/png; x=y" -> "image/png" into out (lower case). */
void nr_gw_media_type(const char *header, char *out, size_t size);
/* The media type of an image the vision worker decodes, by its magic
 * bytes ("image/jpeg" ... "image/heic", "image/avif"), or NULL. */
const char *nr_gw_image_type(const uint8_t *d, size_t n);
/* 1 when nr_gw_image_type knows the bytes. */
int nr_gw_sniff_image(const uint8_t *d, size_t n);

/* ---- record.c ---- */

/* The job record of a broker REPLY as the API's JSON object (the caller
 * owns it), or NULL when out of memory. */
cJSON *nr_gw_record_json(const nr_msg_t *rec, const char *fallback_id);

/* ---- static.c ---- */

/* GET of a file under params.static_dir. */
enum MHD_Result nr_gw_handle_static(struct MHD_Connection *conn, nr_gw_req_t *req, const char *url);

/* ---- pool.c ---- */

/* This thread's broker client, made on first use with the gateway's CURVE
 * settings; NULL when none can be made (nr_gw_client_failure says why). */
nr_client_t *nr_gw_client(nr_gateway_t *gw);
/* This thread's client of gw if it has one, else NULL (nothing is made). */
nr_client_t *nr_gw_client_current(const nr_gateway_t *gw);
/* Why this thread has no client (message; its code in *code). */
const char *nr_gw_client_failure(int *code);
/* Destroys every client made (after the threads are stopped). */
void nr_gw_clients_destroy(nr_gateway_t *gw);

/* ---- recent.c ---- */

/* Adds a submitted job at the newest end (moved there when it is in the
 * ring already; the oldest is dropped when the ring is full). */
void nr_gw_recent_add(nr_gateway_t *gw, const char *id, const char *route, const char *name,
                      size_t bytes, int existing);
/* Jobs in the ring now. */
size_t nr_gw_recent_count(nr_gateway_t *gw);
/* GET /v1/jobs: the ring, newest first. */
enum MHD_Result nr_gw_handle_list(struct MHD_Connection *conn, nr_gw_req_t *req);

/* ---- guard.c ---- */

/* Checks the allowed-hosts and allowed-origins settings. 0 or NR_EINVAL. */
int nr_gw_guard_check(const nr_gateway_params_t *p, char *err, size_t errlen);
/* Parses them into gw (after gw->port is known). 0, NR_EINVAL or NR_ENOMEM. */
int nr_gw_guard_init(nr_gateway_t *gw, char *err, size_t errlen);
void nr_gw_guard_destroy(nr_gateway_t *gw);
/* The head's checks: one Content-Length (and not with Transfer-Encoding),
 * one Host and Origin, no %00 in the target (400); the Host allowed, the
 * Origin the gateway's own or allowed, no cross-site state change (403).
 * Returns 1 with the refusal queued (its result in *ret), else 0. */
int nr_gw_guard(struct MHD_Connection *conn, nr_gw_req_t *req, enum MHD_Result *ret);

/* ---- conn.c ---- */

/* MHD_OPTION_NOTIFY_CONNECTION callback (cls: the gateway). */
void nr_gw_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);
/* The connection's request head is complete (1), or its answer has ended
 * and the next head's deadline starts now (0). */
void nr_gw_conn_in_request(nr_gateway_t *gw, struct MHD_Connection *conn, int in_request);
/* The lock and, when head_timeout_s > 0, the reaper thread. 0 or NR_ENOMEM. */
int nr_gw_conns_start(nr_gateway_t *gw);
/* Stops the reaper thread (before libmicrohttpd stops). */
void nr_gw_conns_stop_reaper(nr_gateway_t *gw);
/* After libmicrohttpd has stopped; safe when never started. */
void nr_gw_conns_destroy(nr_gateway_t *gw);
/* Connections closed for a head past the deadline, so far. */
unsigned long long nr_gw_conns_head_timeouts(nr_gateway_t *gw);

/* ---- metrics.c ---- */

/* Defines the gateway's families in gw->metrics (made here). 0 or NR_ENOMEM. */
int nr_gw_metrics_init(nr_gateway_t *gw);
/* One answered request: its status, duration and bytes. */
void nr_gw_metrics_request(nr_gateway_t *gw, nr_gw_route_t route, nr_gw_method_t method,
                           unsigned status, double seconds, unsigned long long in, size_t out);
/* One broker request and, when it failed for a reason other than an
 * ordinary answer about the job (not found, wrong state), its error. */
void nr_gw_metrics_broker(nr_gateway_t *gw, int rc);
/* GET /metrics. */
enum MHD_Result nr_gw_handle_metrics(struct MHD_Connection *conn, nr_gw_req_t *req);

#endif
