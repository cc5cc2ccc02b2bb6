/* The handlers of the job and health routes, and broker errors answered
 * with the HTTP status that fits each NR_E* code (the broker's
 * unreachability explained through a handshake probe). */
#include "client/gateway/internal.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "common/utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_RETRY_AFTER "1"
#define S_PROBE_MAX_MS 1000  /* longest handshake probe after an unreachable broker */
#define S_PROBE_KEEP_MS 2000 /* a probe's outcome is reused this long */
#define S_ROUTE_IMAGE "vision,text,speech"
#define S_ROUTE_SPEECH "speech"

static const char *s_or(const char *s, const char *fallback) { return s ? s : fallback; }

/* Text to speak: valid UTF-8 without a NUL byte. */
static int s_utf8_valid(const uint8_t *s, size_t n) {
    return !memchr(s, 0, n) && nr_utf8_validate(s, n, NULL) == 0;
}

static long long s_kv_ll(const nr_msg_t *m, const char *key) {
    const char *v = nr_proto_kv_get(m, key);
    return v ? strtoll(v, NULL, 10) : -1;
}

/* ---- broker errors ---- */

enum MHD_Result nr_gw_send_no_client(struct MHD_Connection *conn, nr_gw_req_t *req) {
    int code;
    const char *why = nr_gw_client_failure(&code);
    return nr_gw_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, code, NULL,
                            "cannot make a broker client: %s", why);
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
enum MHD_Result nr_gw_send_broker_error(struct MHD_Connection *conn, nr_gw_req_t *req, int rc,
                                        const char *what) {
    nr_gateway_t *gw = req->gw;
    static const char *const retry[] = {"Retry-After", S_RETRY_AFTER, NULL};
    nr_client_t *c = nr_gw_client_current(gw);
    const char *detail = c ? nr_client_error(c) : "";
    switch (rc) {
    case NR_ECONNECT: {
        char msg[1024];
        s_unreachable_message(gw, msg, sizeof msg);
        return nr_gw_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, rc, retry, "%s", msg);
    }
    case NR_ETIMEDOUT:
        return nr_gw_send_error(conn, req, MHD_HTTP_GATEWAY_TIMEOUT, rc, NULL,
                            "narrator-broker at %s did not answer %s within %d ms: is it running "
                                "and not overloaded?",
                                gw->params.broker_endpoint, what, gw->params.request_timeout_ms);
    case NR_EBUSY:
        return nr_gw_send_error(conn, req, MHD_HTTP_TOO_MANY_REQUESTS, rc, retry,
                                "the queue is full, retry later: %s", detail);
    case NR_EREDIS:
        return nr_gw_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, rc, retry,
                                "narrator-broker cannot reach its Redis: %s", detail);
    case NR_ENOTFOUND:
        return nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, rc, NULL, "no job '%s'", req->id);
    case NR_ESTATE:
        return nr_gw_send_error(conn, req, MHD_HTTP_CONFLICT, rc, NULL, "%s", detail);
    case NR_EINVAL:
    case NR_EOPTION:
        return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, rc, NULL, "%s", detail);
    case NR_ETOOBIG:
        return nr_gw_send_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, rc, NULL, "%s", detail);
    case NR_ENOMEM:
        return nr_gw_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, rc, retry,
                                "out of memory while asking the broker (%s)", what);
    default:
        return nr_gw_send_error(conn, req, MHD_HTTP_BAD_GATEWAY, rc, NULL,
                                "narrator-broker at %s answered %s with an error: %s",
                            gw->params.broker_endpoint, what, *detail ? detail : nr_strerror(rc));
    }
}

/* ---- handlers ---- */

enum MHD_Result nr_gw_handle_healthz(struct MHD_Connection *conn, nr_gw_req_t *req) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return MHD_NO;
    cJSON_AddStringToObject(j, "status", "ok");
    cJSON_AddStringToObject(j, "broker", req->gw->params.broker_endpoint);
    cJSON_AddNumberToObject(j, "max_body_bytes", (double)req->gw->params.max_body_bytes);
    cJSON_AddNumberToObject(j, "uptime_s", (double)((nr_clock_mono_ms() - req->gw->started_mono_ms) / 1000));
    return nr_gw_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

/* GET /v1/voices: the voices the live workers offer, per stage (the
 * broker's STATS "voices.<stage>"), each name checked again here. */
