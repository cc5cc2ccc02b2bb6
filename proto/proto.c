/* The wire protocol codec: MessagePack bodies (ZeroMQ framing: transport.c)
 * and the one validator that both the encoder and the decoder run.
 *
 * Decoding happens in three steps: a structural scan of the raw bytes (so
 * msgpack-c never sees a body whose container headers promise more entries
 * than there are bytes), msgpack-c's unpacker, then a walk over the map that
 * copies the fields the command uses into an nr_msg_t. The finished message
 * then goes through s_check_msg(), the same function nr_proto_encode() runs
 * before it writes a byte, so the two sides cannot drift apart. */
#include "proto/proto_internal.h"

#include "common/error.h"

#include <errno.h>
#include <limits.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Body fields other than "v" and "cmd"; bit i is s_fields[i]. */
enum {
    F_SEQ = 1u << 0,
    F_ID = 1u << 1,
    F_STAGE = 1u << 2,
    F_NAME = 1u << 3,
    F_ATTEMPT = 1u << 4,
    F_CAPACITY = 1u << 5,
    F_DEADLINE = 1u << 6,
    F_CODE = 1u << 7,
    F_RETRY = 1u << 8,
    F_MESSAGE = 1u << 9,
    F_ROUTE = 1u << 10,
    F_KV = 1u << 11,
    F_RUN = 1u << 12,
    F_OFFSET = 1u << 13,
};

static const char *const s_fields[] = {
    "seq", "id", "stage", "name", "attempt", "capacity", "deadline_ms", "code", "retry", "message", "route", "kv",
    "run", "offset",
};
#define S_FIELD_COUNT (sizeof s_fields / sizeof s_fields[0])

#define S_CAPACITY_MAX 1024

/* What each command may carry, what it must carry, and how many payload
 * frames may follow its body. Fields outside `allows` are ignored on
 * decode and refused on encode. */
static const struct {
    const char *name;
    unsigned allows;
    unsigned needs;
    uint32_t frames_max;
} s_cmds[NR_CMD_COUNT] = {
    [NR_CMD_NONE] = {"?", 0, 0, 0},
    [NR_CMD_READY] = {"READY", F_STAGE | F_CAPACITY | F_NAME | F_KV, F_STAGE | F_CAPACITY, 0},
    [NR_CMD_HEARTBEAT] = {"HEARTBEAT", 0, 0, 0},
    [NR_CMD_JOB] = {"JOB", F_ID | F_STAGE | F_ATTEMPT | F_DEADLINE | F_KV, F_ID | F_STAGE | F_ATTEMPT,
                    NR_PROTO_FRAMES_MAX},
    [NR_CMD_RESULT] = {"RESULT", F_ID | F_STAGE | F_ATTEMPT | F_KV, F_ID | F_STAGE | F_ATTEMPT,
                       NR_PROTO_FRAMES_MAX},
    [NR_CMD_FAIL] = {"FAIL", F_ID | F_STAGE | F_ATTEMPT | F_CODE | F_MESSAGE | F_RETRY,
                     F_ID | F_STAGE | F_ATTEMPT | F_CODE, 0},
    [NR_CMD_DISCONNECT] = {"DISCONNECT", F_MESSAGE, 0, 0},
    [NR_CMD_SUBMIT] = {"SUBMIT", F_SEQ | F_ID | F_ROUTE | F_KV | F_RUN, F_SEQ | F_ROUTE, NR_PROTO_FRAMES_MAX},
    [NR_CMD_STATUS] = {"STATUS", F_SEQ | F_ID, F_SEQ | F_ID, 0},
    [NR_CMD_FETCH] = {"FETCH", F_SEQ | F_ID | F_STAGE, F_SEQ | F_ID | F_STAGE, 0},
    [NR_CMD_CANCEL] = {"CANCEL", F_SEQ | F_ID, F_SEQ | F_ID, 0},
    [NR_CMD_STATS] = {"STATS", F_SEQ, F_SEQ, 0},
    [NR_CMD_JOBS] = {"JOBS", F_SEQ | F_RUN | F_OFFSET, F_SEQ | F_RUN, 0},
    [NR_CMD_REVIEW] = {"REVIEW", F_SEQ | F_ID | F_KV, F_SEQ | F_ID, 0},
    [NR_CMD_REPLY] = {"REPLY", F_SEQ | F_ID | F_CODE | F_MESSAGE | F_KV, F_SEQ | F_CODE, NR_PROTO_FRAMES_MAX},
};

static bool s_cmd_valid(nr_cmd_t cmd) { return cmd > NR_CMD_NONE && cmd < NR_CMD_COUNT; }

const char *nr_proto_cmd_name(nr_cmd_t cmd) { return s_cmd_valid(cmd) ? s_cmds[cmd].name : "?"; }

