/* The client library: request/reply with the broker over a DEALER socket. */
#include "client/client.h"
#include "proto/secure.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define S_ENDPOINT_MAX 256

struct nr_client_t {
    void *ctx;                      /* ZeroMQ context, owned */
    void *sock;                     /* DEALER, NULL until (re)connected */
    char endpoint[S_ENDPOINT_MAX];
    int timeout_ms;                 /* per request */
    int busy_wait_ms;               /* total NR_EBUSY retry time in submit */
    uint64_t seq;                   /* last request number */
    char err[NR_PROTO_MESSAGE_MAX + S_ENDPOINT_MAX + 128];
    int curve;                      /* CURVE on (proto/secure.h) */
    nr_secure_settings_t secure;
};

static void s_close(nr_client_t *self) {
    if (self->sock) {
        zmq_close(self->sock);
        self->sock = NULL;
    }
}

/* Makes a fresh DEALER socket and connects it. ZMQ_IMMEDIATE makes a send
 * wait (up to the timeout) for a live connection instead of queueing, so an
 * absent broker shows up as a failed send. Returns 0 or NR_EINVAL (bad
 * endpoint) / NR_EIO, with the detail in self->err. */
static int s_connect(nr_client_t *self) {
    s_close(self);
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!self->sock)
        return nr_seterr(self->err, sizeof self->err, NR_EIO, "cannot make a ZeroMQ socket: %s",
                         zmq_strerror(errno));
    int zero = 0, one = 1, ivl = 100, ivl_max = 1000;
    zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(self->sock, ZMQ_SNDTIMEO, &self->timeout_ms, sizeof self->timeout_ms);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    if (self->curve) {
        int rc = nr_secure_client(self->sock, &self->secure, self->err, sizeof self->err);
        if (rc) {
            s_close(self);
            return rc;
        }
    }
    if (zmq_connect(self->sock, self->endpoint) != 0) {
        int e = errno;
        s_close(self);
        return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad broker endpoint '%s': %s",
                         self->endpoint, zmq_strerror(e));
    }
    return 0;
}

nr_client_t *nr_client_new(const char *endpoint, int timeout_ms) {
    if (!endpoint || !*endpoint || strlen(endpoint) >= S_ENDPOINT_MAX || timeout_ms <= 0)
        return NULL;
    if (sodium_init() < 0) return NULL;
    nr_client_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    snprintf(self->endpoint, sizeof self->endpoint, "%s", endpoint);
    self->timeout_ms = timeout_ms;
    /* Start numbering somewhere random, so replies meant for an earlier
     * client process that had the same identity can never match. */
    self->seq = ((uint64_t)randombytes_random() << 20) + 1;
    self->ctx = zmq_ctx_new();
    if (!self->ctx) goto err;
    if (s_connect(self) != 0) goto err;
    return self;
err:
    nr_client_destroy(&self);
    return NULL;
}

void nr_client_destroy(nr_client_t **self_p) {
    if (!self_p || !*self_p) return;
    nr_client_t *self = *self_p;
    s_close(self);
    if (self->ctx) zmq_ctx_term(self->ctx);
    free(self);
    *self_p = NULL;
}

int nr_client_set_curve(nr_client_t *self, const char *server_key, const char *secret_key_file) {
    if (!self) return NR_EINVAL;
    nr_secure_settings_t sec;
    memset(&sec, 0, sizeof sec);
    if ((server_key && strlen(server_key) >= sizeof sec.server_key) ||
        (secret_key_file && strlen(secret_key_file) >= sizeof sec.secret_key_file))
        return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "CURVE key path too long");
    snprintf(sec.server_key, sizeof sec.server_key, "%s", server_key ? server_key : "");
    snprintf(sec.secret_key_file, sizeof sec.secret_key_file, "%s", secret_key_file ? secret_key_file : "");
    int on = nr_secure_enabled(&sec, 0, self->err, sizeof self->err);
    if (on < 0) return on;
    if (on) {
        char pub[NR_SECURE_KEY_Z85 + 1];
        int rc = nr_secure_read_keyfile(sec.secret_key_file, pub, NULL, self->err, sizeof self->err);
        if (!rc) rc = nr_secure_read_public(sec.server_key, pub, self->err, sizeof self->err);
        if (rc) return rc;
    }
    self->secure = sec;
    self->curve = on;
    return s_connect(self);
}

