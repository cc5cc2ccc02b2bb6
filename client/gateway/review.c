/* The review step of a run (client/gateway/API.md): a run's jobs page by
 * page with their records (JOBS, then STATUS of each), a job's submitted
 * image (FETCH of stage "input") and its thumbnail (FETCH of stage
 * "thumbnail", the JPEG the vision worker made), and a person's review: an edited
 * caption is spoken again as a new speech job and stored with the
 * approval in the job's record (REVIEW), the worker's caption kept. */
#include "client/gateway/internal.h"
#include "common/error.h"
#include "common/log.h"
#include "common/utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_REVIEW_CAPTION_MAX 2000 /* bytes; the broker's NR_BROKER_REVIEW_CAPTION_MAX */

/* The record of one job of a page as JSON; on a failed STATUS the state
 * the page gave and the error. */
static cJSON *s_job_json(nr_client_t *c, nr_gateway_t *gw, const char *id, const char *state) {
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    int rc = nr_client_status(c, id, &rec);
    nr_gw_metrics_broker(gw, rc);
    cJSON *j = NULL;
    if (rc == 0) {
        j = nr_gw_record_json(&rec, id);
    } else if ((j = cJSON_CreateObject())) {
        cJSON_AddStringToObject(j, "id", id);
        cJSON_AddStringToObject(j, "state", state);
        cJSON_AddStringToObject(j, "error", nr_errname(rc));
        cJSON_AddStringToObject(j, "error_message", nr_client_error(c));
    }
    nr_proto_msg_clear(&rec);
    return j;
}

enum MHD_Result nr_gw_handle_run(struct MHD_Connection *conn, nr_gw_req_t *req) {
    const char *arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset");
    unsigned long long offset = 0;
    if (arg) {
        char *end;
        errno = 0;
        offset = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-' || offset > UINT32_MAX)
            return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL,
                                    "offset must be a whole number 0..%u, not '%s'", UINT32_MAX, arg);
    }
    nr_client_t *c = nr_gw_client(req->gw);
    if (!c) return nr_gw_send_no_client(conn, req);
    nr_msg_t page;
    nr_proto_msg_init(&page);
    int rc = nr_client_jobs(c, req->id, (uint32_t)offset, &page);
    nr_gw_metrics_broker(req->gw, rc);
    if (rc == NR_ENOTFOUND) {
        nr_proto_msg_clear(&page);
        return nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, rc, NULL, "no run '%s'", req->id);
    }
    if (rc) {
        nr_proto_msg_clear(&page);
        return nr_gw_send_broker_error(conn, req, rc, "JOBS");
    }
    cJSON *j = cJSON_CreateObject();
    cJSON *jobs = j ? cJSON_AddArrayToObject(j, "jobs") : NULL;
    if (!jobs) {
        cJSON_Delete(j);
        nr_proto_msg_clear(&page);
        return MHD_NO;
    }
    cJSON_AddStringToObject(j, "run", req->id);
    const char *total = nr_proto_kv_get(&page, "total"), *next = nr_proto_kv_get(&page, "next");
    cJSON_AddNumberToObject(j, "total", total ? strtod(total, NULL) : 0);
    cJSON_AddNumberToObject(j, "offset", (double)offset);
    if (next) cJSON_AddNumberToObject(j, "next", strtod(next, NULL));
    else cJSON_AddNullToObject(j, "next");
    for (uint32_t i = 0; i < page.kv_len; i++) {
        const char *key = page.kv[i].key, *value = page.kv[i].value;
        if (!strcmp(key, "total") || !strcmp(key, "next")) continue;
        const char *space = strchr(value, ' ');
        char state[16];
        if (!space || (size_t)(space - value) >= sizeof state || !nr_client_id_valid(space + 1)) continue;
        snprintf(state, sizeof state, "%.*s", (int)(space - value), value);
        cJSON *job = s_job_json(c, req->gw, space + 1, state);
        if (job) cJSON_AddItemToArray(jobs, job);
    }
    nr_proto_msg_clear(&page);
    return nr_gw_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}

/* FETCH of stage "input" or "thumbnail" answered as the image bytes, typed
 * by their magic (a thumbnail is always a JPEG: the broker checks it). */
static enum MHD_Result s_send_image(struct MHD_Connection *conn, nr_gw_req_t *req, const char *stage) {
    const int thumb = !strcmp(stage, "thumbnail");
    nr_client_t *c = nr_gw_client(req->gw);
    if (!c) return nr_gw_send_no_client(conn, req);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_fetch(c, req->id, stage, &reply);
    nr_gw_metrics_broker(req->gw, rc);
    enum MHD_Result ret;
    if (rc == NR_ENOTFOUND && thumb) {
        ret = nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, rc, NULL,
                               "no thumbnail for job '%s' (unknown job, one that never reached a vision "
                               "worker, made before thumbnails, or kept no longer): GET /v1/jobs/%s/image "
                               "has the original", req->id, req->id);
    } else if (rc == NR_ENOTFOUND) {
        ret = nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, rc, NULL,
                               "no image for job '%s' (unknown job, or kept no longer: retention passed)",
                               req->id);
    } else if (rc) {
        ret = nr_gw_send_broker_error(conn, req, rc, "FETCH");
    } else if (reply.frames_len == 0) {
        ret = nr_gw_send_error(conn, req, MHD_HTTP_BAD_GATEWAY, NR_EPROTO, NULL,
                               "the broker sent no image for job '%s'", req->id);
    } else {
        uint8_t *data = reply.frames[0].data;
        size_t size = reply.frames[0].size;
        reply.frames[0].data = NULL; /* the response owns it now */
        const char *type = nr_gw_image_type(data, size); /* never a type a browser would run */
        if (!type) type = "application/octet-stream";
        char disposition[128];
        snprintf(disposition, sizeof disposition, "inline; filename=\"%s%s\"", req->id, thumb ? ".jpg" : "");
        const char *const h[] = {"Content-Disposition", disposition, "X-Content-Type-Options", "nosniff",
                                 "Content-Security-Policy", "sandbox", NULL};
        ret = nr_gw_send(conn, req, MHD_HTTP_OK, type, data, size, h);
    }
    nr_proto_msg_clear(&reply);
    return ret;
}

