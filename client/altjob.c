/* One image's alt text: find what is there, then write or keep. */
#include "client/altjob.h"
#include "client/alttext.h"
#include "client/output.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void nr_altjob_clear(nr_altjob_t *self) {
    if (!self) return;
    free(self->existing);
    free(self->existing_error);
    free(self->text);
    free(self->file);
    free(self->note);
    memset(self, 0, sizeof *self);
}

static char *s_join(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", a, b, c);
    return p;
}

/* Records one place looked at: its text if nothing was found before, or
 * its error. Returns 1 when the search can stop. */
static int s_found(nr_altjob_t *self, const char *at, int rc, char *text, const char *err) {
    if (rc) {
        if (!self->existing_error) self->existing_error = strdup(err);
        free(text);
        return 1; /* unreadable: stop, nothing will be written over it */
    }
    if (!text) return 0;
    self->existing = text;
    self->existing_at = at;
    return 1;
}

void nr_altjob_probe(nr_altjob_t *self, const nr_altjob_params_t *p, const char *src,
                     const char *out_dir, const char *name) {
    char err[1024], *text = NULL;
    char *path = NULL;
    int rc;
    if (!p->in_place) {
        path = s_join(out_dir, "/", name);
        char *xmp = path ? s_join(path, ".xmp", "") : NULL;
        if (!xmp) goto oom;
        rc = nr_alttext_read_sidecar(xmp, &text, err, sizeof err);
        free(xmp);
        if (s_found(self, "output", rc, text, err)) goto done;
        struct stat st;
        if (p->mode == NR_ALTJOB_EMBED && lstat(path, &st) == 0) { /* a copy from before */
            text = NULL;
            rc = nr_alttext_read_image(path, &text, err, sizeof err);
            if (s_found(self, "output", rc, text, err)) goto done;
        }
        free(path);
    }
    path = s_join(src, ".xmp", "");
    if (!path) goto oom;
    text = NULL;
    rc = nr_alttext_read_sidecar(path, &text, err, sizeof err);
    if (s_found(self, "sidecar", rc, text, err)) goto done;
    /* Lightroom's form too: 001.xmp beside 001.jpg. */
    char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    *dot = '\0';
    dot = strrchr(path, '.');
    if (dot && (!slash || dot > slash + 1)) {
        memcpy(dot, ".xmp", 5);
        text = NULL;
        rc = nr_alttext_read_sidecar(path, &text, err, sizeof err);
        if (s_found(self, "sidecar", rc, text, err)) goto done;
    }
    text = NULL;
    rc = nr_alttext_read_image(src, &text, err, sizeof err);
    s_found(self, "image", rc, text, err);
done:
    free(path);
    return;
oom:
    free(path);
    if (!self->existing_error) self->existing_error = strdup("out of memory");
}

/* Splits a path into its folder (malloc'd) and its last component. */
static char *s_dir_of(const char *path, const char **base) {
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    char *d = strndup(path, (size_t)(slash - path));
    return d;
}

static int s_fail(nr_altjob_t *self, int rc, const char *why) {
    self->action = "failed";
    free(self->note);
    self->note = strdup(why);
    return rc;
}

int nr_altjob_apply(nr_altjob_t *self, const nr_altjob_params_t *p, const char *src,
                    const char *out_dir, const char *name, const char *caption) {
    char err[1024];
    if (p->mode == NR_ALTJOB_OFF) return 0;
    if (self->existing_error) {
        self->action = "skipped";
        self->note = s_join("existing XMP could not be read, so it is left as it is: ",
                            self->existing_error, "");
        return 0;
    }
    if (self->existing && !p->overwrite) {
        self->action = "kept-existing";
        return 0;
    }
    if (!caption) {
        self->action = "skipped";
        self->note = strdup("no caption");
        return 0;
    }
    int rc = nr_alttext_cut(caption, NR_ALTTEXT_CHARS_MAX, &self->text, &self->cut, err, sizeof err);
    if (rc) return s_fail(self, rc, err);
    if (!*self->text) {
        self->action = "skipped";
        self->note = strdup("the caption is empty");
        return 0;
    }
    const char *done = self->existing ? "overwritten" : "written";
    /* Where the sidecar goes: beside the original, or under OUT. */
    char *side_dir, *side_name;
    const char *base;
    if (p->in_place) {
        side_dir = s_dir_of(src, &base);
        side_name = s_join(base, ".xmp", "");
    } else {
        side_dir = strdup(out_dir);
        side_name = s_join(name, ".xmp", "");
    }
    if (!side_dir || !side_name) {
        free(side_dir);
        free(side_name);
        return s_fail(self, NR_ENOMEM, "out of memory");
    }
    if (p->mode == NR_ALTJOB_EMBED) {
        if (p->in_place) {
            rc = nr_alttext_embed_in_place(src, self->text, err, sizeof err);
            if (!rc) self->file = strdup(src);
        } else {
            rc = nr_alttext_embed_copy(src, out_dir, name, self->text, err, sizeof err);
            if (!rc) self->file = s_join(out_dir, "/", name);
        }
        if (rc == NR_EUNSUPPORTED) {
            self->note = strdup(err);
            done = "sidecar-fallback";
        } else if (rc) {
            free(side_dir);
            free(side_name);
            return s_fail(self, rc, err);
        } else {
            self->action = done;
            free(side_dir);
            free(side_name);
            return 0;
        }
    }
    rc = nr_alttext_write_sidecar(side_dir, side_name, self->text, err, sizeof err);
    if (rc) {
        free(side_dir);
        free(side_name);
        return s_fail(self, rc, err);
    }
    self->file = s_join(side_dir, "/", side_name);
    self->action = done;
    free(side_dir);
    free(side_name);
    return 0;
}

void nr_altjob_json(nr_buf_t *b, const nr_altjob_t *self) {
    nr_buf_puts(b, "\"alt_text\":{\"action\":");
    nr_output_json_string(b, self->action);
    nr_buf_puts(b, ",\"text\":");
    nr_output_json_string(b, self->text);
    nr_buf_printf(b, ",\"cut\":%s,\"file\":", self->cut ? "true" : "false");
    nr_output_json_string(b, self->file);
    nr_buf_puts(b, ",\"existing\":");
    nr_output_json_string(b, self->existing);
    nr_buf_puts(b, ",\"existing_from\":");
    nr_output_json_string(b, self->existing_at);
    nr_buf_puts(b, ",\"existing_error\":");
    nr_output_json_string(b, self->existing_error);
    nr_buf_puts(b, ",\"note\":");
    nr_output_json_string(b, self->note);
    nr_buf_puts(b, "}");
}