const char *nr_client_endpoint(const nr_client_t *self) { return self ? self->endpoint : ""; }
const char *nr_client_error(const nr_client_t *self) { return self ? self->err : ""; }

void nr_client_set_timeout(nr_client_t *self, int timeout_ms) {
    if (!self || timeout_ms <= 0) return;
    self->timeout_ms = timeout_ms;
    if (self->sock)
        zmq_setsockopt(self->sock, ZMQ_SNDTIMEO, &self->timeout_ms, sizeof self->timeout_ms);
}

void nr_client_set_busy_wait(nr_client_t *self, int max_wait_ms) {
    if (self) self->busy_wait_ms = max_wait_ms > 0 ? max_wait_ms : 0;
}

static int s_unreachable(nr_client_t *self) {
    s_close(self); /* a fresh socket next time; nothing stale stays queued */
    return nr_seterr(self->err, sizeof self->err, NR_ECONNECT,
                     "cannot reach the broker at %s: is narrator-broker running?", self->endpoint);
}

/* No answer in time: the reply may still come later, so drop this socket
 * (and with it anything late) and connect afresh next time. */
static int s_timed_out(nr_client_t *self) {
    s_close(self);
    return nr_seterr(self->err, sizeof self->err, NR_ETIMEDOUT,
                     "no answer from the broker at %s within %d ms: is narrator-broker running?",
                     self->endpoint, self->timeout_ms);
}

/* Sends msg. Returns 0, NR_ECONNECT when the broker cannot be reached
 * (the socket is dropped), or why msg cannot be sent; self->err says it. */
static int s_send(nr_client_t *self, const nr_msg_t *msg) {
    char perr[NR_PROTO_MESSAGE_MAX + 1] = "";
    int rc = nr_proto_send(self->sock, NULL, 0, msg, perr, sizeof perr);
    if (rc == NR_EIO) {
        nr_log(NR_LOG_DEBUG, "send to %s failed: %s (%s)", self->endpoint, perr, zmq_strerror(errno));
        return s_unreachable(self);
    }
    if (rc) return nr_seterr(self->err, sizeof self->err, rc, "cannot send %s: %s",
                             nr_proto_cmd_name(msg->cmd), *perr ? perr : nr_strerror(rc));
    return 0;
}

/* Waits until the socket has something to read or the deadline (ms) passes,
 * polling again after EINTR. Returns 1 when there is something, 0 at the
 * deadline, or NR_EIO when poll fails: then the socket is closed and
 * self->err says why. */
static int s_wait_in(nr_client_t *self, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - nr_clock_mono_ms();
        if (left <= 0) return 0;
        zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&item, 1, (long)left);
        if (n > 0) return 1;
        if (n == 0) return 0;
        if (errno == EINTR) continue;
        int e = errno;
        s_close(self);
        return nr_seterr(self->err, sizeof self->err, NR_EIO, "poll failed: %s", zmq_strerror(e));
    }
}

int nr_client_request(nr_client_t *self, nr_msg_t *request, nr_msg_t *reply) {
    if (!self || !request || !reply) return NR_EINVAL;
    self->err[0] = '\0';
    nr_proto_msg_clear(reply);
    if (!self->sock) {
        int rc = s_connect(self);
        if (rc) return rc;
    }
    uint64_t seq = ++self->seq;
    request->seq = seq;
    int rc = s_send(self, request);
    if (rc) return rc;

    char perr[NR_PROTO_MESSAGE_MAX + 1] = "";
    int64_t deadline = nr_clock_mono_ms() + self->timeout_ms;
    for (;;) {
        rc = s_wait_in(self, deadline);
        if (rc < 0) return rc;
        if (rc == 0) break;
        nr_proto_msg_clear(reply);
        rc = nr_proto_recv(self->sock, NULL, NULL, reply, perr, sizeof perr);
        if (rc) {
            nr_log(NR_LOG_WARN, "dropped a malformed message from the broker: %s", perr);
            nr_proto_msg_clear(reply);
            continue;
        }
        /* A request the broker could not decode is answered with seq 0; with
         * one request in flight at a time, that answer is this request's. */
        int undecodable = reply->cmd == NR_CMD_REPLY && reply->seq == 0 && reply->code != 0;
        if (reply->cmd != NR_CMD_REPLY || (reply->seq != seq && !undecodable)) {
            nr_log(NR_LOG_DEBUG, "dropped a stale %s (seq %llu, waiting for %llu)",
                   nr_proto_cmd_name(reply->cmd), (unsigned long long)reply->seq,
                   (unsigned long long)seq);
            nr_proto_msg_clear(reply);
            continue;
        }
        if (reply->code != 0)
            nr_seterr(self->err, sizeof self->err, reply->code, "%s",
                      reply->message[0] ? reply->message : nr_strerror(reply->code));
        return reply->code;
    }
    nr_proto_msg_clear(reply);
    return s_timed_out(self);
}

