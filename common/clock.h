/* Clocks: monotonic time for intervals, timeouts and deadlines inside one
 * process, and wall time for what is stored, shown or compared across
 * processes. The two are kept apart by name, so a reader sees which clock a
 * timer runs on. Thread-safe. */
#ifndef NR_COMMON_CLOCK_H
#define NR_COMMON_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC: never jumps, meaningless across
 * processes or reboots. */
int64_t nr_clock_mono_ms(void);
/* Nanoseconds on CLOCK_MONOTONIC (request durations). */
int64_t nr_clock_mono_ns(void);
/* Milliseconds since the Unix epoch (CLOCK_REALTIME): may jump when the
 * system clock is set. */
int64_t nr_clock_wall_ms(void);
/* Sleeps ms milliseconds (again after a signal); nothing when ms <= 0. */
void nr_clock_sleep_ms(int64_t ms);

#endif
