/* proto/secure: CURVE key files and the ZAP allow-list, over real ZeroMQ
 * sockets (tcp on loopback): an allowed client is served, a client whose
 * key is not in the allow-list and a plain-text client are refused before
 * any message reaches the server. Then the real broker with CURVE and a
 * worker and clients, and the real narrator-gateway with CURVE (an allowed
 * gateway speaks a text over HTTP; refused, plain and wrong-key gateways
 * answer 503 saying why; bad settings stop it at start). */
#include "common/error.h"
#include "proto/proto.h"
#include "proto/secure.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <zmq.h>

static char *s_dir;

static void s_setup(void) {
    if (!nr_secure_available()) cr_skip_test("this libzmq has no CURVE");
    s_dir = nr_harness_tempdir("secure");
    cr_assert_not_null(s_dir);
}

static void s_teardown(void) {
    if (s_dir && !getenv("NR_TEST_KEEP")) nr_harness_rmtree(s_dir);
    free(s_dir);
    s_dir = NULL;
}

/* Makes DIR/<name>.key and .pub; returns the .key path (caller frees). */
static char *s_keys(const char *dir, const char *name, char pub[NR_SECURE_KEY_Z85 + 1]) {
    char sec[NR_SECURE_KEY_Z85 + 1], err[256];
    cr_assert_eq(nr_secure_keypair(pub, sec), 0);
    char *base = nr_harness_path(dir, "%s", name);
    cr_assert_eq(nr_secure_write_keypair(base, pub, sec, err, sizeof err), 0, "%s", err);
    char *key = nr_harness_path(dir, "%s.key", name);
    free(base);
    return key;
}

TestSuite(secure, .init = s_setup, .fini = s_teardown, .timeout = 60);

