/* Error codes: text and wire names for the NR_E* list in error.h. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *nr_strerror(int code) {
    switch (code) {
    case NR_OK: return "success";
#define NR_X_TEXT(name, value, wire, text) case value: return text;
    NR_ERRNO_MAP(NR_X_TEXT)
#undef NR_X_TEXT
    default: return "unknown error";
    }
}

const char *nr_errname(int code) {
    switch (code) {
    case NR_OK: return "ok";
#define NR_X_WIRE(name, value, wire, text) case value: return wire;
    NR_ERRNO_MAP(NR_X_WIRE)
#undef NR_X_WIRE
    default: return "internal_error";
    }
}

int nr_errcode(const char *name) {
    if (!name) return NR_EINTERNAL;
    if (strcmp(name, "ok") == 0) return NR_OK;
#define NR_X_LOOKUP(n, value, wire, text) if (strcmp(name, wire) == 0) return value;
    NR_ERRNO_MAP(NR_X_LOOKUP)
#undef NR_X_LOOKUP
    return NR_EINTERNAL;
}

int nr_seterr(char *buf, size_t size, int code, const char *fmt, ...) {
    if (!buf || size == 0) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return code;
}