static const char *s_field_name(unsigned bit) {
    for (size_t i = 0; i < S_FIELD_COUNT; i++)
        if (bit == 1u << i) return s_fields[i];
    return "?";
}

/* ---- Shared checks: every rule lives here once ------------------------- */

static bool s_id_char(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static bool s_name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* A non-empty token of at most `max` bytes from one character set: job ids,
 * kv keys ([A-Za-z0-9._:-]) and stage or worker names ([a-z0-9_-]). Reads at
 * most max + 1 bytes, so it is safe on an unterminated struct field. */
static int s_check_token(const char *what, const char *s, size_t max, bool (*ok)(unsigned char), char *err,
                         size_t errlen) {
    if (!s) return nr_seterr(err, errlen, NR_EPROTO, "%s: missing", what);
    size_t n = strnlen(s, max + 1);
    if (n == 0) return nr_seterr(err, errlen, NR_EPROTO, "%s: empty", what);
    if (n > max) return nr_seterr(err, errlen, NR_ETOOBIG, "%s: longer than %zu bytes", what, max);
    for (size_t i = 0; i < n; i++)
        if (!ok((unsigned char)s[i]))
            return nr_seterr(err, errlen, NR_EPROTO, "%s: character 0x%02x at byte %zu is not allowed", what,
                             (unsigned char)s[i], i);
    return 0;
}

int nr_proto_id_valid(const char *s) { return s && s_check_token("id", s, NR_PROTO_ID_MAX, s_id_char, NULL, 0) == 0; }

static int s_check_text(const char *what, const char *s, size_t max, char *err, size_t errlen) {
    if (!s) return nr_seterr(err, errlen, NR_EPROTO, "%s: missing", what);
    if (strnlen(s, max + 1) > max)
        return nr_seterr(err, errlen, NR_ETOOBIG, "%s: longer than %zu bytes", what, max);
    return 0;
}

static int s_check_kv_entry(const char *key, const char *value, char *err, size_t errlen) {
    int rc = s_check_token("kv key", key, NR_PROTO_KEY_MAX, s_id_char, err, errlen);
    if (rc == 0) rc = s_check_text("kv value", value, NR_PROTO_VALUE_MAX, err, errlen);
    return rc;
}

int nr_proto_check_frames(nr_cmd_t cmd, size_t count, size_t total, char *err, size_t errlen) {
    if (count > NR_PROTO_FRAMES_MAX)
        return nr_seterr(err, errlen, NR_ETOOBIG, "%zu payload frames, limit %d", count, NR_PROTO_FRAMES_MAX);
    if (total > NR_PROTO_PAYLOAD_MAX)
        return nr_seterr(err, errlen, NR_ETOOBIG, "payload of %zu bytes, limit %u", total,
                         (unsigned)NR_PROTO_PAYLOAD_MAX);
    if (s_cmd_valid(cmd) && count > s_cmds[cmd].frames_max)
        return nr_seterr(err, errlen, NR_EPROTO, "%s carries no payload frames (got %zu)", s_cmds[cmd].name,
                         count);
    return 0;
}

/* The message-level rules, run on a message about to be encoded and on one
 * just decoded. `wire` holds the fields that are (or will be) on the wire. */
static int s_check_msg(const nr_msg_t *m, unsigned wire, char *err, size_t errlen) {
    if (!s_cmd_valid(m->cmd)) return nr_seterr(err, errlen, NR_EPROTO, "unknown command %d", (int)m->cmd);
    const char *cmd = s_cmds[m->cmd].name;
    unsigned missing = s_cmds[m->cmd].needs & ~wire;
    if (missing) return nr_seterr(err, errlen, NR_EPROTO, "%s needs field '%s'", cmd, s_field_name(missing & -missing));

    int rc = 0;
    if (wire & F_ID) rc = s_check_token("field 'id'", m->id, NR_PROTO_ID_MAX, s_id_char, err, errlen);
    if (rc == 0 && (wire & F_RUN))
        rc = s_check_token("field 'run'", m->run, NR_PROTO_ID_MAX, s_id_char, err, errlen);
    if (rc == 0 && (wire & F_STAGE))
        rc = s_check_token("field 'stage'", m->stage, NR_PROTO_NAME_MAX, s_name_char, err, errlen);
    if (rc == 0 && (wire & F_NAME))
        rc = s_check_token("field 'name'", m->name, NR_PROTO_NAME_MAX, s_name_char, err, errlen);
    if (rc == 0 && (wire & F_MESSAGE))
        rc = s_check_text("field 'message'", m->message, NR_PROTO_MESSAGE_MAX, err, errlen);
    if (rc) return rc;

    if ((wire & F_CAPACITY) && (m->capacity < 1 || m->capacity > S_CAPACITY_MAX))
        return nr_seterr(err, errlen, NR_EPROTO, "field 'capacity': %u is outside 1..%d", m->capacity,
                         S_CAPACITY_MAX);
    if (wire & F_CODE) {
        /* A FAIL always reports an error; a REPLY may report success. */
        int32_t hi = m->cmd == NR_CMD_FAIL ? -1 : 0;
        if (m->code < NR_ERRNO_MIN || m->code > hi)
            return nr_seterr(err, errlen, NR_EPROTO, "field 'code': %d is outside %d..%d", (int)m->code,
                             (int)NR_ERRNO_MIN, (int)hi);
    }
    if ((wire & F_RETRY) && m->retry != 0 && m->retry != 1)
        return nr_seterr(err, errlen, NR_EPROTO, "field 'retry': must be 0 or 1, not %d", m->retry);

    if (wire & F_ROUTE) {
        if (m->route_len < 1 || m->route_len > NR_PROTO_ROUTE_MAX)
            return nr_seterr(err, errlen, m->route_len ? NR_ETOOBIG : NR_EPROTO,
                             "field 'route': %u stages, must be 1..%d", m->route_len, NR_PROTO_ROUTE_MAX);
        for (uint32_t i = 0; i < m->route_len; i++) {
            rc = s_check_token("field 'route' entry", m->route[i], NR_PROTO_NAME_MAX, s_name_char, err, errlen);
            if (rc) return rc;
            for (uint32_t j = 0; j < i; j++)
                if (strcmp(m->route[i], m->route[j]) == 0)
                    return nr_seterr(err, errlen, NR_EPROTO, "field 'route': stage '%s' appears twice", m->route[i]);
        }
    }

    if (wire & F_KV) {
        if (m->kv_len > NR_PROTO_KV_MAX)
            return nr_seterr(err, errlen, NR_ETOOBIG, "field 'kv': %u entries, limit %d", m->kv_len,
                             NR_PROTO_KV_MAX);
        if (m->kv_len && !m->kv) return nr_seterr(err, errlen, NR_EPROTO, "field 'kv': entries missing");
        for (uint32_t i = 0; i < m->kv_len; i++) {
            rc = s_check_kv_entry(m->kv[i].key, m->kv[i].value, err, errlen);
            if (rc) return rc;
            for (uint32_t j = 0; j < i; j++)
                if (strcmp(m->kv[i].key, m->kv[j].key) == 0)
                    return nr_seterr(err, errlen, NR_EPROTO, "field 'kv': key '%s' appears twice", m->kv[i].key);
            if (m->cmd == NR_CMD_READY && !strcmp(m->kv[i].key, "voices")) {
                rc = nr_proto_voices_check(m->kv[i].value, NULL, err, errlen);
                if (rc) return rc;
            }
        }
    }
    return 0;
}

/* ---- Message helpers ---------------------------------------------------- */

void nr_proto_msg_init(nr_msg_t *self) {
    if (self) memset(self, 0, sizeof *self);
}

void nr_proto_msg_clear(nr_msg_t *self) {
    if (!self) return;
    for (uint32_t i = 0; i < self->kv_len && self->kv; i++) {
        free(self->kv[i].key);
        free(self->kv[i].value);
    }
    free(self->kv);
    for (uint32_t i = 0; i < self->frames_len && i < NR_PROTO_FRAMES_MAX; i++) free(self->frames[i].data);
    memset(self, 0, sizeof *self);
}

/* Appends an entry that already belongs to the message's allocator. The
 * array's room is implied by its length (4, then powers of two), so a
 * record of n entries costs about log n reallocations, not n. */
static int s_kv_push(nr_msg_t *self, char *key, char *value) {
    const uint32_t n = self->kv_len;
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
        nr_kv_t *kv = realloc(self->kv, (n ? 2 * (size_t)n : 4) * sizeof *kv);
        if (!kv) return NR_ENOMEM;
        self->kv = kv;
    }
    nr_kv_t *kv = self->kv;
    kv[self->kv_len].key = key;
    kv[self->kv_len].value = value;
    self->kv_len++;
    return 0;
}

