# Worker runtime, speech stage and the test stage program (narrator-worker-test).
if(TARGET nr_worker)
  add_executable(narrator-worker-test ${CMAKE_CURRENT_SOURCE_DIR}/worker_test_stage.c)
  target_link_libraries(narrator-worker-test PRIVATE nr_worker)
  nr_add_test(test_worker SOURCES test_worker.c LIBS nr_worker nr_speech nr_test_harness m LABELS unit TIMEOUT 300
    PROGRAMS narrator-worker-test narrator-worker-speech)
endif()
