/* What narrate's commands share: exit codes, error lines beside the
 * progress bar, the no-worker watch, and writing a finished job's outputs
 * (caption, audio, JSON record) into the output folder. */
#include "client/narrate.h"
#include "client/output.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_CAPTION_MAX 65536

/* Exit code for an error code from the client library or broker. */
int nr_narrate_exit_code(int rc) {
    switch (rc) {
    case 0: return NR_EXIT_OK;
    case NR_ECONNECT: return NR_EXIT_CONNECT;
    case NR_ETIMEDOUT: return NR_EXIT_TIMEOUT;
    case NR_ENOTFOUND: return NR_EXIT_NOTFOUND;
    default: return NR_EXIT_FAILED;
    }
}

void nr_narrate_clear_bar(nr_narrate_app_t *app) {
    if (app->bar_drawn) {
        fputs("\r\033[K", stderr);
        app->bar_drawn = 0;
    }
}

/* Formats, escapes (nr_output_plain) and writes one line to out. */
static void s_vline(FILE *out, const char *prefix, const char *fmt, va_list ap) {
    char small[1024], *text = small;
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= (int)sizeof small && (text = malloc((size_t)n + 1)) != NULL)
        vsnprintf(text, (size_t)n + 1, fmt, copy);
    va_end(copy);
    if (!text) text = small; /* out of memory: the line cut short */
    nr_buf_t b = {0};
    nr_buf_puts(&b, prefix);
    nr_output_plain(&b, n < 0 ? "" : text);
    nr_buf_puts(&b, "\n");
    if (!b.failed) fputs(b.data, out);
    nr_buf_clear(&b);
    if (text != small) free(text);
}

void nr_narrate_errorf(nr_narrate_app_t *app, const char *fmt, ...) {
    nr_narrate_clear_bar(app);
    va_list ap;
    va_start(ap, fmt);
    s_vline(stderr, "narrate: ", fmt, ap);
    va_end(ap);
}

void nr_narrate_linef(FILE *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    s_vline(out, "", fmt, ap);
    va_end(ap);
}

int nr_narrate_finish_stdout(void) {
    int bad = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    if (fclose(stdout) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad) return 0;
    fprintf(stderr, "narrate: cannot write to standard output: %s\n", e ? strerror(e) : "write error");
    return 1;
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

int nr_narrate_noworker_check(nr_narrate_noworker_t *w, const nr_msg_t *record, long timeout_s, char *err,
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

int nr_narrate_caption(nr_narrate_app_t *app, const char *id, const nr_msg_t *record,
                       char **caption, char *err, size_t errlen) {
    *caption = NULL;
    const char *route = nr_proto_kv_get(record, "route");
    if (!route) route = app->cli->route;
    if (!s_route_has(route, "text")) return 0;
    const char *have = nr_proto_kv_get(record, "text.caption");
    if (have) {
        *caption = strdup(have);
        return *caption ? 0 : nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    }
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_client_fetch(app->client, id, "text", &reply);
    if (rc) {
        nr_seterr(err, errlen, rc, "cannot fetch the caption: %s", nr_client_error(app->client));
    } else {
        size_t n = reply.frames_len ? reply.frames[0].size : 0;
        if (n > S_CAPTION_MAX) n = S_CAPTION_MAX;
        char *text = malloc(n + 1);
        if (!text) {
            rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        } else {
            if (n) memcpy(text, reply.frames[0].data, n);
            text[n] = '\0';
            *caption = text;
        }
    }
    nr_proto_msg_clear(&reply);
    return rc;
}

int nr_narrate_write_outputs(nr_narrate_app_t *app, const char *id, const nr_msg_t *record,
                             const char *dir, const char *stem, const char *source,
                             const char *caption, const char *json_extra, char **line, char *err,
                             size_t errlen) {
    const char *route = nr_proto_kv_get(record, "route");
    if (!route) route = app->cli->route;
    char names[3][NR_OUTPUT_STEM_MAX + 40];
    const char *files[4] = {NULL, NULL, NULL, NULL};
    size_t n_files = 0;
    char *owned = NULL;
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    int rc = nr_output_mkdir(dir, err, errlen);
    if (rc) goto done;

    if (s_route_has(route, "text")) {
        if (!caption) {
            if ((rc = nr_narrate_caption(app, id, record, &owned, err, errlen))) goto done;
            caption = owned ? owned : "";
        }
        snprintf(names[n_files], sizeof names[0], "%s.txt", stem);
        size_t len = strlen(caption);
        char *text = malloc(len + 2);
        if (!text) { rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory"); goto done; }
        memcpy(text, caption, len);
        text[len] = '\n';
        rc = nr_output_write(dir, names[n_files], text, len + 1, err, errlen);
        free(text);
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
    nr_output_extra_t extra = {source, files, NULL, NULL, NULL, json_extra};
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
        nr_output_extra_t x = {source, full, NULL, NULL, NULL, json_extra};
        nr_output_record_json(&b, id, record, &x);
        *line = b.failed ? NULL : b.data;
        if (b.failed) nr_buf_clear(&b);
    }
done:
    free(owned);
    nr_proto_msg_clear(&reply);
    return rc;
}

const char *nr_narrate_or(const char *s, const char *alt) { return s && *s ? s : alt; }
