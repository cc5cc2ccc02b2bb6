/* The web page: files under params.static_dir, by a strict name check and
 * without following a link at the last step. */
#include "client/gateway/internal.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_STATIC_MAX (8u << 20) /* largest static file served */

/* Static files from params.static_dir: only [A-Za-z0-9._-/] names, no
 * segment starting with '.', no symlinks followed at the last step. */
enum MHD_Result nr_gw_handle_static(struct MHD_Connection *conn, nr_gw_req_t *req, const char *url) {
    nr_gateway_t *gw = req->gw;
    if (!gw->params.static_dir[0])
        return nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL,
                            "no web page is served (static-dir is not set); the API is under /v1/");
    const char *rel = strcmp(url, "/") ? url : "/index.html";
    size_t n = strlen(rel);
    int ok = n > 1 && n < 256 && rel[0] == '/';
    for (size_t i = 0; ok && i < n; i++) {
        char ch = rel[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-' || ch == '/'))
            ok = 0;
        if (ch == '/' && (rel[i + 1] == '.' || rel[i + 1] == '/' || rel[i + 1] == '\0')) ok = 0;
    }
    if (!ok)
        return nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL, "no such page");
    char path[NR_GATEWAY_PATH_MAX + 260];
    snprintf(path, sizeof path, "%s%s", gw->params.static_dir, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > S_STATIC_MAX) {
        if (fd >= 0) close(fd);
        return nr_gw_send_error(conn, req, MHD_HTTP_NOT_FOUND, NR_ENOTFOUND, NULL, "no such page or route");
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *data = malloc(size ? size : 1);
    while (data && got < size) {
        ssize_t r = read(fd, data + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!data || got != size) {
        free(data);
        return nr_gw_send_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, NR_EIO, NULL,
                                "cannot read the page file");
    }
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"},
                 {".json", "application/json"},
                 {".txt", "text/plain; charset=utf-8"},
                 {".md", "text/plain; charset=utf-8"}};
    const char *type = "application/octet-stream";
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && !strcmp(rel + n - e, types[i].ext)) type = types[i].type;
    }
    const char *const h[] = {
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        "Referrer-Policy", "no-referrer", NULL};
    return nr_gw_send(conn, req, MHD_HTTP_OK, type, data, size, h);
}
