# Link security (proto/secure.c): CURVE key files, the ZAP allow-list over
# real sockets, and (when the programs are built) the real broker with CURVE.
pkg_check_modules(NR_SECURE_ZMQ REQUIRED IMPORTED_TARGET libzmq)
nr_add_test(test_secure SOURCES test_secure.c LIBS nr_proto nr_test_harness PkgConfig::NR_SECURE_ZMQ LABELS unit TIMEOUT 120)
