# Tests for the Kokoro engine (models/speech/kokoro.c) on the tiny fixture
# of tests/fixtures/reference_kokoro.py. Label: model.
if(TARGET nr_models)
  nr_add_test(test_kokoro SOURCES test_kokoro.c LIBS nr_models nr_common Threads::Threads LABELS model TIMEOUT 300)
endif()
