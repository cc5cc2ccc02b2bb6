/* The client library: request/reply with narrator-broker over one ZeroMQ
 * DEALER socket, through proto/ only (never Redis).
 *
 * Every request carries a sequence number; the reply with that number is
 * the answer, and any other (a late reply to a request that timed out) is
 * dropped. A request that gets no answer in time returns NR_ECONNECT when
 * the broker could not be reached at all, NR_ETIMEDOUT when it was reached
 * but did not answer; either way the socket is closed and a fresh one is
 * connected, so a lost reply never wedges the client.
 *
 * Replies: the functions below fill `reply` (which must be init'ed with
 * nr_proto_msg_init; it is cleared first) and return the broker's code:
 * 0, or a negative NR_E* code such as NR_ENOTFOUND or NR_EBUSY, with the
 * broker's message available from nr_client_error().
 *
 * Threads: a client is one ZeroMQ socket and is not thread-safe; give each
 * thread its own (the gateway keeps one per thread). The free functions
 * below (ids, options, records) are pure and thread-safe. Strings: a
 * returned const char * is the client's or the message's (see each), never
 * the caller's to free. */
#ifndef NR_CLIENT_H
#define NR_CLIENT_H

#include "proto/proto.h"

#include <stddef.h>

typedef struct nr_client_t nr_client_t;

#define NR_CLIENT_ID_HEX 32 /* characters in a content-hash job id */

/* Connects to `endpoint` ("tcp://127.0.0.1:5555"); `timeout_ms` (> 0) is
 * how long one request waits for its reply. Returns NULL when the endpoint
 * is malformed or ZeroMQ cannot make a socket (nothing is sent yet, so an
 * absent broker is only noticed by the first request). */
nr_client_t *nr_client_new(const char *endpoint, int timeout_ms);
/* Closes the socket and frees the client; safe to call twice. */
void nr_client_destroy(nr_client_t **self_p);

/* CURVE (proto/secure.h): encrypts the link and authenticates this client
 * to a broker that runs with --curve-allow-dir. `server_key` is the
 * broker's public key (Z85 text or a .pub file), `secret_key_file` this
 * client's NAME.key from narrator-keygen; both NULL/"" turns CURVE off.
 * The keys are checked now; the socket is made again with them. Returns 0,
 * NR_EINVAL (one without the other, bad or unreadable key file: detail in
 * nr_client_error) or NR_EUNSUPPORTED (libzmq without CURVE). A broker that
 * refuses the key is never reached: requests fail with NR_ECONNECT. */
int nr_client_set_curve(nr_client_t *self, const char *server_key, const char *secret_key_file);

/* The endpoint the client talks to (lives as long as the client). */
const char *nr_client_endpoint(const nr_client_t *self);
/* Detail of the last error ("cannot reach the broker at tcp://...: is
 * narrator-broker running?", or the broker's message); "" when none. The
 * text is the client's and changes with its next request. */
const char *nr_client_error(const nr_client_t *self);
/* Changes the per-request timeout (> 0 ms). */
void nr_client_set_timeout(nr_client_t *self, int timeout_ms);
/* The backoff of a NR_EBUSY retry (here and in narrate's submit window):
 * 100 ms doubling while under 2 s, so its last step is 3.2 s; each wait is
 * jittered into [d/2, d] (common/backoff.h). */
#define NR_CLIENT_BUSY_FIRST_MS 100
#define NR_CLIENT_BUSY_MAX_MS 3200

/* How long nr_client_submit keeps retrying a NR_EBUSY or NR_EREDIS reply
 * (see nr_client_retryable), with the backoff above; 0 (the default)
 * returns it at once. */
void nr_client_set_busy_wait(nr_client_t *self, int max_wait_ms);

/* Sends `request` (its seq is set here) and waits for the matching REPLY.
 * Returns the transport error (NR_ECONNECT, NR_ETIMEDOUT, NR_EIO, an encode
 * error) or else the reply's code. */
int nr_client_request(nr_client_t *self, nr_msg_t *request, nr_msg_t *reply);

/* 1 for a broker answer that means "not now, send it again": NR_EBUSY
 * (queue full, rate limit, shutting down) and NR_EREDIS (the broker cannot
 * reach Redis: "redis unreachable (...); retry later", or a write that did
 * not go through, so nothing was acknowledged). Resending is safe: a job
 * the broker already holds answers "existing". */
int nr_client_retryable(int code);

