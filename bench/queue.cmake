# bench_queue: narrator's queue overhead (jobs/s, one-job latency) with its
# own redis-server, broker and narrator-worker-test workers (see
# bench/bench_queue.c). A build target only; bench/run.sh runs it.
if(TARGET nr_client AND TARGET nr_test_harness)
  pkg_check_modules(NR_BENCH_HIREDIS REQUIRED IMPORTED_TARGET hiredis)
  add_executable(bench_queue ${CMAKE_CURRENT_SOURCE_DIR}/bench_queue.c)
  target_include_directories(bench_queue PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(bench_queue PRIVATE nr_test_harness nr_client nr_proto nr_common
    PkgConfig::NR_BENCH_HIREDIS Threads::Threads)
  foreach(prog narrator-broker narrator-worker-test)
    if(TARGET ${prog})
      add_dependencies(bench_queue ${prog})
    endif()
  endforeach()
endif()