enum MHD_Result nr_gw_handle_image(struct MHD_Connection *conn, nr_gw_req_t *req) {
    return s_send_image(conn, req, "input");
}

enum MHD_Result nr_gw_handle_thumbnail(struct MHD_Connection *conn, nr_gw_req_t *req) {
    return s_send_image(conn, req, "thumbnail");
}

/* Speaks the edited caption as a new speech job with the voice the job
 * was submitted with; its id into speech_job. */
static int s_speak_again(nr_client_t *c, nr_gateway_t *gw, const nr_msg_t *rec, const char *caption,
                         char speech_job[NR_CLIENT_ID_HEX + 1], char *why, size_t whylen) {
    nr_client_options_t opts;
    const char *voice = nr_proto_kv_get(rec, "opt.voice");
    int rc = nr_client_options(&opts, 0, 0, voice ? voice : "", NULL, why, whylen);
    if (rc) return rc;
    rc = nr_client_content_id(caption, strlen(caption), "speech", opts.kv, opts.n, speech_job);
    if (rc) return nr_seterr(why, whylen, rc, "cannot make a job id");
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    rc = nr_client_submit(c, speech_job, "speech", opts.kv, opts.n, caption, strlen(caption), &reply);
    nr_gw_metrics_broker(gw, rc);
    nr_proto_msg_clear(&reply);
    if (rc) nr_seterr(why, whylen, rc, "%s", nr_client_error(c));
    return rc;
}

enum MHD_Result nr_gw_handle_review(struct MHD_Connection *conn, nr_gw_req_t *req) {
    cJSON *body = cJSON_ParseWithLength((const char *)req->body, req->size);
    const cJSON *caption = cJSON_GetObjectItemCaseSensitive(body, "caption");
    const cJSON *approved = cJSON_GetObjectItemCaseSensitive(body, "approved");
    int fields = cJSON_GetArraySize(body);
    const char *bad = !cJSON_IsObject(body)                     ? "the body is not a JSON object"
                      : (caption && !cJSON_IsString(caption))   ? "caption must be a string"
                      : (approved && !cJSON_IsBool(approved))   ? "approved must be true or false"
                      : (!caption && !approved)                 ? "give caption, approved or both"
                      : fields != !!caption + !!approved        ? "a review takes caption and approved only"
                                                                : NULL;
    const char *text = caption ? caption->valuestring : NULL;
    size_t len = text ? strlen(text) : 0;
    if (!bad && text && (len == 0 || len > S_REVIEW_CAPTION_MAX ||
                         nr_utf8_validate((const uint8_t *)text, len, NULL)))
        bad = "caption must be 1..2000 bytes of UTF-8";
    if (bad) {
        cJSON_Delete(body);
        return nr_gw_send_error(conn, req, MHD_HTTP_BAD_REQUEST, NR_EINVAL, NULL, "%s", bad);
    }
    enum MHD_Result ret;
    nr_client_t *c = nr_gw_client(req->gw);
    if (!c) {
        cJSON_Delete(body);
        return nr_gw_send_no_client(conn, req);
    }
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    char speech_job[NR_CLIENT_ID_HEX + 1] = "", why[512] = "";
    int rc = nr_client_status(c, req->id, &rec);
    nr_gw_metrics_broker(req->gw, rc);
    const char *state = rc ? NULL : nr_proto_kv_get(&rec, "state");
    if (rc) {
        ret = nr_gw_send_broker_error(conn, req, rc, "STATUS");
    } else if (!state || strcmp(state, "done")) {
        ret = nr_gw_send_error(conn, req, MHD_HTTP_CONFLICT, NR_ESTATE, NULL,
                               "job '%s' is %s: only a done job can be reviewed", req->id, state ? state : "?");
    } else if (text && (rc = s_speak_again(c, req->gw, &rec, text, speech_job, why, sizeof why))) {
        ret = nr_gw_send_error(conn, req, rc == NR_EBUSY ? MHD_HTTP_TOO_MANY_REQUESTS : MHD_HTTP_BAD_GATEWAY,
                               rc, NULL, "the edited caption could not be spoken: %s", why);
    } else {
        nr_proto_msg_clear(&rec);
        rc = nr_client_review(c, req->id, text, approved ? cJSON_IsTrue(approved) : -1,
                              speech_job[0] ? speech_job : NULL, &rec);
        nr_gw_metrics_broker(req->gw, rc);
        if (rc) {
            ret = nr_gw_send_broker_error(conn, req, rc, "REVIEW");
        } else {
            nr_log(NR_LOG_INFO, "job %s reviewed%s%s", req->id, text ? ", caption edited" : "",
                   approved ? (cJSON_IsTrue(approved) ? ", approved" : ", not approved") : "");
            ret = nr_gw_send_json(conn, req, MHD_HTTP_OK, nr_gw_record_json(&rec, req->id), NULL);
        }
    }
    nr_proto_msg_clear(&rec);
    cJSON_Delete(body);
    return ret;
}
