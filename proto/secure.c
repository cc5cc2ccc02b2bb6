/* CURVE + ZAP link security for every narrator socket (see secure.h). */
#include "proto/secure.h"

#include "common/error.h"
#include "common/log.h"

#include <zmq.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_KEY_FILE_MAX 4096

int nr_secure_available(void) { return zmq_has("curve") ? 1 : 0; }

/* 1 when s is 40 characters of the Z85 alphabet. */
static int s_is_z85_key(const char *s) {
    static const char alphabet[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if (!s || strlen(s) != NR_SECURE_KEY_Z85) return 0;
    for (const char *p = s; *p; p++)
        if (!strchr(alphabet, *p)) return 0;
    uint8_t bin[32];
    return zmq_z85_decode(bin, s) != NULL;
}

int nr_secure_keypair(char public_z85[NR_SECURE_KEY_Z85 + 1], char secret_z85[NR_SECURE_KEY_Z85 + 1]) {
    if (!nr_secure_available()) return NR_EUNSUPPORTED;
    return zmq_curve_keypair(public_z85, secret_z85) == 0 ? 0 : NR_EIO;
}

/* Reads a small text file; NULL on error (err filled). */
static char *s_read_small(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        nr_seterr(err, errlen, NR_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(S_KEY_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, S_KEY_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (!buf || n > S_KEY_FILE_MAX) {
        free(buf);
        nr_seterr(err, errlen, NR_EINVAL, "%s: not a key file (over %d bytes)", path, S_KEY_FILE_MAX);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Finds "name = value" in a key file's text; 0 and the value, or -1. */
static int s_field(const char *text, const char *name, char out[NR_SECURE_KEY_Z85 + 1]) {
    size_t nlen = strlen(name);
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *p = line;
        while (p < line + len && (*p == ' ' || *p == '\t')) p++;
        if (p + nlen <= line + len && !strncmp(p, name, nlen)) {
            p += nlen;
            /* "name = key": one '=' only, since '=' is also a Z85 digit. */
            while (p < line + len && (*p == ' ' || *p == '\t')) p++;
            if (p < line + len && *p == '=') p++;
            while (p < line + len && (*p == ' ' || *p == '\t')) p++;
            const char *q = line + len;
            while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r')) q--;
            if ((size_t)(q - p) == NR_SECURE_KEY_Z85) {
                memcpy(out, p, NR_SECURE_KEY_Z85);
                out[NR_SECURE_KEY_Z85] = '\0';
                if (s_is_z85_key(out)) return 0;
            }
            return -1;
        }
        line = end ? end + 1 : NULL;
    }
    return -1;
}

int nr_secure_write_keypair(const char *base, const char *public_z85, const char *secret_z85, char *err,
                            size_t errlen) {
    if (!base || !*base || !s_is_z85_key(public_z85) || !s_is_z85_key(secret_z85))
        return nr_seterr(err, errlen, NR_EINVAL, "write keypair: bad arguments");
    char path[1024];
    int n = snprintf(path, sizeof path, "%s.key", base);
    if (n < 0 || (size_t)n >= sizeof path) return nr_seterr(err, errlen, NR_EINVAL, "%s: path too long", base);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return nr_seterr(err, errlen, errno == EEXIST ? NR_ESTATE : NR_EIO, "%s: %s", path,
                         errno == EEXIST ? "exists (not overwritten)" : strerror(errno));
    char text[256];
    int len = snprintf(text, sizeof text,
                       "# narrator CURVE key pair: keep this file secret\npublic-key = %s\nsecret-key = %s\n",
                       public_z85, secret_z85);
    int bad = write(fd, text, (size_t)len) != len;
    bad |= close(fd) != 0;
    if (bad) return nr_seterr(err, errlen, NR_EIO, "%s: write failed", path);
    snprintf(path, sizeof path, "%s.pub", base);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return nr_seterr(err, errlen, errno == EEXIST ? NR_ESTATE : NR_EIO, "%s: %s", path,
                         errno == EEXIST ? "exists (not overwritten)" : strerror(errno));
    len = snprintf(text, sizeof text, "# narrator CURVE public key\npublic-key = %s\n", public_z85);
    bad = write(fd, text, (size_t)len) != len;
    bad |= close(fd) != 0;
    return bad ? nr_seterr(err, errlen, NR_EIO, "%s: write failed", path) : 0;
}

int nr_secure_read_keyfile(const char *path, char public_z85[NR_SECURE_KEY_Z85 + 1],
                           char secret_z85[NR_SECURE_KEY_Z85 + 1], char *err, size_t errlen) {
    if (!path || !*path || !public_z85) return nr_seterr(err, errlen, NR_EINVAL, "no key file given");
    struct stat st;
    if (stat(path, &st) != 0) return nr_seterr(err, errlen, NR_EIO, "%s: %s", path, strerror(errno));
    if (st.st_mode & 077)
        return nr_seterr(err, errlen, NR_EINVAL,
                         "%s: secret key file is readable by others (mode %03o); chmod 600 it", path,
                         (unsigned)(st.st_mode & 0777));
    char *text = s_read_small(path, err, errlen);
    if (!text) return NR_EIO;
    char pub[NR_SECURE_KEY_Z85 + 1], sec[NR_SECURE_KEY_Z85 + 1];
    int rc = s_field(text, "public-key", pub) || s_field(text, "secret-key", sec);
    free(text);
    if (rc) return nr_seterr(err, errlen, NR_EINVAL, "%s: needs public-key and secret-key lines (narrator-keygen)", path);
    char derived[NR_SECURE_KEY_Z85 + 1];
    if (zmq_curve_public(derived, sec) != 0 || strcmp(derived, pub) != 0)
        return nr_seterr(err, errlen, NR_EINVAL, "%s: public-key does not belong to secret-key", path);
    memcpy(public_z85, pub, sizeof pub);
    if (secret_z85) memcpy(secret_z85, sec, sizeof sec);
    return 0;
}

int nr_secure_read_public(const char *key_or_path, char public_z85[NR_SECURE_KEY_Z85 + 1], char *err,
                          size_t errlen) {
    if (!key_or_path || !*key_or_path) return nr_seterr(err, errlen, NR_EINVAL, "no public key given");
    if (s_is_z85_key(key_or_path) && access(key_or_path, F_OK) != 0) {
        memcpy(public_z85, key_or_path, NR_SECURE_KEY_Z85 + 1);
        return 0;
    }
    char *text = s_read_small(key_or_path, err, errlen);
    if (!text) return NR_EIO;
    int rc = s_field(text, "public-key", public_z85);
    free(text);
    return rc ? nr_seterr(err, errlen, NR_EINVAL, "%s: no valid public-key line", key_or_path) : 0;
}

int nr_secure_enabled(const nr_secure_settings_t *s, int server, char *err, size_t errlen) {
    if (!s) return 0;
    int have_secret = s->secret_key_file[0] != '\0';
    int have_other = server ? s->allow_dir[0] != '\0' : s->server_key[0] != '\0';
    if (!have_secret && !have_other) return 0;
    if (have_secret && have_other) return 1;
    return nr_seterr(err, errlen, NR_EINVAL, "CURVE needs both %s and curve-secret-key-file",
                     server ? "curve-allow-dir" : "curve-server-key");
}

static int s_setopt(void *socket, int option, const void *value, size_t size, const char *name, char *err,
                    size_t errlen) {
    if (zmq_setsockopt(socket, option, value, size) == 0) return 0;
    return nr_seterr(err, errlen, NR_EIO, "zmq_setsockopt %s: %s", name, zmq_strerror(zmq_errno()));
}

int nr_secure_server(void *socket, const nr_secure_settings_t *settings, char *err, size_t errlen) {
    if (!nr_secure_available()) return nr_seterr(err, errlen, NR_EUNSUPPORTED, "this libzmq has no CURVE");
    char pub[NR_SECURE_KEY_Z85 + 1], sec[NR_SECURE_KEY_Z85 + 1];
    int rc = nr_secure_read_keyfile(settings->secret_key_file, pub, sec, err, errlen);
    if (rc) return rc;
    int one = 1;
    rc = s_setopt(socket, ZMQ_CURVE_SERVER, &one, sizeof one, "CURVE_SERVER", err, errlen);
    if (!rc) rc = s_setopt(socket, ZMQ_CURVE_SECRETKEY, sec, NR_SECURE_KEY_Z85, "CURVE_SECRETKEY", err, errlen);
    /* A domain makes libzmq ask the ZAP handler for every connection. */
    if (!rc) rc = s_setopt(socket, ZMQ_ZAP_DOMAIN, "narrator", 8, "ZAP_DOMAIN", err, errlen);
    memset(sec, 0, sizeof sec);
    return rc;
}

int nr_secure_client(void *socket, const nr_secure_settings_t *settings, char *err, size_t errlen) {
    if (!nr_secure_available()) return nr_seterr(err, errlen, NR_EUNSUPPORTED, "this libzmq has no CURVE");
    char pub[NR_SECURE_KEY_Z85 + 1], sec[NR_SECURE_KEY_Z85 + 1], server[NR_SECURE_KEY_Z85 + 1];
    int rc = nr_secure_read_keyfile(settings->secret_key_file, pub, sec, err, errlen);
    if (!rc) rc = nr_secure_read_public(settings->server_key, server, err, errlen);
    if (!rc) rc = s_setopt(socket, ZMQ_CURVE_SERVERKEY, server, NR_SECURE_KEY_Z85, "CURVE_SERVERKEY", err, errlen);
    if (!rc) rc = s_setopt(socket, ZMQ_CURVE_PUBLICKEY, pub, NR_SECURE_KEY_Z85, "CURVE_PUBLICKEY", err, errlen);
    if (!rc) rc = s_setopt(socket, ZMQ_CURVE_SECRETKEY, sec, NR_SECURE_KEY_Z85, "CURVE_SECRETKEY", err, errlen);
    memset(sec, 0, sizeof sec);
    return rc;
}

/* ---- ZAP handler ---- */

struct nr_secure_zap {
    void *sock;
    pthread_t thread;
    atomic_int stop;
    atomic_long accepted, refused;
    char allow_dir[512];
};

/* Name (file stem) of the allowed key equal to `key`, or 0 when none. */
static int s_allowed(const char *dir, const char *key, char *name, size_t name_size) {
    DIR *d = opendir(dir);
    if (!d) {
        nr_log(NR_LOG_ERROR, "curve allow-list %s: %s (everyone refused)", dir, strerror(errno));
        return 0;
    }
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".pub") != 0 || e->d_name[0] == '.') continue;
        char path[1024], pub[NR_SECURE_KEY_Z85 + 1], err[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (nr_secure_read_public(path, pub, err, sizeof err) != 0) {
            nr_log(NR_LOG_WARN, "curve allow-list: %s", err);
            continue;
        }
        if (!strcmp(pub, key)) {
            found = 1;
            snprintf(name, name_size, "%.*s", (int)(len - 4), e->d_name);
        }
    }
    closedir(d);
    return found;
}

static void s_send_str(void *sock, const char *s, int more) {
    zmq_send(sock, s, strlen(s), more ? ZMQ_SNDMORE : 0);
}

/* Answers one request: frames version, request id, domain, address,
 * identity, mechanism, credentials... (ZeroMQ RFC 27). */
static void s_zap_handle(nr_secure_zap_t *self) {
    char frames[8][256];
    size_t sizes[8] = {0};
    int n = 0, more = 1;
    while (more) {
        char buf[256];
        int got = zmq_recv(self->sock, buf, sizeof buf, 0);
        if (got < 0) return;
        if (n < 8) {
            sizes[n] = (size_t)got < sizeof buf ? (size_t)got : sizeof buf;
            memcpy(frames[n], buf, sizes[n]);
            n++;
        }
        size_t more_size = sizeof more;
        zmq_getsockopt(self->sock, ZMQ_RCVMORE, &more, &more_size);
    }
    /* A REP socket must answer even a malformed request (refused). */
    for (int i = n; i < 6; i++) sizes[i] = 0;
    if (n < 6) n = 6;
    char request_id[256], address[256], mechanism[32];
    snprintf(request_id, sizeof request_id, "%.*s", (int)sizes[1], frames[1]);
    snprintf(address, sizeof address, "%.*s", (int)sizes[3], frames[3]);
    snprintf(mechanism, sizeof mechanism, "%.*s", (int)sizes[5], frames[5]);
    char key[NR_SECURE_KEY_Z85 + 1] = "", name[256] = "";
    int ok = 0;
    if (!strcmp(mechanism, "CURVE") && n >= 7 && sizes[6] == 32 && zmq_z85_encode(key, (uint8_t *)frames[6], 32))
        ok = s_allowed(self->allow_dir, key, name, sizeof name);
    if (ok) {
        atomic_fetch_add(&self->accepted, 1);
        nr_log(NR_LOG_DEBUG, "curve: accepted %s (%s) from %s", name, key, address);
    } else {
        atomic_fetch_add(&self->refused, 1);
        nr_log(NR_LOG_WARN, "curve: refused %s peer %s from %s: key not in the allow-list %s", mechanism,
               key[0] ? key : "(no key)", address, self->allow_dir);
    }
    zmq_send(self->sock, frames[0], sizes[0], ZMQ_SNDMORE); /* version "1.0" */
    zmq_send(self->sock, frames[1], sizes[1], ZMQ_SNDMORE);
    s_send_str(self->sock, ok ? "200" : "400", 1);
    s_send_str(self->sock, ok ? "OK" : "key not allowed", 1);
    s_send_str(self->sock, ok ? name : "", 1);
    s_send_str(self->sock, "", 0);
    (void)request_id;
}

static void *s_zap_main(void *arg) {
    nr_secure_zap_t *self = arg;
    while (!atomic_load(&self->stop)) {
        zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, 200);
        if (rc < 0 && zmq_errno() == ETERM) break;
        if (rc > 0 && (item.revents & ZMQ_POLLIN)) s_zap_handle(self);
    }
    return NULL;
}

nr_secure_zap_t *nr_secure_zap_new(void *zmq_ctx, const char *allow_dir, char *err, size_t errlen) {
    if (!zmq_ctx || !allow_dir || !*allow_dir) {
        nr_seterr(err, errlen, NR_EINVAL, "ZAP handler: no context or allow-list folder");
        return NULL;
    }
    struct stat st;
    if (stat(allow_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        nr_seterr(err, errlen, NR_EINVAL, "curve-allow-dir %s: not a folder", allow_dir);
        return NULL;
    }
    nr_secure_zap_t *self = calloc(1, sizeof *self);
    if (!self) {
        nr_seterr(err, errlen, NR_ENOMEM, "ZAP handler: out of memory");
        return NULL;
    }
    snprintf(self->allow_dir, sizeof self->allow_dir, "%s", allow_dir);
    self->sock = zmq_socket(zmq_ctx, ZMQ_REP);
    int linger = 0;
    if (!self->sock || zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(self->sock, S_ZAP_ENDPOINT) != 0) {
        nr_seterr(err, errlen, NR_EIO, "ZAP handler: %s", zmq_strerror(zmq_errno()));
        if (self->sock) zmq_close(self->sock);
        free(self);
        return NULL;
    }
    if (pthread_create(&self->thread, NULL, s_zap_main, self) != 0) {
        nr_seterr(err, errlen, NR_EIO, "ZAP handler: cannot start its thread");
        zmq_close(self->sock);
        free(self);
        return NULL;
    }
    return self;
}

void nr_secure_zap_counts(nr_secure_zap_t *self, long *accepted, long *refused) {
    if (accepted) *accepted = self ? atomic_load(&self->accepted) : 0;
    if (refused) *refused = self ? atomic_load(&self->refused) : 0;
}

void nr_secure_zap_destroy(nr_secure_zap_t **self_p) {
    if (!self_p || !*self_p) return;
    nr_secure_zap_t *self = *self_p;
    atomic_store(&self->stop, 1);
    pthread_join(self->thread, NULL);
    zmq_close(self->sock);
    free(self);
    *self_p = NULL;
}
