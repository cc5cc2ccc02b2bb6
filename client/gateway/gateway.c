/* The HTTP gateway: libmicrohttpd request handling in front of nr_client.
 *
 * One request goes through s_access() several times: first with its headers
 * (the route, method, options and declared size are checked here and most
 * errors answered at once, before any body is read), then once per chunk of
 * body (bounded by max_body_bytes as it arrives), then a last time to
 * answer. s_completed() records the metrics and frees the request state. */
#include "client/gateway/internal.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

const char *const nr_gw_route_names[NR_GW_R_COUNT] = {
    "static", "/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/audio", "/v1/jobs/{id}/caption",
    "/v1/speak", "/healthz", "/readyz", "/metrics", "/v1/voices", "/v1/runs/{run}", "/v1/jobs/{id}/image",
    "/v1/jobs/{id}/review", "/v1/jobs/{id}/thumbnail", "unknown"};

const char *const nr_gw_method_names[NR_GW_M_COUNT] = {"GET", "HEAD", "POST", "DELETE", "other"};

#define S_DRAIN_MAX (16u << 20) /* body bytes read and dropped past the limit */
#define S_PP_BUFFER 65536       /* MHD post processor buffer */
#define S_RATE_CLIENTS 65536    /* client IPs tracked by the rate limit at once */
#define S_BUSY_RETRY_AFTER "1"  /* seconds, when the body budget is full */

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

/* ---- routing ---- */

/* Sets req->route and req->id from the path. */
static void s_route(nr_gw_req_t *req, const char *url) {
    req->route = NR_GW_R_UNKNOWN;
    if (!strcmp(url, "/healthz")) req->route = NR_GW_R_HEALTHZ;
    else if (!strcmp(url, "/readyz")) req->route = NR_GW_R_READYZ;
    else if (!strcmp(url, "/metrics")) req->route = NR_GW_R_METRICS;
    else if (!strcmp(url, "/v1/jobs") || !strcmp(url, "/v1/jobs/")) req->route = NR_GW_R_JOBS;
    else if (!strcmp(url, "/v1/speak")) req->route = NR_GW_R_SPEAK;
    else if (!strcmp(url, "/v1/voices")) req->route = NR_GW_R_VOICES;
    else if (!strncmp(url, "/v1/jobs/", 9)) {
        const char *id = url + 9, *slash = strchr(id, '/');
        size_t n = slash ? (size_t)(slash - id) : strlen(id);
        const char *rest = slash ? slash : "";
        nr_gw_route_t r = !*rest                       ? NR_GW_R_JOB
                      : !strcmp(rest, "/audio")    ? NR_GW_R_AUDIO
                      : !strcmp(rest, "/caption")  ? NR_GW_R_CAPTION
                      : !strcmp(rest, "/image")    ? NR_GW_R_IMAGE
                      : !strcmp(rest, "/review")   ? NR_GW_R_REVIEW
                      : !strcmp(rest, "/thumbnail") ? NR_GW_R_THUMBNAIL
                                                   : NR_GW_R_UNKNOWN;
        if (r != NR_GW_R_UNKNOWN && n > 0 && n <= NR_PROTO_ID_MAX) {
            memcpy(req->id, id, n);
            req->id[n] = '\0';
            req->route = r;
        }
    } else if (!strncmp(url, "/v1/runs/", 9)) {
        const char *run = url + 9;
        size_t n = strlen(run);
        if (n > 0 && n <= NR_PROTO_ID_MAX && !strchr(run, '/')) {
            memcpy(req->id, run, n + 1);
            req->route = NR_GW_R_RUN;
        }
    } else if (strncmp(url, "/v1/", 4) && strcmp(url, "/v1")) {
        req->route = NR_GW_R_PAGE;
    }
}

static nr_gw_method_t s_method(const char *m) {
    if (!strcmp(m, "GET")) return NR_GW_M_GET;
    if (!strcmp(m, "HEAD")) return NR_GW_M_HEAD;
    if (!strcmp(m, "POST")) return NR_GW_M_POST;
    if (!strcmp(m, "DELETE")) return NR_GW_M_DELETE;
    return NR_GW_M_OTHER;
}

