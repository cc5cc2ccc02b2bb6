/* Tests for proto/: round trips of every command, rejection of malformed
 * bodies field by field, a pseudo-random garbage loop, and framing through
 * real ZeroMQ sockets (ROUTER/DEALER over inproc). */
#include "proto/proto.h"

#include "common/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define ERRLEN 256

/* ---- Building messages ---------------------------------------------------- */

/* Which fields each command uses; mirrors the table in PROTOCOL.md. */
static const char *s_allowed(nr_cmd_t cmd) {
    switch (cmd) {
    case NR_CMD_READY: return " stage capacity name kv ";
    case NR_CMD_HEARTBEAT: return " ";
    case NR_CMD_JOB: return " id stage attempt deadline_ms kv ";
    case NR_CMD_RESULT: return " id stage attempt kv ";
    case NR_CMD_FAIL: return " id stage attempt code message retry ";
    case NR_CMD_DISCONNECT: return " message ";
    case NR_CMD_SUBMIT: return " seq id route kv run ";
    case NR_CMD_STATUS: return " seq id ";
    case NR_CMD_FETCH: return " seq id stage ";
    case NR_CMD_CANCEL: return " seq id ";
    case NR_CMD_STATS: return " seq ";
    case NR_CMD_JOBS: return " seq run offset ";
    case NR_CMD_REVIEW: return " seq id kv ";
    case NR_CMD_REPLY: return " seq id code message kv ";
    default: return " ";
    }
}

static const char *s_required(nr_cmd_t cmd) {
    switch (cmd) {
    case NR_CMD_READY: return " stage capacity ";
    case NR_CMD_JOB:
    case NR_CMD_RESULT: return " id stage attempt ";
    case NR_CMD_FAIL: return " id stage attempt code ";
    case NR_CMD_SUBMIT: return " seq route ";
    case NR_CMD_STATUS:
    case NR_CMD_CANCEL: return " seq id ";
    case NR_CMD_FETCH: return " seq id stage ";
    case NR_CMD_STATS: return " seq ";
    case NR_CMD_JOBS: return " seq run ";
    case NR_CMD_REVIEW: return " seq id ";
    case NR_CMD_REPLY: return " seq code ";
    default: return " ";
    }
}

static bool s_has(const char *list, const char *field) {
    size_t n = strlen(field);
    for (const char *p = strstr(list, field); p; p = strstr(p + 1, field))
        if (p > list && p[-1] == ' ' && p[n] == ' ') return true;
    return false;
}

static const char *const s_all_fields[] = {"seq",     "id",       "stage",       "name",
                                           "attempt", "capacity", "deadline_ms", "code",
                                           "retry",   "message",  "route",       "kv",
                                           "run",     "offset"};
#define ALL_FIELDS (sizeof s_all_fields / sizeof s_all_fields[0])

/* A message of `cmd` with every field it uses set to a non-default value. */
static void s_full(nr_msg_t *m, nr_cmd_t cmd) {
    nr_proto_msg_init(m);
    m->cmd = cmd;
    const char *a = s_allowed(cmd);
    if (s_has(a, "seq")) m->seq = 0x1122334455667788ull;
    if (s_has(a, "id")) strcpy(m->id, "Job-1.2_3:abc");
    if (s_has(a, "run")) strcpy(m->run, "run-2026.12.06_a:1");
    if (s_has(a, "offset")) m->offset = 4000000000u;
    if (s_has(a, "stage")) strcpy(m->stage, "vision");
    if (s_has(a, "name")) strcpy(m->name, "gpu-node_7");
    if (s_has(a, "attempt")) m->attempt = 3;
    if (s_has(a, "capacity")) m->capacity = 1024;
    if (s_has(a, "deadline_ms")) m->deadline_ms = 4000000000u;
    if (s_has(a, "code")) m->code = NR_EIMAGE;
    if (s_has(a, "retry")) m->retry = 1;
    if (s_has(a, "message")) strcpy(m->message, "image is corrupt: \"line\"\n\tnext (UTF-8: caf\xc3\xa9)");
    if (s_has(a, "route")) {
        strcpy(m->route[0], "vision");
        strcpy(m->route[1], "text");
        strcpy(m->route[2], "speech");
        m->route_len = 3;
    }
    if (s_has(a, "kv")) {
        cr_assert_eq(nr_proto_kv_add(m, "text.caption", "a cat sitting on a couch"), 0);
        cr_assert_eq(nr_proto_kv_add(m, "opt.num_beams", "4"), 0);
        cr_assert_eq(nr_proto_kv_add(m, "empty", ""), 0);
    }
}

/* The smallest valid message of `cmd`: only the fields it requires. */
static void s_minimal(nr_msg_t *m, nr_cmd_t cmd) {
    nr_proto_msg_init(m);
    m->cmd = cmd;
    const char *r = s_required(cmd);
    if (s_has(r, "id")) strcpy(m->id, "j1");
    if (s_has(r, "run")) strcpy(m->run, "r1");
    if (s_has(r, "stage")) strcpy(m->stage, "text");
    if (s_has(r, "capacity")) m->capacity = 1;
    if (s_has(r, "code")) m->code = cmd == NR_CMD_FAIL ? NR_EINTERNAL : 0;
    if (s_has(r, "route")) {
        strcpy(m->route[0], "speech");
        m->route_len = 1;
    }
}

static void s_assert_same(const nr_msg_t *a, const nr_msg_t *b) {
    cr_assert_eq(a->cmd, b->cmd);
    cr_assert_eq(a->seq, b->seq);
    cr_assert_str_eq(a->id, b->id);
    cr_assert_str_eq(a->run, b->run);
    cr_assert_eq(a->offset, b->offset);
    cr_assert_str_eq(a->stage, b->stage);
    cr_assert_str_eq(a->name, b->name);
    cr_assert_eq(a->attempt, b->attempt);
    cr_assert_eq(a->capacity, b->capacity);
    cr_assert_eq(a->deadline_ms, b->deadline_ms);
    cr_assert_eq(a->code, b->code);
    cr_assert_eq(a->retry, b->retry);
    cr_assert_str_eq(a->message, b->message);
    cr_assert_eq(a->route_len, b->route_len);
    for (uint32_t i = 0; i < a->route_len; i++) cr_assert_str_eq(a->route[i], b->route[i]);
    cr_assert_eq(a->kv_len, b->kv_len);
    for (uint32_t i = 0; i < a->kv_len; i++) {
        cr_assert_str_eq(a->kv[i].key, b->kv[i].key);
        cr_assert_str_eq(a->kv[i].value, b->kv[i].value);
    }
}

static void s_encode(const nr_msg_t *m, uint8_t **body, size_t *size) {
    char err[ERRLEN] = "";
    int rc = nr_proto_encode(m, body, size, err, sizeof err);
    cr_assert_eq(rc, 0, "encode %s: %d %s", nr_proto_cmd_name(m->cmd), rc, err);
}

/* Decodes and expects failure with `code`; returns the error text. */
static char s_err[ERRLEN];
static const char *s_reject(const void *body, size_t size, int code) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    s_err[0] = '\0';
    int rc = nr_proto_decode(body, size, &m, s_err, sizeof s_err);
    cr_assert_eq(rc, code, "expected %s, got %d (%s)", nr_errname(code), rc, s_err);
    cr_assert_eq(m.cmd, NR_CMD_NONE, "message not cleared on error");
    cr_assert_eq(m.kv, NULL);
    cr_assert_neq(s_err[0], '\0', "no error message");
    return s_err;
}

/* ---- Rewriting bodies ----------------------------------------------------- */

typedef void (*pack_fn)(msgpack_packer *pk);

