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
#include "client/narrate.h"
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


/* Prints a kv map as "key: value" lines, or as one JSON object. */
static void s_print_kv(const nr_narrate_app_t *app, const nr_msg_t *m) {
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
        for (uint32_t i = 0; i < m->kv_len; i++)
            nr_narrate_linef(stdout, "%s: %s", m->kv[i].key, m->kv[i].value);
    }
}

/* Polls a job until it is final. Returns 0 with the final record in
 * `record`, or an error with a message in err: NR_ETIMEDOUT when limit_s
 * (0 = none) ran out, NR_ENOWORKER when the job sat at a stage with no live
 * worker for longer than --timeout, or the client's error. A "not now"
 * answer (nr_client_retryable: the broker cannot reach Redis) is asked
 * again, for at most 6 x --timeout in a row. */
static int s_wait_final(nr_narrate_app_t *app, const char *id, long limit_s, nr_msg_t *record, char *err,
                        size_t errlen) {
    int64_t start = nr_clock_mono_ms();
    int poll = NR_NARRATE_POLL_FIRST_MS;
    nr_narrate_noworker_t noworker = {0, ""};
    int64_t failing_since = 0;
    for (;;) {
        int rc = nr_client_status(app->client, id, record);
        if (nr_client_retryable(rc)) {
            int64_t now = nr_clock_mono_ms();
            if (!failing_since) failing_since = now;
            if (now - failing_since > NR_NARRATE_RETRY_FACTOR * app->cli->timeout * 1000)
                return nr_seterr(err, errlen, rc, "%s", nr_client_error(app->client));
            nr_clock_sleep_ms(poll);
            if (poll < NR_NARRATE_POLL_MAX_MS) poll = poll * 3 / 2;
            continue;
        }
        failing_since = 0;
        if (rc) return nr_seterr(err, errlen, rc, "%s", nr_client_error(app->client));
        const char *state = nr_proto_kv_get(record, "state");
        if (state && (!strcmp(state, "done") || !strcmp(state, "failed") ||
                      !strcmp(state, "cancelled")))
            return 0;
        if (nr_narrate_noworker_check(&noworker, record, app->cli->timeout, err, errlen))
            return NR_ENOWORKER;
        if (limit_s > 0 && nr_clock_mono_ms() - start >= limit_s * 1000)
            return nr_seterr(err, errlen, NR_ETIMEDOUT, "job %s is still %s after %ld s", id,
                             state ? state : "unknown", limit_s);
        nr_clock_sleep_ms(poll);
        if (poll < NR_NARRATE_POLL_MAX_MS) poll = poll * 3 / 2;
    }
}


/* ---- commands ---------------------------------------------------------- */

static int s_cmd_status(nr_narrate_app_t *app) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_status(app->client, app->cli->id, &reply);
    if (rc) nr_narrate_errorf(app, "job %s: %s", app->cli->id, nr_client_error(app->client));
    else s_print_kv(app, &reply);
    nr_proto_msg_clear(&reply);
    return nr_narrate_exit_code(rc);
}

static int s_cmd_stats(nr_narrate_app_t *app) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_stats(app->client, &reply);
    if (rc) nr_narrate_errorf(app, "%s", nr_client_error(app->client));
    else s_print_kv(app, &reply);
    nr_proto_msg_clear(&reply);
    return nr_narrate_exit_code(rc);
}

static int s_cmd_cancel(nr_narrate_app_t *app) {
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_cancel(app->client, app->cli->id, &reply);
    if (rc) {
        nr_narrate_errorf(app, "cannot cancel %s: %s", app->cli->id, nr_client_error(app->client));
    } else if (app->cli->json) {
        s_print_kv(app, &reply);
    } else if (!app->cli->quiet) {
        nr_narrate_linef(stdout, "%s %s", app->cli->id,
                         nr_narrate_or(nr_proto_kv_get(&reply, "state"), "cancelled"));
    }
    nr_proto_msg_clear(&reply);
    return nr_narrate_exit_code(rc);
}

