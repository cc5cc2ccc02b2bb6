/* Per-stage job queues, workers and their leases (credit). */
#include "broker/queue.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nr_broker_stage_t *nr_broker_stage_new(const char *name, long deadline_ms) {
    nr_broker_stage_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    snprintf(self->name, sizeof self->name, "%s", name);
    self->deadline_ms = deadline_ms;
    return self;
}

void nr_broker_stage_destroy(nr_broker_stage_t **p) {
    if (!p || !*p) return;
    nr_broker_stage_t *self = *p;
    while (self->workers) {
        nr_broker_worker_t *w = self->workers;
        self->workers = w->next;
        nr_broker_worker_destroy(&w);
    }
    while (self->head) nr_broker_stage_remove(self, self->head);
    free(self);
    *p = NULL;
}

void nr_broker_stage_push(nr_broker_stage_t *self, nr_broker_job_t *job, int front) {
    if (job->in_queue) return;
    job->in_queue = 1;
    if (front) {
        job->qprev = NULL;
        job->qnext = self->head;
        if (self->head) self->head->qprev = job;
        else self->tail = job;
        self->head = job;
    } else {
        job->qnext = NULL;
        job->qprev = self->tail;
        if (self->tail) self->tail->qnext = job;
        else self->head = job;
        self->tail = job;
    }
    self->queued++;
}

void nr_broker_stage_remove(nr_broker_stage_t *self, nr_broker_job_t *job) {
    if (!job->in_queue) return;
    if (job->qprev) job->qprev->qnext = job->qnext;
    else self->head = job->qnext;
    if (job->qnext) job->qnext->qprev = job->qprev;
    else self->tail = job->qprev;
    job->qprev = job->qnext = NULL;
    job->in_queue = 0;
    self->queued--;
}

nr_broker_job_t *nr_broker_stage_next_ready(nr_broker_stage_t *self, int64_t now) {
    for (nr_broker_job_t *j = self->head; j; j = j->qnext)
        if (j->ready_ms <= now) return j;
    return NULL;
}

int64_t nr_broker_stage_next_ready_ms(const nr_broker_stage_t *self) {
    int64_t t = INT64_MAX;
    for (const nr_broker_job_t *j = self->head; j; j = j->qnext)
        if (j->ready_ms < t) t = j->ready_ms;
    return t;
}

nr_broker_worker_t *nr_broker_stage_pick_worker(nr_broker_stage_t *self, int64_t now,
                                                uint64_t avoid) {
    nr_broker_worker_t *best = NULL, *avoided = NULL;
    for (nr_broker_worker_t *w = self->workers; w; w = w->next) {
        if (nr_broker_worker_credit(w) == 0 || w->aside_until_ms > now) continue;
        if (avoid && w->serial == avoid) {
            avoided = w;
            continue;
        }
        if (!best || w->last_dispatch < best->last_dispatch) best = w;
    }
    return best ? best : avoided;
}

void nr_broker_stage_add_worker(nr_broker_stage_t *self, nr_broker_worker_t *worker) {
    worker->stage = self;
    worker->next = self->workers;
    self->workers = worker;
    self->workers_len++;
}

void nr_broker_stage_remove_worker(nr_broker_stage_t *self, nr_broker_worker_t *worker) {
    for (nr_broker_worker_t **pp = &self->workers; *pp; pp = &(*pp)->next) {
        if (*pp == worker) {
            *pp = worker->next;
            worker->next = NULL;
            worker->stage = NULL;
            self->workers_len--;
            return;
        }
    }
}

nr_broker_worker_t *nr_broker_worker_new(const uint8_t *identity, size_t size, const char *name,
                                         uint32_t capacity) {
    if (size > NR_BROKER_IDENTITY_MAX || capacity == 0 || capacity > 1024) return NULL;
    nr_broker_worker_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    memcpy(self->identity, identity, size);
    self->identity_size = size;
    char hex[9] = "";
    for (size_t i = 0; i < 4 && i < size; i++)
        snprintf(hex + 2 * i, sizeof hex - 2 * i, "%02x", identity[size - 1 - i]);
    snprintf(self->label, sizeof self->label, "%s/%s", name && *name ? name : "worker", hex);
    if (nr_broker_worker_set_capacity(self, capacity)) {
        free(self);
        return NULL;
    }
    return self;
}

