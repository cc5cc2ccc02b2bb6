/* proto/secure: CURVE key files and the ZAP allow-list, over real ZeroMQ
 * sockets (tcp on loopback): an allowed client is served, a client whose
 * key is not in the allow-list and a plain-text client are refused before
 * any message reaches the server. The end-to-end test with the real broker,
 * a worker and clients is in the `secure_cluster` suite. */
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

#include "client/client.h"

static long s_stat(nr_client_t *c, const char *key) {
    nr_msg_t r;
    nr_proto_msg_init(&r);
    long v = -1;
    if (nr_client_stats(c, &r) == 0) {
        const char *s = nr_proto_kv_get(&r, key);
        v = s ? strtol(s, NULL, 10) : -1;
    }
    nr_proto_msg_clear(&r);
    return v;
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
    char *allow = nr_harness_path(s_dir, "allow");
    cr_assert_eq(mkdir(allow, 0755), 0);
    char broker_pub[NR_SECURE_KEY_Z85 + 1], pub[NR_SECURE_KEY_Z85 + 1];
    char *broker_key = s_keys(s_dir, "broker", broker_pub);
    char *broker_pubfile = nr_harness_path(s_dir, "broker.pub");
    char *worker_key = s_keys(s_dir, "worker", pub);
    char *client_key = s_keys(s_dir, "client", pub);
    char *stranger_key = s_keys(s_dir, "stranger", pub);
    char *rogue_worker_key = s_keys(s_dir, "rogue", pub);
    const char *allowed[] = {"worker", "client"};
    for (int i = 0; i < 2; i++) {
        char *src = nr_harness_path(s_dir, "%s.pub", allowed[i]);
        char *dst = nr_harness_path(allow, "%s.pub", allowed[i]);
        cr_assert_eq(rename(src, dst), 0);
        free(src);
        free(dst);
    }
    nr_harness_redis_params_t rp;
    nr_harness_redis_default_params(&rp);
    rp.appendonly = 0;
    nr_harness_redis_t *redis = nr_harness_redis_new(&rp);
    cr_assert_not_null(redis, "%s", nr_harness_error());
    int cport = nr_harness_free_port(), wport = nr_harness_free_port();
    char cep[64], wep[64], rport[16];
    snprintf(cep, sizeof cep, "tcp://127.0.0.1:%d", cport);
    snprintf(wep, sizeof wep, "tcp://127.0.0.1:%d", wport);
    snprintf(rport, sizeof rport, "%d", nr_harness_redis_port(redis));
    char *blog = nr_harness_path(s_dir, "broker.log");
    const char *bargv[] = {broker_bin, "--client-endpoint", cep, "--worker-endpoint", wep,
                           "--redis-port", rport, "--heartbeat-ms", "250",
                           "--curve-secret-key-file", broker_key, "--curve-allow-dir", allow, NULL};
    nr_harness_proc_t *broker = nr_harness_spawn(bargv, NULL, blog);
    cr_assert_not_null(broker);
    cr_assert_eq(nr_harness_wait_port(cport, 20000), 0);
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
    while (nr_harness_now_ms() < end && s_stat(good, "workers.test") < 1) nr_harness_sleep_ms(50);
    cr_assert_eq(s_stat(good, "workers.test"), 1, "the allowed worker did not register (or the rogue did)");
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
    cr_assert_eq(s_stat(good, "workers.test"), 1);
    nr_proto_msg_clear(&r);
    char *text = nr_harness_read_file(blog, NULL);
    cr_assert_not_null(text);
    cr_assert(strstr(text, "curve: refused") != NULL, "no refusal logged:\n%s", text);
    cr_assert(strstr(text, "secret input") == NULL);
    free(text);
    /* A broker started with one CURVE flag only refuses to start (exit 2). */
    const char *half[] = {broker_bin, "--client-endpoint", "tcp://127.0.0.1:1", "--curve-allow-dir", allow, NULL};
    int status = 0;
    cr_assert_eq(nr_harness_run(half, NULL, NULL, 20000, &status), 0);
    cr_assert_eq(nr_harness_exit_code(status), 2);

    nr_client_destroy(&good);
    nr_client_destroy(&stranger);
    nr_client_destroy(&plain);
    nr_harness_proc_stop(worker, SIGTERM, 5000, NULL);
    nr_harness_proc_stop(rogue, SIGTERM, 5000, NULL);
    nr_harness_proc_stop(broker, SIGTERM, 10000, NULL);
    nr_harness_proc_destroy(&worker);
    nr_harness_proc_destroy(&rogue);
    nr_harness_proc_destroy(&broker);
    nr_harness_redis_destroy(&redis);
    free(broker_bin);
    free(worker_bin);
    free(allow);
    free(broker_key);
    free(broker_pubfile);
    free(worker_key);
    free(client_key);
    free(stranger_key);
    free(rogue_worker_key);
    free(blog);
    free(wlog);
}