/* SUBMIT: `id` may be NULL or "" (the broker makes one); `route` is a
 * comma-separated list of stages ("vision,text,speech"); `options` holds
 * `n_options` key/value pairs; `input` is frame 0. The reply's kv is the
 * job record; "existing" = "1" when the id was already known and not
 * failed or cancelled (nothing new was queued). This is
 * nr_client_submit_batch with one job. */
int nr_client_submit(nr_client_t *self, const char *id, const char *route,
                     const nr_kv_t *options, size_t n_options, const void *input, size_t size,
                     nr_msg_t *reply);
/* One job of nr_client_submit_batch: the arguments of nr_client_submit.
 * Borrowed: nothing is copied until the job's SUBMIT is built and sent. */
typedef struct {
    const char *id;         /* NULL or "": the broker makes one */
    const char *route;      /* "vision,text,speech" */
    const nr_kv_t *options; /* n_options key/value pairs */
    size_t n_options;
    const void *input;      /* frame 0, `size` bytes */
    size_t size;
    const char *run;        /* NULL or "": in no run; else the run (batch) it joins */
} nr_client_job_t;

/* Pipelined SUBMIT: sends the `n` jobs back to back on the one socket (at
 * most 256 unanswered at a time) and collects their REPLYs, matched by seq
 * in whatever order they come, so the broker can commit them together.
 * Every job ends with its own result: codes[i] is 0 or a negative NR_E*
 * code, and replies[i] (n messages, init'ed; cleared first) holds its REPLY,
 * or for a failure that did not come from the broker (a bad id or route:
 * NR_EINVAL; a transport error) code and message only, with cmd
 * NR_CMD_NONE. NR_EBUSY and NR_EREDIS answers are sent again, all together,
 * with the backoff of nr_client_submit until its busy wait is spent; then
 * they keep that code. The timeout is per reply: no reply for timeout_ms fails every
 * job still unanswered with NR_ETIMEDOUT (NR_ECONNECT when the broker was
 * never reached) and drops the socket, as nr_client_request does. A REPLY
 * with seq 0 (a request the broker could not decode) cannot be attributed
 * while several are in flight: every job still unanswered then fails with
 * NR_EPROTO (not known to be queued; resubmitting an id is safe) and the
 * socket is dropped. Returns the transport error that cut the batch short,
 * else the first non-zero code in job order (0 when all are 0), with its
 * detail in nr_client_error(). n = 0 returns 0. */
int nr_client_submit_batch(nr_client_t *self, const nr_client_job_t *jobs, size_t n,
                           nr_msg_t *replies, int *codes);
/* STATUS: the reply's kv is the job record (see CONTRACTS/PROTOCOL). */
int nr_client_status(nr_client_t *self, const char *id, nr_msg_t *reply);
/* FETCH: the reply's kv is the job record, frame 0 the stage's output. */
int nr_client_fetch(nr_client_t *self, const char *id, const char *stage, nr_msg_t *reply);
/* CANCEL: the reply's kv is the job record after the cancel. */
int nr_client_cancel(nr_client_t *self, const char *id, nr_msg_t *reply);
/* STATS: the reply's kv holds queue.<stage>, workers.<stage>, jobs.<state>. */
int nr_client_stats(nr_client_t *self, nr_msg_t *reply);
/* JOBS: one page of run's jobs from position offset: the reply's kv holds
 * "total", "next" (absent on the last page) and per job its position ->
 * "<state> <id>" (PROTOCOL.md). NR_ENOTFOUND for an unknown run. */
int nr_client_jobs(nr_client_t *self, const char *run, uint32_t offset, nr_msg_t *reply);
/* REVIEW of a done job: caption (NULL: unchanged), approved (-1: unchanged,
 * 0, 1) and speech_job (NULL: none); the reply's kv is the record. */
int nr_client_review(nr_client_t *self, const char *id, const char *caption, int approved,
                     const char *speech_job, nr_msg_t *reply);
/* A new run id: "run-" + UTC date and time + "-" + 8 random hex characters
 * ("run-20261206T071500Z-1a2b3c4d"), so runs sort by when they began. */
int nr_client_new_run_id(char out[NR_PROTO_ID_MAX + 1]);

