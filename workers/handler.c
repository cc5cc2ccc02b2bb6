/* The worker's handler threads: each takes pending jobs (a batch for a
 * batch handler), skips those whose deadline passed while they waited,
 * runs the stage's function and hands the replies to the socket thread. */
#include "workers/worker_internal.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- handler threads --------------------------------------------------- */

static void s_deadline_ts(struct timespec *ts, long long at_ms) {
    ts->tv_sec = (time_t)(at_ms / 1000);
    ts->tv_nsec = (long)(at_ms % 1000) * 1000000L;
}

/* Takes the next waiting job to run (mu held), or NULL when none is left.
 * A held job whose lease ran out while it waited (capacity above
 * concurrency) is not started: the broker leases it again at its
 * deadline, so this run would be thrown away. It goes to *stale, for
 * s_answer_stale once the lock is released. */
static nr_wk_item_t *s_pop_live(nr_worker_t *self, nr_wk_list_t *stale) {
    nr_wk_item_t *it;
    long long now = nr_clock_mono_ms();
    while ((it = nr_wk_list_pop(&self->pending))) {
        if (!it->job.deadline_ms || now - it->received_ms < (long long)it->job.deadline_ms) return it;
        nr_wk_list_push(stale, it);
        self->busy++; /* until answered: a stopping worker waits for it */
    }
    return NULL;
}

/* Hands answered jobs, counted busy until now, to the socket thread (mu
 * held). It sends every reply in the list once woken, so only the first
 * one into an empty list wakes it (and the last running job of a stopping
 * worker, which it may be waiting for). Returns whether to wake it; do that
 * outside the lock, which the woken thread takes at once. */
static int s_hand_over(nr_worker_t *self, nr_wk_list_t *answered) {
    int wake = !self->done.head;
    nr_wk_item_t *it;
    while ((it = nr_wk_list_pop(answered))) {
        nr_wk_list_push(&self->done, it);
        self->busy--;
    }
    return wake || (self->busy == 0 && self->stop_requested);
}

/* Answers the jobs s_pop_live set aside (mu not held) with a retryable
 * NR_EDEADLINE FAIL each, and hands them to the socket thread. */
static void s_answer_stale(nr_worker_t *self, nr_wk_list_t *stale) {
    if (!stale->head) return;
    long long now = nr_clock_mono_ms();
    for (nr_wk_item_t *it = stale->head; it; it = it->next) {
        char msg[128];
        snprintf(msg, sizeof msg, "not started: waited %lld ms in the worker, past its %u ms deadline",
                 now - it->received_ms, (unsigned)it->job.deadline_ms);
        nr_log(NR_LOG_WARN, "job %s attempt %u %s", it->job.id, (unsigned)it->job.attempt, msg);
        nr_wk_make_fail(&it->reply, &it->job, NR_EDEADLINE, 1, msg);
    }
    pthread_mutex_lock(&self->mu);
    int wake = s_hand_over(self, stale);
    pthread_mutex_unlock(&self->mu);
    if (wake) nr_wk_wake(self);
}

void *nr_wk_handler_thread(void *arg) {
    nr_worker_t *self = arg;
    int batch = self->batch;
    nr_wk_item_t **items = calloc((size_t)batch, sizeof *items);
    const nr_msg_t **jobs = calloc((size_t)batch, sizeof *jobs);
    nr_msg_t **results = calloc((size_t)batch, sizeof *results);
    int *codes = calloc((size_t)batch, sizeof *codes);
    char **errs = calloc((size_t)batch, sizeof *errs);
    char *errbuf = calloc((size_t)batch, NR_WK_ERRLEN);
    if (!items || !jobs || !results || !codes || !errs || !errbuf) {
        nr_log(NR_LOG_ERROR, "handler thread: out of memory");
        goto out;
    }
    for (int i = 0; i < batch; i++) errs[i] = errbuf + (size_t)i * NR_WK_ERRLEN;

    pthread_mutex_lock(&self->mu);
    int index = self->next_index++;
    pthread_mutex_unlock(&self->mu);
    void *tctx = self->ctx;
    char ierr[256] = "";
    int irc = self->thread_init ? self->thread_init(self->ctx, index, &tctx, ierr, sizeof ierr) : 0;
    pthread_mutex_lock(&self->mu);
    self->inited++;
    if (irc && !self->init_rc) {
        self->init_rc = irc < 0 && irc >= NR_ERRNO_MIN ? irc : NR_EINTERNAL;
        snprintf(self->init_err, sizeof self->init_err, "%s", *ierr ? ierr : nr_strerror(irc));
    }
    pthread_cond_broadcast(&self->cond);
    if (irc) {
        pthread_mutex_unlock(&self->mu);
        goto out_noinit;
    }
    for (;;) {
        while (!self->quit && !self->pending.head) pthread_cond_wait(&self->cond, &self->mu);
        if (!self->pending.head) break; /* quit and nothing left */
        nr_wk_list_t stale = {0};
        nr_wk_item_t *first = s_pop_live(self, &stale);
        if (!first) { /* every waiting job had run out of time */
            pthread_mutex_unlock(&self->mu);
            s_answer_stale(self, &stale);
            pthread_mutex_lock(&self->mu);
            continue;
        }
        int n = 0;
        items[n++] = first;
        self->busy++;
        if (batch > 1) {
            long long until = nr_clock_mono_ms() + self->settings.batch_wait_ms;
            while (n < batch) {
                if (self->pending.head) {
                    nr_wk_item_t *it = s_pop_live(self, &stale);
                    if (it) {
                        items[n++] = it;
                        self->busy++;
                    }
                    continue;
                }
                if (self->quit || nr_clock_mono_ms() >= until) break;
                struct timespec ts;
                s_deadline_ts(&ts, until);
                pthread_cond_timedwait(&self->cond, &self->mu, &ts);
            }
        }
        pthread_mutex_unlock(&self->mu);
        s_answer_stale(self, &stale);

        long long t0 = nr_clock_mono_ms();
        if (n == 1 && (batch == 1 || !self->run_batch)) {
            errs[0][0] = '\0';
            codes[0] = self->run(tctx, &items[0]->job, &items[0]->reply, errs[0], NR_WK_ERRLEN);
        } else {
            for (int i = 0; i < n; i++) {
                jobs[i] = &items[i]->job;
                results[i] = &items[i]->reply;
                codes[i] = 0;
                errs[i][0] = '\0';
            }
            self->run_batch(tctx, jobs, (size_t)n, results, codes, errs, NR_WK_ERRLEN);
        }
        long long ms = nr_clock_mono_ms() - t0;
        nr_wk_list_t finished = {0};
        for (int i = 0; i < n; i++) {
            nr_wk_finish(self, items[i], codes[i], errs[i], ms);
            nr_wk_list_push(&finished, items[i]);
        }

        pthread_mutex_lock(&self->mu);
        if (s_hand_over(self, &finished)) {
            pthread_mutex_unlock(&self->mu);
            nr_wk_wake(self);
            pthread_mutex_lock(&self->mu);
        }
    }
    pthread_mutex_unlock(&self->mu);
    if (self->thread_fini) self->thread_fini(self->ctx, tctx);
out_noinit:
out:
    free(items);
    free(jobs);
    free(results);
    free(codes);
    free(errs);
    free(errbuf);
    return NULL;
}
