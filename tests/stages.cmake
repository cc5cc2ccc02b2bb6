# Stage tests: narrator-worker-vision and narrator-worker-text in a real
# cluster (redis-server, broker, the three stage workers, `narrate`) with the
# tiny checkpoint; captions compared with the engine called in-process.
if(TARGET nr_client AND TARGET nr_models AND TARGET narrator-worker-vision AND TARGET narrator-worker-text)
  pkg_check_modules(NR_STAGES_CJSON REQUIRED IMPORTED_TARGET libcjson)
  nr_add_test(test_stages SOURCES test_stages.c
    LIBS nr_test_harness nr_client nr_models nr_proto nr_common PkgConfig::NR_STAGES_CJSON m
    LABELS integration TIMEOUT 900
    PROGRAMS narrator-broker narrator-worker-vision narrator-worker-text narrator-worker-speech narrate)
endif()
