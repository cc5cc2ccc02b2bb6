/* The recent-jobs ring: jobs submitted through this gateway process, oldest
 * first, in memory only (GET /v1/jobs lists them newest first). */
#include "client/gateway/internal.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nr_gw_recent_add(nr_gateway_t *gw, const char *id, const char *route, const char *name,
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
    nr_gw_recent_t *e = &gw->recent[gw->n_recent++];
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", id);
    snprintf(e->route, sizeof e->route, "%s", route);
    snprintf(e->name, sizeof e->name, "%s", name ? name : "");
    e->bytes = bytes;
    e->submitted_ms = nr_clock_wall_ms();
    e->existing = existing;
    pthread_mutex_unlock(&gw->lock);
}


size_t nr_gw_recent_count(nr_gateway_t *gw) {
    pthread_mutex_lock(&gw->lock);
    size_t n = gw->n_recent;
    pthread_mutex_unlock(&gw->lock);
    return n;
}

enum MHD_Result nr_gw_handle_list(struct MHD_Connection *conn, nr_gw_req_t *req) {
    nr_gateway_t *gw = req->gw;
    cJSON *j = cJSON_CreateObject();
    if (!j) return MHD_NO;
    cJSON *arr = cJSON_AddArrayToObject(j, "jobs");
    pthread_mutex_lock(&gw->lock);
    for (size_t i = gw->n_recent; i-- > 0;) { /* newest first */
        const nr_gw_recent_t *e = &gw->recent[i];
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
    return nr_gw_send_json(conn, req, MHD_HTTP_OK, j, NULL);
}