int nr_proto_kv_add(nr_msg_t *self, const char *key, const char *value) {
    if (!self || !key || !value) return NR_EINVAL;
    int rc = s_check_kv_entry(key, value, NULL, 0);
    if (rc) return rc == NR_ETOOBIG ? rc : NR_EINVAL;
    char *v = strdup(value);
    if (!v) return NR_ENOMEM;
    /* A key that is already there gets the new value: keys stay unique, as
     * the wire requires. */
    for (uint32_t i = 0; i < self->kv_len; i++) {
        if (strcmp(self->kv[i].key, key) == 0) {
            free(self->kv[i].value);
            self->kv[i].value = v;
            return 0;
        }
    }
    if (self->kv_len >= NR_PROTO_KV_MAX) {
        free(v);
        return NR_ETOOBIG;
    }
    char *k = strdup(key);
    if (!k || s_kv_push(self, k, v) != 0) {
        free(k);
        free(v);
        return NR_ENOMEM;
    }
    return 0;
}

const char *nr_proto_kv_get(const nr_msg_t *self, const char *key) {
    if (!self || !key) return NULL;
    for (uint32_t i = 0; i < self->kv_len; i++)
        if (strcmp(self->kv[i].key, key) == 0) return self->kv[i].value;
    return NULL;
}

