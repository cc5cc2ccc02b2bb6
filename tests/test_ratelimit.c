/* Tests for common/ratelimit.c: bursts, refill, independent clients,
 * forgetting the client idle longest, the hash table after many evictions,
 * and one bucket shared by threads. */
#include "common/ratelimit.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

Test(ratelimit, off_when_rate_is_zero) {
    nr_ratelimit_t *rl = nr_ratelimit_new(0, 1, 16);
    cr_assert_not_null(rl);
    for (int i = 0; i < 1000; i++) cr_assert_eq(nr_ratelimit_take(rl, "a", 0, NULL), 1);
    cr_assert_eq(nr_ratelimit_refused(rl), 0);
    nr_ratelimit_destroy(&rl);
    nr_ratelimit_destroy(&rl); /* safe twice */
    cr_assert_null(rl);
}

Test(ratelimit, burst_then_rate) {
    nr_ratelimit_t *rl = nr_ratelimit_new(2, 3, 16); /* 2/s, burst 3 */
    int64_t retry = -1;
    for (int i = 0; i < 3; i++) cr_assert_eq(nr_ratelimit_take(rl, "a", 1000, &retry), 1, "take %d", i);
    cr_assert_eq(retry, 0);
    cr_assert_eq(nr_ratelimit_take(rl, "a", 1000, &retry), 0);
    cr_assert(retry >= 500 && retry <= 501, "retry %lld ms", (long long)retry);
    cr_assert_eq(nr_ratelimit_take(rl, "a", 1250, &retry), 0, "half a token is not enough");
    cr_assert(retry >= 250 && retry <= 251, "retry %lld ms", (long long)retry);
    cr_assert_eq(nr_ratelimit_take(rl, "a", 1500, NULL), 1, "one token back after 500 ms");
    cr_assert_eq(nr_ratelimit_take(rl, "a", 1500, NULL), 0);
    /* A long pause refills to the burst, not beyond. */
    for (int i = 0; i < 3; i++) cr_assert_eq(nr_ratelimit_take(rl, "a", 100000, NULL), 1);
    cr_assert_eq(nr_ratelimit_take(rl, "a", 100000, NULL), 0);
    cr_assert_eq(nr_ratelimit_refused(rl), 4);
    nr_ratelimit_destroy(&rl);
}

Test(ratelimit, clients_are_independent) {
    nr_ratelimit_t *rl = nr_ratelimit_new(1, 1, 16);
    cr_assert_eq(nr_ratelimit_take(rl, "client1", 0, NULL), 1);
    cr_assert_eq(nr_ratelimit_take(rl, "client1", 0, NULL), 0);
    cr_assert_eq(nr_ratelimit_take(rl, "client2", 0, NULL), 1);
    cr_assert_eq(nr_ratelimit_take(rl, "tcp://10.0.0.7", 0, NULL), 1);
    /* A missing name is one shared bucket, not unlimited. */
    cr_assert_eq(nr_ratelimit_take(rl, "", 0, NULL), 1);
    cr_assert_eq(nr_ratelimit_take(rl, NULL, 0, NULL), 0);
    nr_ratelimit_destroy(&rl);
}

Test(ratelimit, forgets_the_client_idle_longest) {
    nr_ratelimit_t *rl = nr_ratelimit_new(0.001, 1, 2);
    cr_assert_eq(nr_ratelimit_take(rl, "a", 0, NULL), 1);
    cr_assert_eq(nr_ratelimit_take(rl, "b", 10, NULL), 1);
    cr_assert_eq(nr_ratelimit_take(rl, "c", 20, NULL), 1); /* a is forgotten */
    cr_assert_eq(nr_ratelimit_take(rl, "b", 30, NULL), 0, "b is still tracked, and empty");
    cr_assert_eq(nr_ratelimit_take(rl, "a", 40, NULL), 1, "a came back with a full bucket");
    nr_ratelimit_destroy(&rl);
}

Test(ratelimit, table_stays_consistent_after_many_evictions) {
    enum { TRACKED = 64, KEYS = 20000 };
    nr_ratelimit_t *rl = nr_ratelimit_new(0.001, 1, TRACKED);
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "peer-%d", i);
        cr_assert_eq(nr_ratelimit_take(rl, key, i, NULL), 1, "new key %s", key);
    }
    /* The last TRACKED keys are all still found (empty buckets); the one
     * before them was forgotten. */
    for (int i = KEYS - TRACKED; i < KEYS; i++) {
        snprintf(key, sizeof key, "peer-%d", i);
        cr_assert_eq(nr_ratelimit_take(rl, key, KEYS, NULL), 0, "key %s lost", key);
    }
    snprintf(key, sizeof key, "peer-%d", KEYS - TRACKED - 1);
    cr_assert_eq(nr_ratelimit_take(rl, key, KEYS, NULL), 1);
    nr_ratelimit_destroy(&rl);
}

Test(ratelimit, long_names_are_cut_not_rejected) {
    nr_ratelimit_t *rl = nr_ratelimit_new(1, 1, 4);
    char name[600];
    memset(name, 'k', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    cr_assert_eq(nr_ratelimit_take(rl, name, 0, NULL), 1);
    cr_assert_eq(nr_ratelimit_take(rl, name, 0, NULL), 0);
    nr_ratelimit_destroy(&rl);
}

static nr_ratelimit_t *s_shared;
static int s_allowed[4];

static void *s_taker(void *arg) {
    int *allowed = arg;
    for (int i = 0; i < 2000; i++) *allowed += nr_ratelimit_take(s_shared, "gateway-client", 0, NULL);
    return NULL;
}

Test(ratelimit, threads_share_one_bucket_exactly) {
    s_shared = nr_ratelimit_new(0.001, 1000, 8);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, s_taker, &s_allowed[i]);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    cr_assert_eq(s_allowed[0] + s_allowed[1] + s_allowed[2] + s_allowed[3], 1000);
    cr_assert_eq(nr_ratelimit_refused(s_shared), 7000);
    nr_ratelimit_destroy(&s_shared);
}
