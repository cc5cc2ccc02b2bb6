# client/: CLI parsing, job ids, output names, file collection (no broker needed).
if(TARGET nr_narrate)
  # The exit-code tests run build/bin/narrate.
  nr_add_test(test_client SOURCES test_client.c LIBS nr_narrate nr_client Threads::Threads LABELS unit
    PROGRAMS narrate)
endif()
# Pipelined SUBMIT (nr_client_submit_batch) and `narrate submit` against a
# real redis-server, narrator-broker and narrator-worker-test (nr_test_harness
# comes from harness.cmake, included after this file).
if(TARGET nr_client)
  nr_add_test(test_client_it SOURCES test_client_it.c
    LIBS nr_test_harness nr_client nr_proto nr_common LABELS integration
    PROGRAMS narrator-broker narrator-worker-test narrate TIMEOUT 300)
endif()
