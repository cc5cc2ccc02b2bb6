# client/: CLI parsing, job ids, output names, file collection (no broker needed).
if(TARGET nr_narrate)
  nr_add_test(test_client SOURCES test_client.c LIBS nr_narrate nr_client Threads::Threads LABELS unit)
endif()
if(TARGET test_client AND TARGET narrate)
  add_dependencies(test_client narrate) # the exit-code tests run build/bin/narrate
endif()
