# Tests for common/ratelimit.c: the per-client token buckets of the broker and the gateway.
nr_add_test(test_ratelimit SOURCES test_ratelimit.c LIBS nr_common LABELS unit)
