/* A job record (the kv of a broker REPLY) as the API's JSON: the fields
 * every record has, stage fields grouped by stage, options, timings and
 * links (client/gateway/API.md). */
#include "client/gateway/internal.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

cJSON *nr_gw_record_json(const nr_msg_t *rec, const char *fallback_id) {
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
        } else if (!strncmp(k, "review.", 7)) { /* a person's review: its own object */
            cJSON *review = s_child(j, "review");
            if (review && !strcmp(k + 7, "approved")) cJSON_AddBoolToObject(review, "approved", !strcmp(v, "1"));
            else if (review) s_add_value(review, k + 7, v);
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
