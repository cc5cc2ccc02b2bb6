# The archive outputs of `narrate submit` (issue 20): the mirrored output
# tree, alt text in XMP through exempi, the run manifest (unit tests, no
# broker), and a whole run against a real cluster (integration).
if(TARGET nr_narrate)
  nr_add_test(test_output_tree SOURCES test_output_tree.c LIBS nr_narrate nr_client LABELS unit)
  nr_add_test(test_alttext SOURCES test_alttext.c LIBS nr_narrate nr_client LABELS unit)
endif()
# nr_test_harness comes from harness.cmake, included after this file.
if(TARGET nr_narrate)
  nr_add_test(test_archive_it SOURCES test_archive_it.c
    LIBS nr_test_harness nr_narrate nr_client nr_proto nr_common LABELS integration
    PROGRAMS narrator-broker narrator-worker-vision narrator-worker-text narrate TIMEOUT 600)
endif()