static void p_str(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "x", 1); }
static void p_uint(msgpack_packer *pk) { msgpack_pack_uint32(pk, 7); }
static void p_neg(msgpack_packer *pk) { msgpack_pack_int32(pk, -7); }
static void p_true(msgpack_packer *pk) { msgpack_pack_true(pk); }
static void p_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void p_float(msgpack_packer *pk) { msgpack_pack_double(pk, 1.0); }
static void p_bin(msgpack_packer *pk) {
    msgpack_pack_bin(pk, 1);
    msgpack_pack_bin_body(pk, "x", 1);
}
static void p_array(msgpack_packer *pk) { msgpack_pack_array(pk, 0); }
static void p_map(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }

/* Copies the map in `in`, replacing the value of `key` by what `val` packs
 * (or dropping the entry when val is NULL), then appends `extra` entries
 * packed by `add` (key and value each). */
static msgpack_sbuffer s_rewrite(const uint8_t *in, size_t n, const char *key, pack_fn val, size_t extra,
                                 void (*add)(msgpack_packer *pk)) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    cr_assert_eq(msgpack_unpack_next(&up, (const char *)in, n, &off), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(up.data.type, MSGPACK_OBJECT_MAP);
    msgpack_object_map *map = &up.data.via.map;
    bool found = false;
    for (uint32_t i = 0; i < map->size; i++)
        if (key && map->ptr[i].key.via.str.size == strlen(key) &&
            memcmp(map->ptr[i].key.via.str.ptr, key, strlen(key)) == 0)
            found = true;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, map->size - (found && !val ? 1 : 0) + extra);
    for (uint32_t i = 0; i < map->size; i++) {
        msgpack_object *k = &map->ptr[i].key;
        bool match = key && k->via.str.size == strlen(key) && memcmp(k->via.str.ptr, key, strlen(key)) == 0;
        if (match && !val) continue;
        msgpack_pack_object(&pk, *k);
        if (match) val(&pk);
        else msgpack_pack_object(&pk, map->ptr[i].val);
    }
    for (size_t i = 0; i < extra; i++) add(&pk);
    msgpack_unpacked_destroy(&up);
    return sb;
}

static msgpack_sbuffer s_replace(nr_cmd_t cmd, const char *key, pack_fn val) {
    nr_msg_t m;
    s_full(&m, cmd);
    uint8_t *body;
    size_t size;
    s_encode(&m, &body, &size);
    msgpack_sbuffer sb = s_rewrite(body, size, key, val, 0, NULL);
    free(body);
    nr_proto_msg_clear(&m);
    return sb;
}

/* Packs one string key with a string value: the value is `s` of length n. */
static const char *s_add_key;
static const char *s_add_val;
static size_t s_add_len;
static void s_add_str(msgpack_packer *pk) {
    msgpack_pack_str_with_body(pk, s_add_key, strlen(s_add_key));
    msgpack_pack_str_with_body(pk, s_add_val, s_add_len);
}

/* ---- Round trips ---------------------------------------------------------- */

Test(proto, roundtrip_every_command_every_field) {
    for (int c = NR_CMD_NONE + 1; c < NR_CMD_COUNT; c++) {
        nr_msg_t m, d;
        s_full(&m, (nr_cmd_t)c);
        uint8_t *body;
        size_t size;
        s_encode(&m, &body, &size);
        nr_proto_msg_init(&d);
        char err[ERRLEN] = "";
        int rc = nr_proto_decode(body, size, &d, err, sizeof err);
        cr_assert_eq(rc, 0, "decode %s: %s", nr_proto_cmd_name((nr_cmd_t)c), err);
        s_assert_same(&m, &d);

        /* Only the fields the command uses go on the wire, plus v and cmd. */
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0;
        cr_assert_eq(msgpack_unpack_next(&up, (const char *)body, size, &off), MSGPACK_UNPACK_SUCCESS);
        size_t expect = 2;
        for (size_t f = 0; f < ALL_FIELDS; f++) expect += s_has(s_allowed((nr_cmd_t)c), s_all_fields[f]);
        cr_assert_eq(up.data.via.map.size, expect, "%s: %u keys on the wire", nr_proto_cmd_name((nr_cmd_t)c),
                     up.data.via.map.size);
        for (uint32_t i = 0; i < up.data.via.map.size; i++) {
            char key[40];
            msgpack_object_str *k = &up.data.via.map.ptr[i].key.via.str;
            snprintf(key, sizeof key, "%.*s", (int)k->size, k->ptr);
            cr_assert(strcmp(key, "v") == 0 || strcmp(key, "cmd") == 0 || s_has(s_allowed((nr_cmd_t)c), key),
                      "%s put '%s' on the wire", nr_proto_cmd_name((nr_cmd_t)c), key);
        }
        msgpack_unpacked_destroy(&up);

        /* Encoding the decoded message gives the same bytes. */
        uint8_t *again;
        size_t again_size;
        s_encode(&d, &again, &again_size);
        cr_assert_eq(again_size, size);
        cr_assert_eq(memcmp(again, body, size), 0);
        free(again);
        free(body);
        nr_proto_msg_clear(&m);
        nr_proto_msg_clear(&d);
        nr_proto_msg_clear(&d); /* safe twice */
    }
}

Test(proto, roundtrip_minimal_messages) {
    for (int c = NR_CMD_NONE + 1; c < NR_CMD_COUNT; c++) {
        nr_msg_t m, d;
        s_minimal(&m, (nr_cmd_t)c);
        uint8_t *body;
        size_t size;
        s_encode(&m, &body, &size);
        nr_proto_msg_init(&d);
        char err[ERRLEN] = "";
        cr_assert_eq(nr_proto_decode(body, size, &d, err, sizeof err), 0, "%s: %s", nr_proto_cmd_name((nr_cmd_t)c),
                     err);
        s_assert_same(&m, &d);
        free(body);
        nr_proto_msg_clear(&m);
        nr_proto_msg_clear(&d);
    }
}

Test(proto, roundtrip_limits_exactly) {
    nr_msg_t m, d;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_SUBMIT;
    m.seq = UINT64_MAX;
    memset(m.id, 'a', NR_PROTO_ID_MAX);
    for (int i = 0; i < NR_PROTO_ROUTE_MAX; i++) {
        memset(m.route[i], 'a' + i, NR_PROTO_NAME_MAX);
    }
    m.route_len = NR_PROTO_ROUTE_MAX;
    char key[NR_PROTO_KEY_MAX + 1];
    char *value = malloc(2048);
    memset(value, 'v', 2047);
    value[2047] = '\0';
    for (int i = 0; i < NR_PROTO_KV_MAX; i++) {
        memset(key, 'k', NR_PROTO_KEY_MAX);
        key[NR_PROTO_KEY_MAX] = '\0';
        snprintf(key, sizeof key, "%02d", i);
        key[2] = 'k';
        cr_assert_eq(nr_proto_kv_add(&m, key, value), 0);
    }
    cr_assert_eq(nr_proto_kv_add(&m, "one-too-many", "x"), NR_ETOOBIG);
    uint8_t *body;
    size_t size;
    s_encode(&m, &body, &size);
    nr_proto_msg_init(&d);
    char err[ERRLEN] = "";
    cr_assert_eq(nr_proto_decode(body, size, &d, err, sizeof err), 0, "%s", err);
    s_assert_same(&m, &d);
    free(body);
    free(value);
    nr_proto_msg_clear(&m);
    nr_proto_msg_clear(&d);
}

Test(proto, reply_code_zero_and_fail_message_max) {
    nr_msg_t m, d;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_FAIL;
    strcpy(m.id, "x");
    strcpy(m.stage, "speech");
    m.code = NR_ERRNO_MIN;
    memset(m.message, 'm', NR_PROTO_MESSAGE_MAX);
    uint8_t *body;
    size_t size;
    s_encode(&m, &body, &size);
    nr_proto_msg_init(&d);
    cr_assert_eq(nr_proto_decode(body, size, &d, NULL, 0), 0);
    s_assert_same(&m, &d);
    cr_assert_eq(d.retry, 0);
    cr_assert_eq(d.attempt, 0);
    free(body);
    nr_proto_msg_clear(&d);
}

