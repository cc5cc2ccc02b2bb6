/* `narrate status --run ID`: a run's jobs, read page by page from the
 * broker (JOBS), counted by state; each failed or cancelled job is listed
 * with its error, read with STATUS. */
#include "client/narrate.h"
#include "client/output.h"
#include "common/buf.h"
#include "common/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The states a run's jobs can be in, in the order they are printed. */
static const char *const s_states[] = {"queued", "running", "done", "failed", "cancelled", "unknown"};
#define S_STATES (sizeof s_states / sizeof s_states[0])

typedef struct {
    uint64_t total;
    uint64_t counts[S_STATES];
    char (*troubled)[NR_PROTO_ID_MAX + 1]; /* failed or cancelled ids, in run order */
    size_t n_troubled, cap_troubled;
} s_summary_t;

static size_t s_state_index(const char *state, size_t len) {
    for (size_t i = 0; i < S_STATES; i++)
        if (strlen(s_states[i]) == len && !strncmp(s_states[i], state, len)) return i;
    return S_STATES - 1;
}

/* Counts one "<state> <id>" entry of a JOBS page. NR_EPROTO for an entry
 * that is not one, NR_ENOMEM. */
static int s_take_entry(s_summary_t *sum, const char *value) {
    const char *space = strchr(value, ' ');
    if (!space || !nr_client_id_valid(space + 1)) return NR_EPROTO;
    size_t st = s_state_index(value, (size_t)(space - value));
    sum->counts[st]++;
    if (strcmp(s_states[st], "failed") && strcmp(s_states[st], "cancelled")) return 0;
    if (sum->n_troubled == sum->cap_troubled) {
        size_t cap = sum->cap_troubled ? sum->cap_troubled * 2 : 64;
        void *p = realloc(sum->troubled, cap * sizeof *sum->troubled);
        if (!p) return NR_ENOMEM;
        sum->troubled = p;
        sum->cap_troubled = cap;
    }
    snprintf(sum->troubled[sum->n_troubled++], NR_PROTO_ID_MAX + 1, "%s", space + 1);
    return 0;
}

/* Reads every page of the run into sum. 0 or the error (printed). */
static int s_read_run(nr_narrate_app_t *app, const char *run, s_summary_t *sum) {
    uint64_t offset = 0;
    for (;;) {
        nr_msg_t reply;
        nr_proto_msg_init(&reply);
        int rc = nr_client_jobs(app->client, run, (uint32_t)offset, &reply);
        if (rc) {
            nr_narrate_errorf(app, "run %s: %s", run, nr_client_error(app->client));
            nr_proto_msg_clear(&reply);
            return rc;
        }
        const char *total = nr_proto_kv_get(&reply, "total"), *next = nr_proto_kv_get(&reply, "next");
        sum->total = total ? strtoull(total, NULL, 10) : 0;
        for (uint32_t i = 0; !rc && i < reply.kv_len; i++) {
            const char *key = reply.kv[i].key;
            if (!strcmp(key, "total") || !strcmp(key, "next")) continue;
            rc = s_take_entry(sum, reply.kv[i].value);
        }
        uint64_t after = next ? strtoull(next, NULL, 10) : 0;
        nr_proto_msg_clear(&reply);
        if (rc) {
            nr_narrate_errorf(app, "run %s: the broker's JOBS reply is malformed", run);
            return rc;
        }
        /* A next that does not move forward would loop for ever. */
        if (!next || after <= offset || after > UINT32_MAX) return 0;
        offset = after;
    }
}

/* One failed or cancelled job's line (text) or object (JSON). */
static void s_troubled(nr_narrate_app_t *app, const char *id, nr_buf_t *json) {
    nr_msg_t rec;
    nr_proto_msg_init(&rec);
    int rc = nr_client_status(app->client, id, &rec);
    const char *state = rc ? "unknown" : nr_narrate_or(nr_proto_kv_get(&rec, "state"), "unknown");
    const char *error = rc ? nr_errname(rc) : nr_narrate_or(nr_proto_kv_get(&rec, "error"), "");
    const char *message = rc ? nr_client_error(app->client) : nr_narrate_or(nr_proto_kv_get(&rec, "error_message"), "");
    if (json) {
        nr_buf_puts(json, "{\"id\":");
        nr_output_json_string(json, id);
        nr_buf_puts(json, ",\"state\":");
        nr_output_json_string(json, state);
        nr_buf_puts(json, ",\"error\":");
        nr_output_json_string(json, error);
        nr_buf_puts(json, ",\"error_message\":");
        nr_output_json_string(json, message);
        nr_buf_puts(json, "}");
    } else {
        nr_narrate_linef(stdout, "  %s %s %s: %s", state, id, error, message);
    }
    nr_proto_msg_clear(&rec);
}

int nr_narrate_cmd_run_status(nr_narrate_app_t *app) {
    const char *run = app->cli->run;
    s_summary_t sum = {0};
    int rc = s_read_run(app, run, &sum);
    if (rc) {
        free(sum.troubled);
        return nr_narrate_exit_code(rc);
    }
    if (app->cli->json) {
        nr_buf_t b = {0};
        nr_buf_puts(&b, "{\"run\":");
        nr_output_json_string(&b, run);
        nr_buf_printf(&b, ",\"total\":%" PRIu64 ",\"states\":{", sum.total);
        for (size_t i = 0; i < S_STATES; i++)
            nr_buf_printf(&b, "%s\"%s\":%" PRIu64, i ? "," : "", s_states[i], sum.counts[i]);
        nr_buf_puts(&b, "},\"failed\":[");
        for (size_t i = 0; i < sum.n_troubled; i++) {
            if (i) nr_buf_puts(&b, ",");
            s_troubled(app, sum.troubled[i], &b);
        }
        nr_buf_puts(&b, "]}");
        if (b.failed) rc = NR_ENOMEM;
        else printf("%s\n", b.data);
        nr_buf_clear(&b);
    } else {
        nr_narrate_linef(stdout, "run %s: %" PRIu64 " jobs", run, sum.total);
        for (size_t i = 0; i < S_STATES; i++)
            if (sum.counts[i] || i < 5) nr_narrate_linef(stdout, "  %-9s %" PRIu64, s_states[i], sum.counts[i]);
        if (sum.n_troubled) nr_narrate_linef(stdout, "failed or cancelled:");
        for (size_t i = 0; i < sum.n_troubled; i++) s_troubled(app, sum.troubled[i], NULL);
    }
    free(sum.troubled);
    if (rc) return nr_narrate_exit_code(rc);
    return sum.n_troubled ? NR_EXIT_FAILED : NR_EXIT_OK;
}
