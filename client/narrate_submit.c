/* `narrate submit`: a window of jobs in flight over a file, a folder or a
 * list, SUBMIT in batches, polling, outputs as jobs finish (the input tree
 * mirrored under -o, alt text, a manifest row each), a progress bar. */
#include "client/narrate.h"
#include "client/altjob.h"
#include "client/files.h"
#include "client/manifest.h"
#include "client/output.h"
#include "client/outtree.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/utf8.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_BATCH_BYTES ((size_t)64 << 20) /* input read ahead for one SUBMIT batch */
#define S_MAX_PAGES 1000                  /* --all-pages: pages of one TIFF (the vision worker's limit) */

typedef enum { S_PENDING = 0, S_INFLIGHT, S_DONE, S_FAILED, S_SKIPPED } s_job_state_t;

typedef struct {
    const char *path;
    char *rel_dir; /* output folder under -o: "" or "a/b" */
    char *dir;     /* -o/rel_dir */
    char *stem;    /* output name: "001.jpg" gives 001.jpg.txt ... */
    nr_altjob_t alt;
    int probed, alt_applied;
    char id[NR_PROTO_ID_MAX + 1];
    s_job_state_t state;
    int64_t next_poll;
    int poll_ms;
    nr_narrate_noworker_t noworker;
    int page;          /* --all-pages: the TIFF page this job reads (job option page), else -1 */
    char page_str[8];  /* its decimal text */
} s_job_t;

typedef struct {
    nr_narrate_app_t *app;
    s_job_t *jobs;
    size_t n, next, inflight, done, failed, skipped, alt_failed;
    int64_t started;
    nr_manifest_t *manifest;
    /* Redis-down answers (NR_EREDIS, retried): since when they came with no
     * job submitted or finished in between (0: none since), and the last
     * one's text. After NR_NARRATE_RETRY_FACTOR x --timeout the run stops. */
    int64_t retry_since;
    int redis_noted;
    char retry_msg[NR_PROTO_MESSAGE_MAX + 1];
    char run_id[NR_PROTO_ID_MAX + 1]; /* the run (batch) every job joins */
} s_run_t;

/* Notes a "not now" answer (say, Redis unreachable: the job is kept and
 * asked about again). Says so once on stderr for Redis. */
static void s_retry_note(s_run_t *run, int code, const char *message) {
    if (code != NR_EREDIS) return; /* a full queue is waited out as long as it takes */
    if (!run->retry_since) run->retry_since = nr_clock_mono_ms();
    snprintf(run->retry_msg, sizeof run->retry_msg, "%s", nr_narrate_or(message, nr_strerror(code)));
    if (code == NR_EREDIS && !run->redis_noted && !run->app->cli->quiet) {
        nr_narrate_errorf(run->app, "the broker cannot use redis (%s); waiting and retrying",
                          run->retry_msg);
        run->redis_noted = 1;
    }
}

