/* Reading the files narrate eval is given (references, records,
 * manifests, WAVs): whole, bounded, regular files only, so a FIFO, a
 * device or a folder is refused rather than read or waited on. */
#ifndef NR_CLIENT_EVAL_FILE_H
#define NR_CLIENT_EVAL_FILE_H

#include <stddef.h>

/* Reads the regular file at path, of at most max bytes, into a new
 * NUL-terminated buffer (free()); *size is its length. A symbolic link is
 * followed only when follow_links. `what` names the file in messages
 * ("refs" -> "refs F is not a regular file"; "" -> "F is ..."). Returns
 * NULL with *code NR_EIO (cannot open or read, not a regular file),
 * NR_ETOOBIG or NR_ENOMEM and the reason in err. */
char *nr_ev_read_file(const char *path, size_t max, int follow_links, const char *what, size_t *size, int *code,
                      char *err, size_t errlen);

#endif
