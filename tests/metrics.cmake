# broker/ metrics: the registry, text format, buckets and the /metrics
# listener in-process (unit), and /metrics of a real broker running real
# jobs against a real redis-server (integration).
if(TARGET nr_broker_core)
  nr_add_test(test_metrics SOURCES test_metrics.c LIBS nr_broker_core m LABELS unit TIMEOUT 120)
endif()
if(TARGET nr_broker_core AND TARGET nr_client AND TARGET nr_test_harness)
  pkg_check_modules(NR_METRICS_ZMQ REQUIRED IMPORTED_TARGET libzmq)
  nr_add_test(test_metrics_it SOURCES test_metrics_it.c
    LIBS nr_test_harness nr_client nr_proto nr_common PkgConfig::NR_METRICS_ZMQ m
    LABELS integration PROGRAMS narrator-broker narrator-worker-test TIMEOUT 300)
endif()