static void s_draw_bar(s_run_t *run) {
    nr_narrate_app_t *app = run->app;
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

/* The job's alt_text member for its record, or NULL (alt text off and
 * nothing looked for). The caller frees it. */
static char *s_alt_json(const s_run_t *run, const s_job_t *job) {
    const nr_cli_t *cli = run->app->cli;
    if (cli->alt.mode == NR_ALTJOB_OFF && !job->probed) return NULL;
    nr_buf_t b = {0};
    nr_altjob_json(&b, &job->alt);
    if (b.failed) return NULL;
    return b.data;
}

/* Writes the job's manifest row (state: the record's, unless given). */
static void s_manifest_row(s_run_t *run, const s_job_t *job, const nr_msg_t *record,
                           const char *state, const char *caption, const char *error,
                           const char *message) {
    if (!run->manifest) return;
    const nr_cli_t *cli = run->app->cli;
    const char *model = nr_proto_kv_get(record, "text.model");
    if (!model) model = nr_proto_kv_get(record, "vision.model");
    char audio[4096] = "";
    const char *route = nr_proto_kv_get(record, "route");
    if (state && !strcmp(state, "done") && route && strstr(route, "speech"))
        snprintf(audio, sizeof audio, "%s/%s.wav", job->dir, job->stem);
    const char *action = job->alt.action;
    if (!action && cli->alt.mode != NR_ALTJOB_OFF) action = "skipped";
    if (!error && job->alt.action && !strcmp(job->alt.action, "failed")) {
        error = "alt_text";
        message = job->alt.note;
    }
    nr_manifest_row_t row = {job->path, job->id[0] ? job->id : NULL,
                             state ? state : nr_proto_kv_get(record, "state"), caption, model,
                             nr_proto_kv_get(record, "speech.voice"), audio, action, error, message};
    char err[1024];
    if (nr_manifest_add(run->manifest, &row, err, sizeof err)) nr_narrate_errorf(run->app, "%s", err);
}

/* Counts a job as failed, says why on stderr, and prints its record with
 * --json. `local` marks a failure found here (unreadable file, refused
 * SUBMIT, no worker, outputs not written) rather than a final state from
 * the broker; its error then overrides the record's. `final` says the
 * outcome cannot change any more (the broker's final state, or an input
 * that never became a job): only then is the record written as
 * DIR/<stem>.json, so a .json never says "failed" for a job that may yet
 * finish (no worker now, outputs not fetched). */
static void s_job_failed(s_run_t *run, s_job_t *job, const char *id, const nr_msg_t *record,
                         int local, int final, const char *error, const char *message) {
    nr_narrate_app_t *app = run->app;
    const nr_cli_t *cli = app->cli;
    if (job->state == S_INFLIGHT) run->inflight--;
    job->state = S_FAILED;
    run->failed++;
    nr_narrate_errorf(app, "%s: failed: %s%s%s%s", job->path, nr_narrate_or(message, "unknown error"),
             error ? " (" : "", error ? error : "", error ? ")" : "");
    nr_buf_t b = {0};
    char name[NR_OUTPUT_STEM_MAX + 40], path[4096], err[1024];
    snprintf(name, sizeof name, "%s.json", job->stem);
    snprintf(path, sizeof path, "%s/%s", job->dir, name);
    const char *files[2] = {NULL, NULL};
    char *alt = s_alt_json(run, job);
    nr_output_extra_t extra = {job->path, files, local ? error : NULL, local ? message : NULL,
                               NULL, alt};
    int written = 0;
    if (!cli->no_wait && final) {
        nr_output_record_json(&b, id, record, &extra);
        nr_buf_puts(&b, "\n");
        if (!b.failed && nr_outtree_mkdir(cli->output, job->rel_dir, err, sizeof err) == 0 &&
            nr_output_write(job->dir, name, b.data, b.len, err, sizeof err) == 0)
            written = 1;
        else if (!b.failed)
            nr_narrate_errorf(app, "%s", err);
        nr_buf_clear(&b);
    }
    s_manifest_row(run, job, record, "failed", nr_proto_kv_get(record, "text.caption"), error,
                   message);
    if (cli->json) {
        files[0] = written ? path : NULL;
        nr_output_record_json(&b, id, record, &extra);
        nr_narrate_clear_bar(app);
        if (!b.failed) printf("%s\n", b.data);
        fflush(stdout);
        nr_buf_clear(&b);
    }
    free(alt);
}

/* An image left out by --skip-described: its record says why. */
static void s_job_skipped(s_run_t *run, s_job_t *job) {
    nr_narrate_app_t *app = run->app;
    const nr_cli_t *cli = app->cli;
    job->state = S_SKIPPED;
    job->alt.action = "kept-existing";
    run->skipped++;
    char *alt = s_alt_json(run, job);
    nr_buf_t b = {0};
    nr_output_extra_t extra = {job->path, NULL, NULL, NULL, "skipped", alt};
    nr_output_record_json(&b, "", NULL, &extra);
    char name[NR_OUTPUT_STEM_MAX + 40], err[1024];
    snprintf(name, sizeof name, "%s.json", job->stem);
    /* The record of an earlier run (with its caption) is kept. */
    char old[4096];
    snprintf(old, sizeof old, "%s/%s", job->dir, name);
    struct stat st;
    if (!b.failed && !cli->no_wait && lstat(old, &st) != 0) {
        nr_buf_puts(&b, "\n");
        if (nr_outtree_mkdir(cli->output, job->rel_dir, err, sizeof err) ||
            nr_output_write(job->dir, name, b.data, b.len, err, sizeof err))
            nr_narrate_errorf(app, "%s", err);
    }
    nr_buf_clear(&b);
    s_manifest_row(run, job, NULL, "skipped", NULL, NULL, NULL);
    if (cli->json) {
        nr_output_record_json(&b, "", NULL, &extra);
        nr_narrate_clear_bar(app);
        if (!b.failed) printf("%s\n", b.data);
        fflush(stdout);
        nr_buf_clear(&b);
    } else if (!cli->quiet) {
        nr_narrate_clear_bar(app);
        nr_narrate_linef(stdout, "skipped %s: it has alt text (%s)", job->path,
                         nr_narrate_or(job->alt.existing_at, "?"));
    }
    free(alt);
}

/* Acts on a job record from SUBMIT or STATUS. Returns 0, or the transport
 * error (NR_ECONNECT, NR_ETIMEDOUT) that stops the run. A "not now" answer
 * while fetching a done job's outputs leaves it in flight, asked again. */
static int s_job_update(s_run_t *run, s_job_t *job, const nr_msg_t *record) {
    nr_narrate_app_t *app = run->app;
    nr_client_record_t rec;
    nr_client_record(record, &rec);
    const char *state = nr_narrate_or(rec.state, "");
    char err[2048];
    if (!strcmp(state, "done")) {
        const nr_cli_t *cli = app->cli;
        char *line = NULL, *caption = NULL, *alt = NULL;
        int rc = nr_narrate_caption(app, job->id, record, &caption, err, sizeof err);
        if (!rc) rc = nr_outtree_mkdir(cli->output, job->rel_dir, err, sizeof err);
        if (!rc && cli->alt.mode != NR_ALTJOB_OFF && !job->alt_applied) {
            job->alt_applied = 1; /* once, even if the outputs are fetched again */
            if (nr_altjob_apply(&job->alt, &cli->alt, job->path, job->dir, job->stem, caption)) {
                run->alt_failed++;
                nr_narrate_errorf(app, "%s: alt text not written: %s", job->path,
                                  nr_narrate_or(job->alt.note, "unknown error"));
            }
        }
        if (!rc) {
            alt = s_alt_json(run, job);
            rc = nr_narrate_write_outputs(app, job->id, record, job->dir, job->stem, job->path,
                                          caption, alt, &line, err, sizeof err);
        }
        free(alt);
        if (nr_client_retryable(rc)) {
            free(caption);
            s_retry_note(run, rc, err);
            return 0;
        }
        if (rc == NR_ECONNECT || rc == NR_ETIMEDOUT) {
            free(caption);
            nr_narrate_errorf(app, "%s", err);
            return rc;
        }
        if (rc) {
            free(caption);
            s_job_failed(run, job, job->id, record, 1, 0, nr_errname(rc), err);
            return 0;
        }
        s_manifest_row(run, job, record, "done", caption, NULL, NULL);
        free(caption);
        if (job->state == S_INFLIGHT) run->inflight--;
        job->state = S_DONE;
        run->done++;
        run->retry_since = 0;
        if (app->cli->json) {
            nr_narrate_clear_bar(app);
            printf("%s\n", line ? line : "{}");
            fflush(stdout);
        } else if (!app->cli->quiet) {
            nr_narrate_clear_bar(app);
            nr_narrate_linef(stdout, "done %s -> %s/%s%s%s", job->path, job->dir, job->stem,
                             rec.caption ? ": " : "", rec.caption ? rec.caption : "");
            fflush(stdout);
        }
        free(line);
        return 0;
    }
    if (!strcmp(state, "failed") || !strcmp(state, "cancelled")) {
        s_job_failed(run, job, job->id, record, 0, 1,
                     nr_narrate_or(rec.error, !strcmp(state, "cancelled") ? nr_errname(NR_ECANCELLED) : "failed"),
                     nr_narrate_or(rec.error_message, state));
        return 0;
    }
    if (nr_narrate_noworker_check(&job->noworker, record, app->cli->timeout, err, sizeof err))
        s_job_failed(run, job, job->id, record, 1, 0, nr_errname(NR_ENOWORKER), err);
    return 0;
}

/* One job's options: the run's and, with --all-pages, its page (what its
 * id hashes: the first *n_hashed), then "source", where the image lands
 * under -o ("a/b/001.jpg"), for the record and the review page; not
 * hashed, so moving an archive does not redo it. Returns the count. */
typedef struct {
    nr_kv_t kv[sizeof ((nr_client_options_t *)0)->kv / sizeof (nr_kv_t) + 2]; /* the run's, page, source */
    char source[1024];
} s_job_opts_t;

static size_t s_job_options(s_job_opts_t *o, const nr_client_options_t *opts, const s_job_t *job,
                            size_t *n_hashed) {
    size_t n = opts->n;
    memcpy(o->kv, opts->kv, n * sizeof *o->kv);
    if (job->page >= 0) o->kv[n++] = (nr_kv_t){(char *)"page", (char *)job->page_str};
    *n_hashed = n;
    int len = snprintf(o->source, sizeof o->source, "%s%s%s", job->rel_dir, job->rel_dir[0] ? "/" : "",
                       job->stem);
    if (len > 0 && (size_t)len < sizeof o->source &&
        nr_utf8_validate((const uint8_t *)o->source, (size_t)len, NULL) == 0)
        o->kv[n++] = (nr_kv_t){"source", o->source};
    return n;
}

/* Reads, names and submits the next pending jobs, up to `room` of them and
 * about S_BATCH_BYTES of input, as one pipelined batch. A job refused busy
 * or for want of Redis (nr_client_retryable), or not answered because the
 * broker could not be reached, stays pending. Returns 0 (all submitted, or
 * failed here), NR_EBUSY / NR_EREDIS (try again later), NR_ENOMEM, or a
 * fatal transport error (detail in nr_client_error). */
static int s_submit_batch(s_run_t *run, size_t room) {
    nr_narrate_app_t *app = run->app;
    const nr_cli_t *cli = app->cli;
    nr_client_options_t opts;
    char err[2048], opts_err[512] = "";
    /* The command line was checked; a refusal here fails each job with it. */
    int opts_rc = nr_client_options(&opts, cli->beams, cli->max_length, cli->voice, cli->prompt, opts_err,
                                    sizeof opts_err);
    if (!opts_rc) opts_rc = nr_client_options_speed(&opts, cli->speed, opts_err, sizeof opts_err);
    if (!opts_rc) opts_rc = nr_client_options_language(&opts, cli->language, opts_err, sizeof opts_err);
    size_t *which = calloc(room, sizeof *which);
    nr_client_job_t *jobs = calloc(room, sizeof *jobs);
    s_job_opts_t *job_opts = calloc(room, sizeof *job_opts);
    nr_msg_t *replies = calloc(room, sizeof *replies);
    int *codes = calloc(room, sizeof *codes);
    int ret = 0;
    size_t n = 0, bytes = 0;
    if (!which || !jobs || !job_opts || !replies || !codes) {
        ret = NR_ENOMEM;
        goto done;
    }
    for (size_t i = run->next; i < run->n && n < room && bytes < S_BATCH_BYTES; i++) {
        s_job_t *job = &run->jobs[i];
        if (job->state != S_PENDING) continue;
        if (opts_rc) {
            s_job_failed(run, job, "", NULL, 1, 1, nr_errname(opts_rc), opts_err);
            continue;
        }
        if ((cli->alt.mode != NR_ALTJOB_OFF || cli->skip_described) && !job->probed) {
            nr_altjob_probe(&job->alt, &cli->alt, job->path, job->dir, job->stem);
            job->probed = 1;
            if (cli->skip_described && job->alt.existing) {
                s_job_skipped(run, job);
                continue;
            }
        }
        uint8_t *data = NULL;
        size_t size = 0;
        int rc = nr_files_read(job->path, NR_PROTO_PAYLOAD_MAX, &data, &size, err, sizeof err);
        if (rc) {
            s_job_failed(run, job, "", NULL, 1, 1, nr_errname(rc), err);
            continue;
        }
        size_t n_hashed, n_opts = s_job_options(&job_opts[n], &opts, job, &n_hashed);
        if (cli->id_random) rc = nr_client_random_id(job->id);
        else rc = nr_client_content_id(data, size, cli->route, job_opts[n].kv, n_hashed, job->id);
        if (rc) {
            free(data);
            s_job_failed(run, job, "", NULL, 1, 1, nr_errname(rc), "cannot make a job id");
            continue;
        }
        which[n] = i;
        jobs[n] = (nr_client_job_t){job->id, cli->route, job_opts[n].kv, n_opts, data, size, run->run_id}; /* owns data */
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
        } else if (nr_client_retryable(rc)) {
            if (!ret) ret = rc;
            s_retry_note(run, rc, reply->message);
        } else if (rc) {
            /* Refused for good (bad input, too large): no job was made. */
            s_job_failed(run, job, job->id, NULL, 1, 1, nr_errname(rc), reply->message);
        } else if (cli->no_wait) {
            run->retry_since = 0;
            job->state = S_DONE;
            run->done++;
            s_manifest_row(run, job, reply, NULL, NULL, NULL, NULL);
            if (cli->json) {
                nr_buf_t b = {0};
                nr_output_extra_t extra = {job->path, NULL, NULL, NULL, NULL, NULL};
                nr_output_record_json(&b, job->id, reply, &extra);
                if (!b.failed) printf("%s\n", b.data);
                nr_buf_clear(&b);
            } else if (!cli->quiet) {
                nr_narrate_linef(stdout, "%s %s", job->id, job->path);
            }
        } else {
            run->retry_since = 0;
            job->state = S_INFLIGHT;
            run->inflight++;
            job->poll_ms = NR_NARRATE_POLL_FIRST_MS;
            job->next_poll = nr_clock_mono_ms() + job->poll_ms;
            int fatal = s_job_update(run, job, reply);
            if (fatal && (!ret || nr_client_retryable(ret))) ret = fatal;
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
    free(job_opts);
    free(replies);
    free(codes);
    return ret;
}

/* Frees n jobs' strings and alt text state, and the array. */
static void s_free_jobs(s_job_t *jobs, size_t n) {
    for (size_t i = 0; jobs && i < n; i++) {
        free(jobs[i].rel_dir);
        free(jobs[i].dir);
        free(jobs[i].stem);
        nr_altjob_clear(&jobs[i].alt);
    }
    free(jobs);
}

/* Gives every image its place under -o (client/outtree.h). Returns an exit
 * code. */
static int s_plan(s_run_t *run, const nr_files_t *files) {
    const char *out = run->app->cli->output;
    const char **rels = calloc(files->len, sizeof *rels);
    char **dirs = calloc(files->len, sizeof *dirs), **names = calloc(files->len, sizeof *names);
    run->jobs = calloc(files->len, sizeof *run->jobs);
    int ok = rels && dirs && names && run->jobs;
    for (size_t i = 0; ok && i < files->len; i++) rels[i] = files->paths[i] + files->rel_at[i];
    ok = ok && nr_outtree_plan(rels, files->len, dirs, names) == 0;
    if (ok) run->n = files->len;
    for (size_t i = 0; ok && i < files->len; i++) {
        s_job_t *job = &run->jobs[i];
        job->path = files->paths[i];
        job->page = -1;
        job->rel_dir = dirs[i];
        job->stem = names[i];
        size_t n = strlen(out) + strlen(dirs[i]) + 2;
        if ((job->dir = malloc(n)) != NULL) snprintf(job->dir, n, "%s%s%s", out, *dirs[i] ? "/" : "", dirs[i]);
        else ok = 0;
    }
    free(rels);
    free(dirs);
    free(names);
    if (ok) return NR_EXIT_OK;
    nr_narrate_errorf(run->app, "out of memory");
    return NR_EXIT_FAILED;
}

/* --all-pages: a TIFF of N > 1 pages becomes N jobs, page k written as
 * <stem>@p<k+1> ('@' never survives nr_output_stem, so no other image's
 * stem can clash). Other files keep one job. Returns 0 or NR_ENOMEM. */
static int s_expand_pages(s_run_t *run) {
    size_t cap = run->n, n = 0;
    s_job_t *jobs = calloc(cap, sizeof *jobs);
    if (!jobs) return NR_ENOMEM;
    for (size_t i = 0; i < run->n; i++) {
        int pages = 1;
        const char *dot = strrchr(run->jobs[i].path, '.');
        if (dot && (!strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff"))) {
            uint8_t *data = NULL;
            size_t size = 0;
            char err[256];
            if (nr_files_read(run->jobs[i].path, NR_PROTO_PAYLOAD_MAX, &data, &size, err, sizeof err) == 0)
                pages = nr_files_tiff_pages(data, size, S_MAX_PAGES);
            free(data); /* unreadable: one job, which then fails with the reason */
        }
        if (n + (size_t)pages > cap) {
            cap = (n + (size_t)pages) * 2;
            s_job_t *p = realloc(jobs, cap * sizeof *jobs);
            if (!p) goto nomem;
            jobs = p;
        }
        s_job_t *orig = &run->jobs[i];
        if (pages == 1) {
            jobs[n++] = *orig; /* takes its strings */
            memset(orig, 0, sizeof *orig);
            continue;
        }
        for (int k = 0; k < pages; k++) { /* each page owns copies of the strings */
            s_job_t *j = &jobs[n++];
            *j = *orig;
            memset(&j->alt, 0, sizeof j->alt); /* probed later, per page */
            j->page = k;
            snprintf(j->page_str, sizeof j->page_str, "%d", k);
            size_t len = strlen(orig->stem) + 16;
            j->rel_dir = strdup(orig->rel_dir);
            j->dir = strdup(orig->dir);
            if ((j->stem = malloc(len))) snprintf(j->stem, len, "%s@p%d", orig->stem, k + 1);
            if (!j->rel_dir || !j->dir || !j->stem) goto nomem;
        }
    }
    s_free_jobs(run->jobs, run->n);
    run->jobs = jobs;
    run->n = n;
    return 0;
nomem:
    s_free_jobs(jobs, n);
    return NR_ENOMEM;
}

int nr_narrate_cmd_submit(nr_narrate_app_t *app) {
    const nr_cli_t *cli = app->cli;
    nr_files_t files;
    nr_files_init(&files);
    char err[2048];
    int code = NR_EXIT_OK, fatal = 0;
    s_run_t run = {.app = app, .started = nr_clock_mono_ms()};
    for (size_t i = 0; i < cli->n_paths; i++) {
        int rc = nr_files_collect(&files, cli->paths[i], err, sizeof err);
        if (rc) {
            nr_narrate_errorf(app, "%s", err);
            code = NR_EXIT_USAGE;
            goto done;
        }
    }
    if (cli->files_from && nr_files_collect_list(&files, cli->files_from, err, sizeof err)) {
        nr_narrate_errorf(app, "%s", err);
        code = NR_EXIT_USAGE;
        goto done;
    }
    for (size_t i = 0; i < files.n_skipped; i++)
        nr_narrate_errorf(app, "warning: %s; skipping it", files.skipped[i]);
    if (files.len == 0) {
        nr_narrate_errorf(app, "no images (.jpg .jpeg .png .webp .tif .tiff .gif .bmp .heic .heif .avif) found in the paths given");
        code = NR_EXIT_USAGE;
        goto done;
    }
    if (!cli->no_wait && nr_output_mkdir(cli->output, err, sizeof err)) {
        nr_narrate_errorf(app, "%s", err);
        code = NR_EXIT_USAGE;
        goto done;
    }
    if ((code = s_plan(&run, &files)) != NR_EXIT_OK) goto done;
    if (cli->n_manifests &&
        !(run.manifest = nr_manifest_new(cli->manifests, cli->n_manifests, err, sizeof err))) {
        nr_narrate_errorf(app, "%s", err);
        code = NR_EXIT_USAGE;
        goto done;
    }
    if (cli->all_pages && s_expand_pages(&run)) {
        nr_narrate_errorf(app, "out of memory");
        code = NR_EXIT_FAILED;
        goto done;
    }
    if (cli->run) snprintf(run.run_id, sizeof run.run_id, "%s", cli->run);
    else nr_client_new_run_id(run.run_id);
    if (!cli->json && !cli->quiet) nr_narrate_linef(stdout, "run %s", run.run_id);

    int64_t busy_until = 0;
    nr_backoff_t busy_backoff;
    nr_backoff_init(&busy_backoff, NR_CLIENT_BUSY_FIRST_MS, NR_CLIENT_BUSY_MAX_MS);
    int busy_noted = 0;
    while (run.done + run.failed + run.skipped < run.n) {
        while (run.next < run.n && run.inflight < (size_t)cli->window && nr_clock_mono_ms() >= busy_until) {
            int rc = s_submit_batch(&run, (size_t)cli->window - run.inflight);
            if (nr_client_retryable(rc)) {
                if (rc == NR_EBUSY && !busy_noted && !cli->quiet) {
                    nr_narrate_clear_bar(app);
                    fprintf(stderr, "narrate: the broker's queue is full; waiting and retrying\n");
                    busy_noted = 1;
                }
                busy_until = nr_clock_mono_ms() + nr_backoff_jitter(nr_backoff_next(&busy_backoff),
                                                                    (uint32_t)rand());
                break;
            }
            if (rc) {
                nr_narrate_errorf(app, "%s", rc == NR_ENOMEM ? "out of memory" : nr_client_error(app->client));
                fatal = rc;
                goto stop;
            }
            nr_backoff_reset(&busy_backoff);
        }
        if (cli->no_wait && run.next == run.n) break;
        int64_t now = nr_clock_mono_ms(), wake = now + NR_NARRATE_POLL_MAX_MS;
        for (size_t i = 0; i < run.n; i++) {
            s_job_t *job = &run.jobs[i];
            if (job->state != S_INFLIGHT) continue;
            if (job->next_poll <= now) {
                nr_msg_t reply;
                nr_proto_msg_init(&reply);
                int rc = nr_client_status(app->client, job->id, &reply);
                if (rc == NR_ECONNECT || rc == NR_ETIMEDOUT) {
                    nr_proto_msg_clear(&reply);
                    nr_narrate_errorf(app, "%s", nr_client_error(app->client));
                    fatal = rc;
                    goto stop;
                }
                if (nr_client_retryable(rc)) /* not now: the job is asked about again */
                    s_retry_note(&run, rc, nr_client_error(app->client));
                else if (rc) /* the job's fate is unknown here: no .json */
                    s_job_failed(&run, job, job->id, NULL, 1, 0, nr_errname(rc),
                                 nr_client_error(app->client));
                else if ((rc = s_job_update(&run, job, &reply))) {
                    nr_proto_msg_clear(&reply);
                    fatal = rc;
                    goto stop;
                }
                nr_proto_msg_clear(&reply);
                if (job->poll_ms < NR_NARRATE_POLL_MAX_MS) job->poll_ms = job->poll_ms * 3 / 2;
                now = nr_clock_mono_ms();
                job->next_poll = now + job->poll_ms;
            }
            if (job->state == S_INFLIGHT && job->next_poll < wake) wake = job->next_poll;
        }
        if (run.retry_since &&
            nr_clock_mono_ms() - run.retry_since > NR_NARRATE_RETRY_FACTOR * cli->timeout * 1000) {
            nr_narrate_errorf(app, "giving up: the broker has had no redis for %ld s: %s",
                              NR_NARRATE_RETRY_FACTOR * cli->timeout, run.retry_msg);
            fatal = NR_EREDIS;
            goto stop;
        }
        s_draw_bar(&run);
        if (run.next < run.n && run.inflight < (size_t)cli->window && busy_until < wake)
            wake = busy_until;
        if (run.done + run.failed + run.skipped < run.n) nr_clock_sleep_ms(wake - nr_clock_mono_ms());
    }
stop:
    if (app->bar_drawn) {
        s_draw_bar(&run);
        fputc('\n', stderr);
        app->bar_drawn = 0;
    }
    if (fatal) {
        if (run.inflight || run.next < run.n)
            nr_narrate_errorf(app, "stopped with %zu of %zu images unfinished; run the same command again "
                          "to resume", run.n - run.done - run.failed - run.skipped, run.n);
        code = nr_narrate_exit_code(fatal);
    } else {
        code = run.failed || run.alt_failed || files.n_skipped ? NR_EXIT_FAILED : NR_EXIT_OK;
    }
    if (!cli->quiet && !cli->json) {
        char extra[64] = "";
        if (run.skipped) snprintf(extra, sizeof extra, ", %zu skipped (described)", run.skipped);
        if (files.n_skipped)
            fprintf(stderr, "narrate: %zu %s, %zu failed%s, of %zu images; %zu path%s skipped\n",
                    run.done, cli->no_wait ? "submitted" : "done", run.failed, extra, run.n,
                    files.n_skipped, files.n_skipped == 1 ? "" : "s");
        else
            fprintf(stderr, "narrate: %zu %s, %zu failed%s, of %zu images\n", run.done,
                    cli->no_wait ? "submitted" : "done", run.failed, extra, run.n);
    }
done:
    s_free_jobs(run.jobs, run.n);
    nr_manifest_destroy(&run.manifest);
    nr_files_clear(&files);
    return code;
}

