/* The wire protocol: the one place that encodes and decodes messages.
 *
 * A message is a ZeroMQ multipart message: [body][payload 0][payload 1]...
 * (a ROUTER socket adds the peer identity frame in front). The body is a
 * MessagePack map with the protocol version ("v") and the command ("cmd");
 * large binary payloads (images, encoder states, audio) travel as their own
 * frames, never inside the map. Every field is validated on decode: type,
 * length, enum and size; anything malformed is rejected with an NR_E* code
 * and a message. proto/PROTOCOL.md documents every command and field. */
#ifndef NR_PROTO_H
#define NR_PROTO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define NR_PROTO_VERSION 1

#define NR_PROTO_ID_MAX 64          /* job id bytes: [A-Za-z0-9._:-] */
#define NR_PROTO_NAME_MAX 32        /* stage and worker-name bytes: [a-z0-9_-] */
#define NR_PROTO_ROUTE_MAX 8        /* stages in a route */
#define NR_PROTO_KV_MAX 64          /* entries in a key/value map */
#define NR_PROTO_KEY_MAX 64         /* bytes in a key */
#define NR_PROTO_VALUE_MAX 16384    /* bytes in a value */
#define NR_PROTO_MESSAGE_MAX 1024   /* bytes in an error message */
#define NR_PROTO_PEER_MAX 64        /* bytes of nr_msg_t.peer (longer names are cut) */
#define NR_PROTO_BODY_MAX 262144    /* bytes in the MessagePack body */
#define NR_PROTO_FRAMES_MAX 4       /* payload frames after the body */
#define NR_PROTO_PAYLOAD_MAX (64u << 20) /* bytes in all payload frames together */
#define NR_PROTO_FIELDS_MAX 32      /* keys in the body map, known and unknown */
#define NR_PROTO_VOICES_MAX 64      /* voices in a READY's kv "voices" */
#define NR_PROTO_VOICES_BYTES 2048  /* bytes of that list */
#define NR_PROTO_VOICE_NAME_MAX 32  /* bytes of one voice name: [A-Za-z0-9_.-] */
#define NR_PROTO_SPEED_MIN 0.5      /* job option "speed" (speech) */
#define NR_PROTO_SPEED_MAX 2.0
#define NR_PROTO_SPEED_BYTES 16

typedef enum {
    NR_CMD_NONE = 0,
    /* worker <-> broker */
    NR_CMD_READY,      /* worker: stage, capacity, name, kv (model, device ...) */
    NR_CMD_HEARTBEAT,  /* both ways; a busy worker keeps sending them */
    NR_CMD_JOB,        /* broker: id, stage, attempt, deadline_ms, kv = options, frame 0 = input */
    NR_CMD_RESULT,     /* worker: id, stage, attempt, kv = results, frame 0 = output */
    NR_CMD_FAIL,       /* worker: id, stage, attempt, code, message, retry */
    NR_CMD_DISCONNECT, /* both ways */
    /* client -> broker; the broker answers each with REPLY echoing seq */
    NR_CMD_SUBMIT,     /* seq, id (may be empty: broker makes one), route, kv = options, run, frame 0 = input */
    NR_CMD_STATUS,     /* seq, id */
    NR_CMD_FETCH,      /* seq, id, stage: whose output frame to return */
    NR_CMD_CANCEL,     /* seq, id */
    NR_CMD_STATS,      /* seq */
    NR_CMD_JOBS,       /* seq, run, offset: one page of a run's jobs */
    NR_CMD_REVIEW,     /* seq, id, kv = a person's review of a done job (caption, approved, speech_job) */
    NR_CMD_REPLY,      /* broker: seq, id, code, message, kv (job record or stats), frames */
    NR_CMD_COUNT
} nr_cmd_t;

typedef struct {
    char *key;   /* NUL-terminated, owned */
    char *value; /* NUL-terminated, owned */
} nr_kv_t;

typedef struct {
    uint8_t *data; /* owned */
    size_t size;
} nr_frame_t;

/* A decoded or to-be-encoded message. Fields a command does not use stay
 * zero/empty and are not put on the wire. Strings are NUL-terminated. */
typedef struct {
    nr_cmd_t cmd;
    uint64_t seq;                     /* client request number, echoed in REPLY */
    char id[NR_PROTO_ID_MAX + 1];     /* job id */
    char run[NR_PROTO_ID_MAX + 1];    /* SUBMIT, JOBS: the run (batch) a job belongs to */
    uint32_t offset;                  /* JOBS: position of the page's first job in the run */
    char stage[NR_PROTO_NAME_MAX + 1];
    char name[NR_PROTO_NAME_MAX + 1]; /* READY: worker name for logs */
    uint32_t attempt;                 /* JOB/RESULT/FAIL: lease number, for idempotency */
    uint32_t capacity;                /* READY: jobs the worker can hold at once (1..1024) */
    uint32_t deadline_ms;             /* JOB: time the worker has for it */
    int32_t code;                     /* FAIL/REPLY: 0 or an NR_E* code */
    int retry;                        /* FAIL: 1 if another attempt may succeed */
    char message[NR_PROTO_MESSAGE_MAX + 1]; /* FAIL/REPLY: error detail */
    char route[NR_PROTO_ROUTE_MAX][NR_PROTO_NAME_MAX + 1]; /* SUBMIT */
    uint32_t route_len;
    nr_kv_t *kv; /* options, results, job record or stats; owned; its room is implied by
                  * kv_len, so it grows only through nr_proto_kv_add and decoding */
    uint32_t kv_len;
    nr_frame_t frames[NR_PROTO_FRAMES_MAX];
    uint32_t frames_len;
    /* Filled by nr_proto_recv, never sent: who sent it, for per-client
     * limits and logs. The CURVE key name the ZAP handler admitted, else
     * the peer's IP address (TCP), else empty. */
    char peer[NR_PROTO_PEER_MAX + 1];
} nr_msg_t;

