# Group commit end to end: concurrent clients, the real broker killed with
# SIGKILL mid-batch, every acknowledged SUBMIT found in Redis (see
# test_broker_batch.c).
if(TARGET nr_client)
  nr_add_test(test_broker_batch SOURCES test_broker_batch.c
    LIBS nr_test_harness nr_client nr_proto nr_common Threads::Threads
    LABELS integration PROGRAMS narrator-broker TIMEOUT 300)
endif()
