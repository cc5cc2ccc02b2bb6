/* The run manifest: JSON Lines and CSV rows written as images finish. */
#include "client/manifest.h"
#include "client/output.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

struct nr_manifest_t {
    int fd[NR_MANIFEST_FILES_MAX];
    nr_manifest_format_t format[NR_MANIFEST_FILES_MAX];
    char *path[NR_MANIFEST_FILES_MAX];
    size_t n;
};

static const char *const s_columns[] = {"source", "job_id", "state", "caption", "model", "voice",
                                        "audio", "alt_text_action", "error", "error_message"};
#define S_NCOLS (sizeof s_columns / sizeof s_columns[0])

nr_manifest_format_t nr_manifest_format(const char *path) {
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/')) return NR_MANIFEST_UNKNOWN;
    if (!strcasecmp(dot, ".jsonl")) return NR_MANIFEST_JSONL;
    if (!strcasecmp(dot, ".csv")) return NR_MANIFEST_CSV;
    return NR_MANIFEST_UNKNOWN;
}

void nr_manifest_csv_row(nr_buf_t *b, const char *const *fields, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (i) nr_buf_puts(b, ",");
        const char *f = fields[i];
        if (!f || !*f) continue; /* empty field, unquoted */
        nr_buf_puts(b, "\"");
        for (const char *q; (q = strchr(f, '"')) != NULL; f = q + 1) {
            nr_buf_putn(b, f, (size_t)(q - f));
            nr_buf_puts(b, "\"\"");
        }
        nr_buf_puts(b, f);
        nr_buf_puts(b, "\"");
    }
    nr_buf_puts(b, "\r\n");
}

static int s_write(int fd, const char *data, size_t size) {
    while (size) {
        ssize_t w = write(fd, data, size);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        data += w;
        size -= (size_t)w;
    }
    return 0;
}

void nr_manifest_destroy(nr_manifest_t **p) {
    if (!p || !*p) return;
    nr_manifest_t *self = *p;
    for (size_t i = 0; i < self->n; i++) {
        if (self->fd[i] >= 0) close(self->fd[i]);
        free(self->path[i]);
    }
    free(self);
    *p = NULL;
}

nr_manifest_t *nr_manifest_new(const char *const *paths, size_t n, char *err, size_t errlen) {
    if (n > NR_MANIFEST_FILES_MAX) {
        nr_seterr(err, errlen, NR_EINVAL, "at most %d manifests", NR_MANIFEST_FILES_MAX);
        return NULL;
    }
    nr_manifest_t *self = calloc(1, sizeof *self);
    if (!self) {
        nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        self->fd[i] = -1;
        self->n = i + 1;
        self->format[i] = nr_manifest_format(paths[i]);
        if (!self->format[i]) {
            nr_seterr(err, errlen, NR_EINVAL, "--manifest %s: the name must end in .jsonl or .csv",
                      paths[i]);
            goto err;
        }
        if (!(self->path[i] = strdup(paths[i]))) {
            nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            goto err;
        }
        /* No O_TRUNC yet: what is there is looked at first. */
        int fd = open(paths[i], O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0666);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            nr_seterr(err, errlen, NR_EIO, "cannot write the manifest %s: %s", paths[i],
                      fd < 0 ? (errno == ELOOP ? "it is a symbolic link" : strerror(errno))
                             : "not a regular file");
            if (fd >= 0) close(fd);
            goto err;
        }
        self->fd[i] = fd;
        if (ftruncate(fd, 0) != 0) {
            nr_seterr(err, errlen, NR_EIO, "cannot write the manifest %s: %s", paths[i],
                      strerror(errno));
            goto err;
        }
        if (self->format[i] == NR_MANIFEST_CSV) {
            nr_buf_t b = {0};
            nr_manifest_csv_row(&b, s_columns, S_NCOLS);
            int bad = b.failed || s_write(fd, b.data, b.len);
            nr_buf_clear(&b);
            if (bad) {
                nr_seterr(err, errlen, NR_EIO, "cannot write the manifest %s: %s", paths[i],
                          strerror(errno));
                goto err;
            }
        }
    }
    return self;
err:
    nr_manifest_destroy(&self);
    return NULL;
}

int nr_manifest_add(nr_manifest_t *self, const nr_manifest_row_t *row, char *err, size_t errlen) {
    if (!self) return 0;
    const char *const f[S_NCOLS] = {row->source, row->job_id, row->state, row->caption,
                                    row->model, row->voice, row->audio, row->alt_text_action,
                                    row->error, row->error_message};
    int rc = 0;
    for (size_t i = 0; i < self->n; i++) {
        nr_buf_t b = {0};
        if (self->format[i] == NR_MANIFEST_CSV) {
            nr_manifest_csv_row(&b, f, S_NCOLS);
        } else {
            for (size_t k = 0; k < S_NCOLS; k++) {
                nr_buf_printf(&b, "%s\"%s\":", k ? "," : "{", s_columns[k]);
                nr_output_json_string(&b, f[k] && *f[k] ? f[k] : NULL);
            }
            nr_buf_puts(&b, "}\n");
        }
        if (b.failed) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
        else if (s_write(self->fd[i], b.data, b.len))
            rc = nr_seterr(err, errlen, NR_EIO, "cannot write the manifest %s: %s", self->path[i],
                           strerror(errno));
        nr_buf_clear(&b);
    }
    return rc;
}