/* Splits "a,b,c" into msg->route; NR_EINVAL on an empty or too long name. */
static int s_set_route(nr_client_t *self, nr_msg_t *msg, const char *route) {
    msg->route_len = 0;
    const char *p = route;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > NR_PROTO_NAME_MAX || msg->route_len >= NR_PROTO_ROUTE_MAX)
            return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad route '%s'", route);
        for (uint32_t k = 0; k < msg->route_len; k++)
            if (strlen(msg->route[k]) == len && !strncmp(msg->route[k], p, len))
                return nr_seterr(self->err, sizeof self->err, NR_EINVAL,
                                 "route '%s' names a stage twice", route);
        memcpy(msg->route[msg->route_len], p, len);
        msg->route[msg->route_len][len] = '\0';
        msg->route_len++;
        if (!comma) break;
        p = comma + 1;
        if (!*p) return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad route '%s'", route);
    }
    if (msg->route_len == 0)
        return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "empty route");
    return 0;
}

/* Builds the SUBMIT for one job into msg (init'ed). Returns 0 or NR_EINVAL /
 * NR_ETOOBIG with the detail in self->err; nothing is sent. */
static int s_submit_msg(nr_client_t *self, const nr_client_job_t *job, nr_msg_t *msg) {
    msg->cmd = NR_CMD_SUBMIT;
    if (!job->route || (job->size && !job->input) || (job->n_options && !job->options))
        return nr_seterr(self->err, sizeof self->err, NR_EINVAL,
                         "bad job: no route, input or options missing");
    if (job->id && *job->id) {
        if (!nr_client_id_valid(job->id))
            return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad job id '%s'", job->id);
        memcpy(msg->id, job->id, strlen(job->id) + 1);
    }
    if (job->run && *job->run) {
        if (!nr_client_id_valid(job->run))
            return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad run id '%s'", job->run);
        memcpy(msg->run, job->run, strlen(job->run) + 1);
    }
    int rc = s_set_route(self, msg, job->route);
    if (rc) return rc;
    for (size_t i = 0; i < job->n_options; i++)
        if ((rc = nr_proto_kv_add(msg, job->options[i].key, job->options[i].value)))
            return nr_seterr(self->err, sizeof self->err, rc, "too many or too long options");
    if ((rc = nr_proto_frame_add(msg, job->input, job->size)))
        return nr_seterr(self->err, sizeof self->err, rc, "cannot attach the input (%zu bytes)",
                         job->size);
    return 0;
}

/* Puts a failure that did not come from the broker (a bad job, a transport
 * error) into a job's reply: cmd stays NR_CMD_NONE, code and message set. */
static void s_fail_reply(nr_msg_t *reply, int code, const char *message) {
    nr_proto_msg_clear(reply);
    reply->code = code;
    if (!message || !*message) message = nr_strerror(code);
    snprintf(reply->message, sizeof reply->message, "%s", message);
}

/* One round of a batch: the jobs todo[0..n) are sent back to back, at most
 * S_INFLIGHT_MAX unanswered at a time (so the broker's replies never pile
 * up past ZeroMQ's high-water marks, where a ROUTER drops them), and their
 * REPLYs matched by seq: todo[k] is sent with seq base + k. */
#define S_INFLIGHT_MAX 256
/* And at most this much input unanswered (a job bigger than it goes alone):
 * with 64 inputs of 256 KiB in flight the broker pipelined 16 MB to Redis
 * per turn and jobs/s fell 12% against one at a time; small inputs still
 * travel 256 at once. */
