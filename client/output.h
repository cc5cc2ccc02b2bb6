/* Writing results safely: output names that always stay inside the output
 * folder, atomic file writes, and the JSON record of a job. */
#ifndef NR_CLIENT_OUTPUT_H
#define NR_CLIENT_OUTPUT_H

#include "common/buf.h"
#include "proto/proto.h"

#include <stddef.h>

#define NR_OUTPUT_STEM_MAX 100 /* bytes in a stem, before any "-N" suffix */

/* Makes a safe file stem from an input path: its last component without the
 * extension; every byte other than ASCII letters, digits, '-', '_', '.' and
 * valid non-ASCII UTF-8 characters becomes '_'; a leading '.' becomes '_'
 * (so never "." or ".." or a hidden file); at most NR_OUTPUT_STEM_MAX bytes
 * (cut at a character boundary); "image" when nothing is left. The result
 * never holds '/' and is never empty. `size` must be > NR_OUTPUT_STEM_MAX. */
int nr_output_stem(const char *path, char *out, size_t size);

/* The same rules for the `len` bytes at `name` taken whole (one path
 * component, extension kept): "a b.jpg" gives "a_b.jpg", ".." gives "_.". */
int nr_output_safe_name(const char *name, size_t len, char *out, size_t size);

/* 1 when `name` is safe to create inside a folder: not empty, no '/', no
 * NUL, does not start with '.', shorter than 255 bytes. */
int nr_output_name_safe(const char *name);

/* Creates `dir` and its parents as needed (like mkdir -p). */
int nr_output_mkdir(const char *dir, char *err, size_t errlen);

/* Writes `data` to dir/name atomically: a temporary file in dir, then a
 * rename in the same folder (openat/renameat on the folder opened once, so
 * a folder swapped for a link meanwhile changes nothing). A link planted at
 * dir/name is replaced, never written through; a device, FIFO, socket or
 * folder there is refused. `name` must pass nr_output_name_safe, else
 * NR_EINVAL; `dir` that is not a folder, or any failure: NR_EIO. */
int nr_output_write(const char *dir, const char *name, const void *data, size_t size, char *err,
                    size_t errlen);
/* Same for a whole path chosen by the user (narrate speak -o FILE), except
 * what is at it now decides: nothing or a regular file is replaced
 * atomically; a FIFO is opened and written into (streamed: it waits for a
 * reader); "-" and "/dev/stdout" write to standard output; a symbolic
 * link, device, socket or folder is refused (NR_EIO, "refusing to replace
 * PATH: it is a character device, not a regular file"). */
int nr_output_write_path(const char *path, const void *data, size_t size, char *err,
                         size_t errlen);
/* 1 when `path` means standard output for nr_output_write_path. */
int nr_output_is_stdout(const char *path);

/* Appends s for plain (non-JSON) output on a terminal: C0 controls, DEL
 * and invalid UTF-8 bytes as \xHH, C1 controls as the \xHH of their
 * bytes, bidirectional controls as \uHHHH, a backslash as two, the rest
 * as it is; NULL as "". So a file name or caption cannot move the cursor,
 * recolour or clear the screen, or hide itself. */
void nr_output_plain(nr_buf_t *buf, const char *s);

/* Appends s as a JSON string (quoted, escaped; invalid UTF-8 becomes
 * U+FFFD), or null when s is NULL. */
void nr_output_json_string(nr_buf_t *buf, const char *s);

/* What the client adds to a job record for the JSON it writes. */
typedef struct {
    const char *source;        /* input path, or NULL */
    const char *const *files;  /* output files written (names), NULL-ended, or NULL */
    const char *error;         /* a local failure's wire name (overrides the record), or NULL */
    const char *error_message; /* its message */
    const char *state;         /* overrides the record's state ("skipped"), or NULL */
    const char *json_extra;    /* more members ("alt_text":{..}), appended, or NULL */
} nr_output_extra_t;

/* Appends one JSON object (no newline) for a job record (REPLY kv):
 * id, source, state, stage, route, caption, model {vision, text}, voice,
 * duration_ms, timings_ms {stage: ms}, attempts {stage: n}, error,
 * error_message, created_ms, updated_ms, options {key: value}, files [..].
 * A local error sets state "failed". `record` may be NULL (id only). */
void nr_output_record_json(nr_buf_t *buf, const char *id, const nr_msg_t *record,
                           const nr_output_extra_t *extra);

#endif