/* ---- Rejections ----------------------------------------------------------- */

Test(proto, rejects_every_truncation) {
    for (int c = NR_CMD_NONE + 1; c < NR_CMD_COUNT; c++) {
        nr_msg_t m;
        s_full(&m, (nr_cmd_t)c);
        uint8_t *body;
        size_t size;
        s_encode(&m, &body, &size);
        for (size_t n = 0; n < size; n++) {
            /* A copy of exactly n bytes, so ASan sees any read past the end. */
            uint8_t *cut = malloc(n ? n : 1);
            memcpy(cut, body, n);
            s_reject(cut, n, NR_EPROTO);
            free(cut);
        }
        /* And one stray byte after a complete body. */
        uint8_t *longer = malloc(size + 1);
        memcpy(longer, body, size);
        longer[size] = 0xc0;
        s_reject(longer, size + 1, NR_EPROTO);
        free(longer);
        free(body);
        nr_proto_msg_clear(&m);
    }
}

Test(proto, rejects_wrong_type_for_each_field) {
    for (int c = NR_CMD_NONE + 1; c < NR_CMD_COUNT; c++) {
        for (size_t f = 0; f < ALL_FIELDS; f++) {
            const char *field = s_all_fields[f];
            if (!s_has(s_allowed((nr_cmd_t)c), field)) continue;
            bool numeric = strcmp(field, "seq") == 0 || strcmp(field, "attempt") == 0 ||
                           strcmp(field, "capacity") == 0 || strcmp(field, "deadline_ms") == 0 ||
                           strcmp(field, "code") == 0 || strcmp(field, "offset") == 0;
            pack_fn wrong[6];
            size_t nwrong = 0;
            wrong[nwrong++] = p_nil;
            wrong[nwrong++] = p_float;
            wrong[nwrong++] = numeric ? p_str : p_uint;
            wrong[nwrong++] = p_bin;
            if (strcmp(field, "route") != 0) wrong[nwrong++] = p_array;
            if (strcmp(field, "kv") != 0) wrong[nwrong++] = p_map;
            if (strcmp(field, "retry") == 0) wrong[0] = p_uint; /* 1 is not true */
            for (size_t w = 0; w < nwrong; w++) {
                msgpack_sbuffer sb = s_replace((nr_cmd_t)c, field, wrong[w]);
                const char *err = s_reject(sb.data, sb.size, NR_EPROTO);
                cr_assert(strstr(err, field) != NULL, "%s/%s: error does not name the field: %s",
                          nr_proto_cmd_name((nr_cmd_t)c), field, err);
                msgpack_sbuffer_destroy(&sb);
            }
        }
        /* cmd must be a string. */
        msgpack_sbuffer sb = s_replace((nr_cmd_t)c, "cmd", p_uint);
        s_reject(sb.data, sb.size, NR_EPROTO);
        msgpack_sbuffer_destroy(&sb);
    }
    /* Unsigned fields refuse negative numbers; true is not an integer. */
    msgpack_sbuffer sb = s_replace(NR_CMD_JOB, "attempt", p_neg);
    s_reject(sb.data, sb.size, NR_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    sb = s_replace(NR_CMD_READY, "capacity", p_true);
    s_reject(sb.data, sb.size, NR_EPROTO);
    msgpack_sbuffer_destroy(&sb);
}

static void p_uint_big(msgpack_packer *pk) { msgpack_pack_uint64(pk, 1ull << 32); }
static void p_route_bad(msgpack_packer *pk) {
    msgpack_pack_array(pk, 2);
    msgpack_pack_str_with_body(pk, "vision", 6);
    msgpack_pack_uint32(pk, 1);
}
static void p_kv_bad_value(msgpack_packer *pk) {
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "k", 1);
    msgpack_pack_uint32(pk, 1);
}
static void p_kv_bad_key(msgpack_packer *pk) {
    msgpack_pack_map(pk, 1);
    msgpack_pack_uint32(pk, 1);
    msgpack_pack_str_with_body(pk, "v", 1);
}

Test(proto, rejects_out_of_range_and_nested_types) {
    struct {
        nr_cmd_t cmd;
        const char *field;
        pack_fn val;
        int code;
    } cases[] = {
        {NR_CMD_JOB, "attempt", p_uint_big, NR_EPROTO},     {NR_CMD_JOB, "deadline_ms", p_uint_big, NR_EPROTO},
        {NR_CMD_READY, "capacity", p_uint_big, NR_EPROTO},  {NR_CMD_SUBMIT, "route", p_route_bad, NR_EPROTO},
        {NR_CMD_RESULT, "kv", p_kv_bad_value, NR_EPROTO},   {NR_CMD_RESULT, "kv", p_kv_bad_key, NR_EPROTO},
        {NR_CMD_SUBMIT, "route", p_array, NR_EPROTO},       {NR_CMD_FAIL, "code", p_uint, NR_EPROTO},
        {NR_CMD_REPLY, "code", p_uint, NR_EPROTO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb = s_replace(cases[i].cmd, cases[i].field, cases[i].val);
        s_reject(sb.data, sb.size, cases[i].code);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void p_v2(msgpack_packer *pk) { msgpack_pack_uint32(pk, 2); }
static void p_v0(msgpack_packer *pk) { msgpack_pack_uint32(pk, 0); }
static void p_cmd_unknown(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "FROBNICATE", 10); }
static void p_cmd_lower(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "ready", 5); }

Test(proto, rejects_bad_version) {
    msgpack_sbuffer sb = s_replace(NR_CMD_READY, "v", NULL);
    cr_assert(strstr(s_reject(sb.data, sb.size, NR_EVERSION), "'v'"));
    msgpack_sbuffer_destroy(&sb);
    pack_fn bad[] = {p_v2, p_v0, p_neg, p_str, p_nil};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sb = s_replace(NR_CMD_STATUS, "v", bad[i]);
        s_reject(sb.data, sb.size, NR_EVERSION);
        msgpack_sbuffer_destroy(&sb);
    }
    /* The version is judged before the command: a newer peer's new command
     * is reported as a version problem. */
    nr_msg_t m;
    s_full(&m, NR_CMD_STATS);
    uint8_t *body;
    size_t size;
    s_encode(&m, &body, &size);
    msgpack_sbuffer a = s_rewrite(body, size, "cmd", p_cmd_unknown, 0, NULL);
    msgpack_sbuffer b = s_rewrite((uint8_t *)a.data, a.size, "v", p_v2, 0, NULL);
    s_reject(b.data, b.size, NR_EVERSION);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    free(body);
}