/* 1 when s is a job or run id: 1..NR_PROTO_ID_MAX of [A-Za-z0-9._:-]. */
int nr_proto_id_valid(const char *s);
/* 1 when v is a voice name: 1..NR_PROTO_VOICE_NAME_MAX of [A-Za-z0-9_.-]. */
int nr_proto_voice_name_valid(const char *v);
/* Checks a READY's kv "voices": 1..NR_PROTO_VOICES_MAX distinct voice
 * names joined by ",", at most NR_PROTO_VOICES_BYTES. Returns 0 (with the
 * count), NR_EPROTO or NR_ETOOBIG with a message. Encode and decode run it
 * on every READY that carries the key. */
int nr_proto_voices_check(const char *list, size_t *count, char *err, size_t errlen);

/* Parses the speech job option "speed": NULL or "" -> 1.0; else a decimal
 * number (starting with a digit, at most NR_PROTO_SPEED_BYTES) in
 * NR_PROTO_SPEED_MIN..MAX. Returns 0 or NR_EOPTION with a message. The
 * clients check it before SUBMIT, the speech worker again. */
int nr_proto_speed_check(const char *s, float *speed, char *err, size_t errlen);

/* Name of a command ("READY"), or "?" for an unknown one. */
const char *nr_proto_cmd_name(nr_cmd_t cmd);

/* Resets a message to empty (all zero). Call before first use. */
void nr_proto_msg_init(nr_msg_t *self);
/* Frees what the message owns and resets it; safe to call twice. */
void nr_proto_msg_clear(nr_msg_t *self);

/* Adds a copy of key/value; NR_ETOOBIG past the limits above. Keys are
 * [A-Za-z0-9._:-] (else NR_EINVAL); adding a key already present replaces
 * its value, since keys on the wire must be unique. */
int nr_proto_kv_add(nr_msg_t *self, const char *key, const char *value);
/* Value for key, or NULL. The pointer is the message's. */
const char *nr_proto_kv_get(const nr_msg_t *self, const char *key);
/* Adds a copy of a payload frame (size may be 0). */
int nr_proto_frame_add(nr_msg_t *self, const void *data, size_t size);
/* Adds a payload frame, taking ownership of *data (set to NULL), even when
 * it fails (then the data is freed). */
int nr_proto_frame_take(nr_msg_t *self, uint8_t **data, size_t size);

/* Encodes the body of `msg` (not its frames) into a malloc'd buffer the
 * caller frees. Validates the message first, like decode does. */
int nr_proto_encode(const nr_msg_t *msg, uint8_t **body, size_t *size, char *err, size_t errlen);

/* Decodes a body into `msg` (which must be init'ed or cleared) and checks
 * every field the command needs. Returns 0, or NR_EPROTO / NR_EVERSION /
 * NR_ETOOBIG with a message in err; `msg` is left cleared on error.
 * Frames are added separately with nr_proto_frame_add. */
int nr_proto_decode(const uint8_t *body, size_t size, nr_msg_t *msg, char *err, size_t errlen);

/* Sends msg on a ZeroMQ socket. When `identity` is not NULL (ROUTER
 * sockets) it goes first. Returns 0, NR_EIO (errno kept) or an encode error. */
int nr_proto_send(void *socket, const void *identity, size_t identity_size, const nr_msg_t *msg,
                  char *err, size_t errlen);
/* nr_proto_send that counts what waits in ZeroMQ for the peer: the body's
 * and payload frames' bytes are added to *queued when sent and taken off,
 * from ZeroMQ's I/O thread, once it has written them to the connection or
 * dropped them with it (ZeroMQ's queue limit counts messages, not bytes).
 * The frames are handed over as copies, as nr_proto_send's are. */
int nr_proto_send_counted(void *socket, const void *identity, size_t identity_size,
                          const nr_msg_t *msg, _Atomic size_t *queued, char *err, size_t errlen);

/* Receives one whole multipart message (blocking unless the socket has a
 * receive timeout). With a ROUTER socket pass an identity buffer (at least
 * 256 bytes) and receive its size. On a malformed message every part is
 * still read off the socket (nothing is left half-read), the identity is
 * still returned so the caller can answer, and the error is returned.
 * Socket errors give NR_EIO with errno kept (EAGAIN for a ZMQ_RCVTIMEO
 * timeout, EINTR for a signal). */
int nr_proto_recv(void *socket, uint8_t *identity, size_t *identity_size, nr_msg_t *msg,
                  char *err, size_t errlen);

#endif
