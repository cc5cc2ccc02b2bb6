/* Logging: one line per event, with time, level and component, to stderr. */
#ifndef NR_COMMON_LOG_H
#define NR_COMMON_LOG_H

#include <stdint.h>

typedef enum { NR_LOG_ERROR = 0, NR_LOG_WARN, NR_LOG_INFO, NR_LOG_DEBUG } nr_log_level_t;

extern nr_log_level_t nr_log_threshold;

/* Sets the component name printed on every line ("broker", "worker-speech"). */
void nr_log_set_component(const char *name);
/* Parses "error|warn|info|debug"; returns 0 or NR_EINVAL. */
int nr_log_set_level(const char *name);
void nr_log_write(nr_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks the level first, so a disabled line costs one comparison. */
#define nr_log(level, ...)                                                                     \
    do {                                                                                       \
        if ((level) <= nr_log_threshold) nr_log_write((level), __VA_ARGS__);                   \
    } while (0)


/* Repeated warnings, e.g. one per garbage frame from a peer: a call site
 * (the key) writes at most NR_LOG_LIMIT_LINES lines per NR_LOG_LIMIT_MS on
 * the monotonic clock; the lines it skipped are then counted in one
 * "suppressed K similar messages" line, written with its next line after
 * the interval. The state is the call site's own static nr_log_limit_t. */
#define NR_LOG_LIMIT_LINES 10
#define NR_LOG_LIMIT_MS 5000
typedef struct {
    int64_t window_ms;       /* start of the current interval */
    unsigned lines;          /* lines written in it */
    unsigned long suppressed;/* lines skipped in it */
} nr_log_limit_t;
/* 1 when a line may be written now (after the suppressed count, if any). */
int nr_log_limit_pass(nr_log_limit_t *limit, nr_log_level_t level);
#define nr_log_limited(limit, level, ...)                                                      \
    do {                                                                                       \
        if ((level) <= nr_log_threshold && nr_log_limit_pass((limit), (level)))                \
            nr_log_write((level), __VA_ARGS__);                                                \
    } while (0)
#endif