Test(secure, key_files_round_trip_and_bad_ones_are_refused) {
    char pub[NR_SECURE_KEY_Z85 + 1], got[NR_SECURE_KEY_Z85 + 1], sec[NR_SECURE_KEY_Z85 + 1], err[512];
    char *key = s_keys(s_dir, "a", pub);
    cr_assert_eq(nr_secure_read_keyfile(key, got, sec, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(got, pub);
    char *pubfile = nr_harness_path(s_dir, "a.pub");
    cr_assert_eq(nr_secure_read_public(pubfile, got, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(got, pub);
    cr_assert_eq(nr_secure_read_public(pub, got, err, sizeof err), 0, "a Z85 key given directly");
    /* Never overwritten. */
    char *base = nr_harness_path(s_dir, "a");
    cr_assert_eq(nr_secure_write_keypair(base, pub, sec, err, sizeof err), NR_ESTATE);
    /* A secret key file others can read is refused. */
    chmod(key, 0644);
    cr_assert_eq(nr_secure_read_keyfile(key, got, NULL, err, sizeof err), NR_EINVAL);
    cr_assert(strstr(err, "chmod 600"), "%s", err);
    /* A public key that does not belong to the secret key. */
    char other_pub[NR_SECURE_KEY_Z85 + 1], other_sec[NR_SECURE_KEY_Z85 + 1];
    cr_assert_eq(nr_secure_keypair(other_pub, other_sec), 0);
    char *forged = nr_harness_path(s_dir, "forged.key");
    char text[256];
    snprintf(text, sizeof text, "public-key = %s\nsecret-key = %s\n", other_pub, sec);
    cr_assert_eq(nr_harness_write_file(forged, text, strlen(text)), 0);
    chmod(forged, 0600);
    cr_assert_eq(nr_secure_read_keyfile(forged, got, NULL, err, sizeof err), NR_EINVAL);
    cr_assert(strstr(err, "does not belong"), "%s", err);
    /* Garbage, short keys, missing files. */
    const char *junk = "public-key = short\nsecret-key = alsoshort\n";
    cr_assert_eq(nr_harness_write_file(forged, junk, strlen(junk)), 0);
    cr_assert_eq(nr_secure_read_keyfile(forged, got, NULL, err, sizeof err), NR_EINVAL);
    cr_assert_eq(nr_secure_read_public(forged, got, err, sizeof err), NR_EINVAL);
    cr_assert_eq(nr_secure_read_keyfile("/nonexistent/x.key", got, NULL, err, sizeof err), NR_EIO);
    cr_assert_neq(nr_secure_read_public("not-a-key", got, err, sizeof err), 0);
    /* Keys that start or end with Z85 digits that look like syntax ('=',
     * '/') still read back (a key starting with '=' once did not). */
    for (int k = 0; k < 200; k++) {
        char p2[NR_SECURE_KEY_Z85 + 1], s2[NR_SECURE_KEY_Z85 + 1];
        cr_assert_eq(nr_secure_keypair(p2, s2), 0);
        if (k < 2) p2[0] = "=/"[k]; /* not a pair any more: read as a public key only */
        char *f = nr_harness_path(s_dir, "k%d.pub", k);
        char line[128];
        snprintf(line, sizeof line, "public-key = %s\n", p2);
        cr_assert_eq(nr_harness_write_file(f, line, strlen(line)), 0);
        cr_assert_eq(nr_secure_read_public(f, got, err, sizeof err), 0, "%s: %s", p2, err);
        cr_assert_str_eq(got, p2);
        free(f);
    }
    /* Half-configured settings are an error, none is "off". */
    nr_secure_settings_t s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(nr_secure_enabled(&s, 1, err, sizeof err), 0);
    snprintf(s.secret_key_file, sizeof s.secret_key_file, "%s", key);
    cr_assert_eq(nr_secure_enabled(&s, 1, err, sizeof err), NR_EINVAL);
    cr_assert_eq(nr_secure_enabled(&s, 0, err, sizeof err), NR_EINVAL);
    snprintf(s.allow_dir, sizeof s.allow_dir, "%s", s_dir);
    cr_assert_eq(nr_secure_enabled(&s, 1, err, sizeof err), 1);
    free(key);
    free(pubfile);
    free(base);
    free(forged);
}

/* Connects a DEALER (CURVE with key_file unless NULL), sends one message
 * and returns 1 when the server's ROUTER received it within 1.5 s. */
static int s_try(void *ctx, void *server, const char *endpoint, const char *key_file, const char *server_pub) {
    void *c = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(c, ZMQ_LINGER, &linger, sizeof linger);
    if (key_file) {
        nr_secure_settings_t s;
        memset(&s, 0, sizeof s);
        snprintf(s.secret_key_file, sizeof s.secret_key_file, "%s", key_file);
        snprintf(s.server_key, sizeof s.server_key, "%s", server_pub);
        char err[256];
        cr_assert_eq(nr_secure_client(c, &s, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(zmq_connect(c, endpoint), 0);
    zmq_send(c, "hello", 5, ZMQ_DONTWAIT);
    zmq_pollitem_t item = {server, 0, ZMQ_POLLIN, 0};
    int got = zmq_poll(&item, 1, 1500) > 0;
    if (got) {
        char buf[64];
        int more = 1;
        size_t ms = sizeof more;
        while (more) {
            zmq_recv(server, buf, sizeof buf, 0);
            zmq_getsockopt(server, ZMQ_RCVMORE, &more, &ms);
        }
    }
    zmq_close(c);
    return got;
}

Test(secure, allow_list_admits_known_keys_only) {
    char *allow = nr_harness_path(s_dir, "allow");
    cr_assert_eq(mkdir(allow, 0755), 0);
    char server_pub[NR_SECURE_KEY_Z85 + 1], a_pub[NR_SECURE_KEY_Z85 + 1], b_pub[NR_SECURE_KEY_Z85 + 1];
    char *server_key = s_keys(s_dir, "broker", server_pub);
    char *a_key = s_keys(allow, "client-a", a_pub); /* its .pub lands in the allow-list */
    char *b_key = s_keys(s_dir, "client-b", b_pub); /* not allowed */
    /* The allow-list must not hold secret files: move client-a.key out. */
    char *a_key2 = nr_harness_path(s_dir, "client-a.key");
    cr_assert_eq(rename(a_key, a_key2), 0);

    void *ctx = zmq_ctx_new();
    char err[256];
    nr_secure_zap_t *zap = nr_secure_zap_new(ctx, allow, err, sizeof err);
    cr_assert_not_null(zap, "%s", err);
    void *server = zmq_socket(ctx, ZMQ_ROUTER);
    nr_secure_settings_t ss;
    memset(&ss, 0, sizeof ss);
    snprintf(ss.secret_key_file, sizeof ss.secret_key_file, "%s", server_key);
    snprintf(ss.allow_dir, sizeof ss.allow_dir, "%s", allow);
    cr_assert_eq(nr_secure_server(server, &ss, err, sizeof err), 0, "%s", err);
    int port = nr_harness_free_port();
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    cr_assert_eq(zmq_bind(server, endpoint), 0);

    cr_assert(s_try(ctx, server, endpoint, a_key2, server_pub), "the allowed client was not served");
    cr_assert_not(s_try(ctx, server, endpoint, b_key, server_pub), "a client with an unknown key got through");
    cr_assert_not(s_try(ctx, server, endpoint, NULL, NULL), "a plain-text client got through");
    /* A client that has the wrong server key cannot finish the handshake. */
    cr_assert_not(s_try(ctx, server, endpoint, a_key2, a_pub), "wrong server key accepted");
    /* Adding b's .pub to the folder admits it at once (read per connection). */
    char *b_pub_src = nr_harness_path(s_dir, "client-b.pub");
    char *b_pub_dst = nr_harness_path(allow, "client-b.pub");
    cr_assert_eq(rename(b_pub_src, b_pub_dst), 0);
    cr_assert(s_try(ctx, server, endpoint, b_key, server_pub), "newly allowed client refused");
    long accepted = 0, refused = 0;
    nr_secure_zap_counts(zap, &accepted, &refused);
    cr_assert_geq(accepted, 2);
    cr_assert_geq(refused, 1);
    cr_log_info("ZAP: %ld accepted, %ld refused", accepted, refused);
    zmq_close(server);
    nr_secure_zap_destroy(&zap);
    nr_secure_zap_destroy(&zap);
    zmq_ctx_term(ctx);
    free(allow);
    free(server_key);
    free(a_key);
    free(a_key2);
    free(b_key);
    free(b_pub_src);
    free(b_pub_dst);
}

/* ---- the real broker with CURVE ---- */

/* A real redis-server and a CURVE broker whose allow-list holds the .pub
 * files of `allowed` (key pairs made with s_keys in s_dir beforehand). */
typedef struct {
    nr_harness_redis_t *redis;
    nr_harness_proc_t *broker;
    char *allow, *broker_key, *broker_pubfile, *blog;
    char broker_pub[NR_SECURE_KEY_Z85 + 1];
    char cep[64], wep[64];
} s_curve_broker_t;

static void s_curve_broker_start(s_curve_broker_t *b, const char *broker_bin, const char *const *allowed,
                                 const char *const *extra) {
    memset(b, 0, sizeof *b);
    b->allow = nr_harness_path(s_dir, "allow");
    cr_assert_eq(mkdir(b->allow, 0755), 0);
    b->broker_key = s_keys(s_dir, "broker", b->broker_pub);
    b->broker_pubfile = nr_harness_path(s_dir, "broker.pub");
    for (int i = 0; allowed[i]; i++) {
        char *src = nr_harness_path(s_dir, "%s.pub", allowed[i]);
        char *dst = nr_harness_path(b->allow, "%s.pub", allowed[i]);
        cr_assert_eq(rename(src, dst), 0);
        free(src);
        free(dst);
    }
    nr_harness_redis_params_t rp;
    nr_harness_redis_default_params(&rp);
    rp.appendonly = 0;
    b->redis = nr_harness_redis_new(&rp);
    cr_assert_not_null(b->redis, "%s", nr_harness_error());
    int cport = nr_harness_free_port(), wport = nr_harness_free_port();
    char rport[16];
    snprintf(b->cep, sizeof b->cep, "tcp://127.0.0.1:%d", cport);
    snprintf(b->wep, sizeof b->wep, "tcp://127.0.0.1:%d", wport);
    snprintf(rport, sizeof rport, "%d", nr_harness_redis_port(b->redis));
    b->blog = nr_harness_path(s_dir, "broker.log");
    const char *bargv[32] = {broker_bin, "--client-endpoint", b->cep, "--worker-endpoint", b->wep,
                             "--redis-port", rport, "--heartbeat-ms", "250",
                             "--curve-secret-key-file", b->broker_key, "--curve-allow-dir", b->allow,
                             "--stages", NR_HARNESS_STAGES};
    int n = 15;
    for (int i = 0; extra && extra[i] && n < 31; i++) bargv[n++] = extra[i];
    bargv[n] = NULL;
    b->broker = nr_harness_spawn(bargv, NULL, b->blog);
    cr_assert_not_null(b->broker);
    cr_assert_eq(nr_harness_wait_port(cport, 20000), 0);
}

static void s_curve_broker_stop(s_curve_broker_t *b) {
    nr_harness_proc_stop(b->broker, SIGTERM, 10000, NULL);
    nr_harness_proc_destroy(&b->broker);
    nr_harness_redis_destroy(&b->redis);
    free(b->allow);
    free(b->broker_key);
    free(b->broker_pubfile);
    free(b->blog);
}

/* Broker with --curve-*; an allowed worker and client run a job; a client
 * and a worker with keys not in the allow-list, and a plain client, are
 * refused (and the broker logs it). */
Test(secure, broker_with_curve_serves_allowed_and_refuses_others, .timeout = 120) {
    char *broker_bin = nr_harness_program("narrator-broker");
    char *worker_bin = nr_harness_program("narrator-worker-test");
    if (!broker_bin || !worker_bin) cr_skip_test("programs not built: %s", nr_harness_error());
    {
        char *help = nr_harness_path(s_dir, "help.txt");
        const char *hargv[] = {broker_bin, "--help", NULL};
        int hs = 0;
        cr_assert_eq(nr_harness_run(hargv, NULL, help, 10000, &hs), 0);
        char *text = nr_harness_read_file(help, NULL);
        int has = text && strstr(text, "curve-allow-dir");
        free(text);
        free(help);
        if (!has) cr_skip_test("this narrator-broker has no --curve-allow-dir");
    }
    char pub[NR_SECURE_KEY_Z85 + 1];
    char *worker_key = s_keys(s_dir, "worker", pub);
    char *client_key = s_keys(s_dir, "client", pub);
    char *stranger_key = s_keys(s_dir, "stranger", pub);
    char *rogue_worker_key = s_keys(s_dir, "rogue", pub);
    /* A rate limit of one new job per client and second: the limit must
     * key on the CURVE key's name, which the link gives, not the address. */
    const char *allowed[] = {"worker", "client", NULL};
    const char *limit[] = {"--client-rate", "1", "--client-burst", "1", NULL};
    s_curve_broker_t cb;
    s_curve_broker_start(&cb, broker_bin, allowed, limit);
    const char *cep = cb.cep, *wep = cb.wep, *broker_pub = cb.broker_pub, *broker_pubfile = cb.broker_pubfile;
    char *wlog = nr_harness_path(s_dir, "worker.log");
    const char *wargv[] = {worker_bin, "--broker", wep, "--name", "good", "--heartbeat-ms", "250",
                           "--curve-server-key", broker_pubfile, "--curve-secret-key-file", worker_key, NULL};
    nr_harness_proc_t *worker = nr_harness_spawn(wargv, NULL, wlog);
    const char *rargv[] = {worker_bin, "--broker", wep, "--name", "rogue", "--heartbeat-ms", "250",
                           "--curve-server-key", broker_pub, "--curve-secret-key-file", rogue_worker_key, NULL};
    nr_harness_proc_t *rogue = nr_harness_spawn(rargv, NULL, wlog);
    cr_assert(worker && rogue);

    nr_client_t *good = nr_client_new(cep, 2000);
    cr_assert_eq(nr_client_set_curve(good, broker_pubfile, client_key), 0, "%s", nr_client_error(good));
    long long end = nr_harness_now_ms() + 30000;
    while (nr_harness_now_ms() < end && nr_harness_stat(good, "workers.test") < 1) nr_harness_sleep_ms(50);
    cr_assert_eq(nr_harness_stat(good, "workers.test"), 1, "the allowed worker did not register (or the rogue did)");
    nr_msg_t r;
    nr_proto_msg_init(&r);
    cr_assert_eq(nr_client_submit(good, "sec-1", "test", NULL, 0, "secret input", 12, &r), 0, "%s",
                 nr_client_error(good));
    const char *state = "";
    while (nr_harness_now_ms() < end) {
        cr_assert_eq(nr_client_status(good, "sec-1", &r), 0);
        state = nr_proto_kv_get(&r, "state");
        if (state && !strcmp(state, "done")) break;
        nr_harness_sleep_ms(50);
    }
    cr_assert_str_eq(state, "done");
    cr_assert_eq(nr_client_fetch(good, "sec-1", "test", &r), 0);
    cr_assert(r.frames_len == 1 && r.frames[0].size == 12 && !memcmp(r.frames[0].data, "secret input", 12));
    nr_client_set_busy_wait(good, 0);
    cr_assert_eq(nr_client_submit(good, "sec-2", "test", NULL, 0, "x", 1, &r), NR_EBUSY);
    cr_assert(strstr(nr_client_error(good), "client client is over its limit"),
              "the rate limit is not keyed on the CURVE key name: %s", nr_client_error(good));

    /* A client whose key is not allowed, and one with no CURVE at all. */
    nr_client_t *stranger = nr_client_new(cep, 1500);
    cr_assert_eq(nr_client_set_curve(stranger, broker_pub, stranger_key), 0);
    int rc = nr_client_status(stranger, "sec-1", &r);
    cr_assert(rc == NR_ECONNECT || rc == NR_ETIMEDOUT, "a stranger got an answer (%d)", rc);
    nr_client_t *plain = nr_client_new(cep, 1500);
    rc = nr_client_status(plain, "sec-1", &r);
    cr_assert(rc == NR_ECONNECT || rc == NR_ETIMEDOUT, "a plain-text client got an answer (%d)", rc);
    /* Half-configured: refused at once. */
    cr_assert_eq(nr_client_set_curve(plain, broker_pub, NULL), NR_EINVAL);
    /* The rogue worker never registered; the broker logged the refusals. */
    cr_assert_eq(nr_harness_stat(good, "workers.test"), 1);
    nr_proto_msg_clear(&r);
    char *text = nr_harness_read_file(cb.blog, NULL);
    cr_assert_not_null(text);
    cr_assert(strstr(text, "curve: refused") != NULL, "no refusal logged:\n%s", text);
    cr_assert(strstr(text, "secret input") == NULL);
    free(text);
    /* A broker started with one CURVE flag only refuses to start (exit 2). */
    const char *half[] = {broker_bin, "--client-endpoint", "tcp://127.0.0.1:1", "--curve-allow-dir", cb.allow, NULL};
    int status = 0;
    cr_assert_eq(nr_harness_run(half, NULL, NULL, 20000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 2);

    nr_client_destroy(&good);
    nr_client_destroy(&stranger);
    nr_client_destroy(&plain);
    nr_harness_proc_stop(worker, SIGTERM, 5000, NULL);
    nr_harness_proc_stop(rogue, SIGTERM, 5000, NULL);
    nr_harness_proc_destroy(&worker);
    nr_harness_proc_destroy(&rogue);
    s_curve_broker_stop(&cb);
    free(broker_bin);
    free(worker_bin);
    free(worker_key);
    free(client_key);
    free(stranger_key);
    free(rogue_worker_key);
    free(wlog);
}

/* ---- narrator-gateway with CURVE ---- */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* One HTTP/1.0 request to 127.0.0.1:port. Returns the status code (-1 when
 * there is no answer) and the body in *body (malloc'd, NUL-terminated). */
static int s_http(int port, const char *method, const char *path, const char *type, const char *data,
                  char **body) {
    *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char head[512];
    size_t n = data ? strlen(data) : 0;
    int len = snprintf(head, sizeof head,
                       "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                       method, path, type ? type : "text/plain", n);
    cr_assert(write(fd, head, (size_t)len) == len);
    if (n) cr_assert(write(fd, data, n) == (ssize_t)n);
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    for (;;) {
        if (got == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            cr_assert_not_null(buf);
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) status = -1;
    char *sep = strstr(buf, "\r\n\r\n");
    *body = strdup(sep ? sep + 4 : "");
    free(buf);
    return status;
}

/* GET path until its status is `want` and the body holds `needle` (NULL:
 * any), for up to 30 s. Returns the last status; *body is the last body. */
static int s_http_until(int port, const char *path, int want, const char *needle, char **body) {
    long long end = nr_harness_now_ms() + 30000;
    int status = -1;
    *body = NULL;
    for (;;) {
        free(*body);
        status = s_http(port, "GET", path, NULL, NULL, body);
        if ((status == want && (!needle || strstr(*body, needle))) || nr_harness_now_ms() > end) break;
        nr_harness_sleep_ms(100);
    }
    return status;
}

/* Starts narrator-gateway for `broker_ep` on a free port with `extra` flags
 * and `env`; returns it (running and listening) and the port in *port. */
static nr_harness_proc_t *s_gateway(const char *bin, const char *broker_ep, const char *const *extra,
                                    const char *const *env, const char *log, int *port) {
    *port = nr_harness_free_port();
    char p[16];
    snprintf(p, sizeof p, "%d", *port);
    const char *argv[32] = {bin, "--port", p, "--broker", broker_ep, "--request-timeout-ms", "1500",
                            "--static-dir", "", "--log-level", "debug"};
    int n = 11;
    for (int i = 0; extra && extra[i] && n < 31; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    nr_harness_proc_t *gw = nr_harness_spawn(argv, env, log);
    cr_assert_not_null(gw, "%s", nr_harness_error());
    if (nr_harness_wait_port(*port, 20000) != 0) {
        nr_harness_dump_log(log, 4000);
        cr_assert_fail("the gateway is not listening");
    }
    return gw;
}

/* The gateway's CURVE settings are checked at start: half of them, a key
 * file others can read, a missing file and a malformed broker key are each
 * a clear error and exit 2, before anything listens. */
Test(secure, gateway_refuses_bad_curve_settings_at_start) {
    char *gw_bin = nr_harness_program("narrator-gateway");
    if (!gw_bin) cr_skip_test("narrator-gateway is not built: %s", nr_harness_error());
    char broker_pub[NR_SECURE_KEY_Z85 + 1], pub[NR_SECURE_KEY_Z85 + 1];
    char *broker_key = s_keys(s_dir, "broker", broker_pub);
    char *broker_pubfile = nr_harness_path(s_dir, "broker.pub");
    char *gw_key = s_keys(s_dir, "gw", pub);
    char *open_key = s_keys(s_dir, "open", pub);
    chmod(open_key, 0644);
    char *log = nr_harness_path(s_dir, "start.log");
    struct {
        const char *server, *secret, *want;
    } cases[] = {
        {broker_pubfile, NULL, "CURVE needs both curve-server-key and curve-secret-key-file"},
        {NULL, gw_key, "CURVE needs both curve-server-key and curve-secret-key-file"},
        {broker_pubfile, open_key, "chmod 600"},
        {broker_pubfile, "/nonexistent/gw.key", "curve-secret-key-file: /nonexistent/gw.key"},
        {"not-a-key", gw_key, "curve-server-key: not-a-key"},
        {NULL, NULL, NULL}, /* --help lists the settings */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[16] = {gw_bin, "--port", "1", "--static-dir", ""};
        int n = 5;
        if (cases[i].server) {
            argv[n++] = "--curve-server-key";
            argv[n++] = cases[i].server;
        }
        if (cases[i].secret) {
            argv[n++] = "--curve-secret-key-file";
            argv[n++] = cases[i].secret;
        }
        if (!cases[i].want) argv[n++] = "--help";
        argv[n] = NULL;
        unlink(log);
        int status = 0;
        cr_assert_eq(nr_harness_run(argv, NULL, log, 20000, &status), 0);
        char *text = nr_harness_read_file(log, NULL);
        cr_assert_not_null(text);
        if (cases[i].want) {
            cr_expect_eq(nr_harness_exit_code(status), 2, "case %zu: exit %d\n%s", i,
                         nr_harness_exit_code(status), text);
            cr_expect(strstr(text, cases[i].want), "case %zu: no '%s' in:\n%s", i, cases[i].want, text);
        } else {
            cr_expect_eq(nr_harness_exit_code(status), 0, "case %zu:\n%s", i, text);
            cr_expect(strstr(text, "--curve-secret-key-file") &&
                          strstr(text, "NARRATOR_GATEWAY_CURVE_SERVER_KEY"),
                      "--help lacks the CURVE settings:\n%s", text);
        }
        free(text);
    }
    /* The same checks for settings from the environment. */
    const char *env[] = {"NARRATOR_GATEWAY_CURVE_SERVER_KEY=not-a-key",
                         "NARRATOR_GATEWAY_CURVE_SECRET_KEY_FILE=/nonexistent/gw.key", NULL};
    const char *argv[] = {gw_bin, "--port", "1", "--static-dir", "", NULL};
    int status = 0;
    unlink(log);
    cr_assert_eq(nr_harness_run(argv, env, log, 20000, &status), 0);
    cr_expect_eq(nr_harness_exit_code(status), 2);
    char *text = nr_harness_read_file(log, NULL);
    cr_expect(text && strstr(text, "curve-secret-key-file: /nonexistent/gw.key"), "%s", text ? text : "");
    free(text);
    free(gw_bin);
    free(broker_key);
    free(broker_pubfile);
    free(gw_key);
    free(open_key);
    free(log);
}

/* A CURVE broker, a speech worker and gateways: the gateway whose key is
 * allowed (settings from a config file) speaks a text over HTTP and serves
 * the WAV; one with a key not in the allow-list (settings from the
 * environment) answers 503 with a JSON error naming the refusal, on
 * /readyz and on POST, and the broker logs it; adding its .pub lets it in
 * without a restart. A plain-text gateway and one with the wrong server key
 * are told what is wrong. */
Test(secure, gateway_with_curve_serves_allowed_key_and_reports_refusal, .timeout = 180) {
    char *broker_bin = nr_harness_program("narrator-broker");
    char *speech_bin = nr_harness_program("narrator-worker-speech");
    char *gw_bin = nr_harness_program("narrator-gateway");
    if (!broker_bin || !speech_bin || !gw_bin) cr_skip_test("programs not built: %s", nr_harness_error());
    char pub[NR_SECURE_KEY_Z85 + 1], stranger_pub[NR_SECURE_KEY_Z85 + 1];
    char *worker_key = s_keys(s_dir, "worker", pub);
    char *gw_key = s_keys(s_dir, "gw", pub);
    char *stranger_key = s_keys(s_dir, "stranger", stranger_pub);
    const char *allowed[] = {"worker", "gw", NULL};
    s_curve_broker_t cb;
    s_curve_broker_start(&cb, broker_bin, allowed, NULL);
    const char *cep = cb.cep, *wep = cb.wep, *broker_pub = cb.broker_pub, *broker_pubfile = cb.broker_pubfile;
    const char *allow = cb.allow, *blog = cb.blog;
    char *wlog = nr_harness_path(s_dir, "worker.log");
    const char *wargv[] = {speech_bin, "--broker", wep, "--name", "speech-1", "--heartbeat-ms", "250",
                           "--curve-server-key", broker_pubfile, "--curve-secret-key-file", worker_key, NULL};
    nr_harness_proc_t *worker = nr_harness_spawn(wargv, NULL, wlog);
    cr_assert_not_null(worker);

    /* The allowed gateway, its CURVE settings in a config file. */
    char *conf = nr_harness_path(s_dir, "gateway.conf");
    char text[2048];
    snprintf(text, sizeof text, "curve-server-key = %s\ncurve-secret-key-file = %s\n", broker_pubfile, gw_key);
    cr_assert_eq(nr_harness_write_file(conf, text, strlen(text)), 0);
    char *glog = nr_harness_path(s_dir, "gateway.log");
    const char *conf_args[] = {"--config", conf, NULL};
    int gport = 0;
    nr_harness_proc_t *gw = s_gateway(gw_bin, cep, conf_args, NULL, glog, &gport);
    char *body = NULL;
    int st = s_http_until(gport, "/readyz", 200, "\"speech\":1", &body);
    if (st != 200) {
        nr_harness_dump_log(glog, 4000);
        nr_harness_dump_log(blog, 4000);
        nr_harness_dump_log(wlog, 4000);
    }
    cr_assert_eq(st, 200, "readyz of the allowed gateway: %d %s", st, body);
    cr_assert(strstr(body, "\"ready\":true"), "%s", body);
    free(body);
    st = s_http(gport, "POST", "/v1/speak", "text/plain; charset=utf-8", "a secret sentence", &body);
    cr_assert_eq(st, 202, "speak: %d %s", st, body);
    const char *idp = strstr(body, "\"id\":\"");
    cr_assert_not_null(idp, "%s", body);
    char id[80] = "", path[160];
    sscanf(idp + 6, "%64[^\"]", id);
    free(body);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    st = s_http_until(gport, path, 200, "\"state\":\"done\"", &body);
    cr_assert(st == 200 && strstr(body, "\"state\":\"done\""), "job %s: %d %s", id, st, body);
    free(body);
    snprintf(path, sizeof path, "/v1/jobs/%s/audio", id);
    st = s_http(gport, "GET", path, NULL, NULL, &body);
    cr_assert_eq(st, 200, "audio: %d", st);
    cr_assert(!strncmp(body, "RIFF", 4), "the audio is not a WAV file");
    free(body);
    char *gtext = nr_harness_read_file(glog, NULL);
    cr_assert(gtext && strstr(gtext, "CURVE on"), "the gateway did not log its CURVE state");
    free(gtext);

    /* A gateway whose key is not in the allow-list (settings from the
     * environment, the broker's key as Z85 text). */
    char env_key[128], env_file[700];
    snprintf(env_key, sizeof env_key, "NARRATOR_GATEWAY_CURVE_SERVER_KEY=%s", broker_pub);
    snprintf(env_file, sizeof env_file, "NARRATOR_GATEWAY_CURVE_SECRET_KEY_FILE=%s", stranger_key);
    const char *env[] = {env_key, env_file, NULL};
    char *slog = nr_harness_path(s_dir, "gateway-stranger.log");
    int sport = 0;
    nr_harness_proc_t *sgw = s_gateway(gw_bin, cep, NULL, env, slog, &sport);
    st = s_http(sport, "GET", "/readyz", NULL, NULL, &body);
    cr_assert_eq(st, 503, "readyz of the refused gateway: %d %s", st, body);
    cr_assert(strstr(body, "\"ready\":false") && strstr(body, "\"error\":\"unreachable\""), "%s", body);
    cr_assert(strstr(body, "refused this gateway's CURVE key") && strstr(body, stranger_pub) &&
                  strstr(body, "curve-allow-dir"),
              "readyz does not say the key was refused: %s", body);
    free(body);
    st = s_http(sport, "POST", "/v1/speak", "text/plain", "let me in", &body);
    cr_assert_eq(st, 503, "speak through the refused gateway: %d %s", st, body);
    cr_assert(strstr(body, "\"error\":\"unreachable\"") && strstr(body, "refused this gateway's CURVE key"),
              "%s", body);
    free(body);
    char *btext = nr_harness_read_file(blog, NULL);
    char want[128];
    snprintf(want, sizeof want, "curve: refused CURVE peer %s", stranger_pub);
    cr_assert(btext && strstr(btext, want), "the broker did not log the refusal of %s", stranger_pub);
    cr_assert(!strstr(btext, "a secret sentence") && !strstr(btext, "let me in"));
    free(btext);
    /* Its .pub added to the folder: admitted without a restart. */
    char *src = nr_harness_path(s_dir, "stranger.pub");
    char *dst = nr_harness_path(allow, "stranger.pub");
    cr_assert_eq(rename(src, dst), 0);
    st = s_http_until(sport, "/readyz", 200, NULL, &body);
    cr_assert_eq(st, 200, "readyz once the key is allowed: %d %s", st, body);
    free(body);
    free(src);
    free(dst);

    /* A plain-text gateway, and one that pins the wrong server key. */
    char *plog = nr_harness_path(s_dir, "gateway-plain.log");
    int pport = 0;
    nr_harness_proc_t *pgw = s_gateway(gw_bin, cep, NULL, NULL, plog, &pport);
    st = s_http(pport, "GET", "/readyz", NULL, NULL, &body);
    cr_assert_eq(st, 503, "%d %s", st, body);
    /* "requires CURVE" when the greeting's mechanism arrived before the
     * broker hung up, "does it require CURVE" when it did not. */
    cr_assert(strstr(body, "require") && strstr(body, "CURVE") && strstr(body, "curve-secret-key-file"),
              "plain gateway: %s", body);
    free(body);
    char *xlog = nr_harness_path(s_dir, "gateway-wrongkey.log");
    const char *wrong_args[] = {"--curve-server-key", stranger_pub, "--curve-secret-key-file", gw_key,
                                NULL};
    int xport = 0;
    nr_harness_proc_t *xgw = s_gateway(gw_bin, cep, wrong_args, NULL, xlog, &xport);
    st = s_http(xport, "GET", "/readyz", NULL, NULL, &body);
    cr_assert_eq(st, 503, "%d %s", st, body);
    cr_assert(strstr(body, "during the CURVE handshake") && strstr(body, "broker's public key"),
              "wrong server key: %s", body);
    free(body);

    nr_harness_proc_t *procs[] = {xgw, pgw, sgw, gw, worker};
    for (size_t i = 0; i < sizeof procs / sizeof procs[0]; i++) {
        int status = 0;
        nr_harness_proc_stop(procs[i], SIGTERM, 10000, &status);
        if (i < 4) cr_expect_eq(nr_harness_exit_code(status), 0, "gateway %zu did not stop cleanly", i);
        nr_harness_proc_destroy(&procs[i]);
    }
    s_curve_broker_stop(&cb);
    free(broker_bin);
    free(speech_bin);
    free(gw_bin);
    free(worker_key);
    free(gw_key);
    free(stranger_key);
    free(wlog);
    free(conf);
    free(glog);
    free(slog);
    free(plog);
    free(xlog);
}
