# common/: clock, backoff, text buffer and UTF-8 (test_ratelimit has its own).
nr_add_test(test_common SOURCES test_common.c LIBS nr_common LABELS unit)
