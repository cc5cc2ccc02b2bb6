/* Group commit, end to end: the real narrator-broker handles many SUBMITs
 * from concurrent clients in one poll-loop batch and writes them in one
 * Redis pipeline. An acknowledgement must mean the job is in Redis, so a
 * broker killed with SIGKILL right after acknowledgements arrive (clients
 * still submitting) loses none of the acknowledged jobs: after a restart
 * every one is queued, with its input. */
#include "client/client.h"
#include "common/error.h"
#include "common/log.h"
#include "proto/proto.h"
#include "tests/harness.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CLIENTS 8
#define S_PER_CLIENT 400

static nr_harness_cluster_t C;
static char *s_broker_prog;

typedef struct {
    int index;
    int acked;                       /* jobs 0..acked-1 of this client were acknowledged */
    volatile int *total;             /* acknowledgements over all clients */
} s_client_t;

static void s_id(char *out, size_t size, int client, int i) {
    snprintf(out, size, "batch-%d-%d", client, i);
}

static void *s_submitter(void *arg) {
    s_client_t *c = arg;
    nr_client_t *client = nr_client_new(C.client_ep, 3000);
    if (!client) return NULL;
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    for (int i = 0; i < S_PER_CLIENT; i++) {
        char id[64], input[64];
        s_id(id, sizeof id, c->index, i);
        snprintf(input, sizeof input, "input of %s", id);
        if (nr_client_submit(client, id, "test", NULL, 0, input, strlen(input), &reply) != 0)
            break; /* the broker was killed */
        c->acked = i + 1;
        __atomic_add_fetch(c->total, 1, __ATOMIC_SEQ_CST);
    }
    nr_proto_msg_clear(&reply);
    nr_client_destroy(&client);
    return NULL;
}

static void s_setup(void) {
    nr_log_set_level("error");
    s_broker_prog = nr_harness_program("narrator-broker");
    cr_assert_not_null(s_broker_prog, "%s", nr_harness_error());
    cr_assert_eq(nr_harness_cluster_start(&C, "batch", NULL), 0, "%s", nr_harness_error());
}

static void s_teardown(void) {
    nr_harness_cluster_stop(&C);
    free(s_broker_prog);
    s_broker_prog = NULL;
}

TestSuite(broker_batch, .init = s_setup, .fini = s_teardown, .timeout = 240);

Test(broker_batch, acknowledged_submits_survive_a_broker_kill_mid_batch) {
    const char *flags[] = {"--queue-bound", "1000000", "--log-level", "warn", NULL};
    cr_assert_eq(nr_harness_cluster_spawn_broker(&C, s_broker_prog, "broker-1.log", flags), 0,
                 "%s", nr_harness_error());
    volatile int total = 0;
    s_client_t clients[S_CLIENTS];
    pthread_t th[S_CLIENTS];
    for (int k = 0; k < S_CLIENTS; k++) {
        clients[k] = (s_client_t){k, 0, &total};
        cr_assert_eq(pthread_create(&th[k], NULL, s_submitter, &clients[k]), 0);
    }
    /* Kill it while the clients are still submitting. */
    long long end = nr_harness_now_ms() + 60000;
    while (__atomic_load_n(&total, __ATOMIC_SEQ_CST) < S_CLIENTS * S_PER_CLIENT / 2 &&
           nr_harness_now_ms() < end)
        nr_harness_sleep_ms(1);
    cr_assert_eq(nr_harness_proc_stop(C.broker, SIGKILL, 5000, NULL), 0);
    for (int k = 0; k < S_CLIENTS; k++) pthread_join(th[k], NULL);
    int acked = 0;
    for (int k = 0; k < S_CLIENTS; k++) acked += clients[k].acked;
    cr_assert_geq(acked, S_CLIENTS * S_PER_CLIENT / 2);

    /* Every acknowledged job is in Redis: record, input, pending entry. */
    int port = nr_harness_redis_port(C.redis);
    for (int k = 0; k < S_CLIENTS; k++) {
        for (int i = 0; i < clients[k].acked; i++) {
            char id[64], key[128], out[256], want[64];
            s_id(id, sizeof id, k, i);
            snprintf(key, sizeof key, "narrator:job:%s", id);
            const char *hget[] = {"HGET", key, "state"};
            cr_assert_eq(nr_harness_redis_command(port, 3, hget, out, sizeof out), 0);
            cr_assert_str_eq(out, "queued", "acknowledged job %s: state '%s'", id, out);
            snprintf(key, sizeof key, "narrator:input:%s", id);
            const char *get[] = {"GET", key};
            cr_assert_eq(nr_harness_redis_command(port, 2, get, out, sizeof out), 0);
            snprintf(want, sizeof want, "input of %s", id);
            cr_assert_str_eq(out, want, "input of %s", id);
            const char *zs[] = {"ZSCORE", "narrator:pending:test", id};
            cr_assert_eq(nr_harness_redis_command(port, 3, zs, out, sizeof out), 0);
            cr_assert_str_neq(out, "(nil)", "%s not pending", id);
        }
    }

    /* A new broker resumes all of them (and any the old one wrote but could
     * not acknowledge before it died). */
    nr_harness_proc_destroy(&C.broker);
    cr_assert_eq(nr_harness_cluster_spawn_broker(&C, s_broker_prog, "broker-2.log", flags), 0,
                 "%s", nr_harness_error());
    nr_client_t *client = nr_client_new(C.client_ep, 5000);
    cr_assert_not_null(client);
    nr_msg_t reply;
    nr_proto_msg_init(&reply);
    cr_assert_eq(nr_client_stats(client, &reply), 0, "%s", nr_client_error(client));
    const char *q = nr_proto_kv_get(&reply, "queue.test");
    cr_assert_not_null(q);
    cr_assert_geq(atoi(q), acked, "resumed %s of %d acknowledged", q, acked);
    char id[64];
    s_id(id, sizeof id, S_CLIENTS - 1, clients[S_CLIENTS - 1].acked - 1);
    cr_assert_eq(nr_client_status(client, id, &reply), 0, "%s", nr_client_error(client));
    cr_assert_str_eq(nr_proto_kv_get(&reply, "state"), "queued");
    nr_proto_msg_clear(&reply);
    nr_client_destroy(&client);
}
