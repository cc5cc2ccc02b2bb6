/* narrate: the command-line client of a narrator cluster.
 *
 * Exit codes (see client/cli.h, and `narrate --help`):
 *   0  everything asked for is done
 *   1  some job failed or was cancelled, or its outputs could not be written
 *      (or no worker serves its stage, see below)
 *   2  usage error: bad command line, unreadable input files
 *   3  cannot reach the broker
 *   4  timed out: the broker did not answer, or `wait` gave up (its
 *      --timeout ran out, or the job sat at a stage no worker serves for
 *      longer than the global --timeout)
 *   5  no such job
 * `submit` and `speak` count a job that sits at a stage no worker serves for
 * longer than --timeout as failed (exit 1), with the message "no worker
 * serves stage vision (is narrator-worker-vision running?)". */
#include "client/cli.h"
#include "client/client.h"
#include "client/files.h"
#include "client/output.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_POLL_FIRST_MS 100
#define S_POLL_MAX_MS 1000
#define S_CAPTION_MAX 65536
#define S_BATCH_BYTES ((size_t)64 << 20) /* input read ahead for one SUBMIT batch */

typedef struct {
    nr_cli_t *cli;
    nr_client_t *client;
    int tty; /* draw a progress bar on stderr */
    int bar_drawn;
} s_app_t;

/* Exit code for an error code from the client library or broker. */
static int s_exit_code(int rc) {
    switch (rc) {
    case 0: return NR_EXIT_OK;
    case NR_ECONNECT: return NR_EXIT_CONNECT;
    case NR_ETIMEDOUT: return NR_EXIT_TIMEOUT;
    case NR_ENOTFOUND: return NR_EXIT_NOTFOUND;
    default: return NR_EXIT_FAILED;
    }
}

static void s_clear_bar(s_app_t *app) {
    if (app->bar_drawn) {
        fputs("\r\033[K", stderr);
        app->bar_drawn = 0;
    }
}

