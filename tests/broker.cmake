# broker/: queue, credit, lease, attempt and retry logic without sockets,
# and the Redis store against a real redis-server started by the harness
# (nr_test_harness comes from harness.cmake, included after this file;
# target names resolve at generate time).
if(TARGET nr_broker_core)
  nr_add_test(test_broker SOURCES test_broker.c LIBS nr_broker_core nr_test_harness LABELS unit TIMEOUT 180)
endif()
