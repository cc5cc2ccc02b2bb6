/* Tests for the small modules of common/: clock, backoff, buf, utf8. */
#include "common/backoff.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/utf8.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

Test(clock, monotonic_moves_forward_and_sleep_waits) {
    int64_t a = nr_clock_mono_ms();
    nr_clock_sleep_ms(20);
    int64_t b = nr_clock_mono_ms();
    cr_assert(b - a >= 20, "slept %lld ms", (long long)(b - a));
    cr_assert(nr_clock_wall_ms() > 1600000000000LL, "wall clock is not Unix ms");
    nr_clock_sleep_ms(-5); /* nothing */
}

Test(backoff, doubles_to_the_cap_and_resets) {
    nr_backoff_t b;
    nr_backoff_init(&b, 1000, 5000);
    int64_t want[] = {1000, 2000, 4000, 5000, 5000};
    for (size_t i = 0; i < 5; i++) cr_assert_eq(nr_backoff_next(&b), want[i], "step %zu", i);
    nr_backoff_reset(&b);
    cr_assert_eq(nr_backoff_next(&b), 1000);
    nr_backoff_init(&b, 100, 3200); /* the client's busy retry */
    int64_t busy[] = {100, 200, 400, 800, 1600, 3200, 3200};
    for (size_t i = 0; i < 7; i++) cr_assert_eq(nr_backoff_next(&b), busy[i], "busy step %zu", i);
}

Test(backoff, nth_and_jitter) {
    cr_assert_eq(nr_backoff_nth(1000, 32000, 0), 1000);
    cr_assert_eq(nr_backoff_nth(1000, 32000, 1), 1000);
    cr_assert_eq(nr_backoff_nth(1000, 32000, 3), 4000);
    cr_assert_eq(nr_backoff_nth(1000, 32000, 40), 32000);
    cr_assert_eq(nr_backoff_nth(1000, 1500, 2), 1500);
    cr_assert_eq(nr_backoff_jitter(1, 12345), 1);
    cr_assert_eq(nr_backoff_jitter(1000, 0), 500);
    cr_assert_eq(nr_backoff_jitter(1000, 500), 1000);
    for (uint32_t r = 0; r < 5000; r += 7) {
        int64_t d = nr_backoff_jitter(1000, r);
        cr_assert(d >= 500 && d <= 1000, "%lld", (long long)d);
    }
}

Test(buf, appends_formats_and_hands_over) {
    nr_buf_t b = {0};
    char *empty = nr_buf_take(&b, NULL);
    cr_assert_str_eq(empty, "");
    free(empty);
    nr_buf_puts(&b, "a");
    nr_buf_putn(&b, "bcd", 2);
    for (int i = 0; i < 1000; i++) nr_buf_printf(&b, "%d,", i);
    size_t len = 0;
    char *text = nr_buf_take(&b, &len);
    cr_assert_eq(len, strlen(text));
    cr_assert(!strncmp(text, "abc0,1,2,", 9));
    cr_assert_null(b.data);
    free(text);
    nr_buf_puts(&b, "x");
    b.failed = 1;
    nr_buf_puts(&b, "y");
    cr_assert_null(nr_buf_take(&b, &len), "a failed buffer hands over nothing");
}

Test(utf8, strict_and_maximal_subparts) {
    uint32_t cp = 0;
    size_t bad = 0;
    cr_assert_eq(nr_utf8_decode((const uint8_t *)"\xC3\xA9", 2, &cp, NULL), 2);
    cr_assert_eq(cp, 0xE9);
    cr_assert_eq(nr_utf8_decode((const uint8_t *)"\xC0\xAF", 2, &cp, &bad), 0, "overlong");
    cr_assert_eq(bad, 1);
    cr_assert_eq(nr_utf8_decode((const uint8_t *)"\xED\xA0\x80", 3, &cp, &bad), 0, "surrogate");
    cr_assert_eq(bad, 1);
    cr_assert_eq(nr_utf8_decode((const uint8_t *)"\xE2\x82", 2, &cp, &bad), 0, "truncated");
    cr_assert_eq(bad, 2);
    cr_assert_eq(nr_utf8_decode((const uint8_t *)"\xF0\x9F\x98", 4, &cp, &bad), 0, "NUL ends it");
    cr_assert_eq(bad, 3);
    cr_assert_eq(nr_utf8_decode((const uint8_t *)"\xF4\x90\x80\x80", 4, &cp, &bad), 0, "past U+10FFFF");
    size_t at = 0;
    cr_assert_eq(nr_utf8_validate((const uint8_t *)"ok \xE2\x82\xAC \xFF", 8, &at), NR_ETEXT);
    cr_assert_eq(at, 7);
    cr_assert_eq(nr_utf8_validate((const uint8_t *)"ok \xE2\x82\xAC", 6, NULL), 0);
    char out[4];
    cr_assert_eq(nr_utf8_encode(0xFFFD, out), 3);
    cr_assert(!memcmp(out, "\xEF\xBF\xBD", 3));
    cr_assert_eq(nr_utf8_encode(0x1F600, out), 4);
    cr_assert_eq(nr_utf8_decode((const uint8_t *)out, 4, &cp, NULL), 4);
    cr_assert_eq(cp, 0x1F600);
}