/* 503 busy: the body budget cannot hold `bytes` more now. */
static enum MHD_Result s_send_busy(struct MHD_Connection *conn, nr_gw_req_t *req, unsigned long long bytes) {
    static const char *const retry[] = {"Retry-After", S_BUSY_RETRY_AFTER, NULL};
    return nr_gw_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, NR_EBUSY, retry,
                            "this gateway is holding as many request bodies as it may (%zu bytes, "
                            "setting max-buffered-bytes); this %s%llu-byte body does not fit now: "
                            "retry later",
                            req->gw->params.max_buffered_bytes, bytes ? "" : "more than ", bytes);
}

/* POST /v1/jobs/{id}/review: a small JSON body, read whole, then
 * nr_gw_handle_review. */
static enum MHD_Result s_begin_review(struct MHD_Connection *conn, nr_gw_req_t *req) {
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    char media[96];
    nr_gw_media_type(ctype, media, sizeof media);
    if (strcmp(media, "application/json"))
        return nr_gw_send_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NR_EUNSUPPORTED, NULL,
                                "POST /v1/jobs/{id}/review takes JSON (Content-Type application/json), "
                                "not '%s'", media[0] ? media : "(none)");
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n = clen ? strtoull(clen, NULL, 10) : 0;
    if (n > NR_GW_REVIEW_BODY_MAX)
        return nr_gw_send_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, NR_ETOOBIG, NULL,
                                "a review is at most %d bytes of JSON", NR_GW_REVIEW_BODY_MAX);
    req->body_kind = NR_GW_BODY_TEXT;
    if (clen) {
        req->declared = 1;
        if (n > 0 && nr_gw_budget_reserve(req, (size_t)n)) return s_send_busy(conn, req, n);
    }
    return MHD_YES;
}

/* First call of a request: answers what can be answered from the headers.
 * Returns MHD_YES with req->responded 0 when the body is to be read. */