void nr_broker_worker_destroy(nr_broker_worker_t **p) {
    if (!p || !*p) return;
    free((*p)->leases);
    free((*p)->voices);
    free(*p);
    *p = NULL;
}

int nr_broker_worker_set_capacity(nr_broker_worker_t *self, uint32_t capacity) {
    uint32_t slots = capacity > self->leases_len ? capacity : self->leases_len;
    nr_broker_lease_t *l = realloc(self->leases, (slots ? slots : 1) * sizeof *l);
    if (!l) return NR_ENOMEM;
    self->leases = l;
    self->capacity = capacity;
    return 0;
}

uint32_t nr_broker_worker_credit(const nr_broker_worker_t *self) {
    return self->leases_len >= self->capacity ? 0 : self->capacity - self->leases_len;
}

int nr_broker_worker_add_lease(nr_broker_worker_t *self, nr_broker_job_t *job, uint32_t attempt,
                               int64_t expires_ms) {
    if (nr_broker_worker_credit(self) == 0) return NR_EBUSY;
    nr_broker_lease_t *l = &self->leases[self->leases_len++];
    snprintf(l->id, sizeof l->id, "%s", job->id);
    l->attempt = attempt;
    l->expires_ms = expires_ms;
    l->job = job;
    return 0;
}

nr_broker_lease_t *nr_broker_worker_find_lease(nr_broker_worker_t *self, const char *id,
                                               uint32_t attempt) {
    for (uint32_t i = 0; i < self->leases_len; i++)
        if (self->leases[i].attempt == attempt && !strcmp(self->leases[i].id, id))
            return &self->leases[i];
    return NULL;
}

void nr_broker_worker_drop_lease(nr_broker_worker_t *self, nr_broker_lease_t *lease) {
    size_t i = (size_t)(lease - self->leases);
    if (i >= self->leases_len) return;
    self->leases[i] = self->leases[self->leases_len - 1];
    self->leases_len--;
}

void nr_broker_worker_revoke(nr_broker_worker_t *self, const nr_broker_job_t *job) {
    for (uint32_t i = 0; i < self->leases_len; i++)
        if (self->leases[i].job == job) self->leases[i].job = NULL;
}

typedef struct {
    const char *s;
    size_t len;
} s_name_t;

static int s_name_cmp(const void *a, const void *b) {
    const s_name_t *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

int nr_broker_stage_voices(const nr_broker_stage_t *self, char *out, size_t cap) {
    if (!cap) return 0;
    out[0] = '\0';
    size_t n = 0, o = 0;
    for (const nr_broker_worker_t *w = self->workers; w; w = w->next)
        if (w->voices) n += NR_PROTO_VOICES_MAX; /* proto allows no more per worker */
    if (!n) return 0;
    s_name_t *names = malloc(n * sizeof *names);
    if (!names) return NR_ENOMEM;
    n = 0;
    for (const nr_broker_worker_t *w = self->workers; w; w = w->next) {
        size_t k = 0;
        for (const char *p = w->voices, *e; p && *p && k < NR_PROTO_VOICES_MAX; p = *e ? e + 1 : e, k++) {
            e = p + strcspn(p, ",");
            names[n++] = (s_name_t){p, (size_t)(e - p)};
        }
    }
    qsort(names, n, sizeof *names, s_name_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i && !s_name_cmp(&names[i], &names[i - 1])) continue;
        if (o + names[i].len + 2 > cap) break;
        if (o) out[o++] = ',';
        memcpy(out + o, names[i].s, names[i].len);
        o += names[i].len;
        out[o] = '\0';
    }
    free(names);
    return 0;
}
