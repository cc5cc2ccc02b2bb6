# Bad input catalogue (tests/BAD_INPUT.md): the cases no other test covered.
if(TARGET nr_models)
  nr_add_test(test_bad_input SOURCES test_bad_input.c LIBS nr_models nr_test_harness LABELS unit
    PROGRAMS narrator-broker TIMEOUT 120)
endif()