/* Prints the final state of one job; returns its exit code. */
static int s_report_final(nr_narrate_app_t *app, const char *id, const nr_msg_t *record) {
    nr_client_record_t rec;
    nr_client_record(record, &rec);
    const char *state = nr_narrate_or(rec.state, "unknown");
    int ok = !strcmp(state, "done");
    if (app->cli->json) {
        nr_buf_t b = {0};
        nr_output_record_json(&b, id, record, NULL);
        if (!b.failed) printf("%s\n", b.data);
        nr_buf_clear(&b);
    } else if (ok && !app->cli->quiet) {
        nr_narrate_linef(stdout, "%s done", id);
    }
    if (!ok)
        nr_narrate_errorf(app, "job %s %s: %s: %s", id, state, nr_narrate_or(rec.error, nr_errname(NR_ECANCELLED)),
                 nr_narrate_or(rec.error_message, state));
    return ok ? NR_EXIT_OK : NR_EXIT_FAILED;
}

static int s_cmd_wait(nr_narrate_app_t *app) {
    nr_msg_t record;
    nr_proto_msg_init(&record);
    char err[2048];
    int rc = s_wait_final(app, app->cli->id, app->cli->wait_timeout, &record, err, sizeof err);
    int code;
    if (rc) {
        nr_narrate_errorf(app, "%s", err);
        /* `wait` only watches: a job nobody serves is a wait that gave up. */
        code = rc == NR_ENOWORKER ? NR_EXIT_TIMEOUT : nr_narrate_exit_code(rc);
    } else {
        code = s_report_final(app, app->cli->id, &record);
    }
    nr_proto_msg_clear(&record);
    return code;
}

static int s_cmd_get(nr_narrate_app_t *app) {
    nr_msg_t record;
    nr_proto_msg_init(&record);
    char err[2048];
    int code = NR_EXIT_OK;
    int rc = nr_client_status(app->client, app->cli->id, &record);
    if (rc) {
        nr_narrate_errorf(app, "job %s: %s", app->cli->id, nr_client_error(app->client));
        code = nr_narrate_exit_code(rc);
        goto done;
    }
    nr_client_record_t rec;
    nr_client_record(&record, &rec);
    const char *state = nr_narrate_or(rec.state, "unknown");
    if (strcmp(state, "done")) {
        nr_narrate_errorf(app, "job %s is %s, not done%s%s", app->cli->id, state,
                 rec.error_message ? ": " : "", nr_narrate_or(rec.error_message, ""));
        code = NR_EXIT_FAILED;
        goto done;
    }
    /* The id is the stem: ids are [A-Za-z0-9._:-], so only a leading '.'
     * ("..", ".x") needs changing to stay a plain, visible name. */
    char stem[NR_PROTO_ID_MAX + 1], *line = NULL;
    snprintf(stem, sizeof stem, "%s", app->cli->id);
    if (stem[0] == '.') stem[0] = '_';
    rc = nr_narrate_write_outputs(app, app->cli->id, &record, app->cli->output, stem, NULL, NULL,
                                  NULL, &line, err, sizeof err);
    if (rc) {
        nr_narrate_errorf(app, "job %s: %s", app->cli->id, err);
        code = nr_narrate_exit_code(rc) == NR_EXIT_OK ? NR_EXIT_FAILED : nr_narrate_exit_code(rc);
    } else if (app->cli->json) {
        printf("%s\n", line ? line : "{}");
    } else if (!app->cli->quiet) {
        nr_narrate_linef(stdout, "%s written to %s", app->cli->id, app->cli->output);
    }
    free(line);
done:
    nr_proto_msg_clear(&record);
    return code;
}

