# Integration tests: a real redis-server, narrator-broker and worker
# processes per test (see test_integration.c). Needs the client library;
# the programs it starts are found in build/bin (a test whose program is not
# built is skipped with the reason).
if(TARGET nr_client)
  pkg_check_modules(NR_IT_ZMQ REQUIRED IMPORTED_TARGET libzmq)
  nr_add_test(test_integration SOURCES test_integration.c
    LIBS nr_test_harness nr_client nr_proto nr_common PkgConfig::NR_IT_ZMQ
    LABELS integration TIMEOUT 900
    PROGRAMS narrator-broker narrator-worker-test narrator-worker-speech narrate)
  if(NOT NR_HEIF)
    target_compile_definitions(test_integration PRIVATE NR_TEST_NO_HEIF) # HEIC/AVIF cases left out
  endif()

  # deploy/local-cluster.sh itself, with real processes on free ports.
  add_test(NAME local_cluster COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/local_cluster_test.sh
    ${CMAKE_BINARY_DIR})
  set_tests_properties(local_cluster PROPERTIES LABELS integration TIMEOUT 300 SKIP_RETURN_CODE 77)

  # The broker's wall clock stepped by hours under libfaketime, jobs leased.
  add_test(NAME clock_step COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/clock_step_test.sh
    ${CMAKE_BINARY_DIR})
  set_tests_properties(clock_step PROPERTIES LABELS integration TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()