#define S_INFLIGHT_BYTES (1u << 20)

typedef struct {
    const nr_client_job_t *jobs;
    nr_msg_t *replies;
    int *codes;
    size_t *todo;     /* job indexes of this round, in send order */
    size_t n;         /* entries in todo */
    uint8_t *waiting; /* per todo entry: sent and not answered yet */
    size_t sent;      /* todo entries sent (or failed before sending) */
    size_t pending;   /* sent and not answered */
    size_t pending_bytes; /* their input bytes */
    uint64_t base;    /* seq of todo[0] */
} s_round_t;

/* Ends the round for every job not answered yet (sent or not) with `code`
 * and the detail in self->err; the caller returns at once. */
static void s_round_fail(nr_client_t *self, s_round_t *r, int code) {
    for (size_t k = 0; k < r->n; k++) {
        if (k < r->sent && !r->waiting[k]) continue;
        size_t j = r->todo[k];
        r->codes[j] = code;
        s_fail_reply(&r->replies[j], code, self->err);
    }
}

/* Gives todo entry k its answer (msg, moved in) and its code. */
static void s_round_answer(s_round_t *r, size_t k, nr_msg_t *msg) {
    size_t j = r->todo[k];
    nr_proto_msg_clear(&r->replies[j]);
    r->replies[j] = *msg;
    nr_proto_msg_init(msg);
    r->codes[j] = r->replies[j].code;
    if (r->codes[j] && !r->replies[j].message[0])
        s_fail_reply(&r->replies[j], r->codes[j], NULL);
    r->waiting[k] = 0;
    r->pending--;
    r->pending_bytes -= r->jobs[j].size;
}

/* Reads one message off the socket. Returns 1 when it answered a job of
 * the round, 0 when it was dropped (malformed, stale), or NR_EPROTO when
 * the broker could not decode one of several requests in flight: a REPLY
 * with seq 0 cannot be attributed then, so rather than guess, every job not
 * yet answered fails with NR_EPROTO and the socket is dropped (so no late
 * answer to them can reach a later request). */
static int s_round_recv(nr_client_t *self, s_round_t *r) {
    nr_msg_t msg;
    nr_proto_msg_init(&msg);
    char perr[NR_PROTO_MESSAGE_MAX + 1] = "";
    int rc = nr_proto_recv(self->sock, NULL, NULL, &msg, perr, sizeof perr);
    if (rc) {
        nr_log(NR_LOG_WARN, "dropped a malformed message from the broker: %s", perr);
        nr_proto_msg_clear(&msg);
        return 0;
    }
    if (msg.cmd == NR_CMD_REPLY && msg.seq == 0 && msg.code != 0 && r->pending > 0) {
        if (r->pending == 1) { /* the only request in flight: it is its answer */
            size_t k = 0;
            while (!r->waiting[k]) k++;
            s_round_answer(r, k, &msg);
            return 1;
        }
        nr_seterr(self->err, sizeof self->err, NR_EPROTO,
                  "the broker could not decode one of %zu SUBMITs in flight (%s); not knowing "
                  "which, none of them is known to be queued",
                  r->pending, msg.message[0] ? msg.message : nr_strerror(msg.code));
        nr_proto_msg_clear(&msg);
        s_close(self);
        s_round_fail(self, r, NR_EPROTO);
        return NR_EPROTO;
    }
    uint64_t k = msg.seq - r->base; /* wraps to huge below base */
    if (msg.cmd != NR_CMD_REPLY || msg.seq < r->base || k >= r->sent || !r->waiting[k]) {
        nr_log(NR_LOG_DEBUG, "dropped a stale %s (seq %llu)", nr_proto_cmd_name(msg.cmd),
               (unsigned long long)msg.seq);
        nr_proto_msg_clear(&msg);
        return 0;
    }
    s_round_answer(r, (size_t)k, &msg);
    return 1;
}

/* Runs one round. Every job of it ends with a code: the broker's, a local
 * error, or the transport error this returns (NR_ECONNECT, NR_ETIMEDOUT,
 * NR_EIO, NR_EPROTO, see s_round_recv) for all jobs not answered by then. */
