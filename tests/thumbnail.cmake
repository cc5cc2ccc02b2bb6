# Gallery thumbnails (issue 20): models/vision/thumbnail (unit), and the
# vision worker's thumbnail kept by the broker and fetched as stage
# "thumbnail", with hostile thumbnails dropped (integration, real processes).
if(TARGET nr_models)
  nr_add_test(test_thumbnail SOURCES test_thumbnail.c area_diff.c LIBS nr_models nr_common LABELS unit TIMEOUT 120)
endif()
if(TARGET nr_client AND TARGET nr_models AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_thumbnail_it.c)
  pkg_check_modules(NR_THUMB_ZMQ REQUIRED IMPORTED_TARGET libzmq)
  nr_add_test(test_thumbnail_it SOURCES test_thumbnail_it.c area_diff.c
    LIBS nr_test_harness nr_client nr_models nr_proto nr_common PkgConfig::NR_THUMB_ZMQ
    LABELS integration TIMEOUT 600
    PROGRAMS narrator-broker narrator-worker-vision)
  if(NOT NR_HEIF)
    target_compile_definitions(test_thumbnail_it PRIVATE NR_TEST_NO_HEIF)
  endif()
endif()