static enum MHD_Result s_begin(struct MHD_Connection *conn, nr_gw_req_t *req, const char *url) {
    nr_gateway_t *gw = req->gw;
    int get = req->method == NR_GW_M_GET || req->method == NR_GW_M_HEAD;
    switch (req->route) {
    case NR_GW_R_HEALTHZ:
        return get ? nr_gw_handle_healthz(conn, req) : nr_gw_allow(conn, req, "GET, HEAD");
    case NR_GW_R_READYZ:
        return get ? nr_gw_handle_readyz(conn, req) : nr_gw_allow(conn, req, "GET, HEAD");
    case NR_GW_R_METRICS:
        return get ? nr_gw_handle_metrics(conn, req) : nr_gw_allow(conn, req, "GET, HEAD");
    case NR_GW_R_VOICES:
        return get ? nr_gw_handle_voices(conn, req) : nr_gw_allow(conn, req, "GET, HEAD");
    case NR_GW_R_PAGE:
        return get ? nr_gw_handle_static(conn, req, url) : nr_gw_allow(conn, req, "GET, HEAD");
    case NR_GW_R_UNKNOWN:
        return nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL,
                            "no route %s (see /v1/jobs, /v1/runs, /v1/speak, /v1/voices, /healthz, /readyz, /metrics)",
                                url);
    case NR_GW_R_RUN:
        if (!nr_client_id_valid(req->id))
            return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                    "bad run id '%s': 1..%d characters of A-Z a-z 0-9 . _ : -",
                                    req->id, NR_PROTO_ID_MAX);
        return get ? nr_gw_handle_run(conn, req) : nr_gw_allow(conn, req, "GET, HEAD");
    case NR_GW_R_JOB:
    case NR_GW_R_AUDIO:
    case NR_GW_R_CAPTION:
    case NR_GW_R_IMAGE:
    case NR_GW_R_THUMBNAIL:
    case NR_GW_R_REVIEW:
        if (!nr_client_id_valid(req->id))
            return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                    "bad job id '%s': 1..%d characters of A-Z a-z 0-9 . _ : -",
                                    req->id, NR_PROTO_ID_MAX);
        if (req->route == NR_GW_R_IMAGE)
            return get ? nr_gw_handle_image(conn, req) : nr_gw_allow(conn, req, "GET, HEAD");
        if (req->route == NR_GW_R_THUMBNAIL)
            return get ? nr_gw_handle_thumbnail(conn, req) : nr_gw_allow(conn, req, "GET, HEAD");
        if (req->route == NR_GW_R_REVIEW) {
            if (req->method != NR_GW_M_POST) return nr_gw_allow(conn, req, "POST");
            break; /* rate-limited below: an edited caption is a new speech job */
        }
        if (req->route == NR_GW_R_JOB) {
            if (get || req->method == NR_GW_M_DELETE) return nr_gw_handle_status(conn, req);
            return nr_gw_allow(conn, req, "GET, HEAD, DELETE");
        }
        if (!get) return nr_gw_allow(conn, req, "GET, HEAD");
        return req->route == NR_GW_R_AUDIO ? nr_gw_handle_audio(conn, req) : nr_gw_handle_caption(conn, req);
    case NR_GW_R_JOBS:
    case NR_GW_R_SPEAK:
        break;
    default:
        return MHD_NO;
    }
    if (req->route == NR_GW_R_JOBS && get) return nr_gw_handle_list(conn, req);
    if (req->method != NR_GW_M_POST)
        return nr_gw_allow(conn, req, req->route == NR_GW_R_JOBS ? "GET, HEAD, POST" : "POST");

    /* POST with a body: the client's rate, options, media type and
     * declared size first, so a refused body is never read. */
    int64_t retry_ms = 0;
    char who[INET6_ADDRSTRLEN] = "";
    if (gw->limit && !nr_ratelimit_take(gw->limit, s_client_ip(conn, who, sizeof who), nr_clock_mono_ms(), &retry_ms)) {
        char after[24];
        snprintf(after, sizeof after, "%lld", (long long)((retry_ms + 999) / 1000));
        const char *const headers[] = {"Retry-After", after, NULL};
        return nr_gw_send_error(conn, req, MHD_HTTP_TOO_MANY_REQUESTS, NR_EBUSY, headers,
                                "client %s is over this gateway's limit of %d new jobs per second "
                                "(burst %d, setting client-rate); retry in %lld ms",
                            who, gw->params.client_rate, gw->params.client_burst, (long long)retry_ms);
    }
    if (req->route == NR_GW_R_REVIEW) return s_begin_review(conn, req);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, nr_gw_query_arg, req);
    if (req->opt_status)
        return nr_gw_send_error(conn, req, req->opt_status, NR_EOPTION, NULL, "%s", req->opt_error);
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    char media[96];
    nr_gw_media_type(ctype, media, sizeof media);
    if (req->route == NR_GW_R_SPEAK) {
        if (media[0] && strncmp(media, "text/", 5))
            return nr_gw_send_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NR_EUNSUPPORTED, NULL,
                                "POST /v1/speak takes the text itself (Content-Type text/plain; "
                                    "charset=utf-8), not '%s'",
                                    media);
        req->body_kind = NR_GW_BODY_TEXT;
    } else if (!strncmp(media, "image/", 6)) {
        req->body_kind = NR_GW_BODY_RAW;
    } else if (!strcmp(media, "multipart/form-data")) {
        req->body_kind = NR_GW_BODY_MULTIPART;
        req->pp = MHD_create_post_processor(conn, S_PP_BUFFER, nr_gw_post_field, req);
        if (!req->pp)
            return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                    "malformed multipart/form-data header (no boundary?)");
    } else {
        return nr_gw_send_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NR_ENOTIMAGE, NULL,
                            "POST /v1/jobs takes an image (Content-Type image/jpeg, image/png, "
                            "image/webp, image/tiff, image/gif, image/bmp, image/heic or image/avif) or "
                            "multipart/form-data with an 'image' field, not '%s'",
                                media[0] ? media : "(none)");
    }
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (clen) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(clen, &end, 10);
        if (errno || end == clen || *end || n > gw->params.max_body_bytes)
            return nr_gw_send_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, NR_ETOOBIG, NULL,
                                "the body (%s bytes) is larger than this gateway takes (%zu bytes, "
                                    "setting max-body-bytes)",
                                    clen, gw->params.max_body_bytes);
        /* The declared body is reserved now (a multipart image is at most
         * the whole form) and allocated as it arrives. */
        req->declared = 1;
        if (n > 0 && nr_gw_budget_reserve(req, (size_t)n))
            return s_send_busy(conn, req, n);
    }
    return MHD_YES;
}

