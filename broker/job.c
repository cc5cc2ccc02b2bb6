/* Jobs in broker memory and the table that finds them by id. */
#include "broker/job.h"
#include "common/error.h"
#include "common/hash.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_state_names[] = {"queued", "running", "done", "failed", "cancelled"};

const char *nr_job_state_name(nr_job_state_t state) {
    if ((unsigned)state > NR_JOB_CANCELLED) return "?";
    return s_state_names[state];
}

int nr_job_state_parse(const char *name) {
    for (int i = 0; i <= NR_JOB_CANCELLED; i++)
        if (name && !strcmp(name, s_state_names[i])) return i;
    return -1;
}

int nr_job_is_final(const nr_broker_job_t *job) {
    return job->state == NR_JOB_DONE || job->state == NR_JOB_FAILED ||
           job->state == NR_JOB_CANCELLED;
}

nr_broker_job_t *nr_broker_job_new(const char *id) {
    nr_broker_job_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    snprintf(self->id, sizeof self->id, "%s", id ? id : "");
    return self;
}

void nr_broker_job_destroy(nr_broker_job_t **p) {
    if (!p || !*p) return;
    nr_broker_job_t *self = *p;
    nr_broker_job_clear_fields(self, "");
    free(self->fields);
    free(self->input);
    for (int i = 0; i < NR_BROKER_BLOB_SLOTS; i++) free(self->unsaved[i]);
    free(self);
    *p = NULL;
}

const char *nr_broker_job_stage(const nr_broker_job_t *job) {
    if (job->route_len == 0) return "";
    uint32_t i = job->stage_index < job->route_len ? job->stage_index : job->route_len - 1;
    return job->route[i];
}

int nr_broker_job_set(nr_broker_job_t *job, const char *key, const char *value) {
    char *v = strdup(value ? value : "");
    if (!v) return NR_ENOMEM;
    for (uint32_t i = 0; i < job->fields_len; i++) {
        if (!strcmp(job->fields[i].key, key)) {
            free(job->fields[i].value);
            job->fields[i].value = v;
            if (i < job->stored.fields_saved) job->stored.fields_saved = i;
            job->stored.fields_edits++;
            return 0;
        }
    }
    if (job->fields_len == job->fields_cap) {
        uint32_t cap = job->fields_cap ? job->fields_cap * 2 : 16;
        nr_kv_t *f = realloc(job->fields, cap * sizeof *f);
        if (!f) {
            free(v);
            return NR_ENOMEM;
        }
        job->fields = f;
        job->fields_cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return NR_ENOMEM;
    }
    job->fields[job->fields_len].key = k;
    job->fields[job->fields_len].value = v;
    job->fields_len++;
    return 0;
}

const char *nr_broker_job_get(const nr_broker_job_t *job, const char *key) {
    for (uint32_t i = 0; i < job->fields_len; i++)
        if (!strcmp(job->fields[i].key, key)) return job->fields[i].value;
    return NULL;
}

void nr_broker_job_clear_fields(nr_broker_job_t *job, const char *prefix) {
    size_t plen = strlen(prefix);
    uint32_t out = 0;
    for (uint32_t i = 0; i < job->fields_len; i++) {
        if (!strncmp(job->fields[i].key, prefix, plen)) {
            free(job->fields[i].key);
            free(job->fields[i].value);
            if (out < job->stored.fields_saved) job->stored.fields_saved = out;
            job->stored.fields_edits++;
        } else {
            job->fields[out++] = job->fields[i];
        }
    }
    job->fields_len = out;
}

void nr_broker_job_take_input(nr_broker_job_t *job, uint8_t **data, size_t size) {
    free(job->input);
    job->input = data ? *data : NULL;
    job->input_size = job->input ? size : 0;
    if (data) *data = NULL;
}

const char *nr_broker_job_slot_name(const nr_broker_job_t *job, int slot) {
    return slot == NR_BROKER_THUMB_SLOT ? NR_BROKER_THUMB_STAGE : job->route[slot];
}

int nr_broker_thumb_valid(const uint8_t *data, size_t size) {
    return data && size >= 4 && size <= NR_BROKER_THUMB_MAX && data[0] == 0xFF && data[1] == 0xD8 &&
           data[2] == 0xFF && data[size - 2] == 0xFF && data[size - 1] == 0xD9;
}

void nr_broker_job_route_string(const nr_broker_job_t *job, char *buf, size_t size) {
    size_t n = 0;
    if (size) buf[0] = '\0';
    for (uint32_t i = 0; i < job->route_len && n < size; i++) {
        int m = snprintf(buf + n, size - n, "%s%s", i ? "," : "", job->route[i]);
        if (m < 0) break;
        n += (size_t)m;
    }
}

static int s_valid_name(const char *s, size_t len) {
    if (len == 0 || len > NR_PROTO_NAME_MAX) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return 0;
    }
    return 1;
}

int nr_broker_job_parse_route(nr_broker_job_t *job, const char *route) {
    uint32_t n = 0;
    const char *s = route;
    while (s && *s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (n == NR_PROTO_ROUTE_MAX || !s_valid_name(s, len)) return NR_EINVAL;
        memcpy(job->route[n], s, len);
        job->route[n][len] = '\0';
        n++;
        s = comma ? comma + 1 : NULL;
    }
    if (n == 0) return NR_EINVAL;
    job->route_len = n;
    return 0;
}

