# narrator-gateway: HTTP tests against a real cluster (test_gateway.c,
# libcurl) and the browser test of the web page (tests/web, Node +
# playwright-core + Debian's chromium; skipped with a message when either
# is missing).
if(TARGET nr_gateway)
  pkg_check_modules(NR_GWT_CURL IMPORTED_TARGET libcurl)
  pkg_check_modules(NR_GWT_ZMQ REQUIRED IMPORTED_TARGET libzmq)
  pkg_check_modules(NR_GWT_CJSON REQUIRED IMPORTED_TARGET libcjson)
  if(NR_GWT_CURL_FOUND)
    nr_add_test(test_gateway SOURCES test_gateway.c
      LIBS nr_test_harness nr_client nr_proto nr_common PkgConfig::NR_GWT_CURL
      PkgConfig::NR_GWT_ZMQ PkgConfig::NR_GWT_CJSON m
      LABELS integration TIMEOUT 600
      PROGRAMS narrator-gateway narrator-broker narrator-worker-speech narrator-worker-vision
               narrator-worker-text)
  else()
    message(STATUS "tests: libcurl4-openssl-dev missing; test_gateway is not built")
  endif()

  # The page test spawns its own cluster from NR_BUILD_DIR/bin; it exits 77
  # (skipped) without node_modules (npm ci in tests/web) or /usr/bin/chromium.
  find_program(NR_NODE node)
  if(NR_NODE)
    add_test(NAME test_web_page COMMAND ${NR_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/web/page.test.mjs)
  else()
    add_test(NAME test_web_page COMMAND sh -c "echo 'SKIP: node is not installed'; exit 77")
  endif()
  set_tests_properties(test_web_page PROPERTIES LABELS browser TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "NR_SOURCE_DIR=${CMAKE_SOURCE_DIR};NR_BUILD_DIR=${CMAKE_BINARY_DIR}")
endif()
