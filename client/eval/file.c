/* Bounded whole-file reads for narrate eval (file.h). */
#include "client/eval/file.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *nr_ev_read_file(const char *path, size_t max, int follow_links, const char *what, size_t *size, int *code,
                      char *err, size_t errlen) {
    const char *sep = *what ? " " : "";
    *size = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow_links ? 0 : O_NOFOLLOW));
    if (fd < 0) {
        *code = nr_seterr(err, errlen, NR_EIO, "cannot open %s%s%s: %s", what, sep, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        *code = nr_seterr(err, errlen, NR_EIO, "%s%s%s is not a regular file", what, sep, path);
        return NULL;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        if (max % (1u << 20) == 0)
            *code = nr_seterr(err, errlen, NR_ETOOBIG, "%s%s%s is larger than %zu MiB", what, sep, path, max >> 20);
        else
            *code = nr_seterr(err, errlen, NR_ETOOBIG, "%s%s%s is larger than %zu bytes", what, sep, path, max);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        free(buf);
        *code = buf ? nr_seterr(err, errlen, NR_EIO, "cannot read %s%s%s", what, sep, path)
                    : nr_seterr(err, errlen, NR_ENOMEM, "out of memory reading %s", path);
        return NULL;
    }
    buf[got] = '\0';
    *size = got;
    return buf;
}