enum MHD_Result nr_gw_handle_voices(struct MHD_Connection *conn, nr_gw_req_t *req) {
    nr_client_t *c = nr_gw_client(req->gw);
    if (!c) return nr_gw_send_no_client(conn, req);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_stats(c, &reply);
    nr_gw_metrics_broker(req->gw, rc);
    if (rc) {
        nr_proto_msg_clear(&reply);
        return nr_gw_send_broker_error(conn, req, rc, "STATS");
    }
    cJSON *j = cJSON_CreateObject();
    cJSON *stages = j ? cJSON_AddObjectToObject(j, "stages") : NULL;
    if (!stages) {
        cJSON_Delete(j);
        nr_proto_msg_clear(&reply);
        return MHD_NO;
    }
    for (uint32_t i = 0; i < reply.kv_len; i++) {
        const char *k = reply.kv[i].key, *v = reply.kv[i].value;
        if (strncmp(k, "voices.", 7) || !k[7] || cJSON_GetObjectItemCaseSensitive(stages, k + 7)) continue;
        cJSON *list = cJSON_AddArrayToObject(stages, k + 7);
        char name[NR_PROTO_VOICE_NAME_MAX + 1];
        for (const char *p = v; *p && cJSON_GetArraySize(list) < 4 * NR_PROTO_VOICES_MAX;) {
            size_t n = strcspn(p, ",");
            if (n <= NR_PROTO_VOICE_NAME_MAX) {
                memcpy(name, p, n);
                name[n] = '\0';
                if (nr_proto_voice_name_valid(name)) cJSON_AddItemToArray(list, cJSON_CreateString(name));
            }
            p += n + (p[n] == ',');
        }
    }
    nr_proto_msg_clear(&reply);
    return nr_gw_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

enum MHD_Result nr_gw_handle_readyz(struct MHD_Connection *conn, nr_gw_req_t *req) {
    nr_client_t *c = nr_gw_client(req->gw);
    if (!c) return nr_gw_send_no_client(conn, req);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_stats(c, &reply);
    nr_gw_metrics_broker(req->gw, rc);
    if (rc) {
        nr_proto_msg_clear(&reply);
        return nr_gw_send_broker_error(conn, req, rc, "STATS");
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
    return nr_gw_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

enum MHD_Result nr_gw_handle_status(struct MHD_Connection *conn, nr_gw_req_t *req) {
    nr_client_t *c = nr_gw_client(req->gw);
    if (!c) return nr_gw_send_no_client(conn, req);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = req->method == NR_GW_M_DELETE ? nr_client_cancel(c, req->id, &reply)
                                           : nr_client_status(c, req->id, &reply);
    nr_gw_metrics_broker(req->gw, rc);
    if (rc == NR_ESTATE) {
        char state[32];
        snprintf(state, sizeof state, "%s", s_or(nr_proto_kv_get(&reply, "state"), "final"));
        nr_proto_msg_clear(&reply);
        return nr_gw_send_error(conn, req, MHD_HTTP_CONFLICT, rc, NULL,
                                "job '%s' is already %s and cannot be cancelled", req->id, state);
    }
    if (rc) {
        nr_proto_msg_clear(&reply);
        return nr_gw_send_broker_error(conn, req, rc, req->method == NR_GW_M_DELETE ? "CANCEL" : "STATUS");
    }
    cJSON *j = nr_gw_record_json(&reply, req->id);
    nr_proto_msg_clear(&reply);
    return nr_gw_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

/* 409 for a job that is not done (yet): says what state it is in. */
static enum MHD_Result s_not_done(struct MHD_Connection *conn, nr_gw_req_t *req, const nr_msg_t *rec,
                                  const char *what) {
    nr_client_record_t r;
    nr_client_record(rec, &r);
    const char *state = r.state, *error = r.error, *msg = r.error_message, *stage = r.stage;
    if (state && (!strcmp(state, "failed") || !strcmp(state, "cancelled")))
        return nr_gw_send_error(conn, req, MHD_HTTP_CONFLICT, NR_ESTATE, NULL,
                                "job '%s' is %s (%s%s%s): it has no %s", req->id, state,
                            error && *error ? error : state, msg && *msg ? ": " : "", msg ? msg : "",
                                what);
    static const char *const retry[] = {"Retry-After", S_RETRY_AFTER, NULL};
    return nr_gw_send_error(conn, req, MHD_HTTP_CONFLICT, NR_ESTATE, retry,
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
static nr_client_t *s_job_status(struct MHD_Connection *conn, nr_gw_req_t *req, nr_msg_t *reply,
                                 enum MHD_Result *ret) {
    nr_proto_msg_init(reply);
    nr_client_t *c = nr_gw_client(req->gw);
    if (!c) {
        *ret = nr_gw_send_no_client(conn, req);
        return NULL;
    }
    int rc = nr_client_status(c, req->id, reply);
    nr_gw_metrics_broker(req->gw, rc);
    if (rc) {
        nr_proto_msg_clear(reply);
        *ret = nr_gw_send_broker_error(conn, req, rc, "STATUS");
        return NULL;
    }
    return c;
}

enum MHD_Result nr_gw_handle_audio(struct MHD_Connection *conn, nr_gw_req_t *req) {
    nr_msg_t reply;
    enum MHD_Result ret;
    nr_client_t *c = s_job_status(conn, req, &reply, &ret);
    if (!c) return ret;
    const char *route = nr_proto_kv_get(&reply, "route");
    const char *state = nr_proto_kv_get(&reply, "state");
    if (route && !strstr(route, "speech")) {
        ret = nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL,
                               "job '%s' has no speech stage (route %s)", req->id, route);
    } else if (!state || strcmp(state, "done")) {
        ret = s_not_done(conn, req, &reply, "audio");
    } else {
        int rc = nr_client_fetch(c, req->id, "speech", &reply);
        nr_gw_metrics_broker(req->gw, rc);
        if (rc) {
            ret = rc == NR_ENOTFOUND
                      ? nr_gw_send_error(conn, req, MHD_HTTP_GONE, NR_ENOTFOUND, NULL,
                                         "the audio of job '%s' is no longer stored (retention "
                                         "passed): submit it again",
                                         req->id)
                      : nr_gw_send_broker_error(conn, req, rc, "FETCH");
        } else if (reply.frames_len == 0) {
            ret = nr_gw_send_error(conn, req, MHD_HTTP_BAD_GATEWAY, NR_EPROTO, NULL,
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
                ret = nr_gw_send_error(conn, req, MHD_HTTP_RANGE_NOT_SATISFIABLE, NR_EINVAL, h,
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
                ret = nr_gw_send(conn, req, MHD_HTTP_PARTIAL_CONTENT, "audio/wav", wav, n, h);
            } else {
                const char *const h[] = {"Content-Disposition", disposition, "Accept-Ranges", "bytes",
                                         NULL};
                ret = nr_gw_send(conn, req, MHD_HTTP_OK, "audio/wav", wav, size, h);
            }
        }
    }
    nr_proto_msg_clear(&reply);
    return ret;
}

enum MHD_Result nr_gw_handle_caption(struct MHD_Connection *conn, nr_gw_req_t *req) {
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
            ret = nr_gw_send(conn, req, MHD_HTTP_OK, "text/plain; charset=utf-8", body, n + 1, NULL);
        }
    } else if (route && !strstr(route, "text")) {
        ret = nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL,
                           "job '%s' has no text stage (route %s), so no caption", req->id, route);
    } else {
        ret = s_not_done(conn, req, &reply, "caption");
    }
    nr_proto_msg_clear(&reply);
    return ret;
}

/* SUBMIT of the gathered body: POST /v1/jobs and POST /v1/speak. */
enum MHD_Result nr_gw_handle_submit(struct MHD_Connection *conn, nr_gw_req_t *req) {
    nr_gateway_t *gw = req->gw;
    const char *route = req->route == NR_GW_R_SPEAK ? S_ROUTE_SPEECH : S_ROUTE_IMAGE;
    if (req->size == 0)
        return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST,
                                req->route == NR_GW_R_SPEAK ? NR_ETEXT : NR_EINVAL, NULL,
                                req->route == NR_GW_R_SPEAK ? "the text to speak is empty"
                                : "the request has no image bytes");
    if (req->route == NR_GW_R_SPEAK && !s_utf8_valid(req->body, req->size))
        return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_ETEXT, NULL,
                                "the text to speak is not valid UTF-8 (or holds a NUL byte)");
    nr_client_options_t opts;
    char why[256] = "";
    int rc = nr_client_options(&opts, req->opts.beams, req->opts.max_length, req->opts.voice, req->opts.prompt,
                               why, sizeof why);
    if (!rc) rc = nr_client_options_speed(&opts, req->opts.speed, why, sizeof why);
    if (!rc) rc = nr_client_options_language(&opts, req->opts.language, why, sizeof why);
    if (rc) return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, rc, NULL, "%s", why);
    char id[NR_CLIENT_ID_HEX + 1];
    rc = nr_client_content_id(req->body, req->size, route, opts.kv, opts.n, id);
    if (rc) return nr_gw_send_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, rc, NULL,
                                    "cannot make a job id: %s", nr_strerror(rc));
    snprintf(req->id, sizeof req->id, "%s", id);
    nr_client_t *c = nr_gw_client(gw);
    if (!c) return nr_gw_send_no_client(conn, req);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    rc = nr_client_submit(c, id, route, opts.kv, opts.n, req->body, req->size, &reply);
    nr_gw_metrics_broker(gw, rc);
    if (rc) {
        nr_proto_msg_clear(&reply);
        return nr_gw_send_broker_error(conn, req, rc, "SUBMIT");
    }
    nr_client_record_t rec;
    nr_client_record(&reply, &rec);
    int is_existing = rec.existing;
    nr_gw_recent_add(gw, id, route, req->name, req->size, is_existing);
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
    return nr_gw_send_json(conn, req, MHD_HTTP_ACCEPTED, j, h);
}