/* The whole body is in: check it and submit. */
static enum MHD_Result s_finish(struct MHD_Connection *conn, nr_gw_req_t *req) {
    nr_gateway_t *gw = req->gw;
    if (req->busy && !req->too_big) return s_send_busy(conn, req, req->reserved);
    if (req->too_big)
        return nr_gw_send_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, NR_ETOOBIG, NULL,
                                "the body is larger than this gateway takes (%zu bytes, setting "
                                "max-body-bytes)",
                                gw->params.max_body_bytes);
    if (req->route == NR_GW_R_REVIEW) {
        if (req->size > NR_GW_REVIEW_BODY_MAX)
            return nr_gw_send_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, NR_ETOOBIG, NULL,
                                    "a review is at most %d bytes of JSON", NR_GW_REVIEW_BODY_MAX);
        return nr_gw_handle_review(conn, req);
    }
    if (req->body_kind == NR_GW_BODY_MULTIPART) {
        if (!req->opt_status) req->opt_status = nr_gw_flush_field(req);
        if (req->opt_status)
            return nr_gw_send_error(conn, req, req->opt_status, req->opt_code ? req->opt_code : NR_EOPTION,
                                    NULL, "%s", req->opt_error);
        enum MHD_Result done = MHD_destroy_post_processor(req->pp);
        req->pp = NULL;
        if (req->pp_failed || done != MHD_YES)
            return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                    "malformed multipart/form-data body");
        if (!req->have_image)
            return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                    "the form has no 'image' field (send the file as a part named "
                                    "image)");
        int typed = !strncmp(req->image_type, "image/", 6);
        int untyped = !req->image_type[0] || !strcmp(req->image_type, "application/octet-stream");
        if (!typed && !(untyped && nr_gw_sniff_image(req->body, req->size)))
            return nr_gw_send_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NR_ENOTIMAGE, NULL,
                                    "the 'image' part is '%s', not an image (JPEG, PNG, WebP, TIFF, GIF, BMP, HEIC or AVIF)",
                                    req->image_type[0] ? req->image_type : "untyped");
    }
    return nr_gw_handle_submit(conn, req);
}

