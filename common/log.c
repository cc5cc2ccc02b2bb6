/* Logging to stderr; one write() per line so lines from threads never mix. */
#include "common/log.h"
#include "common/clock.h"
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

nr_log_level_t nr_log_threshold = NR_LOG_INFO;
static char s_component[32] = "narrator";
static const char *s_level_names[] = {"error", "warn", "info", "debug"};

void nr_log_set_component(const char *name) {
    snprintf(s_component, sizeof s_component, "%s", name ? name : "narrator");
}

int nr_log_set_level(const char *name) {
    for (int i = 0; i <= NR_LOG_DEBUG; i++) {
        if (name && strcmp(name, s_level_names[i]) == 0) {
            nr_log_threshold = (nr_log_level_t)i;
            return 0;
        }
    }
    return NR_EINVAL;
}

void nr_log_write(nr_log_level_t level, const char *fmt, ...) {
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s[%d]: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), s_level_names[level], s_component,
                     (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}

int nr_log_limit_pass(nr_log_limit_t *limit, nr_log_level_t level) {
    int64_t now = nr_clock_mono_ms();
    if (!limit->lines && !limit->suppressed) limit->window_ms = now;
    if (now - limit->window_ms >= NR_LOG_LIMIT_MS) {
        if (limit->suppressed)
            nr_log_write(level, "suppressed %lu similar messages in the last %lld s",
                         limit->suppressed, (long long)(now - limit->window_ms) / 1000);
        limit->window_ms = now;
        limit->lines = 0;
        limit->suppressed = 0;
    }
    if (limit->lines >= NR_LOG_LIMIT_LINES) {
        limit->suppressed++;
        return 0;
    }
    limit->lines++;
    return 1;
}