size_t nr_proto_payload_total(const nr_msg_t *self) {
    size_t total = 0;
    for (uint32_t i = 0; i < self->frames_len && i < NR_PROTO_FRAMES_MAX; i++) total += self->frames[i].size;
    return total;
}

int nr_proto_frame_take(nr_msg_t *self, uint8_t **data, size_t size) {
    if (!data) return NR_EINVAL;
    uint8_t *owned = *data;
    *data = NULL; /* ownership passes even on failure, so no caller leaks */
    if (!self || (!owned && size)) {
        free(owned);
        return NR_EINVAL;
    }
    size_t total = nr_proto_payload_total(self);
    if (self->frames_len >= NR_PROTO_FRAMES_MAX || total > NR_PROTO_PAYLOAD_MAX || size > NR_PROTO_PAYLOAD_MAX - total) {
        free(owned);
        return NR_ETOOBIG;
    }
    if (!owned && !(owned = malloc(1))) return NR_ENOMEM; /* a present frame never has NULL data */
    self->frames[self->frames_len].data = owned;
    self->frames[self->frames_len].size = size;
    self->frames_len++;
    return 0;
}

int nr_proto_frame_add(nr_msg_t *self, const void *data, size_t size) {
    if (!self || (!data && size)) return NR_EINVAL;
    size_t total = nr_proto_payload_total(self);
    if (self->frames_len >= NR_PROTO_FRAMES_MAX || total > NR_PROTO_PAYLOAD_MAX || size > NR_PROTO_PAYLOAD_MAX - total)
        return NR_ETOOBIG;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return NR_ENOMEM;
    if (size) memcpy(copy, data, size);
    return nr_proto_frame_take(self, &copy, size);
}

/* ---- Encoding ----------------------------------------------------------- */

/* Fields the caller has filled in (non-zero, non-empty). */
static unsigned s_fields_set(const nr_msg_t *m) {
    unsigned set = 0;
    if (m->seq) set |= F_SEQ;
    if (m->id[0]) set |= F_ID;
    if (m->stage[0]) set |= F_STAGE;
    if (m->name[0]) set |= F_NAME;
    if (m->attempt) set |= F_ATTEMPT;
    if (m->capacity) set |= F_CAPACITY;
    if (m->deadline_ms) set |= F_DEADLINE;
    if (m->code) set |= F_CODE;
    if (m->retry) set |= F_RETRY;
    if (m->message[0]) set |= F_MESSAGE;
    if (m->route_len) set |= F_ROUTE;
    if (m->kv_len) set |= F_KV;
    if (m->run[0]) set |= F_RUN;
    if (m->offset) set |= F_OFFSET;
    return set;
}

static int s_pack_cstr(msgpack_packer *pk, const char *s) { return msgpack_pack_str_with_body(pk, s, strlen(s)); }

static int s_pack_field(msgpack_packer *pk, unsigned bit, const nr_msg_t *m) {
    switch (bit) {
    case F_SEQ: return msgpack_pack_uint64(pk, m->seq);
    case F_ID: return s_pack_cstr(pk, m->id);
    case F_STAGE: return s_pack_cstr(pk, m->stage);
    case F_NAME: return s_pack_cstr(pk, m->name);
    case F_ATTEMPT: return msgpack_pack_uint32(pk, m->attempt);
    case F_CAPACITY: return msgpack_pack_uint32(pk, m->capacity);
    case F_DEADLINE: return msgpack_pack_uint32(pk, m->deadline_ms);
    case F_OFFSET: return msgpack_pack_uint32(pk, m->offset);
    case F_RUN: return s_pack_cstr(pk, m->run);
    case F_CODE: return msgpack_pack_int32(pk, m->code);
    case F_RETRY: return m->retry ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case F_MESSAGE: return s_pack_cstr(pk, m->message);
    case F_ROUTE: {
        int rc = msgpack_pack_array(pk, m->route_len);
        for (uint32_t i = 0; rc == 0 && i < m->route_len; i++) rc = s_pack_cstr(pk, m->route[i]);
        return rc;
    }
    case F_KV: {
        int rc = msgpack_pack_map(pk, m->kv_len);
        for (uint32_t i = 0; rc == 0 && i < m->kv_len; i++) {
            rc = s_pack_cstr(pk, m->kv[i].key);
            if (rc == 0) rc = s_pack_cstr(pk, m->kv[i].value);
        }
        return rc;
    }
    default: return -1;
    }
}

