/* What `narrate submit --alt-text` does for one image: look for alt text
 * that is already there (before the job is submitted), then, with the
 * caption, write it as a sidecar or embedded copy, or keep what was there,
 * and describe that in the image's record. Built on client/alttext.h.
 *
 * Where existing alt text is looked for, first found wins:
 *   "output"  what this image's outputs already hold: OUT/.../NAME.xmp, and
 *             (embed) the copy OUT/.../NAME; a person may have edited them
 *   "sidecar" an XMP sidecar beside the original: SRC.xmp (001.jpg.xmp),
 *             then the stem's (001.xmp, as Lightroom writes it)
 *   "image"   the XMP embedded in the original
 * XMP found but unreadable (malformed, a link, too large) is never written
 * over: the action is "skipped" and the record says why. */
#ifndef NR_CLIENT_ALTJOB_H
#define NR_CLIENT_ALTJOB_H

#include "common/buf.h"

#include <stddef.h>

typedef enum { NR_ALTJOB_OFF = 0, NR_ALTJOB_SIDECAR, NR_ALTJOB_EMBED } nr_altjob_mode_t;

typedef struct {
    nr_altjob_mode_t mode;
    int in_place;  /* write beside / into the original instead of under OUT */
    int overwrite; /* replace existing alt text */
} nr_altjob_params_t;

typedef struct {
    char *existing;          /* alt text found, or NULL */
    const char *existing_at; /* "output", "sidecar", "image", or NULL */
    char *existing_error;    /* XMP found but not read, or NULL */
    char *text;              /* alt text written, or NULL */
    int cut;                 /* the caption was cut to NR_ALTTEXT_CHARS_MAX */
    const char *action;      /* written, kept-existing, overwritten, skipped,
                                sidecar-fallback, failed; NULL before apply */
    char *file;              /* the file written, or NULL */
    char *note;              /* why a fallback, skip or failure, or NULL */
} nr_altjob_t;

void nr_altjob_clear(nr_altjob_t *self);

/* Looks for existing alt text of the image src, whose outputs are
 * out_dir/name.* (see above). Never fails: what cannot be read is noted
 * in existing_error. */
void nr_altjob_probe(nr_altjob_t *self, const nr_altjob_params_t *p, const char *src,
                     const char *out_dir, const char *name);

/* Acts on the caption after nr_altjob_probe: sets action (and text, file,
 * note). Returns 0, or an NR_E* code when writing failed (action
 * "failed", note says why). caption NULL: "skipped". */
int nr_altjob_apply(nr_altjob_t *self, const nr_altjob_params_t *p, const char *src,
                    const char *out_dir, const char *name, const char *caption);

/* Appends "alt_text":{action, text, cut, file, existing, existing_from,
 * existing_error, note} (JSON, no leading comma). */
void nr_altjob_json(nr_buf_t *buf, const nr_altjob_t *self);

#endif
