/* What narrate.c (main, the commands), narrate_submit.c (`submit`, with its
 * window of jobs in flight and its progress bar) and narrate_report.c (the
 * helpers both use) share; not an API. */
#ifndef NR_CLIENT_NARRATE_H
#define NR_CLIENT_NARRATE_H

#include "client/cli.h"
#include "client/client.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NR_NARRATE_POLL_FIRST_MS 100
#define NR_NARRATE_POLL_MAX_MS 1000
/* "Not now" answers (nr_client_retryable: queue full, Redis unreachable)
 * are retried for at most this many times --timeout in a row. */
#define NR_NARRATE_RETRY_FACTOR 6

typedef struct {
    nr_cli_t *cli;
    nr_client_t *client;
    int tty; /* draw a progress bar on stderr */
    int bar_drawn;
} nr_narrate_app_t;

/* Watches a queued job: nr_narrate_noworker_check returns 1 when it has
 * sat at a stage with no live worker for longer than the timeout. */
typedef struct {
    int64_t since;
    char stage[NR_PROTO_NAME_MAX + 1];
} nr_narrate_noworker_t;

/* Exit code for an error code from the client library or broker. */
int nr_narrate_exit_code(int rc);

void nr_narrate_clear_bar(nr_narrate_app_t *app);

void nr_narrate_errorf(nr_narrate_app_t *app, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Watches a queued job: returns 1 when it has sat at a stage with no live
 * worker for longer than the timeout (message in err), else 0. */
int nr_narrate_noworker_check(nr_narrate_noworker_t *w, const nr_msg_t *record, long timeout_s,
                              char *err, size_t errlen);

/* A finished job's caption (the record's text.caption, else fetched),
 * malloc'd into *caption; NULL when its route has no text stage. Returns
 * 0 or an error (retryable ones included) with a message in err. */
int nr_narrate_caption(nr_narrate_app_t *app, const char *id, const nr_msg_t *record,
                       char **caption, char *err, size_t errlen);

/* Writes a finished job's outputs into dir as <stem>.txt/.wav/.json;
 * `caption` NULL: fetched (nr_narrate_caption); `json_extra`: members
 * added to the record, or NULL. On success, and when `line` is not NULL,
 * it gets the JSON line for stdout (the caller frees it). Returns 0 or an
 * error with a message in err. */
int nr_narrate_write_outputs(nr_narrate_app_t *app, const char *id, const nr_msg_t *record,
                             const char *dir, const char *stem, const char *source,
                             const char *caption, const char *json_extra, char **line, char *err,
                             size_t errlen);

const char *nr_narrate_or(const char *s, const char *alt);

/* Writes one plain-text line (a newline is added) to out with control
 * characters escaped (nr_output_plain): every plain line that carries a
 * file name, caption or message goes through here or nr_narrate_errorf. */
void nr_narrate_linef(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Flushes and closes stdout; on a write error (a full disk, /dev/full)
 * says so on stderr and returns 1, else 0. Called once, at exit. */
int nr_narrate_finish_stdout(void);

/* `narrate submit`: returns the exit code. */
int nr_narrate_cmd_submit(nr_narrate_app_t *app);
/* `narrate status --run ID` (client/narrate_run.c): the run's jobs by state,
 * each failed or cancelled one with its error. Exit 0, 1 when any failed or
 * was cancelled, 5 for an unknown run. */
int nr_narrate_cmd_run_status(nr_narrate_app_t *app);

/* `narrate eval` (argv[0] is "eval"; its own options, no broker): returns
 * the exit code. */
int nr_narrate_cmd_eval(int argc, char **argv);

#endif
