/* ZeroMQ multipart framing of messages: [identity,] body, payload frames;
 * every message sent or received goes through the codec's one validator. */
#include "proto/proto_internal.h"

#include "common/error.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* What a counted part carries to its free callback. */
typedef struct {
    _Atomic size_t *queued;
    size_t size;
} s_counted_t;

static void s_counted_free(void *data, void *hint) {
    (void)data;
    s_counted_t *c = hint;
    atomic_fetch_sub(c->queued, c->size);
    free(c); /* the data follows the header in the same block */
}

/* Sends one part: a plain copy, or (queued) a copy counted until ZeroMQ
 * lets it go. */
static int s_send_part(void *socket, const void *data, size_t size, int flags,
                       _Atomic size_t *queued) {
    if (!queued) return zmq_send(socket, data, size, flags);
    s_counted_t *c = malloc(sizeof *c + (size ? size : 1));
    if (!c) {
        errno = ENOMEM;
        return -1;
    }
    c->queued = queued;
    c->size = size;
    uint8_t *copy = (uint8_t *)(c + 1);
    if (size) memcpy(copy, data, size);
    zmq_msg_t m;
    if (zmq_msg_init_data(&m, copy, size, s_counted_free, c)) {
        free(c);
        return -1;
    }
    atomic_fetch_add(queued, size);
    if (zmq_msg_send(&m, socket, flags) < 0) {
        int saved = errno;
        zmq_msg_close(&m); /* gives the count back */
        errno = saved;
        return -1;
    }
    return (int)(size > INT32_MAX ? INT32_MAX : size);
}

static int s_send(void *socket, const void *identity, size_t identity_size, const nr_msg_t *msg,
                  _Atomic size_t *queued, char *err, size_t errlen);

int nr_proto_send(void *socket, const void *identity, size_t identity_size, const nr_msg_t *msg, char *err,
                  size_t errlen) {
    return s_send(socket, identity, identity_size, msg, NULL, err, errlen);
}

int nr_proto_send_counted(void *socket, const void *identity, size_t identity_size,
                          const nr_msg_t *msg, _Atomic size_t *queued, char *err, size_t errlen) {
    return s_send(socket, identity, identity_size, msg, queued, err, errlen);
}

static int s_send(void *socket, const void *identity, size_t identity_size, const nr_msg_t *msg,
                  _Atomic size_t *queued, char *err, size_t errlen) {
    if (!socket || !msg || (identity && (identity_size == 0 || identity_size > NR_PROTO_IDENTITY_MAX)))
        return nr_seterr(err, errlen, NR_EINVAL, "send: bad argument");
    int rc = nr_proto_check_frames(msg->cmd, msg->frames_len, nr_proto_payload_total(msg), err, errlen);
    if (rc) return rc;
    for (uint32_t i = 0; i < msg->frames_len; i++)
        if (!msg->frames[i].data && msg->frames[i].size)
            return nr_seterr(err, errlen, NR_EINVAL, "send: payload frame %u has no data", i);
    nr_proto_body_t body;
    nr_proto_body_init(&body);
    rc = nr_proto_encode_body(msg, &body, err, errlen);
    if (rc) {
        nr_proto_body_free(&body);
        return rc;
    }

    /* Once the first part is queued ZeroMQ delivers all or nothing, so an
     * error can only come from a part before anything was committed, or
     * from a closed context. */
    int saved = 0;
    if (identity && zmq_send(socket, identity, identity_size, ZMQ_SNDMORE) < 0) goto fail;
    if (s_send_part(socket, body.data, body.size, msg->frames_len ? ZMQ_SNDMORE : 0, queued) < 0)
        goto fail;
    for (uint32_t i = 0; i < msg->frames_len; i++) {
        const nr_frame_t *f = &msg->frames[i];
        if (s_send_part(socket, f->data, f->size, i + 1 < msg->frames_len ? ZMQ_SNDMORE : 0, queued) < 0)
            goto fail;
    }
    nr_proto_body_free(&body);
    return 0;
fail:
    saved = errno;
    nr_proto_body_free(&body);
    errno = saved;
    return nr_seterr(err, errlen, NR_EIO, "send: %s", zmq_strerror(saved));
}

int nr_proto_recv(void *socket, uint8_t *identity, size_t *identity_size, nr_msg_t *msg, char *err,
                  size_t errlen) {
    if (!socket || !msg || (identity && !identity_size))
        return nr_seterr(err, errlen, NR_EINVAL, "recv: bad argument");
    nr_proto_msg_clear(msg);
    if (identity_size) *identity_size = 0;

    zmq_msg_t part, body;
    zmq_msg_init(&part);
    zmq_msg_init(&body);
    nr_frame_t frames[NR_PROTO_FRAMES_MAX];
    size_t parts = 0, payloads = 0, nframes = 0, total = 0;
    bool have_body = false, more = true;
    int rc = 0;

    /* Read every part, even after a problem, so the next call starts on a
     * message boundary; payload beyond the limits is read and dropped. */
    while (more) {
        if (zmq_msg_recv(&part, socket, 0) < 0) {
            int saved = errno;
            /* A timeout is NR_EIO with errno EAGAIN, like any socket error:
             * callers already tell EAGAIN/EINTR apart by errno. */
            rc = nr_seterr(err, errlen, NR_EIO, "recv: %s", zmq_strerror(saved));
            for (size_t i = 0; i < nframes; i++) free(frames[i].data);
            zmq_msg_close(&part);
            zmq_msg_close(&body);
            errno = saved;
            return rc;
        }
        more = zmq_msg_more(&part);
        size_t n = zmq_msg_size(&part);
        bool first = parts++ == 0;
        if (identity && first) {
            if (n == 0 || n > NR_PROTO_IDENTITY_MAX) {
                rc = nr_seterr(err, errlen, NR_EPROTO, "identity frame of %zu bytes", n);
            } else {
                memcpy(identity, zmq_msg_data(&part), n);
                *identity_size = n;
            }
        } else if (!have_body) {
            zmq_msg_move(&body, &part);
            have_body = true;
        } else {
            payloads++;
            total += n;
            if (rc || payloads > NR_PROTO_FRAMES_MAX || total > NR_PROTO_PAYLOAD_MAX) continue;
            frames[nframes].data = malloc(n ? n : 1);
            if (!frames[nframes].data) {
                rc = nr_seterr(err, errlen, NR_ENOMEM, "recv: out of memory");
                continue;
            }
            if (n) memcpy(frames[nframes].data, zmq_msg_data(&part), n);
            frames[nframes++].size = n;
        }
    }
    if (rc == 0 && !have_body) rc = nr_seterr(err, errlen, NR_EPROTO, "message has no body");
    if (rc == 0) rc = nr_proto_check_frames(NR_CMD_NONE, payloads, total, err, errlen);
    if (rc == 0) rc = nr_proto_decode(zmq_msg_data(&body), zmq_msg_size(&body), msg, err, errlen);
    if (rc == 0) rc = nr_proto_check_frames(msg->cmd, payloads, total, err, errlen);
    if (rc == 0) {
        memcpy(msg->frames, frames, nframes * sizeof frames[0]);
        msg->frames_len = (uint32_t)nframes;
        const char *who = zmq_msg_gets(&body, "User-Id");
        if (!who || !*who) who = zmq_msg_gets(&body, "Peer-Address");
        if (who) snprintf(msg->peer, sizeof msg->peer, "%s", who);
    } else {
        for (size_t i = 0; i < nframes; i++) free(frames[i].data);
        nr_proto_msg_clear(msg);
    }
    zmq_msg_close(&part);
    zmq_msg_close(&body);
    return rc;
}