static int s_round(nr_client_t *self, s_round_t *r) {
    r->sent = r->pending = r->pending_bytes = 0;
    int rc = self->sock ? 0 : s_connect(self);
    if (rc) {
        s_round_fail(self, r, rc);
        return rc;
    }
    r->base = self->seq + 1;
    int64_t deadline = nr_clock_mono_ms() + self->timeout_ms;
    while (r->sent < r->n || r->pending > 0) {
        if (r->sent < r->n &&
            (r->pending == 0 || (r->pending < S_INFLIGHT_MAX &&
                                 r->pending_bytes + r->jobs[r->todo[r->sent]].size <= S_INFLIGHT_BYTES))) {
            size_t k = r->sent++, j = r->todo[k];
            r->waiting[k] = 0;
            nr_msg_t msg;
            nr_proto_msg_init(&msg);
            msg.seq = ++self->seq; /* == base + k */
            rc = s_submit_msg(self, &r->jobs[j], &msg);
            if (!rc) rc = s_send(self, &msg);
            nr_proto_msg_clear(&msg);
            if (rc == NR_ECONNECT) { /* the broker is unreachable (s_submit_msg never says so) */
                r->waiting[k] = 1;
                s_round_fail(self, r, rc);
                return rc;
            }
            if (rc) { /* this job only; the others go on */
                r->codes[j] = rc;
                s_fail_reply(&r->replies[j], rc, self->err);
                continue;
            }
            r->waiting[k] = 1;
            r->pending++;
            r->pending_bytes += r->jobs[j].size;
            deadline = nr_clock_mono_ms() + self->timeout_ms;
            /* Read what has come back already, without waiting. */
            int events = 0;
            size_t len = sizeof events;
            if (zmq_getsockopt(self->sock, ZMQ_EVENTS, &events, &len) != 0 || !(events & ZMQ_POLLIN))
                continue;
        } else {
            rc = s_wait_in(self, deadline);
            if (rc < 0) {
                s_round_fail(self, r, rc);
                return rc;
            }
            if (rc == 0) {
                rc = s_timed_out(self);
                s_round_fail(self, r, rc);
                return rc;
            }
        }
        rc = s_round_recv(self, r);
        if (rc < 0) return rc;
        if (rc > 0) deadline = nr_clock_mono_ms() + self->timeout_ms; /* progress: wait afresh */
    }
    return 0;
}

int nr_client_submit_batch(nr_client_t *self, const nr_client_job_t *jobs, size_t n,
                           nr_msg_t *replies, int *codes) {
    if (!self) return NR_EINVAL;
    if (n == 0) return 0;
    if (!jobs || !replies || !codes) return NR_EINVAL;
    self->err[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        nr_proto_msg_clear(&replies[i]);
        codes[i] = 0;
    }
    size_t *todo = malloc(n * (sizeof *todo + 1)); /* and the waiting flags after it */
    uint8_t *waiting = todo ? (uint8_t *)(todo + n) : NULL;
    int rc = 0;
    if (!todo) {
        rc = nr_seterr(self->err, sizeof self->err, NR_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            codes[i] = rc;
            s_fail_reply(&replies[i], rc, self->err);
        }
        goto done;
    }
    for (size_t i = 0; i < n; i++) todo[i] = i;
    s_round_t r = {.jobs = jobs, .replies = replies, .codes = codes, .todo = todo, .n = n, .waiting = waiting};
    int64_t give_up = nr_clock_mono_ms() + self->busy_wait_ms;
    nr_backoff_t backoff;
    nr_backoff_init(&backoff, NR_CLIENT_BUSY_FIRST_MS, NR_CLIENT_BUSY_MAX_MS);
    for (;;) {
        if ((rc = s_round(self, &r))) goto done; /* self->err says why */
        size_t busy = 0;
        for (size_t k = 0; k < r.n; k++)
            if (nr_client_retryable(codes[todo[k]])) todo[busy++] = todo[k];
        if (busy == 0 || nr_clock_mono_ms() >= give_up) break;
        r.n = busy;
        int64_t wait = nr_backoff_jitter(nr_backoff_next(&backoff), randombytes_random());
        int64_t left = give_up - nr_clock_mono_ms();
        if (wait > left) wait = left;
        nr_log(NR_LOG_DEBUG, "broker busy (or without redis) for %zu of %zu jobs, retrying in %" PRId64 " ms", busy, n,
               wait);
        nr_clock_sleep_ms(wait);
    }
    for (size_t i = 0; i < n && !rc; i++)
        if (codes[i]) rc = nr_seterr(self->err, sizeof self->err, codes[i], "%s", replies[i].message);
done:
    free(todo);
    return rc;
}