void nr_proto_body_init(nr_proto_body_t *b) { /* not an initializer: that would zero the 2 KiB */
    b->data = b->stack;
    b->size = 0;
    b->cap = sizeof b->stack;
}

static int s_body_write(void *arg, const char *buf, size_t len) {
    nr_proto_body_t *b = arg;
    if (len > b->cap - b->size) {
        size_t cap = b->cap * 2;
        while (len > cap - b->size) cap *= 2;
        char *d = b->data == b->stack ? malloc(cap) : realloc(b->data, cap);
        if (!d) return -1;
        if (b->data == b->stack) memcpy(d, b->stack, b->size);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->size, buf, len);
    b->size += len;
    return 0;
}

void nr_proto_body_free(nr_proto_body_t *b) {
    if (b->data != b->stack) free(b->data);
}

int nr_proto_encode_body(const nr_msg_t *msg, nr_proto_body_t *out, char *err, size_t errlen) {
    if (!msg) return nr_seterr(err, errlen, NR_EINVAL, "encode: NULL argument");
    if (!s_cmd_valid(msg->cmd)) return nr_seterr(err, errlen, NR_EPROTO, "unknown command %d", (int)msg->cmd);
    unsigned allows = s_cmds[msg->cmd].allows;
    unsigned extra = s_fields_set(msg) & ~allows;
    if (extra)
        return nr_seterr(err, errlen, NR_EPROTO, "%s does not carry field '%s'", s_cmds[msg->cmd].name,
                         s_field_name(extra & -extra));
    /* Required fields always go out (an empty id then fails the check with
     * a clear message); optional ones only when set. */
    unsigned wire = (s_fields_set(msg) | s_cmds[msg->cmd].needs) & allows;
    int rc = s_check_msg(msg, wire, err, errlen);
    if (rc) return rc;

    size_t entries = 2;
    for (size_t i = 0; i < S_FIELD_COUNT; i++)
        if (wire & (1u << i)) entries++;

    msgpack_packer pk;
    msgpack_packer_init(&pk, out, s_body_write);
    rc = msgpack_pack_map(&pk, entries);
    if (rc == 0) rc = s_pack_cstr(&pk, "v");
    if (rc == 0) rc = msgpack_pack_uint32(&pk, NR_PROTO_VERSION);
    if (rc == 0) rc = s_pack_cstr(&pk, "cmd");
    if (rc == 0) rc = s_pack_cstr(&pk, s_cmds[msg->cmd].name);
    for (size_t i = 0; rc == 0 && i < S_FIELD_COUNT; i++) {
        if (!(wire & (1u << i))) continue;
        rc = s_pack_cstr(&pk, s_fields[i]);
        if (rc == 0) rc = s_pack_field(&pk, 1u << i, msg);
    }
    if (rc != 0) return nr_seterr(err, errlen, NR_ENOMEM, "encode: out of memory");
    if (out->size > NR_PROTO_BODY_MAX)
        return nr_seterr(err, errlen, NR_ETOOBIG, "body of %zu bytes, limit %d", out->size, NR_PROTO_BODY_MAX);
    return 0;
}

int nr_proto_encode(const nr_msg_t *msg, uint8_t **body, size_t *size, char *err, size_t errlen) {
    if (!body || !size) return nr_seterr(err, errlen, NR_EINVAL, "encode: NULL argument");
    *body = NULL;
    *size = 0;
    nr_proto_body_t b;
    nr_proto_body_init(&b);
    int rc = nr_proto_encode_body(msg, &b, err, errlen);
    if (rc == 0 && !(*body = malloc(b.size))) rc = nr_seterr(err, errlen, NR_ENOMEM, "encode: out of memory");
    if (rc == 0) {
        memcpy(*body, b.data, b.size);
        *size = b.size;
    }
    nr_proto_body_free(&b);
    return rc;
}

/* ---- Decoding ----------------------------------------------------------- */

