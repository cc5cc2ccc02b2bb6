/* The run manifest of `narrate submit --manifest FILE`: one row per image
 * (source, job id, state, caption, model, voice, audio file, alt text
 * action, error), as JSON Lines (FILE ending in .jsonl) or CSV (.csv, RFC
 * 4180: every field quoted, quotes doubled, CRLF line ends; a caption's
 * commas, quotes and newlines stay inside its quotes). Files are truncated
 * when opened and each row goes out with one write as soon as its image
 * is finished, so a run stopped part way leaves a valid file of what
 * finished; rerunning writes every image again. */
#ifndef NR_CLIENT_MANIFEST_H
#define NR_CLIENT_MANIFEST_H

#include "common/buf.h"

#include <stddef.h>

#define NR_MANIFEST_FILES_MAX 4

typedef enum { NR_MANIFEST_UNKNOWN = 0, NR_MANIFEST_JSONL, NR_MANIFEST_CSV } nr_manifest_format_t;

typedef struct nr_manifest_t nr_manifest_t;

/* One row; any field may be NULL (empty in CSV, null in JSON). */
typedef struct {
    const char *source, *job_id, *state, *caption, *model, *voice, *audio;
    const char *alt_text_action, *error, *error_message;
} nr_manifest_row_t;

/* The format a manifest path asks for, by its extension (any case). */
nr_manifest_format_t nr_manifest_format(const char *path);

/* Opens (creates or truncates) each of the n paths; a link, FIFO, device
 * or folder there is refused. Returns NULL with a message in err. */
nr_manifest_t *nr_manifest_new(const char *const *paths, size_t n, char *err, size_t errlen);

/* Appends one row to every file. Returns 0, or NR_EIO / NR_ENOMEM with a
 * message in err (the row may then be missing from a file). */
int nr_manifest_add(nr_manifest_t *self, const nr_manifest_row_t *row, char *err, size_t errlen);

/* Closes the files; safe to call twice. */
void nr_manifest_destroy(nr_manifest_t **p);

/* Appends one row as a CSV line (exposed for tests). */
void nr_manifest_csv_row(nr_buf_t *buf, const char *const *fields, size_t n);

#endif
