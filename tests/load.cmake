# Hostile and heavy clients against real processes (see test_load.c): the
# broker's loop, memory and log stay bounded and healthy work still ends
# done. Needs the client library; programs are found in build/bin.
if(TARGET nr_client)
  pkg_check_modules(NR_LOAD_ZMQ REQUIRED IMPORTED_TARGET libzmq)
  nr_add_test(test_load SOURCES test_load.c
    LIBS nr_test_harness nr_client nr_proto nr_common PkgConfig::NR_LOAD_ZMQ
    LABELS integration TIMEOUT 600
    PROGRAMS narrator-broker narrator-worker-test)
endif()