static void s_errorf(s_app_t *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_errorf(s_app_t *app, const char *fmt, ...) {
    s_clear_bar(app);
    va_list ap;
    va_start(ap, fmt);
    fputs("narrate: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* 1 when the comma-separated `route` names `stage`. */
static int s_route_has(const char *route, const char *stage) {
    size_t n = strlen(stage);
    for (const char *p = route; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && !strncmp(p, stage, n)) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

/* Prints a kv map as "key: value" lines, or as one JSON object. */
static void s_print_kv(const s_app_t *app, const nr_msg_t *m) {
    if (app->cli->json) {
        nr_buf_t b = {0};
        nr_buf_puts(&b, "{");
        for (uint32_t i = 0; i < m->kv_len; i++) {
            nr_buf_puts(&b, i ? "," : "");
            nr_output_json_string(&b, m->kv[i].key);
            nr_buf_puts(&b, ":");
            nr_output_json_string(&b, m->kv[i].value);
        }
        nr_buf_puts(&b, "}");
        if (!b.failed) printf("%s\n", b.data);
        nr_buf_clear(&b);
    } else {
        for (uint32_t i = 0; i < m->kv_len; i++) printf("%s: %s\n", m->kv[i].key, m->kv[i].value);
    }
}

/* Watches a queued job: returns 1 when it has sat at a stage with no live
 * worker for longer than the timeout (message in err), else 0. */
typedef struct {
    int64_t since;
    char stage[NR_PROTO_NAME_MAX + 1];
} s_noworker_t;

static int s_noworker_check(s_noworker_t *w, const nr_msg_t *record, long timeout_s, char *err,
                            size_t errlen) {
    nr_client_record_t rec;
    nr_client_record(record, &rec);
    const char *state = rec.state, *stage = rec.stage;
    const char *workers = nr_proto_kv_get(record, "stage_workers");
    if (!state || strcmp(state, "queued") || !stage || !workers || strcmp(workers, "0")) {
        w->since = 0;
        return 0;
    }
    int64_t now = nr_clock_mono_ms();
    if (w->since == 0 || strcmp(w->stage, stage)) {
        w->since = now;
        snprintf(w->stage, sizeof w->stage, "%s", stage);
        return 0;
    }
    if (now - w->since < timeout_s * 1000) return 0;
    snprintf(err, errlen, "no worker serves stage %s (is narrator-worker-%s running?)", stage, stage);
    return 1;
}

/* Writes a finished job's outputs into dir as <stem>.txt/.wav/.json. On
 * success, and when `line` is not NULL, it gets the JSON line for stdout
 * (the caller frees it). Returns 0 or an error with a message in err. */
static int s_write_outputs(s_app_t *app, const char *id, const nr_msg_t *record, const char *dir,
                           const char *stem, const char *source, char **line, char *err,
                           size_t errlen) {
    const char *route = nr_proto_kv_get(record, "route");
    if (!route) route = app->cli->route;
    char names[3][NR_OUTPUT_STEM_MAX + 40];
    const char *files[4] = {NULL, NULL, NULL, NULL};
    size_t n_files = 0;
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_output_mkdir(dir, err, errlen);
    if (rc) goto done;

    if (s_route_has(route, "text")) {
        const char *caption = nr_proto_kv_get(record, "text.caption");
        char *owned = NULL;
        if (!caption) {
            rc = nr_client_fetch(app->client, id, "text", &reply);
            if (rc) {
                nr_seterr(err, errlen, rc, "cannot fetch the caption: %s", nr_client_error(app->client));
                goto done;
            }
            size_t n = reply.frames_len ? reply.frames[0].size : 0;
            if (n > S_CAPTION_MAX) n = S_CAPTION_MAX;
            owned = malloc(n + 1);
            if (!owned) { rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory"); goto done; }
            if (n) memcpy(owned, reply.frames[0].data, n);
            owned[n] = '\0';
            caption = owned;
        }
        snprintf(names[n_files], sizeof names[0], "%s.txt", stem);
        size_t len = strlen(caption);
        char *text = malloc(len + 2);
        if (!text) { free(owned); rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory"); goto done; }
        memcpy(text, caption, len);
        text[len] = '\n';
        rc = nr_output_write(dir, names[n_files], text, len + 1, err, errlen);
        free(text);
        free(owned);
        if (rc) goto done;
        files[n_files] = names[n_files];
        n_files++;
    }
    if (s_route_has(route, "speech")) {
        rc = nr_client_fetch(app->client, id, "speech", &reply);
        if (rc) {
            nr_seterr(err, errlen, rc, "cannot fetch the audio: %s", nr_client_error(app->client));
            goto done;
        }
        if (reply.frames_len == 0) {
            rc = nr_seterr(err, errlen, NR_EPROTO, "the broker sent no audio for job %s", id);
            goto done;
        }
        snprintf(names[n_files], sizeof names[0], "%s.wav", stem);
        rc = nr_output_write(dir, names[n_files], reply.frames[0].data, reply.frames[0].size, err,
                             errlen);
        if (rc) goto done;
        files[n_files] = names[n_files];
        n_files++;
    }
    snprintf(names[n_files], sizeof names[0], "%s.json", stem);
    nr_buf_t b = {0};
    nr_output_extra_t extra = {source, files, NULL, NULL};
    nr_output_record_json(&b, id, record, &extra);
    nr_buf_puts(&b, "\n");
    if (b.failed) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    } else {
        rc = nr_output_write(dir, names[n_files], b.data, b.len, err, errlen);
    }
    nr_buf_clear(&b);
    if (rc) goto done;
    files[n_files] = names[n_files];
    n_files++;
    if (line) {
        /* For stdout, name the files with the folder in front. */
        char paths[3][4096];
        const char *full[4] = {NULL, NULL, NULL, NULL};
        for (size_t i = 0; i < n_files; i++) {
            snprintf(paths[i], sizeof paths[i], "%s/%s", dir, files[i]);
            full[i] = paths[i];
        }
        nr_output_extra_t x = {source, full, NULL, NULL};
        nr_output_record_json(&b, id, record, &x);
        *line = b.failed ? NULL : b.data;
        if (b.failed) nr_buf_clear(&b);
    }
done:
    nr_proto_msg_clear(&reply);
    return rc;
}

/* Polls a job until it is final. Returns 0 with the final record in
 * `record`, or an error with a message in err: NR_ETIMEDOUT when limit_s
 * (0 = none) ran out, NR_ENOWORKER when the job sat at a stage with no live
 * worker for longer than --timeout, or the client's error. */
static int s_wait_final(s_app_t *app, const char *id, long limit_s, nr_msg_t *record, char *err,
                        size_t errlen) {
    int64_t start = nr_clock_mono_ms();
    int poll = S_POLL_FIRST_MS;
    s_noworker_t noworker = {0, ""};
    for (;;) {
        int rc = nr_client_status(app->client, id, record);
        if (rc) return nr_seterr(err, errlen, rc, "%s", nr_client_error(app->client));
        const char *state = nr_proto_kv_get(record, "state");
        if (state && (!strcmp(state, "done") || !strcmp(state, "failed") ||
                      !strcmp(state, "cancelled")))
            return 0;
        if (s_noworker_check(&noworker, record, app->cli->timeout, err, errlen))
            return NR_ENOWORKER;
        if (limit_s > 0 && nr_clock_mono_ms() - start >= limit_s * 1000)
            return nr_seterr(err, errlen, NR_ETIMEDOUT, "job %s is still %s after %ld s", id,
                             state ? state : "unknown", limit_s);
        nr_clock_sleep_ms(poll);
        if (poll < S_POLL_MAX_MS) poll = poll * 3 / 2;
    }
}

static const char *s_or(const char *s, const char *alt) { return s && *s ? s : alt; }

/* ---- commands ---------------------------------------------------------- */

static int s_cmd_status(s_app_t *app) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_status(app->client, app->cli->id, &reply);
    if (rc) s_errorf(app, "job %s: %s", app->cli->id, nr_client_error(app->client));
    else s_print_kv(app, &reply);
    nr_proto_msg_clear(&reply);
    return s_exit_code(rc);
}

static int s_cmd_stats(s_app_t *app) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_stats(app->client, &reply);
    if (rc) s_errorf(app, "%s", nr_client_error(app->client));
    else s_print_kv(app, &reply);
    nr_proto_msg_clear(&reply);
    return s_exit_code(rc);
}

static int s_cmd_cancel(s_app_t *app) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_cancel(app->client, app->cli->id, &reply);
    if (rc) {
        s_errorf(app, "cannot cancel %s: %s", app->cli->id, nr_client_error(app->client));
    } else if (app->cli->json) {
        s_print_kv(app, &reply);
    } else if (!app->cli->quiet) {
        printf("%s %s\n", app->cli->id, s_or(nr_proto_kv_get(&reply, "state"), "cancelled"));
    }
    nr_proto_msg_clear(&reply);
    return s_exit_code(rc);
}

/* Prints the final state of one job; returns its exit code. */
static int s_report_final(s_app_t *app, const char *id, const nr_msg_t *record) {
    nr_client_record_t rec;
    nr_client_record(record, &rec);
    const char *state = s_or(rec.state, "unknown");
    int ok = !strcmp(state, "done");
    if (app->cli->json) {
        nr_buf_t b = {0};
        nr_output_record_json(&b, id, record, NULL);
        if (!b.failed) printf("%s\n", b.data);
        nr_buf_clear(&b);
    } else if (ok && !app->cli->quiet) {
        printf("%s done\n", id);
    }
    if (!ok)
        s_errorf(app, "job %s %s: %s: %s", id, state, s_or(rec.error, nr_errname(NR_ECANCELLED)),
                 s_or(rec.error_message, state));
    return ok ? NR_EXIT_OK : NR_EXIT_FAILED;
}

static int s_cmd_wait(s_app_t *app) {
    nr_msg_t record;
    nr_proto_msg_init(&record);
    char err[2048];
    int rc = s_wait_final(app, app->cli->id, app->cli->wait_timeout, &record, err, sizeof err);
    int code;
    if (rc) {
        s_errorf(app, "%s", err);
        /* `wait` only watches: a job nobody serves is a wait that gave up. */
        code = rc == NR_ENOWORKER ? NR_EXIT_TIMEOUT : s_exit_code(rc);
    } else {
        code = s_report_final(app, app->cli->id, &record);
    }
    nr_proto_msg_clear(&record);
    return code;
}

static int s_cmd_get(s_app_t *app) {
    nr_msg_t record;
    nr_proto_msg_init(&record);
    char err[2048];
    int code = NR_EXIT_OK;
    int rc = nr_client_status(app->client, app->cli->id, &record);
    if (rc) {
        s_errorf(app, "job %s: %s", app->cli->id, nr_client_error(app->client));
        code = s_exit_code(rc);
        goto done;
    }
    nr_client_record_t rec;
    nr_client_record(&record, &rec);
    const char *state = s_or(rec.state, "unknown");
    if (strcmp(state, "done")) {
        s_errorf(app, "job %s is %s, not done%s%s", app->cli->id, state,
                 rec.error_message ? ": " : "", s_or(rec.error_message, ""));
        code = NR_EXIT_FAILED;
        goto done;
    }
    /* The id is the stem: ids are [A-Za-z0-9._:-], so only a leading '.'
     * ("..", ".x") needs changing to stay a plain, visible name. */
    char stem[NR_PROTO_ID_MAX + 1], *line = NULL;
    snprintf(stem, sizeof stem, "%s", app->cli->id);
    if (stem[0] == '.') stem[0] = '_';
    rc = s_write_outputs(app, app->cli->id, &record, app->cli->output, stem, NULL, &line, err,
                         sizeof err);
    if (rc) {
        s_errorf(app, "job %s: %s", app->cli->id, err);
        code = s_exit_code(rc) == NR_EXIT_OK ? NR_EXIT_FAILED : s_exit_code(rc);
    } else if (app->cli->json) {
        printf("%s\n", line ? line : "{}");
    } else if (!app->cli->quiet) {
        printf("%s written to %s\n", app->cli->id, app->cli->output);
    }
    free(line);
done:
    nr_proto_msg_clear(&record);
    return code;
}

static int s_cmd_speak(s_app_t *app) {
    const nr_cli_t *cli = app->cli;
    nr_client_options_t opts;
    nr_client_options(&opts, cli->beams, cli->max_length, cli->voice);
    char id[NR_CLIENT_ID_HEX + 1], err[2048];
    size_t size = strlen(cli->text);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int code = NR_EXIT_OK;
    int rc = nr_client_content_id(cli->text, size, NR_CLI_SPEECH_ROUTE, opts.kv, opts.n, id);
    if (rc) {
        s_errorf(app, "cannot make a job id: %s", nr_strerror(rc));
        return NR_EXIT_FAILED;
    }
    nr_client_set_busy_wait(app->client, (int)(cli->timeout * 1000 * 6));
    rc = nr_client_submit(app->client, id, NR_CLI_SPEECH_ROUTE, opts.kv, opts.n, cli->text, size, &reply);
    if (rc) {
        s_errorf(app, "cannot submit: %s", nr_client_error(app->client));
        code = rc == NR_EBUSY ? NR_EXIT_TIMEOUT : s_exit_code(rc);
        goto done;
    }
    rc = s_wait_final(app, id, 0, &reply, err, sizeof err);
    if (rc) {
        s_errorf(app, "%s", err);
        code = s_exit_code(rc);
        goto done;
    }
    if (strcmp(s_or(nr_proto_kv_get(&reply, "state"), ""), "done")) {
        code = s_report_final(app, id, &reply);
        goto done;
    }
    rc = nr_client_fetch(app->client, id, "speech", &reply);
    if (rc || reply.frames_len == 0) {
        s_errorf(app, "cannot fetch the audio of job %s: %s", id,
                 rc ? nr_client_error(app->client) : "the broker sent none");
        code = rc ? s_exit_code(rc) : NR_EXIT_FAILED;
        goto done;
    }
    rc = nr_output_write_path(cli->output, reply.frames[0].data, reply.frames[0].size, err, sizeof err);
    if (rc) {
        s_errorf(app, "%s", err);
        code = NR_EXIT_FAILED;
        goto done;
    }
    if (cli->json) {
        nr_buf_t b = {0};
        const char *files[2] = {cli->output, NULL};
        nr_output_extra_t extra = {NULL, files, NULL, NULL};
        nr_output_record_json(&b, id, &reply, &extra);
        if (!b.failed) printf("%s\n", b.data);
        nr_buf_clear(&b);
    } else if (!cli->quiet) {
        printf("%s (%s ms of audio, job %s)\n", cli->output,
               s_or(nr_proto_kv_get(&reply, "speech.duration_ms"), "?"), id);
    }
done:
    nr_proto_msg_clear(&reply);
    return code;
}

/* ---- submit ------------------------------------------------------------ */

typedef enum { S_PENDING = 0, S_INFLIGHT, S_DONE, S_FAILED } s_job_state_t;

typedef struct {
    const char *path;
    char *stem;
    char id[NR_PROTO_ID_MAX + 1];
    s_job_state_t state;
    int64_t next_poll;
    int poll_ms;
    s_noworker_t noworker;
} s_job_t;

typedef struct {
    s_app_t *app;
    s_job_t *jobs;
    size_t n, next, inflight, done, failed;
    int64_t started;
} s_run_t;

static void s_draw_bar(s_run_t *run) {
    s_app_t *app = run->app;
    if (!app->tty) return;
    size_t finished = run->done + run->failed, width = 30;
    size_t fill = run->n ? finished * width / run->n : width;
    char bar[64];
    for (size_t i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    double secs = (double)(nr_clock_mono_ms() - run->started) / 1000.0;
    fprintf(stderr, "\r\033[K[%s] %zu/%zu  (%zu done, %zu failed, %zu in flight)  %.0fs", bar,
            finished, run->n, run->done, run->failed, run->inflight, secs);
    fflush(stderr);
    app->bar_drawn = 1;
}

/* Counts a job as failed, says why on stderr, and writes its record as
 * DIR/<stem>.json (and prints it with --json). `local` marks a failure
 * found here (unreadable file, no worker, outputs not written) rather than
 * a final state from the broker; its error then overrides the record's. */
static void s_job_failed(s_run_t *run, s_job_t *job, const char *id, const nr_msg_t *record,
                         int local, const char *error, const char *message) {
    s_app_t *app = run->app;
    const nr_cli_t *cli = app->cli;
    if (job->state == S_INFLIGHT) run->inflight--;
    job->state = S_FAILED;
    run->failed++;
    s_errorf(app, "%s: failed: %s%s%s%s", job->path, s_or(message, "unknown error"),
             error ? " (" : "", error ? error : "", error ? ")" : "");
    nr_buf_t b = {0};
    char name[NR_OUTPUT_STEM_MAX + 40], path[4096], err[1024];
    snprintf(name, sizeof name, "%s.json", job->stem);
    snprintf(path, sizeof path, "%s/%s", cli->output, name);
    const char *files[2] = {NULL, NULL};
    nr_output_extra_t extra = {job->path, files, local ? error : NULL, local ? message : NULL};
    int written = 0;
    if (!cli->no_wait) {
        nr_output_record_json(&b, id, record, &extra);
        nr_buf_puts(&b, "\n");
        if (!b.failed && nr_output_write(cli->output, name, b.data, b.len, err, sizeof err) == 0)
            written = 1;
        else if (!b.failed)
            s_errorf(app, "%s", err);
        nr_buf_clear(&b);
    }
    if (cli->json) {
        files[0] = written ? path : NULL;
        nr_output_record_json(&b, id, record, &extra);
        s_clear_bar(app);
        if (!b.failed) printf("%s\n", b.data);
        fflush(stdout);
        nr_buf_clear(&b);
    }
}

/* Acts on a job record from SUBMIT or STATUS. */
static void s_job_update(s_run_t *run, s_job_t *job, const nr_msg_t *record) {
    s_app_t *app = run->app;
    nr_client_record_t rec;
    nr_client_record(record, &rec);
    const char *state = s_or(rec.state, "");
    char err[2048];
    if (!strcmp(state, "done")) {
        char *line = NULL;
        int rc = s_write_outputs(app, job->id, record, app->cli->output, job->stem, job->path, &line,
                                 err, sizeof err);
        if (rc) {
            s_job_failed(run, job, job->id, record, 1, nr_errname(rc), err);
            return;
        }
        if (job->state == S_INFLIGHT) run->inflight--;
        job->state = S_DONE;
        run->done++;
        if (app->cli->json) {
            s_clear_bar(app);
            printf("%s\n", line ? line : "{}");
            fflush(stdout);
        } else if (!app->cli->quiet) {
            s_clear_bar(app);
            printf("done %s -> %s/%s%s%s\n", job->path, app->cli->output, job->stem,
                   rec.caption ? ": " : "", rec.caption ? rec.caption : "");
            fflush(stdout);
        }
        free(line);
        return;
    }
    if (!strcmp(state, "failed") || !strcmp(state, "cancelled")) {
        s_job_failed(run, job, job->id, record, 0,
                     s_or(rec.error, !strcmp(state, "cancelled") ? nr_errname(NR_ECANCELLED) : "failed"),
                     s_or(rec.error_message, state));
        return;
    }
    if (s_noworker_check(&job->noworker, record, app->cli->timeout, err, sizeof err)) {
        s_job_failed(run, job, job->id, record, 1, nr_errname(NR_ENOWORKER), err);
        return;
    }
}

/* Reads, names and submits the next pending jobs, up to `room` of them and
 * about S_BATCH_BYTES of input, as one pipelined batch. A job refused busy,
 * or not answered because the broker could not be reached, stays pending.
 * Returns 0 (all submitted, or failed here), NR_EBUSY (try again later),
 * NR_ENOMEM, or a fatal transport error (detail in nr_client_error). */
static int s_submit_batch(s_run_t *run, size_t room) {
    s_app_t *app = run->app;
    const nr_cli_t *cli = app->cli;
    nr_client_options_t opts;
    nr_client_options(&opts, cli->beams, cli->max_length, cli->voice);
    char err[2048];
    size_t *which = calloc(room, sizeof *which);
    nr_client_job_t *jobs = calloc(room, sizeof *jobs);
    nr_msg_t *replies = calloc(room, sizeof *replies);
    int *codes = calloc(room, sizeof *codes);
    int ret = 0;
    size_t n = 0, bytes = 0;
    if (!which || !jobs || !replies || !codes) {
        ret = NR_ENOMEM;
        goto done;
    }
    for (size_t i = run->next; i < run->n && n < room && bytes < S_BATCH_BYTES; i++) {
        s_job_t *job = &run->jobs[i];
        if (job->state != S_PENDING) continue;
        uint8_t *data = NULL;
        size_t size = 0;
        int rc = nr_files_read(job->path, NR_PROTO_PAYLOAD_MAX, &data, &size, err, sizeof err);
        if (rc) {
            s_job_failed(run, job, "", NULL, 1, nr_errname(rc), err);
            continue;
        }
        if (cli->id_random) rc = nr_client_random_id(job->id);
        else rc = nr_client_content_id(data, size, cli->route, opts.kv, opts.n, job->id);
        if (rc) {
            free(data);
            s_job_failed(run, job, "", NULL, 1, nr_errname(rc), "cannot make a job id");
            continue;
        }
        which[n] = i;
        jobs[n] = (nr_client_job_t){job->id, cli->route, opts.kv, opts.n, data, size}; /* owns data */
        bytes += size;
        n++;
    }
    if (n) nr_client_submit_batch(app->client, jobs, n, replies, codes); /* codes say it all */
    for (size_t k = 0; k < n; k++) {
        s_job_t *job = &run->jobs[which[k]];
        nr_msg_t *reply = &replies[k];
        int rc = codes[k];
        if (rc == NR_ECONNECT || rc == NR_ETIMEDOUT) {
            ret = rc;
        } else if (rc == NR_EBUSY) {
            if (!ret) ret = rc;
        } else if (rc) {
            s_job_failed(run, job, job->id, NULL, 1, nr_errname(rc), reply->message);
        } else if (cli->no_wait) {
            job->state = S_DONE;
            run->done++;
            if (cli->json) {
                nr_buf_t b = {0};
                nr_output_extra_t extra = {job->path, NULL, NULL, NULL};
                nr_output_record_json(&b, job->id, reply, &extra);
                if (!b.failed) printf("%s\n", b.data);
                nr_buf_clear(&b);
            } else if (!cli->quiet) {
                printf("%s %s\n", job->id, job->path);
            }
        } else {
            job->state = S_INFLIGHT;
            run->inflight++;
            job->poll_ms = S_POLL_FIRST_MS;
            job->next_poll = nr_clock_mono_ms() + job->poll_ms;
            s_job_update(run, job, reply);
        }
    }
    while (run->next < run->n && run->jobs[run->next].state != S_PENDING) run->next++;
done:
    for (size_t k = 0; k < n; k++) {
        free((void *)jobs[k].input);
        nr_proto_msg_clear(&replies[k]);
    }
    free(which);
    free(jobs);
    free(replies);
    free(codes);
    return ret;
}

static int s_cmd_submit(s_app_t *app) {
    const nr_cli_t *cli = app->cli;
    nr_files_t files;
    nr_files_init(&files);
    char err[2048];
    int code = NR_EXIT_OK, fatal = 0;
    s_run_t run = {app, NULL, 0, 0, 0, 0, 0, nr_clock_mono_ms()};
    char **stems = NULL;
    for (size_t i = 0; i < cli->n_paths; i++) {
        int rc = nr_files_collect(&files, cli->paths[i], err, sizeof err);
        if (rc) {
            s_errorf(app, "%s", err);
            code = NR_EXIT_USAGE;
            goto done;
        }
    }
    if (files.len == 0) {
        s_errorf(app, "no images (.jpg .jpeg .png .webp) found in the paths given");
        code = NR_EXIT_USAGE;
        goto done;
    }
    if (!cli->no_wait && nr_output_mkdir(cli->output, err, sizeof err)) {
        s_errorf(app, "%s", err);
        code = NR_EXIT_USAGE;
        goto done;
    }
    run.n = files.len;
    run.jobs = calloc(files.len, sizeof *run.jobs);
    stems = calloc(files.len, sizeof *stems);
    if (!run.jobs || !stems ||
        nr_output_unique_stems((const char *const *)files.paths, files.len, stems)) {
        s_errorf(app, "out of memory");
        code = NR_EXIT_FAILED;
        goto done;
    }
    for (size_t i = 0; i < files.len; i++) {
        run.jobs[i].path = files.paths[i];
        run.jobs[i].stem = stems[i];
    }

    int64_t busy_until = 0;
    nr_backoff_t busy_backoff;
    nr_backoff_init(&busy_backoff, NR_CLIENT_BUSY_FIRST_MS, NR_CLIENT_BUSY_MAX_MS);
    int busy_noted = 0;
    while (run.done + run.failed < run.n) {
        while (run.next < run.n && run.inflight < (size_t)cli->window && nr_clock_mono_ms() >= busy_until) {
            int rc = s_submit_batch(&run, (size_t)cli->window - run.inflight);
            if (rc == NR_EBUSY) {
                if (!busy_noted && !cli->quiet) {
                    s_clear_bar(app);
                    fprintf(stderr, "narrate: the broker's queue is full; waiting and retrying\n");
                    busy_noted = 1;
                }
                busy_until = nr_clock_mono_ms() + nr_backoff_jitter(nr_backoff_next(&busy_backoff),
                                                                    (uint32_t)rand());
                break;
            }
            if (rc) {
                s_errorf(app, "%s", rc == NR_ENOMEM ? "out of memory" : nr_client_error(app->client));
                fatal = rc;
                goto stop;
            }
            nr_backoff_reset(&busy_backoff);
        }
        if (cli->no_wait && run.next == run.n) break;
        int64_t now = nr_clock_mono_ms(), wake = now + S_POLL_MAX_MS;
        for (size_t i = 0; i < run.n; i++) {
            s_job_t *job = &run.jobs[i];
            if (job->state != S_INFLIGHT) continue;
            if (job->next_poll <= now) {
                nr_msg_t reply;
                nr_proto_msg_init(&reply);
                int rc = nr_client_status(app->client, job->id, &reply);
                if (rc == NR_ECONNECT || rc == NR_ETIMEDOUT) {
                    nr_proto_msg_clear(&reply);
                    s_errorf(app, "%s", nr_client_error(app->client));
                    fatal = rc;
                    goto stop;
                }
                if (rc) s_job_failed(&run, job, job->id, NULL, 1, nr_errname(rc),
                                     nr_client_error(app->client));
                else s_job_update(&run, job, &reply);
                nr_proto_msg_clear(&reply);
                if (job->poll_ms < S_POLL_MAX_MS) job->poll_ms = job->poll_ms * 3 / 2;
                now = nr_clock_mono_ms();
                job->next_poll = now + job->poll_ms;
            }
            if (job->state == S_INFLIGHT && job->next_poll < wake) wake = job->next_poll;
        }
        s_draw_bar(&run);
        if (run.next < run.n && run.inflight < (size_t)cli->window && busy_until < wake)
            wake = busy_until;
        if (run.done + run.failed < run.n) nr_clock_sleep_ms(wake - nr_clock_mono_ms());
    }
stop:
    if (app->bar_drawn) {
        s_draw_bar(&run);
        fputc('\n', stderr);
        app->bar_drawn = 0;
    }
    if (fatal) {
        if (run.inflight || run.next < run.n)
            s_errorf(app, "stopped with %zu of %zu images unfinished; run the same command again "
                          "to resume", run.n - run.done - run.failed, run.n);
        code = s_exit_code(fatal);
    } else {
        code = run.failed ? NR_EXIT_FAILED : NR_EXIT_OK;
    }
    if (!cli->quiet && !cli->json)
        fprintf(stderr, "narrate: %zu %s, %zu failed, of %zu images\n", run.done,
                cli->no_wait ? "submitted" : "done", run.failed, run.n);
done:
    if (stems)
        for (size_t i = 0; i < files.len; i++) free(stems[i]);
    free(stems);
    free(run.jobs);
    nr_files_clear(&files);
    return code;
}

int main(int argc, char **argv) {
    nr_cli_t cli;
    char err[1024];
    nr_log_set_component("narrate");
    int rc = nr_cli_parse(&cli, argc, argv, err, sizeof err);
    if (rc) {
        fprintf(stderr, "narrate: %s\n", rc == NR_ENOMEM ? "out of memory" : err);
        nr_cli_clear(&cli);
        return rc == NR_ENOMEM ? NR_EXIT_FAILED : NR_EXIT_USAGE;
    }
    if (cli.command == NR_CLI_HELP) {
        nr_cli_usage(stdout);
        nr_cli_clear(&cli);
        return NR_EXIT_OK;
    }
    nr_log_threshold = cli.quiet ? NR_LOG_ERROR : NR_LOG_WARN;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    s_app_t app = {&cli, NULL, isatty(STDERR_FILENO) && !cli.quiet, 0};
    app.client = nr_client_new(cli.broker, (int)(cli.timeout * 1000));
    if (!app.client) {
        fprintf(stderr, "narrate: cannot use broker endpoint '%s' (expected e.g. tcp://127.0.0.1:5555)\n",
                cli.broker);
        nr_cli_clear(&cli);
        return NR_EXIT_USAGE;
    }
    if ((cli.curve_server_key[0] || cli.curve_secret_key_file[0]) &&
        nr_client_set_curve(app.client, cli.curve_server_key, cli.curve_secret_key_file) != 0) {
        fprintf(stderr, "narrate: %s\n", nr_client_error(app.client));
        nr_client_destroy(&app.client);
        nr_cli_clear(&cli);
        return NR_EXIT_USAGE;
    }
    int code;
    switch (cli.command) {
    case NR_CLI_SPEAK: code = s_cmd_speak(&app); break;
    case NR_CLI_SUBMIT: code = s_cmd_submit(&app); break;
    case NR_CLI_STATUS: code = s_cmd_status(&app); break;
    case NR_CLI_WAIT: code = s_cmd_wait(&app); break;
    case NR_CLI_GET: code = s_cmd_get(&app); break;
    case NR_CLI_CANCEL: code = s_cmd_cancel(&app); break;
    case NR_CLI_STATS: code = s_cmd_stats(&app); break;
    default: code = NR_EXIT_USAGE; break;
    }
    /* A broker that refuses this client's CURVE key never completes the
     * handshake, which reads as "cannot reach": say so. */
    if (code == NR_EXIT_CONNECT && cli.curve_server_key[0])
        fprintf(stderr,
                "narrate: with CURVE, a broker that refuses this client's key looks unreachable "
                "too: check that curve-server-key is the broker's public key and that this "
                "client's .pub file is in the broker's curve-allow-dir\n");
    fflush(stdout);
    nr_client_destroy(&app.client);
    nr_cli_clear(&cli);
    return code;
}