void nr_broker_job_record(const nr_broker_job_t *job, nr_msg_t *msg, long stage_workers) {
    char buf[512];
    nr_proto_kv_add(msg, "id", job->id);
    nr_proto_kv_add(msg, "state", nr_job_state_name(job->state));
    nr_proto_kv_add(msg, "stage", nr_broker_job_stage(job));
    nr_broker_job_route_string(job, buf, sizeof buf);
    nr_proto_kv_add(msg, "route", buf);
    snprintf(buf, sizeof buf, "%" PRIu32, job->attempts);
    nr_proto_kv_add(msg, "attempts", buf);
    nr_proto_kv_add(msg, "error", job->error ? nr_errname(job->error) : "");
    nr_proto_kv_add(msg, "error_message", job->error_message);
    snprintf(buf, sizeof buf, "%" PRId64, job->created_ms);
    nr_proto_kv_add(msg, "created_ms", buf);
    snprintf(buf, sizeof buf, "%" PRId64, job->updated_ms);
    nr_proto_kv_add(msg, "updated_ms", buf);
    if (stage_workers >= 0) {
        snprintf(buf, sizeof buf, "%ld", stage_workers);
        nr_proto_kv_add(msg, "stage_workers", buf);
    }
    /* A field the message cannot carry (too many, key too long) is left out. */
    for (uint32_t i = 0; i < job->fields_len; i++)
        nr_proto_kv_add(msg, job->fields[i].key, job->fields[i].value);
}

/* The table: chained hashing on FNV-1a, doubling at load 1. */
struct nr_broker_jobs {
    nr_broker_job_t **buckets;
    size_t nbuckets, count;
};

nr_broker_jobs_t *nr_broker_jobs_new(void) {
    nr_broker_jobs_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->nbuckets = 256;
    self->buckets = calloc(self->nbuckets, sizeof *self->buckets);
    if (!self->buckets) {
        free(self);
        return NULL;
    }
    return self;
}

void nr_broker_jobs_destroy(nr_broker_jobs_t **p) {
    if (!p || !*p) return;
    nr_broker_jobs_t *self = *p;
    for (size_t b = 0; b < self->nbuckets; b++) {
        nr_broker_job_t *j = self->buckets[b];
        while (j) {
            nr_broker_job_t *next = j->hnext;
            nr_broker_job_destroy(&j);
            j = next;
        }
    }
    free(self->buckets);
    free(self);
    *p = NULL;
}

nr_broker_job_t *nr_broker_jobs_find(nr_broker_jobs_t *self, const char *id) {
    for (nr_broker_job_t *j = self->buckets[nr_hash_str(id) % self->nbuckets]; j; j = j->hnext)
        if (!strcmp(j->id, id)) return j;
    return NULL;
}

static void s_grow(nr_broker_jobs_t *self) {
    size_t n = self->nbuckets * 2;
    nr_broker_job_t **b = calloc(n, sizeof *b);
    if (!b) return; /* keep the old table: slower, still correct */
    for (size_t i = 0; i < self->nbuckets; i++) {
        nr_broker_job_t *j = self->buckets[i];
        while (j) {
            nr_broker_job_t *next = j->hnext;
            size_t h = nr_hash_str(j->id) % n;
            j->hnext = b[h];
            b[h] = j;
            j = next;
        }
    }
    free(self->buckets);
    self->buckets = b;
    self->nbuckets = n;
}

int nr_broker_jobs_add(nr_broker_jobs_t *self, nr_broker_job_t *job) {
    if (nr_broker_jobs_find(self, job->id)) return NR_EINVAL;
    if (self->count >= self->nbuckets) s_grow(self);
    size_t h = nr_hash_str(job->id) % self->nbuckets;
    job->hnext = self->buckets[h];
    self->buckets[h] = job;
    self->count++;
    return 0;
}

void nr_broker_jobs_remove(nr_broker_jobs_t *self, nr_broker_job_t *job) {
    nr_broker_job_t **pp = &self->buckets[nr_hash_str(job->id) % self->nbuckets];
    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == job) {
            *pp = job->hnext;
            job->hnext = NULL;
            self->count--;
            return;
        }
    }
}

size_t nr_broker_jobs_count(const nr_broker_jobs_t *self) { return self->count; }

void nr_broker_jobs_each(nr_broker_jobs_t *self, void (*fn)(nr_broker_job_t *job, void *arg),
                         void *arg) {
    for (size_t b = 0; b < self->nbuckets; b++)
        for (nr_broker_job_t *j = self->buckets[b]; j; j = j->hnext) fn(j, arg);
}

size_t nr_broker_jobs_list(nr_broker_jobs_t *self, nr_broker_job_t **out, size_t max) {
    size_t n = 0;
    for (size_t b = 0; b < self->nbuckets && n < max; b++)
        for (nr_broker_job_t *j = self->buckets[b]; j && n < max; j = j->hnext) out[n++] = j;
    return n;
}
