# tests/harness: the test harness library (ports, temp folders, child
# processes, a real redis-server, STATS and kv helpers over nr_client) and
# its own test.
add_library(nr_test_harness STATIC ${CMAKE_CURRENT_LIST_DIR}/harness.c)
target_include_directories(nr_test_harness PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(nr_test_harness PUBLIC nr_client nr_common)

nr_add_test(test_harness SOURCES test_harness.c LIBS nr_test_harness LABELS unit TIMEOUT 120)