Test(proto, rejects_unknown_or_missing_cmd) {
    pack_fn bad[] = {p_cmd_unknown, p_cmd_lower, NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msgpack_sbuffer sb = s_replace(NR_CMD_HEARTBEAT, "cmd", bad[i]);
        cr_assert(strstr(s_reject(sb.data, sb.size, NR_EPROTO), "cmd"));
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_sbuffer sb = s_replace(NR_CMD_HEARTBEAT, "cmd", p_cmd_unknown);
    cr_assert(strstr(s_reject(sb.data, sb.size, NR_EPROTO), "'FROBNICATE'"), "%s", s_err);
    msgpack_sbuffer_destroy(&sb);
}

Test(proto, rejects_missing_required_fields) {
    for (int c = NR_CMD_NONE + 1; c < NR_CMD_COUNT; c++) {
        for (size_t f = 0; f < ALL_FIELDS; f++) {
            if (!s_has(s_required((nr_cmd_t)c), s_all_fields[f])) continue;
            msgpack_sbuffer sb = s_replace((nr_cmd_t)c, s_all_fields[f], NULL);
            const char *err = s_reject(sb.data, sb.size, NR_EPROTO);
            cr_assert(strstr(err, s_all_fields[f]), "%s", err);
            msgpack_sbuffer_destroy(&sb);
        }
        /* Optional fields may be left out. */
        for (size_t f = 0; f < ALL_FIELDS; f++) {
            if (!s_has(s_allowed((nr_cmd_t)c), s_all_fields[f]) || s_has(s_required((nr_cmd_t)c), s_all_fields[f]))
                continue;
            msgpack_sbuffer sb = s_replace((nr_cmd_t)c, s_all_fields[f], NULL);
            nr_msg_t d;
            nr_proto_msg_init(&d);
            char err[ERRLEN];
            cr_assert_eq(nr_proto_decode((uint8_t *)sb.data, sb.size, &d, err, sizeof err), 0, "%s", err);
            nr_proto_msg_clear(&d);
            msgpack_sbuffer_destroy(&sb);
        }
    }
}

Test(proto, rejects_oversized_body) {
    uint8_t *big = calloc(1, NR_PROTO_BODY_MAX + 1);
    s_reject(big, NR_PROTO_BODY_MAX + 1, NR_ETOOBIG);
    free(big);

    /* Encode refuses a message whose body would pass the limit. */
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_REPLY;
    char *value = malloc(NR_PROTO_VALUE_MAX + 1);
    memset(value, 'v', NR_PROTO_VALUE_MAX);
    value[NR_PROTO_VALUE_MAX] = '\0';
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(nr_proto_kv_add(&m, key, value), 0);
    }
    uint8_t *body = (uint8_t *)"x";
    size_t size = 1;
    char err[ERRLEN];
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_ETOOBIG);
    cr_assert_null(body);
    cr_assert_eq(size, 0);
    free(value);
    nr_proto_msg_clear(&m);
}

static void s_reject_added(nr_cmd_t cmd, const char *key, const char *val, size_t len, int code) {
    nr_msg_t m;
    s_full(&m, cmd);
    uint8_t *body;
    size_t size;
    s_encode(&m, &body, &size);
    msgpack_sbuffer sb = s_rewrite(body, size, key, NULL, 0, NULL);
    s_add_key = key;
    s_add_val = val;
    s_add_len = len;
    msgpack_sbuffer sb2 = s_rewrite((uint8_t *)sb.data, sb.size, NULL, NULL, 1, s_add_str);
    const char *err = s_reject(sb2.data, sb2.size, code);
    cr_assert(strstr(err, key), "error does not name '%s': %s", key, err);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&sb2);
    free(body);
    nr_proto_msg_clear(&m);
}

Test(proto, rejects_overlong_strings) {
    static char buf[NR_PROTO_VALUE_MAX + 2];
    memset(buf, 'a', sizeof buf);
    s_reject_added(NR_CMD_STATUS, "id", buf, NR_PROTO_ID_MAX + 1, NR_ETOOBIG);
    s_reject_added(NR_CMD_JOB, "stage", buf, NR_PROTO_NAME_MAX + 1, NR_ETOOBIG);
    s_reject_added(NR_CMD_READY, "name", buf, NR_PROTO_NAME_MAX + 1, NR_ETOOBIG);
    s_reject_added(NR_CMD_FAIL, "message", buf, NR_PROTO_MESSAGE_MAX + 1, NR_ETOOBIG);
    s_reject_added(NR_CMD_STATUS, "id", buf, 0, NR_EPROTO); /* empty */
    s_reject_added(NR_CMD_JOBS, "run", buf, NR_PROTO_ID_MAX + 1, NR_ETOOBIG);
    s_reject_added(NR_CMD_JOBS, "run", buf, 0, NR_EPROTO);
    s_reject_added(NR_CMD_FETCH, "stage", buf, 0, NR_EPROTO);
}

static size_t s_kv_n;
static size_t s_kv_keylen = 1;
static size_t s_kv_vallen = 1;
static void p_kv_n(msgpack_packer *pk) {
    static char buf[NR_PROTO_VALUE_MAX + 2];
    memset(buf, 'a', sizeof buf);
    msgpack_pack_map(pk, s_kv_n);
    for (size_t i = 0; i < s_kv_n; i++) {
        char key[NR_PROTO_KEY_MAX + 2];
        memset(key, 'k', sizeof key);
        snprintf(key, sizeof key, "%03zu", i);
        key[3] = 'k';
        msgpack_pack_str_with_body(pk, key, s_kv_keylen < 3 ? 3 : s_kv_keylen);
        msgpack_pack_str_with_body(pk, buf, s_kv_vallen);
    }
}

Test(proto, kv_limits) {
    struct {
        size_t n, keylen, vallen;
        int code;
    } cases[] = {
        {NR_PROTO_KV_MAX, 3, 1, 0},
        {NR_PROTO_KV_MAX + 1, 3, 1, NR_ETOOBIG},
        {1, NR_PROTO_KEY_MAX, NR_PROTO_VALUE_MAX, 0},
        {1, NR_PROTO_KEY_MAX + 1, 1, NR_ETOOBIG},
        {1, 3, NR_PROTO_VALUE_MAX + 1, NR_ETOOBIG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_kv_n = cases[i].n;
        s_kv_keylen = cases[i].keylen;
        s_kv_vallen = cases[i].vallen;
        msgpack_sbuffer sb = s_replace(NR_CMD_RESULT, "kv", p_kv_n);
        if (cases[i].code) {
            s_reject(sb.data, sb.size, cases[i].code);
        } else {
            nr_msg_t d;
            nr_proto_msg_init(&d);
            char err[ERRLEN];
            cr_assert_eq(nr_proto_decode((uint8_t *)sb.data, sb.size, &d, err, sizeof err), 0, "%zu: %s", i, err);
            cr_assert_eq(d.kv_len, cases[i].n);
            nr_proto_msg_clear(&d);
        }
        msgpack_sbuffer_destroy(&sb);
    }
}

Test(proto, rejects_bad_charsets_and_nul) {
    const char *bad_ids[] = {"a b", "a/b", "caf\xc3\xa9", "a\nb", "{x}", "a\"b"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        s_reject_added(NR_CMD_CANCEL, "id", bad_ids[i], strlen(bad_ids[i]), NR_EPROTO);
        s_reject_added(NR_CMD_SUBMIT, "run", bad_ids[i], strlen(bad_ids[i]), NR_EPROTO);
    }
    const char *bad_names[] = {"Vision", "vi.sion", "a:b", "text ", "sp/eech"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        s_reject_added(NR_CMD_FETCH, "stage", bad_names[i], strlen(bad_names[i]), NR_EPROTO);
        s_reject_added(NR_CMD_READY, "name", bad_names[i], strlen(bad_names[i]), NR_EPROTO);
    }
    s_reject_added(NR_CMD_STATUS, "id", "ab\0cd", 5, NR_EPROTO);
    s_reject_added(NR_CMD_REPLY, "message", "ab\0cd", 5, NR_EPROTO);
}

static void p_route_dup(msgpack_packer *pk) {
    msgpack_pack_array(pk, 2);
    msgpack_pack_str_with_body(pk, "text", 4);
    msgpack_pack_str_with_body(pk, "text", 4);
}
static void p_route_nine(msgpack_packer *pk) {
    msgpack_pack_array(pk, NR_PROTO_ROUTE_MAX + 1);
    for (int i = 0; i < NR_PROTO_ROUTE_MAX + 1; i++) {
        char s[16];
        snprintf(s, sizeof s, "s%d", i);
        msgpack_pack_str_with_body(pk, s, strlen(s));
    }
}
static void p_route_upper(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    msgpack_pack_str_with_body(pk, "TEXT", 4);
}
static void p_kv_dup(msgpack_packer *pk) {
    msgpack_pack_map(pk, 2);
    msgpack_pack_str_with_body(pk, "a", 1);
    msgpack_pack_str_with_body(pk, "1", 1);
    msgpack_pack_str_with_body(pk, "a", 1);
    msgpack_pack_str_with_body(pk, "2", 1);
}
static void p_kv_badkey(msgpack_packer *pk) {
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "a b", 3);
    msgpack_pack_str_with_body(pk, "1", 1);
}

