# Link security (proto/secure.c): CURVE key files, the ZAP allow-list over
# real sockets, the real broker with CURVE serving an allowed worker and
# client while refusing others, and narrator-gateway with CURVE (an allowed
# gateway speaks a text over HTTP; a refused one answers 503).
if(TARGET nr_client)
  pkg_check_modules(NR_SECURE_ZMQ REQUIRED IMPORTED_TARGET libzmq)
  nr_add_test(test_secure SOURCES test_secure.c LIBS nr_client nr_proto nr_test_harness PkgConfig::NR_SECURE_ZMQ
    LABELS unit TIMEOUT 300
    PROGRAMS narrator-broker narrator-worker-test narrator-keygen narrator-gateway narrator-worker-speech)
endif()
