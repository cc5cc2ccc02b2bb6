/* Reference captions for `narrate eval`: a COCO captions JSON ("images"
 * with "id" and "file_name", "annotations" with "image_id" and
 * "caption") or a TSV (file name, then one caption per column; a name on
 * several rows gathers all their captions). Images are keyed by the base
 * name of their file name (the part after the last '/'). Two different
 * images with the same base name (COCO: two ids; TSV: two paths such as
 * a/x.jpg and b/x.jpg) are ambiguous: the name is set aside (flag
 * `ambiguous`), never guessed between. */
#ifndef NR_CLIENT_EVAL_REFS_H
#define NR_CLIENT_EVAL_REFS_H

#include <stddef.h>

#define NR_EVREFS_MAX_BYTES (256u << 20) /* largest REFS file */
#define NR_EVREFS_MAX_IMAGES 1000000
#define NR_EVREFS_MAX_CAPTIONS 64       /* per image */

typedef struct {
    char *name;      /* base name */
    char **captions; /* ncaptions of them */
    size_t ncaptions;
    long long coco_id; /* COCO image id; -1 for TSV */
    char *path;        /* TSV: the file name as first written; NULL for COCO */
    int ambiguous;   /* base name shared by different images */
} nr_evref_t;

typedef struct nr_evrefs nr_evrefs_t;

/* Reads a REFS file: COCO JSON when its first non-space byte is '{', else
 * TSV. NULL on failure with a message in err that names the file and, for
 * a TSV, the line (not found, too large, not JSON, missing keys, an
 * annotation for an unknown image id, a caption that is not a string or
 * not UTF-8, too many images or captions, no captions at all). */
nr_evrefs_t *nr_evrefs_load(const char *path, char *err, size_t errlen);
void nr_evrefs_destroy(nr_evrefs_t **self);

/* "coco" or "tsv". */
const char *nr_evrefs_format(const nr_evrefs_t *self);
size_t nr_evrefs_count(const nr_evrefs_t *self);
const nr_evref_t *nr_evrefs_at(const nr_evrefs_t *self, size_t i);
/* The images with captions, by base name (NULL when none; check
 * `ambiguous` before using it). */
const nr_evref_t *nr_evrefs_find(const nr_evrefs_t *self, const char *base);
/* Total captions. */
size_t nr_evrefs_captions(const nr_evrefs_t *self);

/* The base name of a path: after the last '/' (the path itself when none). */
const char *nr_evrefs_base(const char *path);

#endif