Test(proto, rejects_bad_route_and_kv_content) {
    struct {
        nr_cmd_t cmd;
        const char *field;
        pack_fn val;
        int code;
    } cases[] = {
        {NR_CMD_SUBMIT, "route", p_route_dup, NR_EPROTO},   {NR_CMD_SUBMIT, "route", p_route_nine, NR_ETOOBIG},
        {NR_CMD_SUBMIT, "route", p_route_upper, NR_EPROTO}, {NR_CMD_JOB, "kv", p_kv_dup, NR_EPROTO},
        {NR_CMD_REPLY, "kv", p_kv_badkey, NR_EPROTO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb = s_replace(cases[i].cmd, cases[i].field, cases[i].val);
        s_reject(sb.data, sb.size, cases[i].code);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void p_cap0(msgpack_packer *pk) { msgpack_pack_uint32(pk, 0); }
static void p_cap1025(msgpack_packer *pk) { msgpack_pack_uint32(pk, 1025); }
static void p_code0(msgpack_packer *pk) { msgpack_pack_int32(pk, 0); }
static void p_code_low(msgpack_packer *pk) { msgpack_pack_int32(pk, NR_ERRNO_MIN - 1); }
static void p_code_pos(msgpack_packer *pk) { msgpack_pack_int32(pk, 1); }
static void p_code_huge(msgpack_packer *pk) { msgpack_pack_int64(pk, -(1ll << 40)); }

Test(proto, rejects_value_ranges) {
    struct {
        nr_cmd_t cmd;
        const char *field;
        pack_fn val;
    } cases[] = {
        {NR_CMD_READY, "capacity", p_cap0}, {NR_CMD_READY, "capacity", p_cap1025}, {NR_CMD_FAIL, "code", p_code0},
        {NR_CMD_FAIL, "code", p_code_low},  {NR_CMD_REPLY, "code", p_code_pos},    {NR_CMD_REPLY, "code", p_code_low},
        {NR_CMD_REPLY, "code", p_code_huge},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb = s_replace(cases[i].cmd, cases[i].field, cases[i].val);
        const char *err = s_reject(sb.data, sb.size, NR_EPROTO);
        cr_assert(strstr(err, cases[i].field), "%s", err);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void s_pack_one(pack_fn f, msgpack_sbuffer *sb) {
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    f(&pk);
}
static void p_str_top(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "READY", 5); }
static void p_array_top(msgpack_packer *pk) {
    msgpack_pack_array(pk, 2);
    msgpack_pack_str_with_body(pk, "v", 1);
    msgpack_pack_uint32(pk, 1);
}

Test(proto, rejects_non_map_top_level) {
    pack_fn tops[] = {p_str_top, p_array_top, p_uint, p_nil, p_true, p_float, p_bin, p_array};
    for (size_t i = 0; i < sizeof tops / sizeof tops[0]; i++) {
        msgpack_sbuffer sb;
        s_pack_one(tops[i], &sb);
        s_reject(sb.data, sb.size, NR_EPROTO);
        msgpack_sbuffer_destroy(&sb);
    }
    /* Two maps back to back are not one body. */
    uint8_t two[] = {0x80, 0x80};
    s_reject(two, sizeof two, NR_EPROTO);
    /* 0xc1 is never used by MessagePack. */
    uint8_t c1[] = {0xc1};
    s_reject(c1, sizeof c1, NR_EPROTO);
    /* A map32 header promising 4 billion entries in 5 bytes. */
    uint8_t huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    s_reject(huge, sizeof huge, NR_EPROTO);
    uint8_t huge_arr[] = {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff};
    s_reject(huge_arr, sizeof huge_arr, NR_EPROTO);
}

static void s_add_dup_id(msgpack_packer *pk) {
    msgpack_pack_str_with_body(pk, "id", 2);
    msgpack_pack_str_with_body(pk, "other", 5);
}
static void s_add_dup_unknown(msgpack_packer *pk) {
    msgpack_pack_str_with_body(pk, "zz", 2);
    msgpack_pack_nil(pk);
}
static void s_add_int_key(msgpack_packer *pk) {
    msgpack_pack_uint32(pk, 1);
    msgpack_pack_nil(pk);
}
static void s_add_future(msgpack_packer *pk) {
    msgpack_pack_str_with_body(pk, "future", 6);
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "a", 1);
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint32(pk, 1);
    msgpack_pack_double(pk, 2.5);
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "\0\1", 2);
}
static void s_add_unused_known(msgpack_packer *pk) {
    /* "route" is a known key, but HEARTBEAT does not use it. */
    msgpack_pack_str_with_body(pk, "route", 5);
    msgpack_pack_uint32(pk, 9);
}

Test(proto, duplicate_keys_rejected_unknown_keys_ignored) {
    nr_msg_t m;
    s_full(&m, NR_CMD_STATUS);
    uint8_t *body;
    size_t size;
    s_encode(&m, &body, &size);
    msgpack_sbuffer sb = s_rewrite(body, size, NULL, NULL, 1, s_add_dup_id);
    cr_assert(strstr(s_reject(sb.data, sb.size, NR_EPROTO), "twice"));
    msgpack_sbuffer_destroy(&sb);
    sb = s_rewrite(body, size, NULL, NULL, 2, s_add_dup_unknown);
    s_reject(sb.data, sb.size, NR_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    sb = s_rewrite(body, size, NULL, NULL, 1, s_add_int_key);
    s_reject(sb.data, sb.size, NR_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* Too many keys, even unknown ones. */
    sb = s_rewrite(body, size, NULL, NULL, NR_PROTO_FIELDS_MAX, s_add_dup_unknown);
    s_reject(sb.data, sb.size, NR_ETOOBIG);
    msgpack_sbuffer_destroy(&sb);

    sb = s_rewrite(body, size, NULL, NULL, 1, s_add_future);
    nr_msg_t d;
    nr_proto_msg_init(&d);
    char err[ERRLEN];
    cr_assert_eq(nr_proto_decode((uint8_t *)sb.data, sb.size, &d, err, sizeof err), 0, "%s", err);
    s_assert_same(&m, &d);
    nr_proto_msg_clear(&d);
    msgpack_sbuffer_destroy(&sb);
    free(body);
    nr_proto_msg_clear(&m);

    s_full(&m, NR_CMD_HEARTBEAT);
    s_encode(&m, &body, &size);
    sb = s_rewrite(body, size, NULL, NULL, 1, s_add_unused_known);
    cr_assert_eq(nr_proto_decode((uint8_t *)sb.data, sb.size, &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.route_len, 0);
    nr_proto_msg_clear(&d);
    msgpack_sbuffer_destroy(&sb);
    free(body);
}

Test(proto, encode_rejects_invalid_messages) {
    nr_msg_t m;
    uint8_t *body = NULL;
    size_t size = 0;
    char err[ERRLEN];

    nr_proto_msg_init(&m); /* NONE */
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);
    m.cmd = NR_CMD_COUNT;
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);

    s_minimal(&m, NR_CMD_HEARTBEAT);
    strcpy(m.id, "x");
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);
    cr_assert(strstr(err, "id"), "%s", err);

    s_minimal(&m, NR_CMD_STATUS);
    m.id[0] = '\0';
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);
    cr_assert(strstr(err, "id"), "%s", err);

    s_minimal(&m, NR_CMD_STATUS);
    memset(m.id, 'a', sizeof m.id); /* not terminated */
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_ETOOBIG);

    s_minimal(&m, NR_CMD_STATUS);
    strcpy(m.id, "no spaces");
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);

    s_minimal(&m, NR_CMD_READY);
    m.capacity = 0;
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);
    cr_assert(strstr(err, "capacity"), "%s", err);

    s_minimal(&m, NR_CMD_FAIL);
    m.code = 0;
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);

    s_minimal(&m, NR_CMD_FAIL);
    m.retry = 2;
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);

    s_minimal(&m, NR_CMD_SUBMIT);
    m.route_len = 0;
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);
    m.route_len = NR_PROTO_ROUTE_MAX + 1;
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_ETOOBIG);

    s_minimal(&m, NR_CMD_SUBMIT);
    strcpy(m.route[1], "speech");
    m.route_len = 2;
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);
    cr_assert(strstr(err, "twice"), "%s", err);

    /* A message built by hand with duplicate kv keys. */
    s_minimal(&m, NR_CMD_RESULT);
    nr_kv_t kv[2] = {{"a", "1"}, {"a", "2"}};
    m.kv = kv;
    m.kv_len = 2;
    cr_assert_eq(nr_proto_encode(&m, &body, &size, err, sizeof err), NR_EPROTO);
    m.kv = NULL;
    m.kv_len = 0;

    cr_assert_null(body);
    cr_assert_eq(nr_proto_encode(NULL, &body, &size, err, sizeof err), NR_EINVAL);
}