static uint64_t s_be(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Walks the MessagePack encoding without building anything and checks that
 * it is exactly one complete object. msgpack-c allocates a container's
 * element array from its header count before the elements arrive, so a
 * 5-byte body could otherwise ask for gigabytes; here every object still
 * owed must have at least one byte left to live in, which bounds the
 * unpacker's memory by the body size. */
static int s_scan(const uint8_t *p, size_t size, char *err, size_t errlen) {
    size_t pos = 0, pending = 1;
    while (pending > 0) {
        if (pos >= size) return nr_seterr(err, errlen, NR_EPROTO, "body is truncated at byte %zu", pos);
        uint8_t t = p[pos++];
        pending--;
        size_t lenbytes = 0, fixed = 0, count = 0, mult = 0;
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool: the byte is the whole object */
        } else if (t <= 0x8f) {
            count = (size_t)(t & 0x0f) * 2;
        } else if (t <= 0x9f) {
            count = t & 0x0f;
        } else if (t <= 0xbf) {
            fixed = t & 0x1f;
        } else {
            switch (t) {
            case 0xc4: case 0xd9: lenbytes = 1; break;           /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;           /* bin16, str16 */
            case 0xc6: case 0xdb: lenbytes = 4; break;           /* bin32, str32 */
            case 0xc7: lenbytes = 1; fixed = 1; break;           /* ext8: + type byte */
            case 0xc8: lenbytes = 2; fixed = 1; break;
            case 0xc9: lenbytes = 4; fixed = 1; break;
            case 0xca: fixed = 4; break;                         /* float32 */
            case 0xcb: fixed = 8; break;                         /* float64 */
            case 0xcc: case 0xd0: fixed = 1; break;              /* (u)int8 */
            case 0xcd: case 0xd1: fixed = 2; break;
            case 0xce: case 0xd2: fixed = 4; break;
            case 0xcf: case 0xd3: fixed = 8; break;
            case 0xd4: fixed = 2; break;                         /* fixext 1..16: + type byte */
            case 0xd5: fixed = 3; break;
            case 0xd6: fixed = 5; break;
            case 0xd7: fixed = 9; break;
            case 0xd8: fixed = 17; break;
            case 0xdc: lenbytes = 2; mult = 1; break;            /* array16 */
            case 0xdd: lenbytes = 4; mult = 1; break;            /* array32 */
            case 0xde: lenbytes = 2; mult = 2; break;            /* map16 */
            case 0xdf: lenbytes = 4; mult = 2; break;            /* map32 */
            default: return nr_seterr(err, errlen, NR_EPROTO, "byte 0x%02x at %zu is not MessagePack", t, pos - 1);
            }
        }
        if (lenbytes) {
            if (size - pos < lenbytes)
                return nr_seterr(err, errlen, NR_EPROTO, "body is truncated at byte %zu", size);
            uint64_t n = s_be(p + pos, lenbytes);
            pos += lenbytes;
            if (mult) count = (size_t)n * mult; /* n < 2^32, so no overflow */
            else fixed += (size_t)n;
        }
        if (fixed > size - pos) return nr_seterr(err, errlen, NR_EPROTO, "body is truncated at byte %zu", size);
        pos += fixed;
        if (pending > size - pos || count > size - pos - pending)
            return nr_seterr(err, errlen, NR_EPROTO, "body is truncated: a container at byte %zu needs more bytes",
                             pos);
        pending += count;
    }
    if (pos != size) return nr_seterr(err, errlen, NR_EPROTO, "%zu stray bytes after the body", size - pos);
    return 0;
}

/* msgpack-c may give an empty string a NULL pointer, which memcmp and
 * memcpy must not see even with a zero length. */
static bool s_str_eq(const msgpack_object_str *a, const char *p, size_t n) {
    return a->size == n && (n == 0 || memcmp(a->ptr, p, n) == 0);
}

static bool s_key_is(const msgpack_object *k, const char *name) {
    return k->type == MSGPACK_OBJECT_STR && s_str_eq(&k->via.str, name, strlen(name));
}

static int s_get_uint(const char *what, const msgpack_object *o, uint64_t max, uint64_t *out, char *err,
                      size_t errlen) {
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return nr_seterr(err, errlen, NR_EPROTO, "field '%s': must be an unsigned integer", what);
    if (o->via.u64 > max)
        return nr_seterr(err, errlen, NR_EPROTO, "field '%s': %llu is out of range", what,
                         (unsigned long long)o->via.u64);
    *out = o->via.u64;
    return 0;
}

/* Checks that o is a string of at most max bytes with no NUL inside, so
 * that it survives as a C string unchanged. */
static int s_get_str(const char *what, const msgpack_object *o, size_t max, char *err, size_t errlen) {
    if (o->type != MSGPACK_OBJECT_STR) return nr_seterr(err, errlen, NR_EPROTO, "%s: must be a string", what);
    if (o->via.str.size > max)
        return nr_seterr(err, errlen, NR_ETOOBIG, "%s: %u bytes, limit %zu", what, o->via.str.size, max);
    if (o->via.str.size && memchr(o->via.str.ptr, '\0', o->via.str.size))
        return nr_seterr(err, errlen, NR_EPROTO, "%s: contains a NUL byte", what);
    return 0;
}

static int s_copy_str(const char *what, const msgpack_object *o, char *dst, size_t cap, char *err, size_t errlen) {
    int rc = s_get_str(what, o, cap - 1, err, errlen);
    if (rc) return rc;
    if (o->via.str.size) memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = '\0';
    return 0;
}

