/* Clocks over clock_gettime(2) and nanosleep(2). */
#include "common/clock.h"

#include <errno.h>
#include <time.h>

static int64_t s_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t nr_clock_mono_ms(void) { return s_ms(CLOCK_MONOTONIC); }

int64_t nr_clock_wall_ms(void) { return s_ms(CLOCK_REALTIME); }

int64_t nr_clock_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void nr_clock_sleep_ms(int64_t ms) {
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