Test(proto, kv_and_frame_helpers) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    cr_assert_eq(nr_proto_kv_add(&m, "a", "1"), 0);
    cr_assert_eq(nr_proto_kv_add(&m, "b", "2"), 0);
    cr_assert_eq(nr_proto_kv_add(&m, "a", "3"), 0); /* replaces */
    cr_assert_eq(m.kv_len, 2);
    cr_assert_str_eq(nr_proto_kv_get(&m, "a"), "3");
    cr_assert_null(nr_proto_kv_get(&m, "c"));
    cr_assert_eq(nr_proto_kv_add(&m, "", "x"), NR_EINVAL);
    cr_assert_eq(nr_proto_kv_add(&m, "a b", "x"), NR_EINVAL);
    cr_assert_eq(nr_proto_kv_add(&m, NULL, "x"), NR_EINVAL);
    char longkey[NR_PROTO_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    cr_assert_eq(nr_proto_kv_add(&m, longkey, "x"), NR_ETOOBIG);
    char *longval = malloc(NR_PROTO_VALUE_MAX + 2);
    memset(longval, 'v', NR_PROTO_VALUE_MAX + 1);
    longval[NR_PROTO_VALUE_MAX + 1] = '\0';
    cr_assert_eq(nr_proto_kv_add(&m, "c", longval), NR_ETOOBIG);
    free(longval);

    cr_assert_eq(nr_proto_frame_add(&m, "abc", 3), 0);
    cr_assert_eq(nr_proto_frame_add(&m, NULL, 0), 0);
    cr_assert_not_null(m.frames[1].data);
    uint8_t *owned = malloc(5);
    memcpy(owned, "hello", 5);
    cr_assert_eq(nr_proto_frame_take(&m, &owned, 5), 0);
    cr_assert_null(owned);
    cr_assert_eq(nr_proto_frame_add(&m, "d", 1), 0);
    owned = malloc(1);
    cr_assert_eq(nr_proto_frame_take(&m, &owned, 1), NR_ETOOBIG); /* fifth frame */
    cr_assert_null(owned);
    cr_assert_eq(m.frames_len, NR_PROTO_FRAMES_MAX);
    cr_assert_eq(memcmp(m.frames[2].data, "hello", 5), 0);
    nr_proto_msg_clear(&m);
    cr_assert_eq(m.frames_len, 0);
    nr_proto_msg_clear(&m);
    nr_proto_msg_clear(NULL);

    /* The payload limit counts all frames together. */
    uint8_t *big = malloc(NR_PROTO_PAYLOAD_MAX);
    cr_assert_eq(nr_proto_frame_take(&m, &big, NR_PROTO_PAYLOAD_MAX), 0);
    cr_assert_eq(nr_proto_frame_add(&m, "x", 1), NR_ETOOBIG);
    cr_assert_eq(nr_proto_frame_add(&m, NULL, 0), 0);
    nr_proto_msg_clear(&m);

    cr_assert_str_eq(nr_proto_cmd_name(NR_CMD_READY), "READY");
    cr_assert_str_eq(nr_proto_cmd_name(NR_CMD_REPLY), "REPLY");
    cr_assert_str_eq(nr_proto_cmd_name(NR_CMD_NONE), "?");
    cr_assert_str_eq(nr_proto_cmd_name((nr_cmd_t)99), "?");
}

/* ---- Garbage ---------------------------------------------------------------- */

static uint64_t s_rng = 0x9e3779b97f4a7c15ull;
static uint64_t s_next(void) {
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

/* Decoding anything either fails cleanly or yields a message that encodes
 * and decodes back to itself. */
static void s_try(const uint8_t *buf, size_t n) {
    nr_msg_t d;
    nr_proto_msg_init(&d);
    char err[ERRLEN];
    int rc = nr_proto_decode(buf, n, &d, err, sizeof err);
    cr_assert(rc == 0 || rc == NR_EPROTO || rc == NR_EVERSION || rc == NR_ETOOBIG, "rc %d", rc);
    if (rc == 0) {
        uint8_t *body;
        size_t size;
        s_encode(&d, &body, &size);
        nr_msg_t e;
        nr_proto_msg_init(&e);
        cr_assert_eq(nr_proto_decode(body, size, &e, err, sizeof err), 0, "%s", err);
        s_assert_same(&d, &e);
        nr_proto_msg_clear(&e);
        free(body);
    }
    nr_proto_msg_clear(&d);
}

Test(proto, random_garbage_never_crashes) {
    s_rng = 0x9e3779b97f4a7c15ull;
    uint8_t buf[600];
    for (int i = 0; i < 20000; i++) {
        size_t n = s_next() % sizeof buf;
        for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)s_next();
        /* Bias some inputs towards maps, which get further. */
        if (n && (i & 1)) buf[0] = 0x80 | (buf[0] & 0x0f);
        s_try(buf, n);
    }
    /* Mutations of valid bodies reach deep into the field checks. */
    int accepted = 0;
    for (int i = 0; i < 20000; i++) {
        nr_msg_t m;
        s_full(&m, (nr_cmd_t)(1 + s_next() % (NR_CMD_COUNT - 1)));
        uint8_t *body;
        size_t size;
        s_encode(&m, &body, &size);
        int flips = 1 + (int)(s_next() % 4);
        for (int f = 0; f < flips; f++) body[s_next() % size] ^= (uint8_t)(1u << (s_next() % 8));
        size_t n = s_next() % 8 == 0 ? s_next() % size : size;
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, body, n);
        nr_msg_t d;
        nr_proto_msg_init(&d);
        if (nr_proto_decode(copy, n, &d, NULL, 0) == 0) accepted++;
        nr_proto_msg_clear(&d);
        s_try(copy, n);
        free(copy);
        free(body);
        nr_proto_msg_clear(&m);
    }
    cr_log_info("mutations accepted: %d of 20000", accepted);
}

/* ---- Through real ZeroMQ sockets ------------------------------------------- */

typedef struct {
    void *ctx, *router, *dealer;
} pair_t;