static char *s_dup_str(const msgpack_object *o) {
    char *s = malloc(o->via.str.size + 1);
    if (s) {
        if (o->via.str.size) memcpy(s, o->via.str.ptr, o->via.str.size);
        s[o->via.str.size] = '\0';
    }
    return s;
}

/* Copies one field into m; only type and size are checked here (what the
 * copy itself needs), everything else is s_check_msg's job. */
static int s_decode_field(unsigned bit, const msgpack_object *o, nr_msg_t *m, char *err, size_t errlen) {
    uint64_t u = 0;
    int rc = 0;
    switch (bit) {
    case F_SEQ:
        rc = s_get_uint("seq", o, UINT64_MAX, &u, err, errlen);
        m->seq = u;
        return rc;
    case F_ATTEMPT:
        rc = s_get_uint("attempt", o, UINT32_MAX, &u, err, errlen);
        m->attempt = (uint32_t)u;
        return rc;
    case F_CAPACITY:
        rc = s_get_uint("capacity", o, UINT32_MAX, &u, err, errlen);
        m->capacity = (uint32_t)u;
        return rc;
    case F_DEADLINE:
        rc = s_get_uint("deadline_ms", o, UINT32_MAX, &u, err, errlen);
        m->deadline_ms = (uint32_t)u;
        return rc;
    case F_OFFSET:
        rc = s_get_uint("offset", o, UINT32_MAX, &u, err, errlen);
        m->offset = (uint32_t)u;
        return rc;
    case F_CODE:
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && o->via.i64 >= INT32_MIN) {
            m->code = (int32_t)o->via.i64;
            return 0;
        }
        rc = s_get_uint("code", o, INT32_MAX, &u, err, errlen);
        m->code = (int32_t)u;
        return rc;
    case F_RETRY:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return nr_seterr(err, errlen, NR_EPROTO, "field 'retry': must be a boolean");
        m->retry = o->via.boolean ? 1 : 0;
        return 0;
    case F_ID: return s_copy_str("field 'id'", o, m->id, sizeof m->id, err, errlen);
    case F_RUN: return s_copy_str("field 'run'", o, m->run, sizeof m->run, err, errlen);
    case F_STAGE: return s_copy_str("field 'stage'", o, m->stage, sizeof m->stage, err, errlen);
    case F_NAME: return s_copy_str("field 'name'", o, m->name, sizeof m->name, err, errlen);
    case F_MESSAGE: return s_copy_str("field 'message'", o, m->message, sizeof m->message, err, errlen);
    case F_ROUTE:
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return nr_seterr(err, errlen, NR_EPROTO, "field 'route': must be an array of strings");
        if (o->via.array.size > NR_PROTO_ROUTE_MAX)
            return nr_seterr(err, errlen, NR_ETOOBIG, "field 'route': %u stages, limit %d", o->via.array.size,
                             NR_PROTO_ROUTE_MAX);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            rc = s_copy_str("field 'route' entry", &o->via.array.ptr[i], m->route[i], sizeof m->route[i], err,
                            errlen);
            if (rc) return rc;
        }
        m->route_len = o->via.array.size;
        return 0;
    case F_KV:
        if (o->type != MSGPACK_OBJECT_MAP)
            return nr_seterr(err, errlen, NR_EPROTO, "field 'kv': must be a map of strings to strings");
        if (o->via.map.size > NR_PROTO_KV_MAX)
            return nr_seterr(err, errlen, NR_ETOOBIG, "field 'kv': %u entries, limit %d", o->via.map.size,
                             NR_PROTO_KV_MAX);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *e = &o->via.map.ptr[i];
            rc = s_get_str("kv key", &e->key, NR_PROTO_KEY_MAX, err, errlen);
            if (rc == 0) rc = s_get_str("kv value", &e->val, NR_PROTO_VALUE_MAX, err, errlen);
            if (rc) return rc;
            char *k = s_dup_str(&e->key), *v = s_dup_str(&e->val);
            if (!k || !v || s_kv_push(m, k, v) != 0) {
                free(k);
                free(v);
                return nr_seterr(err, errlen, NR_ENOMEM, "decode: out of memory");
            }
        }
        return 0;
    default: return nr_seterr(err, errlen, NR_EINTERNAL, "decode: unhandled field");
    }
}

/* Reads "v" and "cmd" and checks the map's keys: strings, no duplicates.
 * The version is checked before anything else, so a newer peer gets
 * NR_EVERSION rather than a complaint about a command it added. */
