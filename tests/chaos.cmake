# Chaos tests (tests/test_chaos.c): a real redis-server with AOF, the real
# broker and workers, SIGKILL/restart of each while jobs run; the same test
# binary runs 100,000 jobs under bench/soak.sh.
if(TARGET nr_client)
  pkg_check_modules(NR_CHAOS_HIREDIS REQUIRED IMPORTED_TARGET hiredis)
  find_package(Threads REQUIRED)
  nr_add_test(test_chaos SOURCES test_chaos.c
    LIBS nr_test_harness nr_client nr_proto nr_common PkgConfig::NR_CHAOS_HIREDIS Threads::Threads
    LABELS integration PROGRAMS narrator-broker narrator-worker-test narrator-worker-speech
    TIMEOUT 600)
endif()