int nr_client_retryable(int code) { return code == NR_EBUSY || code == NR_EREDIS; }

int nr_client_submit(nr_client_t *self, const char *id, const char *route,
                     const nr_kv_t *options, size_t n_options, const void *input, size_t size,
                     nr_msg_t *reply) {
    if (!self || !route || !reply || (size && !input) || (n_options && !options)) return NR_EINVAL;
    nr_client_job_t job = {id, route, options, n_options, input, size, NULL};
    int code = 0;
    return nr_client_submit_batch(self, &job, 1, reply, &code);
}

static int s_simple(nr_client_t *self, nr_cmd_t cmd, const char *id, const char *stage,
                    nr_msg_t *reply) {
    if (!self || !reply) return NR_EINVAL;
    if (cmd != NR_CMD_STATS && !nr_client_id_valid(id))
        return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad job id '%s'", id ? id : "");
    if (stage && (!*stage || strlen(stage) > NR_PROTO_NAME_MAX))
        return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad stage name '%s'", stage);
    nr_msg_t msg;
    nr_proto_msg_init(&msg);
    msg.cmd = cmd;
    if (id) memcpy(msg.id, id, strlen(id) + 1);
    if (stage) memcpy(msg.stage, stage, strlen(stage) + 1);
    int rc = nr_client_request(self, &msg, reply);
    nr_proto_msg_clear(&msg);
    return rc;
}

int nr_client_status(nr_client_t *self, const char *id, nr_msg_t *reply) {
    return s_simple(self, NR_CMD_STATUS, id, NULL, reply);
}

int nr_client_fetch(nr_client_t *self, const char *id, const char *stage, nr_msg_t *reply) {
    if (!stage) return NR_EINVAL;
    return s_simple(self, NR_CMD_FETCH, id, stage, reply);
}

int nr_client_cancel(nr_client_t *self, const char *id, nr_msg_t *reply) {
    return s_simple(self, NR_CMD_CANCEL, id, NULL, reply);
}

int nr_client_stats(nr_client_t *self, nr_msg_t *reply) {
    return s_simple(self, NR_CMD_STATS, NULL, NULL, reply);
}

int nr_client_jobs(nr_client_t *self, const char *run, uint32_t offset, nr_msg_t *reply) {
    if (!self || !reply) return NR_EINVAL;
    if (!nr_client_id_valid(run))
        return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad run id '%s'", run ? run : "");
    nr_msg_t msg;
    nr_proto_msg_init(&msg);
    msg.cmd = NR_CMD_JOBS;
    memcpy(msg.run, run, strlen(run) + 1);
    msg.offset = offset;
    int rc = nr_client_request(self, &msg, reply);
    nr_proto_msg_clear(&msg);
    return rc;
}

int nr_client_review(nr_client_t *self, const char *id, const char *caption, int approved,
                     const char *speech_job, nr_msg_t *reply) {
    if (!self || !reply) return NR_EINVAL;
    if (!nr_client_id_valid(id))
        return nr_seterr(self->err, sizeof self->err, NR_EINVAL, "bad job id '%s'", id ? id : "");
    nr_msg_t msg;
    nr_proto_msg_init(&msg);
    msg.cmd = NR_CMD_REVIEW;
    memcpy(msg.id, id, strlen(id) + 1);
    int rc = 0;
    if (caption) rc = nr_proto_kv_add(&msg, "caption", caption);
    if (!rc && approved >= 0) rc = nr_proto_kv_add(&msg, "approved", approved ? "1" : "0");
    if (!rc && speech_job) rc = nr_proto_kv_add(&msg, "speech_job", speech_job);
    if (rc) rc = nr_seterr(self->err, sizeof self->err, rc, "review of %s: a value is too long", id);
    else rc = nr_client_request(self, &msg, reply);
    nr_proto_msg_clear(&msg);
    return rc;
}
