/* Alt text in XMP through exempi: read, write as a sidecar, embed. */
#include "client/alttext.h"
#include "client/output.h"
#include "common/error.h"
#include "common/utf8.h"

#include <errno.h>
#include <exempi/xmp.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_IMAGE_MAX ((size_t)512 << 20) /* bytes copied for an embedded copy */

static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static int s_ready;

static void s_init(void) {
    if (!xmp_init()) return;
    XmpStringPtr prefix = xmp_string_new();
    s_ready = prefix && xmp_register_namespace(NR_ALTTEXT_NS, "Iptc4xmpCore", prefix);
    if (prefix) xmp_string_free(prefix);
}

static int s_start(char *err, size_t errlen) {
    pthread_once(&s_once, s_init);
    if (!s_ready) return nr_seterr(err, errlen, NR_EINTERNAL, "cannot initialise exempi");
    return 0;
}

/* ---- cutting ---- */

/* Code points that belong to the character before them: combining marks,
 * zero-width joiner, variation selectors, emoji modifiers, tags. */
static int s_cp_joins(uint32_t cp) {
    return (cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x1AB0 && cp <= 0x1AFF) ||
           (cp >= 0x1DC0 && cp <= 0x1DFF) || (cp >= 0x20D0 && cp <= 0x20FF) ||
           (cp >= 0xFE20 && cp <= 0xFE2F) || (cp >= 0xFE00 && cp <= 0xFE0F) || cp == 0x200D ||
           (cp >= 0x1F3FB && cp <= 0x1F3FF) || (cp >= 0xE0020 && cp <= 0xE007F) ||
           (cp >= 0xE0100 && cp <= 0xE01EF);
}

static int s_cp_space(uint32_t cp) {
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v' ||
           cp == 0xA0 || cp == 0x3000 || (cp >= 0x2000 && cp <= 0x200A);
}

