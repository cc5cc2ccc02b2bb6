/* Input files for `narrate submit`: collecting images from files and
 * folders, and reading them. */
#ifndef NR_CLIENT_FILES_H
#define NR_CLIENT_FILES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char **paths; /* owned, each malloc'd */
    size_t *rel_at; /* paths[i] + rel_at[i]: its path under the folder given
                       ("a/b/001.jpg"), or its name for a file given itself */
    size_t len, cap;
    char **skipped; /* owned: why each subfolder left out could not be read */
    size_t n_skipped;
} nr_files_t;

void nr_files_init(nr_files_t *self);
/* Frees every path; safe to call twice. */
void nr_files_clear(nr_files_t *self);

/* 1 when `name` ends in .jpg, .jpeg, .png or .webp (any case), else 0. */
int nr_files_is_image_name(const char *name);

/* Adds `path`: a file is taken as it is (whatever its name: the worker
 * judges its content); a folder is searched recursively for image files
 * (by name, see above), skipping names that start with '.' and not
 * following links to folders; what one folder gives is added in sorted
 * (byte) order of the full path. A subfolder that cannot be opened (no
 * permission) is left out and its reason added to self->skipped ("cannot
 * read photos/x: Permission denied"); the rest is still collected. Returns
 * 0, or NR_EIO / NR_ENOMEM with a message in err when `path` itself cannot
 * be read. */
int nr_files_collect(nr_files_t *self, const char *path, char *err, size_t errlen);

/* Adds the paths listed in the file `list`, one a line (a trailing '\r'
 * dropped, empty lines skipped; at most NR_FILES_LIST_MAX bytes). Each is
 * taken as nr_files_collect takes it, with its part under the root being
 * the whole path as listed, less leading "/" and "./" (so its outputs
 * mirror the listed path; client/outtree.h keeps ".." inside). A listed
 * path that cannot be read is left out with its reason in self->skipped.
 * Returns 0, or NR_EIO / NR_ETOOBIG / NR_ENOMEM when the list itself
 * cannot be read. */
#define NR_FILES_LIST_MAX ((size_t)64 << 20)
int nr_files_collect_list(nr_files_t *self, const char *list, char *err, size_t errlen);
/* Pages (directories) of a TIFF (classic or BigTIFF) held in memory, by
 * walking its directory chain without decoding: 1 for anything that is
 * not a TIFF, at most `max` (and 1000); a loop or a cut chain ends the
 * count. */
int nr_files_tiff_pages(const uint8_t *data, size_t size, int max);

/* Reads a whole file of at most `max` bytes into a malloc'd buffer (the
 * caller frees it; size 0 gives a valid 1-byte buffer). Returns 0, NR_EIO,
 * NR_ETOOBIG or NR_ENOMEM with a message in err. */
int nr_files_read(const char *path, size_t max, uint8_t **data, size_t *size, char *err,
                  size_t errlen);

#endif
