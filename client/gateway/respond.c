/* Answers: a body with its status, type and headers (every response gets
 * no-store and nosniff), JSON bodies, the API's error object, and 405. */
#include "client/gateway/internal.h"
#include "common/error.h"
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void s_add_common_headers(struct MHD_Response *r) {
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
}

enum MHD_Result nr_gw_send(struct MHD_Connection *conn, nr_gw_req_t *req, unsigned status,
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

enum MHD_Result nr_gw_send_json(struct MHD_Connection *conn, nr_gw_req_t *req, unsigned status,
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
    return nr_gw_send(conn, req, status, "application/json", body, n + 1, headers);
}

enum MHD_Result nr_gw_send_error(struct MHD_Connection *conn, nr_gw_req_t *req, unsigned status,
                                 int code, const char *const *headers, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject();
    if (!j) return MHD_NO;
    if (req->route == NR_GW_R_READYZ) cJSON_AddBoolToObject(j, "ready", 0); /* for probes that read it */
    cJSON_AddStringToObject(j, "error", nr_errname(code));
    cJSON_AddStringToObject(j, "message", msg);
    if (status >= 500) nr_log(NR_LOG_WARN, "%u %s: %s", status, nr_errname(code), msg);
    else nr_log(NR_LOG_DEBUG, "%u %s: %s", status, nr_errname(code), msg);
    return nr_gw_send_json(conn, req, status, j, headers);
}

enum MHD_Result nr_gw_allow(struct MHD_Connection *conn, nr_gw_req_t *req, const char *allow) {
    const char *const h[] = {"Allow", allow, NULL};
    return nr_gw_send_error(conn, req, MHD_HTTP_METHOD_NOT_ALLOWED, NR_EUNSUPPORTED, h,
                            "method %s is not allowed on %s (allowed: %s)", req->method_text,
                            nr_gw_route_names[req->route], allow);
}