int nr_alttext_cut(const char *caption, size_t max_chars, char **out, int *cut, char *err,
                   size_t errlen) {
    *out = NULL;
    *cut = 0;
    const uint8_t *s = (const uint8_t *)(caption ? caption : "");
    size_t n = strlen((const char *)s);
    if (nr_utf8_validate(s, n, NULL))
        return nr_seterr(err, errlen, NR_ETEXT, "the caption is not valid UTF-8");
    size_t start = 0, end = n, chars = 0, i = 0;
    /* Leading white space. */
    while (start < n) {
        uint32_t cp;
        size_t len = nr_utf8_decode(s + start, n - start, &cp, NULL);
        if (!s_cp_space(cp)) break;
        start += len;
    }
    /* Walk to max_chars code points, remembering the last boundary before
     * white space and the last boundary not followed by a joining mark. */
    size_t last_space = 0, last_char = start;
    for (i = start; i < n; chars++) {
        uint32_t cp;
        size_t len = nr_utf8_decode(s + i, n - i, &cp, NULL);
        if (chars == max_chars) break;
        if (s_cp_space(cp)) last_space = i;
        else if (!s_cp_joins(cp)) last_char = i;
        i += len;
    }
    if (i < n) { /* longer than max_chars */
        uint32_t cp;
        nr_utf8_decode(s + i, n - i, &cp, NULL);
        if (s_cp_space(cp)) end = i;
        else if (last_space > start) end = last_space;
        else if (s_cp_joins(cp)) end = last_char; /* do not strip marks off their base */
        else end = i;
        *cut = 1;
    }
    /* Trailing white space (and, after a cut, dangling ",;:"). */
    while (end > start) {
        size_t k = end - 1;
        while (k > start && (s[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        nr_utf8_decode(s + k, end - k, &cp, NULL);
        if (!s_cp_space(cp) && !(*cut && (cp == ',' || cp == ';' || cp == ':'))) break;
        end = k;
    }
    char *text = malloc(end - start + 1);
    if (!text) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    memcpy(text, s + start, end - start);
    text[end - start] = '\0';
    *out = text;
    return 0;
}

/* ---- reading ---- */

/* The x-default alt text of xmp into *text (NULL when none). */
static int s_get(XmpPtr xmp, char **text, char *err, size_t errlen) {
    *text = NULL;
    XmpStringPtr value = xmp_string_new(), lang = xmp_string_new();
    int rc = 0;
    if (!value || !lang) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    } else if (xmp_get_localized_text(xmp, NR_ALTTEXT_NS, NR_ALTTEXT_PROP, "", "x-default", lang,
                                      value, NULL)) {
        const char *v = xmp_string_cstr(value);
        size_t len = v ? strnlen(v, NR_ALTTEXT_TEXT_MAX) : 0;
        if (len) { /* an empty alt text is no alt text */
            *text = malloc(len + 1);
            if (!*text) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
            else {
                memcpy(*text, v, len);
                (*text)[len] = '\0';
            }
        }
    }
    if (value) xmp_string_free(value);
    if (lang) xmp_string_free(lang);
    return rc;
}

/* Opens path for reading (a link is followed: reading through one is
 * harmless) and checks it is a regular file of at most max bytes. Returns the fd, -1 when missing
 * (ENOENT), or an NR_E* code. */
static int s_open_regular(const char *path, size_t max, off_t *size, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) return -1;
    if (fd < 0) return nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return nr_seterr(err, errlen, NR_EIO, "cannot read %s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return nr_seterr(err, errlen, NR_EIO, "cannot read %s: larger than %zu bytes", path, max);
    }
    *size = st.st_size;
    return fd;
}

int nr_alttext_read_image(const char *path, char **text, char *err, size_t errlen) {
    *text = NULL;
    int rc = s_start(err, errlen);
    if (rc) return rc;
    off_t size;
    int fd = s_open_regular(path, S_IMAGE_MAX, &size, err, errlen);
    if (fd == -1) return nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", path, strerror(ENOENT));
    if (fd < 0) return fd;
    close(fd);
    /* A format exempi has no handler for (HEIC, AVIF, BMP) is scanned for
     * an XMP packet, so a person's alt text there is seen too. */
    XmpOpenFileOptions how = xmp_files_check_file_format(path) == XMP_FT_UNKNOWN
                                 ? XMP_OPEN_READ | XMP_OPEN_USEPACKETSCANNING
                                 : XMP_OPEN_READ | XMP_OPEN_ONLYXMP;
    XmpFilePtr xf = xmp_files_open_new(path, how);
    if (!xf) return 0; /* nothing exempi can read XMP from */
    XmpPtr xmp = xmp_new_empty();
    if (!xmp) {
        xmp_files_close(xf, XMP_CLOSE_NOOPTION);
        xmp_files_free(xf);
        return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    }
    XmpStringPtr packet = xmp_string_new();
    if (packet && xmp_files_get_xmp_xmpstring(xf, packet, NULL)) {
        /* There is a packet: it must parse, else a human's alt text could
         * hide in what we cannot read. */
        const char *p = xmp_string_cstr(packet);
        if (!xmp_parse(xmp, p, strlen(p)))
            rc = nr_seterr(err, errlen, NR_EIMAGE, "%s: its embedded XMP is malformed", path);
        else
            rc = s_get(xmp, text, err, errlen);
    } else if (!packet) {
        rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    }
    if (packet) xmp_string_free(packet);
    xmp_free(xmp);
    xmp_files_close(xf, XMP_CLOSE_NOOPTION);
    xmp_files_free(xf);
    return rc;
}

/* Reads and parses the sidecar at path into *xmp (NULL when missing). */
static int s_load_sidecar(const char *path, XmpPtr *xmp, char *err, size_t errlen) {
    *xmp = NULL;
    off_t size;
    int fd = s_open_regular(path, NR_ALTTEXT_SIDECAR_MAX, &size, err, errlen);
    if (fd == -1) return 0;
    if (fd < 0) return fd;
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        close(fd);
        return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t r = read(fd, buf + got, (size_t)size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    int rc = 0;
    XmpPtr x = xmp_new_empty();
    if (!x) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    else if (got == 0 || memchr(buf, '\0', got) || !xmp_parse(x, buf, got))
        rc = nr_seterr(err, errlen, NR_EIMAGE, "%s: malformed XMP", path);
    free(buf);
    if (rc) {
        if (x) xmp_free(x);
        return rc;
    }
    *xmp = x;
    return 0;
}

int nr_alttext_read_sidecar(const char *path, char **text, char *err, size_t errlen) {
    *text = NULL;
    int rc = s_start(err, errlen);
    if (rc) return rc;
    XmpPtr xmp;
    if ((rc = s_load_sidecar(path, &xmp, err, errlen)) || !xmp) return rc;
    rc = s_get(xmp, text, err, errlen);
    xmp_free(xmp);
    return rc;
}

/* ---- writing ---- */

static int s_set(XmpPtr xmp, const char *text, char *err, size_t errlen) {
    if (!xmp_set_localized_text(xmp, NR_ALTTEXT_NS, NR_ALTTEXT_PROP, "", "x-default", text, 0))
        return nr_seterr(err, errlen, NR_EINTERNAL, "exempi cannot set the alt text (error %d)",
                         xmp_get_error());
    return 0;
}

int nr_alttext_write_sidecar(const char *dir, const char *name, const char *text, char *err,
                             size_t errlen) {
    int rc = s_start(err, errlen);
    if (rc) return rc;
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (!path) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    snprintf(path, n, "%s/%s", dir, name);
    XmpPtr xmp = NULL;
    rc = s_load_sidecar(path, &xmp, err, errlen);
    free(path);
    if (rc) return rc; /* never replace what we could not read */
    if (!xmp && !(xmp = xmp_new_empty())) return nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    XmpStringPtr out = xmp_string_new();
    if (!out) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    if (!rc) rc = s_set(xmp, text, err, errlen);
    if (!rc && !xmp_serialize(xmp, out, XMP_SERIAL_OMITPACKETWRAPPER, 0))
        rc = nr_seterr(err, errlen, NR_EINTERNAL, "exempi cannot serialise XMP (error %d)",
                       xmp_get_error());
    if (!rc) {
        const char *s = xmp_string_cstr(out);
        rc = nr_output_write(dir, name, s, strlen(s), err, errlen);
    }
    if (out) xmp_string_free(out);
    xmp_free(xmp);
    return rc;
}

/* Puts `text` into the XMP of the image file at path (exempi, smart
 * handler only). NR_EUNSUPPORTED when its format cannot take XMP. */
static int s_embed(const char *path, const char *text, XmpCloseFileOptions close_opt, char *err,
                   size_t errlen) {
    /* Only the formats whose exempi handlers write XMP that reads back
     * (exempi 2.6's WebP handler reports success and writes none). */
    XmpFileType format = xmp_files_check_file_format(path);
    if (format != XMP_FT_JPEG && format != XMP_FT_PNG && format != XMP_FT_TIFF &&
        format != XMP_FT_GIF)
        return nr_seterr(err, errlen, NR_EUNSUPPORTED, "XMP cannot be embedded in this format");
    XmpFilePtr xf = xmp_files_open_new(path, XMP_OPEN_FORUPDATE | XMP_OPEN_USESMARTHANDLER);
    if (!xf)
        return nr_seterr(err, errlen, NR_EUNSUPPORTED,
                         "exempi cannot write XMP into this file (error %d)", xmp_get_error());
    int rc = 0;
    XmpPtr xmp = xmp_files_get_new_xmp(xf);
    if (!xmp && !(xmp = xmp_new_empty())) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    if (!rc) rc = s_set(xmp, text, err, errlen);
    if (!rc && !xmp_files_can_put_xmp(xf, xmp))
        rc = nr_seterr(err, errlen, NR_EUNSUPPORTED, "exempi cannot write XMP into this format");
    if (!rc && !xmp_files_put_xmp(xf, xmp))
        rc = nr_seterr(err, errlen, NR_EIO, "exempi cannot write the XMP (error %d)",
                       xmp_get_error());
    if (xmp) xmp_free(xmp);
    if (!xmp_files_close(xf, rc ? XMP_CLOSE_NOOPTION : close_opt) && !rc)
        rc = nr_seterr(err, errlen, NR_EIO, "exempi cannot save the file (error %d)",
                       xmp_get_error());
    xmp_files_free(xf);
    return rc;
}

/* Copies the regular file src into the new file fd. */
static int s_copy(const char *src, int fd, char *err, size_t errlen) {
    off_t size;
    int in = s_open_regular(src, S_IMAGE_MAX, &size, err, errlen);
    if (in == -1) return nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", src, strerror(ENOENT));
    if (in < 0) return in;
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = nr_seterr(err, errlen, NR_EIO, "cannot read %s: %s", src, strerror(errno));
            break;
        }
        if (r == 0) break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(fd, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                close(in);
                return nr_seterr(err, errlen, NR_EIO, "cannot write a copy of %s: %s", src,
                                 strerror(errno));
            }
            off += w;
        }
    }
    close(in);
    return rc;
}