static int s_cmd_speak(nr_narrate_app_t *app) {
    const nr_cli_t *cli = app->cli;
    nr_client_options_t opts;
    char id[NR_CLIENT_ID_HEX + 1], err[2048];
    if (nr_client_options(&opts, cli->beams, cli->max_length, cli->voice, NULL, err, sizeof err) ||
        nr_client_options_speed(&opts, cli->speed, err, sizeof err)) {
        nr_narrate_errorf(app, "%s", err);
        return NR_EXIT_USAGE;
    }
    size_t size = strlen(cli->text);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int code = NR_EXIT_OK;
    int rc = nr_client_content_id(cli->text, size, NR_CLI_SPEECH_ROUTE, opts.kv, opts.n, id);
    if (rc) {
        nr_narrate_errorf(app, "cannot make a job id: %s", nr_strerror(rc));
        return NR_EXIT_FAILED;
    }
    nr_client_set_busy_wait(app->client, (int)(cli->timeout * 1000 * NR_NARRATE_RETRY_FACTOR));
    rc = nr_client_submit(app->client, id, NR_CLI_SPEECH_ROUTE, opts.kv, opts.n, cli->text, size, &reply);
    if (rc) {
        nr_narrate_errorf(app, "cannot submit: %s", nr_client_error(app->client));
        code = nr_client_retryable(rc) ? NR_EXIT_TIMEOUT : nr_narrate_exit_code(rc);
        goto done;
    }
    rc = s_wait_final(app, id, 0, &reply, err, sizeof err);
    if (rc) {
        nr_narrate_errorf(app, "%s", err);
        code = nr_narrate_exit_code(rc);
        goto done;
    }
    if (strcmp(nr_narrate_or(nr_proto_kv_get(&reply, "state"), ""), "done")) {
        code = s_report_final(app, id, &reply);
        goto done;
    }
    rc = nr_client_fetch(app->client, id, "speech", &reply);
    for (int64_t since = nr_clock_mono_ms();
         nr_client_retryable(rc) &&
         nr_clock_mono_ms() - since < NR_NARRATE_RETRY_FACTOR * cli->timeout * 1000;) {
        nr_clock_sleep_ms(NR_NARRATE_POLL_MAX_MS);
        rc = nr_client_fetch(app->client, id, "speech", &reply);
    }
    if (rc || reply.frames_len == 0) {
        nr_narrate_errorf(app, "cannot fetch the audio of job %s: %s", id,
                 rc ? nr_client_error(app->client) : "the broker sent none");
        code = rc ? nr_narrate_exit_code(rc) : NR_EXIT_FAILED;
        goto done;
    }
    rc = nr_output_write_path(cli->output, reply.frames[0].data, reply.frames[0].size, err, sizeof err);
    if (rc) {
        nr_narrate_errorf(app, "%s", err);
        code = NR_EXIT_FAILED;
        goto done;
    }
    /* With the audio on stdout, what is said about it goes to stderr. */
    FILE *info = nr_output_is_stdout(cli->output) ? stderr : stdout;
    if (cli->json) {
        nr_buf_t b = {0};
        const char *files[2] = {cli->output, NULL};
        nr_output_extra_t extra = {NULL, files, NULL, NULL, NULL, NULL};
        nr_output_record_json(&b, id, &reply, &extra);
        if (!b.failed) fprintf(info, "%s\n", b.data);
        nr_buf_clear(&b);
    } else if (!cli->quiet) {
        nr_narrate_linef(info, "%s (%s ms of audio, job %s)", cli->output,
                         nr_narrate_or(nr_proto_kv_get(&reply, "speech.duration_ms"), "?"), id);
    }
done:
    nr_proto_msg_clear(&reply);
    return code;
}

int main(int argc, char **argv) {
    nr_cli_t cli;
    char err[1024];
    nr_log_set_component("narrate");
    if (argc > 1 && !strcmp(argv[1], "eval")) { /* scoring needs no broker: its own options */
        int code = nr_narrate_cmd_eval(argc - 1, argv + 1);
        if (nr_narrate_finish_stdout() && code == NR_EXIT_OK) code = NR_EXIT_FAILED;
        return code;
    }
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
    nr_narrate_app_t app = {&cli, NULL, isatty(STDERR_FILENO) && !cli.quiet, 0};
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
    case NR_CLI_SUBMIT: code = nr_narrate_cmd_submit(&app); break;
    case NR_CLI_STATUS: code = cli.run ? nr_narrate_cmd_run_status(&app) : s_cmd_status(&app); break;
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
    /* Output that never arrived is a failure ("narrate stats > /dev/full"). */
    if (nr_narrate_finish_stdout() && code == NR_EXIT_OK) code = NR_EXIT_FAILED;
    nr_client_destroy(&app.client);
    nr_cli_clear(&cli);
    return code;
}
