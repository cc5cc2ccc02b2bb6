/* The broker's stages: the known ones come from configuration (params
 * stages, stage-deadlines), are made once at start, and are found by name;
 * nothing else creates a stage (see internal.h). */
#include "broker/internal.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long s_stage_deadline(const nr_broker_params_t *p, const char *name) {
    size_t len = strlen(name);
    const char *s = p->stage_deadlines;
    while (s && *s) {
        const char *eq = strchr(s, '=');
        if (!eq) break;
        if ((size_t)(eq - s) == len && !strncmp(s, name, len)) {
            long v = strtol(eq + 1, NULL, 10);
            if (v > 0) return v;
        }
        s = strchr(eq, ',');
        if (s) s++;
    }
    return p->job_deadline_ms;
}

static int s_check_deadlines(const char *spec, char *err, size_t errlen) {
    const char *s = spec;
    while (s && *s) {
        const char *eq = strchr(s, '=');
        const char *comma = strchr(s, ',');
        if (!eq || (comma && comma < eq) || eq == s)
            return nr_seterr(err, errlen, NR_EINVAL, "stage-deadlines: expected stage=ms[,...]");
        char *end;
        long v = strtol(eq + 1, &end, 10);
        if (v <= 0 || (end != comma && *end))
            return nr_seterr(err, errlen, NR_EINVAL, "stage-deadlines: bad value after '%.*s='",
                             (int)(eq - s), s);
        s = comma ? comma + 1 : NULL;
    }
    return 0;
}

/* Checks params.stages: 1..NR_BROKER_STAGES_MAX stage names, no repeats. */
static int s_check_stages(const char *spec, char *err, size_t errlen) {
    size_t n = 0;
    const char *s = spec;
    do {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len == 0 || len > NR_PROTO_NAME_MAX ||
            strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") < len)
            return nr_seterr(err, errlen, NR_EINVAL,
                             "stages: expected names of 1..%d characters [a-z0-9_-] separated by "
                             "commas, got '%s'", NR_PROTO_NAME_MAX, spec);
        if ((len == 5 && !strncmp(s, "input", 5)) || (len == 9 && !strncmp(s, NR_BROKER_THUMB_STAGE, 9)))
            return nr_seterr(err, errlen, NR_EINVAL,
                             "stages: '%.*s' is reserved (FETCH of stage input or thumbnail reads a job's "
                             "input or thumbnail)", (int)len, s);
        for (const char *t = spec; t < s; t = strchr(t, ',') + 1)
            if (!strncmp(t, s, len) && t[len] == ',')
                return nr_seterr(err, errlen, NR_EINVAL, "stages: '%.*s' is listed twice",
                                 (int)len, s);
        if (++n > NR_BROKER_STAGES_MAX)
            return nr_seterr(err, errlen, NR_EINVAL, "stages: more than %d", NR_BROKER_STAGES_MAX);
        s = comma ? comma + 1 : NULL;
    } while (s);
    return 0;
}

int nr_bk_check_stage_settings(const nr_broker_params_t *params, char *err, size_t errlen) {
    int rc = s_check_deadlines(params->stage_deadlines, err, errlen);
    return rc ? rc : s_check_stages(params->stages, err, errlen);
}

nr_broker_stage_t *nr_bk_stage(nr_broker_t *self, const char *name) {
    for (nr_broker_stage_t *s = self->stages; s; s = s->next)
        if (!strcmp(s->name, name)) return s;
    return NULL;
}

const char *nr_bk_stage_list(const nr_broker_t *self) { return self->params.stages; }

int nr_bk_make_stages(nr_broker_t *self) {
    nr_broker_stage_t **tail = &self->stages;
    const char *s = self->params.stages;
    while (s) {
        const char *comma = strchr(s, ',');
        char name[NR_PROTO_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)(comma ? (size_t)(comma - s) : strlen(s)), s);
        nr_broker_stage_t *st = nr_broker_stage_new(name, s_stage_deadline(&self->params, name));
        if (!st) return NR_ENOMEM;
        st->unserved_since_ms = INT64_MIN; /* set by the first tick */
        *tail = st;
        tail = &st->next;
        s = comma ? comma + 1 : NULL;
    }
    return 0;
}