static int s_decode_head(const msgpack_object_map *map, nr_cmd_t *cmd, char *err, size_t errlen) {
    const msgpack_object *v = NULL, *c = NULL;
    if (map->size > NR_PROTO_FIELDS_MAX)
        return nr_seterr(err, errlen, NR_ETOOBIG, "body has %u keys, limit %d", map->size, NR_PROTO_FIELDS_MAX);
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) return nr_seterr(err, errlen, NR_EPROTO, "body keys must be strings");
        for (uint32_t j = 0; j < i; j++) {
            const msgpack_object *o = &map->ptr[j].key;
            if (s_str_eq(&o->via.str, k->via.str.ptr, k->via.str.size))
                return nr_seterr(err, errlen, NR_EPROTO, "key '%.*s' appears twice",
                                 (int)(k->via.str.size > 32 ? 32 : k->via.str.size), k->via.str.ptr);
        }
        if (s_key_is(k, "v")) v = &map->ptr[i].val;
        if (s_key_is(k, "cmd")) c = &map->ptr[i].val;
    }
    if (!v) return nr_seterr(err, errlen, NR_EVERSION, "field 'v' (protocol version) is missing");
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != NR_PROTO_VERSION)
        return nr_seterr(err, errlen, NR_EVERSION, "protocol version is not %d", NR_PROTO_VERSION);
    if (!c) return nr_seterr(err, errlen, NR_EPROTO, "field 'cmd' is missing");
    if (c->type != MSGPACK_OBJECT_STR) return nr_seterr(err, errlen, NR_EPROTO, "field 'cmd': must be a string");
    for (int i = NR_CMD_NONE + 1; i < NR_CMD_COUNT; i++) {
        if (s_key_is(c, s_cmds[i].name)) {
            *cmd = (nr_cmd_t)i;
            return 0;
        }
    }
    /* Echo the name only when it is short and harmless to log. */
    bool plain = c->via.str.size <= 16;
    for (uint32_t i = 0; plain && i < c->via.str.size; i++) plain = s_id_char((unsigned char)c->via.str.ptr[i]);
    if (plain && c->via.str.size)
        return nr_seterr(err, errlen, NR_EPROTO, "field 'cmd': unknown command '%.*s'", (int)c->via.str.size,
                         c->via.str.ptr);
    return nr_seterr(err, errlen, NR_EPROTO, "field 'cmd': unknown command");
}

int nr_proto_decode(const uint8_t *body, size_t size, nr_msg_t *msg, char *err, size_t errlen) {
    if (!msg || (!body && size)) return nr_seterr(err, errlen, NR_EINVAL, "decode: NULL argument");
    nr_proto_msg_clear(msg);
    if (size > NR_PROTO_BODY_MAX)
        return nr_seterr(err, errlen, NR_ETOOBIG, "body of %zu bytes, limit %d", size, NR_PROTO_BODY_MAX);
    if (size == 0) return nr_seterr(err, errlen, NR_EPROTO, "empty body");
    int rc = s_scan(body, size, err, errlen);
    if (rc) return rc;

    /* The objects go into a zone whose first chunk malloc serves from its
     * per-thread cache (msgpack_unpack_next's starts at 8 KiB); strings
     * stay in the body, not copied. */
#define S_ZONE_CHUNK 960 /* + msgpack's chunk header: within malloc's tcache sizes */
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, S_ZONE_CHUNK)) return nr_seterr(err, errlen, NR_ENOMEM, "decode: out of memory");
    msgpack_object root;
    size_t off = 0;
    /* SUCCESS means the whole body was one object (else EXTRA_BYTES). */
    if (msgpack_unpack((const char *)body, size, &off, &zone, &root) != MSGPACK_UNPACK_SUCCESS) {
        rc = nr_seterr(err, errlen, NR_EPROTO, "body is not valid MessagePack");
        goto done;
    }
    if (root.type != MSGPACK_OBJECT_MAP) {
        rc = nr_seterr(err, errlen, NR_EPROTO, "body must be a map");
        goto done;
    }
    const msgpack_object_map *map = &root.via.map;
    nr_cmd_t cmd = NR_CMD_NONE;
    rc = s_decode_head(map, &cmd, err, errlen);
    if (rc) goto done;
    msg->cmd = cmd;

    unsigned wire = 0;
    for (uint32_t i = 0; rc == 0 && i < map->size; i++) {
        for (size_t f = 0; f < S_FIELD_COUNT; f++) {
            unsigned bit = 1u << f;
            /* Unknown keys, and known ones this command does not use, are
             * skipped: a newer peer may add fields within one version. */
            if (!(s_cmds[cmd].allows & bit) || !s_key_is(&map->ptr[i].key, s_fields[f])) continue;
            rc = s_decode_field(bit, &map->ptr[i].val, msg, err, errlen);
            wire |= bit;
            break;
        }
    }
    if (rc == 0) rc = s_check_msg(msg, wire, err, errlen);
done:
    msgpack_zone_destroy(&zone);
    if (rc) nr_proto_msg_clear(msg);
    return rc;
}