static void s_pair(pair_t *p) {
    static int n;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://proto-test-%d", n++);
    p->ctx = zmq_ctx_new();
    cr_assert_not_null(p->ctx);
    p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
    p->dealer = zmq_socket(p->ctx, ZMQ_DEALER);
    int timeout = 5000, linger = 0;
    zmq_setsockopt(p->router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(p->dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(p->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(p->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(p->dealer, ZMQ_ROUTING_ID, "worker-1", 8);
    cr_assert_eq(zmq_bind(p->router, ep), 0);
    cr_assert_eq(zmq_connect(p->dealer, ep), 0);
}

static void s_unpair(pair_t *p) {
    zmq_close(p->router);
    zmq_close(p->dealer);
    zmq_ctx_term(p->ctx);
}

/* Sends raw parts from the dealer, as a broken peer would. */
static void s_raw(void *sock, const void *const *parts, const size_t *sizes, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_assert_geq(zmq_send(sock, parts[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0), 0);
}

/* The router receives a well-formed HEARTBEAT from worker-1. */
static void s_expect_heartbeat(pair_t *p) {
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_HEARTBEAT;
    char err[ERRLEN];
    cr_assert_eq(nr_proto_send(p->dealer, NULL, 0, &m, err, sizeof err), 0, "%s", err);
    uint8_t id[256];
    size_t idn = 0;
    cr_assert_eq(nr_proto_recv(p->router, id, &idn, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.cmd, NR_CMD_HEARTBEAT);
    cr_assert_eq(idn, 8);
    cr_assert_eq(memcmp(id, "worker-1", 8), 0);
}

Test(proto_zmq, send_recv_roundtrip_both_ways) {
    pair_t p;
    s_pair(&p);
    char err[ERRLEN];
    nr_msg_t m, d;
    s_full(&m, NR_CMD_RESULT);
    cr_assert_eq(nr_proto_frame_add(&m, "output-bytes", 12), 0);
    cr_assert_eq(nr_proto_frame_add(&m, "", 0), 0);
    cr_assert_eq(nr_proto_send(p.dealer, NULL, 0, &m, err, sizeof err), 0, "%s", err);
    uint8_t id[256];
    size_t idn = 0;
    nr_proto_msg_init(&d);
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &d, err, sizeof err), 0, "%s", err);
    s_assert_same(&m, &d);
    cr_assert_eq(d.frames_len, 2);
    cr_assert_eq(d.frames[0].size, 12);
    cr_assert_eq(memcmp(d.frames[0].data, "output-bytes", 12), 0);
    cr_assert_eq(d.frames[1].size, 0);
    cr_assert_eq(idn, 8);

    /* The router answers through the identity. */
    nr_proto_msg_clear(&m);
    s_full(&m, NR_CMD_JOB);
    cr_assert_eq(nr_proto_frame_add(&m, "image", 5), 0);
    cr_assert_eq(nr_proto_send(p.router, id, idn, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_proto_recv(p.dealer, NULL, NULL, &d, err, sizeof err), 0, "%s", err);
    s_assert_same(&m, &d);
    cr_assert_eq(d.frames_len, 1);
    cr_assert_eq(memcmp(d.frames[0].data, "image", 5), 0);
    nr_proto_msg_clear(&m);
    nr_proto_msg_clear(&d);
    s_unpair(&p);
}

/* nr_proto_recv says who sent a message: the peer's address over TCP
 * (a CURVE key name with ZAP: tests/test_secure.c), nothing over inproc;
 * it is never put on the wire. */
Test(proto_zmq, recv_names_the_peer) {
    pair_t p;
    s_pair(&p);
    char err[ERRLEN];
    nr_msg_t m;
    nr_proto_msg_init(&m);
    m.cmd = NR_CMD_HEARTBEAT;
    snprintf(m.peer, sizeof m.peer, "forged");
    cr_assert_eq(nr_proto_send(p.dealer, NULL, 0, &m, err, sizeof err), 0, "%s", err);
    uint8_t id[256];
    size_t idn = 0;
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &m, err, sizeof err), 0, "%s", err);
    cr_assert_str_empty(m.peer, "inproc peer: '%s'", m.peer);
    s_unpair(&p);

    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER), *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int timeout = 5000, linger = 0;
    zmq_setsockopt(router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t epn = sizeof ep;
    cr_assert_eq(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &epn), 0);
    cr_assert_eq(zmq_connect(dealer, ep), 0);
    nr_proto_msg_clear(&m);
    m.cmd = NR_CMD_HEARTBEAT;
    cr_assert_eq(nr_proto_send(dealer, NULL, 0, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_proto_recv(router, id, &idn, &m, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(m.peer, "127.0.0.1");
    nr_proto_msg_clear(&m);
    cr_assert_str_empty(m.peer);
    zmq_close(router);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
}

Test(proto_zmq, malformed_message_keeps_identity_and_stream) {
    pair_t p;
    s_pair(&p);
    char err[ERRLEN];
    uint8_t id[256];
    size_t idn = 0;
    nr_msg_t m;
    nr_proto_msg_init(&m);

    /* Garbage body with payload frames after it. */
    const void *parts[] = {"\xde\xad\xbe\xef", "p1", "p2"};
    size_t sizes[] = {4, 2, 2};
    s_raw(p.dealer, parts, sizes, 3);
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &m, err, sizeof err), NR_EPROTO);
    cr_assert_eq(idn, 8);
    cr_assert_eq(memcmp(id, "worker-1", 8), 0);
    cr_assert_eq(m.cmd, NR_CMD_NONE);
    cr_assert_eq(m.frames_len, 0);
    s_expect_heartbeat(&p);

    /* An empty body. */
    s_raw(p.dealer, (const void *[]){""}, (size_t[]){0}, 1);
    idn = 0;
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &m, err, sizeof err), NR_EPROTO);
    cr_assert_eq(idn, 8);
    s_expect_heartbeat(&p);

    /* A well-formed body for a command that carries no payload, with one. */
    nr_msg_t st;
    s_full(&st, NR_CMD_STATUS);
    uint8_t *body;
    size_t size;
    s_encode(&st, &body, &size);
    s_raw(p.dealer, (const void *[]){body, "x"}, (size_t[]){size, 1}, 2);
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &m, err, sizeof err), NR_EPROTO);
    cr_assert(strstr(err, "STATUS"), "%s", err);
    s_expect_heartbeat(&p);

    /* A future version. */
    msgpack_sbuffer sb = s_rewrite(body, size, "v", p_v2, 0, NULL);
    s_raw(p.dealer, (const void *[]){sb.data}, (size_t[]){sb.size}, 1);
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &m, err, sizeof err), NR_EVERSION);
    cr_assert_eq(idn, 8);
    s_expect_heartbeat(&p);
    msgpack_sbuffer_destroy(&sb);
    free(body);
    nr_proto_msg_clear(&m);
    s_unpair(&p);
}

Test(proto_zmq, too_many_frames) {
    pair_t p;
    s_pair(&p);
    char err[ERRLEN];
    uint8_t id[256];
    size_t idn = 0;
    nr_msg_t m;
    s_full(&m, NR_CMD_RESULT);
    uint8_t *body;
    size_t size;
    s_encode(&m, &body, &size);
    const void *parts[] = {body, "1", "2", "3", "4", "5"};
    size_t sizes[] = {size, 1, 1, 1, 1, 1};
    s_raw(p.dealer, parts, sizes, 6);
    nr_msg_t d;
    nr_proto_msg_init(&d);
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &d, err, sizeof err), NR_ETOOBIG);
    cr_assert(strstr(err, "frames"), "%s", err);
    cr_assert_eq(idn, 8);
    cr_assert_eq(d.frames_len, 0);
    s_expect_heartbeat(&p);

    /* Exactly the limit is fine. */
    s_raw(p.dealer, parts, sizes, 5);
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.frames_len, NR_PROTO_FRAMES_MAX);
    cr_assert_eq(memcmp(d.frames[3].data, "4", 1), 0);

    /* nr_proto_send will not send more than the limit either. */
    m.frames_len = NR_PROTO_FRAMES_MAX + 1;
    cr_assert_eq(nr_proto_send(p.dealer, NULL, 0, &m, err, sizeof err), NR_ETOOBIG);
    m.frames_len = 0;
    nr_msg_t st;
    s_full(&st, NR_CMD_STATUS);
    cr_assert_eq(nr_proto_frame_add(&st, "x", 1), 0);
    cr_assert_eq(nr_proto_send(p.dealer, NULL, 0, &st, err, sizeof err), NR_EPROTO);
    nr_proto_msg_clear(&st);
    s_expect_heartbeat(&p);

    free(body);
    nr_proto_msg_clear(&m);
    nr_proto_msg_clear(&d);
    s_unpair(&p);
}