/* Content-hash job id: BLAKE2b-128 (libsodium crypto_generichash, 16-byte
 * digest) written as 32 lower-case hex characters into out[33], over
 *   "narrator-id-v1" 0x00, the input size as 8 bytes little-endian, the
 *   input bytes, the route, 0x00, then for each option in byte order of its
 *   key: key 0x00 value 0x00.
 * The same input, route and options always give the same id; the order the
 * options are given in does not matter. Returns 0, NR_EINVAL or NR_ENOMEM. */
int nr_client_content_id(const void *input, size_t size, const char *route,
                         const nr_kv_t *options, size_t n_options, char out[NR_CLIENT_ID_HEX + 1]);
/* A random job id (32 hex characters from libsodium's randombytes). */
int nr_client_random_id(char out[NR_CLIENT_ID_HEX + 1]);

/* Job options. The content-hash id covers them, so every caller (narrate,
 * the gateway) must name and write them the same way: they go through
 * nr_client_options() only. */
#define NR_CLIENT_BEAMS_MAX 16L
#define NR_CLIENT_LENGTH_MAX 1024L
#define NR_CLIENT_VOICE_MAX 32
#define NR_CLIENT_PROMPT_MAX 256 /* bytes of a caption prompt */
#define NR_CLIENT_LANGUAGE_MAX 16 /* bytes of a caption language code */

typedef struct {
    nr_kv_t kv[6]; /* num_beams, max_length, voice, prompt, speed, language: those given, in that order */
    size_t n;
    char beams[24], length[24], speed[24];
} nr_client_options_t;

/* Fills *out with the options to send and hash: "num_beams" and
 * "max_length" in decimal when > 0, "voice" and "prompt" (the text the
 * caption starts from, BLIP's conditional captioning) when not NULL or "".
 * The kv borrow from *out, `voice` and `prompt`, which must outlive them.
 * Returns 0, or NR_EOPTION with the reason in err (a prompt that
 * nr_client_prompt_check refuses, a voice nr_client_voice_valid refuses);
 * *out is then empty. */
int nr_client_options(nr_client_options_t *out, long num_beams, long max_length, const char *voice,
                      const char *prompt, char *err, size_t errlen);
/* Adds the speech option "speed" after nr_client_options(): NULL or "" adds
 * nothing; else it must pass nr_proto_speed_check (0.5..2.0) and is
 * written as "%g" ("1.50" -> "1.5", so equal speeds hash alike). Returns 0
 * or NR_EOPTION with the reason. */
int nr_client_options_speed(nr_client_options_t *out, const char *speed, char *err, size_t errlen);
/* 1 when `voice` is 1..NR_CLIENT_VOICE_MAX letters, digits, '_', '-' or '.'. */
int nr_client_voice_valid(const char *voice);
/* 0 when `prompt` is 1..NR_CLIENT_PROMPT_MAX bytes of valid UTF-8 without
 * control characters (C0, DEL, C1: a prompt is one line of text); else
 * NR_EOPTION with the reason in err ("prompt is 300 bytes, at most 256"). */
int nr_client_prompt_check(const char *prompt, char *err, size_t errlen);
/* 1 when `lang` is a caption language code as the text worker takes it
 * (models/captioner.h): 2-3 lower-case letters, then "-" subtags of 2-8
 * letters or digits ("es", "pt-BR", "zh-TW"), 1..NR_CLIENT_LANGUAGE_MAX bytes. */
int nr_client_language_valid(const char *lang);
/* Appends "language" (a PaliGemma captioner's "caption <language>") to
 * options nr_client_options filled, when `lang` is not NULL or ""; lang
 * must outlive them. 0, or NR_EOPTION with the reason in err. */
int nr_client_options_language(nr_client_options_t *out, const char *lang, char *err, size_t errlen);

/* The fields of a job record (the kv of a STATUS, CANCEL, FETCH or SUBMIT
 * reply) that clients read. The strings borrow from the message and live
 * as long as it does; NULL when absent. */
typedef struct {
    const char *id, *state, *stage, *route, *error, *error_message, *caption;
    int existing;                     /* "existing" is "1" (a SUBMIT of a known job) */
    int final;                        /* state is done, failed or cancelled */
    long long created_ms, updated_ms; /* -1 when absent */
} nr_client_record_t;

/* Reads a reply's record into *out (reply may be NULL: all absent). */
void nr_client_record(const nr_msg_t *reply, nr_client_record_t *out);

/* 1 when `id` is a valid job id for the wire (1..NR_PROTO_ID_MAX bytes of
 * [A-Za-z0-9._:-]), else 0. */
int nr_client_id_valid(const char *id);

#endif