static enum MHD_Result s_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls) {
    (void)version;
    nr_gateway_t *gw = cls;
    nr_gw_req_t *req = *con_cls;
    if (!req || !req->started) {
        if (!req) { /* the URI log callback could not make it */
            req = calloc(1, sizeof *req);
            if (!req) return MHD_NO;
            *con_cls = req;
            req->gw = gw;
            req->start_ns = nr_clock_mono_ns();
        }
        req->started = 1;
        req->method = s_method(method);
        snprintf(req->method_text, sizeof req->method_text, "%s", method);
        s_route(req, url);
        nr_gw_conn_in_request(gw, conn, 1); /* the head is in: its deadline is met */
        /* Framing, %00, Host and Origin: refused at once (the connection
         * is closed after the answer, so a body is never read as a
         * request). */
        enum MHD_Result refused;
        if (nr_gw_guard(conn, req, &refused)) return refused;
        /* A POST is checked now, so a refused body is never read. Anything
         * else is answered on the next call, once the request is complete:
         * libmicrohttpd closes the connection after a response queued
         * before that, and pages and pollers want keep-alive. */
        if (req->method == NR_GW_M_POST &&
            (req->route == NR_GW_R_JOBS || req->route == NR_GW_R_SPEAK || req->route == NR_GW_R_REVIEW))
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
        if (req->too_big || req->busy) {
            req->dropped += size;
            return req->dropped > S_DRAIN_MAX ? MHD_NO : MHD_YES; /* hang up on a flood */
        }
        if (req->deferred) return MHD_YES; /* a body where none is taken: dropped */
        if (req->body_kind == NR_GW_BODY_MULTIPART) {
            if (req->opt_status || req->pp_failed) return MHD_YES; /* answered at the end */
            if (MHD_post_process(req->pp, upload_data, size) != MHD_YES && !req->opt_status &&
                !req->too_big && !req->busy)
                req->pp_failed = 1;
        } else if (nr_gw_body_append(req, upload_data, size)) {
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
    nr_gateway_t *gw = cls;
    nr_gw_req_t *req = *con_cls;
    if (!req) return;
    *con_cls = NULL;
    nr_gw_conn_in_request(gw, conn, 0); /* the next request's head starts now */
    double seconds = (double)(nr_clock_mono_ns() - req->start_ns) / 1e9;
    if (req->responded) {
        nr_gw_metrics_request(gw, req->route, req->method, req->status, seconds, req->bytes_in,
                              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? req->bytes_out : 0);
        nr_log(NR_LOG_DEBUG, "%s %s%s%s %u (%.1f ms)", nr_gw_method_names[req->method],
               nr_gw_route_names[req->route], req->id[0] ? " " : "", req->id, req->status, seconds * 1e3);
    }
    if (req->pp) MHD_destroy_post_processor(req->pp);
    free(req->body);
    nr_gw_budget_release(req);
    free(req);
}

/* Called with the request target as sent, before libmicrohttpd decodes
 * it: makes the request's state (its *con_cls), noting a %00 that decoding
 * would turn into an early end of the path or of an argument. */
static void *s_uri_log(void *cls, const char *uri, struct MHD_Connection *conn) {
    (void)conn;
    nr_gw_req_t *req = calloc(1, sizeof *req);
    if (!req) return NULL;
    req->gw = cls;
    req->start_ns = nr_clock_mono_ns();
    req->nul_in_target = uri && strstr(uri, "%00") != NULL;
    return req;
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
    p->head_timeout_s = 10;
    p->max_buffered_bytes = 64u << 20;
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
        p->client_rate < 0 || p->client_burst < 1 || !p->broker_endpoint[0] ||
        p->head_timeout_s < 0 || p->head_timeout_s > 86400)
        return nr_seterr(err, errlen, NR_EINVAL,
                         "bad gateway settings (port 0..65535, max-body-bytes 1..%u, threads 1..256, "
                         "recent-jobs >= 1, client-rate >= 0, client-burst >= 1, head-timeout-s "
                         "0..86400, a broker endpoint)",
                         NR_PROTO_PAYLOAD_MAX);
    if (p->max_buffered_bytes < p->max_body_bytes)
        return nr_seterr(err, errlen, NR_EINVAL,
                         "max-buffered-bytes (%zu) is less than max-body-bytes (%zu): a body of the "
                         "largest size could never be taken",
                         p->max_buffered_bytes, p->max_body_bytes);
    int grc = nr_gw_guard_check(p, err, errlen);
    if (grc) return grc;
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
    self->started_mono_ms = nr_clock_mono_ms();
    self->recent = calloc((size_t)p->recent_jobs, sizeof *self->recent);
    if (!self->recent) goto nomem;
    if (pthread_mutex_init(&self->lock, NULL)) goto nomem;
    if (pthread_mutex_init(&self->metrics_lock, NULL)) {
        pthread_mutex_destroy(&self->lock);
        goto nomem;
    }
    self->locks_ready = 1;
    if (nr_gw_metrics_init(self)) {
        nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        nr_gateway_destroy(&self);
        return NULL;
    }
    if (p->client_rate > 0 &&
        !(self->limit = nr_ratelimit_new(p->client_rate, p->client_burst, S_RATE_CLIENTS))) {
        nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        nr_gateway_destroy(&self);
        return NULL;
    }
    /* The default hosts carry the configured port (any port when it is 0:
     * the chosen one is not known yet, and nobody else knows it either). */
    self->port = p->port;
    int rc = nr_gw_guard_init(self, err, errlen);
    if (!rc) rc = nr_gw_conns_start(self);
    if (rc) {
        if (rc == NR_ENOMEM) nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        nr_gateway_destroy(&self);
        return NULL;
    }
    self->daemon = MHD_start_daemon(
        flags, (uint16_t)p->port, NULL, NULL, s_access, self, MHD_OPTION_EXTERNAL_LOGGER,
        s_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)p->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)p->connection_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
        MHD_OPTION_URI_LOG_CALLBACK, s_uri_log, self, MHD_OPTION_NOTIFY_CONNECTION,
        nr_gw_conn_notify, self, MHD_OPTION_END);
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
    nr_gw_conns_stop_reaper(self);
    if (self->daemon) MHD_stop_daemon(self->daemon); /* joins every pool thread */
    nr_gw_conns_destroy(self);
    nr_gw_guard_destroy(self);
    nr_gw_clients_destroy(self);
    nr_metrics_destroy(&self->metrics);
    free(self->recent);
    nr_ratelimit_destroy(&self->limit);
    if (self->locks_ready) {
        pthread_mutex_destroy(&self->lock);
        pthread_mutex_destroy(&self->metrics_lock);
    }
    free(self);
    *self_p = NULL;
}

int nr_gateway_port(const nr_gateway_t *self) { return self ? self->port : 0; }