Test(proto_zmq, oversized_payload) {
    pair_t p;
    s_pair(&p);
    char err[ERRLEN];
    uint8_t id[256];
    size_t idn = 0;
    nr_msg_t m;
    s_full(&m, NR_CMD_SUBMIT);
    uint8_t *body;
    size_t size;
    s_encode(&m, &body, &size);
    size_t half = NR_PROTO_PAYLOAD_MAX / 2 + 1;
    uint8_t *big = calloc(1, half);
    s_raw(p.dealer, (const void *[]){body, big, big}, (size_t[]){size, half, half}, 3);
    nr_msg_t d;
    nr_proto_msg_init(&d);
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &d, err, sizeof err), NR_ETOOBIG);
    cr_assert(strstr(err, "payload"), "%s", err);
    cr_assert_eq(idn, 8);
    s_expect_heartbeat(&p);

    /* An oversized body frame. */
    uint8_t *bigbody = calloc(1, NR_PROTO_BODY_MAX + 1);
    s_raw(p.dealer, (const void *[]){bigbody}, (size_t[]){NR_PROTO_BODY_MAX + 1}, 1);
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &d, err, sizeof err), NR_ETOOBIG);
    cr_assert_eq(idn, 8);
    s_expect_heartbeat(&p);

    free(bigbody);
    free(big);
    free(body);
    nr_proto_msg_clear(&m);
    s_unpair(&p);
}

Test(proto_zmq, recv_timeout_and_bad_arguments) {
    pair_t p;
    s_pair(&p);
    int timeout = 10;
    zmq_setsockopt(p.router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    nr_msg_t m;
    nr_proto_msg_init(&m);
    uint8_t id[256];
    size_t idn = 99;
    char err[ERRLEN];
    cr_assert_eq(nr_proto_recv(p.router, id, &idn, &m, err, sizeof err), NR_EIO);
    cr_assert_eq(errno, EAGAIN);
    cr_assert_eq(idn, 0);
    cr_assert_eq(nr_proto_recv(NULL, id, &idn, &m, err, sizeof err), NR_EINVAL);
    cr_assert_eq(nr_proto_recv(p.router, id, NULL, &m, err, sizeof err), NR_EINVAL);
    m.cmd = NR_CMD_HEARTBEAT;
    cr_assert_eq(nr_proto_send(NULL, NULL, 0, &m, err, sizeof err), NR_EINVAL);
    cr_assert_eq(nr_proto_send(p.router, id, 0, &m, err, sizeof err), NR_EINVAL);
    cr_assert_eq(nr_proto_send(p.router, id, 256, &m, err, sizeof err), NR_EINVAL);
    s_unpair(&p);
}

/* Found by fuzz_proto: two empty-string keys made the duplicate check call
 * memcmp with msgpack-c's NULL pointer for an empty string. */
Test(proto, regression_empty_string_keys) {
    uint8_t dup_empty[] = {0x82, 0xa0, 0x01, 0xa0, 0x02};
    s_reject(dup_empty, sizeof dup_empty, NR_EPROTO);
    uint8_t crash[] = {0x83, 0xa0, 0x2d, 0xa0, 0xa0, 0x9f, 0x87, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0,
                       0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0};
    s_reject(crash, sizeof crash, NR_EPROTO);
    /* An empty unknown key is just ignored. */
    uint8_t empty_key[] = {0x83, 0xa1, 'v', 0x01, 0xa3, 'c', 'm', 'd', 0xa9, 'H', 'E', 'A', 'R', 'T', 'B',
                           'E', 'A', 'T', 0xa0, 0xa0};
    nr_msg_t m;
    nr_proto_msg_init(&m);
    char err[ERRLEN];
    cr_assert_eq(nr_proto_decode(empty_key, sizeof empty_key, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.cmd, NR_CMD_HEARTBEAT);
}

/* ---- READY kv "voices" ---------------------------------------------------- */

static const char *s_voices_val;
static void p_kv_voices(msgpack_packer *pk) {
    msgpack_pack_map(pk, 2);
    msgpack_pack_str_with_body(pk, "model", 5);
    msgpack_pack_str_with_body(pk, "kokoro", 6);
    msgpack_pack_str_with_body(pk, "voices", 6);
    msgpack_pack_str_with_body(pk, s_voices_val, strlen(s_voices_val));
}

/* A READY whose voice list is hostile is refused at decode (and a worker
 * cannot encode one); a good one round-trips. */
Test(proto, ready_voices_are_bounded_and_checked) {
    static char many[8192], big[4096], dup[64];
    size_t o = 0;
    for (int i = 0; i <= NR_PROTO_VOICES_MAX; i++) o += (size_t)snprintf(many + o, sizeof many - o, "%sv%d", i ? "," : "", i);
    memset(big, 'a', NR_PROTO_VOICES_BYTES + 1); /* one name, too long anyway */
    for (size_t i = 20; i < NR_PROTO_VOICES_BYTES + 1; i += 21) big[i] = ',';
    snprintf(dup, sizeof dup, "af_heart,bf_emma,af_heart");
    struct {
        const char *list;
        int code;
    } bad[] = {{"", NR_EPROTO},           {",", NR_EPROTO},          {"a,,b", NR_EPROTO},
               {"a,", NR_EPROTO},         {"a b", NR_EPROTO},        {"<script>", NR_EPROTO},
               {"caf\xC3\xA9", NR_EPROTO}, {"a\nb", NR_EPROTO},      {dup, NR_EPROTO},
               {"abcdefghijklmnopqrstuvwxyz0123456", NR_EPROTO},     {many, NR_ETOOBIG},
               {big, NR_ETOOBIG}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[ERRLEN] = "";
        cr_assert_eq(nr_proto_voices_check(bad[i].list, NULL, err, sizeof err), bad[i].code, "case %zu", i);
        s_voices_val = bad[i].list;
        msgpack_sbuffer sb = s_replace(NR_CMD_READY, "kv", p_kv_voices);
        const char *why = s_reject(sb.data, sb.size, bad[i].code);
        cr_assert(strstr(why, "voices"), "case %zu: %s", i, why);
        msgpack_sbuffer_destroy(&sb);
        nr_msg_t m;
        s_minimal(&m, NR_CMD_READY);
        cr_assert_eq(nr_proto_kv_add(&m, "voices", bad[i].list), 0);
        uint8_t *body = NULL;
        size_t size;
        cr_assert_neq(nr_proto_encode(&m, &body, &size, err, sizeof err), 0, "case %zu encoded", i);
        cr_assert_null(body);
        nr_proto_msg_clear(&m);
    }
    /* The same key is free text on other commands (a job option named voices). */
    s_voices_val = "a,,b";
    msgpack_sbuffer sb = s_replace(NR_CMD_JOB, "kv", p_kv_voices);
    nr_msg_t m;
    nr_proto_msg_init(&m);
    char err[ERRLEN] = "";
    cr_assert_eq(nr_proto_decode((const uint8_t *)sb.data, sb.size, &m, err, sizeof err), 0, "%s", err);
    nr_proto_msg_clear(&m);
    msgpack_sbuffer_destroy(&sb);
    /* Good lists: exactly at the limits. */
    o = 0;
    for (int i = 0; i < NR_PROTO_VOICES_MAX; i++) o += (size_t)snprintf(many + o, sizeof many - o, "%sv%d", i ? "," : "", i);
    size_t n = 0;
    cr_assert_eq(nr_proto_voices_check(many, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, NR_PROTO_VOICES_MAX);
    s_voices_val = "af_heart,am_michael,kal16,en-us.x";
    sb = s_replace(NR_CMD_READY, "kv", p_kv_voices);
    cr_assert_eq(nr_proto_decode((const uint8_t *)sb.data, sb.size, &m, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(nr_proto_kv_get(&m, "voices"), "af_heart,am_michael,kal16,en-us.x");
    nr_proto_msg_clear(&m);
    msgpack_sbuffer_destroy(&sb);
}
