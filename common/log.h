/* Logging: one line per event, with time, level and component, to stderr. */
#ifndef NR_COMMON_LOG_H
#define NR_COMMON_LOG_H

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

#endif