int nr_alttext_embed_copy(const char *src, const char *dir, const char *name, const char *text,
                          char *err, size_t errlen) {
    int rc = s_start(err, errlen);
    if (rc) return rc;
    if (!nr_output_name_safe(name))
        return nr_seterr(err, errlen, NR_EINVAL, "unsafe output file name '%s'", name);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return nr_seterr(err, errlen, NR_EIO, "cannot use folder %s: %s", dir, strerror(errno));
    /* The temporary copy keeps the extension: exempi picks its handler by it. */
    const char *ext = strrchr(name, '.');
    char tmp[96];
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        uint32_t r[2] = {0, 0};
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) r[0] = (uint32_t)getpid() + (uint32_t)tries;
        snprintf(tmp, sizeof tmp, ".narrate-%08x%08x%.16s", r[0], r[1], ext ? ext : "");
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write in %s: %s", dir, strerror(errno));
        close(dirfd);
        return rc;
    }
    rc = s_copy(src, fd, err, errlen);
    mode_t mask = umask(0);
    umask(mask);
    if (!rc && fchmod(fd, 0666 & ~mask) != 0)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write in %s: %s", dir, strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write in %s: %s", dir, strerror(errno));
    size_t n = strlen(dir) + strlen(tmp) + 2;
    char *path = malloc(n);
    if (!path && !rc) rc = nr_seterr(err, errlen, NR_ENOMEM, "out of memory");
    if (path) snprintf(path, n, "%s/%s", dir, tmp);
    if (!rc) rc = s_embed(path, text, XMP_CLOSE_NOOPTION, err, errlen);
    if (!rc) { /* read back: the copy must say what was written */
        char *back = NULL;
        if (nr_alttext_read_image(path, &back, err, errlen) || !back || strcmp(back, text))
            rc = nr_seterr(err, errlen, NR_EUNSUPPORTED,
                           "the alt text embedded in this file does not read back");
        free(back);
    }
    struct stat st;
    if (!rc && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) &&
        !S_ISLNK(st.st_mode))
        rc = nr_seterr(err, errlen, NR_EIO, "refusing to replace %s/%s: not a regular file", dir, name);
    if (!rc && renameat(dirfd, tmp, dirfd, name) != 0)
        rc = nr_seterr(err, errlen, NR_EIO, "cannot write %s/%s: %s", dir, name, strerror(errno));
    if (rc) unlinkat(dirfd, tmp, 0);
    free(path);
    close(dirfd);
    return rc;
}

int nr_alttext_embed_in_place(const char *path, const char *text, char *err, size_t errlen) {
    int rc = s_start(err, errlen);
    if (rc) return rc;
    struct stat st;
    if (lstat(path, &st) != 0)
        return nr_seterr(err, errlen, NR_EIO, "cannot write into %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return nr_seterr(err, errlen, NR_EIO, "refusing to write into %s: %s", path,
                         S_ISLNK(st.st_mode) ? "it is a symbolic link" : "not a regular file");
    rc = s_embed(path, text, XMP_CLOSE_SAFEUPDATE, err, errlen);
    char *back = NULL;
    if (!rc && (nr_alttext_read_image(path, &back, err, errlen) || !back || strcmp(back, text)))
        rc = nr_seterr(err, errlen, NR_EIO, "%s: the alt text embedded does not read back", path);
    free(back);
    return rc;
}
