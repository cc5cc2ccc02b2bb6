/* The results of one `narrate submit` run for `narrate eval`: an output
 * folder (searched recursively for the .json record of each image), one
 * .json record, or a manifest (.jsonl: one object per line; .csv: a
 * header row, then one row per image) with the columns source path, job
 * id, state, caption, model, voice, audio path, alt text action, error.
 * Column names are matched without regard to case, spaces read as '_',
 * with a few aliases (client/EVAL.md lists them). */
#ifndef NR_CLIENT_EVAL_RUNS_H
#define NR_CLIENT_EVAL_RUNS_H

#include <stddef.h>

#define NR_EVRUN_MAX_ITEMS 100000          /* images in one run */
#define NR_EVRUN_MAX_RECORD_BYTES (1u << 20) /* one .json record */
#define NR_EVRUN_MAX_MANIFEST_BYTES (256u << 20)
#define NR_EVRUN_MAX_DEPTH 32              /* folder levels searched */
#define NR_EVRUN_MAX_ENTRIES 1000000       /* folder entries looked at */

typedef struct {
    char *source;  /* the input image path as recorded (NULL: none) */
    char *caption; /* NULL when the record has none */
    char *state;   /* "done", "failed" ...; NULL when not recorded */
    char *audio;   /* path of the WAV, resolved; NULL when none */
    char *error;   /* the record's error, or NULL */
    char *origin;  /* where it came from: the record file, or MANIFEST:LINE */
} nr_evitem_t;

typedef struct {
    char *path;
    const char *kind; /* "folder", "record", "jsonl", "csv" */
    nr_evitem_t *items;
    size_t n, cap;
    size_t ignored; /* .json files in a folder that are not job records */
} nr_evrun_t;

/* Loads RESULTS at path into run (zero it first). 0, or NR_EINVAL /
 * NR_EIO / NR_ETOOBIG / NR_ENOMEM with a message in err naming the file
 * (and line): not a folder/.json/.jsonl/.csv, unreadable, too large,
 * malformed JSON or CSV, no source or caption column, too many images. */
int nr_evrun_load(const char *path, nr_evrun_t *run, char *err, size_t errlen);
void nr_evrun_clear(nr_evrun_t *run);

#endif
