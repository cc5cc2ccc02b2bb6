/* The codec's insides that the ZeroMQ framing (transport.c) shares with
 * the MessagePack codec (proto.c); not an API: proto.h is. */
#ifndef NR_PROTO_INTERNAL_H
#define NR_PROTO_INTERNAL_H

#include "proto/proto.h"

#include <stddef.h>

#define NR_PROTO_IDENTITY_MAX 255 /* ZeroMQ routing ids are 1..255 bytes */

/* A body being packed: in `stack` (the caller's) until it outgrows it, so
 * a usual message costs no allocation (msgpack's sbuffer starts at 8 KiB,
 * which malloc serves from its slow, consolidating path). */
#define NR_PROTO_BODY_STACK 2048
typedef struct {
    char *data;
    size_t size, cap;
    char stack[NR_PROTO_BODY_STACK];
} nr_proto_body_t;

int nr_proto_check_frames(nr_cmd_t cmd, size_t count, size_t total, char *err, size_t errlen);
size_t nr_proto_payload_total(const nr_msg_t *self);
void nr_proto_body_init(nr_proto_body_t *b);
void nr_proto_body_free(nr_proto_body_t *b);
int nr_proto_encode_body(const nr_msg_t *msg, nr_proto_body_t *out, char *err, size_t errlen);

#endif
