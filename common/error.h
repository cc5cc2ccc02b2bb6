/* Error codes shared by every narrator module: 0 or a negative NR_E* code. */
#ifndef NR_COMMON_ERROR_H
#define NR_COMMON_ERROR_H

#include <stddef.h>

/* X(name, value, wire name, message). The wire name travels in FAIL and
 * REPLY messages and is stored in Redis, so it never changes meaning. */
#define NR_ERRNO_MAP(X)                                                              \
    X(EINVAL, -1, "invalid_argument", "invalid argument")                            \
    X(ENOMEM, -2, "out_of_memory", "out of memory")                                  \
    X(EIO, -3, "io_error", "input/output error")                                     \
    X(EPROTO, -4, "malformed_message", "malformed message")                          \
    X(EVERSION, -5, "unsupported_version", "unsupported protocol version")           \
    X(ETOOBIG, -6, "too_large", "payload too large")                                 \
    X(ENOTFOUND, -7, "not_found", "no such job or object")                           \
    X(EBUSY, -8, "busy", "queue full, retry later")                                  \
    X(ETIMEDOUT, -9, "timed_out", "timed out")                                       \
    X(ENOWORKER, -10, "no_worker", "no worker serves this stage")                    \
    X(EREDIS, -11, "redis_error", "redis error")                                     \
    X(ENOTIMAGE, -12, "not_an_image", "input is not a supported image")              \
    X(EIMAGE, -13, "bad_image", "image is corrupt or truncated")                     \
    X(EIMAGEBOMB, -14, "image_too_large", "image has too many pixels")               \
    X(ETEXT, -15, "bad_text", "text is empty, too long or not UTF-8")                \
    X(EVOICE, -16, "unknown_voice", "unknown voice")                                 \
    X(EMODEL, -17, "bad_model", "model file missing or corrupt")                     \
    X(EOPTION, -18, "bad_option", "invalid job option")                              \
    X(ECANCELLED, -19, "cancelled", "job cancelled")                                 \
    X(EATTEMPTS, -20, "attempts_exhausted", "attempt limit reached")                 \
    X(EDEADLINE, -21, "deadline_exceeded", "stage deadline exceeded")                \
    X(EUNSUPPORTED, -22, "unsupported", "operation not supported")                   \
    X(EDEVICE, -23, "device_error", "compute device error")                          \
    X(ESTATE, -24, "bad_state", "operation not allowed in this job state")           \
    X(EINTERNAL, -25, "internal_error", "internal error")                            \
    X(ECONNECT, -26, "unreachable", "cannot reach the server")

typedef enum {
    NR_OK = 0,
#define NR_X_ENUM(name, value, wire, text) NR_##name = value,
    NR_ERRNO_MAP(NR_X_ENUM)
#undef NR_X_ENUM
    NR_ERRNO_MIN = -26
} nr_errno_t;

/* Human text for a code; never NULL (unknown codes give "unknown error"). */
const char *nr_strerror(int code);
/* Stable wire name for a code ("bad_image"); never NULL. */
const char *nr_errname(int code);
/* Code for a wire name, or NR_EINTERNAL if the name is unknown. */
int nr_errcode(const char *name);

/* Formats "text: detail" into buf (a message buffer an object keeps for its
 * last error) and returns code, so callers can `return nr_seterr(...)`. */
int nr_seterr(char *buf, size_t size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
